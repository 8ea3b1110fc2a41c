"""A PgBouncer pod stops between transactions: the Deployment's preStop hook, run against real
PgBouncer, lets a transaction in flight commit and then ends the process, while SIGTERM (what
the kubelet sends without the hook) keeps PgBouncer serving as long as a pooled client stays
connected, so the kubelet would kill it at the end of the grace period, mid-transaction."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pg8000.native
import pytest

from boom_stacks.k8s.pgbouncer import DRAIN_SECONDS, pre_stop_command
from tests.fixture_k8s import manifests
from tests.fixture_postgres import (
    PgBouncer,
    PostgresServer,
    app_user_userlist,
    local_pgbouncer_ini,
    pooler_connection,
    running_pgbouncer,
)

IN_FLIGHT_SECONDS = 2  # the transaction running when the pod is asked to stop
WAIT_SECONDS = IN_FLIGHT_SECONDS + 10  # how long the test watches PgBouncer afterwards


@dataclass
class Outcome:
    transaction: str  # "committed" or the client's error
    exited_after: float | None  # seconds from the stop to PgBouncer's exit; None: still running
    idle_client_served: bool  # whether a connected, idle client could still run a query


@pytest.fixture
def bouncer(postgres: PostgresServer, tenant_db: str,
            role_passwords: dict[str, str]) -> Iterator[PgBouncer]:
    ini = local_pgbouncer_ini(postgres, tenant_db)
    userlist = app_user_userlist(role_passwords["app_user"])
    with running_pgbouncer(ini, userlist, client_ca=postgres.ca_file) as running:
        yield running


def stop_during_a_transaction(bouncer: PgBouncer, database: str, password: str,
                              stop: Callable[[], None]) -> Outcome:
    """Start a transaction and keep an idle client connected; call `stop` while the
    transaction is in flight, and watch what happens to both and to PgBouncer."""
    in_flight = pooler_connection(bouncer, database, password)
    idle = pooler_connection(bouncer, database, password)
    idle.run("SELECT 1")
    outcome: dict[str, str] = {}

    def transaction() -> None:
        try:
            in_flight.run("BEGIN")
            in_flight.run(f"SELECT pg_sleep({IN_FLIGHT_SECONDS})")
            in_flight.run("COMMIT")
            outcome["transaction"] = "committed"
        except pg8000.native.Error as err:
            outcome["transaction"] = str(err)

    worker = threading.Thread(target=transaction)
    worker.start()
    time.sleep(0.5)  # the transaction is in flight
    started = time.monotonic()
    stop()
    worker.join(timeout=30)
    exited_after = None
    while time.monotonic() - started < WAIT_SECONDS:
        if not os.path.exists(f"/proc/{bouncer.pid}") or _is_zombie(bouncer.pid):
            exited_after = time.monotonic() - started
            break
        time.sleep(0.1)
    try:
        idle.run("SELECT 1")
        served = True
    except pg8000.native.Error:
        served = False
    return Outcome(outcome.get("transaction", "no outcome"), exited_after, served)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_the_pre_stop_hook_lets_the_transaction_commit_then_stops_pgbouncer(
        bouncer: PgBouncer, tenant_db: str, role_passwords: dict[str, str]) -> None:
    # The Deployment's hook, with this PgBouncer's pid for the container's PID 1 and no drain
    command = pre_stop_command(pid=str(bouncer.pid), drain_seconds=0)
    hooks: list[subprocess.Popen[bytes]] = []
    outcome = stop_during_a_transaction(bouncer, tenant_db, role_passwords["app_user"],
                                        stop=lambda: hooks.append(subprocess.Popen(command)))
    hook = hooks[0]
    hook.wait(timeout=30)
    assert outcome.transaction == "committed"
    # PgBouncer exits once the transaction is done (not at the end of a grace period),
    assert outcome.exited_after is not None and outcome.exited_after < IN_FLIGHT_SECONDS + 6
    # having closed its idle clients, who reconnect to another replica,
    assert not outcome.idle_client_served
    # and the hook returns only then (the kubelet waits for it).
    assert hook.returncode == 0


def test_negative_control_sigterm_keeps_serving_while_a_client_stays(
        bouncer: PgBouncer, tenant_db: str, role_passwords: dict[str, str]) -> None:
    outcome = stop_during_a_transaction(bouncer, tenant_db, role_passwords["app_user"],
                                        stop=lambda: os.kill(bouncer.pid, signal.SIGTERM))
    assert outcome.transaction == "committed"
    # Still running long after the transaction, still serving its pooled client: the kubelet
    # would SIGKILL it when the grace period ends, whatever transaction is then in flight.
    assert outcome.exited_after is None
    assert outcome.idle_client_served


def test_the_deployment_runs_the_hook_within_its_grace_period() -> None:
    pod = manifests("prod")["Deployment/pgbouncer"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["lifecycle"]["preStop"]["exec"]["command"] == pre_stop_command()
    assert "kill -INT 1;" in pre_stop_command()[2]
    # The drain and then the transactions in flight both fit before the kubelet's SIGKILL.
    assert pod["terminationGracePeriodSeconds"] >= DRAIN_SECONDS + 30
