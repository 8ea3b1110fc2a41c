"""PgBouncer's Kubernetes objects for one environment, keyed for the tests that read them."""

from __future__ import annotations

import configparser
from typing import Any

from boom_stacks.config import ENVIRONMENT_CONFIGS, EnvironmentConfig
from boom_stacks.k8s.pgbouncer import pgbouncer_manifests

HOST = "boom-dev-db.abc123.us-east-1.rds.amazonaws.com"


def manifests(env: str | EnvironmentConfig = "dev") -> dict[str, dict[str, Any]]:
    """Every object of an environment (by name, or its config), keyed "Kind/name" (e.g.
    "Deployment/pgbouncer")."""
    config = ENVIRONMENT_CONFIGS[env] if isinstance(env, str) else env
    objects = pgbouncer_manifests(config, database_host=HOST)
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


def rendered_ini(objects: dict[str, dict[str, Any]]) -> configparser.ConfigParser:
    """The pgbouncer.ini the ConfigMap carries, parsed."""
    ini = configparser.ConfigParser()
    ini.read_string(objects["ConfigMap/pgbouncer-config"]["data"]["pgbouncer.ini"])
    return ini
