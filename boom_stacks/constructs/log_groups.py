"""Encrypted CloudWatch log groups with a retention taken from config (in days)."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from boom_stacks.config import LOG_RETENTION_DAYS

# RetentionDays members in the same order as CloudWatch's allowed values (INFINITE is last).
RETENTION_BY_DAYS = dict(zip(LOG_RETENTION_DAYS, list(logs.RetentionDays)[:-1], strict=True))


def encrypted_log_group(scope: Construct, id_: str, *, key: kms.IKey, retention_days: int,
                        retain: bool, log_group_name: str | None = None) -> logs.LogGroup:
    return logs.LogGroup(
        scope, id_,
        log_group_name=log_group_name,
        encryption_key=key,
        retention=RETENTION_BY_DAYS[retention_days],
        removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
    )
