"""The benchmark's CPU accounting (benchmarks/process_cpu.py) against a real PostgreSQL.

Not a timing test: it checks that the CPU a backend spent is still counted once the backend has
exited, which a first version lost (its figure went negative when a backend ended mid-run).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from benchmarks import process_cpu
from tests.fixture_postgres import PostgresServer

BURN = "SELECT count(*) FROM generate_series(1, 5000000)"  # about half a second of CPU


def cpu_seconds_of(pid: int) -> float:
    _, fields = process_cpu.read_stat(Path(f"/proc/{pid}/stat"))
    return (int(fields[11]) + int(fields[12])) / process_cpu.TICKS  # utime + stime


def test_an_ended_backend_still_counts(postgres: PostgresServer) -> None:
    start = process_cpu.server_seconds()
    # Given a backend that burns CPU and then ends
    conn = postgres.connect()
    pid = conn.run("SELECT pg_backend_pid()")[0][0]
    conn.run(BURN)
    spent = cpu_seconds_of(pid)
    conn.close()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # until the postmaster has reaped it
    # Then its CPU time is counted (in the postmaster's reaped children), and only once
    counted = process_cpu.server_seconds() - start
    assert spent > 0.1
    assert spent <= counted <= spent + 1.0, (spent, counted)


def test_children_seconds_counts_a_finished_child() -> None:
    start = process_cpu.children_seconds()
    subprocess.run([sys.executable, "-c", "sum(range(10_000_000))"], check=True)
    assert process_cpu.children_seconds() - start > 0.05
