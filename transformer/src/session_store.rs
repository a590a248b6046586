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
use resolver::cloudtrail::same_call;
use resolver::store::{indexable, Indexed, SessionStore, StoreError, StoreOp};
use resolver::StsSession;

use crate::lake::ObjectStore;

pub const PREFIX: &str = "session_index";
/// Concurrent object requests per batch.
pub const CONCURRENCY: usize = crate::lookup::CONCURRENCY;

/// Access key ids come from audit events, which a member account controls: only plain
/// AWS key ids are ever used in an object key.
pub fn valid_key_id(k: &str) -> bool {
    (16..=128).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The partition of a role + `{{SessionName}}` pair (shared with the DynamoDB store).
pub fn role_session_hash(role: &str, munged: &str) -> String {
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

fn decode(bytes: &[u8], what: &str) -> Result<StsSession, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::new(StoreOp::Decode, what, e))
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
            Err(e) => Err(StoreError::new(StoreOp::Get, self.lake.locate(&obj), e)),
        }
    }

    async fn get_object(&self, obj: String) -> Result<Option<Vec<u8>>, StoreError> {
        self.lake
            .get(&obj)
            .await
            .map_err(|e| StoreError::new(StoreOp::Get, self.lake.locate(&obj), e))
    }

    /// by_key first, conditionally; the by_role_session entry only for the session
    /// that holds the key (a retry that finds `Same` writes it if a crash left it out).
    async fn put_one(&self, s: Arc<StsSession>) -> Result<Indexed, StoreError> {
        let Some(key) = indexable(&s).filter(|k| valid_key_id(k)) else {
            return Ok(Indexed::Skipped);
        };
        let body = serde_json::to_vec(&*s).map_err(|e| StoreError::new(StoreOp::Encode, key, e))?;
        let obj = format!("{PREFIX}/by_key/{key}.json");
        let outcome = if self.put_new(&obj, body.clone()).await? {
            Indexed::New
        } else {
            match self.get_key(key).await? {
                Some(old) if same_call(&old, &s) => Indexed::Same,
                Some(old) => return Ok(Indexed::Conflict(Box::new(old))),
                // existed a moment ago: a concurrent writer's object is not readable yet
                None => {
                    return Err(StoreError::new(
                        StoreOp::Put,
                        self.lake.locate(&obj),
                        "exists but cannot be read",
                    ))
                }
            }
        };
        if let Some((role, munged)) = role_session_key(&s) {
            let o = format!(
                "{PREFIX}/by_role_session/{}/{}-{key}.json",
                role_session_hash(&role, &munged),
                s.event_time_ms
            );
            self.put_new(&o, body).await?;
        }
        Ok(outcome)
    }

    async fn put_new(&self, obj: &str, body: Vec<u8>) -> Result<bool, StoreError> {
        self.lake
            .put_if_absent(obj, body)
            .await
            .map_err(|e| StoreError::new(StoreOp::Put, self.lake.locate(obj), e))
    }
}

impl<O: ObjectStore> SessionStore for LakeSessionStore<O> {
    async fn get(&self, key: &str) -> Result<Option<StsSession>, StoreError> {
        self.get_key(key).await
    }

    /// One GET per key, concurrently.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<StsSession>>, StoreError> {
        stream::iter(keys.iter().cloned())
            .map(|k| async move { self.get_key(&k).await })
            .buffered(CONCURRENCY)
            .try_collect()
            .await
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
            .map_err(|e| StoreError::new(StoreOp::Find, self.lake.locate(&prefix), e))?;
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

    async fn put(&self, sessions: &[Arc<StsSession>]) -> Result<Vec<Indexed>, StoreError> {
        // one key per batch call (the handler gives each key once), so order is free
        stream::iter(sessions.iter().cloned())
            .map(|s| self.put_one(s))
            .buffered(CONCURRENCY)
            .try_collect()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lake_store_keeps_the_contract_over_memory_and_a_directory() {
        let mem = Arc::new(crate::lake::MemoryStore::default());
        futures::executor::block_on(resolver::store::contract(&LakeSessionStore::new(mem)));
        let dir = std::env::temp_dir().join(format!("session-contract-{}", std::process::id()));
        let local = Arc::new(crate::lake::LocalDir::new(&dir));
        futures::executor::block_on(resolver::store::contract(&LakeSessionStore::new(local)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
