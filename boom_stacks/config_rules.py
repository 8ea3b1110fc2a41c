"""The rules every environment's configuration must meet, checked when an
`EnvironmentConfig` is built (so bad input stops the app before any construct exists).

Each rule raises ConfigError naming the field, the value, what is wrong and the fix.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING

from boom_stacks.instance_memory import BYTES_PER_CONNECTION, max_connections_ceiling
from lambdas.tenant_bootstrap.bootstrap import MAX_TRANSACTION_MINUTES

if TYPE_CHECKING:
    from boom_stacks.config import (
        AlarmConfig,
        CacheConfig,
        DatabaseConfig,
        EnvironmentConfig,
        NetworkConfig,
        PgBouncerConfig,
    )

ENVIRONMENTS = ("dev", "staging", "prod")
# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
                      1827, 2192, 2557, 2922, 3288, 3653)
_ACCOUNT = re.compile(r"[0-9]{12}")
_REGION = re.compile(r"[a-z]{2}(-gov)?-[a-z]+-[0-9]")
_EMAIL = re.compile(r"[^@\s,]+@[^@\s,]+\.[a-z]{2,}", re.IGNORECASE)
_DAILY_WINDOW = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])")
_WEEKLY_WINDOW = re.compile(
    r"(mon|tue|wed|thu|fri|sat|sun):([01][0-9]|2[0-3]):([0-5][0-9])-"
    r"(mon|tue|wed|thu|fri|sat|sun):([01][0-9]|2[0-3]):([0-5][0-9])"
)
# repository:tag[@sha256:digest]; the tag starts with a version number (v optional).
_IMAGE = re.compile(
    r"(?P<repository>[a-z0-9][a-z0-9./_-]*):v?[0-9][A-Za-z0-9._-]*(@sha256:[0-9a-f]{64})?")
# A Kubernetes object name (DNS-1123 subdomain).
_DNS_SUBDOMAIN = re.compile(
    r"(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Connections that must stay free even during a rollout: PostgreSQL's (and RDS's default)
# superuser_reserved_connections, plus room for a migration, secret rotation, the bootstrap,
# monitoring and an operator. With that, the pools at full use outside rollouts stay under
# half of max_connections, well below the seed's alarm at 80%.
SUPERUSER_RESERVED_CONNECTIONS = 3
OPERATIONS_CONNECTIONS = 5


class ConfigError(ValueError):
    """Bad configuration or context; the message names the field, the value and the fix."""

    def __init__(self, field: str, value: object, problem: str, fix: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"{field} = {value!r}: {problem}. {fix}")


def validate(cfg: EnvironmentConfig) -> None:
    """Raise ConfigError for the first value out of bounds, naming field, value and fix."""
    env = cfg.name
    if env not in ENVIRONMENTS:
        raise ConfigError("name", env, "is not an environment", f"Use one of {ENVIRONMENTS}")
    if not _full(_ACCOUNT, cfg.account):
        raise ConfigError(f"{env}.account", cfg.account, "is not a 12-digit AWS account id",
                          "Pass -c account=123456789012 or set CDK_DEFAULT_ACCOUNT")
    for field in ("primary_region", "dr_region"):
        if not _full(_REGION, getattr(cfg, field)):
            raise ConfigError(f"{env}.{field}", getattr(cfg, field), "is not an AWS region",
                              "Use a region name such as us-east-1")
    if cfg.dr_region == cfg.primary_region:
        raise ConfigError(f"{env}.dr_region", cfg.dr_region, "equals primary_region",
                          "Disaster recovery needs a second region, e.g. us-west-2")
    _validate_azs(env, cfg)
    _validate_network(env, cfg.network, len(cfg.availability_zones))
    _validate_database(env, cfg.database)
    _validate_cache(env, cfg.cache)
    _validate_pgbouncer(env, cfg.pgbouncer)
    _validate_alarms(env, cfg.alarms)
    _validate_connection_budget(env, cfg.database, cfg.pgbouncer)
    _in_range(f"{env}.backup.retention_days", cfg.backup.retention_days, 1, 3650)
    _in_range(f"{env}.backup.noncurrent_retention_days", cfg.backup.noncurrent_retention_days,
              1, 3650)


def _validate_azs(env: str, cfg: EnvironmentConfig) -> None:
    azs = cfg.availability_zones
    if len(azs) != 3 or len(set(azs)) != 3:
        raise ConfigError(f"{env}.availability_zones", azs, "must be 3 distinct zones",
                          "List three zones of the primary region, e.g. us-east-1a/b/c")
    for az in azs:
        if not _full(rf"{re.escape(cfg.primary_region)}[a-z]", az):
            raise ConfigError(f"{env}.availability_zones", az,
                              f"is not a zone of primary_region {cfg.primary_region}",
                              f"Use zones named {cfg.primary_region}a, {cfg.primary_region}b, ...")


def _validate_network(env: str, net: NetworkConfig, az_count: int) -> None:
    try:
        cidr = ipaddress.IPv4Network(net.cidr, strict=True)
    except ValueError as err:
        raise ConfigError(f"{env}.network.cidr", net.cidr, f"is not a valid IPv4 CIDR ({err})",
                          "Use a network address such as 10.10.0.0/16") from None
    if not cidr.is_private or not 16 <= cidr.prefixlen <= 20:
        raise ConfigError(f"{env}.network.cidr", net.cidr,
                          "must be a private range between /16 and /20",
                          "Use an RFC 1918 range such as 10.10.0.0/16")
    _in_range(f"{env}.network.nat_gateways", net.nat_gateways, 1, az_count)
    _one_of(f"{env}.network.flow_log_retention_days", net.flow_log_retention_days,
            LOG_RETENTION_DAYS)


def _validate_database(env: str, db: DatabaseConfig) -> None:
    prefix = f"{env}.database"
    if not _full(r"db\.[a-z][a-z0-9-]*\.[a-z0-9]+", db.instance_class):
        raise ConfigError(f"{prefix}.instance_class", db.instance_class,
                          "is not an RDS instance class", "Use a class such as db.t3.medium")
    if not _full(r"[a-z][a-z0-9_]{0,62}", db.database_name):
        raise ConfigError(f"{prefix}.database_name", db.database_name,
                          "is not a PostgreSQL identifier", "Use lower case letters, digits, _")
    _validate_max_connections(prefix, db)
    _in_range(f"{prefix}.allocated_storage_gib", db.allocated_storage_gib, 20, 65536)
    _in_range(f"{prefix}.max_allocated_storage_gib", db.max_allocated_storage_gib, 20, 65536)
    if db.allocated_storage_gib > db.max_allocated_storage_gib:
        raise ConfigError(f"{prefix}.allocated_storage_gib", db.allocated_storage_gib,
                          f"is larger than max_allocated_storage_gib "
                          f"({db.max_allocated_storage_gib})",
                          "Set allocated_storage_gib <= max_allocated_storage_gib")
    # RDS allows 0-35; 0 turns automated backups off, which we never want.
    _in_range(f"{prefix}.backup_retention_days", db.backup_retention_days, 1, 35)
    _one_of(f"{prefix}.monitoring_interval_seconds", db.monitoring_interval_seconds,
            (1, 5, 10, 15, 30, 60))
    _in_range(f"{prefix}.secret_rotation_days", db.secret_rotation_days, 1, 365)
    _in_range(f"{prefix}.slow_statement_ms", db.slow_statement_ms, 1, 60_000)
    _validate_temp_file_limit(prefix, db)
    # What the bootstrap accepts (lambdas/tenant_bootstrap: a deploy would fail on more).
    _in_range(f"{prefix}.app_user_transaction_minutes", db.app_user_transaction_minutes, 1,
              MAX_TRANSACTION_MINUTES)
    _one_of(f"{prefix}.log_retention_days", db.log_retention_days, LOG_RETENTION_DAYS)
    _windows_apart(prefix, "backup_window", db.backup_window, db.maintenance_window, "RDS")


def _validate_temp_file_limit(prefix: str, db: DatabaseConfig) -> None:
    """One backend's temporary files: above a quarter of the storage, a few runaway backends
    at once would fill it (allocated_storage_gib is checked first)."""
    field, quarter = f"{prefix}.temp_file_limit_gib", db.allocated_storage_gib // 4
    _in_range(field, db.temp_file_limit_gib, 1, 65536)
    if db.temp_file_limit_gib > quarter:
        raise ConfigError(field, db.temp_file_limit_gib,
                          f"is more than a quarter of allocated_storage_gib "
                          f"({db.allocated_storage_gib}): a few runaway backends at once would "
                          "fill the storage", f"Set temp_file_limit_gib <= {quarter}, or "
                          "allocate more storage")


def _validate_cache(env: str, cache: CacheConfig) -> None:
    prefix = f"{env}.cache"
    if not _full(r"cache\.[a-z][a-z0-9-]*\.[a-z0-9]+", cache.node_type):
        raise ConfigError(f"{prefix}.node_type", cache.node_type,
                          "is not an ElastiCache node type", "Use a type such as cache.t3.micro")
    _in_range(f"{prefix}.num_nodes", cache.num_nodes, 1, 6)
    if cache.multi_az and cache.num_nodes < 2:
        raise ConfigError(f"{prefix}.multi_az", cache.multi_az,
                          "needs at least 2 nodes (num_nodes)",
                          "Set num_nodes >= 2 or multi_az = False")
    if not _full(r"7\.[0-9]+", cache.engine_version):
        raise ConfigError(f"{prefix}.engine_version", cache.engine_version,
                          "is not a Redis 7 version", "Use e.g. 7.1 (the seed's redis7 family)")
    _in_range(f"{prefix}.snapshot_retention_days", cache.snapshot_retention_days, 1, 35)
    _windows_apart(prefix, "snapshot_window", cache.snapshot_window, cache.maintenance_window,
                   "ElastiCache")


def _validate_pgbouncer(env: str, pool: PgBouncerConfig) -> None:
    prefix = f"{env}.pgbouncer"
    if pool.pool_mode != "transaction":
        raise ConfigError(f"{prefix}.pool_mode", pool.pool_mode, "is not transaction",
                          "Tenant isolation and the seed's connection budget assume "
                          "pool_mode = transaction")
    _in_range(f"{prefix}.max_client_conn", pool.max_client_conn, 1, 100_000)
    _in_range(f"{prefix}.max_db_connections", pool.max_db_connections, 1, 5000)
    _in_range(f"{prefix}.default_pool_size", pool.default_pool_size, 1, pool.max_db_connections)
    _in_range(f"{prefix}.reserve_pool_size", pool.reserve_pool_size, 0, 1000)
    _in_range(f"{prefix}.replicas", pool.replicas, 2, 20)
    # 0 would switch it off: a stuck client could then hold a server connection for ever.
    _in_range(f"{prefix}.idle_transaction_timeout_seconds", pool.idle_transaction_timeout_seconds,
              1, 3600)
    # Below 5 s a passing network stall drops healthy connections; above 10 minutes clients
    # would hang through a failover as with no setting at all.
    _in_range(f"{prefix}.dead_connection_seconds", pool.dead_connection_seconds, 5, 600)
    # Below a minute the pools would reconnect all the time; above an hour (PgBouncer's
    # default) a client's leftovers would outlast it.
    _in_range(f"{prefix}.server_lifetime_seconds", pool.server_lifetime_seconds, 60, 3600)
    _in_range(f"{prefix}.run_as_user", pool.run_as_user, 1, 2**31 - 1)
    image = _full(_IMAGE, pool.image)
    if not image:
        raise ConfigError(f"{prefix}.image", pool.image, "is not pinned to a version tag",
                          "Use repository:version (optionally @sha256:digest), never latest")
    if not _full(_DNS_SUBDOMAIN, pool.client_tls_issuer):
        raise ConfigError(f"{prefix}.client_tls_issuer", pool.client_tls_issuer,
                          "is not a Kubernetes object name",
                          "Use the ClusterIssuer's name: lower case letters, digits, - and .")
    if re.match(r"^(docker\.io/)?bitnami/", image["repository"]):
        raise ConfigError(f"{prefix}.image", pool.image,
                          "is a Bitnami image, which no longer pulls: Bitnami removed its free "
                          "images from Docker Hub in 2025 (bitnami/containers#83267)",
                          "Use the default edoburu/pgbouncer image or your ECR mirror of it")


def _validate_max_connections(prefix: str, db: DatabaseConfig) -> None:
    ceiling = max_connections_ceiling(db.instance_class)
    if ceiling is None:
        raise ConfigError(f"{prefix}.instance_class", db.instance_class,
                          "has no known memory, so max_connections cannot be checked",
                          "Use a t3, t4g, m or r class, or add its family to "
                          "boom_stacks/instance_memory.py")
    _in_range(f"{prefix}.max_connections", db.max_connections, 25, 5000)
    if db.max_connections > ceiling:
        raise ConfigError(f"{prefix}.max_connections", db.max_connections,
                          f"is more than {db.instance_class}'s memory allows: at most {ceiling} "
                          f"by RDS's rule (memory / {BYTES_PER_CONNECTION} bytes per connection)",
                          f"Set at most {ceiling}, or choose a larger instance_class")


def _validate_connection_budget(env: str, db: DatabaseConfig, pool: PgBouncerConfig) -> None:
    """Even a rollout (twice the pods, see PgBouncerConfig.rollout_server_connections) with
    every pool full leaves the reserved connections and room for operations."""
    room = db.max_connections - SUPERUSER_RESERVED_CONNECTIONS - OPERATIONS_CONNECTIONS
    if pool.rollout_server_connections > room:
        raise ConfigError(
            f"{env}.pgbouncer.replicas", pool.replicas,
            f"x 2 (a rollout or drain: each pod's replacement starts while it terminates) x "
            f"{pool.server_connections_per_replica} server connections each = "
            f"{pool.rollout_server_connections}, more than database.max_connections "
            f"{db.max_connections} minus {SUPERUSER_RESERVED_CONNECTIONS} superuser-reserved "
            f"and {OPERATIONS_CONNECTIONS} for operations ({room}): during a deploy under load, "
            "migrations, secret rotation and operators could find no free connection",
            "Lower replicas or the pool sizes (default_pool_size + reserve_pool_size), or raise "
            "database.max_connections (and the instance class if its memory does not allow it)")


def _validate_alarms(env: str, alarms: AlarmConfig) -> None:
    field = f"{env}.alarms.emails"
    if not isinstance(alarms.emails, tuple):
        raise ConfigError(field, alarms.emails, "is not a tuple of addresses",
                          "Use a tuple, e.g. (\"oncall@example.com\",)")
    for email in alarms.emails:
        if not _full(_EMAIL, email):
            raise ConfigError(field, email, "is not an e-mail address",
                              "Give one address per item, e.g. oncall@example.com")
    if len({email.lower() for email in alarms.emails}) != len(alarms.emails):
        raise ConfigError(field, alarms.emails, "lists an address twice",
                          "List each address once (SNS would subscribe it once anyway)")


def _full(pattern: str | re.Pattern[str], value: object) -> re.Match[str] | None:
    """The match of the whole of `value`, a string, else None. re.match with ^...$ took a
    trailing newline ("123456789012\n" as an account), which would reach the template."""
    return re.fullmatch(pattern, value) if isinstance(value, str) else None


def _in_range(field: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(field, value, f"is outside the allowed range {low}-{high}",
                          f"Set a whole number from {low} to {high}")


def _one_of(field: str, value: int, allowed: tuple[int, ...]) -> None:
    if value not in allowed:
        raise ConfigError(field, value, "is not an allowed value",
                          f"Use one of {', '.join(map(str, allowed))}")


def _windows_apart(prefix: str, daily_name: str, daily: str, maintenance: str,
                   service: str) -> None:
    """A valid daily window (backups, snapshots) and a valid weekly maintenance window that
    never meet, as AWS requires."""
    daily_minutes = _daily_window(f"{prefix}.{daily_name}", daily)
    weekly_minutes = _weekly_window(f"{prefix}.maintenance_window", maintenance)
    if _overlaps(daily_minutes, weekly_minutes):
        raise ConfigError(f"{prefix}.maintenance_window", maintenance,
                          f"overlaps {daily_name} {daily}",
                          f"{service} requires the two windows not to overlap; move one of them")


def _daily_window(field: str, window: str) -> tuple[int, int]:
    match = _full(_DAILY_WINDOW, window)
    if not match:
        raise ConfigError(field, window, "is not a daily window", "Use hh:mm-hh:mm in UTC")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if (end - start) % 1440 < 30:
        raise ConfigError(field, window, "is shorter than 30 minutes",
                          "AWS requires at least 30 minutes; widen the window")
    return start, end


def _weekly_window(field: str, window: str) -> tuple[int, int]:
    match = _full(_WEEKLY_WINDOW, window)
    if not match:
        raise ConfigError(field, window, "is not a weekly window",
                          "Use ddd:hh:mm-ddd:hh:mm in UTC, e.g. sun:04:00-sun:05:00")
    d1, h1, m1, d2, h2, m2 = match.groups()
    start = _DAYS.index(d1) * 1440 + int(h1) * 60 + int(m1)
    end = _DAYS.index(d2) * 1440 + int(h2) * 60 + int(m2)
    if (end - start) % (7 * 1440) < 30:
        raise ConfigError(field, window, "is shorter than 30 minutes",
                          "AWS requires at least 30 minutes; widen the window")
    return start, end


def _overlaps(daily: tuple[int, int], weekly: tuple[int, int]) -> bool:
    """Whether a daily window meets a weekly one on any day (minutes since Monday 00:00)."""
    week = 7 * 1440

    def minutes(start: int, end: int, period: int) -> set[int]:
        return {(start + i) % week for i in range((end - start) % period)}

    weekly_minutes = minutes(*weekly, week)
    return any(minutes(daily[0] + day * 1440, daily[1] + day * 1440, 1440) & weekly_minutes
               for day in range(7))
