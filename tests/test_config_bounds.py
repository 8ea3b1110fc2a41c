"""Where each numeric rule of the config draws its line: a value on the edge is accepted and
one step past it is refused, naming the field (test_config.py tests values far outside).
Before this module, a mutation sweep of config_rules.py (each comparison flipped, each whole
number moved by one, each `and`/`or` swapped, each `not` dropped, with test_config.py and
test_instance_memory.py run against each) left 68 of 138 mutants alive. With it, one remains,
and it cannot change a result: an eighth day, which is the first day again.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import assertions
from aws_cdk import aws_kms as kms

from boom_stacks.config import (
    ENVIRONMENT_CONFIGS,
    LOG_RETENTION_DAYS,
    ConfigError,
    EnvironmentConfig,
)
from boom_stacks.constructs.log_groups import encrypted_log_group

PROD = ENVIRONMENT_CONFIGS["prod"]
# Small pools, so that the connection budget (test_connection_budget.py) admits any edge below.
SMALL_POOLS = {("pgbouncer", "default_pool_size"): 2, ("pgbouncer", "reserve_pool_size"): 0}


def changed(changes: dict[tuple[str, str], Any]) -> EnvironmentConfig:
    """PROD with each (section, field) set; the config's rules run once, on the whole."""
    sections: dict[str, dict[str, Any]] = {}
    for (section, field), value in changes.items():
        sections.setdefault(section, {})[field] = value
    return replace(PROD, **{section: replace(getattr(PROD, section), **fields)
                            for section, fields in sections.items()})


# (section, field, lowest, highest, what else the edges need to be valid), as config_rules.py
# sets them (default_pool_size's ceiling is prod's max_db_connections).
RANGES: list[tuple[str, str, int, int, dict[tuple[str, str], Any]]] = [
    ("backup", "retention_days", 1, 3650, {}),
    ("backup", "noncurrent_retention_days", 1, 3650, {}),
    ("network", "nat_gateways", 1, 3, {}),  # one per availability zone at most
    ("database", "allocated_storage_gib", 20, 65536,
     {("database", "max_allocated_storage_gib"): 65536, ("database", "temp_file_limit_gib"): 5}),
    ("database", "max_allocated_storage_gib", 20, 65536,
     {("database", "allocated_storage_gib"): 20, ("database", "temp_file_limit_gib"): 5}),
    ("database", "backup_retention_days", 1, 35, {}),
    ("database", "secret_rotation_days", 1, 365, {}),
    ("database", "slow_statement_ms", 1, 60_000, {}),
    ("database", "app_user_transaction_minutes", 1, 1440, {}),
    ("database", "max_connections", 25, 5000,
     {("database", "instance_class"): "db.r6g.4xlarge", **SMALL_POOLS}),
    ("cache", "num_nodes", 1, 6, {("cache", "multi_az"): False}),
    ("cache", "snapshot_retention_days", 1, 35, {}),
    ("pgbouncer", "max_client_conn", 1, 100_000, {}),
    ("pgbouncer", "max_db_connections", 1, 5000, {("pgbouncer", "default_pool_size"): 1}),
    ("pgbouncer", "default_pool_size", 1, 100, {("database", "max_connections"): 450}),
    ("pgbouncer", "reserve_pool_size", 0, 1000, {("database", "max_connections"): 450}),
    ("pgbouncer", "replicas", 2, 20, SMALL_POOLS),
    ("pgbouncer", "idle_transaction_timeout_seconds", 1, 3600, {}),
    ("pgbouncer", "dead_connection_seconds", 5, 600, {}),
    ("pgbouncer", "server_lifetime_seconds", 60, 3600, {}),
    ("pgbouncer", "run_as_user", 1, 2**31 - 1, {}),
]
IDS = [f"{section}.{field}" for section, field, *_ in RANGES]


@pytest.mark.parametrize(("section", "field", "low", "high", "needs"), RANGES, ids=IDS)
def test_a_range_accepts_its_edges(section: str, field: str, low: int, high: int,
                                   needs: dict[tuple[str, str], Any]) -> None:
    for value in (low, high):
        config = changed({**needs, (section, field): value})
        assert getattr(getattr(config, section), field) == value


@pytest.mark.parametrize(("section", "field", "low", "high", "needs"), RANGES, ids=IDS)
def test_a_range_refuses_one_past_each_edge(section: str, field: str, low: int, high: int,
                                            needs: dict[tuple[str, str], Any]) -> None:
    for value in (low - 1, high + 1):
        with pytest.raises(ConfigError, match=rf"^prod\.{section}\.{field} = {value}: is "
                           rf"outside the allowed range {low}-{high}\. Set a whole number"):
            changed({**needs, (section, field): value})


def test_temp_file_limit_starts_at_one_gib() -> None:
    # Its upper edge is a quarter of the storage (test_config.py), never the range's 65536.
    assert changed({("database", "temp_file_limit_gib"): 1}).database.temp_file_limit_gib == 1
    with pytest.raises(ConfigError, match=r"^prod\.database\.temp_file_limit_gib = 0: is "
                                          r"outside the allowed range 1-"):
        changed({("database", "temp_file_limit_gib"): 0})


def test_storage_may_start_at_its_maximum_but_not_above() -> None:
    config = changed({("database", "allocated_storage_gib"): 1000})
    assert config.database.allocated_storage_gib == config.database.max_allocated_storage_gib
    with pytest.raises(ConfigError, match=r"allocated_storage_gib = 1001: is larger than max"):
        changed({("database", "allocated_storage_gib"): 1001})


def test_max_connections_may_reach_the_instance_memory_ceiling_but_not_pass_it() -> None:
    # db.t3.medium: 4 GiB / 9531392 bytes per connection = 450 (test_instance_memory.py)
    assert changed({("database", "max_connections"): 450}).database.max_connections == 450
    with pytest.raises(ConfigError, match=r"max_connections = 451: is more than db\.t3\.medium"):
        changed({("database", "max_connections"): 451})


@pytest.mark.parametrize("interval", [1, 5, 10, 15, 30, 60])
def test_every_enhanced_monitoring_interval_rds_offers_is_accepted(interval: int) -> None:
    config = changed({("database", "monitoring_interval_seconds"): interval})
    assert config.database.monitoring_interval_seconds == interval


@pytest.mark.parametrize("interval", [0, 2, 20, 61])
def test_other_monitoring_intervals_are_refused(interval: int) -> None:
    # 0 would switch Enhanced Monitoring off; RDS offers no other values.
    with pytest.raises(ConfigError, match=rf"monitoring_interval_seconds = {interval}: is not "
                                          r"an allowed value\. Use one of 1, 5, 10, 15, 30, 60"):
        changed({("database", "monitoring_interval_seconds"): interval})


@pytest.mark.parametrize(("prefix", "accepted"), [(15, False), (16, True), (20, True),
                                                  (21, False)])
def test_the_vpc_is_between_a_16_and_a_20(prefix: int, accepted: bool) -> None:
    cidr = f"10.30.0.0/{prefix}"
    if accepted:
        assert changed({("network", "cidr"): cidr}).network.cidr == cidr
    else:
        with pytest.raises(ConfigError, match=rf"cidr = '{cidr}': must be a private range "
                                              r"between /16 and /20"):
            changed({("network", "cidr"): cidr})


@pytest.mark.parametrize(("field", "thirty", "twenty_nine"), [
    (("database", "backup_window"), "03:00-03:30", "03:00-03:29"),
    (("database", "backup_window"), "23:45-00:15", "23:45-00:14"),  # across midnight
    (("database", "maintenance_window"), "sun:04:00-sun:04:30", "sun:04:00-sun:04:29"),
    (("database", "maintenance_window"), "sun:23:45-mon:00:15", "sun:23:45-mon:00:14"),
])
def test_a_window_may_be_30_minutes_but_not_29(field: tuple[str, str], thirty: str,
                                               twenty_nine: str) -> None:
    section, name = field
    assert getattr(changed({field: thirty}).database, name) == thirty
    with pytest.raises(ConfigError, match=rf"{name} = '{twenty_nine}': is shorter than 30"):
        changed({field: twenty_nine})


@pytest.mark.parametrize(("backup", "maintenance"), [
    # the daily window's Sunday night run reaches into Monday's maintenance
    ("23:50-00:20", "mon:00:00-mon:00:30"),
    # the weekly window wraps from Sunday into Monday over the daily one
    ("00:00-00:30", "sun:23:50-mon:00:20"),
    # three minutes on the last day of the week are enough
    ("03:00-04:00", "sun:02:30-sun:03:03"),
    # and the Sunday night run's last five minutes, on Monday morning
    ("23:00-00:30", "mon:00:25-mon:01:00"),
])
def test_windows_that_meet_across_the_end_of_the_week_overlap(backup: str,
                                                              maintenance: str) -> None:
    with pytest.raises(ConfigError, match=rf"maintenance_window = '{maintenance}': overlaps "
                                          rf"backup_window {backup}"):
        changed({("database", "backup_window"): backup,
                 ("database", "maintenance_window"): maintenance})


def test_windows_that_touch_across_the_end_of_the_week_do_not_overlap() -> None:
    config = changed({("database", "backup_window"): "23:30-00:00",
                      ("database", "maintenance_window"): "mon:00:00-mon:00:30"})
    assert config.database.maintenance_window == "mon:00:00-mon:00:30"


def test_each_log_retention_config_accepts_is_the_retention_the_template_gets() -> None:
    # log_groups.py pairs the allowed days with CDK's RetentionDays members by position.
    stack = cdk.Stack(cdk.App(), "Retention")
    key = kms.Key(stack, "Key")
    for days in LOG_RETENTION_DAYS:
        encrypted_log_group(stack, f"Logs{days}Days", key=key, retention_days=days, retain=False)
    groups = assertions.Template.from_stack(stack).find_resources("AWS::Logs::LogGroup")
    retention = {int(re.sub(r"^Logs([0-9]+)Days.*", r"\1", logical_id)):
                 group["Properties"]["RetentionInDays"] for logical_id, group in groups.items()}
    assert retention == {days: days for days in LOG_RETENTION_DAYS}
    for days in LOG_RETENTION_DAYS:
        assert changed({("database", "log_retention_days"): days}).database \
            .log_retention_days == days
    with pytest.raises(ConfigError, match=r"log_retention_days = 364: is not an allowed value"):
        changed({("database", "log_retention_days"): 364})
