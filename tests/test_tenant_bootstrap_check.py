"""`bootstrap.check()` and `--check`: what a bootstrap run would do or refuse now, changing
nothing, on real PostgreSQL 15. The scheduled check between deploys (handler.py) runs it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pg8000.native
import pytest

from lambdas.tenant_bootstrap import bootstrap
from lambdas.tenant_bootstrap.__main__ import CHECK_FOUND, main
from lambdas.tenant_bootstrap.errors import BootstrapRunning
from tests.fixture_bootstrap import (
    FreshDatabase,
    a_tenant_table_made_while_the_trigger_is_off,
    bookings_needing_a_locking_repair,
    bootstrap_run_in_progress,
    schema_dump,
)
from tests.fixture_postgres import PostgresServer
from tests.fixture_tenants import TENANT_A, connect_as, left_open, widening

TRIGGER = "boom_protect_tenant_tables"


def drift(fresh: FreshDatabase) -> None:
    """What an operator or app_user may undo between deploys: the trigger disabled, a tenant
    table made meanwhile, a role setting, TEMPORARY back on PUBLIC."""
    conn = fresh.conn
    a_tenant_table_made_while_the_trigger_is_off(conn)
    conn.run(f"ALTER ROLE app_user IN DATABASE {fresh.name} SET statement_timeout = 1")
    conn.run(f"GRANT TEMPORARY ON DATABASE {fresh.name} TO PUBLIC")


def test_a_database_as_the_bootstrap_left_it_has_no_findings(
        postgres: PostgresServer, fresh: FreshDatabase, capsys: pytest.CaptureFixture[str]) -> None:
    bootstrap.apply(fresh.conn)
    assert bootstrap.check(fresh.conn) == bootstrap.Check(bootstrap.LATEST_VERSION, ())
    assert main(["--check", "--dsn", postgres.dsn(fresh.name)], environ={}) == 0
    assert capsys.readouterr().out == (
        f"tenant bootstrap: {fresh.name} at version {bootstrap.LATEST_VERSION}: 0 finding(s), "
        "nothing changed\n")


def test_pg_cron_is_required_from_the_version_whose_job_it_runs(fresh: FreshDatabase) -> None:
    # This server does not load pg_cron. Where the parameter group loads it (the schedule's
    # RequirePgCron), its absence is a finding from version 14 (0014's job) on, not before:
    # a database at 13 has nothing for it to run.
    bootstrap.apply(fresh.conn, target_version=13)
    found = bootstrap.check(fresh.conn, require_pg_cron=True).findings
    assert bootstrap.PG_CRON_NOT_LOADED not in found
    bootstrap.apply(fresh.conn, target_version=14)
    found = bootstrap.check(fresh.conn, require_pg_cron=True).findings
    assert bootstrap.PG_CRON_NOT_LOADED in found
    assert bootstrap.PG_CRON_NOT_LOADED not in bootstrap.check(fresh.conn).findings


def test_drift_is_listed_as_what_a_run_would_restore_and_nothing_changes(
        postgres: PostgresServer, fresh: FreshDatabase, capsys: pytest.CaptureFixture[str]) -> None:
    bootstrap.apply(fresh.conn)
    drift(fresh)
    before = schema_dump(postgres, fresh.name)
    found = bootstrap.check(fresh.conn)
    # 3, as the README says, apart from 1 (the check failed) and 0 (nothing found)
    assert main(["--check", "--dsn", postgres.dsn(fresh.name)], environ={}) == CHECK_FOUND == 3
    assert schema_dump(postgres, fresh.name) == before  # and the settings and grants:
    assert fresh.conn.run("SELECT count(*) FROM app.audit_role_settings()") != [[0]]
    assert fresh.conn.run("SELECT count(*) FROM app.audit_database()") == [[1]]
    # What it lists is exactly what the next run restores
    repaired = bootstrap.apply(fresh.conn).repaired
    assert found.findings == tuple(f"would restore: {item}" for item in repaired)
    assert set(repaired) == {
        f"event trigger {TRIGGER} re-enabled", "app.late protected",
        "role settings of app_user restored to the migrations': statement_timeout",
        "TEMPORARY on the database revoked from PUBLIC and app_user"}
    out = capsys.readouterr().out
    assert all(f"tenant bootstrap: check: {finding}\n" in out for finding in found.findings)
    assert postgres.password not in out
    assert bootstrap.check(fresh.conn).findings == ()


def test_a_gap_a_run_would_refuse_is_listed_too(fresh: FreshDatabase) -> None:
    bootstrap.apply(fresh.conn)
    fresh.conn.run(f"ALTER EVENT TRIGGER {TRIGGER} DISABLE")  # it would refuse the policy
    fresh.conn.run("SET ROLE boom_owner")
    fresh.conn.run("CREATE POLICY everyone ON app.bookings USING (true)")
    fresh.conn.run("RESET ROLE")
    assert bootstrap.check(fresh.conn).findings == (
        f"would restore: event trigger {TRIGGER} re-enabled",
        f"would refuse: app.bookings: {widening('everyone')}")
    assert fresh.conn.run("SELECT evtenabled FROM pg_event_trigger WHERE evtname = :n",
                          n=TRIGGER) == [["D"]]


@pytest.mark.parametrize("version", [0, 5])
def test_a_database_behind_this_bootstrap_is_a_finding(fresh: FreshDatabase,
                                                       version: int) -> None:
    if version:
        bootstrap.apply(fresh.conn, target_version=version)
    latest = bootstrap.LATEST_VERSION
    assert bootstrap.check(fresh.conn) == bootstrap.Check(version, (
        f"database at version {version}, this bootstrap's latest is {latest}: a run would "
        f"apply {latest - version} migration(s)",))


def test_a_database_newer_than_this_bootstrap_is_a_finding(
        fresh: FreshDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    # After a deploy that migrated and then rolled back, the older code runs the checks.
    bootstrap.apply(fresh.conn)
    older = bootstrap.load_migrations()[:-1]
    monkeypatch.setattr(bootstrap, "load_migrations", lambda: older)
    latest = bootstrap.LATEST_VERSION
    [finding] = bootstrap.check(fresh.conn).findings
    assert finding.startswith(f"database at version {latest}, newer than this bootstrap's "
                              f"{latest - 1} (a deploy rolled back after migrating")


@contextmanager
def bookings_in_use(postgres: PostgresServer, fresh: FreshDatabase,
                    role_passwords: dict[str, str]) -> Iterator[None]:
    """A bootstrapped database whose app.bookings needs a repair that takes its lock, while an
    app_user transaction left open is using it."""
    bootstrap.apply(fresh.conn, role_passwords=role_passwords)
    bookings_needing_a_locking_repair(fresh.conn)
    holder = connect_as(postgres, role_passwords, fresh.name, "app_user")
    left_open(holder, TENANT_A, "SELECT count(*) FROM app.bookings")
    try:
        yield
    finally:
        holder.close()


def test_a_table_to_repair_in_use_holds_the_application_up_a_moment_and_is_a_finding(
        postgres: PostgresServer, fresh: FreshDatabase, role_passwords: dict[str, str]) -> None:
    # Every query on a table queues behind the check's pending lock on it, as long as the
    # check waits: by default a tenth of a second, not a deploy's 2 s, every 15 minutes.
    with bookings_in_use(postgres, fresh, role_passwords):
        started = time.monotonic()
        [finding] = bootstrap.check(fresh.conn).findings
        assert time.monotonic() - started < 1.0
    assert bootstrap.CHECK_LOCK_TIMEOUT_MS <= 100
    assert finding.startswith(
        f"could not check: it waited {bootstrap.CHECK_LOCK_TIMEOUT_MS} ms for a table lock "
        "while restoring, so a run would repair a table in use: app.bookings. Sessions "
        "holding table locks: pid ")
    assert "(app_user) idle in transaction" in finding and "on app.bookings" in finding
    # Still a finding, so the alarm still counts it; once the table is free, the exact one.
    assert bootstrap.check(fresh.conn).findings == ("would restore: app.bookings protected",)


def test_a_connection_lost_after_a_blocked_restore_fails_the_check_plainly(
        postgres: PostgresServer, fresh: FreshDatabase, role_passwords: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The connection goes exactly between the rollback of a blocked restore and the catalog
    # reads that name the tables: the check fails as a check (scheduled_check turns that
    # into a finding), not with pg8000's own exception.
    real_version = bootstrap.current_version
    calls = []

    def connection_lost_first(conn: pg8000.native.Connection) -> int:
        calls.append(conn)
        if len(calls) == 2:  # the first is inside the blocked attempt, the second after it
            conn.close()
        return real_version(conn)

    monkeypatch.setattr(bootstrap, "current_version", connection_lost_first)
    with bookings_in_use(postgres, fresh, role_passwords):
        checking = postgres.connect(fresh.name, tls=True)
        with pytest.raises(bootstrap.BootstrapError) as failed:
            bootstrap.check(checking)
    assert len(calls) == 2
    assert str(failed.value).startswith(
        f"check failed, nothing was changed: it waited {bootstrap.CHECK_LOCK_TIMEOUT_MS} ms "
        "for a table lock while restoring, then could not read the catalogs: ")


def test_a_check_cut_at_its_deadline_says_so_and_changes_nothing(
        postgres: PostgresServer, fresh: FreshDatabase, role_passwords: dict[str, str]) -> None:
    # A restore waiting on a table for longer than the Lambda has left: the deadline's
    # statement_timeout cancels it, and the error speaks of the check, not of a deploy.
    with bookings_in_use(postgres, fresh, role_passwords):
        before = schema_dump(postgres, fresh.name)
        started = time.monotonic()
        with pytest.raises(bootstrap.BootstrapError) as failed:
            bootstrap.check(fresh.conn, lock_timeout_ms=60_000, deadline=started + 1.0)
        assert time.monotonic() - started < 5
    assert str(failed.value).startswith(
        "check failed, nothing was changed: the check would not have ended before the "
        "Lambda's timeout")
    assert "bootstrap" not in str(failed.value) and "deploy" not in str(failed.value)
    assert schema_dump(postgres, fresh.name) == before


def test_check_takes_no_other_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--check", "--target-version", "3", "--dsn", "postgresql://u@h/d"], environ={})
    assert exited.value.code == 2
    assert "--check takes only --dsn" in capsys.readouterr().err


def test_a_check_beside_a_bootstrap_run_is_skipped_not_raced(
        postgres: PostgresServer, fresh: FreshDatabase,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Each would wait on the other's table locks; the run restores or refuses anyway.
    bootstrap.apply(fresh.conn)
    fresh.conn.run(f"ALTER EVENT TRIGGER {TRIGGER} DISABLE")  # drift the check would report
    with bootstrap_run_in_progress(postgres, fresh.name):
        with pytest.raises(BootstrapRunning, match="check skipped: a bootstrap run, or a "
                                                   "rotation's setSecret, is in progress"):
            bootstrap.check(fresh.conn)
        assert main(["--check", "--dsn", postgres.dsn(fresh.name)], environ={}) == 1
        assert "tenant bootstrap: check skipped" in capsys.readouterr().err
    # and once the run is over, the check looks again
    assert bootstrap.check(fresh.conn).findings == (
        f"would restore: event trigger {TRIGGER} re-enabled",)
