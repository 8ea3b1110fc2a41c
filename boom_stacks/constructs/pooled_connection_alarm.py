"""Notifies when app.set_tenant() has ended a pooled server connection because a client broke
the contract on it: replaced one of PgBouncer's prepared statements by SQL PREPARE (migration
0020), which only code running as app_user on purpose does (SQL injection, most likely), or
left default_transaction_read_only on for the clients after it (0011). Each end costs one
client's transaction, which its retry covers; the connection, and what was left on it, is gone.
set_tenant() logs a WARNING, beginning with the phrase below, to the PostgreSQL log.
"""

from __future__ import annotations

from boom_stacks.config import EnvironmentConfig
from boom_stacks.constructs.postgres_log_alarm import LogAlarmSpec, phrase

POOLED_CONNECTION_ENDED_LOG = "app.set_tenant ends this server connection"
METRIC_NAME = "PooledConnectionsEnded"


def spec(config: EnvironmentConfig) -> LogAlarmSpec:
    return LogAlarmSpec(
        filter_pattern=phrase(POOLED_CONNECTION_ENDED_LOG), metric_name=METRIC_NAME,
        description=(
            "app.set_tenant() ended pooled server connections on which a client had "
            "broken the contract: replaced one of PgBouncer's prepared statements by SQL "
            "PREPARE, to run in other tenants' transactions (code running as app_user did "
            "it on purpose: look for SQL injection), or left "
            "default_transaction_read_only on. Each cost one transaction, retried. The "
            f"PostgreSQL log's '{POOLED_CONNECTION_ENDED_LOG}' lines name the statement or "
            "the setting (README: 0011, 0020)"))
