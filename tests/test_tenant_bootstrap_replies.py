"""How long the bootstrap waits for PostgreSQL's replies (lambdas/tenant_bootstrap/connection.py
and deadline.py), on real PostgreSQL 15.

The connection's timeout bounds connecting only. Before, pg8000 kept it (10 s) for every reply,
so a run waiting longer than that for another run's lock, or a migration statement that long,
failed with a bare TimeoutError while the server went on. Replies are now waited for as long as
the deadline allows; a server that stops answering (its backend stopped with SIGSTOP here, so
not even statement_timeout can answer) is given up REPLY_GRACE_SECONDS after the deadline,
before Lambda would kill the run, and the error says what happened.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pg8000.native
import pytest

from lambdas.tenant_bootstrap import bootstrap, handler
from lambdas.tenant_bootstrap.connection import Connection, close, connect
from lambdas.tenant_bootstrap.deadline import REPLY_GRACE_SECONDS
from lambdas.tenant_bootstrap.errors import BootstrapError
from lambdas.tenant_bootstrap.migration_files import Migration
from tests.fixture_bootstrap import FreshDatabase, bootstrap_run_in_progress
from tests.fixture_network import silent
from tests.fixture_postgres import PostgresServer, backend_ended

CONNECT_TIMEOUT = 1  # seconds: every wait below is longer
RESUME_AFTER = 20.0  # seconds: a stopped backend is resumed by then whatever happens


def connect_as_the_lambda(postgres: PostgresServer, database: str) -> pg8000.native.Connection:
    return connect(Connection(host=postgres.host, port=postgres.port, database=database,
                              user=postgres.user, password=postgres.password,
                              ca_file=str(postgres.ca_file), timeout_seconds=CONNECT_TIMEOUT))


def test_the_connect_timeout_bounds_connecting_only(postgres: PostgresServer,
                                                    fresh: FreshDatabase) -> None:
    conn = connect_as_the_lambda(postgres, fresh.name)
    try:
        conn.run(f"SELECT pg_sleep({CONNECT_TIMEOUT + 1})")  # pg8000 alone: TimeoutError
    finally:
        close(conn)


def test_the_connect_timeout_bounds_a_connection_to_a_host_that_drops_packets(
        postgres: PostgresServer, fresh: FreshDatabase) -> None:
    # A security group or route that drops packets: the kernel alone would retry the SYN for
    # about two minutes, past the Lambda's deadline, and end with no reason given.
    started = time.monotonic()
    with silent(postgres.port), pytest.raises(BootstrapError, match=re.escape(
            f"cannot connect to {postgres.user}@{postgres.host}:{postgres.port}/{fresh.name}")):
        connect_as_the_lambda(postgres, fresh.name)
    assert time.monotonic() - started < CONNECT_TIMEOUT + 2


@pytest.mark.parametrize("deadline_in", [None, 60.0], ids=["cli", "lambda"])
def test_a_run_waits_for_another_run_for_longer_than_the_connect_timeout(
        postgres: PostgresServer, fresh: FreshDatabase, deadline_in: float | None) -> None:
    conn = connect_as_the_lambda(postgres, fresh.name)
    started = time.monotonic()
    deadline = None if deadline_in is None else started + deadline_in
    try:
        with bootstrap_run_in_progress(postgres, fresh.name, ends_after=CONNECT_TIMEOUT + 1.5):
            result = bootstrap.apply(conn, deadline=deadline)
    finally:
        close(conn)
    assert time.monotonic() - started >= CONNECT_TIMEOUT + 1.5
    assert result.version == bootstrap.LATEST_VERSION


def test_a_migration_statement_longer_than_the_connect_timeout_completes(
        postgres: PostgresServer, fresh: FreshDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    migrations = bootstrap.load_migrations()
    slow = Migration(len(migrations) + 1, "slow",
                               f"SELECT pg_sleep({CONNECT_TIMEOUT + 1});")
    monkeypatch.setattr(bootstrap, "load_migrations", lambda: [*migrations, slow])
    conn = connect_as_the_lambda(postgres, fresh.name)
    try:
        result = bootstrap.apply(conn, deadline=time.monotonic() + 60)
    finally:
        close(conn)
    assert result.version == slow.version


@contextmanager
def stopped_when(postgres: PostgresServer, pid: int, condition: str) -> Iterator[None]:
    """The backend `pid` stopped (SIGSTOP) as soon as pg_stat_activity shows `condition` for
    it, so that it answers nothing, not even its statement_timeout; resumed at the end, or
    after RESUME_AFTER seconds, so that a client that would wait forever fails instead."""
    watcher = postgres.connect()
    stopped = threading.Event()
    resume = threading.Timer(RESUME_AFTER, os.kill, [pid, signal.SIGCONT])
    resume.start()

    def stop_when_seen() -> None:
        for _ in range(500):
            if watcher.run(f"SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = :p "
                           f"AND {condition})", p=pid)[0][0]:
                os.kill(pid, signal.SIGSTOP)
                stopped.set()
                return
            time.sleep(0.01)

    thread = threading.Thread(target=stop_when_seen)
    thread.start()
    try:
        yield
    finally:
        thread.join()
        resume.cancel()
        os.kill(pid, signal.SIGCONT)
        ended = backend_ended(watcher, pid, within=5)  # its client gone, it rolls back
        watcher.close()
    assert stopped.is_set(), f"the backend never showed {condition}"
    assert ended, "the backend outlived its client"


def test_a_database_that_stops_answering_ends_the_run_before_lambda_would(
        postgres: PostgresServer, fresh: FreshDatabase) -> None:
    # Lambda kills the run DEADLINE_MARGIN_SECONDS after the deadline; the run gives up first.
    assert REPLY_GRACE_SECONDS < handler.DEADLINE_MARGIN_SECONDS
    conn = connect_as_the_lambda(postgres, fresh.name)
    pid = conn.run("SELECT pg_backend_pid()")[0][0]
    started = time.monotonic()
    with bootstrap_run_in_progress(postgres, fresh.name), \
            stopped_when(postgres, pid, "wait_event_type = 'Lock'"):
        with pytest.raises(bootstrap.BootstrapError) as failed:
            bootstrap.apply(conn, deadline=started + 2)
        took = time.monotonic() - started
        close(conn)  # quietly: the connection is lost
    assert 2 + REPLY_GRACE_SECONDS - 0.5 < took < 2 + REPLY_GRACE_SECONDS + 2
    assert str(failed.value).startswith(
        "bootstrap failed, nothing was changed: the connection to the database was lost (")
    assert bootstrap.current_version(fresh.conn) == 0


def test_a_commit_still_running_at_the_deadline_is_reported_as_of_unknown_outcome(
        postgres: PostgresServer, fresh: FreshDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    # statement_timeout does not reach what runs at COMMIT: PostgreSQL disables it before it
    # commits, so a deferred trigger there runs on past the deadline. The run stops waiting
    # REPLY_GRACE_SECONDS after it and says it cannot tell; the server then commits.
    migrations = bootstrap.load_migrations()
    slow_commit = Migration(len(migrations) + 1, "slow_commit", """
        CREATE TABLE public.commit_marker (id int);
        CREATE FUNCTION public.slowly() RETURNS trigger LANGUAGE plpgsql AS
          $$ BEGIN PERFORM pg_sleep(10); RETURN NULL; END $$;
        CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON public.commit_marker
          DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.slowly();
        INSERT INTO public.commit_marker VALUES (1);""")
    monkeypatch.setattr(bootstrap, "load_migrations", lambda: [*migrations, slow_commit])
    conn = connect_as_the_lambda(postgres, fresh.name)
    pid = conn.run("SELECT pg_backend_pid()")[0][0]
    started = time.monotonic()
    with pytest.raises(bootstrap.BootstrapError) as failed:
        bootstrap.apply(conn, deadline=started + 3)
    assert time.monotonic() - started < 3 + REPLY_GRACE_SECONDS + 1
    close(conn)
    assert str(failed.value).startswith(
        "bootstrap failed: the connection to the database was lost while committing (")
    assert "whether it committed is unknown. Run it again" in str(failed.value)
    watcher = postgres.connect()
    try:
        assert backend_ended(watcher, pid, within=15), "the backend never finished its COMMIT"
    finally:
        watcher.close()
    # It did commit, after the run had given up: hence "unknown", never "nothing changed".
    assert bootstrap.current_version(fresh.conn) == slow_commit.version
