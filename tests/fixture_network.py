"""Network faults for tests, made with iproute2 on this machine's loopback device (the tests
run as root): a peer that vanishes drops packets, it does not refuse them."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

SINK = "boomsilent0"  # a veth left down: what is redirected to it is dropped


def ip_or_tc(*command: str, check: bool = True) -> None:
    subprocess.run(list(command), check=check, capture_output=True)


@contextmanager
def silent(*ports: int) -> Iterator[None]:
    """Every packet to `ports` on loopback dropped as it arrives (redirected to a device that
    is down), as a host that is gone drops it: the sender's stack sent it and hears nothing, no
    reset, no local error. Everything else flows. Undone however the block ends."""
    ip_or_tc("tc", "qdisc", "del", "dev", "lo", "clsact", check=False)  # a run killed midway
    ip_or_tc("ip", "link", "del", SINK, check=False)
    ip_or_tc("ip", "link", "add", SINK, "type", "veth", "peer", "name", "boomsilent1")
    try:
        ip_or_tc("tc", "qdisc", "add", "dev", "lo", "clsact")
        for port in ports:
            ip_or_tc("tc", "filter", "add", "dev", "lo", "ingress", "protocol", "ip", "prio",
                     "1", "u32", "match", "ip", "dport", str(port), "0xffff",
                     "action", "mirred", "egress", "redirect", "dev", SINK)
        yield
    finally:
        ip_or_tc("tc", "qdisc", "del", "dev", "lo", "clsact", check=False)
        ip_or_tc("ip", "link", "del", SINK)
