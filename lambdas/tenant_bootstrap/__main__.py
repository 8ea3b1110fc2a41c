"""Operators and local databases: `python -m lambdas.tenant_bootstrap --dsn postgresql://...`.

Role passwords come from the environment (BOOM_APP_USER_PASSWORD, BOOM_OWNER_PASSWORD), never
from the command line, where `ps` would show them. Without them the roles keep their password.
`--check` changes nothing: it lists what a run would do or refuse, and exits 3 if anything.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import parse_qsl, unquote, urlsplit

from .bootstrap import MAX_TRANSACTION_MINUTES, apply, check
from .connection import MAX_PORT, Connection, close, connect
from .errors import BootstrapError
from .migration_files import LATEST_VERSION
from .passwords import check_role_passwords
from .whole_number import counted, span

PASSWORD_VARIABLES = {"app_user": "BOOM_APP_USER_PASSWORD", "boom_owner": "BOOM_OWNER_PASSWORD"}
DSN_PARAMETERS = ("sslmode", "sslrootcert")
CHECK_FOUND = 3  # --check's exit code when a run would change or refuse something
# What an error shows of a DSN: the password after the user name (up to the last '@', so a
# raw '/', '?', '#' or '@' in it is covered too) and a password parameter become ***.
_USERINFO_PASSWORD = re.compile(r"(?<=://)([^:@/]*):.*@", re.DOTALL)
_PASSWORD_PARAMETER = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)
# urlsplit drops tabs and line breaks anywhere, and spaces and control characters at either
# end, without a word: "db\n" read from a file would have become "db".
_UNSAFE_CHARACTER = re.compile(r"[\x00-\x20\x7f]")


def parse_dsn(dsn: str, environ: Mapping[str, str]) -> Connection:
    shown = _redacted(dsn)
    if _UNSAFE_CHARACTER.search(dsn):
        raise BootstrapError(f"--dsn {shown!r}: contains a space, line break or control "
                             "character: remove it, or percent-encode a space (%20)")
    try:
        parts = urlsplit(dsn)
    except ValueError:  # an unclosed '[', or one around what is not an IPv6 address
        raise BootstrapError(f"--dsn {shown!r}: a host in brackets is an IPv6 address, "
                             "e.g. postgresql://postgres@[::1]:5432/boom_booking") from None
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if "@" in parts.path + parts.fragment + "".join(name for name, _ in pairs):
        # The netloc ends at the first '/', '?' or '#' (libpq's too): one of them in the
        # password put the rest of it in the path, a parameter's name or the fragment. (A
        # parameter's value may hold one: an sslrootcert under /home/jane@corp/.)
        raise BootstrapError(f"--dsn {shown!r}: percent-encode '/', '?', '#' and '@' in the "
                             "user name and password (%2F, %3F, %23, %40)")
    if parts.fragment:
        raise BootstrapError(f"--dsn {shown!r}: a DSN has no #fragment: remove it, or "
                             "percent-encode '#' in a name (%23)")
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise BootstrapError(f"--dsn {shown!r}: expected postgresql://user@host:port/db")
    database = unquote(parts.path.lstrip("/"))  # percent-decoded, as libpq does
    if not database or not parts.username:
        raise BootstrapError(f"--dsn {shown!r}: name the user and the database, "
                             "e.g. postgresql://postgres@localhost:5432/boom_booking")
    try:
        port = 5432 if parts.port is None else parts.port  # ":0" was taken as 5432
    except ValueError:
        port = 0
    if not 1 <= port <= MAX_PORT:
        raise BootstrapError(f"--dsn {shown!r}: the port is not a number from 1 to "
                             f"{MAX_PORT} (or leave it out for 5432)")
    query = dict(pairs)
    repeated = sorted(name for name, times in Counter(n for n, _ in pairs).items() if times > 1)
    if repeated:
        # Which one would count? libpq takes the last; a reader may believe the first.
        raise BootstrapError(f"--dsn: {', '.join(repeated)} given more than once: give each "
                             "parameter once")
    unknown = sorted(set(query) - set(DSN_PARAMETERS))
    if unknown:
        # A misspelt sslrootcert fell back to the system's CAs: a certificate error, not a name.
        raise BootstrapError(f"--dsn parameters {', '.join(unknown)} are not supported: use "
                             f"{' and '.join(DSN_PARAMETERS)} (see --help)")
    sslmode = query.get("sslmode", "verify-full")
    if query.get("sslrootcert") == "":
        raise BootstrapError("--dsn: sslrootcert is empty: name a PEM file of CA certificates, "
                             "or leave it out to trust the system's CAs")
    if "sslrootcert" in query and sslmode != "verify-full":
        # libpq would verify the CA with sslmode=require and a root certificate; this would
        # not: refuse rather than leave the operator believing the server was verified.
        raise BootstrapError(f"--dsn: sslrootcert is used with sslmode=verify-full only, not "
                             f"{sslmode}: drop sslmode (verify-full is the default) or "
                             "sslrootcert")
    return Connection(
        host=parts.hostname, port=port, database=database, user=unquote(parts.username),
        password=unquote(parts.password) if parts.password else environ.get("PGPASSWORD"),
        sslmode=sslmode, ca_file=query.get("sslrootcert"))


def _redacted(dsn: str) -> str:
    """The DSN as errors show it: no password, however malformed the rest."""
    return _PASSWORD_PARAMETER.sub(r"\1***", _USERINFO_PASSWORD.sub(r"\1:***@", dsn, count=1))


def _version(raw: str) -> int:
    """--target-version, checked before anything connects."""
    version = counted(raw, LATEST_VERSION)
    if version is None:
        raise argparse.ArgumentTypeError(
            f"{raw!r}: this bootstrap has versions 1 to {LATEST_VERSION}")
    return version


def _number_argument(high: int | None, unit: str) -> Callable[[str], int]:
    """An argparse type: a whole number from 1 (to `high`), checked before anything connects;
    `unit` says what it counts, for the message."""
    def parse(raw: str) -> int:
        value = counted(raw, high)
        if value is None:
            raise argparse.ArgumentTypeError(f"{raw!r}: use a whole number {span(high)} ({unit})")
        return value
    return parse


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(prog="python -m lambdas.tenant_bootstrap",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dsn", required=True,
                        help="postgresql://user[:password]@host[:port]/database"
                             "[?sslmode=verify-full|require|disable&sslrootcert=ca.pem]; "
                             "the password may come from PGPASSWORD instead")
    parser.add_argument("--target-version", type=_version, default=None, metavar="N",
                        help=f"apply up to this version (default: latest, {LATEST_VERSION})")
    parser.add_argument("--app-user-connection-limit", default=None, metavar="N",
                        type=_number_argument(None, "the PgBouncer pools' worst case"),
                        help="set app_user's CONNECTION LIMIT (the deploy sets the PgBouncer "
                             "pools' worst case; default: leave it as it is)")
    parser.add_argument("--app-user-transaction-minutes", default=None, metavar="N",
                        type=_number_argument(MAX_TRANSACTION_MINUTES, "minutes"),
                        help="end app_user transactions older than N minutes (pg_cron's job, "
                             "where the server loads pg_cron for this database; the deploy "
                             "sets config's; default: leave the database's bound as it is)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing: list what a run would apply, restore or refuse, "
                             f"and exit {CHECK_FOUND} if anything (0: all is well)")
    args = parser.parse_args(argv)
    if args.check and (args.target_version or args.app_user_connection_limit
                       or args.app_user_transaction_minutes):
        parser.error("--check takes only --dsn: it checks the database against this "
                     "bootstrap's latest version and changes nothing")
    if args.check:
        return _check(args.dsn, environ)
    passwords = {role: environ[var] for role, var in PASSWORD_VARIABLES.items() if var in environ}
    try:
        target = parse_dsn(args.dsn, environ)
        check_role_passwords(passwords)
        conn = connect(target)
        try:
            result = apply(conn, target_version=args.target_version, role_passwords=passwords,
                           app_user_connection_limit=args.app_user_connection_limit,
                           app_user_transaction_minutes=args.app_user_transaction_minutes)
        finally:
            close(conn)
    except BootstrapError as err:
        print(f"tenant bootstrap: {err}", file=sys.stderr)
        return 1
    applied = ", ".join(map(str, result.applied)) or "none"
    print(f"tenant bootstrap: {target.database} at version {result.version} "
          f"(was {result.previous_version}; applied: {applied}; "
          f"passwords set: {', '.join(sorted(passwords)) or 'none'})")
    for repair in result.repaired:
        print(f"tenant bootstrap: repaired: {repair}")
    return 0


def _check(dsn: str, environ: Mapping[str, str]) -> int:
    try:
        target = parse_dsn(dsn, environ)
        conn = connect(target)
        try:
            result = check(conn)
        finally:
            close(conn)
    except BootstrapError as err:
        print(f"tenant bootstrap: {err}", file=sys.stderr)
        return 1
    for finding in result.findings:
        print(f"tenant bootstrap: check: {finding}")
    print(f"tenant bootstrap: {target.database} at version {result.version}: "
          f"{len(result.findings)} finding(s), nothing changed")
    return CHECK_FOUND if result.findings else 0


if __name__ == "__main__":
    sys.exit(main())
