"""The custom resource behind Boom-<Env>-Data's TenantBootstrap (a `custom_resources.Provider`
`on_event` handler; the framework reports what it returns or raises to CloudFormation).

Properties (CloudFormation passes them as strings):
  MasterSecretArn  the RDS master secret (JSON: host, port, dbname, username, password)
  AppUserSecretArn, OwnerSecretArn  generated secrets (JSON with "password") for the roles
  TargetVersion    the migration version to reach; Update applies only newer ones, and leaves
                 a database that is already newer as it is (see on_event)
  AppUserConnectionLimit  optional: app_user's CONNECTION LIMIT, the PgBouncer pools' worst
                 case from config (config.pgbouncer.rollout_server_connections)
  BootstrapCode  not read: a digest of this package, so that a deploy changing it sends an
                 Update and runs the new code

The same function checks the database between deploys: an EventBridge schedule sends
{"Check": "tenant-guarantees", "MasterSecretArn": ..., "Environment": ...}, and the handler
runs bootstrap.check() (changing nothing) and logs the number of findings as a CloudWatch
metric in the embedded metric format (a failed check counts as one finding).

Create and Update connect over TLS with certificate and host name verification, then apply the
migrations in one transaction: any error leaves the database as it was. Retries are safe (an
advisory lock serialises overlapping runs; applied versions are skipped), and a run ends,
rolled back, before Lambda's timeout could kill it while it holds locks. Delete never touches
the database: tenant data outlives the stack resource.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from .bootstrap import LATEST_VERSION, BootstrapError, Connection, apply, check, connect

# The RDS CA bundle is copied next to this file when the asset is bundled.
CA_FILE_VARIABLE = "BOOM_DB_CA_FILE"
BUNDLED_CA_FILE = Path(__file__).parent / "rds-ca-bundle.pem"
REQUIRED_PROPERTIES = ("MasterSecretArn", "AppUserSecretArn", "OwnerSecretArn", "TargetVersion")
OPTIONAL_PROPERTIES = ("AppUserConnectionLimit",)
MASTER_SECRET_FIELDS = ("host", "port", "dbname", "username", "password")
# The master secret rotates on a schedule (and right after creation); a password refused in
# that window is read again rather than failing the deploy.
PASSWORD_ATTEMPTS = 3
RETRY_WAIT_SECONDS = 5.0
_PASSWORD_REFUSED = "SQLSTATE 28P01"
# CloudFormation refuses a custom resource's response over 4096 bytes, and then reports
# "Response object is too long" instead of the reason. A gap list or a repair list over many
# tables can be longer: what goes back is cut to this, the whole of it is logged.
MAX_REPORTED_CHARS = 1500
# Lambda kills a run at its timeout, mid-transaction, and PostgreSQL would go on holding the
# run's locks until it noticed. The run ends this long before, rolled back, with time to
# report to CloudFormation.
DEADLINE_MARGIN_SECONDS = 10.0
CHECK = "tenant-guarantees"  # the scheduled check's event: {"Check": CHECK, ...}
CHECK_FIELDS = ("MasterSecretArn", "Environment")
METRIC_NAMESPACE = "Boom/TenantDatabase"
METRIC_NAME = "GuaranteeFindings"  # per Environment; the Data stack alarms on it
MAX_LOGGED_FINDINGS = 50

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


def on_event(event: dict[str, Any], context: object = None) -> dict[str, Any]:
    try:
        if isinstance(event, dict) and "Check" in event:
            return _on_check(event, _deadline(context))
        return _on_event(event, _deadline(context))
    except BootstrapError as err:
        logger.error("%s", err)
        raise BootstrapError(bounded(str(err))) from None


def bounded(text: str) -> str:
    """`text`, cut to what a CloudFormation response holds, saying where the rest is."""
    if len(text) <= MAX_REPORTED_CHARS:
        return text
    return (f"{text[:MAX_REPORTED_CHARS]} ... ({len(text) - MAX_REPORTED_CHARS} more "
            "characters in the function's log)")


def _deadline(context: object) -> float | None:
    """When the run must have ended (time.monotonic()), from Lambda's context object."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None  # called outside Lambda, as the tests do
    return time.monotonic() + remaining() / 1000 - DEADLINE_MARGIN_SECONDS


def _on_event(event: dict[str, Any], deadline: float | None) -> dict[str, Any]:
    request = event.get("RequestType")
    raw_properties = event.get("ResourceProperties")
    shown = raw_properties if isinstance(raw_properties, dict) else {}
    # Only names and ARNs are logged: the properties hold no secret values.
    logger.info("%s %s %s", request, event.get("LogicalResourceId"),
                json.dumps({k: v for k, v in shown.items() if k != "ServiceToken"},
                           sort_keys=True, default=str))
    if request == "Delete":
        return {"PhysicalResourceId": event.get("PhysicalResourceId", "none")}
    if request not in ("Create", "Update"):
        raise BootstrapError(f"RequestType {request!r}: expected Create, Update or Delete")
    properties = _properties(raw_properties)
    target_version = _target_version(properties["TargetVersion"])
    connection_limit = _connection_limit(properties.get("AppUserConnectionLimit"))
    secrets = boto3.client("secretsmanager")
    passwords = {
        "app_user": _password(secrets, properties["AppUserSecretArn"], "AppUserSecretArn"),
        "boom_owner": _password(secrets, properties["OwnerSecretArn"], "OwnerSecretArn"),
    }
    master, conn = _connect_as_master(secrets, properties["MasterSecretArn"])
    try:
        # When a stack update fails after this resource was updated, CloudFormation rolls back
        # by sending an Update with the previous, lower TargetVersion. Refusing it would leave
        # the stack in UPDATE_ROLLBACK_FAILED; the newer schema stays (migrations only go
        # forward and never drop data, so the older application runs on it).
        result = apply(conn, target_version=target_version, role_passwords=passwords,
                       keep_newer=request == "Update",
                       app_user_connection_limit=connection_limit, deadline=deadline)
    finally:
        conn.close()
    if result.version > target_version:
        logger.warning("database %s is at version %s, newer than TargetVersion %s: left as "
                       "it is (an update rollback, or an older template)", master.database,
                       result.version, target_version)
    logger.info("database %s at version %s (was %s; applied %s; repaired %s)",
                master.database, result.version, result.previous_version,
                list(result.applied), list(result.repaired))
    return {
        # Stable per database: a retry or an Update never replaces the resource.
        "PhysicalResourceId": f"tenant-bootstrap:{master.host}:{master.port}/{master.database}",
        "Data": {"SchemaVersion": str(result.version),
                 "Applied": ",".join(map(str, result.applied)),
                 "Repaired": bounded("; ".join(result.repaired))},
    }


def _on_check(event: dict[str, Any], deadline: float | None) -> dict[str, Any]:
    if event.get("Check") != CHECK:
        raise BootstrapError(f"Check {event.get('Check')!r}: the scheduled check sends "
                             f"{{\"Check\": \"{CHECK}\", ...}}")
    missing = [name for name in CHECK_FIELDS if not isinstance(event.get(name), str)
               or not event[name]]
    if missing:
        raise BootstrapError(f"the check event lacks {', '.join(missing)}: the TenantBootstrap "
                             "construct's schedule sends them")
    environment = event["Environment"]
    try:
        master, conn = _connect_as_master(boto3.client("secretsmanager"),
                                          event["MasterSecretArn"])
        try:
            result = check(conn, deadline=deadline)
        finally:
            conn.close()
    except BootstrapError as err:
        _emit_findings(environment, [f"could not check: {err}"])  # an alarm, not silence
        raise
    _emit_findings(environment, list(result.findings))
    logger.info("database %s at version %s: %d finding(s)", master.database, result.version,
                len(result.findings))
    return {"Environment": environment, "SchemaVersion": str(result.version),
            "Findings": [bounded(f) for f in result.findings[:MAX_LOGGED_FINDINGS]]}


def _emit_findings(environment: str, findings: list[str]) -> None:
    """One log line in CloudWatch's embedded metric format: CloudWatch Logs turns it into
    the metric METRIC_NAME (dimension Environment) without an API call, a permission or a
    network route. Findings name tables, roles and settings, never values."""
    print(json.dumps({
        "_aws": {"Timestamp": int(time.time() * 1000),
                 "CloudWatchMetrics": [{"Namespace": METRIC_NAMESPACE,
                                        "Dimensions": [["Environment"]],
                                        "Metrics": [{"Name": METRIC_NAME, "Unit": "Count"}]}]},
        "Environment": environment,
        METRIC_NAME: len(findings),
        "Findings": [bounded(f) for f in findings[:MAX_LOGGED_FINDINGS]],
    }), flush=True)


def _properties(properties: object) -> dict[str, str]:
    if not isinstance(properties, dict):
        raise BootstrapError("ResourceProperties missing: the resource needs "
                             f"{', '.join(REQUIRED_PROPERTIES)}")
    missing = [name for name in REQUIRED_PROPERTIES if not properties.get(name)]
    if missing:
        raise BootstrapError(f"ResourceProperties missing {', '.join(missing)}: set them on the "
                             "TenantBootstrap resource (TenantBootstrap construct does this)")
    return {name: str(properties[name]) for name in (*REQUIRED_PROPERTIES, *OPTIONAL_PROPERTIES)
            if properties.get(name) is not None}


def _connection_limit(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if limit < 1:
        raise BootstrapError(f"AppUserConnectionLimit {raw!r} is not a whole number of at least "
                             "1; the TenantBootstrap construct sets it from config "
                             "(config.pgbouncer.rollout_server_connections)")
    return limit


def _target_version(raw: str) -> int:
    try:
        version = int(raw)
    except ValueError:
        raise BootstrapError(f"TargetVersion {raw!r} is not a whole number; this bootstrap has "
                             f"versions 1 to {LATEST_VERSION}") from None
    if not 1 <= version <= LATEST_VERSION:
        raise BootstrapError(f"TargetVersion {version}: this bootstrap has versions 1 to "
                             f"{LATEST_VERSION}")
    return version


def _secret_json(client: Any, arn: str, field: str) -> dict[str, Any]:
    try:
        raw = client.get_secret_value(SecretId=arn)["SecretString"]
    except (ClientError, BotoCoreError) as err:
        raise BootstrapError(f"{field} {arn}: cannot read the secret ({_aws_reason(err)})") \
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


def _connect_as_master(client: Any, arn: str) -> tuple[Connection, Any]:
    for attempt in range(1, PASSWORD_ATTEMPTS + 1):
        master = _master_connection(_secret_json(client, arn, "MasterSecretArn"))
        try:
            return master, connect(master)
        except BootstrapError as err:
            if _PASSWORD_REFUSED not in str(err) or attempt == PASSWORD_ATTEMPTS:
                raise
            logger.warning("master password refused (attempt %d of %d); the secret may be "
                           "mid-rotation, reading it again", attempt, PASSWORD_ATTEMPTS)
            time.sleep(RETRY_WAIT_SECONDS)
    raise AssertionError("unreachable")


def _master_connection(secret: dict[str, Any]) -> Connection:
    missing = [name for name in MASTER_SECRET_FIELDS if not secret.get(name)]
    if missing:
        raise BootstrapError(f"MasterSecretArn: the secret lacks {', '.join(missing)}; point it "
                             "at the RDS instance's attached master secret")
    try:
        port = int(secret["port"])
    except (TypeError, ValueError):
        raise BootstrapError("MasterSecretArn: the secret's port is not a number") from None
    return Connection(host=str(secret["host"]), port=port, database=str(secret["dbname"]),
                      user=str(secret["username"]), password=str(secret["password"]),
                      sslmode="verify-full", ca_file=_ca_file())


def _password(client: Any, arn: str, field: str) -> str:
    password = _secret_json(client, arn, field).get("password")
    if not isinstance(password, str) or len(password) < 16:
        raise BootstrapError(f"{field} {arn}: the secret needs a \"password\" of at least 16 "
                             "characters")
    return password


def _ca_file() -> str:
    path = Path(os.environ.get(CA_FILE_VARIABLE) or BUNDLED_CA_FILE)
    if not path.is_file():
        raise BootstrapError(f"CA bundle {path} not found: the asset must be built by "
                             f"TenantBootstrap's bundling, or set {CA_FILE_VARIABLE}")
    return str(path)


def _aws_reason(err: Exception) -> str:
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip()
    return str(err)
