"""Boom-<Env>-Data: keys, the tenant database, its bootstrap and the check of its guarantees
between deploys, the session cache and the backup bucket."""

from __future__ import annotations

from typing import Any

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from boom_stacks.config import EnvironmentConfig
from boom_stacks.constructs import (
    pooled_connection_alarm,
    removed_statement_alarm,
    stuck_backend_alarm,
    tenant_boundary_alarm,
)
from boom_stacks.constructs.alarm_topic import alarm_topic
from boom_stacks.constructs.backup_bucket import BackupBucket
from boom_stacks.constructs.database_backup_plan import DatabaseBackupPlan
from boom_stacks.constructs.keys import rotating_key
from boom_stacks.constructs.postgres_log_alarm import PostgresLogAlarm
from boom_stacks.constructs.session_cache import SessionCache
from boom_stacks.constructs.tenant_bootstrap import TenantBootstrap
from boom_stacks.constructs.tenant_database import TenantDatabase
from boom_stacks.constructs.tenant_guarantee_check import TenantGuaranteeCheck
from boom_stacks.stacks.base import BoomStack

# The alarms on lines in the PostgreSQL log, by construct id (which keeps each alarm's logical
# id): what each counts, and why, is in its module.
POSTGRES_LOG_ALARMS = {
    "StuckBackendAlarm": stuck_backend_alarm.spec,
    "PooledConnectionAlarm": pooled_connection_alarm.spec,
    "RemovedStatementAlarm": removed_statement_alarm.spec,
    "TenantBoundaryAlarm": tenant_boundary_alarm.spec,
}


class DataStack(BoomStack):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig, vpc: ec2.IVpc,
                 **kwargs: Any) -> None:
        super().__init__(scope, id_, config=config, **kwargs)
        retain = config.is_production_like

        def key(id_: str, purpose: str, description: str) -> Any:
            return rotating_key(self, id_, alias=f"boom/{config.name}/{purpose}",
                                description=description, retain=retain)

        database_key = key("DatabaseKey", "database", "RDS storage, snapshots, PI, DB secrets")
        cache_key = key("CacheKey", "cache", "ElastiCache at rest and the Redis AUTH secret")
        backup_key = key("BackupKey", "backups", "Objects in the backup bucket")
        log_key = key("LogKey", "data-logs", "Database log groups")
        log_key.grant_encrypt_decrypt(
            iam.ServicePrincipal(f"logs.{config.primary_region}.amazonaws.com"))
        alarm_key = key("AlarmKey", "data-alarms", "The Data stack's alarm topic")
        self.alarm_topic = alarm_topic(self, "AlarmTopic", config=config, stack_part="data",
                                       key=alarm_key)

        self.database = TenantDatabase(self, "Database", config=config, vpc=vpc,
                                       key=database_key, log_key=log_key)
        self.tenant_bootstrap = TenantBootstrap(self, "TenantBootstrap", config=config, vpc=vpc,
                                                database=self.database, key=database_key,
                                                log_key=log_key)
        self.guarantee_check = TenantGuaranteeCheck(
            self, "TenantGuaranteeCheck", config=config, function=self.tenant_bootstrap.function,
            master_secret=self.database.master_secret,
            role_secrets=self.tenant_bootstrap.role_secrets,
            alarm_topic=self.alarm_topic, after=self.tenant_bootstrap.resource)
        self.log_alarms = {
            alarm_id: PostgresLogAlarm(self, alarm_id, config=config,
                                       postgresql_logs=self.database.log_groups["postgresql"],
                                       alarm_topic=self.alarm_topic, spec=alarm_spec(config))
            for alarm_id, alarm_spec in POSTGRES_LOG_ALARMS.items()}
        self.cache = SessionCache(self, "Cache", config=config, vpc=vpc, key=cache_key)
        self.backups = BackupBucket(self, "Backups", config=config, key=backup_key)
        self.backup_plan = DatabaseBackupPlan(self, "DatabaseBackup", config=config,
                                              instance=self.database.instance, key=backup_key)
