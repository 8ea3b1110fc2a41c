"""CPU time spent by the database and the pooler, and by the load generator.

Where a transaction's time goes on a shared 2-core machine: the benchmark reports this beside
tps, and the two agree when the machine is saturated. PostgreSQL and PgBouncer are counted as
process trees from /proc, rooted at the postmaster and the pgbouncer process the benchmark
started: each process with its reaped children, so a backend that ends during a run (a direct
connection closing) moves its CPU time into the postmaster's and is neither lost nor counted
twice. Only those trees: another PostgreSQL on the machine (a test run, a server still shutting
down) neither adds to the figure nor, by ending, takes from it. pgbench is counted from this
process's waited-for children.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def read_stat(stat: Path) -> tuple[str, list[str]]:
    """A /proc/<pid>/stat file as (process name, the fields after it). The name is in
    parentheses and may hold spaces; field n of proc(5) is at index n - 3 of the list."""
    text = stat.read_text()
    return text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()


def tree_seconds(roots: Iterable[int]) -> float:
    """CPU seconds of the processes `roots` and all their descendants, each with its reaped
    children. A root that is not running is an error: its figure would silently be zero."""
    return tree_ticks(roots) / TICKS


def tree_ticks(roots: Iterable[int]) -> int:
    """tree_seconds() in clock ticks, as /proc counts them: whole numbers, so that two
    readings compare exactly (in seconds, (x + 36) / 100 - x / 100 may be 0.35999...)."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            _, fields = read_stat(stat)
        except OSError:  # the process ended while we looked
            continue
        pid = int(stat.parent.name)
        parent[pid] = int(fields[1])  # stat field 4: ppid
        ticks[pid] = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    wanted = set(roots)
    if missing := wanted - ticks.keys():
        raise ProcessLookupError(f"no running process {sorted(missing)} to count CPU time of")

    def in_tree(pid: int) -> bool:
        while pid > 1:
            if pid in wanted:
                return True
            pid = parent.get(pid, 0)
        return False

    return sum(value for pid, value in ticks.items() if in_tree(pid))


def children_seconds() -> float:
    """User + system CPU seconds of this process's finished children (pgbench)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
