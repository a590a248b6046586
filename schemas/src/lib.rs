//! The lake's tables, defined once.
//!
//! Every column of `eks_audit` and `sts_sessions` is listed here with its logical type.
//! The Arrow schemas the transformer writes, the Athena (Hive) DDL, and the Glue column
//! lists in the CloudFormation template are all rendered from these two lists, so they
//! cannot drift apart: a test keeps the checked-in files under `schemas/athena/` equal
//! to what this crate renders.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

pub mod ddl;
pub mod view;

/// The shipped Sigma rule pack: (file name, YAML) of every `schemas/rules/*.yml`, in
/// name order. Each file's test events are `schemas/rules/tests/<stem>.json`.
pub const SHIPPED_RULES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/rules.rs"));

/// Logical column types. Each maps to exactly one Arrow type and one Hive type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    /// UTF-8 string (`string`).
    Str,
    /// 32-bit signed integer (`int`).
    Int,
    /// INT64 TIMESTAMP(MILLIS, UTC): Athena's `timestamp` only has millisecond precision.
    TimestampMs,
    /// `array<string>`.
    StrList,
    /// `map<string,string>`.
    StrMap,
    /// `map<string,array<string>>` (Kubernetes `user.extra`).
    StrListMap,
    /// `boolean`.
    Bool,
}

/// One column: its name (lowercase snake_case, the contract) and type.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColType,
    pub comment: &'static str,
}

const fn col(name: &'static str, ty: ColType, comment: &'static str) -> Column {
    Column { name, ty, comment }
}

use ColType::*;

/// `eks_audit`: one row per kube-apiserver audit event (DESIGN section 4).
pub const EKS_AUDIT: &[Column] = &[
    // stamps
    col("account_id", Str, "AWS account that owns the log group (stamped by CloudWatch Logs)"),
    col("region", Str, "AWS region of the cluster"),
    col("cluster", Str, "EKS cluster name from the log group (_invalid_ when it is not a valid name)"),
    col("log_group", Str, "CloudWatch Logs log group"),
    col("log_stream", Str, "CloudWatch Logs log stream"),
    col("cwl_event_id", Str, "CloudWatch Logs event id"),
    col("ingest_time", TimestampMs, "when the transformer processed the event"),
    // audit event
    col("audit_id", Str, "auditID"),
    col("stage", Str, "stage"),
    col("level", Str, "level"),
    col("verb", Str, "verb"),
    col("request_uri", Str, "requestURI"),
    col("event_time", TimestampMs, "requestReceivedTimestamp (CloudWatch timestamp when unparseable)"),
    col("stage_time", TimestampMs, "stageTimestamp"),
    col("username", Str, "user.username"),
    col("user_uid", Str, "user.uid"),
    col("user_groups", StrList, "user.groups"),
    col("user_extra", StrListMap, "user.extra"),
    col("impersonated_username", Str, "impersonatedUser.username"),
    col("impersonated_groups", StrList, "impersonatedUser.groups"),
    col("source_ips", StrList, "sourceIPs"),
    col("source_ip", Str, "last entry of sourceIPs: the one a client cannot forge"),
    col("user_agent", Str, "userAgent"),
    col("object_resource", Str, "objectRef.resource"),
    col("object_subresource", Str, "objectRef.subresource"),
    col("object_namespace", Str, "objectRef.namespace"),
    col("object_name", Str, "objectRef.name"),
    col("object_api_group", Str, "objectRef.apiGroup"),
    col("object_api_version", Str, "objectRef.apiVersion"),
    col("response_code", Int, "responseStatus.code"),
    col("response_status", Str, "responseStatus.status"),
    col("response_reason", Str, "responseStatus.reason"),
    col("response_message", Str, "responseStatus.message"),
    col("authz_decision", Str, "annotation authorization.k8s.io/decision"),
    col("authz_reason", Str, "annotation authorization.k8s.io/reason"),
    col("annotations", StrMap, "annotations"),
    col("request_object", Str, "requestObject as raw JSON"),
    col("response_object", Str, "responseObject as raw JSON"),
    // AWS identity as logged by aws-iam-authenticator
    col("aws_access_key_id", Str, "user.extra.accessKeyId"),
    col("aws_arn", Str, "user.extra.arn"),
    col("aws_role_arn", Str, "user.extra.canonicalArn (no IAM path)"),
    col("aws_session_name", Str, "user.extra.sessionName (raw)"),
    col("aws_principal_id", Str, "user.extra.principalId"),
    // attribution
    col("principal_type", Str, "iam_user, saml_user, identity_center_user, web_identity, federated_user, k8s_workload, ec2_instance, aws_service, root, assumed_role, anonymous, k8s_service_account, k8s_system, unknown"),
    col("principal_name", Str, "user name, SAML subject, web identity subject, <namespace>:<service account>, instance id, lambda:<function>, ..."),
    col("principal_arn", Str, "IAM user / root / federated user ARN; identity provider ARN for SAML, web identity and IRSA; cluster ARN for Pod Identity"),
    col("principal_account_id", Str, "account of the originating principal"),
    col("source_identity", Str, "STS source identity carried through the role chain"),
    col("role_chain", StrList, "role ARNs from the first assumed role to the last"),
    col("attribution_method", Str, "access_key, session_name, direct, none"),
    col("attribution_status", Str, "resolved, pending, ambiguous, conflict (the key belongs to a session of another role than the event names), not_applicable"),
    col("principal_cluster", Str, "k8s_workload: the EKS cluster the pod runs in (Pod Identity tags, or the IRSA issuer map)"),
    col("principal_pod", Str, "k8s_workload via Pod Identity: the pod name"),
    col("principal_user_id", Str, "IAM Identity Center user id (userIdentity.onBehalfOf.userId) of the person"),
    // detections
    col("detections", StrList, "ids of the detection rules the event matched at ingest (rows in findings)"),
    // quality
    col("parse_status", Str, "ok, truncated, invalid"),
    col("raw_message", Str, "the CloudWatch message, only when parse_status is not ok"),
];

/// `sts_sessions`: one row per CloudTrail STS call that issues (or failed to issue)
/// temporary credentials.
pub const STS_SESSIONS: &[Column] = &[
    col("event_time", TimestampMs, "eventTime"),
    col("event_id", Str, "eventID"),
    col(
        "shared_event_id",
        Str,
        "sharedEventID (cross-account calls only)",
    ),
    col("request_id", Str, "requestID"),
    col("recipient_account_id", Str, "recipientAccountId"),
    col(
        "event_name",
        Str,
        "AssumeRole, AssumeRoleWithSAML, AssumeRoleWithWebIdentity, GetFederationToken",
    ),
    col("aws_region", Str, "awsRegion"),
    col("source_ip", Str, "sourceIPAddress"),
    col("user_agent", Str, "userAgent"),
    col("error_code", Str, "errorCode (failed calls issue nothing)"),
    col(
        "error_message",
        Str,
        "errorMessage of a failed call (its target role is in role_arn)",
    ),
    col("caller_type", Str, "userIdentity.type"),
    col("caller_arn", Str, "userIdentity.arn"),
    col("caller_principal_id", Str, "userIdentity.principalId"),
    col("caller_account_id", Str, "userIdentity.accountId"),
    col("caller_access_key_id", Str, "userIdentity.accessKeyId"),
    col(
        "caller_user_name",
        Str,
        "userIdentity.userName or sessionIssuer.userName",
    ),
    col(
        "role_arn",
        Str,
        "requestParameters.roleArn (from errorMessage for denied calls)",
    ),
    col(
        "role_session_name",
        Str,
        "requestParameters.roleSessionName (or name for GetFederationToken)",
    ),
    col(
        "source_identity",
        Str,
        "sourceIdentity (request, response or caller session)",
    ),
    col(
        "assumed_role_id",
        Str,
        "responseElements.assumedRoleUser.assumedRoleId",
    ),
    col(
        "assumed_role_arn",
        Str,
        "responseElements.assumedRoleUser.arn (or federatedUser.arn)",
    ),
    col(
        "access_key_id",
        Str,
        "issued responseElements.credentials.accessKeyId",
    ),
    col(
        "expiration",
        TimestampMs,
        "responseElements.credentials.expiration",
    ),
    col("saml_subject", Str, "responseElements.subject"),
    col("saml_provider_arn", Str, "requestParameters.principalArn"),
    col(
        "web_identity_subject",
        Str,
        "responseElements.subjectFromWebIdentityToken",
    ),
    col("web_identity_provider", Str, "responseElements.provider"),
    col(
        "session_tags",
        StrMap,
        "requestParameters.tags (EKS Pod Identity: eks-cluster-name, kubernetes-namespace, kubernetes-service-account, kubernetes-pod-name, ...)",
    ),
    col(
        "on_behalf_of_user_id",
        Str,
        "userIdentity.onBehalfOf.userId (IAM Identity Center user)",
    ),
    col(
        "on_behalf_of_identity_store_arn",
        Str,
        "userIdentity.onBehalfOf.identityStoreArn",
    ),
];

/// `findings`: one row per (detection rule, audit event) that matched at ingest: the
/// rule, the event's identifying and most-asked columns, and its attribution (the
/// person), so that a finding names who did it without a join.
pub const FINDINGS: &[Column] = &[
    col("finding_id", Str, "xxh3-128 of rule_id, log_group, log_stream, cwl_event_id: a retried batch writes the same ids"),
    col("rule_id", Str, "the Sigma rule's id"),
    col("rule_name", Str, "the Sigma rule's name"),
    col("rule_title", Str, "the Sigma rule's title"),
    col("severity", Str, "informational, low, medium, high, critical (the rule's level)"),
    col("mitre_techniques", StrList, "MITRE ATT&CK technique ids from the rule's tags"),
    col("event_time", TimestampMs, "the audit event's requestReceivedTimestamp"),
    col("ingest_time", TimestampMs, "when the transformer processed the event"),
    col("account_id", Str, "AWS account that owns the log group"),
    col("region", Str, "AWS region of the cluster"),
    col("cluster", Str, "EKS cluster name"),
    col("log_group", Str, "CloudWatch Logs log group"),
    col("log_stream", Str, "CloudWatch Logs log stream"),
    col("cwl_event_id", Str, "CloudWatch Logs event id (with log_group and log_stream: the event's row)"),
    col("source_table", Str, "where the event's row is: eks_audit (Kubernetes audit) or eks_api_events (CloudTrail EKS API call)"),
    col("event_name", Str, "eks_api_events: the CloudTrail eventName (CreateAccessEntry, UpdateClusterConfig, ...)"),
    col("target_principal_arn", Str, "eks_api_events: the principal the call grants or changes access for"),
    col("audit_id", Str, "auditID (eks_api_events: the CloudTrail eventID)"),
    col("stage", Str, "stage"),
    col("verb", Str, "verb"),
    col("request_uri", Str, "requestURI"),
    col("object_resource", Str, "objectRef.resource"),
    col("object_subresource", Str, "objectRef.subresource"),
    col("object_namespace", Str, "objectRef.namespace"),
    col("object_name", Str, "objectRef.name"),
    col("response_code", Int, "responseStatus.code"),
    col("authz_decision", Str, "annotation authorization.k8s.io/decision"),
    col("source_ip", Str, "last entry of sourceIPs"),
    col("user_agent", Str, "userAgent"),
    col("username", Str, "user.username (for an assumed role: the session, not the person; eks_api_events: the caller ARN)"),
    col("user_groups", StrList, "user.groups"),
    col("impersonated_username", Str, "impersonatedUser.username"),
    col("aws_access_key_id", Str, "user.extra.accessKeyId (eks_api_events: userIdentity.accessKeyId)"),
    col("aws_arn", Str, "user.extra.arn (eks_api_events: userIdentity.arn)"),
    col("aws_role_arn", Str, "user.extra.canonicalArn, no IAM path (eks_api_events: the session issuer's role ARN)"),
    col("aws_session_name", Str, "user.extra.sessionName, raw (eks_api_events: the assumed-role session name)"),
    col("principal_type", Str, "as eks_audit.principal_type"),
    col("principal_name", Str, "the person or workload behind the request (as eks_audit)"),
    col("principal_arn", Str, "as eks_audit.principal_arn"),
    col("principal_account_id", Str, "account of the originating principal"),
    col("source_identity", Str, "STS source identity carried through the role chain"),
    col("role_chain", StrList, "role ARNs from the first assumed role to the last"),
    col("attribution_method", Str, "access_key, session_name, direct, none"),
    col("attribution_status", Str, "resolved, pending, ambiguous, conflict, not_applicable"),
    col("principal_cluster", Str, "k8s_workload: the EKS cluster the pod runs in"),
    col("principal_pod", Str, "k8s_workload via Pod Identity: the pod name"),
    col("principal_user_id", Str, "IAM Identity Center user id of the person"),
];

/// `eks_api_events`: one row per CloudTrail call of the EKS API that changes who may act
/// in a cluster or what it logs (access entries and policies, Pod Identity
/// associations, identity providers, cluster config, create and delete), failed calls
/// included, read only from trusted trails. The caller is attributed like an audit
/// event's user: its access key -> session -> origin.
pub const EKS_API_EVENTS: &[Column] = &[
    // stamps
    col("account_id", Str, "recipientAccountId: the account of the cluster (the trail is trusted, so this is CloudTrail's word)"),
    col("region", Str, "awsRegion"),
    col("cluster", Str, "the cluster the call names (requestParameters.clusterName or name; _invalid_ when it is not a valid EKS name)"),
    col("log_group", Str, "CloudWatch Logs log group of the trail"),
    col("log_stream", Str, "CloudWatch Logs log stream"),
    col("cwl_event_id", Str, "CloudWatch Logs event id"),
    col("ingest_time", TimestampMs, "when the transformer processed the event"),
    // the call
    col("event_time", TimestampMs, "eventTime"),
    col("event_id", Str, "eventID"),
    col("event_name", Str, "eventName: CreateAccessEntry, AssociateAccessPolicy, UpdateClusterConfig, ..."),
    col("event_source", Str, "eventSource (eks.amazonaws.com)"),
    col("event_type", Str, "eventType (AwsApiCall)"),
    col("request_id", Str, "requestID"),
    col("source_ip", Str, "sourceIPAddress"),
    col("user_agent", Str, "userAgent"),
    col("error_code", Str, "errorCode (NULL: the call succeeded)"),
    col("error_message", Str, "errorMessage"),
    // the caller, as logged
    col("caller_type", Str, "userIdentity.type"),
    col("caller_arn", Str, "userIdentity.arn"),
    col("caller_account_id", Str, "userIdentity.accountId"),
    col("caller_principal_id", Str, "userIdentity.principalId"),
    col("caller_access_key_id", Str, "userIdentity.accessKeyId"),
    col("caller_user_name", Str, "userIdentity.userName, else sessionContext.sessionIssuer.userName, else invokedBy"),
    col("caller_role_arn", Str, "userIdentity.sessionContext.sessionIssuer.arn (the role of an assumed-role caller)"),
    col("caller_session_name", Str, "the session name of an assumed-role caller (from userIdentity.arn)"),
    // attribution of the caller
    col("principal_type", Str, "as eks_audit.principal_type"),
    col("principal_name", Str, "the person or workload behind the call (as eks_audit)"),
    col("principal_arn", Str, "as eks_audit.principal_arn"),
    col("principal_account_id", Str, "account of the originating principal"),
    col("source_identity", Str, "STS source identity carried through the role chain"),
    col("role_chain", StrList, "role ARNs from the first assumed role to the last"),
    col("attribution_method", Str, "access_key, direct, none"),
    col("attribution_status", Str, "resolved, pending, ambiguous, conflict, not_applicable"),
    col("principal_cluster", Str, "k8s_workload: the EKS cluster the pod runs in"),
    col("principal_pod", Str, "k8s_workload via Pod Identity: the pod name"),
    col("principal_user_id", Str, "IAM Identity Center user id of the person"),
    // what the call grants or changes, without JSON
    col("target_principal_arn", Str, "the access entry's principalArn (percent-decoded), or the role a Pod Identity association or an add-on gives its pods"),
    col("target_principal_account_id", Str, "the account of target_principal_arn"),
    col("access_entry_type", Str, "requestParameters.type (STANDARD, EC2_LINUX, ...)"),
    col("access_entry_username", Str, "requestParameters.username: the Kubernetes user the entry maps to"),
    col("kubernetes_groups", StrList, "requestParameters.kubernetesGroups"),
    col("access_policy_arn", Str, "requestParameters.policyArn, percent-decoded (.../cluster-access-policy/AmazonEKSClusterAdminPolicy, ...)"),
    col("access_scope_type", Str, "requestParameters.accessScope.type (cluster, namespace)"),
    col("access_scope_namespaces", StrList, "requestParameters.accessScope.namespaces"),
    col("pod_identity_namespace", Str, "requestParameters.namespace"),
    col("pod_identity_service_account", Str, "requestParameters.serviceAccount"),
    col("association_id", Str, "the Pod Identity association id (request or response)"),
    col("audit_logging_enabled", Bool, "what the call sets the audit log to (logging.clusterLogging); NULL when the call does not touch it"),
    col("authenticator_logging_enabled", Bool, "the same for the authenticator log"),
    col("endpoint_public_access", Bool, "resourcesVpcConfig.endpointPublicAccess; NULL when untouched"),
    col("public_access_cidrs", StrList, "resourcesVpcConfig.publicAccessCidrs"),
    col("authentication_mode", Str, "accessConfig.authenticationMode (CONFIG_MAP, API_AND_CONFIG_MAP, API)"),
    col("bootstrap_cluster_creator_admin", Bool, "CreateCluster: accessConfig.bootstrapClusterCreatorAdminPermissions (the creator becomes cluster admin; EKS defaults to true)"),
    col("identity_provider_config_name", Str, "oidc.identityProviderConfigName or identityProviderConfig.name"),
    col("identity_provider_issuer_url", Str, "oidc.issuerUrl"),
    // raw
    col("request_parameters", Str, "requestParameters as raw JSON"),
    col("response_elements", Str, "responseElements as raw JSON"),
    // detections
    col("detections", StrList, "ids of the detection rules the call matched at ingest (rows in findings)"),
];

/// The attribution columns of `eks_audit`: what ingest writes from the resolver, what
/// the view fills late and what compaction writes in.
pub const ATTRIBUTION: [&str; 11] = [
    "principal_type",
    "principal_name",
    "principal_arn",
    "principal_account_id",
    "source_identity",
    "role_chain",
    "attribution_method",
    "attribution_status",
    "principal_cluster",
    "principal_pod",
    "principal_user_id",
];

/// A lake table: its name, folder under the lake root, and columns.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    pub prefix: &'static str,
    pub columns: &'static [Column],
    /// Plain (non-Hive) folders below `dt=`, for the `storage.location.template` comment.
    pub subfolders: &'static str,
}

pub const EKS_AUDIT_TABLE: Table = Table {
    name: "eks_audit",
    prefix: "eks_audit",
    columns: EKS_AUDIT,
    subfolders: "<account_id>/<cluster>/",
};

pub const STS_SESSIONS_TABLE: Table = Table {
    name: "sts_sessions",
    prefix: "sts_sessions",
    columns: STS_SESSIONS,
    subfolders: "<account_id>/",
};

pub const FINDINGS_TABLE: Table = Table {
    name: "findings",
    prefix: "findings",
    columns: FINDINGS,
    subfolders: "<account_id>/",
};

pub const EKS_API_EVENTS_TABLE: Table = Table {
    name: "eks_api_events",
    prefix: "eks_api_events",
    columns: EKS_API_EVENTS,
    subfolders: "<account_id>/",
};

pub const TABLES: [Table; 4] = [
    EKS_AUDIT_TABLE,
    STS_SESSIONS_TABLE,
    FINDINGS_TABLE,
    EKS_API_EVENTS_TABLE,
];

/// Child field name of lists, as the Parquet LIST spec names it.
pub const LIST_ITEM: &str = "element";

/// The Arrow list type used for `array<string>` columns.
pub fn str_list_type() -> DataType {
    DataType::List(Arc::new(Field::new(LIST_ITEM, DataType::Utf8, true)))
}

fn map_type(value: DataType) -> DataType {
    let entries = Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", value, true),
    ]);
    DataType::Map(
        Arc::new(Field::new("key_value", DataType::Struct(entries), false)),
        false,
    )
}

impl ColType {
    pub fn arrow(self) -> DataType {
        match self {
            Str => DataType::Utf8,
            Int => DataType::Int32,
            TimestampMs => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            StrList => str_list_type(),
            StrMap => map_type(DataType::Utf8),
            StrListMap => map_type(str_list_type()),
            Bool => DataType::Boolean,
        }
    }

    pub fn hive(self) -> &'static str {
        match self {
            Str => "string",
            Int => "int",
            TimestampMs => "timestamp",
            StrList => "array<string>",
            StrMap => "map<string,string>",
            StrListMap => "map<string,array<string>>",
            Bool => "boolean",
        }
    }
}

/// The Arrow schema for a column list. Every column is nullable: a kept unparseable row
/// has almost nothing.
pub fn arrow_schema(columns: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(c.name, c.ty.arrow(), true))
            .collect::<Vec<_>>(),
    ))
}

/// Position of `name` in `columns`, computed at compile time where used in a `const`:
/// a builder that names a column the table does not have fails the build.
pub const fn position(columns: &[Column], name: &str) -> usize {
    let mut i = 0;
    while i < columns.len() {
        if const_str_eq(columns[i].name, name) {
            return i;
        }
        i += 1;
    }
    panic!("no such column")
}

/// [`position`] of each of `names`, in their order (at compile time).
pub const fn positions<const N: usize>(columns: &[Column], names: [&str; N]) -> [usize; N] {
    let mut out = [0; N];
    let mut i = 0;
    while i < N {
        out[i] = position(columns, names[i]);
        i += 1;
    }
    out
}

const fn const_str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Index of a column by name (for builders that fill columns by position).
pub fn column_index(columns: &[Column], name: &str) -> Option<usize> {
    columns.iter().position(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_snake_case_and_unique() {
        for t in TABLES {
            let mut seen = std::collections::HashSet::new();
            for c in t.columns {
                assert!(
                    c.name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                    "{}",
                    c.name
                );
                assert!(seen.insert(c.name), "duplicate column {}", c.name);
                assert_ne!(c.name, "dt", "dt is the partition key, never a file column");
            }
        }
    }

    #[test]
    fn timestamps_are_millis_utc() {
        let s = arrow_schema(EKS_AUDIT);
        let f = s.field_with_name("event_time").unwrap();
        assert_eq!(
            f.data_type(),
            &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
        );
        assert_eq!(s.fields().len(), EKS_AUDIT.len());
    }
}
