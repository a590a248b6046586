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
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use auditlake::dynamodb::DynamoSessionStore;
use transformer::handler::{Handler, HandlerConfig, InputRecord};
use transformer::lake::MemoryStore;
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let table = arg(&args, "--table").unwrap_or_else(|| "eks-audit-lake-sessions".into());
    let n: usize = arg(&args, "--sessions")
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let m: usize = arg(&args, "--lookups")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let store = DynamoSessionStore::from_env(table.clone()).await;
    let lake = Arc::new(MemoryStore::default());

    let h = Handler::new(config(), lake.clone(), store.clone());
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
    let w = store.requests.summary();

    // a cold instance: its cache is empty, every key is a store lookup
    let reader = DynamoSessionStore::from_env(table).await;
    let cold = Handler::new(config(), lake, reader.clone());
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
    let read_s = started.elapsed().as_secs_f64();
    let r = reader.requests.summary();
    let g = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed) as f64;
    let (wq, rq) = (&store.requests, &reader.requests);
    let writes = g(&wq.put_item) + g(&wq.batch_write_item) + g(&wq.get_item);
    let reads = g(&rq.batch_get_item) + g(&rq.get_item) + g(&rq.query);
    let per = |x: f64, d: u64| x / (d.max(1) as f64);
    println!(
        "session index load run against DynamoDB ({})",
        std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "AWS".into())
    );
    println!("  indexed {indexed} sessions in {write_s:.1} s: {w}");
    println!(
        "  requests per session: {:.3}; items (write units) per session: {:.2}",
        per(writes, indexed),
        per(g(&wq.items_written), indexed)
    );
    println!("  looked up {m} keys in {read_s:.1} s ({resolved} resolved, {pending} pending): {r}");
    println!(
        "  requests per lookup: {:.4}; keys read per lookup: {:.2}",
        per(reads, m as u64),
        per(g(&rq.keys_read), m as u64)
    );
    Ok(())
}
