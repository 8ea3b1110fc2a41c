"""Typed configuration for each environment: the one place where environments differ.

Values are the seed's (infrastructure-requirements.md). Every value is validated when an
`EnvironmentConfig` is built (the rules are in config_rules.py), so bad input stops the app
before any construct exists.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

# Re-exported: the rest of the app imports them from here.
from boom_stacks.config_rules import ENVIRONMENTS as ENVIRONMENTS
from boom_stacks.config_rules import LOG_RETENTION_DAYS as LOG_RETENTION_DAYS
from boom_stacks.config_rules import ConfigError as ConfigError
from boom_stacks.config_rules import validate

DEFAULT_ENVIRONMENT = "dev"
# AWS's documentation example account: lets synth run offline; deploy needs a real one.
PLACEHOLDER_ACCOUNT = "123456789012"
# The context keys this app reads (`-c key=value`). Anything close to one of them is a typo.
CONTEXT_KEYS = ("env", "account")
# Spellings people reach for, mapped to the key this app reads.
_CONTEXT_KEY_SPELLINGS = {"env": "env", "environment": "env", "stage": "env",
                          "account": "account", "account_id": "account", "accountid": "account",
                          "aws_account": "account"}
# Regions are config, not context: a `-c region=...` that was silently ignored would synth
# and deploy the environment where config puts it, not where its author meant.
_REGION_SPELLINGS = ("region", "aws_region", "awsregion", "default_region", "primary_region",
                     "dr_region")

@dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    cidr: str
    nat_gateways: int
    # Interface endpoints keep ECR/STS/Secrets Manager/Logs traffic off the NAT gateways.
    interface_endpoints: bool
    flow_log_retention_days: int = 90


@dataclass(frozen=True, kw_only=True)
class DatabaseConfig:
    instance_class: str
    # Set in the parameter group rather than left to RDS's memory formula, so the connection
    # budget (PgBouncer replicas x pool) is checked against the exact number.
    max_connections: int
    multi_az: bool
    deletion_protection: bool
    snapshot_on_delete: bool
    database_name: str = "boom_booking"
    allocated_storage_gib: int = 100
    max_allocated_storage_gib: int = 1000
    backup_retention_days: int = 7
    backup_window: str = "03:00-04:00"
    maintenance_window: str = "sun:04:00-sun:05:00"
    monitoring_interval_seconds: int = 60
    secret_rotation_days: int = 30
    slow_statement_ms: int = 500
    # One backend's temporary files (sorts and hashes that outgrew work_mem, rows a cursor
    # materialized), all held at once, may not exceed this: the statement is cancelled and its
    # files removed, so one tenant's runaway query cannot fill the storage every tenant
    # shares. Every role is bound, migrations' index builds included. At most a quarter of
    # allocated_storage_gib (config_rules.py).
    temp_file_limit_gib: int = 10
    # An app_user transaction running longer is ended by pg_cron's job (migration 0014),
    # within a minute after: it holds locks, a pooled server connection and the oldest
    # snapshot, behind which VACUUM cannot clean up.
    # Above the longest statement a transaction may ask for (an export's SET LOCAL
    # statement_timeout = '5min', README), far below what stalls the pool for long.
    app_user_transaction_minutes: int = 10
    log_retention_days: int = 90


@dataclass(frozen=True, kw_only=True)
class PgBouncerConfig:
    """The seed's pgbouncer.ini. Transaction pooling is safe because the tenant is set per
    transaction (app.set_tenant) and fails closed outside it."""

    pool_mode: str = "transaction"
    max_client_conn: int = 1000
    default_pool_size: int = 25
    reserve_pool_size: int = 5
    max_db_connections: int = 100
    replicas: int = 2
    # A client idle inside a transaction this long is disconnected and its transaction rolled
    # back (PgBouncer's idle_transaction_timeout). Under transaction pooling such a client
    # holds one of the pool's few server connections for as long as it idles: a handful of
    # them (a forgotten COMMIT, a slow call made inside a transaction) would stall every other
    # client. The seed leaves it unset (PgBouncer's default: never).
    idle_transaction_timeout_seconds: int = 60
    # A connection whose peer has stopped answering (a failed-over database's old host, a
    # node gone) is closed after about this long: data unacknowledged this long
    # (tcp_user_timeout), or an idle connection whose keepalive probe, sent after this long
    # idle, goes unanswered. With the operating system's defaults a transaction sent to a
    # silent host waits some 15 minutes (tcp_retries2) and a dead idle server connection
    # lingers 2 hours, so clients hang long after RDS has failed over. It guards PgBouncer's
    # client sockets too: a client that stops reading a result this long is cut off.
    dead_connection_seconds: int = 15
    # PgBouncer closes a server connection this long after it opened, once no client is using
    # it (server_lifetime; PgBouncer's default is an hour). That bounds what one client can
    # leave on a pooled server connection that app.set_tenant() does not put back: settings
    # it does not pin (work_mem, tcp_keepalives_*), and PgBouncer's own prepared statements
    # deallocated behind its back, which then fail every later client that prepares the same
    # statement there (tests/test_pgbouncer_prepared_statements.py). Each replacement costs
    # RDS one backend start, TLS handshake and SCRAM exchange: with full pools, one every few
    # seconds (PgBouncer spaces them by server_lifetime / pool size, so connections opened
    # together last up to twice the lifetime once).
    server_lifetime_seconds: int = 300
    # edoburu/pgbouncer: Alpine, PgBouncer built from the release tarball with OpenSSL, the
    # binary on PATH, runs as uid 70. 1.26.0 (2026-09-23) fixes CVE-2026-6668 (unauthenticated
    # infinite loop) and CVE-2026-6669, which 1.25.2 still had. 1.26.1's three advisories are
    # unreachable with the rendered config (tests/test_pgbouncer_hardening.py); move to a
    # 1.26.1 image once its tag is published. Mirror it into ECR (same reference plus
    # @sha256 digest) before production relies on Docker Hub.
    image: str = "edoburu/pgbouncer:v1.26.0-p0"
    run_as_user: int = 70  # the image's non-root user; the pod runs as it
    # cert-manager ClusterIssuer (created by the cluster stack) that signs the certificate
    # PgBouncer serves its clients: TLS 1.3 is required between the application and PgBouncer.
    client_tls_issuer: str = "boom-internal-ca"

    @property
    def server_connections_per_replica(self) -> int:
        """The most server connections one PgBouncer opens: one pool (app_user on the one
        database) of default_pool_size plus reserve_pool_size, capped by max_db_connections."""
        return min(self.default_pool_size + self.reserve_pool_size, self.max_db_connections)

    @property
    def steady_server_connections(self) -> int:
        """Every replica's pool full."""
        return self.replicas * self.server_connections_per_replica

    @property
    def rollout_server_connections(self) -> int:
        """The worst case during a rollout or a node drain: each replica's replacement starts
        while it is still terminating (up to 40 s, serving its clients until its transactions
        finish), and Deployments do not count terminating pods against maxSurge (KEP-5882).
        So up to twice the replicas can hold full pools at once."""
        return 2 * self.steady_server_connections


@dataclass(frozen=True, kw_only=True)
class CacheConfig:
    node_type: str
    num_nodes: int
    multi_az: bool
    engine_version: str = "7.1"
    snapshot_retention_days: int = 5
    snapshot_window: str = "03:00-05:00"
    maintenance_window: str = "sun:05:00-sun:06:00"


@dataclass(frozen=True, kw_only=True)
class BackupConfig:
    retention_days: int = 30
    noncurrent_retention_days: int = 30


@dataclass(frozen=True, kw_only=True)
class AlarmConfig:
    # Addresses the stacks' alarm topics (boom-<env>-<part>-alarms) notify by e-mail; each
    # confirms once, from the message SNS sends it. Until the Observability stack subscribes
    # Alertmanager, this is how an alarm reaches someone. Empty: the topics have no subscriber.
    emails: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class EnvironmentConfig:
    name: str
    account: str
    availability_zones: tuple[str, ...]
    network: NetworkConfig
    database: DatabaseConfig
    cache: CacheConfig
    backup: BackupConfig
    pgbouncer: PgBouncerConfig = PgBouncerConfig()
    alarms: AlarmConfig = AlarmConfig()
    primary_region: str = "us-east-1"
    dr_region: str = "us-west-2"

    def __post_init__(self) -> None:
        validate(self)

    @property
    def title(self) -> str:
        return self.name.capitalize()

    def stack_id(self, part: str) -> str:
        return f"Boom-{self.title}-{part}"

    @property
    def is_production_like(self) -> bool:
        """Stateful resources are protected from deletion everywhere but dev."""
        return self.name != "dev"


def load_config(context: Mapping[str, Any], environ: Mapping[str, str]) -> EnvironmentConfig:
    """The environment chosen by `-c env=...`, with the account from context or the CLI."""
    _reject_typos(context)
    name = context.get("env", DEFAULT_ENVIRONMENT)
    if not isinstance(name, str) or name not in ENVIRONMENT_CONFIGS:  # cdk.json takes any JSON
        raise ConfigError("env", name, "is not an environment",
                          f"Use -c env= one of: {', '.join(ENVIRONMENTS)}")
    account = context.get("account")
    if account is None:
        account = environ.get("CDK_DEFAULT_ACCOUNT") or PLACEHOLDER_ACCOUNT
    elif not isinstance(account, str) or not account:
        # `-c account=$ACCOUNT` with the variable unset fell back to the placeholder, and a
        # JSON number in cdk.json loses an account id's leading zeros.
        raise ConfigError("account", account, "is not a 12-digit AWS account id",
                          "Pass -c account=123456789012 (in cdk.json, as a quoted string), or "
                          "leave the key out to use your credentials' account")
    return replace(ENVIRONMENT_CONFIGS[name], account=account)


def _reject_typos(context: Mapping[str, Any]) -> None:
    for key in context:
        if key in CONTEXT_KEYS or key.startswith(("@", "aws:", "cdk")):
            continue
        if difflib.get_close_matches(key.lower(), _REGION_SPELLINGS, n=1, cutoff=0.75):
            raise ConfigError(f"context key {key!r}", context[key], "is not a context key: "
                              "each environment's regions are config",
                              "Set primary_region (and dr_region) of the environment in "
                              "boom_stacks/config.py, so every synth, diff and deploy of it "
                              "uses the same regions")
        close = difflib.get_close_matches(key.lower(), _CONTEXT_KEY_SPELLINGS, n=1, cutoff=0.75)
        if close:
            known = _CONTEXT_KEY_SPELLINGS[close[0]]
            raise ConfigError(f"context key {key!r}", context[key], "is not a context key",
                              f"Did you mean -c {known}=...? Known keys: {', '.join(CONTEXT_KEYS)}")


def _primary_azs(region: str = "us-east-1") -> tuple[str, ...]:
    return tuple(f"{region}{suffix}" for suffix in "abc")


ENVIRONMENT_CONFIGS: Mapping[str, EnvironmentConfig] = {
    "dev": EnvironmentConfig(
        name="dev",
        account=PLACEHOLDER_ACCOUNT,
        availability_zones=_primary_azs(),
        network=NetworkConfig(cidr="10.10.0.0/16", nat_gateways=1, interface_endpoints=False,
                              flow_log_retention_days=30),
        database=DatabaseConfig(instance_class="db.t3.micro", max_connections=80,
                                multi_az=False,
                                deletion_protection=False, snapshot_on_delete=False,
                                log_retention_days=30),
        cache=CacheConfig(node_type="cache.t3.micro", num_nodes=1, multi_az=False),
        backup=BackupConfig(),
        # db.t3.micro allows 112 connections at most; the seed's pools (25 + 5 per replica)
        # would need 120 during a rollout. Dev's pools are smaller: 2 x 2 x 18 = 72.
        pgbouncer=PgBouncerConfig(default_pool_size=15, reserve_pool_size=3),
    ),
    "staging": EnvironmentConfig(
        name="staging",
        account=PLACEHOLDER_ACCOUNT,
        availability_zones=_primary_azs(),
        network=NetworkConfig(cidr="10.20.0.0/16", nat_gateways=1, interface_endpoints=True),
        database=DatabaseConfig(instance_class="db.t3.small", max_connections=160,
                                multi_az=False,
                                deletion_protection=True, snapshot_on_delete=True),
        cache=CacheConfig(node_type="cache.t3.small", num_nodes=2, multi_az=True),
        backup=BackupConfig(),
    ),
    "prod": EnvironmentConfig(
        name="prod",
        account=PLACEHOLDER_ACCOUNT,
        availability_zones=_primary_azs(),
        network=NetworkConfig(cidr="10.30.0.0/16", nat_gateways=3, interface_endpoints=True,
                              flow_log_retention_days=365),
        database=DatabaseConfig(instance_class="db.t3.medium", max_connections=360,
                                multi_az=True,
                                deletion_protection=True, snapshot_on_delete=True,
                                log_retention_days=365),
        cache=CacheConfig(node_type="cache.t3.medium", num_nodes=2, multi_az=True),
        backup=BackupConfig(),
    ),
}
