//! The resolver's session store over the lake: `<lake>/session_index/`.
//!
//! ```text
//! session_index/by_key/<access key id>.json                     one STS session
//! session_index/by_role_session/<hash>/<issued ms>-<key>.json   the same, found by
//!                                                               role + {{SessionName}}
//! ```
//! Point lookups by access key are one GET. Name lookups list one prefix; the issue
//! time in the object name narrows the window before anything is fetched.

use std::sync::Arc;

use futures::stream::{self, StreamExt, TryStreamExt};

use resolver::attribute::role_session_key;
use resolver::store::{SessionStore, StoreError};
use resolver::StsSession;

use crate::lake::ObjectStore;

pub const PREFIX: &str = "session_index";
/// Concurrent object requests per batch.
pub const CONCURRENCY: usize = 32;

/// Access key ids come from audit events, which a member account controls: only plain
/// AWS key ids are ever used in an object key.
pub fn valid_key_id(k: &str) -> bool {
    (16..=128).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn role_session_hash(role: &str, munged: &str) -> String {
    format!(
        "{:016x}",
        xxhash_rust::xxh3::xxh3_64(format!("{role}\n{munged}").as_bytes())
    )
}

pub struct LakeSessionStore<O> {
    lake: Arc<O>,
}

impl<O> LakeSessionStore<O> {
    pub fn new(lake: Arc<O>) -> Self {
        Self { lake }
    }
}

fn store_err(op: &'static str, what: String, e: impl std::fmt::Display) -> StoreError {
    StoreError {
        op,
        what,
        message: e.to_string(),
    }
}

fn decode(bytes: &[u8], what: &str) -> Result<StsSession, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| store_err("decode", what.to_string(), e))
}

impl<O: ObjectStore> LakeSessionStore<O> {
    async fn get_key(&self, key: &str) -> Result<Option<StsSession>, StoreError> {
        if !valid_key_id(key) {
            return Ok(None);
        }
        let obj = format!("{PREFIX}/by_key/{key}.json");
        match self.lake.get(&obj).await {
            Ok(Some(b)) => decode(&b, &obj).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(store_err("get", self.lake.locate(&obj), e)),
        }
    }

    async fn get_object(&self, obj: String) -> Result<Option<Vec<u8>>, StoreError> {
        self.lake
            .get(&obj)
            .await
            .map_err(|e| store_err("get", self.lake.locate(&obj), e))
    }

    async fn put_object(&self, obj: String, body: Vec<u8>) -> Result<(), StoreError> {
        self.lake
            .put(&obj, body)
            .await
            .map_err(|e| store_err("put", self.lake.locate(&obj), e))
    }

    async fn put_one(&self, s: Arc<StsSession>) -> Result<(), StoreError> {
        let key = s.access_key_id.clone().unwrap_or_default();
        if !s.issued() || !valid_key_id(&key) {
            return Ok(());
        }
        if s.is_owner_copy() {
            // never replace the caller-account copy, which knows the caller's key
            if let Some(old) = self.get_key(&key).await? {
                if !old.is_owner_copy() {
                    return Ok(());
                }
            }
        }
        let body = serde_json::to_vec(&*s).map_err(|e| store_err("encode", key.clone(), e))?;
        if let Some((role, munged)) = role_session_key(&s) {
            let o = format!(
                "{PREFIX}/by_role_session/{}/{}-{key}.json",
                role_session_hash(&role, &munged),
                s.event_time_ms
            );
            self.put_object(o, body.clone()).await?;
        }
        self.put_object(format!("{PREFIX}/by_key/{key}.json"), body)
            .await
    }
}

impl<O: ObjectStore> SessionStore for LakeSessionStore<O> {
    async fn get(&self, key: &str) -> Result<Option<StsSession>, StoreError> {
        self.get_key(key).await
    }

    async fn find_by_role_session(
        &self,
        role: &str,
        munged: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<StsSession>, StoreError> {
        let prefix = format!(
            "{PREFIX}/by_role_session/{}/",
            role_session_hash(role, munged)
        );
        let keys = self
            .lake
            .list(&prefix)
            .await
            .map_err(|e| store_err("list", self.lake.locate(&prefix), e))?;
        let wanted: Vec<String> = keys
            .into_iter()
            .filter(|k| {
                let name = k.rsplit('/').next().unwrap_or("");
                name.split_once('-')
                    .and_then(|(t, _)| t.parse::<i64>().ok())
                    .is_some_and(|t| t >= from_ms && t <= to_ms)
            })
            .collect();
        let futs: Vec<_> = wanted.into_iter().map(|k| self.get_object(k)).collect();
        let found: Vec<Option<Vec<u8>>> = stream::iter(futs)
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut out = Vec::new();
        for b in found.into_iter().flatten() {
            let s = decode(&b, &prefix)?;
            // a hash collision must not produce a candidate
            if role_session_key(&s).is_some_and(|(r, m)| r == role && m == munged) {
                out.push(s);
            }
        }
        Ok(out)
    }

    async fn put(&self, sessions: &[Arc<StsSession>]) -> Result<(), StoreError> {
        let futs: Vec<_> = sessions.iter().map(|s| self.put_one(s.clone())).collect();
        stream::iter(futs)
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
}
