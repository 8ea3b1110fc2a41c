"""Instance-class memory against AWS's published sizes, and RDS's max_connections rule."""

from __future__ import annotations

import pytest

from boom_stacks.instance_memory import max_connections_ceiling, memory_gib


@pytest.mark.parametrize(("instance_class", "gib"), [
    ("db.t3.micro", 1), ("db.t3.small", 2), ("db.t3.medium", 4), ("db.t3.large", 8),
    ("db.t4g.xlarge", 16), ("db.t4g.2xlarge", 32),
    ("db.m5.large", 8), ("db.m6g.xlarge", 16), ("db.m6i.16xlarge", 256), ("db.m5.24xlarge", 384),
    ("db.r6g.large", 16), ("db.r7g.2xlarge", 64), ("db.r5.24xlarge", 768),
])
def test_memory_of_listed_classes(instance_class: str, gib: int) -> None:
    assert memory_gib(instance_class) == gib


@pytest.mark.parametrize("instance_class", ["db.x2g.large", "db.t3.nano", "db.m5.metal"])
def test_unlisted_classes_have_no_memory(instance_class: str) -> None:
    assert memory_gib(instance_class) is None and max_connections_ceiling(instance_class) is None


@pytest.mark.parametrize(("instance_class", "ceiling"), [
    # LEAST(memory / 9531392, 5000) on the nominal memory
    ("db.t3.micro", 112), ("db.t4g.small", 225), ("db.t4g.medium", 450), ("db.r5.24xlarge", 5000),
])
def test_max_connections_ceiling_follows_rds_rule(instance_class: str, ceiling: int) -> None:
    assert max_connections_ceiling(instance_class) == ceiling
