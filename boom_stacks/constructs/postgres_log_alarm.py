"""An alarm on a kind of line in the PostgreSQL log, which RDS exports to CloudWatch Logs: a
metric filter counts the lines its pattern matches, and one such line in 5 minutes notifies
the alarm topic (and its end, the OK). No Lambda, API call or permission is involved.

Each alarm is a LogAlarmSpec, made by its own module (stuck_backend_alarm.py, ...), which says
what the lines mean. The lines are ones the migrations' functions log (RAISE LOG or WARNING;
`phrase` gives the pattern for the phrase they begin with) or PostgreSQL's own errors, each
shown in the real server's log by the tests that cause them.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from constructs import Construct

from boom_stacks.config import EnvironmentConfig
from lambdas.tenant_bootstrap.scheduled_check import METRIC_NAMESPACE

PERIOD = Duration.minutes(5)


@dataclass(frozen=True)
class LogAlarmSpec:
    """One alarm on the PostgreSQL log: the filter pattern of the lines it counts, its
    metric's name (the environment's name is added) and what it tells the operator."""
    filter_pattern: str
    metric_name: str
    description: str


def phrase(text: str) -> str:
    """The filter pattern for lines containing `text` exactly: a quoted term."""
    return f'"{text}"'


class PostgresLogAlarm(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig,
                 postgresql_logs: logs.ILogGroup, alarm_topic: sns.ITopic,
                 spec: LogAlarmSpec) -> None:
        super().__init__(scope, id_)
        # A metric filter cannot add a fixed dimension, as the scheduled check's Environment
        # is: the environment is in the name, so environments sharing an account keep their
        # own counts.
        metric_name = f"{spec.metric_name}-{config.name}"
        self.metric_filter = logs.MetricFilter(
            self, "Filter", log_group=postgresql_logs,
            filter_pattern=logs.FilterPattern.literal(spec.filter_pattern),
            metric_namespace=METRIC_NAMESPACE, metric_name=metric_name, metric_value="1",
            default_value=0)
        metric = cloudwatch.Metric(namespace=METRIC_NAMESPACE, metric_name=metric_name,
                                   statistic="Sum", period=PERIOD)
        self.alarm = cloudwatch.Alarm(
            self, "Alarm", metric=metric, threshold=1, evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            # The filter publishes 0 for log events without a match; no events at all is quiet.
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"Boom {config.name}: {spec.description}")
        notify = actions.SnsAction(alarm_topic)
        self.alarm.add_alarm_action(notify)
        self.alarm.add_ok_action(notify)
