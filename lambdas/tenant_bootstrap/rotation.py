"""Password rotation of boom_owner and of the RDS master user. Secrets Manager invokes the
bootstrap function with {"Step": ..., "SecretId": ..., "ClientRequestToken": ...,
"RotationToken": ...} for each of four steps, in order, on each secret's schedule (the
TenantBootstrap construct's RotationSchedules). The RotationToken is for a function that
rotates a secret of another account, which passes it back; this one ignores it, and never logs
it (AWS marks it sensitive):

  createSecret  a new random password as the AWSPENDING version of the secret
  setSecret     the role's password set to it, as the master user, under the bootstrap's
                advisory lock (so never in the middle of a bootstrap run); the master sets its
                own, logged in with its current password (or, on a retry after the change,
                finding that the pending one already logs in)
  testSecret    the role logs in with it, over verified TLS
  finishSecret  the pending version becomes AWSCURRENT

Each step can be retried and does nothing it already did. The database is sent a SCRAM verifier,
never the password: no statement text (a failed or slow statement's log line, a statistics
view) can hold it. AWS's rotation function for RDS sends `ALTER USER ... WITH PASSWORD '<the
password>'`, which is why the master no longer rotates with it. app_user's password is also
PgBouncer's, which must follow a new one first (the cluster issue): it does not rotate yet.

A bootstrap run sets each role's password from its secret's current version; between setSecret
and finishSecret that is the old password, and would undo the rotation. So the run reads the
secrets after taking the advisory lock, and leaves alone the password of a role whose secret
is mid-rotation (`pending_version`): setSecret takes the same lock, so a run sees either no
rotation yet, or one whose AWSPENDING version already exists. A run logs in as the master with
the pending password when the current one is refused (master_secret.connect_as_master).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import string
from datetime import UTC, datetime, timedelta
from typing import Any

import pg8000.native
from botocore.exceptions import BotoCoreError, ClientError

from .bootstrap import ADVISORY_LOCK
from .connection import CONNECTION_LOST, DRIVER_ERRORS, close, connect
from .deadline import Deadline
from .errors import BootstrapError, reason
from .master_secret import (
    aws_reason,
    connect_as_master,
    master_connection,
    secret_json,
    secret_version_json,
    secrets_client,
)
from .passwords import MIN_PASSWORD_CHARS, long_enough, scram_verifier

OWNER_ROLE = "boom_owner"  # the master's role is its secret's username
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
# AWS's rotation templates (and moto) send the steps as above; the user guide's parameter list
# spells them create_secret, ...: both are taken.
_STEP_ALIASES = {"create_secret": "createSecret", "set_secret": "setSecret",
                 "test_secret": "testSecret", "finish_secret": "finishSecret"}
EVENT_FIELDS = ("Step", "SecretId", "ClientRequestToken")
# The master secret's ARN, in the function's environment: Secrets Manager's event names only
# the secret it rotates.
MASTER_SECRET_VARIABLE = "BOOM_MASTER_SECRET_ARN"
# As the construct's generated secrets: 32 letters and digits (no punctuation to escape in a
# DSN), from Python's CSPRNG; secretsmanager:GetRandomPassword would need IAM on "*".
PASSWORD_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 32
# A rotation's four steps take seconds. One begun longer ago has failed, and stays in the way:
# runs leave the role's password alone, and Secrets Manager starts no other rotation.
STUCK_AFTER = timedelta(hours=1)

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


@dataclasses.dataclass(frozen=True)
class Rotated:
    """What a rotation event's secret is: `role`'s, the master's or boom_owner's; `master_arn`
    is the master secret's, which setSecret and testSecret connect with."""
    role: str
    is_master: bool
    master_arn: str


def on_rotate(event: dict[str, Any], deadline: float | None) -> dict[str, Any]:
    step, arn, token = _rotation_event(event)
    master_arn = _master_secret_arn()
    client = secrets_client()
    stages = _version_stages(client, arn, token)
    if "AWSCURRENT" in stages:
        # A retry after finishSecret, or a version Secrets Manager made current already.
        logger.info("%s of %s: version %s is already AWSCURRENT, nothing to do", step, arn,
                    token)
        return {"Step": step, "Done": "already current"}
    if "AWSPENDING" not in stages:
        raise BootstrapError(f"{step} of {arn}: version {token} is not AWSPENDING; only the "
                             "rotation Secrets Manager started may be completed. Start one "
                             "with `aws secretsmanager rotate-secret`")
    rotated = _rotated(client, arn, master_arn)
    logger.info("%s of %s (%s), version %s", step, arn, rotated.role, token)
    if step == "createSecret":
        _create(client, arn, token, rotated)
    elif step == "setSecret":
        _set(client, arn, token, rotated, Deadline(deadline, task="rotation"))
    elif step == "testSecret":
        _test(client, arn, token, rotated, Deadline(deadline, task="rotation"))
    else:
        _finish(client, arn, token)
    return {"Step": step, "Done": "ok"}


def pending_version(client: Any, arn: str, field: str) -> str | None:
    """The version of the secret a rotation has begun and not finished (AWSPENDING on a
    version that is not AWSCURRENT), or None."""
    for version, stages in _describe(client, arn, field).get("VersionIdsToStages", {}).items():
        if "AWSPENDING" in stages and "AWSCURRENT" not in stages:
            return str(version)
    return None


def stuck_rotation(client: Any, arn: str, role: str, *,
                   database_has_pending: bool = False) -> list[str]:
    """For the scheduled check: a finding when `role`'s secret has been mid-rotation for
    longer than STUCK_AFTER, saying what it means and how to end it; a finding too when the
    secret's versions cannot be listed (the check goes on with the database's findings).
    `database_has_pending`: the database has the pending password already (the master's
    setSecret ran; no run sets the master's password), so ending the rotation means finishing
    it, as finishSecret would."""
    try:
        versions = client.list_secret_version_ids(SecretId=arn)["Versions"]
    except (ClientError, BotoCoreError) as err:
        return [f"could not check {role}'s password rotation: {arn}: cannot list the secret's "
                f"versions ({aws_reason(err)})"]
    now = datetime.now(UTC)
    current = next((version["VersionId"] for version in versions
                    if "AWSCURRENT" in version.get("VersionStages", [])), None)
    for version in versions:
        stages = version.get("VersionStages", [])
        if "AWSPENDING" in stages and "AWSCURRENT" not in stages \
                and now - version["CreatedDate"] > STUCK_AFTER:
            begun = version["CreatedDate"].astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
            pending = version["VersionId"]
            stuck = (f"{role}'s password rotation begun {begun} has not ended (version "
                     f"{pending} is still AWSPENDING): a step failed, see the bootstrap "
                     "function's log. ")
            label = ("aws secretsmanager update-secret-version-stage --secret-id "
                     f"{arn} --version-stage")
            if database_has_pending:
                return [stuck + f"{role} logs in only with the pending password (setSecret "
                        "ran), which the function's runs use meanwhile. Finish it as "
                        f"finishSecret would: `{label} AWSCURRENT --move-to-version-id "
                        f"{pending} --remove-from-version-id {current}`, then `{label} "
                        f"AWSPENDING --remove-from-version-id {pending}`"]
            return [stuck + f"Until it ends, no other rotation starts, bootstrap runs set "
                    f"no password for {role}, and if setSecret ran, {role} logs in only with "
                    f"the pending password. End it with `{label} AWSPENDING "
                    f"--remove-from-version-id {pending}`, then `aws secretsmanager "
                    f"rotate-secret --secret-id {arn}`"]
    return []


def new_password() -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def _rotation_event(event: dict[str, Any]) -> tuple[str, str, str]:
    missing = [name for name in EVENT_FIELDS
               if not isinstance(event.get(name), str) or not event[name]]
    if missing:
        raise BootstrapError(f"the rotation event lacks {', '.join(missing)}: Secrets Manager "
                             "sends them; start a rotation with `aws secretsmanager "
                             "rotate-secret --secret-id <the Owner or master secret>`")
    step = _STEP_ALIASES.get(event["Step"], event["Step"])
    if step not in STEPS:
        raise BootstrapError(f"Step {event['Step']!r}: expected one of {', '.join(STEPS)}")
    return step, event["SecretId"], event["ClientRequestToken"]


def _describe(client: Any, arn: str, field: str) -> dict[str, Any]:
    try:
        return dict(client.describe_secret(SecretId=arn))
    except (ClientError, BotoCoreError) as err:
        raise BootstrapError(f"{field} {arn}: cannot describe the secret "
                             f"({aws_reason(err)})") from None


def _version_stages(client: Any, arn: str, token: str) -> list[str]:
    metadata = _describe(client, arn, "SecretId")
    if not metadata.get("RotationEnabled"):
        raise BootstrapError(f"SecretId {arn}: rotation is not enabled for this secret; the "
                             "TenantBootstrap construct's rotation schedules enable it")
    versions = metadata.get("VersionIdsToStages", {})
    if token not in versions:
        raise BootstrapError(f"SecretId {arn}: no version {token} (ClientRequestToken); "
                             "Secrets Manager makes it when it starts the rotation")
    return list(versions[token])


def _pending(client: Any, arn: str, token: str) -> dict[str, Any] | None:
    """The pending version's value, or None while it has none (before createSecret)."""
    return secret_version_json(client, arn, "SecretId", VersionId=token,
                               VersionStage="AWSPENDING")


def _rotated(client: Any, arn: str, master_arn: str) -> Rotated:
    """The master's secret (the one the function's environment names) or boom_owner's (its
    username says so); BootstrapError for any other."""
    if _same_secret(client, arn, master_arn):
        current = secret_json(client, arn, "SecretId")
        if not isinstance(current.get("username"), str) or not current["username"]:
            raise BootstrapError(f"SecretId {arn}: the master secret's current version has no "
                                 "username; point the rotation at the RDS instance's attached "
                                 "master secret")
        return Rotated(current["username"], True, master_arn)
    return Rotated(OWNER_ROLE, False, master_arn)


def _same_secret(client: Any, arn: str, master_arn: str) -> bool:
    """Whether `arn` (Secrets Manager's SecretId, a full ARN) is the master secret. The
    environment's ARN is CloudFormation's Ref of the secret's attachment; were it ever another
    form of the same secret (its name, an ARN without the suffix), the secrets' described
    ARNs still agree."""
    if arn == master_arn:
        return True
    return bool(_describe(client, arn, "SecretId").get("ARN") ==
                _describe(client, master_arn, MASTER_SECRET_VARIABLE).get("ARN"))


def _role_secret(value: dict[str, Any], arn: str, what: str, rotated: Rotated) -> dict[str, Any]:
    """`value` if it is the rotated role's, with a password long enough; never echoes the
    value."""
    if value.get("username") != rotated.role:
        raise BootstrapError(
            f"SecretId {arn}: the {what} version's username is not {rotated.role}; this "
            f"function rotates only {OWNER_ROLE}'s secret and the master secret (app_user's "
            "waits for PgBouncer to follow a new password)")
    if not long_enough(value.get("password")):
        raise BootstrapError(f"SecretId {arn}: the {what} version needs a \"password\" of at "
                             f"least {MIN_PASSWORD_CHARS} characters")
    return value


def _create(client: Any, arn: str, token: str, rotated: Rotated) -> None:
    current = _role_secret(secret_json(client, arn, "SecretId"), arn, "current", rotated)
    pending = _pending(client, arn, token)
    if pending is not None:
        # A retry: keep the password the first try made. The current one is no rotation:
        # the steps would "succeed" and leave the role's password as it was.
        if _role_secret(pending, arn, "pending", rotated)["password"] == current["password"]:
            raise BootstrapError(
                f"createSecret of {arn}: version {token} holds the current password, so the "
                "rotation would change nothing. Remove its label (`aws secretsmanager "
                f"update-secret-version-stage --secret-id {arn} --version-stage AWSPENDING "
                f"--remove-from-version-id {token}`) and start a new rotation")
        logger.info("createSecret: version %s already holds a password", token)
        return
    try:
        client.put_secret_value(SecretId=arn, ClientRequestToken=token,
                                SecretString=json.dumps({**current, "password": new_password()}),
                                VersionStages=["AWSPENDING"])
    except (ClientError, BotoCoreError) as err:
        raise BootstrapError(f"createSecret of {arn}: cannot store the new version "
                             f"({aws_reason(err)})") from None


def _pending_password(client: Any, arn: str, token: str, step: str, rotated: Rotated) -> str:
    pending = _pending(client, arn, token)
    if pending is None:
        raise BootstrapError(f"{step} of {arn}: version {token} has no value yet; "
                             "createSecret makes it")
    return str(_role_secret(pending, arn, "pending", rotated)["password"])


def _set(client: Any, arn: str, token: str, rotated: Rotated, run: Deadline) -> None:
    password = _pending_password(client, arn, token, "setSecret", rotated)
    # The master logs in with its current password, or, if a first try of this step changed
    # it, with the pending one (connect_as_master falls back to it): then there is nothing to
    # do. A step that connects with neither fails, and is retried.
    master, conn = connect_as_master(client, rotated.master_arn)
    if rotated.is_master and master.password == password:
        close(conn)
        logger.info("setSecret: the master already logs in with version %s's password", token)
        return
    try:
        run.bound_replies(conn)
        conn.run("BEGIN")
        run.bound_statements(conn)
        # Waits for a bootstrap run to end: the run sets passwords too (see the docstring).
        conn.run("SELECT pg_advisory_xact_lock(:key)", key=ADVISORY_LOCK)
        run.bound_statements(conn)
        conn.run(f"ALTER ROLE {pg8000.native.identifier(rotated.role)} PASSWORD "
                 f"{pg8000.native.literal(scram_verifier(password))}")
        conn.run("COMMIT")
    except CONNECTION_LOST as err:
        # Maybe while committing: the step is safe to run again, whichever it was.
        raise BootstrapError(f"setSecret of {arn} failed: the connection to the database was "
                             f"lost ({reason(err)}); whether {rotated.role}'s password was set "
                             "is unknown, and the step is safe to retry") from None
    except pg8000.native.DatabaseError as err:
        if run.cancelled(err):
            raise run.out_of_time() from None
        raise BootstrapError(f"setSecret of {arn} failed, {rotated.role}'s password is "
                             f"unchanged: {reason(err)}") from None
    finally:
        close(conn)


def _test(client: Any, arn: str, token: str, rotated: Rotated, run: Deadline) -> None:
    password = _pending_password(client, arn, token, "testSecret", rotated)
    master = master_connection(secret_json(client, rotated.master_arn, "MasterSecretArn"))
    try:
        # The master's database, host and verified TLS, as the role.
        conn = connect(dataclasses.replace(master, user=rotated.role, password=password))
    except BootstrapError as err:
        raise BootstrapError(f"testSecret of {arn}: {err}") from None
    try:
        run.bound_replies(conn)  # a database that stops answering fails the step in time
        user = conn.run("SELECT current_user")[0][0]
    except DRIVER_ERRORS as err:
        raise BootstrapError(f"testSecret of {arn}: {rotated.role} logged in with the pending "
                             f"password, then could not query: {reason(err)}") from None
    finally:
        close(conn)
    if user != rotated.role:
        raise BootstrapError(f"testSecret of {arn}: logged in as {user}, not {rotated.role}")


def _finish(client: Any, arn: str, token: str) -> None:
    """The pending version becomes current (the current one AWSPREVIOUS, by Secrets Manager),
    then loses AWSPENDING: a rotation that ended leaves none, which is what a bootstrap run
    and the next rotation read as "no rotation in progress"."""
    versions = _describe(client, arn, "SecretId").get("VersionIdsToStages", {})
    current = next((str(v) for v, stages in versions.items() if "AWSCURRENT" in stages), None)
    try:
        client.update_secret_version_stage(SecretId=arn, VersionStage="AWSCURRENT",
                                           MoveToVersionId=token,
                                           **({"RemoveFromVersionId": current}
                                              if current else {}))
        client.update_secret_version_stage(SecretId=arn, VersionStage="AWSPENDING",
                                           RemoveFromVersionId=token)
    except (ClientError, BotoCoreError) as err:
        raise BootstrapError(f"finishSecret of {arn}: cannot make version {token} current "
                             f"({aws_reason(err)})") from None


def _master_secret_arn() -> str:
    arn = os.environ.get(MASTER_SECRET_VARIABLE)
    if not arn:
        raise BootstrapError(f"{MASTER_SECRET_VARIABLE} is not set: the TenantBootstrap "
                             "construct sets it to the master secret's ARN, which a rotation "
                             "connects with")
    return arn
