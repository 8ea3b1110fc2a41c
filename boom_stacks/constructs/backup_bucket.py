"""The bucket for logical database backups: KMS, versioned, private, TLS only, logged."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from boom_stacks.config import EnvironmentConfig


class BackupBucket(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig,
                 key: kms.IKey) -> None:
        super().__init__(scope, id_)
        # Backups are never deleted with the stack, in any environment.
        self.access_logs = s3.Bucket(
            self, "AccessLogs",
            # S3 server access logging can only deliver to SSE-S3 buckets.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(id="ExpireAccessLogs",
                                              expiration=Duration.days(365),
                                              noncurrent_version_expiration=Duration.days(30))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        retention = config.backup
        self.bucket = s3.Bucket(
            self, "Bucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="backup-bucket/",
            lifecycle_rules=[s3.LifecycleRule(
                id="BackupRetention",
                expiration=Duration.days(retention.retention_days),
                noncurrent_version_expiration=Duration.days(retention.noncurrent_retention_days),
                abort_incomplete_multipart_upload_after=Duration.days(7),
            )],
            removal_policy=RemovalPolicy.RETAIN,
        )
