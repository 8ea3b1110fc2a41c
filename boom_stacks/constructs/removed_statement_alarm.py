"""Notifies when clients failed because one of PgBouncer's prepared statements was missing from
a pooled server connection: PostgreSQL's own error, `prepared statement "PGBOUNCER_<n>" does
not exist` (SQLSTATE 26000), which it logs with the backend's pid.

PgBouncer prepares a client's statement once per server connection, as PGBOUNCER_<n>, and
assumes it stays there. A client that removes it behind PgBouncer's back (DEALLOCATE by name,
or DEALLOCATE ALL inside a DO block) makes every later client using it on that connection
fail, until server_lifetime replaces the connection. Nothing in the database can stop that
(README, "Server connections are replaced after 5 minutes"); this alarm sees it, and the pid
in the lines is the connection to end sooner. Replacing the statement instead is
PooledConnectionAlarm's (0020).
"""

from __future__ import annotations

from boom_stacks.config import EnvironmentConfig
from boom_stacks.constructs.postgres_log_alarm import LogAlarmSpec

# A CloudWatch Logs regular expression, matched anywhere in the line. Its documented syntax has
# no space or quote characters, so `.` stands for each: `statement "PGBOUNCER_3" does`. It
# names PgBouncer's prefix: drivers that DEALLOCATE their own statements by SQL (Rails' a1,
# PHP PDO's pdo_stmt_...) fail with the same message under PgBouncer, harming no one else
# (pgbouncer/pgbouncer#991, #1041), and are not counted.
REMOVED_STATEMENT_PATTERN = "%prepared.statement..PGBOUNCER_[0-9]+..does.not.exist%"
METRIC_NAME = "PgBouncerStatementsMissing"


def spec(config: EnvironmentConfig) -> LogAlarmSpec:
    lifetime_minutes = config.pgbouncer.server_lifetime_seconds / 60
    return LogAlarmSpec(
        filter_pattern=REMOVED_STATEMENT_PATTERN, metric_name=METRIC_NAME,
        description=(
            "Clients failed with 26000, prepared statement \"PGBOUNCER_<n>\" does not "
            "exist: a client removed one of PgBouncer's prepared statements from a pooled "
            "server connection behind its back: DEALLOCATE by name, which is code running "
            "as app_user on purpose (look for SQL injection), or DEALLOCATE ALL inside a DO "
            "block or function (look for one in the application). Every client using that "
            "statement on that connection fails until "
            f"server_lifetime replaces it ({lifetime_minutes:g} minutes, up to twice that "
            "for connections opened together). To end it sooner, end the backend whose "
            "[pid] the PostgreSQL log's lines give, as the master: SELECT "
            "pg_terminate_backend(<pid>); PgBouncer opens a new one (README: "
            "\"Server connections are replaced\")"))
