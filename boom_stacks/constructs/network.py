"""The VPC of one environment: three tiers over three AZs, flow logs, VPC endpoints."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from boom_stacks.config import EnvironmentConfig
from boom_stacks.constructs.keys import rotating_key
from boom_stacks.constructs.log_groups import encrypted_log_group

# Services whose traffic stays inside the VPC when interface endpoints are on: image pulls
# (ECR api + dkr), IRSA/pod identity (STS), secrets, and container logs.
INTERFACE_ENDPOINTS = {
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Sts": ec2.InterfaceVpcEndpointAwsService.STS,
    "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
}


class BoomNetwork(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig) -> None:
        super().__init__(scope, id_)
        net = config.network
        self.vpc = ec2.Vpc(
            self, "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(net.cidr),
            # Named zones: no AZ lookup, so synth works offline without credentials.
            availability_zones=list(config.availability_zones),
            nat_gateways=net.nat_gateways,
            restrict_default_security_group=True,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="Public", subnet_type=ec2.SubnetType.PUBLIC,
                                        cidr_mask=24, map_public_ip_on_launch=False),
                ec2.SubnetConfiguration(name="Private",
                                        subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS,
                                        cidr_mask=20),
                ec2.SubnetConfiguration(name="Isolated",
                                        subnet_type=ec2.SubnetType.PRIVATE_ISOLATED,
                                        cidr_mask=24),
            ],
        )
        self._add_flow_logs(config)
        self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)
        if net.interface_endpoints:
            # One group for all endpoints: HTTPS from inside the VPC only, named by literal CIDR.
            endpoint_sg = ec2.SecurityGroup(self, "EndpointSecurityGroup", vpc=self.vpc,
                                            allow_all_outbound=False,
                                            description="HTTPS to VPC interface endpoints")
            endpoint_sg.add_ingress_rule(ec2.Peer.ipv4(net.cidr), ec2.Port.tcp(443),
                                         "HTTPS from the VPC")
            for name, service in INTERFACE_ENDPOINTS.items():
                self.vpc.add_interface_endpoint(
                    name, service=service, private_dns_enabled=True, open=False,
                    security_groups=[endpoint_sg],
                    subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
                )

    def _add_flow_logs(self, config: EnvironmentConfig) -> None:
        key = rotating_key(self, "FlowLogKey", alias=f"boom/{config.name}/flow-logs",
                           description="Encrypts the VPC flow log group",
                           retain=config.is_production_like)
        key.grant_encrypt_decrypt(
            iam.ServicePrincipal(f"logs.{config.primary_region}.amazonaws.com"))
        log_group = encrypted_log_group(
            self, "FlowLogGroup", key=key, retention_days=config.network.flow_log_retention_days,
            retain=config.is_production_like)
        # A customer-managed policy instead of CDK's inline grant (NIST/PCI IAMNoInlinePolicy).
        role = iam.Role(self, "FlowLogRole",
                        assumed_by=iam.ServicePrincipal("vpc-flow-logs.amazonaws.com"))
        iam.ManagedPolicy(self, "FlowLogPolicy", roles=[role], statements=[
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[log_group.log_group_arn]),
        ])
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(
                log_group, role.without_policy_updates()),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )
