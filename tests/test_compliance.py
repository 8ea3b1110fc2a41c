"""The gate: no unacknowledged finding, no stale acknowledgement, in every environment."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3

from boom_stacks import compliance
from boom_stacks.stage import create_app
from tests.fixture_synth import Synthesized, cdk_json_context


def test_no_unacknowledged_findings(synthesized: Synthesized) -> None:
    assert synthesized.unacknowledged == []


def test_every_acknowledgement_matches_a_finding(synthesized: Synthesized) -> None:
    # Given the findings the packs report before anything is acknowledged
    raw = set(synthesized.raw_findings)
    app = synthesized.stacks.network.node.root
    assert isinstance(app, cdk.App)
    # Then each acknowledgement for this environment names one of them, on its resource
    stale = [ack for ack in compliance.acknowledgements_for(synthesized.config)
             if compliance.Finding(ack.rule, compliance.resolve(app, synthesized.config,
                                                                ack).node.path) not in raw]
    assert stale == []


def test_acknowledgements_are_each_one_rule_on_one_resource() -> None:
    keys = [(a.stack, a.path, a.rule, a.applies) for a in compliance.ACKNOWLEDGEMENTS]
    assert len(keys) == len(set(keys))
    # A rule id never has a wildcard; a '*' may appear only inside the one [finding] it names
    # (an IAM5 finding quotes the policy's resource, e.g. `<Function.Arn>:*`).
    assert all("*" not in a.rule.split("[")[0] for a in compliance.ACKNOWLEDGEMENTS)
    assert all(a.rule.startswith("AwsSolutions-IAM5[") for a in compliance.ACKNOWLEDGEMENTS
               if "*" in a.rule)


def test_an_acknowledgement_needs_a_real_reason() -> None:
    with pytest.raises(ValueError, match="give a reason"):
        compliance.Acknowledgement("Data", "Cache/ReplicationGroup", "AwsSolutions-AEC5", "ok")
    # 40 characters is where a reason starts: 39 are refused.
    with pytest.raises(ValueError, match=r"\(40\+ characters\)"):
        compliance.Acknowledgement("Data", "Cache/ReplicationGroup", "AwsSolutions-AEC5", "x" * 39)
    assert compliance.Acknowledgement("Data", "Cache/ReplicationGroup", "AwsSolutions-AEC5",
                                      "x" * 40).reason == "x" * 40


def test_synth_fails_on_an_unacknowledged_finding() -> None:
    # Given the gated dev app with one new bucket that breaks several rules
    app, stacks = create_app(environ={}, context={**cdk_json_context(),
                                                  "aws:cdk:bundling-stacks": []})
    s3.Bucket(stacks.data, "Careless")
    # When it is synthesized, Then the gate stops it
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()


@pytest.mark.parametrize("path", ["Cache/ReplicationGroupRenamed", "Backups/*/Resource"])
def test_an_acknowledgement_that_names_no_single_construct_stops_synth(
        monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    # A construct renamed, or a glob that now matches two: the acknowledgement would silently
    # cover nothing (or the wrong resource), so the app refuses to build, naming it.
    ack = compliance.Acknowledgement("Data", path, "AwsSolutions-AEC5",
                                     "a reason long enough to pass the reason check")
    monkeypatch.setattr(compliance, "ACKNOWLEDGEMENTS", (*compliance.ACKNOWLEDGEMENTS, ack))
    with pytest.raises(LookupError, match=(
            rf"compliance acknowledgement AwsSolutions-AEC5 names Boom-Dev-Data/"
            rf"{path.replace('*', '[*]')}, which matches no single construct")):
        create_app(environ={}, context={**cdk_json_context(), "aws:cdk:bundling-stacks": []})
