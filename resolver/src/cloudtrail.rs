//! CloudTrail STS records: the calls that issue temporary credentials.
//!
//! Input is one bare CloudTrail event (as the org trail's CloudWatch Logs subscription
//! delivers it) or the `Records` of a CloudTrail S3 log file.
//! Docs: <https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html>,
//! <https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-user-identity.html>

use serde::{Deserialize, Serialize};

use crate::time::{parse_expiration, parse_rfc3339_ms};

/// The STS calls we index. Everything else in CloudTrail is ignored here (it stays in
/// the raw archive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StsEventName {
    AssumeRole,
    AssumeRoleWithSAML,
    AssumeRoleWithWebIdentity,
    GetFederationToken,
}

impl StsEventName {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "AssumeRole" => Self::AssumeRole,
            "AssumeRoleWithSAML" => Self::AssumeRoleWithSAML,
            "AssumeRoleWithWebIdentity" => Self::AssumeRoleWithWebIdentity,
            "GetFederationToken" => Self::GetFederationToken,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AssumeRole => "AssumeRole",
            Self::AssumeRoleWithSAML => "AssumeRoleWithSAML",
            Self::AssumeRoleWithWebIdentity => "AssumeRoleWithWebIdentity",
            Self::GetFederationToken => "GetFederationToken",
        }
    }
}

/// One STS call, flattened: a row of `sts_sessions` and the value of the session store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StsSession {
    pub event_time_ms: i64,
    pub event_id: String,
    pub shared_event_id: Option<String>,
    pub request_id: Option<String>,
    pub recipient_account_id: Option<String>,
    pub event_name: StsEventName,
    pub aws_region: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub error_code: Option<String>,
    /// `errorMessage` of a failed call (evidence: who tried which role).
    #[serde(default)]
    pub error_message: Option<String>,
    pub caller_type: Option<String>,
    pub caller_arn: Option<String>,
    pub caller_principal_id: Option<String>,
    pub caller_account_id: Option<String>,
    pub caller_access_key_id: Option<String>,
    /// `userName`, else the session issuer's `userName`, else `invokedBy` (AWS services).
    pub caller_user_name: Option<String>,
    pub role_arn: Option<String>,
    pub role_session_name: Option<String>,
    pub source_identity: Option<String>,
    pub assumed_role_id: Option<String>,
    pub assumed_role_arn: Option<String>,
    pub access_key_id: Option<String>,
    pub expiration_ms: Option<i64>,
    pub saml_subject: Option<String>,
    pub saml_provider_arn: Option<String>,
    pub web_identity_subject: Option<String>,
    pub web_identity_provider: Option<String>,
    /// `requestParameters.tags` (session tags: EKS Pod Identity sets six), in request
    /// order, at most [`MAX_SESSION_TAGS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub session_tags: Vec<(String, String)>,
    /// `userIdentity.onBehalfOf.userId`: the IAM Identity Center user a caller acted for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of_user_id: Option<String>,
    /// `userIdentity.onBehalfOf.identityStoreArn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of_identity_store_arn: Option<String>,
}

/// STS accepts at most 50 session tags, keys of 128 and values of 256 characters
/// (<https://docs.aws.amazon.com/IAM/latest/UserGuide/id_session-tags.html#id_session-tags_know>).
/// A record with more is not from STS; the rest is dropped, never stored.
pub const MAX_SESSION_TAGS: usize = 50;
const MAX_TAG_KEY: usize = 128;
const MAX_TAG_VALUE: usize = 256;

impl StsSession {
    /// The value of session tag `key`, if the call set it.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.session_tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The role-owner copy of a cross-account call: its caller is only "an account", so
    /// it cannot be followed further. The caller-account copy is preferred.
    pub fn is_owner_copy(&self) -> bool {
        self.caller_type.as_deref() == Some("AWSAccount")
    }

    /// Did the call issue credentials?
    pub fn issued(&self) -> bool {
        self.error_code.is_none() && self.access_key_id.is_some()
    }

    /// End of the session's lifetime: `expiration`, else the requested duration, else
    /// one hour (the STS default).
    pub fn lifetime_end_ms(&self) -> i64 {
        self.expiration_ms.unwrap_or(self.event_time_ms + 3_600_000)
    }

    /// Account folder for `sts_sessions`: the account this copy was delivered to.
    pub fn account(&self) -> Option<&str> {
        self.recipient_account_id
            .as_deref()
            .filter(|a| crate::arn::is_account_id(a))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CloudTrailError {
    #[error("not a CloudTrail event: {0}")]
    NotJson(String),
    #[error("CloudTrail event {event_id}: {what}")]
    Invalid {
        event_id: String,
        what: &'static str,
    },
}

/// What a CloudTrail event turned out to be.
#[derive(Debug)]
pub enum Parsed {
    Sts(Box<StsSession>),
    /// A CloudTrail event that is not an STS credential call.
    Other,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    event_time: Option<String>,
    event_source: Option<String>,
    event_name: Option<String>,
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
    #[serde(rename = "sharedEventID")]
    shared_event_id: Option<String>,
    recipient_account_id: Option<String>,
    user_identity: Option<UserIdentity>,
    request_parameters: Option<RequestParameters>,
    response_elements: Option<ResponseElements>,
}

/// `userIdentity` of any CloudTrail record (the STS calls here, the EKS API calls in
/// the transformer's `eks_api` stage).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentity {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub principal_id: Option<String>,
    pub arn: Option<String>,
    pub account_id: Option<String>,
    pub access_key_id: Option<String>,
    pub user_name: Option<String>,
    pub invoked_by: Option<String>,
    pub session_context: Option<SessionContext>,
    pub on_behalf_of: Option<OnBehalfOf>,
}

/// Identity Center trusted identity propagation: the user a session acted for.
/// Docs: <https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-user-identity.html>
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OnBehalfOf {
    pub user_id: Option<String>,
    pub identity_store_arn: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionContext {
    pub session_issuer: Option<SessionIssuer>,
    pub source_identity: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionIssuer {
    /// The role (with its path) of an assumed-role caller.
    pub arn: Option<String>,
    pub user_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestParameters {
    role_arn: Option<String>,
    role_session_name: Option<String>,
    source_identity: Option<String>,
    /// AssumeRoleWithSAML: the SAML provider.
    principal_arn: Option<String>,
    /// GetFederationToken: the federated user's name.
    name: Option<String>,
    duration_seconds: Option<NumOrString>,
    /// Session tags, `[{"key": .., "value": ..}]`.
    tags: Option<Vec<Tag>>,
}

#[derive(Deserialize)]
struct Tag {
    #[serde(alias = "Key")]
    key: Option<String>,
    #[serde(alias = "Value")]
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResponseElements {
    credentials: Option<Credentials>,
    assumed_role_user: Option<AssumedRoleUser>,
    federated_user: Option<FederatedUser>,
    source_identity: Option<String>,
    subject: Option<String>,
    subject_from_web_identity_token: Option<String>,
    provider: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Credentials {
    access_key_id: Option<String>,
    expiration: Option<NumOrString>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssumedRoleUser {
    assumed_role_id: Option<String>,
    arn: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FederatedUser {
    arn: Option<String>,
}

/// CloudTrail is not consistent about scalar types across versions; tolerate both.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrString {
    Num(f64),
    Str(String),
}

impl NumOrString {
    fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Num(n) if n.is_finite() => Some(*n as i64),
            Self::Num(_) => None,
            Self::Str(s) => s.trim().parse().ok(),
        }
    }
}

/// Parse one bare CloudTrail event. `Ok(Parsed::Other)` for any event that is not an
/// STS credential call.
pub fn parse_event(json: &[u8]) -> Result<Parsed, CloudTrailError> {
    let r: Record =
        serde_json::from_slice(json).map_err(|e| CloudTrailError::NotJson(e.to_string()))?;
    from_record(r)
}

/// Parse the events of a CloudTrail S3 log file (`{"Records":[...]}`), skipping
/// non-STS ones. A malformed record fails the file: the caller reports which.
pub fn parse_log_file(json: &[u8]) -> Result<Vec<StsSession>, CloudTrailError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct File {
        records: Vec<Record>,
    }
    let f: File =
        serde_json::from_slice(json).map_err(|e| CloudTrailError::NotJson(e.to_string()))?;
    let mut out = Vec::new();
    for r in f.records {
        if let Parsed::Sts(s) = from_record(r)? {
            out.push(*s);
        }
    }
    Ok(out)
}

fn from_record(r: Record) -> Result<Parsed, CloudTrailError> {
    if r.event_source.as_deref() != Some("sts.amazonaws.com") {
        return Ok(Parsed::Other);
    }
    let Some(event_name) = r.event_name.as_deref().and_then(StsEventName::parse) else {
        return Ok(Parsed::Other);
    };
    let event_id = r.event_id.unwrap_or_default();
    let invalid = |what| CloudTrailError::Invalid {
        event_id: event_id.clone(),
        what,
    };
    if event_id.is_empty() {
        return Err(invalid("missing eventID"));
    }
    let event_time_ms = r
        .event_time
        .as_deref()
        .and_then(parse_rfc3339_ms)
        .ok_or_else(|| invalid("missing or malformed eventTime"))?;

    let ui = r.user_identity;
    let req = r.request_parameters;
    let resp = r.response_elements;
    let (
        caller_type,
        caller_arn,
        caller_principal_id,
        caller_account_id,
        caller_key,
        caller_user,
        ctx_source_identity,
        on_behalf_of,
    ) = match ui {
        Some(u) => {
            let (issuer_name, ctx_si) = match u.session_context {
                Some(c) => (
                    c.session_issuer.and_then(|i| i.user_name),
                    c.source_identity,
                ),
                None => (None, None),
            };
            (
                u.kind,
                u.arn,
                u.principal_id,
                u.account_id,
                u.access_key_id,
                u.user_name.or(issuer_name).or(u.invoked_by),
                ctx_si,
                u.on_behalf_of,
            )
        }
        None => (None, None, None, None, None, None, None, None),
    };
    let (
        role_arn,
        role_session_name,
        req_source_identity,
        principal_arn,
        fed_name,
        duration_s,
        tags,
    ) = match req {
        Some(q) => (
            q.role_arn,
            q.role_session_name,
            q.source_identity,
            q.principal_arn,
            q.name,
            q.duration_seconds.and_then(|d| d.as_i64()),
            q.tags,
        ),
        None => (None, None, None, None, None, None, None),
    };
    let session_tags = tags
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| Some((t.key?, t.value.unwrap_or_default())))
        .filter(|(k, v)| !k.is_empty() && k.len() <= MAX_TAG_KEY && v.len() <= MAX_TAG_VALUE)
        .take(MAX_SESSION_TAGS)
        .fold(Vec::new(), |mut out: Vec<(String, String)>, (k, v)| {
            // STS tag keys are case-insensitive and unique; keep the first of a repeat
            // (a map column must not hold a key twice)
            if !out.iter().any(|(o, _)| o.eq_ignore_ascii_case(&k)) {
                out.push((k, v));
            }
            out
        });
    let (on_behalf_of_user_id, on_behalf_of_identity_store_arn) = match on_behalf_of {
        Some(o) => (o.user_id, o.identity_store_arn),
        None => (None, None),
    };
    let mut s = StsSession {
        event_time_ms,
        event_id,
        shared_event_id: r.shared_event_id,
        request_id: r.request_id,
        recipient_account_id: r.recipient_account_id,
        event_name,
        aws_region: r.aws_region,
        source_ip: r.source_ip_address,
        user_agent: r.user_agent,
        error_code: r.error_code,
        error_message: r.error_message,
        caller_type,
        caller_arn,
        caller_principal_id,
        caller_account_id,
        caller_access_key_id: caller_key,
        caller_user_name: caller_user,
        role_arn,
        role_session_name: role_session_name.or(fed_name),
        source_identity: None,
        assumed_role_id: None,
        assumed_role_arn: None,
        access_key_id: None,
        expiration_ms: None,
        saml_subject: None,
        saml_provider_arn: principal_arn,
        web_identity_subject: None,
        web_identity_provider: None,
        session_tags,
        on_behalf_of_user_id,
        on_behalf_of_identity_store_arn,
    };
    let mut resp_source_identity = None;
    if let Some(resp) = resp {
        if let Some(c) = resp.credentials {
            s.access_key_id = c.access_key_id;
            s.expiration_ms = c.expiration.and_then(|e| match e {
                NumOrString::Str(t) => parse_expiration(&t),
                // epoch seconds or milliseconds
                n => n
                    .as_i64()
                    .map(|v| if v < 100_000_000_000 { v * 1000 } else { v }),
            });
        }
        if let Some(u) = resp.assumed_role_user {
            s.assumed_role_id = u.assumed_role_id;
            s.assumed_role_arn = u.arn;
        }
        if let Some(f) = resp.federated_user {
            s.assumed_role_arn = f.arn;
        }
        s.saml_subject = resp.subject;
        s.web_identity_subject = resp.subject_from_web_identity_token;
        s.web_identity_provider = resp.provider;
        resp_source_identity = resp.source_identity;
    }
    if s.expiration_ms.is_none() && s.access_key_id.is_some() {
        s.expiration_ms = Some(event_time_ms + duration_s.unwrap_or(3600) * 1000);
    }
    if s.event_name != StsEventName::AssumeRoleWithSAML {
        s.saml_provider_arn = None;
    }
    // Source identity is set once and then carried by every chained session.
    s.source_identity = resp_source_identity
        .or(req_source_identity)
        .or(ctx_source_identity);
    if s.error_code.is_some() {
        // A failed call issues nothing, whatever a partial response says.
        s.access_key_id = None;
        s.expiration_ms = None;
        // CloudTrail logs `requestParameters: null` for denied calls; the target role is
        // only in the message ("... sts:AssumeRole on resource: arn:aws:iam::A:role/R").
        if s.role_arn.is_none() {
            s.role_arn = s.error_message.as_deref().and_then(role_in_message);
        }
    }
    Ok(Parsed::Sts(Box::new(s)))
}

/// Are two records the same STS call? The same `eventID` (a replay), or the same
/// `sharedEventID` (the caller and role-owner copies of one cross-account call).
pub fn same_call(a: &StsSession, b: &StsSession) -> bool {
    a.event_id == b.event_id
        || (a.shared_event_id.is_some() && a.shared_event_id == b.shared_event_id)
}

/// The role ARN after `on resource: ` in an STS error message, if it is one.
pub fn role_in_message(msg: &str) -> Option<String> {
    let (_, rest) = msg.split_once("on resource: ")?;
    let arn = rest
        .split(|c: char| c.is_whitespace() || c == '"' || c == ',')
        .next()?
        .trim_end_matches('.');
    match crate::arn::principal(arn)? {
        crate::arn::Principal::Role { .. } => Some(arn.to_string()),
        _ => None,
    }
}

/// Deduplicate the two copies of cross-account calls (same `sharedEventID`), keeping the
/// caller-account copy, and exact repeats (same `eventID`). Order is kept.
pub fn dedup(sessions: Vec<StsSession>) -> Vec<StsSession> {
    use std::collections::HashMap;
    let mut by_shared: HashMap<String, usize> = HashMap::new();
    let mut seen_ids = std::collections::HashSet::new();
    let mut out: Vec<StsSession> = Vec::with_capacity(sessions.len());
    for s in sessions {
        if !seen_ids.insert(s.event_id.clone()) {
            continue;
        }
        if let Some(shared) = s.shared_event_id.clone() {
            if let Some(&i) = by_shared.get(&shared) {
                if out[i].is_owner_copy() && !s.is_owner_copy() {
                    out[i] = s;
                }
                continue;
            }
            by_shared.insert(shared, out.len());
        }
        out.push(s);
    }
    out
}
