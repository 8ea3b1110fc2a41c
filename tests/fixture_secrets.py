"""The bootstrap handler's AWS side in tests: moto's Secrets Manager holding the master and
role secrets, the custom resource's events, a rotation started as Secrets Manager starts one,
a master of a test's own to rotate, and what the tests compare a database by before and after
a run."""

from __future__ import annotations

import contextlib
import io
import json
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pg8000.native
import pytest
from moto import mock_aws
from moto.core import enable_iam_authentication

from lambdas.tenant_bootstrap import bootstrap, handler, master_secret, rotation, scheduled_check
from tests.fixture_bootstrap import schema_dump
from tests.fixture_postgres import PostgresServer, superuser_of_its_own


@dataclass
class Secrets:
    client: Any
    app_user: str
    owner: str
    rotation_function: str = ""  # moto's stand-in, made by the first start_rotation

    def master(self, **values: object) -> str:
        return self.put("master", values)

    def put(self, name: str, value: object) -> str:
        body = value if isinstance(value, str) else json.dumps(value)
        return str(self.client.create_secret(Name=f"boom/test/{name}/{_counter()}",
                                             SecretString=body)["ARN"])

    def start_rotation(self, arn: str) -> str:
        """What RotateSecret does before the rotation function's steps, in moto as in AWS:
        rotation enabled (the first time), and an empty AWSPENDING version whose id is the
        steps' ClientRequestToken, returned. moto's stand-in function runs no code; the test
        then sends the four steps to the handler, as Secrets Manager would."""
        if not self.rotation_function:
            self.rotation_function = stand_in_function()
        return str(self.client.rotate_secret(
            SecretId=arn, RotationLambdaARN=self.rotation_function,
            RotationRules={"AutomaticallyAfterDays": 30})["VersionId"])

    def current(self, arn: str) -> dict[str, Any]:
        return dict(json.loads(self.client.get_secret_value(
            SecretId=arn, VersionStage="AWSCURRENT")["SecretString"]))

    def stages(self, arn: str) -> dict[str, list[str]]:
        """Each version's staging labels, versions without one left out."""
        versions = self.client.describe_secret(SecretId=arn)["VersionIdsToStages"]
        return {version: sorted(labels) for version, labels in versions.items() if labels}


def stand_in_function(**client_args: str) -> str:
    """A function in moto's Lambda for RotateSecret to name (it refuses an unknown ARN); it
    runs no code. `client_args` point boto3 at moto's server, where one is used."""
    role = boto3.client("iam", **client_args).create_role(
        RoleName=f"rotation-{_counter()}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("stand_in.py", "def handler(event, context):\n    return None\n")
    return str(boto3.client("lambda", **client_args).create_function(
        FunctionName=f"rotation-{_counter()}", Runtime="python3.13", Role=role,
        Handler="stand_in.handler", Code={"ZipFile": code.getvalue()})["FunctionArn"])


@contextlib.contextmanager
def as_function(monkeypatch: pytest.MonkeyPatch, policy: dict[str, Any]) -> Iterator[None]:
    """moto enforcing IAM on the code under test, whose credentials (the environment's, as a
    Lambda function's role gives them) are those of a user with `policy` alone. moto judges
    actions, not resources (outside S3): a statement must name "*". Meanwhile the test's own
    client (its credentials are nobody's) is refused too."""
    iam = boto3.client("iam")
    user = f"function-{_counter()}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="function", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    with monkeypatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        patch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        patch.setattr(boto3, "DEFAULT_SESSION", None)  # it keeps the credentials it first read
        with enable_iam_authentication():
            yield


def denied(monkeypatch: pytest.MonkeyPatch, action: str) -> contextlib.AbstractContextManager[None]:
    """as_function, allowed every Secrets Manager action but `action` (on every secret): a
    function whose role lacks one permission."""
    return as_function(monkeypatch, {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"},
                      {"Effect": "Deny", "Action": f"secretsmanager:{action}",
                       "Resource": "*"}]})


def guarantee_event(kind: str, master_arn: str, secrets: Secrets | None = None,
                    environment: str = "dev") -> dict[str, Any]:
    """The schedule's check event (`kind` "Check"), or the stack's TenantRepairEvent
    ("Repair"), naming `secrets`' role secrets where given."""
    roles = ({"AppUserSecretArn": secrets.app_user, "OwnerSecretArn": secrets.owner}
             if secrets else {})
    return {kind: scheduled_check.CHECK, "MasterSecretArn": master_arn,
            "Environment": environment, **roles}


def resource_event(request: str, secrets: Secrets, master_arn: str, version: object = None,
                   **extra: Any) -> dict[str, Any]:
    """The custom resource's event as CloudFormation sends it, with `secrets`' role secrets."""
    properties = {"ServiceToken": "arn:aws:lambda:eu-west-1:111111111111:function:provider",
                  "MasterSecretArn": master_arn, "AppUserSecretArn": secrets.app_user,
                  "OwnerSecretArn": secrets.owner,
                  "TargetVersion": str(version or bootstrap.LATEST_VERSION)}
    return {"RequestType": request, "LogicalResourceId": "TenantBootstrap",
            "ResourceProperties": properties, **extra}


# Secrets Manager's rotation events also carry a RotationToken, which a function rotating a
# secret of another account passes back; this one reads no such secret and ignores it. AWS
# marks it sensitive: it must reach no log (test_owner_secret_rotation.py checks).
ROTATION_TOKEN = f"rotation-token-{uuid.uuid4().hex}"


def rotation_event(name: str, arn: str, token: str) -> dict[str, str]:
    """One rotation step's event, as Secrets Manager sends it."""
    return {"Step": name, "SecretId": arn, "ClientRequestToken": token,
            "RotationToken": ROTATION_TOKEN}


def step(name: str, arn: str, token: str) -> dict[str, Any]:
    """One rotation step sent to the handler, as Secrets Manager sends it."""
    return handler.on_event(rotation_event(name, arn, token))


def rotate(arn: str, token: str, steps: tuple[str, ...] = rotation.STEPS) -> None:
    """`steps` of the rotation `token` of the secret `arn`, in order (all four by default)."""
    for name in steps:
        step(name, arn, token)


_count = iter(range(1_000_000))


def _counter() -> int:
    return next(_count)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, postgres: PostgresServer,
        role_passwords: dict[str, str]) -> Iterator[Secrets]:
    """moto's Secrets Manager with the role secrets in it, and the handler pointed at the test
    server's CA; no waiting between master-password retries."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(master_secret.CA_FILE_VARIABLE, str(postgres.ca_file))
    monkeypatch.setattr(master_secret, "RETRY_WAIT_SECONDS", 0)
    # moto's Lambda runs no code without Docker: a function there only stands in for the
    # rotation function that RotateSecret names (start_rotation).
    with mock_aws(config={"lambda": {"use_docker": False}}):
        client = boto3.client("secretsmanager")
        secrets = Secrets(client, "", "")
        # Roles are cluster-wide: the session's passwords, which other tests log in with.
        secrets.app_user = secrets.put("app_user", {"username": "app_user",
                                                    "password": role_passwords["app_user"]})
        secrets.owner = secrets.put("owner", {"username": "boom_owner",
                                              "password": role_passwords["boom_owner"]})
        yield secrets


def master_values(postgres: PostgresServer, database: str, **overrides: object) -> dict[str, Any]:
    values: dict[str, Any] = {"engine": "postgres", "host": "127.0.0.1", "port": postgres.port,
                              "dbname": database, "username": "postgres",
                              "password": postgres.password}
    values.update(overrides)
    return values


def state(postgres: PostgresServer, database: str) -> tuple[str, list[list[object]]]:
    conn = postgres.connect(database)
    try:
        recorded = conn.run("SELECT version, checksum FROM boom_meta.schema_versions "
                            "ORDER BY 1") if conn.run(
            "SELECT to_regclass('boom_meta.schema_versions')")[0][0] else []
    finally:
        conn.close()
    return schema_dump(postgres, database), recorded


def refused_by_check_and_run(postgres: PostgresServer, database: str,
                             admin: pg8000.native.Connection, finding: str) -> None:
    """`finding` is the guarantee check's one finding (a gap no run papers over), and a run
    refuses, naming it, with `database` left exactly as it was."""
    assert bootstrap.check(admin).findings == (f"would refuse: {finding}",)
    unchanged = state(postgres, database)
    with pytest.raises(bootstrap.BootstrapError) as failure:
        bootstrap.apply(admin)
    assert f"gaps the bootstrap will not override: {finding}." in str(failure.value)
    assert state(postgres, database) == unchanged


@dataclass(frozen=True)
class OwnMaster:
    database: str
    arn: str  # its secret's, which the function's environment names
    user: str
    password: str  # the one it starts with


@pytest.fixture
def own_master(postgres: PostgresServer, aws: Secrets,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[OwnMaster]:
    """A new database and a master user of its own (superuser_of_its_own), its secret in moto
    and named by the function's environment, so that rotating it changes no other test's
    logins."""
    database = postgres.create_database()
    with superuser_of_its_own(postgres, database) as (user, password):
        arn = aws.master(**master_values(postgres, database, username=user, password=password))
        monkeypatch.setenv(rotation.MASTER_SECRET_VARIABLE, arn)
        yield OwnMaster(database, arn, user, password)
