"""pgbouncer.ini rendered from config: the seed's pool settings, TLS 1.3 required from
clients (the seed: TLS 1.3 in transit), TLS to RDS verified.

Plain text, no CDK: the cluster stack puts it in a ConfigMap, tests run real PgBouncer on it.
Credentials are never in it: `auth_file` points at a file mounted from a Kubernetes Secret.
"""

from __future__ import annotations

from dataclasses import dataclass

from boom_stacks.config import PgBouncerConfig


@dataclass(frozen=True, kw_only=True)
class Upstream:
    host: str
    port: int = 5432
    database: str = "boom_booking"
    # verify-full: TLS, the server certificate chains to ca_file and matches host.
    tls_mode: str = "verify-full"
    ca_file: str = "/etc/pgbouncer/tls/rds-ca-bundle.pem"


# PgBouncer up to 1.26.0 loops forever on a startup `options` value with an empty name (`-c=`),
# sent before authentication (CVE-2026-107349): it looks the empty name up in this list, and
# the lookup only ends when the list ends in a separator. The trailing comma ends it; without
# it, one unauthenticated packet stops the pooler (tests/test_pgbouncer_hardening.py shows
# both on real PgBouncer). Harmless once fixed (1.26.1): an empty entry names no parameter.
IGNORE_STARTUP_PARAMETERS = "extra_float_digits,options,"

# PgBouncer's default since 1.24, pinned: clients' protocol-level prepared statements are
# pooled (drivers prepare by default, and without pooling a statement prepared on one server
# connection is missing on the next), at most this many per server connection. It also caps
# what app.set_tenant()'s look at the session's prepared statements costs (migration 0020:
# about 0.2 us each).
MAX_PREPARED_STATEMENTS = 200


@dataclass(frozen=True, kw_only=True)
class ClientTls:
    """PgBouncer's own certificate, which clients connect to over TLS 1.3 only (where it is
    mounted: the Deployment in pgbouncer.py, or the tests' files)."""

    cert_file: str
    key_file: str


def render_ini(pool: PgBouncerConfig, upstream: Upstream, *, client_tls: ClientTls,
               listen_port: int = 6432, listen_addr: str = "0.0.0.0",
               auth_file: str = "/etc/pgbouncer/auth/userlist.txt",
               extra_databases: str = "", runtime_dir: str = "/tmp") -> str:
    return f"""\
[databases]
{upstream.database} = host={upstream.host} port={upstream.port} dbname={upstream.database}
{extra_databases}
[pgbouncer]
listen_addr = {listen_addr}
listen_port = {listen_port}
unix_socket_dir = {runtime_dir}
auth_type = scram-sha-256
auth_file = {auth_file}
pool_mode = {pool.pool_mode}
max_client_conn = {pool.max_client_conn}
default_pool_size = {pool.default_pool_size}
reserve_pool_size = {pool.reserve_pool_size}
reserve_pool_timeout = 3
max_db_connections = {pool.max_db_connections}
idle_transaction_timeout = {pool.idle_transaction_timeout_seconds}
server_lifetime = {pool.server_lifetime_seconds}
max_prepared_statements = {MAX_PREPARED_STATEMENTS}
tcp_keepalive = 1
tcp_keepidle = {pool.dead_connection_seconds}
tcp_keepintvl = {max(1, pool.dead_connection_seconds // 3)}
tcp_keepcnt = 3
tcp_user_timeout = {pool.dead_connection_seconds * 1000}
client_tls_sslmode = require
client_tls_cert_file = {client_tls.cert_file}
client_tls_key_file = {client_tls.key_file}
client_tls_protocols = tlsv1.3
server_tls_sslmode = {upstream.tls_mode}
server_tls_ca_file = {upstream.ca_file}
server_tls_protocols = tlsv1.2,tlsv1.3
ignore_startup_parameters = {IGNORE_STARTUP_PARAMETERS}
server_reset_query =
admin_users =
stats_users =
log_connections = 0
log_disconnections = 0
"""
