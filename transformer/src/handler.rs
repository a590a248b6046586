//! The Firehose handler: one code path from Kinesis record bytes to Parquet objects.
//!
//! Pure stages (no I/O, parallel over records or partitions with rayon):
//! 1. [`decode`](crate::decode): gunzip (capped) and parse the envelopes of each record;
//! 2. [`extract`]: classify log events, parse audit events and CloudTrail STS events,
//!    stamp account / cluster / region;
//! 3. attribution, against a [`SessionIndex`] filled from the batch, the warm cache and
//!    the session store (the only awaits: concurrent point lookups);
//! 4. [`encode`](crate::encode): per (dt, account, cluster) partition, sort by event time,
//!    build Arrow, write Parquet.
//!
//! Then the objects and the new sessions are written; any write error fails the whole
//! invocation so that Firehose retries the batch. Object keys depend only on the batch's
//! record ids and the partition, so a retry overwrites.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use futures::stream::{self, StreamExt, TryStreamExt};
use rayon::prelude::*;

use resolver::awsauth::AwsAuth;
use resolver::cloudtrail::{self, StsSession};
use resolver::identity::{Identity, RoleSession};
use resolver::store::{Cached, SessionCache, SessionStore, StoreError};
use resolver::{AttributionStatus, AwsExtra, SessionIndex};

use crate::audit::{self, ParseStatus};
use crate::decode::{self, CwlEnvelope, DecodeError, MessageType};
use crate::encode::{self, AuditBuilder, AuditRowRef, EncodeError};
use crate::firehose::{FirehoseEvent, FirehoseResponse, FirehoseResponseRecord, RecordResult};
use crate::lake::{LakeError, ObjectStore};
use crate::metrics::Metrics;
use crate::session_store::valid_key_id;

/// Folder used in place of an account id or cluster name that fails validation.
pub const INVALID: &str = "_invalid_";

/// Handler settings, read once at start.
#[derive(Debug, Clone)]
pub struct HandlerConfig {
    /// `true`: processed records return `Ok` with their bytes (Firehose archives them
    /// under `raw/`); `false`: `Dropped`.
    pub raw_archive: bool,
    /// Cap on one record's decompressed size.
    pub max_decompressed: usize,
    /// aws-auth `mapRoles`, to reverse templated usernames.
    pub aws_auth: Option<Arc<AwsAuth>>,
    /// Warm-cache size (sessions) and how long a miss is remembered.
    pub cache_capacity: usize,
    pub negative_ttl_ms: i64,
}

impl Default for HandlerConfig {
    fn default() -> Self {
        Self {
            raw_archive: true,
            max_decompressed: decode::DEFAULT_MAX_DECOMPRESSED,
            aws_auth: None,
            cache_capacity: 100_000,
            negative_ttl_ms: 60_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("writing {location}: {source}")]
    Write {
        location: String,
        #[source]
        source: LakeError,
    },
    #[error("session store: {0}")]
    Sessions(#[from] StoreError),
    #[error("partition {partition}: {source}")]
    Encode {
        partition: String,
        #[source]
        source: EncodeError,
    },
}

/// One input record: its id and the exact Kinesis bytes (gzip). Backfills of files that
/// are already decompressed set `gzip: false`.
#[derive(Debug, Clone)]
pub struct InputRecord {
    pub record_id: String,
    pub data: Vec<u8>,
    pub gzip: bool,
}

impl InputRecord {
    pub fn gzip(record_id: impl Into<String>, data: Vec<u8>) -> Self {
        Self {
            record_id: record_id.into(),
            data,
            gzip: true,
        }
    }
}

/// What happened to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOutcome {
    pub result: RecordResult,
    /// Why the record failed (for logs; Firehose only gets the result).
    pub error: Option<String>,
}

/// The result of a batch: one outcome per record in input order, counts, and the keys
/// of the objects written.
#[derive(Debug, Clone)]
pub struct BatchOutput {
    pub outcomes: Vec<RecordOutcome>,
    pub metrics: Metrics,
    pub objects: Vec<String>,
}

// ---- stage 2: extraction ----------------------------------------------------------------

/// Stamps shared by every event of an envelope.
#[derive(Debug, Clone, Copy)]
pub struct Stamp<'a> {
    pub account_id: &'a str,
    pub account_folder: &'a str,
    pub cluster: &'a str,
    pub log_group: &'a str,
    pub log_stream: &'a str,
}

/// One `eks_audit` row before attribution.
#[derive(Debug)]
pub struct AuditRow<'a> {
    pub stamp: Stamp<'a>,
    pub cwl_id: &'a str,
    pub region: Option<&'a str>,
    pub event_ms: i64,
    pub parsed: audit::Parsed<'a>,
    pub raw_message: Option<&'a str>,
    pub extra: AwsExtra<'a>,
    pub identity: Identity<'a>,
}

impl AuditRow<'_> {
    fn username(&self) -> Option<&str> {
        self.parsed
            .event
            .user
            .as_ref()
            .and_then(|u| u.username.as_deref())
    }
}

/// What stage 2 produced for one record.
#[derive(Debug, Default)]
pub struct Extracted<'a> {
    pub rows: Vec<AuditRow<'a>>,
    pub sessions: Vec<StsSession>,
    pub metrics: Metrics,
    /// Every envelope was a control message.
    pub control_only: bool,
}

/// EKS cluster names: `[0-9A-Za-z][A-Za-z0-9_-]{0,99}`.
pub fn valid_cluster(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 100
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
}

/// `/aws/eks/<cluster>/cluster` -> `Some(cluster)` (the raw part, validated later).
pub fn eks_cluster_of(log_group: &str) -> Option<&str> {
    log_group
        .strip_prefix("/aws/eks/")
        .and_then(|r| r.strip_suffix("/cluster"))
}

/// Classify and parse every log event of a record's envelopes.
pub fn extract<'a>(
    envelopes: &'a [CwlEnvelope<'a>],
    default_region: Option<&'a str>,
    aws_auth: Option<&'a AwsAuth>,
) -> Extracted<'a> {
    let mut out = Extracted {
        control_only: true,
        ..Default::default()
    };
    for env in envelopes {
        if env.message_type == MessageType::Control {
            continue;
        }
        out.control_only = false;
        let owner: &str = &env.owner;
        let account_folder = if resolver::arn::is_account_id(owner) {
            owner
        } else {
            INVALID
        };
        out.metrics.log_events += env.log_events.len() as u64;
        match eks_cluster_of(&env.log_group) {
            Some(cluster) => {
                if !env.log_stream.starts_with("kube-apiserver-audit") {
                    // authenticator, scheduler, controller manager: kept in raw/ only
                    out.metrics.skipped += env.log_events.len() as u64;
                    continue;
                }
                let stamp = Stamp {
                    account_id: owner,
                    account_folder,
                    cluster: if valid_cluster(cluster) {
                        cluster
                    } else {
                        INVALID
                    },
                    log_group: &env.log_group,
                    log_stream: &env.log_stream,
                };
                out.rows.reserve(env.log_events.len());
                for ev in &env.log_events {
                    let row = audit_row(stamp, ev, default_region, aws_auth);
                    match row.parsed.status {
                        ParseStatus::Ok => {}
                        ParseStatus::Truncated => out.metrics.truncated += 1,
                        ParseStatus::Invalid => out.metrics.invalid += 1,
                    }
                    out.rows.push(row);
                }
            }
            None => {
                // The org trail's log group (or anything else subscribed by mistake).
                for ev in &env.log_events {
                    match cloudtrail::parse_event(ev.message.as_bytes()) {
                        Ok(cloudtrail::Parsed::Sts(s)) => {
                            let mut s = *s;
                            if s.recipient_account_id.is_none() {
                                s.recipient_account_id = Some(owner.to_string());
                            }
                            out.sessions.push(s);
                        }
                        _ => out.metrics.skipped += 1,
                    }
                }
            }
        }
    }
    out
}

fn audit_row<'a>(
    stamp: Stamp<'a>,
    ev: &'a decode::CwlLogEvent<'a>,
    default_region: Option<&'a str>,
    aws_auth: Option<&'a AwsAuth>,
) -> AuditRow<'a> {
    let parsed = audit::parse(&ev.message);
    let event_ms = parsed
        .event
        .request_received_timestamp
        .as_deref()
        .and_then(resolver::time::parse_rfc3339_ms)
        .unwrap_or(ev.timestamp);
    let user = parsed.event.user.as_ref();
    let mut extra = audit::aws_extra(user.and_then(|u| u.extra));
    if extra.access_key_id.is_none() {
        extra.access_key_id = parsed.recovered_key;
    }
    let region = ev
        .extracted_fields
        .as_ref()
        .and_then(|f| f.region.as_deref())
        .or(default_region);
    let raw_message = (parsed.status != ParseStatus::Ok).then_some(&*ev.message);
    // Identity borrows from `parsed`, which moves into the row: classify from the
    // message-borrowed strings only.
    let username: Option<&'a str> = match user.and_then(|u| u.username.as_ref()) {
        Some(t) => match &t.0 {
            Cow::Borrowed(b) => Some(b),
            // An escaped username (rare): classification uses the extra fields only.
            Cow::Owned(_) => None,
        },
        None => None,
    };
    let unauth = audit::unauthenticated(user.and_then(|u| u.groups));
    let identity = resolver::classify(username, unauth, &extra, aws_auth);
    AuditRow {
        stamp,
        cwl_id: &ev.id,
        region,
        event_ms,
        parsed,
        raw_message,
        extra,
        identity,
    }
}

/// The partition a row belongs to: (day, account folder, cluster).
type PartKey<'a> = (i64, &'a str, &'a str);

fn part_key<'a>(r: &AuditRow<'a>) -> PartKey<'a> {
    (
        r.event_ms.div_euclid(86_400_000),
        r.stamp.account_folder,
        r.stamp.cluster,
    )
}

/// A stable fingerprint of a batch: its record ids. A Firehose retry carries the same
/// ids, so it gets the same object keys and overwrites.
pub fn batch_fingerprint<'a>(ids: impl Iterator<Item = &'a str>) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for id in ids {
        h.update(id.as_bytes());
        h.update(b"\n");
    }
    h.digest()
}

fn object_key(table: &str, fingerprint: u64, day: i64, folders: &[&str]) -> String {
    let dt = resolver::time::utc_date(day * 86_400_000);
    let mut path = format!("{table}/dt={dt}");
    for f in folders {
        path.push('/');
        path.push_str(f);
    }
    let h = xxhash_rust::xxh3::xxh3_64_with_seed(path.as_bytes(), fingerprint);
    format!("{path}/part-{h:016x}.parquet")
}

/// What stage 3 must fetch before attribution.
#[derive(Debug, Default)]
struct Wanted {
    keys: HashSet<String>,
    /// (role, munged session) -> (earliest, latest) event time.
    role_sessions: HashMap<(String, String), (i64, i64)>,
}

fn wanted(rows: &[AuditRow<'_>]) -> Wanted {
    let mut w = Wanted::default();
    for r in rows {
        match &r.identity {
            Identity::AccessKey { key } => {
                if !w.keys.contains(key.as_ref()) {
                    w.keys.insert(key.to_string());
                }
            }
            Identity::SessionName { candidates } => {
                for RoleSession { role, munged, .. } in candidates {
                    let e = w
                        .role_sessions
                        .entry((role.clone(), munged.to_string()))
                        .or_insert((r.event_ms, r.event_ms));
                    e.0 = e.0.min(r.event_ms);
                    e.1 = e.1.max(r.event_ms);
                }
            }
            _ => {}
        }
    }
    w
}

// ---- the handler ------------------------------------------------------------------------

/// The handler: configuration, the lake, the session store and the warm cache. Built
/// once per process and reused across invocations.
pub struct Handler<O, S> {
    pub config: HandlerConfig,
    lake: Arc<O>,
    sessions: S,
    cache: Mutex<SessionCache>,
}

impl<O: ObjectStore, S: SessionStore> Handler<O, S> {
    pub fn new(config: HandlerConfig, lake: Arc<O>, sessions: S) -> Self {
        let cache = SessionCache::new(config.cache_capacity, config.negative_ttl_ms);
        Self {
            config,
            lake,
            sessions,
            cache: Mutex::new(cache),
        }
    }

    pub fn lake(&self) -> &Arc<O> {
        &self.lake
    }

    /// Handle a Firehose transformation event and build its response.
    pub async fn handle_firehose(
        &self,
        event: &FirehoseEvent,
        now_ms: i64,
    ) -> Result<(FirehoseResponse, BatchOutput), HandlerError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut inputs = Vec::with_capacity(event.records.len());
        let mut bad_b64 = Vec::new();
        for (i, r) in event.records.iter().enumerate() {
            match b64.decode(r.data.as_bytes()) {
                Ok(data) => inputs.push(InputRecord::gzip(r.record_id.clone(), data)),
                Err(e) => {
                    bad_b64.push((i, e.to_string()));
                    inputs.push(InputRecord::gzip(r.record_id.clone(), Vec::new()));
                }
            }
        }
        let mut out = self
            .process(&inputs, event.region.as_deref(), now_ms)
            .await?;
        for (i, why) in bad_b64 {
            let o = &mut out.outcomes[i];
            if o.result != RecordResult::ProcessingFailed {
                out.metrics.records_failed += 1;
                out.metrics.records_ok -= u64::from(o.result == RecordResult::Ok);
                out.metrics.records_dropped -= u64::from(o.result == RecordResult::Dropped);
            }
            *o = RecordOutcome {
                result: RecordResult::ProcessingFailed,
                error: Some(format!("data is not base64: {why}")),
            };
        }
        let records = event
            .records
            .iter()
            .zip(&out.outcomes)
            .map(|(r, o)| FirehoseResponseRecord {
                record_id: r.record_id.clone(),
                result: o.result,
                data: match o.result {
                    RecordResult::Dropped => String::new(),
                    _ => r.data.clone(),
                },
            })
            .collect();
        Ok((FirehoseResponse { records }, out))
    }

    /// Process one batch of records (ids + Kinesis bytes).
    pub async fn process(
        &self,
        records: &[InputRecord],
        region: Option<&str>,
        now_ms: i64,
    ) -> Result<BatchOutput, HandlerError> {
        let cap = self.config.max_decompressed;
        let mut metrics = Metrics {
            records_in: records.len() as u64,
            bytes_in: records.iter().map(|r| r.data.len() as u64).sum(),
            ..Default::default()
        };

        // Stage 1: gunzip and parse envelopes, in parallel; each decompressed buffer is
        // freed as soon as its envelopes are detached from it.
        let decoded: Vec<(usize, Result<Vec<CwlEnvelope<'static>>, DecodeError>)> = records
            .par_iter()
            .map(|r| {
                let buf = if r.gzip {
                    decode::gunzip(&r.data, cap).map(Cow::Owned)
                } else if r.data.len() > cap {
                    Err(DecodeError::TooLarge(cap))
                } else {
                    Ok(Cow::Borrowed(r.data.as_slice()))
                };
                match buf {
                    Ok(b) => (
                        b.len(),
                        decode::envelopes(&b)
                            .map(|v| v.into_iter().map(CwlEnvelope::into_owned).collect()),
                    ),
                    Err(e) => (0, Err(e)),
                }
            })
            .collect();
        metrics.bytes_decompressed = decoded.iter().map(|(n, _)| *n as u64).sum();
        let envelopes: Vec<Result<Vec<CwlEnvelope<'static>>, DecodeError>> =
            decoded.into_iter().map(|(_, e)| e).collect();

        // Stage 2: extract rows and sessions, in parallel.
        let aws_auth = self.config.aws_auth.as_deref();
        let extracted: Vec<Option<Extracted<'_>>> = envelopes
            .par_iter()
            .map(|e| e.as_ref().ok().map(|envs| extract(envs, region, aws_auth)))
            .collect();

        let mut outcomes = Vec::with_capacity(records.len());
        let mut rows: Vec<AuditRow<'_>> = Vec::new();
        let mut sessions: Vec<StsSession> = Vec::new();
        for (env, ex) in envelopes.iter().zip(extracted) {
            match (env, ex) {
                (Err(e), _) => {
                    metrics.records_failed += 1;
                    outcomes.push(RecordOutcome {
                        result: RecordResult::ProcessingFailed,
                        error: Some(e.to_string()),
                    });
                }
                (Ok(_), Some(ex)) => {
                    metrics += ex.metrics;
                    let result = if ex.control_only || !self.config.raw_archive {
                        metrics.records_dropped += 1;
                        RecordResult::Dropped
                    } else {
                        metrics.records_ok += 1;
                        RecordResult::Ok
                    };
                    outcomes.push(RecordOutcome {
                        result,
                        error: None,
                    });
                    rows.extend(ex.rows);
                    sessions.extend(ex.sessions);
                }
                (Ok(_), None) => unreachable!("extracted exactly when decoded"),
            }
        }

        // Stage 3: sessions of this batch first, then the cache and the store.
        let sessions: Vec<Arc<StsSession>> = cloudtrail::dedup(sessions)
            .into_iter()
            .map(Arc::new)
            .collect();
        metrics.sts_sessions = sessions.len() as u64;
        let mut index = SessionIndex::new();
        for s in &sessions {
            index.insert(s.clone());
        }
        metrics.session_lookups = self.fill_index(&mut index, &rows, now_ms).await?;
        index.finalize();

        // Stage 4: partitions -> sorted Arrow -> Parquet, in parallel.
        let fingerprint = batch_fingerprint(records.iter().map(|r| r.record_id.as_str()));
        let mut parts: HashMap<PartKey<'_>, Vec<&AuditRow<'_>>> = HashMap::new();
        for r in &rows {
            parts.entry(part_key(r)).or_default().push(r);
        }
        let event_time_col = schemas::column_index(schemas::EKS_AUDIT, "event_time").unwrap_or(0);
        let encoded: Vec<Result<(String, Vec<u8>, Metrics), HandlerError>> = parts
            .into_par_iter()
            .map(|((day, account, cluster), mut prow)| {
                prow.sort_by_key(|r| r.event_ms);
                let key = object_key("eks_audit", fingerprint, day, &[account, cluster]);
                let mut b = AuditBuilder::new();
                let mut m = Metrics::default();
                for r in &prow {
                    let a = index.attribute(&r.identity, r.username(), r.event_ms);
                    match a.status {
                        AttributionStatus::Resolved => m.attribution_resolved += 1,
                        AttributionStatus::Pending => m.attribution_pending += 1,
                        AttributionStatus::Ambiguous => m.attribution_ambiguous += 1,
                        AttributionStatus::NotApplicable => m.attribution_not_applicable += 1,
                    }
                    b.append(&AuditRowRef {
                        account_id: r.stamp.account_id,
                        region: r.region,
                        cluster: r.stamp.cluster,
                        log_group: r.stamp.log_group,
                        log_stream: r.stamp.log_stream,
                        cwl_event_id: r.cwl_id,
                        ingest_ms: now_ms,
                        event_ms: r.event_ms,
                        event: &r.parsed.event,
                        parse_status: r.parsed.status,
                        raw_message: r.raw_message,
                        extra: &r.extra,
                        attribution: &a,
                    });
                }
                m.events_written = prow.len() as u64;
                let enc = |source| HandlerError::Encode {
                    partition: key.clone(),
                    source,
                };
                let batch = b.finish().map_err(enc)?;
                let bytes = encode::to_parquet("eks_audit", &batch, event_time_col).map_err(enc)?;
                Ok((key, bytes, m))
            })
            .collect();

        let mut objects: Vec<(String, Vec<u8>)> = Vec::new();
        for e in encoded {
            let (k, b, m) = e?;
            metrics += m;
            objects.push((k, b));
        }

        // sts_sessions partitions: (day, account)
        let mut sts_parts: HashMap<(i64, &str), Vec<&StsSession>> = HashMap::new();
        for s in &sessions {
            let acct = s.account().unwrap_or(INVALID);
            sts_parts
                .entry((s.event_time_ms.div_euclid(86_400_000), acct))
                .or_default()
                .push(s);
        }
        let sts_time_col = schemas::column_index(schemas::STS_SESSIONS, "event_time").unwrap_or(0);
        for ((day, acct), mut v) in sts_parts {
            v.sort_by_key(|s| s.event_time_ms);
            let key = object_key("sts_sessions", fingerprint, day, &[acct]);
            let enc = |source| HandlerError::Encode {
                partition: key.clone(),
                source,
            };
            let batch = encode::sts_batch(&v).map_err(enc)?;
            let bytes = encode::to_parquet("sts_sessions", &batch, sts_time_col).map_err(enc)?;
            objects.push((key, bytes));
        }
        objects.sort_by(|a, b| a.0.cmp(&b.0));

        // Writes: Parquet objects and the session index. Any failure fails the batch.
        metrics.objects_written = objects.len() as u64;
        metrics.bytes_written = objects.iter().map(|(_, b)| b.len() as u64).sum();
        let keys: Vec<String> = objects.iter().map(|(k, _)| k.clone()).collect();
        let lake = &self.lake;
        stream::iter(objects)
            .map(|(k, b)| async move {
                lake.put(&k, b).await.map_err(|source| HandlerError::Write {
                    location: lake.locate(&k),
                    source,
                })
            })
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await?;
        self.sessions.put(&sessions).await?;
        if let Ok(mut c) = self.cache.lock() {
            for s in &sessions {
                if s.issued() {
                    c.put_hit(s.clone());
                }
            }
        }
        Ok(BatchOutput {
            outcomes,
            metrics,
            objects: keys,
        })
    }

    /// Fetch what the batch needs from the cache and the store: the sessions behind the
    /// audit events' access keys, each link of their role chains, and sessions by name.
    /// Returns the number of store lookups.
    async fn fill_index(
        &self,
        index: &mut SessionIndex,
        rows: &[AuditRow<'_>],
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let want = wanted(rows);
        let mut lookups = 0u64;
        let mut roots: Vec<String> = want.keys.into_iter().collect();
        let mut tried: HashSet<String> = HashSet::new();

        // Sessions by role + name (older clusters): one listing per pair.
        let rs: Vec<((String, String), (i64, i64))> = want.role_sessions.into_iter().collect();
        let found: Vec<Vec<StsSession>> = stream::iter(rs.iter())
            .map(|((role, munged), (lo, hi))| {
                // issued up to 12 h (the longest role session) before the first event
                self.sessions.find_by_role_session(
                    role,
                    munged,
                    lo - 12 * 3_600_000 - resolver::attribute::LIFETIME_SKEW_AFTER_MS,
                    hi + resolver::attribute::LIFETIME_SKEW_BEFORE_MS,
                )
            })
            .buffer_unordered(crate::session_store::CONCURRENCY)
            .try_collect()
            .await?;
        lookups += rs.len() as u64;
        for s in found.into_iter().flatten() {
            if let Some(k) = s.access_key_id.clone() {
                roots.push(k);
            }
            index.insert(Arc::new(s));
        }

        for _ in 0..resolver::attribute::MAX_CHAIN_DEPTH {
            let mut fetch: Vec<String> = Vec::new();
            {
                let cache = self.cache.lock().expect("cache poisoned");
                let mut seen = HashSet::new();
                for root in &roots {
                    let Some(missing) = index.missing_link(root) else {
                        continue;
                    };
                    if tried.contains(&missing) || !seen.insert(missing.clone()) {
                        continue;
                    }
                    match cache.lookup(&missing, now_ms) {
                        Cached::Hit(s) => {
                            index.insert(s);
                        }
                        Cached::RecentMiss => {
                            tried.insert(missing);
                        }
                        Cached::Unknown => {
                            if valid_key_id(&missing) {
                                fetch.push(missing);
                            } else {
                                tried.insert(missing);
                            }
                        }
                    }
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
            lookups += fetch.len() as u64;
            let got: Vec<(String, Option<StsSession>)> = stream::iter(fetch.into_iter())
                .map(|k| async move {
                    let s = self.sessions.get(&k).await?;
                    Ok::<_, StoreError>((k, s))
                })
                .buffer_unordered(crate::session_store::CONCURRENCY)
                .try_collect()
                .await?;
            let mut cache = self.cache.lock().expect("cache poisoned");
            for (k, s) in got {
                tried.insert(k.clone());
                match s {
                    Some(s) => {
                        let s = Arc::new(s);
                        cache.put_hit(s.clone());
                        index.insert(s);
                    }
                    None => cache.put_miss(k, now_ms),
                }
            }
        }
        Ok(lookups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_follow_eks_rules() {
        for ok in ["prod-east", "a", "Prod_1", &"x".repeat(100)] {
            assert!(valid_cluster(ok), "{ok}");
        }
        for bad in [
            "",
            "-lead",
            "_lead",
            "has space",
            "a/b",
            "..",
            "x.y",
            &"x".repeat(101),
        ] {
            assert!(!valid_cluster(bad), "{bad}");
        }
        assert_eq!(
            eks_cluster_of("/aws/eks/prod-east/cluster"),
            Some("prod-east")
        );
        assert_eq!(eks_cluster_of("/aws/eks/../../x/cluster"), Some("../../x"));
        assert_eq!(eks_cluster_of("aws-cloudtrail-logs"), None);
    }

    #[test]
    fn object_keys_are_deterministic_per_batch_and_partition() {
        let f1 = batch_fingerprint(["a", "b"].into_iter());
        let f2 = batch_fingerprint(["a", "c"].into_iter());
        let k = |f| object_key("eks_audit", f, 20053, &["111122223333", "prod"]);
        assert_eq!(k(f1), k(f1));
        assert_ne!(k(f1), k(f2));
        assert!(k(f1).starts_with("eks_audit/dt=2024-11-26/111122223333/prod/part-"));
        assert!(k(f1).ends_with(".parquet"));
        assert_ne!(
            object_key("eks_audit", f1, 20053, &["111122223333", "a"]),
            object_key("eks_audit", f1, 20053, &["111122223333", "b"])
        );
    }
}
