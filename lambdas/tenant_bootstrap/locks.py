"""How the bootstrap waits for the locks of tables in use, without stalling the application.

A migration's `ALTER TABLE` (0006's, or a repair's) needs the table's ACCESS EXCLUSIVE lock,
so it waits for every transaction using the table. While it waits, PostgreSQL queues every new
query on that table behind it: without a bound, the application stalls for as long as the
longest transaction on the table runs (shown in tests/test_tenant_bootstrap_locks.py). So each
attempt waits at most `timeout_ms` for any one lock (`lock_timeout`), then rolls back, which
changes nothing, pauses, and tries again. So does an attempt PostgreSQL ends as a deadlock's
victim: a transaction it waited for went on to wait for a table the attempt had locked.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pg8000.native

from .errors import BootstrapError, sqlstate

LOCK_NOT_AVAILABLE = "55P03"  # what lock_timeout raises
DEADLOCK_DETECTED = "40P01"  # the victim of a lock cycle, after deadlock_timeout


@dataclass(frozen=True)
class LockWait:
    timeout_ms: int = 2000  # the longest the application waits behind one attempt
    attempts: int = 8
    first_pause_seconds: float = 1.0  # doubles after each attempt, up to max_pause_seconds
    max_pause_seconds: float = 15.0

    def __post_init__(self) -> None:
        if self.timeout_ms < 1 or self.attempts < 1 or self.first_pause_seconds < 0 \
                or self.max_pause_seconds < self.first_pause_seconds:
            raise ValueError(f"{self}: timeout_ms and attempts must be at least 1, pauses "
                             "non-negative with max_pause_seconds >= first_pause_seconds")

    def pauses(self) -> Iterator[float]:
        """The pause after each failed attempt but the last."""
        pause = self.first_pause_seconds
        for _ in range(self.attempts - 1):
            yield pause
            pause = min(pause * 2, self.max_pause_seconds)

    def last_attempt_after_seconds(self) -> float:
        """When the last attempt starts at the latest, counted from the first: a transaction
        in the way that something ends sooner (PgBouncer's idle_transaction_timeout) cannot
        fail the run alone."""
        return (self.attempts - 1) * self.timeout_ms / 1000 + sum(self.pauses())

    def worst_case_seconds(self) -> float:
        """How long the lock waits of one run can take in all (the Lambda's timeout must
        allow it, with the migrations' own time)."""
        return self.last_attempt_after_seconds() + self.timeout_ms / 1000


def blocked(err: BaseException, lock_timeout_ms: int) -> str | None:
    """What kept an attempt from its locks, if `err` says so: then trying again later can
    succeed (nothing was changed). None for any other error."""
    state = sqlstate(err)
    if state == LOCK_NOT_AVAILABLE:
        return f"waited {lock_timeout_ms} ms for a table lock"
    if state == DEADLOCK_DETECTED:
        return ("was a deadlock's victim (a transaction it waited for wanted a table it had "
                "locked)")
    return None


def stayed_in_use(attempts: int, lock_wait: LockWait, holders: str,
                  near_deadline: bool) -> BootstrapError:
    before = " before the Lambda's timeout" if near_deadline else ""
    return BootstrapError(
        f"bootstrap failed, nothing was changed: a table it must alter stayed in use "
        f"({attempts} attempts{before}, each waiting at most {lock_wait.timeout_ms} ms for a "
        f"lock, so the application never queued longer). Sessions holding table locks: "
        f"{holders}. Let them finish (or end them with pg_terminate_backend), then run the "
        "bootstrap again")


def lock_holders(conn: pg8000.native.Connection) -> str:
    """Who else holds locks on tables of this database now: process id, role, application,
    state, transaction age. Never the query text, which may hold a tenant's data."""
    rows = conn.run("""
        SELECT a.pid, a.usename, a.application_name, a.state,
               extract(epoch FROM now() - a.xact_start)::int,
               string_agg(DISTINCT l.relation::regclass::text, ', ')
        FROM pg_catalog.pg_locks l
        JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
        JOIN pg_catalog.pg_class c ON c.oid = l.relation
        WHERE l.granted AND l.database = (SELECT oid FROM pg_catalog.pg_database
                                          WHERE datname = pg_catalog.current_database())
          AND l.pid <> pg_catalog.pg_backend_pid()
          AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'pg_toast'::regnamespace,
                                     'information_schema'::regnamespace)
        GROUP BY 1, 2, 3, 4, 5
        ORDER BY 5 DESC NULLS LAST, 1
        LIMIT 5""")
    if not rows:
        return "no session holds a table lock now (the one in the way has ended)"
    return "; ".join(
        f"pid {pid} ({user}{f', {app}' if app else ''}) "
        f"{state or 'in an unknown state'}"
        f"{f', its transaction {age} s old' if age is not None else ''}, on {tables}"
        for pid, user, app, state, age, tables in rows)
