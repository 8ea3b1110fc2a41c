"""Checks the tenant guarantees between deploys, and alarms on what it finds.

A deploy's bootstrap run restores the guarantees, but between deploys an operator may drop the
event trigger (RDS asks for that before a major upgrade) and forget the run after it, or
app_user may change its own role settings. Every 15 minutes an EventBridge schedule sends the
bootstrap function a check event; it runs `bootstrap.check()`, which changes nothing, logs in
as each role with its secret's password (role_secrets.py), and logs the number of findings as
the metric Boom/TenantDatabase GuaranteeFindings (dimension Environment) in CloudWatch's
embedded metric format: no API call, permission or route needed.
A check that cannot run counts as one finding.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from constructs import Construct, IDependable

from boom_stacks.config import EnvironmentConfig
from lambdas.tenant_bootstrap.role_secrets import ROLE_FIELDS
from lambdas.tenant_bootstrap.scheduled_check import (
    CHECK,
    METRIC_NAME,
    METRIC_NAMESPACE,
    REQUIRE_PG_CRON,
)

EVERY = Duration.minutes(15)
# In 2 of the last 4 checks: drift stays until a run repairs it, so it alarms within about
# 30 minutes, while one check that could not take a lock does not. No checks at all (the
# schedule or the function broken) makes it INSUFFICIENT_DATA, which notifies too.
CHECKS_EVALUATED, CHECKS_TO_ALARM = 4, 2


class TenantGuaranteeCheck(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig,
                 function: lambda_.IFunction, master_secret: secretsmanager.ISecret,
                 role_secrets: Mapping[str, secretsmanager.ISecret], alarm_topic: sns.ITopic,
                 after: IDependable) -> None:
        super().__init__(scope, id_)
        # The role secrets, by the fields the check and the repair read (role_secrets.py): the
        # check logs in as each role with its secret's password, and looks for a rotation
        # stopped midway; the repair sets the passwords from them.
        role_secret_arns = {ROLE_FIELDS[role]: secret.secret_arn
                            for role, secret in role_secrets.items()}
        self.schedule = events.Rule(
            self, "Schedule", schedule=events.Schedule.rate(EVERY),
            description=f"Boom {config.name}: check the tenant guarantees between deploys")
        self.schedule.add_target(targets.LambdaFunction(
            function, retry_attempts=0,  # the next check comes in 15 minutes
            event=events.RuleTargetInput.from_object({
                "Check": CHECK, "MasterSecretArn": master_secret.secret_arn,
                "Environment": config.name,
                # The parameter group loads pg_cron: a server without it is a finding.
                REQUIRE_PG_CRON: True, **role_secret_arns})))
        # Checks start once the deploy's bootstrap run has succeeded (`after`): before, a
        # first deploy's database would be a finding (version 0).
        self.schedule.node.add_dependency(after)
        findings = cloudwatch.Metric(
            namespace=METRIC_NAMESPACE, metric_name=METRIC_NAME,
            dimensions_map={"Environment": config.name}, statistic="Maximum", period=EVERY)
        self.alarm = cloudwatch.Alarm(
            self, "Alarm", metric=findings, threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=CHECKS_EVALUATED, datapoints_to_alarm=CHECKS_TO_ALARM,
            treat_missing_data=cloudwatch.TreatMissingData.MISSING,
            alarm_description=(
                f"Boom {config.name}: the tenant database's guarantees (RLS on every tenant "
                "table, the event trigger, app_user's privileges, keys and statistics, role "
                "and database settings, TEMPORARY and CREATE, the shipped functions, "
                "pg_cron's jobs) have drifted since the last deploy, a role does not log in "
                "with its secret's password, boom_owner's password rotation stopped midway, or "
                "the check cannot run. The function's log names each finding and its fix; a "
                "repair (README: Between deploys) restores what it can and names the rest"))
        # Drift, and checks that stopped coming (INSUFFICIENT_DATA), both notify; so does the
        # return to OK, which tells whoever acted (a repair, a deploy) that it worked, and
        # resolves the incident in tools that pair the two (Alertmanager, PagerDuty).
        notify = actions.SnsAction(alarm_topic)
        self.alarm.add_alarm_action(notify)
        self.alarm.add_insufficient_data_action(notify)
        self.alarm.add_ok_action(notify)
        # What an operator acting on the alarm invokes (repair.py): names and an ARN, no secret.
        for output_id, value, description in (
                ("TenantRepairFunction", function.function_name,
                 "The bootstrap function: invoke it with TenantRepairEvent to restore the "
                 "tenant guarantees between deploys"),
                ("TenantRepairEvent", Stack.of(self).to_json_string({
                    "Repair": CHECK, "MasterSecretArn": master_secret.secret_arn,
                    "Environment": config.name, **role_secret_arns}),
                 "The event that makes the bootstrap function repair (README: Between deploys)")):
            output = CfnOutput(self, output_id, value=value, description=description)
            output.override_logical_id(output_id)  # a stable key for describe-stacks
