"""Every template of every environment, as reviewed. Update with `make snapshot-update`."""

from __future__ import annotations

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

from tests.fixture_synth import Synthesized, normalized


@pytest.fixture
def json_snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(JSONSnapshotExtension)


@pytest.mark.parametrize("part", ["Network", "Data"])
def test_template_snapshot(synthesized: Synthesized, part: str,
                           json_snapshot: SnapshotAssertion) -> None:
    assert normalized(synthesized.template_json(part)) == json_snapshot(
        name=f"{synthesized.config.name}-{part}")


def test_normalizing_removes_only_asset_hashes() -> None:
    digest = "ab" * 32
    template = {"S3Key": f"{digest}.zip", "Other": "ab12"}
    assert normalized(template) == {"S3Key": "<asset-hash>.zip", "Other": "ab12"}
