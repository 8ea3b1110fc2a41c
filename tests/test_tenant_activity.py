"""What one app_user session sees of another's SQL, on real PostgreSQL 15.

Every tenant's traffic runs as app_user, and pg_stat_activity shows a role the text of its
own sessions' statements: the one running, or else the last one, for as long as the session
stays idle (a pooled server connection between clients). So tenant data written into SQL
text is visible to any code running as app_user (through SQL injection, say); sent as a bind
parameter it shows as $1. The README's contract asks for parameters; this is why, and that
they suffice. And any app_user session may end any other (a limit the README states).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pg8000.native
import pytest
from pg8000.native import Connection as Conn

from tests.fixture_postgres import PostgresServer
from tests.fixture_tenants import TENANT_B, connect_as

SECRET = "ann@example.com"


@contextmanager
def two_sessions(postgres: PostgresServer, passwords: dict[str, str],
                 database: str) -> Iterator[tuple[Conn, Conn]]:
    """Two app_user sessions, as two tenants' requests would have; closed afterwards."""
    first = connect_as(postgres, passwords, database, "app_user")
    second = connect_as(postgres, passwords, database, "app_user")
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def seen_while_running(watcher: Conn, statement: Callable[[], object]) -> list[str]:
    """The other app_user sessions' statement texts, while `statement` runs (1.5 s)."""
    running = threading.Thread(target=statement)
    running.start()
    try:
        for _ in range(50):
            time.sleep(0.05)
            texts = [row[0] for row in watcher.run(
                "SELECT query FROM pg_stat_activity WHERE usename = 'app_user' "
                "AND pid <> pg_backend_pid() AND state = 'active'")]
            if texts:
                return texts
        return []
    finally:
        running.join()


def test_statement_text_shows_to_every_app_user_session_parameters_do_not(
        postgres: PostgresServer, role_passwords: dict[str, str], tenant_db: str) -> None:
    with two_sessions(postgres, role_passwords, tenant_db) as (tenant_a, watcher):
        # A literal in the SQL text (as client-side interpolation sends it) is visible
        literal = seen_while_running(
            watcher, lambda: tenant_a.run(f"SELECT pg_sleep(1.5), '{SECRET}'"))
        assert len(literal) == 1 and SECRET in literal[0]
        # while the same value sent as a bind parameter is not
        bound = seen_while_running(
            watcher, lambda: tenant_a.run("SELECT pg_sleep(1.5), CAST(:e AS text)", e=SECRET))
        assert bound == ["SELECT pg_sleep(1.5), CAST($1 AS text)"]


def test_an_idle_sessions_last_statement_stays_visible(
        postgres: PostgresServer, role_passwords: dict[str, str], tenant_db: str) -> None:
    # What an idle PgBouncer server connection shows after its last client's transaction
    with two_sessions(postgres, role_passwords, tenant_db) as (tenant_a, watcher):
        pid = tenant_a.run("SELECT pg_backend_pid()")[0][0]
        tenant_a.run(f"SELECT '{SECRET}' AS literal")
        time.sleep(0.5)  # the statement is long over
        assert watcher.run("SELECT state, query FROM pg_stat_activity WHERE pid = :p",
                           p=pid) == [["idle", f"SELECT '{SECRET}' AS literal"]]
        tenant_a.run("SELECT CAST(:e AS text) AS bound", e=SECRET)
        assert watcher.run("SELECT query FROM pg_stat_activity WHERE pid = :p",
                           p=pid) == [["SELECT CAST($1 AS text) AS bound"]]


def test_any_app_user_session_may_notify_another_tenants_listener(
        postgres: PostgresServer, role_passwords: dict[str, str], tenant_db: str) -> None:
    # The contract: a notification is a hint, never trusted data
    with two_sessions(postgres, role_passwords, tenant_db) as (listener, other):
        listener.run("LISTEN bookings_of_tenant_a")
        other.run("BEGIN")
        other.run("SELECT app.set_tenant(:t)", t=TENANT_B)
        other.run("SELECT pg_notify('bookings_of_tenant_a', 'booking 7 cancelled')")
        other.run("COMMIT")
        listener.run("SELECT 1")  # pg8000 collects notifications with a reply
        assert [(channel, payload) for _, channel, payload in listener.notifications] == [
            ("bookings_of_tenant_a", "booking 7 cancelled")]


def test_one_app_user_session_can_end_another_a_limit_the_readme_states(
        postgres: PostgresServer, role_passwords: dict[str, str], tenant_db: str) -> None:
    # PostgreSQL lets a role signal its own role's backends, and every tenant is app_user;
    # on RDS the master cannot revoke EXECUTE on these pg_catalog functions. Should this
    # start failing, the README's availability note is out of date.
    tenant_a = connect_as(postgres, role_passwords, tenant_db, "app_user")
    tenant_b = connect_as(postgres, role_passwords, tenant_db, "app_user")
    pid_b = tenant_b.run("SELECT pg_backend_pid()")[0][0]
    assert tenant_a.run("SELECT pg_terminate_backend(:p)", p=pid_b) == [[True]]
    tenant_a.close()
    with pytest.raises((pg8000.native.InterfaceError, pg8000.native.DatabaseError)):
        tenant_b.run("SELECT 1")  # terminated
