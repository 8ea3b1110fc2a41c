"""When a run must have ended, committed or rolled back.

Lambda kills a run at its timeout, mid-transaction, and PostgreSQL would go on running the
statement and holding the run's locks (a table's ACCESS EXCLUSIVE, say) until it noticed the
connection gone. The handler's deadline is Lambda's remaining time less a margin; the CLI
has none.
"""

from __future__ import annotations

import math
import time

import pg8000.native

from .errors import BootstrapError, sqlstate

QUERY_CANCELED = "57014"  # what statement_timeout raises


# What a task cut at the deadline says: why it may have run long, and what to do next.
_OUT_OF_TIME = {
    "bootstrap": ("the run", "another bootstrap run held the database, or a migration is too "
                  "slow for one run). Make the migration faster or split it into releases, "
                  "then deploy again"),
    "repair": ("the repair", "another bootstrap run held the database, or a restore waited on "
               "a table). Invoke the repair again once the deploy or the table is done"),
    "check": ("the check", "a restore waited on a table, or the audit is slow). The next "
              "scheduled check tries again; `--check` shows the findings without a deadline"),
}


class Deadline:
    def __init__(self, at: float | None, *, task: str = "bootstrap") -> None:
        if task not in _OUT_OF_TIME:
            raise ValueError(f"task {task!r}: one of {', '.join(_OUT_OF_TIME)}")
        self.at = at  # a time.monotonic() value, or None: no deadline
        self.task = task  # what runs under it, for its error

    def seconds_left(self) -> float:
        return math.inf if self.at is None else self.at - time.monotonic()

    def bound_statements(self, conn: pg8000.native.Connection) -> None:
        """No statement from here on runs past the deadline, as far as this transaction goes:
        called again before each step, so each gets only what is left when it starts."""
        left = self.seconds_left()
        if left == math.inf:
            return
        if left <= 0:
            raise self.out_of_time()
        conn.run(f"SET LOCAL statement_timeout = {max(1, int(left * 1000))}")

    def cancelled(self, err: BaseException) -> bool:
        """Whether `err` is a statement this deadline cancelled (not an operator's cancel)."""
        return sqlstate(err) == QUERY_CANCELED and self.seconds_left() < 1

    def out_of_time(self) -> BootstrapError:
        subject, why_and_next = _OUT_OF_TIME[self.task]
        return BootstrapError(
            f"{self.task} failed, nothing was changed: {subject} would not have ended before "
            "the Lambda's timeout (a statement was cancelled, or none could start, at the "
            f"deadline: {why_and_next}")
