"""The scheduled check between deploys: an EventBridge schedule (TenantGuaranteeCheck in the
Data stack) sends the bootstrap function {"Check": "tenant-guarantees", "MasterSecretArn": ...,
"Environment": ..., "RequirePgCron": true, "AppUserSecretArn": ..., "OwnerSecretArn": ...};
this runs bootstrap.check(), which changes nothing, adds a finding for a role that does not
log in with its secret's password (role_secrets.py) or whose rotation stopped midway, the
master's included (rotation.py), and logs
the number of findings as a CloudWatch metric in the embedded metric format.
A check that cannot run counts as one finding, and fails; one that finds a bootstrap run in
progress emits no metric and waits for the next.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from .bootstrap import BootstrapError, check
from .connection import close
from .errors import BootstrapRunning, bounded, unknown_names
from .master_secret import connect_as_master, secret_json, secrets_client
from .role_secrets import ROLE_FIELDS, login_findings
from .rotation import stuck_rotation

CHECK = "tenant-guarantees"  # the scheduled check's event: {"Check": CHECK, ...}
CHECK_FIELDS = ("MasterSecretArn", "Environment")
# Optional, in the check's event only: true where the parameter group loads pg_cron for the
# database, so that a server not running it (a reboot pending) is a finding (0014).
REQUIRE_PG_CRON = "RequirePgCron"
METRIC_NAMESPACE = "Boom/TenantDatabase"
METRIC_NAME = "GuaranteeFindings"  # per Environment; the Data stack alarms on it
MAX_LOGGED_FINDINGS = 50

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


def event_fields(event: dict[str, Any], kind: str, sender: str) -> tuple[str, str]:
    """MasterSecretArn and Environment of a check or repair event ({kind: CHECK, ...}), or
    BootstrapError naming what is wrong and who sends the event; nothing connects before."""
    if event.get(kind) != CHECK:
        raise BootstrapError(f"{kind} {event.get(kind)!r}: {sender} sends "
                             f"{{\"{kind}\": \"{CHECK}\", ...}}")
    missing = [name for name in CHECK_FIELDS if not isinstance(event.get(name), str)
               or not event[name]]
    if missing:
        raise BootstrapError(f"the {kind.lower()} event lacks {', '.join(missing)}: "
                             f"{sender} sends them")
    return event["MasterSecretArn"], event["Environment"]


def unknown_fields(event: dict[str, Any], kind: str) -> list[str]:
    """Each field of a check or repair event ({kind: CHECK, ...}) that neither reads, with the
    known field it resembles: a misspelt AppUserSecretArn would leave that role out. A repair
    takes the check's event as it is (README: "Repair" for "Check"), RequirePgCron included."""
    return unknown_names(event, (kind, *CHECK_FIELDS, REQUIRE_PG_CRON, *ROLE_FIELDS.values()))


def role_secret_arns(event: dict[str, Any], sender: str) -> dict[str, str]:
    """The role secrets a check or repair event names (role -> ARN; each of ROLE_FIELDS is
    optional), or BootstrapError for a field that is not an ARN; nothing connects before."""
    arns = {}
    for role, field in ROLE_FIELDS.items():
        value = event.get(field)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise BootstrapError(f"{field} {value!r}: expected the ARN of {role}'s secret "
                                 f"({sender} sends it), or no such field")
        arns[role] = value
    return arns


def on_check(event: dict[str, Any], deadline: float | None) -> dict[str, Any]:
    sender = "the TenantGuaranteeCheck construct's schedule"
    arn, environment = event_fields(event, "Check", sender)
    require_pg_cron = event.get(REQUIRE_PG_CRON, False)
    if not isinstance(require_pg_cron, bool):
        raise BootstrapError(f"{REQUIRE_PG_CRON} {require_pg_cron!r}: expected true or false "
                             "(the TenantGuaranteeCheck construct's schedule sends true)")
    role_arns = role_secret_arns(event, sender)
    # Warned of, not refused: during a deploy the schedule may send a new template's event to
    # the old code, and a refusal would count as a finding.
    for field in unknown_fields(event, "Check"):
        logger.warning("the check event's field %s is not one it reads: ignored", field)
    client = secrets_client()
    try:
        master, conn = connect_as_master(client, arn)
        try:
            result = check(conn, deadline=deadline, require_pg_cron=require_pg_cron)
        finally:
            close(conn)
    except BootstrapRunning as running:
        # No metric: the alarm counts a missing check as missing, not as a finding.
        logger.info("%s", running)
        return {"Environment": environment, "Skipped": str(running)}
    except BootstrapError as err:
        _emit_findings(environment, [f"could not check: {err}"])  # an alarm, not silence
        raise
    # The roles log in with their secrets' passwords; no secret is stuck mid-rotation. The
    # master logged in with another password than its secret's current one: the pending one.
    master_on_pending = master.password != secret_json(client, arn, "MasterSecretArn").get(
        "password")
    findings = [*result.findings, *login_findings(client, master, role_arns),
                *stuck_rotation(client, arn, master.user,
                                database_has_pending=master_on_pending),
                *(finding for role, role_arn in role_arns.items()
                  for finding in stuck_rotation(client, role_arn, role))]
    _emit_findings(environment, findings)
    logger.info("database %s at version %s: %d finding(s)", master.database, result.version,
                len(findings))
    return {"Environment": environment, "SchemaVersion": str(result.version),
            "Findings": _shown(findings)}


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
        "Findings": _shown(findings),
    }), flush=True)


def _shown(findings: list[str]) -> list[str]:
    """What a log line or a response holds of the findings: the first 50, each bounded."""
    return [bounded(finding) for finding in findings[:MAX_LOGGED_FINDINGS]]
