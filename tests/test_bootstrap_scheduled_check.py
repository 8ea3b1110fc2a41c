"""The scheduled check between deploys: the bootstrap function, sent the schedule's event,
checks the real PostgreSQL 15 (secrets from moto) and logs its findings as a CloudWatch
embedded-metric-format line, which the Data stack's alarm watches."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from typing import Any

import pytest

from lambdas.tenant_bootstrap import (
    bootstrap,
    handler,
    master_secret,
    role_secrets,
    rotation,
    scheduled_check,
)
from tests.fixture_bootstrap import (
    LATE_TABLE_FOUND,
    bootstrap_run_in_progress,
    late_table_drift,
    trigger_off,
)
from tests.fixture_lambda import LambdaContext
from tests.fixture_postgres import PostgresServer, bootstrapped_database, free_port
from tests.fixture_secrets import Secrets, denied, guarantee_event, master_values, state

# The embedded metric format's units (CloudWatch's StandardUnit values).
UNITS = {"Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes",
         "Gigabytes", "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits",
         "Percent", "Count", "Bytes/Second", "Kilobytes/Second", "Megabytes/Second",
         "Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second",
         "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None"}


def emf_metrics(line: str) -> dict[str, float]:
    """The metrics CloudWatch Logs would extract from `line`, checked against the MUSTs of
    AWS's embedded metric format specification; fails the test where one is broken."""
    document = json.loads(line)  # the whole log event is one JSON object
    metadata = document["_aws"]
    assert isinstance(metadata["Timestamp"], int)  # epoch milliseconds
    assert abs(metadata["Timestamp"] - time.time() * 1000) < 60_000
    extracted = {}
    for directive in metadata["CloudWatchMetrics"]:
        assert isinstance(directive["Namespace"], str) and 0 < len(directive["Namespace"]) <= 255
        for dimension_set in directive["Dimensions"]:
            assert 0 < len(dimension_set) <= 30
            for dimension in dimension_set:  # each names a root member holding a string
                assert isinstance(document[dimension], str) and document[dimension]
        assert 0 < len(directive["Metrics"]) <= 100
        for metric in directive["Metrics"]:
            assert set(metric) <= {"Name", "Unit", "StorageResolution"}
            assert metric.get("Unit", "None") in UNITS
            value = document[metric["Name"]]  # each names a root member holding a number
            assert isinstance(value, int | float) and not isinstance(value, bool)
            extracted[metric["Name"]] = value
    return extracted


def check_event(master_arn: str, **overrides: object) -> dict[str, Any]:
    """What the Data stack's EventBridge schedule sends."""
    return {**guarantee_event("Check", master_arn, environment="staging"), **overrides}


def emitted(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def test_a_clean_database_reports_zero_findings_as_a_metric(
        postgres: PostgresServer, aws: Secrets, role_passwords: dict[str, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    database = bootstrapped_database(postgres, role_passwords)
    master = aws.master(**master_values(postgres, database))
    response = handler.on_event(check_event(master))
    assert response == {"Environment": "staging",
                        "SchemaVersion": str(bootstrap.LATEST_VERSION), "Findings": []}
    [line] = [line for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf_metrics(line) == {scheduled_check.METRIC_NAME: 0}
    document = json.loads(line)
    assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == scheduled_check.METRIC_NAMESPACE
    assert document["Environment"] == "staging" and document["Findings"] == []


def test_drift_is_counted_and_named_and_nothing_changes(
        postgres: PostgresServer, aws: Secrets, role_passwords: dict[str, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    database = bootstrapped_database(postgres, role_passwords)
    late_table_drift(postgres, database)
    before = state(postgres, database)
    response = handler.on_event(check_event(aws.master(**master_values(postgres, database))))
    assert response["Findings"] == LATE_TABLE_FOUND
    out = capsys.readouterr().out
    [document] = emitted(out)
    assert document[scheduled_check.METRIC_NAME] == 2 and document["Findings"] == LATE_TABLE_FOUND
    assert state(postgres, database) == before
    assert postgres.password not in out and role_passwords["app_user"] not in out


def test_the_metric_counts_every_finding_and_the_first_50_are_named(
        postgres: PostgresServer, aws: Secrets, role_passwords: dict[str, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    # A log line and a response have a size limit, the alarm's count does not: 60 tenant
    # tables made by boom_owner while the event trigger was off, a finding each.
    database = bootstrapped_database(postgres, role_passwords)
    admin = postgres.connect(database)
    try:
        with trigger_off(admin):
            admin.run("SET ROLE boom_owner")
            for number in range(60):
                admin.run(f"CREATE TABLE app.late_{number:02} (id int, tenant_id uuid)")
            admin.run("RESET ROLE")
    finally:
        admin.close()
    response = handler.on_event(check_event(aws.master(**master_values(postgres, database))))
    [document] = emitted(capsys.readouterr().out)
    assert document[scheduled_check.METRIC_NAME] == 60
    assert document["Findings"] == response["Findings"]
    assert len(response["Findings"]) == scheduled_check.MAX_LOGGED_FINDINGS == 50
    assert sorted(response["Findings"]) == [f"would restore: app.late_{number:02} protected"
                                            for number in range(50)]


def test_a_server_without_pg_cron_is_a_finding_where_the_schedule_requires_it(
        postgres: PostgresServer, aws: Secrets, role_passwords: dict[str, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    # The Data stack's schedule says the parameter group loads pg_cron; this server does not
    # (as an instance whose new parameter group waits for a reboot): nothing ends stuck
    # app_user backends. Where pg_cron runs, test_stuck_app_user_backends.py finds nothing.
    database = bootstrapped_database(postgres, role_passwords)
    master = aws.master(**master_values(postgres, database))
    response = handler.on_event(check_event(master, RequirePgCron=True))
    assert response["Findings"] == [bootstrap.PG_CRON_NOT_LOADED]
    [document] = emitted(capsys.readouterr().out)
    assert document[scheduled_check.METRIC_NAME] == 1
    assert handler.on_event(check_event(master, RequirePgCron=False))["Findings"] == []


def test_a_check_with_no_time_left_before_lambdas_timeout_says_so_as_a_finding(
        postgres: PostgresServer, aws: Secrets, role_passwords: dict[str, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    # Lambda's remaining time already inside the handler's margin: the check starts no
    # statement it could not finish, and says why, in the metric and the invocation's error.
    master = aws.master(**master_values(postgres, bootstrapped_database(postgres,
                                                                        role_passwords)))
    context = LambdaContext(int((handler.DEADLINE_MARGIN_SECONDS - 1) * 1000))
    with pytest.raises(bootstrap.BootstrapError, match="^check failed, nothing was changed: "
                       "the check would not have ended before the Lambda's timeout"):
        handler.on_event(check_event(master), context)
    [document] = emitted(capsys.readouterr().out)
    assert emf_metrics(json.dumps(document)) == {scheduled_check.METRIC_NAME: 1}
    [finding] = document["Findings"]
    assert finding.startswith("could not check: check failed, nothing was changed: the check "
                              "would not have ended")


@pytest.mark.parametrize("problem", ["unreachable", "wrong password"])
def test_a_check_that_cannot_run_counts_as_a_finding_and_fails(
        postgres: PostgresServer, aws: Secrets, role_passwords: dict[str, str],
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        problem: str) -> None:
    # Silence would look like a clean database: a check that cannot run says so, in the
    # metric the alarm watches, and the invocation fails (Lambda's Errors metric).
    monkeypatch.setattr(master_secret, "PASSWORD_ATTEMPTS", 1)
    database = bootstrapped_database(postgres, role_passwords)
    broken = ({"port": free_port()} if problem == "unreachable"
              else {"password": "not-the-master-password"})
    master = aws.master(**master_values(postgres, database, **broken))
    with pytest.raises(bootstrap.BootstrapError, match="cannot connect to postgres@127.0.0.1"):
        handler.on_event(check_event(master))
    out = capsys.readouterr().out
    [document] = emitted(out)
    assert emf_metrics(json.dumps(document)) == {scheduled_check.METRIC_NAME: 1}
    [finding] = document["Findings"]
    assert finding.startswith("could not check: cannot connect to postgres@127.0.0.1")
    assert "not-the-master-password" not in out


@pytest.mark.usefixtures("role_passwords_back")
def test_a_rotation_stopped_midway_is_a_finding_until_it_ends(
        postgres: PostgresServer, aws: Secrets, role_passwords: dict[str, str],
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Runs leave boom_owner's password alone while its secret is mid-rotation, and Secrets
    # Manager starts no other rotation: one whose step failed would stay so, unseen.
    database = bootstrapped_database(postgres, role_passwords)
    master = aws.master(**master_values(postgres, database))
    monkeypatch.setenv(rotation.MASTER_SECRET_VARIABLE, master)
    token = aws.start_rotation(aws.owner)
    handler.on_event({"Step": "createSecret", "SecretId": aws.owner, "ClientRequestToken": token})
    event = check_event(master, OwnerSecretArn=aws.owner)
    assert handler.on_event(event)["Findings"] == []  # under STUCK_AFTER: still rotating
    monkeypatch.setattr(rotation, "STUCK_AFTER", timedelta(0))
    [finding] = handler.on_event(event)["Findings"]
    assert finding.startswith("boom_owner's password rotation begun ")
    assert f"(version {token} is still AWSPENDING): a step failed" in finding
    assert (f"--secret-id {aws.owner} --version-stage AWSPENDING --remove-from-version-id "
            f"{token}`, then `aws secretsmanager rotate-secret --secret-id {aws.owner}`") in finding
    assert [d[scheduled_check.METRIC_NAME] for d in emitted(capsys.readouterr().out)] == [0, 1]
    for step in ("setSecret", "testSecret", "finishSecret"):
        handler.on_event({"Step": step, "SecretId": aws.owner, "ClientRequestToken": token})
    assert handler.on_event(event)["Findings"] == []


@pytest.mark.parametrize(("action", "finding", "master_too"), [
    ("ListSecretVersionIds", "could not check {role}'s password rotation: {arn}: cannot list "
                             "the secret's versions (", True),
    ("DescribeSecret", "could not check that {role} logs in with its secret's password: "
                       "{field} {arn}: cannot describe the secret (", False),
], ids=["ListSecretVersionIds", "DescribeSecret"])
def test_a_role_secret_the_function_may_not_read_is_a_finding_and_the_rest_is_checked(
        postgres: PostgresServer, aws: Secrets, role_passwords: dict[str, str],
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, action: str,
        finding: str, master_too: bool) -> None:
    # The function's role lacks one permission on the secrets (a policy edited by hand, say):
    # each secret it cannot read is a finding that says which and why, and the database is
    # checked all the same (its drift is reported beside them). The master secret's versions
    # are listed too (its rotation), after it logged in.
    database = bootstrapped_database(postgres, role_passwords)
    late_table_drift(postgres, database)
    master = aws.master(**master_values(postgres, database))
    event = guarantee_event("Check", master, aws, environment="staging")
    with denied(monkeypatch, action):
        response = handler.on_event(event)
    assert response["Findings"][:2] == LATE_TABLE_FOUND
    unread = response["Findings"][2:]
    secrets = [("postgres", master)] if master_too else []
    secrets += [("app_user", aws.app_user), ("boom_owner", aws.owner)]
    assert len(unread) == len(secrets)
    for (role, arn), said in zip(secrets, unread, strict=True):
        field = role_secrets.ROLE_FIELDS.get(role)
        assert said.startswith(finding.format(role=role, arn=arn, field=field))
        assert "AccessDenied" in said and f"secretsmanager:{action}" in said
    [document] = emitted(capsys.readouterr().out)
    assert document[scheduled_check.METRIC_NAME] == 2 + len(secrets) and \
        document["Findings"] == response["Findings"]
    # Allowed again, the same check finds the database's drift alone.
    assert handler.on_event(event)["Findings"] == LATE_TABLE_FOUND


def test_a_check_beside_a_bootstrap_run_emits_no_metric(
        postgres: PostgresServer, aws: Secrets, role_passwords: dict[str, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    # A deploy in progress is neither a finding nor a clean bill: the alarm counts the
    # missing datapoint as missing.
    database = bootstrapped_database(postgres, role_passwords)
    with bootstrap_run_in_progress(postgres, database):
        response = handler.on_event(check_event(aws.master(**master_values(postgres,
                                                                           database))))
    assert response["Skipped"].startswith("check skipped: a bootstrap run, or a rotation's "
                                          "setSecret, is in progress")
    assert emitted(capsys.readouterr().out) == []


@pytest.mark.parametrize(("event", "message"), [
    ({"Check": "everything"},
     "Check 'everything': the TenantGuaranteeCheck construct's schedule sends"),
    ({"Check": scheduled_check.CHECK, "Environment": "dev"},
     "the check event lacks MasterSecretArn"),
    ({"Check": scheduled_check.CHECK, "MasterSecretArn": "arn", "Environment": ""},
     "the check event lacks Environment"),
    ({"Check": scheduled_check.CHECK, "MasterSecretArn": "arn", "Environment": "dev",
      "RequirePgCron": "yes"}, "RequirePgCron 'yes': expected true or false"),
    ({"Check": scheduled_check.CHECK, "MasterSecretArn": "arn", "Environment": "dev",
      "OwnerSecretArn": ""}, "OwnerSecretArn '': expected the ARN of boom_owner's secret"),
])
def test_a_malformed_check_event_is_refused_by_name_before_connecting(
        aws: Secrets, capsys: pytest.CaptureFixture[str], event: dict[str, Any],
        message: str) -> None:
    with pytest.raises(bootstrap.BootstrapError, match=message):
        handler.on_event(event)
    assert emitted(capsys.readouterr().out) == []


def test_a_field_the_check_does_not_read_is_warned_of_and_the_check_runs(
        postgres: PostgresServer, aws: Secrets, role_passwords: dict[str, str],
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    # Not refused: mid-deploy, the schedule may send a newer template's event to the old code.
    database = bootstrapped_database(postgres, role_passwords)
    master = aws.master(**master_values(postgres, database))
    with caplog.at_level(logging.WARNING):
        response = handler.on_event(check_event(master, OwnerSecretARN="arn:owner"))
    assert response["Findings"] == []
    [line] = emitted(capsys.readouterr().out)
    assert emf_metrics(json.dumps(line)) == {scheduled_check.METRIC_NAME: 0}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "the check event's field 'OwnerSecretARN' (did you mean OwnerSecretArn?) is not one it "
        "reads: ignored"]


def test_the_format_check_fails_on_a_line_cloudwatch_would_not_extract() -> None:
    good = {"_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [
        {"Namespace": "N", "Dimensions": [["Environment"]],
         "Metrics": [{"Name": "M", "Unit": "Count"}]}]}, "Environment": "dev", "M": 1}
    assert emf_metrics(json.dumps(good)) == {"M": 1}
    for broken in ({**good, "M": "1"}, {**good, "Environment": 3},
                   {key: value for key, value in good.items() if key != "M"}):
        with pytest.raises((AssertionError, KeyError)):
            emf_metrics(json.dumps(broken))
