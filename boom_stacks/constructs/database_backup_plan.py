"""AWS Backup for the database: daily snapshots kept for the seed's 30 days, in a KMS vault."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_backup as backup
from aws_cdk import aws_events as events
from aws_cdk import aws_kms as kms
from aws_cdk import aws_rds as rds
from constructs import Construct

from boom_stacks.config import EnvironmentConfig


class DatabaseBackupPlan(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig,
                 instance: rds.IDatabaseInstance, key: kms.IKey) -> None:
        super().__init__(scope, id_)
        self.vault = backup.BackupVault(
            self, "Vault", backup_vault_name=f"boom-{config.name}-database",
            encryption_key=key, removal_policy=RemovalPolicy.RETAIN)
        self.plan = backup.BackupPlan(self, "Plan", backup_plan_name=f"boom-{config.name}-database")
        self.plan.add_rule(backup.BackupPlanRule(
            rule_name="Daily",
            backup_vault=self.vault,
            # 02:00 UTC and started within the hour, so before RDS's own backup window
            # (03:00-04:00) opens; an incremental snapshot rarely needs the two hours.
            schedule_expression=events.Schedule.cron(minute="0", hour="2"),
            start_window=Duration.hours(1),
            completion_window=Duration.hours(2),
            delete_after=Duration.days(config.backup.retention_days),
        ))
        self.plan.add_selection("Database", resources=[
            backup.BackupResource.from_rds_database_instance(instance)])
