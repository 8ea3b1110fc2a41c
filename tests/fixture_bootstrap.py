"""What the bootstrap tests read back from a database: its schema and recorded versions."""

from __future__ import annotations

import subprocess

import pg8000.native

from tests.fixture_postgres import PG_BIN, PostgresServer


def schema_dump(postgres: PostgresServer, database: str) -> str:
    """`pg_dump --schema-only` of `database`, for before/after comparisons."""
    result = subprocess.run(
        [str(PG_BIN / "pg_dump"), "--schema-only", "-h", "127.0.0.1", "-p", str(postgres.port),
         "-U", "postgres", database], env={"PGPASSWORD": postgres.password},
        capture_output=True, text=True, check=True)
    # pg_dump 15.14+ brackets its output with a random \restrict key: not schema.
    return "\n".join(line for line in result.stdout.splitlines()
                     if not line.startswith(("\\restrict", "\\unrestrict")))


def versions(conn: pg8000.native.Connection) -> list[list[object]]:
    """The migrations recorded as applied: version, name, checksum."""
    return conn.run("SELECT version, name, checksum FROM boom_meta.schema_versions ORDER BY 1")
