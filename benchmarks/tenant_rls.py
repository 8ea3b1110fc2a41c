"""RLS cost and pooling headroom, through real PgBouncer with the seed's settings.

(a) RLS with the tenant set per transaction vs (b) the same queries with an explicit
`WHERE tenant_id = ...` on an identical table without RLS, same data, same run, interleaved.
Then 1000 clients through PgBouncer (max_db_connections = 100). Writes benchmarks/RESULTS.md.
Run with `make bench-db`.
"""

from __future__ import annotations

import os
import platform
import secrets
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from boom_stacks.config import ENVIRONMENT_CONFIGS
from lambdas.tenant_bootstrap import bootstrap
from tests.fixture_postgres import (
    PG_BIN,
    PostgresServer,
    local_pgbouncer_ini,
    running_pgbouncer,
    running_postgres,
)

HERE = Path(__file__).parent
ROWS_PER_TENANT, TENANTS, CLIENTS, SECONDS, ROUNDS = 2000, 10, 50, 15, 2


def tenant(n: int) -> str:
    return f"00000000-0000-0000-0000-{n:012d}"


def seed(postgres: PostgresServer, database: str, passwords: dict[str, str]) -> None:
    conn = postgres.connect(database)
    bootstrap.apply(conn, role_passwords=passwords)
    conn.run("ALTER EVENT TRIGGER boom_protect_tenant_tables DISABLE")  # (b) has no RLS
    conn.execute_simple("""
        CREATE SCHEMA bench;
        CREATE TABLE bench.bookings (LIKE app.bookings INCLUDING DEFAULTS INCLUDING IDENTITY);
        CREATE INDEX ON bench.bookings (tenant_id, starts_at);
        GRANT USAGE ON SCHEMA bench TO app_user;
        GRANT SELECT, INSERT ON bench.bookings TO app_user;
        GRANT USAGE ON ALL SEQUENCES IN SCHEMA bench TO app_user;""")
    for table in ("app.bookings", "bench.bookings"):
        conn.run(f"INSERT INTO {table} (tenant_id, resource, starts_at, ends_at) "
                 "SELECT ('00000000-0000-0000-0000-' || lpad(t::text, 12, '0'))::uuid, "
                 "'room-' || i, now() - i * interval '1 minute', now() - i * interval '1 minute' "
                 "+ interval '1 hour' FROM generate_series(1, :t) t, generate_series(1, :r) i",
                 t=TENANTS, r=ROWS_PER_TENANT)
        conn.run(f"ANALYZE {table}")
    conn.run("ALTER EVENT TRIGGER boom_protect_tenant_tables ENABLE")
    problems = conn.run("SELECT table_name FROM app.audit_tenant_tables()")
    assert {p[0] for p in problems} == {"bench.bookings"}, problems  # only (b) lacks RLS
    conn.close()


def pgbench(port: int, database: str, password: str, script: str, clients: int,
            seconds: int) -> dict[str, float]:
    logdir = Path(tempfile.mkdtemp(prefix="pgbench-"))
    cmd = (f"ulimit -n 4096; {PG_BIN / 'pgbench'} -n -h 127.0.0.1 -p {port} -U app_user "
           f"-c {clients} -j 2 -T {seconds} -f {HERE / script} -l --log-prefix={logdir}/tx "
           f"{database}")
    result = subprocess.run(["bash", "-c", cmd], env={**os.environ, "PGPASSWORD": password},
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"pgbench {script} failed: {result.stderr[-2000:]}")
    latencies = sorted(int(line.split()[2]) / 1000 for log in logdir.glob("tx*")
                       for line in log.read_text().splitlines())
    tps = next(float(line.split()[2]) for line in result.stdout.splitlines()
               if line.startswith("tps = "))

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    return {"tps": tps, "mean": statistics.fmean(latencies), "p50": pct(0.50),
            "p95": pct(0.95), "p99": pct(0.99), "tx": len(latencies)}


def peak_server_connections(postgres: PostgresServer, database: str,
                            stop: threading.Event, peak: list[int]) -> None:
    conn = postgres.connect(database)
    while not stop.is_set():
        peak.append(conn.run("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app_user'")
                    [0][0])
        time.sleep(0.2)
    conn.close()


def main() -> None:
    pool = ENVIRONMENT_CONFIGS["prod"].pgbouncer
    passwords = {"app_user": secrets.token_urlsafe(24), "boom_owner": secrets.token_urlsafe(24)}
    with running_postgres() as postgres:
        database = postgres.create_database("bench")
        seed(postgres, database, passwords)
        ini = local_pgbouncer_ini(postgres, database)
        with running_pgbouncer(ini, f'"app_user" "{passwords["app_user"]}"\n') as bouncer:
            runs: dict[str, list[dict[str, float]]] = {"rls.sql": [], "explicit.sql": []}
            for _ in range(ROUNDS):  # interleaved, so drift hits both alike
                for script in runs:
                    runs[script].append(pgbench(bouncer.port, database, passwords["app_user"],
                                                script, CLIENTS, SECONDS))
            stop, peak = threading.Event(), [0]
            watcher = threading.Thread(target=peak_server_connections,
                                       args=(postgres, database, stop, peak))
            watcher.start()
            held = pgbench(bouncer.port, database, passwords["app_user"], "rls.sql", 1000,
                           SECONDS)
            stop.set()
            watcher.join()
    write_results(runs, held, max(peak), pool.max_db_connections)


def write_results(runs: dict[str, list[dict[str, float]]], held: dict[str, float],
                  peak: int, limit: int) -> None:
    def avg(script: str, key: str) -> float:
        return statistics.fmean(r[key] for r in runs[script])

    ratio = avg("rls.sql", "tps") / avg("explicit.sql", "tps")
    rows = "\n".join(
        f"| {name} | {avg(s, 'tps'):.0f} | {avg(s, 'mean'):.2f} | {avg(s, 'p50'):.2f} | "
        f"{avg(s, 'p95'):.2f} | {avg(s, 'p99'):.2f} |"
        for name, s in (("(a) RLS, tenant set per transaction", "rls.sql"),
                        ("(b) explicit WHERE tenant_id, no RLS", "explicit.sql")))
    (HERE / "RESULTS.md").write_text(f"""# Benchmark results: tenant RLS through PgBouncer

Run: `make bench-db` ({time.strftime('%Y-%m-%d')}), `benchmarks/tenant_rls.py`.
Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()};
PostgreSQL 15 (fsync off, loopback, TLS from PgBouncer verified) and PgBouncer with the seed's
settings (transaction pooling, default_pool_size 25, reserve 5, max_db_connections 100).
Data: {TENANTS} tenants x {ROWS_PER_TENANT} bookings in each table. Workload per transaction:
read a tenant's 20 latest bookings, insert one booking; (a) sends set_tenant and the read
in one round trip (`\\;`), so both workloads make 4 round trips and differ only by RLS.
pgbench, {CLIENTS} clients, 2 threads, {SECONDS} s per run, {ROUNDS} interleaved
rounds each; latencies in ms from pgbench's per-transaction log (client side, through PgBouncer).

| workload | tps | mean | p50 | p95 | p99 |
|---|---|---|---|---|---|
{rows}

**Ratio (a)/(b) throughput: {ratio:.3f}** (target >= 0.90).

## 1000 clients through PgBouncer

1000 pgbench clients on workload (a) for {SECONDS} s: {held['tps']:.0f} tps, mean
{held['mean']:.2f} ms, p50 {held['p50']:.2f} ms, p95 {held['p95']:.2f} ms, p99
{held['p99']:.2f} ms per transaction (four statements: set tenant, read, insert, commit).
Peak server connections seen by PostgreSQL for app_user: {peak} (limit {limit}).
Seed target: database query time under 50 ms on average.

Caveat: load generator, pooler and database share {os.cpu_count()} cores, so absolute numbers
are this machine's; the ratio is the portable result.
""")
    print((HERE / "RESULTS.md").read_text())


if __name__ == "__main__":
    main()
