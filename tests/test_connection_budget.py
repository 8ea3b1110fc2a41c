"""The connection budget config enforces, on real processes: PostgreSQL with dev's
max_connections, one real PgBouncer per pod with dev's rendered ini, every pool full.

Config refuses PgBouncer replicas whose pools could, during a rollout (twice the pods: each
replacement starts while its predecessor terminates), leave no connection for operations
(config_rules._validate_connection_budget), and the bootstrap sets that worst case as
app_user's CONNECTION LIMIT. Here the numbers meet the processes: at dev's rollout peak the
poolers hold exactly 2 x replicas x (default_pool_size + reserve_pool_size) connections and a
migration can still log in; at the rollout peak of the 3 replicas config refuses, PostgreSQL
holds app_user to the same number and the migration still gets in, and without the role's
limit (the negative control) the poolers take every slot a non-superuser can have and the
migration is locked out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace

import pg8000.native
import pytest

from boom_stacks.config import ENVIRONMENT_CONFIGS, ConfigError
from boom_stacks.config_rules import SUPERUSER_RESERVED_CONNECTIONS
from tests.fixture_k8s import manifests, rendered_ini
from tests.fixture_postgres import (
    PgBouncer,
    PostgresServer,
    app_user_userlist,
    bootstrapped_database,
    local_pgbouncer_ini,
    new_role_passwords,
    pooler_connection,
    running_pgbouncer,
    running_postgres,
)

DEV = ENVIRONMENT_CONFIGS["dev"]
# Each client's statement: well past reserve_pool_timeout (3 s), even on a busy CI host. The
# test ends the statements once it has looked, so this costs time only when pools fill slowly.
HOLD_SECONDS = 15
# Clients per PgBouncer: more than its pool and reserve, so both fill and some clients wait.
CLIENTS_PER_POD = DEV.pgbouncer.server_connections_per_replica + 2
# PostgreSQL's default superuser_reserved_connections, as on RDS; the server here is set so.
SUPERUSER_RESERVED = SUPERUSER_RESERVED_CONNECTIONS


@dataclass
class Database:
    server: PostgresServer
    name: str
    passwords: dict[str, str]


@dataclass
class Peak:
    app_user_connections: int
    migration_login: str  # "ok" or the server's refusal


@pytest.fixture(scope="module")
def dev_sized() -> Iterator[Database]:
    settings = {"max_connections": str(DEV.database.max_connections),
                "superuser_reserved_connections": str(SUPERUSER_RESERVED)}
    with running_postgres(settings) as server:
        passwords = new_role_passwords()
        # as the deploy runs it: app_user capped at the pools' worst case
        name = bootstrapped_database(
            server, passwords, "budget",
            app_user_connection_limit=DEV.pgbouncer.rollout_server_connections)
        conn = server.connect(name)
        try:
            assert conn.run("SHOW max_connections") == [[str(DEV.database.max_connections)]]
        finally:
            conn.close()
        yield Database(server, name, passwords)


def set_app_user_limit(db: Database, limit: int) -> None:
    conn = db.server.connect(db.name)
    try:
        conn.run(f"ALTER ROLE app_user CONNECTION LIMIT {int(limit)}")
    finally:
        conn.close()


def app_user_connections(db: Database) -> int:
    conn = db.server.connect(db.name)  # the superuser, on a reserved slot if need be
    try:
        rows = conn.run("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app_user'")
        return int(rows[0][0])
    finally:
        conn.close()


def migration_login(db: Database) -> str:
    """boom_owner, who runs the application's migrations, logging in directly."""
    try:
        conn = pg8000.native.Connection("boom_owner", host="127.0.0.1", port=db.server.port,
                                        database=db.name, password=db.passwords["boom_owner"],
                                        timeout=10)
    except pg8000.native.DatabaseError as err:
        return str(err)
    try:
        conn.run("SELECT 1")
        return "ok"
    finally:
        conn.close()


def fill_pools(db: Database, pods: int, expected: int) -> Peak:
    """Run `pods` PgBouncers, send each more long statements than its pools hold, and
    look at the database when the poolers hold `expected` connections (or stop growing)."""
    ini = local_pgbouncer_ini(db.server, db.name, env="dev")
    userlist = app_user_userlist(db.passwords["app_user"])

    def client(bouncer: PgBouncer) -> None:
        try:
            conn = pooler_connection(bouncer, db.name, db.passwords["app_user"], timeout=120)
            conn.run(f"SELECT pg_sleep({HOLD_SECONDS})")
            conn.close()
        except pg8000.native.Error:
            pass  # its pooler was stopped, or (over budget) no slot was left: the count says

    with ExitStack() as stack:
        bouncers = [stack.enter_context(running_pgbouncer(ini, userlist, db.server.ca_file))
                    for _ in range(pods)]
        threads = [threading.Thread(target=client, args=(bouncer,))
                   for bouncer in bouncers for _ in range(CLIENTS_PER_POD)]
        for thread in threads:
            thread.start()
        seen, deadline = 0, time.monotonic() + HOLD_SECONDS - 1
        while seen < expected and time.monotonic() < deadline:
            time.sleep(0.25)
            seen = max(seen, app_user_connections(db))
        peak = Peak(app_user_connections=app_user_connections(db),
                    migration_login=migration_login(db))
    # The poolers are gone, so their clients fail fast instead of queueing for another round;
    # their statements would sleep on, so end them before the next test counts.
    for thread in threads:
        thread.join(timeout=120)
    end_app_user_backends(db)
    return peak


def end_app_user_backends(db: Database) -> None:
    conn = db.server.connect(db.name)
    try:
        conn.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE usename = 'app_user'")
        deadline = time.monotonic() + 10
        while app_user_connections(db) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        conn.close()
    assert app_user_connections(db) == 0


def test_at_a_rollout_s_peak_the_pools_fit_and_migrations_still_log_in(
        dev_sized: Database) -> None:
    # Given dev's rollout peak: twice its replicas, every pool and reserve full
    pods = 2 * DEV.pgbouncer.replicas
    budget = DEV.pgbouncer.rollout_server_connections
    assert budget == pods * DEV.pgbouncer.server_connections_per_replica
    peak = fill_pools(dev_sized, pods, expected=budget)
    # Then the poolers hold exactly what config counted, not one connection more,
    assert peak.app_user_connections == budget
    # and the migrator (no superuser, no reserved slot) still gets in.
    assert peak.migration_login == "ok"


def test_beyond_config_postgres_itself_keeps_the_room_for_migrations(
        dev_sized: Database) -> None:
    # Given the replica count config refuses for dev
    with pytest.raises(ConfigError, match=r"dev\.pgbouncer\.replicas = 3"):
        replace(DEV, pgbouncer=replace(DEV.pgbouncer, replicas=3))
    # When its rollout's poolers (6) fill their pools anyway (config bypassed, say by hand)
    peak = fill_pools(dev_sized, 2 * 3, expected=DEV.pgbouncer.rollout_server_connections)
    # Then app_user's CONNECTION LIMIT from the bootstrap holds them to the budget,
    assert peak.app_user_connections == DEV.pgbouncer.rollout_server_connections
    # and the migrator still gets in.
    assert peak.migration_login == "ok"


def test_negative_control_without_the_role_limit_they_lock_migrations_out(
        dev_sized: Database) -> None:
    # Given app_user without its limit (as before the bootstrap set one)
    set_app_user_limit(dev_sized, -1)
    try:
        # When the refused configuration's rollout (6 poolers) fills its pools
        open_slots = DEV.database.max_connections - SUPERUSER_RESERVED
        assert 2 * 3 * DEV.pgbouncer.server_connections_per_replica > open_slots
        peak = fill_pools(dev_sized, 2 * 3, expected=open_slots)
    finally:
        set_app_user_limit(dev_sized, DEV.pgbouncer.rollout_server_connections)
    # Then they take every slot a non-superuser may have, and the migration cannot log in.
    assert peak.app_user_connections == open_slots
    assert "remaining connection slots are reserved" in peak.migration_login


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_each_replica_has_exactly_one_pool_as_the_budget_assumes(env: str) -> None:
    # The budget counts default_pool_size + reserve_pool_size once per replica: one pool, for
    # the one database and the one user. A second database or user would add a pool per pod;
    # then server_connections_per_replica must count it.
    objects = manifests(env)
    assert list(rendered_ini(objects)["databases"]) == [
        ENVIRONMENT_CONFIGS[env].database.database_name]
    userlist = objects["ExternalSecret/pgbouncer-userlist"]["spec"]["target"]["template"][
        "data"]["userlist.txt"]
    assert len(userlist.splitlines()) == 1
