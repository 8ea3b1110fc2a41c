"""How the bootstrap connects to PostgreSQL: TLS with certificate and host name verification
by default, strict as the Lambda runtime's Python verifies."""

from __future__ import annotations

import contextlib
import ssl
from dataclasses import dataclass

import pg8000.native

from .errors import BootstrapError, reason

# What pg8000 raises when the connection itself fails: a bare socket error (TimeoutError, on
# a reply that did not come in time) or its InterfaceError ("network error", "connection is
# closed"). PostgreSQL's own errors are DatabaseError; DRIVER_ERRORS is either.
CONNECTION_LOST = (OSError, pg8000.native.InterfaceError)
DRIVER_ERRORS = (*CONNECTION_LOST, pg8000.native.DatabaseError)
MAX_PORT = 65535


@dataclass(frozen=True)
class Connection:
    host: str
    port: int
    database: str
    user: str
    password: str | None
    # verify-full (default: TLS, certificate and host name checked), require or disable.
    sslmode: str = "verify-full"
    ca_file: str | None = None
    timeout_seconds: int = 10  # to connect and log in; see connect()


def ssl_context_for(target: Connection) -> ssl.SSLContext | None:
    ssl_context: ssl.SSLContext | None = None
    if target.sslmode == "verify-full":
        try:
            ssl_context = ssl.create_default_context(cafile=target.ca_file)
        except (OSError, ssl.SSLError) as err:  # no such file, unreadable, or no certificate
            raise BootstrapError(
                f"sslrootcert {target.ca_file!r}: cannot load CA certificates from it "
                f"({err.strerror or err}): give a PEM file of the CAs that signed the "
                "server's certificate (for RDS, the region's bundle)") from None
        # Python 3.13+ (the Lambda runtime) verifies strictly by default; do so everywhere,
        # so a certificate that local tests accept is one the Lambda accepts too.
        ssl_context.verify_flags |= ssl.VERIFY_X509_STRICT
    elif target.sslmode == "require":
        ssl_context = ssl.create_default_context()
        ssl_context.check_hostname = False
        ssl_context.verify_mode = ssl.CERT_NONE
    elif target.sslmode != "disable":
        raise BootstrapError(f"sslmode {target.sslmode!r}: use verify-full, require or disable")
    return ssl_context


def connect(target: Connection) -> pg8000.native.Connection:
    """A connection whose `timeout_seconds` bounded connecting and logging in only. pg8000
    would keep it as the socket's timeout for every reply after, and end with a bare
    TimeoutError any statement that takes longer (a wait for another run's lock, a long
    migration), while the server went on with it. Replies are waited for as long as the
    run's deadline allows instead (Deadline.bound_replies), without end where there is none."""
    ssl_context = ssl_context_for(target)
    try:
        conn = pg8000.native.Connection(
            target.user, host=target.host, port=target.port, database=target.database,
            password=target.password, ssl_context=ssl_context, timeout=target.timeout_seconds,
            application_name="boom-tenant-bootstrap")
    except DRIVER_ERRORS as err:
        host = f"[{target.host}]" if ":" in target.host else target.host  # IPv6, as a DSN has it
        raise BootstrapError(f"cannot connect to {target.user}@{host}:{target.port}/"
                             f"{target.database}: {reason(err)}") from None
    wait_for_replies(conn, None)
    return conn


def wait_for_replies(conn: pg8000.native.Connection, seconds: float | None) -> None:
    """How long a read from the server may take before the connection counts as lost (None:
    without end). pg8000 has no public setting for this after connecting; its socket is."""
    conn._usock.settimeout(seconds)


def close(conn: pg8000.native.Connection) -> None:
    """Closes `conn`, quietly if it is already lost: the error that lost it is the one to
    report, not this. The server rolls back a transaction whose client is gone."""
    with contextlib.suppress(*CONNECTION_LOST):
        wait_for_replies(conn, 1.0)  # Terminate is one small write; never wait long on it
        conn.close()
