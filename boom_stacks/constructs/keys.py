"""Customer-managed KMS keys: rotated yearly, kept on stack deletion outside dev."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from constructs import Construct


def rotating_key(scope: Construct, id_: str, *, alias: str, description: str,
                 retain: bool) -> kms.Key:
    return kms.Key(
        scope, id_,
        alias=alias,
        description=description,
        enable_key_rotation=True,
        # Deleting a key makes everything it encrypted unreadable: keep it unless dev.
        removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
        pending_window=Duration.days(30 if retain else 7),
    )
