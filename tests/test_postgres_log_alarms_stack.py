"""The alarms on lines in the PostgreSQL log (constructs/postgres_log_alarm.py): a metric
filter on the log group RDS exports to counts exactly the lines of one kind, and the alarm on
that count notifies the Data stack's topic.
- StuckBackendAlarm: pg_cron's job ended stuck app_user backends (0014, 0016), a phrase the
  function logs. That it does, on real PostgreSQL, is test_stuck_app_user_backends.py's.
- PooledConnectionAlarm: set_tenant() ended a pooled server connection (0011's read-only
  default, 0020's replaced statement), a phrase set_tenant logs. That it does is
  test_pgbouncer_statement_hijack.py's.
- TenantBoundaryAlarm: row-level security refused a write, PostgreSQL's own error, a phrase.
  That the real server logs it for each kind of refused write, and not otherwise, is
  test_tenant_boundary_log.py's.
- RemovedStatementAlarm: clients failed on a PgBouncer statement removed behind its back,
  PostgreSQL's own error, matched by a regular expression. That the real server's line
  matches it, and no other line does, is test_pgbouncer_prepared_statements.py's.
That the topic can deliver is test_tenant_guarantee_check_stack.py's (every alarm action)."""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import pytest

from boom_stacks.constructs.pooled_connection_alarm import POOLED_CONNECTION_ENDED_LOG
from boom_stacks.constructs.removed_statement_alarm import REMOVED_STATEMENT_PATTERN
from boom_stacks.constructs.tenant_boundary_alarm import TENANT_WRITE_REFUSED_LOG
from lambdas.tenant_bootstrap.cron import STUCK_BACKEND_LOG
from lambdas.tenant_bootstrap.migration_files import MIGRATIONS_DIR, load_migrations
from lambdas.tenant_bootstrap.scheduled_check import METRIC_NAMESPACE
from lambdas.tenant_bootstrap.shipped import definitions
from tests.fixture_synth import Synthesized
from tests.fixture_synth import one_data_resource_with_id as one

# What a CloudWatch Logs regular expression may contain (the filter pattern syntax page):
# letters, digits, the symbols _ # = @ / ; , - and the operators ^ $ ? [ ] { } | \ * + . ;
# anything else (a space, a quote, parentheses) is refused when the filter is created.
CLOUDWATCH_REGEX_CHARACTERS = set(string.ascii_letters + string.digits + "_#=@/;,-^$?[]{}|\\*+.")


@dataclass(frozen=True)
class LogAlarm:
    construct_id: str
    filter_pattern: str
    metric_name: str
    # Each reason the alarm can go off, as its description names it
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class PhraseAlarm(LogAlarm):
    # Where the filter's phrase is logged: migration glob -> the log statement it begins, and
    # the function whose definition in force (the latest migration's) must still log it
    logged_by: tuple[tuple[str, str], ...]
    function: str


PHRASE_ALARMS = {
    "stuck-backends": PhraseAlarm(
        "StuckBackendAlarm", f'"{STUCK_BACKEND_LOG}"', "StuckBackendsEnded",
        ("app_user_transaction_minutes", "session-level advisory lock",
         "table lock others waited for", "LOCK TABLE"),
        (("0014_*.sql", f"RAISE LOG '{STUCK_BACKEND_LOG} %: %'"),),
        "app.end_stuck_app_user_backends"),
    "pooled-connections": PhraseAlarm(
        "PooledConnectionAlarm", f'"{POOLED_CONNECTION_ENDED_LOG}"', "PooledConnectionsEnded",
        ("PgBouncer's prepared statements by SQL PREPARE", "SQL injection",
         "default_transaction_read_only"),
        (("0011_*.sql", f"RAISE WARNING '{POOLED_CONNECTION_ENDED_LOG}: "
                        "default_transaction_read_only "),
         ("0020_*.sql", f"RAISE WARNING '{POOLED_CONNECTION_ENDED_LOG}: PgBouncer''s "
                        "statement % was ")),
        "app.set_tenant"),
}
ALARMS: dict[str, LogAlarm] = {
    **PHRASE_ALARMS,
    "tenant-writes-refused": LogAlarm(
        "TenantBoundaryAlarm", f'"{TENANT_WRITE_REFUSED_LOG}"', "TenantWritesRefused",
        ("a tenant other than the one it bound", "without binding one",
         "missing app.set_tenant()", "tenant_id taken from the request", "SQL injection")),
    "removed-statements": LogAlarm(
        "RemovedStatementAlarm", REMOVED_STATEMENT_PATTERN, "PgBouncerStatementsMissing",
        ("26000", "DEALLOCATE by name", "DEALLOCATE ALL inside a DO block", "SQL injection",
         "server_lifetime replaces it (5 minutes", "pg_terminate_backend(<pid>)")),
}


@pytest.fixture(params=list(ALARMS))
def alarm(request: pytest.FixtureRequest) -> LogAlarm:
    return ALARMS[request.param]


@pytest.fixture(params=list(PHRASE_ALARMS))
def phrase_alarm(request: pytest.FixtureRequest) -> PhraseAlarm:
    return PHRASE_ALARMS[request.param]


def test_the_filter_counts_the_phrase_in_the_exported_postgresql_log(
        synthesized: Synthesized, alarm: LogAlarm) -> None:
    _, metric_filter = one(synthesized, "AWS::Logs::MetricFilter", f"{alarm.construct_id}Filter")
    props = metric_filter["Properties"]
    log_group_id, log_group = one(synthesized, "AWS::Logs::LogGroup", "DatabasePostgresqlLogs")
    assert props["LogGroupName"] == {"Ref": log_group_id}
    # The group RDS exports the instance's postgresql log to
    assert log_group["Properties"]["LogGroupName"] == (
        f"/aws/rds/instance/boom-{synthesized.config.name}-db/postgresql")
    # A quoted term (the exact phrase) or a regular expression, either anywhere in the line
    # (after RDS's log_line_prefix)
    assert props["FilterPattern"] == alarm.filter_pattern
    [transformation] = props["MetricTransformations"]
    assert transformation == {"MetricNamespace": METRIC_NAMESPACE,
                              "MetricName": f"{alarm.metric_name}-{synthesized.config.name}",
                              "MetricValue": "1", "DefaultValue": 0}


def test_the_phrase_begins_what_the_functions_log(phrase_alarm: PhraseAlarm) -> None:
    # Each migration's log statement begins with the phrase the filter looks for (its quoted
    # term), and so does the definition in force, the latest
    alarm = phrase_alarm
    phrase = alarm.filter_pattern.removeprefix('"').removesuffix('"')
    latest = definitions(load_migrations())[alarm.function].sql
    for pattern, statement in alarm.logged_by:
        assert statement.split("'", 1)[1].startswith(phrase)
        [migration] = sorted(Path(MIGRATIONS_DIR).glob(pattern))
        assert statement in migration.read_text()
        assert statement in latest


def test_the_regular_expression_is_one_cloudwatch_accepts() -> None:
    # One pattern between % signs, of the characters the syntax allows (so the deploy does not
    # fail on it), with no ( or ) and none of the phrases' quotes
    pattern = REMOVED_STATEMENT_PATTERN
    assert pattern.startswith("%") and pattern.endswith("%") and pattern.count("%") == 2
    assert set(pattern.strip("%")) <= CLOUDWATCH_REGEX_CHARACTERS
    assert set(" \"'()") & set(pattern) == set()


def test_the_alarm_names_every_reason(synthesized: Synthesized, alarm: LogAlarm) -> None:
    _, resource = one(synthesized, "AWS::CloudWatch::Alarm", alarm.construct_id)
    description = resource["Properties"]["AlarmDescription"]
    for reason in alarm.reasons:
        assert reason in description


def test_one_line_notifies(synthesized: Synthesized, alarm: LogAlarm) -> None:
    _, resource = one(synthesized, "AWS::CloudWatch::Alarm", alarm.construct_id)
    props = resource["Properties"]
    assert (props["Namespace"], props["MetricName"]) == (
        METRIC_NAMESPACE, f"{alarm.metric_name}-{synthesized.config.name}")
    assert (props["Statistic"], props["Period"], props["Threshold"]) == ("Sum", 300, 1)
    assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert props["EvaluationPeriods"] == 1
    assert props["TreatMissingData"] == "notBreaching"  # no log events: nothing was ended
    topic_id, _ = one(synthesized, "AWS::SNS::Topic", "AlarmTopic")
    assert props["AlarmActions"] == props["OKActions"] == [{"Ref": topic_id}]
