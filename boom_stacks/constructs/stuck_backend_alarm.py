"""Notifies when pg_cron's job has ended app_user backends that held up the others (migration
0014: a transaction older than the bound, a pooled connection left holding a session-level
advisory lock; 0016: a LOCK TABLE others waited for). Each such end is a client's transaction
lost, and the sign of a bug in the application (a loop inside one transaction,
pg_advisory_lock through PgBouncer, LOCK TABLE) or of SQL injection: someone should look,
though nothing stays stuck. The job logs one line per backend to the PostgreSQL log.
"""

from __future__ import annotations

from boom_stacks.config import EnvironmentConfig
from boom_stacks.constructs.postgres_log_alarm import LogAlarmSpec, phrase
from lambdas.tenant_bootstrap.cron import STUCK_BACKEND_LOG

METRIC_NAME = "StuckBackendsEnded"


def spec(config: EnvironmentConfig) -> LogAlarmSpec:
    return LogAlarmSpec(
        filter_pattern=phrase(STUCK_BACKEND_LOG), metric_name=METRIC_NAME,
        description=(
            "pg_cron's job ended app_user backends that held up the others (a "
            "transaction older than database.app_user_transaction_minutes, a pooled "
            "connection left holding a session-level advisory lock, or a table lock "
            "others waited for). Their clients' transactions failed; the PostgreSQL log's "
            f"'{STUCK_BACKEND_LOG}' lines give each pid and reason. Look for a loop inside "
            "one transaction, pg_advisory_lock or LOCK TABLE in the application (README: "
            "0014, 0016)"))
