"""Which environment `make synth` synthesizes, read from `make -n` (which prints the commands
without running them): `ENV` on the command line or from the shell picks it, except an `ENV`
that POSIX sh set for its start-up file, a path, which must not become `-c env=/path`."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest

from tests.fixture_paths import ROOT


def dry_synth(*args: str, env_var: str | None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("ENV", "MAKEFLAGS", "MAKELEVEL")}
    if env_var is not None:
        environ["ENV"] = env_var
    # -o: the set-up prerequisites count as done, so only synth's own commands are printed.
    return subprocess.run(
        ["make", "-n", "-o", "setup", "-o", ".venv/.requirements.stamp",
         "-o", "node_modules/.lock.stamp", "synth", *args],
        cwd=ROOT, env=environ, capture_output=True, text=True, check=True)


def synthesized_env(result: subprocess.CompletedProcess[str]) -> str:
    """The `env=` context cdk receives, split into arguments as the shell splits the command."""
    synth = [shlex.split(line) for line in result.stdout.splitlines() if "cdk synth" in line]
    assert len(synth) == 1, result.stdout
    chosen = [arg.removeprefix("env=") for arg in synth[0] if arg.startswith("env=")]
    assert len(chosen) == 1, synth[0]
    return chosen[0]


@pytest.mark.parametrize(("env_var", "args", "expected"), [
    (None, (), "dev"),
    ("prod", (), "prod"),                     # ENV=prod make synth (README)
    (None, ("ENV=staging",), "staging"),      # make synth ENV=staging
    ("/root/.shrc", ("ENV=prod",), "prod"),   # the command line wins over sh's ENV
])
def test_env_picks_the_environment(env_var: str | None, args: tuple[str, ...],
                                   expected: str) -> None:
    result = dry_synth(*args, env_var=env_var)
    assert synthesized_env(result) == expected
    assert "start-up file" not in result.stderr


def test_shs_start_up_file_in_env_is_not_taken_for_an_environment() -> None:
    # Without the Makefile's check this synthesized `-c env=/root/.shrc`, which config refuses.
    result = dry_synth(env_var="/root/.shrc")
    assert synthesized_env(result) == "dev"
    assert ("ENV=/root/.shrc in your shell is sh's start-up file, not an environment: "
            "synthesizing dev. Pick one with make synth ENV=<dev|staging|prod>") in result.stderr


@pytest.mark.parametrize("env", ["prod x", "it's", "prod;touch x", ""])
def test_an_env_with_spaces_or_quotes_reaches_config_whole(env: str) -> None:
    # Unquoted, ENV='prod x' made `-c env=prod x`: cdk took `x` for a stack name and said no
    # stack matched. Whole, it is config's to refuse, by name (test_config.py).
    result = dry_synth(f"ENV={env}", env_var=None)
    assert synthesized_env(result) == env
