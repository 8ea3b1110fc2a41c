"""The custom resource behind Boom-<Env>-Data's TenantBootstrap (a `custom_resources.Provider`
`on_event` handler; the framework reports what it returns or raises to CloudFormation).

Properties (CloudFormation passes them as strings):
  MasterSecretArn  the RDS master secret (JSON: host, port, dbname, username, password)
  AppUserSecretArn, OwnerSecretArn  generated secrets (JSON with "password") for the roles
  TargetVersion    the migration version to reach; Update applies only newer ones, and leaves
                 a database that is already newer as it is (see on_event)
  AppUserConnectionLimit  optional: app_user's CONNECTION LIMIT, the PgBouncer pools' worst
                 case from config (config.pgbouncer.rollout_server_connections)
  AppUserTransactionMinutes  optional: how long an app_user transaction may run before
                 pg_cron's job ends it (config.database.app_user_transaction_minutes; 0014)
  BootstrapCode  not read: a digest of this package, so that a deploy changing it sends an
                 Update and runs the new code
  Any other property is logged as a warning and ignored (see _warn_of_unknown).

The function is also the rotation function of the Owner secret and of the master secret:
Secrets Manager's events ({"Step": ..., "SecretId": ..., "ClientRequestToken": ...}) go to
rotation.py.

The same function checks the database between deploys: an EventBridge schedule sends
{"Check": "tenant-guarantees", "MasterSecretArn": ..., "Environment": ..., ...}, and the
handler runs bootstrap.check() (changing nothing), logs in as each role whose secret the
event names, and logs the number of findings as a CloudWatch metric in the embedded metric
format (a failed check counts as one finding; scheduled_check.py). An operator acting on its
alarm sends the same event with "Repair" for "Check" (repair.py): a run that restores the
guarantees and sets the role passwords, without migrating.

Create and Update connect over TLS with certificate and host name verification, then apply the
migrations in one transaction: any error leaves the database as it was. Retries are safe (an
advisory lock serialises overlapping runs; applied versions are skipped), and a run ends,
rolled back, before Lambda's timeout could kill it while it holds locks. Delete never touches
the database: tenant data outlives the stack resource.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from .bootstrap import MAX_TRANSACTION_MINUTES, BootstrapError, apply
from .connection import close
from .errors import bounded, unknown_names
from .master_secret import connect_as_master, secrets_client
from .migration_files import LATEST_VERSION
from .repair import on_repair
from .role_secrets import ROLE_FIELDS, current_passwords
from .rotation import EVENT_FIELDS as ROTATION_FIELDS
from .rotation import on_rotate
from .scheduled_check import on_check
from .whole_number import counted, span, whole_number

REQUIRED_PROPERTIES = ("MasterSecretArn", "AppUserSecretArn", "OwnerSecretArn", "TargetVersion")
OPTIONAL_PROPERTIES = ("AppUserConnectionLimit", "AppUserTransactionMinutes")
# Sent but not read: the Provider framework's ServiceToken, and BootstrapCode (see above).
UNREAD_PROPERTIES = ("ServiceToken", "BootstrapCode")
KNOWN_PROPERTIES = frozenset((*REQUIRED_PROPERTIES, *OPTIONAL_PROPERTIES, *UNREAD_PROPERTIES))
# Lambda kills a run at its timeout, mid-transaction, and PostgreSQL would go on holding the
# run's locks until it noticed. The run ends this long before, rolled back, with time to
# report to CloudFormation.
DEADLINE_MARGIN_SECONDS = 10.0

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


def on_event(event: dict[str, Any], context: object = None) -> dict[str, Any]:
    try:
        if not isinstance(event, dict):
            raise BootstrapError(
                f"the event is {type(event).__name__!r}, not a JSON object: CloudFormation "
                "sends one, and an operator's repair sends the Data stack's TenantRepairEvent "
                "output as it is")
        if "Check" in event and "Repair" in event:
            raise BootstrapError(
                "the event has both Check and Repair: send the Data stack's TenantRepairEvent "
                "output to repair (or the check's event with Repair in place of Check)")
        if "Check" in event:
            return on_check(event, _deadline(context))
        if "Repair" in event:
            return on_repair(event, _deadline(context))
        if any(field in event for field in ROTATION_FIELDS):
            return on_rotate(event, _deadline(context))
        return _on_event(event, _deadline(context))
    except BootstrapError as err:
        logger.error("%s", err)
        raise BootstrapError(bounded(str(err))) from None


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
    _warn_of_unknown(shown)
    target_version = _target_version(properties["TargetVersion"])
    connection_limit = _whole_property(properties, "AppUserConnectionLimit", None,
                                       "config.pgbouncer.rollout_server_connections")
    transaction_minutes = _whole_property(properties, "AppUserTransactionMinutes",
                                          MAX_TRANSACTION_MINUTES,
                                          "config.database.app_user_transaction_minutes")
    secrets = secrets_client()
    role_arns = {role: properties[field] for role, field in ROLE_FIELDS.items()}

    def passwords() -> dict[str, str]:
        # Read under the bootstrap's advisory lock (apply), which a rotation's setSecret
        # takes too: a role whose secret is mid-rotation keeps the password the rotation is
        # handling (rotation.py).
        return current_passwords(secrets, role_arns)

    master, conn = connect_as_master(secrets, properties["MasterSecretArn"])
    try:
        # When a stack update fails after this resource was updated, CloudFormation rolls back
        # by sending an Update with the previous, lower TargetVersion. Refusing it would leave
        # the stack in UPDATE_ROLLBACK_FAILED; the newer schema stays (migrations only go
        # forward and never drop data, so the older application runs on it).
        result = apply(conn, target_version=target_version, role_passwords=passwords,
                       keep_newer=request == "Update",
                       app_user_connection_limit=connection_limit,
                       app_user_transaction_minutes=transaction_minutes, deadline=deadline)
    finally:
        close(conn)
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


def _properties(properties: object) -> dict[str, str]:
    if not isinstance(properties, dict):
        raise BootstrapError("ResourceProperties missing: the resource needs "
                             f"{', '.join(REQUIRED_PROPERTIES)}")
    missing = [name for name in REQUIRED_PROPERTIES if not properties.get(name)]
    if missing:
        raise BootstrapError(f"ResourceProperties missing {', '.join(missing)}: set them on the "
                             "TenantBootstrap resource (TenantBootstrap construct does this)")
    names = [name for name in (*REQUIRED_PROPERTIES, *OPTIONAL_PROPERTIES)
             if properties.get(name) is not None]
    # CloudFormation passes scalars as strings; a list or an object is a template's mistake.
    nested = [name for name in names if isinstance(properties[name], (dict, list))]
    if nested:
        raise BootstrapError(f"ResourceProperties {', '.join(nested)}: expected a string, not "
                             "a list or an object; the TenantBootstrap construct sets each as "
                             "one")
    return {name: str(properties[name]) for name in names}


def _warn_of_unknown(properties: dict[str, Any]) -> None:
    """Log a property this handler does not know (a typo'd optional one would do nothing).
    It is not refused: when a later version retires a property, CloudFormation's update
    rollback sends the old properties to the new code, and a refusal would leave the stack in
    UPDATE_ROLLBACK_FAILED."""
    for name in unknown_names(properties, KNOWN_PROPERTIES):
        logger.warning("ResourceProperties %s is not a property of TenantBootstrap: ignored. "
                       "It reads %s", name, ", ".join((*REQUIRED_PROPERTIES, *OPTIONAL_PROPERTIES)))


def _whole_property(properties: dict[str, str], name: str, high: int | None,
                    source: str) -> int | None:
    """An optional property that is a whole number from 1 (to `high`), or None if absent;
    `source` is the config value the construct sets it from, for the message."""
    raw = properties.get(name)
    if raw is None:
        return None
    value = counted(raw, high)
    if value is None:
        raise BootstrapError(f"{name} {raw!r} is not a whole number {span(high)}; the "
                             f"TenantBootstrap construct sets it from config ({source})")
    return value


def _target_version(raw: str) -> int:
    version = whole_number(raw)
    if version is None:
        raise BootstrapError(f"TargetVersion {raw!r} is not a whole number; this bootstrap has "
                             f"versions 1 to {LATEST_VERSION}")
    if not 1 <= version <= LATEST_VERSION:
        raise BootstrapError(f"TargetVersion {version}: this bootstrap has versions 1 to "
                             f"{LATEST_VERSION}")
    return version
