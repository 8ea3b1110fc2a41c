"""PgBouncer's published advisories against the rendered config, on real PgBouncer.

The pods run PgBouncer 1.26.0; 1.26.1 (2026-10-14) fixed three advisories in it. The config
keeps each one unreachable, and these tests say how:
- CVE-2026-107349 (an unauthenticated `options` value `-c=` spins PgBouncer forever): shown on
  the real process, with a negative control that stalls it, which the pods' probe detects and
  a TCP probe would not;
- CVE-2026-107350 (SCRAM impersonation of another user in auth_file or auth_query): the
  userlist holds app_user alone and no auth_query is set;
- CVE-2026-107348 (infinite loop when max_packet_size is above 2^31): left at its default.
Also: PgBouncer takes clients only over TLS 1.3 (the seed's "TLS 1.3 in transit"), and
app_user cannot open its admin console.
"""

from __future__ import annotations

import socket
import ssl
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pg8000.native
import pytest

from boom_stacks.config import ENVIRONMENT_CONFIGS
from boom_stacks.k8s.pgbouncer import PORT, probe_command
from boom_stacks.k8s.pgbouncer_ini import IGNORE_STARTUP_PARAMETERS
from tests.fixture_k8s import manifests, rendered_ini
from tests.fixture_postgres import (
    PG_BIN,
    PostgresServer,
    app_user_userlist,
    free_port,
    give_to_postgres,
    local_client_tls,
    local_pgbouncer_ini,
    pooler_connection,
    running_pgbouncer,
)

PROTOCOL_3 = 196608
SSL_REQUEST = 80877103
AUTHENTICATION_REQUEST = b"R"
ERROR_RESPONSE = b"E"


def startup_reply(port: int, parameters: dict[str, str], *, timeout: float = 3.0,
                  tls: ssl.SSLContext | None = None) -> bytes:
    """Send a StartupMessage (no password yet), over TLS if `tls` is given (as PgBouncer
    requires), and return the first byte PgBouncer answers with, or b"" if it does not answer
    within `timeout` seconds."""
    body = struct.pack("!I", PROTOCOL_3) + b"".join(
        key.encode() + b"\0" + value.encode() + b"\0" for key, value in parameters.items()
    ) + b"\0"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        sock: socket.socket = raw
        try:
            if tls is not None:
                raw.sendall(struct.pack("!II", 8, SSL_REQUEST))
                if raw.recv(1) != b"S":
                    return b""
                sock = tls.wrap_socket(raw, server_hostname="127.0.0.1")
            sock.sendall(struct.pack("!I", len(body) + 4) + body)
            return sock.recv(1)
        except TimeoutError:
            return b""


def client_tls(ca_file: Path, *, maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED
               ) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    context.maximum_version = maximum
    return context


@dataclass
class AfterAttack:
    attacker: bytes  # first byte of PgBouncer's answer to the attacker's StartupMessage
    regular: bytes  # and to a regular client's, sent after it
    tcp_connects: bool  # what a tcpSocket probe checks
    probe_exit_code: int  # the pods' liveness/readiness probe command


def attack(postgres: PostgresServer, ini: str, database: str) -> AfterAttack:
    tls = client_tls(postgres.ca_file)
    with running_pgbouncer(ini, app_user_userlist("unused")) as bouncer:
        attacker = startup_reply(bouncer.port, {"user": "app_user", "database": database,
                                                "options": "-c="}, tls=tls)
        regular = startup_reply(bouncer.port, {"user": "app_user", "database": database},
                                tls=tls)
        with socket.socket() as sock:
            tcp_connects = sock.connect_ex(("127.0.0.1", bouncer.port)) == 0
        probe = subprocess.run(local_probe(bouncer.port, database), capture_output=True,
                               timeout=30, check=False)
    return AfterAttack(attacker, regular, tcp_connects, probe.returncode)


def local_probe(port: int, database: str) -> list[str]:
    """The Deployment's probe command, aimed at a local PgBouncer and database."""
    command = probe_command(ENVIRONMENT_CONFIGS["dev"])
    assert command[0] == "pg_isready" and f"--port={PORT}" in command
    local = {f"--port={PORT}": f"--port={port}",
             f"--dbname={ENVIRONMENT_CONFIGS['dev'].database.database_name}":
             f"--dbname={database}"}
    return [str(PG_BIN / "pg_isready"), *(local.get(arg, arg) for arg in command[1:])]


def test_an_unauthenticated_empty_option_name_does_not_stall_the_pooler(
        postgres: PostgresServer, tenant_db: str) -> None:
    ini = local_pgbouncer_ini(postgres, tenant_db)
    assert f"ignore_startup_parameters = {IGNORE_STARTUP_PARAMETERS}\n" in ini
    after = attack(postgres, ini, tenant_db)
    # PgBouncer ignores the empty name and asks both clients for their SCRAM password,
    assert after.attacker == AUTHENTICATION_REQUEST
    assert after.regular == AUTHENTICATION_REQUEST
    # and the pods' probe passes.
    assert after.probe_exit_code == 0


def test_negative_control_without_the_trailing_comma_one_packet_stalls_the_pooler(
        postgres: PostgresServer, tenant_db: str) -> None:
    ini = local_pgbouncer_ini(postgres, tenant_db).replace(
        f"= {IGNORE_STARTUP_PARAMETERS}\n", f"= {IGNORE_STARTUP_PARAMETERS.rstrip(',')}\n")
    assert "ignore_startup_parameters = extra_float_digits,options\n" in ini
    after = attack(postgres, ini, tenant_db)
    # The process spins on the attacker's packet and answers no one, not even a regular client.
    assert (after.attacker, after.regular) == (b"", b"")
    # A TCP probe would still pass (the kernel completes the handshake); the pods' probe fails
    # (pg_isready: 2 = no response), so Kubernetes takes the pod out of service and restarts it.
    assert after.tcp_connects
    assert after.probe_exit_code == 2


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_no_second_user_to_impersonate_and_no_oversized_packets(env: str) -> None:
    objects = manifests(env)
    ini = rendered_ini(objects)
    section = ini["pgbouncer"]
    # CVE-2026-107350: the only SCRAM user PgBouncer knows is app_user itself.
    assert section["auth_type"] == "scram-sha-256"
    assert "auth_query" not in section and "auth_user" not in section
    assert not [name for name in ini["databases"] if "auth_user" in ini["databases"][name]]
    userlist = objects["ExternalSecret/pgbouncer-userlist"]["spec"]["target"]["template"][
        "data"]["userlist.txt"]
    assert [line.split()[0] for line in userlist.splitlines() if line.strip()] == ['"app_user"']
    # CVE-2026-107348: reachable only with max_packet_size above its default of 2^31 - 1.
    assert "max_packet_size" not in section


def test_app_user_cannot_open_the_admin_console(postgres: PostgresServer,
                                               role_passwords: dict[str, str],
                                               tenant_db: str) -> None:
    # The console's PAUSE, KILL or SHUTDOWN would let one tenant's code (or injected SQL's
    # connection string) stop every tenant, and SHOW CLIENTS list them: admin_users and
    # stats_users stay empty, so only the pod's own unix socket as root could reach it.
    ini = local_pgbouncer_ini(postgres, tenant_db)
    assert "\nadmin_users =\n" in ini and "\nstats_users =\n" in ini
    with running_pgbouncer(ini, app_user_userlist(role_passwords["app_user"]),
                           client_ca=postgres.ca_file) as bouncer:
        conn = pooler_connection(bouncer, tenant_db, role_passwords["app_user"])
        assert conn.run("SELECT current_user") == [["app_user"]]  # the password is right
        conn.close()
        with pytest.raises(pg8000.native.DatabaseError, match="not allowed"):
            pooler_connection(bouncer, "pgbouncer", role_passwords["app_user"])


def test_readiness_and_liveness_both_speak_the_protocol() -> None:
    deployment = manifests("prod")["Deployment/pgbouncer"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"] == probe_command(ENVIRONMENT_CONFIGS["prod"])
        # pg_isready gives up after 3 s; the kubelet waits longer, so the exit code decides.
        assert container[probe]["timeoutSeconds"] > 3
        assert "tcpSocket" not in container[probe]


def test_clients_must_speak_tls_1_3_to_the_pooler(postgres: PostgresServer, tenant_db: str) -> None:
    ini = local_pgbouncer_ini(postgres, tenant_db)
    assert "client_tls_sslmode = require\n" in ini and "client_tls_protocols = tlsv1.3\n" in ini
    hello = {"user": "app_user", "database": tenant_db}
    with running_pgbouncer(ini, app_user_userlist("unused")) as bouncer:
        # TLS 1.3, PgBouncer's certificate verified against the CA: asked for the password
        assert startup_reply(bouncer.port, hello, tls=client_tls(postgres.ca_file)) == \
            AUTHENTICATION_REQUEST
        # In the clear: refused with an error before authentication
        assert startup_reply(bouncer.port, hello) == ERROR_RESPONSE
        # TLS 1.2 at most: the handshake fails
        with pytest.raises(ssl.SSLError):
            startup_reply(bouncer.port, hello,
                          tls=client_tls(postgres.ca_file, maximum=ssl.TLSVersion.TLSv1_2))


def test_the_probe_does_not_depend_on_the_database(postgres: PostgresServer,
                                                   tenant_db: str) -> None:
    # Given PgBouncer whose database is unreachable (as during an RDS failover)
    dead_port = free_port()
    ini = local_pgbouncer_ini(postgres, tenant_db).replace(
        f"port={postgres.port} dbname={tenant_db}", f"port={dead_port} dbname={tenant_db}")
    assert f"port={dead_port}" in ini
    with running_pgbouncer(ini, app_user_userlist("unused")) as bouncer:
        probe = subprocess.run(local_probe(bouncer.port, tenant_db), capture_output=True,
                               timeout=30, check=False)
    # Then the probe still passes: PgBouncer answers from its own userlist, so a database
    # outage does not restart every PgBouncer pod (or take it out of the Service) on top.
    assert probe.returncode == 0, probe.stdout


def test_pgbouncer_serves_a_certificate_shaped_like_cert_managers(
        postgres: PostgresServer, tenant_db: str) -> None:
    # Given what the Certificate asks cert-manager for: an ECDSA P-256 key (written, as
    # cert-manager does by default, as a SEC1 "EC PRIVATE KEY"), the Service's names, usages
    # server auth and digital signature; signed here by the tests' CA
    with tempfile.TemporaryDirectory(prefix="boom-client-tls-") as directory:
        tls_dir = Path(directory)
        tls_dir.chmod(0o755)  # PgBouncer runs as postgres
        reply = _serve_ecdsa_certificate(postgres, tenant_db, tls_dir)
    # When a client connects over TLS 1.3 and verifies it, Then PgBouncer asks for the password
    assert reply == AUTHENTICATION_REQUEST


def _serve_ecdsa_certificate(postgres: PostgresServer, tenant_db: str, tls_dir: Path) -> bytes:
    names = "DNS:pgbouncer.boom-booking.svc,DNS:pgbouncer,IP:127.0.0.1"

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tls_dir, check=True, capture_output=True)

    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "tls.key")
    assert (tls_dir / "tls.key").read_text().startswith("-----BEGIN EC PRIVATE KEY-----")
    openssl("req", "-new", "-key", "tls.key", "-subj", "/CN=pgbouncer", "-out", "tls.csr")
    (tls_dir / "ext").write_text(f"subjectAltName={names}\nkeyUsage=critical,digitalSignature\n"
                                 "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", "tls.csr", "-CA", str(postgres.root / "ca.pem"),
            "-CAkey", str(postgres.root / "ca.key"), "-CAcreateserial", "-days", "2",
            "-extfile", "ext", "-out", "tls.crt")
    (tls_dir / "tls.key").chmod(0o440)  # the Secret volume's defaultMode
    give_to_postgres(tls_dir)
    ini = local_pgbouncer_ini(postgres, tenant_db).replace(
        local_client_tls(postgres).cert_file, str(tls_dir / "tls.crt")).replace(
        local_client_tls(postgres).key_file, str(tls_dir / "tls.key"))
    assert str(tls_dir / "tls.key") in ini
    with running_pgbouncer(ini, app_user_userlist("unused")) as bouncer:
        return startup_reply(bouncer.port, {"user": "app_user", "database": tenant_db},
                             tls=client_tls(postgres.ca_file))
