"""The compliance gate: cdk-nag packs on every synth, and every acknowledged finding.

An acknowledgement names one finding (rule id, with its [finding] part where a rule reports
several) on one construct path, says when it applies, and why a reviewer can accept it.
`tests/test_compliance.py` fails on any finding not listed here and on any entry here that no
longer matches a finding.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, NagPack, NIST80053R5Checks, PCIDSS321Checks
from constructs import IConstruct

from boom_stacks.config import EnvironmentConfig

PACK_NAMES = ("AwsSolutions", "NIST 800-53 R5", "PCI DSS 3.2.1")


def packs(scope: IConstruct) -> list[NagPack]:
    return [AwsSolutionsChecks(scope), NIST80053R5Checks(scope), PCIDSS321Checks(scope)]


def register_packs(app: cdk.App) -> None:
    """Synth fails on any finding that is not acknowledged."""
    cdk.Validations.of(app).add_plugins(*packs(app))


def _always(_: EnvironmentConfig) -> bool:
    return True


@dataclass(frozen=True)
class Acknowledgement:
    stack: str  # the part of the stack id: "Network", "Data", ...
    path: str  # construct path below the stack, down to the CloudFormation resource
    rule: str
    reason: str
    applies: Callable[[EnvironmentConfig], bool] = _always

    def construct_path(self, config: EnvironmentConfig) -> str:
        return f"{config.stack_id(self.stack)}/{self.path}"

    def __post_init__(self) -> None:
        if len(self.reason) < 40:
            raise ValueError(f"acknowledgement {self.rule} on {self.path}: give a reason a "
                             "reviewer can check (40+ characters)")


@dataclass(frozen=True, order=True)
class Finding:
    rule: str
    path: str


def _no_multi_az_database(config: EnvironmentConfig) -> bool:
    return not config.database.multi_az


def _no_deletion_protection(config: EnvironmentConfig) -> bool:
    return not config.database.deletion_protection


def _single_az_cache(config: EnvironmentConfig) -> bool:
    return not config.cache.multi_az


_DB = "Database/Instance/Resource"
_AWS_MANAGED = ("AWS-managed service-role policy that the service documents for this role; "
                "AWS keeps it current as the service adds APIs, and it grants nothing to "
                "principals other than the service")
_PUBLIC_ROUTE = ("Public subnets hold only the NAT gateways (and later the ALB): a default "
                 "route to the internet gateway is what makes them public. Workloads run in "
                 "private subnets, data in isolated subnets with no route out")
_REPLICATION = ("Cross-region copies of backups are the DR stack's job (AWS Backup copy to "
                "us-west-2 and RDS cross-region automated backups, see DESIGN.md); S3 "
                "replication of this bucket would duplicate them")

_BOOTSTRAP = "TenantBootstrap/Function"
_FRAMEWORK = "TenantBootstrap/Provider/framework-onEvent"
_LAMBDA_ROLES = (_BOOTSTRAP, _FRAMEWORK)
_LAMBDA_MANAGED = {
    "AWSLambdaBasicExecutionRole": "writing its own CloudWatch log streams",
    "AWSLambdaVPCAccessExecutionRole": "managing the ENIs of a Lambda in a VPC; the EC2 ENI "
                                       "actions have no resource-level permissions",
}
_INLINE_GRANTS = ("CDK grants write this role's statements: read three named secrets and list "
                  "their versions, decrypt with the database key, invoke one function, and "
                  "write the versions of the two secrets it rotates (boom_owner's and the "
                  "master's). Each statement names its resource "
                  "ARN and the role serves one function, so the policy is never shared; a "
                  "managed copy would add nothing but drift from the grants")
_APP_USER_ROTATION = ("Rotating app_user's password needs PgBouncer's auth to follow the new "
                      "one (the cluster issue's External Secrets refresh); until then a "
                      "rotation would cut the application off. 32 random characters, KMS "
                      "encrypted, readable only by the bootstrap Lambda; boom_owner's and the "
                      "master secret rotate")
_CONCURRENCY = ("Invoked by CloudFormation through the custom-resource provider, once per "
                "deploy that changes the resource, by the guarantee check every 15 minutes, "
                "and by an operator's repair; deploy runs and repairs are serialised by an "
                "advisory lock in the database and checks change nothing. Reserved "
                "concurrency would fail the deploy on accounts whose unreserved concurrency "
                "is at AWS's minimum (new accounts)")
_DLQ = {
    _BOOTSTRAP: ("CloudFormation's provider, and an operator's repair, invoke it "
                 "synchronously: failures fail and roll back the deploy, or answer the "
                 "operator. The guarantee check's schedule invokes it asynchronously "
                 "every 15 minutes with retries off; a check that fails is itself a finding in "
                 "the metric its alarm watches, and the next one runs 15 minutes later, so a "
                 "DLQ would only park schedule events, which carry nothing to replay"),
    _FRAMEWORK: ("Failures go back to CloudFormation, which fails and rolls back the deploy, "
                 "and to the encrypted log group. The framework's events carry the pre-signed "
                 "response URL, which must not be parked in a queue"),
}

ACKNOWLEDGEMENTS: tuple[Acknowledgement, ...] = (
    # --- Database -------------------------------------------------------------------------
    Acknowledgement("Data", _DB, "AwsSolutions-RDS3",
                    "Multi-AZ is a prod setting (seed: db.t3.micro/small single-AZ for "
                    "dev/staging at $25/$50 a month); prod runs Multi-AZ",
                    _no_multi_az_database),
    Acknowledgement("Data", _DB, "NIST.800.53.R5-RDSMultiAZSupport",
                    "Multi-AZ is a prod setting (seed cost plan); prod runs Multi-AZ",
                    _no_multi_az_database),
    Acknowledgement("Data", _DB, "AwsSolutions-RDS10",
                    "dev databases are disposable and torn down with the stack; staging and "
                    "prod have deletion protection", _no_deletion_protection),
    Acknowledgement("Data", _DB, "NIST.800.53.R5-RDSInstanceDeletionProtectionEnabled",
                    "dev databases are disposable; staging and prod have deletion protection",
                    _no_deletion_protection),
    Acknowledgement("Data", _DB, "AwsSolutions-RDS11",
                    "The seed fixes PostgreSQL on 5432 (PgBouncer config). A non-default port "
                    "is obscurity, not control: the instance is in isolated subnets, not "
                    "public, and its security group admits only granted peers"),
    Acknowledgement(
        "Data", "Database/Instance/MonitoringRole/Resource",
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
        "AmazonRDSEnhancedMonitoringRole]", _AWS_MANAGED + " (RDS enhanced monitoring)"),
    Acknowledgement(
        "Data", "DatabaseBackup/Plan/Database/Role/Resource",
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
        "AWSBackupServiceRolePolicyForBackup]", _AWS_MANAGED + " (AWS Backup)"),
    # --- Tenant bootstrap custom resource ---------------------------------------------------
    *(Acknowledgement("Data", f"{role}/ServiceRole/Resource",
                      f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
                      f"service-role/{policy}]", f"{_AWS_MANAGED} (Lambda: {purpose})")
      for role in _LAMBDA_ROLES for policy, purpose in _LAMBDA_MANAGED.items()),
    *(Acknowledgement("Data", f"{role}/ServiceRole/DefaultPolicy/Resource",
                      f"{pack}-IAMNoInlinePolicy", _INLINE_GRANTS)
      for role in _LAMBDA_ROLES for pack in ("NIST.800.53.R5", "PCI.DSS.321")),
    Acknowledgement("Data", f"{_BOOTSTRAP}/Resource", "AwsSolutions-L1",
                    "python3.13 is a supported runtime that AWS keeps patched (deprecation "
                    "2029-06-30). It is the newest Python the test machines have, so the "
                    "shipped asset runs in CI on exactly the interpreter version Lambda runs "
                    "(a test checks the two agree); move to 3.14 when CI can run it"),
    Acknowledgement("Data", f"{_FRAMEWORK}/ServiceRole/DefaultPolicy/Resource",
                    "AwsSolutions-IAM5[Resource::<TenantBootstrapFunctionC4F0E7D3.Arn>:*]",
                    "CDK's provider framework may invoke any version or alias of the one "
                    "bootstrap function (ARN:*); the wildcard never reaches another function"),
    *(Acknowledgement("Data", "TenantBootstrap/AppUserSecret/Resource", rule,
                      _APP_USER_ROTATION)
      for rule in ("AwsSolutions-SMG4", "NIST.800.53.R5-SecretsManagerRotationEnabled")),
    *(Acknowledgement("Data", f"{function}/Resource", f"NIST.800.53.R5-{rule}", reason)
      for function in _LAMBDA_ROLES
      for rule, reason in (("LambdaConcurrency", _CONCURRENCY), ("LambdaDLQ", _DLQ[function]))),
    # --- Cache ----------------------------------------------------------------------------
    Acknowledgement("Data", "Cache/ReplicationGroup", "AwsSolutions-AEC4",
                    "dev runs one cache node (seed: cache.t3.micro, $15 a month); it holds "
                    "only re-creatable cache and session data. staging/prod are Multi-AZ",
                    _single_az_cache),
    Acknowledgement("Data", "Cache/ReplicationGroup", "AwsSolutions-AEC5",
                    "The seed fixes Redis on 6379. A non-default port is obscurity: the group "
                    "is in isolated subnets, requires TLS and an AUTH token, and its security "
                    "group admits only granted peers"),
    Acknowledgement("Data", "Cache/ReplicationGroup",
                    "NIST.800.53.R5-ElastiCacheRedisClusterAutomaticBackup",
                    "The rule wants 15 days of snapshots; the seed sets 5. Redis holds cache "
                    "and sessions that are rebuilt from PostgreSQL (the system of record, "
                    "backed up for 30 days), so older cache snapshots have no restore use"),
    Acknowledgement("Data", "Cache/AuthToken/Resource", "AwsSolutions-SMG4",
                    "Rotating a Redis AUTH token needs ElastiCache's two-step ROTATE/SET "
                    "flow, which Secrets Manager has no rotation template for. The token is "
                    "64 random characters, KMS-encrypted, TLS-only, and reachable only from "
                    "granted security groups"),
    Acknowledgement("Data", "Cache/AuthToken/Resource",
                    "NIST.800.53.R5-SecretsManagerRotationEnabled",
                    "No Secrets Manager rotation template exists for ElastiCache AUTH tokens "
                    "(ROTATE/SET flow); see AwsSolutions-SMG4 on the same secret"),
    # --- Backup bucket --------------------------------------------------------------------
    *(Acknowledgement("Data", f"Backups/{bucket}/Resource", f"{pack}-S3BucketReplicationEnabled",
                      _REPLICATION)
      for bucket in ("Bucket", "AccessLogs") for pack in ("NIST.800.53.R5", "PCI.DSS.321")),
    *(Acknowledgement("Data", "Backups/AccessLogs/Resource", f"{pack}-S3DefaultEncryptionKMS",
                      "S3 server access logs can only be delivered to a bucket encrypted with "
                      "SSE-S3 (AES-256); SSE-KMS is not supported for the log destination")
      for pack in ("NIST.800.53.R5", "PCI.DSS.321")),
    # --- Network --------------------------------------------------------------------------
    *(Acknowledgement("Network", f"Network/Vpc/PublicSubnet{n}/DefaultRoute",
                      f"{pack}-VPCNoUnrestrictedRouteToIGW", _PUBLIC_ROUTE)
      for n in (1, 2, 3) for pack in ("NIST.800.53.R5", "PCI.DSS.321")),
)


def acknowledgements_for(config: EnvironmentConfig) -> list[Acknowledgement]:
    return [ack for ack in ACKNOWLEDGEMENTS if ack.applies(config)]


def resolve(app: cdk.App, config: EnvironmentConfig, ack: Acknowledgement) -> IConstruct:
    """The one construct an acknowledgement names; path parts may be globs (`*`)."""
    target: IConstruct | None = app.node.try_find_child(config.stack_id(ack.stack))
    for part in ack.path.split("/"):
        matches = ([c for c in target.node.children if fnmatch.fnmatchcase(c.node.id, part)]
                   if target is not None else [])
        target = matches[0] if len(matches) == 1 else None
    if target is None:
        raise LookupError(f"compliance acknowledgement {ack.rule} names "
                          f"{ack.construct_path(config)}, which matches no single construct")
    return target


def acknowledge(app: cdk.App, config: EnvironmentConfig) -> None:
    for ack in acknowledgements_for(config):
        cdk.Validations.of(resolve(app, config, ack)).acknowledge(
            cdk.Acknowledgment(id=ack.rule, reason=ack.reason))


def findings(app: cdk.App) -> list[Finding]:
    """Every finding the packs report on `app` now (acknowledged ones are not reported)."""
    found = set()
    for pack in packs(app):
        for violation in pack.validate_scope(app).violations:
            for resource in violation.violating_resources:
                found.add(Finding(rule=violation.rule_name, path=str(resource.construct_path)))
    return sorted(found)
