"""The alarm on stuck app_user backends that pg_cron's job ended (migration 0014): a metric
filter on the PostgreSQL log group RDS exports to counts exactly the line the job's function
logs, and the alarm on that count notifies the Data stack's topic. That the function logs the
line, on real PostgreSQL, is test_stuck_app_user_backends.py's; that the topic can deliver is
test_tenant_guarantee_check_stack.py's (every alarm action)."""

from __future__ import annotations

from pathlib import Path

from lambdas.tenant_bootstrap.bootstrap import MIGRATIONS_DIR, load_migrations
from lambdas.tenant_bootstrap.cron import STUCK_BACKEND_LOG
from lambdas.tenant_bootstrap.scheduled_check import METRIC_NAMESPACE
from lambdas.tenant_bootstrap.shipped import definitions
from tests.fixture_synth import Synthesized
from tests.fixture_synth import one_data_resource_with_id as one


def test_the_filter_counts_the_job_s_log_lines_in_the_exported_postgresql_log(
        synthesized: Synthesized) -> None:
    _, metric_filter = one(synthesized, "AWS::Logs::MetricFilter", "StuckBackendAlarmFilter")
    props = metric_filter["Properties"]
    log_group_id, log_group = one(synthesized, "AWS::Logs::LogGroup", "DatabasePostgresqlLogs")
    assert props["LogGroupName"] == {"Ref": log_group_id}
    # The group RDS exports the instance's postgresql log to
    assert log_group["Properties"]["LogGroupName"] == (
        f"/aws/rds/instance/boom-{synthesized.config.name}-db/postgresql")
    # A quoted term: the exact phrase, anywhere in the line (after RDS's log_line_prefix)
    assert props["FilterPattern"] == f'"{STUCK_BACKEND_LOG}"'
    [transformation] = props["MetricTransformations"]
    assert transformation == {"MetricNamespace": METRIC_NAMESPACE,
                              "MetricName": f"StuckBackendsEnded-{synthesized.config.name}",
                              "MetricValue": "1", "DefaultValue": 0}


def test_the_phrase_is_the_one_the_job_s_function_logs() -> None:
    # Each migration's RAISE LOG begins with the phrase the filter looks for (its run on real
    # PostgreSQL logs it: test_stuck_app_user_backends.py, test_app_user_table_locks.py):
    # 0014's, and the definition in force, the latest (0016's).
    [migration] = sorted(Path(MIGRATIONS_DIR).glob("0014_*.sql"))
    assert f"RAISE LOG '{STUCK_BACKEND_LOG} %: %'" in migration.read_text()
    latest = definitions(load_migrations())["app.end_stuck_app_user_backends"]
    assert f"RAISE LOG '{STUCK_BACKEND_LOG} %: %'" in latest.sql


def test_the_alarm_names_every_reason_the_job_ends_a_backend(synthesized: Synthesized) -> None:
    _, alarm = one(synthesized, "AWS::CloudWatch::Alarm", "StuckBackendAlarm")
    description = alarm["Properties"]["AlarmDescription"]
    for reason in ("app_user_transaction_minutes", "session-level advisory lock",
                   "table lock others waited for", "LOCK TABLE"):
        assert reason in description


def test_one_ended_backend_notifies(synthesized: Synthesized) -> None:
    _, alarm = one(synthesized, "AWS::CloudWatch::Alarm", "StuckBackendAlarm")
    props = alarm["Properties"]
    assert (props["Namespace"], props["MetricName"]) == (
        METRIC_NAMESPACE, f"StuckBackendsEnded-{synthesized.config.name}")
    assert (props["Statistic"], props["Period"], props["Threshold"]) == ("Sum", 300, 1)
    assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert props["EvaluationPeriods"] == 1
    assert props["TreatMissingData"] == "notBreaching"  # no log events: nothing was ended
    topic_id, _ = one(synthesized, "AWS::SNS::Topic", "AlarmTopic")
    assert props["AlarmActions"] == props["OKActions"] == [{"Ref": topic_id}]
