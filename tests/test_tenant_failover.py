"""A DR region's read replica of the tenant database, on real PostgreSQL 15: a hot standby
(pg_basebackup -R, streaming) of a server of the test's own, promoted as a failover would.

Before promotion the bootstrap and its check refuse it, naming the primary. Once promoted it
is a tenant database like the one it copied, with nothing to run: the bootstrap applies and
repairs nothing, the check is clean, app_user's isolation holds, and pg_cron's job (0014),
whose scheduler does not start on a standby, starts with the promotion and runs at its next
minute, so the bound on app_user's transactions holds there too.
"""

from __future__ import annotations

import time

import pytest

from lambdas.tenant_bootstrap import bootstrap
from lambdas.tenant_bootstrap.__main__ import main
from lambdas.tenant_bootstrap.cron import STUCK_JOB
from tests.fixture_cron import CRON, DATABASE, apply, check
from tests.fixture_postgres import (
    PostgresServer,
    bootstrapped_database,
    new_role_passwords,
    promote,
    running_postgres,
    running_standby,
)
from tests.fixture_tenants import (
    ROWS_PER_TENANT,
    TENANT_A,
    TENANT_B,
    committed,
    connect_as,
    fails,
    in_tenant,
    seed_two_tenants,
)

SCHEDULER_STARTED = "pg_cron scheduler started"
# pg_cron runs the job at the start of each minute: the next one, and pg_cron's start.
NEXT_MINUTE = 75


def test_a_read_replica_is_refused_until_promoted_then_needs_nothing(
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given a hot standby of a bootstrapped server with two tenants' rows, as a read replica (a
    # DR region's). A server of its own: a base backup of the session's would copy every
    # test's databases.
    with running_postgres() as primary:
        passwords = new_role_passwords()
        database = bootstrapped_database(primary, passwords, "replica")
        seed_two_tenants(primary, passwords, database)
        with running_standby(primary) as standby:
            replica = standby.connect(database, tls=True)
            assert replica.run("SELECT pg_is_in_recovery(), count(*) "
                               "FROM boom_meta.schema_versions") == [
                [True, bootstrap.LATEST_VERSION]]
            # When the bootstrap, or a check, runs against it, then it says what the server is
            # and where to run instead, not "cannot execute ... in a read-only transaction"
            dsn = (f"postgresql://{standby.user}@127.0.0.1:{standby.port}/{database}"
                   "?sslmode=require")
            assert main(["--dsn", dsn], environ={"PGPASSWORD": standby.password}) == 1
            err = capsys.readouterr().err
            assert "the server is a read replica (in recovery), where the bootstrap cannot" in err
            assert "run it against the primary" in err and "read-only transaction" not in err
            with pytest.raises(bootstrap.BootstrapError, match="where the check cannot write"):
                bootstrap.check(replica)
            # When it is promoted (the failover), then it is a tenant database like the one
            # it copied: the run applies and repairs nothing, the check is clean, and app_user
            # sees its tenant's rows only, and writes only as that tenant
            promote(standby)
            assert main(["--dsn", dsn], environ={"PGPASSWORD": standby.password}) == 0
            assert "applied: none" in capsys.readouterr().out
            assert bootstrap.check(replica).findings == ()
            replica.close()
            app = connect_as(standby, passwords, database, "app_user")
            assert in_tenant(app, TENANT_A, "SELECT count(*), count(DISTINCT tenant_id) "
                             "FROM app.bookings") == [[ROWS_PER_TENANT, 1]]
            committed(app, TENANT_A, "INSERT INTO app.bookings (resource, starts_at, ends_at) "
                      "VALUES ('after-failover', now(), now() + interval '1 hour')")
            fails(app, TENANT_A, "INSERT INTO app.bookings (tenant_id, resource, starts_at, "
                  "ends_at) VALUES (:b, 'x', now(), now() + interval '1 hour')",
                  "row-level security", b=TENANT_B)
            app.close()


def scheduler_starts(server: PostgresServer) -> int:
    """How often the server's log says pg_cron's scheduler started."""
    return (server.root / "postgres.log").read_text().count(SCHEDULER_STARTED)


def test_pg_cron_starts_with_the_promotion_and_runs_the_job() -> None:
    # Given a server that loads pg_cron for the tenant database, as the parameter group does,
    # bootstrapped (the jobs are made with 0014), and a standby of it with the same settings
    with running_postgres(CRON) as primary:
        admin = primary.connect()
        admin.run(f"CREATE DATABASE {DATABASE}")
        admin.close()
        apply(primary, DATABASE, role_passwords=new_role_passwords())
        with running_standby(primary, CRON) as standby:
            replica = standby.connect(DATABASE)
            # The standby has the jobs, but pg_cron's scheduler has not started there
            assert STUCK_JOB in [name for (name,) in replica.run("SELECT jobname FROM cron.job")]
            assert scheduler_starts(standby) == 0
            # When it is promoted
            promote(standby)
            [[promoted_at]] = replica.run("SELECT now()")
            # Then the scheduler starts, and the job runs at its next minute, as shipped
            deadline = time.monotonic() + NEXT_MINUTE
            runs: list[list[object]] = []
            while not runs and time.monotonic() < deadline:
                time.sleep(1)
                # A run that has ended: one polled while still 'running' failed this test once.
                runs = replica.run(
                    "SELECT d.status FROM cron.job_run_details d JOIN cron.job j USING (jobid) "
                    "WHERE j.jobname = :j AND d.start_time > :t "
                    "AND d.status IN ('succeeded', 'failed')", j=STUCK_JOB, t=promoted_at)
            assert runs[:1] == [["succeeded"]]
            assert scheduler_starts(standby) == 1
            replica.close()
            # and the check, as the Data stack's (pg_cron required), finds nothing
            assert check(standby, DATABASE) == ()
