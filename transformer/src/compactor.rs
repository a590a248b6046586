//! The compaction job: merge a partition's part files into few large ones, each event
//! once and sorted by event time, with late attribution written in ([`compact`] does the
//! row work; this file does the I/O, behind the same two capability traits as the
//! handler).
//!
//! A partition is one folder: `eks_audit/dt=D/<account>/<cluster>/` or
//! `sts_sessions/dt=D/<account>/`. A run over a partition:
//! 1. finishes what a stopped run left (its manifest, below);
//! 2. lists the files that exist now (only these are ever replaced: ingest writing into
//!    the folder meanwhile loses nothing) and reads their footers;
//! 3. stops if there is nothing to gain: the files are already compacted, as few as the
//!    target size allows, and none of their pending rows has a session yet;
//! 4. writes the manifest `_compaction/<partition>.json` {state `writing`, inputs, the
//!    outputs' name prefix}, then merges row groups in event-time windows (memory stays
//!    bounded by the window, whatever the partition's size) into
//!    `compacted-<hash of inputs>-<n>.parquet` files, each written to scratch and then
//!    uploaded whole;
//! 5. sets the manifest to `swapping` (outputs complete), deletes the inputs, then the
//!    manifest.
//!
//! Stopped in 4, a re-run deletes the outputs by prefix and starts again (the inputs are
//! untouched); stopped in 5, it deletes the remaining inputs. Either way every row ends up
//! exactly once. A query during 4-5 may see a row twice (in an input and an output),
//! never miss one.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::{KeyValue, ParquetMetaData};
use serde::{Deserialize, Serialize};

use resolver::awsauth::AwsAuth;
use resolver::store::{SessionCache, SessionStore, StoreError};
use resolver::{Attribution, AttributionStatus, SessionIndex};

use crate::compact::{self, CompactError, Table};
use crate::lake::{ByteRange, LakeError, ObjectStore};
use crate::part_file::{self, PartError, RowGroupSpan};
use crate::{encode, lookup, plan};

/// Where manifests live: outside every table's folder, so no query engine reads them.
pub const MANIFEST_ROOT: &str = "_compaction";
/// Name prefix of the files compaction writes.
pub const COMPACTED_PREFIX: &str = "compacted-";
const KV_COMPACTED: &str = "auditlake.compacted";
const KV_PENDING: &str = "auditlake.pending_rows";

/// Defaults (DESIGN 4; the targets).
pub const DEFAULT_TARGET_BYTES: u64 = 256 << 20;
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// Rows per row group of a compacted file: about 15-25 MB of Parquet on audit rows, in
/// the range Athena reads well, and what the writer buffers before it flushes.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 128 * 1024;
/// Rows merged at once: with about 2 KB of Arrow per audit row (bodies included) and
/// one copy while merging, ~200 MB (peak RSS measured in BENCHMARKS.md).
pub const DEFAULT_WINDOW_ROWS: usize = 50_000;
/// Rows that may be held because their files overlap in time (~400 MB of Arrow); beyond
/// this the partition is left as it is, with an error naming it.
pub const DEFAULT_MAX_HELD_ROWS: usize = 200_000;
/// Session-store requests per window, for late attribution.
pub const DEFAULT_LOOKUPS: usize = 10_000;
/// A manifest whose run has not shown progress for this long is taken for a dead run's;
/// younger, it belongs to a run still working and the partition is skipped. A live run
/// refreshes it at least every third of this.
pub const DEFAULT_LEASE_MS: i64 = 10 * 60_000;

/// Milliseconds since the epoch, from the system clock.
pub fn system_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Compaction settings, read once at start.
#[derive(Debug, Clone)]
pub struct CompactConfig {
    pub target_bytes: u64,
    pub zstd_level: i32,
    pub row_group_rows: usize,
    pub window_rows: usize,
    pub max_held_rows: usize,
    pub lookups: usize,
    /// Where output files are written before upload (Lambda: /tmp).
    pub scratch: PathBuf,
    /// The same aws-auth mapping and issuer map ingest uses, so attribution agrees.
    pub aws_auth: Option<Arc<AwsAuth>>,
    pub issuer_clusters: Arc<resolver::workload::IssuerClusters>,
    /// See [`DEFAULT_LEASE_MS`]; 0 takes over any manifest (the operator knows the run
    /// that wrote it is dead: `auditlake compact --take-over`).
    pub lease_ms: i64,
    /// The clock manifests' leases are read against.
    pub clock: fn() -> i64,
}

impl CompactConfig {
    pub fn new(scratch: PathBuf) -> Self {
        Self {
            target_bytes: DEFAULT_TARGET_BYTES,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            row_group_rows: DEFAULT_ROW_GROUP_ROWS,
            window_rows: DEFAULT_WINDOW_ROWS,
            max_held_rows: DEFAULT_MAX_HELD_ROWS,
            lookups: DEFAULT_LOOKUPS,
            scratch,
            aws_auth: None,
            issuer_clusters: Arc::default(),
            lease_ms: DEFAULT_LEASE_MS,
            clock: system_ms,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("session store: {0}")]
    Sessions(#[from] StoreError),
    #[error("{object}: {source}")]
    Part {
        object: String,
        #[source]
        source: PartError,
    },
    #[error("{partition}: merging: {source}")]
    Merge {
        partition: String,
        #[source]
        source: CompactError,
    },
    #[error("{partition}: writing Parquet: {source}")]
    Write {
        partition: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("scratch file {path}: {source}")]
    Scratch {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("manifest {key}: {source} (remove it by hand after checking the partition)")]
    Manifest {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{partition}: another compaction run holds it (manifest of {owner}, last progress {age_s} s ago); \
         skipped. If that run is dead, re-run with --take-over (or wait until its lease of {lease_s} s runs out)"
    )]
    Busy {
        partition: String,
        owner: String,
        age_s: i64,
        lease_s: i64,
    },
    #[error("{object}: changed while being compacted (a retried batch rewrote it); left as it is")]
    Changed { object: String },
    #[error(
        "{partition}: {rows} rows overlap in event time across its files (limit {limit}); \
         left as it is"
    )]
    TooWide {
        partition: String,
        rows: usize,
        limit: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum State {
    Writing,
    Swapping,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    version: u32,
    state: State,
    /// The run that wrote it, and when it last made progress (its lease).
    owner: String,
    heartbeat_ms: i64,
    inputs: Vec<String>,
    outputs_prefix: String,
    outputs: Vec<String>,
}

/// What a stopped run had left, and what this run did about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumed {
    /// Outputs of a run stopped while writing were removed; the partition was redone.
    RemovedPartialOutputs(usize),
    /// A run stopped while swapping: its remaining inputs were removed.
    FinishedSwap(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Outcome {
    Compacted,
    /// Nothing to gain: already compacted, nothing pending that a session now resolves.
    Unchanged,
    /// No files.
    #[default]
    Empty,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compacted => "compacted",
            Self::Unchanged => "unchanged",
            Self::Empty => "empty",
        }
    }
}

/// One partition's run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub partition: String,
    pub outcome: Outcome,
    pub resumed: Option<Resumed>,
    pub files_in: usize,
    pub files_out: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rows_in: u64,
    pub rows_out: u64,
    pub duplicates: u64,
    /// Pending rows whose attribution was written in.
    pub filled: u64,
    /// Rows still pending (no session known yet).
    pub pending: u64,
}

impl Report {
    fn new(partition: &str) -> Self {
        Self {
            partition: partition.to_string(),
            ..Self::default()
        }
    }
}

/// One input file: where, how big, its footer and row groups.
struct Input {
    key: String,
    total: u64,
    meta: Arc<ParquetMetaData>,
    spans: Vec<RowGroupSpan>,
}

impl Input {
    /// The set of files one compaction run wrote this file in (`None`: a part file).
    fn compacted_set(&self) -> Option<&str> {
        part_file::kv(&self.meta, KV_COMPACTED)
            .filter(|_| file_name(&self.key).starts_with(COMPACTED_PREFIX))
    }
    fn pending(&self) -> u64 {
        part_file::kv(&self.meta, KV_PENDING)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

fn file_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// The compaction job over a lake and its session store.
pub struct Compactor<O, S> {
    lake: Arc<O>,
    sessions: S,
    cache: Mutex<SessionCache>,
    config: CompactConfig,
    /// This run's name in the manifests it writes.
    owner: String,
}

/// The folder a partition's files live in, if `key` is a table file at the right depth:
/// `<table>/dt=YYYY-MM-DD/<folders...>/<file>.parquet`.
pub fn partition_of(table: Table, key: &str) -> Option<&str> {
    let parts: Vec<&str> = key.split('/').collect();
    let ok = parts.len() == 3 + table.folders()
        && parts[0] == table.name()
        && parts[1].strip_prefix("dt=").and_then(day_number).is_some()
        && parts[parts.len() - 1].ends_with(".parquet")
        && !parts[parts.len() - 1].starts_with(['.', '_']);
    ok.then(|| &key[..key.len() - parts[parts.len() - 1].len() - 1])
}

/// The day number (days since 1970-01-01) of `YYYY-MM-DD`, if it is a real date.
pub fn day_number(d: &str) -> Option<i64> {
    let b = d.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && d.bytes()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return None;
    }
    let n = |r: std::ops::Range<usize>| d[r].parse::<i64>().unwrap_or(0);
    let (y, m, day) = (n(0..4), n(5..7), n(8..10));
    let number = resolver::time::days_from_civil(y, m, day);
    // a real date survives the round trip through its day number
    ((1..=12).contains(&m)
        && (1..=31).contains(&day)
        && resolver::time::civil_from_days(number) == (y, m as u32, day as u32))
        .then_some(number)
}

fn manifest_key(partition: &str) -> String {
    format!("{MANIFEST_ROOT}/{partition}.json")
}

impl<O: ObjectStore, S: SessionStore> Compactor<O, S> {
    pub fn new(lake: Arc<O>, sessions: S, config: CompactConfig) -> Self {
        Self {
            lake,
            sessions,
            cache: Mutex::new(SessionCache::new(100_000, 60_000)),
            owner: {
                static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                format!(
                    "pid {} run {n} started {}",
                    std::process::id(),
                    (config.clock)()
                )
            },
            config,
        }
    }

    /// The partitions of `table` on `day` (of one account when given), sorted: every
    /// folder holding table files, and every folder a stopped run's manifest names.
    pub async fn partitions(
        &self,
        table: Table,
        day: &str,
        account: Option<&str>,
    ) -> Result<Vec<String>, JobError> {
        let mut prefix = format!("{}/dt={day}/", table.name());
        if let Some(a) = account {
            prefix.push_str(a);
            prefix.push('/');
        }
        let mut out: Vec<String> = self
            .lake
            .list(&prefix)
            .await?
            .iter()
            .filter_map(|k| partition_of(table, k).map(str::to_string))
            .collect();
        // manifests: `_compaction/<partition>.json`; an sts_sessions partition is the
        // account folder itself, so list the day and match the account here
        let day_prefix = format!("{}/dt={day}/", table.name());
        for m in self
            .lake
            .list(&format!("{MANIFEST_ROOT}/{day_prefix}"))
            .await?
        {
            let Some(p) = m
                .strip_prefix(&format!("{MANIFEST_ROOT}/"))
                .and_then(|p| p.strip_suffix(".json"))
            else {
                continue;
            };
            let depth = p.split('/').count();
            let of_account = match account {
                Some(a) => p == format!("{day_prefix}{a}") || p.starts_with(&prefix),
                None => true,
            };
            if depth == 2 + table.folders() && of_account {
                out.push(p.to_string());
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Compact one partition (see the module docs for the steps and their safety).
    pub async fn compact(
        &self,
        table: Table,
        partition: &str,
        now_ms: i64,
    ) -> Result<Report, JobError> {
        let mut report = Report::new(partition);
        report.resumed = self.resume(partition).await?;

        let mut inputs = Vec::new();
        for key in self.lake.list(&format!("{partition}/")).await? {
            if partition_of(table, &key) == Some(partition) {
                if let Some(i) = self.footer(table, &key).await? {
                    inputs.push(i);
                }
            }
        }
        report.files_in = inputs.len();
        report.bytes_in = inputs.iter().map(|i| i.total).sum();
        report.rows_in = inputs.iter().flat_map(|i| &i.spans).map(|s| s.rows).sum();
        if inputs.is_empty() || report.rows_in == 0 {
            report.outcome = if inputs.is_empty() {
                Outcome::Empty
            } else {
                Outcome::Unchanged
            };
            return Ok(report);
        }
        if self
            .nothing_to_gain(table, partition, &inputs, now_ms, &mut report)
            .await?
        {
            report.outcome = Outcome::Unchanged;
            report.files_out = inputs.len();
            report.bytes_out = report.bytes_in;
            report.rows_out = report.rows_in;
            return Ok(report);
        }

        let mut names: Vec<&str> = inputs.iter().map(|i| i.key.as_str()).collect();
        names.sort_unstable();
        let h = xxhash_rust::xxh3::xxh3_64(names.join("\n").as_bytes());
        let outputs_prefix = format!("{partition}/{COMPACTED_PREFIX}{h:016x}-");
        let mut manifest = Manifest {
            version: 1,
            state: State::Writing,
            owner: self.owner.clone(),
            heartbeat_ms: (self.config.clock)(),
            inputs: names.iter().map(|s| s.to_string()).collect(),
            outputs_prefix: outputs_prefix.clone(),
            outputs: Vec::new(),
        };
        // created only if absent: of two runs starting on one partition, one goes on
        if !self.create(partition, &manifest).await? {
            return Err(self.busy(partition).await);
        }

        let outputs = match self
            .merge(
                table,
                partition,
                &inputs,
                &mut manifest,
                now_ms,
                &mut report,
            )
            .await
        {
            Ok(o) => o,
            Err(e) => {
                // leave the partition as it was; if this clean-up fails too, the manifest
                // makes the next run do it
                let _ = self.resume(partition).await;
                return Err(e);
            }
        };
        // still ours? (a run that stalled past its lease may have been taken over: then
        // the run that took over decides, and nothing of the inputs is touched here)
        if !self.still_ours(partition).await? {
            return Err(self.busy(partition).await);
        }
        manifest.state = State::Swapping;
        manifest.outputs = outputs;
        manifest.heartbeat_ms = (self.config.clock)();
        self.save(partition, &manifest).await?;
        for k in &manifest.inputs {
            if !manifest.outputs.contains(k) {
                self.lake.delete(k).await?;
            }
        }
        self.lake.delete(&manifest_key(partition)).await?;
        report.outcome = Outcome::Compacted;
        Ok(report)
    }

    /// Finish what a stopped run left.
    async fn resume(&self, partition: &str) -> Result<Option<Resumed>, JobError> {
        let key = manifest_key(partition);
        let Some(bytes) = self.lake.get(&key).await? else {
            return Ok(None);
        };
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|source| JobError::Manifest {
            key: self.lake.locate(&key),
            source,
        })?;
        let age = (self.config.clock)() - m.heartbeat_ms;
        if m.owner != self.owner && age < self.config.lease_ms {
            return Err(JobError::Busy {
                partition: partition.to_string(),
                owner: m.owner,
                age_s: age / 1000,
                lease_s: self.config.lease_ms / 1000,
            });
        }
        let done = match m.state {
            State::Writing => {
                let partial: Vec<String> = self
                    .lake
                    .list(&format!("{partition}/"))
                    .await?
                    .into_iter()
                    .filter(|k| k.starts_with(&m.outputs_prefix))
                    .collect();
                for k in &partial {
                    self.lake.delete(k).await?;
                }
                Resumed::RemovedPartialOutputs(partial.len())
            }
            State::Swapping => {
                for k in &m.inputs {
                    if !m.outputs.contains(k) {
                        self.lake.delete(k).await?;
                    }
                }
                Resumed::FinishedSwap(m.inputs.len())
            }
        };
        self.lake.delete(&key).await?;
        Ok(Some(done))
    }

    async fn create(&self, partition: &str, m: &Manifest) -> Result<bool, JobError> {
        let body = serde_json::to_vec(m).map_err(|source| JobError::Manifest {
            key: manifest_key(partition),
            source,
        })?;
        Ok(self
            .lake
            .put_if_absent(&manifest_key(partition), body)
            .await?)
    }

    /// The manifest of `partition` is still this run's.
    async fn still_ours(&self, partition: &str) -> Result<bool, JobError> {
        let key = manifest_key(partition);
        Ok(match self.lake.get(&key).await? {
            Some(b) => serde_json::from_slice::<Manifest>(&b).is_ok_and(|m| m.owner == self.owner),
            None => false,
        })
    }

    /// The error for a partition another run holds (as its manifest says now).
    async fn busy(&self, partition: &str) -> JobError {
        let held = match self.lake.get(&manifest_key(partition)).await {
            Ok(Some(b)) => serde_json::from_slice::<Manifest>(&b).ok(),
            _ => None,
        };
        let (owner, at) = held
            .map(|m| (m.owner, m.heartbeat_ms))
            .unwrap_or_else(|| ("an unknown run".into(), (self.config.clock)()));
        JobError::Busy {
            partition: partition.to_string(),
            owner,
            age_s: ((self.config.clock)() - at) / 1000,
            lease_s: self.config.lease_ms / 1000,
        }
    }

    async fn save(&self, partition: &str, m: &Manifest) -> Result<(), JobError> {
        let body = serde_json::to_vec(m).map_err(|source| JobError::Manifest {
            key: manifest_key(partition),
            source,
        })?;
        Ok(self.lake.put(&manifest_key(partition), body).await?)
    }

    /// A file's footer, fetched from its end (a second read when it is larger than the
    /// first guess). `None` when the file went away meanwhile.
    async fn footer(&self, table: Table, key: &str) -> Result<Option<Input>, JobError> {
        let part = |source| JobError::Part {
            object: self.lake.locate(key),
            source,
        };
        let Some(tail) = self
            .lake
            .get_range(key, ByteRange::Suffix(part_file::TAIL_GUESS))
            .await?
        else {
            return Ok(None);
        };
        let meta = match part_file::metadata(&tail.bytes, tail.total) {
            Err(PartError::NeedsRange(start, end)) => {
                let Some(r) = self
                    .lake
                    .get_range(key, ByteRange::Span { start, end })
                    .await?
                else {
                    return Ok(None);
                };
                part_file::metadata(&r.bytes, r.total).map_err(part)?
            }
            m => m.map_err(part)?,
        };
        let spans = part_file::row_groups(&meta, table.columns()[table.time_column()].name);
        Ok(Some(Input {
            key: key.to_string(),
            total: tail.total,
            meta,
            spans,
        }))
    }

    /// Already compacted, as few files as the target allows, and no pending row that a
    /// session now resolves? (The last check reads only the pending rows' files.)
    async fn nothing_to_gain(
        &self,
        table: Table,
        partition: &str,
        inputs: &[Input],
        now_ms: i64,
        report: &mut Report,
    ) -> Result<bool, JobError> {
        // one run's output, nothing added since: its layout is as good as it gets
        let first = inputs[0].compacted_set();
        if first.is_none() || inputs.iter().any(|i| i.compacted_set() != first) {
            return Ok(false);
        }
        report.pending = inputs.iter().map(Input::pending).sum();
        if !table.attributed() || report.pending == 0 {
            return Ok(true);
        }
        for input in inputs.iter().filter(|i| i.pending() > 0) {
            for span in &input.spans {
                for batch in self.read(table, partition, input, span).await? {
                    let (_, filled, _) = self.fill_pending(partition, &batch, now_ms).await?;
                    if filled > 0 {
                        report.pending = 0;
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }

    async fn read(
        &self,
        table: Table,
        partition: &str,
        input: &Input,
        span: &RowGroupSpan,
    ) -> Result<Vec<RecordBatch>, JobError> {
        let part = |source| JobError::Part {
            object: self.lake.locate(&input.key),
            source,
        };
        let bytes = self
            .lake
            .get_range(
                &input.key,
                ByteRange::Span {
                    start: span.start,
                    end: span.end,
                },
            )
            .await?
            .ok_or_else(|| {
                part(PartError::Parquet(parquet::errors::ParquetError::General(
                    "the file disappeared during compaction".into(),
                )))
            })?;
        // the footer's file, not a newer one under the same key (a retried batch)
        if bytes.total != input.total {
            return Err(JobError::Changed {
                object: self.lake.locate(&input.key),
            });
        }
        let batches =
            part_file::read_row_group(&input.meta, span, bytes.bytes, input.total).map_err(part)?;
        batches
            .iter()
            .map(|b| compact::conform(table, b))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| JobError::Merge {
                partition: partition.to_string(),
                source,
            })
    }

    /// Late attribution for one batch: (batch with pending rows filled, rows filled,
    /// rows still pending).
    async fn fill_pending(
        &self,
        partition: &str,
        batch: &RecordBatch,
        now_ms: i64,
    ) -> Result<(RecordBatch, u64, u64), JobError> {
        let rows = compact::pending_rows(batch);
        if rows.is_empty() {
            return Ok((batch.clone(), 0, 0));
        }
        let ids = compact::identities(batch, &rows, self.config.aws_auth.as_deref());
        let plan = plan::plan_of(ids.iter().map(|r| (r.account, &r.identity, r.event_ms)));
        let mut index = SessionIndex::with_issuers(self.config.issuer_clusters.clone());
        lookup::fetch(
            &self.sessions,
            &self.cache,
            &plan,
            &mut index,
            now_ms,
            self.config.lookups,
        )
        .await?;
        let attributed: Vec<Cow<'_, Attribution<'_>>> = ids
            .iter()
            .map(|r| index.attribute(&r.identity, r.username, r.event_ms))
            .collect();
        let (mut fill_rows, mut fill_with) = (Vec::new(), Vec::new());
        for (r, a) in ids.iter().zip(&attributed) {
            if a.status != AttributionStatus::Pending {
                fill_rows.push(r.row);
                fill_with.push(a.as_ref());
            }
        }
        let filled = fill_rows.len() as u64;
        let left = rows.len() as u64 - filled;
        let out =
            compact::fill(batch, &fill_rows, &fill_with).map_err(|source| JobError::Merge {
                partition: partition.to_string(),
                source,
            })?;
        Ok((out, filled, left))
    }

    /// Merge the inputs' row groups in event-time windows and write the outputs; returns
    /// their keys.
    async fn merge(
        &self,
        table: Table,
        partition: &str,
        inputs: &[Input],
        manifest: &mut Manifest,
        now_ms: i64,
        report: &mut Report,
    ) -> Result<Vec<String>, JobError> {
        let outputs_prefix = manifest.outputs_prefix.clone();
        let merge_err = |source| JobError::Merge {
            partition: partition.to_string(),
            source,
        };
        // every row group, by its earliest event
        let mut units: Vec<(&Input, &RowGroupSpan)> = inputs
            .iter()
            .flat_map(|i| i.spans.iter().map(move |s| (i, s)))
            .filter(|(_, s)| s.rows > 0)
            .collect();
        units.sort_by_key(|(i, s)| (s.min_ms.unwrap_or(i64::MIN), i.key.as_str(), s.index));

        let mut out = Outputs::new(self, table, partition, &outputs_prefix);
        let mut held: Vec<RecordBatch> = Vec::new();
        let mut held_rows = 0usize;
        let mut next = 0usize;
        while next < units.len() || held_rows > 0 {
            // load until the window is full (at least one row group per round)
            let mut loaded = false;
            while next < units.len() && (!loaded || held_rows < self.config.window_rows) {
                let (input, span) = units[next];
                for b in self.read(table, partition, input, span).await? {
                    held_rows += b.num_rows();
                    held.push(b);
                }
                next += 1;
                loaded = true;
            }
            // every row before the next unloaded row group's earliest event is loaded
            let cut = units
                .get(next)
                .map(|(_, s)| s.min_ms.unwrap_or(i64::MIN))
                .unwrap_or(i64::MAX);
            let mut emit = Vec::new();
            let mut keep = Vec::new();
            for b in held.drain(..) {
                if cut == i64::MAX {
                    emit.push(b);
                    continue;
                }
                let (before, after) = compact::split_at(table, &b, cut).map_err(merge_err)?;
                if before.num_rows() > 0 {
                    emit.push(before);
                }
                if after.num_rows() > 0 {
                    keep.push(after);
                }
            }
            held = keep;
            held_rows = held.iter().map(RecordBatch::num_rows).sum();
            if held_rows > self.config.max_held_rows {
                return Err(JobError::TooWide {
                    partition: partition.to_string(),
                    rows: held_rows,
                    limit: self.config.max_held_rows,
                });
            }
            if emit.is_empty() {
                continue;
            }
            let merged = compact::dedup_sort(table, &emit).map_err(merge_err)?;
            drop(emit);
            report.duplicates += merged.duplicates as u64;
            let (batch, filled, left) = if table.attributed() {
                self.fill_pending(partition, &merged.batch, now_ms).await?
            } else {
                (merged.batch, 0, 0)
            };
            report.filled += filled;
            report.pending += left;
            out.write(&batch).await?;
            // show progress: the lease stays this run's
            let now = (self.config.clock)();
            if self.config.lease_ms > 0 && now - manifest.heartbeat_ms >= self.config.lease_ms / 3 {
                manifest.heartbeat_ms = now;
                self.save(partition, manifest).await?;
            }
        }
        let keys = out.finish().await?;
        report.files_out = keys.len();
        report.rows_out = report.rows_in - report.duplicates;
        report.bytes_out = out.bytes;
        Ok(keys)
    }
}

/// The output files of one partition: written to scratch, uploaded when full.
struct Outputs<'c, O, S> {
    job: &'c Compactor<O, S>,
    table: Table,
    partition: &'c str,
    prefix: &'c str,
    current: Option<(PathBuf, ArrowWriter<std::fs::File>, u64)>,
    done: Vec<String>,
    bytes: u64,
}

/// Rows written between size checks (a file overshoots its target by at most this).
const WRITE_SLICE_ROWS: usize = 16 * 1024;

impl<'c, O: ObjectStore, S: SessionStore> Outputs<'c, O, S> {
    fn new(job: &'c Compactor<O, S>, table: Table, partition: &'c str, prefix: &'c str) -> Self {
        Self {
            job,
            table,
            partition,
            prefix,
            current: None,
            done: Vec::new(),
            bytes: 0,
        }
    }

    fn write_err(&self, source: parquet::errors::ParquetError) -> JobError {
        JobError::Write {
            partition: self.partition.to_string(),
            source,
        }
    }

    async fn write(&mut self, batch: &RecordBatch) -> Result<(), JobError> {
        let mut at = 0;
        while at < batch.num_rows() {
            let n = WRITE_SLICE_ROWS.min(batch.num_rows() - at);
            let slice = batch.slice(at, n);
            at += n;
            if self.current.is_none() {
                self.open()?;
            }
            let pending = if self.table.attributed() {
                compact::pending_rows(&slice).len() as u64
            } else {
                0
            };
            let (_, w, p) = self.current.as_mut().expect("opened above");
            *p += pending;
            if let Err(e) = w.write(&slice) {
                return Err(self.write_err(e));
            }
            let size = w.bytes_written() as u64 + w.in_progress_size() as u64;
            if size >= self.job.config.target_bytes {
                self.close().await?;
            }
        }
        Ok(())
    }

    fn open(&mut self) -> Result<(), JobError> {
        // unique per process and file: concurrent jobs may share the scratch directory
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let path = self.job.config.scratch.join(format!(
            "auditlake-compact-{}-{}.parquet",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let scratch = |source| JobError::Scratch {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&self.job.config.scratch).map_err(scratch)?;
        let file = std::fs::File::create(&path).map_err(scratch)?;
        let props = encode::writer_properties_with(
            self.table.time_column(),
            self.job.config.zstd_level,
            self.job.config.row_group_rows,
        );
        let w = ArrowWriter::try_new(file, self.table.schema(), Some(props))
            .map_err(|e| self.write_err(e))?;
        self.current = Some((path, w, 0));
        Ok(())
    }

    async fn close(&mut self) -> Result<(), JobError> {
        let Some((path, mut w, pending)) = self.current.take() else {
            return Ok(());
        };
        // the set this run writes: a partition holding exactly one set is left alone
        let set = self
            .prefix
            .rsplit('/')
            .next()
            .and_then(|n| n.strip_prefix(COMPACTED_PREFIX))
            .unwrap_or("")
            .trim_end_matches('-')
            .to_string();
        w.append_key_value_metadata(KeyValue::new(KV_COMPACTED.into(), set));
        w.append_key_value_metadata(KeyValue::new(KV_PENDING.into(), pending.to_string()));
        let closed = w.close().map_err(|e| self.write_err(e));
        let key = format!("{}{:04}.parquet", self.prefix, self.done.len());
        let uploaded = match closed {
            Ok(_) => {
                self.bytes += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                self.job
                    .lake
                    .put_file(&key, &path)
                    .await
                    .map_err(JobError::from)
            }
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_file(&path);
        uploaded?;
        self.done.push(key);
        Ok(())
    }

    async fn finish(&mut self) -> Result<Vec<String>, JobError> {
        self.close().await?;
        Ok(std::mem::take(&mut self.done))
    }
}

impl<O, S> Drop for Outputs<'_, O, S> {
    fn drop(&mut self) {
        if let Some((path, _, _)) = self.current.take() {
            let _ = std::fs::remove_file(&path);
        }
    }
}
