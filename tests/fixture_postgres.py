"""Real PostgreSQL 15 and PgBouncer on loopback, started once per test session.

Both refuse to run as root, so as root they run as the `postgres` user. PostgreSQL serves TLS
with a throw-away CA made here, so clients can verify the certificate as they do against RDS.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pg8000.native

from tests.fixture_paths import ROOT

if TYPE_CHECKING:
    from boom_stacks.config import PgBouncerConfig
    from boom_stacks.k8s.pgbouncer_ini import ClientTls

PG_BIN = Path("/usr/lib/postgresql/15/bin")
# The PgBouncer `make` builds (Makefile: PGBOUNCER_VERSION, from Debian trixie's source), which
# pools prepared statements as the pods' 1.26 does; a system one only outside make.
_BUILT = sorted(ROOT.glob(".tools/pgbouncer-*/bin/pgbouncer"))
PGBOUNCER = (os.environ.get("BOOM_PGBOUNCER") or (str(_BUILT[-1]) if _BUILT else None)
             or shutil.which("pgbouncer") or "/usr/sbin/pgbouncer")


def app_user_userlist(password: str) -> str:
    """PgBouncer's auth_file for app_user with `password`, as the pods' Secret holds it."""
    return f'"app_user" "{password}"\n'


def backend_alive(conn: pg8000.native.Connection, pid: int) -> bool:
    """Whether the server process `pid` still shows in pg_stat_activity (asked over `conn`)."""
    return bool(conn.run("SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = :p)",
                         p=pid)[0][0])


def backend_ended(watcher: pg8000.native.Connection, pid: int, *, within: float) -> bool:
    """Whether the backend `pid` is gone from pg_stat_activity within `within` seconds."""
    until = time.monotonic() + within
    while time.monotonic() < until:
        if not backend_alive(watcher, pid):
            return True
        time.sleep(0.01)
    return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def give_to_postgres(path: Path) -> None:
    """Hand `path` (and what it holds) to the postgres user, who runs the servers as root."""
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for item in [path, *path.rglob("*")]:
            os.chown(item, user.pw_uid, user.pw_gid)


def _make_tls(directory: Path) -> Path:
    """A CA and a server certificate for 127.0.0.1/localhost; returns the CA file.

    Both carry the extensions RFC 5280 asks for (as RDS's do), so clients can verify them with
    VERIFY_X509_STRICT, the default from Python 3.13 and what the Lambda runtime uses.
    """
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=boom-test-ca", "-keyout", "ca.key", "-out", "ca.pem",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", "server.key", "-out", "server.csr")
    (directory / "san.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt")
    (directory / "server.key").chmod(0o600)
    return directory / "ca.pem"


@dataclass
class PostgresServer:
    root: Path
    port: int
    password: str  # the superuser's, random per session
    ca_file: Path
    user: str = "postgres"
    host: str = "127.0.0.1"

    def connect(self, database: str = "postgres", *, user: str | None = None,
                password: str | None = None, port: int | None = None,
                tls: bool = False) -> pg8000.native.Connection:
        import ssl
        context = ssl.create_default_context(cafile=str(self.ca_file)) if tls else None
        return pg8000.native.Connection(
            user or self.user, host=self.host, port=port or self.port, database=database,
            password=password if user else self.password, ssl_context=context, timeout=30)

    def dsn(self, database: str) -> str:
        """`database`'s DSN for the CLI (`--dsn`), as the superuser over verified TLS."""
        return (f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{database}"
                f"?sslmode=verify-full&sslrootcert={self.ca_file}")

    @property
    def postmaster_pid(self) -> int:
        """The server's main process (the first line of its postmaster.pid); after a
        restart, the new one."""
        return int((self.root / "data" / "postmaster.pid").read_text().split()[0])

    def log_size(self) -> int:
        """Where the server log ends now: give it to `log_since`."""
        return (self.root / "postgres.log").stat().st_size

    def log_since(self, start: int, marker: str) -> str:
        """The server log written since byte `start`, once it mentions `marker` (or after 5 s
        without it: the caller's assertion says what was missing)."""
        log = self.root / "postgres.log"
        deadline = time.monotonic() + 5
        while True:
            text = log.read_bytes()[start:].decode(errors="replace")
            if marker in text or time.monotonic() > deadline:
                return text
            time.sleep(0.05)

    def create_database(self, prefix: str = "boom") -> str:
        name = f"{prefix}_{secrets.token_hex(4)}"
        conn = self.connect()
        try:
            conn.run(f"CREATE DATABASE {name}")
        finally:
            conn.close()
        return name


def logs_in(server: PostgresServer, database: str, role: str, password: str) -> bool:
    """Whether `role` logs in to `database` with `password`, over TLS; any refusal but a
    wrong password fails the test."""
    try:
        conn = server.connect(database, user=role, password=password, tls=True)
    except pg8000.native.DatabaseError as err:
        assert err.args[0]["C"] == "28P01", err  # password authentication failed, nothing else
        return False
    conn.close()
    return True


def new_login_role(server: PostgresServer, prefix: str, attributes: str) -> tuple[str, str]:
    """A new login role `<prefix>_<random>` with `attributes` (say "SUPERUSER") and a random
    password, sent as a SCRAM verifier; its name and password. Roles are cluster-wide, so each
    is new."""
    from lambdas.tenant_bootstrap.passwords import scram_verifier

    user, password = f"{prefix}_{secrets.token_hex(4)}", secrets.token_urlsafe(24)
    conn = server.connect()
    try:
        conn.run(f"CREATE ROLE {user} LOGIN {attributes} PASSWORD "
                 f"{pg8000.native.literal(scram_verifier(password))}")
    finally:
        conn.close()
    return user, password


def superuser_of_its_own(server: PostgresServer,
                         database: str) -> contextlib.AbstractContextManager[tuple[str, str]]:
    """A new superuser login role and its password, for a test that changes the master's
    password (the session's superuser is every other test's master); see role_of_its_own."""
    return role_of_its_own(server, database, "boom_admin", "SUPERUSER")


@contextmanager
def role_of_its_own(server: PostgresServer, database: str, prefix: str,
                    attributes: str = "") -> Iterator[tuple[str, str]]:
    """A new login role `<prefix>_<random>` with `attributes`, and its password, for the
    block. Roles are cluster-wide: afterwards what it owns in `database` goes to the superuser,
    what it was granted there is revoked, and the role is dropped (with its memberships)."""
    user, password = new_login_role(server, prefix, attributes)
    try:
        yield user, password
    finally:
        conn = server.connect(database)
        try:
            # What its bootstrap runs made (event triggers, say) goes to the superuser.
            conn.run(f"REASSIGN OWNED BY {user} TO {server.user}")
            conn.run(f"DROP OWNED BY {user}")
        finally:
            conn.close()
        conn = server.connect()
        try:
            conn.run(f"DROP ROLE {user}")
        finally:
            conn.close()


def new_role_passwords() -> dict[str, str]:
    """Random passwords for the bootstrap's two roles, app_user and boom_owner."""
    return {"app_user": secrets.token_urlsafe(24), "boom_owner": secrets.token_urlsafe(24)}


def bootstrapped_database(server: PostgresServer, passwords: dict[str, str],
                          prefix: str = "tenants", **options: Any) -> str:
    """A new database on `server`, bootstrapped over TLS to the latest version with the
    roles' `passwords`; `options` go to bootstrap.apply (e.g. app_user_connection_limit)."""
    from lambdas.tenant_bootstrap import bootstrap

    name = server.create_database(prefix)
    conn = server.connect(name, tls=True)
    try:
        bootstrap.apply(conn, role_passwords=passwords, **options)
    finally:
        conn.close()
    return name


@contextmanager
def running_postgres(settings: dict[str, str] | None = None) -> Iterator[PostgresServer]:
    """`settings` are extra server settings (`-c name=value`), e.g. for the benchmark."""
    root = Path(tempfile.mkdtemp(prefix="boom-pg-"))
    root.chmod(0o755)
    password = secrets.token_urlsafe(24)
    (root / "pwfile").write_text(password + "\n")
    ca_file = _make_tls(root)
    give_to_postgres(root)
    data = root / "data"
    subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                                 "--auth-local=trust", "--auth-host=scram-sha-256",
                                 f"--pwfile={root / 'pwfile'}"]),
                   check=True, capture_output=True)
    port = free_port()
    with _serving(root, _options(port, root, tls_dir=root, settings=settings)):
        yield PostgresServer(root=root, port=port, password=password, ca_file=ca_file)


def _options(port: int, root: Path, *, tls_dir: Path, settings: dict[str, str] | None) -> str:
    """The server's settings: loopback only, TLS with the certificate in `tls_dir`, and
    `settings` (`-c name=value`) after the rest."""
    return (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} "
            f"-c ssl=on -c ssl_cert_file={tls_dir / 'server.crt'} "
            f"-c ssl_key_file={tls_dir / 'server.key'} -c max_connections=300 "
            # TLS 1.2 at most, as RDS for PostgreSQL 15 (1.3 only from 16), and at least
            # 1.2, as the parameter group sets: clients must work with what RDS offers.
            "-c ssl_min_protocol_version=TLSv1.2 -c ssl_max_protocol_version=TLSv1.2 "
            "-c shared_buffers=256MB -c fsync=off -c synchronous_commit=off" +
            "".join(f" -c {name}={value}" for name, value in (settings or {}).items()))


@contextmanager
def _serving(root: Path, options: str) -> Iterator[None]:
    """The server in `root / "data"` started with `options` (its log `root / "postgres.log"`),
    stopped at once afterwards, and `root` removed."""
    data = root / "data"
    subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l",
                                 str(root / "postgres.log"), "-o", options, "-w", "start"]),
                   check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                     "stop"]), check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def running_standby(primary: PostgresServer,
                    settings: dict[str, str] | None = None) -> Iterator[PostgresServer]:
    """A hot standby of `primary` (pg_basebackup -R, streaming), as a read replica is: it
    serves reads of everything the primary had, over the same TLS, and refuses writes.
    `settings` are extra server settings, as for running_postgres (the primary's extra ones
    are not copied: they were given on its command line)."""
    root = Path(tempfile.mkdtemp(prefix="boom-standby-"))
    root.chmod(0o755)
    passfile = root / "pgpass"
    passfile.write_text(f"127.0.0.1:{primary.port}:*:{primary.user}:{primary.password}\n")
    passfile.chmod(0o600)
    give_to_postgres(root)
    data = root / "data"
    # A fast checkpoint: the default spreads it over minutes.
    subprocess.run(_as_postgres(["env", f"PGPASSFILE={passfile}", str(PG_BIN / "pg_basebackup"),
                                 "-h", primary.host, "-p", str(primary.port), "-U", primary.user,
                                 "-D", str(data), "-R", "-X", "stream", "--checkpoint=fast"]),
                   check=True, capture_output=True)
    port = free_port()
    with _serving(root, _options(port, root, tls_dir=primary.root, settings=settings)):
        yield replace(primary, root=root, port=port)


def promote(standby: PostgresServer) -> None:
    """Promotes a standby (running_standby) to a primary, as a failover to a DR region's
    replica does: it leaves recovery and takes writes."""
    subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(standby.root / "data"),
                                 "-w", "promote"]), check=True, capture_output=True)


def restart_postgres(server: PostgresServer) -> None:
    """A fast restart (as a Multi-AZ failover looks to clients): every backend is terminated,
    then the server comes back on the same port."""
    subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(server.root / "data"),
                                 "-l", str(server.root / "postgres.log"), "-m", "fast", "-w",
                                 "restart"]),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@dataclass
class PgBouncer:
    port: int
    config: Path
    pid: int  # the pgbouncer process itself (as root, a child of runuser)
    client_ca: Path | None = None  # the CA that signed the certificate it serves clients


def local_pgbouncer_ini(postgres: PostgresServer, database: str,
                        extra_databases: str = "", env: str = "prod",
                        pool: PgBouncerConfig | None = None) -> str:
    """The product's pgbouncer.ini (`env`'s pool settings, or `pool`; verify-full TLS) aimed
    at `postgres`, with the loopback-only placeholders that `running_pgbouncer` fills in."""
    from boom_stacks.config import ENVIRONMENT_CONFIGS
    from boom_stacks.k8s.pgbouncer_ini import Upstream, render_ini

    upstream = Upstream(host="127.0.0.1", port=postgres.port, database=database,
                        ca_file=str(postgres.ca_file))
    ini = render_ini(pool or ENVIRONMENT_CONFIGS[env].pgbouncer, upstream, listen_port=0,
                     listen_addr="127.0.0.1", auth_file="{dir}/userlist.txt",
                     client_tls=local_client_tls(postgres),
                     extra_databases=extra_databases, runtime_dir="{dir}")
    return ini.replace("listen_port = 0", "listen_port = {port}")


def one_server_connection(**settings: Any) -> PgBouncerConfig:
    """The product's (prod) PgBouncer settings with its pool cut to one server connection, so
    that consecutive clients share a backend, and `settings` (PgBouncerConfig fields, say a
    shorter timeout) replaced: give it to local_pgbouncer_ini(pool=)."""
    from boom_stacks.config import ENVIRONMENT_CONFIGS

    return replace(ENVIRONMENT_CONFIGS["prod"].pgbouncer, default_pool_size=1,
                   reserve_pool_size=0, **settings)


def local_client_tls(postgres: PostgresServer) -> ClientTls:
    """PgBouncer serves clients the certificate PostgreSQL serves (127.0.0.1, the test CA)."""
    from boom_stacks.k8s.pgbouncer_ini import ClientTls

    return ClientTls(cert_file=str(postgres.root / "server.crt"),
                     key_file=str(postgres.root / "server.key"))


def pooler_connection(bouncer: PgBouncer, database: str, password: str, *,
                      user: str = "app_user", timeout: int = 60,
                      startup_params: dict[str, str] | None = None) -> pg8000.native.Connection:
    """A client of PgBouncer as the pods require: TLS 1.3, certificate verified."""
    import ssl
    assert bouncer.client_ca is not None, "running_pgbouncer(..., client_ca=) was not given"
    context = ssl.create_default_context(cafile=str(bouncer.client_ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return pg8000.native.Connection(user, host="127.0.0.1", port=bouncer.port,
                                    database=database, password=password, ssl_context=context,
                                    timeout=timeout, startup_params=startup_params)


@contextmanager
def pooled_clients(bouncer: PgBouncer,
                   password: str) -> Iterator[tuple[Callable[[str], pg8000.native.Connection],
                                                    set[str]]]:
    """(new, pools): new(pool) opens an app_user client of `bouncer`'s pool; all are closed at
    the end (one a test broke too). `pools` names the pools used, for a caller's clean-up."""
    opened: list[pg8000.native.Connection] = []
    pools: set[str] = set()

    def new(pool: str) -> pg8000.native.Connection:
        conn = pooler_connection(bouncer, pool, password)
        opened.append(conn)
        pools.add(pool)
        return conn

    try:
        yield new, pools
    finally:
        for conn in opened:
            with contextlib.suppress(pg8000.native.InterfaceError):
                conn.close()


@contextmanager
def running_pgbouncer(ini: str, userlist: str,
                      client_ca: Path | None = None) -> Iterator[PgBouncer]:
    """PgBouncer with the given pgbouncer.ini body; `{port}`/`{dir}` are filled in here.
    `client_ca` verifies the certificate the ini serves clients (local_client_tls)."""
    root = Path(tempfile.mkdtemp(prefix="boom-pgbouncer-"))
    root.chmod(0o755)
    port = free_port()
    config = root / "pgbouncer.ini"
    config.write_text(ini.format(port=port, dir=root))
    (root / "userlist.txt").write_text(userlist)
    (root / "userlist.txt").chmod(0o600)
    # A copy the postgres user can run: the built binary may sit in a checkout it cannot enter.
    binary = root / "pgbouncer"
    shutil.copy2(PGBOUNCER, binary)
    binary.chmod(0o755)
    give_to_postgres(root)
    # 1000 clients need more than the default 1024 open files.
    process = subprocess.Popen(
        _as_postgres(["bash", "-c", f"ulimit -n 4096; exec {binary} {config}"]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid = None
    try:
        _wait_for_port(port, process)
        pid = _pgbouncer_pid(process.pid)
        yield PgBouncer(port=port, config=config, pid=pid, client_ca=client_ca)
    finally:
        _stop(process, pid)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def pgbouncer_with_pools_of_one(postgres: PostgresServer, passwords: dict[str, str],
                                database: str, pools: Mapping[str, str]) -> Iterator[PgBouncer]:
    """The product's PgBouncer for `database` (local_pgbouncer_ini, app_user's userlist, TLS
    clients), plus a pool of a single server connection per `pools` entry (pool name ->
    database): consecutive clients of such a pool share one backend."""
    extra = "".join(f"{name} = host=127.0.0.1 port={postgres.port} dbname={target} "
                    "pool_size=1\n" for name, target in pools.items())
    ini = local_pgbouncer_ini(postgres, database, extra_databases=extra)
    with running_pgbouncer(ini, app_user_userlist(passwords["app_user"]),
                           client_ca=postgres.ca_file) as bouncer:
        yield bouncer


def _stop(process: subprocess.Popen[bytes], pid: int | None) -> None:
    """SIGQUIT, PgBouncer's immediate shutdown: the tests do not wait for its clients (SIGTERM
    would, since 1.23). A PgBouncer that cannot handle signals (the stalled one in
    test_pgbouncer_hardening) is stopped the hard way."""
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=2)
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            process.kill()
            process.wait(timeout=10)


def _pgbouncer_pid(started: int) -> int:
    """`started` itself once bash has exec'd PgBouncer, or its child under runuser."""
    for pid in [started, *(int(p) for p in Path(f"/proc/{started}/task/{started}/children")
                           .read_text().split())]:
        if Path(f"/proc/{pid}/comm").read_text().strip() == "pgbouncer":
            return pid
    raise RuntimeError(f"no pgbouncer process under {started}")


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"pgbouncer did not listen on {port}")


def run_clients(count: int, client: Callable[[int], None]) -> list[BaseException]:
    """`client(index)` for each index, all at once in threads; what any of them raised."""
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            client(index)
        except BaseException as err:  # returned to the test, with the thread's own error
            errors.append(err)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return errors
