"""A database that goes silent mid-transaction does not hang PgBouncer's clients.

When RDS fails over, the old primary's host stops answering: packets are dropped, not refused,
so no connection is reset (test_pgbouncer_database_restart.py covers the reset). With the
operating system's defaults, PgBouncer would wait for the server's reply some 15 minutes
(tcp_retries2) and the client with it. The rendered ini closes a connection whose data goes
unacknowledged for `dead_connection_seconds` (tcp_user_timeout), so the client gets an error
it can retry. Real PostgreSQL 15 (its own server) and real PgBouncer; the silence is made with
`tc` on the loopback device, dropping every packet to the database's port as it arrives.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pg8000.native
import pytest

from boom_stacks.config import ENVIRONMENT_CONFIGS
from tests.fixture_network import silent
from tests.fixture_postgres import (
    PgBouncer,
    PostgresServer,
    app_user_userlist,
    bootstrapped_database,
    local_pgbouncer_ini,
    new_role_passwords,
    pooler_connection,
    running_pgbouncer,
    running_postgres,
)
from tests.fixture_tenants import TENANT_A

DEAD_SECONDS = 5  # the least config allows
NO_ANSWER_WAIT = 15  # the negative control's client gives up after this long


@dataclasses.dataclass(frozen=True)
class Pooled:
    server: PostgresServer
    database: str
    password: str


@pytest.fixture(scope="module")
def pooled() -> Iterator[Pooled]:
    with running_postgres() as server:
        passwords = new_role_passwords()
        yield Pooled(server, bootstrapped_database(server, passwords, "silent"),
                     passwords["app_user"])


@contextmanager
def bouncer(pooled: Pooled, dead_connection_seconds: int) -> Iterator[PgBouncer]:
    pool = dataclasses.replace(ENVIRONMENT_CONFIGS["prod"].pgbouncer,
                               dead_connection_seconds=dead_connection_seconds)
    ini = local_pgbouncer_ini(pooled.server, pooled.database, pool=pool)
    with running_pgbouncer(ini, app_user_userlist(pooled.password),
                           client_ca=pooled.server.ca_file) as running:
        yield running


def in_a_transaction(running: PgBouncer, pooled: Pooled) -> pg8000.native.Connection:
    """A client inside a tenant transaction, so holding a server connection."""
    client = pooler_connection(running, pooled.database, pooled.password,
                               timeout=NO_ANSWER_WAIT)
    client.run("BEGIN")
    client.run("SELECT app.set_tenant(CAST(:t AS uuid))", t=str(TENANT_A))
    return client


def count_bookings(running: PgBouncer, pooled: Pooled) -> int:
    client = in_a_transaction(running, pooled)
    try:
        count = int(client.run("SELECT count(*) FROM app.bookings")[0][0])
        client.run("COMMIT")
        return count
    finally:
        client.close()


def test_a_client_mid_transaction_gets_an_error_soon_after_the_database_goes_silent(
        pooled: Pooled) -> None:
    with bouncer(pooled, DEAD_SECONDS) as running:
        client = in_a_transaction(running, pooled)
        with silent(pooled.server.port):
            started = time.monotonic()
            with pytest.raises(pg8000.native.InterfaceError):
                client.run("SELECT count(*) FROM app.bookings")
            took = time.monotonic() - started
        # PgBouncer gave up the server connection ("server conn crashed?" in its log) and closed
        # this client's, long before the client's own 15 s: the application sees a broken
        # connection at once and retries, as the contract asks.
        assert DEAD_SECONDS - 1 < took < DEAD_SECONDS + 5
        # Once the database answers again, the next transaction gets a new server connection.
        assert count_bookings(running, pooled) == 0


def test_negative_control_without_the_bound_the_client_hears_nothing(pooled: Pooled) -> None:
    # The same ini with the bound at config's maximum (10 minutes): nothing comes back within
    # NO_ANSWER_WAIT, so the test above sees the setting, not something else ending the wait.
    with bouncer(pooled, 600) as running:
        client = in_a_transaction(running, pooled)
        with silent(pooled.server.port):
            started = time.monotonic()
            with pytest.raises((OSError, pg8000.native.InterfaceError)):
                client.run("SELECT count(*) FROM app.bookings")  # the client's own timeout
            assert time.monotonic() - started >= NO_ANSWER_WAIT - 1


# A client that sends a query for a 50 MB result and stops itself (SIGSTOP) before reading
# any of it, as an application stalls; once continued, it reads the result, or says why not.
SLOW_READER = """
import os, signal, ssl, pg8000.native
context = ssl.create_default_context(cafile=os.environ["CA"])
conn = pg8000.native.Connection("app_user", host="127.0.0.1", port=int(os.environ["PORT"]),
                                database=os.environ["DB"], password=os.environ["PASSWORD"],
                                ssl_context=context, timeout=60)
read_replies = conn.handle_messages

def stall_then_read(context):
    print("asked", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)
    return read_replies(context)

conn.handle_messages = stall_then_read
try:
    rows = conn.run("SELECT repeat('x', 500) FROM generate_series(1, 100000)")
    print("read", len(rows))
except Exception as err:
    print("cut", type(err).__name__)
"""


def read_after_a_stall(running: PgBouncer, pooled: Pooled, stall: float) -> str:
    """What SLOW_READER says when it stalls `stall` seconds before reading its result."""
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_READER], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "CA": str(pooled.server.ca_file), "PORT": str(running.port),
             "DB": pooled.database, "PASSWORD": pooled.password})
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "asked\n"  # then it stops itself
        time.sleep(stall)  # meanwhile the result fills its socket buffer and stays there
        os.kill(child.pid, signal.SIGCONT)
        out, _ = child.communicate(timeout=60)
        return out.strip()
    finally:
        child.kill()
        child.wait()


def test_a_client_that_stops_reading_for_longer_than_the_bound_is_cut_off_too(
        pooled: Pooled) -> None:
    # The same timeout guards PgBouncer's client sockets: data the client's kernel stops
    # acknowledging (a full receive window) for that long ends the connection. So the contract
    # says: never stop reading a result for that long. Reading on after a shorter pause is fine.
    with bouncer(pooled, DEAD_SECONDS) as running:
        assert read_after_a_stall(running, pooled, DEAD_SECONDS + 3).startswith("cut ")
        assert read_after_a_stall(running, pooled, 1) == "read 100000"
    with bouncer(pooled, 600) as running:  # negative control: the same stall, no bound
        assert read_after_a_stall(running, pooled, DEAD_SECONDS + 3) == "read 100000"
