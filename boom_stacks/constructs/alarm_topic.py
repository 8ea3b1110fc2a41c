"""The SNS topic a stack's CloudWatch alarms notify: encrypted with a customer-managed key,
TLS-only. E-mail subscribers come from config (config.alarms.emails); Alertmanager's will
be the Observability stack's.

Two grants CloudWatch needs that nothing adds by itself, and whose absence fails silently
(the alarm changes state; its history shows the failed action):
- the topic's policy must let cloudwatch.amazonaws.com publish: `enforce_ssl` gives the topic
  a policy of its own, which replaces SNS's default one that let the account publish;
- the key must let it encrypt: CloudWatch calls KMS itself, and the key's account-root
  statement does not cover AWS services (nor can aws/sns, the AWS-managed key, be used).
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from boom_stacks.config import EnvironmentConfig

CLOUDWATCH = "cloudwatch.amazonaws.com"


def alarm_topic(scope: Construct, id_: str, *, config: EnvironmentConfig, stack_part: str,
                key: kms.IKey) -> sns.Topic:
    topic = sns.Topic(scope, id_, topic_name=f"boom-{config.name}-{stack_part}-alarms",
                      display_name=f"Boom {config.name} {stack_part} alarms",
                      master_key=key, enforce_ssl=True)
    stack = Stack.of(scope)
    topic.add_to_resource_policy(iam.PolicyStatement(
        sid="AllowThisAccountsCloudWatchAlarms", actions=["sns:Publish"],
        principals=[iam.ServicePrincipal(CLOUDWATCH)], resources=[topic.topic_arn],
        conditions={"StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {"aws:SourceArn": f"arn:{stack.partition}:cloudwatch:"
                                                 f"{stack.region}:{stack.account}:alarm:*"}}))
    key.grant(iam.ServicePrincipal(CLOUDWATCH), "kms:Decrypt", "kms:GenerateDataKey*")
    for email in config.alarms.emails:  # SNS decrypts before it delivers an e-mail
        topic.add_subscription(subscriptions.EmailSubscription(email))
    return topic
