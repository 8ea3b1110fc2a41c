"""PgBouncer's Kubernetes objects: valid for the pinned Kubernetes (kubernetes-validate --strict),
what the issue asks (2+ replicas, PDB, Service, ConfigMap, no credentials), and the ConfigMap's
pgbouncer.ini and the ExternalSecret's userlist format actually run on real PgBouncer."""

from __future__ import annotations

import configparser
import copy
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from boom_stacks.config import ENVIRONMENT_CONFIGS, EnvironmentConfig
from boom_stacks.k8s.__main__ import main
from boom_stacks.k8s.pgbouncer import PORT, pgbouncer_manifests
from boom_stacks.k8s.versions import KUBERNETES_VERSION
from tests.fixture_k8s import HOST, manifests, rendered_ini
from tests.fixture_paths import ROOT
from tests.fixture_postgres import (
    PostgresServer,
    local_client_tls,
    pooler_connection,
    running_pgbouncer,
)
from tests.fixture_synth import Synthesized

VALIDATE = Path(sys.executable).parent / "kubernetes-validate"


def validate(objects: list[dict[str, Any]], directory: Path) -> subprocess.CompletedProcess[str]:
    files = []
    for index, obj in enumerate(objects):
        path = directory / f"{index:02d}-{obj['kind'].lower()}.yaml"
        path.write_text(yaml.safe_dump(obj))
        files.append(str(path))
    return subprocess.run([str(VALIDATE), "--strict", "-k", f"{KUBERNETES_VERSION}.0", *files],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_every_core_object_validates_strictly_against_the_pinned_kubernetes(
        env: str, tmp_path: Path) -> None:
    result = validate(list(manifests(env).values()), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # The objects without a core schema are the two CRDs (External Secrets, cert-manager),
    # and nothing else; their fields are asserted below.
    warnings = [line for line in result.stdout.splitlines() if line.startswith("WARN")]
    assert len(warnings) == 2
    assert "kind ExternalSecret" in warnings[0] and "kind Certificate" in warnings[1]
    assert "ERROR" not in result.stdout


def test_the_pinned_kubernetes_is_one_the_pinned_cdk_can_create_on_eks() -> None:
    # The cluster stack must create EKS at KUBERNETES_VERSION: aws-cdk-lib names the versions
    # it ships a kubectl layer for, and a pin beyond them could not be deployed.
    from aws_cdk import aws_eks as eks
    constant = getattr(eks.KubernetesVersion, "V" + KUBERNETES_VERSION.replace(".", "_"), None)
    assert constant is not None and constant.version == KUBERNETES_VERSION


def custom_resources(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Objects of API groups that are not Kubernetes' own (CRDs)."""
    def group(obj: dict[str, Any]) -> str:
        return str(obj["apiVersion"]).rpartition("/")[0]
    return [o for o in objects if "." in group(o) and not group(o).endswith(".k8s.io")]


def validate_crds(objects: list[dict[str, Any]],
                  directory: Path) -> subprocess.CompletedProcess[str]:
    path = directory / "custom-resources.json"
    path.write_text(json.dumps(objects))
    return subprocess.run(["node", str(ROOT / "scripts" / "validate_crds.mjs"), str(path)],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_custom_resources_validate_against_their_published_crd_schemas(
        env: str, tmp_path: Path) -> None:
    crds = custom_resources(list(manifests(env).values()))
    assert sorted(o["kind"] for o in crds) == ["Certificate", "ExternalSecret"]
    result = validate_crds(crds, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_crd_validator_rejects_a_wrong_type_and_an_unknown_value(tmp_path: Path) -> None:
    # Negative control: the same pipeline fails on what the CRDs' schemas forbid.
    objects = manifests()
    certificate = copy.deepcopy(objects["Certificate/pgbouncer-tls"])
    certificate["spec"]["privateKey"]["algorithm"] = "ecdsa"  # the enum is RSA, ECDSA, Ed25519
    external = copy.deepcopy(objects["ExternalSecret/pgbouncer-userlist"])
    external["spec"]["refreshInterval"] = 3600  # a duration string such as "1h"
    result = validate_crds([certificate, external], tmp_path)
    assert result.returncode == 1
    assert "Certificate/pgbouncer-tls: data/spec/privateKey/algorithm" in result.stdout
    assert "ExternalSecret/pgbouncer-userlist: data/spec/refreshInterval must be string" in \
        result.stdout


def test_the_crd_validator_rejects_unknown_fields(tmp_path: Path) -> None:
    # Negative control: misspelt fields, which the CRDs' schemas let through and kubectl's
    # strict field validation would refuse at deploy time, at the top of a spec and nested.
    objects = manifests()
    certificate = copy.deepcopy(objects["Certificate/pgbouncer-tls"])
    certificate["spec"]["privateKey"]["rotationpolicy"] = "Always"
    external = copy.deepcopy(objects["ExternalSecret/pgbouncer-userlist"])
    external["spec"]["refreshIntervall"] = "1h"
    result = validate_crds([certificate, external], tmp_path)
    assert result.returncode == 1
    assert "Certificate/pgbouncer-tls: Object literal may only specify known properties, and " \
        "'\"rotationpolicy\"' does not exist" in result.stdout
    assert "ExternalSecret/pgbouncer-userlist: Object literal may only specify known " \
        "properties, and '\"refreshIntervall\"' does not exist" in result.stdout


def test_the_validator_rejects_an_unknown_field(tmp_path: Path) -> None:
    # Negative control: the same pipeline fails on a misspelt field.
    deployment = copy.deepcopy(manifests()["Deployment/pgbouncer"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    result = validate([deployment], tmp_path)
    assert result.returncode != 0 and "readOnlyRootFileSystem" in result.stdout


def test_the_issue_s_objects_exist_and_agree_with_each_other() -> None:
    objects = manifests("prod")
    assert set(objects) == {"ConfigMap/pgbouncer-config", "ConfigMap/rds-ca-bundle",
                            "ExternalSecret/pgbouncer-userlist", "Certificate/pgbouncer-tls",
                            "Deployment/pgbouncer",
                            "Service/pgbouncer", "PodDisruptionBudget/pgbouncer",
                            "NetworkPolicy/pgbouncer"}
    deployment, service, pdb = (objects["Deployment/pgbouncer"], objects["Service/pgbouncer"],
                                objects["PodDisruptionBudget/pgbouncer"])
    pool = ENVIRONMENT_CONFIGS["prod"].pgbouncer
    assert deployment["spec"]["replicas"] == pool.replicas >= 2
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (service["spec"]["selector"], pdb["spec"]["selector"]["matchLabels"],
                     deployment["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= pod_labels.items()
    # A drain or a node upgrade leaves at least one PgBouncer serving.
    assert pdb["spec"]["maxUnavailable"] < deployment["spec"]["replicas"]
    # A rollout takes no pod out of service before its replacement is ready, one new pod at a
    # time (the connection budget counts twice the replicas: docs/pgbouncer.md).
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == pool.image and ":" in container["image"]
    assert container["ports"][0]["containerPort"] == PORT == service["spec"]["ports"][0]["port"]
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]


def test_pods_run_hardened() -> None:
    pod = manifests()["Deployment/pgbouncer"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    # The image's own non-root user, so its files and the mounted volumes (fsGroup) are readable.
    assert pod["securityContext"]["runAsUser"] == ENVIRONMENT_CONFIGS["dev"].pgbouncer.run_as_user
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"] > 0
    # The image's entrypoint writes config files; the command replaces it (read-only root).
    assert container["command"][0] == "pgbouncer"
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "privileged": False,
        "capabilities": {"drop": ["ALL"]}}
    assert "limits" in container["resources"] and "requests" in container["resources"]
    # Mounted files are never writable; the secrets (app_user's password in the userlist, the
    # client TLS key) are readable by the pod's user and group only.
    modes = {volume["name"]: (kind, volume[kind]["defaultMode"]) for volume in pod["volumes"]
             for kind in ("secret", "configMap") if kind in volume}
    assert modes == {"config": ("configMap", 0o444), "userlist": ("secret", 0o440),
                     "rds-ca": ("configMap", 0o444), "client-tls": ("secret", 0o440)}
    assert {m["name"] for m in container["volumeMounts"] if not m.get("readOnly")} == {"runtime"}


def test_the_config_map_carries_the_seed_values_and_no_credentials() -> None:
    objects = manifests("prod")
    ini_text = objects["ConfigMap/pgbouncer-config"]["data"]["pgbouncer.ini"]
    ini = configparser.ConfigParser()
    ini.read_string(ini_text)
    section = ini["pgbouncer"]
    assert {k: section[k] for k in ("pool_mode", "max_client_conn", "default_pool_size",
                                    "reserve_pool_size", "max_db_connections")} == {
        "pool_mode": "transaction", "max_client_conn": "1000", "default_pool_size": "25",
        "reserve_pool_size": "5", "max_db_connections": "100"}
    assert section["server_tls_sslmode"] == "verify-full"
    assert section["listen_port"] == str(PORT)
    # A silent peer (a failed-over database's old host) is given up after about 15 s, not the
    # kernel's 15 minutes (test_pgbouncer_silent_database.py shows both on real PgBouncer).
    assert {k: section[k] for k in ("tcp_keepalive", "tcp_keepidle", "tcp_keepintvl",
                                    "tcp_keepcnt", "tcp_user_timeout")} == {
        "tcp_keepalive": "1", "tcp_keepidle": "15", "tcp_keepintvl": "5", "tcp_keepcnt": "3",
        "tcp_user_timeout": "15000"}
    # A client idle inside a transaction is cut off after 60 s, not never, PgBouncer's default
    # (test_pgbouncer_idle_transactions.py shows both on real PgBouncer).
    assert section["idle_transaction_timeout"] == "60"
    # Whatever a client leaves on a server connection lasts about 5 minutes, not PgBouncer's
    # hour (test_pgbouncer_prepared_statements.py shows the bound on real PgBouncer).
    assert section["server_lifetime"] == "300"
    # Prepared statements pooled, at most 200 per server connection, whatever a later
    # PgBouncer's default (0020's check costs about 0.2 us per statement held)
    assert section["max_prepared_statements"] == "200"
    # The files the ini names are the files the pod mounts.
    mounts = {m["mountPath"] for m in objects["Deployment/pgbouncer"]["spec"]["template"][
        "spec"]["containers"][0]["volumeMounts"]}
    for path in (section["auth_file"], section["server_tls_ca_file"]):
        assert str(Path(path).parent) in mounts
    assert f"host={HOST}" in ini["databases"]["boom_booking"]
    # No object is a Secret and nothing carries a password value.
    assert not [o for o in objects.values() if o["kind"] == "Secret"]
    everything = json.dumps(list(objects.values()))
    assert "password =" not in everything and "PASSWORD" not in everything
    assert objects["ConfigMap/rds-ca-bundle"]["data"]["rds-ca-bundle.pem"].count(
        "BEGIN CERTIFICATE") > 50


@pytest.mark.parametrize("seconds", [5, 16, 600])
def test_a_silent_peer_is_given_up_within_one_to_two_dead_connection_seconds(
        seconds: int) -> None:
    # Config's whole range (5-600): an idle connection is probed after `seconds` and closed
    # after tcp_keepcnt unanswered probes, tcp_keepintvl apart; data unacknowledged for
    # `seconds` closes a busy one (tcp_user_timeout, in ms).
    prod = ENVIRONMENT_CONFIGS["prod"]
    config = replace(prod, pgbouncer=replace(prod.pgbouncer, dead_connection_seconds=seconds))
    section = rendered_ini(manifests(config))["pgbouncer"]
    idle, interval, probes = (int(section[k]) for k in ("tcp_keepidle", "tcp_keepintvl",
                                                        "tcp_keepcnt"))
    assert idle == seconds and interval >= 1
    assert seconds < idle + probes * interval <= 2 * seconds
    assert int(section["tcp_user_timeout"]) == seconds * 1000


def test_the_network_policy_admits_only_the_namespace_and_reaches_only_postgres_and_dns() -> None:
    objects = manifests("prod")
    policy = objects["NetworkPolicy/pgbouncer"]["spec"]
    pod_labels = objects["Deployment/pgbouncer"]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [{"from": [{"podSelector": {}}],
                                  "ports": [{"protocol": "TCP", "port": PORT}]}]
    to_postgres, to_dns = policy["egress"]
    assert to_postgres["to"] == [{"ipBlock": {"cidr": ENVIRONMENT_CONFIGS["prod"].network.cidr}}]
    assert to_postgres["ports"] == [{"protocol": "TCP", "port": 5432}]
    assert {p["port"] for p in to_dns["ports"]} == {53}


def test_a_config_change_rolls_the_pods() -> None:
    def annotation(config: EnvironmentConfig) -> str:
        objects = pgbouncer_manifests(config, database_host=HOST, ca_bundle="x")
        deployment = next(o for o in objects if o["kind"] == "Deployment")
        return str(deployment["spec"]["template"]["metadata"]["annotations"][
            "boom.io/config-sha256"])

    staging = ENVIRONMENT_CONFIGS["staging"]
    bigger = replace(staging, pgbouncer=replace(staging.pgbouncer, default_pool_size=30))
    assert annotation(staging) != annotation(bigger)


def test_the_userlist_comes_from_the_bootstrap_s_app_user_secret(dev: Synthesized) -> None:
    external = manifests("dev")["ExternalSecret/pgbouncer-userlist"]
    remote = external["spec"]["data"][0]["remoteRef"]
    names = [r["Properties"].get("Name") for r in dev.template("Data").find_resources(
        "AWS::SecretsManager::Secret").values()]
    assert remote == {"key": "boom/dev/database/app_user", "property": "password"}
    assert remote["key"] in names
    assert external["spec"]["target"]["name"] == "pgbouncer-userlist"


def test_the_client_certificate_covers_the_service_and_is_what_pgbouncer_serves() -> None:
    objects = manifests("prod")
    certificate = objects["Certificate/pgbouncer-tls"]
    assert certificate["apiVersion"] == "cert-manager.io/v1"
    spec = certificate["spec"]
    assert spec["issuerRef"] == {"group": "cert-manager.io", "kind": "ClusterIssuer",
                                 "name": ENVIRONMENT_CONFIGS["prod"].pgbouncer.client_tls_issuer}
    # Every name a client in the cluster can reach the Service by
    service = objects["Service/pgbouncer"]["metadata"]
    assert spec["dnsNames"] == [
        service["name"], f"{service['name']}.{service['namespace']}",
        f"{service['name']}.{service['namespace']}.svc",
        f"{service['name']}.{service['namespace']}.svc.cluster.local"]
    assert "server auth" in spec["usages"] and spec["privateKey"] == {
        "algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"}  # P-256, a new key each time
    # The Secret cert-manager writes is mounted where the ini points PgBouncer
    deployment = objects["Deployment/pgbouncer"]
    pod = deployment["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "client-tls")
    assert volume["secret"]["secretName"] == spec["secretName"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "client-tls")
    section = rendered_ini(objects)["pgbouncer"]
    assert (section["client_tls_sslmode"], section["client_tls_protocols"]) == (
        "require", "tlsv1.3")
    for key in ("client_tls_cert_file", "client_tls_key_file"):
        path = Path(section[key])
        assert str(path.parent) == mount["mountPath"]
        assert path.name in {item["path"] for item in volume["secret"]["items"]}
    # and a renewal, like a new app_user password, rolls the pods (PgBouncer reads both files
    # when it starts).
    userlist = next(v for v in pod["volumes"] if v["name"] == "userlist")
    assert deployment["metadata"]["annotations"] == {
        "secret.reloader.stakater.com/reload":
            f"{spec['secretName']},{userlist['secret']['secretName']}"}
    assert userlist["secret"]["secretName"] == objects[
        "ExternalSecret/pgbouncer-userlist"]["spec"]["target"]["name"]


def test_the_config_map_and_userlist_run_on_real_pgbouncer(
        postgres: PostgresServer, tenant_db: str, role_passwords: dict[str, str]) -> None:
    # Given the ConfigMap's ini with only the cluster-specific paths and addresses swapped
    objects = manifests("prod")
    ini = objects["ConfigMap/pgbouncer-config"]["data"]["pgbouncer.ini"]
    local = {f"host={HOST} port=5432 dbname=boom_booking":
             f"host=127.0.0.1 port={postgres.port} dbname={tenant_db}",
             "boom_booking =": f"{tenant_db} =",
             "/etc/pgbouncer/tls/rds-ca-bundle.pem": str(postgres.ca_file),
             "/etc/pgbouncer/auth/userlist.txt": "{dir}/userlist.txt",
             "/etc/pgbouncer/client-tls/tls.crt": local_client_tls(postgres).cert_file,
             "/etc/pgbouncer/client-tls/tls.key": local_client_tls(postgres).key_file,
             "unix_socket_dir = /tmp": "unix_socket_dir = {dir}",
             "listen_addr = 0.0.0.0": "listen_addr = 127.0.0.1",
             f"listen_port = {PORT}": "listen_port = {port}"}
    for cluster, here in local.items():
        assert ini.count(cluster) == 1, cluster
        ini = ini.replace(cluster, here)
    # and the userlist that External Secrets renders from the app_user secret
    template = objects["ExternalSecret/pgbouncer-userlist"]["spec"]["target"]["template"]
    userlist = template["data"]["userlist.txt"].replace("{{ .password }}",
                                                        role_passwords["app_user"])
    # When app_user connects through it, Then the tenant contract holds
    with running_pgbouncer(ini, userlist, client_ca=postgres.ca_file) as bouncer:
        conn = pooler_connection(bouncer, tenant_db, role_passwords["app_user"])
        try:
            assert conn.run("SELECT current_user") == [["app_user"]]
            assert conn.run("SELECT count(*) FROM app.bookings WHERE tenant_id IS NOT NULL "
                            "AND app.current_tenant_id() IS NULL") == [[0]]
        finally:
            conn.close()


@pytest.mark.parametrize("host", [HOST, "10.30.3.17", "db-1.internal", "a" * 63 + ".example"])
def test_the_cli_prints_yaml_for_a_host_name_or_address(
        host: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--env", "staging", "--database-host", host]) == 0
    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in documents] == ["ConfigMap", "ConfigMap", "ExternalSecret",
                                              "Certificate", "Deployment", "Service",
                                              "PodDisruptionBudget", "NetworkPolicy"]
    ini = next(d for d in documents if "pgbouncer.ini" in d.get("data", {}))
    assert f"host={host} " in ini["data"]["pgbouncer.ini"]


@pytest.mark.parametrize("host", [
    "db host; rm -rf /",
    f"{HOST}\n",  # would end pgbouncer.ini's [databases] line after host= (^...$ passed it)
    "db..example.com", ".example.com", "db.example.com.", "-db.example.com", "db-.example.com",
    "a" * 64 + ".example",  # a DNS label is 63 characters at most
    ".".join(["d" * 63] * 4),  # 255 characters: a name is 253 at most
])
def test_the_cli_refuses_a_bad_host_before_printing_anything(
        host: str, capsys: pytest.CaptureFixture[str]) -> None:
    # `=`: argparse would take "-db..." after a space for an option
    assert main(["--env", "staging", f"--database-host={host}"]) == 2
    printed = capsys.readouterr()
    assert "--database-host" in printed.err and printed.out == ""


def test_the_cli_refuses_an_unknown_environment(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--env", "qa", "--database-host", HOST])
    assert exit_.value.code == 2 and "invalid choice: 'qa'" in capsys.readouterr().err
