"""A bootstrap that must alter a table in use never stalls the application behind it for
longer than its lock timeout (lambdas/tenant_bootstrap/locks.py), on real PostgreSQL 15.

The table in use: app.bookings at version 5, analyzed, so upgrading to 0006 drops and
re-creates its tenant policy, which takes the table's ACCESS EXCLUSIVE lock. An app_user
transaction left open on it holds the lock in the way; another app_user transaction that
starts after the bootstrap is the application, which PostgreSQL queues behind the bootstrap's
pending lock.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from lambdas.tenant_bootstrap import bootstrap
from lambdas.tenant_bootstrap.locks import LockWait
from lambdas.tenant_bootstrap.migration_files import Migration
from tests.fixture_bootstrap import (
    WAITING,
    FreshDatabase,
    bootstrap_run_in_progress,
    eventually,
    in_background,
    schema_dump,
    versions,
)
from tests.fixture_postgres import PostgresServer, bootstrapped_database
from tests.fixture_tenants import (
    TENANT_A,
    Conn,
    committed,
    connect_as,
    left_open,
    seed_two_tenants,
)

BEFORE_0006 = 5


@dataclass
class Busy:
    """A database at version 5 whose bookings an open app_user transaction is using."""
    database: str
    holder: Conn  # app_user, idle in a transaction that has read app.bookings
    observer: Conn  # the superuser, to read pg_stat_activity and the schema

    def lock_waits(self, user: str) -> int:
        return int(self.observer.run(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND usename = :u AND wait_event_type = 'Lock'", u=user)[0][0])

    def statistics_target(self) -> int:
        return int(self.observer.run(
            "SELECT attstattarget FROM pg_attribute WHERE attrelid = 'app.bookings'::regclass "
            "AND attname = 'tenant_id'")[0][0])


@pytest.fixture
def busy(postgres: PostgresServer, role_passwords: dict[str, str]) -> Iterator[Busy]:
    database = bootstrapped_database(postgres, role_passwords, target_version=BEFORE_0006)
    seed_two_tenants(postgres, role_passwords, database)
    observer = postgres.connect(database)
    observer.run("ANALYZE app.bookings")
    holder = connect_as(postgres, role_passwords, database, "app_user")
    left_open(holder, TENANT_A, "SELECT count(*) FROM app.bookings")
    yield Busy(database, holder, observer)
    holder.close()
    observer.close()


def upgrade(postgres: PostgresServer, busy: Busy, lock_wait: LockWait) -> bootstrap.Result:
    conn = postgres.connect(busy.database, tls=True)
    try:
        return bootstrap.apply(conn, lock_wait=lock_wait)
    finally:
        conn.close()


def application_read(postgres: PostgresServer, passwords: dict[str, str],
                     database: str) -> int:
    conn = connect_as(postgres, passwords, database, "app_user")
    try:
        return int(committed(conn, TENANT_A, "SELECT count(*) FROM app.bookings")[0][0])
    finally:
        conn.close()


def test_without_a_short_lock_timeout_the_application_queues_behind_the_bootstrap(
        postgres: PostgresServer, role_passwords: dict[str, str], busy: Busy) -> None:
    # The negative control: what the bound prevents, and that this test can see it.
    booting, booted = in_background(
        lambda: upgrade(postgres, busy, LockWait(timeout_ms=60_000, attempts=1)))
    eventually(lambda: busy.lock_waits("postgres") == 1)
    reading, read = in_background(
        lambda: application_read(postgres, role_passwords, busy.database))
    eventually(lambda: busy.lock_waits("app_user") == 1)
    reading.join(2)
    assert reading.is_alive(), "the application's read should queue behind the bootstrap"
    busy.holder.run("COMMIT")
    booting.join(WAITING)
    reading.join(WAITING)
    assert read == {"result": 3}
    assert isinstance(booted.get("result"), bootstrap.Result)


def test_a_table_in_use_stalls_the_application_at_most_one_lock_timeout_and_changes_nothing(
        postgres: PostgresServer, role_passwords: dict[str, str], busy: Busy) -> None:
    lock_wait = LockWait(timeout_ms=300, attempts=3, first_pause_seconds=0.2,
                         max_pause_seconds=0.2)
    booting, booted = in_background(lambda: upgrade(postgres, busy, lock_wait))
    eventually(lambda: busy.lock_waits("postgres") == 1)
    # The application reads while the bootstrap waits: it is served once the attempt gives up,
    # though the transaction in the way is still open.
    reading, read = in_background(
        lambda: application_read(postgres, role_passwords, busy.database))
    reading.join(WAITING)
    assert read == {"result": 3}
    booting.join(WAITING)
    error = booted.get("error")
    assert isinstance(error, bootstrap.BootstrapError), booted
    message = str(error)
    holder_pid = busy.holder.run("SELECT pg_backend_pid()")[0][0]
    assert message.startswith("bootstrap failed, nothing was changed: a table it must alter "
                              "stayed in use (3 attempts, each waiting at most 300 ms")
    assert f"pid {holder_pid} (app_user) idle in transaction" in message
    assert "on app.bookings" in message and "run the bootstrap again" in message
    # Who holds the lock, never what it ran: the query text may hold a tenant's data.
    assert str(TENANT_A) not in message and "count(*)" not in message
    # Nothing changed: still version 5, and 0006's first step on bookings is not there.
    assert [row[0] for row in versions(busy.observer)] == list(range(1, BEFORE_0006 + 1))
    assert busy.statistics_target() == -1
    # Once the table is free, the same upgrade goes through.
    busy.holder.run("COMMIT")
    assert upgrade(postgres, busy, lock_wait).applied == tuple(
        range(BEFORE_0006 + 1, bootstrap.LATEST_VERSION + 1))
    assert busy.statistics_target() == 0


def test_the_bootstrap_tries_again_and_goes_through_when_the_table_is_freed(
        postgres: PostgresServer, busy: Busy, caplog: pytest.LogCaptureFixture) -> None:
    lock_wait = LockWait(timeout_ms=200, attempts=10, first_pause_seconds=0.5,
                         max_pause_seconds=0.5)
    caplog.set_level(logging.WARNING, logger=bootstrap.__name__)
    booting, booted = in_background(lambda: upgrade(postgres, busy, lock_wait))
    eventually(lambda: busy.lock_waits("postgres") == 1)
    time.sleep(0.4)  # longer than one attempt waits
    busy.holder.run("COMMIT")
    booting.join(WAITING)
    result = booted.get("result")
    assert isinstance(result, bootstrap.Result), booted
    assert result.applied == tuple(range(BEFORE_0006 + 1, bootstrap.LATEST_VERSION + 1))
    retries = [r.getMessage() for r in caplog.records if r.name == bootstrap.__name__]
    assert retries and retries[0].startswith(
        "attempt 1 of 10 waited 200 ms for a table lock and rolled back; trying again in 0.5 s")
    assert re.search(r"\(app_user\) idle in transaction, its transaction [0-9]+ s old, on "
                     r"app\.bookings", retries[0]), retries[0]


@pytest.mark.parametrize("bad", [{"timeout_ms": 0}, {"attempts": 0},
                                 {"first_pause_seconds": -1},
                                 {"first_pause_seconds": 5, "max_pause_seconds": 1}])
def test_nonsense_lock_waits_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="timeout_ms and attempts must be at least 1"):
        LockWait(**bad)  # type: ignore[arg-type]


def test_the_least_lock_wait_is_taken() -> None:
    # One attempt of 1 ms, no pause: what each refusal above is one step past.
    least = LockWait(timeout_ms=1, attempts=1, first_pause_seconds=0, max_pause_seconds=0)
    assert list(least.pauses()) == [] and least.worst_case_seconds() == 0.001


def test_pauses_double_up_to_their_ceiling_and_bound_the_last_attempt() -> None:
    lock_wait = LockWait(timeout_ms=500, attempts=5, first_pause_seconds=1, max_pause_seconds=5)
    assert list(lock_wait.pauses()) == [1, 2, 4, 5]  # after attempts 1 to 4
    assert lock_wait.last_attempt_after_seconds() == 4 * 0.5 + 12
    assert lock_wait.worst_case_seconds() == 4 * 0.5 + 12 + 0.5


def test_slow_migrations_are_cancelled_at_the_deadline_and_change_nothing(
        postgres: PostgresServer, fresh: FreshDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    # Lambda would kill the run at its timeout, mid-transaction, and PostgreSQL would hold the
    # run's locks until it noticed: the run ends first, rolled back. Two migrations of 1 s
    # each, 1.5 s to go: each statement may run only for what is left when it starts.
    real = bootstrap.load_migrations()
    slow = [*real[:-2], *(Migration(m.version, m.name, m.sql + "\nSELECT pg_sleep(1);")
                          for m in real[-2:])]
    monkeypatch.setattr(bootstrap, "load_migrations", lambda: slow)
    before = schema_dump(postgres, fresh.name)
    started = time.monotonic()
    with pytest.raises(bootstrap.BootstrapError, match=(
            "^bootstrap failed, nothing was changed: the run would not have ended before the "
            "Lambda's timeout .* Make the migration faster or split it")):
        bootstrap.apply(fresh.conn, deadline=started + 1.5)
    # Cut at the deadline (plus a round trip), not at the end of the second migration.
    assert time.monotonic() - started < 1.5 + 0.4
    assert schema_dump(postgres, fresh.name) == before


def test_a_deadline_already_past_starts_nothing(postgres: PostgresServer,
                                               fresh: FreshDatabase) -> None:
    # Lambda's remaining time was below the margin when the handler started.
    before = schema_dump(postgres, fresh.name)
    repair = functools.partial(bootstrap.apply, migrate=False,
                               target_version=bootstrap.LATEST_VERSION)
    for run, said in ((bootstrap.apply, "^bootstrap failed, nothing was changed: the run "),
                      (repair, "^repair failed, nothing was changed: the repair .* Invoke the "
                               "repair again"),
                      (bootstrap.check, "^check failed, nothing was changed: the check ")):
        with pytest.raises(bootstrap.BootstrapError, match=said):
            run(fresh.conn, deadline=time.monotonic() - 1)
    assert schema_dump(postgres, fresh.name) == before
    assert fresh.conn.run("SELECT 1") == [[1]]  # rolled back, the connection still usable


def test_lock_retries_stop_when_the_next_would_end_past_the_deadline(
        postgres: PostgresServer, busy: Busy) -> None:
    lock_wait = LockWait(timeout_ms=300, attempts=50, first_pause_seconds=0.3,
                         max_pause_seconds=0.3)
    conn = postgres.connect(busy.database, tls=True)
    started = time.monotonic()
    with pytest.raises(bootstrap.BootstrapError) as raised:
        bootstrap.apply(conn, lock_wait=lock_wait, deadline=started + 2.0)
    ended = time.monotonic()
    conn.close()
    said = re.search(r"stayed in use \((\d+) attempts before the Lambda's timeout, each "
                     r"waiting at most 300 ms", str(raised.value))
    assert said, raised.value
    attempts = int(said[1])
    # About 2 s / 0.6 s per attempt; never all fifty, never past the deadline (but for the
    # round trips of the last rollback and the holders' query).
    assert 2 <= attempts <= 4 and ended <= started + 2.0 + 0.25
    assert [row[0] for row in versions(busy.observer)] == list(range(1, BEFORE_0006 + 1))


def test_waiting_for_another_bootstrap_run_ends_at_the_deadline(
        postgres: PostgresServer, fresh: FreshDatabase) -> None:
    started = time.monotonic()
    with bootstrap_run_in_progress(postgres, fresh.name), pytest.raises(
            bootstrap.BootstrapError, match="another bootstrap run held the database"):
        bootstrap.apply(fresh.conn, deadline=started + 1.0)
    assert time.monotonic() - started < WAITING
    assert bootstrap.apply(fresh.conn).version == bootstrap.LATEST_VERSION


def test_a_run_chosen_as_a_deadlock_victim_tries_again_and_goes_through(
        postgres: PostgresServer, fresh: FreshDatabase, caplog: pytest.LogCaptureFixture) -> None:
    # Given two tenant tables made while the event trigger was off, which a run protects in
    # name order, and a transaction that has read the second
    conn = fresh.conn
    bootstrap.apply(conn)
    conn.run("ALTER EVENT TRIGGER boom_protect_tenant_tables DISABLE")
    conn.run("SET ROLE boom_owner")
    conn.run("CREATE TABLE app.a_late (tenant_id uuid)")
    conn.run("CREATE TABLE app.b_late (tenant_id uuid)")
    conn.run("RESET ROLE")
    other = postgres.connect(fresh.name)
    other.run("BEGIN")
    other.run("SELECT count(*) FROM app.b_late")
    caplog.set_level(logging.WARNING, logger=bootstrap.__name__)
    # When a run has locked the first and waits for the second, and that transaction then
    # reads the first: each waits for the other, and PostgreSQL ends the run's attempt
    # (deadlock_timeout, 1 s, comes before the lock timeout)
    lock_wait = LockWait(timeout_ms=5000, attempts=3, first_pause_seconds=0.5,
                         max_pause_seconds=0.5)
    run = postgres.connect(fresh.name, tls=True)
    booting, booted = in_background(lambda: bootstrap.apply(run, lock_wait=lock_wait))
    observer = postgres.connect(fresh.name)
    eventually(lambda: observer.run(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock'")[0][0] == 1)
    other.run("SELECT count(*) FROM app.a_late")  # waits until the run's attempt gives way
    other.run("COMMIT")
    booting.join(WAITING)
    run.close()
    observer.close()
    other.close()
    # Then the run tried again once the transaction was done, and protected both
    result = booted.get("result")
    assert isinstance(result, bootstrap.Result), booted
    assert set(result.repaired) >= {"app.a_late protected", "app.b_late protected"}
    assert [r.getMessage() for r in caplog.records][0].startswith(
        "attempt 1 of 3 was a deadlock's victim (a transaction it waited for wanted a table "
        "it had locked) and rolled back; trying again in 0.5 s")
