"""ElastiCache Redis for sessions and caching: encrypted, AUTH token from Secrets Manager."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from boom_stacks.config import EnvironmentConfig
from boom_stacks.constructs.grants import allow_from_peer


class SessionCache(Construct):
    PORT = 6379

    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig, vpc: ec2.IVpc,
                 key: kms.IKey) -> None:
        super().__init__(scope, id_)
        cache = config.cache
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, allow_all_outbound=False,
            description=f"Boom {config.name} Redis: no ingress unless granted")
        subnet_group = elasticache.CfnSubnetGroup(
            self, "Subnets", description=f"Boom {config.name} Redis, isolated subnets",
            subnet_ids=vpc.select_subnets(
                subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids,
        )
        # ElastiCache AUTH tokens: 16-128 printable characters without @, " or /.
        self.auth_secret = secretsmanager.Secret(
            self, "AuthToken",
            secret_name=f"boom/{config.name}/redis/auth",
            description="Redis AUTH token (resolved by CloudFormation, never in the template)",
            encryption_key=key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template="{}", generate_string_key="token",
                exclude_punctuation=True, password_length=64),
        )
        self.replication_group = elasticache.CfnReplicationGroup(
            self, "ReplicationGroup",
            replication_group_id=f"boom-{config.name}-redis",
            replication_group_description=f"Boom Booking {config.name} Redis",
            engine="redis",
            engine_version=cache.engine_version,
            cache_parameter_group_name="default.redis7",
            cache_node_type=cache.node_type,
            num_cache_clusters=cache.num_nodes,
            automatic_failover_enabled=cache.num_nodes > 1,
            multi_az_enabled=cache.multi_az,
            port=self.PORT,
            security_group_ids=[self.security_group.security_group_id],
            cache_subnet_group_name=subnet_group.ref,
            at_rest_encryption_enabled=True,
            kms_key_id=key.key_arn,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            # A {{resolve:secretsmanager:...}} reference: CloudFormation reads it at deploy.
            auth_token=self.auth_secret.secret_value_from_json("token").unsafe_unwrap(),
            snapshot_retention_limit=cache.snapshot_retention_days,
            snapshot_window=cache.snapshot_window,
            preferred_maintenance_window=cache.maintenance_window,
            auto_minor_version_upgrade=True,
        )

    def grant_connect(self, peer: ec2.ISecurityGroup,
                      description: str) -> ec2.CfnSecurityGroupIngress:
        """Open Redis to `peer`; the rule lives in the peer's stack."""
        return allow_from_peer(self.security_group, peer, self.PORT, description)
