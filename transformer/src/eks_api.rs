//! Stage 2b, EKS API calls: a trusted trail's CloudTrail record of an `eks.amazonaws.com`
//! call -> one `eks_api_events` row.
//!
//! Access entries, access policies, Pod Identity associations, identity providers and
//! the cluster config decide who may act in a cluster (and whether it keeps an audit
//! log) without a single Kubernetes audit event. The org trail already logs them as
//! management events; the CloudTrail feed's filter passes them (infra/cloudtrail-feed.yaml).
//! They are few (a handful per cluster per day), so a row owns its strings.
//!
//! Only records of trusted trails reach this stage (`extract` checks the envelope's
//! `owner` and `logGroup` first): a member account cannot write into the org trail's
//! log group, so `recipientAccountId` is CloudTrail's word. The caller's request
//! parameters are still the caller's: names are validated before use, and the typed
//! fields are best effort (a parameter of an unexpected type leaves them NULL; the raw
//! JSON is always kept).
//! Docs: <https://docs.aws.amazon.com/eks/latest/userguide/logging-using-cloudtrail.html>,
//! <https://docs.aws.amazon.com/eks/latest/APIReference/API_Operations.html>

use serde::Deserialize;
use serde_json::value::RawValue;

use resolver::cloudtrail::UserIdentity;
use resolver::identity::{AwsExtra, Identity};

use crate::extract::INVALID;

/// `eventSource` of the EKS API.
pub const EVENT_SOURCE: &str = "eks.amazonaws.com";

/// The calls the feed passes (infra/cloudtrail-feed.yaml's default filter): every call
/// that grants, changes or removes access to a cluster, or changes what it logs or who
/// can reach its endpoint. Other EKS calls a widened filter passes are kept as rows too.
pub const ACCESS_CALLS: &[&str] = &[
    "CreateAccessEntry",
    "UpdateAccessEntry",
    "DeleteAccessEntry",
    "AssociateAccessPolicy",
    "DisassociateAccessPolicy",
    "UpdateClusterConfig",
    "CreatePodIdentityAssociation",
    "UpdatePodIdentityAssociation",
    "DeletePodIdentityAssociation",
    "CreateCluster",
    "DeleteCluster",
    "AssociateIdentityProviderConfig",
    "DisassociateIdentityProviderConfig",
    // an add-on's pods get an IAM role without a CreatePodIdentityAssociation call
    "CreateAddon",
    "UpdateAddon",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EksApiError {
    #[error("not a CloudTrail event: {0}")]
    NotJson(String),
    #[error("EKS API event {event_id}: {what}")]
    Invalid {
        event_id: String,
        what: &'static str,
    },
}

/// The caller, as CloudTrail logs it (`userIdentity`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub kind: Option<String>,
    pub arn: Option<String>,
    pub account_id: Option<String>,
    pub principal_id: Option<String>,
    pub access_key_id: Option<String>,
    /// `userName`, else the session issuer's, else `invokedBy`.
    pub user_name: Option<String>,
    /// `sessionContext.sessionIssuer.arn`: the role of an assumed-role caller.
    pub role_arn: Option<String>,
    /// The session name of an assumed-role caller (last part of its ARN).
    pub session_name: Option<String>,
}

/// What a call grants or changes, from its parameters (and response), without JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub principal_arn: Option<String>,
    pub principal_account_id: Option<String>,
    pub access_entry_type: Option<String>,
    pub access_entry_username: Option<String>,
    pub kubernetes_groups: Option<Vec<String>>,
    pub access_policy_arn: Option<String>,
    pub access_scope_type: Option<String>,
    pub access_scope_namespaces: Option<Vec<String>>,
    pub pod_identity_namespace: Option<String>,
    pub pod_identity_service_account: Option<String>,
    pub association_id: Option<String>,
    pub audit_logging_enabled: Option<bool>,
    pub authenticator_logging_enabled: Option<bool>,
    pub endpoint_public_access: Option<bool>,
    pub public_access_cidrs: Option<Vec<String>>,
    pub authentication_mode: Option<String>,
    pub bootstrap_cluster_creator_admin: Option<bool>,
    pub identity_provider_config_name: Option<String>,
    pub identity_provider_issuer_url: Option<String>,
}

/// One EKS API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiEvent {
    pub event_ms: i64,
    pub event_id: String,
    pub event_name: String,
    pub event_source: String,
    pub event_type: Option<String>,
    pub request_id: Option<String>,
    /// `recipientAccountId` (the cluster's account).
    pub account_id: Option<String>,
    pub region: Option<String>,
    /// The cluster the call names; [`INVALID`] when it is not a valid EKS name.
    pub cluster: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub caller: Caller,
    pub target: Target,
    pub request_parameters: Option<String>,
    pub response_elements: Option<String>,
}

impl ApiEvent {
    /// The account folder of the row: the recipient account, or [`INVALID`].
    pub fn account_folder(&self) -> &str {
        self.account_id
            .as_deref()
            .filter(|a| resolver::arn::is_account_id(a))
            .unwrap_or(INVALID)
    }

    /// The caller as an identity to attribute, exactly as an audit event's
    /// aws-iam-authenticator user: an access key resolves through its session to the
    /// origin, an IAM user or root is direct, anything else is not attributable.
    pub fn identity(&self) -> Identity<'_> {
        let c = &self.caller;
        let extra = AwsExtra {
            access_key_id: c.access_key_id.as_deref(),
            arn: c.arn.as_deref(),
            canonical_arn: c.role_arn.as_deref(),
            session_name: c.session_name.as_deref(),
            principal_id: c.principal_id.as_deref(),
        };
        match c.arn.as_deref() {
            Some(arn) => resolver::classify(Some(arn), false, &extra, None),
            None => Identity::Unknown,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record<'a> {
    event_time: Option<String>,
    event_source: Option<String>,
    event_name: Option<String>,
    event_type: Option<String>,
    aws_region: Option<String>,
    #[serde(rename = "sourceIPAddress")]
    source_ip_address: Option<String>,
    user_agent: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
    #[serde(rename = "requestID")]
    request_id: Option<String>,
    #[serde(rename = "eventID")]
    event_id: Option<String>,
    recipient_account_id: Option<String>,
    read_only: Option<bool>,
    user_identity: Option<UserIdentity>,
    #[serde(borrow)]
    request_parameters: Option<&'a RawValue>,
    #[serde(borrow)]
    response_elements: Option<&'a RawValue>,
}

/// The request members of the access and config calls (EKS API reference, request
/// syntax; CloudTrail logs the URI members, `name` / `clusterName`, with the body).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Params {
    #[serde(deserialize_with = "lenient")]
    cluster_name: Option<String>,
    #[serde(deserialize_with = "lenient")]
    name: Option<String>,
    #[serde(deserialize_with = "lenient")]
    principal_arn: Option<String>,
    #[serde(deserialize_with = "lenient")]
    role_arn: Option<String>,
    #[serde(deserialize_with = "lenient")]
    kubernetes_groups: Option<Vec<String>>,
    #[serde(rename = "type", deserialize_with = "lenient")]
    kind: Option<String>,
    #[serde(deserialize_with = "lenient")]
    username: Option<String>,
    #[serde(deserialize_with = "lenient")]
    policy_arn: Option<String>,
    #[serde(deserialize_with = "lenient")]
    access_scope: Option<AccessScope>,
    #[serde(deserialize_with = "lenient")]
    namespace: Option<String>,
    #[serde(deserialize_with = "lenient")]
    service_account: Option<String>,
    #[serde(deserialize_with = "lenient")]
    association_id: Option<String>,
    #[serde(deserialize_with = "lenient")]
    logging: Option<Logging>,
    #[serde(deserialize_with = "lenient")]
    resources_vpc_config: Option<VpcConfig>,
    #[serde(deserialize_with = "lenient")]
    access_config: Option<AccessConfig>,
    #[serde(deserialize_with = "lenient")]
    oidc: Option<Oidc>,
    #[serde(deserialize_with = "lenient")]
    identity_provider_config: Option<IdpRef>,
    /// CreateAddon / UpdateAddon: the IRSA role of the add-on's service account.
    #[serde(deserialize_with = "lenient")]
    service_account_role_arn: Option<String>,
    /// CreateAddon / UpdateAddon: Pod Identity associations made with the add-on.
    #[serde(deserialize_with = "lenient")]
    pod_identity_associations: Option<Vec<AddonPodIdentity>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AddonPodIdentity {
    #[serde(deserialize_with = "lenient")]
    service_account: Option<String>,
    #[serde(deserialize_with = "lenient")]
    role_arn: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AccessScope {
    #[serde(rename = "type", deserialize_with = "lenient")]
    kind: Option<String>,
    #[serde(deserialize_with = "lenient")]
    namespaces: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Logging {
    #[serde(deserialize_with = "lenient")]
    cluster_logging: Option<Vec<LogSetup>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct LogSetup {
    #[serde(deserialize_with = "lenient")]
    types: Option<Vec<String>>,
    #[serde(deserialize_with = "lenient")]
    enabled: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct VpcConfig {
    #[serde(deserialize_with = "lenient")]
    endpoint_public_access: Option<bool>,
    #[serde(deserialize_with = "lenient")]
    public_access_cidrs: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AccessConfig {
    #[serde(deserialize_with = "lenient")]
    authentication_mode: Option<String>,
    #[serde(deserialize_with = "lenient")]
    bootstrap_cluster_creator_admin_permissions: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Oidc {
    #[serde(deserialize_with = "lenient")]
    identity_provider_config_name: Option<String>,
    #[serde(deserialize_with = "lenient")]
    issuer_url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct IdpRef {
    #[serde(deserialize_with = "lenient")]
    name: Option<String>,
}

/// The response members used when the request lacks them (a Pod Identity
/// association's role on delete, an association id on create).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Elements {
    #[serde(deserialize_with = "lenient")]
    association: Option<Association>,
    /// AssociateAccessPolicy answers with the principal unencoded.
    #[serde(deserialize_with = "lenient")]
    principal_arn: Option<String>,
    #[serde(deserialize_with = "lenient")]
    access_entry: Option<AccessEntry>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AccessEntry {
    #[serde(deserialize_with = "lenient")]
    principal_arn: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Association {
    #[serde(deserialize_with = "lenient")]
    role_arn: Option<String>,
    #[serde(deserialize_with = "lenient")]
    association_id: Option<String>,
    #[serde(deserialize_with = "lenient")]
    namespace: Option<String>,
    #[serde(deserialize_with = "lenient")]
    service_account: Option<String>,
}

/// A member of an unexpected type is no value (the raw JSON keeps it), and leaves the
/// call's other members readable.
fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let raw: Box<RawValue> = Deserialize::deserialize(d)?;
    Ok(serde_json::from_str(raw.get()).ok())
}

/// Parse one bare CloudTrail event: `Ok(None)` when it is not an EKS API call that
/// changes something (read calls, `readOnly: true`, Describe and List, are not rows
/// even if a widened filter passes them: they grant nothing).
pub fn parse(json: &str) -> Result<Option<ApiEvent>, EksApiError> {
    let r: Record<'_> =
        serde_json::from_str(json).map_err(|e| EksApiError::NotJson(e.to_string()))?;
    // EKS's read calls are Describe*, List* (and none other): read-only even when a
    // record lacks the `readOnly` flag
    let reads = |n: &str| n.starts_with("Describe") || n.starts_with("List");
    if r.event_source.as_deref() != Some(EVENT_SOURCE)
        || r.read_only == Some(true)
        || r.event_name.as_deref().is_some_and(reads)
    {
        return Ok(None);
    }
    let event_id = r
        .event_id
        .filter(|s| !s.is_empty())
        .ok_or(EksApiError::Invalid {
            event_id: String::new(),
            what: "missing eventID",
        })?;
    let invalid = |what| EksApiError::Invalid {
        event_id: event_id.clone(),
        what,
    };
    let event_name = r
        .event_name
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("missing eventName"))?;
    let event_ms = r
        .event_time
        .as_deref()
        .and_then(resolver::time::parse_rfc3339_ms)
        .ok_or_else(|| invalid("missing or malformed eventTime"))?;

    let raw = |v: Option<&RawValue>| {
        v.map(RawValue::get)
            // bounded by the CloudWatch Logs event (256 KB) and the batch budget
            .filter(|s| *s != "null")
            .map(str::to_owned)
    };
    // typed fields are best effort: one member of an unexpected type leaves them all NULL
    let params: Params = r
        .request_parameters
        .and_then(|v| serde_json::from_str(v.get()).ok())
        .unwrap_or_default();
    let elements: Elements = r
        .response_elements
        .and_then(|v| serde_json::from_str(v.get()).ok())
        .unwrap_or_default();
    let caller = caller(r.user_identity);
    // CloudTrail logs the URI members (`/clusters/{name}/access-entries/{principalArn}`)
    // as sent, percent-encoded
    let cluster = params
        .cluster_name
        .as_deref()
        .or(params.name.as_deref())
        .map(percent_decoded)
        .map(|c| {
            if resolver::arn::is_cluster_name(&c) {
                c
            } else {
                INVALID.to_owned()
            }
        });
    let target = target(&event_name, params, elements);
    Ok(Some(ApiEvent {
        event_ms,
        event_id,
        event_name,
        event_source: EVENT_SOURCE.to_owned(),
        event_type: r.event_type,
        request_id: r.request_id,
        account_id: r.recipient_account_id,
        region: r.aws_region,
        cluster,
        source_ip: r.source_ip_address,
        user_agent: r.user_agent,
        error_code: r.error_code,
        error_message: r.error_message,
        caller,
        target,
        request_parameters: raw(r.request_parameters),
        response_elements: raw(r.response_elements),
    }))
}

fn caller(u: Option<UserIdentity>) -> Caller {
    let Some(u) = u else {
        return Caller::default();
    };
    let (role_arn, issuer_name) = match u.session_context.and_then(|c| c.session_issuer) {
        Some(i) => (i.arn, i.user_name),
        None => (None, None),
    };
    let session_name = u
        .arn
        .as_deref()
        .and_then(|a| match resolver::arn::principal(a) {
            Some(resolver::arn::Principal::AssumedRole { session, .. }) => Some(session.to_owned()),
            _ => None,
        });
    Caller {
        kind: u.kind,
        arn: u.arn,
        account_id: u.account_id,
        principal_id: u.principal_id,
        access_key_id: u.access_key_id.filter(|k| !k.is_empty()),
        user_name: u.user_name.or(issuer_name).or(u.invoked_by),
        role_arn,
        session_name,
    }
}

fn target(event_name: &str, p: Params, e: Elements) -> Target {
    let mut assoc = e.association.unwrap_or_default();
    let pod_identity = event_name.ends_with("PodIdentityAssociation");
    let addon = event_name.ends_with("Addon");
    if addon {
        // the first association the add-on makes (one per service account, usually one),
        // else its IRSA role
        let first = p
            .pod_identity_associations
            .into_iter()
            .flatten()
            .next()
            .unwrap_or_default();
        assoc.role_arn = first.role_arn.or(p.service_account_role_arn);
        assoc.service_account = first.service_account;
    }
    // a Pod Identity association grants its role to a service account; an access
    // entry (and its policies) grants access to its principal. CreateCluster's
    // `roleArn` is the cluster's service role, granted nothing in the cluster.
    let principal_arn = if pod_identity || addon {
        p.role_arn.or(assoc.role_arn.take())
    } else {
        e.principal_arn
            .or(e.access_entry.and_then(|a| a.principal_arn))
            .or(p.principal_arn.as_deref().map(percent_decoded))
    };
    let principal_account_id = principal_arn
        .as_deref()
        .and_then(|a| a.split(':').nth(4))
        .filter(|a| resolver::arn::is_account_id(a))
        .map(str::to_owned);
    // the last setting that names a log type wins, as in the EKS API
    let (mut audit, mut authenticator) = (None, None);
    for s in p
        .logging
        .and_then(|l| l.cluster_logging)
        .unwrap_or_default()
    {
        let Some(enabled) = s.enabled else { continue };
        for t in s.types.unwrap_or_default() {
            match t.as_str() {
                "audit" => audit = Some(enabled),
                "authenticator" => authenticator = Some(enabled),
                _ => {}
            }
        }
    }
    let vpc = p.resources_vpc_config.unwrap_or_default();
    let access = p.access_config.unwrap_or_default();
    let scope = p.access_scope.unwrap_or_default();
    let (kind, username, groups) = if event_name.ends_with("AccessEntry") {
        (p.kind, p.username, p.kubernetes_groups)
    } else {
        (None, None, None)
    };
    Target {
        principal_arn,
        principal_account_id,
        access_entry_type: kind,
        access_entry_username: username,
        kubernetes_groups: groups,
        access_policy_arn: p.policy_arn.as_deref().map(percent_decoded),
        access_scope_type: scope.kind,
        access_scope_namespaces: scope.namespaces,
        pod_identity_namespace: p.namespace.or(assoc.namespace),
        pod_identity_service_account: p.service_account.or(assoc.service_account),
        association_id: p
            .association_id
            .as_deref()
            .map(percent_decoded)
            .or(assoc.association_id),
        audit_logging_enabled: audit,
        authenticator_logging_enabled: authenticator,
        endpoint_public_access: vpc.endpoint_public_access,
        public_access_cidrs: vpc.public_access_cidrs,
        authentication_mode: access.authentication_mode,
        bootstrap_cluster_creator_admin: access.bootstrap_cluster_creator_admin_permissions,
        identity_provider_config_name: p
            .oidc
            .as_ref()
            .and_then(|o| o.identity_provider_config_name.clone())
            .or(p.identity_provider_config.and_then(|i| i.name)),
        identity_provider_issuer_url: p.oidc.and_then(|o| o.issuer_url),
    }
}

/// `s` with `%XX` escapes decoded (a URI member as CloudTrail logs it), or `s` itself
/// when it holds none or decodes to something that is not UTF-8.
fn percent_decoded(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).and_then(|&c| hex(c)),
            b.get(i + 2).and_then(|&c| hex(c)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    const ASSOCIATE: &str = r#"{"eventVersion":"1.09","userIdentity":{"type":"AssumedRole","principalId":"AROAEXAMPLE:alice@example.com","arn":"arn:aws:sts::111122223333:assumed-role/eks-admin/alice@example.com","accountId":"111122223333","accessKeyId":"ASIAALICE0000001","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROAEXAMPLE","arn":"arn:aws:iam::111122223333:role/eks-admin","accountId":"111122223333","userName":"eks-admin"}}},"eventTime":"2026-11-20T10:00:00Z","eventSource":"eks.amazonaws.com","eventName":"AssociateAccessPolicy","awsRegion":"eu-west-1","sourceIPAddress":"198.51.100.7","userAgent":"aws-cli/2.15","requestParameters":{"clusterName":"prod-east","principalArn":"arn:aws:iam::444455556666:role/backdoor","policyArn":"arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy","accessScope":{"type":"cluster","namespaces":[]}},"responseElements":{"clusterName":"prod-east"},"requestID":"r1","eventID":"e1","readOnly":false,"eventType":"AwsApiCall","recipientAccountId":"111122223333"}"#;

    #[test]
    fn access_policy_association_is_typed_and_its_caller_has_a_key() {
        let e = parse(ASSOCIATE).unwrap().unwrap();
        assert_eq!(e.event_name, "AssociateAccessPolicy");
        assert_eq!(e.cluster.as_deref(), Some("prod-east"));
        assert_eq!(e.account_folder(), "111122223333");
        assert_eq!(
            e.target.principal_arn.as_deref(),
            Some("arn:aws:iam::444455556666:role/backdoor")
        );
        assert_eq!(
            e.target.principal_account_id.as_deref(),
            Some("444455556666")
        );
        assert!(e
            .target
            .access_policy_arn
            .as_deref()
            .unwrap()
            .ends_with("/AmazonEKSClusterAdminPolicy"));
        assert_eq!(e.target.access_scope_type.as_deref(), Some("cluster"));
        assert_eq!(e.target.access_scope_namespaces, Some(vec![]));
        assert_eq!(e.caller.session_name.as_deref(), Some("alice@example.com"));
        assert_eq!(e.caller.user_name.as_deref(), Some("eks-admin"));
        assert!(e
            .request_parameters
            .as_deref()
            .unwrap()
            .contains("backdoor"));
        match e.identity() {
            Identity::AccessKey { key, .. } => assert_eq!(key, Cow::Borrowed("ASIAALICE0000001")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn logging_switches_and_endpoint_are_read_only_when_the_call_sets_them() {
        let off = r#"{"eventSource":"eks.amazonaws.com","eventName":"UpdateClusterConfig","eventID":"e2","eventTime":"2026-11-20T10:05:00Z","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/mallory","accountId":"111122223333","accessKeyId":"AKIAMALLORY","userName":"mallory"},"requestParameters":{"name":"prod-east","logging":{"clusterLogging":[{"types":["api","audit"],"enabled":false},{"types":["authenticator"],"enabled":true}]}},"responseElements":null}"#;
        let e = parse(off).unwrap().unwrap();
        assert_eq!(e.target.audit_logging_enabled, Some(false));
        assert_eq!(e.target.authenticator_logging_enabled, Some(true));
        assert_eq!(e.target.endpoint_public_access, None);
        assert_eq!(e.response_elements, None);
        assert_eq!(e.account_folder(), INVALID, "no recipientAccountId");
        assert!(matches!(e.identity(), Identity::Direct { .. }));
        let public = r#"{"eventSource":"eks.amazonaws.com","eventName":"UpdateClusterConfig","eventID":"e3","eventTime":"2026-11-20T10:05:00Z","requestParameters":{"name":"prod-east","resourcesVpcConfig":{"endpointPublicAccess":true,"publicAccessCidrs":["0.0.0.0/0"]}}}"#;
        let e = parse(public).unwrap().unwrap();
        assert_eq!(e.target.audit_logging_enabled, None);
        assert_eq!(e.target.endpoint_public_access, Some(true));
        assert_eq!(
            e.target.public_access_cidrs,
            Some(vec!["0.0.0.0/0".to_string()])
        );
        assert_eq!(e.identity(), Identity::Unknown);
    }

    #[test]
    fn uri_members_are_percent_decoded() {
        let del = r#"{"eventSource":"eks.amazonaws.com","eventName":"DisassociateAccessPolicy","eventID":"e7","eventTime":"2026-11-20T10:05:00Z","requestParameters":{"name":"prod-east","principalArn":"arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Fops","policyArn":"arn%3Aaws%3Aeks%3A%3Aaws%3Acluster-access-policy%2FAmazonEKSClusterAdminPolicy"},"responseElements":null}"#;
        let e = parse(del).unwrap().unwrap();
        assert_eq!(e.cluster.as_deref(), Some("prod-east"));
        assert_eq!(
            e.target.principal_arn.as_deref(),
            Some("arn:aws:iam::111122223333:role/ops")
        );
        assert_eq!(
            e.target.access_policy_arn.as_deref(),
            Some("arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy")
        );
        assert_eq!(
            e.target.principal_account_id.as_deref(),
            Some("111122223333")
        );
        assert_eq!(percent_decoded("a%2"), "a%2");
        assert_eq!(
            percent_decoded("%ff%fe"),
            "%ff%fe",
            "not UTF-8: kept as sent"
        );
        assert_eq!(percent_decoded("%41%42c"), "ABc");
    }

    #[test]
    fn pod_identity_role_comes_from_the_response_on_delete() {
        let del = r#"{"eventSource":"eks.amazonaws.com","eventName":"DeletePodIdentityAssociation","eventID":"e4","eventTime":"2026-11-20T10:05:00Z","requestParameters":{"clusterName":"prod-east","associationId":"a-123"},"responseElements":{"association":{"clusterName":"prod-east","namespace":"ci","serviceAccount":"deployer","roleArn":"arn:aws:iam::111122223333:role/ci-deployer","associationId":"a-123"}}}"#;
        let e = parse(del).unwrap().unwrap();
        assert_eq!(
            e.target.principal_arn.as_deref(),
            Some("arn:aws:iam::111122223333:role/ci-deployer")
        );
        assert_eq!(e.target.pod_identity_namespace.as_deref(), Some("ci"));
        assert_eq!(e.target.association_id.as_deref(), Some("a-123"));
    }

    #[test]
    fn hostile_or_odd_records_are_refused_or_kept_without_typed_fields() {
        assert_eq!(
            parse(r#"{"eventSource":"ec2.amazonaws.com","eventName":"RunInstances"}"#),
            Ok(None)
        );
        assert_eq!(
            parse(
                r#"{"eventSource":"eks.amazonaws.com","eventName":"DescribeCluster","readOnly":true,"eventID":"d","eventTime":"2026-11-20T10:05:00Z"}"#
            ),
            Ok(None)
        );
        assert!(matches!(parse("{not json"), Err(EksApiError::NotJson(_))));
        assert!(matches!(
            parse(
                r#"{"eventSource":"eks.amazonaws.com","eventName":"CreateAccessEntry","eventID":"x"}"#
            ),
            Err(EksApiError::Invalid {
                what: "missing or malformed eventTime",
                ..
            })
        ));
        // a name EKS would refuse is not a cluster; a member of the wrong type drops the
        // typed fields but not the row or its raw parameters
        let odd = r#"{"eventSource":"eks.amazonaws.com","eventName":"CreateAccessEntry","eventID":"e5","eventTime":"2026-11-20T10:05:00Z","recipientAccountId":"111122223333","requestParameters":{"clusterName":"../../etc","principalArn":"arn:aws:iam::111122223333:role/x","kubernetesGroups":"system:masters"}}"#;
        let e = parse(odd).unwrap().unwrap();
        assert_eq!(e.cluster.as_deref(), Some(INVALID));
        assert_eq!(e.target.kubernetes_groups, None);
        assert_eq!(
            e.target.principal_arn.as_deref(),
            Some("arn:aws:iam::111122223333:role/x")
        );
        assert!(e.request_parameters.unwrap().contains("system:masters"));
        let bad_name = r#"{"eventSource":"eks.amazonaws.com","eventName":"DeleteCluster","eventID":"e6","eventTime":"2026-11-20T10:05:00Z","requestParameters":{"name":"../../etc"}}"#;
        assert_eq!(
            parse(bad_name).unwrap().unwrap().cluster.as_deref(),
            Some(INVALID)
        );
    }
}
