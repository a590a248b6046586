//! `auditlake consume`: a Firehose stand-in over a Kinesis stream.
//!
//! Reads every shard (aws-sdk-kinesis), buffers records by size and age as Firehose's
//! Lambda processor does, runs the same handler, writes `Ok` records to `raw/` and
//! `ProcessingFailed` records to `errors/` (as Firehose would), then checkpoints.
//!
//! Exactly once across failures: before a batch is processed its shard ranges are
//! written to a manifest (`_consumer/<stream>/inflight.json`); checkpoints move only after
//! every object of the batch is written. A restarted consumer first replays an
//! in-flight manifest as the very same batch (same record ids, so the same object keys:
//! overwrites, not duplicates), then resumes after the checkpoints. A failing batch is
//! retried with backoff; it is never skipped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::ShardIteratorType;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use resolver::store::SessionStore;
use transformer::alerts::AlertSink;
use transformer::firehose::RecordResult;
use transformer::handler::{Handler, InputRecord};
use transformer::lake::ObjectStore;
use transformer::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("Kinesis {op} {stream}: {message}")]
    Kinesis {
        op: &'static str,
        stream: String,
        message: String,
        retryable: bool,
    },
    #[error("batch of {records} records still failing after {attempts} attempts: {message}")]
    BatchFailed {
        records: usize,
        attempts: u32,
        message: String,
    },
    #[error("{location}: {message}")]
    Checkpoint {
        location: String,
        message: String,
        retryable: bool,
    },
}

impl ConsumeError {
    /// A missing stream or bucket, or access denied, will not heal by waiting.
    fn retryable(&self) -> bool {
        match self {
            Self::Kinesis { retryable, .. } | Self::Checkpoint { retryable, .. } => *retryable,
            Self::BatchFailed { .. } => false,
        }
    }
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    pub stream: String,
    /// Flush when this many bytes are buffered (Firehose Lambda processor: <= 3 MB).
    pub buffer_bytes: usize,
    /// Flush when the oldest buffered record is this old.
    pub buffer_age: Duration,
    /// Stop once every shard is drained and the buffer flushed.
    pub until_idle: bool,
    /// Attempts per failing batch (with exponential backoff) before giving up.
    pub max_attempts: u32,
    /// Wait between polls of an empty shard.
    pub poll_interval: Duration,
    pub region: Option<String>,
    /// Fault injection for tests: abort the process after a batch's objects are written
    /// and before its checkpoint moves (the window the in-flight manifest covers).
    pub abort_after_write: bool,
}

impl Default for ConsumeOptions {
    fn default() -> Self {
        Self {
            stream: String::new(),
            buffer_bytes: 3 << 20,
            buffer_age: Duration::from_secs(60),
            until_idle: false,
            max_attempts: 12,
            poll_interval: Duration::from_millis(500),
            region: None,
            abort_after_write: false,
        }
    }
}

/// Shard ranges of a batch: shard id -> (first, last) sequence number.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Manifest {
    ranges: BTreeMap<String, (String, String)>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Checkpoints {
    /// shard id -> last sequence number processed
    shards: BTreeMap<String, String>,
}

struct Shard {
    id: String,
    iterator: Option<String>,
    closed: bool,
}

struct Buffered {
    shard: String,
    seq: String,
    data: Vec<u8>,
}

fn kerr<E>(
    op: &'static str,
    stream: &str,
    e: aws_sdk_kinesis::error::SdkError<E, aws_sdk_kinesis::config::http::HttpResponse>,
) -> ConsumeError
where
    E: aws_sdk_kinesis::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let f = auditlake::aws_error::describe(&e);
    ConsumeError::Kinesis {
        op,
        stream: stream.to_string(),
        message: f.line,
        retryable: f.retryable,
    }
}

/// A lake failure while checkpointing or archiving.
fn lerr(location: String, e: &transformer::lake::LakeError) -> ConsumeError {
    ConsumeError::Checkpoint {
        location,
        message: match e {
            transformer::lake::LakeError::Service { message, .. } => message.clone(),
            other => other.to_string(),
        },
        retryable: e.retryable(),
    }
}

fn utc_hour_path(ms: i64) -> String {
    let date = resolver::time::utc_date(ms);
    let hour = ms.rem_euclid(86_400_000) / 3_600_000;
    format!("{}/{hour:02}", date.replace('-', "/"))
}

/// Firehose's error-record shape for `processing-failed` objects.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorRecord<'a> {
    attempts_made: u32,
    arrival_timestamp: i64,
    error_code: &'static str,
    error_message: &'a str,
    attempt_ending_timestamp: i64,
    raw_data: String,
    record_id: &'a str,
}

pub struct Consumer<'h, O, S, A> {
    client: aws_sdk_kinesis::Client,
    handler: &'h Handler<O, S, A>,
    opts: ConsumeOptions,
    stop: Arc<AtomicBool>,
    /// The stream's ARN: names checkpoints and record ids, since a stream name is only
    /// unique within one account and region.
    stream_arn: String,
    pub totals: Metrics,
    pub batches: u64,
}

impl<'h, O: ObjectStore, S: SessionStore, A: AlertSink> Consumer<'h, O, S, A> {
    pub async fn from_env(
        handler: &'h Handler<O, S, A>,
        opts: ConsumeOptions,
        stop: Arc<AtomicBool>,
    ) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = &opts.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        let conf = loader.load().await;
        Self {
            client: aws_sdk_kinesis::Client::new(&conf),
            handler,
            opts,
            stop,
            stream_arn: String::new(),
            totals: Metrics::default(),
            batches: 0,
        }
    }

    /// `_consumer/<account>/<region>/<stream>`
    fn prefix(&self) -> String {
        let parts: Vec<&str> = self.stream_arn.split(':').collect();
        match parts.as_slice() {
            [_, _, _, region, account, _] => {
                format!("_consumer/{account}/{region}/{}", self.opts.stream)
            }
            _ => format!("_consumer/unknown/{}", self.opts.stream),
        }
    }

    async fn describe(&self) -> Result<String, ConsumeError> {
        let resp = self
            .client
            .describe_stream_summary()
            .stream_name(&self.opts.stream)
            .send()
            .await
            .map_err(|e| kerr("DescribeStreamSummary", &self.opts.stream, e))?;
        Ok(resp
            .stream_description_summary()
            .map(|d| d.stream_arn().to_string())
            .unwrap_or_default())
    }

    async fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        key: &str,
    ) -> Result<Option<T>, ConsumeError> {
        let lake = self.handler.lake();
        match lake.get(key).await {
            Ok(Some(b)) if !b.is_empty() => {
                serde_json::from_slice(&b)
                    .map(Some)
                    .map_err(|e| ConsumeError::Checkpoint {
                        location: lake.locate(key),
                        message: format!("not a checkpoint: {e}"),
                        retryable: false,
                    })
            }
            Ok(_) => Ok(None),
            Err(e) => Err(lerr(lake.locate(key), &e)),
        }
    }

    async fn write_json<T: Serialize>(&self, key: &str, v: &T) -> Result<(), ConsumeError> {
        let lake = self.handler.lake();
        let body = serde_json::to_vec(v).unwrap_or_default();
        lake.put(key, body)
            .await
            .map_err(|e| lerr(lake.locate(key), &e))
    }

    /// Retry a fallible async step with exponential backoff (transient endpoint outages).
    async fn retry<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T, ConsumeError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ConsumeError>>,
    {
        let mut delay = Duration::from_millis(250);
        let mut attempt = 1;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if attempt >= self.opts.max_attempts || !e.retryable() => return Err(e),
                Err(e) => {
                    eprintln!(
                        "consume: {what} failed (attempt {attempt}/{}), retrying in {delay:?}: {e}",
                        self.opts.max_attempts
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(15));
                    attempt += 1;
                }
            }
        }
    }

    async fn list_shards(&self) -> Result<Vec<String>, ConsumeError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let req = match &token {
                Some(t) => self.client.list_shards().next_token(t),
                None => self.client.list_shards().stream_name(&self.opts.stream),
            };
            let resp = req
                .send()
                .await
                .map_err(|e| kerr("ListShards", &self.opts.stream, e))?;
            out.extend(resp.shards().iter().map(|s| s.shard_id().to_string()));
            token = resp.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        Ok(out)
    }

    async fn iterator(
        &self,
        shard: &str,
        kind: ShardIteratorType,
        seq: Option<&str>,
    ) -> Result<Option<String>, ConsumeError> {
        let mut req = self
            .client
            .get_shard_iterator()
            .stream_name(&self.opts.stream)
            .shard_id(shard)
            .shard_iterator_type(kind);
        if let Some(s) = seq {
            req = req.starting_sequence_number(s);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| kerr("GetShardIterator", &self.opts.stream, e))?;
        Ok(resp.shard_iterator().map(str::to_string))
    }

    /// Process one batch until it succeeds (or attempts run out), write raw/ and errors/,
    /// then move the checkpoints and clear the in-flight manifest.
    async fn flush(
        &mut self,
        batch: Vec<Buffered>,
        checkpoints: &mut Checkpoints,
    ) -> Result<(), ConsumeError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut manifest = Manifest::default();
        for b in &batch {
            manifest
                .ranges
                .entry(b.shard.clone())
                .and_modify(|r| r.1 = b.seq.clone())
                .or_insert((b.seq.clone(), b.seq.clone()));
        }
        let prefix = self.prefix();
        let inflight_key = format!("{prefix}/inflight.json");
        self.retry("recording the in-flight batch", || {
            self.write_json(&inflight_key, &manifest)
        })
        .await?;
        // the batch's bytes move into the handler's records (no copy)
        let records: Vec<InputRecord> = batch
            .into_iter()
            .map(|b| {
                InputRecord::gzip(format!("{}/{}:{}", self.stream_arn, b.shard, b.seq), b.data)
            })
            .collect();
        let started = Instant::now();
        let mut attempt = 0;
        let mut delay = Duration::from_millis(500);
        let out = loop {
            attempt += 1;
            let now = auditlake::start::now_ms();
            match self
                .handler
                .process(&records, self.opts.region.as_deref(), now)
                .await
            {
                Ok(out) => break out,
                Err(e) if attempt >= self.opts.max_attempts || !e.retryable() => {
                    return Err(ConsumeError::BatchFailed {
                        records: records.len(),
                        attempts: attempt,
                        message: e.to_string(),
                    })
                }
                Err(e) => {
                    eprintln!("consume: batch of {} records failed (attempt {attempt}), retrying in {delay:?}: {e}", records.len());
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(15));
                }
            }
        };
        // Firehose's side of the contract: Ok records to raw/, failures to errors/.
        let fp =
            transformer::partition::batch_fingerprint(records.iter().map(|r| r.record_id.as_str()));
        let now = auditlake::start::now_ms();
        let hour = utc_hour_path(now);
        let mut raw = Vec::new();
        let mut errors = Vec::new();
        for (r, o) in records.iter().zip(&out.outcomes) {
            match o.result {
                RecordResult::Ok => raw.extend_from_slice(&r.data),
                RecordResult::ProcessingFailed => {
                    let line = ErrorRecord {
                        attempts_made: 1,
                        arrival_timestamp: now,
                        error_code: "Lambda.ProcessingFailed",
                        error_message: o.error.as_deref().unwrap_or(""),
                        attempt_ending_timestamp: now,
                        raw_data: base64::engine::general_purpose::STANDARD.encode(&r.data),
                        record_id: &r.record_id,
                    };
                    errors.extend(serde_json::to_vec(&line).unwrap_or_default());
                    errors.push(b'\n');
                }
                RecordResult::Dropped => {}
            }
        }
        let stream = &self.opts.stream;
        let lake = self.handler.lake();
        for (key, body) in [
            (format!("raw/{hour}/{stream}-{fp:016x}"), raw),
            (
                format!("errors/processing-failed/{hour}/{stream}-{fp:016x}"),
                errors,
            ),
        ] {
            if body.is_empty() {
                continue;
            }
            self.retry("writing the archive", || async {
                lake.put(&key, body.clone())
                    .await
                    .map_err(|e| lerr(lake.locate(&key), &e))
            })
            .await?;
        }
        if self.opts.abort_after_write {
            eprintln!("consume: failpoint after-write: aborting before the checkpoint");
            std::process::abort();
        }
        for (shard, (_, last)) in &manifest.ranges {
            checkpoints.shards.insert(shard.clone(), last.clone());
        }
        let cp_key = format!("{prefix}/checkpoints.json");
        self.retry("checkpointing", || self.write_json(&cp_key, &*checkpoints))
            .await?;
        let empty = Manifest::default();
        self.retry("clearing the in-flight manifest", || {
            self.write_json(&inflight_key, &empty)
        })
        .await?;
        let m = out.metrics;
        self.totals += m;
        self.batches += 1;
        eprintln!(
            "consume: batch {}: {} records ({} KB), {} events, {} STS sessions, {} failed, {} objects, {:.0} ms",
            self.batches,
            m.records_in,
            m.bytes_in / 1024,
            m.events_written,
            m.sts_sessions,
            m.records_failed,
            m.objects_written,
            started.elapsed().as_secs_f64() * 1000.0
        );
        Ok(())
    }

    /// Replay an in-flight batch left by a consumer that stopped between processing and
    /// checkpointing: read exactly its shard ranges again and process them as one batch.
    async fn replay_inflight(&mut self, checkpoints: &mut Checkpoints) -> Result<(), ConsumeError> {
        let key = format!("{}/inflight.json", self.prefix());
        let Some(m) = self
            .retry("reading the in-flight manifest", || {
                self.read_json::<Manifest>(&key)
            })
            .await?
        else {
            return Ok(());
        };
        if m.ranges.is_empty() {
            return Ok(());
        }
        eprintln!(
            "consume: replaying an in-flight batch over {} shard(s)",
            m.ranges.len()
        );
        let mut batch = Vec::new();
        for (shard, (first, last)) in &m.ranges {
            let mut it = self
                .iterator(shard, ShardIteratorType::AtSequenceNumber, Some(first))
                .await?;
            'shard: while let Some(i) = it {
                let resp = self
                    .client
                    .get_records()
                    .shard_iterator(&i)
                    .send()
                    .await
                    .map_err(|e| kerr("GetRecords", &self.opts.stream, e))?;
                if resp.records().is_empty() {
                    break;
                }
                for r in resp.records() {
                    batch.push(Buffered {
                        shard: shard.clone(),
                        seq: r.sequence_number().to_string(),
                        data: r.data().clone().into_inner(),
                    });
                    if r.sequence_number() == last {
                        break 'shard;
                    }
                }
                it = resp.next_shard_iterator().map(str::to_string);
            }
        }
        self.flush(batch, checkpoints).await
    }

    /// Run until stopped (signal) or, with `until_idle`, until drained.
    pub async fn run(&mut self) -> Result<(), ConsumeError> {
        self.stream_arn = self
            .retry("describing the stream", || self.describe())
            .await?;
        let prefix = self.prefix();
        let cp_key = format!("{prefix}/checkpoints.json");
        let mut checkpoints: Checkpoints = self
            .retry("reading checkpoints", || self.read_json(&cp_key))
            .await?
            .unwrap_or_default();
        self.replay_inflight(&mut checkpoints).await?;

        let mut shards: Vec<Shard> = Vec::new();
        let mut buffer: Vec<Buffered> = Vec::new();
        let mut buffered_bytes = 0usize;
        let mut oldest: Option<Instant> = None;
        let mut last_list = Instant::now() - Duration::from_secs(3600);
        loop {
            if self.stop.load(Ordering::SeqCst) {
                let batch = std::mem::take(&mut buffer);
                return self.flush(batch, &mut checkpoints).await;
            }
            // (Re)discover shards: new ones appear after resharding.
            if last_list.elapsed() > Duration::from_secs(30) || shards.is_empty() {
                let ids = self.retry("listing shards", || self.list_shards()).await?;
                for id in ids {
                    if !shards.iter().any(|s| s.id == id) {
                        shards.push(Shard {
                            id,
                            iterator: None,
                            closed: false,
                        });
                    }
                }
                last_list = Instant::now();
            }
            let mut got_any = false;
            let mut all_caught_up = true;
            for i in 0..shards.len() {
                if shards[i].closed {
                    continue;
                }
                if shards[i].iterator.is_none() {
                    let id = shards[i].id.clone();
                    // resume after the last record of this shard that is checkpointed or buffered
                    let after = buffer
                        .iter()
                        .rev()
                        .find(|b| b.shard == id)
                        .map(|b| b.seq.clone())
                        .or_else(|| checkpoints.shards.get(&id).cloned());
                    let it = match &after {
                        Some(seq) => {
                            self.retry("getting a shard iterator", || {
                                self.iterator(
                                    &id,
                                    ShardIteratorType::AfterSequenceNumber,
                                    Some(seq),
                                )
                            })
                            .await?
                        }
                        None => {
                            self.retry("getting a shard iterator", || {
                                self.iterator(&id, ShardIteratorType::TrimHorizon, None)
                            })
                            .await?
                        }
                    };
                    shards[i].iterator = it;
                }
                let Some(it) = shards[i].iterator.clone() else {
                    shards[i].closed = true;
                    continue;
                };
                match self
                    .client
                    .get_records()
                    .shard_iterator(&it)
                    .limit(10_000)
                    .send()
                    .await
                {
                    Ok(resp) => {
                        for r in resp.records() {
                            let data = r.data().clone().into_inner();
                            buffered_bytes += data.len();
                            oldest.get_or_insert_with(Instant::now);
                            buffer.push(Buffered {
                                shard: shards[i].id.clone(),
                                seq: r.sequence_number().to_string(),
                                data,
                            });
                            got_any = true;
                        }
                        if resp.millis_behind_latest().unwrap_or(0) > 0
                            || !resp.records().is_empty()
                        {
                            all_caught_up = false;
                        }
                        match resp.next_shard_iterator() {
                            Some(n) => shards[i].iterator = Some(n.to_string()),
                            None => shards[i].closed = true,
                        }
                    }
                    Err(e) => {
                        let f = auditlake::aws_error::describe(&e);
                        if !f.retryable {
                            return Err(kerr("GetRecords", &self.opts.stream, e));
                        }
                        // expired iterator or endpoint outage: start again from the last
                        // record we hold for this shard
                        eprintln!(
                            "consume: Kinesis GetRecords {} failed, will retry: {}",
                            shards[i].id, f.line
                        );
                        shards[i].iterator = None;
                        all_caught_up = false;
                        tokio::time::sleep(self.opts.poll_interval).await;
                    }
                }
                if buffered_bytes >= self.opts.buffer_bytes {
                    break;
                }
            }
            let age_due = oldest.is_some_and(|t| t.elapsed() >= self.opts.buffer_age);
            let idle = !got_any && all_caught_up;
            if buffered_bytes >= self.opts.buffer_bytes || age_due || (idle && self.opts.until_idle)
            {
                let batch = std::mem::take(&mut buffer);
                buffered_bytes = 0;
                oldest = None;
                self.flush(batch, &mut checkpoints).await?;
            }
            if idle && self.opts.until_idle && buffer.is_empty() {
                return Ok(());
            }
            if !got_any {
                tokio::time::sleep(self.opts.poll_interval).await;
            }
        }
    }
}
