"""Boom-<Env>-Network: the VPC every other stack of the environment lives in."""

from __future__ import annotations

from typing import Any

from constructs import Construct

from boom_stacks.config import EnvironmentConfig
from boom_stacks.constructs.network import BoomNetwork
from boom_stacks.stacks.base import BoomStack


class NetworkStack(BoomStack):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig,
                 **kwargs: Any) -> None:
        super().__init__(scope, id_, config=config, **kwargs)
        self.network = BoomNetwork(self, "Network", config=config)
        self.vpc = self.network.vpc
