"""Deploy the real templates into a moto server (AWS emulator on a loopback port).

moto's CloudFormation only creates some resource types; cfn_emulator.py (see its
docstring) creates the others through their service APIs with the properties that moto's
CloudFormation resolved from *our* expressions and parameters. Every resource of every
template is thus either created, or listed in `Deployment.not_created` with a reason,
and the tests assert exactly which ones are not created and why.

Accounts: the central stack runs in moto's default account 123456789012; members run in
other accounts (moto serves requests made with assumed-role credentials as that account).

Known moto gaps worked around here (not template problems):
* moto treats a logs *destination* ARN given to PutSubscriptionFilter as a log-group ARN
  and looks that log group up; `_destination_decoy` creates a log group named after the
  destination in the central account so the filter can be stored.
* moto has no PutAccountPolicy: the account policy's resolved properties are checked
  (the JSON policy document is parsed) instead of an API result.
* moto cannot deliver EventBridge events to SNS targets (PutEvents on the alert bus fails
  inside moto); the alert rule's pattern is tried on a scratch bus with an SQS target.
"""

from __future__ import annotations

import io
import json
import zipfile

import pytest

import cfn_emulator as emu
from infra_support import Aws, INFRA, load

CENTRAL_ACCOUNT = "123456789012"
STS_EVENTS = ["AssumeRole", "AssumeRoleWithSAML", "AssumeRoleWithWebIdentity", "GetFederationToken"]
SESSION_TABLE_ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:BatchGetItem",
                         "dynamodb:BatchWriteItem", "dynamodb:Query"]
CENTRAL_EMULATED = {
    "AuditDestination", "LakeBucketPolicy", "FirehoseLogStream", "DeliveryStream", "GlueDatabase",
    "GlueTableEksAudit", "GlueTableStsSessions", "GlueTableFindings", "GlueTableEksApiEvents", "AthenaWorkGroup",
    "ViewQueryEksAuditAttributed", "ViewQueryFindingsAttributed", "ViewQueryEksApiEventsAttributed",
    "AlarmTopic", "TransformerErrorsAlarm", "FirehoseProcessingAlarm", "FirehoseDeliveryAlarm",
    "FirehoseFreshnessAlarm", "StreamIteratorAgeAlarm", "AlarmEmailSubscription",
    "CompactionInvokeConfig", "DailyCompactionSchedule", "CompactionErrorsAlarm", "CompactionDeadLetterAlarm",
    "AlertTopicPolicy", "AlertDeadLetterQueuePolicy", "AlertEmailSubscription", "AlertDeliveryAlarm",
    "AlertDeadLetterAlarm", "AlertDeadLetterFailureAlarm",
}
NO_ALERT_EMAIL = {"AlertEmailSubscription": "condition HasAlertEmail is false"}
COMPACTION = {"CompactionLogGroup", "CompactionDeadLetterQueue", "CompactionRole", "CompactionFunction",
              "CompactionInvokeConfig", "SchedulerRole", "DailyCompactionSchedule", "CompactionErrorsAlarm",
              "CompactionDeadLetterAlarm"}


@pytest.fixture(scope="module")
def central_aws(moto_endpoint):
    aws = Aws(moto_endpoint)
    assert aws.account == CENTRAL_ACCOUNT
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="code-bucket")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
    s3.put_object(Bucket="code-bucket", Key="eks-audit-lake/bootstrap-arm64.zip", Body=buf.getvalue())
    return aws


def deploy_central(aws: Aws, name: str, **params: str) -> emu.Deployment:
    base = {"NamePrefix": name, "GlueDatabaseName": name.replace("-", "_"), "LambdaCodeBucket": "code-bucket",
            "TrailAccountId": "999999999999", "TrailLogGroupName": "aws-cloudtrail-logs-o-abcdefghij"}
    return emu.deploy(aws.client("cloudformation"), aws.client, load("central.yaml"), name, {**base, **params})


@pytest.fixture(scope="module")
def central(central_aws):
    """Organisation mode, a lake prefix, the aws-auth file, an alarm e-mail; an alert e-mail,
    custom rules, a non-default alert severity and the organisation's accounts."""
    return deploy_central(central_aws, "audit-org", OrganizationId="o-abcdefghij", LakePrefix="org/lake",
                          AwsAuthS3Uri="s3://config-bucket/eks/aws-auth.yaml", AlarmEmail="sec@example.com",
                          AlertEmail="soc@example.com", CustomRulesPrefix="rules/", AlertSeverity="medium",
                          OrganizationAccounts="111111111111,222222222222")


def _destination_decoy(central_aws: Aws):
    def hook(lid: str, props: dict) -> None:
        arn = props.get("DestinationArn", "")
        if ":destination:" in arn:
            name = arn.split(":destination:")[1]
            logs = central_aws.client("logs")
            if not logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]:
                logs.create_log_group(logGroupName=name)
    return hook


# ------------------------------------------------------------------------------ central


def test_central_every_resource_is_created(central):
    assert central.not_created == {}
    saved = {lid for lid in load("central.yaml")["Resources"] if lid.startswith("SavedQuery")}
    assert set(central.emulated) == (CENTRAL_EMULATED - {"AlarmTopic"}) | saved
    assert {"LakeKey", "AuditStream", "CwlToKinesisRole", "LakeBucket", "TransformerRole",
            "TransformerFunction", "FirehoseRole", "AlarmTopic", "SessionTable", "CompactionFunction",
            "CompactionRole", "SchedulerRole", "CompactionDeadLetterQueue", "AlertBus", "AlertRule",
            "AlertTopic", "AlertDeadLetterQueue"} <= set(central.moto_resources)
    assert set(central.moto_resources) | set(central.emulated) == set(load("central.yaml")["Resources"])


def test_central_stream_bucket_and_destination(central, central_aws):
    out = central.outputs
    stream = central_aws.client("kinesis").describe_stream_summary(StreamName="audit-org")["StreamDescriptionSummary"]
    assert stream["StreamARN"] == out["StreamArn"]
    # moto's CloudFormation ignores the mode and encryption; check what CloudFormation gets.
    assert central.resolved["AuditStream"]["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert central.resolved["AuditStream"]["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": out["KmsKeyArn"]}

    bucket = out["LakeBucketName"]
    assert bucket == f"audit-org-{CENTRAL_ACCOUNT}-us-east-1"
    s3 = central_aws.client("s3")
    enc = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert enc["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": out["KmsKeyArn"]}
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    rules = {r["Id"]: r for r in central.resolved["LakeBucket"]["LifecycleConfiguration"]["Rules"]}
    assert rules["raw-archive"]["Prefix"] == "raw/" and rules["raw-archive"]["ExpirationInDays"] == "365"
    assert rules["errors"]["Prefix"] == "errors/" and rules["errors"]["ExpirationInDays"] == "90"
    # the S3 session index expires under the lake prefix
    assert rules["session-index"]["Prefix"] == "org/lake/session_index/"
    assert rules["session-index"]["ExpirationInDays"] == 14 and rules["session-index"]["Status"] == "Enabled"

    (dest,) = central_aws.client("logs").describe_destinations(DestinationNamePrefix="audit-org")["destinations"]
    assert dest["arn"] == out["DestinationArn"] == f"arn:aws:logs:us-east-1:{CENTRAL_ACCOUNT}:destination:audit-org"
    assert dest["targetArn"] == out["StreamArn"]
    assert dest["roleArn"].split("/")[-1] == central.moto_resources["CwlToKinesisRole"]
    access = json.loads(dest["accessPolicy"])
    (stmt,) = access["Statement"]
    assert stmt["Principal"] == "*" and stmt["Resource"] == dest["arn"]
    assert stmt["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": ["o-abcdefghij"]}}
    assert "logs:PutSubscriptionFilter" in stmt["Action"]


def test_central_lambda_and_its_role(central, central_aws):
    fn = central_aws.client("lambda").get_function_configuration(FunctionName="audit-org-transformer")
    assert fn["Runtime"] == "provided.al2023" and fn["Handler"] == "bootstrap"
    assert fn["MemorySize"] == 1769 and fn["Timeout"] == 300
    assert central.resolved["TransformerFunction"]["Architectures"] == ["arm64"]
    bucket = central.outputs["LakeBucketName"]
    assert fn["Environment"]["Variables"] == {
        "AUDITLAKE_LAKE": f"s3://{bucket}/org/lake",
        "AUDITLAKE_AWS_AUTH": "s3://config-bucket/eks/aws-auth.yaml",
        "AUDITLAKE_RAW_ARCHIVE": "true",
        "AUDITLAKE_TRUSTED_TRAILS": "999999999999:aws-cloudtrail-logs-o-abcdefghij",
        "AUDITLAKE_SESSION_TABLE": "audit-org-sessions",
        "AUDITLAKE_ALERT_BUS": f"arn:aws:events:us-east-1:{CENTRAL_ACCOUNT}:event-bus/audit-org-alerts",
        "AUDITLAKE_ALERT_SEVERITY": "medium",
        # at the bucket root: CustomRulesPrefix is not below LakePrefix
        "AUDITLAKE_RULES": f"s3://{bucket}/rules/",
        "AUDITLAKE_ORG_ACCOUNTS": "111111111111,222222222222",
    }
    assert central.outputs["AlertBusArn"] == fn["Environment"]["Variables"]["AUDITLAKE_ALERT_BUS"]
    assert central.outputs["LakeUri"] == f"s3://{bucket}/org/lake"
    iam = central_aws.client("iam")
    role = central.moto_resources["TransformerRole"]
    assert iam.list_role_policies(RoleName=role)["PolicyNames"] == ["transformer"]
    # moto returns inline policies as Python reprs; read what CloudFormation resolved.
    (policy,) = central.resolved["TransformerRole"]["Policies"]
    doc = policy["PolicyDocument"]
    res = {s["Sid"]: s["Resource"] for s in doc["Statement"]}
    assert res["WriteLakeTables"] == [f"arn:aws:s3:::{bucket}/org/lake/eks_audit/*",
                                      f"arn:aws:s3:::{bucket}/org/lake/sts_sessions/*",
                                      f"arn:aws:s3:::{bucket}/org/lake/eks_api_events/*",
                                      f"arn:aws:s3:::{bucket}/org/lake/findings/*"]
    # the custom rules: read exactly that prefix, list only under it
    assert res["ReadCustomRules"] == f"arn:aws:s3:::{bucket}/rules/*"
    rules_list = next(s for s in doc["Statement"] if s["Sid"] == "ListCustomRules")
    assert rules_list["Resource"] == f"arn:aws:s3:::{bucket}"
    assert rules_list["Condition"] == {"StringLike": {"s3:prefix": "rules/*"}}
    # PutEvents on the stack's alert bus only
    put = next(s for s in doc["Statement"] if s["Sid"] == "PutAlertEvents")
    assert put == {"Sid": "PutAlertEvents", "Effect": "Allow", "Action": "events:PutEvents",
                   "Resource": central.outputs["AlertBusArn"],
                   "Condition": {"StringEquals": {"events:source": "eks-audit-lake"}}}
    assert res["SessionIndexObjects"] == f"arn:aws:s3:::{bucket}/org/lake/session_index/*"
    assert res["ReadAwsAuthMapping"] == "arn:aws:s3:::config-bucket/eks/aws-auth.yaml"
    listing = next(s for s in doc["Statement"] if s["Sid"] == "SessionIndexList")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": "org/lake/session_index/*"}}
    # the session table: exactly the five item actions on the table's ARN, nothing else
    table_arn = central_aws.client("dynamodb").describe_table(TableName="audit-org-sessions")["Table"]["TableArn"]
    assert table_arn == f"arn:aws:dynamodb:us-east-1:{CENTRAL_ACCOUNT}:table/audit-org-sessions"
    dynamo = [s for s in doc["Statement"] if any(a.startswith("dynamodb:") for a in _actions(s))]
    assert dynamo == [{"Sid": "SessionTableItems", "Effect": "Allow", "Action": SESSION_TABLE_ACTIONS,
                       "Resource": table_arn}]
    key = next(s for s in doc["Statement"] if s["Sid"] == "UseLakeKey")
    assert key["Resource"] == central.outputs["KmsKeyArn"] and "Condition" not in key


def _actions(stmt: dict) -> list[str]:
    return stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]


def test_central_session_table(central, central_aws):
    ddb = central_aws.client("dynamodb")
    assert central.outputs["SessionTableName"] == "audit-org-sessions"
    t = ddb.describe_table(TableName="audit-org-sessions")["Table"]
    assert t["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
    assert sorted(t["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == [
        {"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}]
    assert t["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert not t.get("GlobalSecondaryIndexes") and not t.get("LocalSecondaryIndexes")
    # moto's CloudFormation ignores TTL, PITR and the SSE key; check what CloudFormation gets.
    props = central.resolved["SessionTable"]
    assert props["TableName"] == "audit-org-sessions"
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS",
                                         "KMSMasterKeyId": central.outputs["KmsKeyArn"]}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    # The properties are valid for the API: the item shape the Lambda writes round-trips.
    ddb.put_item(TableName="audit-org-sessions",
                 Item={"pk": {"S": "K#ASIAEXAMPLE"}, "sk": {"S": "session"}, "expires_at": {"N": "1"}})
    got = ddb.get_item(TableName="audit-org-sessions", Key={"pk": {"S": "K#ASIAEXAMPLE"}, "sk": {"S": "session"}})
    assert got["Item"]["expires_at"] == {"N": "1"}


def test_central_firehose(central, central_aws):
    d = central_aws.client("firehose").describe_delivery_stream(DeliveryStreamName="audit-org")[
        "DeliveryStreamDescription"]
    assert d["DeliveryStreamType"] == "KinesisStreamAsSource"
    assert d["Source"]["KinesisStreamSourceDescription"]["KinesisStreamARN"] == central.outputs["StreamArn"]
    (dest,) = d["Destinations"]
    s3 = dest["ExtendedS3DestinationDescription"]
    assert s3["BucketARN"] == f"arn:aws:s3:::{central.outputs['LakeBucketName']}"
    assert s3["Prefix"] == "raw/"
    assert s3["ErrorOutputPrefix"] == "errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/"
    assert "DynamicPartitioningConfiguration" not in s3
    (proc,) = s3["ProcessingConfiguration"]["Processors"]
    params = {p["ParameterName"]: p["ParameterValue"] for p in proc["Parameters"]}
    assert params == {
        "LambdaArn": f"arn:aws:lambda:us-east-1:{CENTRAL_ACCOUNT}:function:audit-org-transformer",
        "NumberOfRetries": "3", "BufferSizeInMBs": "3", "BufferIntervalInSeconds": "60",
    }
    assert s3["CloudWatchLoggingOptions"] == {"Enabled": True, "LogGroupName": "/aws/kinesisfirehose/audit-org",
                                              "LogStreamName": "DestinationDelivery"}


def test_central_glue_athena_and_alarms(central, central_aws):
    glue = central_aws.client("glue")
    bucket = central.outputs["LakeBucketName"]
    for table in ("eks_audit", "sts_sessions", "findings", "eks_api_events"):
        t = glue.get_table(DatabaseName="audit_org", Name=table)["Table"]
        assert t["StorageDescriptor"]["Location"] == f"s3://{bucket}/org/lake/{table}/"
        assert t["Parameters"]["storage.location.template"] == f"s3://{bucket}/org/lake/{table}/dt=${{dt}}/"
        assert t["PartitionKeys"] == [{"Name": "dt", "Type": "string"}]
    athena = central_aws.client("athena")
    wg = athena.get_work_group(WorkGroup="audit-org")["WorkGroup"]["Configuration"]
    assert wg["EnforceWorkGroupConfiguration"] is True
    assert wg["ResultConfiguration"]["OutputLocation"] == f"s3://{bucket}/athena-results/"
    listed = athena.list_named_queries(WorkGroup="audit-org")["NamedQueryIds"]
    saved = [lid for lid in load("central.yaml")["Resources"] if lid.startswith("SavedQuery")]
    assert len(listed) == 3 + len(saved)  # the three views' statements and every schemas/queries file
    q = athena.get_named_query(NamedQueryId=central.outputs["ViewQueryEksAuditAttributedId"])["NamedQuery"]
    assert q["QueryString"].startswith("CREATE OR REPLACE VIEW eks_audit_attributed AS")
    assert q["Database"] == "audit_org" and q["WorkGroup"] == "audit-org"
    q = athena.get_named_query(NamedQueryId=central.outputs["ViewQueryFindingsAttributedId"])["NamedQuery"]
    assert q["QueryString"].startswith("CREATE OR REPLACE VIEW findings_attributed AS")
    q = athena.get_named_query(NamedQueryId=central.outputs["ViewQueryEksApiEventsAttributedId"])["NamedQuery"]
    assert q["QueryString"].startswith("CREATE OR REPLACE VIEW eks_api_events_attributed AS")
    # the playbook's saved queries, 09 and 10 (EKS API calls) among them
    names = {athena.get_named_query(NamedQueryId=i)["NamedQuery"]["Name"] for i in listed}
    assert {"audit-org-09_cluster_admins", "audit-org-10_audit_logging_gaps"} <= names
    alarms = central_aws.client("cloudwatch").describe_alarms(AlarmNamePrefix="audit-org-")["MetricAlarms"]
    assert len(alarms) == 10  # five for ingestion, two for compaction, three for alert delivery
    for a in alarms:
        assert a["AlarmActions"] == [central.outputs["AlarmTopicArn"]]
    subs = central_aws.client("sns").list_subscriptions_by_topic(TopicArn=central.outputs["AlarmTopicArn"])
    assert [s["Endpoint"] for s in subs["Subscriptions"]] == ["sec@example.com"]
    subs = central_aws.client("sns").list_subscriptions_by_topic(TopicArn=central.outputs["AlertTopicArn"])
    assert [(s["Protocol"], s["Endpoint"]) for s in subs["Subscriptions"]] == [("email", "soc@example.com")]


def test_central_account_list_mode_without_prefix(central_aws):
    d = deploy_central(central_aws, "audit-acct", SenderAccountIds="111111111111,222222222222", **ACCT_COMPACTION)
    assert d.not_created == {"AlarmEmailSubscription": "condition HasAlarmEmail is false", **NO_ALERT_EMAIL}
    logs = central_aws.client("logs")
    (dest,) = logs.describe_destinations(DestinationNamePrefix="audit-acct")["destinations"]
    (stmt,) = json.loads(dest["accessPolicy"])["Statement"]
    assert stmt["Principal"] == {"AWS": ["111111111111", "222222222222"]} and "Condition" not in stmt
    bucket = d.outputs["LakeBucketName"]
    assert d.outputs["LakeUri"] == f"s3://{bucket}"
    fn = central_aws.client("lambda").get_function_configuration(FunctionName="audit-acct-transformer")
    # no CustomRulesPrefix: no AUDITLAKE_RULES (built-in rules only); AlertSeverity's default;
    # no OrganizationAccounts: no AUDITLAKE_ORG_ACCOUNTS (the outside-organisation rule off)
    assert fn["Environment"]["Variables"] == {"AUDITLAKE_LAKE": f"s3://{bucket}", "AUDITLAKE_RAW_ARCHIVE": "true",
                                              "AUDITLAKE_TRUSTED_TRAILS": "999999999999:aws-cloudtrail-logs-o-abcdefghij",
                                              "AUDITLAKE_SESSION_TABLE": "audit-acct-sessions",
                                              "AUDITLAKE_ALERT_BUS": d.outputs["AlertBusArn"],
                                              "AUDITLAKE_ALERT_SEVERITY": "high"}
    assert d.outputs["AlertBusArn"] == f"arn:aws:events:us-east-1:{CENTRAL_ACCOUNT}:event-bus/audit-acct-alerts"
    subs = central_aws.client("sns").list_subscriptions_by_topic(TopicArn=d.outputs["AlertTopicArn"])
    assert subs["Subscriptions"] == []
    rules = {r["Id"]: r for r in d.resolved["LakeBucket"]["LifecycleConfiguration"]["Rules"]}
    assert rules["session-index"]["Prefix"] == "session_index/"
    t = central_aws.client("glue").get_table(DatabaseName="audit_acct", Name="eks_audit")["Table"]
    assert t["StorageDescriptor"]["Location"] == f"s3://{bucket}/eks_audit/"
    stmts = {s["Sid"] for s in d.resolved["TransformerRole"]["Policies"][0]["PolicyDocument"]["Statement"]}
    assert "ReadAwsAuthMapping" not in stmts
    assert not {"ReadCustomRules", "ListCustomRules"} & stmts and "PutAlertEvents" in stmts
    # Every compaction parameter reaches its own variable (distinct values catch a swap).
    fn = central_aws.client("lambda").get_function(FunctionName="audit-acct-compaction")
    assert fn["Configuration"]["MemorySize"] == 3538
    assert _env(fn["Configuration"]) == {
        "AUDITLAKE_FUNCTION": "compact", "AUDITLAKE_LAKE": f"s3://{bucket}",
        "AUDITLAKE_TRUSTED_TRAILS": "999999999999:aws-cloudtrail-logs-o-abcdefghij",
        "AUDITLAKE_SESSION_TABLE": "audit-acct-sessions", "AUDITLAKE_SCRATCH_DIR": "/tmp",
        "AUDITLAKE_COMPACT_LAG_DAYS": "5", "AUDITLAKE_COMPACT_DAYS": "7", "AUDITLAKE_COMPACT_TARGET_MB": "128",
        "AUDITLAKE_COMPACT_ZSTD_LEVEL": "9"}
    sched = central_aws.client("scheduler").get_schedule(Name="audit-acct-compaction")
    assert sched["ScheduleExpression"] == "cron(15 1 * * ? *)"
    (policy,) = d.resolved["CompactionRole"]["Policies"]
    by_sid = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert "ReadAwsAuthMapping" not in by_sid
    assert by_sid["CompactLakeObjects"]["Resource"] == [f"arn:aws:s3:::{bucket}/{p}/*" for p in COMPACTED_PREFIXES]
    assert by_sid["ListCompactedPrefixes"]["Condition"] == {
        "StringLike": {"s3:prefix": [f"{p}/*" for p in COMPACTED_PREFIXES + ["session_index"]]}}


def test_central_s3_session_store(central_aws):
    """SessionStore s3: no table, no AUDITLAKE_SESSION_TABLE, no DynamoDB permission; the
    Lambda keeps the lake's session_index/ (its S3 permissions and the lifecycle rule)."""
    d = deploy_central(central_aws, "audit-s3", SenderAccountIds="111111111111", SessionStore="s3")
    assert d.not_created == {"AlarmEmailSubscription": "condition HasAlarmEmail is false",
                             "SessionTable": "condition UseSessionTable is false", **NO_ALERT_EMAIL}
    assert "SessionTable" not in d.moto_resources and "SessionTableName" not in d.outputs
    assert "audit-s3-sessions" not in central_aws.client("dynamodb").list_tables()["TableNames"]
    fn = central_aws.client("lambda").get_function_configuration(FunctionName="audit-s3-transformer")
    assert "AUDITLAKE_SESSION_TABLE" not in fn["Environment"]["Variables"]
    stmts = d.resolved["TransformerRole"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert not [s for s in stmts if any(a.startswith("dynamodb:") for a in _actions(s))]
    assert {"SessionIndexObjects", "SessionIndexList"} <= {s["Sid"] for s in stmts}
    rules = {r["Id"]: r for r in d.resolved["LakeBucket"]["LifecycleConfiguration"]["Rules"]}
    assert rules["session-index"]["Prefix"] == "session_index/"
    assert rules["session-index"]["ExpirationInDays"] == 14
    # the compaction job then reads the S3 session index only
    compaction = central_aws.client("lambda").get_function_configuration(FunctionName="audit-s3-compaction")
    assert "AUDITLAKE_SESSION_TABLE" not in compaction["Environment"]["Variables"]
    stmts = d.resolved["CompactionRole"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert not [s for s in stmts if any(a.startswith("dynamodb:") for a in _actions(s))]
    bucket = d.outputs["LakeBucketName"]
    assert [s["Resource"] for s in stmts if s["Sid"] == "ReadSessionIndex"] == [
        f"arn:aws:s3:::{bucket}/session_index/*"]


# ---------------------------------------------------------------------------- alerts


def test_central_alert_bus_rule_topic_and_queue(central, central_aws):
    events = central_aws.client("events")
    bus = events.describe_event_bus(Name="audit-org-alerts")
    assert bus["Arn"] == central.outputs["AlertBusArn"]
    rule = events.describe_rule(Name="audit-org-alerts", EventBusName="audit-org-alerts")
    assert rule["State"] == "ENABLED"
    assert json.loads(rule["EventPattern"]) == {"source": ["eks-audit-lake"], "detail-type": ["EKS Audit Finding"]}
    # The key policy names the rule by a spelled-out ARN: it must be the rule's real ARN.
    rule_arn = rule["Arn"]
    assert rule_arn == f"arn:aws:events:us-east-1:{CENTRAL_ACCOUNT}:rule/audit-org-alerts/audit-org-alerts"
    key_policy = central.resolved["LakeKey"]["KeyPolicy"]["Statement"]
    (kms_stmt,) = [st for st in key_policy if st.get("Principal") == {"Service": "events.amazonaws.com"}]
    assert kms_stmt["Condition"] == {"StringEquals": {"aws:SourceAccount": CENTRAL_ACCOUNT},
                                     "ArnEquals": {"aws:SourceArn": rule_arn}}
    key_id = central.outputs["KmsKeyArn"].split("/")[-1]
    stored = central_aws.client("kms").get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]
    stored = stored if isinstance(stored, dict) else json.loads(stored)  # moto keeps CloudFormation's object
    assert kms_stmt in stored["Statement"]
    # the whole event to the topic, retries, then the dead-letter queue
    sqs = central_aws.client("sqs")
    url = sqs.get_queue_url(QueueName="audit-org-alerts-dlq")["QueueUrl"]
    q = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    (target,) = events.list_targets_by_rule(Rule="audit-org-alerts", EventBusName="audit-org-alerts")["Targets"]
    assert target["Arn"] == central.outputs["AlertTopicArn"]
    assert target["DeadLetterConfig"] == {"Arn": q["QueueArn"]}
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 185}
    assert "InputTransformer" not in target and "Input" not in target and "InputPath" not in target
    # topic: the stack's key; EventBridge may publish for this rule only
    sns = central_aws.client("sns")
    attrs = sns.get_topic_attributes(TopicArn=central.outputs["AlertTopicArn"])["Attributes"]
    assert attrs["KmsMasterKeyId"] == central.outputs["KmsKeyArn"]
    (pub,) = json.loads(attrs["Policy"])["Statement"]
    assert pub == {"Sid": "AlertRulePublishes", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                   "Action": "sns:Publish", "Resource": central.outputs["AlertTopicArn"],
                   "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}}
    # queue: the stack's key, 14 days, EventBridge may send for this rule only
    assert q["KmsMasterKeyId"] == central.outputs["KmsKeyArn"] and q["MessageRetentionPeriod"] == "1209600"
    (send,) = json.loads(q["Policy"])["Statement"]
    assert send["Principal"] == {"Service": "events.amazonaws.com"} and send["Action"] == "sqs:SendMessage"
    assert send["Resource"] == q["QueueArn"] and send["Condition"] == {"ArnEquals": {"aws:SourceArn": rule_arn}}
    assert central.outputs["AlertDeadLetterQueueUrl"] == (
        f"https://sqs.us-east-1.amazonaws.com/{CENTRAL_ACCOUNT}/audit-org-alerts-dlq")
    # the three delivery alarms name this bus, rule and queue
    cw = central_aws.client("cloudwatch")
    by_name = {a["AlarmName"]: a for a in cw.describe_alarms(AlarmNamePrefix="audit-org-alert")["MetricAlarms"]}
    rule_dims = [{"Name": "EventBusName", "Value": "audit-org-alerts"}, {"Name": "RuleName", "Value": "audit-org-alerts"}]
    assert by_name["audit-org-alert-delivery"]["MetricName"] == "FailedInvocations"
    assert by_name["audit-org-alert-delivery"]["Dimensions"] == rule_dims
    assert by_name["audit-org-alert-dead-letter-failures"]["MetricName"] == "InvocationsFailedToBeSentToDlq"
    assert by_name["audit-org-alert-dead-letter-failures"]["Dimensions"] == rule_dims
    assert by_name["audit-org-alert-dead-letters"]["Dimensions"] == [{"Name": "QueueName",
                                                                       "Value": "audit-org-alerts-dlq"}]


def test_central_alert_rule_pattern_selects_findings(central, central_aws):
    """The stack rule's pattern on events shaped as the Lambda puts them (PutEvents with
    the bus ARN as EventBusName), with an SQS target as docs/deploy.md suggests for a SIEM.
    moto cannot deliver to SNS targets (PutEvents on a bus whose rule targets a topic fails
    with NotImplementedError), so the pattern is tried on a scratch bus."""
    events, sqs = central_aws.client("events"), central_aws.client("sqs")
    pattern = events.describe_rule(Name="audit-org-alerts", EventBusName="audit-org-alerts")["EventPattern"]
    bus = events.create_event_bus(Name="audit-org-pattern-check")["EventBusArn"]
    url = sqs.create_queue(QueueName="audit-org-siem")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="siem", EventBusName=bus, EventPattern=pattern)
    events.put_targets(Rule="siem", EventBusName=bus, Targets=[{"Id": "siem", "Arn": arn}])
    finding = {"rule_id": "r-1", "level": "high", "audit_id": "a-1"}
    entries = [
        {"EventBusName": bus, "Source": "eks-audit-lake", "DetailType": "EKS Audit Finding",
         "Detail": json.dumps(finding)},
        {"EventBusName": bus, "Source": "eks-audit-lake", "DetailType": "Something Else", "Detail": "{}"},
        {"EventBusName": bus, "Source": "someone-else", "DetailType": "EKS Audit Finding", "Detail": "{}"},
    ]
    assert events.put_events(Entries=entries)["FailedEntryCount"] == 0
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    assert len(got) == 1
    event = json.loads(got[0]["Body"])
    assert (event["source"], event["detail-type"], event["detail"]) == ("eks-audit-lake", "EKS Audit Finding", finding)


# ------------------------------------------------------------------------- compaction

COMPACTED_PREFIXES = ["eks_audit", "sts_sessions", "eks_api_events", "findings", "_compaction"]
ACCT_COMPACTION = {"CompactionLagDays": "5", "CompactionDays": "7", "CompactionTargetMB": "128",
                   "CompactionZstdLevel": "9", "CompactionMemoryMB": "3538", "CompactionSchedule": "cron(15 1 * * ? *)"}


def _env(fn_config: dict) -> dict:
    # moto returns Number parameters as numbers; Lambda environment values are strings.
    return {k: str(v) for k, v in fn_config["Environment"]["Variables"].items()}


def test_central_compaction_function(central, central_aws):
    lam = central_aws.client("lambda")
    fn = lam.get_function(FunctionName="audit-org-compaction")
    cfg = fn["Configuration"]
    assert central.outputs["CompactionFunctionName"] == "audit-org-compaction"
    assert cfg["Runtime"] == "provided.al2023" and cfg["Handler"] == "bootstrap"
    assert cfg["Timeout"] == 900 and cfg["MemorySize"] == 1769
    assert fn["Concurrency"] == {"ReservedConcurrentExecutions": 1}
    # the transformer's zip, switched into compaction mode by AUDITLAKE_FUNCTION
    transformer = lam.get_function(FunctionName="audit-org-transformer")
    assert fn["Code"]["Location"] == transformer["Code"]["Location"]
    assert cfg["CodeSha256"] == transformer["Configuration"]["CodeSha256"]
    resolved = central.resolved["CompactionFunction"]
    assert resolved["Code"] == central.resolved["TransformerFunction"]["Code"]
    assert resolved["Architectures"] == ["arm64"] and resolved["EphemeralStorage"] == {"Size": 2048}
    bucket = central.outputs["LakeBucketName"]
    shared = {"AUDITLAKE_LAKE": f"s3://{bucket}/org/lake",
              "AUDITLAKE_AWS_AUTH": "s3://config-bucket/eks/aws-auth.yaml",
              "AUDITLAKE_TRUSTED_TRAILS": "999999999999:aws-cloudtrail-logs-o-abcdefghij",
              "AUDITLAKE_SESSION_TABLE": "audit-org-sessions"}
    expected = {**shared, "AUDITLAKE_FUNCTION": "compact", "AUDITLAKE_COMPACT_LAG_DAYS": "2",
                "AUDITLAKE_COMPACT_DAYS": "3", "AUDITLAKE_COMPACT_TARGET_MB": "256",
                "AUDITLAKE_COMPACT_ZSTD_LEVEL": "3", "AUDITLAKE_SCRATCH_DIR": "/tmp"}
    assert _env(cfg) == expected == resolved["Environment"]["Variables"]
    transformer_env = transformer["Configuration"]["Environment"]["Variables"]
    assert {k: transformer_env[k] for k in shared} == shared
    # its own encrypted log group; failures of asynchronous runs go to the encrypted queue
    assert resolved["LoggingConfig"] == {"LogGroup": "/aws/lambda/audit-org-compaction", "LogFormat": "Text"}
    (group,) = central_aws.client("logs").describe_log_groups(
        logGroupNamePrefix="/aws/lambda/audit-org-compaction")["logGroups"]
    assert group["retentionInDays"] == 90
    # moto's CloudFormation ignores the log group's key; check what CloudFormation gets.
    assert central.resolved["CompactionLogGroup"]["KmsKeyId"] == central.outputs["KmsKeyArn"]
    sqs = central_aws.client("sqs")
    url = sqs.get_queue_url(QueueName="audit-org-compaction-dlq")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["KmsMasterKeyId"] == central.outputs["KmsKeyArn"] and "FifoQueue" not in attrs
    assert resolved["DeadLetterConfig"] == {"TargetArn": attrs["QueueArn"]}
    # (the API answers with the endpoint's host; CloudFormation with the regional one)
    assert central.outputs["CompactionDeadLetterQueueUrl"] == (
        f"https://sqs.us-east-1.amazonaws.com/{CENTRAL_ACCOUNT}/audit-org-compaction-dlq")
    inv = lam.get_function_event_invoke_config(FunctionName="audit-org-compaction", Qualifier="$LATEST")
    assert inv["MaximumRetryAttempts"] == 0 and inv["FunctionArn"] == cfg["FunctionArn"]


def test_central_compaction_role(central, central_aws):
    bucket = central.outputs["LakeBucketName"]
    lake = f"arn:aws:s3:::{bucket}/org/lake"
    assert central_aws.client("iam").list_role_policies(RoleName=central.moto_resources["CompactionRole"])[
        "PolicyNames"] == ["compaction"]
    (policy,) = central.resolved["CompactionRole"]["Policies"]
    stmts = policy["PolicyDocument"]["Statement"]
    by_sid = {s["Sid"]: s for s in stmts}
    assert by_sid["CompactLakeObjects"]["Resource"] == [f"{lake}/{p}/*" for p in COMPACTED_PREFIXES]
    # no s3 write or delete anywhere else (session_index/, raw/, errors/, athena-results/)
    for s in stmts:
        if {"s3:PutObject", "s3:DeleteObject"} & set(_actions(s)):
            assert s["Sid"] == "CompactLakeObjects"
    assert by_sid["ReadSessionIndex"] == {"Sid": "ReadSessionIndex", "Effect": "Allow", "Action": "s3:GetObject",
                                          "Resource": f"{lake}/session_index/*"}
    assert by_sid["ListCompactedPrefixes"]["Resource"] == f"arn:aws:s3:::{bucket}"
    assert by_sid["ListCompactedPrefixes"]["Condition"] == {"StringLike": {"s3:prefix": [
        f"org/lake/{p}/*" for p in COMPACTED_PREFIXES + ["session_index"]]}}
    assert by_sid["ReadAwsAuthMapping"]["Resource"] == "arn:aws:s3:::config-bucket/eks/aws-auth.yaml"
    table_arn = f"arn:aws:dynamodb:us-east-1:{CENTRAL_ACCOUNT}:table/audit-org-sessions"
    dynamo = [s for s in stmts if any(a.startswith("dynamodb:") for a in _actions(s))]
    assert dynamo == [{"Sid": "ReadSessionTableItems", "Effect": "Allow",
                       "Action": ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"],
                       "Resource": table_arn}]
    assert by_sid["UseLakeKey"]["Resource"] == central.outputs["KmsKeyArn"]
    assert by_sid["WriteOwnLogs"]["Resource"] == (
        f"arn:aws:logs:us-east-1:{CENTRAL_ACCOUNT}:log-group:/aws/lambda/audit-org-compaction:*")
    assert by_sid["SendToDeadLetterQueue"]["Resource"] == (
        f"arn:aws:sqs:us-east-1:{CENTRAL_ACCOUNT}:audit-org-compaction-dlq")
    assert all(s["Resource"] != "*" for s in stmts)


def test_central_compaction_schedule(central, central_aws):
    s = central_aws.client("scheduler").get_schedule(Name="audit-org-compaction")
    fn_arn = f"arn:aws:lambda:us-east-1:{CENTRAL_ACCOUNT}:function:audit-org-compaction"
    dlq_arn = f"arn:aws:sqs:us-east-1:{CENTRAL_ACCOUNT}:audit-org-compaction-dlq"
    assert s["ScheduleExpression"] == "cron(30 3 * * ? *)" and s["ScheduleExpressionTimezone"] == "UTC"
    assert s["FlexibleTimeWindow"] == {"Mode": "OFF"} and s["State"] == "ENABLED"
    t = s["Target"]
    assert t["Arn"] == fn_arn and json.loads(t["Input"]) == {"action": "compact"}
    assert t["RetryPolicy"] == {"MaximumRetryAttempts": 2} and t["DeadLetterConfig"] == {"Arn": dlq_arn}
    role = central.moto_resources["SchedulerRole"]
    assert t["RoleArn"] == f"arn:aws:iam::{CENTRAL_ACCOUNT}:role/{role}"
    props = central.resolved["SchedulerRole"]
    (trust,) = props["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": CENTRAL_ACCOUNT}}
    stmts = props["Policies"][0]["PolicyDocument"]["Statement"]
    lambda_stmts = [st for st in stmts if any(a.startswith("lambda:") for a in _actions(st))]
    assert lambda_stmts == [{"Sid": "InvokeCompaction", "Effect": "Allow", "Action": "lambda:InvokeFunction",
                             "Resource": fn_arn}]
    assert {st["Sid"]: st["Resource"] for st in stmts if st not in lambda_stmts} == {
        "SendToDeadLetterQueue": dlq_arn, "EncryptForDeadLetterQueue": central.outputs["KmsKeyArn"]}


def test_central_without_compaction(central_aws):
    d = deploy_central(central_aws, "audit-nocmp", SenderAccountIds="111111111111", EnableCompaction="false")
    assert d.not_created == {"AlarmEmailSubscription": "condition HasAlarmEmail is false", **NO_ALERT_EMAIL,
                             **{lid: "condition UseCompaction is false" for lid in COMPACTION}}
    assert not COMPACTION & (set(d.moto_resources) | set(d.emulated))
    assert "CompactionFunctionName" not in d.outputs and "CompactionDeadLetterQueueUrl" not in d.outputs
    names = [f["FunctionName"] for f in central_aws.client("lambda").list_functions()["Functions"]]
    assert "audit-nocmp-transformer" in names and "audit-nocmp-compaction" not in names
    schedules = central_aws.client("scheduler").list_schedules(NamePrefix="audit-nocmp")["Schedules"]
    assert schedules == []
    alarms = central_aws.client("cloudwatch").describe_alarms(AlarmNamePrefix="audit-nocmp-")["MetricAlarms"]
    assert len(alarms) == 8  # ingestion and alert delivery


# ----------------------------------------------------------------------- member accounts


def test_member_cluster_filters(central, central_aws, moto_endpoint):
    member = Aws(moto_endpoint, account="111111111111")
    logs = member.client("logs")
    clusters = ["prod", "dev-2"]
    for c in clusters:  # EKS creates these when control-plane logging is on
        logs.create_log_group(logGroupName=f"/aws/eks/{c}/cluster")
    d = emu.deploy(member.client("cloudformation"), member.client, load("member.yaml"), "audit-member",
                   {"CentralAccountId": CENTRAL_ACCOUNT, "DestinationName": "audit-org",
                    "SubscriptionMode": "ClusterFilters", "ClusterNames": ",".join(clusters)},
                   before_replay=_destination_decoy(central_aws))
    assert set(d.emulated) == {"ClusterFilter0", "ClusterFilter1"}
    assert d.not_created == {
        "AccountSubscriptionPolicy": "condition AccountLevel is false",
        **{f"ClusterFilter{i}": f"condition HasCluster{i} is false" for i in range(2, 10)},
    }
    role_arn = d.outputs["SenderRoleArn"]
    assert role_arn.startswith("arn:aws:iam::111111111111:role/")
    for i, c in enumerate(clusters):
        (f,) = logs.describe_subscription_filters(logGroupName=f"/aws/eks/{c}/cluster")["subscriptionFilters"]
        assert f["destinationArn"] == central.outputs["DestinationArn"]
        assert f["roleArn"] == role_arn
        assert f["filterPattern"] == "{ $.kind = Event }"
        assert d.resolved[f"ClusterFilter{i}"]["EmitSystemFields"] == ["@aws.region"]
        assert d.resolved[f"ClusterFilter{i}"]["Distribution"] == "Random"
    policy = d.resolved["SenderRole"]["Policies"][0]["PolicyDocument"]["Statement"][0]
    assert policy["Resource"] == [central.outputs["DestinationArn"],
                                  "arn:aws:logs:us-east-1:111111111111:log-group:/aws/eks/*"]


@pytest.mark.parametrize("use_role", ["true", "false"])
def test_member_account_policy(central, moto_endpoint, use_role):
    account = "222222222222" if use_role == "true" else "333333333333"
    member = Aws(moto_endpoint, account=account)
    d = emu.deploy(member.client("cloudformation"), member.client, load("member.yaml"), "audit-member",
                   {"CentralAccountId": CENTRAL_ACCOUNT, "DestinationName": "audit-org", "UseSenderRole": use_role})
    assert d.not_created["AccountSubscriptionPolicy"] == "moto has no PutAccountPolicy API"
    assert all(v.startswith("condition HasCluster") for k, v in d.not_created.items() if k.startswith("ClusterFilter"))
    p = d.resolved["AccountSubscriptionPolicy"]
    assert p["PolicyType"] == "SUBSCRIPTION_FILTER_POLICY" and p["Scope"] == "ALL"
    assert p["SelectionCriteria"] == (
        'LogGroupName NOT IN ["/aws/lambda/eks-audit-lake-transformer","/aws/lambda/eks-audit-lake-compaction","/aws/kinesisfirehose/eks-audit-lake"]')
    doc = json.loads(p["PolicyDocument"])
    expected = {"DestinationArn": central.outputs["DestinationArn"], "FilterPattern": "{ $.kind = Event }",
                "Distribution": "Random"}
    if use_role == "true":
        expected["RoleArn"] = d.outputs["SenderRoleArn"]
        assert d.resolved["SenderRole"]["Policies"][0]["PolicyDocument"]["Statement"][0]["Resource"][1] == (
            f"arn:aws:logs:us-east-1:{account}:log-group:*")
    else:
        assert "SenderRole" in d.not_created and "SenderRoleArn" not in d.outputs
    assert doc == expected


def test_cloudtrail_feed(central, central_aws, moto_endpoint):
    trail = Aws(moto_endpoint, account="444444444444")
    logs = trail.client("logs")
    logs.create_log_group(logGroupName="aws-controltower/CloudTrailLogs")
    d = emu.deploy(trail.client("cloudformation"), trail.client, load("cloudtrail-feed.yaml"), "audit-trail",
                   {"CentralAccountId": CENTRAL_ACCOUNT, "DestinationName": "audit-org",
                    "TrailLogGroupName": "aws-controltower/CloudTrailLogs"},
                   before_replay=_destination_decoy(central_aws))
    assert d.not_created == {}
    (f,) = logs.describe_subscription_filters(logGroupName="aws-controltower/CloudTrailLogs")["subscriptionFilters"]
    assert f["destinationArn"] == central.outputs["DestinationArn"]
    assert f["roleArn"] == d.outputs["SenderRoleArn"]
    for name in STS_EVENTS:
        assert f'"{name}"' in f["filterPattern"]
    assert '($.eventSource = "sts.amazonaws.com")' in f["filterPattern"]


def test_stackset_and_the_member_stack_it_deploys(moto_endpoint, central, central_aws):
    admin = Aws(moto_endpoint, account="555555555555")
    s3 = admin.client("s3")
    s3.create_bucket(Bucket="templates-555")
    s3.put_object(Bucket="templates-555", Key="member.yaml", Body=(INFRA / "member.yaml").read_bytes())
    url = "https://templates-555.s3.us-east-1.amazonaws.com/member.yaml"
    d = emu.deploy(admin.client("cloudformation"), admin.client, load("stackset.yaml"), "audit-stackset",
                   {"TemplateURL": url, "OrganizationalUnitIds": "ou-ab12-cdef3456,ou-ab12-ghij7890",
                    "Regions": "us-east-1,eu-west-1", "CentralAccountId": CENTRAL_ACCOUNT,
                    "DestinationName": "audit-org"})
    assert d.not_created == {}
    ss = admin.client("cloudformation").describe_stack_set(StackSetName="eks-audit-lake-member")["StackSet"]
    assert ss["PermissionModel"] == "SERVICE_MANAGED"
    assert "AWS::Logs::AccountPolicy" in ss["TemplateBody"]  # fetched from TemplateURL
    props = d.resolved["MemberStackSet"]
    assert props["AutoDeployment"] == {"Enabled": True, "RetainStacksOnAccountRemoval": False}
    assert props["CallAs"] == "DELEGATED_ADMIN"
    assert props["StackInstancesGroup"] == [{
        "DeploymentTargets": {"OrganizationalUnitIds": ["ou-ab12-cdef3456", "ou-ab12-ghij7890"]},
        "Regions": ["us-east-1", "eu-west-1"]}]
    # What a stack instance would get: deploy member.yaml with the stack set's parameters.
    params = {p["ParameterKey"]: p["ParameterValue"] for p in ss["Parameters"]}
    member = Aws(moto_endpoint, account="666666666666")
    m = emu.deploy(member.client("cloudformation"), member.client, load("member.yaml"), "instance", params)
    doc = json.loads(m.resolved["AccountSubscriptionPolicy"]["PolicyDocument"])
    assert doc["DestinationArn"] == central.outputs["DestinationArn"]
    assert doc["RoleArn"] == m.outputs["SenderRoleArn"]
