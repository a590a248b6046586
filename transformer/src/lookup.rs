//! Stage 3, fetch (I/O): fill a batch's [`SessionIndex`] from the warm cache and the
//! session store, following the [`LookupPlan`].
//!
//! Role + session-name queries run first (their sessions become roots too). Then, for
//! each root key, the first link of its chain the index lacks is looked up in the cache,
//! else in the store, concurrently per round, until no chain has a fetchable gap (at
//! most [`MAX_CHAIN_DEPTH`] rounds). Misses are remembered briefly in the cache.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::stream::{self, StreamExt, TryStreamExt};

use resolver::attribute::MAX_CHAIN_DEPTH;
use resolver::store::{Cached, SessionCache, SessionStore, StoreError};
use resolver::{SessionIndex, StsSession};

use crate::plan::LookupPlan;
use crate::session_store::valid_key_id;

/// Concurrent store requests per round.
pub const CONCURRENCY: usize = 32;

/// The warm cache is shared by concurrent invocations' threads. A panic while holding
/// the lock cannot leave an entry half-written (entries are replaced whole), so a
/// poisoned lock is taken over rather than failing every later batch.
pub fn lock(cache: &Mutex<SessionCache>) -> MutexGuard<'_, SessionCache> {
    cache.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Store requests made, and wanted ones not made because the budget was spent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    pub lookups: u64,
    pub over_budget: u64,
}

/// Fetch what `plan` needs into `index`, making at most `budget` store requests: half
/// at most for role + session-name queries, the rest for keys and chain links, each in
/// the plan's fair order. What is not fetched leaves its rows `pending` (the view
/// resolves them later).
pub async fn fetch<S: SessionStore>(
    store: &S,
    cache: &Mutex<SessionCache>,
    plan: &LookupPlan,
    index: &mut SessionIndex,
    now_ms: i64,
    budget: usize,
) -> Result<Fetched, StoreError> {
    let mut stats = Fetched::default();
    let mut roots: Vec<String> = plan.keys.clone();

    let by_name = plan.role_sessions.len().min(budget.div_ceil(2));
    stats.over_budget += (plan.role_sessions.len() - by_name) as u64;
    let found: Vec<Vec<StsSession>> = stream::iter(&plan.role_sessions[..by_name])
        .map(|q| store.find_by_role_session(&q.role, &q.munged, q.from_ms, q.to_ms))
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    stats.lookups += by_name as u64;
    let mut left = budget - by_name;
    for s in found.into_iter().flatten() {
        if let Some(k) = s.access_key_id.clone() {
            roots.push(k);
        }
        index.insert(Arc::new(s));
    }

    let mut tried: HashSet<String> = HashSet::new();
    for _ in 0..MAX_CHAIN_DEPTH {
        let mut fetch = from_cache(cache, &roots, index, &mut tried, now_ms);
        if fetch.len() > left {
            // the store is never asked for these; they count once, as not tried
            for k in fetch.drain(left..) {
                stats.over_budget += 1;
                tried.insert(k);
            }
        }
        if fetch.is_empty() {
            // cache hits may have revealed new links: go round again if so
            if roots
                .iter()
                .filter_map(|r| index.missing_link(r))
                .all(|m| tried.contains(&m))
            {
                break;
            }
            continue;
        }
        stats.lookups += fetch.len() as u64;
        left -= fetch.len();
        // one call per round: each store bounds its own concurrency (the lake's GETs) or
        // batches (DynamoDB's BatchGetItem of 100)
        let found = store.get_many(&fetch).await?;
        let got = fetch.into_iter().zip(found);
        let mut c = lock(cache);
        for (k, s) in got {
            tried.insert(k.clone());
            match s {
                Some(s) => {
                    let s = Arc::new(s);
                    c.put_hit(s.clone());
                    index.insert(s);
                }
                None => c.put_miss(k, now_ms),
            }
        }
    }
    Ok(stats)
}

/// One round: resolve each root's first missing link from the cache; return the keys
/// the store must be asked for (valid key ids only, each once).
fn from_cache(
    cache: &Mutex<SessionCache>,
    roots: &[String],
    index: &mut SessionIndex,
    tried: &mut HashSet<String>,
    now_ms: i64,
) -> Vec<String> {
    let c = lock(cache);
    let mut fetch = Vec::new();
    let mut seen = HashSet::new();
    for root in roots {
        let Some(missing) = index.missing_link(root) else {
            continue;
        };
        if tried.contains(&missing) || !seen.insert(missing.clone()) {
            continue;
        }
        match c.lookup(&missing, now_ms) {
            Cached::Hit(s) => {
                index.insert(s);
            }
            Cached::RecentMiss => {
                tried.insert(missing);
            }
            Cached::Unknown if valid_key_id(&missing) => fetch.push(missing),
            Cached::Unknown => {
                tried.insert(missing);
            }
        }
    }
    fetch
}

#[cfg(test)]
mod tests {
    use super::*;
    use resolver::MemorySessionStore;

    /// alice's session issuing `key`, chained from `caller_key` when given.
    fn session(key: &str, caller_key: Option<&str>) -> StsSession {
        let mut s = resolver::store::example_session(key, &format!("ev-{key}"), 0, "alice");
        if let Some(k) = caller_key {
            s.caller_type = Some("AssumedRole".into());
            s.caller_access_key_id = Some(k.into());
        }
        s
    }

    #[test]
    fn follows_a_chain_through_the_store_then_serves_it_from_the_cache() {
        let store = MemorySessionStore::default();
        let chain = [
            session("ASIAHOPTWO000000", Some("ASIAHOPONE000000")),
            session("ASIAHOPONE000000", Some("AKIAUSER00000000")),
            session("AKIAUSER00000000", None),
        ];
        let all: Vec<Arc<StsSession>> = chain.iter().cloned().map(Arc::new).collect();
        futures::executor::block_on(store.put(&all)).unwrap();
        let cache = Mutex::new(SessionCache::new(100, 60_000));
        let plan = LookupPlan {
            keys: vec!["ASIAHOPTWO000000".into(), "not a key/../x".into()],
            role_sessions: vec![],
        };
        let mut index = SessionIndex::new();
        let f = futures::executor::block_on(fetch(&store, &cache, &plan, &mut index, 0, 100));
        assert_eq!(
            f.unwrap().lookups,
            3,
            "one request per link; the invalid key id is never asked"
        );
        assert_eq!(index.len(), 3);
        // second batch: everything from the cache
        let mut index = SessionIndex::new();
        let f = futures::executor::block_on(fetch(&store, &cache, &plan, &mut index, 1, 100));
        assert_eq!(f.unwrap(), Fetched::default());
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn the_budget_caps_store_requests_and_counts_the_rest() {
        let store = MemorySessionStore::default();
        let cache = Mutex::new(SessionCache::new(100, 60_000));
        let keys: Vec<String> = (0..40).map(|i| format!("ASIAUNKNOWN{i:05}")).collect();
        let plan = LookupPlan {
            keys,
            role_sessions: vec![],
        };
        let mut index = SessionIndex::new();
        let f =
            futures::executor::block_on(fetch(&store, &cache, &plan, &mut index, 0, 10)).unwrap();
        assert_eq!(
            f,
            Fetched {
                lookups: 10,
                over_budget: 30
            }
        );
    }
}
