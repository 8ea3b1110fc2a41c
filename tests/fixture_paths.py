"""The repository's root, for tests that read its files (README, Makefile, benchmarks,
requirements) without importing the CDK, as fixture_synth does."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
