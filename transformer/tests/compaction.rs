//! Compaction through the real handler's output: a day's part files (with a record
//! delivered twice, sessions arriving after their events, files overlapping in time)
//! become one sorted file per partition, each event once, late attribution written in;
//! and a run stopped after any write ends, once re-run, with every row exactly once.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use common::*;
use transformer::compact::Table;
use transformer::compactor::{CompactConfig, Compactor, JobError, Outcome, Resumed};
use transformer::handler::{Handler, HandlerConfig, InputRecord};
use transformer::lake::{ByteRange, LakeError, LakeOp, LocalDir, MemoryStore, ObjectStore, Ranged};
use transformer::session_store::LakeSessionStore;

const A: &str = "111122223333";
const AUDIT: &str = "eks_audit/dt=2024-11-26/111122223333/prod";
const STS: &str = "sts_sessions/dt=2024-11-26/111122223333";
const KNOWN_LATE: &str = "ASIALATE000000000001";
const NEVER_KNOWN: &str = "ASIANEVER00000000001";

fn scratch() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("compaction-test-{}", std::process::id()))
}

fn config() -> CompactConfig {
    let mut c = CompactConfig::new(scratch());
    // tiny windows: the merge runs many rounds over files that overlap in time
    c.window_rows = 1;
    // each test's re-run plays the operator who knows the killed run is dead
    c.lease_ms = 0;
    c
}

/// A record of the prod cluster's audit stream with explicit CloudWatch event ids, so
/// the same events can be delivered again under another Firehose record id.
fn audit_events(record_id: &str, events: &[(&str, &str)]) -> InputRecord {
    let evs: Vec<Value> = events
        .iter()
        .map(|(cwl_id, msg)| json!({"id": cwl_id, "timestamp": 1_732_626_427_000i64, "message": msg}))
        .collect();
    InputRecord::gzip(
        record_id,
        gz(cwl_envelope(
            A,
            "/aws/eks/prod/cluster",
            "kube-apiserver-audit-0123",
            &evs,
        )
        .as_bytes()),
    )
}

fn keyed(id: &str, at: &str, key: &str) -> String {
    aws_event(
        id,
        at,
        "arn:aws:sts::111122223333:assumed-role/ops/jdoe",
        Some(assumed_extra(A, "ops", "jdoe", key)),
    )
}

fn iam_user(id: &str, at: &str) -> String {
    aws_event(id, at, "arn:aws:iam::111122223333:user/carol", None)
}

fn anonymous(id: &str, at: &str) -> String {
    json!({"kind": "Event", "auditID": id, "verb": "get", "requestURI": "/version",
        "user": {"username": "system:anonymous", "groups": ["system:unauthenticated"]},
        "requestReceivedTimestamp": at})
    .to_string()
}

fn jdoe_session() -> Value {
    json!({"eventVersion": "1.08", "eventTime": "2024-11-26T13:00:00Z", "eventSource": "sts.amazonaws.com",
        "eventName": "AssumeRole", "awsRegion": "us-east-1",
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/jdoe", "accountId": A, "userName": "jdoe", "principalId": "AIDA1"},
        "requestParameters": {"roleArn": "arn:aws:iam::111122223333:role/ops", "roleSessionName": "jdoe"},
        "responseElements": {"credentials": {"accessKeyId": KNOWN_LATE, "expiration": "Nov 26, 2024, 2:00:00 PM"},
            "assumedRoleUser": {"assumedRoleId": "AROA1:jdoe", "arn": "arn:aws:sts::111122223333:assumed-role/ops/jdoe"}},
        "requestID": "r-1", "eventID": "e-jdoe-1", "recipientAccountId": A})
}

/// The day: 3 batches of audit events (one record delivered twice), the session of
/// the first batch's key in a later batch (also delivered twice), files overlapping
/// in time. Returns the audit ids the day holds, each once.
async fn ingest_day<O: ObjectStore + 'static>(lake: &Arc<O>) -> Vec<&'static str> {
    let h = Handler::new(
        trusting(HandlerConfig {
            negative_ttl_ms: 0,
            ..HandlerConfig::default()
        }),
        lake.clone(),
        LakeSessionStore::new(lake.clone()),
    );
    let first = [
        (
            "cwl-1",
            keyed("audit-1", "2024-11-26T13:30:00Z", KNOWN_LATE),
        ),
        ("cwl-2", iam_user("audit-2", "2024-11-26T13:10:00Z")),
        ("cwl-3", anonymous("audit-3", "2024-11-26T13:50:00Z")),
    ];
    let first: Vec<(&str, &str)> = first.iter().map(|(i, m)| (*i, m.as_str())).collect();
    let run = |records: Vec<InputRecord>| {
        let h = &h;
        async move { h.process(&records, Some("us-east-1"), now()).await.unwrap() }
    };
    let out = run(vec![audit_events("b1", &first)]).await;
    assert_eq!(out.metrics.attribution_pending, 1);
    // the same CloudWatch record again, under a new Firehose record id
    run(vec![audit_events("b1-again", &first)]).await;
    run(vec![trail_record("b2", &[jdoe_session()])]).await;
    run(vec![trail_record("b2-again", &[jdoe_session()])]).await;
    let later = [
        (
            "cwl-4",
            keyed("audit-4", "2024-11-26T13:40:00Z", KNOWN_LATE),
        ),
        ("cwl-5", iam_user("audit-5", "2024-11-26T13:05:00Z")),
        (
            "cwl-6",
            keyed("audit-6", "2024-11-26T13:20:00Z", NEVER_KNOWN),
        ),
    ];
    let later: Vec<(&str, &str)> = later.iter().map(|(i, m)| (*i, m.as_str())).collect();
    let out = run(vec![audit_events("b3", &later)]).await;
    assert_eq!(
        out.metrics.attribution_resolved, 2,
        "audit-4 at ingest, and carol"
    );
    vec![
        "audit-1", "audit-2", "audit-3", "audit-4", "audit-5", "audit-6",
    ]
}

async fn table_rows<O: ObjectStore>(lake: &O, table: &str) -> Vec<Value> {
    let mut batches = Vec::new();
    for k in lake.list(&format!("{table}/")).await.unwrap() {
        for b in read_parquet(lake.get(&k).await.unwrap().unwrap()) {
            batches.push((k.clone(), b));
        }
    }
    rows(&batches)
}

fn ids(rows: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = rows
        .iter()
        .map(|r| r["audit_id"].as_str().unwrap_or("").to_string())
        .collect();
    v.sort();
    v
}

const ATTRIBUTION: [&str; 11] = schemas::ATTRIBUTION;

fn job<O: ObjectStore>(lake: Arc<O>, sessions_from: Arc<O>) -> Compactor<O, LakeSessionStore<O>> {
    Compactor::new(lake, LakeSessionStore::new(sessions_from), config())
}

async fn compacted_day<O: ObjectStore + 'static>(lake: Arc<O>) {
    let expected = ingest_day(&lake).await;
    let before = table_rows(lake.as_ref(), "eks_audit").await;
    assert_eq!(before.len(), 9, "6 events, 3 of them stored twice");
    let c = job(lake.clone(), lake.clone());
    assert_eq!(
        c.partitions(Table::EksAudit, "2024-11-26", None)
            .await
            .unwrap(),
        [AUDIT]
    );

    let r = c.compact(Table::EksAudit, AUDIT, now()).await.unwrap();
    assert_eq!(r.outcome, Outcome::Compacted);
    assert_eq!((r.files_in, r.files_out), (3, 1));
    assert_eq!((r.rows_in, r.rows_out, r.duplicates), (9, 6, 3));
    assert_eq!(
        (r.filled, r.pending),
        (1, 1),
        "audit-1 filled; audit-6 has no session"
    );

    let keys = lake.list(&format!("{AUDIT}/")).await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with(&format!("{AUDIT}/compacted-")));
    let rows = table_rows(lake.as_ref(), "eks_audit").await;
    assert_eq!(ids(&rows), expected, "each event once");
    let times: Vec<i64> = rows
        .iter()
        .map(|r| r["event_time"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "sorted: {times:?}");

    // the late row now reads exactly like the row attributed at ingest
    let late = find(&rows, "audit_id", "audit-1");
    let at_ingest = find(&rows, "audit_id", "audit-4");
    for c in ATTRIBUTION {
        assert_eq!(late[c], at_ingest[c], "{c}");
    }
    assert_eq!(late["principal_name"], "jdoe");
    assert_eq!(late["attribution_status"], "resolved");
    assert_eq!(
        find(&rows, "audit_id", "audit-6")["attribution_status"],
        "pending"
    );
    assert_eq!(
        find(&rows, "audit_id", "audit-3")["principal_type"],
        "anonymous"
    );
    // every other column as ingest wrote it
    for r in &before {
        let id = r["audit_id"].as_str().unwrap();
        let now = find(&rows, "audit_id", id);
        for (k, v) in r.as_object().unwrap() {
            if k != "_object" && (id != "audit-1" || !ATTRIBUTION.contains(&k.as_str())) {
                assert_eq!(&now[k], v, "{id}.{k}");
            }
        }
    }

    // the file keeps the lake's conventions, and says what it is
    let bytes = lake.get(&keys[0]).await.unwrap().unwrap();
    let meta =
        parquet::file::serialized_reader::SerializedFileReader::new(bytes::Bytes::from(bytes))
            .map(|r| parquet::file::reader::FileReader::metadata(&r).clone())
            .unwrap();
    let kv: BTreeMap<String, String> = meta
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .iter()
        .map(|e| (e.key.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    let set = &kv["auditlake.compacted"];
    assert!(
        set.len() == 16 && keys[0].contains(&format!("/compacted-{set}-0000.parquet")),
        "the file names its set: {set}"
    );
    assert_eq!(kv["auditlake.pending_rows"], "1");
    let rg = meta.row_group(0);
    assert!(matches!(
        rg.column(0).compression(),
        parquet::basic::Compression::ZSTD(_)
    ));
    assert_eq!(
        rg.sorting_columns().unwrap()[0].column_idx as usize,
        schemas::position(schemas::EKS_AUDIT, "event_time")
    );

    // sts_sessions: the trail record delivered twice is one row
    let r = c.compact(Table::StsSessions, STS, now()).await.unwrap();
    assert_eq!(
        (r.files_in, r.files_out, r.rows_out, r.duplicates),
        (2, 1, 1, 1)
    );
    assert_eq!(table_rows(lake.as_ref(), "sts_sessions").await.len(), 1);

    // a second run changes nothing, and says so
    let r = c.compact(Table::EksAudit, AUDIT, now()).await.unwrap();
    assert_eq!(r.outcome, Outcome::Unchanged);
    assert_eq!((r.files_in, r.pending), (1, 1));
    assert_eq!(lake.list(&format!("{AUDIT}/")).await.unwrap(), keys);
    let r = c.compact(Table::StsSessions, STS, now()).await.unwrap();
    assert_eq!(r.outcome, Outcome::Unchanged);
    assert!(
        lake.list("_compaction/").await.unwrap().is_empty(),
        "no manifest left"
    );
}

#[tokio::test]
async fn a_day_compacts_to_one_sorted_file_each_event_once_with_late_attribution_in_memory() {
    compacted_day(Arc::new(MemoryStore::default())).await;
}

#[tokio::test]
async fn a_day_compacts_the_same_in_a_local_directory() {
    let dir = std::env::temp_dir().join(format!("compaction-local-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    compacted_day(Arc::new(LocalDir::new(&dir))).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_session_arriving_after_compaction_is_written_in_by_the_next_run() {
    let lake = Arc::new(MemoryStore::default());
    ingest_day(&lake).await;
    let c = job(lake.clone(), lake.clone());
    c.compact(Table::EksAudit, AUDIT, now()).await.unwrap();
    // audit-6's session arrives now
    let h = Handler::new(
        trusting(HandlerConfig::default()),
        lake.clone(),
        LakeSessionStore::new(lake.clone()),
    );
    let mut s = jdoe_session();
    s["responseElements"]["credentials"]["accessKeyId"] = json!(NEVER_KNOWN);
    s["eventID"] = json!("e-jdoe-2");
    h.process(&[trail_record("b9", &[s])], None, now())
        .await
        .unwrap();
    // the next run (a new process, or the next day's warm Lambda: its brief memory of
    // misses has expired)
    let c = job(lake.clone(), lake.clone());
    let r = c.compact(Table::EksAudit, AUDIT, now()).await.unwrap();
    assert_eq!(r.outcome, Outcome::Compacted);
    assert_eq!((r.filled, r.pending, r.files_out), (1, 0, 1));
    let rows = table_rows(lake.as_ref(), "eks_audit").await;
    assert_eq!(find(&rows, "audit_id", "audit-6")["principal_name"], "jdoe");
    let r = c.compact(Table::EksAudit, AUDIT, now()).await.unwrap();
    assert_eq!(r.outcome, Outcome::Unchanged);
}

#[tokio::test]
async fn a_small_target_splits_the_output_and_order_holds_across_files() {
    let lake = Arc::new(MemoryStore::default());
    let expected = ingest_day(&lake).await;
    let mut cfg = config();
    cfg.target_bytes = 1;
    let c = Compactor::new(lake.clone(), LakeSessionStore::new(lake.clone()), cfg);
    let r = c.compact(Table::EksAudit, AUDIT, now()).await.unwrap();
    assert!(r.files_out > 1, "{r:?}");
    let rows = table_rows(lake.as_ref(), "eks_audit").await;
    assert_eq!(ids(&rows), expected);
    // files are listed in name order: the windows' order, so time order overall
    let times: Vec<i64> = rows
        .iter()
        .map(|r| r["event_time"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // several files of one run: as good as it gets, a second run leaves them
    let keys = lake.list(&format!("{AUDIT}/")).await.unwrap();
    let r = c.compact(Table::EksAudit, AUDIT, now()).await.unwrap();
    assert_eq!((r.outcome, r.files_in), (Outcome::Unchanged, keys.len()));
    assert_eq!(lake.list(&format!("{AUDIT}/")).await.unwrap(), keys);
}

fn eleven_minutes_later() -> i64 {
    transformer::compactor::system_ms() + 11 * 60_000
}

#[tokio::test]
async fn a_partition_another_run_holds_is_skipped_until_its_lease_runs_out() {
    let day = Arc::new(MemoryStore::default());
    ingest_day(&day).await;
    let lake = copy_of(&day).await;
    // a run that has written its manifest and one output, and is still working (or
    // died a moment ago: nobody can tell yet)
    let running = Scripted::dies_after(lake.clone(), 2);
    let mut cfg = CompactConfig::new(scratch());
    let c = Compactor::new(running, LakeSessionStore::new(lake.clone()), cfg.clone());
    assert!(c.compact(Table::EksAudit, AUDIT, now()).await.is_err());
    let held = lake.keys();
    assert!(held.iter().any(|k| k.contains("/compacted-")));

    let other = Compactor::new(
        lake.clone(),
        LakeSessionStore::new(lake.clone()),
        cfg.clone(),
    );
    let e = other
        .compact(Table::EksAudit, AUDIT, now())
        .await
        .unwrap_err();
    assert!(matches!(e, JobError::Busy { .. }), "{e}");
    assert!(e.to_string().contains("--take-over"), "{e}");
    assert_eq!(lake.keys(), held, "nothing touched");

    // once its lease has run out, the run is taken for dead and its work redone
    cfg.clock = eleven_minutes_later;
    let later = Compactor::new(lake.clone(), LakeSessionStore::new(lake.clone()), cfg);
    let r = later.compact(Table::EksAudit, AUDIT, now()).await.unwrap();
    assert_eq!(r.resumed, Some(Resumed::RemovedPartialOutputs(1)));
    assert_eq!(
        (r.outcome, r.files_in, r.duplicates),
        (Outcome::Compacted, 3, 3)
    );
}

/// A store playing what may happen around a compaction run: the process dies after
/// `left` writes (every later put or delete fails: nothing after it happens), and/or
/// ingest writes `late` into the lake at the run's first upload.
struct Scripted<O> {
    inner: Arc<O>,
    left: AtomicI64,
    writes: AtomicUsize,
    late: std::sync::Mutex<Option<(String, Vec<u8>)>>,
}

impl<O: ObjectStore> Scripted<O> {
    fn dies_after(inner: Arc<O>, writes: i64) -> Arc<Self> {
        Arc::new(Self {
            inner,
            left: AtomicI64::new(writes),
            writes: AtomicUsize::new(0),
            late: std::sync::Mutex::new(None),
        })
    }

    fn ingest_during(inner: Arc<O>, key: String, body: Vec<u8>) -> Arc<Self> {
        let s = Self::dies_after(inner, i64::MAX);
        *s.late.lock().unwrap() = Some((key, body));
        s
    }

    fn alive(&self, op: LakeOp, key: &str) -> Result<(), LakeError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        if self.left.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(LakeError::Io {
                op,
                location: key.to_string(),
                source: std::io::Error::other("killed"),
            });
        }
        Ok(())
    }
}

impl<O: ObjectStore> ObjectStore for Scripted<O> {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), LakeError> {
        self.alive(LakeOp::Put, key)?;
        self.inner.put(key, body).await
    }
    async fn put_if_absent(&self, key: &str, body: Vec<u8>) -> Result<bool, LakeError> {
        self.alive(LakeOp::Put, key)?;
        self.inner.put_if_absent(key, body).await
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, LakeError> {
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, range: ByteRange) -> Result<Option<Ranged>, LakeError> {
        self.inner.get_range(key, range).await
    }
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), LakeError> {
        self.alive(LakeOp::Put, key)?;
        let late = self.late.lock().unwrap().take();
        if let Some((k, b)) = late {
            self.inner.put(&k, b).await?;
        }
        self.inner.put_file(key, path).await
    }
    async fn delete(&self, key: &str) -> Result<(), LakeError> {
        self.alive(LakeOp::Delete, key)?;
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, LakeError> {
        self.inner.list(prefix).await
    }
    fn locate(&self, key: &str) -> String {
        self.inner.locate(key)
    }
}

async fn copy_of(lake: &MemoryStore) -> Arc<MemoryStore> {
    let copy = Arc::new(MemoryStore::default());
    for k in lake.keys() {
        copy.put(&k, lake.object(&k).unwrap()).await.unwrap();
    }
    copy
}

#[tokio::test]
async fn killed_after_any_write_a_rerun_ends_with_every_row_exactly_once() {
    let day = Arc::new(MemoryStore::default());
    let expected = ingest_day(&day).await;
    let mut cfg = config();
    cfg.target_bytes = 1; // several outputs: more places to die
    let mut stopped_at = 0;
    for n in 0.. {
        let lake = copy_of(&day).await;
        let dying = Scripted::dies_after(lake.clone(), n);
        let c = Compactor::new(
            dying.clone(),
            LakeSessionStore::new(lake.clone()),
            cfg.clone(),
        );
        let first = c.compact(Table::EksAudit, AUDIT, now()).await;
        // nothing lost, whatever the moment: every event is in some file
        let mut seen = ids(&table_rows(lake.as_ref(), "eks_audit").await);
        seen.dedup();
        assert_eq!(
            seen, expected,
            "killed after {n} writes: a row went missing"
        );
        if first.is_ok() {
            assert!(n > 0);
            stopped_at = n;
            break;
        }
        let c = Compactor::new(
            lake.clone(),
            LakeSessionStore::new(lake.clone()),
            cfg.clone(),
        );
        let r = c.compact(Table::EksAudit, AUDIT, now()).await.unwrap();
        if n > 0 {
            assert!(
                r.resumed.is_some(),
                "killed after {n} writes: the manifest was there"
            );
        }
        if r.outcome == Outcome::Compacted {
            // redone from the original inputs: no partial output of the killed run left
            assert_eq!(
                (r.files_in, r.duplicates),
                (3, 3),
                "killed after {n} writes"
            );
        } else {
            assert_eq!(r.outcome, Outcome::Unchanged, "killed after {n} writes");
            assert!(matches!(r.resumed, Some(Resumed::FinishedSwap(_))));
        }
        let rows = table_rows(lake.as_ref(), "eks_audit").await;
        assert_eq!(ids(&rows), expected, "killed after {n} writes, then re-run");
        assert!(
            lake.keys()
                .iter()
                .all(|k| !k.starts_with(&format!("{AUDIT}/part-"))),
            "inputs replaced"
        );
        assert!(lake.list("_compaction/").await.unwrap().is_empty());
        assert_eq!(
            find(&rows, "audit_id", "audit-1")["principal_name"],
            "jdoe",
            "killed after {n} writes"
        );
    }
    // manifest, outputs, manifest again, three deletions, the manifest's removal
    assert!(stopped_at >= 6, "the run makes {stopped_at} writes");
}

#[tokio::test]
async fn a_stopped_swap_is_finished_by_the_next_run() {
    let day = Arc::new(MemoryStore::default());
    ingest_day(&day).await;
    // a full run's writes: manifest, 1 output, manifest, 3 deletes, manifest delete = 7
    let lake = copy_of(&day).await;
    let dying = Scripted::dies_after(lake.clone(), 4);
    let c = Compactor::new(dying, LakeSessionStore::new(lake.clone()), config());
    assert!(c.compact(Table::EksAudit, AUDIT, now()).await.is_err());
    let c = job(lake.clone(), lake.clone());
    let r = c.compact(Table::EksAudit, AUDIT, now()).await.unwrap();
    assert_eq!(r.resumed, Some(Resumed::FinishedSwap(3)));
    assert_eq!(
        r.outcome,
        Outcome::Unchanged,
        "the swap finished the work: {r:?}"
    );
    assert_eq!(lake.list(&format!("{AUDIT}/")).await.unwrap().len(), 1);
}

#[tokio::test]
async fn ingest_writing_into_the_day_meanwhile_loses_nothing() {
    let lake = Arc::new(MemoryStore::default());
    let mut expected = ingest_day(&lake).await;
    // the late batch's file, as ingest would write it
    let other = Arc::new(MemoryStore::default());
    let h = Handler::new(
        trusting(HandlerConfig::default()),
        other.clone(),
        LakeSessionStore::new(other.clone()),
    );
    let late = iam_user("audit-9", "2024-11-26T13:15:00Z");
    h.process(
        &[audit_events("b9", &[("cwl-9", late.as_str())])],
        None,
        now(),
    )
    .await
    .unwrap();
    let key = other
        .keys()
        .into_iter()
        .find(|k| k.starts_with(AUDIT))
        .unwrap();
    let store = Scripted::ingest_during(lake.clone(), key.clone(), other.object(&key).unwrap());
    let c = Compactor::new(store, LakeSessionStore::new(lake.clone()), config());
    let r = c.compact(Table::EksAudit, AUDIT, now()).await.unwrap();
    assert_eq!(r.files_in, 3, "only the files there at the start");
    assert!(lake.object(&key).is_some(), "the new file is left alone");
    expected.push("audit-9");
    expected.sort();
    assert_eq!(ids(&table_rows(lake.as_ref(), "eks_audit").await), expected);
    // the next run takes it in
    let c = job(lake.clone(), lake.clone());
    let r = c.compact(Table::EksAudit, AUDIT, now()).await.unwrap();
    assert_eq!(
        (r.outcome, r.files_in, r.files_out),
        (Outcome::Compacted, 2, 1)
    );
    assert_eq!(ids(&table_rows(lake.as_ref(), "eks_audit").await), expected);
}

#[tokio::test]
async fn files_overlapping_beyond_the_memory_limit_are_left_as_they_are() {
    let lake = Arc::new(MemoryStore::default());
    ingest_day(&lake).await;
    let before = lake.keys();
    let mut cfg = config();
    cfg.max_held_rows = 0;
    let c = Compactor::new(lake.clone(), LakeSessionStore::new(lake.clone()), cfg);
    let e = c.compact(Table::EksAudit, AUDIT, now()).await.unwrap_err();
    assert!(matches!(e, JobError::TooWide { .. }), "{e}");
    assert!(e.to_string().contains(AUDIT), "{e}");
    assert_eq!(lake.keys(), before, "nothing changed, no manifest left");
}

#[tokio::test]
async fn a_file_that_is_not_parquet_fails_its_partition_with_its_name() {
    let lake = Arc::new(MemoryStore::default());
    ingest_day(&lake).await;
    let bad = format!("{AUDIT}/part-garbage.parquet");
    lake.put(&bad, b"not parquet at all".to_vec())
        .await
        .unwrap();
    let before = lake.keys();
    let c = job(lake.clone(), lake.clone());
    let e = c.compact(Table::EksAudit, AUDIT, now()).await.unwrap_err();
    assert!(e.to_string().contains("part-garbage.parquet"), "{e}");
    assert!(e.to_string().contains("not a Parquet file"), "{e}");
    assert_eq!(lake.keys(), before);
}
