"""PgBouncer for one environment as plain Kubernetes objects (dicts); the cluster stack applies
them. Validated against the pinned Kubernetes schemas by tests (`kubernetes-validate --strict`).

- ConfigMap `pgbouncer-config`: pgbouncer.ini from config; ConfigMap `rds-ca-bundle`: the RDS CAs
  PgBouncer verifies the database against (public certificates).
- ExternalSecret `pgbouncer-userlist`: External Secrets writes the Secret holding userlist.txt
  from Secrets Manager (`boom/<env>/database/app_user`). No credential is in any object here.
- Certificate `pgbouncer-tls`: cert-manager issues the certificate PgBouncer serves clients
  (TLS 1.3 required) from the ClusterIssuer config names.
- Deployment (config's replicas, spread over zones, non-root, read-only root file system),
  Service on 6432, PodDisruptionBudget that keeps all but one replica up during drains.
- NetworkPolicy: only pods of the namespace may connect; PgBouncer may reach only PostgreSQL
  inside the VPC and DNS (enforced where the cluster's CNI enforces policies).

Usage: `python -m boom_stacks.k8s --env dev --database-host HOST` prints YAML.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from boom_stacks.config import EnvironmentConfig
from boom_stacks.k8s.pgbouncer_ini import ClientTls, Upstream, render_ini
from boom_stacks.k8s.versions import CERT_MANAGER_API, EXTERNAL_SECRETS_API
from boom_stacks.rds_ca import rds_ca_bundle

NAMESPACE = "boom-booking"
NAME = "pgbouncer"
PORT = 6432
CONFIG_DIR = "/etc/pgbouncer"
AUTH_DIR = f"{CONFIG_DIR}/auth"
TLS_DIR = f"{CONFIG_DIR}/tls"
CLIENT_TLS_DIR = f"{CONFIG_DIR}/client-tls"
CLIENT_TLS_SECRET = "pgbouncer-tls"  # written by cert-manager from the Certificate below
USERLIST_SECRET = "pgbouncer-userlist"  # written by External Secrets (app_user's password)
RUNTIME_DIR = "/tmp"  # unix socket; an emptyDir, the root file system is read-only
SECRET_STORE = "aws-secrets-manager"  # ClusterSecretStore created by the cluster stack
APP_ROLE = "app_user"
DRAIN_SECONDS = 10  # a terminating pod leaves the Service's endpoints within this

Manifest = dict[str, Any]


def pgbouncer_manifests(config: EnvironmentConfig, *, database_host: str,
                        namespace: str = NAMESPACE, ca_bundle: str | None = None) -> list[Manifest]:
    """Every object PgBouncer needs, in apply order."""
    upstream = Upstream(host=database_host, database=config.database.database_name,
                        ca_file=f"{TLS_DIR}/rds-ca-bundle.pem")
    ini = render_ini(config.pgbouncer, upstream, listen_port=PORT,
                     auth_file=f"{AUTH_DIR}/userlist.txt", runtime_dir=RUNTIME_DIR,
                     client_tls=ClientTls(cert_file=f"{CLIENT_TLS_DIR}/tls.crt",
                                          key_file=f"{CLIENT_TLS_DIR}/tls.key"))
    labels = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "boom-booking",
              "boom.io/environment": config.name}
    selector = {"app.kubernetes.io/name": NAME}
    config_map = _object("v1", "ConfigMap", "pgbouncer-config", namespace, labels,
                         data={"pgbouncer.ini": ini})
    ca_map = _object("v1", "ConfigMap", "rds-ca-bundle", namespace, labels,
                     data={"rds-ca-bundle.pem": ca_bundle or rds_ca_bundle()})
    return [
        config_map,
        ca_map,
        _userlist_external_secret(config, namespace, labels),
        _client_certificate(config, namespace, labels),
        _deployment(config, namespace, labels, selector,
                    config_hash=_sha256(config_map, ca_map)),
        _object("v1", "Service", NAME, namespace, labels, spec={
            "type": "ClusterIP", "selector": selector,
            "ports": [{"name": "postgres", "port": PORT, "targetPort": "postgres",
                       "protocol": "TCP"}]}),
        _object("policy/v1", "PodDisruptionBudget", NAME, namespace, labels, spec={
            "maxUnavailable": 1, "selector": {"matchLabels": selector}}),
        _network_policy(config, namespace, labels, selector),
    ]


def _object(api_version: str, kind: str, name: str, namespace: str, labels: dict[str, str],
            **body: Any) -> Manifest:
    return {"apiVersion": api_version, "kind": kind,
            "metadata": {"name": name, "namespace": namespace, "labels": labels}, **body}


def _userlist_external_secret(config: EnvironmentConfig, namespace: str,
                              labels: dict[str, str]) -> Manifest:
    # Passwords are alphanumeric (generated without punctuation), so no quoting is needed.
    return _object(EXTERNAL_SECRETS_API, "ExternalSecret", USERLIST_SECRET, namespace,
                   labels, spec={
                       "refreshInterval": "1h",
                       "secretStoreRef": {"kind": "ClusterSecretStore", "name": SECRET_STORE},
                       "target": {"name": USERLIST_SECRET, "creationPolicy": "Owner",
                                  "template": {"data": {
                                      "userlist.txt": f'"{APP_ROLE}" "{{{{ .password }}}}"\n'}}},
                       "data": [{"secretKey": "password", "remoteRef": {
                           "key": f"boom/{config.name}/database/{APP_ROLE}",
                           "property": "password"}}],
                   })


def _client_certificate(config: EnvironmentConfig, namespace: str,
                        labels: dict[str, str]) -> Manifest:
    """The certificate PgBouncer serves its clients, for every name the Service answers to.
    cert-manager renews it 30 days before it expires and rewrites the Secret; PgBouncer reads
    the files when it starts, so the Deployment asks Reloader to roll the pods then."""
    service = f"{NAME}.{namespace}.svc"
    return _object(CERT_MANAGER_API, "Certificate", CLIENT_TLS_SECRET, namespace, labels, spec={
        "secretName": CLIENT_TLS_SECRET,
        "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer",
                      "name": config.pgbouncer.client_tls_issuer},
        "dnsNames": [NAME, f"{NAME}.{namespace}", service, f"{service}.cluster.local"],
        "duration": "2160h",
        "renewBefore": "720h",
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        "usages": ["server auth", "digital signature"],
    })


def _network_policy(config: EnvironmentConfig, namespace: str, labels: dict[str, str],
                    selector: dict[str, str]) -> Manifest:
    """In: pods of this namespace, on 6432. Out: PostgreSQL inside the VPC, and DNS."""
    dns = [{"protocol": protocol, "port": 53} for protocol in ("UDP", "TCP")]
    return _object("networking.k8s.io/v1", "NetworkPolicy", NAME, namespace, labels, spec={
        "podSelector": {"matchLabels": selector},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"podSelector": {}}],
                     "ports": [{"protocol": "TCP", "port": PORT}]}],
        "egress": [
            {"to": [{"ipBlock": {"cidr": config.network.cidr}}],
             "ports": [{"protocol": "TCP", "port": 5432}]},
            {"to": [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": "kube-system"}}}], "ports": dns},
        ],
    })


def probe_command(config: EnvironmentConfig) -> list[str]:
    """Passes only when PgBouncer answers a StartupMessage (with its SCRAM request: no password
    is sent and no server connection opened). A TCP probe is not enough: a stalled PgBouncer
    (one process spinning, as CVE-2026-107349 can make it) still completes TCP handshakes from
    the kernel's backlog. The image ships PostgreSQL's client tools, pg_isready among them."""
    return ["pg_isready", "--host=127.0.0.1", f"--port={PORT}", f"--username={APP_ROLE}",
            f"--dbname={config.database.database_name}", "--timeout=3"]


def pre_stop_command(pid: str = "1", drain_seconds: int = DRAIN_SECONDS) -> list[str]:
    """Stop PgBouncer between transactions, not in the middle of one.

    First let the Service drop the pod (`drain_seconds`), then send SIGINT, PgBouncer's safe
    shutdown: it lets the transactions in flight finish, then closes every client, which
    reconnect to the other replicas. The hook waits for PgBouncer (the container's PID 1) to
    exit. Without it the kubelet sends SIGTERM, PgBouncer's "super safe" shutdown (1.23+),
    which keeps serving connected clients until they leave; pooled application connections
    never leave, so the kubelet kills PgBouncer at the end of the grace period, mid-transaction.
    """
    return ["/bin/sh", "-c", f"sleep {drain_seconds}; kill -INT {pid}; "
            f"while kill -0 {pid} 2>/dev/null; do sleep 1; done"]


def _deployment(config: EnvironmentConfig, namespace: str, labels: dict[str, str],
                selector: dict[str, str], config_hash: str) -> Manifest:
    user = config.pgbouncer.run_as_user
    container = {
        "name": NAME,
        "image": config.pgbouncer.image,
        # Replaces the image's entrypoint, which would write config into the read-only root.
        "command": ["pgbouncer", f"{CONFIG_DIR}/pgbouncer.ini"],
        "ports": [{"name": "postgres", "containerPort": PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "250m", "memory": "128Mi"},
                      "limits": {"cpu": "1", "memory": "256Mi"}},
        "readinessProbe": {"exec": {"command": probe_command(config)}, "periodSeconds": 5,
                           "timeoutSeconds": 5},
        "livenessProbe": {"exec": {"command": probe_command(config)},
                          "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 5,
                          "failureThreshold": 3},
        "lifecycle": {"preStop": {"exec": {"command": pre_stop_command()}}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "privileged": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [
            {"name": "config", "mountPath": f"{CONFIG_DIR}/pgbouncer.ini",
             "subPath": "pgbouncer.ini", "readOnly": True},
            {"name": "userlist", "mountPath": AUTH_DIR, "readOnly": True},
            {"name": "rds-ca", "mountPath": TLS_DIR, "readOnly": True},
            {"name": "client-tls", "mountPath": CLIENT_TLS_DIR, "readOnly": True},
            {"name": "runtime", "mountPath": RUNTIME_DIR},
        ],
    }
    pod_spec = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        # The drain plus up to 30 s for the transactions in flight to finish.
        "terminationGracePeriodSeconds": DRAIN_SECONDS + 30,
        "securityContext": {"runAsNonRoot": True, "runAsUser": user, "runAsGroup": user,
                            "fsGroup": user, "seccompProfile": {"type": "RuntimeDefault"}},
        "topologySpreadConstraints": [{
            "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": selector}}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100, "podAffinityTerm": {
                "topologyKey": "kubernetes.io/hostname",
                "labelSelector": {"matchLabels": selector}}}]}},
        "containers": [container],
        "volumes": [
            {"name": "config", "configMap": {"name": "pgbouncer-config", "defaultMode": 0o444}},
            {"name": "userlist", "secret": {"secretName": USERLIST_SECRET,
                                            "defaultMode": 0o440}},
            {"name": "rds-ca", "configMap": {"name": "rds-ca-bundle", "defaultMode": 0o444}},
            {"name": "client-tls", "secret": {
                "secretName": CLIENT_TLS_SECRET, "defaultMode": 0o440,
                "items": [{"key": "tls.crt", "path": "tls.crt"},
                          {"key": "tls.key", "path": "tls.key"}]}},
            {"name": "runtime", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
        ],
    }
    deployment = _object("apps/v1", "Deployment", NAME, namespace, labels, spec={
        "replicas": config.pgbouncer.replicas,
        "selector": {"matchLabels": selector},
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            # A changed pgbouncer.ini or CA bundle rolls the pods.
            "metadata": {"labels": labels, "annotations": {"boom.io/config-sha256": config_hash}},
            "spec": pod_spec,
        },
    })
    # Stakater Reloader (installed by the cluster stack) rolls the pods when cert-manager
    # renews the client certificate or External Secrets writes a new app_user password:
    # PgBouncer reads both files only when it starts, and logs in to the database with the
    # password from the userlist.
    deployment["metadata"]["annotations"] = {
        "secret.reloader.stakater.com/reload": f"{CLIENT_TLS_SECRET},{USERLIST_SECRET}"}
    return deployment


def _sha256(*objects: Manifest) -> str:
    return hashlib.sha256(json.dumps(objects, sort_keys=True).encode()).hexdigest()
