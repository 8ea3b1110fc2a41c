"""RLS cost and pooling headroom, through real PgBouncer with the seed's settings.

(a) RLS with the tenant set per transaction vs (b) the same queries with an explicit
`WHERE tenant_id = ...` on an identical table without RLS, same data, same run, interleaved.
Three more workloads explain the ratio: (a0), workload (a) on a database left at schema version
2 (the tenant functions before migration 0003); (c), workload (b) plus the `set_tenant` call,
which separates the cost of setting the tenant from the cost of RLS; and (d), the textbook
design (`SET LOCAL` and a policy that reads the setting directly), which leaks through the
pooler and is measured only as the ceiling an RLS design reaches on this machine.
Then (a) and (b) with prepared statements through PgBouncer (1.24+ pools them by default, as the
pods' 1.26 does), (a) and (b) with a ten times heavier read (200 bookings), and
1000 clients through PgBouncer (max_db_connections = 100), with server-side statement times from
pg_stat_statements. Writes benchmarks/RESULTS.md. Run with `make bench-db`.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pg8000.native

from benchmarks import process_cpu
from benchmarks.results import Results, Runs, write_results
from boom_stacks.config import ENVIRONMENT_CONFIGS
from lambdas.tenant_bootstrap import bootstrap
from tests.fixture_postgres import (
    PG_BIN,
    PgBouncer,
    PostgresServer,
    local_pgbouncer_ini,
    new_role_passwords,
    running_pgbouncer,
    running_postgres,
)

HERE = Path(__file__).parent
ROWS_PER_TENANT, TENANTS, CLIENTS, SECONDS, ROUNDS = 2000, 10, 50, 12, 5
# Bookings a transaction reads: the simple-protocol scripts' `LIMIT :rows`. The prepared
# scripts spell it (LIMIT 20): as a parameter it would change the plan they are measured with.
READ_ROWS, HEAVIER_READ_ROWS = 20, 200
# Tenant n is 00000000-0000-0000-0000-0000000000nn. With two digits the scripts send it as a
# literal ('...0000000000:t'), as an application sends a parameter, and SET LOCAL can take it.
FIRST_TENANT = 10
LAST_TENANT = FIRST_TENANT + TENANTS - 1
assert FIRST_TENANT >= 10 and LAST_TENANT <= 99, "tenant numbers must have two digits"

BASELINE_VERSION = 2  # (a0): the tenant functions of 0001, before 0003
# pg_stat_statements is loaded but records nothing during the (a)/(b) runs: its per-statement
# cost would fall more on (a), which runs one statement more. It records the 1000-client run
# only. (Set with ALTER SYSTEM: a -c option would override any later change.)
SERVER_SETTINGS = {"shared_preload_libraries": "pg_stat_statements",
                   # Autovacuum would wake on whichever table had just grown and bill its CPU
                   # to the workload running then; settle() vacuums between runs instead.
                   "autovacuum": "off"}
TABLES = ("app.bookings", "bench.bookings", "textbook.bookings")
# (d)'s policy reads the setting directly, as most guides show it. A session-level SET of it
# survives on a pooled server connection and the next client inherits it; the product's
# app.current_tenant_id() refuses such a value (its stamp is from another transaction).
TEXTBOOK_TENANT = "nullif(current_setting('boom.tenant_id', true), '')::uuid"

WORKLOADS = {  # key in results.py: (row label in RESULTS.md, script, database key)
    "a": ("(a) RLS, tenant set per transaction", "rls.sql", "latest"),
    "b": ("(b) explicit WHERE tenant_id, no RLS", "explicit.sql", "latest"),
    "a0": (f"(a0) = (a) at schema version {BASELINE_VERSION}, before 0003", "rls.sql",
           "baseline"),
    "c": ("(c) = (b) plus the set_tenant call, no RLS", "explicit_with_tenant.sql", "latest"),
    "d": ("(d) textbook SET LOCAL policy (leaks; ceiling only)", "textbook.sql", "latest"),
}
# Prepared statements through PgBouncer; (a) pipelines set_tenant with the read, so both make 4
# round trips. pgbench puts parameters for :t, hence the uuid built from a string here.
PREPARED = {
    "a": ("(a) RLS, prepared, set_tenant pipelined with the read", "rls_prepared.sql"),
    "b": ("(b) explicit WHERE tenant_id, prepared", "explicit_prepared.sql"),
}
PREPARED_SECONDS = 10
# The same transaction with a heavier read (HEAVIER_READ_ROWS), (a) and (b) only: the
# binding costs about the same per transaction whatever the read, so what the ratio is at
# another transaction size is measured, not inferred (ANALYSIS.md: "What would change the
# verdict").
HEAVIER = {
    "a": (f"(a) RLS, a {HEAVIER_READ_ROWS}-booking read", WORKLOADS["a"][1]),
    "b": (f"(b) explicit WHERE tenant_id, a {HEAVIER_READ_ROWS}-booking read", WORKLOADS["b"][1]),
}


def seed(postgres: PostgresServer, database: str, passwords: dict[str, str],
         version: int | None = None) -> None:
    conn = postgres.connect(database)
    bootstrap.apply(conn, role_passwords=passwords, target_version=version)
    # (b) has no RLS and (d) has its own policy: keep the event trigger off while making them.
    # INCLUDING ALL: the same primary key, indexes and CHECK as app.bookings, so that (b) and
    # (d) maintain as much per insert as (a) does (before 2026-11-26 they lacked the primary
    # key and the CHECK, which flattered (b) and (d)). LIKE does not copy statistics targets:
    # tenant_id gets app.bookings' by hand (0 since migration 0006), so the planner sees the
    # same.
    conn.run("ALTER EVENT TRIGGER boom_protect_tenant_tables DISABLE")
    conn.execute_simple(f"""
        CREATE SCHEMA bench;
        CREATE TABLE bench.bookings (LIKE app.bookings INCLUDING ALL);
        GRANT USAGE ON SCHEMA bench TO app_user;
        GRANT SELECT, INSERT ON bench.bookings TO app_user;
        GRANT USAGE ON ALL SEQUENCES IN SCHEMA bench TO app_user;
        CREATE SCHEMA textbook;
        CREATE TABLE textbook.bookings (LIKE app.bookings INCLUDING ALL);
        ALTER TABLE textbook.bookings ALTER tenant_id SET DEFAULT {TEXTBOOK_TENANT};
        ALTER TABLE textbook.bookings ENABLE ROW LEVEL SECURITY;
        CREATE POLICY textbook ON textbook.bookings
          USING (tenant_id = {TEXTBOOK_TENANT}) WITH CHECK (tenant_id = {TEXTBOOK_TENANT});
        GRANT USAGE ON SCHEMA textbook TO app_user;
        GRANT SELECT, INSERT ON textbook.bookings TO app_user;
        GRANT USAGE ON ALL SEQUENCES IN SCHEMA textbook TO app_user;""")
    [[target]] = conn.run("SELECT attstattarget FROM pg_attribute WHERE attname = 'tenant_id' "
                          "AND attrelid = 'app.bookings'::regclass")
    for table in ("bench.bookings", "textbook.bookings"):
        conn.run(f"ALTER TABLE {table} ALTER COLUMN tenant_id SET STATISTICS {int(target)}")
    for table in ("app.bookings", "bench.bookings", "textbook.bookings"):
        conn.run(f"INSERT INTO {table} (tenant_id, resource, starts_at, ends_at) "
                 "SELECT ('00000000-0000-0000-0000-' || lpad(t::text, 12, '0'))::uuid, "
                 "'room-' || i, now() - i * interval '1 minute', now() - i * interval '1 minute' "
                 "+ interval '1 hour' FROM generate_series(:f::int, :l::int) t, "
                 "generate_series(1, :r::int) i",
                 f=FIRST_TENANT, l=LAST_TENANT, r=ROWS_PER_TENANT)
        conn.run(f"ANALYZE {table}")
    conn.run("ALTER EVENT TRIGGER boom_protect_tenant_tables ENABLE")
    shapes = {table: table_shape(conn, table)
              for table in ("app.bookings", "bench.bookings", "textbook.bookings")}
    assert len(set(shapes.values())) == 1, f"the workloads' tables differ: {shapes}"
    problems = conn.run("SELECT DISTINCT table_name FROM app.audit_tenant_tables()")
    # The audit sees both: (b) has no RLS, (d)'s policy does not use app.current_tenant_id().
    assert {p[0] for p in problems} == {"bench.bookings", "textbook.bookings"}, problems
    conn.close()


def table_shape(conn: pg8000.native.Connection, table: str) -> str:
    """A table's indexes, constraints and statistics targets, without its name: equal for
    equal work per row and equal planner input."""
    rows = conn.run(
        "SELECT coalesce(string_agg(d, '; ' ORDER BY d), '') FROM ("
        "  SELECT regexp_replace(pg_get_indexdef(indexrelid), ' ON \\S+ ', ' ON t ') AS d"
        "  FROM pg_index WHERE indrelid = CAST(:t AS regclass)"
        "  UNION ALL SELECT contype::text || ' ' || pg_get_constraintdef(oid) FROM pg_constraint"
        "  WHERE conrelid = CAST(:t AS regclass)"
        "  UNION ALL SELECT attname || ' statistics ' || attstattarget FROM pg_attribute"
        "  WHERE attrelid = CAST(:t AS regclass) AND attnum > 0 AND NOT attisdropped) defs",
        t=table)
    return re.sub(r"INDEX \S+ ", "INDEX ", str(rows[0][0]))


def pgbench(servers: list[int], bouncer: PgBouncer, database: str, password: str,
            script: str, clients: int, seconds: int, mode: str = "simple",
            rows: int = READ_ROWS) -> dict[str, float]:
    """pgbench through PgBouncer as the pods require clients to connect: TLS, certificate
    verified (libpq negotiates TLS 1.3, the only version PgBouncer accepts). `servers`: the
    processes (postmaster, pgbouncer) whose CPU time is the run's server time."""
    with tempfile.TemporaryDirectory(prefix="pgbench-") as directory:  # ~2 MB of logs
        logdir = Path(directory)
        # -M prepared: pgbench prepares each statement with a blocking PQprepare() on a client's
        # first use, which stops every other client of that pgbench thread. Through a pool smaller
        # than the clients, those others hold server connections inside open transactions, and the
        # prepare waits for one of them: the run stalls until query_wait_timeout. One thread per
        # client removes that (pgbench's own artifact, not PgBouncer's).
        threads = clients if mode == "prepared" else 2
        cmd = (f"ulimit -n 4096; {PG_BIN / 'pgbench'} -n -h 127.0.0.1 -p {bouncer.port} "
               "-U app_user "
               f"-c {clients} -j {threads} -T {seconds} -M {mode} -D first={FIRST_TENANT} "
               f"-D last={LAST_TENANT} -D rows={rows} "
               f"-f {HERE / script} -l --log-prefix={logdir}/tx {database}")
        server, client = process_cpu.tree_seconds(servers), process_cpu.children_seconds()
        tls = {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(bouncer.client_ca)}
        result = subprocess.run(["bash", "-c", cmd],
                                env={**os.environ, "PGPASSWORD": password, **tls},
                                capture_output=True, text=True, check=False)
        server = process_cpu.tree_seconds(servers) - server
        client = process_cpu.children_seconds() - client
        if result.returncode != 0:
            raise RuntimeError(f"pgbench {script} failed: {result.stderr[-2000:]}")
        latencies = sorted(int(line.split()[2]) / 1000 for log in logdir.glob("tx*")
                           for line in log.read_text().splitlines())
        if not latencies:  # e.g. 1000 clients still connecting when a too-short run ended
            raise RuntimeError(f"pgbench {script}: no transaction completed in {seconds} s with "
                               f"{clients} clients; run longer. {result.stdout[-500:]}")
    tps = next(float(line.split()[2]) for line in result.stdout.splitlines()
               if line.startswith("tps = "))

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    return {"tps": tps, "mean": statistics.fmean(latencies), "p50": pct(0.50),
            "p95": pct(0.95), "p99": pct(0.99), "tx": len(latencies),
            "server_us": server / len(latencies) * 1e6,
            "client_us": client / len(latencies) * 1e6}


def peak_server_connections(postgres: PostgresServer, database: str,
                            stop: threading.Event, peak: list[int]) -> None:
    conn = postgres.connect(database)
    while not stop.is_set():
        peak.append(conn.run("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app_user' "
                              "AND datname = current_database()")
                    [0][0])
        time.sleep(0.2)
    conn.close()


def server_statement_times(postgres: PostgresServer, database: str) -> dict[str, float]:
    """Mean plan + execution time per statement (ms) for app_user, from pg_stat_statements."""
    conn = postgres.connect(database)
    rows = conn.run(
        "SELECT sum(s.calls), sum(s.total_plan_time + s.total_exec_time) / sum(s.calls), "
        "max((s.total_plan_time + s.total_exec_time) / s.calls) "
        "FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid "
        "WHERE r.rolname = 'app_user' AND s.query NOT IN ('BEGIN', 'COMMIT')")
    conn.close()
    calls, mean, worst = rows[0]
    return {"calls": float(calls), "mean": float(mean), "worst": float(worst)}


def record_statement_times(postgres: PostgresServer, database: str, on: bool) -> None:
    conn = postgres.connect(database)
    conn.run(f"ALTER SYSTEM SET pg_stat_statements.track = '{'top' if on else 'none'}'")
    conn.run(f"ALTER SYSTEM SET pg_stat_statements.track_planning = {'on' if on else 'off'}")
    conn.run("SELECT pg_reload_conf()")
    time.sleep(1)  # every backend reads the new settings before its next statement
    conn.run("SELECT pg_stat_statements_reset()")
    conn.close()


def settle(postgres: PostgresServer, databases: list[str]) -> None:
    """Every run starts alike: tables vacuumed and analysed, dirty pages checkpointed."""
    for database in databases:
        conn = postgres.connect(database)
        conn.run(f"VACUUM (ANALYZE) {', '.join(TABLES)}")
        conn.close()
    conn = postgres.connect()
    conn.run("CHECKPOINT")
    conn.close()


def interleaved(workloads: dict[str, Callable[[], dict[str, float]]],
                between: Callable[[], None]) -> Runs:
    """ROUNDS rounds of every workload in turn, so drift on the machine hits all alike;
    `between` runs before each run, outside its timing."""
    runs: Runs = {name: [] for name in workloads}
    for _ in range(ROUNDS):
        for name, run in workloads.items():
            between()
            runs[name].append(run())
    return runs


def main() -> None:
    pool = ENVIRONMENT_CONFIGS["prod"].pgbouncer
    passwords = new_role_passwords()
    with running_postgres(SERVER_SETTINGS) as postgres:
        databases = {"latest": postgres.create_database("bench"),
                     "baseline": postgres.create_database("bench_v2")}
        seed(postgres, databases["latest"], passwords)
        seed(postgres, databases["baseline"], passwords, version=BASELINE_VERSION)
        conn = postgres.connect(databases["latest"])
        conn.run("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.close()
        record_statement_times(postgres, databases["latest"], on=False)
        baseline = (f"{databases['baseline']} = host=127.0.0.1 port={postgres.port} "
                    f"dbname={databases['baseline']}\n")
        ini = local_pgbouncer_ini(postgres, databases["latest"], extra_databases=baseline)
        between = partial(settle, postgres, list(databases.values()))
        with running_pgbouncer(ini, f'"app_user" "{passwords["app_user"]}"\n',
                               client_ca=postgres.ca_file) as bouncer:
            servers = [postgres.postmaster_pid, bouncer.pid]
            runs = interleaved({
                key: partial(pgbench, servers, bouncer, databases[database],
                             passwords["app_user"], script, CLIENTS, SECONDS)
                for key, (_, script, database) in WORKLOADS.items()}, between)
            prepared = interleaved({
                key: partial(pgbench, servers, bouncer, databases["latest"],
                             passwords["app_user"], script, CLIENTS, PREPARED_SECONDS,
                             mode="prepared")
                for key, (_, script) in PREPARED.items()}, between)
            heavier = interleaved({
                key: partial(pgbench, servers, bouncer, databases["latest"],
                             passwords["app_user"], script, CLIENTS, SECONDS,
                             rows=HEAVIER_READ_ROWS)
                for key, (_, script) in HEAVIER.items()}, between)
            stop, peak = threading.Event(), [0]
            watcher = threading.Thread(target=peak_server_connections,
                                       args=(postgres, databases["latest"], stop, peak))
            between()
            record_statement_times(postgres, databases["latest"], on=True)
            watcher.start()
            try:
                held = pgbench(servers, bouncer, databases["latest"], passwords["app_user"],
                               "rls.sql", 1000, SECONDS)
            finally:  # stop polling before the server goes away, also when pgbench failed
                stop.set()
                watcher.join()
            server = server_statement_times(postgres, databases["latest"])
    labels = {key: label for key, (label, *_) in WORKLOADS.items()}
    prepared_labels = {key: label for key, (label, _) in PREPARED.items()}
    heavier_labels = {key: label for key, (label, _) in HEAVIER.items()}
    write_results(HERE / "RESULTS.md", Results(runs, labels), Results(prepared, prepared_labels),
                  Results(heavier, heavier_labels), held, server, max(peak),
                  pool.max_db_connections,
                  {"tenants": TENANTS, "rows": ROWS_PER_TENANT, "clients": CLIENTS,
                   "seconds": SECONDS, "rounds": ROUNDS, "baseline": BASELINE_VERSION,
                   "prepared_seconds": PREPARED_SECONDS, "read_rows": READ_ROWS,
                   "heavier_read_rows": HEAVIER_READ_ROWS})


if __name__ == "__main__":
    main()
