"""The tenant bootstrap Lambda as Lambda runs it: a bare interpreter of the runtime's Python
version, and the runtime's own boto3 beside the asset (the construct's `ASSET.bundle()`)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from boom_stacks.constructs import python_bundle
from boom_stacks.constructs.tenant_bootstrap import RUNTIME

RUNTIME_VERSION = RUNTIME.name.removeprefix("python")  # "3.13"

# What the Lambda runtime provides itself (in /var/runtime); the asset does not ship them.
RUNTIME_DISTRIBUTIONS = ("boto3", "botocore", "jmespath", "s3transfer", "urllib3")


def runtime_packages(out: Path) -> Path:
    """Stand-in for /var/runtime: boto3 and what it imports, from this venv."""
    python_bundle.copy_distributions(RUNTIME_DISTRIBUTIONS, out)
    return out


def interpreters() -> list[str]:
    """This venv's Python, plus the Lambda runtime's version (pyenv) when the machine has it:
    its stricter TLS defaults and removed modules are what matter."""
    pyenv = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv"))
    runtime = sorted((pyenv / "versions").glob(f"{RUNTIME_VERSION}.*/bin/python3"))
    return [sys.executable, *[str(p) for p in runtime[-1:]]]


def runtime_interpreter() -> str:
    """The runtime's Python version if the machine has it, else this venv's."""
    return interpreters()[-1]


@dataclass
class LambdaContext:
    """The one method of Lambda's context object the handler reads (a runtime object, not an
    AWS API call)."""
    remaining_ms: int

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms
