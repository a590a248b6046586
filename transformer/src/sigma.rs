//! Sigma rules: parse, compile, evaluate, and render as Athena SQL.
//!
//! The subset the shipped pack (`schemas/rules/`) and operators' rules may use:
//! selections of `field|modifier…: value(s)` (a map is AND, a list of maps OR, a list of
//! values OR — or AND with `all`), the modifiers `contains`, `startswith`, `endswith`,
//! `all`, `exists`, `cased`, `gt`, `gte`, `lt`, `lte`, and conditions with `and`, `or`,
//! `not`, parentheses, `1 of`/`all of` a selection pattern or `them`. Anything else —
//! another modifier, keyword lists, aggregations, a field audit events do not have —
//! is an error naming the file and the rule, so a rule never silently matches nothing.
//! Spec: <https://sigmahq.io/docs/basics/rules.html>
//!
//! One meaning, two engines: [`Rule::matches`] evaluates a rule on an event at ingest,
//! [`Rule::sql_condition`] renders the same rule over `eks_audit_attributed`. Every
//! field has a list of values (a scalar field zero or one, `user.groups` its elements,
//! a body path every scalar it reaches); a field condition holds when some value matches
//! some pattern (with `all`: every pattern some value). Strings compare ASCII
//! case-insensitively unless `cased` (SQL: `lower()`), numbers and booleans as their
//! JSON text, `null` means "no value".

use std::fmt::Write as _;

use serde_yaml_ng::{Mapping, Value as Yaml};

/// `level`: the severity of a rule's findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Self::Informational,
        Self::Low,
        Self::Medium,
        Self::High,
        Self::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Informational => "informational",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// The log a rule reads (`logsource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSource {
    /// `product: kubernetes, service: audit`: `eks_audit` rows.
    KubernetesAudit,
    /// `product: aws, service: cloudtrail`: `eks_api_events` rows (the EKS API calls of
    /// trusted trails).
    CloudTrail,
}

impl LogSource {
    /// The view a retro-hunt of the rule reads.
    pub fn view(self) -> &'static str {
        match self {
            Self::KubernetesAudit => "eks_audit_attributed",
            Self::CloudTrail => "eks_api_events_attributed",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::KubernetesAudit => "kubernetes/audit",
            Self::CloudTrail => "aws/cloudtrail",
        }
    }
}

/// Values for `|expand` placeholders (`%org_accounts%`): lists an operator configures
/// instead of editing rules. A rule naming a placeholder without values is off (it is
/// listed, never evaluated): "outside these accounts" cannot be decided without them.
#[derive(Debug, Clone, Default)]
pub struct Placeholders(std::collections::BTreeMap<String, Vec<String>>);

impl Placeholders {
    pub fn with(mut self, name: &str, values: Vec<String>) -> Self {
        self.0.insert(name.to_owned(), values);
        self
    }

    pub fn get(&self, name: &str) -> Option<&[String]> {
        self.0
            .get(name)
            .map(Vec::as_slice)
            .filter(|v| !v.is_empty())
    }
}

/// Why a rule file was refused.
#[derive(Debug, thiserror::Error)]
#[error("{file}: rule {rule}: {kind}")]
pub struct RuleError {
    pub file: String,
    /// The rule's `name`, else `id`, else `title`, else its position in the file.
    pub rule: String,
    pub kind: RuleErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum RuleErrorKind {
    #[error("not YAML: {0}")]
    Yaml(#[source] serde_yaml_ng::Error),
    #[error("missing or empty `{0}`")]
    Missing(&'static str),
    #[error("`{key}` must be {expected}")]
    Type { key: String, expected: &'static str },
    #[error("`level` {0:?} is not one of informational, low, medium, high, critical")]
    Level(String),
    #[error("logsource {0} is not supported (kubernetes/audit and aws/cloudtrail are)")]
    LogSource(String),
    #[error("`{0}` is not a field of {1} events (see schemas/rules/README.md for the fields)")]
    Field(String, &'static str),
    #[error("modifier `{modifier}` of `{field}` is not supported (contains, startswith, endswith, all, exists, cased, expand, gt, gte, lt, lte are)")]
    Modifier { field: String, modifier: String },
    #[error("selection `{0}`: {1}")]
    Selection(String, String),
    #[error("condition {condition:?}: {why}")]
    Condition { condition: String, why: String },
    #[error("`id` {0:?} is used by another rule ({1})")]
    Duplicate(String, String),
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    /// `name`: unique and readable; `id` when the rule has none.
    pub name: String,
    pub title: String,
    pub description: String,
    pub severity: Severity,
    /// ATT&CK technique ids from `tags` (`attack.t1611` -> `T1611`).
    pub techniques: Vec<String>,
    pub falsepositives: Vec<String>,
    pub logsource: LogSource,
    /// Where the rule came from (a file name or an S3 key).
    pub file: String,
    /// Values `objectRef.resource` must have (ASCII lowercase) for the rule to match,
    /// when its condition requires one of a few exact values; `None`: any.
    pub resources: Option<Vec<String>>,
    /// The same for `verb`.
    pub verbs: Option<Vec<String>>,
    /// Why the rule is not evaluated (a placeholder without values), if it is not.
    pub off: Option<String>,
    selections: Vec<Selection>,
    condition: Cond,
}

#[derive(Debug, Clone)]
struct Selection {
    name: String,
    /// OR of AND-ed matchers.
    any_of: Vec<Vec<Matcher>>,
}

#[derive(Debug, Clone)]
struct Matcher {
    field: Field,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    /// Some value matches one of the patterns (`all`: each pattern some value); `null`
    /// in the list also accepts a field without values.
    Values {
        patterns: Vec<Pattern>,
        all: bool,
        or_null: bool,
    },
    /// `exists: true|false` (and `field: null` alone, as `Exists(false)`).
    Exists(bool),
}

#[derive(Debug, Clone)]
enum Pattern {
    Str { glob: Glob, cased: bool },
    Num { op: NumOp, value: f64 },
}

#[derive(Debug, Clone, Copy)]
enum NumOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

/// A string pattern. Case-insensitive ones hold their text in ASCII lowercase.
#[derive(Debug, Clone)]
enum Glob {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    Wild(Vec<Tok>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Lit(String),
    /// `*`
    Any,
    /// `?`
    One,
}

#[derive(Debug, Clone)]
enum Cond {
    Sel(usize),
    Not(Box<Cond>),
    And(Vec<Cond>),
    Or(Vec<Cond>),
}

// ---- fields -----------------------------------------------------------------------------

/// An audit event field a rule may read (the raw `audit.k8s.io/v1` paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Scalar(Scalar),
    List(List),
    /// `user.extra.<key>` (a list).
    Extra(String),
    /// `annotations.<key>`.
    Annotation(String),
    /// `requestObject.<path>` / `responseObject.<path>` (CloudTrail:
    /// `requestParameters.<path>` / `responseElements.<path>`).
    Body(BodyPath),
    /// A CloudTrail field or a derived `eks_api_events` column.
    Trail(Trail),
    /// A list column of `eks_api_events`.
    TrailList(TrailList),
}

/// A lax path into a request or response body.
#[derive(Debug, Clone)]
pub struct BodyPath {
    pub body: Body,
    pub path: Vec<String>,
    /// Its index in the rule set's [`BodyPaths`] (assigned when the rule joins a set):
    /// an event's body is walked once for every path of every rule.
    pub id: u16,
}

impl PartialEq for BodyPath {
    fn eq(&self, o: &Self) -> bool {
        self.body == o.body && self.path == o.path
    }
}

impl Eq for BodyPath {}

/// One node of a [`PathTrie`]: the keys that continue a path, and the path that ends here.
#[derive(Debug, Clone, Default)]
pub struct TrieNode {
    pub children: Vec<(String, u32)>,
    pub terminal: Option<u16>,
}

/// Every body path of a rule set as a trie of keys (node 0 is the body itself).
#[derive(Debug, Clone)]
pub struct PathTrie {
    pub nodes: Vec<TrieNode>,
}

impl Default for PathTrie {
    fn default() -> Self {
        Self {
            nodes: vec![TrieNode::default()],
        }
    }
}

impl PathTrie {
    pub fn child(&self, node: u32, key: &str) -> Option<u32> {
        self.nodes[node as usize]
            .children
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, c)| *c)
    }
}

/// The body paths of a rule set: one trie per body, ids in order of first use.
#[derive(Debug, Clone, Default)]
pub struct BodyPaths {
    /// One trie per [`Body`], in its order.
    tries: [PathTrie; 4],
    paths: Vec<(Body, Vec<String>)>,
}

impl BodyPaths {
    pub fn trie(&self, b: Body) -> &PathTrie {
        &self.tries[b as usize]
    }

    fn intern(&mut self, bp: &mut BodyPath) -> Result<(), RuleErrorKind> {
        if let Some(i) = self
            .paths
            .iter()
            .position(|(b, p)| *b == bp.body && *p == bp.path)
        {
            bp.id = i as u16;
            return Ok(());
        }
        if self.paths.len() >= u16::MAX as usize {
            return Err(RuleErrorKind::Selection(
                String::new(),
                "too many body paths".into(),
            ));
        }
        let id = self.paths.len() as u16;
        self.paths.push((bp.body, bp.path.clone()));
        let trie = &mut self.tries[bp.body as usize];
        let mut node = 0u32;
        for seg in &bp.path {
            node = match trie.child(node, seg) {
                Some(c) => c,
                None => {
                    let c = trie.nodes.len() as u32;
                    trie.nodes.push(TrieNode::default());
                    trie.nodes[node as usize].children.push((seg.clone(), c));
                    c
                }
            };
        }
        trie.nodes[node as usize].terminal = Some(id);
        bp.id = id;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    Verb,
    Stage,
    Level,
    AuditId,
    RequestUri,
    UserAgent,
    Username,
    UserUid,
    ImpersonatedUsername,
    ObjectResource,
    ObjectSubresource,
    ObjectNamespace,
    ObjectName,
    ObjectApiGroup,
    ObjectApiVersion,
    ResponseCode,
    ResponseStatus,
    ResponseReason,
    ResponseMessage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    UserGroups,
    ImpersonatedGroups,
    SourceIps,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Request = 0,
    Response = 1,
    /// CloudTrail `requestParameters`.
    Parameters = 2,
    /// CloudTrail `responseElements`.
    Elements = 3,
}

/// CloudTrail fields (their raw paths) and the derived `eks_api_events` columns (their
/// column names) a `aws/cloudtrail` rule may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trail {
    EventName,
    EventSource,
    EventType,
    EventId,
    AwsRegion,
    RecipientAccountId,
    SourceIp,
    UserAgent,
    ErrorCode,
    ErrorMessage,
    RequestId,
    CallerType,
    CallerArn,
    CallerAccountId,
    CallerPrincipalId,
    CallerAccessKeyId,
    CallerUserName,
    CallerRoleArn,
    Cluster,
    TargetPrincipalArn,
    TargetPrincipalAccountId,
    AccessEntryType,
    AccessEntryUsername,
    AccessPolicyArn,
    AccessScopeType,
    PodIdentityNamespace,
    PodIdentityServiceAccount,
    AuditLoggingEnabled,
    AuthenticatorLoggingEnabled,
    EndpointPublicAccess,
    AuthenticationMode,
    BootstrapClusterCreatorAdmin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailList {
    KubernetesGroups,
    AccessScopeNamespaces,
    PublicAccessCidrs,
}

/// (Sigma field, field, `eks_api_events` column, boolean column).
const TRAIL: &[(&str, Trail, &str, bool)] = &[
    ("eventName", Trail::EventName, "event_name", false),
    ("eventSource", Trail::EventSource, "event_source", false),
    ("eventType", Trail::EventType, "event_type", false),
    ("eventID", Trail::EventId, "event_id", false),
    ("awsRegion", Trail::AwsRegion, "region", false),
    (
        "recipientAccountId",
        Trail::RecipientAccountId,
        "account_id",
        false,
    ),
    ("sourceIPAddress", Trail::SourceIp, "source_ip", false),
    ("userAgent", Trail::UserAgent, "user_agent", false),
    ("errorCode", Trail::ErrorCode, "error_code", false),
    ("errorMessage", Trail::ErrorMessage, "error_message", false),
    ("requestID", Trail::RequestId, "request_id", false),
    ("userIdentity.type", Trail::CallerType, "caller_type", false),
    ("userIdentity.arn", Trail::CallerArn, "caller_arn", false),
    (
        "userIdentity.accountId",
        Trail::CallerAccountId,
        "caller_account_id",
        false,
    ),
    (
        "userIdentity.principalId",
        Trail::CallerPrincipalId,
        "caller_principal_id",
        false,
    ),
    (
        "userIdentity.accessKeyId",
        Trail::CallerAccessKeyId,
        "caller_access_key_id",
        false,
    ),
    (
        "userIdentity.userName",
        Trail::CallerUserName,
        "caller_user_name",
        false,
    ),
    (
        "userIdentity.sessionContext.sessionIssuer.arn",
        Trail::CallerRoleArn,
        "caller_role_arn",
        false,
    ),
    ("cluster", Trail::Cluster, "cluster", false),
    (
        "target_principal_arn",
        Trail::TargetPrincipalArn,
        "target_principal_arn",
        false,
    ),
    (
        "target_principal_account_id",
        Trail::TargetPrincipalAccountId,
        "target_principal_account_id",
        false,
    ),
    (
        "access_entry_type",
        Trail::AccessEntryType,
        "access_entry_type",
        false,
    ),
    (
        "access_entry_username",
        Trail::AccessEntryUsername,
        "access_entry_username",
        false,
    ),
    (
        "access_policy_arn",
        Trail::AccessPolicyArn,
        "access_policy_arn",
        false,
    ),
    (
        "access_scope_type",
        Trail::AccessScopeType,
        "access_scope_type",
        false,
    ),
    (
        "pod_identity_namespace",
        Trail::PodIdentityNamespace,
        "pod_identity_namespace",
        false,
    ),
    (
        "pod_identity_service_account",
        Trail::PodIdentityServiceAccount,
        "pod_identity_service_account",
        false,
    ),
    (
        "audit_logging_enabled",
        Trail::AuditLoggingEnabled,
        "audit_logging_enabled",
        true,
    ),
    (
        "authenticator_logging_enabled",
        Trail::AuthenticatorLoggingEnabled,
        "authenticator_logging_enabled",
        true,
    ),
    (
        "endpoint_public_access",
        Trail::EndpointPublicAccess,
        "endpoint_public_access",
        true,
    ),
    (
        "authentication_mode",
        Trail::AuthenticationMode,
        "authentication_mode",
        false,
    ),
    (
        "bootstrap_cluster_creator_admin",
        Trail::BootstrapClusterCreatorAdmin,
        "bootstrap_cluster_creator_admin",
        true,
    ),
];

const TRAIL_LISTS: &[(&str, TrailList, &str)] = &[
    (
        "kubernetes_groups",
        TrailList::KubernetesGroups,
        "kubernetes_groups",
    ),
    (
        "access_scope_namespaces",
        TrailList::AccessScopeNamespaces,
        "access_scope_namespaces",
    ),
    (
        "public_access_cidrs",
        TrailList::PublicAccessCidrs,
        "public_access_cidrs",
    ),
];

/// (Sigma field, field, `eks_audit` column).
const SCALARS: &[(&str, Scalar, &str)] = &[
    ("verb", Scalar::Verb, "verb"),
    ("stage", Scalar::Stage, "stage"),
    ("level", Scalar::Level, "level"),
    ("auditID", Scalar::AuditId, "audit_id"),
    ("requestURI", Scalar::RequestUri, "request_uri"),
    ("userAgent", Scalar::UserAgent, "user_agent"),
    ("user.username", Scalar::Username, "username"),
    ("user.uid", Scalar::UserUid, "user_uid"),
    (
        "impersonatedUser.username",
        Scalar::ImpersonatedUsername,
        "impersonated_username",
    ),
    (
        "objectRef.resource",
        Scalar::ObjectResource,
        "object_resource",
    ),
    (
        "objectRef.subresource",
        Scalar::ObjectSubresource,
        "object_subresource",
    ),
    (
        "objectRef.namespace",
        Scalar::ObjectNamespace,
        "object_namespace",
    ),
    ("objectRef.name", Scalar::ObjectName, "object_name"),
    (
        "objectRef.apiGroup",
        Scalar::ObjectApiGroup,
        "object_api_group",
    ),
    (
        "objectRef.apiVersion",
        Scalar::ObjectApiVersion,
        "object_api_version",
    ),
    ("responseStatus.code", Scalar::ResponseCode, "response_code"),
    (
        "responseStatus.status",
        Scalar::ResponseStatus,
        "response_status",
    ),
    (
        "responseStatus.reason",
        Scalar::ResponseReason,
        "response_reason",
    ),
    (
        "responseStatus.message",
        Scalar::ResponseMessage,
        "response_message",
    ),
];

const LISTS: &[(&str, List, &str)] = &[
    ("user.groups", List::UserGroups, "user_groups"),
    (
        "impersonatedUser.groups",
        List::ImpersonatedGroups,
        "impersonated_groups",
    ),
    ("sourceIPs", List::SourceIps, "source_ips"),
];

impl Field {
    /// A field of `source`'s events by its Sigma name.
    pub fn parse_in(source: LogSource, name: &str) -> Option<Field> {
        match source {
            LogSource::KubernetesAudit => Self::parse(name),
            LogSource::CloudTrail => Self::parse_trail(name),
        }
    }

    fn parse_trail(name: &str) -> Option<Field> {
        if let Some(t) = TRAIL.iter().find(|t| t.0 == name) {
            return Some(Field::Trail(t.1));
        }
        if let Some(l) = TRAIL_LISTS.iter().find(|l| l.0 == name) {
            return Some(Field::TrailList(l.1));
        }
        body_path(
            name,
            [
                ("requestParameters.", Body::Parameters),
                ("responseElements.", Body::Elements),
            ],
        )
    }

    /// A `kubernetes/audit` field by its Sigma name (the raw audit path).
    pub fn parse(name: &str) -> Option<Field> {
        if let Some(s) = SCALARS.iter().find(|s| s.0 == name) {
            return Some(Field::Scalar(s.1));
        }
        if let Some(l) = LISTS.iter().find(|l| l.0 == name) {
            return Some(Field::List(l.1));
        }
        let key = |p: &str| name.strip_prefix(p).filter(|k| !k.is_empty());
        if let Some(k) = key("user.extra.") {
            return Some(Field::Extra(k.to_owned()));
        }
        if let Some(k) = key("annotations.") {
            return Some(Field::Annotation(k.to_owned()));
        }
        body_path(
            name,
            [
                ("requestObject.", Body::Request),
                ("responseObject.", Body::Response),
            ],
        )
    }

    /// Cheaper fields first: a selection's matchers are tried in this order.
    fn cost(&self) -> u8 {
        match self {
            Field::Scalar(_) | Field::Trail(_) => 0,
            Field::List(_) | Field::Extra(_) | Field::TrailList(_) => 1,
            Field::Annotation(_) => 2,
            Field::Body(..) => 3,
        }
    }
}

/// `<prefix><a.b.c>` of one of `bodies` as a body path (no empty segment).
fn body_path(name: &str, bodies: [(&str, Body); 2]) -> Option<Field> {
    for (prefix, body) in bodies {
        if let Some(p) = name.strip_prefix(prefix).filter(|k| !k.is_empty()) {
            let path: Vec<String> = p.split('.').map(str::to_owned).collect();
            if path.iter().any(|s| s.is_empty()) {
                return None;
            }
            return Some(Field::Body(BodyPath { body, path, id: 0 }));
        }
    }
    None
}

/// One value of a field.
#[derive(Debug, Clone, Copy)]
pub enum Value<'v> {
    Str(&'v str),
    Int(i64),
}

/// What a rule reads from an event: each value of a field, in turn, until `f` accepts
/// one. Implemented over the borrowed audit row by the `detect` stage.
pub trait Event {
    /// Calls `f` with the values of `field` until it returns `true`; returns whether
    /// it did.
    fn any_value(&self, field: &Field, f: &mut dyn FnMut(Value<'_>) -> bool) -> bool;
}

// ---- matching ---------------------------------------------------------------------------

impl Rule {
    /// Does the event match the rule?
    pub fn matches(&self, ev: &dyn Event) -> bool {
        self.eval(&self.condition, ev)
    }

    fn eval(&self, c: &Cond, ev: &dyn Event) -> bool {
        match c {
            Cond::Sel(i) => self.selections[*i]
                .any_of
                .iter()
                .any(|all| all.iter().all(|m| m.matches(ev))),
            Cond::Not(c) => !self.eval(c, ev),
            Cond::And(cs) => cs.iter().all(|c| self.eval(c, ev)),
            Cond::Or(cs) => cs.iter().any(|c| self.eval(c, ev)),
        }
    }
}

impl Matcher {
    fn matches(&self, ev: &dyn Event) -> bool {
        match &self.test {
            Test::Exists(want) => ev.any_value(&self.field, &mut |_| true) == *want,
            Test::Values {
                patterns,
                all,
                or_null,
            } => {
                if *all {
                    return patterns
                        .iter()
                        .all(|p| ev.any_value(&self.field, &mut |v| p.matches(v)));
                }
                let mut any = false;
                let hit = ev.any_value(&self.field, &mut |v| {
                    any = true;
                    patterns.iter().any(|p| p.matches(v))
                });
                hit || (*or_null && !any)
            }
        }
    }
}

impl Pattern {
    fn matches(&self, v: Value<'_>) -> bool {
        match (self, v) {
            (Pattern::Str { glob, cased }, Value::Str(s)) => glob.matches(s, *cased),
            (Pattern::Str { glob, cased }, Value::Int(n)) => {
                let mut buf = [0u8; 20];
                glob.matches(int_text(n, &mut buf), *cased)
            }
            (Pattern::Num { op, value }, v) => {
                let x = match v {
                    Value::Int(n) => n as f64,
                    Value::Str(s) => match s.trim().parse::<f64>() {
                        Ok(x) => x,
                        Err(_) => return false,
                    },
                };
                match op {
                    NumOp::Gt => x > *value,
                    NumOp::Gte => x >= *value,
                    NumOp::Lt => x < *value,
                    NumOp::Lte => x <= *value,
                }
            }
        }
    }
}

/// Decimal text of `n` without allocating.
fn int_text(n: i64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    let mut u = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if n < 0 {
        // i64::MIN has 19 digits: there is always room for the sign
        i -= 1;
        buf[i] = b'-';
    }
    std::str::from_utf8(&buf[i..]).unwrap_or_default()
}

fn eq(a: &[u8], b: &[u8], cased: bool) -> bool {
    if cased {
        a == b
    } else {
        a.eq_ignore_ascii_case(b)
    }
}

fn find(hay: &[u8], needle: &[u8], cased: bool) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    if cased {
        return memchr::memmem::find(hay, needle);
    }
    if hay.len() < needle.len() {
        return None;
    }
    // needle is lowercase: look for its first byte in either case, then compare
    let (lo, up) = (needle[0], needle[0].to_ascii_uppercase());
    let last = hay.len() - needle.len();
    let mut from = 0;
    while from <= last {
        let at = from + memchr::memchr2(lo, up, &hay[from..=last])?;
        if hay[at..at + needle.len()].eq_ignore_ascii_case(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

impl Glob {
    fn matches(&self, s: &str, cased: bool) -> bool {
        let h = s.as_bytes();
        match self {
            Glob::Exact(p) => eq(h, p.as_bytes(), cased),
            Glob::Prefix(p) => h.len() >= p.len() && eq(&h[..p.len()], p.as_bytes(), cased),
            Glob::Suffix(p) => {
                h.len() >= p.len() && eq(&h[h.len() - p.len()..], p.as_bytes(), cased)
            }
            Glob::Contains(p) => find(h, p.as_bytes(), cased).is_some(),
            Glob::Wild(toks) => wild(toks, h, cased),
        }
    }
}

/// Glob match with backtracking to the last `*` (linear in practice; patterns are short).
fn wild(toks: &[Tok], h: &[u8], cased: bool) -> bool {
    let (mut t, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if t < toks.len() {
            match &toks[t] {
                Tok::Any => {
                    star = Some((t, i));
                    t += 1;
                    continue;
                }
                Tok::One if i < h.len() => {
                    i += utf8_len(h[i]);
                    t += 1;
                    continue;
                }
                Tok::Lit(l)
                    if h.len().saturating_sub(i) >= l.len()
                        && eq(&h[i..i + l.len()], l.as_bytes(), cased) =>
                {
                    i += l.len();
                    t += 1;
                    continue;
                }
                _ => {}
            }
        } else if i >= h.len() {
            return true;
        }
        // mismatch: let the last `*` take one more character
        match star {
            Some((st, si)) if si < h.len() => {
                let si = si + utf8_len(h[si]);
                star = Some((st, si));
                t = st + 1;
                i = si;
            }
            _ => return false,
        }
    }
}

fn utf8_len(b: u8) -> usize {
    match b {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}

// ---- parsing ----------------------------------------------------------------------------

/// Parse a Sigma YAML file (one rule per document) into rules, without placeholders.
pub fn parse_file(file: &str, text: &str) -> Result<Vec<Rule>, RuleError> {
    parse_file_with(file, text, &Placeholders::default())
}

/// Parse a Sigma YAML file, expanding `|expand` placeholders from `placeholders`.
pub fn parse_file_with(
    file: &str,
    text: &str,
    placeholders: &Placeholders,
) -> Result<Vec<Rule>, RuleError> {
    use serde::Deserialize as _;
    let mut out = Vec::new();
    for (n, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let err = |rule: String, kind| RuleError {
            file: file.to_owned(),
            rule,
            kind,
        };
        let v = Yaml::deserialize(doc)
            .map_err(|e| err(format!("#{}", n + 1), RuleErrorKind::Yaml(e)))?;
        if v.is_null() {
            continue; // an empty document (a trailing `---`)
        }
        let label = label_of(&v).unwrap_or_else(|| format!("#{}", n + 1));
        out.push(compile(file, &v, placeholders).map_err(|k| err(label, k))?);
    }
    Ok(out)
}

fn label_of(v: &Yaml) -> Option<String> {
    ["name", "id", "title"]
        .iter()
        .find_map(|k| v.get(k).and_then(Yaml::as_str).map(str::to_owned))
}

fn text(m: &Yaml, key: &'static str) -> Result<String, RuleErrorKind> {
    match m.get(key) {
        Some(Yaml::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        None | Some(Yaml::Null) => Err(RuleErrorKind::Missing(key)),
        Some(Yaml::String(_)) => Err(RuleErrorKind::Missing(key)),
        Some(_) => Err(RuleErrorKind::Type {
            key: key.into(),
            expected: "a string",
        }),
    }
}

fn strings(m: &Yaml, key: &'static str) -> Result<Vec<String>, RuleErrorKind> {
    match m.get(key) {
        None | Some(Yaml::Null) => Ok(Vec::new()),
        Some(Yaml::Sequence(s)) => s
            .iter()
            .map(|v| scalar_text(v).ok_or(()))
            .collect::<Result<_, _>>()
            .map_err(|_| RuleErrorKind::Type {
                key: key.into(),
                expected: "a list of strings",
            }),
        Some(_) => Err(RuleErrorKind::Type {
            key: key.into(),
            expected: "a list of strings",
        }),
    }
}

fn scalar_text(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Bool(b) => Some(b.to_string()),
        Yaml::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Is `s` usable as a rule id (it becomes SQL text, an EventBridge field, a list item)?
fn plain_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// What compiling one rule needs besides its YAML.
struct Ctx<'p> {
    source: LogSource,
    placeholders: &'p Placeholders,
    /// Placeholders the rule names that have no values.
    unset: std::cell::RefCell<Vec<String>>,
}

fn compile(file: &str, v: &Yaml, placeholders: &Placeholders) -> Result<Rule, RuleErrorKind> {
    if !v.is_mapping() {
        return Err(RuleErrorKind::Type {
            key: "the document".into(),
            expected: "a mapping",
        });
    }
    let title = text(v, "title")?;
    let id = text(v, "id")?;
    if !plain_id(&id) {
        return Err(RuleErrorKind::Type {
            key: "id".into(),
            expected: "letters, digits, '-', '_' or '.' (a UUID)",
        });
    }
    let name = match v.get("name") {
        None | Some(Yaml::Null) => id.clone(),
        Some(_) => text(v, "name")?,
    };
    if !plain_id(&name) {
        return Err(RuleErrorKind::Type {
            key: "name".into(),
            expected: "letters, digits, '-', '_' or '.'",
        });
    }
    let level = text(v, "level")?;
    let severity = Severity::parse(&level).ok_or(RuleErrorKind::Level(level))?;
    let logsource = match v.get("logsource") {
        Some(ls) => {
            let get = |k| ls.get(k).and_then(Yaml::as_str);
            match (get("product"), get("service"), get("category")) {
                (Some("kubernetes"), Some("audit"), None) => LogSource::KubernetesAudit,
                (Some("aws"), Some("cloudtrail"), None) => LogSource::CloudTrail,
                (p, s, c) => {
                    return Err(RuleErrorKind::LogSource(format!(
                        "product {p:?} service {s:?} category {c:?}"
                    )))
                }
            }
        }
        None => return Err(RuleErrorKind::Missing("logsource")),
    };
    let techniques = strings(v, "tags")?
        .iter()
        .filter_map(|t| technique(t))
        .collect();
    let detection = match v.get("detection") {
        Some(Yaml::Mapping(m)) => m,
        None | Some(Yaml::Null) => return Err(RuleErrorKind::Missing("detection")),
        Some(_) => {
            return Err(RuleErrorKind::Type {
                key: "detection".into(),
                expected: "a mapping",
            })
        }
    };
    let cx = Ctx {
        source: logsource,
        placeholders,
        unset: Default::default(),
    };
    let (selections, condition) = compile_detection(detection, &cx)?;
    let unset = cx.unset.into_inner();
    Ok(Rule {
        id,
        name,
        title,
        description: v
            .get("description")
            .and_then(Yaml::as_str)
            .unwrap_or_default()
            .trim()
            .to_owned(),
        severity,
        techniques,
        falsepositives: strings(v, "falsepositives")?,
        logsource,
        file: file.to_owned(),
        resources: required(&condition, &selections, Scalar::ObjectResource),
        verbs: required(&condition, &selections, Scalar::Verb),
        off: (!unset.is_empty()).then(|| {
            format!(
                "placeholder {} has no values (see schemas/rules/README.md)",
                unset
                    .iter()
                    .map(|n| format!("%{n}%"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }),
        selections,
        condition,
    })
}

/// The exact values (lowercase) `field` must take for `c` to hold, when `c` requires
/// one: a necessary condition only, used to skip rules that cannot match an event.
/// `not` gives nothing; `and` the intersection of what its operands require; `or` and
/// a selection's alternatives the union, or nothing if one of them requires nothing.
fn required(c: &Cond, sels: &[Selection], field: Scalar) -> Option<Vec<String>> {
    fn union(parts: impl Iterator<Item = Option<Vec<String>>>) -> Option<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        for p in parts {
            out.extend(p?);
        }
        out.sort();
        out.dedup();
        Some(out)
    }
    fn intersect(a: Option<Vec<String>>, b: Option<Vec<String>>) -> Option<Vec<String>> {
        match (a, b) {
            (Some(a), Some(b)) => Some(a.into_iter().filter(|x| b.contains(x)).collect()),
            (a, None) => a,
            (None, b) => b,
        }
    }
    let of_matcher = |m: &Matcher| -> Option<Vec<String>> {
        match (&m.field, &m.test) {
            (
                Field::Scalar(f),
                Test::Values {
                    patterns,
                    all: false,
                    or_null: false,
                },
            ) if *f == field => patterns
                .iter()
                .map(|p| match p {
                    // a cased pattern's value, lowercased, is still necessary
                    Pattern::Str {
                        glob: Glob::Exact(v),
                        ..
                    } => Some(v.to_ascii_lowercase()),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    };
    match c {
        Cond::Sel(i) => union(
            sels[*i]
                .any_of
                .iter()
                .map(|all| all.iter().map(of_matcher).fold(None, intersect)),
        ),
        Cond::Not(_) => None,
        Cond::And(cs) => cs
            .iter()
            .map(|c| required(c, sels, field))
            .fold(None, intersect),
        Cond::Or(cs) => union(cs.iter().map(|c| required(c, sels, field))),
    }
}

/// `attack.t1609` -> `T1609`, `attack.t1574.002` -> `T1574.002`; tactics are not ids.
fn technique(tag: &str) -> Option<String> {
    let t = tag.strip_prefix("attack.")?;
    let rest = t.strip_prefix('t').or_else(|| t.strip_prefix('T'))?;
    let (main, sub) = rest.split_once('.').unwrap_or((rest, ""));
    let digits = |s: &str, n| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    (digits(main, 4) && (sub.is_empty() || digits(sub, 3))).then(|| format!("T{rest}"))
}

fn compile_detection(d: &Mapping, cx: &Ctx<'_>) -> Result<(Vec<Selection>, Cond), RuleErrorKind> {
    let mut selections = Vec::new();
    let mut condition = None;
    for (k, v) in d {
        let Some(name) = k.as_str() else {
            return Err(RuleErrorKind::Type {
                key: "a detection key".into(),
                expected: "a string",
            });
        };
        if name == "condition" {
            condition = Some(v);
            continue;
        }
        if name == "timeframe" {
            return Err(RuleErrorKind::Selection(
                name.into(),
                "timeframe (correlation) is not supported".into(),
            ));
        }
        let sel = |why: String| RuleErrorKind::Selection(name.into(), why);
        let any_of = match v {
            Yaml::Mapping(m) => vec![compile_map(m, name, cx)?],
            Yaml::Sequence(items) if !items.is_empty() && items.iter().all(Yaml::is_mapping) => {
                items
                    .iter()
                    .map(|i| compile_map(i.as_mapping().expect("checked"), name, cx))
                    .collect::<Result<_, _>>()?
            }
            Yaml::Sequence(_) => {
                return Err(sel(
                    "keyword (field-less) lists are not supported: name the field".into(),
                ))
            }
            _ => return Err(sel("must be a mapping or a list of mappings".into())),
        };
        selections.push(Selection {
            name: name.into(),
            any_of,
        });
    }
    let conds: Vec<String> = match condition {
        Some(Yaml::String(s)) => vec![s.clone()],
        Some(Yaml::Sequence(s)) if !s.is_empty() => s
            .iter()
            .map(|c| c.as_str().map(str::to_owned).ok_or(()))
            .collect::<Result<_, _>>()
            .map_err(|_| RuleErrorKind::Type {
                key: "condition".into(),
                expected: "a string or a list of strings",
            })?,
        None | Some(Yaml::Null) => return Err(RuleErrorKind::Missing("condition")),
        Some(_) => {
            return Err(RuleErrorKind::Type {
                key: "condition".into(),
                expected: "a string or a list of strings",
            })
        }
    };
    let mut parsed = Vec::new();
    for c in conds {
        parsed.push(
            parse_condition(&c, &selections).map_err(|why| RuleErrorKind::Condition {
                condition: c.clone(),
                why,
            })?,
        );
    }
    let mut cond = if parsed.len() == 1 {
        parsed.pop().expect("one")
    } else {
        Cond::Or(parsed)
    };
    cheap_first(&mut cond, &selections);
    Ok((selections, cond))
}

fn compile_map(m: &Mapping, sel: &str, cx: &Ctx<'_>) -> Result<Vec<Matcher>, RuleErrorKind> {
    let mut out = Vec::new();
    for (k, v) in m {
        let Some(key) = k.as_str() else {
            return Err(RuleErrorKind::Selection(
                sel.into(),
                "field names must be strings".into(),
            ));
        };
        out.push(compile_matcher(key, v, sel, cx)?);
    }
    if out.is_empty() {
        return Err(RuleErrorKind::Selection(sel.into(), "is empty".into()));
    }
    out.sort_by_key(|m| m.field.cost());
    Ok(out)
}

#[derive(Default)]
struct Mods {
    contains: bool,
    startswith: bool,
    endswith: bool,
    all: bool,
    exists: bool,
    cased: bool,
    expand: bool,
    num: Option<NumOp>,
}

fn compile_matcher(key: &str, v: &Yaml, sel: &str, cx: &Ctx<'_>) -> Result<Matcher, RuleErrorKind> {
    let mut parts = key.split('|');
    let fname = parts.next().unwrap_or_default();
    let field = Field::parse_in(cx.source, fname)
        .ok_or_else(|| RuleErrorKind::Field(fname.into(), cx.source.as_str()))?;
    let mut m = Mods::default();
    for modifier in parts {
        let bad = || RuleErrorKind::Modifier {
            field: fname.into(),
            modifier: modifier.into(),
        };
        match modifier {
            "contains" => m.contains = true,
            "startswith" => m.startswith = true,
            "endswith" => m.endswith = true,
            "all" => m.all = true,
            "exists" => m.exists = true,
            "cased" => m.cased = true,
            "expand" => m.expand = true,
            "gt" => m.num = Some(NumOp::Gt),
            "gte" => m.num = Some(NumOp::Gte),
            "lt" => m.num = Some(NumOp::Lt),
            "lte" => m.num = Some(NumOp::Lte),
            _ => return Err(bad()),
        }
    }
    let selerr = |why: String| RuleErrorKind::Selection(sel.into(), format!("`{key}`: {why}"));
    if [m.contains, m.startswith, m.endswith]
        .iter()
        .filter(|b| **b)
        .count()
        > 1
    {
        return Err(selerr(
            "contains, startswith and endswith exclude each other".into(),
        ));
    }
    if m.exists {
        return match v {
            Yaml::Bool(b)
                if !m.all && !m.contains && !m.startswith && !m.endswith && m.num.is_none() =>
            {
                Ok(Matcher {
                    field,
                    test: Test::Exists(*b),
                })
            }
            _ => Err(selerr("exists takes true or false, alone".into())),
        };
    }
    let values: Vec<&Yaml> = match v {
        Yaml::Sequence(s) if s.is_empty() => return Err(selerr("an empty list".into())),
        Yaml::Sequence(s) => s.iter().collect(),
        other => vec![other],
    };
    // `|expand`: each `%name%` value stands for the placeholder's values
    let mut expanded: Vec<Yaml> = Vec::new();
    if m.expand {
        if m.num.is_some() {
            return Err(selerr("expand takes placeholders, not numbers".into()));
        }
        for val in &values {
            let name = val
                .as_str()
                .and_then(|s| s.strip_prefix('%'))
                .and_then(|s| s.strip_suffix('%'))
                .filter(|n| plain_id(n))
                .ok_or_else(|| selerr("expand values must be placeholders like %name%".into()))?;
            match cx.placeholders.get(name) {
                Some(vs) => expanded.extend(vs.iter().map(|v| Yaml::String(v.clone()))),
                None => cx.unset.borrow_mut().push(name.to_owned()),
            }
        }
        if expanded.is_empty() {
            // the rule is off; it still compiles, to be listed
            return Ok(Matcher {
                field,
                test: Test::Values {
                    patterns: Vec::new(),
                    all: false,
                    or_null: false,
                },
            });
        }
    }
    let values: Vec<&Yaml> = if m.expand {
        expanded.iter().collect()
    } else {
        values
    };
    let mut patterns = Vec::new();
    let mut or_null = false;
    for val in values {
        if val.is_null() {
            or_null = true;
            continue;
        }
        if let Some(op) = m.num {
            let value = match val {
                Yaml::Number(n) => n.as_f64(),
                _ => None,
            }
            .ok_or_else(|| selerr("gt/gte/lt/lte compare with a number".into()))?;
            patterns.push(Pattern::Num { op, value });
            continue;
        }
        let s = scalar_text(val)
            .ok_or_else(|| selerr("values must be strings, numbers, booleans or null".into()))?;
        let mut toks = glob_tokens(&s, m.cased);
        if m.contains || m.endswith {
            toks.insert(0, Tok::Any);
        }
        if m.contains || m.startswith {
            toks.push(Tok::Any);
        }
        patterns.push(Pattern::Str {
            glob: simplify(toks),
            cased: m.cased,
        });
    }
    if patterns.is_empty() {
        if m.all {
            return Err(selerr("all needs values".into()));
        }
        return Ok(Matcher {
            field,
            test: Test::Exists(false),
        });
    }
    if m.all && or_null {
        return Err(selerr("all and null exclude each other".into()));
    }
    Ok(Matcher {
        field,
        test: Test::Values {
            patterns,
            all: m.all,
            or_null,
        },
    })
}

/// Sigma wildcards: `*` any run, `?` one character; `\*`, `\?`, `\\` are literals (a
/// backslash before anything else is itself).
fn glob_tokens(s: &str, cased: bool) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut lit = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some('*' | '?' | '\\')) => {
                lit.push(chars.next().expect("peeked"));
            }
            '*' | '?' => {
                if !lit.is_empty() {
                    toks.push(Tok::Lit(std::mem::take(&mut lit)));
                }
                let t = if c == '*' { Tok::Any } else { Tok::One };
                if !(t == Tok::Any && toks.last() == Some(&Tok::Any)) {
                    toks.push(t);
                }
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        toks.push(Tok::Lit(lit));
    }
    if !cased {
        for t in &mut toks {
            if let Tok::Lit(l) = t {
                l.make_ascii_lowercase();
            }
        }
    }
    toks
}

fn simplify(mut toks: Vec<Tok>) -> Glob {
    toks.dedup_by(|a, b| *a == Tok::Any && *b == Tok::Any);
    let lit = |t: &Tok| match t {
        Tok::Lit(l) => Some(l.clone()),
        _ => None,
    };
    match toks.as_slice() {
        [] => Glob::Exact(String::new()),
        [Tok::Lit(l)] => Glob::Exact(l.clone()),
        [Tok::Lit(l), Tok::Any] => Glob::Prefix(l.clone()),
        [Tok::Any, Tok::Lit(l)] => Glob::Suffix(l.clone()),
        [Tok::Any, m, Tok::Any] if lit(m).is_some() => Glob::Contains(lit(m).expect("lit")),
        _ => Glob::Wild(toks),
    }
}

// ---- conditions -------------------------------------------------------------------------

/// What evaluating a condition may cost: its dearest field (typed fields, then lists,
/// annotations, bodies).
fn cost(c: &Cond, sels: &[Selection]) -> u8 {
    match c {
        Cond::Sel(i) => sels[*i]
            .any_of
            .iter()
            .flatten()
            .map(|m| m.field.cost())
            .max()
            .unwrap_or(0),
        Cond::Not(c) => cost(c, sels),
        Cond::And(cs) | Cond::Or(cs) => cs.iter().map(|c| cost(c, sels)).max().unwrap_or(0),
    }
}

/// Order `and`/`or` operands cheapest first (their meaning does not depend on the
/// order): most events fail a rule on a typed field before any body is read.
fn cheap_first(c: &mut Cond, sels: &[Selection]) {
    match c {
        Cond::Sel(_) => {}
        Cond::Not(c) => cheap_first(c, sels),
        Cond::And(cs) | Cond::Or(cs) => {
            for c in cs.iter_mut() {
                cheap_first(c, sels);
            }
            cs.sort_by_key(|c| cost(c, sels));
        }
    }
}

fn parse_condition(s: &str, sels: &[Selection]) -> Result<Cond, String> {
    if s.contains('|') {
        return Err("aggregations (`| count() ...`) are not supported".into());
    }
    let spaced = s.replace('(', " ( ").replace(')', " ) ");
    let toks: Vec<&str> = spaced.split_whitespace().collect();
    if toks.is_empty() {
        return Err("is empty".into());
    }
    let mut p = CondParser {
        toks: &toks,
        at: 0,
        sels,
    };
    let c = p.or()?;
    if p.at != toks.len() {
        return Err(format!("unexpected `{}`", toks[p.at]));
    }
    Ok(c)
}

struct CondParser<'t> {
    toks: &'t [&'t str],
    at: usize,
    sels: &'t [Selection],
}

impl<'t> CondParser<'t> {
    fn peek(&self) -> Option<&'t str> {
        self.toks.get(self.at).copied()
    }

    fn next(&mut self) -> Option<&'t str> {
        let t = self.peek();
        self.at += 1;
        t
    }

    fn or(&mut self) -> Result<Cond, String> {
        self.chain("or", Self::and, Cond::Or)
    }

    fn and(&mut self) -> Result<Cond, String> {
        self.chain("and", Self::not, Cond::And)
    }

    /// `operand (keyword operand)*`, one operand alone as itself.
    fn chain(
        &mut self,
        keyword: &str,
        operand: fn(&mut Self) -> Result<Cond, String>,
        node: fn(Vec<Cond>) -> Cond,
    ) -> Result<Cond, String> {
        let mut v = vec![operand(self)?];
        while self.peek().is_some_and(|t| t.eq_ignore_ascii_case(keyword)) {
            self.at += 1;
            v.push(operand(self)?);
        }
        Ok(if v.len() == 1 { v.remove(0) } else { node(v) })
    }

    fn not(&mut self) -> Result<Cond, String> {
        if self.peek().is_some_and(|t| t.eq_ignore_ascii_case("not")) {
            self.at += 1;
            return Ok(Cond::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Cond, String> {
        let Some(t) = self.next().map(str::to_owned) else {
            return Err("ends too early".into());
        };
        match t.as_str() {
            "(" => {
                let c = self.or()?;
                match self.next() {
                    Some(")") => Ok(c),
                    _ => Err("a `(` is not closed".into()),
                }
            }
            ")" => Err("unexpected `)`".into()),
            "1" | "all" if self.peek().is_some_and(|t| t.eq_ignore_ascii_case("of")) => {
                self.at += 1;
                let Some(target) = self.next().map(str::to_owned) else {
                    return Err(format!("`{t} of` needs a selection pattern or `them`"));
                };
                let members: Vec<Cond> = self
                    .sels
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| {
                        if target == "them" {
                            !s.name.starts_with('_')
                        } else {
                            let toks = glob_tokens(&target, true);
                            Glob::Wild(toks).matches(&s.name, true)
                        }
                    })
                    .map(|(i, _)| Cond::Sel(i))
                    .collect();
                if members.is_empty() {
                    return Err(format!("`{target}` names no selection"));
                }
                Ok(if t == "1" {
                    Cond::Or(members)
                } else {
                    Cond::And(members)
                })
            }
            name => match self.sels.iter().position(|s| s.name == name) {
                Some(i) => Ok(Cond::Sel(i)),
                None if ["and", "or", "not", "of"]
                    .iter()
                    .any(|k| name.eq_ignore_ascii_case(k)) =>
                {
                    Err(format!("unexpected `{name}`"))
                }
                None => Err(format!("`{name}` is not a selection of the rule")),
            },
        }
    }
}

// ---- rule sets --------------------------------------------------------------------------

/// The rules in force: the shipped pack plus the operator's.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// Every body path the rules read, so that an event's body is walked once.
    pub bodies: BodyPaths,
    /// `kubernetes/audit` rules by the `objectRef.resource` values they require, and
    /// those requiring none.
    by_resource: std::collections::HashMap<String, Vec<u16>>,
    any_resource: Vec<u16>,
    /// `aws/cloudtrail` rules (EKS API calls are few: no index).
    cloudtrail: Vec<u16>,
}

impl RuleSet {
    /// Compile files (name, text) into one set; ids and names must be unique across it.
    pub fn from_files<'f>(
        files: impl IntoIterator<Item = (&'f str, &'f str)>,
    ) -> Result<Self, RuleError> {
        Self::from_files_with(files, &Placeholders::default())
    }

    /// [`RuleSet::from_files`], expanding `|expand` placeholders.
    pub fn from_files_with<'f>(
        files: impl IntoIterator<Item = (&'f str, &'f str)>,
        placeholders: &Placeholders,
    ) -> Result<Self, RuleError> {
        let mut set = RuleSet::default();
        for (file, text) in files {
            for r in parse_file_with(file, text, placeholders)? {
                set.add(r)?;
            }
        }
        Ok(set)
    }

    pub fn add(&mut self, mut r: Rule) -> Result<(), RuleError> {
        if let Some(o) = self
            .rules
            .iter()
            .find(|o| o.id == r.id || o.name == r.name || o.id == r.name || o.name == r.id)
        {
            return Err(RuleError {
                file: r.file.clone(),
                rule: r.name.clone(),
                kind: RuleErrorKind::Duplicate(r.id.clone(), format!("{} in {}", o.name, o.file)),
            });
        }
        if self.rules.len() >= u16::MAX as usize {
            return Err(RuleError {
                file: r.file.clone(),
                rule: r.name.clone(),
                kind: RuleErrorKind::Selection(String::new(), "too many rules".into()),
            });
        }
        for sel in &mut r.selections {
            for m in sel.any_of.iter_mut().flatten() {
                if let Field::Body(bp) = &mut m.field {
                    self.bodies.intern(bp).map_err(|kind| RuleError {
                        file: r.file.clone(),
                        rule: r.name.clone(),
                        kind,
                    })?;
                }
            }
        }
        let i = self.rules.len() as u16;
        match (&r.off, r.logsource, &r.resources) {
            // listed, never evaluated
            (Some(_), _, _) => {}
            (None, LogSource::CloudTrail, _) => self.cloudtrail.push(i),
            (None, LogSource::KubernetesAudit, Some(rs)) => {
                for res in rs {
                    self.by_resource.entry(res.clone()).or_default().push(i);
                }
            }
            (None, LogSource::KubernetesAudit, None) => self.any_resource.push(i),
        }
        self.rules.push(r);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules that may match an event with this `objectRef.resource`, in rule order,
    /// appended to `out` (cleared first).
    pub fn candidates(&self, resource: Option<&str>, out: &mut Vec<u16>) {
        out.clear();
        let mut buf = [0u8; 64];
        let key = match resource {
            None => None,
            Some(r) if r.len() <= buf.len() => {
                let b = &mut buf[..r.len()];
                b.copy_from_slice(r.as_bytes());
                b.make_ascii_lowercase();
                std::str::from_utf8(b).ok()
            }
            // longer than any resource name: no index, every rule is tried
            Some(_) => {
                out.extend(0..self.rules.len() as u16);
                return;
            }
        };
        let specific = key
            .and_then(|k| self.by_resource.get(k))
            .map_or(&[][..], |v| v);
        // merge two ascending lists
        let (mut a, mut b) = (
            self.any_resource.iter().peekable(),
            specific.iter().peekable(),
        );
        loop {
            match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) if x < y => {
                    out.push(x);
                    a.next();
                }
                (Some(_), Some(&&y)) => {
                    out.push(y);
                    b.next();
                }
                (Some(&&x), None) => {
                    out.push(x);
                    a.next();
                }
                (None, Some(&&y)) => {
                    out.push(y);
                    b.next();
                }
                (None, None) => break,
            }
        }
    }

    /// The `aws/cloudtrail` rules in force, in rule order.
    pub fn cloudtrail(&self) -> &[u16] {
        &self.cloudtrail
    }

    /// A rule by id or name.
    pub fn get(&self, id_or_name: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|r| r.id == id_or_name || r.name == id_or_name)
    }
}

// ---- SQL --------------------------------------------------------------------------------

/// What a retro-hunt of an `aws/cloudtrail` rule returns per finding (columns of
/// `eks_api_events_attributed`).
pub const RETRO_TRAIL_COLUMNS: &[&str] = &[
    "event_time",
    "account_id",
    "region",
    "cluster",
    "log_group",
    "log_stream",
    "cwl_event_id",
    "event_id",
    "event_name",
    "error_code",
    "target_principal_arn",
    "access_policy_arn",
    "audit_logging_enabled",
    "endpoint_public_access",
    "source_ip",
    "user_agent",
    "caller_arn",
    "principal_type",
    "principal_name",
    "principal_arn",
    "principal_account_id",
    "role_chain",
    "attribution_status",
    "dt",
];

/// What a retro-hunt returns per finding (columns of `eks_audit_attributed`).
pub const RETRO_COLUMNS: &[&str] = &[
    "event_time",
    "account_id",
    "region",
    "cluster",
    "log_group",
    "log_stream",
    "cwl_event_id",
    "audit_id",
    "verb",
    "request_uri",
    "object_resource",
    "object_subresource",
    "object_namespace",
    "object_name",
    "source_ip",
    "user_agent",
    "username",
    "principal_type",
    "principal_name",
    "principal_arn",
    "principal_account_id",
    "role_chain",
    "attribution_status",
    "dt",
];

/// A string literal in SQL.
pub fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The values of a body path in Athena (Trino) SQL: every scalar the lax path reaches,
/// as text (strings unquoted, numbers and booleans as JSON text, objects dropped).
/// `tests/lakesql.py` replaces exactly this expression for DuckDB.
fn body_values(column: &str, path: &[String]) -> String {
    let mut p = String::from("lax $");
    for seg in path {
        let _ = write!(p, ".\"{}\"", seg.replace('\\', "\\\\").replace('"', "\\\""));
    }
    p.push_str("[*]");
    format!(
        "transform(CAST(json_parse(json_query({column}, {} WITH ARRAY WRAPPER)) AS array(json)), j -> json_extract_scalar(j, '$'))",
        sql_str(&p)
    )
}

enum SqlField {
    /// A scalar expression (NULL: no value).
    Scalar(String),
    /// An array expression (NULL elements are no values).
    List(String),
}

fn sql_field(f: &Field) -> SqlField {
    match f {
        Field::Scalar(Scalar::ResponseCode) => {
            SqlField::Scalar("CAST(response_code AS varchar)".into())
        }
        Field::Scalar(s) => SqlField::Scalar(
            SCALARS
                .iter()
                .find(|x| x.1 == *s)
                .map(|x| x.2)
                .expect("every scalar has a column")
                .into(),
        ),
        Field::List(l) => SqlField::List(
            LISTS
                .iter()
                .find(|x| x.1 == *l)
                .map(|x| x.2)
                .expect("every list has a column")
                .into(),
        ),
        Field::Extra(k) => SqlField::List(format!("element_at(user_extra, {})", sql_str(k))),
        Field::Annotation(k) => {
            SqlField::Scalar(format!("element_at(annotations, {})", sql_str(k)))
        }
        Field::Body(BodyPath {
            body: Body::Request,
            path,
            ..
        }) => SqlField::List(body_values("request_object", path)),
        Field::Body(BodyPath {
            body: Body::Response,
            path,
            ..
        }) => SqlField::List(body_values("response_object", path)),
        Field::Body(BodyPath {
            body: Body::Parameters,
            path,
            ..
        }) => SqlField::List(body_values("request_parameters", path)),
        Field::Body(BodyPath {
            body: Body::Elements,
            path,
            ..
        }) => SqlField::List(body_values("response_elements", path)),
        Field::Trail(t) => {
            let (col, boolean) = TRAIL
                .iter()
                .find(|x| x.1 == *t)
                .map(|x| (x.2, x.3))
                .expect("every trail field has a column");
            // booleans compare as their JSON text, as at ingest
            SqlField::Scalar(if boolean {
                format!("CAST({col} AS varchar)")
            } else {
                col.into()
            })
        }
        Field::TrailList(l) => SqlField::List(
            TRAIL_LISTS
                .iter()
                .find(|x| x.1 == *l)
                .map(|x| x.2)
                .expect("every trail list has a column")
                .into(),
        ),
    }
}

fn like_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

impl Pattern {
    /// The pattern as a predicate over the non-NULL text `x`.
    fn sql(&self, x: &str) -> String {
        match self {
            Pattern::Num { op, value } => {
                let op = match op {
                    NumOp::Gt => ">",
                    NumOp::Gte => ">=",
                    NumOp::Lt => "<",
                    NumOp::Lte => "<=",
                };
                format!("COALESCE(TRY_CAST({x} AS double) {op} {value:?}, false)")
            }
            Pattern::Str { glob, cased } => {
                let x = if *cased {
                    x.to_owned()
                } else {
                    format!("lower({x})")
                };
                let like = |p: String| format!("{x} LIKE {} ESCAPE '\\'", sql_str(&p));
                match glob {
                    Glob::Exact(s) => format!("{x} = {}", sql_str(s)),
                    Glob::Prefix(s) => like(format!("{}%", like_escape(s))),
                    Glob::Suffix(s) => like(format!("%{}", like_escape(s))),
                    Glob::Contains(s) => like(format!("%{}%", like_escape(s))),
                    Glob::Wild(toks) => like(
                        toks.iter()
                            .map(|t| match t {
                                Tok::Any => "%".to_owned(),
                                Tok::One => "_".to_owned(),
                                Tok::Lit(l) => like_escape(l),
                            })
                            .collect(),
                    ),
                }
            }
        }
    }
}

impl Matcher {
    fn sql(&self) -> String {
        let field = sql_field(&self.field);
        // "some value satisfies p", over a scalar or an array
        let some = |p: &dyn Fn(&str) -> String| match &field {
            SqlField::Scalar(e) => format!("({e} IS NOT NULL AND {})", p(e)),
            SqlField::List(e) => format!(
                "EXISTS (SELECT 1 FROM UNNEST({e}) AS t(v) WHERE v IS NOT NULL AND {})",
                p("v")
            ),
        };
        match &self.test {
            Test::Exists(true) => some(&|_| "true".into()),
            Test::Exists(false) => format!("NOT {}", some(&|_| "true".into())),
            Test::Values {
                patterns,
                all: true,
                ..
            } => {
                let each: Vec<String> = patterns.iter().map(|p| some(&|x| p.sql(x))).collect();
                format!("({})", each.join(" AND "))
            }
            // an `|expand` placeholder without values: nothing matches
            Test::Values { patterns, .. } if patterns.is_empty() => "false".into(),
            Test::Values {
                patterns, or_null, ..
            } => {
                let any = some(&|x| {
                    let ps: Vec<String> = patterns.iter().map(|p| p.sql(x)).collect();
                    format!("({})", ps.join(" OR "))
                });
                if *or_null {
                    format!("({any} OR NOT {})", some(&|_| "true".into()))
                } else {
                    any
                }
            }
        }
    }
}

impl Rule {
    /// The rule's condition as an Athena SQL predicate over its view (audit rows that
    /// parsed: unparseable rows are never evaluated at ingest either).
    pub fn sql_condition(&self) -> String {
        match self.logsource {
            LogSource::KubernetesAudit => {
                format!("parse_status = 'ok' AND {}", self.cond_sql(&self.condition))
            }
            LogSource::CloudTrail => self.cond_sql(&self.condition),
        }
    }

    /// The rule as one Athena statement over `eks_audit_attributed` (days inclusive,
    /// `YYYY-MM-DD`): the findings it would have raised, with the person behind each.
    pub fn sql_query(&self, days: Option<(&str, &str)>) -> String {
        let one_line = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let dt = match days {
            Some((from, to)) => format!("dt BETWEEN {} AND {}\n  AND ", sql_str(from), sql_str(to)),
            None => String::new(),
        };
        let techniques: Vec<String> = self.techniques.iter().map(|t| sql_str(t)).collect();
        format!(
            "-- {name} ({level}): {title}\n-- id {id}, from {file}{warn}{off}\nSELECT {rid} AS rule_id, {rname} AS rule_name, {rtitle} AS rule_title,\n  {sev} AS severity, ARRAY[{tech}] AS mitre_techniques,\n  {cols}\nFROM {view}\nWHERE {dt}{cond}\nORDER BY event_time;\n",
            off = match &self.off {
                Some(why) => format!("\n-- off at ingest: {why}; this query would match as if the list were empty"),
                None => String::new(),
            },
            view = self.logsource.view(),
            name = one_line(&self.name),
            level = self.severity.as_str(),
            title = one_line(&self.title),
            id = self.id,
            file = one_line(&self.file),
            warn = if days.is_none() { "\n-- no dt filter: Athena scans every day (pass --from/--to)" } else { "" },
            rid = sql_str(&self.id),
            rname = sql_str(&self.name),
            rtitle = sql_str(&self.title),
            sev = sql_str(self.severity.as_str()),
            tech = techniques.join(", "),
            cols = match self.logsource {
                LogSource::KubernetesAudit => RETRO_COLUMNS,
                LogSource::CloudTrail => RETRO_TRAIL_COLUMNS,
            }
            .join(", "),
            cond = self.sql_condition(),
        )
    }

    fn cond_sql(&self, c: &Cond) -> String {
        match c {
            Cond::Sel(i) => {
                let alts: Vec<String> = self.selections[*i]
                    .any_of
                    .iter()
                    .map(|all| {
                        let ms: Vec<String> = all.iter().map(Matcher::sql).collect();
                        format!("({})", ms.join(" AND "))
                    })
                    .collect();
                format!("({})", alts.join(" OR "))
            }
            Cond::Not(c) => format!("NOT {}", self.cond_sql(c)),
            Cond::And(cs) => format!(
                "({})",
                cs.iter()
                    .map(|c| self.cond_sql(c))
                    .collect::<Vec<_>>()
                    .join(" AND ")
            ),
            Cond::Or(cs) => format!(
                "({})",
                cs.iter()
                    .map(|c| self.cond_sql(c))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flat test event: field name -> values.
    struct Flat(Vec<(&'static str, Vec<&'static str>)>);

    impl Event for Flat {
        fn any_value(&self, field: &Field, f: &mut dyn FnMut(Value<'_>) -> bool) -> bool {
            self.0
                .iter()
                .filter(|(n, _)| {
                    Field::parse(n).or_else(|| Field::parse_trail(n)).as_ref() == Some(field)
                })
                .flat_map(|(_, vs)| vs.iter())
                .any(|v| f(Value::Str(v)))
        }
    }

    fn rule(detection: &str) -> Result<Rule, RuleError> {
        let y = format!(
            "title: t\nid: 0b4e3a52-5c1e-4f7e-9a55-000000000001\nlevel: high\nlogsource: {{product: kubernetes, service: audit}}\ntags: [attack.t1609, attack.execution]\ndetection:\n{detection}"
        );
        parse_file("t.yml", &y).map(|mut v| v.remove(0))
    }

    fn ev(fields: &[(&'static str, &[&'static str])]) -> Flat {
        Flat(fields.iter().map(|(n, v)| (*n, v.to_vec())).collect())
    }

    #[test]
    fn selections_modifiers_and_conditions() {
        let r = rule(
            "  sel:\n    verb: [create, get]\n    objectRef.subresource: exec\n  ns:\n    objectRef.namespace|startswith: KUBE-\n  condition: sel and not ns\n",
        )
        .unwrap();
        assert_eq!(r.techniques, ["T1609"]);
        let e = ev(&[("verb", &["CREATE"]), ("objectRef.subresource", &["exec"])]);
        assert!(r.matches(&e), "case-insensitive by default");
        let e = ev(&[
            ("verb", &["get"]),
            ("objectRef.subresource", &["exec"]),
            ("objectRef.namespace", &["kube-system"]),
        ]);
        assert!(!r.matches(&e));
        let e = ev(&[("verb", &["get"])]);
        assert!(!r.matches(&e), "an absent field matches no value");
    }

    #[test]
    fn wildcards_lists_all_exists_null_and_numbers() {
        let r = rule("  s:\n    userAgent: 'curl/*'\n  condition: s\n").unwrap();
        assert!(r.matches(&ev(&[("userAgent", &["curl/8.5.0"])])));
        assert!(!r.matches(&ev(&[("userAgent", &["kubectl/curl/1"])])));
        let r = rule("  s:\n    requestURI: '/a?c\\*'\n  condition: s\n").unwrap();
        assert!(r.matches(&ev(&[("requestURI", &["/abc*"])])));
        assert!(!r.matches(&ev(&[("requestURI", &["/abcd"])])));
        let r = rule("  s:\n    user.groups|all: [a, b]\n  condition: s\n").unwrap();
        assert!(r.matches(&ev(&[("user.groups", &["b", "x", "a"])])));
        assert!(!r.matches(&ev(&[("user.groups", &["a"])])));
        let r = rule("  s:\n    impersonatedUser.username|exists: true\n  condition: s\n").unwrap();
        assert!(r.matches(&ev(&[("impersonatedUser.username", &["x"])])));
        assert!(!r.matches(&ev(&[])));
        let r = rule("  s:\n    objectRef.namespace: null\n  condition: s\n").unwrap();
        assert!(r.matches(&ev(&[])));
        assert!(!r.matches(&ev(&[("objectRef.namespace", &["x"])])));
        let r = rule("  s:\n    responseStatus.code|lt: 400\n  condition: s\n").unwrap();
        assert!(r.matches(&ev(&[("responseStatus.code", &["201"])])));
        assert!(!r.matches(&ev(&[("responseStatus.code", &["403"])])));
        let r = rule("  s:\n    userAgent|contains|cased: Py\n  condition: s\n").unwrap();
        assert!(r.matches(&ev(&[("userAgent", &["aPyb"])])));
        assert!(!r.matches(&ev(&[("userAgent", &["apyb"])])));
    }

    fn trail_rule(detection: &str, ph: &Placeholders) -> Result<Rule, RuleError> {
        let y = format!(
            "title: t\nid: 0b4e3a52-5c1e-4f7e-9a55-000000000002\nlevel: medium\nlogsource: {{product: aws, service: cloudtrail}}\ndetection:\n{detection}"
        );
        parse_file_with("t.yml", &y, ph).map(|mut v| v.remove(0))
    }

    #[test]
    fn cloudtrail_rules_read_trail_fields_and_expand_placeholders() {
        let d = "  sel:\n    eventName: CreateAccessEntry\n    errorCode: null\n  org:\n    target_principal_account_id|expand: '%org_accounts%'\n  condition: sel and not org\n";
        let ph = Placeholders::default().with(
            "org_accounts",
            vec!["111122223333".into(), "444455556666".into()],
        );
        let r = trail_rule(d, &ph).unwrap();
        assert_eq!(r.logsource, LogSource::CloudTrail);
        assert!(r.off.is_none());
        let call = |acct: &'static str| {
            ev(&[
                ("eventName", &["CreateAccessEntry"]),
                (
                    "target_principal_account_id",
                    std::slice::from_ref(Box::leak(Box::new(acct))),
                ),
            ])
        };
        assert!(r.matches(&call("999988887777")), "outside the organisation");
        assert!(!r.matches(&call("444455556666")));
        let sql = r.sql_query(Some(("2026-11-01", "2026-11-30")));
        assert!(sql.contains("FROM eks_api_events_attributed"), "{sql}");
        assert!(
            sql.contains("lower(target_principal_account_id) = '444455556666'"),
            "{sql}"
        );
        assert!(!sql.contains("parse_status"), "{sql}");
        // without values the rule is listed but off, and a set never evaluates it
        let r = trail_rule(d, &Placeholders::default()).unwrap();
        assert!(r.off.as_deref().unwrap().contains("%org_accounts%"));
        let mut set = RuleSet::default();
        set.add(r).unwrap();
        assert!(set.cloudtrail().is_empty());
        let mut out = Vec::new();
        set.candidates(None, &mut out);
        assert!(out.is_empty());
        // audit fields are not trail fields, and the other way round
        let e = trail_rule("  s:\n    verb: create\n  condition: s\n", &ph).unwrap_err();
        assert!(
            e.to_string()
                .contains("not a field of aws/cloudtrail events"),
            "{e}"
        );
        assert!(rule("  s:\n    eventName: x\n  condition: s\n").is_err());
        let e = trail_rule(
            "  s:\n    eventName|expand: CreateAccessEntry\n  condition: s\n",
            &ph,
        )
        .unwrap_err();
        assert!(e.to_string().contains("placeholders like %name%"), "{e}");
        // booleans compare as their JSON text; SQL casts the column the same way
        let r = trail_rule(
            "  s:\n    audit_logging_enabled: false\n  condition: s\n",
            &ph,
        )
        .unwrap();
        assert!(r.matches(&ev(&[("audit_logging_enabled", &["false"])])));
        assert!(r
            .sql_condition()
            .contains("CAST(audit_logging_enabled AS varchar)"));
        let r = trail_rule(
            "  s:\n    requestParameters.accessScope.type: cluster\n  condition: s\n",
            &ph,
        )
        .unwrap();
        assert!(
            r.sql_condition().contains("request_parameters"),
            "{}",
            r.sql_condition()
        );
    }

    /// The SQL a rule renders names real columns of its table, of the right type.
    #[test]
    fn every_field_maps_to_a_column_of_its_table() {
        use schemas::{ColType, EKS_API_EVENTS, EKS_AUDIT};
        let ty = |cols: &[schemas::Column], n: &str| {
            cols.iter()
                .find(|c| c.name == n)
                .map(|c| c.ty)
                .unwrap_or_else(|| panic!("no column {n}"))
        };
        for (_, _, col) in SCALARS {
            assert!(matches!(ty(EKS_AUDIT, col), ColType::Str | ColType::Int));
        }
        for (_, _, col) in LISTS {
            assert_eq!(ty(EKS_AUDIT, col), ColType::StrList);
        }
        for (_, _, col, boolean) in TRAIL {
            let want = if *boolean {
                ColType::Bool
            } else {
                ColType::Str
            };
            assert_eq!(ty(EKS_API_EVENTS, col), want, "{col}");
        }
        for (_, _, col) in TRAIL_LISTS {
            assert_eq!(ty(EKS_API_EVENTS, col), ColType::StrList);
        }
        for c in ["request_parameters", "response_elements"] {
            assert_eq!(ty(EKS_API_EVENTS, c), ColType::Str);
        }
        for c in RETRO_TRAIL_COLUMNS.iter().filter(|c| **c != "dt") {
            ty(EKS_API_EVENTS, c);
        }
    }

    #[test]
    fn one_of_all_of_and_them() {
        let r = rule("  sel_a:\n    verb: a\n  sel_b:\n    verb: b\n  _f:\n    verb: c\n  condition: 1 of sel_*\n").unwrap();
        assert!(r.matches(&ev(&[("verb", &["b"])])));
        assert!(!r.matches(&ev(&[("verb", &["c"])])));
        let r = rule("  a:\n    verb: a\n  b:\n    stage: s\n  condition: all of them\n").unwrap();
        assert!(r.matches(&ev(&[("verb", &["a"]), ("stage", &["S"])])));
        assert!(!r.matches(&ev(&[("verb", &["a"])])));
    }

    #[test]
    fn bad_rules_name_the_file_the_rule_and_the_problem() {
        let e = |d: &str| rule(d).unwrap_err().to_string();
        assert!(e("  s:\n    verb|re: x\n  condition: s\n").contains("modifier `re`"));
        assert!(e("  s:\n    objectRef.subResource: exec\n  condition: s\n")
            .contains("`objectRef.subResource` is not a field of kubernetes/audit events"));
        assert!(e("  s:\n    verb: x\n  condition: s | count() > 5\n").contains("aggregations"));
        assert!(e("  s:\n    verb: x\n  condition: s and t\n").contains("`t` is not a selection"));
        assert!(e("  s:\n    - foo\n  condition: s\n").contains("keyword"));
        assert!(e("  s:\n    verb: x\n  condition: (s\n").contains("not closed"));
        let err =
            parse_file("x.yml", "title: t\nname: my_rule\nid: a\nlevel: severe\n").unwrap_err();
        assert_eq!(err.file, "x.yml");
        assert_eq!(err.rule, "my_rule");
        assert!(err.to_string().contains("`level` \"severe\""), "{err}");
        let err = parse_file("y.yml", "title: [unclosed\n").unwrap_err();
        assert!(matches!(err.kind, RuleErrorKind::Yaml(_)), "{err}");
    }

    #[test]
    fn sql_renders_the_same_meaning() {
        let r = rule("  s:\n    verb: [create, 'ge?']\n    user.groups|contains: 'a_b%'\n    requestObject.spec.hostPID: true\n  f:\n    objectRef.namespace: null\n  condition: s and not f\n").unwrap();
        let sql = r.sql_condition();
        assert!(sql.starts_with("parse_status = 'ok' AND "), "{sql}");
        assert!(sql.contains("lower(verb) = 'create'"), "{sql}");
        assert!(sql.contains("lower(verb) LIKE 'ge_' ESCAPE '\\'"), "{sql}");
        assert!(sql.contains("LIKE '%a\\_b\\%%'"), "{sql}");
        assert!(
            sql.contains(
                "json_query(request_object, 'lax $.\"spec\".\"hostPID\"[*]' WITH ARRAY WRAPPER)"
            ),
            "{sql}"
        );
        assert!(
            sql.contains("NOT (object_namespace IS NOT NULL AND true)"),
            "{sql}"
        );
    }

    #[test]
    fn int_text_and_techniques() {
        let mut b = [0u8; 20];
        assert_eq!(int_text(0, &mut b), "0");
        assert_eq!(int_text(-403, &mut b), "-403");
        assert_eq!(int_text(i64::MIN, &mut b), i64::MIN.to_string());
        assert_eq!(technique("attack.t1574.002").as_deref(), Some("T1574.002"));
        assert_eq!(technique("attack.execution"), None);
    }
}
