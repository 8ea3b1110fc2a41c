"""Applies the versioned migrations in `migrations/` to one database, all or nothing, and
ends every run with enforce.py's checks in the same transaction; `check()` says what a run
would do, changing nothing.

Used by the custom resource (handler.py), the scheduled check (scheduled_check.py) and by
operators (`python -m lambdas.tenant_bootstrap`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import pg8000.native

from .connection import CONNECTION_LOST, DRIVER_ERRORS
from .connection import Connection as Connection  # re-exported for callers and tests
from .connection import connect as connect
from .connection import ssl_context_for as ssl_context_for
from .cron import failed_jobs, job_user_gaps, overdue_jobs, pg_cron_loaded, schedule_jobs
from .deadline import Deadline
from .enforce import enforce, gaps, restore, tables_to_protect
from .errors import BootstrapError as BootstrapError  # raised by every step; handler imports it
from .errors import BootstrapRunning, reason
from .locks import LockWait, blocked, lock_holders, stayed_in_use
from .migration_files import LATEST_VERSION as LATEST_VERSION  # the deploy's target
from .migration_files import Migration, event_triggers, load_migrations
from .passwords import check_role_passwords, scram_verifier
from .shipped import definitions

logger = logging.getLogger(__name__)
T = TypeVar("T")

ADVISORY_LOCK = 0x0B00_B007  # one bootstrap at a time per database (Lambda retries overlap)
# (0014) The version that bounds app_user's transactions, and the longest bound a run sets,
# in minutes (a day: the bound is also how long VACUUM may wait behind one transaction).
TRANSACTION_BOUND_VERSION = 14
MAX_TRANSACTION_MINUTES = 1440
PG_CRON_NOT_LOADED = (
    "pg_cron is not loaded for this database, so nothing ends stuck app_user backends (0014): "
    "the parameter group's shared_preload_libraries and cron.database_name apply when the "
    "instance starts. Reboot it at a quiet moment (RDS shows the group as pending-reboot); "
    "the next run or repair then schedules the jobs")
DEFAULT_LOCK_WAIT = LockWait()  # the deploy's and the CLI's (locks.py)
# A check waits this long at most for a table lock: a check only asks for one where drift
# needs a table altered, which is a finding whether or not the lock comes, so it never holds
# the application up for longer than a moment (a run's 2 s would, every 15 minutes).
CHECK_LOCK_TIMEOUT_MS = 100

# Where a run records the versions it applied, made by the first run. Each part is run only
# where it is missing: CREATE ... IF NOT EXISTS asks for the privilege to create even when the
# object exists, which a user that does not own the database may lack, and its run would then
# fail on its first statement instead of saying what it cannot do (0019's refusal, say).
META_SCHEMA_DDL = "CREATE SCHEMA boom_meta"
META_PRIVILEGES_DDL = "REVOKE ALL ON SCHEMA boom_meta FROM PUBLIC"
META_TABLE_DDL = """
CREATE TABLE boom_meta.schema_versions (
  version integer PRIMARY KEY,
  name text NOT NULL,
  checksum text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Result:
    previous_version: int
    version: int
    applied: tuple[int, ...]
    # Guarantees the bootstrap had to restore (empty when all was well); see enforce.py.
    repaired: tuple[str, ...] = ()


@dataclass(frozen=True)
class Check:
    version: int
    # What a bootstrap run would do or refuse now: migrations to apply, guarantees to restore,
    # gaps it would not override. Empty when all is well.
    findings: tuple[str, ...]


# Role passwords, or what reads them once the run holds the database (handler.py: a rotation
# in progress must be seen under the lock its setSecret takes, rotation.py).
Passwords = Mapping[str, str] | Callable[[], Mapping[str, str]]


def apply(conn: pg8000.native.Connection, *, target_version: int | None = None,
          role_passwords: Passwords | None = None, keep_newer: bool = False,
          app_user_connection_limit: int | None = None,
          app_user_transaction_minutes: int | None = None,
          lock_wait: LockWait = DEFAULT_LOCK_WAIT, deadline: float | None = None,
          migrate: bool = True) -> Result:
    """Applies migrations newer than the database's version, up to `target_version`.

    A database already newer than `target_version` is refused, unless `keep_newer`: then it is
    left at its version (migrations only go forward) and the run only sets the passwords and
    checks the guarantees. CloudFormation asks exactly that when it rolls back an update.
    `role_passwords` may be a function: each attempt calls it after taking the bootstrap's
    advisory lock, and a password it leaves out is left as it is.
    `app_user_connection_limit` caps app_user's connections in PostgreSQL itself (the
    PgBouncer budget, config_rules), so the rest stays free for migrations and operators even
    if more PgBouncers run than config allows; None leaves the role's limit as it is.
    `app_user_transaction_minutes` (version 14 on) is how long an app_user transaction may
    run before pg_cron's job ends it (0014); None leaves the database's bound as it is.
    A table lock that another transaction holds for longer than `lock_wait.timeout_ms` rolls
    the run back and tries again later (locks.py), so the application never queues behind it
    for longer than that. `deadline` (a `time.monotonic()` value; the handler's is Lambda's
    timeout less a margin) is when the run must have ended, committed or rolled back: no
    statement runs past it and no attempt starts that could not finish its lock wait by then.
    `migrate=False` (an operator's repair, repair.py) applies no migration: it refuses unless
    the database is at exactly `target_version`, then restores and checks the guarantees.
    """
    migrations = load_migrations()
    target = len(migrations) if target_version is None else target_version
    if not 1 <= target <= len(migrations):
        raise BootstrapError(f"unknown version {target}: this bootstrap has versions "
                             f"1 to {len(migrations)}")
    if app_user_connection_limit is not None and not _whole(app_user_connection_limit, 1):
        raise BootstrapError(f"app_user connection limit {app_user_connection_limit!r}: use a "
                             "whole number of at least 1 (the PgBouncer pools' worst case)")
    if app_user_transaction_minutes is not None and not _whole(
            app_user_transaction_minutes, 1, MAX_TRANSACTION_MINUTES):
        raise BootstrapError(f"app_user transaction minutes {app_user_transaction_minutes!r}: "
                             f"use a whole number from 1 to {MAX_TRANSACTION_MINUTES}")
    if not callable(role_passwords):
        check_role_passwords(role_passwords or {})
    run = Deadline(deadline, task="bootstrap" if migrate else "repair")
    pauses = lock_wait.pauses()
    for attempt in itertools.count(1):
        try:
            return _one_attempt(conn, run, lambda: _apply_in_transaction(
                conn, migrations, target, role_passwords or {}, keep_newer,
                app_user_connection_limit, app_user_transaction_minutes,
                lock_wait.timeout_ms, run, migrate),
                lock_timeout_ms=lock_wait.timeout_ms)
        except _Blocked as blocked_attempt:
            holders = _described_lock_holders(conn)
            pause = next(pauses, None)
            if pause is None or run.seconds_left() < pause + lock_wait.timeout_ms / 1000:
                raise stayed_in_use(attempt, lock_wait, holders,
                                    near_deadline=pause is not None) from None
            logger.warning("attempt %d of %d %s and rolled back; trying again in %.1f s. "
                           "Sessions holding table locks: %s", attempt, lock_wait.attempts,
                           blocked_attempt, pause, holders)
            time.sleep(pause)
    raise AssertionError("unreachable")


class _Blocked(Exception):
    """An attempt could not get its locks (locks.blocked() says how), and was rolled back."""


def _one_attempt(conn: pg8000.native.Connection, run: Deadline, work: Callable[[], T], *,
                 lock_timeout_ms: int, keep: bool = True) -> T:
    """`work` in one transaction, committed if `keep` (else rolled back: a check), or rolled
    back on an error, which is said plainly."""
    run.bound_replies(conn)
    committing = False
    try:
        conn.run("BEGIN")
        result = work()
        committing = keep
        conn.run("COMMIT" if keep else "ROLLBACK")
    except BaseException as err:
        if isinstance(err, CONNECTION_LOST):
            # No ROLLBACK: the connection is gone, or out of step with the server.
            raise run.connection_lost(err, committing=committing) from None
        _rollback(conn)
        if not isinstance(err, pg8000.native.DatabaseError):
            raise
        if run.cancelled(err):
            raise run.out_of_time() from None
        why = blocked(err, lock_timeout_ms)
        if why:
            raise _Blocked(why) from None
        raise BootstrapError(f"{run.task} failed, nothing was changed: "
                             f"{reason(err)}") from None
    return result


def check(conn: pg8000.native.Connection, *, lock_timeout_ms: int = CHECK_LOCK_TIMEOUT_MS,
          deadline: float | None = None, require_pg_cron: bool = False) -> Check:
    """What a bootstrap run would do now, changing nothing: the restoring part of a run, in a
    transaction that is always rolled back, then the audits. For the scheduled check between
    deploys (scheduled_check.py) and `--check` (the CLI). A restore that must alter a table
    takes its lock for the moment of the check, waiting at most `lock_timeout_ms` for it;
    if the table is in use for longer, the finding names the tables a run would alter.
    `require_pg_cron` (the Data stack's check: its parameter group loads pg_cron) makes a
    server that does not run pg_cron for this database a finding: nothing would end stuck
    app_user backends (0014).
    """
    run = Deadline(deadline, task="check")

    def dry_run() -> Check:
        # Never beside a run: each would wait on the other's table locks.
        if not _take_the_database(conn, run, lock_timeout_ms, wait=False):
            raise BootstrapRunning("check skipped: a bootstrap run, or a rotation's setSecret, "
                                   "is in progress (it holds the bootstrap's advisory lock); "
                                   "the next check looks again")
        version = current_version(conn)
        findings = _findings(conn, version, load_migrations())
        if version >= TRANSACTION_BOUND_VERSION and require_pg_cron and not pg_cron_loaded(conn):
            findings += (PG_CRON_NOT_LOADED,)
        if require_pg_cron or pg_cron_loaded(conn):  # the job runs as this user
            findings += tuple(job_user_gaps(conn))
        return Check(version, findings)

    try:
        return _one_attempt(conn, run, dry_run, lock_timeout_ms=lock_timeout_ms, keep=False)
    except _Blocked as blocked_check:
        return _blocked(conn, str(blocked_check))


def _blocked(conn: pg8000.native.Connection, why: str) -> Check:
    """A check that could not take a table lock: one finding, naming the tables a run would
    alter, read from the catalogs (no lock to wait for) after the rollback. A connection lost
    here is the check's failure, said as such, not a driver's traceback."""
    try:
        version = current_version(conn)
        tables = tables_to_protect(conn)
    except DRIVER_ERRORS as err:
        raise BootstrapError(f"check failed, nothing was changed: it {why} while restoring, "
                             f"then could not read the catalogs: {reason(err)}") from None
    in_use = f", so a run would repair a table in use: {', '.join(tables)}" if tables else ""
    return Check(version, (f"could not check: it {why} while restoring{in_use}. Sessions "
                           f"holding table locks: {_described_lock_holders(conn)}",))


def _findings(conn: pg8000.native.Connection, version: int,
              migrations: list[Migration]) -> tuple[str, ...]:
    latest = len(migrations)
    if version < latest:
        return (f"database at version {version}, this bootstrap's latest is {latest}: a run "
                f"would apply {latest - version} migration(s)",)
    if version > latest:
        return (f"database at version {version}, newer than this bootstrap's {latest} (a "
                "deploy rolled back after migrating, or an older stack): deploy the code that "
                "migrated it; this one cannot vouch for a schema it does not know",)
    # Before restore, which may make a job anew.
    stopped = (*failed_jobs(conn), *overdue_jobs(conn))
    restored = restore(conn, event_triggers(migrations, version), definitions(migrations))
    return (*(f"would restore: {item}" for item in restored),
            *(f"would refuse: {gap}" for gap in gaps(conn)), *stopped)


def current_version(conn: pg8000.native.Connection) -> int:
    rows = conn.run("SELECT to_regclass('boom_meta.schema_versions') IS NOT NULL")
    if not rows[0][0]:
        return 0
    return int(conn.run("SELECT coalesce(max(version), 0) FROM boom_meta.schema_versions")[0][0])


def _apply_in_transaction(conn: pg8000.native.Connection, migrations: list[Migration],
                          target: int, role_passwords: Passwords,
                          keep_newer: bool, app_user_connection_limit: int | None,
                          app_user_transaction_minutes: int | None,
                          lock_timeout_ms: int, run: Deadline, migrate: bool) -> Result:
    _take_the_database(conn, run, lock_timeout_ms, wait=True)
    # Read before any table is locked: a secret's read may take seconds.
    passwords = role_passwords() if callable(role_passwords) else role_passwords
    check_role_passwords(passwords)
    _make_meta(conn)
    applied = {int(v): c for v, c in conn.run(
        "SELECT version, checksum FROM boom_meta.schema_versions")}
    for migration in migrations:
        if migration.version in applied and applied[migration.version] != migration.checksum:
            raise BootstrapError(f"migration {migration.version:04d}_{migration.name} changed "
                                 "after it was applied; add a new migration instead")
    previous = max(applied, default=0)
    if not migrate and previous != target:
        raise BootstrapError(
            f"database at version {previous}, this code's is {target}: a repair applies no "
            "migration and vouches only for the schema its own code made. "
            + ("Deploy, which migrates" if previous < target else
               "Deploy the code that migrated it") + "; nothing was changed")
    if previous > target and not keep_newer:
        raise BootstrapError(f"database is at version {previous}, newer than the requested "
                             f"{target}; refusing to downgrade (Delete never drops data either)")
    done = []
    for migration in migrations[previous:target]:
        run.bound_statements(conn)
        conn.execute_simple(migration.sql)
        conn.run("INSERT INTO boom_meta.schema_versions (version, name, checksum) "
                 "VALUES (:v, :n, :c)", v=migration.version, n=migration.name,
                 c=migration.checksum)
        done.append(migration.version)
    for role, password in sorted(passwords.items()):
        conn.run(f"ALTER ROLE {pg8000.native.identifier(role)} PASSWORD "
                 f"{pg8000.native.literal(scram_verifier(password))}")
    if app_user_connection_limit is not None:
        conn.run(f"ALTER ROLE app_user CONNECTION LIMIT {int(app_user_connection_limit)}")
    if app_user_transaction_minutes is not None:
        _set_transaction_bound(conn, app_user_transaction_minutes)
    if TRANSACTION_BOUND_VERSION in done:
        schedule_jobs(conn)  # made with the migration that needs them: not a repair
    run.bound_statements(conn)
    # The shipped functions as the database's version defines them; none from a version
    # this code does not know (a rolled-back deploy keeps the newer schema).
    version = max(previous, target)
    functions = definitions(migrations[:version]) if version <= len(migrations) else {}
    repaired = enforce(conn, event_triggers(migrations, version), functions)
    return Result(previous_version=previous, version=version, applied=tuple(done),
                  repaired=repaired)


def _make_meta(conn: pg8000.native.Connection) -> None:
    """boom_meta and its versions table, each made if missing; PUBLIC's access revoked (a
    WARNING, not an error, for a user that does not own the schema)."""
    [[schema, table, may_create, database, user]] = conn.run(
        "SELECT to_regnamespace('boom_meta') IS NOT NULL, "
        "to_regclass('boom_meta.schema_versions') IS NOT NULL, "
        "has_database_privilege(current_database(), 'CREATE'), current_database(), current_user")
    if not schema:
        if not may_create:
            raise BootstrapError(
                f"{user} may not create schemas in database {database}, which the first run "
                "needs (boom_meta, app): run the bootstrap as the database's owner (RDS's "
                "master), or GRANT CREATE ON DATABASE to this user as the owner; nothing was "
                "changed")
        conn.run(META_SCHEMA_DDL)
    conn.run(META_PRIVILEGES_DDL)
    if not table:
        conn.execute_simple(META_TABLE_DDL)


def _set_transaction_bound(conn: pg8000.native.Connection, minutes: int) -> None:
    """(0014) The bound pg_cron's job ends app_user transactions at, in minutes."""
    if not conn.run("SELECT to_regclass('boom_meta.app_user_transaction_bound') IS NOT NULL"
                    )[0][0]:
        raise BootstrapError(f"an app_user transaction bound needs schema version "
                             f"{TRANSACTION_BOUND_VERSION} or later, and this run stays older: "
                             "leave the bound out, or target a newer version; nothing was "
                             "changed")
    conn.run("UPDATE boom_meta.app_user_transaction_bound SET bound = make_interval(mins => :m)",
             m=int(minutes))


def _whole(value: object, low: int, high: int | None = None) -> bool:
    """Whether `value` is an int (not a bool) from `low` to `high` (no upper end if None)."""
    return (isinstance(value, int) and not isinstance(value, bool) and value >= low
            and (high is None or value <= high))


def _take_the_database(conn: pg8000.native.Connection, run: Deadline, lock_timeout_ms: int, *,
                       wait: bool) -> bool:
    """The start of every run's and check's transaction: refused on a read replica,
    statements bounded by the deadline, the bootstrap's advisory lock (waited for until the
    other run ends or the deadline, if `wait`; else only tried: False when another run holds
    it), and only then lock waits on the application's tables bounded by `lock_timeout_ms`."""
    run.bound_statements(conn)
    if conn.run("SELECT pg_is_in_recovery()")[0][0]:
        # Its first write would fail with PostgreSQL's "cannot execute ... in a read-only
        # transaction", which does not say why.
        raise BootstrapError(
            f"the server is a read replica (in recovery), where the {run.task} cannot write: "
            "run it against the primary (the instance's own endpoint), or promote the replica "
            "first; nothing was changed")
    if wait:
        conn.run("SELECT pg_advisory_xact_lock(:key)", key=ADVISORY_LOCK)
    elif not conn.run("SELECT pg_try_advisory_xact_lock(:key)", key=ADVISORY_LOCK)[0][0]:
        return False
    conn.run(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
    return True


def _described_lock_holders(conn: pg8000.native.Connection) -> str:
    try:
        return lock_holders(conn)
    except DRIVER_ERRORS as err:
        return f"(could not list them: {reason(err)})"


def _rollback(conn: pg8000.native.Connection) -> None:
    # If the connection is gone, the server rolls back on its own.
    with contextlib.suppress(*DRIVER_ERRORS):
        conn.run("ROLLBACK")
