"""The custom-resource handler against moto's Secrets Manager and the real PostgreSQL 15.

Each failure case checks two things: CloudFormation gets a reason that names the field and the
fix, and the database is exactly as it was (schema dump and recorded versions).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lambdas.tenant_bootstrap import bootstrap, errors, handler, master_secret
from tests.fixture_bootstrap import WAITING, bootstrap_run_in_progress, eventually, in_background
from tests.fixture_cron import bound
from tests.fixture_lambda import LambdaContext
from tests.fixture_postgres import PostgresServer, free_port
from tests.fixture_secrets import Secrets, master_values, state
from tests.fixture_secrets import resource_event as event
from tests.fixture_tenants import app_user_connection_limit


def test_create_applies_the_bootstrap_and_sets_role_passwords(
        postgres: PostgresServer, aws: Secrets, role_passwords: dict[str, str]) -> None:
    database = postgres.create_database()
    master = aws.master(**master_values(postgres, database))
    response = handler.on_event(event("Create", aws, master))
    assert response["PhysicalResourceId"] == \
        f"tenant-bootstrap:127.0.0.1:{postgres.port}/{database}"
    assert response["Data"] == {
        "SchemaVersion": str(bootstrap.LATEST_VERSION),
        "Applied": ",".join(str(v) for v in range(1, bootstrap.LATEST_VERSION + 1)),
        "Repaired": ""}
    # The passwords in Secrets Manager are the ones the roles now log in with, over TLS.
    for role in ("app_user", "boom_owner"):
        conn = postgres.connect(database, user=role, password=role_passwords[role], tls=True)
        assert conn.run("SELECT current_user") == [[role]]
        conn.close()


def test_a_retried_create_changes_nothing(postgres: PostgresServer, aws: Secrets) -> None:
    database = postgres.create_database()
    create = event("Create", aws, aws.master(**master_values(postgres, database)))
    first = handler.on_event(create)
    before = state(postgres, database)
    again = handler.on_event(create)
    assert again["PhysicalResourceId"] == first["PhysicalResourceId"]
    assert again["Data"] == {"SchemaVersion": str(bootstrap.LATEST_VERSION), "Applied": "",
                             "Repaired": ""}
    assert state(postgres, database) == before


def test_overlapping_invocations_apply_each_migration_once(postgres: PostgresServer,
                                                           aws: Secrets) -> None:
    # Lambda may run a timed-out attempt and its retry at the same time.
    database = postgres.create_database()
    create = event("Create", aws, aws.master(**master_values(postgres, database)))
    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(handler.on_event(create)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(r["Data"]["Applied"] for r in results) == \
        ["", ",".join(str(v) for v in range(1, bootstrap.LATEST_VERSION + 1))]


def test_update_applies_only_newer_versions(postgres: PostgresServer, aws: Secrets) -> None:
    database = postgres.create_database()
    master = aws.master(**master_values(postgres, database))
    older = handler.on_event(event("Create", aws, master, bootstrap.LATEST_VERSION - 1))
    assert older["Data"]["SchemaVersion"] == str(bootstrap.LATEST_VERSION - 1)
    update = event("Update", aws, master, PhysicalResourceId=older["PhysicalResourceId"])
    newer = handler.on_event(update)
    assert newer["Data"] == {"SchemaVersion": str(bootstrap.LATEST_VERSION),
                             "Applied": str(bootstrap.LATEST_VERSION), "Repaired": ""}
    assert newer["PhysicalResourceId"] == older["PhysicalResourceId"]


def test_an_update_to_an_older_version_keeps_the_newer_schema(
        postgres: PostgresServer, aws: Secrets, caplog: pytest.LogCaptureFixture) -> None:
    # Given a database the latest version reached
    database = postgres.create_database()
    master = aws.master(**master_values(postgres, database))
    created = handler.on_event(event("Create", aws, master))
    before = state(postgres, database)
    # When CloudFormation rolls an update back: an Update with the older TargetVersion
    rollback = event("Update", aws, master, 1, PhysicalResourceId=created["PhysicalResourceId"],
                     OldResourceProperties=event("Update", aws, master)["ResourceProperties"])
    result = handler.on_event(rollback)
    # Then it succeeds (no UPDATE_ROLLBACK_FAILED), says where the database is, changes nothing
    assert result == {"PhysicalResourceId": created["PhysicalResourceId"],
                      "Data": {"SchemaVersion": str(bootstrap.LATEST_VERSION), "Applied": "",
                               "Repaired": ""}}
    assert state(postgres, database) == before
    assert "newer than TargetVersion 1: left as it is" in caplog.text


def test_a_create_for_an_older_version_than_the_database_is_refused(
        postgres: PostgresServer, aws: Secrets) -> None:
    # A Create is never a rollback: an older template pointed at a newer database is a mistake.
    database = postgres.create_database()
    master = aws.master(**master_values(postgres, database))
    handler.on_event(event("Create", aws, master))
    before = state(postgres, database)
    with pytest.raises(bootstrap.BootstrapError, match="refusing to downgrade"):
        handler.on_event(event("Create", aws, master, 1))
    assert state(postgres, database) == before


def test_delete_keeps_the_data_and_never_needs_the_database(postgres: PostgresServer,
                                                            aws: Secrets) -> None:
    database = postgres.create_database()
    master = aws.master(**master_values(postgres, database))
    created = handler.on_event(event("Create", aws, master))
    conn = postgres.connect(database)
    # The superuser bypasses RLS: this is the operator seeding one row.
    conn.run("INSERT INTO app.bookings (tenant_id, resource, starts_at, ends_at) VALUES "
             "('00000000-0000-0000-0000-00000000000a', 'room', now(), now() + interval '1h')")
    conn.close()
    before = state(postgres, database)
    # Even with an unreachable database and unreadable secrets, Delete succeeds and does nothing.
    gone = event("Delete", aws, "arn:aws:secretsmanager:eu-west-1:111111111111:secret:gone",
                 PhysicalResourceId=created["PhysicalResourceId"])
    assert handler.on_event(gone) == {"PhysicalResourceId": created["PhysicalResourceId"]}
    assert state(postgres, database) == before
    conn = postgres.connect(database)
    assert conn.run("SELECT count(*) FROM app.bookings") == [[1]]
    conn.close()


@pytest.fixture
def older_database(postgres: PostgresServer) -> str:
    """A database one version behind: a failed event must leave it exactly so."""
    database = postgres.create_database()
    conn = postgres.connect(database, tls=True)
    bootstrap.apply(conn, target_version=bootstrap.LATEST_VERSION - 1)
    conn.close()
    return database


@pytest.mark.parametrize(("change", "message"), [
    (lambda e: e.pop("ResourceProperties"), "ResourceProperties missing"),
    (lambda e: e.update(ResourceProperties=None), "ResourceProperties missing"),
    (lambda e: e["ResourceProperties"].pop("MasterSecretArn"),
     "ResourceProperties missing MasterSecretArn"),
    (lambda e: e["ResourceProperties"].update(AppUserSecretArn="", OwnerSecretArn=""),
     "missing AppUserSecretArn, OwnerSecretArn"),
    (lambda e: e["ResourceProperties"].update(TargetVersion="latest"),
     "TargetVersion 'latest' is not a whole number"),
    # int() would read these as 5 and 16: plain digits only, as the construct writes them
    (lambda e: e["ResourceProperties"].update(TargetVersion=" 5 "),
     "TargetVersion ' 5 ' is not a whole number"),
    (lambda e: e["ResourceProperties"].update(TargetVersion="1_6"),
     "TargetVersion '1_6' is not a whole number"),
    (lambda e: e["ResourceProperties"].update(TargetVersion="99"),
     f"TargetVersion 99: this bootstrap has versions 1 to {bootstrap.LATEST_VERSION}"),
    (lambda e: e.update(RequestType="Rollback"), "RequestType 'Rollback'"),
    (lambda e: e["ResourceProperties"].update(AppUserConnectionLimit="0"),
     "AppUserConnectionLimit '0' is not a whole number of at least 1"),
    (lambda e: e["ResourceProperties"].update(AppUserConnectionLimit="lots"),
     "AppUserConnectionLimit 'lots' is not a whole number"),
    (lambda e: e["ResourceProperties"].update(AppUserTransactionMinutes="0"),
     "AppUserTransactionMinutes '0' is not a whole number from 1 to 1440"),
    (lambda e: e["ResourceProperties"].update(AppUserTransactionMinutes="1441"),
     "AppUserTransactionMinutes '1441' is not a whole number from 1 to 1440"),
    (lambda e: e["ResourceProperties"].update(AppUserTransactionMinutes="10m"),
     "AppUserTransactionMinutes '10m' is not a whole number"),
    (lambda e: e["ResourceProperties"].update(AppUserTransactionMinutes="+3"),
     "AppUserTransactionMinutes '[+]3' is not a whole number"),
    (lambda e: e["ResourceProperties"].update(MasterSecretArn=[e["ResourceProperties"]
                                                               ["MasterSecretArn"]]),
     "ResourceProperties MasterSecretArn: expected a string, not a list or an object"),
], ids=["no-properties", "null-properties", "no-master", "no-role-secrets", "version-word",
        "version-spaces", "version-underscore", "version-unknown", "request-type", "limit-zero",
        "limit-word", "minutes-zero", "minutes-day-and-one", "minutes-unit", "minutes-plus",
        "master-list"])
def test_bad_events_fail_clearly_and_change_nothing(
        postgres: PostgresServer, aws: Secrets, older_database: str,
        change: Any, message: str) -> None:
    bad = event("Create", aws, aws.master(**master_values(postgres, older_database)))
    change(bad)
    before = state(postgres, older_database), app_user_connection_limit(postgres)
    with pytest.raises(bootstrap.BootstrapError, match=message):
        handler.on_event(bad)
    assert (state(postgres, older_database), app_user_connection_limit(postgres)) == before


@pytest.mark.parametrize("payload", [None, [], "tenant-guarantees", 7])
def test_an_event_that_is_not_an_object_is_named(payload: Any) -> None:
    # `aws lambda invoke --payload` takes any JSON; nothing is read or connected before this
    with pytest.raises(bootstrap.BootstrapError, match=f"the event is '{type(payload).__name__}', "
                       "not a JSON object"):
        handler.on_event(payload)


def test_an_unknown_property_is_logged_with_the_name_it_resembles_and_ignored(
        postgres: PostgresServer, aws: Secrets, caplog: pytest.LogCaptureFixture) -> None:
    # Not refused: an update rollback sends the properties of the template before, which may
    # hold one that a later version retired (handler._warn_of_unknown).
    database = postgres.create_database()
    create = event("Create", aws, aws.master(**master_values(postgres, database)))
    create["ResourceProperties"].update(AppUserConnectionLimt="120", BootstrapCode="digest",
                                        Tenant="a")
    with caplog.at_level(logging.WARNING):
        response = handler.on_event(create)
    assert response["Data"]["SchemaVersion"] == str(bootstrap.LATEST_VERSION)
    reads = ", ".join((*handler.REQUIRED_PROPERTIES, *handler.OPTIONAL_PROPERTIES))
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "ResourceProperties 'AppUserConnectionLimt' (did you mean AppUserConnectionLimit?) "
        f"is not a property of TenantBootstrap: ignored. It reads {reads}",
        f"ResourceProperties 'Tenant' is not a property of TenantBootstrap: ignored. It reads "
        f"{reads}"]


@pytest.mark.usefixtures("unlimited_app_user_afterwards")
def test_the_connection_limit_property_caps_app_user(postgres: PostgresServer,
                                                     aws: Secrets) -> None:
    database = postgres.create_database()
    create = event("Create", aws, aws.master(**master_values(postgres, database)))
    create["ResourceProperties"]["AppUserConnectionLimit"] = "120"
    handler.on_event(create)
    assert app_user_connection_limit(postgres) == 120


def test_the_transaction_minutes_property_sets_the_bound_pg_crons_job_applies(
        postgres: PostgresServer, aws: Secrets) -> None:
    database = postgres.create_database()
    master = aws.master(**master_values(postgres, database))
    create = event("Create", aws, master)
    create["ResourceProperties"]["AppUserTransactionMinutes"] = "25"
    created = handler.on_event(create)
    conn = postgres.connect(database)
    try:
        assert bound(conn) == "00:25:00"  # 0014's default is 10 minutes
        update = event("Update", aws, master, PhysicalResourceId=created["PhysicalResourceId"])
        update["ResourceProperties"]["AppUserTransactionMinutes"] = "90"
        handler.on_event(update)
        assert bound(conn) == "01:30:00"
    finally:
        conn.close()


def test_unreachable_host_fails_clearly(postgres: PostgresServer, aws: Secrets,
                                        older_database: str) -> None:
    port = free_port()  # nothing listens there
    master = aws.master(**master_values(postgres, older_database, port=port))
    with pytest.raises(bootstrap.BootstrapError,
                       match=f"cannot connect to postgres@127.0.0.1:{port}/{older_database}"):
        handler.on_event(event("Create", aws, master))


@pytest.mark.parametrize(("secret", "message"), [
    ({"password": "wrong-master-password"}, "password authentication failed"),
    ({"host": None}, "MasterSecretArn: the secret lacks host"),
    ({"port": "fivefourthreetwo"}, "the secret's port 'fivefourthreetwo' is not a port number"),
    # int() would read these as 5432, 1 and 5432, and 70000 would reach the connection
    ({"port": 5432.9}, "the secret's port 5432.9 is not a port number"),
    ({"port": True}, "the secret's port True is not a port number"),
    ({"port": " 5432 "}, "the secret's port ' 5432 ' is not a port number"),
    ({"port": 70000}, "the secret's port 70000 is not a port number [(]1 to 65535[)]"),
], ids=["wrong-password", "no-host", "bad-port", "fractional-port", "boolean-port",
        "spaced-port", "port-out-of-range"])
def test_a_wrong_master_secret_fails_clearly_and_changes_nothing(
        postgres: PostgresServer, aws: Secrets, older_database: str,
        secret: dict[str, object], message: str, caplog: pytest.LogCaptureFixture) -> None:
    master = aws.master(**master_values(postgres, older_database, **secret))
    before = state(postgres, older_database)
    with caplog.at_level(logging.INFO), \
            pytest.raises(bootstrap.BootstrapError, match=message) as failure:
        handler.on_event(event("Create", aws, master))
    assert "wrong-master-password" not in str(failure.value) + caplog.text
    assert state(postgres, older_database) == before


def test_a_master_secret_port_written_as_a_string_of_digits_is_taken(
        postgres: PostgresServer, aws: Secrets) -> None:
    # RDS writes a JSON number; a secret written by hand may quote it
    database = postgres.create_database()
    master = aws.master(**master_values(postgres, database, port=str(postgres.port)))
    created = handler.on_event(event("Create", aws, master))
    assert created["PhysicalResourceId"].endswith(f":{postgres.port}/{database}")
    assert created["Data"]["SchemaVersion"] == str(bootstrap.LATEST_VERSION)


def test_a_master_password_mid_rotation_is_read_again(
        postgres: PostgresServer, aws: Secrets, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # Given a master secret that still holds the old password when the bootstrap starts
    database = postgres.create_database()
    master = aws.master(**master_values(postgres, database, password="old-rotated-password"))
    waits: list[float] = []

    def rotation_finishes(seconds: float) -> None:
        waits.append(seconds)
        aws.client.put_secret_value(SecretId=master, SecretString=json.dumps(
            master_values(postgres, database)))

    monkeypatch.setattr(master_secret.time, "sleep", rotation_finishes)
    # When the handler runs, Then it reads the secret again and succeeds
    with caplog.at_level(logging.WARNING):
        response = handler.on_event(event("Create", aws, master))
    assert response["Data"]["SchemaVersion"] == str(bootstrap.LATEST_VERSION)
    assert len(waits) == 1 and "mid-rotation" in caplog.text


def test_unreadable_or_malformed_secrets_fail_without_echoing_them(
        postgres: PostgresServer, aws: Secrets, older_database: str) -> None:
    master = aws.master(**master_values(postgres, older_database))
    missing = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:boom/none-AbCdEf"
    with pytest.raises(bootstrap.BootstrapError,
                       match="MasterSecretArn .*cannot read the secret.*ResourceNotFound"):
        handler.on_event(event("Create", aws, missing))
    plain = aws.put("plain", "hunter2-plain-text-password")
    bad = event("Create", aws, master)
    bad["ResourceProperties"]["AppUserSecretArn"] = plain
    with pytest.raises(bootstrap.BootstrapError, match="AppUserSecretArn .*not a JSON object") \
            as failure:
        handler.on_event(bad)
    assert "hunter2" not in str(failure.value)
    bad["ResourceProperties"]["AppUserSecretArn"] = aws.put("short", {"password": "short"})
    with pytest.raises(bootstrap.BootstrapError, match="needs a \"password\" of at least 16"):
        handler.on_event(bad)
    # Written by hand from a CRLF file: refused, not set
    bad["ResourceProperties"]["AppUserSecretArn"] = aws.put(
        "crlf", {"password": "hunter2-pasted-from-a-file\r\n"})
    with pytest.raises(bootstrap.BootstrapError,
                       match="password given for app_user contains a line break") as failure:
        handler.on_event(bad)
    assert "hunter2" not in str(failure.value)
    binary = aws.client.create_secret(Name="boom/test/binary", SecretBinary=b"\x00hunter2")
    bad["ResourceProperties"]["AppUserSecretArn"] = binary["ARN"]
    with pytest.raises(bootstrap.BootstrapError,
                       match="AppUserSecretArn .*: the secret has no SecretString") as failure:
        handler.on_event(bad)
    assert "hunter2" not in str(failure.value)
    assert state(postgres, older_database)[1] == [
        [v, m.checksum] for v, m in ((m.version, m) for m in bootstrap.load_migrations())
        if v < bootstrap.LATEST_VERSION]


SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:boom/dev/master-AbCdEf"


def create_with_secrets_at(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """A Create whose Secrets Manager is `endpoint` (no moto here)."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "eu-west-1",
                        "AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint}.items():
        monkeypatch.setenv(name, value)
    handler.on_event({"RequestType": "Create", "LogicalResourceId": "TenantBootstrap",
                      "ResourceProperties": {"MasterSecretArn": SECRET, "AppUserSecretArn": SECRET,
                                             "OwnerSecretArn": SECRET, "TargetVersion": "1"}})


def test_secrets_manager_out_of_reach_fails_with_the_reason(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # No VPC endpoint and no NAT route: botocore cannot connect at all (a closed local port
    # stands for the endpoint).
    with pytest.raises(bootstrap.BootstrapError, match=re.escape(
            f"SecretArn {SECRET}: cannot read the secret (Could not connect to the endpoint "
            "URL")):
        create_with_secrets_at(monkeypatch, "http://127.0.0.1:1")


def test_a_secrets_manager_that_never_answers_fails_well_before_lambdas_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # An endpoint that takes each request and answers nothing: with botocore's defaults
    # (60 s per reply, up to 5 attempts) the Lambda's 5 minutes would end first, unexplained.
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def take_and_keep() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(listener.accept()[0])

    threading.Thread(target=take_and_keep, daemon=True).start()
    started = time.monotonic()
    try:
        with pytest.raises(bootstrap.BootstrapError, match=re.escape(
                f"SecretArn {SECRET}: cannot read the secret (Read timeout on endpoint URL")):
            create_with_secrets_at(monkeypatch, f"http://127.0.0.1:{listener.getsockname()[1]}")
    finally:
        listener.close()
        for conn in accepted:
            conn.close()
    attempts = master_secret.SECRETS_ATTEMPTS
    assert len(accepted) == attempts
    # Each attempt waits for its reply; standard retries back off at most 1 s, then 2 s.
    assert time.monotonic() - started < (
        attempts * master_secret.SECRETS_READ_TIMEOUT_SECONDS + 3 + 2)


def test_a_certificate_from_another_ca_is_refused(postgres: PostgresServer, aws: Secrets,
                                                  older_database: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # verify-full is real: a server whose certificate our CA bundle did not sign is refused.
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=other-ca", "-keyout", "other.key", "-out", "other.pem"],
                   cwd=tmp_path, check=True, capture_output=True)
    monkeypatch.setenv(master_secret.CA_FILE_VARIABLE, str(tmp_path / "other.pem"))
    master = aws.master(**master_values(postgres, older_database))
    before = state(postgres, older_database)
    with pytest.raises(bootstrap.BootstrapError, match="certificate verify failed"):
        handler.on_event(event("Create", aws, master))
    assert state(postgres, older_database) == before


def test_a_missing_ca_bundle_is_named(aws: Secrets, postgres: PostgresServer,
                                      older_database: str, monkeypatch: pytest.MonkeyPatch,
                                      tmp_path: Path) -> None:
    monkeypatch.setenv(master_secret.CA_FILE_VARIABLE, str(tmp_path / "absent.pem"))
    master = aws.master(**master_values(postgres, older_database))
    with pytest.raises(bootstrap.BootstrapError, match="absent.pem not found"):
        handler.on_event(event("Create", aws, master))


def test_a_reason_is_cut_only_past_what_a_response_holds() -> None:
    cap = errors.MAX_REPORTED_CHARS
    assert errors.bounded("x" * cap) == "x" * cap
    assert errors.bounded("x" * (cap + 1)) == \
        "x" * cap + " ... (1 more characters in the function's log)"


def test_long_repair_lists_and_reasons_fit_a_cloudformation_response(
        postgres: PostgresServer, aws: Secrets, caplog: pytest.LogCaptureFixture) -> None:
    # Given 60 tenant tables made while the event trigger was dropped
    database = postgres.create_database()
    master = aws.master(**master_values(postgres, database))
    handler.on_event(event("Create", aws, master))
    tables = [f"app.t{n:02d}_with_a_name_of_some_length" for n in range(60)]
    conn = postgres.connect(database)
    conn.run("DROP EVENT TRIGGER boom_protect_tenant_tables")
    conn.run("SET ROLE boom_owner")
    for table in tables:
        conn.run(f"CREATE TABLE {table} (tenant_id uuid)")
    conn.run("RESET ROLE")
    # When an Update protects them all, Then the response stays far below CloudFormation's
    # 4096 bytes (the framework adds its own fields) and the log has the whole list
    with caplog.at_level(logging.INFO):
        response = handler.on_event(event("Update", aws, master))
    assert len(json.dumps(response)) < 2000
    assert response["Data"]["Repaired"].endswith("more characters in the function's log)")
    assert f"{tables[-1]} protected" in caplog.text
    # And a refusal listing a gap on each of them is cut the same way
    conn.run("DROP EVENT TRIGGER boom_protect_tenant_tables")
    for table in tables:
        conn.run(f"CREATE POLICY everyone ON {table} USING (true)")
    conn.close()
    caplog.clear()
    with caplog.at_level(logging.INFO), pytest.raises(bootstrap.BootstrapError) as failure:
        handler.on_event(event("Update", aws, master))
    reason = str(failure.value)
    assert reason.startswith("the tenant guarantees have gaps the bootstrap will not override")
    assert len(reason) < 1600 and reason.endswith("more characters in the function's log)")
    assert f"{tables[-1]}: policy everyone widens access" in caplog.text


def test_an_operators_cancel_is_reported_as_one_not_as_the_deadline(
        postgres: PostgresServer, aws: Secrets) -> None:
    # Given a run waiting for another run's lock, a minute before its deadline
    database = postgres.create_database()
    before = state(postgres, database)
    context = LambdaContext(int((handler.DEADLINE_MARGIN_SECONDS + 60) * 1000))
    create = event("Create", aws, aws.master(**master_values(postgres, database)))
    with bootstrap_run_in_progress(postgres, database):
        worker, outcome = in_background(lambda: handler.on_event(create, context))
        # When an operator cancels its statement (pg_cancel_backend: SQLSTATE 57014, as the
        # deadline's statement_timeout raises)
        admin = postgres.connect(database)
        try:
            waiting = ("SELECT pid FROM pg_stat_activity WHERE wait_event = 'advisory' "
                       "AND datname = current_database()")
            eventually(lambda: len(admin.run(waiting)) == 1)
            admin.run("SELECT pg_cancel_backend(:pid)", pid=admin.run(waiting)[0][0])
        finally:
            admin.close()
        worker.join(WAITING)
    # Then the run fails naming the cancel, not Lambda's timeout, and nothing changed
    failure = outcome["error"]
    assert isinstance(failure, bootstrap.BootstrapError) and "result" not in outcome
    assert "canceling statement due to user request (SQLSTATE 57014)" in str(failure)
    assert "timeout" not in str(failure)
    assert state(postgres, database) == before


def test_the_deadline_is_lambdas_remaining_time_less_the_margin() -> None:
    before = time.monotonic()
    deadline = handler._deadline(LambdaContext(60_000))
    after = time.monotonic()
    assert deadline is not None
    assert before + 60 - handler.DEADLINE_MARGIN_SECONDS <= deadline
    assert deadline <= after + 60 - handler.DEADLINE_MARGIN_SECONDS
    assert handler._deadline(object()) is None  # outside Lambda: no deadline


def test_the_event_is_logged_without_the_service_token(
        caplog: pytest.LogCaptureFixture) -> None:
    # The provider's ARN is noise in every line; the resource's own properties are kept.
    gone = {"RequestType": "Delete", "LogicalResourceId": "TenantBootstrap",
            "PhysicalResourceId": "tenant-bootstrap:host:5432/boom",
            "ResourceProperties": {"ServiceToken": "arn:aws:lambda:us-east-1:1:function:p",
                                   "TargetVersion": "3"}}
    with caplog.at_level(logging.INFO):
        handler.on_event(gone)
    assert 'Delete TenantBootstrap {"TargetVersion": "3"}' in caplog.text
    assert "ServiceToken" not in caplog.text and "function:p" not in caplog.text


def test_the_run_ends_before_lambdas_timeout_with_a_reason_and_nothing_changed(
        postgres: PostgresServer, aws: Secrets) -> None:
    # Given another run holding the database (a retry overlapping a stuck attempt, say) and a
    # Lambda with 1.5 s left beyond the handler's margin
    database = postgres.create_database()
    before = state(postgres, database)
    context = LambdaContext(int((handler.DEADLINE_MARGIN_SECONDS + 1.5) * 1000))
    # When CloudFormation creates the resource, Then the run gives up in time, saying why
    started = time.monotonic()
    with bootstrap_run_in_progress(postgres, database), pytest.raises(
            bootstrap.BootstrapError, match="would not have ended before the Lambda's timeout"):
        handler.on_event(event("Create", aws, aws.master(**master_values(postgres, database))),
                         context)
    assert time.monotonic() - started < handler.DEADLINE_MARGIN_SECONDS + 1.5
    assert state(postgres, database) == before
