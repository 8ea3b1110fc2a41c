"""Notifies when row-level security refused a write: a transaction wrote a row for a tenant
other than the one it bound, or wrote without binding one. PostgreSQL logs each refusal as an
ERROR, `new row violates row-level security policy ...`, naming the table (and, on the next
line, the statement's text, without its bind values: log_parameter_max_length_on_error 0,
PostgreSQL's default, which the parameter group pins and app_user keeps, 0018).

The boundary held; the alarm says someone crossed the application's side of it. A correct
application never meets the refusal (the contract binds the tenant first and takes it from the
authenticated session), so a line is a bug (a missing app.set_tenant(), a tenant_id written
from the request) or code probing the boundary (SQL injection). Reads the boundary refuses
return no rows and log nothing; the writes are what can be seen.
"""

from __future__ import annotations

from boom_stacks.config import EnvironmentConfig
from boom_stacks.constructs.postgres_log_alarm import LogAlarmSpec, phrase

# PostgreSQL's message for a row a policy's WITH CHECK refuses (INSERT, UPDATE, MERGE; COPY
# FROM is refused outright on a table with row-level security), with or without the policy's
# name after it.
TENANT_WRITE_REFUSED_LOG = "new row violates row-level security policy"
METRIC_NAME = "TenantWritesRefused"


def spec(config: EnvironmentConfig) -> LogAlarmSpec:
    return LogAlarmSpec(
        filter_pattern=phrase(TENANT_WRITE_REFUSED_LOG), metric_name=METRIC_NAME,
        description=(
            "Row-level security refused writes: a transaction wrote a row for a tenant "
            "other than the one it bound with app.set_tenant(), or without binding one. "
            "The boundary held, but a correct application never meets it: look for a "
            "missing app.set_tenant(), a tenant_id taken from the request, or SQL "
            "injection probing the boundary. The PostgreSQL log's "
            f"'{TENANT_WRITE_REFUSED_LOG}' lines name the table, the next line the "
            "statement without its values (README: contract for application developers)"))
