"""When a run must have ended, committed or rolled back.

Lambda kills a run at its timeout, mid-transaction, and PostgreSQL would go on running the
statement and holding the run's locks (a table's ACCESS EXCLUSIVE, say) until it noticed the
connection gone. The handler's deadline is Lambda's remaining time less a margin; the CLI
has none. statement_timeout bounds every statement but what PostgreSQL does at COMMIT (it
switches the timeout off before committing: deferred triggers run on); a reply that has not
come REPLY_GRACE_SECONDS after the deadline counts as a lost connection.
"""

from __future__ import annotations

import math
import time

import pg8000.native

from .connection import wait_for_replies
from .errors import BootstrapError, reason, sqlstate

QUERY_CANCELED = "57014"  # what statement_timeout raises
# How long past the deadline the client still waits for a reply. At the deadline the server
# cancels the statement (statement_timeout) and answers at once; only a server or network that
# has stopped answering is waited for longer, and given up on after this. It must stay below
# the handler's margin before Lambda's timeout (handler.DEADLINE_MARGIN_SECONDS).
REPLY_GRACE_SECONDS = 5.0


# What a task cut at the deadline says: why it may have run long, and what to do next.
_OUT_OF_TIME = {
    "bootstrap": ("the run", "another bootstrap run held the database, or a migration is too "
                  "slow for one run). Make the migration faster or split it into releases, "
                  "then deploy again"),
    "repair": ("the repair", "another bootstrap run held the database, or a restore waited on "
               "a table). Invoke the repair again once the deploy or the table is done"),
    "check": ("the check", "a restore waited on a table, or the audit is slow). The next "
              "scheduled check tries again; `--check` shows the findings without a deadline"),
    "rotation": ("setSecret", "a bootstrap run held the database for that long). Secrets "
                 "Manager retries the step; a later rotation starts anew"),
}


class Deadline:
    def __init__(self, at: float | None, *, task: str = "bootstrap") -> None:
        if task not in _OUT_OF_TIME:
            raise ValueError(f"task {task!r}: one of {', '.join(_OUT_OF_TIME)}")
        self.at = at  # a time.monotonic() value, or None: no deadline
        self.task = task  # what runs under it, for its error

    def seconds_left(self) -> float:
        return math.inf if self.at is None else self.at - time.monotonic()

    def bound_replies(self, conn: pg8000.native.Connection) -> None:
        """No read from the server waits past the deadline (plus REPLY_GRACE_SECONDS): a
        database that stops answering ends the run as a lost connection, before Lambda's
        timeout would kill it unreported. Without a deadline, reads wait as long as it takes."""
        left = self.seconds_left()
        wait_for_replies(conn, None if left == math.inf else max(left, 0) + REPLY_GRACE_SECONDS)

    def bound_statements(self, conn: pg8000.native.Connection) -> None:
        """No statement from here on runs past the deadline, as far as this transaction goes:
        called again before each step, so each gets only what is left when it starts."""
        left = self.seconds_left()
        if left == math.inf:
            return
        if left <= 0:
            raise self.out_of_time()
        self.bound_replies(conn)
        conn.run(f"SET LOCAL statement_timeout = {max(1, int(left * 1000))}")

    def cancelled(self, err: BaseException) -> bool:
        """Whether `err` is a statement this deadline cancelled (not an operator's cancel)."""
        return sqlstate(err) == QUERY_CANCELED and self.seconds_left() < 1

    def connection_lost(self, err: Exception, *, committing: bool) -> BootstrapError:
        """The connection failed mid-transaction (`err`, one of CONNECTION_LOST). Before the
        COMMIT was sent, the server rolls the transaction back once it finds its client gone;
        while the COMMIT's answer was awaited, it may have committed or not."""
        what = (f"the connection to the database was lost while committing ({reason(err)}): "
                "whether it committed is unknown. Run it again, or `--check`: a run repeats "
                "nothing it already did" if committing else
                f"the connection to the database was lost ({reason(err)}); the server rolls "
                "the transaction back when it finds the connection gone")
        prefix = "" if committing else ", nothing was changed"
        return BootstrapError(f"{self.task} failed{prefix}: {what}")

    def out_of_time(self) -> BootstrapError:
        subject, why_and_next = _OUT_OF_TIME[self.task]
        return BootstrapError(
            f"{self.task} failed, nothing was changed: {subject} would not have ended before "
            "the Lambda's timeout (a statement was cancelled, or none could start, at the "
            f"deadline: {why_and_next}")
