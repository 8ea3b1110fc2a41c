"""CPU time spent by the database and the pooler, and by the load generator.

Where a transaction's time goes on a shared 2-core machine: the benchmark reports this beside
tps, and the two agree when the machine is saturated. PostgreSQL and PgBouncer are counted by
process name from /proc (they run as their own processes, started by the fixtures), each with
its reaped children: a backend that ends during a run (a direct connection closing, an
autovacuum worker) moves its CPU time into the postmaster's, so it is neither lost nor counted
twice. pgbench is counted from this process's waited-for children.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

SERVER_PROCESSES = ("postgres", "pgbouncer")
TICKS = os.sysconf("SC_CLK_TCK")


def read_stat(stat: Path) -> tuple[str, list[str]]:
    """A /proc/<pid>/stat file as (process name, the fields after it). The name is in
    parentheses and may hold spaces; field n of proc(5) is at index n - 3 of the list."""
    text = stat.read_text()
    return text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()


def server_seconds() -> float:
    """CPU seconds of every PostgreSQL and PgBouncer process and its reaped children."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, fields = read_stat(stat)
        except OSError:  # the process ended while we looked
            continue
        if name in SERVER_PROCESSES:
            # stat fields 14-17: utime, stime, cutime, cstime
            total += sum(int(value) for value in fields[11:15])
    return total / TICKS


def children_seconds() -> float:
    """User + system CPU seconds of this process's finished children (pgbench)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
