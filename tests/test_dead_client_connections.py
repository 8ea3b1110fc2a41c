"""PostgreSQL ends the server connections of a client that vanished, by TCP keepalive.

A PgBouncer pod whose node is lost never closes its server connections: no FIN, no reset. They
stay as backends, counted against app_user's CONNECTION LIMIT beside the replacement pod's pool,
until PostgreSQL finds them dead. The parameter group sets how soon (DEAD_CLIENT_KEEPALIVE).
Real PostgreSQL 15; the vanished client is made with fixture_network.silent (packets to it
dropped), and the keepalive values are scaled down per session (they are per-connection
settings), so that the test takes seconds, not the parameter group's 90.
"""

from __future__ import annotations

import contextlib
import time

import pg8000.native
from aws_cdk.assertions import Match

from boom_stacks.constructs.tenant_database import DEAD_CLIENT_KEEPALIVE
from tests.fixture_network import silent
from tests.fixture_postgres import PostgresServer, backend_alive, backend_ended
from tests.fixture_synth import Synthesized

SCALED = {"tcp_keepalives_idle": 2, "tcp_keepalives_interval": 1, "tcp_keepalives_count": 2}


def reaped_after(keepalive: dict[str, int]) -> int:
    """Seconds from a client's last word to PostgreSQL ending its backend, once it vanished."""
    return (keepalive["tcp_keepalives_idle"]
            + keepalive["tcp_keepalives_interval"] * keepalive["tcp_keepalives_count"])


def test_the_parameter_group_reaps_a_vanished_pgbouncer_within_90_seconds(
        synthesized: Synthesized) -> None:
    synthesized.template("Data").has_resource_properties("AWS::RDS::DBParameterGroup", {
        "Parameters": Match.object_like({k: str(v) for k, v in DEAD_CLIENT_KEEPALIVE.items()})})
    assert reaped_after(DEAD_CLIENT_KEEPALIVE) == 90
    # RDS's defaults (300 s, 2 probes 30 s apart) would take 360 s.
    assert reaped_after({"tcp_keepalives_idle": 300, "tcp_keepalives_interval": 30,
                         "tcp_keepalives_count": 2}) == 360


def backend(conn: pg8000.native.Connection) -> tuple[int, int]:
    """The connection's backend pid, and the client port PostgreSQL sees it from."""
    [[pid, port]] = conn.run("SELECT pid, client_port FROM pg_stat_activity "
                             "WHERE pid = pg_backend_pid()")
    return int(pid), int(port)


def test_postgres_ends_a_vanished_clients_backend_by_keepalive(postgres: PostgresServer) -> None:
    watcher = postgres.connect()
    reaped, kept = postgres.connect(), postgres.connect()
    try:
        for name, value in SCALED.items():
            reaped.run(f"SET {name} = {value}")
        reaped_pid, reaped_port = backend(reaped)
        kept_pid, kept_port = backend(kept)  # the kernel's defaults: 2 hours idle
        with silent(reaped_port, kept_port):
            started = time.monotonic()
            backend_ended(watcher, reaped_pid, within=15)
            took = time.monotonic() - started
            # Negative control: the same silence, the kernel's keepalive, still there.
            assert backend_alive(watcher, kept_pid)
        assert not backend_alive(watcher, reaped_pid)
        assert took < reaped_after(SCALED) + 3
    finally:
        for conn in (reaped, kept, watcher):
            with contextlib.suppress(pg8000.native.InterfaceError, OSError):
                conn.close()
