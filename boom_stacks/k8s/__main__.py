"""`python -m boom_stacks.k8s --env dev --database-host HOST`: PgBouncer's objects as YAML.

For review and for operators applying them by hand (`| kubectl apply -f -`); the cluster stack
applies the same objects. Nothing secret is printed: credentials come from External Secrets.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

import yaml

from boom_stacks.config import ENVIRONMENT_CONFIGS, ENVIRONMENTS
from boom_stacks.k8s.pgbouncer import pgbouncer_manifests
from boom_stacks.rds_ca import CaBundleError

# A DNS name or an IPv4 address: what PgBouncer's `host=` accepts without quoting. Labels of
# 1 to 63 letters, digits and inner hyphens, joined by single dots (RFC 1123), 253 at most:
# `db..example` or a 64-character label would only fail when PgBouncer looks it up.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m boom_stacks.k8s",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--env", required=True, choices=ENVIRONMENTS)
    parser.add_argument("--database-host", required=True,
                        help="the RDS endpoint address (Boom-<Env>-Data output)")
    args = parser.parse_args(argv)
    if not _HOST.fullmatch(args.database_host):
        print(f"--database-host {args.database_host!r}: give a host name or IPv4 address, "
              "e.g. boom-dev-db.abc123.us-east-1.rds.amazonaws.com", file=sys.stderr)
        return 2
    try:
        manifests = pgbouncer_manifests(ENVIRONMENT_CONFIGS[args.env],
                                        database_host=args.database_host)
    except CaBundleError as err:
        print(f"pgbouncer manifests: {err}", file=sys.stderr)
        return 1
    yaml.safe_dump_all(manifests, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
