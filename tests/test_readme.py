"""The README keeps up with the code it indexes: every migration has its line in the
migrations table, every test module is named (or matched by a glob) in the tests table, and
every module of the app and of the bootstrap package has its line in Layout, and the
acknowledgement counts the Compliance gate section states are compliance.py's."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from boom_stacks.compliance import acknowledgements_for
from boom_stacks.config import ENVIRONMENT_CONFIGS
from lambdas.tenant_bootstrap.bootstrap import load_migrations

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def section(heading: str) -> str:
    start = README.index(f"\n{heading}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def test_every_migration_has_its_line_in_order() -> None:
    listed = [int(v) for v in re.findall(r"^\| (\d{4}) \| ", README, re.MULTILINE)]
    assert listed == [m.version for m in load_migrations()]


def test_every_test_module_is_in_the_tests_table() -> None:
    names = re.findall(r"`(test_[a-z0-9_*]+\.py)`", section("## Tests"))
    unlisted = [path.name for path in sorted((ROOT / "tests").glob("test_*.py"))
                if not any(fnmatch.fnmatch(path.name, name) for name in names)]
    assert unlisted == []


def test_every_module_has_its_line_in_the_layout() -> None:
    layout = section("## Layout")
    # Top-level modules by path; the bootstrap package's one per indented line under it.
    named = set(re.findall(r"^(boom_stacks/[a-z_]+\.py)\b", layout, re.MULTILINE))
    named |= {f"lambdas/tenant_bootstrap/{name}" for name in
              re.findall(r"^ {2,4}([a-z_]+\.py)\b", layout, re.MULTILINE)}
    modules = [str(path.relative_to(ROOT)) for path in
               [*(ROOT / "boom_stacks").glob("*.py"),
                *(ROOT / "lambdas" / "tenant_bootstrap").glob("*.py")]
               if path.name != "__init__.py"]
    assert sorted(set(modules) - named) == []


def test_the_acknowledgement_counts_are_compliance_pys() -> None:
    stated = re.search(r"Current acknowledgements\s+\((\d+) in dev,\s+(\d+) in staging,\s+"
                       r"(\d+) in prod,", section("## Compliance gate"))
    assert stated, "the Compliance gate section no longer states the counts"
    counts = tuple(str(len(acknowledgements_for(ENVIRONMENT_CONFIGS[name])))
                   for name in ("dev", "staging", "prod"))
    assert stated.groups() == counts
