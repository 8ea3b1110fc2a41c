"""What `make synth` prints after the gate passed: each stack with its destination and its
distance to CloudFormation's quotas, and how many findings compliance.py acknowledges."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from boom_stacks import compliance
from scripts.synth_summary import RESOURCE_QUOTA, summarize
from tests.fixture_synth import Synthesized


def test_each_stack_is_listed_with_its_destination_and_resource_count(
        synthesized: Synthesized) -> None:
    summary = summarize(Path(synthesized.assembly.directory))
    config = synthesized.config
    for part in ("Network", "Data"):
        resources = len(synthesized.template_json(part)["Resources"])
        line = re.search(rf"^  {config.stack_id(part)} +(\S+) +(\d+)/{RESOURCE_QUOTA} resources",
                         summary, re.MULTILINE)
        assert line, summary
        assert line.groups() == (f"aws://{config.account}/{config.primary_region}",
                                 str(resources))


def test_the_acknowledged_count_is_only_compliance_pys(
        synthesized: Synthesized) -> None:
    # CDK's own FlowLog acknowledges two CloudFormation-Validate findings; they were counted
    ours = compliance.acknowledgements_for(synthesized.config)
    assert len(ours) == len(synthesized.raw_findings)  # each acknowledges one finding
    summary = summarize(Path(synthesized.assembly.directory))
    assert f"0 unacknowledged findings, {len(ours)} acknowledged" in summary


def test_a_missing_synth_output_is_named(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="manifest.json not found: run `make synth`"):
        summarize(tmp_path)
