"""The RDS master user's connection, from its secret in Secrets Manager: what the deploy's
bootstrap run and the scheduled check both connect as."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .connection import MAX_PORT, Connection, connect
from .errors import BootstrapError
from .whole_number import counted

# The RDS CA bundle is copied next to this file when the asset is bundled.
CA_FILE_VARIABLE = "BOOM_DB_CA_FILE"
BUNDLED_CA_FILE = Path(__file__).parent / "rds-ca-bundle.pem"
MASTER_SECRET_FIELDS = ("host", "port", "dbname", "username", "password")
# The master secret rotates on a schedule (and right after creation); a password refused in
# that window is tried from the pending version, then read again, rather than failing the run.
PASSWORD_ATTEMPTS = 3
RETRY_WAIT_SECONDS = 5.0
PASSWORD_REFUSED = "SQLSTATE 28P01"  # how connect()'s error says a password was refused

# botocore's defaults wait 60 s to connect and 60 s for each reply, over up to 5 attempts:
# minutes against an endpoint that drops packets (a security group, a missing route), past the
# Lambda's timeout, which would then end the run with no reason given. Secrets Manager answers
# in well under a second; these bound one secret's read to about 15 s, backoff included.
SECRETS_CONNECT_TIMEOUT_SECONDS = 3
SECRETS_READ_TIMEOUT_SECONDS = 3
SECRETS_ATTEMPTS = 3  # in all, the first included (botocore's "total_max_attempts")

logger = logging.getLogger(__name__)


def secrets_client() -> Any:
    """The Secrets Manager client every path reads its secrets with, its waits bounded as
    above. A new Config each time: botocore rewrites the one it is given."""
    return boto3.client("secretsmanager", config=Config(
        connect_timeout=SECRETS_CONNECT_TIMEOUT_SECONDS,
        read_timeout=SECRETS_READ_TIMEOUT_SECONDS,
        retries={"mode": "standard", "total_max_attempts": SECRETS_ATTEMPTS}))


def secret_json(client: Any, arn: str, field: str) -> dict[str, Any]:
    """The secret's current version, a JSON object (BootstrapError naming `field` if not)."""
    # AWSCURRENT is also the default; said, so that no emulator's idea of a default (moto's
    # is the version a rotation began) is relied on.
    value = secret_version_json(client, arn, field, VersionStage="AWSCURRENT")
    assert value is not None  # only a version asked for by id may have no value yet
    return value


def secret_version_json(client: Any, arn: str, field: str,
                        **version: str) -> dict[str, Any] | None:
    """One version of the secret (`version`: get_secret_value's VersionId and VersionStage), a
    JSON object (BootstrapError naming `field` if not), or None if that version has no value
    yet (a rotation's AWSPENDING version before createSecret), or, for a label other than
    AWSCURRENT, if no version has it."""
    try:
        raw = client.get_secret_value(SecretId=arn, **version)["SecretString"]
    except (ClientError, BotoCoreError) as err:
        if version.get("VersionStage") != "AWSCURRENT" and isinstance(err, ClientError) and \
                err.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None  # that version has no value yet, or no version has that label
        raise BootstrapError(f"{field} {arn}: cannot read the secret ({aws_reason(err)})") \
            from None
    except KeyError:
        raise BootstrapError(f"{field} {arn}: the secret has no SecretString") from None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        # Never echo the value: it may be a password.
        raise BootstrapError(f"{field} {arn}: the secret is not a JSON object")
    return value


def connect_as_master(client: Any, arn: str) -> tuple[Connection, Any]:
    """The master's connection details and an open connection. A password the database
    refuses is tried from the secret's AWSPENDING version, where one has a value: the master's
    rotation (rotation.py) between its setSecret and finishSecret, or stopped there, has given
    the database that one. Otherwise the secret is read again, PASSWORD_ATTEMPTS times in all:
    a rotation may be finishing."""
    for attempt in range(1, PASSWORD_ATTEMPTS + 1):
        master = master_connection(secret_json(client, arn, "MasterSecretArn"))
        try:
            return master, connect(master)
        except BootstrapError as err:
            if PASSWORD_REFUSED not in str(err):
                raise
            refused = err
        pending = _pending_password(client, arn)
        if pending is not None and pending != master.password:
            at_pending = dataclasses.replace(master, password=pending)
            try:
                conn = connect(at_pending)
            except BootstrapError as err:
                if PASSWORD_REFUSED not in str(err):
                    raise
            else:
                logger.warning("master password refused; the secret is mid-rotation, and its "
                               "pending password logs in")
                return at_pending, conn
        if attempt == PASSWORD_ATTEMPTS:
            raise refused
        logger.warning("master password refused (attempt %d of %d); the secret may be "
                       "mid-rotation, reading it again", attempt, PASSWORD_ATTEMPTS)
        time.sleep(RETRY_WAIT_SECONDS)
    raise AssertionError("unreachable")


def _pending_password(client: Any, arn: str) -> str | None:
    """The password of the secret's AWSPENDING version, or None: no rotation in progress, or
    one before its createSecret."""
    value = secret_version_json(client, arn, "MasterSecretArn", VersionStage="AWSPENDING")
    password = value.get("password") if value else None
    return password if isinstance(password, str) and password else None


def master_connection(secret: dict[str, Any]) -> Connection:
    missing = [name for name in MASTER_SECRET_FIELDS if not secret.get(name)]
    if missing:
        raise BootstrapError(f"MasterSecretArn: the secret lacks {', '.join(missing)}; point it "
                             "at the RDS instance's attached master secret")
    port = _port(secret["port"])
    return Connection(host=str(secret["host"]), port=port, database=str(secret["dbname"]),
                      user=str(secret["username"]), password=str(secret["password"]),
                      sslmode="verify-full", ca_file=ca_file())


def _port(raw: object) -> int:
    """The secret's port: RDS writes a JSON number; a string of plain digits is taken too
    (int() alone took 5432.9 as 5432, true as 1 and " 5432 " as 5432)."""
    # type(), not isinstance(): bool is a subclass of int
    port = counted(str(raw), MAX_PORT) if type(raw) in (int, str) else None
    if port is None:
        raise BootstrapError(f"MasterSecretArn: the secret's port {raw!r} is not a port number "
                             f"(1 to {MAX_PORT}); point it at the RDS instance's attached "
                             "master secret")
    return port


def ca_file() -> str:
    path = Path(os.environ.get(CA_FILE_VARIABLE) or BUNDLED_CA_FILE)
    if not path.is_file():
        raise BootstrapError(f"CA bundle {path} not found: the asset must be built by "
                             f"TenantBootstrap's bundling, or set {CA_FILE_VARIABLE}")
    return str(path)


def aws_reason(err: Exception) -> str:
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip()
    return str(err)
