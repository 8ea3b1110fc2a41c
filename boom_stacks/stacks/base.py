"""What every Boom stack shares: its environment's config and named availability zones."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from constructs import Construct

from boom_stacks.config import EnvironmentConfig


class BoomStack(Stack):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig,
                 **kwargs: Any) -> None:
        super().__init__(scope, id_, **kwargs)
        self.config = config

    @property
    def availability_zones(self) -> list[str]:
        # From config, never looked up: synth stays offline and needs no credentials.
        return list(self.config.availability_zones)
