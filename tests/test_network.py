"""The network stack holds what the seed and DESIGN.md ask of it, per environment."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Match

from tests.fixture_synth import Synthesized


def test_vpc_spans_three_named_zones_in_three_tiers(synthesized: Synthesized) -> None:
    template = synthesized.template("Network")
    template.has_resource_properties("AWS::EC2::VPC",
                                     {"CidrBlock": synthesized.config.network.cidr})
    subnets = template.find_resources("AWS::EC2::Subnet")
    assert len(subnets) == 9
    zones = {s["Properties"]["AvailabilityZone"] for s in subnets.values()}
    assert zones == set(synthesized.config.availability_zones)
    tiers = [tag["Value"] for s in subnets.values() for tag in s["Properties"]["Tags"]
             if tag["Key"] == "aws-cdk:subnet-type"]
    assert sorted(set(tiers)) == ["Isolated", "Private", "Public"]
    assert all(tiers.count(t) == 3 for t in set(tiers))
    # The private tier holds the cluster's pods, each with a VPC address (the VPC CNI): 4096
    # a zone. The public tier holds NAT gateways and load balancers, the isolated one the
    # data tier: 256 each.
    prefixes = {(tag["Value"], s["Properties"]["CidrBlock"].split("/")[1])
                for s in subnets.values() for tag in s["Properties"]["Tags"]
                if tag["Key"] == "aws-cdk:subnet-type"}
    assert prefixes == {("Public", "24"), ("Private", "20"), ("Isolated", "24")}
    # Nothing gets a public IP just by being launched in a public subnet.
    assert all(s["Properties"].get("MapPublicIpOnLaunch") is False
               for s in subnets.values() if "Public" in str(s["Properties"]["Tags"]))


def test_the_vpcs_default_security_group_is_emptied(synthesized: Synthesized) -> None:
    # Anything launched without a group of its own gets no traffic in or out (the CIS
    # benchmark asks it of every VPC): CDK's custom resource strips the default group's
    # rules, which the construct asks for and not only a cdk.json feature flag.
    template = synthesized.template("Network")
    [vpc_id] = template.find_resources("AWS::EC2::VPC")
    [restrict] = template.find_resources("Custom::VpcRestrictDefaultSG").values()
    assert restrict["Properties"]["DefaultSecurityGroupId"] == {
        "Fn::GetAtt": [vpc_id, "DefaultSecurityGroup"]}


def test_nat_gateways_one_in_dev_one_per_zone_in_prod(dev: Synthesized,
                                                      prod: Synthesized) -> None:
    dev.template("Network").resource_count_is("AWS::EC2::NatGateway", 1)
    prod.template("Network").resource_count_is("AWS::EC2::NatGateway", 3)


def test_isolated_subnets_have_no_route_out(synthesized: Synthesized) -> None:
    template = synthesized.template_json("Network")["Resources"]
    isolated_tables = {name for name in template
                       if "IsolatedSubnet" in name and template[name]["Type"] ==
                       "AWS::EC2::RouteTable"}
    routes = [r for r in template.values() if r["Type"] == "AWS::EC2::Route"]
    assert isolated_tables
    assert not [r for r in routes if r["Properties"]["RouteTableId"]["Ref"] in isolated_tables]


def test_flow_logs_go_to_an_encrypted_log_group_with_retention(
        synthesized: Synthesized) -> None:
    template = synthesized.template("Network")
    resources = synthesized.template_json("Network")["Resources"]
    [flow_log] = template.find_resources("AWS::EC2::FlowLog", {"Properties": {
        "ResourceType": "VPC", "TrafficType": "ALL",
        "LogDestinationType": "cloud-watch-logs"}}).values()
    group_id = flow_log["Properties"]["LogGroupName"]["Ref"]
    group = resources[group_id]["Properties"]
    assert group["RetentionInDays"] == synthesized.config.network.flow_log_retention_days
    key_id = group["KmsKeyId"]["Fn::GetAtt"][0]
    assert resources[key_id]["Properties"]["EnableKeyRotation"] is True
    # The role the flow log delivers with is the service's, and may write to that group
    # through a customer-managed policy attached to it (no inline policy anywhere).
    role_id = flow_log["Properties"]["DeliverLogsPermissionArn"]["Fn::GetAtt"][0]
    [assume] = resources[role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert assume["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    template.resource_count_is("AWS::IAM::Policy", 0)
    [policy] = template.find_resources("AWS::IAM::ManagedPolicy", {"Properties": {
        "Roles": [{"Ref": role_id}]}}).values()
    [grant] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert (grant["Effect"], grant["Resource"]) == ("Allow", {"Fn::GetAtt": [group_id, "Arn"]})
    assert sorted(grant["Action"]) == ["logs:CreateLogStream", "logs:DescribeLogStreams",
                                       "logs:PutLogEvents"]


def test_s3_gateway_endpoint_everywhere(synthesized: Synthesized) -> None:
    synthesized.template("Network").has_resource_properties("AWS::EC2::VPCEndpoint", {
        "VpcEndpointType": "Gateway",
        "ServiceName": Match.object_like({"Fn::Join": Match.array_with([
            Match.array_with([".s3"])])})})


def test_interface_endpoints_follow_config(dev: Synthesized, staging: Synthesized,
                                           prod: Synthesized) -> None:
    def interface_endpoints(s: Synthesized) -> list[dict[str, Any]]:
        return [e["Properties"] for e in s.template("Network").find_resources(
            "AWS::EC2::VPCEndpoint", {"Properties": {"VpcEndpointType": "Interface"}}).values()]

    def interface_services(s: Synthesized) -> list[str]:
        return sorted(e["ServiceName"].split(".")[-1] for e in interface_endpoints(s))

    assert interface_services(dev) == []
    expected = ["dkr", "api", "logs", "secretsmanager", "sts"]
    assert interface_services(staging) == interface_services(prod) == sorted(expected)
    # Reachable on 443 from inside the VPC only.
    prod.template("Network").has_resource_properties("AWS::EC2::SecurityGroup", {
        "SecurityGroupIngress": [{"CidrIp": prod.config.network.cidr, "FromPort": 443,
                                  "ToPort": 443, "IpProtocol": "tcp",
                                  "Description": Match.any_value()}]})
    # Under the services' own names (private DNS), so SDKs reach them without configuration,
    # from the private subnets the workloads run in, behind that one group.
    endpoints = interface_endpoints(prod)
    assert {e["PrivateDnsEnabled"] for e in endpoints} == {True}
    [group_id] = [name for name in prod.template("Network").find_resources(
        "AWS::EC2::SecurityGroup") if name.startswith("NetworkEndpointSecurityGroup")]
    assert all(e["SecurityGroupIds"] == [{"Fn::GetAtt": [group_id, "GroupId"]}]
               for e in endpoints)
    for endpoint in endpoints:
        subnets = [ref["Ref"] for ref in endpoint["SubnetIds"]]
        assert len(subnets) == 3 and all("PrivateSubnet" in name for name in subnets)
