"""How the bootstrap connects to PostgreSQL: TLS with certificate and host name verification
by default, strict as the Lambda runtime's Python verifies."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import pg8000.native

from .errors import BootstrapError, reason


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
    timeout_seconds: int = 10



def ssl_context_for(target: Connection) -> ssl.SSLContext | None:
    ssl_context: ssl.SSLContext | None = None
    if target.sslmode == "verify-full":
        ssl_context = ssl.create_default_context(cafile=target.ca_file)
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
    ssl_context = ssl_context_for(target)
    try:
        return pg8000.native.Connection(
            target.user, host=target.host, port=target.port, database=target.database,
            password=target.password, ssl_context=ssl_context, timeout=target.timeout_seconds,
            application_name="boom-tenant-bootstrap")
    except (OSError, pg8000.native.InterfaceError, pg8000.native.DatabaseError) as err:
        raise BootstrapError(f"cannot connect to {target.user}@{target.host}:{target.port}/"
                             f"{target.database}: {reason(err)}") from None
