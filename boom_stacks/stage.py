"""Builds the app for one environment: validated config first, then its stacks, then the gate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk

from boom_stacks import compliance
from boom_stacks.config import EnvironmentConfig, load_config
from boom_stacks.stacks.data import DataStack
from boom_stacks.stacks.network import NetworkStack


@dataclass(frozen=True)
class EnvironmentStacks:
    config: EnvironmentConfig
    network: NetworkStack
    data: DataStack


def build_environment(app: cdk.App, config: EnvironmentConfig) -> EnvironmentStacks:
    primary = cdk.Environment(account=config.account, region=config.primary_region)
    network = NetworkStack(
        app, config.stack_id("Network"), config=config, env=primary,
        description=f"Boom Booking {config.name}: VPC, flow logs, endpoints")
    data = DataStack(
        app, config.stack_id("Data"), config=config, vpc=network.vpc, env=primary,
        termination_protection=config.is_production_like,
        description=f"Boom Booking {config.name}: KMS, PostgreSQL, Redis, backup bucket")
    cdk.Tags.of(app).add("Project", "boom-booking")
    cdk.Tags.of(app).add("Environment", config.name)
    return EnvironmentStacks(config=config, network=network, data=data)


def create_app(*, environ: Mapping[str, str], context: Mapping[str, Any] | None = None,
               gate: bool = True, outdir: str | None = None) -> tuple[cdk.App, EnvironmentStacks]:
    """The whole app. `gate=False` leaves acknowledgements and packs to the caller (tests)."""
    app = cdk.App(context=dict(context) if context is not None else None, outdir=outdir)
    config = load_config(app.node.get_all_context(), environ)
    stacks = build_environment(app, config)
    if gate:
        compliance.acknowledge(app, config)
        compliance.register_packs(app)
    return app, stacks
