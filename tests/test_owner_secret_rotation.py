"""boom_owner's password rotation (rotation.py): moto's Secrets Manager starts each rotation
as RotateSecret does, the test sends the handler Secrets Manager's four steps in order, and the
real PostgreSQL 15 says which password boom_owner logs in with.

What matters beyond the four steps: a deploy's bootstrap run in the middle of a rotation
leaves the pending password alone (with a negative control: without that, the run undoes it
and testSecret fails), the run reads the secrets only once it holds the lock setSecret takes,
bad events change nothing, and no password ever reaches a log, a response or an error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import string
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

import pg8000.native
import pytest

from lambdas.tenant_bootstrap import bootstrap, handler, role_secrets, rotation
from lambdas.tenant_bootstrap.connection import Connection
from tests.fixture_bootstrap import bootstrap_run_in_progress, schema_dump
from tests.fixture_lambda import LambdaContext
from tests.fixture_network import silent
from tests.fixture_postgres import PostgresServer, logs_in
from tests.fixture_secrets import ROTATION_TOKEN, Secrets, master_values, rotate, step
from tests.fixture_secrets import resource_event as event


@dataclass(frozen=True)
class Rotating:
    database: str
    master: str  # the master secret's ARN


@pytest.fixture
def rotating(postgres: PostgresServer, aws: Secrets, role_passwords_back: None,
             monkeypatch: pytest.MonkeyPatch) -> Rotating:
    """A database bootstrapped by the handler, the function's environment as the construct
    sets it. Roles are cluster-wide: both passwords are given back afterwards."""
    database = postgres.create_database()
    master = aws.master(**master_values(postgres, database))
    monkeypatch.setenv(rotation.MASTER_SECRET_VARIABLE, master)
    handler.on_event(event("Create", aws, master))
    return Rotating(database, master)


def midway(aws: Secrets) -> str:
    """A rotation of boom_owner's secret begun and its password set (createSecret,
    setSecret), not yet tested or finished; its token."""
    token = aws.start_rotation(aws.owner)
    rotate(aws.owner, token, ("createSecret", "setSecret"))
    return token


def test_a_rotation_gives_boom_owner_a_new_password_and_changes_nothing_else(
        postgres: PostgresServer, aws: Secrets, rotating: Rotating,
        role_passwords: dict[str, str]) -> None:
    old = aws.current(aws.owner)
    old_version = next(iter(aws.stages(aws.owner)))
    schema = schema_dump(postgres, rotating.database)
    token = aws.start_rotation(aws.owner)
    rotate(aws.owner, token)
    new = aws.current(aws.owner)
    assert new["username"] == "boom_owner" and new["password"] != old["password"]
    assert len(new["password"]) == 32  # as the construct's generated secrets
    assert set(new["password"]) <= set(string.ascii_letters + string.digits)
    # Finished: the new version current, the old one previous, no rotation left pending.
    assert aws.stages(aws.owner) == {token: ["AWSCURRENT"], old_version: ["AWSPREVIOUS"]}
    assert rotation.pending_version(aws.client, aws.owner, "OwnerSecretArn") is None
    assert logs_in(postgres, rotating.database, "boom_owner", new["password"])
    assert not logs_in(postgres, rotating.database, "boom_owner", old["password"])
    assert logs_in(postgres, rotating.database, "app_user", role_passwords["app_user"])
    assert schema_dump(postgres, rotating.database) == schema


def test_a_rotation_is_reported_stuck_once_it_is_more_than_an_hour_old(
        aws: Secrets, rotating: Rotating, monkeypatch: pytest.MonkeyPatch) -> None:
    # The four steps take seconds; the README promises the check reports a rotation begun
    # more than an hour ago, and nothing sooner (a rotation in progress is no finding).
    token = midway(aws)
    [begun] = [version["CreatedDate"] for version in
               aws.client.list_secret_version_ids(SecretId=aws.owner)["Versions"]
               if version["VersionId"] == token]

    def findings_at(moment: datetime) -> list[str]:
        class Clock(datetime):
            @classmethod
            def now(cls, tz: tzinfo | None = None) -> Clock:
                return cls.fromtimestamp(moment.timestamp(), tz)
        monkeypatch.setattr(rotation, "datetime", Clock)
        return rotation.stuck_rotation(aws.client, aws.owner, "boom_owner")

    assert findings_at(begun + timedelta(minutes=1)) == []
    assert findings_at(begun + timedelta(hours=1)) == []
    [finding] = findings_at(begun + timedelta(hours=1, seconds=1))
    assert finding.startswith("boom_owner's password rotation begun ")
    assert f"(version {token} is still AWSPENDING)" in finding


def test_every_step_can_be_retried(postgres: PostgresServer, aws: Secrets,
                                   rotating: Rotating) -> None:
    token = aws.start_rotation(aws.owner)
    step("createSecret", aws.owner, token)
    pending = aws.client.get_secret_value(SecretId=aws.owner, VersionStage="AWSPENDING")
    step("createSecret", aws.owner, token)  # keeps the password it made
    assert aws.client.get_secret_value(SecretId=aws.owner, VersionStage="AWSPENDING")[
        "SecretString"] == pending["SecretString"]
    for name in ("setSecret", "setSecret", "testSecret", "testSecret", "finishSecret"):
        assert step(name, aws.owner, token) == {"Step": name, "Done": "ok"}
    assert step("finishSecret", aws.owner, token) == {"Step": "finishSecret",
                                                      "Done": "already current"}
    assert aws.stages(aws.owner)[token] == ["AWSCURRENT"]
    assert logs_in(postgres, rotating.database, "boom_owner", aws.current(aws.owner)["password"])


def test_the_steps_spelt_as_the_user_guide_lists_them_work_too(
        postgres: PostgresServer, aws: Secrets, rotating: Rotating) -> None:
    token = aws.start_rotation(aws.owner)
    for name in ("create_secret", "set_secret", "test_secret", "finish_secret"):
        assert step(name, aws.owner, token)["Done"] == "ok"
    assert aws.stages(aws.owner)[token] == ["AWSCURRENT"]
    assert logs_in(postgres, rotating.database, "boom_owner", aws.current(aws.owner)["password"])


def test_a_second_rotation_follows_the_first(postgres: PostgresServer, aws: Secrets,
                                             rotating: Rotating) -> None:
    first = aws.start_rotation(aws.owner)
    rotate(aws.owner, first)
    between = aws.current(aws.owner)["password"]
    second = aws.start_rotation(aws.owner)
    rotate(aws.owner, second)
    assert aws.stages(aws.owner) == {second: ["AWSCURRENT"], first: ["AWSPREVIOUS"]}
    assert logs_in(postgres, rotating.database, "boom_owner", aws.current(aws.owner)["password"])
    assert not logs_in(postgres, rotating.database, "boom_owner", between)


def a_deploy(aws: Secrets, rotating: Rotating) -> dict[str, Any]:
    return handler.on_event(event("Update", aws, rotating.master,
                                  PhysicalResourceId="tenant-bootstrap"))


def test_a_deploy_mid_rotation_leaves_the_pending_password_alone(
        postgres: PostgresServer, aws: Secrets, rotating: Rotating,
        caplog: pytest.LogCaptureFixture) -> None:
    token = midway(aws)
    # The same run still sets app_user's password from its secret.
    new_app_user = rotation.new_password()
    aws.client.put_secret_value(SecretId=aws.app_user, SecretString=(
        f'{{"username": "app_user", "password": "{new_app_user}"}}'))
    with caplog.at_level(logging.WARNING):
        a_deploy(aws, rotating)
    assert f"boom_owner's secret is mid-rotation (version {token} is AWSPENDING)" in caplog.text
    assert logs_in(postgres, rotating.database, "app_user", new_app_user)
    rotate(aws.owner, token, ("testSecret", "finishSecret"))
    assert logs_in(postgres, rotating.database, "boom_owner", aws.current(aws.owner)["password"])
    # Once the rotation has ended, a run sets boom_owner's password again.
    a_deploy(aws, rotating)
    assert logs_in(postgres, rotating.database, "boom_owner", aws.current(aws.owner)["password"])


def test_negative_control_a_run_that_ignored_the_rotation_would_undo_it(
        postgres: PostgresServer, aws: Secrets, rotating: Rotating,
        monkeypatch: pytest.MonkeyPatch) -> None:
    old = aws.current(aws.owner)["password"]
    token = midway(aws)
    monkeypatch.setattr(role_secrets, "pending_version", lambda *_: None)
    a_deploy(aws, rotating)
    with pytest.raises(bootstrap.BootstrapError, match="testSecret of .*: cannot connect to "
                       "boom_owner@.*password authentication failed"):
        step("testSecret", aws.owner, token)
    assert logs_in(postgres, rotating.database, "boom_owner", old)


def test_deploys_racing_rotations_leave_the_password_the_secret_holds(
        postgres: PostgresServer, aws: Secrets, rotating: Rotating) -> None:
    """Deploys run back to back while rotations go through their steps: whatever order the
    advisory lock gives them, every rotation ends, and boom_owner logs in with AWSCURRENT."""
    rotations_done = threading.Event()
    deploys: list[BaseException | None] = []

    def deploy_until_done() -> None:
        while not rotations_done.is_set():
            try:
                a_deploy(aws, rotating)
                deploys.append(None)
            except BaseException as err:  # reported by the assertion below
                deploys.append(err)

    deployer = threading.Thread(target=deploy_until_done)
    deployer.start()
    try:
        for _ in range(3):
            token = aws.start_rotation(aws.owner)
            for name in rotation.STEPS:
                step(name, aws.owner, token)
                time.sleep(0.1)  # room for a deploy between each two steps
            assert logs_in(postgres, rotating.database, "boom_owner",
                           aws.current(aws.owner)["password"])
    finally:
        rotations_done.set()
        deployer.join(60)
    assert len(deploys) >= 3 and set(deploys) == {None}
    assert logs_in(postgres, rotating.database, "boom_owner", aws.current(aws.owner)["password"])


def test_the_run_reads_the_secrets_while_it_holds_the_lock_setSecret_takes(
        postgres: PostgresServer, aws: Secrets, rotating: Rotating,
        monkeypatch: pytest.MonkeyPatch) -> None:
    held: list[bool] = []
    read = role_secrets.pending_version

    def watched(*args: Any) -> str | None:
        watcher = postgres.connect(rotating.database)
        try:
            held.append(watcher.run(
                "SELECT count(*) = 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid = 0 AND objid = :key AND objsubid = 1",
                key=bootstrap.ADVISORY_LOCK)[0][0])
        finally:
            watcher.close()
        return read(*args)

    monkeypatch.setattr(role_secrets, "pending_version", watched)
    a_deploy(aws, rotating)
    assert held == [True, True]  # app_user's secret, then boom_owner's


def test_setSecret_waits_for_a_bootstrap_run_to_end(postgres: PostgresServer, aws: Secrets,
                                                    rotating: Rotating) -> None:
    old = aws.current(aws.owner)["password"]
    token = aws.start_rotation(aws.owner)
    step("createSecret", aws.owner, token)
    done = threading.Event()
    errors: list[BaseException] = []

    def set_secret() -> None:
        try:
            step("setSecret", aws.owner, token)
        except BaseException as err:  # reported by the assertion below
            errors.append(err)
        done.set()

    with bootstrap_run_in_progress(postgres, rotating.database):
        thread = threading.Thread(target=set_secret)
        thread.start()
        assert not done.wait(1.5)
        assert logs_in(postgres, rotating.database, "boom_owner", old)
    thread.join(30)
    assert done.is_set() and errors == []
    rotate(aws.owner, token, ("testSecret", "finishSecret"))
    assert logs_in(postgres, rotating.database, "boom_owner", aws.current(aws.owner)["password"])


def test_setSecret_gives_up_before_lambdas_timeout_behind_a_long_bootstrap_run(
        postgres: PostgresServer, aws: Secrets, rotating: Rotating,
        role_passwords: dict[str, str]) -> None:
    token = aws.start_rotation(aws.owner)
    step("createSecret", aws.owner, token)
    context = LambdaContext(int((handler.DEADLINE_MARGIN_SECONDS + 1.5) * 1000))
    started = time.monotonic()
    with bootstrap_run_in_progress(postgres, rotating.database), pytest.raises(
            bootstrap.BootstrapError, match="rotation failed, nothing was changed: setSecret "
            "would not have ended before the Lambda's timeout .*Secrets Manager retries the "
            "step"):
        handler.on_event({"Step": "setSecret", "SecretId": aws.owner,
                          "ClientRequestToken": token}, context)
    assert time.monotonic() - started < handler.DEADLINE_MARGIN_SECONDS + 1.5
    assert logs_in(postgres, rotating.database, "boom_owner", role_passwords["boom_owner"])


def test_testSecret_fails_before_lambdas_timeout_when_the_database_stops_answering(
        postgres: PostgresServer, aws: Secrets, rotating: Rotating,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a rotation whose password is set, and a database that goes silent (drops every
    # packet, as a host that is gone does) right after boom_owner has logged in to test it
    token = midway(aws)
    silenced = contextlib.ExitStack()
    real_connect = rotation.connect

    def connect_then_go_silent(target: Connection) -> pg8000.native.Connection:
        conn = real_connect(target)
        silenced.enter_context(silent(postgres.port))
        return conn

    monkeypatch.setattr(rotation, "connect", connect_then_go_silent)
    context = LambdaContext(int((handler.DEADLINE_MARGIN_SECONDS + 1) * 1000))
    started = time.monotonic()
    # When testSecret runs, then it fails, saying so, before Lambda would have killed it
    with silenced, pytest.raises(bootstrap.BootstrapError, match="testSecret of .*: boom_owner "
                                 "logged in with the pending password, then could not query"):
        handler.on_event({"Step": "testSecret", "SecretId": aws.owner,
                          "ClientRequestToken": token}, context)
    assert time.monotonic() - started < handler.DEADLINE_MARGIN_SECONDS + 1
    assert rotation.pending_version(aws.client, aws.owner, "OwnerSecretArn") == token


def test_a_password_that_does_not_work_fails_testSecret_and_is_not_made_current(
        postgres: PostgresServer, aws: Secrets, rotating: Rotating) -> None:
    old = aws.current(aws.owner)
    token = aws.start_rotation(aws.owner)
    step("createSecret", aws.owner, token)  # setSecret never ran
    with pytest.raises(bootstrap.BootstrapError, match="testSecret of .*: cannot connect to "
                       "boom_owner@.*password authentication failed"):
        step("testSecret", aws.owner, token)
    assert aws.current(aws.owner) == old
    assert rotation.pending_version(aws.client, aws.owner, "OwnerSecretArn") == token
    assert logs_in(postgres, rotating.database, "boom_owner", old["password"])


def test_a_pending_version_holding_the_current_password_is_refused_as_no_rotation(
        postgres: PostgresServer, aws: Secrets, rotating: Rotating,
        role_passwords: dict[str, str]) -> None:
    # Given a rotation whose pending version already holds the current value (RotateSecret
    # leaves it empty; someone, or something, filled it)
    old = aws.current(aws.owner)
    token = aws.start_rotation(aws.owner)
    aws.client.put_secret_value(SecretId=aws.owner, ClientRequestToken=token,
                                SecretString=json.dumps(old), VersionStages=["AWSPENDING"])
    # When createSecret runs, then it refuses, naming the way out, and publishes nothing
    with pytest.raises(bootstrap.BootstrapError, match=f"version {token} holds the current "
                       "password, so the rotation would change nothing. Remove its label"):
        step("createSecret", aws.owner, token)
    assert aws.current(aws.owner) == old
    assert rotation.pending_version(aws.client, aws.owner, "OwnerSecretArn") == token
    # The way out the message names: the label removed, a new rotation rotates
    aws.client.update_secret_version_stage(SecretId=aws.owner, VersionStage="AWSPENDING",
                                           RemoveFromVersionId=token)
    rotate(aws.owner, aws.start_rotation(aws.owner))
    new = aws.current(aws.owner)["password"]
    assert new != old["password"]
    assert logs_in(postgres, rotating.database, "boom_owner", new)
    assert not logs_in(postgres, rotating.database, "boom_owner", role_passwords["boom_owner"])


@pytest.mark.parametrize(("pending", "match"), [
    ({"username": "app_user", "password": "a" * 32},
     "the pending version's username is not boom_owner"),
    ({"username": "boom_owner", "password": "short"},
     "the pending version needs a \"password\" of at least"),
])
def test_createSecret_refuses_a_pending_value_a_later_step_could_not_use(
        postgres: PostgresServer, aws: Secrets, rotating: Rotating,
        role_passwords: dict[str, str], pending: dict[str, str], match: str) -> None:
    old = aws.current(aws.owner)
    token = aws.start_rotation(aws.owner)
    aws.client.put_secret_value(SecretId=aws.owner, ClientRequestToken=token,
                                SecretString=json.dumps(pending), VersionStages=["AWSPENDING"])
    with pytest.raises(bootstrap.BootstrapError, match=match):
        step("createSecret", aws.owner, token)
    assert aws.current(aws.owner) == old
    assert logs_in(postgres, rotating.database, "boom_owner", role_passwords["boom_owner"])


def unchanged(postgres: PostgresServer, aws: Secrets, rotating: Rotating,
              role_passwords: dict[str, str]) -> dict[str, object]:
    """What a refused step must leave as it was."""
    return {"owner": aws.stages(aws.owner), "app_user": aws.stages(aws.app_user),
            "owner logs in": logs_in(postgres, rotating.database, "boom_owner",
                                     role_passwords["boom_owner"]),
            "app_user logs in": logs_in(postgres, rotating.database, "app_user",
                                        role_passwords["app_user"])}


@pytest.mark.parametrize(("change", "match"), [
    ({"Step": None}, "the rotation event lacks Step: Secrets Manager sends them"),
    ({"SecretId": ""}, "the rotation event lacks SecretId"),
    ({"ClientRequestToken": 7}, "the rotation event lacks ClientRequestToken"),
    ({"Step": "rotateSecret"}, "Step 'rotateSecret': expected one of createSecret, setSecret, "
                               "testSecret, finishSecret"),
    ({"ClientRequestToken": "0" * 36}, r"no version 0{36} \(ClientRequestToken\); Secrets "
                                       "Manager makes it when it starts the rotation"),
])
def test_bad_events_are_refused_and_change_nothing(
        postgres: PostgresServer, aws: Secrets, rotating: Rotating,
        role_passwords: dict[str, str], change: dict[str, Any], match: str) -> None:
    token = aws.start_rotation(aws.owner)
    before = unchanged(postgres, aws, rotating, role_passwords)
    bad = {"Step": "createSecret", "SecretId": aws.owner, "ClientRequestToken": token, **change}
    with pytest.raises(bootstrap.BootstrapError, match=match):
        handler.on_event({k: v for k, v in bad.items() if v is not None})
    assert unchanged(postgres, aws, rotating, role_passwords) == before


def test_only_boom_owners_secret_rotates(postgres: PostgresServer, aws: Secrets,
                                         rotating: Rotating,
                                         role_passwords: dict[str, str]) -> None:
    token = next(iter(aws.stages(aws.app_user)))  # its current version
    with pytest.raises(bootstrap.BootstrapError, match="rotation is not enabled for this "
                       "secret; the TenantBootstrap construct's rotation schedules enable it"):
        step("createSecret", aws.app_user, token)
    token = aws.start_rotation(aws.app_user)
    before = unchanged(postgres, aws, rotating, role_passwords)
    with pytest.raises(bootstrap.BootstrapError, match="the current version's username is not "
                       "boom_owner; this function rotates only boom_owner's secret and the "
                       "master secret"):
        step("createSecret", aws.app_user, token)
    assert unchanged(postgres, aws, rotating, role_passwords) == before


def test_a_version_that_is_not_pending_is_refused(postgres: PostgresServer, aws: Secrets,
                                                  rotating: Rotating) -> None:
    first = aws.start_rotation(aws.owner)
    rotate(aws.owner, first)
    previous = next(v for v, labels in aws.stages(aws.owner).items() if "AWSPREVIOUS" in labels)
    with pytest.raises(bootstrap.BootstrapError, match=f"version {previous} is not AWSPENDING; "
                       "only the rotation Secrets Manager started may be completed"):
        step("setSecret", aws.owner, previous)
    assert logs_in(postgres, rotating.database, "boom_owner", aws.current(aws.owner)["password"])


def test_a_function_without_the_master_secret_fails_setSecret_clearly(
        postgres: PostgresServer, aws: Secrets, rotating: Rotating,
        monkeypatch: pytest.MonkeyPatch, role_passwords: dict[str, str]) -> None:
    token = aws.start_rotation(aws.owner)
    step("createSecret", aws.owner, token)
    monkeypatch.delenv(rotation.MASTER_SECRET_VARIABLE)
    with pytest.raises(bootstrap.BootstrapError, match="BOOM_MASTER_SECRET_ARN is not set: "
                       "the TenantBootstrap construct sets it to the master secret's ARN"):
        step("setSecret", aws.owner, token)
    assert logs_in(postgres, rotating.database, "boom_owner", role_passwords["boom_owner"])


def test_no_password_reaches_a_log_a_response_or_an_error(
        postgres: PostgresServer, aws: Secrets, rotating: Rotating,
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    old = aws.current(aws.owner)["password"]
    said: list[str] = []
    # At the function's level (INFO); botocore's DEBUG lines carry the API's bodies whole.
    with caplog.at_level(logging.INFO):
        token = aws.start_rotation(aws.owner)
        step("createSecret", aws.owner, token)
        with pytest.raises(bootstrap.BootstrapError) as failure:
            step("testSecret", aws.owner, token)  # before setSecret: refused
        said.append(str(failure.value))
        for name in ("setSecret", "testSecret", "finishSecret"):
            said.append(repr(step(name, aws.owner, token)))
        said.append(repr(a_deploy(aws, rotating)))
    new = aws.current(aws.owner)["password"]
    output = capsys.readouterr()
    shown = "\n".join([caplog.text, output.out, output.err, *said])
    assert "testSecret" in shown and token in shown  # what was captured is the steps' output
    assert old not in shown and new not in shown
    assert ROTATION_TOKEN not in shown  # sensitive, by AWS's word (fixture_secrets)
