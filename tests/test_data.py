"""The data stack carries the seed's numbers and our security choices, per environment."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
from aws_cdk import assertions
from aws_cdk import aws_ec2 as ec2
from aws_cdk.assertions import Match

from tests.fixture_synth import Synthesized, cdk_json_context
from tests.fixture_synth import one_data_resource_with_id as one_with_id


def only(template: assertions.Template, type_: str) -> dict[str, Any]:
    resources = template.find_resources(type_)
    assert len(resources) == 1, f"expected one {type_}, found {len(resources)}"
    return dict(next(iter(resources.values())))


def test_database_matches_the_seed(synthesized: Synthesized) -> None:
    db = synthesized.config.database
    instance = only(synthesized.template("Data"), "AWS::RDS::DBInstance")
    props = instance["Properties"]
    # Major pinned, minor left to RDS's automatic upgrades, so the template never asks for a
    # downgrade after one
    assert (props["Engine"], props["EngineVersion"]) == ("postgres", "15")
    assert props["AutoMinorVersionUpgrade"] is True
    assert props["DBInstanceClass"] == db.instance_class
    assert (props["StorageType"], props["AllocatedStorage"], props["MaxAllocatedStorage"]) == \
        ("gp3", "100", 1000)
    assert props["StorageEncrypted"] is True and "KmsKeyId" in props
    assert props["BackupRetentionPeriod"] == 7
    assert props["PreferredBackupWindow"] == "03:00-04:00"
    assert props["PreferredMaintenanceWindow"] == "sun:04:00-sun:05:00"
    assert props["EnablePerformanceInsights"] is True and "PerformanceInsightsKMSKeyId" in props
    assert props["MonitoringInterval"] == 60 and "MonitoringRoleArn" in props
    assert props["PubliclyAccessible"] is False
    assert props["DeleteAutomatedBackups"] is False
    assert props["EnableIAMDatabaseAuthentication"] is True
    assert props["EnableCloudwatchLogsExports"] == ["postgresql", "upgrade"]
    assert props["Port"] == "5432"
    # Snapshots (RDS's and AWS Backup's) carry the instance's tags: cost and ownership.
    assert props["CopyTagsToSnapshot"] is True
    # The CA named, not RDS's default of the day: the bundle the functions and PgBouncer
    # verify against must hold it, and a CA change is a deploy someone reviews.
    assert props["CACertificateIdentifier"] == "rds-ca-rsa2048-g1"


def test_multi_az_and_deletion_guards_only_outside_dev(dev: Synthesized, staging: Synthesized,
                                                      prod: Synthesized) -> None:
    def guards(s: Synthesized) -> tuple[Any, ...]:
        instance = only(s.template("Data"), "AWS::RDS::DBInstance")
        return (instance["Properties"]["MultiAZ"], instance["Properties"]["DeletionProtection"],
                instance["DeletionPolicy"])

    assert guards(dev) == (False, False, "Delete")
    assert guards(staging) == (False, True, "Snapshot")
    assert guards(prod) == (True, True, "Snapshot")
    assert not dev.stacks.data.termination_protection
    assert prod.stacks.data.termination_protection and staging.stacks.data.termination_protection


def test_database_lives_in_isolated_subnets(synthesized: Synthesized) -> None:
    group = only(synthesized.template("Data"), "AWS::RDS::DBSubnetGroup")
    imports = json.dumps(group["Properties"]["SubnetIds"])
    assert imports.count("IsolatedSubnet") == 3 and "PrivateSubnet" not in imports


def test_parameter_group_forces_tls_sets_max_connections_and_logs_slow_statements(
        synthesized: Synthesized) -> None:
    synthesized.template("Data").has_resource_properties("AWS::RDS::DBParameterGroup", {
        "Family": "postgres15",
        "Parameters": Match.object_like({
            "rds.force_ssl": "1",
            # app_user and boom_owner may not change their own passwords (the master may).
            "rds.restrict_password_commands": "1",
            "max_connections": str(synthesized.config.database.max_connections),
            "log_min_duration_statement": str(synthesized.config.database.slow_statement_ms),
            # without their bind values, tenants' data (test_database_logs.py)
            "log_parameter_max_length": "0", "log_parameter_max_length_on_error": "0",
            # the WARNING and LOG lines the alarms count, whatever RDS's default
            "log_min_messages": "warning",
            # pg_stat_statements keeps no utility statement's text, which would hold tenants'
            # literals and the master's password (test_statement_statistics.py)
            "pg_stat_statements.track_utility": "0",
            # one backend's temporary files, in kB: 10 GiB, a tenth of the storage
            # (test_temp_file_limit.py)
            "temp_file_limit": str(synthesized.config.database.temp_file_limit_gib
                                   * 1024 * 1024)}),
    })
    assert synthesized.config.database.temp_file_limit_gib == 10


def test_parameter_group_loads_pg_cron_for_the_tenant_database(synthesized: Synthesized) -> None:
    # pg_cron runs the job that ends long app_user transactions, in the database the
    # bootstrap installs it in (test_app_user_transaction_bound.py); RDS's default library
    # stays loaded beside it.
    group = only(synthesized.template("Data"), "AWS::RDS::DBParameterGroup")
    parameters = group["Properties"]["Parameters"]
    assert parameters["shared_preload_libraries"].split(",") == ["pg_stat_statements",
                                                                 "pg_cron"]
    assert parameters["cron.database_name"] == synthesized.config.database.database_name
    instance = only(synthesized.template("Data"), "AWS::RDS::DBInstance")
    assert instance["Properties"]["DBName"] == synthesized.config.database.database_name


def test_master_secret_is_generated_encrypted_and_rotated(synthesized: Synthesized) -> None:
    template = synthesized.template("Data")
    template.has_resource_properties("AWS::SecretsManager::Secret", {
        "Name": f"boom/{synthesized.config.name}/database/master",
        "KmsKeyId": Match.any_value(),
        "GenerateSecretString": Match.object_like({"GenerateStringKey": "password"}),
    })
    # By the tenant bootstrap function (test_master_secret_rotation.py), not by AWS's
    # rotation application, which sends the password itself to the database: no nested
    # application, and so no SAM transform, is left.
    [schedule] = template.find_resources("AWS::SecretsManager::RotationSchedule", {
        "Properties": {"SecretId": {"Ref": Match.string_like_regexp("DatabaseInstanceSecret")}},
    }).values()
    assert schedule["Properties"]["RotationLambdaARN"] == {
        "Fn::GetAtt": ["TenantBootstrapFunctionC4F0E7D3", "Arn"]}
    assert schedule["Properties"]["RotationRules"] == {"ScheduleExpression": "rate(30 days)"}
    assert not template.find_resources("AWS::Serverless::Application")
    assert "Transform" not in synthesized.template_json("Data")


def test_database_log_groups_are_ours_encrypted_with_retention(
        synthesized: Synthesized) -> None:
    # RDS exports into /aws/rds/instance/<identifier>/<log>, making the group itself (no key,
    # kept forever) unless it exists: ours are named after the identifier the instance has.
    identifier = f"boom-{synthesized.config.name}-db"
    instance = only(synthesized.template("Data"), "AWS::RDS::DBInstance")["Properties"]
    assert instance["DBInstanceIdentifier"] == identifier
    for export in instance["EnableCloudwatchLogsExports"]:
        synthesized.template("Data").has_resource_properties("AWS::Logs::LogGroup", {
            "LogGroupName": f"/aws/rds/instance/{identifier}/{export}",
            "KmsKeyId": Match.any_value(),
            "RetentionInDays": synthesized.config.database.log_retention_days})


def test_security_groups_open_nothing_by_default(synthesized: Synthesized) -> None:
    groups = synthesized.template("Data").find_resources("AWS::EC2::SecurityGroup")
    data_groups = {k: v for k, v in groups.items()
                   if k.startswith(("DatabaseSecurityGroup", "CacheSecurityGroup"))}
    assert len(data_groups) == 2
    for group in data_groups.values():
        assert "SecurityGroupIngress" not in group["Properties"]
        # CDK's "no egress" marker rule: nothing leaves the data tier.
        assert group["Properties"]["SecurityGroupEgress"][0]["CidrIp"] == "255.255.255.255/32"
    # The only ingress: the tenant bootstrap function (which also rotates the master secret),
    # to the database port.
    ingress = synthesized.template("Data").find_resources("AWS::EC2::SecurityGroupIngress")
    [rule] = ingress.values()
    assert rule["Properties"]["SourceSecurityGroupId"] == {
        "Fn::GetAtt": ["TenantBootstrapSecurityGroup7D62FA1A", "GroupId"]}
    assert rule["Properties"]["FromPort"] == rule["Properties"]["ToPort"] == 5432
    assert "DatabaseSecurityGroup" in json.dumps(rule["Properties"]["GroupId"])


# CDK's marker rule on a group that allows no egress at all.
NO_EGRESS = {"CidrIp": "255.255.255.255/32", "IpProtocol": "icmp", "FromPort": 252,
             "ToPort": 86}


def test_no_security_group_lets_all_traffic_out(synthesized: Synthesized) -> None:
    # Every egress rule in every stack is one TCP port (HTTPS, PostgreSQL) or CDK's no-egress
    # marker. AWS's rotation application, which the master secret used to rotate with, made
    # a group allowing all traffic to anywhere (IpProtocol -1).
    rules = []
    for part in ("Network", "Data"):
        resources = synthesized.template_json(part)["Resources"].values()
        rules += [rule for resource in resources if resource["Type"] == "AWS::EC2::SecurityGroup"
                  for rule in resource["Properties"].get("SecurityGroupEgress", [])]
        rules += [resource["Properties"] for resource in resources
                  if resource["Type"] == "AWS::EC2::SecurityGroupEgress"]
    assert rules
    for rule in rules:
        assert {k: rule.get(k) for k in NO_EGRESS} == NO_EGRESS or (
            rule["IpProtocol"] == "tcp" and rule["FromPort"] == rule["ToPort"]
            and rule["FromPort"] in (443, 5432)), rule


def test_grant_connect_opens_only_the_port_to_the_peer_in_the_peers_stack() -> None:
    # Given the dev app and a later stack with a client security group
    from boom_stacks.stage import create_app

    app, stacks = create_app(environ={}, gate=False, context={
        **cdk_json_context(), "aws:cdk:bundling-stacks": []})
    peer_stack = cdk.Stack(app, "Peer", env=cdk.Environment(
        account=stacks.config.account, region=stacks.config.primary_region))
    peer = ec2.SecurityGroup(peer_stack, "Client", vpc=stacks.network.vpc)
    # When the peer is granted access to the database and the cache
    stacks.data.database.grant_connect(peer, "API pods to PostgreSQL")
    stacks.data.cache.grant_connect(peer, "API pods to Redis")
    # Then the peer's stack holds exactly those two rules, on 5432 and 6379
    template = assertions.Template.from_stack(peer_stack)
    rules = template.find_resources("AWS::EC2::SecurityGroupIngress")
    assert sorted(r["Properties"]["FromPort"] for r in rules.values()) == [5432, 6379]
    assert all(r["Properties"]["FromPort"] == r["Properties"]["ToPort"] for r in rules.values())


def test_cache_matches_the_seed(synthesized: Synthesized) -> None:
    cache = synthesized.config.cache
    group = only(synthesized.template("Data"), "AWS::ElastiCache::ReplicationGroup")
    props = group["Properties"]
    assert (props["Engine"], props["EngineVersion"], props["Port"]) == ("redis", "7.1", 6379)
    assert props["CacheNodeType"] == cache.node_type
    assert props["NumCacheClusters"] == cache.num_nodes
    assert props["MultiAZEnabled"] is cache.multi_az
    assert props["AutomaticFailoverEnabled"] is (cache.num_nodes > 1)
    assert props["AtRestEncryptionEnabled"] is True and "KmsKeyId" in props
    assert props["TransitEncryptionEnabled"] is True
    assert (props["SnapshotRetentionLimit"], props["SnapshotWindow"]) == (5, "03:00-05:00")
    assert props["PreferredMaintenanceWindow"] == cache.maintenance_window == "sun:05:00-sun:06:00"


def test_cache_lives_in_isolated_subnets_behind_its_own_group(synthesized: Synthesized) -> None:
    template = synthesized.template("Data")
    props = only(template, "AWS::ElastiCache::ReplicationGroup")["Properties"]
    assert props["ReplicationGroupId"] == f"boom-{synthesized.config.name}-redis"
    # Its own group, which opens nothing until grant_connect (not the VPC's default group).
    [group_id] = props["SecurityGroupIds"]
    assert group_id["Fn::GetAtt"][0].startswith("CacheSecurityGroup")
    subnets_id, subnets = one_with_id(synthesized, "AWS::ElastiCache::SubnetGroup", "")
    assert props["CacheSubnetGroupName"] == {"Ref": subnets_id}
    imports = json.dumps(subnets["Properties"]["SubnetIds"])
    assert imports.count("IsolatedSubnet") == 3 and "PrivateSubnet" not in imports
    # A client without TLS is refused, not merely offered it; minor versions apply themselves.
    assert props["TransitEncryptionMode"] == "required"
    assert props["AutoMinorVersionUpgrade"] is True


def test_prod_cache_has_two_nodes_with_failover_across_zones(prod: Synthesized) -> None:
    props = only(prod.template("Data"), "AWS::ElastiCache::ReplicationGroup")["Properties"]
    assert (props["NumCacheClusters"], props["AutomaticFailoverEnabled"],
            props["MultiAZEnabled"]) == (2, True, True)


def test_redis_auth_token_is_a_secrets_manager_reference(synthesized: Synthesized) -> None:
    props = only(synthesized.template("Data"),
                 "AWS::ElastiCache::ReplicationGroup")["Properties"]
    token = json.dumps(props["AuthToken"])
    assert token.startswith('{"Fn::Join"') and "{{resolve:secretsmanager:" in token
    assert ":SecretString:token::}}" in token
    # ... to the one secret that generates a "token" ElastiCache takes: 16 to 128 printable
    # characters without @, " or / (punctuation excluded), KMS-encrypted, under its name.
    [(secret_id, secret)] = synthesized.template("Data").find_resources(
        "AWS::SecretsManager::Secret",
        {"Properties": {"Name": f"boom/{synthesized.config.name}/redis/auth"}}).items()
    assert {"Ref": secret_id} in props["AuthToken"]["Fn::Join"][1]
    generate = secret["Properties"]["GenerateSecretString"]
    assert generate["GenerateStringKey"] == "token"
    assert json.loads(generate["SecretStringTemplate"]) == {}
    assert generate["ExcludePunctuation"] is True and 16 <= generate["PasswordLength"] <= 128
    assert "KmsKeyId" in secret["Properties"]


def test_no_secret_material_in_any_template(synthesized: Synthesized) -> None:
    for path in synthesized.template_paths():
        text = path.read_text()
        assert '"SecretString"' not in text  # a literal secret value would sit here
        assert '"MasterUserPassword": "' not in text


def test_backup_bucket_is_private_encrypted_versioned_logged(synthesized: Synthesized) -> None:
    template = synthesized.template("Data")
    template.has_resource_properties("AWS::S3::Bucket", {
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [Match.object_like({
            "ServerSideEncryptionByDefault": Match.object_like({"SSEAlgorithm": "aws:kms"})})]},
        "VersioningConfiguration": {"Status": "Enabled"},
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                           "IgnorePublicAcls": True,
                                           "RestrictPublicBuckets": True},
        "LoggingConfiguration": Match.object_like({"LogFilePrefix": "backup-bucket/"}),
        "LifecycleConfiguration": {"Rules": [{
            "Id": "BackupRetention", "ExpirationInDays": 30,
            "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
            "Status": "Enabled"}]},
    })
    policies = template.find_resources("AWS::S3::BucketPolicy")
    assert len(policies) == 2
    for policy in policies.values():
        assert {"Bool": {"aws:SecureTransport": "false"}} in [
            s.get("Condition") for s in policy["Properties"]["PolicyDocument"]["Statement"]
            if s["Effect"] == "Deny"]


def test_both_buckets_outlive_the_stack_and_refuse_all_but_tls_1_2(
        synthesized: Synthesized) -> None:
    # The backups and their access logs, in every environment (dev included): a stack's
    # deletion or a replacing update leaves them, and neither takes an ACL or plain HTTP.
    template = synthesized.template("Data")
    buckets = template.find_resources("AWS::S3::Bucket")
    assert len(buckets) == 2
    policies = {policy["Properties"]["Bucket"]["Ref"]: policy["Properties"]["PolicyDocument"]
                for policy in template.find_resources("AWS::S3::BucketPolicy").values()}
    for name, bucket in buckets.items():
        assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("Retain", "Retain")
        props = bucket["Properties"]
        assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        denied = [statement["Condition"] for statement in policies[name]["Statement"]
                  if statement["Effect"] == "Deny" and statement["Action"] == "s3:*"]
        assert denied == [{"Bool": {"aws:SecureTransport": "false"}},
                          {"NumericLessThan": {"s3:TlsVersion": 1.2}}]


def test_backups_use_an_s3_bucket_key_and_their_access_logs_sse_s3(
        synthesized: Synthesized) -> None:
    template = synthesized.template("Data")
    [backups] = template.find_resources("AWS::S3::Bucket", {"Properties": {
        "LoggingConfiguration": Match.object_like({"LogFilePrefix": "backup-bucket/"})}}).values()
    # One data key per bucket, not a KMS request per object written or read.
    [encryption] = backups["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["BucketKeyEnabled"] is True
    # S3 server access logging delivers only to a bucket encrypted with S3's own keys.
    logs_name = backups["Properties"]["LoggingConfiguration"]["DestinationBucketName"]["Ref"]
    logs = template.find_resources("AWS::S3::Bucket")[logs_name]["Properties"]
    assert logs["BucketEncryption"] == {"ServerSideEncryptionConfiguration": [
        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
    assert logs["LifecycleConfiguration"] == {"Rules": [{
        "Id": "ExpireAccessLogs", "ExpirationInDays": 365,
        "NoncurrentVersionExpiration": {"NoncurrentDays": 30}, "Status": "Enabled"}]}


def test_aws_backup_keeps_daily_database_backups_for_30_days(synthesized: Synthesized) -> None:
    vault_id, vault = one_with_id(synthesized, "AWS::Backup::BackupVault", "")
    plan_id, plan = one_with_id(synthesized, "AWS::Backup::BackupPlan", "")
    _, selection = one_with_id(synthesized, "AWS::Backup::BackupSelection", "")
    instance_id, _ = one_with_id(synthesized, "AWS::RDS::DBInstance", "")
    [rule] = plan["Properties"]["BackupPlan"]["BackupPlanRule"]
    # Into our vault (not a default one CDK would add), encrypted with the backup key, and
    # kept when the stack goes.
    assert rule["TargetBackupVault"] == {"Fn::GetAtt": [vault_id, "BackupVaultName"]}
    assert vault["Properties"]["EncryptionKeyArn"]["Fn::GetAtt"][0].startswith("BackupKey")
    assert (vault["DeletionPolicy"], vault["UpdateReplacePolicy"]) == ("Retain", "Retain")
    # At 02:00 UTC and started within the hour, so before RDS's own window (03:00-04:00).
    assert rule["ScheduleExpression"] == "cron(0 2 * * ? *)"
    assert (rule["StartWindowMinutes"], rule["CompletionWindowMinutes"]) == (60, 120)
    assert rule["Lifecycle"] == {"DeleteAfterDays": 30}
    # Of the tenant database, and nothing else.
    assert selection["Properties"]["BackupPlanId"] == {"Fn::GetAtt": [plan_id, "BackupPlanId"]}
    [arn] = selection["Properties"]["BackupSelection"]["Resources"]
    assert {"Ref": instance_id} in arn["Fn::Join"][1]


def test_keys_rotate_and_keys_and_log_groups_outlive_the_stack_outside_dev(
        dev: Synthesized, prod: Synthesized) -> None:
    for synth, policy in ((dev, "Delete"), (prod, "Retain")):
        keys = synth.template("Data").find_resources("AWS::KMS::Key")
        assert len(keys) == 5  # database, cache, backups, logs, alarms
        assert all(k["Properties"]["EnableKeyRotation"] is True for k in keys.values())
        assert {k["DeletionPolicy"] for k in keys.values()} == {policy}
        # A key scheduled for deletion can be cancelled for 30 days outside dev (KMS's
        # longest), 7 in dev (its shortest).
        assert {k["Properties"]["PendingWindowInDays"] for k in keys.values()} == \
            {30 if policy == "Retain" else 7}
        # Each findable by its purpose: alias/boom/<env>/<purpose>, one alias a key.
        aliases = synth.template("Data").find_resources("AWS::KMS::Alias").values()
        assert sorted(a["Properties"]["TargetKeyId"]["Fn::GetAtt"][0] for a in aliases) == \
            sorted(keys)
        assert {a["Properties"]["AliasName"] for a in aliases} == {
            f"alias/boom/{synth.config.name}/{purpose}" for purpose in
            ("database", "cache", "backups", "data-logs", "data-alarms")}
        # Log groups go with a dev stack and stay with the others (their records outlive it).
        log_groups = [g for part in ("Network", "Data") for g in synth.template_json(part)[
            "Resources"].values() if g["Type"] == "AWS::Logs::LogGroup"]
        assert len(log_groups) >= 5 and {g["DeletionPolicy"] for g in log_groups} == {policy}
