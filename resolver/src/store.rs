//! Where sessions live between batches.
//!
//! The Lambda sees CloudTrail and audit events in different batches, so sessions indexed
//! in one batch must be found by the next: the transformer implements [`SessionStore`]
//! over the lake (`session_index/`, local directory or S3). Implementations here are the
//! in-memory store used by tests and the warm-Lambda cache.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::attribute::role_session_key;
use crate::cloudtrail::{same_call, StsSession};

/// What a session-store call was doing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    Get,
    Find,
    Put,
    Encode,
    Decode,
}

impl std::fmt::Display for StoreOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Get => "get",
            Self::Find => "find",
            Self::Put => "put",
            Self::Encode => "encode",
            Self::Decode => "decode",
        })
    }
}

/// A failed store call: the operation, what it was about (object, key, table) and the
/// backend's own error as the source.
#[derive(Debug, thiserror::Error)]
#[error("session store {op} {what}: {source}")]
pub struct StoreError {
    pub op: StoreOp,
    pub what: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl StoreError {
    pub fn new(
        op: StoreOp,
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            op,
            what: what.into(),
            source: source.into(),
        }
    }
}

/// What indexing one session did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Indexed {
    /// Written now.
    New,
    /// Already indexed by this same call: a retried batch, a replayed delivery, or the
    /// other copy of a cross-account call (same `eventID` or `sharedEventID`).
    Same,
    /// The key is indexed by a different record, which stays and is returned: an
    /// indexed session is never replaced (DESIGN 6).
    Conflict(Box<StsSession>),
    /// Not indexed: a failed call, nothing issued, the role-owner copy of a
    /// cross-account call (only the caller copy can be followed), or a key id that is
    /// not a plain AWS id.
    Skipped,
}

/// Does `s` go into a session index at all? (See [`Indexed::Skipped`].)
pub fn indexable(s: &StsSession) -> Option<&str> {
    s.access_key_id
        .as_deref()
        .filter(|_| s.issued() && !s.is_owner_copy())
}

/// Point lookups of STS sessions.
pub trait SessionStore: Send + Sync {
    /// The session that issued `access_key_id`.
    fn get(
        &self,
        access_key_id: &str,
    ) -> impl Future<Output = Result<Option<StsSession>, StoreError>> + Send;

    /// The sessions of several keys, in order (`None` for each unknown key): one request
    /// per key unless a store can batch (DynamoDB's `BatchGetItem`).
    fn get_many(
        &self,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<Option<StsSession>>, StoreError>> + Send {
        async move {
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                out.push(self.get(k).await?);
            }
            Ok(out)
        }
    }

    /// Sessions of `role` (normalised ARN) with `{{SessionName}}` `munged`, issued between
    /// `from_ms` and `to_ms`.
    fn find_by_role_session(
        &self,
        role: &str,
        munged: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> impl Future<Output = Result<Vec<StsSession>, StoreError>> + Send;

    /// Index sessions that issued credentials, never replacing an indexed one: one
    /// outcome per session, in order. Idempotent: a retried batch gets `Same`.
    fn put(
        &self,
        sessions: &[Arc<StsSession>],
    ) -> impl Future<Output = Result<Vec<Indexed>, StoreError>> + Send;
}

/// In-memory store for tests and for `auditlake` runs without a lake index.
#[derive(Debug, Default)]
pub struct MemorySessionStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    by_key: HashMap<String, StsSession>,
    by_role_session: HashMap<(String, String), Vec<String>>,
}

impl MemorySessionStore {
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.by_key.len()).unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SessionStore for MemorySessionStore {
    async fn get(&self, key: &str) -> Result<Option<StsSession>, StoreError> {
        Ok(self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .by_key
            .get(key)
            .cloned())
    }

    async fn find_by_role_session(
        &self,
        role: &str,
        munged: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<StsSession>, StoreError> {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(inner
            .by_role_session
            .get(&(role.to_string(), munged.to_string()))
            .into_iter()
            .flatten()
            .filter_map(|k| inner.by_key.get(k))
            .filter(|s| s.event_time_ms >= from_ms && s.event_time_ms <= to_ms)
            .cloned()
            .collect())
    }

    async fn put(&self, sessions: &[Arc<StsSession>]) -> Result<Vec<Indexed>, StoreError> {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = Vec::with_capacity(sessions.len());
        for s in sessions {
            let Some(key) = indexable(s) else {
                out.push(Indexed::Skipped);
                continue;
            };
            if let Some(old) = inner.by_key.get(key) {
                out.push(if same_call(old, s) {
                    Indexed::Same
                } else {
                    Indexed::Conflict(Box::new(old.clone()))
                });
                continue;
            }
            if let Some(rs) = role_session_key(s) {
                inner
                    .by_role_session
                    .entry(rs)
                    .or_default()
                    .push(key.to_string());
            }
            inner.by_key.insert(key.to_string(), (**s).clone());
            out.push(Indexed::New);
        }
        Ok(out)
    }
}

/// A warm Lambda's bounded cache of sessions by access key. Misses are remembered only
/// briefly: CloudTrail usually lands minutes after the audit event that needs it.
#[derive(Debug)]
pub struct SessionCache {
    capacity: usize,
    negative_ttl_ms: i64,
    entries: HashMap<String, CacheEntry>,
    order: VecDeque<String>,
}

#[derive(Debug, Clone)]
enum CacheEntry {
    Hit(Arc<StsSession>),
    Miss { at_ms: i64 },
}

/// What the cache knows of a key.
#[derive(Debug, Clone)]
pub enum Cached {
    Hit(Arc<StsSession>),
    /// Looked up recently and not found: do not ask the store again yet.
    RecentMiss,
    Unknown,
}

impl SessionCache {
    pub fn new(capacity: usize, negative_ttl_ms: i64) -> Self {
        Self {
            capacity: capacity.max(1),
            negative_ttl_ms,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn lookup(&self, key: &str, now_ms: i64) -> Cached {
        match self.entries.get(key) {
            Some(CacheEntry::Hit(s)) => Cached::Hit(s.clone()),
            Some(CacheEntry::Miss { at_ms }) if now_ms - at_ms < self.negative_ttl_ms => {
                Cached::RecentMiss
            }
            _ => Cached::Unknown,
        }
    }

    fn insert(&mut self, key: String, e: CacheEntry) {
        if self.entries.insert(key.clone(), e).is_none() {
            self.order.push_back(key);
            while self.entries.len() > self.capacity {
                match self.order.pop_front() {
                    Some(old) => {
                        self.entries.remove(&old);
                    }
                    None => break,
                }
            }
        }
    }

    pub fn put_hit(&mut self, s: Arc<StsSession>) {
        if let Some(k) = s.access_key_id.clone() {
            if let Some(CacheEntry::Hit(old)) = self.entries.get(&k) {
                if s.is_owner_copy() && !old.is_owner_copy() {
                    return;
                }
            }
            self.insert(k, CacheEntry::Hit(s));
        }
    }

    pub fn put_miss(&mut self, key: String, now_ms: i64) {
        if !matches!(self.entries.get(&key), Some(CacheEntry::Hit(_))) {
            self.insert(key, CacheEntry::Miss { at_ms: now_ms });
        }
    }
}

/// A shared store is a store (tests keep a handle to inspect what was indexed).
impl<T: SessionStore> SessionStore for Arc<T> {
    fn get(
        &self,
        access_key_id: &str,
    ) -> impl Future<Output = Result<Option<StsSession>, StoreError>> + Send {
        (**self).get(access_key_id)
    }
    fn get_many(
        &self,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<Option<StsSession>>, StoreError>> + Send {
        (**self).get_many(keys)
    }
    fn find_by_role_session(
        &self,
        role: &str,
        munged: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> impl Future<Output = Result<Vec<StsSession>, StoreError>> + Send {
        (**self).find_by_role_session(role, munged, from_ms, to_ms)
    }
    fn put(
        &self,
        sessions: &[Arc<StsSession>],
    ) -> impl Future<Output = Result<Vec<Indexed>, StoreError>> + Send {
        (**self).put(sessions)
    }
}

/// A successful `AssumeRole` by IAM user `name` into role `path/ops` of account
/// 111122223333, issuing `key` at `at` for one hour: the sessions of the contract, and a
/// base for other crates' tests.
pub fn example_session(key: &str, event_id: &str, at: i64, name: &str) -> StsSession {
    use crate::cloudtrail::StsEventName;
    StsSession {
        event_time_ms: at,
        event_id: event_id.into(),
        shared_event_id: None,
        request_id: None,
        recipient_account_id: Some("111122223333".into()),
        event_name: StsEventName::AssumeRole,
        aws_region: None,
        source_ip: None,
        user_agent: None,
        error_code: None,
        error_message: None,
        caller_type: Some("IAMUser".into()),
        caller_arn: None,
        caller_principal_id: None,
        caller_account_id: Some("111122223333".into()),
        caller_access_key_id: None,
        caller_user_name: Some(name.into()),
        role_arn: Some("arn:aws:iam::111122223333:role/path/ops".into()),
        role_session_name: Some("alice@example.com".into()),
        source_identity: None,
        assumed_role_id: None,
        assumed_role_arn: None,
        access_key_id: Some(key.into()),
        expiration_ms: Some(at + 3_600_000),
        saml_subject: None,
        saml_provider_arn: None,
        web_identity_subject: None,
        web_identity_provider: None,
        session_tags: Vec::new(),
        on_behalf_of_user_id: None,
        on_behalf_of_identity_store_arn: None,
    }
}

/// The contract every [`SessionStore`] keeps, run against each implementation (memory
/// here; the lake store over memory, a local directory and S3 in the transformer and
/// auditlake crates). `store` must be empty. Panics with the broken rule.
pub async fn contract<S: SessionStore>(store: &S) {
    let session =
        |key: &str, event_id: &str, at: i64, name: &str| example_session(key, event_id, at, name);
    let a = Arc::new(session("ASIACONTRACTKEYAAA", "ev-a", 1_000_000, "alice"));
    let b = Arc::new(session("ASIACONTRACTKEYBBB", "ev-b", 9_000_000, "alice"));
    let mut failed = session("ASIACONTRACTKEYCCC", "ev-c", 1_000_000, "x");
    failed.error_code = Some("AccessDenied".into());
    let mut owner = session("ASIACONTRACTKEYDDD", "ev-d", 1_000_000, "x");
    owner.caller_type = Some("AWSAccount".into());
    let out = store
        .put(&[a.clone(), b.clone(), Arc::new(failed), Arc::new(owner)])
        .await
        .unwrap();
    assert_eq!(
        out,
        [
            Indexed::New,
            Indexed::New,
            Indexed::Skipped,
            Indexed::Skipped
        ],
        "put"
    );
    assert_eq!(
        store.get("ASIACONTRACTKEYAAA").await.unwrap().as_ref(),
        Some(&*a),
        "get by key"
    );
    assert_eq!(
        store.get("ASIACONTRACTKEYCCC").await.unwrap(),
        None,
        "failed calls"
    );
    assert_eq!(
        store.get("ASIACONTRACTKEYDDD").await.unwrap(),
        None,
        "owner copies"
    );
    assert_eq!(store.get("ASIANOSUCHKEY00000").await.unwrap(), None);
    let many = store
        .get_many(&[
            "ASIACONTRACTKEYBBB".to_string(),
            "ASIANOSUCHKEY00000".to_string(),
            "ASIACONTRACTKEYAAA".to_string(),
        ])
        .await
        .unwrap();
    assert_eq!(
        many,
        vec![Some((*b).clone()), None, Some((*a).clone())],
        "get_many keeps the order"
    );
    let twice = store
        .get_many(&[
            "ASIACONTRACTKEYAAA".to_string(),
            "ASIACONTRACTKEYAAA".to_string(),
        ])
        .await
        .unwrap();
    assert_eq!(
        twice,
        vec![Some((*a).clone()), Some((*a).clone())],
        "a key asked twice"
    );
    // never replace: a replay is Same, a different record for the key a Conflict
    let mut forged = (*a).clone();
    forged.event_id = "ev-forged".into();
    forged.caller_user_name = Some("mallory".into());
    let out = store.put(&[a.clone(), Arc::new(forged)]).await.unwrap();
    assert_eq!(
        out,
        [Indexed::Same, Indexed::Conflict(Box::new((*a).clone()))],
        "never replace"
    );
    assert_eq!(
        store
            .get("ASIACONTRACTKEYAAA")
            .await
            .unwrap()
            .unwrap()
            .caller_user_name
            .as_deref(),
        Some("alice"),
        "the indexed record stays"
    );
    // role + {{SessionName}} within an issue-time window (path-less role, '@' -> '-')
    let found = store
        .find_by_role_session(
            "arn:aws:iam::111122223333:role/ops",
            "alice-example.com",
            0,
            5_000_000,
        )
        .await
        .unwrap();
    assert_eq!(
        found,
        vec![(*a).clone()],
        "window excludes the later session"
    );
    let mut both = store
        .find_by_role_session(
            "arn:aws:iam::111122223333:role/ops",
            "alice-example.com",
            0,
            10_000_000,
        )
        .await
        .unwrap();
    both.sort_by_key(|s| s.event_time_ms);
    assert_eq!(both, vec![(*a).clone(), (*b).clone()]);
    assert!(store
        .find_by_role_session("arn:aws:iam::111122223333:role/ops", "bob", 0, i64::MAX)
        .await
        .unwrap()
        .is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_store_keeps_the_contract() {
        futures_lite_block_on(contract(&MemorySessionStore::default()));
    }

    /// Polls to completion: the memory store's futures never wait.
    fn futures_lite_block_on<F: Future>(f: F) -> F::Output {
        use std::task::{Context, Poll, Waker};
        let mut cx = Context::from_waker(Waker::noop());
        let mut f = std::pin::pin!(f);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }
}
