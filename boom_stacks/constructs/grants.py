"""Network grants from later stacks to the data tier."""

from __future__ import annotations

from aws_cdk import Names
from aws_cdk import aws_ec2 as ec2
from constructs import Construct


def allow_from_peer(target: ec2.ISecurityGroup, peer: ec2.ISecurityGroup, port: int,
                    description: str) -> ec2.CfnSecurityGroupIngress:
    """One TCP port from `peer` into `target`, created in the peer's stack.

    Consumers (cluster, DR) depend on the data stack, never the reverse, so the data stack can
    be updated without touching them and no cross-stack cycle can form.
    """
    assert isinstance(peer, Construct)
    return ec2.CfnSecurityGroupIngress(
        peer, f"To{Names.unique_id(target)}Port{port}",
        group_id=target.security_group_id,
        source_security_group_id=peer.security_group_id,
        ip_protocol="tcp", from_port=port, to_port=port, description=description,
    )
