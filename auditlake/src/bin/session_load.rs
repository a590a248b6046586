//! Load run of the DynamoDB session index through the real handler (issue #12): index
//! N sessions from CloudTrail batches, then attribute audit events using M of their
//! keys (on a cold instance, so every key goes to the store), and report DynamoDB
//! requests per session and per lookup. Figures only: nothing here passes or fails.
//!
//!   bash bench/session_load.sh [SESSIONS] [LOOKUPS]   (moto_server, then this)
//!
//! Needs `AWS_ENDPOINT_URL` (an emulator or a real account), `AWS_REGION` and an empty
//! table named by `--table` with the central stack's key schema.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use auditlake::dynamodb::DynamoSessionStore;
use auditlake::s3::S3Store;
use resolver::store::SessionStore;
use transformer::handler::{Handler, HandlerConfig, InputRecord};
use transformer::lake::{LakeError, MemoryStore, ObjectStore};
use transformer::session_store::LakeSessionStore;
use transformer::trust::TrustedTrails;

const TRAIL_OWNER: &str = "999999999999";
const TRAIL_GROUP: &str = "aws-cloudtrail-logs-o-load";
const T0: i64 = 1_795_161_600_000;
/// Sessions per CloudWatch Logs envelope, envelopes per Firehose batch.
const PER_RECORD: usize = 500;
const RECORDS_PER_BATCH: usize = 4;

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

fn key(i: usize) -> String {
    format!("ASIALOAD{i:012}")
}

fn sts_event(i: usize) -> String {
    let at = auditlake::synth::iso(T0 + (i as i64) * 100);
    let role = format!("arn:aws:iam::222222222222:role/app-{}", i % 500);
    json!({"eventVersion": "1.08", "eventTime": at, "eventSource": "sts.amazonaws.com", "eventName": "AssumeRole",
        "awsRegion": "us-east-1", "recipientAccountId": "222222222222", "eventID": format!("load-{i}"),
        "userIdentity": {"type": "AWSService", "invokedBy": "lambda.amazonaws.com"},
        "requestParameters": {"roleArn": role, "roleSessionName": format!("fn-{}", i % 5000)},
        "responseElements": {"credentials": {"accessKeyId": key(i), "expiration": auditlake::synth::iso(T0 + (i as i64) * 100 + 3_600_000)},
            "assumedRoleUser": {"arn": format!("arn:aws:sts::222222222222:assumed-role/app-{}/fn-{}", i % 500, i % 5000)}}})
    .to_string()
}

fn audit_event(n: usize, i: usize) -> String {
    let at = auditlake::synth::iso(T0 + (i as i64) * 100 + 60_000);
    json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": format!("a-{n}"), "stage": "ResponseComplete",
        "requestURI": "/api/v1/pods", "verb": "list", "requestReceivedTimestamp": at, "stageTimestamp": at,
        "user": {"username": format!("arn:aws:sts::222222222222:assumed-role/app-{}/fn-{}", i % 500, i % 5000), "groups": ["system:authenticated"],
            "extra": {"accessKeyId": [key(i)], "arn": [format!("arn:aws:sts::222222222222:assumed-role/app-{}/fn-{}", i % 500, i % 5000)]}},
        "sourceIPs": ["10.0.0.1"], "objectRef": {"resource": "pods", "apiVersion": "v1"}, "responseStatus": {"code": 200}})
    .to_string()
}

fn envelope(
    owner: &str,
    group: &str,
    stream: &str,
    messages: Vec<String>,
    first_id: usize,
) -> Vec<u8> {
    let events: Vec<serde_json::Value> = messages
        .into_iter()
        .enumerate()
        .map(|(j, m)| json!({"id": format!("{:020}", first_id + j), "timestamp": T0, "message": m}))
        .collect();
    gz(json!({"messageType": "DATA_MESSAGE", "owner": owner, "logGroup": group, "logStream": stream,
        "subscriptionFilters": ["f"], "logEvents": events})
    .to_string()
    .as_bytes())
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn config() -> HandlerConfig {
    HandlerConfig {
        trusted_trails: TrustedTrails::none().with(TRAIL_OWNER, TRAIL_GROUP),
        // every lookup this run wants goes to the store
        budget: transformer::handler::Budget {
            lookups: 1_000_000,
            ..Default::default()
        },
        ..HandlerConfig::default()
    }
}

/// Requests an object store served (the S3 store's side of the comparison).
#[derive(Default)]
struct ObjectRequests {
    put: AtomicU64,
    get: AtomicU64,
    list: AtomicU64,
}

#[derive(Clone)]
struct Counted {
    inner: S3Store,
    n: Arc<ObjectRequests>,
}

impl ObjectStore for Counted {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), LakeError> {
        self.n.put.fetch_add(1, Ordering::Relaxed);
        self.inner.put(key, body).await
    }
    async fn put_if_absent(&self, key: &str, body: Vec<u8>) -> Result<bool, LakeError> {
        self.n.put.fetch_add(1, Ordering::Relaxed);
        self.inner.put_if_absent(key, body).await
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, LakeError> {
        self.n.get.fetch_add(1, Ordering::Relaxed);
        self.inner.get(key).await
    }
    async fn get_range(
        &self,
        key: &str,
        range: transformer::lake::ByteRange,
    ) -> Result<Option<transformer::lake::Ranged>, LakeError> {
        self.n.get.fetch_add(1, Ordering::Relaxed);
        self.inner.get_range(key, range).await
    }
    async fn put_file(&self, key: &str, path: &std::path::Path) -> Result<(), LakeError> {
        self.n.put.fetch_add(1, Ordering::Relaxed);
        self.inner.put_file(key, path).await
    }
    async fn delete(&self, key: &str) -> Result<(), LakeError> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, LakeError> {
        self.n.list.fetch_add(1, Ordering::Relaxed);
        self.inner.list(prefix).await
    }
    fn locate(&self, key: &str) -> String {
        self.inner.locate(key)
    }
}

/// Index `n` sessions, then look up `m` keys on a cold instance; (indexed, resolved,
/// pending, write seconds, read seconds).
async fn drive<S: SessionStore + Clone>(
    writer: S,
    reader: S,
    n: usize,
    m: usize,
) -> anyhow::Result<(u64, u64, u64, f64, f64)> {
    let lake = Arc::new(MemoryStore::default());
    let h = Handler::new(config(), lake.clone(), writer);
    let started = Instant::now();
    let mut indexed = 0u64;
    let per_batch = PER_RECORD * RECORDS_PER_BATCH;
    for b in 0..n.div_ceil(per_batch) {
        let mut batch = Vec::new();
        for r in 0..RECORDS_PER_BATCH {
            let first = b * per_batch + r * PER_RECORD;
            let msgs: Vec<String> = (first..(first + PER_RECORD).min(n))
                .map(sts_event)
                .collect();
            if msgs.is_empty() {
                continue;
            }
            batch.push(InputRecord::gzip(
                format!("t-{b}-{r}"),
                envelope(
                    TRAIL_OWNER,
                    TRAIL_GROUP,
                    "o-load_CloudTrail_us-east-1",
                    msgs,
                    first,
                ),
            ));
        }
        let out = h.process(&batch, None, T0).await?;
        indexed += out.metrics.sts_sessions;
    }
    let write_s = started.elapsed().as_secs_f64();
    // a cold instance: its cache is empty, every key is a store lookup
    let cold = Handler::new(config(), lake, reader);
    let started = Instant::now();
    let (mut resolved, mut pending) = (0u64, 0u64);
    let stride = (n / m.max(1)).max(1);
    let keys: Vec<usize> = (0..m).map(|j| (j * stride) % n.max(1)).collect();
    for (b, chunk) in keys.chunks(per_batch).enumerate() {
        let msgs: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(j, &i)| audit_event(b * per_batch + j, i))
            .collect();
        let rec = InputRecord::gzip(
            format!("a-{b}"),
            envelope(
                "222222222222",
                "/aws/eks/prod/cluster",
                "kube-apiserver-audit-0",
                msgs,
                b * per_batch,
            ),
        );
        let out = cold.process(&[rec], Some("us-east-1"), T0).await?;
        resolved += out.metrics.attribution_resolved;
        pending += out.metrics.attribution_pending;
    }
    Ok((
        indexed,
        resolved,
        pending,
        write_s,
        started.elapsed().as_secs_f64(),
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = arg(&args, "--sessions")
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let m: usize = arg(&args, "--lookups")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let per = |x: u64, d: u64| x as f64 / (d.max(1) as f64);
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "session index load run ({}): {n} sessions, {m} lookups",
        std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "AWS".into())
    );
    if let Some(bucket) = arg(&args, "--bucket") {
        let s3 = S3Store::from_env(bucket, "load".into()).await;
        let (wn, rn) = (
            Arc::new(ObjectRequests::default()),
            Arc::new(ObjectRequests::default()),
        );
        let w = LakeSessionStore::new(Arc::new(Counted {
            inner: s3.clone(),
            n: wn.clone(),
        }));
        let r = LakeSessionStore::new(Arc::new(Counted {
            inner: s3,
            n: rn.clone(),
        }));
        let (indexed, resolved, pending, ws, rs) = drive(Arc::new(w), Arc::new(r), n, m).await?;
        println!(
            "  S3 store: indexed {indexed} in {ws:.1} s: PUT {} GET {} LIST {}",
            g(&wn.put),
            g(&wn.get),
            g(&wn.list)
        );
        println!(
            "    per session: {:.3} PUT, {:.3} GET",
            per(g(&wn.put), indexed),
            per(g(&wn.get), indexed)
        );
        println!("  S3 store: {m} lookups in {rs:.1} s ({resolved} resolved, {pending} pending): GET {} LIST {}", g(&rn.get), g(&rn.list));
        println!(
            "    per lookup: {:.3} GET, {:.3} LIST",
            per(g(&rn.get), m as u64),
            per(g(&rn.list), m as u64)
        );
    }
    if let Some(table) = arg(&args, "--table") {
        let w = DynamoSessionStore::from_env(table.clone()).await;
        let r = DynamoSessionStore::from_env(table).await;
        let (indexed, resolved, pending, ws, rs) = drive(w.clone(), r.clone(), n, m).await?;
        let (wq, rq) = (&w.requests, &r.requests);
        let writes = g(&wq.put_item) + g(&wq.batch_write_item) + g(&wq.get_item);
        let reads = g(&rq.batch_get_item) + g(&rq.get_item) + g(&rq.query);
        println!(
            "  DynamoDB store: indexed {indexed} in {ws:.1} s: {}",
            wq.summary()
        );
        println!(
            "    per session: {:.3} requests, {:.2} items written (1 WRU each: items < 1 KB)",
            per(writes, indexed),
            per(g(&wq.items_written), indexed)
        );
        println!("  DynamoDB store: {m} lookups in {rs:.1} s ({resolved} resolved, {pending} pending): {}", rq.summary());
        println!(
            "    per lookup: {:.4} requests, {:.2} strongly consistent item reads (1 RRU each)",
            per(reads, m as u64),
            per(g(&rq.keys_read), m as u64)
        );
    }
    Ok(())
}
