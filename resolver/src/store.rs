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
use crate::cloudtrail::StsSession;

#[derive(Debug, thiserror::Error)]
#[error("session store {op} {what}: {message}")]
pub struct StoreError {
    pub op: &'static str,
    pub what: String,
    pub message: String,
}

/// Point lookups of STS sessions.
pub trait SessionStore: Send + Sync {
    /// The session that issued `access_key_id`.
    fn get(
        &self,
        access_key_id: &str,
    ) -> impl Future<Output = Result<Option<StsSession>, StoreError>> + Send;

    /// Sessions of `role` (normalised ARN) with `{{SessionName}}` `munged`, issued between
    /// `from_ms` and `to_ms`.
    fn find_by_role_session(
        &self,
        role: &str,
        munged: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> impl Future<Output = Result<Vec<StsSession>, StoreError>> + Send;

    /// Index sessions that issued credentials. Idempotent: a retried batch rewrites the
    /// same entries. A role-owner copy never replaces a caller-account copy.
    fn put(
        &self,
        sessions: &[Arc<StsSession>],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
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
            .expect("poisoned")
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
        let inner = self.inner.lock().expect("poisoned");
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

    async fn put(&self, sessions: &[Arc<StsSession>]) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().expect("poisoned");
        for s in sessions {
            let Some(key) = s.access_key_id.clone().filter(|_| s.issued()) else {
                continue;
            };
            if let Some(old) = inner.by_key.get(&key) {
                if s.is_owner_copy() && !old.is_owner_copy() {
                    continue;
                }
            } else if let Some(rs) = role_session_key(s) {
                inner
                    .by_role_session
                    .entry(rs)
                    .or_default()
                    .push(key.clone());
            }
            inner.by_key.insert(key, (**s).clone());
        }
        Ok(())
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
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).put(sessions)
    }
}
