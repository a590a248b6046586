//! The session index in DynamoDB (aws-sdk-dynamodb): the AWS implementation of
//! `resolver::store::SessionStore` for organisation scale, selected with
//! `AUDITLAKE_SESSION_TABLE`.
//!
//! One table, two item kinds, keyed for the resolver's two lookups:
//!
//! ```text
//! pk = K#<access key id>              sk = "session"                  the session (by key)
//! pk = R#<hash(role, {{SessionName}})> sk = <issued ms, 13 digits>#<key>   the same, by name
//! ```
//!
//! Every item carries the session as deflated JSON (`s`, binary: a session's JSON is
//! ~1.1 KB, deflated ~0.5 KB, so an item stays under the 1 KB of one write unit) and a
//! TTL (`expires_at`, epoch seconds):
//! the session's end plus [`TTL_MARGIN_MS`], so DynamoDB deletes what can no longer
//! attribute anything. A key lookup is one strongly consistent read (batched: 100 keys
//! per `BatchGetItem`); a name lookup is one `Query` on the issue-time range. Indexing
//! is a conditional `PutItem` per key (never replace an indexed session: on
//! `ConditionalCheckFailed` the existing item comes back in the same response) and the
//! name entries of new sessions in `BatchWriteItem`s of 25. Unprocessed items and keys
//! are retried with exponential backoff; a throttled or failing call fails the batch,
//! which Firehose retries.
//! Docs: <https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchWriteItem.html>,
//! <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/TTL.html>

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, PutRequest, ReturnValuesOnConditionCheckFailure,
    WriteRequest,
};
use futures::stream::{self, StreamExt, TryStreamExt};

use resolver::attribute::role_session_key;
use resolver::cloudtrail::same_call;
use resolver::store::{indexable, Indexed, SessionStore, StoreError, StoreOp};
use resolver::StsSession;
use transformer::lake::{LakeError, LakeOp};
use transformer::session_store::{role_session_hash, valid_key_id};

use crate::aws_error::describe;

/// How long an entry outlives its session: CloudTrail's delivery delay (typically
/// minutes, hours at worst), Firehose's retries of a failing batch (up to a day) and
/// backfills of recent days; compaction (2 days by default) reads `sts_sessions`, not
/// this index.
pub const TTL_MARGIN_MS: i64 = 7 * 24 * 3_600_000;
/// `BatchWriteItem` takes at most 25 requests, `BatchGetItem` 100 keys.
const WRITE_BATCH: usize = 25;
const GET_BATCH: usize = 100;
/// Attempts for unprocessed items before the call fails (backoff 50 ms .. ~6 s).
const UNPROCESSED_ATTEMPTS: u32 = 8;
const CONCURRENCY: usize = 16;

/// Requests made, by API (for the cost table in docs/deploy.md and the load run).
#[derive(Debug, Default)]
pub struct Requests {
    pub put_item: AtomicU64,
    pub get_item: AtomicU64,
    pub batch_get_item: AtomicU64,
    pub batch_write_item: AtomicU64,
    pub query: AtomicU64,
    /// Items written (both kinds) and keys read.
    pub items_written: AtomicU64,
    pub keys_read: AtomicU64,
}

impl Requests {
    pub fn summary(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "PutItem {} GetItem {} BatchGetItem {} BatchWriteItem {} Query {} (items written {}, keys read {})",
            g(&self.put_item),
            g(&self.get_item),
            g(&self.batch_get_item),
            g(&self.batch_write_item),
            g(&self.query),
            g(&self.items_written),
            g(&self.keys_read)
        )
    }
}

#[derive(Debug, Clone)]
pub struct DynamoSessionStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    pub requests: Arc<Requests>,
    /// Test hook: this many upcoming batch responses report their last request as
    /// unprocessed (DynamoDB does this under load; emulators never do).
    inject_unprocessed: Arc<AtomicU32>,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn key_pk(key: &str) -> String {
    format!("K#{key}")
}

const KEY_SK: &str = "session";

fn role_pk(role: &str, munged: &str) -> String {
    format!("R#{}", role_session_hash(role, munged))
}

/// Issue times sort as strings: 13 digits cover 1970 .. 2286.
fn role_sk(issued_ms: i64, key: &str) -> String {
    format!("{:013}#{key}", issued_ms.max(0))
}

/// A session as stored: its JSON, deflated.
fn pack(session: &StsSession) -> Option<Vec<u8>> {
    use std::io::Write;
    let json = serde_json::to_vec(session).ok()?;
    let mut z = flate2::write::DeflateEncoder::new(
        Vec::with_capacity(json.len() / 2),
        flate2::Compression::default(),
    );
    z.write_all(&json).ok()?;
    z.finish().ok()
}

/// A stored session's JSON; at most 64 KiB (an item is at most 400 KB, a session ~1 KB:
/// anything bigger was not written by this store).
fn unpack(b: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::with_capacity(b.len() * 3);
    flate2::read::DeflateDecoder::new(b)
        .take(64 << 10)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// The TTL of a session's items, epoch seconds.
pub fn expires_at(session: &StsSession) -> i64 {
    (session.lifetime_end_ms() + TTL_MARGIN_MS) / 1000
}

impl DynamoSessionStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        Self {
            client,
            table,
            requests: Arc::default(),
            inject_unprocessed: Arc::default(),
        }
    }

    pub async fn from_env(table: String) -> Self {
        let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::new(aws_sdk_dynamodb::Client::new(&conf), table)
    }

    /// Test hook: the next `n` batch responses pretend their last request went
    /// unprocessed.
    pub fn inject_unprocessed(&self, n: u32) {
        self.inject_unprocessed.store(n, Ordering::SeqCst);
    }

    fn take_injection(&self) -> bool {
        self.inject_unprocessed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn locate(&self, pk: &str) -> String {
        format!("dynamodb://{}/{pk}", self.table)
    }

    fn fail<E>(
        &self,
        op: StoreOp,
        api: &str,
        pk: &str,
        e: aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    ) -> StoreError
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata
            + std::error::Error
            + Send
            + Sync
            + 'static,
    {
        let f = describe(&e);
        let lake_op = match op {
            StoreOp::Put => LakeOp::Put,
            StoreOp::Find => LakeOp::List,
            _ => LakeOp::Get,
        };
        StoreError::new(
            op,
            self.locate(pk),
            LakeError::Service {
                op: lake_op,
                location: self.locate(pk),
                message: format!("DynamoDB {api}: {}", f.line),
                retryable: f.retryable,
                source: Box::new(e),
            },
        )
    }

    fn gave_up(&self, op: StoreOp, api: &str, left: usize) -> StoreError {
        let msg = format!("DynamoDB {api}: {left} item(s) still unprocessed after {UNPROCESSED_ATTEMPTS} attempts (throttled)");
        StoreError::new(
            op,
            format!("dynamodb://{}", self.table),
            LakeError::Service {
                op: if op == StoreOp::Put {
                    LakeOp::Put
                } else {
                    LakeOp::Get
                },
                location: format!("dynamodb://{}", self.table),
                message: msg.clone(),
                retryable: true,
                source: msg.into(),
            },
        )
    }

    fn item(
        &self,
        pk: String,
        sk: String,
        session: &StsSession,
        packed: &[u8],
    ) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_string(), s(pk)),
            ("sk".to_string(), s(sk)),
            (
                "s".to_string(),
                AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(packed)),
            ),
            (
                "expires_at".to_string(),
                AttributeValue::N(expires_at(session).to_string()),
            ),
        ])
    }

    fn decode(
        item: &HashMap<String, AttributeValue>,
        what: &str,
    ) -> Result<StsSession, StoreError> {
        let json = match item.get("s") {
            Some(AttributeValue::B(b)) => {
                unpack(b.as_ref()).map_err(|e| StoreError::new(StoreOp::Decode, what, e))?
            }
            Some(AttributeValue::S(j)) => j.clone().into_bytes(),
            _ => {
                return Err(StoreError::new(
                    StoreOp::Decode,
                    what,
                    "item without a session",
                ))
            }
        };
        serde_json::from_slice(&json).map_err(|e| StoreError::new(StoreOp::Decode, what, e))
    }

    /// Index one session's key, never replacing: `New`, or what holds the key.
    async fn put_key(
        &self,
        session: &StsSession,
        key: &str,
        json: &[u8],
    ) -> Result<Indexed, StoreError> {
        let pk = key_pk(key);
        self.requests.put_item.fetch_add(1, Ordering::Relaxed);
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.item(pk.clone(), KEY_SK.into(), session, json)))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let old = match r {
            Ok(_) => {
                self.requests.items_written.fetch_add(1, Ordering::Relaxed);
                return Ok(Indexed::New);
            }
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => match c.item() {
                    Some(item) => Self::decode(item, &pk)?,
                    // an emulator that does not return the item: read it
                    None => self.get_one(key).await?.ok_or_else(|| {
                        StoreError::new(StoreOp::Put, self.locate(&pk), "exists but cannot be read")
                    })?,
                },
                _ => return Err(self.fail(StoreOp::Put, "PutItem", &pk, e)),
            },
        };
        Ok(if same_call(&old, session) {
            Indexed::Same
        } else {
            Indexed::Conflict(Box::new(old))
        })
    }

    async fn get_one(&self, key: &str) -> Result<Option<StsSession>, StoreError> {
        let pk = key_pk(key);
        self.requests.get_item.fetch_add(1, Ordering::Relaxed);
        self.requests.keys_read.fetch_add(1, Ordering::Relaxed);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk.clone()))
            .key("sk", s(KEY_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.fail(StoreOp::Get, "GetItem", &pk, e))?;
        out.item().map(|i| Self::decode(i, &pk)).transpose()
    }

    /// `BatchWriteItem` in chunks of 25, retrying unprocessed items with backoff.
    async fn write_all(
        &self,
        items: Vec<HashMap<String, AttributeValue>>,
    ) -> Result<(), StoreError> {
        for chunk in items.chunks(WRITE_BATCH) {
            let mut pending: Vec<WriteRequest> = chunk
                .iter()
                .map(|i| {
                    PutRequest::builder()
                        .set_item(Some(i.clone()))
                        .build()
                        .map(|p| WriteRequest::builder().put_request(p).build())
                        .map_err(|e| StoreError::new(StoreOp::Encode, "BatchWriteItem", e))
                })
                .collect::<Result<_, _>>()?;
            let mut delay = Duration::from_millis(50);
            for attempt in 1..=UNPROCESSED_ATTEMPTS {
                self.requests
                    .batch_write_item
                    .fetch_add(1, Ordering::Relaxed);
                let sent = pending.len();
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending.clone())
                    .send()
                    .await
                    .map_err(|e| self.fail(StoreOp::Put, "BatchWriteItem", "R#", e))?;
                let mut left: Vec<WriteRequest> = out
                    .unprocessed_items()
                    .and_then(|m| m.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                if left.is_empty() && self.take_injection() {
                    if let Some(last) = pending.last() {
                        left.push(last.clone());
                    }
                }
                self.requests
                    .items_written
                    .fetch_add((sent - left.len()) as u64, Ordering::Relaxed);
                if left.is_empty() {
                    break;
                }
                if attempt == UNPROCESSED_ATTEMPTS {
                    return Err(self.gave_up(StoreOp::Put, "BatchWriteItem", left.len()));
                }
                pending = left;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(6));
            }
        }
        Ok(())
    }

    /// `BatchGetItem` (strongly consistent) for up to 100 keys, retrying unprocessed
    /// keys with backoff.
    async fn get_batch(&self, keys: &[String]) -> Result<HashMap<String, StsSession>, StoreError> {
        let mut found = HashMap::new();
        let mut pending: Vec<HashMap<String, AttributeValue>> = keys
            .iter()
            .filter(|k| valid_key_id(k))
            .map(|k| {
                HashMap::from([
                    ("pk".to_string(), s(key_pk(k))),
                    ("sk".to_string(), s(KEY_SK)),
                ])
            })
            .collect();
        let mut delay = Duration::from_millis(50);
        let mut attempt = 0;
        while !pending.is_empty() {
            attempt += 1;
            if attempt > UNPROCESSED_ATTEMPTS {
                return Err(self.gave_up(StoreOp::Get, "BatchGetItem", pending.len()));
            }
            self.requests.batch_get_item.fetch_add(1, Ordering::Relaxed);
            let ka = KeysAndAttributes::builder()
                .set_keys(Some(pending.clone()))
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::new(StoreOp::Encode, "BatchGetItem", e))?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, ka)
                .send()
                .await
                .map_err(|e| self.fail(StoreOp::Get, "BatchGetItem", "K#", e))?;
            for item in out
                .responses()
                .and_then(|r| r.get(&self.table))
                .into_iter()
                .flatten()
            {
                let s = Self::decode(item, "BatchGetItem")?;
                if let Some(k) = s.access_key_id.clone() {
                    found.insert(k, s);
                }
            }
            let mut left: Vec<HashMap<String, AttributeValue>> = out
                .unprocessed_keys()
                .and_then(|m| m.get(&self.table))
                .map(|k| k.keys().to_vec())
                .unwrap_or_default();
            if left.is_empty() && self.take_injection() {
                // pretend the last key came back unprocessed: ask for it again
                if let Some(last) = pending.last() {
                    left.push(last.clone());
                }
            }
            self.requests
                .keys_read
                .fetch_add((pending.len() - left.len()) as u64, Ordering::Relaxed);
            pending = left;
            if !pending.is_empty() {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(6));
            }
        }
        Ok(found)
    }
}

impl SessionStore for DynamoSessionStore {
    async fn get(&self, key: &str) -> Result<Option<StsSession>, StoreError> {
        if !valid_key_id(key) {
            return Ok(None);
        }
        self.get_one(key).await
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<StsSession>>, StoreError> {
        // BatchGetItem refuses a key twice in one request: ask for each key once
        let mut unique: Vec<String> = keys.to_vec();
        unique.sort();
        unique.dedup();
        let chunks: Vec<Vec<String>> = unique.chunks(GET_BATCH).map(<[String]>::to_vec).collect();
        let maps: Vec<HashMap<String, StsSession>> = stream::iter(chunks)
            .map(|c| async move { self.get_batch(&c).await })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        let all: HashMap<String, StsSession> = maps.into_iter().flatten().collect();
        Ok(keys.iter().map(|k| all.get(k).cloned()).collect())
    }

    async fn find_by_role_session(
        &self,
        role: &str,
        munged: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<StsSession>, StoreError> {
        let pk = role_pk(role, munged);
        let (lo, hi) = (role_sk(from_ms, ""), role_sk(to_ms, "~"));
        let mut out = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
            .expression_attribute_values(":pk", s(pk.clone()))
            .expression_attribute_values(":lo", s(lo))
            .expression_attribute_values(":hi", s(hi))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            self.requests.query.fetch_add(1, Ordering::Relaxed);
            let page = page.map_err(|e| self.fail(StoreOp::Find, "Query", &pk, e))?;
            for item in page.items() {
                let s = Self::decode(item, &pk)?;
                // a hash collision must not produce a candidate
                if role_session_key(&s).is_some_and(|(r, m)| r == role && m == munged) {
                    out.push(s);
                }
            }
        }
        Ok(out)
    }

    async fn put(&self, sessions: &[Arc<StsSession>]) -> Result<Vec<Indexed>, StoreError> {
        let work: Vec<Option<(Arc<StsSession>, String, Vec<u8>)>> = sessions
            .iter()
            .map(|sess| {
                let key = indexable(sess).filter(|k| valid_key_id(k))?.to_string();
                let json = pack(sess)?;
                Some((sess.clone(), key, json))
            })
            .collect();
        let outcomes: Vec<Indexed> = stream::iter(work.clone())
            .map(|w| async move {
                match w {
                    Some((sess, key, json)) => self.put_key(&sess, &key, &json).await,
                    None => Ok(Indexed::Skipped),
                }
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        // name entries for the sessions that hold their key (`Same` too: a crash may have
        // left them out; writing them again is idempotent)
        let names: Vec<HashMap<String, AttributeValue>> = work
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| matches!(o, Indexed::New | Indexed::Same))
            .filter_map(|(w, _)| {
                let (sess, key, json) = w.as_ref()?;
                let (role, munged) = role_session_key(sess)?;
                Some(self.item(
                    role_pk(&role, &munged),
                    role_sk(sess.event_time_ms, key),
                    sess,
                    json,
                ))
            })
            .collect();
        // BatchWriteItem refuses two requests for one item: the same session twice in
        // a call (New, then Same) has one name entry
        let mut seen = std::collections::HashSet::new();
        let names: Vec<HashMap<String, AttributeValue>> = names
            .into_iter()
            .filter(|i| {
                let k = |a: &str| match i.get(a) {
                    Some(AttributeValue::S(v)) => v.clone(),
                    _ => String::new(),
                };
                seen.insert((k("pk"), k("sk")))
            })
            .collect();
        self.write_all(names).await?;
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_order_by_issue_time_and_bound_windows() {
        assert!(role_sk(999, "ASIAZZZ") < role_sk(1000, "ASIAAAA"));
        let (lo, hi) = (role_sk(1000, ""), role_sk(2000, "~"));
        for (t, inside) in [
            (999, false),
            (1000, true),
            (1500, true),
            (2000, true),
            (2001, false),
        ] {
            let k = role_sk(t, "ASIAEXAMPLEKEY0001");
            assert_eq!(k >= lo && k <= hi, inside, "{t}");
        }
        assert_eq!(role_sk(-5, "K"), "0000000000000#K");
    }

    #[test]
    fn a_session_packs_below_one_write_unit_and_round_trips() {
        let s = resolver::store::example_session("ASIAEXAMPLEKEY0001", "e", 1_000_000, "alice");
        let p = pack(&s).unwrap();
        assert!(p.len() < 700, "{}", p.len());
        let back: StsSession = serde_json::from_slice(&unpack(&p).unwrap()).unwrap();
        assert_eq!(back, s);
        // a bomb is cut at 64 KiB, never inflated further
        let big = {
            use std::io::Write;
            let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
            z.write_all(&vec![b'x'; 10 << 20]).unwrap();
            z.finish().unwrap()
        };
        assert_eq!(unpack(&big).unwrap().len(), 64 << 10);
    }

    #[test]
    fn entries_expire_after_the_session_with_a_margin() {
        let s = resolver::store::example_session("ASIAEXAMPLEKEY0001", "e", 1_000_000, "alice");
        assert_eq!(
            expires_at(&s),
            (1_000_000 + 3_600_000 + TTL_MARGIN_MS) / 1000
        );
    }
}
