"""An operator's repair between deploys, when the guarantee check alarms: the bootstrap
function, sent the check's event with "Repair" for "Check" ({"Repair": "tenant-guarantees",
"MasterSecretArn": ..., "Environment": ...}; the Data stack outputs it as TenantRepairEvent),
runs what a deploy's run runs at its end: it restores the guarantees it can and refuses,
naming them, the gaps it will not paper over (enforce.py).

A deploy runs the bootstrap only when the resource's properties change, so after drift a
plain `cdk deploy` does nothing; and the CLI needs a route into the isolated subnets. This
needs neither. It applies no migration: a database that is not at this code's version is
refused (migrations are the deploy's, under CloudFormation). It sets the role passwords from
the secrets the event names (AppUserSecretArn, OwnerSecretArn), as a deploy's run does, so it
also mends a role the check found not logging in with its secret's password. A deploy's run
in progress is waited for (the bootstrap's advisory lock), as one run waits for another.
"""

from __future__ import annotations

import logging
from typing import Any

from .bootstrap import BootstrapError, apply
from .connection import close
from .errors import bounded
from .master_secret import connect_as_master, secrets_client
from .migration_files import LATEST_VERSION
from .role_secrets import current_passwords
from .scheduled_check import event_fields, role_secret_arns, unknown_fields

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


def on_repair(event: dict[str, Any], deadline: float | None) -> dict[str, Any]:
    sender = "the Data stack's TenantRepairEvent output"
    arn, environment = event_fields(event, "Repair", sender)
    role_arns = role_secret_arns(event, sender)
    # Refused: an operator writes or edits this event, and a misspelt field would leave a
    # role's password unset by a repair that reports success.
    unknown = unknown_fields(event, "Repair")
    if unknown:
        raise BootstrapError(f"the repair event's {', '.join(unknown)}: not a field it reads; "
                             f"send {sender} as it is")
    client = secrets_client()
    master, conn = connect_as_master(client, arn)
    try:
        result = apply(conn, target_version=LATEST_VERSION, migrate=False, deadline=deadline,
                       # Read under the bootstrap's advisory lock, as a deploy's run reads them.
                       role_passwords=lambda: current_passwords(client, role_arns))
    finally:
        close(conn)
    logger.info("repair of %s (%s) at version %s: repaired %s", master.database, environment,
                result.version, list(result.repaired) or "nothing")
    return {"Environment": environment, "SchemaVersion": str(result.version),
            "Repaired": [bounded(item) for item in result.repaired]}
