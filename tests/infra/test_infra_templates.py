"""Static checks of the templates against the requirements of issue #4 and DESIGN.md.

These read the YAML (short-form tags turned into their long form); the moto deployment
test resolves the same expressions with real parameters.
"""

from __future__ import annotations

import json
import re

import pytest

from infra_support import TEMPLATES, load

CENTRAL = load("central.yaml")
MEMBER = load("member.yaml")
STACKSET = load("stackset.yaml")
FEED = load("cloudtrail-feed.yaml")
R = CENTRAL["Resources"]
STS_EVENTS = ["AssumeRole", "AssumeRoleWithSAML", "AssumeRoleWithWebIdentity", "GetFederationToken"]
# Issue #17: EKS management calls that change who may act in a cluster or whether its audit
# log is on (tests/infra/test_filter_pattern.py evaluates the pattern on fixtures of each).
EKS_EVENTS = ["CreateAccessEntry", "UpdateAccessEntry", "DeleteAccessEntry", "AssociateAccessPolicy",
              "DisassociateAccessPolicy", "UpdateClusterConfig", "CreatePodIdentityAssociation",
              "UpdatePodIdentityAssociation", "DeletePodIdentityAssociation", "CreateCluster", "DeleteCluster",
              "AssociateIdentityProviderConfig", "DisassociateIdentityProviderConfig", "CreateAddon", "UpdateAddon"]
SESSION_TABLE_ACTIONS = ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:GetItem",
                         "dynamodb:PutItem", "dynamodb:Query"]


def of_type(t: dict, type_: str) -> dict:
    return {k: v for k, v in t["Resources"].items() if v["Type"] == type_}


def subst(text: str, **values: str) -> str:
    """Fill ${Name} placeholders of an Fn::Sub string (unknown ones become <Name>)."""
    return re.sub(r"\$\{([^}!]+)\}", lambda m: values.get(m.group(1), f"<{m.group(1)}>"), text)


def strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield k
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_arns_use_the_partition(template):
    t = load(template.name)
    # Saved queries are SQL text from schemas/queries (their comments show example ARNs).
    t["Resources"] = {k: v for k, v in t["Resources"].items() if v["Type"] != "AWS::Athena::NamedQuery"}
    for s in strings(t):
        assert not re.search(r"arn:aws(-[a-z-]+)?:", s), f"hard-coded partition in {s!r}"


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_template_size_limits(template):
    """1 MB is the limit for a template in S3; the small ones also fit an inline template
    body (51,200 bytes). central.yaml is deployed through S3 (docs/deploy.md)."""
    size = template.stat().st_size
    assert size < 1_000_000
    if template.name != "central.yaml":
        assert size < 51_200


def test_lambda():
    fn = R["TransformerFunction"]["Properties"]
    assert fn["Runtime"] == "provided.al2023"
    assert fn["Architectures"] == ["arm64"]
    assert fn["Handler"] == "bootstrap"
    assert fn["Timeout"] == 300
    assert fn["MemorySize"] == {"Ref": "LambdaMemoryMB"}
    assert CENTRAL["Parameters"]["LambdaMemoryMB"]["Default"] == 1769
    assert fn["Code"]["S3Bucket"] == {"Ref": "LambdaCodeBucket"} and fn["Code"]["S3Key"] == {"Ref": "LambdaCodeKey"}
    env = fn["Environment"]["Variables"]
    assert set(env) == {"AUDITLAKE_LAKE", "AUDITLAKE_AWS_AUTH", "AUDITLAKE_RAW_ARCHIVE", "AUDITLAKE_TRUSTED_TRAILS",
                        "AUDITLAKE_OIDC_CLUSTERS", "AUDITLAKE_SESSION_TABLE", "AUDITLAKE_ALERT_BUS",
                        "AUDITLAKE_ALERT_SEVERITY", "AUDITLAKE_RULES", "AUDITLAKE_ORG_ACCOUNTS"}
    # detections: the alert bus (its ARN, which PutEvents takes as EventBusName), the level
    assert env["AUDITLAKE_ALERT_BUS"] == {"Fn::GetAtt": ["AlertBus", "Arn"]}
    assert env["AUDITLAKE_ALERT_SEVERITY"] == {"Ref": "AlertSeverity"}
    # the operator's rules from the lake bucket, only when a prefix is given
    assert env["AUDITLAKE_RULES"] == {"Fn::If": ["HasCustomRules", {"Fn::Sub": "s3://${LakeBucket}/${CustomRulesPrefix}"},
                                                 {"Ref": "AWS::NoValue"}]}
    assert env["AUDITLAKE_OIDC_CLUSTERS"] == {"Fn::If": ["HasOidcClusters", {"Ref": "OidcClusters"},
                                                         {"Ref": "AWS::NoValue"}]}
    # the organisation's accounts (the rules' %org_accounts%), only when given
    assert env["AUDITLAKE_ORG_ACCOUNTS"] == {"Fn::If": ["HasOrgAccounts", {"Ref": "OrganizationAccounts"},
                                                        {"Ref": "AWS::NoValue"}]}
    # the DynamoDB session index, only when the table exists (SessionStore dynamodb)
    assert env["AUDITLAKE_SESSION_TABLE"] == {"Fn::If": ["UseSessionTable", {"Ref": "SessionTable"},
                                                         {"Ref": "AWS::NoValue"}]}
    # the trail's account and log group (parameters, patterns as the Lambda parses them)
    assert env["AUDITLAKE_TRUSTED_TRAILS"]["Fn::If"][0] == "HasExtraTrails"
    assert env["AUDITLAKE_TRUSTED_TRAILS"]["Fn::If"][2] == {"Fn::Sub": "${TrailAccountId}:${TrailLogGroupName}"}
    params = load("central.yaml")["Parameters"]
    assert "Default" not in params["TrailAccountId"] and "Default" not in params["TrailLogGroupName"]
    assert env["AUDITLAKE_RAW_ARCHIVE"] == "true"
    assert env["AUDITLAKE_AWS_AUTH"] == {"Fn::If": ["HasAwsAuth", {"Ref": "AwsAuthS3Uri"}, {"Ref": "AWS::NoValue"}]}
    assert fn["KmsKeyArn"] == {"Fn::GetAtt": ["LakeKey", "Arn"]}


def test_transformer_role_is_least_privilege():
    (policy,) = R["TransformerRole"]["Properties"]["Policies"]
    stmts = []
    optional = {}
    for s in policy["PolicyDocument"]["Statement"]:
        if "Fn::If" in s:  # the optional aws-auth and session-table statements
            cond, s, otherwise = s["Fn::If"]
            assert otherwise == {"Ref": "AWS::NoValue"}
            optional[s["Sid"]] = cond
        stmts.append(s)
    assert optional == {"ReadAwsAuthMapping": "HasAwsAuth", "SessionTableItems": "UseSessionTable",
                        "ReadCustomRules": "HasCustomRules", "ListCustomRules": "HasCustomRules"}
    actions = {}
    for s in stmts:
        assert s["Effect"] == "Allow"
        acts = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        assert all("*" not in a for a in acts)
        assert s["Resource"] != "*"
        actions[s["Sid"]] = sorted(acts)
    assert actions == {
        "WriteLakeTables": ["s3:PutObject"],
        "SessionIndexObjects": ["s3:GetObject", "s3:PutObject"],
        "SessionIndexList": ["s3:ListBucket"],
        "ReadAwsAuthMapping": ["s3:GetObject"],
        "SessionTableItems": SESSION_TABLE_ACTIONS,
        "ReadCustomRules": ["s3:GetObject"],
        "ListCustomRules": ["s3:ListBucket"],
        "PutAlertEvents": ["events:PutEvents"],
        "UseLakeKey": ["kms:Decrypt", "kms:GenerateDataKey"],
        "WriteOwnLogs": ["logs:CreateLogStream", "logs:PutLogEvents"],
    }
    by_sid = {s["Sid"]: s for s in stmts}
    # the three tables and the findings the rules produce (compaction rewrites the same four)
    tables = [r["Fn::Sub"][0] for r in by_sid["WriteLakeTables"]["Resource"]]
    assert tables == ["arn:${AWS::Partition}:s3:::${LakeBucket}/${KeyPrefix}eks_audit/*",
                      "arn:${AWS::Partition}:s3:::${LakeBucket}/${KeyPrefix}sts_sessions/*",
                      "arn:${AWS::Partition}:s3:::${LakeBucket}/${KeyPrefix}eks_api_events/*",
                      "arn:${AWS::Partition}:s3:::${LakeBucket}/${KeyPrefix}findings/*"]
    assert [t.rsplit("}", 1)[1] for t in tables] == [f"{p}/*" for p in COMPACTED_PREFIXES if p != "_compaction"]
    assert by_sid["SessionIndexObjects"]["Resource"]["Fn::Sub"][0].endswith("${KeyPrefix}session_index/*")
    cond = by_sid["SessionIndexList"]["Condition"]["StringLike"]["s3:prefix"]
    assert cond["Fn::Sub"][0] == "${KeyPrefix}session_index/*"
    # exactly the five item actions, on the table itself only (no index ARNs, no wildcard)
    table = by_sid["SessionTableItems"]
    assert sorted(table) == ["Action", "Effect", "Resource", "Sid"]
    assert table["Resource"] == {"Fn::GetAtt": ["SessionTable", "Arn"]}
    # the role may use the key for DynamoDB too: the grant is not limited to S3 (kms:ViaService)
    assert by_sid["UseLakeKey"]["Resource"] == {"Fn::GetAtt": ["LakeKey", "Arn"]}
    assert "Condition" not in by_sid["UseLakeKey"]


def test_session_table():
    t = R["SessionTable"]
    assert t["Type"] == "AWS::DynamoDB::Table"
    assert t["Condition"] == "UseSessionTable"
    assert t["DeletionPolicy"] == "Retain" and t["UpdateReplacePolicy"] == "Retain"
    p = t["Properties"]
    assert p["TableName"] == {"Fn::Sub": "${NamePrefix}-sessions"}
    assert p["BillingMode"] == "PAY_PER_REQUEST" and "ProvisionedThroughput" not in p
    assert p["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"},
                              {"AttributeName": "sk", "KeyType": "RANGE"}]
    assert p["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"},
                                         {"AttributeName": "sk", "AttributeType": "S"}]
    assert "GlobalSecondaryIndexes" not in p and "LocalSecondaryIndexes" not in p
    assert p["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert p["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS",
                                     "KMSMasterKeyId": {"Fn::GetAtt": ["LakeKey", "Arn"]}}
    assert p["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    # SessionStore: dynamodb (default) creates the table; s3 keeps the lake's session_index/
    store = CENTRAL["Parameters"]["SessionStore"]
    assert store["Type"] == "String" and store["AllowedValues"] == ["dynamodb", "s3"]
    assert store["Default"] == "dynamodb"
    assert CENTRAL["Conditions"]["UseSessionTable"] == {"Fn::Equals": [{"Ref": "SessionStore"}, "dynamodb"]}
    groups = CENTRAL["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    (lambda_group,) = [g for g in groups if g["Label"]["default"] == "Transformer Lambda"]
    assert "SessionStore" in lambda_group["Parameters"]
    assert CENTRAL["Outputs"]["SessionTableName"]["Condition"] == "UseSessionTable"
    assert CENTRAL["Outputs"]["SessionTableName"]["Value"] == {"Ref": "SessionTable"}


def test_stream_and_destination():
    s = R["AuditStream"]["Properties"]
    assert s["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"} and "ShardCount" not in s
    assert s["StreamEncryption"]["EncryptionType"] == "KMS"
    role = R["CwlToKinesisRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "logs.amazonaws.com"}
    assert "aws:SourceArn" in trust["Condition"]["StringLike"]
    d = R["AuditDestination"]["Properties"]
    assert d["TargetArn"] == {"Fn::GetAtt": ["AuditStream", "Arn"]}
    cond, org_form, list_form = d["DestinationPolicy"]["Fn::If"]
    assert cond == "UseOrgId"
    org = json.loads(subst(org_form["Fn::Sub"], OrganizationId="o-x"))
    assert org["Statement"][0]["Condition"]["StringEquals"]["aws:PrincipalOrgID"] == ["o-x"]
    listed = json.loads(subst(list_form["Fn::Sub"][0], Accounts='1","2'))
    assert listed["Statement"][0]["Principal"] == {"AWS": ["1", "2"]}
    assert CENTRAL["Conditions"]["UseOrgId"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "OrganizationId"}, ""]}]}


def test_bucket():
    b = R["LakeBucket"]
    p = b["Properties"]
    assert b["DeletionPolicy"] == "Retain"
    (enc,) = p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert enc["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert p["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(p["PublicAccessBlockConfiguration"].values()) and len(p["PublicAccessBlockConfiguration"]) == 4
    rules = {r["Id"]: r for r in p["LifecycleConfiguration"]["Rules"]}
    prefixes = {r["Prefix"]: r for r in rules.values() if isinstance(r.get("Prefix"), str)}
    assert {"raw/", "errors/"} <= set(prefixes)
    assert prefixes["raw/"]["ExpirationInDays"] == {"Ref": "RawRetentionDays"}
    # The S3 session index expires in both SessionStore modes, under the lake prefix.
    session = rules["session-index"]
    assert session["Status"] == "Enabled"
    assert session["Prefix"] == {"Fn::If": ["HasLakePrefix", {"Fn::Sub": "${LakePrefix}/session_index/"},
                                            "session_index/"]}
    assert session["ExpirationInDays"] == 14
    assert "Condition" not in session and "Transitions" not in session
    (deny,) = R["LakeBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_firehose():
    f = R["DeliveryStream"]["Properties"]
    assert f["DeliveryStreamType"] == "KinesisStreamAsSource"
    s3 = f["ExtendedS3DestinationConfiguration"]
    assert "DynamicPartitioningConfiguration" not in s3
    assert s3["Prefix"] == "raw/"
    assert s3["ErrorOutputPrefix"] == "errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/"
    assert s3["CloudWatchLoggingOptions"]["Enabled"] is True
    (proc,) = s3["ProcessingConfiguration"]["Processors"]
    assert proc["Type"] == "Lambda"
    params = {p["ParameterName"]: p["ParameterValue"] for p in proc["Parameters"]}
    assert params["LambdaArn"] == {"Fn::GetAtt": ["TransformerFunction", "Arn"]}
    assert params["NumberOfRetries"] == "3"
    assert 0.2 <= float(params["BufferSizeInMBs"]) <= 3
    assert params["BufferIntervalInSeconds"] == "60"


def test_athena_and_glue():
    wg = R["AthenaWorkGroup"]["Properties"]["WorkGroupConfiguration"]
    assert wg["EnforceWorkGroupConfiguration"] is True
    assert wg["ResultConfiguration"]["EncryptionConfiguration"]["EncryptionOption"] == "SSE_KMS"
    assert wg["ResultConfiguration"]["OutputLocation"] == {"Fn::Sub": "s3://${LakeBucket}/athena-results/"}
    assert set(of_type(CENTRAL, "AWS::Glue::Database")) == {"GlueDatabase"}
    assert {v["Properties"]["TableInput"]["Name"] for v in of_type(CENTRAL, "AWS::Glue::Table").values()} == {
        "eks_audit", "sts_sessions", "findings", "eks_api_events"}


def test_alarms():
    alarms = of_type(CENTRAL, "AWS::CloudWatch::Alarm")
    metrics = {(a["Properties"]["Namespace"], a["Properties"]["MetricName"]) for a in alarms.values()}
    assert {("AWS/Lambda", "Errors"), ("AWS/Firehose", "ExecuteProcessing.Success"),
            ("AWS/Firehose", "DeliveryToS3.DataFreshness"),
            ("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds")} <= metrics
    for a in alarms.values():
        assert a["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    assert R["AlarmTopic"]["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": ["LakeKey", "Arn"]}
    assert R["AlarmEmailSubscription"]["Condition"] == "HasAlarmEmail"


def test_member_cluster_filters_cover_ten_positions():
    filters = of_type(MEMBER, "AWS::Logs::SubscriptionFilter")
    assert len(filters) == 10
    for i in range(10):
        f = filters[f"ClusterFilter{i}"]
        assert f["Condition"] == f"HasCluster{i}"
        sub, variables = f["Properties"]["LogGroupName"]["Fn::Sub"]
        assert sub == "/aws/eks/${Cluster}/cluster"
        assert variables["Cluster"]["Fn::Select"][0] == i
        padded = variables["Cluster"]["Fn::Select"][1]["Fn::Split"][1]["Fn::Sub"]
        assert padded.count(",") >= 10  # index 9 exists even for an empty list
        assert f["Properties"]["EmitSystemFields"]["Fn::If"][1] == ["@aws.region"]
        cond = MEMBER["Conditions"][f"HasCluster{i}"]["Fn::And"]
        assert cond[0] == {"Condition": "PerCluster"}
        assert cond[1]["Fn::Not"][0]["Fn::Equals"][0]["Fn::Select"][0] == i


def test_member_account_policy():
    (lid, pol), = of_type(MEMBER, "AWS::Logs::AccountPolicy").items()
    p = pol["Properties"]
    assert pol["Condition"] == "AccountLevel"
    assert p["PolicyType"] == "SUBSCRIPTION_FILTER_POLICY"
    assert p["SelectionCriteria"]["Fn::Sub"][0].startswith("LogGroupName NOT IN [")
    excluded = MEMBER["Parameters"]["ExcludedLogGroups"]["Default"].split(",")
    # the pipeline's own log groups: both functions (the central stack's defaults) and Firehose
    assert {"/aws/lambda/eks-audit-lake-transformer", "/aws/lambda/eks-audit-lake-compaction",
            "/aws/kinesisfirehose/eks-audit-lake"} <= set(excluded)
    fp = MEMBER["Parameters"]["FilterPattern"]
    assert re.fullmatch(fp["AllowedPattern"], fp["Default"]) and '"' not in fp["Default"]
    assert "kind" in fp["Default"]
    # Sender role: trusted by CloudWatch Logs, may put to the destination.
    role = MEMBER["Resources"]["SenderRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "logs.amazonaws.com"}
    (stmt,) = role["Policies"][0]["PolicyDocument"]["Statement"]
    assert stmt["Action"] == "logs:PutLogEvents"
    assert ":destination:${DestinationName}" in stmt["Resource"][0]["Fn::Sub"]


def test_stackset_passes_every_member_parameter():
    ss = STACKSET["Resources"]["MemberStackSet"]["Properties"]
    assert ss["PermissionModel"] == "SERVICE_MANAGED"
    assert ss["AutoDeployment"]["Enabled"] is True
    assert ss["CallAs"] == {"Ref": "CallAs"}
    assert STACKSET["Parameters"]["CallAs"]["AllowedValues"] == ["SELF", "DELEGATED_ADMIN"]
    assert ss["TemplateURL"] == {"Ref": "TemplateURL"}
    assert ss["StackInstancesGroup"][0]["DeploymentTargets"]["OrganizationalUnitIds"] == {"Ref": "OrganizationalUnitIds"}
    assert ss["StackInstancesGroup"][0]["Regions"] == {"Ref": "Regions"}
    passed = [p["ParameterKey"] for p in ss["Parameters"]]
    assert sorted(passed) == sorted(MEMBER["Parameters"])
    for p in ss["Parameters"]:
        assert p["ParameterValue"] == {"Ref": p["ParameterKey"]}
        assert STACKSET["Parameters"][p["ParameterKey"]].get("Default") == MEMBER["Parameters"][p["ParameterKey"]].get("Default")


def test_cloudtrail_feed_sends_credential_issuing_sts_calls_and_eks_access_calls():
    pattern = FEED["Parameters"]["FilterPattern"]["Default"]
    assert len(pattern) <= 1024 and FEED["Parameters"]["FilterPattern"]["MaxLength"] == 1024
    assert '($.eventSource = "sts.amazonaws.com")' in pattern
    assert '($.eventSource = "eks.amazonaws.com")' in pattern
    assert sorted(re.findall(r'\$\.eventName = "(\w+)"', pattern)) == sorted(STS_EVENTS + EKS_EVENTS)
    assert "*" not in pattern  # explicit names: a wildcard would also pass Describe/List calls
    # Renaming the resource or the filter would replace the deployed subscription filter.
    f = FEED["Resources"]["StsEventsFilter"]["Properties"]
    assert f["FilterName"] == {"Fn::Sub": "${NamePrefix}-sts"}
    assert f["FilterPattern"] == {"Ref": "FilterPattern"}
    assert f["LogGroupName"] == {"Ref": "TrailLogGroupName"}
    assert f["RoleArn"] == {"Fn::If": ["SendWithRole", {"Fn::GetAtt": ["SenderRole", "Arn"]}, {"Ref": "AWS::NoValue"}]}


# ------------------------------------------------------------------ compaction job

COMPACTION_RESOURCES = {"CompactionLogGroup", "CompactionDeadLetterQueue", "CompactionRole", "CompactionFunction",
                        "CompactionInvokeConfig", "SchedulerRole", "DailyCompactionSchedule",
                        "CompactionErrorsAlarm", "CompactionDeadLetterAlarm"}
# The lake prefixes the job rewrites and deletes in (the tables, findings, its manifests).
COMPACTED_PREFIXES = ["eks_audit", "sts_sessions", "eks_api_events", "findings", "_compaction"]


def statements(role: str) -> tuple[dict, dict]:
    """{Sid: statement} of a role's only inline policy, and {Sid: condition} of the optional ones."""
    (policy,) = R[role]["Properties"]["Policies"]
    out, optional = {}, {}
    for s in policy["PolicyDocument"]["Statement"]:
        if "Fn::If" in s:
            cond, s, otherwise = s["Fn::If"]
            assert otherwise == {"Ref": "AWS::NoValue"}
            optional[s["Sid"]] = cond
        assert s["Sid"] not in out
        out[s["Sid"]] = s
    return out, optional


def as_list(v) -> list:
    return v if isinstance(v, list) else [v]


def lake_sub(node) -> str:
    """The text of one `Fn::Sub [text, {KeyPrefix: <the lake-prefix idiom>}]` node."""
    text, variables = node["Fn::Sub"]
    assert variables == {"KeyPrefix": {"Fn::If": ["HasLakePrefix", {"Fn::Sub": "${LakePrefix}/"}, ""]}}
    return text


def test_compaction_parameters():
    p = CENTRAL["Parameters"]
    assert p["EnableCompaction"]["Type"] == "String"
    assert p["EnableCompaction"]["AllowedValues"] == ["true", "false"] and p["EnableCompaction"]["Default"] == "true"
    assert CENTRAL["Conditions"]["UseCompaction"] == {"Fn::Equals": [{"Ref": "EnableCompaction"}, "true"]}
    sched = p["CompactionSchedule"]
    assert sched["Type"] == "String" and sched["Default"] == "cron(30 3 * * ? *)"
    assert re.fullmatch(sched["AllowedPattern"], sched["Default"])
    numbers = {"CompactionLagDays": (2, 1, 30), "CompactionDays": (3, 1, 31), "CompactionTargetMB": (256, 16, 1024),
               "CompactionZstdLevel": (3, 1, 22), "CompactionMemoryMB": (1769, 512, 10240)}
    for name, (default, lo, hi) in numbers.items():
        assert p[name]["Type"] == "Number", name
        assert (p[name]["Default"], p[name]["MinValue"], p[name]["MaxValue"]) == (default, lo, hi), name
    groups = CENTRAL["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    (group,) = [g for g in groups if g["Label"]["default"] == "Compaction"]
    assert sorted(group["Parameters"]) == sorted(["EnableCompaction", "CompactionSchedule", *numbers])
    grouped = [n for g in groups for n in g["Parameters"]]
    assert sorted(grouped) == sorted(p), "every parameter is in exactly one group"


def test_every_compaction_resource_is_conditional():
    """EnableCompaction=false creates none of the new resources, and nothing else needs them."""
    import cfn_emulator as emu

    conditional = {lid for lid, r in R.items() if r.get("Condition") == "UseCompaction"}
    assert conditional == COMPACTION_RESOURCES
    for lid, r in R.items():
        refs = emu.referenced_resources({k: v for k, v in r.items() if k != "Condition"}, conditional)
        assert not refs or lid in conditional, f"{lid} refers to {refs} but exists without them"
    for key, o in CENTRAL["Outputs"].items():
        if emu.referenced_resources(o, conditional):
            assert o.get("Condition") == "UseCompaction", key
    assert CENTRAL["Outputs"]["CompactionFunctionName"] == {
        "Condition": "UseCompaction", "Description": CENTRAL["Outputs"]["CompactionFunctionName"]["Description"],
        "Value": {"Ref": "CompactionFunction"}}


def test_compaction_function_runs_the_transformer_code():
    fn = R["CompactionFunction"]["Properties"]
    tr = R["TransformerFunction"]["Properties"]
    for key in ("Runtime", "Architectures", "Handler", "Code", "KmsKeyArn"):
        assert fn[key] == tr[key], key
    assert fn["Code"]["S3Key"] == {"Ref": "LambdaCodeKey"}  # one zip, one bootstrap binary
    assert fn["FunctionName"] == {"Fn::Sub": "${NamePrefix}-compaction"}
    assert fn["Timeout"] == 900
    assert fn["ReservedConcurrentExecutions"] == 1  # two runs never compact one partition at once
    assert fn["MemorySize"] == {"Ref": "CompactionMemoryMB"}
    assert fn["EphemeralStorage"] == {"Size": 2048}
    assert fn["Role"] == {"Fn::GetAtt": ["CompactionRole", "Arn"]}
    assert fn["LoggingConfig"] == {"LogGroup": {"Ref": "CompactionLogGroup"}, "LogFormat": "Text"}
    assert fn["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": ["CompactionDeadLetterQueue", "Arn"]}}
    logs = R["CompactionLogGroup"]["Properties"]
    assert logs == {"LogGroupName": {"Fn::Sub": "/aws/lambda/${NamePrefix}-compaction"},
                    "RetentionInDays": {"Ref": "LogRetentionDays"}, "KmsKeyId": {"Fn::GetAtt": ["LakeKey", "Arn"]}}
    # Lambda does not retry a failed run (the next daily run does); the queue keeps failures.
    inv = R["CompactionInvokeConfig"]["Properties"]
    assert inv == {"FunctionName": {"Ref": "CompactionFunction"}, "Qualifier": "$LATEST", "MaximumRetryAttempts": 0}
    q = R["CompactionDeadLetterQueue"]["Properties"]
    assert q["KmsMasterKeyId"] == {"Fn::GetAtt": ["LakeKey", "Arn"]}
    assert "FifoQueue" not in q  # Scheduler only supports standard queues as a DLQ


def test_compaction_environment():
    env = R["CompactionFunction"]["Properties"]["Environment"]["Variables"]
    shared = ["AUDITLAKE_LAKE", "AUDITLAKE_AWS_AUTH", "AUDITLAKE_TRUSTED_TRAILS", "AUDITLAKE_OIDC_CLUSTERS",
              "AUDITLAKE_SESSION_TABLE"]
    own = {
        "AUDITLAKE_FUNCTION": "compact",
        "AUDITLAKE_COMPACT_LAG_DAYS": {"Ref": "CompactionLagDays"},
        "AUDITLAKE_COMPACT_DAYS": {"Ref": "CompactionDays"},
        "AUDITLAKE_COMPACT_TARGET_MB": {"Ref": "CompactionTargetMB"},
        "AUDITLAKE_COMPACT_ZSTD_LEVEL": {"Ref": "CompactionZstdLevel"},
        "AUDITLAKE_SCRATCH_DIR": "/tmp",
    }
    assert set(env) == set(shared) | set(own)  # no AUDITLAKE_RAW_ARCHIVE: Firehose is not involved
    transformer = R["TransformerFunction"]["Properties"]["Environment"]["Variables"]
    for name in shared:
        assert env[name] == transformer[name], name
    for name, value in own.items():
        assert env[name] == value, name


def test_compaction_role_is_least_privilege():
    role = R["CompactionRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "lambda.amazonaws.com"} and trust["Action"] == "sts:AssumeRole"
    by_sid, optional = statements("CompactionRole")
    assert optional == {"ReadAwsAuthMapping": "HasAwsAuth", "ReadSessionTableItems": "UseSessionTable"}
    for s in by_sid.values():
        assert s["Effect"] == "Allow" and "NotAction" not in s and "NotResource" not in s
        assert all("*" not in a for a in as_list(s["Action"]))
        assert "*" not in as_list(s["Resource"])
    assert {sid: sorted(as_list(s["Action"])) for sid, s in by_sid.items()} == {
        "CompactLakeObjects": ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
        "ReadSessionIndex": ["s3:GetObject"],
        "ListCompactedPrefixes": ["s3:ListBucket"],
        "ReadAwsAuthMapping": ["s3:GetObject"],
        "ReadSessionTableItems": ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:Query"],
        "UseLakeKey": ["kms:Decrypt", "kms:GenerateDataKey"],
        "WriteOwnLogs": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "SendToDeadLetterQueue": ["sqs:SendMessage"],
    }
    lake = "arn:${AWS::Partition}:s3:::${LakeBucket}/${KeyPrefix}"
    # Writes and deletes: the four compacted prefixes, nothing else (not session_index/, raw/ ...).
    writers = [s for s in by_sid.values() if {"s3:PutObject", "s3:DeleteObject"} & set(as_list(s["Action"]))]
    assert [s["Sid"] for s in writers] == ["CompactLakeObjects"]
    assert [lake_sub(r) for r in writers[0]["Resource"]] == [f"{lake}{p}/*" for p in COMPACTED_PREFIXES]
    # The session index is read, never written.
    assert lake_sub(by_sid["ReadSessionIndex"]["Resource"]) == f"{lake}session_index/*"
    listing = by_sid["ListCompactedPrefixes"]
    assert listing["Resource"] == {"Fn::GetAtt": ["LakeBucket", "Arn"]}
    assert sorted(listing["Condition"]) == ["StringLike"]
    prefixes = [lake_sub(p) for p in listing["Condition"]["StringLike"]["s3:prefix"]]
    assert prefixes == [f"${{KeyPrefix}}{p}/*" for p in COMPACTED_PREFIXES + ["session_index"]]
    # exactly the transformer's aws-auth statement
    assert by_sid["ReadAwsAuthMapping"] == statements("TransformerRole")[0]["ReadAwsAuthMapping"]
    # The session table is only read: no PutItem / BatchWriteItem / UpdateItem / DeleteItem.
    table = by_sid["ReadSessionTableItems"]
    assert table["Resource"] == {"Fn::GetAtt": ["SessionTable", "Arn"]}
    dynamo = [a for s in by_sid.values() for a in as_list(s["Action"]) if a.startswith("dynamodb:")]
    assert not [a for a in dynamo if re.search(r"Put|Write|Update|Delete", a)]
    assert by_sid["UseLakeKey"]["Resource"] == {"Fn::GetAtt": ["LakeKey", "Arn"]}
    assert by_sid["WriteOwnLogs"]["Resource"]["Fn::Sub"].endswith(":log-group:${CompactionLogGroup}:*")
    assert by_sid["SendToDeadLetterQueue"]["Resource"] == {"Fn::GetAtt": ["CompactionDeadLetterQueue", "Arn"]}


def test_compaction_schedule_invokes_only_the_compaction_function():
    s = R["DailyCompactionSchedule"]
    assert s["Type"] == "AWS::Scheduler::Schedule"
    p = s["Properties"]
    assert p["ScheduleExpression"] == {"Ref": "CompactionSchedule"}
    assert p["ScheduleExpressionTimezone"] == "UTC"
    assert p["FlexibleTimeWindow"] == {"Mode": "OFF"} and p["State"] == "ENABLED"
    t = p["Target"]
    assert t["Arn"] == {"Fn::GetAtt": ["CompactionFunction", "Arn"]}
    assert t["RoleArn"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}
    assert json.loads(t["Input"]) == {"action": "compact"}
    assert t["RetryPolicy"] == {"MaximumRetryAttempts": 2}
    assert t["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["CompactionDeadLetterQueue", "Arn"]}}
    role = R["SchedulerRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"} and trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    by_sid, optional = statements("SchedulerRole")
    assert not optional
    for st in by_sid.values():
        assert st["Effect"] == "Allow" and "NotAction" not in st and "NotResource" not in st
        assert "*" not in as_list(st["Resource"]) and all("*" not in a for a in as_list(st["Action"]))
    assert {sid: sorted(as_list(st["Action"])) for sid, st in by_sid.items()} == {
        "InvokeCompaction": ["lambda:InvokeFunction"],
        "SendToDeadLetterQueue": ["sqs:SendMessage"],
        "EncryptForDeadLetterQueue": ["kms:Decrypt", "kms:GenerateDataKey"],  # the queue uses the key
    }
    # the compaction function itself: not the transformer, no versions or aliases (no ':*')
    assert by_sid["InvokeCompaction"]["Resource"] == {"Fn::GetAtt": ["CompactionFunction", "Arn"]}
    assert by_sid["SendToDeadLetterQueue"]["Resource"] == {"Fn::GetAtt": ["CompactionDeadLetterQueue", "Arn"]}
    assert by_sid["EncryptForDeadLetterQueue"]["Resource"] == {"Fn::GetAtt": ["LakeKey", "Arn"]}
    invokers = [lid for lid, r in of_type(CENTRAL, "AWS::IAM::Role").items()
                if "lambda:InvokeFunction" in json.dumps(r) and "CompactionFunction" in json.dumps(r)]
    assert invokers == ["SchedulerRole"]


def test_compaction_alarms():
    errors = R["CompactionErrorsAlarm"]["Properties"]
    assert (errors["Namespace"], errors["MetricName"]) == ("AWS/Lambda", "Errors")
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "CompactionFunction"}}]
    assert errors["AlarmName"] == {"Fn::Sub": "${NamePrefix}-compaction-errors"}
    transformer = R["TransformerErrorsAlarm"]["Properties"]
    for key in ("Statistic", "Threshold", "ComparisonOperator", "TreatMissingData", "AlarmActions", "OKActions"):
        assert errors[key] == transformer[key], key
    dlq = R["CompactionDeadLetterAlarm"]["Properties"]
    assert (dlq["Namespace"], dlq["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert dlq["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["CompactionDeadLetterQueue",
                                                                               "QueueName"]}}]
    assert dlq["Threshold"] == 1 and dlq["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


# ------------------------------------------------------------ detections and alerts

ALERT_RESOURCES = {"AlertBus": "AWS::Events::EventBus", "AlertRule": "AWS::Events::Rule",
                   "AlertTopic": "AWS::SNS::Topic", "AlertTopicPolicy": "AWS::SNS::TopicPolicy",
                   "AlertEmailSubscription": "AWS::SNS::Subscription", "AlertDeadLetterQueue": "AWS::SQS::Queue",
                   "AlertDeadLetterQueuePolicy": "AWS::SQS::QueuePolicy",
                   "AlertDeliveryAlarm": "AWS::CloudWatch::Alarm", "AlertDeadLetterAlarm": "AWS::CloudWatch::Alarm",
                   "AlertDeadLetterFailureAlarm": "AWS::CloudWatch::Alarm"}
ALERT_RULE_ARN = "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/${NamePrefix}-alerts/${NamePrefix}-alerts"
PREFIX_OK = ["rules/", "sigma/rules/", "a/", "Rules_2.x/custom-1/"]
PREFIX_BAD = ["rules", "/rules/", "rules//", "rules/*", "./rules/", "rules/../x/", "s3://b/rules/", "rules /"]


def test_alert_parameters():
    p = CENTRAL["Parameters"]
    sev = p["AlertSeverity"]
    assert sev["Type"] == "String" and sev["Default"] == "high"
    assert sev["AllowedValues"] == ["informational", "low", "medium", "high", "critical"]  # Sigma's levels
    assert p["AlertEmail"]["Default"] == "" and p["AlertEmail"]["AllowedPattern"] == p["AlarmEmail"]["AllowedPattern"]
    rules = p["CustomRulesPrefix"]
    assert rules["Type"] == "String" and rules["Default"] == ""
    for ok in ["", *PREFIX_OK]:
        assert re.fullmatch(rules["AllowedPattern"], ok), ok
    for bad in PREFIX_BAD:  # a trailing slash keeps <prefix>* from matching rules-other/...
        assert not re.fullmatch(rules["AllowedPattern"], bad), bad
    assert CENTRAL["Conditions"]["HasAlertEmail"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlertEmail"}, ""]}]}
    assert CENTRAL["Conditions"]["HasCustomRules"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "CustomRulesPrefix"}, ""]}]}
    # the organisation's accounts: empty (the outside-organisation rule off) or 12-digit ids,
    # comma-separated, as AUDITLAKE_ORG_ACCOUNTS takes them
    org = p["OrganizationAccounts"]
    assert org["Type"] == "String" and org["Default"] == ""
    for ok in ("", "111122223333", "111122223333,444455556666,777788889999"):
        assert re.fullmatch(org["AllowedPattern"], ok), ok
    for bad in ("11112222333", "111122223333,", "111122223333, 444455556666", "111122223333;444455556666", "o-abc123"):
        assert not re.fullmatch(org["AllowedPattern"], bad), bad
    assert CENTRAL["Conditions"]["HasOrgAccounts"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "OrganizationAccounts"}, ""]}]}
    groups = CENTRAL["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    (group,) = [g for g in groups if g["Label"]["default"] == "Detections and alerts"]
    assert group["Parameters"] == ["AlertSeverity", "AlertEmail", "CustomRulesPrefix", "OrganizationAccounts"]


def test_alert_resources_exist_and_only_the_email_is_conditional():
    for lid, type_ in ALERT_RESOURCES.items():
        assert R[lid]["Type"] == type_, lid
        assert R[lid].get("Condition") == ("HasAlertEmail" if lid == "AlertEmailSubscription" else None), lid
    sub = R["AlertEmailSubscription"]["Properties"]
    assert sub == {"TopicArn": {"Ref": "AlertTopic"}, "Protocol": "email", "Endpoint": {"Ref": "AlertEmail"}}
    assert R["AlertBus"]["Properties"]["Name"] == {"Fn::Sub": "${NamePrefix}-alerts"}
    out = CENTRAL["Outputs"]
    assert out["AlertBusArn"]["Value"] == {"Fn::GetAtt": ["AlertBus", "Arn"]}
    assert out["AlertTopicArn"]["Value"] == {"Ref": "AlertTopic"}
    assert out["AlertDeadLetterQueueUrl"]["Value"] == {"Ref": "AlertDeadLetterQueue"}
    assert not any("Condition" in out[k] for k in ("AlertBusArn", "AlertTopicArn", "AlertDeadLetterQueueUrl"))


def test_alert_rule_forwards_whole_findings_to_the_topic():
    rule = R["AlertRule"]["Properties"]
    assert rule["EventBusName"] == {"Fn::GetAtt": ["AlertBus", "Name"]}
    assert rule["State"] == "ENABLED"
    assert rule["EventPattern"] == {"source": ["eks-audit-lake"], "detail-type": ["EKS Audit Finding"]}
    # the key policy spells out the rule's ARN from these two names (a GetAtt would be circular)
    assert rule["Name"] == {"Fn::Sub": "${NamePrefix}-alerts"}
    assert subst(ALERT_RULE_ARN, NamePrefix="p") == (
        "arn:<AWS::Partition>:events:<AWS::Region>:<AWS::AccountId>:rule/p-alerts/p-alerts")
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Ref": "AlertTopic"}
    assert "InputTransformer" not in target and "Input" not in target and "InputPath" not in target
    assert "RoleArn" not in target  # SNS targets use the topic policy, not a role
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["AlertDeadLetterQueue", "Arn"]}}
    retry = target["RetryPolicy"]
    assert 60 <= retry["MaximumEventAgeInSeconds"] <= 86400 and 0 <= retry["MaximumRetryAttempts"] <= 185
    q = R["AlertDeadLetterQueue"]["Properties"]
    assert q["KmsMasterKeyId"] == {"Fn::GetAtt": ["LakeKey", "Arn"]}
    assert q["QueueName"] == {"Fn::Sub": "${NamePrefix}-alerts-dlq"} and "FifoQueue" not in q
    assert q["MessageRetentionPeriod"] == 1209600


def _only_statement(policy_resource: str) -> dict:
    (stmt,) = R[policy_resource]["Properties"]["PolicyDocument"]["Statement"]
    return stmt


def test_alert_topic_is_encrypted_and_only_the_rule_publishes():
    topic = R["AlertTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": ["LakeKey", "Arn"]}  # a CMK: alias/aws/sns refuses EventBridge
    assert topic["TopicName"] == {"Fn::Sub": "${NamePrefix}-alerts"}
    assert R["AlertTopicPolicy"]["Properties"]["Topics"] == [{"Ref": "AlertTopic"}]
    stmt = _only_statement("AlertTopicPolicy")
    assert stmt["Effect"] == "Allow" and stmt["Principal"] == {"Service": "events.amazonaws.com"}
    assert stmt["Action"] == "sns:Publish" and stmt["Resource"] == {"Ref": "AlertTopic"}
    assert stmt["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["AlertRule", "Arn"]}}}
    # the dead-letter queue: the same principal, the same rule, one action
    assert R["AlertDeadLetterQueuePolicy"]["Properties"]["Queues"] == [{"Ref": "AlertDeadLetterQueue"}]
    stmt = _only_statement("AlertDeadLetterQueuePolicy")
    assert stmt["Effect"] == "Allow" and stmt["Principal"] == {"Service": "events.amazonaws.com"}
    assert stmt["Action"] == "sqs:SendMessage"
    assert stmt["Resource"] == {"Fn::GetAtt": ["AlertDeadLetterQueue", "Arn"]}
    assert stmt["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["AlertRule", "Arn"]}}}


def test_key_policy_admits_eventbridge_for_the_alert_rule_only():
    stmts = R["LakeKey"]["Properties"]["KeyPolicy"]["Statement"]
    events = [s for s in stmts if "events.amazonaws.com" in json.dumps(s.get("Principal"))]
    assert len(events) == 1
    (stmt,) = events
    assert stmt["Principal"] == {"Service": "events.amazonaws.com"} and stmt["Effect"] == "Allow"
    assert sorted(stmt["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]  # no Encrypt, no key management
    assert stmt["Condition"] == {
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
        "ArnEquals": {"aws:SourceArn": {"Fn::Sub": ALERT_RULE_ARN}},
    }


def test_transformer_puts_events_only_on_the_alert_bus():
    by_sid, _ = statements("TransformerRole")
    put = by_sid["PutAlertEvents"]
    assert put["Effect"] == "Allow" and put["Action"] == "events:PutEvents"
    assert put["Resource"] == {"Fn::GetAtt": ["AlertBus", "Arn"]}  # not the default bus, not '*'
    assert put["Condition"] == {"StringEquals": {"events:source": "eks-audit-lake"}}
    # no other role of the stack may put events anywhere
    for lid, role in of_type(CENTRAL, "AWS::IAM::Role").items():
        if lid != "TransformerRole":
            assert "events:" not in json.dumps(role), lid
    # compaction does not evaluate rules: none of the alert settings
    env = R["CompactionFunction"]["Properties"]["Environment"]["Variables"]
    assert not {"AUDITLAKE_ALERT_BUS", "AUDITLAKE_ALERT_SEVERITY", "AUDITLAKE_RULES", "AUDITLAKE_ORG_ACCOUNTS"} & set(env)


def test_custom_rules_prefix_scoping():
    by_sid, optional = statements("TransformerRole")
    assert optional["ReadCustomRules"] == optional["ListCustomRules"] == "HasCustomRules"
    read = by_sid["ReadCustomRules"]
    assert read["Action"] == "s3:GetObject"
    # exactly <bucket>/<prefix>*, at the bucket root (not under LakePrefix)
    assert read["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:s3:::${LakeBucket}/${CustomRulesPrefix}*"}
    listing = by_sid["ListCustomRules"]
    assert listing["Action"] == "s3:ListBucket" and listing["Resource"] == {"Fn::GetAtt": ["LakeBucket", "Arn"]}
    assert listing["Condition"] == {"StringLike": {"s3:prefix": {"Fn::Sub": "${CustomRulesPrefix}*"}}}
    # no other statement reads the rules prefix or lists without a prefix condition
    for sid, st in by_sid.items():
        if "s3:ListBucket" in as_list(st["Action"]):
            assert "s3:prefix" in json.dumps(st.get("Condition", {})), sid


def test_alert_alarms():
    rule_dims = [{"Name": "EventBusName", "Value": {"Fn::GetAtt": ["AlertBus", "Name"]}},
                 {"Name": "RuleName", "Value": {"Fn::Sub": "${NamePrefix}-alerts"}}]
    failed = R["AlertDeliveryAlarm"]["Properties"]
    assert (failed["Namespace"], failed["MetricName"]) == ("AWS/Events", "FailedInvocations")
    assert failed["Dimensions"] == rule_dims  # a rule on a custom bus: both dimensions
    lost = R["AlertDeadLetterFailureAlarm"]["Properties"]
    assert (lost["Namespace"], lost["MetricName"]) == ("AWS/Events", "InvocationsFailedToBeSentToDlq")
    assert lost["Dimensions"] == rule_dims
    dlq = R["AlertDeadLetterAlarm"]["Properties"]
    assert (dlq["Namespace"], dlq["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert dlq["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["AlertDeadLetterQueue", "QueueName"]}}]
    transformer = R["TransformerErrorsAlarm"]["Properties"]
    for a in (failed, lost, dlq):
        assert a["Threshold"] == 1 and a["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        for key in ("TreatMissingData", "AlarmActions", "OKActions"):
            assert a[key] == transformer[key], key  # operational alarms: the alarm topic, not the alert topic


def test_deploy_guide_covers_the_alert_parameters_and_outputs():
    """Every central parameter has a row in docs/deploy.md; the alert outputs are named there."""
    from infra_support import REPO

    guide = (REPO / "docs" / "deploy.md").read_text()
    assert [p for p in CENTRAL["Parameters"] if f"`{p}`" not in guide] == []
    for name in ("AlertBusArn", "AlertTopicArn", "AlertDeadLetterQueueUrl", "## 11. Alerts and custom rules"):
        assert name in guide, name
    assert not re.search(r"\]\((https?:)?//", guide), "links outside the repository"
