"""A role whose password in the database is not its secret's (role_secrets.py): the scheduled
check logs in as each role with its secret's current password and reports a refusal; the
repair, sent the role secrets, sets the passwords again. Real PostgreSQL 15, secrets in moto.

Roles are cluster-wide: every test gives both roles the session's passwords back.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from lambdas.tenant_bootstrap import handler, rotation, scheduled_check
from tests.fixture_postgres import PostgresServer, bootstrapped_database
from tests.fixture_secrets import Secrets, guarantee_event, master_values


@pytest.fixture
def database(postgres: PostgresServer, role_passwords: dict[str, str],
             role_passwords_back: None) -> str:
    return bootstrapped_database(postgres, role_passwords)


def event(kind: str, aws: Secrets, master: str, *, with_secrets: bool = True) -> dict[str, Any]:
    """The schedule's check event, or the stack's TenantRepairEvent ("Repair" for "Check")."""
    return guarantee_event(kind, master, aws if with_secrets else None, environment="prod")


def set_by_hand(postgres: PostgresServer, database: str, sql: str) -> None:
    admin = postgres.connect(database)
    try:
        admin.run(sql)
    finally:
        admin.close()


def refused(role: str, aws: Secrets) -> str:
    field, arn = {"app_user": ("AppUserSecretArn", aws.app_user),
                  "boom_owner": ("OwnerSecretArn", aws.owner)}[role]
    return (f"{role} does not log in with the password in its secret ({field} {arn}): the "
            "database has another (set by hand, or by a rotation that stopped). The repair "
            "(README: Between deploys) sets it from the secret again")


def test_both_roles_logging_in_with_their_secrets_is_no_finding(
        postgres: PostgresServer, aws: Secrets, database: str) -> None:
    master = aws.master(**master_values(postgres, database))
    assert handler.on_event(event("Check", aws, master))["Findings"] == []


@pytest.mark.parametrize("role", ["app_user", "boom_owner"])
def test_a_password_changed_by_hand_is_a_finding_the_repair_mends(
        postgres: PostgresServer, aws: Secrets, database: str, role: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    master = aws.master(**master_values(postgres, database))
    set_by_hand(postgres, database, f"ALTER ROLE {role} PASSWORD '{rotation.new_password()}'")
    assert handler.on_event(event("Check", aws, master))["Findings"] == [refused(role, aws)]
    # A repair event without the secrets (the stack's output before they were added) sets no
    # password; with them, it sets both from their secrets.
    handler.on_event(event("Repair", aws, master, with_secrets=False))
    assert handler.on_event(event("Check", aws, master))["Findings"] == [refused(role, aws)]
    handler.on_event(event("Repair", aws, master))
    assert handler.on_event(event("Check", aws, master))["Findings"] == []
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if line.startswith('{"_aws"')]
    assert [line[scheduled_check.METRIC_NAME] for line in lines] == [1, 1, 0]


@pytest.mark.usefixtures("unlimited_app_user_afterwards")
def test_app_user_at_its_connection_limit_is_no_finding_as_its_password_was_taken(
        postgres: PostgresServer, aws: Secrets, database: str) -> None:
    # PostgreSQL checks a role's CONNECTION LIMIT only after its password: the PgBouncer
    # pools using every connection app_user may have is not a password problem.
    master = aws.master(**master_values(postgres, database))
    set_by_hand(postgres, database, "ALTER ROLE app_user CONNECTION LIMIT 0")
    assert handler.on_event(event("Check", aws, master))["Findings"] == []
    set_by_hand(postgres, database, f"ALTER ROLE app_user PASSWORD '{rotation.new_password()}'")
    assert handler.on_event(event("Check", aws, master))["Findings"] == [
        refused("app_user", aws)]


def test_a_rotation_stopped_after_setSecret_is_found_and_ended_as_the_finding_says(
        postgres: PostgresServer, aws: Secrets, database: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    master = aws.master(**master_values(postgres, database))
    monkeypatch.setenv(rotation.MASTER_SECRET_VARIABLE, master)
    token = aws.start_rotation(aws.owner)
    for step in ("createSecret", "setSecret"):  # then testSecret fails, say, and it stops
        handler.on_event({"Step": step, "SecretId": aws.owner, "ClientRequestToken": token})
    check = event("Check", aws, master)
    # boom_owner now logs in only with the pending password; under the hour, that is a
    # rotation in progress, not a finding.
    assert handler.on_event(check)["Findings"] == []
    monkeypatch.setattr(rotation, "STUCK_AFTER", rotation.STUCK_AFTER * 0)
    [stuck] = handler.on_event(check)["Findings"]
    assert stuck.startswith("boom_owner's password rotation begun ")
    # The operator's first command: the label removed, the rotation is over; the database
    # still has the password setSecret set, which the check now reports, and the repair mends.
    aws.client.update_secret_version_stage(SecretId=aws.owner, VersionStage="AWSPENDING",
                                           RemoveFromVersionId=token)
    assert handler.on_event(check)["Findings"] == [refused("boom_owner", aws)]
    handler.on_event(event("Repair", aws, master))
    assert handler.on_event(check)["Findings"] == []
