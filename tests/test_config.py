"""Every bad input is refused before any construct exists, with field, value and fix."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from typing import Any

import pytest

from boom_stacks.config import (
    ENVIRONMENT_CONFIGS,
    PLACEHOLDER_ACCOUNT,
    AlarmConfig,
    ConfigError,
    EnvironmentConfig,
    load_config,
)
from tests.fixture_paths import ROOT

PROD = ENVIRONMENT_CONFIGS["prod"]


def with_database(**changes: Any) -> EnvironmentConfig:
    return replace(PROD, database=replace(PROD.database, **changes))


def test_seed_sizes_per_environment() -> None:
    sizes = {name: (c.database.instance_class, c.cache.node_type, c.network.nat_gateways,
                    c.database.multi_az) for name, c in ENVIRONMENT_CONFIGS.items()}
    assert sizes == {
        "dev": ("db.t3.micro", "cache.t3.micro", 1, False),
        "staging": ("db.t3.small", "cache.t3.small", 1, False),
        "prod": ("db.t3.medium", "cache.t3.medium", 3, True),
    }
    assert {(c.primary_region, c.dr_region) for c in ENVIRONMENT_CONFIGS.values()} == {
        ("us-east-1", "us-west-2")}


def test_default_environment_is_dev_with_placeholder_account() -> None:
    config = load_config({}, {})
    assert (config.name, config.account) == ("dev", PLACEHOLDER_ACCOUNT)


def test_account_from_context_wins_over_cli_environment() -> None:
    assert load_config({"env": "prod"}, {"CDK_DEFAULT_ACCOUNT": "222222222222"}).account == \
        "222222222222"
    assert load_config({"env": "prod", "account": "333333333333"},
                       {"CDK_DEFAULT_ACCOUNT": "222222222222"}).account == "333333333333"


def test_unknown_environment_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as err:
        load_config({"env": "nope"}, {})
    assert "env = 'nope'" in str(err.value)
    assert "dev, staging, prod" in str(err.value)


@pytest.mark.parametrize("env", [["prod"], {"name": "prod"}, 1])
def test_an_environment_that_is_not_a_string_is_named(env: object) -> None:
    # cdk.json's context takes any JSON; a list was a TypeError from deep in the lookup
    with pytest.raises(ConfigError, match=r"env = .*is not an environment. Use -c env="):
        load_config({"env": env}, {})


@pytest.mark.parametrize("account", [
    "12345", "12345678901a", "1234567890123",
    # a trailing newline (an account read from a file) and other scripts' digits: ^...$ and
    # \d passed both
    "123456789012\n", "١٢٣٤٥٦٧٨٩٠١٢"])
def test_malformed_account(account: str) -> None:
    with pytest.raises(ConfigError, match=rf"dev\.account = {re.escape(repr(account))}.*12-digit"):
        load_config({"account": account}, {})


@pytest.mark.parametrize("account", ["", 123456789012, 12345678901, True])
def test_an_empty_or_numeric_account_context_is_refused(account: object) -> None:
    # `-c account=$UNSET` fell back to CDK_DEFAULT_ACCOUNT or the placeholder; a JSON number
    # in cdk.json was taken as text, and one with a leading zero had lost it
    with pytest.raises(ConfigError, match=rf"^account = {re.escape(repr(account))}: .*12-digit"
                                          r".*quoted string"):
        load_config({"account": account}, {"CDK_DEFAULT_ACCOUNT": "222222222222"})


@pytest.mark.parametrize(("key", "suggestion"), [("enviroment", "env"), ("acount", "account"),
                                                 ("ENV", "env"), ("environment", "env")])
def test_context_key_typos_are_named_with_the_fix(key: str, suggestion: str) -> None:
    with pytest.raises(ConfigError, match=rf"context key '{key}'.*-c {suggestion}="):
        load_config({key: "prod"}, {})


@pytest.mark.parametrize("key", ["region", "AWS_REGION", "regoin", "primary_region", "dr_region"])
def test_a_region_from_context_is_refused_not_ignored(key: str) -> None:
    # The stacks take their regions from config: a context region would be silently ignored
    with pytest.raises(ConfigError, match=rf"context key '{key}' = 'eu-west-1': is not a "
                       r"context key: each environment's regions are config\. Set "
                       r"primary_region .* in boom_stacks/config\.py"):
        load_config({key: "eu-west-1", "env": "prod"}, {})


def test_feature_flags_and_cdk_keys_are_not_typos() -> None:
    context = {"@aws-cdk/core:defaultCrossStackReferences": "strong",
               "aws:cdk:bundling-stacks": [], "env": "staging"}
    assert load_config(context, {}).name == "staging"


@pytest.mark.parametrize(("cidr", "problem"), [
    ("10.0.0.0/33", "not a valid IPv4 CIDR"),
    ("10.0.0.1/16", "not a valid IPv4 CIDR"),  # host bits set
    ("banana", "not a valid IPv4 CIDR"),
    ("8.8.0.0/16", "private range"),
    ("10.0.0.0/24", "private range"),  # too small for three tiers over three AZs
])
def test_invalid_cidr(cidr: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=rf"prod\.network\.cidr = '{cidr}'.*{problem}"):
        replace(PROD, network=replace(PROD.network, cidr=cidr))


@pytest.mark.parametrize("days", [0, 36, -1])
def test_backup_retention_outside_rds_range(days: int) -> None:
    with pytest.raises(ConfigError, match=r"backup_retention_days = .*range 1-35"):
        with_database(backup_retention_days=days)


def test_allocated_storage_larger_than_max() -> None:
    with pytest.raises(ConfigError, match=r"allocated_storage_gib = 2000: is larger than max"):
        with_database(allocated_storage_gib=2000, max_allocated_storage_gib=1000)


def test_temp_file_limit_follows_the_allocated_storage() -> None:
    # 10 GiB, the default, is half of 20 GiB: two runaway backends would fill it.
    with pytest.raises(ConfigError, match=r"temp_file_limit_gib = 10: is more than a quarter "
                       r"of allocated_storage_gib \(20\).*Set temp_file_limit_gib <= 5, or"):
        with_database(allocated_storage_gib=20)
    assert with_database(allocated_storage_gib=20, temp_file_limit_gib=5) \
        .database.temp_file_limit_gib == 5


def test_dr_region_equal_to_primary() -> None:
    with pytest.raises(ConfigError, match=r"prod\.dr_region = 'us-east-1': equals primary"):
        replace(PROD, dr_region="us-east-1")


def test_overlapping_backup_and_maintenance_windows() -> None:
    with pytest.raises(ConfigError, match=r"maintenance_window = 'sun:03:30-sun:04:30'.*overlaps"):
        with_database(maintenance_window="sun:03:30-sun:04:30")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("backup_window", "3am", "not a daily window"),
    ("backup_window", "03:00-03:10", "shorter than 30 minutes"),
    ("maintenance_window", "sunday 4am", "not a weekly window"),
    ("instance_class", "t3.medium", "not an RDS instance class"),
    ("monitoring_interval_seconds", 45, "not an allowed value"),
    ("log_retention_days", 42, "not an allowed value"),
    ("max_connections", 10, "range 25-5000"),
    # db.t3.medium has 4 GiB: RDS budgets 9531392 bytes per connection, so at most 450.
    ("max_connections", 451, "more than db.t3.medium's memory allows: at most 450"),
    ("instance_class", "db.x2g.large", "no known memory"),
    # pg_cron's job ends app_user transactions after this (0014); the bootstrap takes 1-1440.
    ("app_user_transaction_minutes", 0, "range 1-1440"),
    ("app_user_transaction_minutes", 1441, "range 1-1440"),
    ("app_user_transaction_minutes", True, "range 1-1440"),
    # a quarter of prod's 100 GiB of storage at most
    ("temp_file_limit_gib", 0, "range 1-65536"),
    ("temp_file_limit_gib", True, "range 1-65536"),
    ("temp_file_limit_gib", 26, "more than a quarter of allocated_storage_gib \\(100\\)"),
])
def test_database_values(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"prod\.database\.{field} = .*{message}"):
        with_database(**{field: value})


@pytest.mark.parametrize(("window", "message"), [
    ("sun:04:00-sun:05:00", "overlaps snapshot_window 03:00-05:00"),
    ("sunday", "not a weekly window"),
])
def test_cache_maintenance_window(window: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"prod\.cache\.maintenance_window = .*{message}"):
        replace(PROD, cache=replace(PROD.cache, maintenance_window=window))


@pytest.mark.parametrize(("changes", "message"), [
    ({"name": "qa"}, r"name = 'qa': is not an environment. Use one of"),
    ({"primary_region": "us-east"}, r"prod\.primary_region = 'us-east': is not an AWS region"),
    ({"dr_region": "US-WEST-2"}, r"prod\.dr_region = 'US-WEST-2': is not an AWS region"),
    ({"availability_zones": ("us-east-1a", "us-east-1a", "us-east-1b")},
     r"prod\.availability_zones = .*must be 3 distinct zones. List three zones"),
    ({"database": replace(PROD.database, database_name="Boom-Booking")},
     r"prod\.database\.database_name = 'Boom-Booking': is not a PostgreSQL identifier"),
    ({"database": replace(PROD.database, maintenance_window="sun:05:00-sun:05:15")},
     r"prod\.database\.maintenance_window = .*shorter than 30 minutes. AWS requires"),
    ({"cache": replace(PROD.cache, node_type="t3.micro")},
     r"prod\.cache\.node_type = 't3.micro': is not an ElastiCache node type"),
    ({"cache": replace(PROD.cache, engine_version="6.2")},
     r"prod\.cache\.engine_version = '6.2': is not a Redis 7 version"),
])
def test_names_regions_zones_and_engines(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        replace(PROD, **changes)


@pytest.mark.parametrize(("emails", "message"), [
    (("oncall",), r"prod\.alarms\.emails = 'oncall': is not an e-mail address"),
    (("a@x.example, b@x.example",), "is not an e-mail address. Give one address per item"),
    ("oncall@x.example", r"is not a tuple of addresses. Use a tuple"),
    (("oncall@x.example", "OnCall@x.example"), "lists an address twice"),
    (("oncall@example.com\n",), r"prod\.alarms\.emails = .*is not an e-mail address"),
])
def test_alarm_emails(emails: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        replace(PROD, alarms=AlarmConfig(emails=emails))  # type: ignore[arg-type]


def with_newline(part: str, field: str) -> EnvironmentConfig:
    """PROD with a trailing newline on one pattern-checked string (`part` "" for the top)."""
    if not part:
        return replace(PROD, **{field: getattr(PROD, field) + "\n"})
    section = getattr(PROD, part)
    return replace(PROD, **{part: replace(section, **{field: getattr(section, field) + "\n"})})


@pytest.mark.parametrize(("part", "field"), [
    ("", "primary_region"), ("", "dr_region"),
    ("database", "instance_class"), ("database", "database_name"),
    ("database", "backup_window"), ("database", "maintenance_window"),
    ("cache", "node_type"), ("cache", "engine_version"), ("cache", "snapshot_window"),
    ("cache", "maintenance_window"), ("pgbouncer", "image"), ("pgbouncer", "client_tls_issuer"),
])
def test_a_trailing_newline_is_refused_not_carried_into_the_template(part: str,
                                                                      field: str) -> None:
    # re.match with ^...$ passed "us-east-1\n": $ also matches before a final newline
    name = f"prod.{part}.{field}" if part else f"prod.{field}"
    with pytest.raises(ConfigError, match=rf"{re.escape(name)} = '.*\\n'"):
        with_newline(part, field)


def test_cache_multi_az_needs_two_nodes() -> None:
    with pytest.raises(ConfigError, match=r"prod\.cache\.multi_az = True: needs at least 2"):
        replace(PROD, cache=replace(PROD.cache, num_nodes=1))


def test_more_nat_gateways_than_zones() -> None:
    with pytest.raises(ConfigError, match=r"nat_gateways = 4: .*range 1-3"):
        replace(PROD, network=replace(PROD.network, nat_gateways=4))


@pytest.mark.parametrize("zone", ["us-west-2a", "us-east-1c\n"])
def test_zones_must_belong_to_the_primary_region(zone: str) -> None:
    with pytest.raises(ConfigError, match=rf"availability_zones = {re.escape(repr(zone))}"):
        replace(PROD, availability_zones=("us-east-1a", "us-east-1b", zone))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("pool_mode", "session", "is not transaction"),
    ("default_pool_size", 200, "range 1-100"),
    ("replicas", 1, "range 2-20"),
    ("image", "edoburu/pgbouncer:latest", "not pinned"),
    ("image", "edoburu/pgbouncer", "not pinned"),
    ("image", "edoburu/pgbouncer:v1.25.1-p0@sha256:abc", "not pinned"),
    # Bitnami's free images no longer pull: a deploy with one would never start a pod.
    ("image", "bitnami/pgbouncer:1.24.1", "no longer pulls"),
    ("image", "docker.io/bitnami/pgbouncer:1.24.1", "no longer pulls"),
    ("run_as_user", 0, "range 1-"),
    ("client_tls_issuer", "Boom CA", "not a Kubernetes object name"),
    # 0 is PgBouncer's "never": a stuck client would hold a server connection for good.
    ("idle_transaction_timeout_seconds", 0, "range 1-3600"),
    ("idle_transaction_timeout_seconds", True, "range 1-3600"),
    # Too short drops healthy connections in a passing stall; too long hangs clients through
    # a failover as the kernel's defaults would.
    ("dead_connection_seconds", 4, "range 5-600"),
    ("dead_connection_seconds", 601, "range 5-600"),
    # Too short reconnects the pools all the time; too long lets one client's leftovers on a
    # server connection (a deallocated PgBouncer statement) outlast PgBouncer's default hour.
    ("server_lifetime_seconds", 59, "range 60-3600"),
    ("server_lifetime_seconds", 3601, "range 60-3600"),
])
def test_pgbouncer_values(field: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"prod\.pgbouncer\.{field} = .*{message}"):
        replace(PROD, pgbouncer=replace(PROD.pgbouncer, **{field: value}))


@pytest.mark.parametrize("image", [
    "edoburu/pgbouncer:v1.25.1-p0",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/pgbouncer:1.25.1",
    "edoburu/pgbouncer:v1.25.1-p0@sha256:" + "0" * 64,
])
def test_pgbouncer_image_references_that_pin_a_version(image: str) -> None:
    assert replace(PROD, pgbouncer=replace(PROD.pgbouncer, image=image)).pgbouncer.image == image


def test_pgbouncer_replicas_must_fit_the_database_connection_budget() -> None:
    # Given dev: max_connections 80, of which 3 are superuser-reserved and 5 kept for
    # operations, so a rollout's pools (twice the replicas) may hold 72
    dev = ENVIRONMENT_CONFIGS["dev"]
    assert dev.pgbouncer.server_connections_per_replica == 15 + 3
    assert dev.pgbouncer.steady_server_connections == 36
    assert dev.pgbouncer.rollout_server_connections == 72 == 80 - 3 - 5
    # When a third replica would make a rollout's 108, Then config refuses it, naming the field,
    # the arithmetic and the fix
    with pytest.raises(ConfigError, match=r"dev\.pgbouncer\.replicas = 3: x 2 \(a rollout or "
                       r"drain: .*\) x 18 server connections each = 108, more than "
                       r"database\.max_connections 80 minus 3 superuser-reserved and 5 for "
                       r"operations \(72\).*Lower replicas or the pool sizes"):
        replace(dev, pgbouncer=replace(dev.pgbouncer, replicas=3))
    # and so do the seed's prod-sized pools on dev's db.t3.micro (2 x 2 x 30 = 120),
    with pytest.raises(ConfigError, match=r"each = 120, more than"):
        replace(dev, pgbouncer=ENVIRONMENT_CONFIGS["prod"].pgbouncer)
    # while a larger max_connections (and class) makes room again.
    bigger = replace(dev, database=replace(dev.database, instance_class="db.t3.small",
                                           max_connections=116),
                     pgbouncer=replace(dev.pgbouncer, replicas=3))
    assert bigger.pgbouncer.rollout_server_connections == 108 == 116 - 8


def test_staging_and_prod_keep_the_seed_pools() -> None:
    for name in ("staging", "prod"):
        pool = ENVIRONMENT_CONFIGS[name].pgbouncer
        assert (pool.default_pool_size, pool.reserve_pool_size, pool.max_db_connections,
                pool.max_client_conn) == (25, 5, 100, 1000)


def test_max_db_connections_caps_what_one_replica_opens() -> None:
    pool = replace(PROD.pgbouncer, default_pool_size=15, reserve_pool_size=10,
                   max_db_connections=20)
    assert replace(PROD, pgbouncer=pool).pgbouncer.server_connections_per_replica == 20


def test_app_exits_non_zero_before_synth_on_bad_context() -> None:
    # Given the context `cdk synth -c env=nope` passes to the app
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps({"env": "nope"}),
           "CDK_OUTDIR": str(ROOT / ".pytest_cache" / "bad-context-out")}
    # When the app runs
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    # Then it stops with one clear message and writes no stacks
    assert result.returncode == 2
    assert "env = 'nope'" in result.stderr and "dev, staging, prod" in result.stderr
    assert not (ROOT / ".pytest_cache" / "bad-context-out" / "manifest.json").exists()


def test_app_run_without_the_cdk_cli_says_how_to_run_it() -> None:
    # Without the CLI, cdk.json's feature flags are missing: the app once died in a construct
    # with a jsii stack trace ("objectOwnership must be set ...").
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDK_")}
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert "runs under the CDK CLI" in result.stderr and "make synth" in result.stderr
    assert "Traceback" not in result.stderr
