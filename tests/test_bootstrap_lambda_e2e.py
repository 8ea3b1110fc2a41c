"""The packaged Lambda (custom resource, scheduled check, rotation), run as Lambda runs it: the
bundled asset on the runtime's Python version (3.13, from pyenv) with no site-packages, the
runtime's boto3 beside it, Secrets Manager emulated by moto's server over HTTP, and the real
PostgreSQL over verified TLS."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from boom_stacks.constructs.tenant_bootstrap import ASSET
from lambdas.tenant_bootstrap import bootstrap, master_secret, rotation, scheduled_check
from tests.fixture_lambda import runtime_interpreter, runtime_packages
from tests.fixture_postgres import (
    PostgresServer,
    bootstrapped_database,
    free_port,
    superuser_of_its_own,
)
from tests.fixture_secrets import rotation_event, stand_in_function

INVOKE = """
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]   # /var/task, then /var/runtime
from tenant_bootstrap.handler import on_event
try:
    print(json.dumps(on_event(json.loads(sys.argv[3]), None)))
except Exception as err:   # what the Lambda runtime reports as errorMessage
    print(json.dumps({"errorType": type(err).__name__, "errorMessage": str(err)}))
    sys.exit(1)
"""


@pytest.fixture(scope="module")
def lambda_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return (ASSET.bundle(tmp_path_factory.mktemp("task")),
            runtime_packages(tmp_path_factory.mktemp("runtime")))


@pytest.fixture(scope="module")
def secrets_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def invoke(lambda_dirs: tuple[Path, Path], endpoint: str, ca_file: Path,
           event: dict[str, Any], environment: dict[str, str] | None = None,
           ) -> tuple[int, dict[str, Any]]:
    task, runtime = lambda_dirs
    env = {"AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           master_secret.CA_FILE_VARIABLE: str(ca_file), **(environment or {})}
    result = subprocess.run([runtime_interpreter(), "-I", "-S", "-B", "-c", INVOKE, str(task),
                             str(runtime), json.dumps(event)],
                            env=env, capture_output=True, text=True, timeout=120, check=False)
    return result.returncode, json.loads(result.stdout.strip().splitlines()[-1])


def test_the_packaged_lambda_creates_and_fails_as_cloudformation_would_see(
        lambda_dirs: tuple[Path, Path], secrets_endpoint: str, postgres: PostgresServer,
        role_passwords: dict[str, str]) -> None:
    client = boto3.client("secretsmanager", endpoint_url=secrets_endpoint,
                          region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    database = postgres.create_database()

    def secret(name: str, value: dict[str, object]) -> str:
        return str(client.create_secret(Name=f"boom/e2e/{database}/{name}",
                                        SecretString=json.dumps(value))["ARN"])

    master = {"engine": "postgres", "host": "127.0.0.1", "port": postgres.port,
              "dbname": database, "username": "postgres", "password": postgres.password}
    properties = {
        "MasterSecretArn": secret("master", master),
        "AppUserSecretArn": secret("app_user", {"password": role_passwords["app_user"]}),
        "OwnerSecretArn": secret("owner", {"password": role_passwords["boom_owner"]}),
        "TargetVersion": str(bootstrap.LATEST_VERSION)}
    create = {"RequestType": "Create", "LogicalResourceId": "TenantBootstrap",
              "ResourceProperties": properties}
    # Create applies every version
    code, response = invoke(lambda_dirs, secrets_endpoint, postgres.ca_file, create)
    assert code == 0, response
    assert response["Data"]["SchemaVersion"] == str(bootstrap.LATEST_VERSION)
    # An Update (retried as CloudFormation may) changes nothing more
    update = {**create, "RequestType": "Update", "PhysicalResourceId": response[
        "PhysicalResourceId"]}
    code, response = invoke(lambda_dirs, secrets_endpoint, postgres.ca_file, update)
    assert code == 0 and response["Data"]["Applied"] == ""
    # The schedule's check event runs the check (no findings) and prints the metric line
    # (and logs in as each role with its secret's password)
    check = {"Check": scheduled_check.CHECK, "MasterSecretArn": properties["MasterSecretArn"],
             "Environment": "dev", "AppUserSecretArn": properties["AppUserSecretArn"],
             "OwnerSecretArn": properties["OwnerSecretArn"]}
    code, response = invoke(lambda_dirs, secrets_endpoint, postgres.ca_file, check)
    assert (code, response) == (0, {"Environment": "dev", "Findings": [],
                                    "SchemaVersion": str(bootstrap.LATEST_VERSION)})
    # and an operator's repair event (the check's, "Repair" for "Check") repairs nothing here
    repair = {"Repair": check.pop("Check"), **check}
    code, response = invoke(lambda_dirs, secrets_endpoint, postgres.ca_file, repair)
    assert (code, response) == (0, {"Environment": "dev", "Repaired": [],
                                    "SchemaVersion": str(bootstrap.LATEST_VERSION)})
    # A master secret that does not exist fails with the reason CloudFormation will show
    gone = {**properties, "MasterSecretArn": properties["MasterSecretArn"] + "-gone"}
    code, response = invoke(lambda_dirs, secrets_endpoint, postgres.ca_file,
                            {**create, "ResourceProperties": gone})
    assert code == 1 and response["errorType"] == "BootstrapError"
    assert "MasterSecretArn" in response["errorMessage"]
    assert "cannot read the secret (ResourceNotFoundException" in response["errorMessage"]
    assert postgres.password not in json.dumps(response)


@pytest.fixture
def rotating_endpoint(secrets_endpoint: str) -> dict[str, str]:
    """The moto server's client arguments, its Lambda set to run without Docker: the function
    RotateSecret names only stands in."""
    configure = urllib.request.Request(
        f"{secrets_endpoint}/moto-api/config", method="POST",
        data=json.dumps({"lambda": {"use_docker": False}}).encode())
    with urllib.request.urlopen(configure, timeout=10) as answer:
        assert answer.status == 201
    return {"endpoint_url": secrets_endpoint, "region_name": "us-east-1",
            "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def rotated_by_the_asset(lambda_dirs: tuple[Path, Path], aws: dict[str, str],
                         postgres: PostgresServer, arn: str, master_arn: str) -> str:
    """Secrets Manager's four steps, each a separate invocation of the asset, as Secrets
    Manager sends them after moto's RotateSecret made the pending version; the new password."""
    client = boto3.client("secretsmanager", **aws)
    token = client.rotate_secret(SecretId=arn, RotationLambdaARN=stand_in_function(**aws),
                                 RotationRules={"AutomaticallyAfterDays": 30})["VersionId"]
    for step in rotation.STEPS:
        code, response = invoke(
            lambda_dirs, aws["endpoint_url"], postgres.ca_file,
            rotation_event(step, arn, token),
            {rotation.MASTER_SECRET_VARIABLE: master_arn})
        assert (code, response) == (0, {"Step": step, "Done": "ok"})
    return str(json.loads(client.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")[
        "SecretString"])["password"])


@pytest.mark.usefixtures("role_passwords_back")
def test_the_packaged_lambda_rotates_boom_owners_password_and_the_masters(
        lambda_dirs: tuple[Path, Path], rotating_endpoint: dict[str, str],
        postgres: PostgresServer, role_passwords: dict[str, str]) -> None:
    client = boto3.client("secretsmanager", **rotating_endpoint)
    database = bootstrapped_database(postgres, role_passwords)
    # A master of the test's own: the session's other tests log in as the superuser.
    with superuser_of_its_own(postgres, database) as (admin, password):
        master = {"engine": "postgres", "host": "127.0.0.1", "port": postgres.port,
                  "dbname": database, "username": admin, "password": password}
        master_arn = client.create_secret(Name=f"boom/e2e/{database}/master",
                                          SecretString=json.dumps(master))["ARN"]
        owner = client.create_secret(Name=f"boom/e2e/{database}/owner", SecretString=json.dumps(
            {"username": "boom_owner", "password": role_passwords["boom_owner"]}))["ARN"]
        for role, arn, old in (("boom_owner", owner, role_passwords["boom_owner"]),
                               (admin, master_arn, password)):
            new = rotated_by_the_asset(lambda_dirs, rotating_endpoint, postgres, arn,
                                       master_arn)
            assert new != old
            conn = postgres.connect(database, user=role, password=new, tls=True)
            assert conn.run("SELECT current_user") == [[role]]
            conn.close()
