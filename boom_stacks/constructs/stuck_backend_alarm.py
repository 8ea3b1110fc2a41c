"""Notifies when pg_cron's job has ended app_user backends that held up the others (migration
0014: a transaction older than the bound, a pooled connection left holding a session-level
advisory lock; 0016: a LOCK TABLE others waited for). Each such end is a client's transaction
lost, and the sign of a bug in the application (a loop inside one transaction,
pg_advisory_lock through PgBouncer, LOCK TABLE) or of SQL injection: someone should look,
though nothing stays stuck.

The job logs one line per backend to the PostgreSQL log, which RDS exports to CloudWatch Logs;
a metric filter counts them. No Lambda, API call or permission is involved.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from constructs import Construct

from boom_stacks.config import EnvironmentConfig
from lambdas.tenant_bootstrap.cron import STUCK_BACKEND_LOG
from lambdas.tenant_bootstrap.scheduled_check import METRIC_NAMESPACE

# A metric filter cannot add a fixed dimension, as the scheduled check's Environment is: the
# environment is in the name, so environments sharing an account keep their own counts.
METRIC_NAME = "StuckBackendsEnded-{env}"
PERIOD = Duration.minutes(5)


class StuckBackendAlarm(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig,
                 postgresql_logs: logs.ILogGroup, alarm_topic: sns.ITopic) -> None:
        super().__init__(scope, id_)
        metric_name = METRIC_NAME.format(env=config.name)
        self.metric_filter = logs.MetricFilter(
            self, "Filter", log_group=postgresql_logs,
            filter_pattern=logs.FilterPattern.literal(f'"{STUCK_BACKEND_LOG}"'),
            metric_namespace=METRIC_NAMESPACE, metric_name=metric_name, metric_value="1",
            default_value=0)
        metric = cloudwatch.Metric(namespace=METRIC_NAMESPACE, metric_name=metric_name,
                                   statistic="Sum", period=PERIOD)
        self.alarm = cloudwatch.Alarm(
            self, "Alarm", metric=metric, threshold=1, evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            # The filter publishes 0 for log events without a match; no events at all is quiet.
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=(
                f"Boom {config.name}: pg_cron's job ended app_user backends that held up the "
                "others (a transaction older than database.app_user_transaction_minutes, a "
                "pooled connection left holding a session-level advisory lock, or a table "
                "lock others waited for). Their clients' transactions failed; the PostgreSQL "
                f"log's '{STUCK_BACKEND_LOG}' lines give each pid and reason. Look for a "
                "loop inside one transaction, pg_advisory_lock or LOCK TABLE in the "
                "application (README: 0014, 0016)"))
        notify = actions.SnsAction(alarm_topic)
        self.alarm.add_alarm_action(notify)
        self.alarm.add_ok_action(notify)
