"""CPU time spent by the database and the pooler, and by the load generator.

Throughput on a shared 2-core machine moves from run to run; the CPU each transaction costs
moves much less, so the benchmark reports both. PostgreSQL backends and PgBouncer are counted by
process name and pid from /proc (they run as their own processes, started by the fixtures);
pgbench is counted from this process's waited-for children.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

SERVER_PROCESSES = ("postgres", "pgbouncer")
TICKS = os.sysconf("SC_CLK_TCK")


def server_ticks() -> dict[tuple[int, int], int]:
    """User + system CPU ticks of every live PostgreSQL and PgBouncer process, by (pid, start
    time), so a reused pid counts as a new process."""
    ticks = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        name, fields = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:]
        if name in SERVER_PROCESSES:
            values = fields.split()
            # stat fields 14, 15 and 22: utime, stime, starttime
            ticks[(int(stat.parent.name), int(values[19]))] = int(values[11]) + int(values[12])
    return ticks


def server_seconds_between(before: dict[tuple[int, int], int],
                           after: dict[tuple[int, int], int]) -> float:
    """CPU seconds the server processes alive at `after` spent since `before`. A process that
    ended in between (an autovacuum worker, a closed session) is left out, not subtracted."""
    return sum(ticks - before.get(key, 0) for key, ticks in after.items()) / TICKS


def children_seconds() -> float:
    """User + system CPU seconds of this process's finished children (pgbench)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
