"""The tenant bootstrap Lambda as Lambda runs it: the bundled asset, a bare interpreter close to
the runtime's Python, and the runtime's own boto3 beside it."""

from __future__ import annotations

import sys
from pathlib import Path

from boom_stacks.constructs import python_bundle
from boom_stacks.constructs.tenant_bootstrap import VENDORED

# What the Lambda runtime provides itself (in /var/runtime); the asset does not ship them.
RUNTIME_DISTRIBUTIONS = ("boto3", "botocore", "jmespath", "s3transfer", "urllib3")


def bundle(out: Path) -> Path:
    """The asset exactly as `cdk synth` builds it."""
    bundler = python_bundle._LocalBundling(python_bundle.LAMBDAS_DIR / "tenant_bootstrap",
                                           VENDORED, rds_ca=True)
    assert bundler.try_bundle(str(out)) is True
    return out


def runtime_packages(out: Path) -> Path:
    """Stand-in for /var/runtime: boto3 and what it imports, from this venv."""
    python_bundle.copy_distributions(RUNTIME_DISTRIBUTIONS, out)
    return out


def interpreters() -> list[str]:
    """This venv's Python, plus the newest 3.13+ the machine has (pyenv), nearest to the Lambda
    runtime (3.14): its stricter TLS defaults and removed modules are what matter."""
    newer = sorted(Path("/root/.pyenv/versions").glob("3.1[3-9]*/bin/python3"))
    return [sys.executable, *[str(p) for p in newer[-1:]]]


def newest_interpreter() -> str:
    return interpreters()[-1]
