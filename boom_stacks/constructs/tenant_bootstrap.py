"""Applies `lambdas/tenant_bootstrap` to the tenant database on every deploy that changes it.

A Lambda in the private subnets reads the master secret and two generated role secrets
(app_user, boom_owner), connects over verified TLS and applies the versioned SQL; the
`custom_resources.Provider` framework reports the outcome to CloudFormation. Passwords exist
only in Secrets Manager: the template holds ARNs. The same function rotates boom_owner's
secret and the master secret, every config.database.secret_rotation_days (rotation.py).
"""

from __future__ import annotations

import json

from aws_cdk import CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import custom_resources as cr
from constructs import Construct

from boom_stacks.config import EnvironmentConfig
from boom_stacks.constructs.log_groups import encrypted_log_group
from boom_stacks.constructs.python_bundle import LAMBDAS_DIR, VendoredAsset, source_digest
from boom_stacks.constructs.tenant_database import TenantDatabase
from lambdas.tenant_bootstrap.migration_files import LATEST_VERSION
from lambdas.tenant_bootstrap.rotation import MASTER_SECRET_VARIABLE

# 3.13, not 3.14: the tests run the bundled asset on the runtime's own Python minor version
# (pyenv's 3.13 on these machines, which have no 3.14), so what ships is what was tested.
RUNTIME = lambda_.Runtime.PYTHON_3_13
# pg8000 and what it imports, pinned in requirements.txt (tests check this is the closure).
VENDORED = ("pg8000", "scramp", "asn1crypto", "python-dateutil", "six")
# The handler verifies the database's certificate against the bundled RDS CAs.
ASSET = VendoredAsset("tenant_bootstrap", VENDORED, with_rds_ca=True)
HANDLER = "tenant_bootstrap.handler.on_event"
HTTPS = 443
# The master secret's rotation schedule keeps the logical id CDK's add_rotation_single_user
# gave it (which rotated with AWS's function): under a new id, CloudFormation would create the
# new schedule, then delete the old one in its clean-up, and deleting a schedule turns the
# secret's rotation off (cloudformation-coverage-roadmap#1813). The same in every environment.
MASTER_ROTATION_LOGICAL_ID = "DatabaseInstanceSecretAttachmentRotationSchedule95FBFF88"


class TenantBootstrap(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig,
                 vpc: ec2.IVpc, database: TenantDatabase, key: kms.IKey,
                 log_key: kms.IKey) -> None:
        super().__init__(scope, id_)
        retain = config.is_production_like
        self.role_secrets = {
            role: secretsmanager.Secret(
                self, f"{name}Secret", secret_name=f"boom/{config.name}/database/{role}",
                description=f"Boom {config.name} PostgreSQL role {role} (set by TenantBootstrap)",
                encryption_key=key,
                removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    secret_string_template=json.dumps({"username": role}),
                    generate_string_key="password", password_length=32,
                    exclude_punctuation=True))
            for role, name in (("app_user", "AppUser"), ("boom_owner", "Owner"))
        }
        # The function calls only Secrets Manager: through its interface endpoint (HTTPS to the
        # VPC) where configured, else through the NAT. The provider framework calls Lambda and
        # CloudFormation's S3 response URL, which have no endpoint here: HTTPS out.
        secrets_manager = (ec2.Peer.ipv4(config.network.cidr)
                           if config.network.interface_endpoints else ec2.Peer.any_ipv4())
        self.security_group = self._security_group(
            "SecurityGroup", vpc, secrets_manager,
            f"Boom {config.name} tenant bootstrap: PostgreSQL and Secrets Manager")
        self.security_group.add_egress_rule(
            ec2.Peer.security_group_id(database.security_group.security_group_id),
            ec2.Port.tcp(database.PORT), "PostgreSQL")
        provider_group = self._security_group(
            "ProviderSecurityGroup", vpc, ec2.Peer.any_ipv4(),
            f"Boom {config.name} tenant bootstrap provider: HTTPS")
        ingress = database.grant_connect(self.security_group, "Tenant bootstrap")
        private = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        self.function = lambda_.Function(
            self, "Function",
            description="Applies Boom's tenant bootstrap SQL (roles, RLS) to the database",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler=HANDLER,
            code=ASSET.code(),
            timeout=Duration.minutes(5),
            # CloudFormation's provider invokes it synchronously; the scheduled check
            # (TenantGuaranteeCheck) asynchronously, where a retry only doubles a check.
            retry_attempts=0,
            memory_size=256,
            vpc=vpc, vpc_subnets=private, security_groups=[self.security_group],
            # An ARN, not a secret: the rotation's steps connect with the master secret.
            environment={MASTER_SECRET_VARIABLE: database.master_secret.secret_arn},
            environment_encryption=key,
            log_group=self._log_group("FunctionLogs", config, log_key),
        )
        database.master_secret.grant_read(self.function)
        for secret in self.role_secrets.values():
            secret.grant_read(self.function)
        # The scheduled check's: when a rotation of any of the three began
        # (rotation.stuck_rotation).
        self.function.add_to_role_policy(iam.PolicyStatement(
            actions=["secretsmanager:ListSecretVersionIds"],
            resources=[database.master_secret.secret_arn,
                       *(secret.secret_arn for secret in self.role_secrets.values())]))
        provider = cr.Provider(
            self, "Provider", on_event_handler=self.function,
            vpc=vpc, vpc_subnets=private, security_groups=[provider_group],
            provider_function_env_encryption=key,
            log_group=self._log_group("ProviderLogs", config, log_key),
        )
        self.resource = CustomResource(
            self, "Resource", service_token=provider.service_token,
            resource_type="Custom::TenantBootstrap",
            properties={
                "MasterSecretArn": database.master_secret.secret_arn,
                "AppUserSecretArn": self.role_secrets["app_user"].secret_arn,
                "OwnerSecretArn": self.role_secrets["boom_owner"].secret_arn,
                # A new migration changes this, and CloudFormation sends an Update.
                "TargetVersion": str(LATEST_VERSION),
                # So does any change to the bootstrap's code (what every run enforces, say):
                # the deploy that ships it runs it. The handler does not read it.
                "BootstrapCode": source_digest(LAMBDAS_DIR / "tenant_bootstrap"),
                # PostgreSQL itself caps app_user at the PgBouncer pools' worst case, so the
                # rest stays free for migrations and operators whatever runs in the cluster.
                "AppUserConnectionLimit": str(config.pgbouncer.rollout_server_connections),
                # pg_cron's job (the parameter group loads it) ends longer transactions.
                "AppUserTransactionMinutes": str(config.database.app_user_transaction_minutes),
            })
        # Connect only once the instance is up and the database admits the Lambda: the
        # ingress rule is a resource of its own, which CloudFormation could create later.
        self.resource.node.add_dependency(database.instance, ingress, self.security_group)
        self.rotations = self._rotate(config, key, {
            "OwnerSecretRotation": self.role_secrets["boom_owner"],
            "MasterSecretRotation": database.master_secret})
        self.rotations["MasterSecretRotation"].override_logical_id(MASTER_ROTATION_LOGICAL_ID)
        # As CDK's own rotation schedules do: the account's principals may not delete the
        # master secret, while it rotates (the stack's deletion removes this policy first).
        database.master_secret.deny_account_root_delete()

    def _rotate(self, config: EnvironmentConfig, key: kms.IKey,
                secrets: dict[str, secretsmanager.ISecret],
                ) -> dict[str, secretsmanager.CfnRotationSchedule]:
        """boom_owner's password and the master's rotate every secret_rotation_days, by this
        function (rotation.py), which sends the database a SCRAM verifier, never the password.
        The L1 resource, not Secret.add_rotation_schedule: that also grants
        secretsmanager:GetRandomPassword on "*", which the function does not call."""
        self.function.add_permission(
            "SecretsManagerRotation",
            principal=iam.ServicePrincipal("secretsmanager.amazonaws.com"),
            source_account=Stack.of(self).account)
        self.function.add_to_role_policy(iam.PolicyStatement(
            actions=["secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage"],
            resources=[secret.secret_arn for secret in secrets.values()]))
        # PutSecretValue encrypts the new version with the secret's key, through the service.
        key.grant(kms.ViaServicePrincipal(f"secretsmanager.{Stack.of(self).region}.amazonaws.com",
                                          self.function.grant_principal), "kms:GenerateDataKey")
        schedules = {}
        for id_, secret in secrets.items():
            schedules[id_] = secretsmanager.CfnRotationSchedule(
                self, id_, secret_id=secret.secret_arn,
                rotation_lambda_arn=self.function.function_arn,
                rotation_rules=secretsmanager.CfnRotationSchedule.RotationRulesProperty(
                    schedule_expression=f"rate({config.database.secret_rotation_days} days)"))
            # A rotation starts when the schedule is made: the bootstrap must have run (it
            # makes boom_owner), and the function be allowed to rotate (its permission and
            # policy are the function's).
            schedules[id_].node.add_dependency(self.resource, self.function)
        return schedules

    def _log_group(self, id_: str, config: EnvironmentConfig, key: kms.IKey) -> logs.LogGroup:
        return encrypted_log_group(self, id_, key=key,
                                   retention_days=config.database.log_retention_days,
                                   retain=config.is_production_like)

    def _security_group(self, id_: str, vpc: ec2.IVpc, https_to: ec2.IPeer,
                        description: str) -> ec2.SecurityGroup:
        group = ec2.SecurityGroup(self, id_, vpc=vpc, allow_all_outbound=False,
                                  description=description)
        group.add_egress_rule(https_to, ec2.Port.tcp(HTTPS), "AWS APIs over HTTPS")
        return group
