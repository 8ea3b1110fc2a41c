"""The versioned migrations in `migrations/`: `NNNN_name.sql`, numbered from 0001 without
gaps, each applied once and never edited after it lands (bootstrap.py refuses a database whose
recorded checksum differs). `event_triggers()` reads which event triggers a version has, for
enforce.py's restore."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from .enforce import EVENT_TRIGGER
from .errors import BootstrapError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MIGRATION_FILE = re.compile(r"([0-9]{4})_([a-z0-9_]+)\.sql")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_FILE.fullmatch(path.name)
        if not match:
            raise BootstrapError(f"{path.name}: migration files are named NNNN_name.sql")
        migrations.append(Migration(int(match[1]), match[2], path.read_text()))
    if [m.version for m in migrations] != list(range(1, len(migrations) + 1)):
        raise BootstrapError("migrations must be numbered 0001, 0002, ... without gaps")
    return migrations


LATEST_VERSION = len(load_migrations())


def event_triggers(migrations: list[Migration], version: int) -> dict[str, str]:
    """The event triggers a database at `version` has, each with the CREATE EVENT TRIGGER of
    the newest migration that makes it: a repair re-creates a trigger exactly as the
    migrations made it (boom_protect_tenant_tables' function ignores tags it predates). One a
    later migration adds is left out: its function does not exist yet."""
    first: dict[str, int] = {}  # the version that made each
    newest: dict[str, str] = {}
    for migration in migrations:
        for statement in re.finditer(r"^CREATE EVENT TRIGGER (\w+) .*?;", migration.sql,
                                     re.MULTILINE | re.DOTALL):
            first.setdefault(statement[1], migration.version)
            newest[statement[1]] = statement[0]
    if EVENT_TRIGGER not in newest:
        raise BootstrapError(f"no migration creates the event trigger {EVENT_TRIGGER}")
    return {name: create for name, create in newest.items() if first[name] <= version}
