"""One synth per environment per test session, shared by every test that reads templates."""

from __future__ import annotations

import atexit
import functools
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import assertions, cx_api

from boom_stacks import compliance
from boom_stacks.config import EnvironmentConfig
from boom_stacks.stage import EnvironmentStacks, create_app
from tests.fixture_paths import ROOT

_ASSET_HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Synthesized:
    config: EnvironmentConfig
    stacks: EnvironmentStacks
    assembly: cx_api.CloudAssembly
    # Findings before and after compliance.py's acknowledgements were applied.
    raw_findings: list[compliance.Finding]
    unacknowledged: list[compliance.Finding]

    def template_json(self, part: str) -> dict[str, Any]:
        stack = self.assembly.get_stack_by_name(self.config.stack_id(part))
        return json.loads(Path(stack.template_full_path).read_text())

    def template(self, part: str) -> assertions.Template:
        return assertions.Template.from_json(self.template_json(part))

    def template_paths(self) -> list[Path]:
        return [Path(s.template_full_path) for s in self.assembly.stacks]


def cdk_json_context() -> dict[str, Any]:
    """Feature flags and defaults exactly as `cdk synth` sees them."""
    return dict(json.loads((ROOT / "cdk.json").read_text())["context"])


@functools.cache
def synthesize(env: str) -> Synthesized:
    context = {**cdk_json_context(), "env": env,
               # Skip asset bundling: tests check templates, not Lambda packages.
               "aws:cdk:bundling-stacks": []}
    outdir = tempfile.mkdtemp(prefix=f"boom-{env}-")
    atexit.register(shutil.rmtree, outdir, ignore_errors=True)  # read until the session ends
    app, stacks = create_app(environ={}, context=context, gate=False, outdir=outdir)
    raw = compliance.findings(app)
    compliance.acknowledge(app, stacks.config)
    unacknowledged = compliance.findings(app)
    if not unacknowledged:
        compliance.register_packs(app)  # the same gate as app.py, on the same synth
    return Synthesized(config=stacks.config, stacks=stacks, assembly=app.synth(),
                       raw_findings=raw, unacknowledged=unacknowledged)


def normalized(template: dict[str, Any]) -> dict[str, Any]:
    """The template with asset hashes replaced, so snapshots change only with infrastructure."""
    return json.loads(_ASSET_HASH.sub("<asset-hash>", json.dumps(template)))


def data_resources(synthesized: Synthesized, type_: str, prefix: str = "") -> dict[str, Any]:
    """The Data stack's resources of one type whose logical id starts with `prefix` (the
    construct path), by logical id."""
    found = synthesized.template("Data").find_resources(type_)
    return {k: v for k, v in found.items() if k.startswith(prefix)}


def one_data_resource_with_id(synthesized: Synthesized, type_: str,
                              prefix: str) -> tuple[str, dict[str, Any]]:
    found = data_resources(synthesized, type_, prefix)
    assert len(found) == 1, f"{type_} {prefix}*: {sorted(found)}"
    return next(iter(found.items()))


def one_data_resource(synthesized: Synthesized, type_: str, prefix: str) -> dict[str, Any]:
    return one_data_resource_with_id(synthesized, type_, prefix)[1]
