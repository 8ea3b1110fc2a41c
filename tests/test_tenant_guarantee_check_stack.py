"""The scheduled check of the tenant guarantees in the Data stack: the schedule sends the
handler exactly the event it reads, the alarm watches exactly the metric it logs, and the
alarm's notifications can be delivered (topic policy and key policy both let CloudWatch in)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import aws_cdk as cdk
from aws_cdk import assertions
from aws_cdk import aws_kms as kms

from boom_stacks import compliance, config
from boom_stacks.constructs.alarm_topic import alarm_topic
from lambdas.tenant_bootstrap import scheduled_check
from lambdas.tenant_bootstrap.role_secrets import ROLE_FIELDS
from tests.fixture_synth import Synthesized
from tests.fixture_synth import data_resources as resources
from tests.fixture_synth import one_data_resource_with_id as one


def rendered(value: Any) -> str:
    """A template string, with Fn::Join'ed references shown as <Ref>."""
    if isinstance(value, dict) and "Fn::Join" in value:
        return "".join(p if isinstance(p, str) else f"<{p['Ref']}>" for p in value["Fn::Join"][1])
    assert isinstance(value, str)
    return value


def test_every_15_minutes_the_schedule_sends_the_handler_its_check_event(
        synthesized: Synthesized) -> None:
    _, rule = one(synthesized, "AWS::Events::Rule", "TenantGuaranteeCheckSchedule")
    props = rule["Properties"]
    # Only once the deploy's bootstrap run has succeeded (a first deploy's database would be
    # a finding before)
    bootstrap_id, _ = one(synthesized, "Custom::TenantBootstrap", "TenantBootstrap")
    assert bootstrap_id in rule["DependsOn"]
    assert props["ScheduleExpression"] == "rate(15 minutes)" and props["State"] == "ENABLED"
    [target] = props["Targets"]
    function_id, _ = one(synthesized, "AWS::Lambda::Function", "TenantBootstrapFunction")
    assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 0}
    event = json.loads(rendered(target["Input"]).replace(
        "<DatabaseInstanceSecretAttachmentFCA06D38>", "arn:master-secret").replace(
        "<TenantBootstrapAppUserSecret9F293F7E>", "arn:app-user-secret").replace(
        "<TenantBootstrapOwnerSecret29F44626>", "arn:owner-secret"))
    # What the handler dispatches on and requires, and nothing it would refuse
    assert event == {"Check": scheduled_check.CHECK, "MasterSecretArn": "arn:master-secret",
                     "Environment": synthesized.config.name,
                     # the parameter group loads pg_cron: a server without it is a finding
                     scheduled_check.REQUIRE_PG_CRON: True,
                     # the roles log in with their secrets' passwords, and neither secret's
                     # rotation has stopped midway
                     "AppUserSecretArn": "arn:app-user-secret",
                     "OwnerSecretArn": "arn:owner-secret"}
    assert set(event) == {"Check", *scheduled_check.CHECK_FIELDS,
                          scheduled_check.REQUIRE_PG_CRON, *ROLE_FIELDS.values()}
    assert scheduled_check.unknown_fields(event, "Check") == []
    # EventBridge may invoke it, and only from this rule
    permissions = [p["Properties"] for p in resources(synthesized, "AWS::Lambda::Permission")
                   .values() if p["Properties"]["Principal"] == "events.amazonaws.com"]
    assert permissions == [{"Action": "lambda:InvokeFunction",
                            "FunctionName": {"Fn::GetAtt": [function_id, "Arn"]},
                            "Principal": "events.amazonaws.com",
                            "SourceArn": {"Fn::GetAtt": [one(
                                synthesized, "AWS::Events::Rule",
                                "TenantGuaranteeCheckSchedule")[0], "Arn"]}}]
    # and Lambda does not retry a failed check (the next one comes in 15 minutes)
    _, invoke = one(synthesized, "AWS::Lambda::EventInvokeConfig", "TenantBootstrapFunction")
    assert invoke["Properties"]["MaximumRetryAttempts"] == 0


def test_the_stack_outputs_the_repair_an_operator_sends_the_function_the_schedule_checks(
        synthesized: Synthesized) -> None:
    outputs = synthesized.template_json("Data")["Outputs"]
    _, rule = one(synthesized, "AWS::Events::Rule", "TenantGuaranteeCheckSchedule")
    [target] = rule["Properties"]["Targets"]
    function_id, _ = one(synthesized, "AWS::Lambda::Function", "TenantBootstrapFunction")
    assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    assert outputs["TenantRepairFunction"]["Value"] == {"Ref": function_id}
    # The check's own event, "Repair" for "Check": same secret reference, same environment
    repair_event = json.loads(rendered(outputs["TenantRepairEvent"]["Value"]))
    check_event = json.loads(rendered(target["Input"]))
    # The README's other way, the check's event with "Repair" for "Check", is taken whole.
    assert scheduled_check.unknown_fields(
        {"Repair": check_event.pop("Check"), **check_event}, "Repair") == []
    del check_event[scheduled_check.REQUIRE_PG_CRON]  # the check's alone: a repair cannot boot
    assert repair_event == {"Repair": scheduled_check.CHECK, **check_event}
    assert scheduled_check.unknown_fields(repair_event, "Repair") == []
    assert repair_event["Repair"] == scheduled_check.CHECK
    assert repair_event["MasterSecretArn"].startswith("<DatabaseInstanceSecretAttachment")
    # and the role secrets, whose passwords a repair sets again
    assert repair_event["AppUserSecretArn"] == "<TenantBootstrapAppUserSecret9F293F7E>"
    assert repair_event["OwnerSecretArn"] == "<TenantBootstrapOwnerSecret29F44626>"


def test_the_alarm_watches_the_metric_the_handler_logs(synthesized: Synthesized) -> None:
    _, alarm = one(synthesized, "AWS::CloudWatch::Alarm", "TenantGuaranteeCheckAlarm")
    props = alarm["Properties"]
    assert (props["Namespace"], props["MetricName"]) == (scheduled_check.METRIC_NAMESPACE,
                                                         scheduled_check.METRIC_NAME)
    assert props["Dimensions"] == [{"Name": "Environment", "Value": synthesized.config.name}]
    # Any finding in 2 of the last 4 checks (15 minutes each): drift persists until repaired,
    # one check that could not take a lock passes; no checks at all is INSUFFICIENT_DATA.
    assert (props["Statistic"], props["Period"], props["Threshold"]) == ("Maximum", 900, 1)
    assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert (props["EvaluationPeriods"], props["DatapointsToAlarm"]) == (4, 2)
    assert props["TreatMissingData"] == "missing"
    topic_id, _ = one(synthesized, "AWS::SNS::Topic", "AlarmTopic")
    assert props["AlarmActions"] == props["InsufficientDataActions"] == [{"Ref": topic_id}]
    assert props["OKActions"] == [{"Ref": topic_id}]  # the repair worked: say so


def test_every_alarm_action_can_be_delivered(synthesized: Synthesized) -> None:
    # Walked from the template, alarm -> topic -> topic policy and key policy, so a new alarm
    # on a topic that CloudWatch cannot publish to fails here rather than silently in AWS.
    topics = resources(synthesized, "AWS::SNS::Topic")
    policies = resources(synthesized, "AWS::SNS::TopicPolicy").values()
    keys = resources(synthesized, "AWS::KMS::Key")
    account = synthesized.config.account
    checked = 0
    for alarm in resources(synthesized, "AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        for action in [*props.get("AlarmActions", []), *props.get("InsufficientDataActions", []),
                       *props.get("OKActions", [])]:
            topic_id = action["Ref"]
            statements = [s for p in policies if {"Ref": topic_id} in p["Properties"]["Topics"]
                          for s in p["Properties"]["PolicyDocument"]["Statement"]]
            assert {"Effect": "Allow", "Action": "sns:Publish",
                    "Principal": {"Service": "cloudwatch.amazonaws.com"},
                    "Resource": {"Ref": topic_id},
                    "Condition": {"StringEquals": {"aws:SourceAccount": account},
                                  "ArnLike": {"aws:SourceArn": f"arn:aws:cloudwatch:"
                                              f"{synthesized.config.primary_region}:{account}"
                                              ":alarm:*"}},
                    "Sid": "AllowThisAccountsCloudWatchAlarms"} in statements
            # ... and nothing publishes to it over plain HTTP (the topic is TLS-only).
            assert {"Effect": "Deny", "Action": "sns:Publish", "Principal": "*",
                    "Resource": {"Ref": topic_id},
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    "Sid": "AllowPublishThroughSSLOnly"} in statements
            key_id = topics[topic_id]["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]
            assert {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                    "Principal": {"Service": "cloudwatch.amazonaws.com"}, "Resource": "*"} in \
                keys[key_id]["Properties"]["KeyPolicy"]["Statement"]
            checked += 1
    assert checked >= 2  # the guarantee check's alarm and insufficient-data actions


def test_alarm_emails_from_config_subscribe_to_the_alarm_topic(prod: Synthesized) -> None:
    # None configured in the repository: the topic has no subscriber
    assert resources(prod, "AWS::SNS::Subscription") == {}
    # Configured, each address is an e-mail subscription to the topic the alarms notify: the
    # alarm_topic construct alone, in a stack of its own (no second synth of the whole app)
    emails = ("oncall@boom-booking.example", "dba@boom-booking.example")
    app = cdk.App()
    stack = cdk.Stack(app, "Alarms", env=cdk.Environment(account=prod.config.account,
                                                          region=prod.config.primary_region))
    alarm_topic(stack, "AlarmTopic", stack_part="data", key=kms.Key(stack, "Key"),
                config=replace(prod.config, alarms=config.AlarmConfig(emails=emails)))
    template = assertions.Template.from_stack(stack)
    [topic_id] = template.find_resources("AWS::SNS::Topic")
    subscriptions = template.find_resources("AWS::SNS::Subscription")
    assert sorted((s["Properties"]["Protocol"], s["Properties"]["Endpoint"],
                   json.dumps(s["Properties"]["TopicArn"])) for s in subscriptions.values()) == \
        sorted(("email", email, json.dumps({"Ref": topic_id})) for email in emails)
    # and the compliance packs find nothing on them
    assert [f for f in compliance.findings(app) if "/AlarmTopic/" in f.path] == []
