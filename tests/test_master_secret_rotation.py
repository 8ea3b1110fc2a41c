"""The master secret's rotation by the bootstrap function (rotation.py), single-user: the
master sets its own password. moto's Secrets Manager starts each rotation as RotateSecret
does, the test sends the handler the four steps, and the real PostgreSQL 15 says which
password the master logs in with. The master is a role of the test's own (own_master).

What matters beyond the four steps: the database is never sent the password, so no log line
can hold it (with a negative control: the statement AWS's rotation function sends puts it in
the log); a retried setSecret finds the password already set; and a bootstrap run, a check or
a repair logs in with the pending password while the rotation is between setSecret and
finishSecret, or stopped there, which the check reports; and every secret read names the
version it means, since moto and AWS disagree on what a read naming none returns.
"""

from __future__ import annotations

import json
import logging
import secrets
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pg8000.native
import pytest

from lambdas.tenant_bootstrap import bootstrap, handler, master_secret, rotation
from tests.fixture_bootstrap import schema_dump
from tests.fixture_postgres import PostgresServer, logs_in
from tests.fixture_secrets import (
    OwnMaster,
    Secrets,
    guarantee_event,
    resource_event,
    rotate,
    step,
)


def deploy(aws: Secrets, master: OwnMaster, request: str = "Update") -> dict[str, Any]:
    return handler.on_event(resource_event(request, aws, master.arn,
                                           PhysicalResourceId="tenant-bootstrap"))


@pytest.fixture
def bootstrapped(aws: Secrets, own_master: OwnMaster) -> OwnMaster:
    """own_master's database, bootstrapped by the handler as a deploy's Create does."""
    deploy(aws, own_master, "Create")
    return own_master


@pytest.fixture
def statements_logged(postgres: PostgresServer, own_master: OwnMaster) -> int:
    """Every statement the master runs from now on is logged with its text (what a failed or
    slow one would be); the server log's size before."""
    conn = postgres.connect()
    try:
        conn.run(f"ALTER ROLE {own_master.user} SET log_statement = 'all'")
    finally:
        conn.close()
    return server_log(postgres).stat().st_size


def server_log(postgres: PostgresServer) -> Path:
    return postgres.root / "postgres.log"


def logged_since(postgres: PostgresServer, start: int) -> str:
    return server_log(postgres).read_bytes()[start:].decode(errors="replace")


def test_a_rotation_gives_the_master_a_new_password_and_changes_nothing_else(
        postgres: PostgresServer, aws: Secrets, bootstrapped: OwnMaster,
        role_passwords: dict[str, str]) -> None:
    master = bootstrapped
    old = aws.current(master.arn)
    old_version = next(iter(aws.stages(master.arn)))
    schema = schema_dump(postgres, master.database)
    token = aws.start_rotation(master.arn)
    rotate(master.arn, token)
    new = aws.current(master.arn)
    # The same secret (host, port, database, user), a new 32-character password
    assert {**new, "password": old["password"]} == old
    assert new["password"] != old["password"]
    assert len(new["password"]) == rotation.PASSWORD_LENGTH
    assert set(new["password"]) <= set(string.ascii_letters + string.digits)
    assert aws.stages(master.arn) == {token: ["AWSCURRENT"], old_version: ["AWSPREVIOUS"]}
    assert logs_in(postgres, master.database, master.user, new["password"])
    assert not logs_in(postgres, master.database, master.user, old["password"])
    assert logs_in(postgres, master.database, "boom_owner", role_passwords["boom_owner"])
    assert schema_dump(postgres, master.database) == schema
    # The next deploy logs in with the new password, as the secret now holds it.
    assert deploy(aws, master)["Data"]["SchemaVersion"] == str(bootstrap.LATEST_VERSION)


def test_the_database_is_sent_a_verifier_never_the_password(
        postgres: PostgresServer, aws: Secrets, bootstrapped: OwnMaster,
        statements_logged: int) -> None:
    master = bootstrapped
    rotate(master.arn, aws.start_rotation(master.arn))
    new = aws.current(master.arn)["password"]
    log = logged_since(postgres, statements_logged)
    # The statement that set it was logged, with the verifier in its text: a salted hash of
    # 32 random characters, which gives no way back to them
    assert f"ALTER ROLE \"{master.user}\" PASSWORD 'SCRAM-SHA-256$4096:" in log
    assert new not in log


def test_control_the_statement_aws_rotation_function_sends_logs_the_password(
        postgres: PostgresServer, own_master: OwnMaster, statements_logged: int) -> None:
    # AWS's single-user function formats the password into `ALTER USER ... WITH PASSWORD`
    # on the client (its driver binds no parameters in utility statements).
    password = secrets.token_urlsafe(24)
    conn = postgres.connect(own_master.database, user=own_master.user,
                            password=own_master.password, tls=True)
    try:
        conn.run(f"ALTER USER {own_master.user} WITH PASSWORD "
                 f"{pg8000.native.literal(password)}")
    finally:
        conn.close()
    assert password in logged_since(postgres, statements_logged)


def test_the_master_secret_is_known_by_another_form_of_its_arn_too(
        postgres: PostgresServer, aws: Secrets, bootstrapped: OwnMaster,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Secrets Manager's events name the secret by its full ARN; the environment's value is
    # CloudFormation's Ref of the attachment. Given the secret's name there instead, the
    # master's rotation is still the master's (not refused as "not boom_owner's").
    master = bootstrapped
    name = aws.client.describe_secret(SecretId=master.arn)["Name"]
    monkeypatch.setenv(rotation.MASTER_SECRET_VARIABLE, name)
    rotate(master.arn, aws.start_rotation(master.arn))
    assert logs_in(postgres, master.database, master.user, aws.current(master.arn)["password"])


def test_every_step_can_be_retried(postgres: PostgresServer, aws: Secrets,
                                   bootstrapped: OwnMaster,
                                   caplog: pytest.LogCaptureFixture) -> None:
    master = bootstrapped
    token = aws.start_rotation(master.arn)
    step("createSecret", master.arn, token)
    pending = aws.client.get_secret_value(SecretId=master.arn, VersionStage="AWSPENDING")
    step("createSecret", master.arn, token)  # keeps the password it made
    assert aws.client.get_secret_value(SecretId=master.arn, VersionStage="AWSPENDING")[
        "SecretString"] == pending["SecretString"]
    step("setSecret", master.arn, token)
    # A retry (the first try's reply lost, say): the current password is refused now, the
    # pending one logs in, so the password is set already.
    with caplog.at_level(logging.INFO):
        assert step("setSecret", master.arn, token) == {"Step": "setSecret", "Done": "ok"}
    assert "the master already logs in with version" in caplog.text
    for name in ("testSecret", "testSecret", "finishSecret"):
        assert step(name, master.arn, token) == {"Step": name, "Done": "ok"}
    assert step("finishSecret", master.arn, token)["Done"] == "already current"
    assert logs_in(postgres, master.database, master.user, aws.current(master.arn)["password"])


def test_a_second_rotation_follows_the_first(postgres: PostgresServer, aws: Secrets,
                                             bootstrapped: OwnMaster) -> None:
    master = bootstrapped
    first = aws.start_rotation(master.arn)
    rotate(master.arn, first)
    between = aws.current(master.arn)["password"]
    second = aws.start_rotation(master.arn)
    rotate(master.arn, second)
    assert aws.stages(master.arn) == {second: ["AWSCURRENT"], first: ["AWSPREVIOUS"]}
    assert logs_in(postgres, master.database, master.user, aws.current(master.arn)["password"])
    assert not logs_in(postgres, master.database, master.user, between)


def midway(aws: Secrets, master: OwnMaster) -> str:
    """A rotation of the master secret begun and its password set, not yet finished."""
    token = aws.start_rotation(master.arn)
    rotate(master.arn, token, ("createSecret", "setSecret"))
    return token


def test_runs_between_setSecret_and_finishSecret_log_in_with_the_pending_password(
        postgres: PostgresServer, aws: Secrets, bootstrapped: OwnMaster,
        caplog: pytest.LogCaptureFixture) -> None:
    master = bootstrapped
    token = midway(aws, master)
    # The current version's password is refused now; a deploy, a check and a repair go on.
    assert not logs_in(postgres, master.database, master.user, aws.current(master.arn)[
        "password"])
    with caplog.at_level(logging.WARNING):
        assert deploy(aws, master)["Data"]["SchemaVersion"] == str(bootstrap.LATEST_VERSION)
    assert "the secret is mid-rotation, and its pending password logs in" in caplog.text
    assert handler.on_event(guarantee_event("Check", master.arn, aws))["Findings"] == []
    assert "Repaired" in handler.on_event(guarantee_event("Repair", master.arn, aws))
    rotate(master.arn, token, ("testSecret", "finishSecret"))
    assert deploy(aws, master)["Data"]["SchemaVersion"] == str(bootstrap.LATEST_VERSION)


def test_negative_control_without_the_pending_password_such_a_run_fails(
        aws: Secrets, bootstrapped: OwnMaster, monkeypatch: pytest.MonkeyPatch) -> None:
    midway(aws, bootstrapped)
    monkeypatch.setattr(master_secret, "_pending_password", lambda *_: None)
    with pytest.raises(bootstrap.BootstrapError, match="password authentication failed"):
        deploy(aws, bootstrapped)


@pytest.fixture
def secret_reads() -> Iterator[list[dict[str, Any]]]:
    """The parameters of every GetSecretValue call made by a client created from now on (the
    code's own, from boto3's default session, whose event handlers each new client copies)."""
    reads: list[dict[str, Any]] = []
    events = boto3._get_default_session().events  # what boto3.client() uses; no public getter
    hook = "before-parameter-build.secrets-manager.GetSecretValue"

    def record(params: dict[str, Any], **_: Any) -> None:
        reads.append(dict(params))

    events.register(hook, record, unique_id="test-secret-reads")
    yield reads
    events.unregister(hook, unique_id="test-secret-reads")


def test_every_secret_read_names_the_version_it_means(aws: Secrets, bootstrapped: OwnMaster,
                                                      secret_reads: list[dict[str, Any]]) -> None:
    # A read that names no version gets AWSCURRENT from AWS, and, mid-rotation, the pending
    # version from moto (its RotateSecret makes that the default). The tests above run on
    # moto's meaning alone: a pending-password read that named no version would read the
    # current password in AWS, and the run would fail where these tests pass.
    token = midway(aws, bootstrapped)
    deploy(aws, bootstrapped)
    handler.on_event(guarantee_event("Check", bootstrapped.arn, aws))
    handler.on_event(guarantee_event("Repair", bootstrapped.arn, aws))
    rotate(bootstrapped.arn, token, ("testSecret", "finishSecret"))
    unnamed = [read for read in secret_reads
               if not read.get("VersionStage") and not read.get("VersionId")]
    assert unnamed == []
    # The deploy, check and repair each read the master's pending password.
    assert sum(read == {"SecretId": bootstrapped.arn, "VersionStage": "AWSPENDING"}
               for read in secret_reads) >= 3


def test_a_master_rotation_stopped_after_setSecret_is_a_finding_naming_how_to_finish_it(
        postgres: PostgresServer, aws: Secrets, bootstrapped: OwnMaster,
        monkeypatch: pytest.MonkeyPatch) -> None:
    master = bootstrapped
    current = next(iter(aws.stages(master.arn)))
    token = midway(aws, master)
    check = guarantee_event("Check", master.arn, aws)
    assert handler.on_event(check)["Findings"] == []  # under STUCK_AFTER: still rotating
    monkeypatch.setattr(rotation, "STUCK_AFTER", rotation.STUCK_AFTER * 0)
    [finding] = handler.on_event(check)["Findings"]
    assert finding.startswith(f"{master.user}'s password rotation begun ")
    assert f"(version {token} is still AWSPENDING)" in finding
    assert f"{master.user} logs in only with the pending password (setSecret ran)" in finding
    # No run sets the master's password, so removing the label would leave the secret with a
    # password the database refuses: the finding says to finish the rotation instead.
    assert "rotate-secret" not in finding
    move = (f"--version-stage AWSCURRENT --move-to-version-id {token} "
            f"--remove-from-version-id {current}`")
    remove = f"--version-stage AWSPENDING --remove-from-version-id {token}`"
    assert move in finding and remove in finding
    # The commands it names, as the CLI sends them
    aws.client.update_secret_version_stage(SecretId=master.arn, VersionStage="AWSCURRENT",
                                           MoveToVersionId=token, RemoveFromVersionId=current)
    aws.client.update_secret_version_stage(SecretId=master.arn, VersionStage="AWSPENDING",
                                           RemoveFromVersionId=token)
    assert handler.on_event(check)["Findings"] == []
    assert logs_in(postgres, master.database, master.user, aws.current(master.arn)["password"])


def test_a_master_rotation_stopped_before_setSecret_is_ended_as_the_finding_says(
        postgres: PostgresServer, aws: Secrets, bootstrapped: OwnMaster,
        monkeypatch: pytest.MonkeyPatch) -> None:
    master = bootstrapped
    token = aws.start_rotation(master.arn)
    step("createSecret", master.arn, token)  # then setSecret failed, say
    monkeypatch.setattr(rotation, "STUCK_AFTER", rotation.STUCK_AFTER * 0)
    check = guarantee_event("Check", master.arn, aws)
    [finding] = handler.on_event(check)["Findings"]
    assert f"--version-stage AWSPENDING --remove-from-version-id {token}`, then `aws " \
        f"secretsmanager rotate-secret --secret-id {master.arn}`" in finding
    aws.client.update_secret_version_stage(SecretId=master.arn, VersionStage="AWSPENDING",
                                           RemoveFromVersionId=token)
    assert handler.on_event(check)["Findings"] == []
    rotate(master.arn, aws.start_rotation(master.arn))
    assert logs_in(postgres, master.database, master.user, aws.current(master.arn)["password"])
    assert not logs_in(postgres, master.database, master.user, master.password)


def test_a_pending_version_for_another_user_is_refused_and_changes_nothing(
        postgres: PostgresServer, aws: Secrets, bootstrapped: OwnMaster) -> None:
    master = bootstrapped
    old = aws.current(master.arn)
    token = aws.start_rotation(master.arn)
    aws.client.put_secret_value(SecretId=master.arn, ClientRequestToken=token,
                                SecretString=json.dumps({**old, "username": "boom_owner",
                                                         "password": "b" * 32}),
                                VersionStages=["AWSPENDING"])
    with pytest.raises(bootstrap.BootstrapError, match=f"the pending version's username is "
                       f"not {master.user}; this function rotates only boom_owner's secret "
                       "and the master secret"):
        step("createSecret", master.arn, token)
    assert aws.current(master.arn) == old
    assert logs_in(postgres, master.database, master.user, old["password"])


@pytest.mark.parametrize("username", [None, "", 5], ids=["missing", "empty", "a number"])
def test_a_master_secret_without_a_username_is_refused_by_name_and_changes_nothing(
        postgres: PostgresServer, aws: Secrets, bootstrapped: OwnMaster,
        username: object) -> None:
    # The function tells the master's secret from boom_owner's by its ARN and takes the role
    # to rotate from its username: without one it has no role to set a password for.
    master = bootstrapped
    old = aws.current(master.arn)
    values = {key: value for key, value in old.items() if key != "username"}
    if username is not None:
        values["username"] = username
    aws.client.put_secret_value(SecretId=master.arn, SecretString=json.dumps(values))
    token = aws.start_rotation(master.arn)
    with pytest.raises(bootstrap.BootstrapError, match="the master secret's current version has "
                       "no username; point the rotation at the RDS instance's attached master "
                       "secret"):
        step("createSecret", master.arn, token)
    assert aws.current(master.arn) == values
    assert logs_in(postgres, master.database, master.user, old["password"])


def test_no_password_reaches_a_response_an_error_or_a_log_line(
        aws: Secrets, bootstrapped: OwnMaster, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    master = bootstrapped
    token = aws.start_rotation(master.arn)
    said: list[str] = []
    # At the function's level (INFO); botocore's DEBUG lines carry the API's bodies whole.
    with caplog.at_level(logging.INFO):
        for name in ("createSecret", "setSecret", "setSecret", "testSecret"):
            said.append(json.dumps(step(name, master.arn, token)))
        said.append(json.dumps(deploy(aws, master)))  # mid-rotation: the pending password
        step("finishSecret", master.arn, token)
    said += [caplog.text, *capsys.readouterr()]
    assert "setSecret" in caplog.text and token in caplog.text  # the steps' output was captured
    passwords = [json.loads(aws.client.get_secret_value(SecretId=master.arn, VersionId=version)[
        "SecretString"])["password"] for version in aws.stages(master.arn)]
    assert len(passwords) == 2 and master.password in passwords
    assert not [p for p in passwords if any(p in text for text in said)]


@pytest.mark.usefixtures("role_passwords_back")
def test_both_secrets_rotating_at_once_both_end(postgres: PostgresServer, aws: Secrets,
                                                bootstrapped: OwnMaster) -> None:
    # Both schedules are made by the same deploy, and each rotates at once: boom_owner's
    # setSecret logs in as the master while the master's rotation is between its setSecret
    # and finishSecret.
    master = bootstrapped
    owner_token = aws.start_rotation(aws.owner)
    master_token = aws.start_rotation(master.arn)
    step("createSecret", aws.owner, owner_token)
    rotate(master.arn, master_token, ("createSecret", "setSecret"))
    step("setSecret", aws.owner, owner_token)  # as the master, with its pending password
    rotate(master.arn, master_token, ("testSecret", "finishSecret"))
    rotate(aws.owner, owner_token, ("testSecret", "finishSecret"))
    for role, arn in ((master.user, master.arn), ("boom_owner", aws.owner)):
        assert rotation.pending_version(aws.client, arn, "SecretId") is None
        assert logs_in(postgres, master.database, role, aws.current(arn)["password"])
