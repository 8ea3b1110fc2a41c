"""Memory of RDS instance classes, to keep `max_connections` within what RDS budgets.

RDS sets PostgreSQL's default `max_connections` to LEAST(DBInstanceClassMemory / 9531392, 5000):
about 9 MiB per connection. Config sets `max_connections` explicitly (so the connection budget
is exact) and must not promise more connections than that rule allows for the class's nominal
memory. Covers the burstable (t3, t4g), general-purpose (m) and memory-optimised (r) families
of AWS's instance-class table; add a family here before configuring it.
"""

from __future__ import annotations

import re

BYTES_PER_CONNECTION = 9_531_392
CONNECTIONS_CEILING = 5000
_BURSTABLE_GIB = {"micro": 1, "small": 2, "medium": 4, "large": 8, "xlarge": 16, "2xlarge": 32}
_BURSTABLE = ("t3", "t4g")
# m and r classes: memory grows with vCPUs (large = 2 vCPUs, xlarge = 4, Nxlarge = 4N).
_GIB_PER_VCPU = (dict.fromkeys(("m5", "m6g", "m6i", "m7g", "m7i"), 4)
                 | dict.fromkeys(("r5", "r6g", "r6i", "r7g", "r7i"), 8))
_SIZE = re.compile(r"(?:([0-9]+)x|x)?large")


def memory_gib(instance_class: str) -> int | None:
    """Nominal memory of `db.<family>.<size>` in GiB, or None for a class not listed here."""
    _, family, size = instance_class.split(".", 2)
    if family in _BURSTABLE:
        return _BURSTABLE_GIB.get(size)
    match = _SIZE.fullmatch(size)
    if family not in _GIB_PER_VCPU or not match:
        return None
    vcpus = 2 if size == "large" else 4 * int(match.group(1) or 1)
    return vcpus * _GIB_PER_VCPU[family]


def max_connections_ceiling(instance_class: str) -> int | None:
    """RDS's rule for `max_connections` applied to the nominal memory (an upper bound: RDS
    subtracts what the OS and its agents use first)."""
    gib = memory_gib(instance_class)
    if gib is None:
        return None
    return min(gib * 2**30 // BYTES_PER_CONNECTION, CONNECTIONS_CEILING)
