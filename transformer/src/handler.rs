//! The Firehose handler: one code path from Kinesis record bytes to Parquet objects.
//!
//! [`Handler::process`] reads as the data flow of docs/architecture.md; each stage is a
//! plain function in the file named after it, and the only I/O (session lookups, object
//! writes, the session index) happens here, at the top level:
//!
//! 1. [`decode`]: gunzip (capped per record and per batch) and parse each record's
//!    envelopes (parallel);
//! 2. [`extract`]: stamp, parse and classify audit events; collect STS records and
//!    EKS API calls ([`eks_api`](crate::eks_api)) of trusted trails (parallel);
//! 3. index the batch's STS sessions in the store (never replacing an indexed one), then
//!    [`plan`] what the rows need and [`lookup::fetch`] it from the cache and store;
//! 4. [`attribute`] every row and EKS API caller against the filled index, then
//!    [`detect`]: every rule on every parsed row (parallel) and API call, and build the
//!    [`finding`]s;
//! 5. [`partition`] rows by (day, account, cluster), sessions, API calls and findings
//!    by (day, account)
//!    (records past the batch's partition budget were failed back in step 2);
//! 6. [`encode`] each partition as Parquet (parallel);
//! 7. write the objects, then publish the alerts ([`alerts`]). Any write or publish
//!    error fails the whole
//!    invocation so that Firehose retries the batch; object keys depend only on the
//!    batch's record ids and the partition, so a retry overwrites.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use futures::stream::{self, StreamExt, TryStreamExt};
use rayon::prelude::*;

use resolver::awsauth::AwsAuth;
use resolver::cloudtrail::{self, StsSession};
use resolver::store::{Indexed, SessionCache, SessionStore, StoreError};
use resolver::SessionIndex;

use crate::alerts::{self, AlertError, AlertSink, NoAlerts};
use crate::decode::{self, DecodeError, Decoded};
use crate::detect::{self, Detections};
use crate::encode::{self, EncodeError};
use crate::extract::{self, ApiRow, AuditRow, Extracted};
use crate::firehose::{FirehoseEvent, FirehoseResponse, FirehoseResponseRecord, RecordResult};
use crate::lake::{LakeError, ObjectStore};
use crate::metrics::Metrics;
use crate::partition::{self, Partition};
use crate::sigma::{RuleSet, Severity};
use crate::trust::TrustedTrails;
use crate::{attribute, finding, lookup, plan};

/// What one batch may cost, whatever its records hold (DESIGN 6). Over a budget,
/// records are failed back to Firehose (kept in `errors/`, replayable) and lookups are
/// left for the view: nothing is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Decompressed bytes in all, shared max-min fairly among the accounts.
    pub decompressed: usize,
    /// Distinct `eks_audit` partitions (objects) per account.
    pub partitions: usize,
    /// Session-store requests.
    pub lookups: usize,
}

/// 192 MiB: a real 3 MB Firehose batch decompresses to 50-100 MB; this leaves room and
/// keeps a batch of maximal gzip bombs within a 1769 MB Lambda (measured peak RSS in
/// BENCHMARKS.md).
pub const DEFAULT_MAX_BATCH_DECOMPRESSED: usize = 192 << 20;
/// Per account: a busy account's batch spans a few days of a few dozen clusters.
pub const DEFAULT_MAX_BATCH_PARTITIONS: usize = 500;
/// About 2 s of S3 GETs at 32 in flight; real batches need a few dozen.
pub const DEFAULT_MAX_BATCH_LOOKUPS: usize = 2000;

impl Default for Budget {
    fn default() -> Self {
        Self {
            decompressed: DEFAULT_MAX_BATCH_DECOMPRESSED,
            partitions: DEFAULT_MAX_BATCH_PARTITIONS,
            lookups: DEFAULT_MAX_BATCH_LOOKUPS,
        }
    }
}

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
    /// The only log groups whose CloudTrail STS records are indexed.
    pub trusted_trails: TrustedTrails,
    /// EKS OIDC issuer id -> cluster, to name the cluster of IRSA workloads.
    pub issuer_clusters: Arc<resolver::workload::IssuerClusters>,
    pub budget: Budget,
    /// Warm-cache size (sessions) and how long a miss is remembered.
    pub cache_capacity: usize,
    pub negative_ttl_ms: i64,
    /// The detection rules in force (the shipped pack and the operator's).
    pub rules: Arc<RuleSet>,
    /// Findings at or above this severity are published as alerts.
    pub alert_severity: Severity,
}

impl Default for HandlerConfig {
    fn default() -> Self {
        Self {
            raw_archive: true,
            max_decompressed: decode::DEFAULT_MAX_DECOMPRESSED,
            aws_auth: None,
            trusted_trails: TrustedTrails::none(),
            issuer_clusters: Arc::default(),
            budget: Budget::default(),
            cache_capacity: 100_000,
            negative_ttl_ms: 60_000,
            rules: Arc::default(),
            alert_severity: Severity::High,
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
    #[error(transparent)]
    Sessions(#[from] StoreError),
    #[error(transparent)]
    Alert(#[from] AlertError),
    #[error("encoding {object}: {source}")]
    Encode {
        object: String,
        #[source]
        source: EncodeError,
    },
}

impl HandlerError {
    /// Would the same batch succeed later (a throttled or unreachable store), or never
    /// (a missing bucket, access denied)? Retrying the latter only delays the report.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Write { source, .. } => source.retryable(),
            Self::Sessions(e) => match e.source.downcast_ref::<LakeError>() {
                Some(l) => l.retryable(),
                // a record that does not encode or decode will not next time either
                None => !matches!(
                    e.op,
                    resolver::store::StoreOp::Encode | resolver::store::StoreOp::Decode
                ),
            },
            Self::Alert(e) => e.retryable(),
            Self::Encode { .. } => false,
        }
    }
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

impl RecordOutcome {
    fn failed(why: String) -> Self {
        Self {
            result: RecordResult::ProcessingFailed,
            error: Some(why),
        }
    }
}

/// The result of a batch: one outcome per record in input order, counts, and the keys
/// of the objects written.
#[derive(Debug, Clone)]
pub struct BatchOutput {
    pub outcomes: Vec<RecordOutcome>,
    pub metrics: Metrics,
    pub objects: Vec<String>,
}

/// The handler: configuration, the lake, the session store, the warm cache and where
/// alerts go. Built once per process and reused across invocations.
pub struct Handler<O, S, A = NoAlerts> {
    pub config: HandlerConfig,
    lake: Arc<O>,
    sessions: S,
    alerts: A,
    cache: Mutex<SessionCache>,
}

impl<O: ObjectStore, S: SessionStore> Handler<O, S, NoAlerts> {
    /// A handler that publishes no alerts (findings are still written).
    pub fn new(config: HandlerConfig, lake: Arc<O>, sessions: S) -> Self {
        let cache = SessionCache::new(config.cache_capacity, config.negative_ttl_ms);
        Self {
            config,
            lake,
            sessions,
            alerts: NoAlerts,
            cache: Mutex::new(cache),
        }
    }

    /// The same handler, publishing alerts to `alerts`.
    pub fn with_alerts<A: AlertSink>(self, alerts: A) -> Handler<O, S, A> {
        Handler {
            config: self.config,
            lake: self.lake,
            sessions: self.sessions,
            alerts,
            cache: self.cache,
        }
    }
}

impl<O: ObjectStore, S: SessionStore, A: AlertSink> Handler<O, S, A> {
    pub fn alerts(&self) -> &A {
        &self.alerts
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
        let (inputs, bad_b64) = decode_base64(event);
        let mut out = self
            .process(&inputs, event.region.as_deref(), now_ms)
            .await?;
        for (i, why) in bad_b64 {
            // an empty record already failed as "not gzip"; say why it was empty
            out.outcomes[i] = RecordOutcome::failed(why);
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
        let metrics = Metrics::for_input(records.iter().map(|r| r.data.len()));

        // 1-2. decode (within the batch budget) and extract, in parallel over records
        let decoded: Vec<Decoded> = decode::decode_batch(
            records,
            |r| (&r.data, r.gzip),
            self.config.max_decompressed,
            self.config.budget.decompressed,
        );
        let out = self
            .process_decoded(records, &decoded, region, now_ms, metrics)
            .await;
        // the messages are most of the batch's memory: freed on every core, not after
        // the batch on this thread alone (a serial 1.5 % of the instructions)
        decoded.into_par_iter().for_each(drop);
        out
    }

    /// Steps 2-7 over the decoded records.
    async fn process_decoded(
        &self,
        records: &[InputRecord],
        decoded: &[Decoded],
        region: Option<&str>,
        now_ms: i64,
        mut metrics: Metrics,
    ) -> Result<BatchOutput, HandlerError> {
        let (outcomes, rows, sessions, api_rows) = self.extract(decoded, region, &mut metrics);
        let api_ids: Vec<_> = api_rows.iter().map(|r| r.event.identity()).collect();

        // 3. index this batch's STS sessions (never replacing what the store holds),
        // then fetch what the rows still need from the cache and the store
        let sessions: Vec<Arc<StsSession>> = cloudtrail::dedup(sessions)
            .into_iter()
            .map(Arc::new)
            .collect();
        metrics.sts_sessions = sessions.len() as u64;
        let mut index = self.index_sessions(&sessions, &mut metrics).await?;
        let plan = plan::plan_of(
            rows.iter()
                .map(|r| (r.stamp.account_id, &r.identity, r.event_ms))
                .chain(
                    api_rows
                        .iter()
                        .zip(&api_ids)
                        .map(|(r, id)| (r.event.account_folder(), id, r.event.event_ms)),
                ),
        );
        let budget = self.config.budget.lookups;
        let fetched = lookup::fetch(
            &self.sessions,
            &self.cache,
            &plan,
            &mut index,
            now_ms,
            budget,
        )
        .await?;
        metrics.session_lookups += fetched.lookups;
        metrics.session_lookups_over_budget = fetched.over_budget;
        index.finalize();

        // 4. attribute, detect
        let attributions = attribute::attribute(&index, &rows, &mut metrics);
        let api_attributions = attribute::attribute_api(&index, &api_rows, &api_ids);
        metrics.events_written = rows.len() as u64;
        let rules = &*self.config.rules;
        let detections = detect::detect(rules, &rows);
        let api_detections = detect::detect_api(rules, &api_rows);
        let mut findings = finding::of_audit(&rows, &attributions, rules, &detections.hits);
        findings.extend(finding::of_api(
            &api_rows,
            &api_attributions,
            rules,
            &api_detections.hits,
        ));
        metrics.findings = findings.len() as u64;

        // 5-6. partition and encode
        let fingerprint = partition::batch_fingerprint(records.iter().map(|r| &*r.record_id));
        let batch = Batch {
            rows: &rows,
            attributions: &attributions,
            detections: &detections,
            api_rows: &api_rows,
            api_attributions: &api_attributions,
            api_detections: &api_detections,
            findings: &findings,
            sessions: &sessions,
        };
        let objects = encode_all(&batch, fingerprint, now_ms)?;

        // 7. write the Parquet objects (the session index was written in step 3), then
        // alert: a finding is in the lake before anyone is told about it
        metrics.objects_written = objects.len() as u64;
        metrics.bytes_written = objects.iter().map(|(_, b)| b.len() as u64).sum();
        let keys = self.write(objects).await?;
        if self.alerts.enabled() {
            let alerts = alerts::build(&findings, self.config.alert_severity);
            self.alerts.publish(fingerprint, &alerts).await?;
            metrics.alerts_published = alerts.len() as u64;
        }
        Ok(BatchOutput {
            outcomes,
            metrics,
            objects: keys,
        })
    }

    /// Step 2 over the decoded records, in parallel; then each record's outcome.
    fn extract<'a>(
        &'a self,
        decoded: &'a [Decoded],
        region: Option<&'a str>,
        metrics: &mut Metrics,
    ) -> Merged<'a> {
        let cx = extract::Context {
            default_region: region,
            aws_auth: self.config.aws_auth.as_deref(),
            trusted_trails: &self.config.trusted_trails,
        };
        let extracted: Vec<Result<(usize, Extracted<'a>), &DecodeError>> = decoded
            .par_iter()
            .map(|d| match d {
                Ok((n, envs)) => Ok((*n, extract::extract(envs, cx))),
                Err(e) => Err(e),
            })
            .collect();
        self.merge(extracted, metrics)
    }

    /// Write the batch's sessions to the store, each key once and never over a
    /// different indexed record, and build the batch's index from the outcome: where
    /// the store already held another record for a key, that record is used and the
    /// new one is counted as a conflict. Written before attribution, so a retried batch
    /// finds its own sessions (`Same`) and attributes the same way.
    async fn index_sessions(
        &self,
        sessions: &[Arc<StsSession>],
        metrics: &mut Metrics,
    ) -> Result<SessionIndex, HandlerError> {
        // in the batch: the first record for a key is the one written; the others for
        // that key are compared, after the write, with whatever then holds the key
        let mut first: std::collections::HashMap<&str, usize> = Default::default();
        let mut to_store: Vec<Arc<StsSession>> = Vec::with_capacity(sessions.len());
        let mut later: Vec<(usize, &Arc<StsSession>)> = Vec::new();
        for s in sessions {
            match resolver::store::indexable(s) {
                Some(k) => match first.get(k) {
                    Some(&i) => later.push((i, s)),
                    None => {
                        first.insert(k, to_store.len());
                        to_store.push(s.clone());
                    }
                },
                None => to_store.push(s.clone()),
            }
        }
        let outcomes = self.sessions.put(&to_store).await?;
        let mut index = SessionIndex::with_issuers(self.config.issuer_clusters.clone());
        let mut held: Vec<Arc<StsSession>> = Vec::with_capacity(to_store.len());
        {
            let mut cache = lookup::lock(&self.cache);
            for (s, o) in to_store.into_iter().zip(outcomes) {
                let h = match o {
                    Indexed::Conflict(old) => {
                        metrics.sts_conflicts += 1;
                        Arc::new(*old)
                    }
                    _ => s,
                };
                if h.issued() {
                    cache.put_hit(h.clone());
                }
                index.insert(h.clone());
                held.push(h);
            }
        }
        for (i, s) in later {
            if !cloudtrail::same_call(&held[i], s) {
                metrics.sts_conflicts += 1;
            }
        }
        Ok(index)
    }

    /// Each record's outcome, and the rows and sessions of the records that decoded
    /// and fit the batch's partition budget.
    fn merge<'a>(
        &self,
        extracted: Vec<Result<(usize, Extracted<'a>), &DecodeError>>,
        metrics: &mut Metrics,
    ) -> Merged<'a> {
        let over = partition::over_partition_budget(
            extracted
                .iter()
                .map(|e| e.as_ref().map_or(&[][..], |(_, x)| x.rows.as_slice())),
            self.config.budget.partitions,
        );
        let mut outcomes = Vec::with_capacity(extracted.len());
        // sized once: growing by doubling copied every row (~1 KB each) up to five
        // times and held twice the rows' memory at the peak
        let n_rows = extracted
            .iter()
            .map(|e| e.as_ref().map_or(0, |(_, x)| x.rows.len()))
            .sum();
        let mut rows = Vec::with_capacity(n_rows);
        let mut sessions = Vec::new();
        let mut api_rows = Vec::new();
        for (ex, over) in extracted.into_iter().zip(over) {
            match ex {
                Ok(_) if over => {
                    metrics.records_failed += 1;
                    metrics.records_over_budget += 1;
                    outcomes.push(RecordOutcome::failed(format!(
                        "its account's partition budget ({} per batch) is spent: record kept for a replay (auditlake ingest)",
                        self.config.budget.partitions
                    )));
                }
                Ok((n, ex)) => {
                    metrics.bytes_decompressed += n as u64;
                    *metrics += ex.metrics;
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
                    api_rows.extend(ex.api_events);
                }
                Err(e) => {
                    metrics.records_failed += 1;
                    if matches!(e, DecodeError::OverBudget { .. }) {
                        metrics.records_over_budget += 1;
                    }
                    outcomes.push(RecordOutcome::failed(e.to_string()));
                }
            }
        }
        (outcomes, rows, sessions, api_rows)
    }

    /// Write every object (concurrently); any failure fails the batch.
    async fn write(&self, objects: Vec<(String, Vec<u8>)>) -> Result<Vec<String>, HandlerError> {
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
        Ok(keys)
    }
}

/// Each record's bytes from its base64 `data`, and the records whose `data` is not
/// base64 (with why). Not inlined: a stage of the benchmark's instruction profile.
#[inline(never)]
fn decode_base64(event: &FirehoseEvent) -> (Vec<InputRecord>, Vec<(usize, String)>) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut bad_b64 = Vec::new();
    // in parallel: it runs before anything else of the batch can (serial, it was 1 % of
    // the instructions and more of the two-core wall time)
    let decoded: Vec<Result<Vec<u8>, base64::DecodeError>> = event
        .records
        .par_iter()
        .map(|r| b64.decode(r.data.as_bytes()))
        .collect();
    let inputs = event
        .records
        .iter()
        .zip(decoded)
        .enumerate()
        .map(|(i, (r, data))| {
            let data = data.unwrap_or_else(|e| {
                bad_b64.push((i, format!("data is not base64: {e}")));
                Vec::new()
            });
            InputRecord::gzip(r.record_id.clone(), data)
        })
        .collect();
    (inputs, bad_b64)
}

/// Each record's outcome, and the audit rows, STS sessions and EKS API calls of the
/// records that go on.
type Merged<'a> = (
    Vec<RecordOutcome>,
    Vec<AuditRow<'a>>,
    Vec<StsSession>,
    Vec<ApiRow<'a>>,
);

type Attributions<'b> = [std::borrow::Cow<'b, resolver::Attribution<'b>>];

/// What steps 5-6 encode.
struct Batch<'b, 'a> {
    rows: &'b [AuditRow<'a>],
    attributions: &'b Attributions<'b>,
    detections: &'b Detections<'b>,
    api_rows: &'b [ApiRow<'a>],
    api_attributions: &'b Attributions<'b>,
    api_detections: &'b Detections<'b>,
    findings: &'b [finding::Finding<'b>],
    sessions: &'b [Arc<StsSession>],
}

/// Steps 5-6: every `eks_audit` partition (in parallel), `sts_sessions`,
/// `eks_api_events` and `findings` partition as a Parquet object.
fn encode_all(
    b: &Batch<'_, '_>,
    fingerprint: u64,
    now_ms: i64,
) -> Result<Vec<(String, Vec<u8>)>, HandlerError> {
    let mut objects: Vec<(String, Vec<u8>)> = partition::audit_partitions(b.rows, fingerprint)
        .into_par_iter()
        .map(|p| {
            encoded(p, |pos| {
                encode::audit_parquet(b.rows, b.attributions, b.detections, pos, now_ms)
            })
        })
        .collect::<Result<_, _>>()?;
    for p in partition::sts_partitions(b.sessions, fingerprint) {
        let part: Vec<&StsSession> = p.rows.iter().map(|&i| &*b.sessions[i]).collect();
        objects.push(encoded(p, |_| encode::sts_parquet(&part))?);
    }
    for p in partition::api_partitions(b.api_rows, fingerprint) {
        objects.push(encoded(p, |pos| {
            encode::api_events_parquet(
                b.api_rows,
                b.api_attributions,
                b.api_detections,
                pos,
                now_ms,
            )
        })?);
    }
    for p in partition::findings_partitions(b.findings, fingerprint) {
        objects.push(encoded(p, |pos| {
            let part: Vec<&finding::Finding<'_>> = pos.iter().map(|&i| &b.findings[i]).collect();
            encode::findings_parquet(&part, now_ms)
        })?);
    }
    Ok(objects)
}

/// Encode one partition, naming its object in the error.
fn encoded(
    p: Partition,
    f: impl FnOnce(&[usize]) -> Result<Vec<u8>, EncodeError>,
) -> Result<(String, Vec<u8>), HandlerError> {
    match f(&p.rows) {
        Ok(b) => Ok((p.key, b)),
        Err(source) => Err(HandlerError::Encode {
            object: p.key,
            source,
        }),
    }
}
