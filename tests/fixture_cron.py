"""A PostgreSQL 15 that loads pg_cron for the tenant database, as the Data stack's parameter
group does (shared_preload_libraries with pg_stat_statements, cron.database_name; utility
statements untracked); the session's shared server does not, as a local database would not.
pg_cron runs jobs in background workers here (no password for its connection); which way it
connects does not change what a job runs.
The fixtures on it are in conftest (cron_server, cron_db, cron_admin).
"""

from __future__ import annotations

from typing import Any

from boom_stacks.config import ENVIRONMENT_CONFIGS
from boom_stacks.constructs.tenant_database import (
    PRELOADED_LIBRARIES,
    UTILITY_STATEMENTS_UNTRACKED,
)
from lambdas.tenant_bootstrap import bootstrap
from lambdas.tenant_bootstrap.cron import CRON_JOBS
from tests.fixture_postgres import PostgresServer
from tests.fixture_tenants import Conn

# The database the Data stack creates and the parameter group names for pg_cron.
DATABASE = ENVIRONMENT_CONFIGS["dev"].database.database_name
CRON = {"shared_preload_libraries": PRELOADED_LIBRARIES, "cron.database_name": DATABASE,
        "cron.use_background_workers": "on", **UTILITY_STATEMENTS_UNTRACKED}
# Both jobs, as every run leaves them: as the bootstrap's user, in the tenant database.
SHIPPED = sorted([name, job.schedule, job.command, True, DATABASE, "postgres"]
                 for name, job in CRON_JOBS.items())


def apply(server: PostgresServer, database: str, **options: Any) -> bootstrap.Result:
    """bootstrap.apply on `database` over TLS, as a deploy runs it."""
    conn = server.connect(database, tls=True)
    try:
        return bootstrap.apply(conn, **options)
    finally:
        conn.close()


def check(server: PostgresServer, database: str) -> tuple[str, ...]:
    """What the Data stack's scheduled check finds (its parameter group loads pg_cron)."""
    conn = server.connect(database, tls=True)
    try:
        return bootstrap.check(conn, require_pg_cron=database == DATABASE).findings
    finally:
        conn.close()


def jobs(conn: Conn) -> list[list[object]] | None:
    """pg_cron's jobs, or None without pg_cron."""
    if not conn.run("SELECT to_regclass('cron.job') IS NOT NULL")[0][0]:
        return None
    return conn.run("SELECT jobname, schedule, command, active, database, username "
                    "FROM cron.job ORDER BY jobname")


def bound(conn: Conn) -> str:
    return str(conn.run("SELECT bound::text FROM boom_meta.app_user_transaction_bound")[0][0])
