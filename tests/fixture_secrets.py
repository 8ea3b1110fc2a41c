"""The bootstrap handler's AWS side in tests: moto's Secrets Manager holding the master and
role secrets, and what the tests compare a database by before and after a run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lambdas.tenant_bootstrap import master_secret
from tests.fixture_bootstrap import schema_dump
from tests.fixture_postgres import PostgresServer


@dataclass
class Secrets:
    client: Any
    app_user: str
    owner: str

    def master(self, **values: object) -> str:
        return self.put("master", values)

    def put(self, name: str, value: object) -> str:
        body = value if isinstance(value, str) else json.dumps(value)
        return str(self.client.create_secret(Name=f"boom/test/{name}/{_counter()}",
                                             SecretString=body)["ARN"])


_count = iter(range(1_000_000))


def _counter() -> int:
    return next(_count)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, postgres: PostgresServer,
        role_passwords: dict[str, str]) -> Iterator[Secrets]:
    """moto's Secrets Manager with the role secrets in it, and the handler pointed at the test
    server's CA; no waiting between master-password retries."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(master_secret.CA_FILE_VARIABLE, str(postgres.ca_file))
    monkeypatch.setattr(master_secret, "RETRY_WAIT_SECONDS", 0)
    with mock_aws():
        client = boto3.client("secretsmanager")
        secrets = Secrets(client, "", "")
        # Roles are cluster-wide: the session's passwords, which other tests log in with.
        secrets.app_user = secrets.put("app_user", {"username": "app_user",
                                                    "password": role_passwords["app_user"]})
        secrets.owner = secrets.put("owner", {"username": "boom_owner",
                                              "password": role_passwords["boom_owner"]})
        yield secrets


def master_values(postgres: PostgresServer, database: str, **overrides: object) -> dict[str, Any]:
    values: dict[str, Any] = {"engine": "postgres", "host": "127.0.0.1", "port": postgres.port,
                              "dbname": database, "username": "postgres",
                              "password": postgres.password}
    values.update(overrides)
    return values


def state(postgres: PostgresServer, database: str) -> tuple[str, list[list[object]]]:
    conn = postgres.connect(database)
    try:
        recorded = conn.run("SELECT version, checksum FROM boom_meta.schema_versions "
                            "ORDER BY 1") if conn.run(
            "SELECT to_regclass('boom_meta.schema_versions')")[0][0] else []
    finally:
        conn.close()
    return schema_dump(postgres, database), recorded
