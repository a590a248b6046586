//! Attribution: from an audit event's identity to the principal that started the session.
//!
//! Rules (DESIGN section 5): an access key proves which session made the request and is
//! followed through role chaining to the origin; a session name is client-chosen and is
//! only used when no key is logged, and then only if exactly one session (or several
//! from the same origin) matches role, name and lifetime. Several different origins are
//! `ambiguous`; no record yet is `pending`. Never guess.
//!
//! The SQL view `eks_audit_attributed` (schemas/src/view.rs) applies the same origin
//! rules; a test compares the two.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::arn;
use crate::cloudtrail::{StsEventName, StsSession};
pub use crate::model::{Attribution, AttributionMethod, AttributionStatus, PrincipalType};
use crate::model::{Identity, RoleSession};
use crate::workload::{self, IssuerClusters, Workload};

/// Longest role chain followed. Real chains are short; this bounds crafted input.
pub const MAX_CHAIN_DEPTH: usize = 16;

/// Tokens are valid for 15 minutes after signing and STS clocks may differ a little:
/// a session matched by name counts as live from 5 minutes before it was issued to
/// 15 minutes after it expired.
pub const LIFETIME_SKEW_BEFORE_MS: i64 = 5 * 60_000;
pub const LIFETIME_SKEW_AFTER_MS: i64 = 15 * 60_000;

/// The longest an assumed-role session lives: 12 hours (IAM's maximum
/// `DurationSeconds`; role chaining caps at 1 hour).
/// Docs: <https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html>
pub const MAX_SESSION_MS: i64 = 12 * 3_600_000;

/// When a session that was live at some event between `first_ms` and `last_ms` can
/// have been issued: from a maximal lifetime (plus skew) before the first event to the
/// skew after the last. The window a role + session-name lookup must search.
pub fn issue_window(first_ms: i64, last_ms: i64) -> (i64, i64) {
    (
        first_ms - MAX_SESSION_MS - LIFETIME_SKEW_AFTER_MS,
        last_ms + LIFETIME_SKEW_BEFORE_MS,
    )
}

fn owned(s: &Option<String>) -> Option<Cow<'static, str>> {
    s.clone().map(Cow::Owned)
}

fn account_of(arn_str: &Option<String>) -> Option<Cow<'static, str>> {
    arn_str
        .as_deref()
        .and_then(arn::parse)
        .map(|a| Cow::Owned(a.account.to_string()))
}

/// What one session says about where it came from.
enum Origin {
    Principal(Attribution<'static>),
    /// Role chaining: the caller used this key.
    Chained(String),
    /// The origin cannot be known from this record (role-owner copy, missing key).
    Unknown,
}

fn from_workload(w: Workload) -> Attribution<'static> {
    let mut a = Attribution::bare(
        w.kind,
        AttributionMethod::AccessKey,
        AttributionStatus::Resolved,
    );
    a.principal_name = Some(Cow::Owned(w.name));
    a.principal_arn = w.arn.map(Cow::Owned);
    a.principal_account_id = w.account.map(Cow::Owned);
    a.principal_cluster = w.cluster.map(Cow::Owned);
    a.principal_pod = w.pod.map(Cow::Owned);
    a
}

fn origin_of(s: &StsSession, issuers: &IssuerClusters) -> Origin {
    use PrincipalType as P;
    let resolved =
        |t: P| Attribution::bare(t, AttributionMethod::AccessKey, AttributionStatus::Resolved);
    // a pod, instance or function an AWS service started the session for
    if let Some(w) = workload::of(s, issuers) {
        let mut a = from_workload(w);
        a.source_identity = owned(&s.source_identity);
        return Origin::Principal(a);
    }
    let mut a = match s.event_name {
        StsEventName::AssumeRoleWithSAML => {
            let idc = s
                .saml_provider_arn
                .as_deref()
                .is_some_and(|p| p.contains(":saml-provider/AWSSSO_"));
            let mut a = resolved(if idc {
                P::IdentityCenterUser
            } else {
                P::SamlUser
            });
            a.principal_name = owned(&s.saml_subject);
            a.principal_arn = owned(&s.saml_provider_arn);
            a.principal_account_id = account_of(&s.role_arn);
            a
        }
        StsEventName::AssumeRoleWithWebIdentity => {
            let mut a = resolved(P::WebIdentity);
            a.principal_name = owned(&s.web_identity_subject);
            a.principal_arn = owned(&s.web_identity_provider);
            a.principal_account_id = account_of(&s.role_arn);
            a
        }
        StsEventName::GetFederationToken => {
            let mut a = resolved(P::FederatedUser);
            a.principal_name = owned(&s.role_session_name);
            a.principal_arn = owned(&s.assumed_role_arn);
            a.principal_account_id = owned(&s.caller_account_id);
            a
        }
        StsEventName::AssumeRole => {
            let t = match s.caller_type.as_deref() {
                Some("AssumedRole") => {
                    return match &s.caller_access_key_id {
                        Some(k) => Origin::Chained(k.clone()),
                        None => Origin::Unknown,
                    }
                }
                Some("AWSAccount") => return Origin::Unknown,
                Some("IAMUser") => P::IamUser,
                Some("Root") => P::Root,
                Some("AWSService") => P::AwsService,
                Some("FederatedUser") => P::FederatedUser,
                _ => P::Unknown,
            };
            let mut a = resolved(t);
            a.principal_name = if t == P::Root {
                Some(Cow::Borrowed("root"))
            } else {
                owned(&s.caller_user_name)
            };
            if t != P::AwsService {
                a.principal_arn = owned(&s.caller_arn);
                a.principal_account_id = owned(&s.caller_account_id);
            }
            a
        }
    };
    a.source_identity = owned(&s.source_identity);
    Origin::Principal(a)
}

/// The principal a session's credentials act as: (account, role or federated user
/// name, federated), from the issued ARN, else the requested role.
pub fn session_principal(s: &StsSession) -> Option<(&str, &str, bool)> {
    fn from(a: &str) -> Option<(&str, &str, bool)> {
        use arn::Principal as Pr;
        match arn::principal(a)? {
            Pr::AssumedRole { account, role, .. } => Some((account, role, false)),
            Pr::Role { account, name } => Some((account, name, false)),
            Pr::FederatedUser { account, name } => Some((account, name, true)),
            _ => None,
        }
    }
    match (&s.assumed_role_arn, &s.role_arn) {
        (Some(a), _) => from(a),
        (None, Some(r)) => from(r),
        _ => None,
    }
}

/// Is `s` a session of the principal the event claims? A session whose principal the
/// record does not say cannot contradict the claim.
pub fn session_matches(s: &StsSession, claims: &crate::model::Claims<'_>) -> bool {
    match session_principal(s) {
        Some((account, name, federated)) => claims.satisfied_by(account, name, federated),
        None => true,
    }
}

/// Sessions known for one batch: from the batch itself, the warm cache and the store.
/// Indexed by issued access key and by (role, `{{SessionName}}`).
#[derive(Debug, Default)]
pub struct SessionIndex {
    by_key: HashMap<String, Arc<StsSession>>,
    by_role_session: HashMap<(String, String), Vec<Arc<StsSession>>>,
    resolved: HashMap<String, Attribution<'static>>,
    issuers: Arc<IssuerClusters>,
}

/// Role + `{{SessionName}}` index key of a session.
pub fn role_session_key(s: &StsSession) -> Option<(String, String)> {
    let role = s.role_arn.as_deref()?;
    let name = s.role_session_name.as_deref()?;
    Some((
        arn::normalize_role_arn(role),
        arn::munge_session_name(name).into_owned(),
    ))
}

impl SessionIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// An index that names the cluster of IRSA sessions from their token's issuer.
    pub fn with_issuers(issuers: Arc<IssuerClusters>) -> Self {
        Self {
            issuers,
            ..Self::default()
        }
    }

    /// Add a session that issued credentials. A caller-account copy replaces a role-owner
    /// copy of the same key, never the reverse. Returns whether it was added or replaced.
    pub fn insert(&mut self, s: Arc<StsSession>) -> bool {
        let Some(key) = s.access_key_id.clone().filter(|_| s.issued()) else {
            return false;
        };
        if let Some(old) = self.by_key.get(&key) {
            if !(old.is_owner_copy() && !s.is_owner_copy()) {
                return false;
            }
        }
        self.resolved.clear();
        if let Some(rs) = role_session_key(&s) {
            let v = self.by_role_session.entry(rs).or_default();
            v.retain(|o| o.access_key_id.as_deref() != Some(key.as_str()));
            v.push(s.clone());
        }
        self.by_key.insert(key, s);
        true
    }

    pub fn get(&self, key: &str) -> Option<&Arc<StsSession>> {
        self.by_key.get(key)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The first key along `key`'s chain that this index does not hold, if any: what a
    /// store lookup must fetch before the chain can be followed further.
    pub fn missing_link(&self, key: &str) -> Option<String> {
        let mut cur = key.to_string();
        let mut seen = HashSet::new();
        for _ in 0..MAX_CHAIN_DEPTH {
            if !seen.insert(cur.clone()) {
                return None;
            }
            let Some(s) = self.by_key.get(&cur) else {
                return Some(cur);
            };
            match origin_of(s, &self.issuers) {
                Origin::Chained(next) => cur = next,
                _ => return None,
            }
        }
        None
    }

    /// Follow `key` to its origin.
    fn resolve_key(&self, key: &str) -> Attribution<'static> {
        let mut chain: Vec<Cow<'static, str>> = Vec::new();
        let mut source_identity: Option<String> = None;
        let mut user_id: Option<String> = None;
        let mut cur = key.to_string();
        let mut seen = HashSet::new();
        for _ in 0..MAX_CHAIN_DEPTH {
            if !seen.insert(cur.clone()) {
                break; // a cycle cannot happen in AWS; crafted records must not loop
            }
            let Some(s) = self.by_key.get(&cur) else {
                break;
            };
            if source_identity.is_none() {
                source_identity = s.source_identity.clone();
            }
            if user_id.is_none() {
                user_id = s.on_behalf_of_user_id.clone();
            }
            if let Some(r) = &s.role_arn {
                chain.push(Cow::Owned(r.clone()));
            }
            match origin_of(s, &self.issuers) {
                Origin::Principal(mut a) => {
                    chain.reverse();
                    a.role_chain = chain;
                    if a.source_identity.is_none() {
                        a.source_identity = source_identity.map(Cow::Owned);
                    }
                    a.principal_user_id = user_id.map(Cow::Owned);
                    return a;
                }
                Origin::Chained(next) => cur = next,
                Origin::Unknown => break,
            }
        }
        Attribution::pending(AttributionMethod::AccessKey)
    }

    /// Resolve every key once; call after the last insert and before attributing.
    pub fn finalize(&mut self) {
        let keys: Vec<String> = self.by_key.keys().cloned().collect();
        let resolved = keys
            .into_iter()
            .map(|k| {
                let a = self.resolve_key(&k);
                (k, a)
            })
            .collect();
        self.resolved = resolved;
    }

    fn by_key_attribution(&self, key: &str) -> Cow<'_, Attribution<'_>> {
        match self.resolved.get(key) {
            Some(a) => Cow::Borrowed(a),
            None if self.by_key.contains_key(key) => Cow::Owned(self.resolve_key(key)),
            None => Cow::Owned(Attribution::pending(AttributionMethod::AccessKey)),
        }
    }

    /// Sessions matching role, `{{SessionName}}` and (with skew) lifetime at `at_ms`.
    pub fn candidates<'s>(&'s self, rs: &RoleSession<'_>, at_ms: i64) -> Vec<&'s Arc<StsSession>> {
        let Some(v) = self
            .by_role_session
            .get(&(rs.role.clone(), rs.munged.to_string()))
        else {
            return Vec::new();
        };
        v.iter()
            .filter(|s| {
                at_ms >= s.event_time_ms - LIFETIME_SKEW_BEFORE_MS
                    && at_ms <= s.lifetime_end_ms() + LIFETIME_SKEW_AFTER_MS
            })
            .filter(|s| match &rs.raw {
                Some(raw) => s.role_session_name.as_deref() == Some(raw.as_ref()),
                None => true,
            })
            .collect()
    }

    /// Attribute one audit event. `username` names Kubernetes identities.
    pub fn attribute<'a>(
        &'a self,
        id: &'a Identity<'a>,
        username: Option<&'a str>,
        event_ms: i64,
    ) -> Cow<'a, Attribution<'a>> {
        Cow::Owned(match id {
            Identity::AccessKey { key, claims } => match self.by_key.get(key.as_ref()) {
                Some(s) if !session_matches(s, claims) => Attribution::bare(
                    PrincipalType::AssumedRole,
                    AttributionMethod::AccessKey,
                    AttributionStatus::Conflict,
                ),
                _ => return self.by_key_attribution(key),
            },
            _ => self.attribute_owned(id, username, event_ms),
        })
    }

    fn attribute_owned<'a>(
        &'a self,
        id: &'a Identity<'a>,
        username: Option<&'a str>,
        event_ms: i64,
    ) -> Attribution<'a> {
        use AttributionMethod as M;
        use AttributionStatus as S;
        use PrincipalType as P;
        let k8s = |t: P, name: Option<&'a str>| {
            let mut a = Attribution::bare(t, M::None, S::NotApplicable);
            a.principal_name = name.map(Cow::Borrowed);
            a
        };
        match id {
            Identity::Anonymous => k8s(P::Anonymous, username.or(Some("system:anonymous"))),
            Identity::ServiceAccount { name } => k8s(P::K8sServiceAccount, Some(name)),
            Identity::K8sSystem => k8s(P::K8sSystem, username),
            Identity::Unknown => k8s(P::Unknown, username),
            Identity::Direct {
                kind,
                name,
                arn,
                account,
            } => {
                let mut a = Attribution::bare(*kind, M::Direct, S::Resolved);
                a.principal_name = Some(Cow::Borrowed(name.as_ref()));
                a.principal_arn = Some(Cow::Borrowed(arn));
                a.principal_account_id = Some(Cow::Borrowed(account));
                a
            }
            Identity::AccessKey { .. } => self.attribute(id, username, event_ms).into_owned(),
            Identity::SessionName { candidates } => {
                let mut found: Vec<Attribution<'_>> = Vec::new();
                for rs in candidates {
                    for s in self.candidates(rs, event_ms) {
                        if let Some(k) = &s.access_key_id {
                            found.push(self.by_key_attribution(k).into_owned());
                        }
                    }
                }
                let Some(first) = found.first() else {
                    return Attribution::pending(M::SessionName);
                };
                if found.iter().all(|a| first.same_origin(a)) {
                    let mut a = found.swap_remove(0);
                    a.method = M::SessionName;
                    if found.iter().any(|o| o.role_chain != a.role_chain) {
                        // same person, different routes: the route is not known
                        a.role_chain.clear();
                    }
                    if found.iter().any(|o| o.principal_pod != a.principal_pod) {
                        // the same workload in several pods: which pod is not known
                        a.principal_pod = None;
                    }
                    a
                } else if found.len() > 1 {
                    Attribution::bare(P::AssumedRole, M::SessionName, S::Ambiguous)
                } else {
                    let mut a = found.swap_remove(0);
                    a.method = M::SessionName;
                    a
                }
            }
        }
    }
}
