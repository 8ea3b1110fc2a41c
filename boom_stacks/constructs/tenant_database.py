"""RDS PostgreSQL for tenant data, configured as the seed asks and locked down by default."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_rds as rds
from constructs import Construct

from boom_stacks.config import EnvironmentConfig
from boom_stacks.constructs.grants import allow_from_peer
from boom_stacks.constructs.log_groups import encrypted_log_group

# The major version is pinned (it decides the parameter group family, extensions and the
# PostgreSQL the tests run locally); minor versions come from RDS's automatic minor upgrades in
# the maintenance window. A pinned minor would be stale after the first such upgrade, and the
# next change to it would ask RDS for a downgrade, which fails the deploy (aws-cdk#15475).
ENGINE = rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_15)
LOG_EXPORTS = ("postgresql", "upgrade")
MASTER_USERNAME = "boom_admin"
# PostgreSQL's TCP keepalive towards its clients (the PgBouncer pods): see the parameter group.
DEAD_CLIENT_KEEPALIVE = {"tcp_keepalives_idle": 60, "tcp_keepalives_interval": 10,
                         "tcp_keepalives_count": 3}
# RDS's default for postgres15 (pg_stat_statements), and pg_cron for the bootstrap's job.
PRELOADED_LIBRARIES = "pg_stat_statements,pg_cron"
# Logged statements keep their text and lose their bind values: see the parameter group.
SLOW_STATEMENT_VALUES_UNLOGGED = {"log_parameter_max_length": "0",
                                  "log_parameter_max_length_on_error": "0"}
# The alarms on the exported log count lines the migrations' functions log: see the parameter
# group.
ALARMED_MESSAGES_LOGGED = {"log_min_messages": "warning"}
# pg_stat_statements keeps utility statements' text as sent, literals included: see the
# parameter group.
UTILITY_STATEMENTS_UNTRACKED = {"pg_stat_statements.track_utility": "0"}


def temp_file_limit_kb(gib: int) -> int:
    """The parameter group's temp_file_limit: PostgreSQL reads a bare number as kB."""
    return gib * 1024 * 1024


class TenantDatabase(Construct):
    """The primary database; later stacks call `grant_connect(peer)` to open port 5432."""

    PORT = 5432

    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig, vpc: ec2.IVpc,
                 key: kms.IKey, log_key: kms.IKey) -> None:
        super().__init__(scope, id_)
        db = config.database
        retain = config.is_production_like
        self.identifier = f"boom-{config.name}-db"
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, allow_all_outbound=False,
            description=f"Boom {config.name} PostgreSQL: no ingress unless granted")
        parameters = rds.ParameterGroup(
            self, "Parameters", engine=ENGINE,
            description="Boom PostgreSQL: TLS only, slow statements logged",
            parameters={
                # Static: a change waits for the next reboot. The budget is in config.py.
                "max_connections": str(db.max_connections),
                "rds.force_ssl": "1",
                "ssl_min_protocol_version": "TLSv1.2",
                "log_min_duration_statement": str(db.slow_statement_ms),
                # Slow and failed statements are logged with their text, never their bind
                # values: those are tenants' data (names, e-mail addresses), which would sit
                # in CloudWatch Logs for everyone who reads them (PostgreSQL logs a slow
                # statement's values in full by default). The contract requires bind values.
                **SLOW_STATEMENT_VALUES_UNLOGGED,
                # The alarms count set_tenant's WARNINGs (0011, 0020) and pg_cron's job's
                # LOG lines (0014) in the exported log: PostgreSQL's default, pinned, so that
                # neither RDS's default nor an edit of this group keeps them out. Only a
                # superuser may change it for a session: app_user, whose misuse they report,
                # cannot (test_database_logs.py).
                **ALARMED_MESSAGES_LOGGED,
                "log_connections": "1",
                "log_disconnections": "1",
                # Only rds_password members (the master user, through rds_superuser) may set
                # passwords: app_user or boom_owner changing its own, say through SQL
                # injection, would lock every pooled client out until the next bootstrap run
                # set the secret's password again. Static, so in force from the first boot.
                "rds.restrict_password_commands": "1",
                # A PgBouncer whose node vanished never closes its server connections, and
                # they count against app_user's CONNECTION LIMIT beside its replacement's.
                # PostgreSQL finds them dead by keepalive: here after 60 s idle and 3
                # unanswered probes 10 s apart, 90 s in all (RDS's defaults: 300 s, 2 x 30 s).
                **{name: str(value) for name, value in DEAD_CLIENT_KEEPALIVE.items()},
                # pg_cron runs the job that ends app_user transactions longer than
                # config.database.app_user_transaction_minutes (PostgreSQL 15 has no
                # transaction_timeout) and pooled connections left holding a session-level
                # advisory lock (migration 0014), in this database, where the bootstrap
                # installs it. Static: applied when the instance starts.
                "shared_preload_libraries": PRELOADED_LIBRARIES,
                "cron.database_name": db.database_name,
                # pg_stat_statements replaces the literals of SELECT, INSERT, UPDATE and
                # DELETE with $1, but keeps a utility statement's text as sent: a COPY (which
                # takes no bind parameters), DECLARE, EXPLAIN, CALL or DO with a tenant's
                # e-mail address in it, and an ALTER ROLE ... PASSWORD with the password in
                # clear (as an operator's psql, or AWS's rotation function, sends it; the
                # bootstrap function sends verifiers). Once anyone creates the extension in
                # the tenant database (a monitoring agent), every app_user session, whichever
                # tenant it serves, could read those texts, until evicted. Utility statements
                # go untracked; the queries inside COPY, DECLARE and EXPLAIN ANALYZE are still
                # counted, normalized (test_statement_statistics.py).
                **UTILITY_STATEMENTS_UNTRACKED,
                # One backend's temporary files, all held at once, in kB: beyond them its
                # statement is cancelled (SQLSTATE 53400) and the files removed. app_user
                # cannot lift it (a superuser-only setting): test_temp_file_limit.py.
                "temp_file_limit": str(temp_file_limit_kb(db.temp_file_limit_gib)),
            },
        )
        # Pre-created so retention and encryption are ours, not RDS's defaults.
        self.log_groups = {
            export: encrypted_log_group(
                self, f"{export.capitalize()}Logs", key=log_key,
                retention_days=db.log_retention_days, retain=retain,
                log_group_name=f"/aws/rds/instance/{self.identifier}/{export}")
            for export in LOG_EXPORTS
        }
        self.instance = rds.DatabaseInstance(
            self, "Instance",
            instance_identifier=self.identifier,
            engine=ENGINE,
            instance_type=ec2.InstanceType(db.instance_class.removeprefix("db.")),
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[self.security_group],
            port=self.PORT,
            credentials=rds.Credentials.from_generated_secret(
                MASTER_USERNAME, encryption_key=key,
                secret_name=f"boom/{config.name}/database/master"),
            database_name=db.database_name,
            parameter_group=parameters,
            allocated_storage=db.allocated_storage_gib,
            max_allocated_storage=db.max_allocated_storage_gib,
            storage_type=rds.StorageType.GP3,
            storage_encrypted=True,
            storage_encryption_key=key,
            multi_az=db.multi_az,
            backup_retention=Duration.days(db.backup_retention_days),
            preferred_backup_window=db.backup_window,
            preferred_maintenance_window=db.maintenance_window,
            auto_minor_version_upgrade=True,  # security patches; see ENGINE
            copy_tags_to_snapshot=True,
            delete_automated_backups=False,
            deletion_protection=db.deletion_protection,
            removal_policy=(RemovalPolicy.SNAPSHOT if db.snapshot_on_delete
                            else RemovalPolicy.DESTROY),
            enable_performance_insights=True,
            performance_insight_encryption_key=key,
            monitoring_interval=Duration.seconds(db.monitoring_interval_seconds),
            iam_authentication=True,
            publicly_accessible=False,
            cloudwatch_logs_exports=list(LOG_EXPORTS),
            ca_certificate=rds.CaCertificate.RDS_CA_RSA2048_G1,
        )
        for log_group in self.log_groups.values():
            self.instance.node.add_dependency(log_group)
        # The master secret rotates by the tenant bootstrap function (TenantBootstrap).
        assert self.instance.secret is not None
        self.master_secret = self.instance.secret

    def grant_connect(self, peer: ec2.ISecurityGroup,
                      description: str) -> ec2.CfnSecurityGroupIngress:
        """Open PostgreSQL to `peer`; the rule lives in the peer's stack. Whatever connects at
        deploy time must depend on the returned rule."""
        return allow_from_peer(self.security_group, peer, self.PORT, description)
