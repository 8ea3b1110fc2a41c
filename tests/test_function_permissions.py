"""The bootstrap function's Secrets Manager permissions, exactly the statements the Data
stack's template gives its role, are what its paths need: enough for every path (a deploy's
Create, Update and Delete, the four rotation steps of boom_owner's secret and of the master
secret, the check, the repair) on the real
PostgreSQL 15, with moto enforcing the role's policy; and no more, as each action dropped
makes some path fail and name it.

moto judges actions, not resources (outside S3), so here every statement is on "*"; which
secret each action is on stays asserted in test_tenant_bootstrap_stack.py. The role's managed
policies (logs, the VPC's network interfaces) grant no Secrets Manager action."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lambdas.tenant_bootstrap import bootstrap, handler, rotation
from tests.fixture_bootstrap import LATE_TABLE_FOUND, LATE_TABLE_RESTORED, late_table_drift
from tests.fixture_postgres import PostgresServer
from tests.fixture_secrets import (
    OwnMaster,
    Secrets,
    as_function,
    guarantee_event,
    resource_event,
)
from tests.fixture_synth import Synthesized, one_data_resource_with_id

# The Secrets Manager actions the template grants the function's role (asserted below).
GRANTED = ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue",
           "secretsmanager:ListSecretVersionIds", "secretsmanager:PutSecretValue",
           "secretsmanager:UpdateSecretVersionStage"]


def function_role(synthesized: Synthesized) -> dict[str, Any]:
    """The bootstrap function's role, as the template refers to it (Fn::GetAtt)."""
    _, function = one_data_resource_with_id(synthesized, "AWS::Lambda::Function",
                                            "TenantBootstrapFunction")
    return dict(function["Properties"]["Role"])


def role_statements(synthesized: Synthesized) -> list[dict[str, Any]]:
    """The statements of the policies the template attaches to the function's role."""
    role = function_role(synthesized)["Fn::GetAtt"][0]
    resources = synthesized.template_json("Data")["Resources"]
    return [statement for resource in resources.values()
            if resource["Type"] == "AWS::IAM::Policy"
            and {"Ref": role} in resource["Properties"]["Roles"]
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]]


def on_every_secret(statements: list[dict[str, Any]]) -> dict[str, Any]:
    """The statements as moto can judge them: each on "*"."""
    for statement in statements:
        assert statement["Effect"] == "Allow" and "Condition" not in statement, statement
    return {"Version": "2012-10-17",
            "Statement": [{**statement, "Resource": "*"} for statement in statements]}


def actions(statements: list[dict[str, Any]]) -> list[str]:
    return sorted({action for statement in statements
                   for action in ([statement["Action"]] if isinstance(statement["Action"], str)
                                  else statement["Action"])})


def without(statements: list[dict[str, Any]], dropped: str) -> list[dict[str, Any]]:
    kept = [{**statement, "Action": [a for a in actions([statement]) if a != dropped]}
            for statement in statements]
    return [statement for statement in kept if statement["Action"]]


def every_path(postgres: PostgresServer, aws: Secrets, own: OwnMaster,
               monkeypatch: pytest.MonkeyPatch,
               policy: dict[str, Any]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Each of the function's paths, as a stack's life has them, run with `policy` alone: what
    was refused (each error, and each check finding that is not the drift made for the
    repair), and each path's response (a rotation step's under "<secret> <step>"). The master
    is `own`, whose rotation the paths after it log in with."""
    database, master = own.database, own.arn
    refused: list[str] = []
    responses: dict[str, dict[str, Any]] = {}

    def call(path: str, event: dict[str, Any]) -> None:
        try:
            with as_function(monkeypatch, policy):
                responses[path] = handler.on_event(event)
        except bootstrap.BootstrapError as err:
            refused.append(str(err))

    call("Create", resource_event("Create", aws, master))
    for secret, arn in (("owner", aws.owner), ("master", master)):
        token = aws.start_rotation(arn)  # Secrets Manager's doing, not the function's
        for step in rotation.STEPS:
            call(f"{secret} {step}", {"Step": step, "SecretId": arn, "ClientRequestToken": token})
    if "Create" in responses:  # drift for the check to find and the repair to mend
        late_table_drift(postgres, database)
    call("Check", guarantee_event("Check", master, aws))
    refused += [finding for finding in responses.get("Check", {}).get("Findings", [])
                if finding not in LATE_TABLE_FOUND]
    call("Repair", guarantee_event("Repair", master, aws))
    created = resource_event("Create", aws, master)["ResourceProperties"]
    call("Update", resource_event("Update", aws, master, OldResourceProperties=created))
    call("Delete", resource_event("Delete", aws, master))
    return refused, responses


@pytest.mark.usefixtures("role_passwords_back")
def test_the_templates_permissions_let_every_path_through(
        postgres: PostgresServer, aws: Secrets, own_master: OwnMaster, dev: Synthesized,
        monkeypatch: pytest.MonkeyPatch) -> None:
    before = aws.current(aws.owner)["password"]
    refused, responses = every_path(postgres, aws, own_master, monkeypatch,
                                    on_every_secret(role_statements(dev)))
    assert refused == []
    assert [responses[f"{secret} {step}"]["Done"] for secret in ("owner", "master")
            for step in rotation.STEPS] == ["ok"] * 8
    assert responses["Check"]["Findings"] == LATE_TABLE_FOUND
    assert responses["Repair"]["Repaired"] == LATE_TABLE_RESTORED
    assert responses["Create"]["Data"]["SchemaVersion"] == \
        responses["Update"]["Data"]["SchemaVersion"] == str(bootstrap.LATEST_VERSION)
    assert "Delete" in responses
    # The rotation went through: a new password, current, and the one boom_owner logs in with
    rotated = aws.current(aws.owner)["password"]
    assert rotated != before
    assert rotation.pending_version(aws.client, aws.owner, "OwnerSecretArn") is None
    conn = postgres.connect("postgres", user="boom_owner", password=rotated, tls=True)
    conn.close()
    # So did the master's, and the paths after it logged in with the new password.
    assert aws.current(own_master.arn)["password"] != own_master.password
    assert rotation.pending_version(aws.client, own_master.arn, "MasterSecretArn") is None


@pytest.mark.parametrize("dropped", GRANTED)
@pytest.mark.usefixtures("role_passwords_back")
def test_each_action_the_template_grants_is_needed_by_some_path(
        postgres: PostgresServer, aws: Secrets, own_master: OwnMaster, dev: Synthesized,
        monkeypatch: pytest.MonkeyPatch, dropped: str) -> None:
    statements = role_statements(dev)
    refused, _ = every_path(postgres, aws, own_master, monkeypatch,
                            on_every_secret(without(statements, dropped)))
    assert refused and any(f"not authorized to perform: {dropped}" in said for said in refused)


def test_those_are_the_actions_the_template_grants(synthesized: Synthesized) -> None:
    # In every environment: each of them was shown needed above, and none is missing.
    assert actions(role_statements(synthesized)) == GRANTED


def test_the_secrets_key_serves_the_role_through_secrets_manager_alone(
        synthesized: Synthesized) -> None:
    # moto does not judge KMS, so the key's side is asserted on the template: the three
    # secrets share the database key, and its policy lets the role decrypt (every read) and
    # make a data key (the rotation's PutSecretValue) as Secrets Manager's caller only; the
    # role's own policy grants no KMS action.
    role = function_role(synthesized)
    resources = synthesized.template_json("Data")["Resources"]
    secrets = set()
    for statement in role_statements(synthesized):
        if any(not action.startswith("secretsmanager:") for action in actions([statement])):
            continue  # (refused below)
        for resource in statement["Resource"] if isinstance(statement["Resource"], list) \
                else [statement["Resource"]]:
            named = resources[resource["Ref"]]
            if named["Type"] == "AWS::SecretsManager::SecretTargetAttachment":
                named = resources[named["Properties"]["SecretId"]["Ref"]]  # the master secret
            assert named["Type"] == "AWS::SecretsManager::Secret"
            secrets.add(json.dumps(named["Properties"]["KmsKeyId"]))
    assert len(secrets) == 1
    [key] = [json.loads(k)["Fn::GetAtt"][0] for k in secrets]
    statements = [statement for statement in
                  resources[key]["Properties"]["KeyPolicy"]["Statement"]
                  if statement["Principal"] == {"AWS": role}]
    via = {"StringEquals": {"kms:ViaService":
                            f"secretsmanager.{synthesized.config.primary_region}.amazonaws.com"}}
    assert [(s["Action"], s["Condition"]) for s in statements] == [
        ("kms:Decrypt", via), ("kms:GenerateDataKey", via)]
    assert not [a for a in actions(role_statements(synthesized)) if a.startswith("kms:")]
