"""An operator's repair between deploys (repair.py): the bootstrap function, sent the Data
stack's TenantRepairEvent, restores the tenant guarantees on the real PostgreSQL 15 (secrets
from moto) without migrating, and refuses, changing nothing, where a deploy must act."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import pytest

from lambdas.tenant_bootstrap import bootstrap, handler, repair
from tests.fixture_bootstrap import (
    LATE_TABLE_RESTORED,
    WAITING,
    bootstrap_run_in_progress,
    in_background,
    late_table_drift,
)
from tests.fixture_lambda import LambdaContext
from tests.fixture_postgres import PostgresServer, bootstrapped_database
from tests.fixture_secrets import Secrets, guarantee_event, master_values, state


def repair_event(master_arn: str, **overrides: object) -> dict[str, Any]:
    """What an operator sends: the stack's TenantRepairEvent output."""
    return {**guarantee_event("Repair", master_arn, environment="prod"), **overrides}


def test_a_repair_restores_what_the_check_finds_and_migrates_nothing(
        postgres: PostgresServer, aws: Secrets, role_passwords: dict[str, str],
        caplog: pytest.LogCaptureFixture) -> None:
    database = bootstrapped_database(postgres, role_passwords)
    late_table_drift(postgres, database)
    master = aws.master(**master_values(postgres, database))
    conn = postgres.connect(database, tls=True)
    found = bootstrap.check(conn).findings
    recorded = state(postgres, database)[1]
    response = handler.on_event(repair_event(master))
    assert response == {"Environment": "prod", "SchemaVersion": str(bootstrap.LATEST_VERSION),
                        "Repaired": LATE_TABLE_RESTORED}
    # Exactly what the check had found, and nothing left to find
    assert found == tuple(f"would restore: {item}" for item in response["Repaired"])
    assert bootstrap.check(conn).findings == ()
    assert conn.run("SELECT relrowsecurity, relforcerowsecurity FROM pg_class "
                    "WHERE oid = 'app.late'::regclass") == [[True, True]]
    conn.close()
    assert state(postgres, database)[1] == recorded  # no migration recorded
    assert f"at version {bootstrap.LATEST_VERSION}: repaired {LATE_TABLE_RESTORED}" in caplog.text
    # A second repair finds nothing to do, and its log line says so.
    assert handler.on_event(repair_event(master))["Repaired"] == []
    assert f"at version {bootstrap.LATEST_VERSION}: repaired nothing" in caplog.text
    assert postgres.password not in caplog.text


def test_a_repair_waits_for_a_deploys_run_in_progress_then_goes_through(
        postgres: PostgresServer, aws: Secrets, role_passwords: dict[str, str]) -> None:
    database = bootstrapped_database(postgres, role_passwords)
    late_table_drift(postgres, database)
    event = repair_event(aws.master(**master_values(postgres, database)))
    outcome: dict[str, object] = {}
    with bootstrap_run_in_progress(postgres, database):
        repairing = threading.Thread(target=lambda: outcome.update(handler.on_event(event)))
        repairing.start()
        repairing.join(1.0)
        assert repairing.is_alive() and outcome == {}  # waiting on the run's advisory lock
    repairing.join(10)
    assert outcome["Repaired"] == LATE_TABLE_RESTORED


def test_a_repair_behind_a_long_run_ends_before_lambdas_timeout_and_changes_nothing(
        postgres: PostgresServer, aws: Secrets, role_passwords: dict[str, str]) -> None:
    # Given drift to repair, a deploy's run holding the database, and a Lambda with 1.5 s
    # left beyond the handler's margin
    database = bootstrapped_database(postgres, role_passwords)
    late_table_drift(postgres, database)
    event = repair_event(aws.master(**master_values(postgres, database)))
    before = state(postgres, database)
    context = LambdaContext(int((handler.DEADLINE_MARGIN_SECONDS + 1.5) * 1000))
    # When the operator sends the repair
    started = time.monotonic()
    with bootstrap_run_in_progress(postgres, database):
        repairing, outcome = in_background(lambda: handler.on_event(event, context))
        repairing.join(WAITING)  # (without a deadline it would wait for as long as the run)
        ended = time.monotonic() - started
    # Then it gave up in time, saying why and what next, and nothing changed
    assert not repairing.is_alive() and ended < handler.DEADLINE_MARGIN_SECONDS + 1.5
    assert isinstance(outcome.get("error"), bootstrap.BootstrapError), outcome
    assert re.search("repair failed, nothing was changed: the repair would not have ended "
                     "before the Lambda's timeout .* Invoke the repair again",
                     str(outcome["error"]))
    assert state(postgres, database) == before


@pytest.mark.parametrize("behind", [True, False])
def test_a_database_not_at_this_codes_version_is_refused_and_unchanged(
        postgres: PostgresServer, aws: Secrets, role_passwords: dict[str, str],
        monkeypatch: pytest.MonkeyPatch, behind: bool) -> None:
    # Migrations are the deploy's, under CloudFormation; a newer schema is the newer code's.
    latest = bootstrap.LATEST_VERSION
    database = bootstrapped_database(postgres, role_passwords,
                                     target_version=latest - 1 if behind else latest)
    if not behind:  # the code a deploy rolled back to
        older = bootstrap.load_migrations()[:-1]
        monkeypatch.setattr(bootstrap, "load_migrations", lambda: older)
        monkeypatch.setattr(repair, "LATEST_VERSION", latest - 1)
    late_table_drift(postgres, database)
    before = state(postgres, database)
    master = aws.master(**master_values(postgres, database))
    with pytest.raises(bootstrap.BootstrapError) as refused:
        handler.on_event(repair_event(master))
    message = str(refused.value)
    database_version, code_version = (latest - 1, latest) if behind else (latest, latest - 1)
    assert message.startswith(f"database at version {database_version}, this code's is "
                              f"{code_version}: a repair applies no migration")
    assert ("Deploy, which migrates" if behind else "Deploy the code that migrated it") \
        in message
    assert state(postgres, database) == before


def test_a_gap_it_will_not_override_fails_naming_it_and_changes_nothing(
        postgres: PostgresServer, aws: Secrets, role_passwords: dict[str, str]) -> None:
    database = bootstrapped_database(postgres, role_passwords)
    late_table_drift(postgres, database)
    admin = postgres.connect(database)
    admin.run("SET ROLE boom_owner")
    admin.run("CREATE POLICY everyone ON app.bookings USING (true)")  # the trigger is off
    admin.close()
    before = state(postgres, database)
    with pytest.raises(bootstrap.BootstrapError, match=(
            "the tenant guarantees have gaps the bootstrap will not override: app.bookings: "
            "policy everyone")):
        handler.on_event(repair_event(aws.master(**master_values(postgres, database))))
    assert state(postgres, database) == before


@pytest.mark.parametrize(("event", "message"), [
    ({"Repair": "everything"},
     "Repair 'everything': the Data stack's TenantRepairEvent output sends"),
    ({"Repair": "tenant-guarantees", "Environment": "prod"},
     "the repair event lacks MasterSecretArn"),
    # A repair reporting success would have left app_user's password as it was.
    ({"Repair": "tenant-guarantees", "MasterSecretArn": "arn", "Environment": "prod",
      "AppUserSecretARN": "arn:app-user"},
     r"the repair event's 'AppUserSecretARN' \(did you mean AppUserSecretArn\?\): not a field "
     "it reads; send the Data stack's TenantRepairEvent output as it is"),
    ({"Repair": "tenant-guarantees", "MasterSecretArn": "arn", "Environment": "prod",
      "Step": "createSecret"}, r"the repair event's 'Step': not a field it reads"),
    # The check's event with Repair added, not put in Check's place: it would have checked.
    ({"Check": "tenant-guarantees", "Repair": "tenant-guarantees", "MasterSecretArn": "arn",
      "Environment": "prod"}, "the event has both Check and Repair: send the Data stack's "
     "TenantRepairEvent output to repair"),
])
def test_a_malformed_repair_event_is_refused_by_name_before_connecting(
        aws: Secrets, event: dict[str, Any], message: str) -> None:
    with pytest.raises(bootstrap.BootstrapError, match=message):
        handler.on_event(event)
