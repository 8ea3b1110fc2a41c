"""The README keeps up with the code it indexes: every migration has its line in the
migrations table, every test module is named (or matched by a glob) in the tests table, and
every module of the app and of the bootstrap package has its line in Layout, and the
acknowledgement counts the Compliance gate section states are compliance.py's. The README and
`docs/` hold together: every link between them reaches a file and a heading that exist, every
document in `docs/` is linked from the README, every test module the tests table sends to
the documentation is described there, and the README's one-line "ways in" tables list the
same ways in as `docs/ways-in.md`'s full ones."""

from __future__ import annotations

import fnmatch
import functools
import re
from pathlib import Path

from boom_stacks.compliance import acknowledgements_for
from boom_stacks.config import ENVIRONMENT_CONFIGS
from lambdas.tenant_bootstrap.migration_files import load_migrations
from tests.fixture_paths import ROOT

README = (ROOT / "README.md").read_text()
DOCS = sorted((ROOT / "docs").glob("*.md"))
# A Markdown link whose target is a path in the repository, its text possibly wrapped.
LOCAL_LINK = re.compile(r"\[[^\]]+\]\((?!https?://)([^)\s#]*)(?:#([^)\s]+))?\)")


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


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but hyphens dropped, spaces to
    hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@functools.cache
def anchors(path: Path) -> set[str]:
    """The anchors of `path`'s headings (read once however many links point into it)."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.MULTILINE | re.DOTALL)
    return {anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


def test_the_anchor_rule_is_githubs() -> None:
    assert anchor("Tenant database (row-level security that survives PgBouncer)") == \
        "tenant-database-row-level-security-that-survives-pgbouncer"
    assert anchor("Benchmark (`make bench-db`)") == "benchmark-make-bench-db"
    assert anchor("Between deploys: the guarantee check and the repair") == \
        "between-deploys-the-guarantee-check-and-the-repair"


def test_every_link_between_the_readme_and_docs_reaches_a_file_and_heading() -> None:
    broken = []
    for source in [ROOT / "README.md", *DOCS]:
        for target, fragment in LOCAL_LINK.findall(source.read_text()):
            path = (source.parent / target).resolve() if target else source
            if not path.is_file():
                broken.append(f"{source.name}: {target} (no such file)")
            elif fragment and fragment not in anchors(path):
                broken.append(f"{source.name}: {target}#{fragment} (no such heading)")
    assert broken == []


def test_every_document_in_docs_is_linked_from_the_readme() -> None:
    linked = {(ROOT / target).resolve() for target, _ in LOCAL_LINK.findall(README)}
    assert DOCS and [doc.name for doc in DOCS if doc.resolve() not in linked] == []


def test_every_test_module_the_table_sends_to_the_documentation_is_described_there() -> None:
    table = section("## Tests")
    named = set(re.findall(r"^\| `(test_[a-z0-9_]+\.py)` \|", table, re.MULTILINE))
    sent = next(row for row in table.splitlines() if "docs/test-evidence.md" in row)
    globs = re.findall(r"`(test_[a-z0-9_*]+\.py)`", sent)
    prose = README.replace(table, "") + "".join(doc.read_text() for doc in DOCS)
    undescribed = [path.name for path in sorted((ROOT / "tests").glob("test_*.py"))
                   if path.name not in named
                   and any(fnmatch.fnmatch(path.name, name) for name in globs)
                   and f"`{path.name}`" not in prose and f"tests/{path.name}" not in prose]
    assert undescribed == []


def ways_in(text: str) -> list[list[str]]:
    """The rows of the "way in" tables in `text`: (since, test) of each, in order."""
    return [[cell.strip() for cell in row.strip("|").split("|")][2:]
            for row in text.splitlines()
            if row.startswith("| ") and not row.startswith("| way in |")]


def test_the_readmes_ways_in_are_the_full_tables_one_line_each() -> None:
    at_a_glance = README[README.index("**At a glance:"):README.index(
        "PostgreSQL 15 has no transaction timeout")]
    full = (ROOT / "docs" / "ways-in.md").read_text()
    short, long = ways_in(at_a_glance), ways_in(full)
    assert len(short) == len(long) > 30
    assert short == long
    # One line each: no README "way in" or "what stops it" runs past 140 characters.
    cells = [cell for row in at_a_glance.splitlines() if row.startswith("| ")
             for cell in row.strip("|").split("|")[:2]]
    assert max(map(len, cells)) <= 140
