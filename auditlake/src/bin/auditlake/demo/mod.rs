//! `auditlake demo`: a generated organisation run through the real handler.
//!
//! Four accounts, four clusters, people signing in through IAM Identity Center, an
//! external SAML IdP, IAM users and GitHub Actions (web identity), role chains across
//! three accounts, controllers, nodes and health probes, and one incident:
//! dave binds `system:anonymous` to `cluster-admin`, secrets are then listed anonymously,
//! bob (through a three-account role chain) execs into a `kube-system` pod and starts a
//! privileged pod, and erin's credentials produce a burst of 403s from one IP.
//! CloudTrail lands five minutes after each STS call, as it does in AWS, so a few events
//! are `pending` at ingest and resolve through the view.
//!
//! Generation is deterministic (fixed seed and clock), so tests can assert on it.
//!
//! `scenario.rs` is the organisation as data (accounts, clusters, sessions, activity, the
//! incident) with a small driver; `gen.rs` writes each thing as AWS sends it; this file
//! runs the batches through the handler and prints the report.

mod gen;
mod scenario;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{Array, ListArray, RecordBatch, StringArray, TimestampMillisecondArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use resolver::awsauth::AwsAuth;
use resolver::identity::{classify, AwsExtra};
use resolver::{SessionIndex, StsSession};

use transformer::handler::{Handler, HandlerConfig, HandlerError};
use transformer::lake::{LocalDir, ObjectStore};
use transformer::metrics::Metrics;
use transformer::session_store::LakeSessionStore;
use transformer::trust::TrustedTrails;

use auditlake::synth::iso;
use scenario::{
    generate, BATCH_WINDOW, DEMO_AWS_AUTH, DEMO_OIDC_CLUSTERS, MGMT, ORG_TRAIL_GROUP, T0,
};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Handler(#[from] HandlerError),
    #[error("reading back {path}: {message}")]
    Read { path: String, message: String },
    #[error(transparent)]
    AwsAuth(#[from] resolver::awsauth::AwsAuthError),
    #[error("shipped rule pack: {0}")]
    Rules(String),
    #[error("{0}: not empty and not made by `auditlake demo`; give another --lake or remove it")]
    NotADemoLake(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl DemoError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NotADemoLake(_) => 2,
            _ => 1,
        }
    }
}

/// Marks a directory as a demo lake, so a re-run may clear it.
const MARKER: &str = ".auditlake-demo";
/// Another command writes into `dir`: if it was a demo lake, it is not any more (a
/// demo re-run will refuse it rather than delete what was added). True if it was.
pub fn release(dir: &Path) -> bool {
    std::fs::remove_file(dir.join(MARKER)).is_ok()
}

/// What a demo run writes (and a re-run removes).
const DEMO_DIRS: [&str; 6] = [
    "eks_audit",
    "sts_sessions",
    "findings",
    "eks_api_events",
    "session_index",
    "alerts",
];

/// Start clean: a re-run into a demo lake removes the previous run's tables (its
/// session index would otherwise resolve more of the new run at ingest and change
/// the counts); any other non-empty directory is refused. Returns what was found.
fn prepare(dir: &Path) -> Result<Option<String>, DemoError> {
    let io = |source| DemoError::Io {
        path: dir.display().to_string(),
        source,
    };
    let entries: Vec<_> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.flatten().map(|e| e.file_name()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(e)),
    };
    let found = if entries.is_empty() {
        None
    } else if entries.iter().any(|n| n == MARKER) {
        let mut removed = Vec::new();
        for d in DEMO_DIRS {
            let p = dir.join(d);
            if p.exists() {
                std::fs::remove_dir_all(&p).map_err(io)?;
                removed.push(d);
            }
        }
        Some(format!(
            "demo: {} held an earlier demo run; removed its {} to start clean",
            dir.display(),
            removed.join(", ")
        ))
    } else {
        return Err(DemoError::NotADemoLake(dir.display().to_string()));
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::write(
        dir.join(MARKER),
        "written by `auditlake demo`; a re-run replaces this lake\n",
    )
    .map_err(io)?;
    Ok(found)
}

// ---- reading the lake back for the report ---------------------------------------------

fn read_table(root: &Path, table: &str) -> Result<Vec<RecordBatch>, DemoError> {
    let mut files = Vec::new();
    let mut stack = vec![root.join(table)];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let err = |message: String| DemoError::Read {
            path: f.display().to_string(),
            message,
        };
        let file = std::fs::File::open(&f).map_err(|e| err(e.to_string()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|e| err(e.to_string()))?;
        for b in reader {
            out.push(b.map_err(|e| err(e.to_string()))?);
        }
    }
    Ok(out)
}

/// A string column (`None` when the table has no such column: findings carry no bodies).
fn s<'b>(b: &'b RecordBatch, name: &str) -> Option<&'b StringArray> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
}

fn get(a: Option<&StringArray>, i: usize) -> Option<&str> {
    a.filter(|a| a.is_valid(i)).map(|a| a.value(i))
}

/// One `eks_audit` row, as the report needs it.
#[derive(Debug, Clone, Default)]
pub struct ReportRow {
    pub event_ms: i64,
    pub account_id: String,
    pub cluster: String,
    pub verb: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub username: String,
    pub source_ip: String,
    pub response_code: Option<i32>,
    pub request_object: String,
    pub principal: String,
    pub principal_type: String,
    pub method: String,
    pub status: String,
    pub role_chain: Vec<String>,
    pub access_key: Option<String>,
    pub aws_arn: Option<String>,
    pub aws_role_arn: Option<String>,
    pub principal_cluster: String,
    pub principal_pod: String,
}

/// The column `name` of a batch as its Arrow array type (the report reads lake files it
/// wrote itself: a missing column is a bug).
fn typed<'b, T: 'static>(b: &'b RecordBatch, name: &str) -> &'b T {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .unwrap_or_else(|| panic!("{name}"))
}

/// Row `i` of a list-of-strings column.
fn strings_at(l: &ListArray, i: usize) -> Vec<String> {
    let v = l.value(i);
    let v = v
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("list of strings");
    (0..v.len()).map(|j| v.value(j).to_string()).collect()
}

fn rows(batches: &[RecordBatch]) -> Vec<ReportRow> {
    let mut out = Vec::new();
    for b in batches {
        let t: &TimestampMillisecondArray = typed(b, "event_time");
        let code: &arrow_array::Int32Array = typed(b, "response_code");
        let chain: &ListArray = typed(b, "role_chain");
        let cols = [
            "account_id",
            "cluster",
            "verb",
            "object_resource",
            "object_subresource",
            "object_namespace",
            "object_name",
            "username",
            "source_ip",
            "request_object",
            "principal_name",
            "principal_type",
            "attribution_method",
            "attribution_status",
            "aws_access_key_id",
            "aws_arn",
            "aws_role_arn",
            "principal_cluster",
            "principal_pod",
        ];
        let c: Vec<Option<&StringArray>> = cols.iter().map(|n| s(b, n)).collect();
        for i in 0..b.num_rows() {
            let v = |k: usize| get(c[k], i).unwrap_or("").to_string();
            out.push(ReportRow {
                event_ms: t.value(i),
                account_id: v(0),
                cluster: v(1),
                verb: v(2),
                resource: v(3),
                subresource: v(4),
                namespace: v(5),
                name: v(6),
                username: v(7),
                source_ip: v(8),
                request_object: v(9),
                principal: v(10),
                principal_type: v(11),
                method: v(12),
                status: v(13),
                role_chain: strings_at(chain, i),
                access_key: get(c[14], i).map(str::to_string),
                aws_arn: get(c[15], i).map(str::to_string),
                aws_role_arn: get(c[16], i).map(str::to_string),
                principal_cluster: v(17),
                principal_pod: v(18),
                response_code: code.is_valid(i).then(|| code.value(i)),
            });
        }
    }
    out.sort_by_key(|r| r.event_ms);
    out
}

/// One `findings` row, as the report needs it: the event part (attributed like the
/// events) and the rule.
struct FindingRow {
    event: ReportRow,
    rule_title: String,
    severity: String,
}

fn finding_rows(batches: &[RecordBatch]) -> Vec<FindingRow> {
    let mut out = Vec::new();
    for b in batches {
        let events = rows(std::slice::from_ref(b));
        // rows() sorted by time; findings are written in time order per file: re-read
        // the rule columns in the same order
        let t: &TimestampMillisecondArray = typed(b, "event_time");
        let mut order: Vec<usize> = (0..b.num_rows()).collect();
        order.sort_by_key(|&i| t.value(i));
        let (title, sev) = (s(b, "rule_title"), s(b, "severity"));
        for (e, i) in events.into_iter().zip(order) {
            out.push(FindingRow {
                event: e,
                rule_title: get(title, i).unwrap_or("").to_string(),
                severity: get(sev, i).unwrap_or("").to_string(),
            });
        }
    }
    out.sort_by_key(|f| f.event.event_ms);
    out
}

/// One `eks_api_events` row as the report tells it: the caller (attributed like an
/// audit event's user) and what the call did.
fn api_calls(batches: &[RecordBatch]) -> Vec<(ReportRow, String)> {
    let mut out = Vec::new();
    for b in batches {
        let t: &TimestampMillisecondArray = typed(b, "event_time");
        let chain: &ListArray = typed(b, "role_chain");
        let audit_on: &arrow_array::BooleanArray = typed(b, "audit_logging_enabled");
        for i in 0..b.num_rows() {
            let v = |n: &str| get(s(b, n), i).unwrap_or("").to_string();
            let short = |a: String| a.rsplit('/').next().unwrap_or("").to_string();
            let mut what = v("event_name");
            if !v("target_principal_arn").is_empty() {
                what.push_str(&format!(" for {}", v("target_principal_arn")));
            }
            if !v("access_policy_arn").is_empty() {
                what.push_str(&format!(
                    ": {} ({} scope)",
                    short(v("access_policy_arn")),
                    v("access_scope_type")
                ));
            }
            if audit_on.is_valid(i) {
                what.push_str(if audit_on.value(i) {
                    ": audit log ON"
                } else {
                    ": audit log OFF"
                });
            }
            if !v("error_code").is_empty() {
                what.push_str(&format!(" -- DENIED ({})", v("error_code")));
            }
            out.push((
                ReportRow {
                    event_ms: t.value(i),
                    account_id: v("account_id"),
                    cluster: v("cluster"),
                    source_ip: v("source_ip"),
                    principal: v("principal_name"),
                    principal_type: v("principal_type"),
                    method: v("attribution_method"),
                    status: v("attribution_status"),
                    role_chain: strings_at(chain, i),
                    ..Default::default()
                },
                what,
            ));
        }
    }
    out.sort_by_key(|(r, _)| r.event_ms);
    out
}

fn severity_rank(s: &str) -> usize {
    ["informational", "low", "medium", "high", "critical"]
        .iter()
        .position(|x| *x == s)
        .unwrap_or(0)
}

/// Late attribution, as the `eks_audit_attributed` view does it: pending rows with an
/// access key are resolved against every session the lake now knows.
fn late_attribution(rows: &mut [ReportRow], index: &SessionIndex) -> usize {
    late_attribution_of(rows.iter_mut(), index)
}

/// [`late_attribution`] over any rows (findings carry the same columns).
fn late_attribution_of<'r>(
    rows: impl Iterator<Item = &'r mut ReportRow>,
    index: &SessionIndex,
) -> usize {
    let mut n = 0;
    for r in rows.filter(|r| r.status == "pending") {
        let Some(key) = r.access_key.clone() else {
            continue;
        };
        // the row's own AWS identity, as the view reads it (the key must match its role)
        let extra = AwsExtra {
            access_key_id: Some(&key),
            arn: r.aws_arn.as_deref(),
            canonical_arn: r.aws_role_arn.as_deref(),
            ..Default::default()
        };
        let id = classify(extra.arn, false, &extra, None);
        let a = index.attribute(&id, None, r.event_ms);
        if a.status == resolver::AttributionStatus::Resolved {
            r.principal = a.principal_name.as_deref().unwrap_or("").to_string();
            r.principal_type = a.principal_type.as_str().to_string();
            r.role_chain = a.role_chain.iter().map(|c| c.to_string()).collect();
            r.principal_cluster = a.principal_cluster.as_deref().unwrap_or("").to_string();
            r.principal_pod = a.principal_pod.as_deref().unwrap_or("").to_string();
            r.status = "resolved (late, view)".into();
            n += 1;
        }
    }
    n
}

/// Rebuild the session index from `<lake>/session_index/by_key/`.
async fn load_sessions(lake: &LocalDir) -> Result<SessionIndex, DemoError> {
    let mut index = SessionIndex::new();
    let keys = lake
        .list("session_index/by_key/")
        .await
        .map_err(|e| DemoError::Read {
            path: "session_index".into(),
            message: e.to_string(),
        })?;
    for k in keys {
        if let Ok(Some(b)) = lake.get(&k).await {
            if let Ok(s) = serde_json::from_slice::<StsSession>(&b) {
                index.insert(Arc::new(s));
            }
        }
    }
    index.finalize();
    Ok(index)
}

/// One line of the incident timeline.
struct Step<'r> {
    row: &'r ReportRow,
    what: String,
}

/// Every incident event the playbook finds, in time order: aws-auth writes that grant
/// `system:masters` (06), bindings of anonymous subjects (01), secrets read anonymously
/// (04/05), exec into kube-system (03), privileged pods (07), bursts of 403s (02).
fn timeline(rows: &[ReportRow]) -> Vec<Step<'_>> {
    let mut out: Vec<Step<'_>> = Vec::new();
    for r in rows.iter().filter(|r| {
        r.resource == "configmaps"
            && r.namespace == "kube-system"
            && r.name == "aws-auth"
            && matches!(r.verb.as_str(), "create" | "update" | "patch" | "delete")
            && allowed(r)
    }) {
        let grant = if r.request_object.contains("system:masters") {
            let role = r
                .request_object
                .split("rolearn: ")
                .nth(1)
                .and_then(|x| x.split(['\\', '\n', ' ']).next())
                .unwrap_or("a role");
            format!(": maps {role} to system:masters")
        } else {
            String::new()
        };
        out.push(Step {
            row: r,
            what: format!("{} ConfigMap kube-system/aws-auth{grant}", past(&r.verb)),
        });
    }
    for r in rows.iter().filter(|r| {
        r.resource == "clusterrolebindings"
            && r.verb == "create"
            && r.request_object.contains("system:anonymous")
            && allowed(r)
    }) {
        out.push(Step {
            row: r,
            what: format!(
                "created ClusterRoleBinding {} binding system:anonymous to cluster-admin",
                r.name
            ),
        });
    }
    let anon: Vec<&ReportRow> = rows
        .iter()
        .filter(|r| {
            r.username == "system:anonymous"
                && r.resource == "secrets"
                && r.response_code.is_some_and(|c| c < 400)
        })
        .collect();
    if let Some(r) = anon.first() {
        let ns: std::collections::BTreeSet<&str> =
            anon.iter().map(|r| r.namespace.as_str()).collect();
        out.push(Step {
            row: r,
            what: format!(
                "secrets listed anonymously ({} requests, namespaces {})",
                anon.len(),
                ns.into_iter().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    let mut seen_exec = std::collections::BTreeSet::new();
    for r in rows
        .iter()
        .filter(|r| r.subresource == "exec" && r.namespace == "kube-system")
    {
        if seen_exec.insert((r.cluster.clone(), r.name.clone(), r.event_ms)) {
            out.push(Step {
                row: r,
                what: format!("exec into kube-system pod {}", r.name),
            });
        }
    }
    for r in rows.iter().filter(|r| {
        r.resource == "pods"
            && r.verb == "create"
            && r.request_object.contains("\"privileged\":true")
            && allowed(r)
    }) {
        out.push(Step {
            row: r,
            what: format!(
                "created privileged hostPID/hostNetwork pod {}/{} mounting /",
                r.namespace, r.name
            ),
        });
    }
    let mut by_ip: BTreeMap<&str, Vec<&ReportRow>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.response_code == Some(403)) {
        by_ip.entry(&r.source_ip).or_default().push(r);
    }
    for v in by_ip.values().filter(|v| v.len() >= 20) {
        let span = (v[v.len() - 1].event_ms - v[0].event_ms) / 1000;
        out.push(Step {
            row: v[0],
            what: format!("burst of {} forbidden (403) requests in {span} s", v.len()),
        });
    }
    out.sort_by_key(|s| s.row.event_ms);
    out
}

/// A write the API server carried out (a denied attempt is not "created").
fn allowed(r: &ReportRow) -> bool {
    r.response_code.is_some_and(|c| c < 400)
}

fn past(verb: &str) -> String {
    match verb {
        "create" => "created".into(),
        "update" => "updated".into(),
        "patch" => "patched".into(),
        "delete" => "deleted".into(),
        v => v.to_string(),
    }
}

fn hhmm(ms: i64) -> String {
    iso(ms)[11..19].to_string()
}

fn who(r: &ReportRow) -> String {
    let chain = if r.role_chain.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = r
            .role_chain
            .iter()
            .map(|a| a.rsplit('/').next().unwrap_or(a))
            .collect();
        format!(" via {}", names.join(" -> "))
    };
    format!(
        "{} [{}]{chain} ({}, {})",
        if r.principal.is_empty() {
            "?"
        } else {
            &r.principal
        },
        r.principal_type,
        r.method,
        r.status
    )
}

/// Run the demo into `lake_dir` and print the report. Returns the report text.
pub async fn run(lake_dir: &Path) -> Result<String, DemoError> {
    if let Some(note) = prepare(lake_dir)? {
        eprintln!("{note}");
    }
    let lake = Arc::new(LocalDir::new(lake_dir));
    let config = HandlerConfig {
        aws_auth: Some(Arc::new(AwsAuth::parse(DEMO_AWS_AUTH, "demo aws-auth")?)),
        // the demo organisation's trail: the only CloudTrail source it trusts
        trusted_trails: TrustedTrails::none().with(MGMT, ORG_TRAIL_GROUP),
        issuer_clusters: Arc::new(
            resolver::workload::IssuerClusters::parse(DEMO_OIDC_CLUSTERS)
                .expect("the demo's issuer map parses"),
        ),
        ..HandlerConfig::default()
    };
    let config = HandlerConfig {
        rules: Arc::new(
            transformer::sigma::RuleSet::from_files_with(
                schemas::SHIPPED_RULES.iter().copied(),
                &auditlake::config::placeholders(&scenario::DEMO_ORG_ACCOUNTS.map(str::to_owned)),
            )
            .map_err(|e| DemoError::Rules(e.to_string()))?,
        ),
        ..config
    };
    // what EventBridge would carry to the SNS topic, as files
    let handler = Handler::new(config, lake.clone(), LakeSessionStore::new(lake.clone()))
        .with_alerts(transformer::alerts::DirAlerts {
            dir: lake_dir.join("alerts"),
        });
    let batches = generate();
    let mut total = Metrics::default();
    let started = std::time::Instant::now();
    for (i, b) in batches.iter().enumerate() {
        // ingest time = the batch's window, so the demo is reproducible
        let now = T0 + i as i64 * BATCH_WINDOW;
        let out = handler.process(b, Some("us-east-1"), now).await?;
        total += out.metrics;
    }
    let elapsed = started.elapsed();
    let report = report(lake_dir, &lake, &total, batches.len(), elapsed).await?;
    crate::out::emitln(&report);
    Ok(report)
}

async fn report(
    root: &Path,
    lake: &LocalDir,
    m: &Metrics,
    batches: usize,
    elapsed: std::time::Duration,
) -> Result<String, DemoError> {
    use std::fmt::Write as _;
    let mut rows = rows(&read_table(root, "eks_audit")?);
    let index = load_sessions(lake).await?;
    let pending_at_ingest = rows.iter().filter(|r| r.status == "pending").count();
    let late = late_attribution(&mut rows, &index);
    let mut o = String::new();
    let _ = writeln!(o, "eks-audit-lake demo: {} Firehose batches, {} records ({:.2} MB compressed, {:.1} MB JSON) in {:.2} s",
        batches, m.records_in, m.bytes_in as f64 / 1e6, m.bytes_decompressed as f64 / 1e6, elapsed.as_secs_f64());
    let _ = writeln!(o, "  {} audit events written ({} truncated, {} invalid kept), {} non-audit log events skipped, {} STS sessions indexed",
        m.events_written, m.truncated, m.invalid, m.skipped, m.sts_sessions);
    let _ = writeln!(o, "  attribution at ingest: {} resolved, {} pending, {} ambiguous, {} not applicable (Kubernetes identities)",
        m.attribution_resolved, m.attribution_pending, m.attribution_ambiguous, m.attribution_not_applicable);
    let _ = writeln!(o, "  {pending_at_ingest} events were pending at ingest (CloudTrail lands ~5 min later); {late} resolve now through the view, the rest have no STS record\n");

    // the findings first: what happened, where, and who (the person, not the session)
    let mut findings = finding_rows(&read_table(root, "findings")?);
    late_attribution_of(findings.iter_mut().map(|f| &mut f.event), &index);
    let rules_fired: std::collections::BTreeSet<&str> =
        findings.iter().map(|f| f.rule_title.as_str()).collect();
    let _ = writeln!(
        o,
        "Findings: {} from {} of the shipped detection rules; {} alerts at high or above in {}/alerts/ (what EventBridge would send to the SNS topic).",
        m.findings,
        rules_fired.len(),
        m.alerts_published,
        root.display()
    );
    let _ = writeln!(o, "Findings of medium severity and above, one line per rule, cluster and person (first time, count), who did it:");
    // one line per (rule, cluster, person), first time, count
    let mut grouped: Vec<(String, String, String, &FindingRow, usize)> = Vec::new();
    for f in findings.iter().filter(|f| severity_rank(&f.severity) >= 2) {
        let key = (f.rule_title.clone(), f.event.cluster.clone(), who(&f.event));
        match grouped
            .iter_mut()
            .find(|g| g.0 == key.0 && g.1 == key.1 && g.2 == key.2)
        {
            Some(g) => g.4 += 1,
            None => grouped.push((key.0, key.1, key.2, f, 1)),
        }
    }
    for (title, cluster, who, f, n) in &grouped {
        let times = if *n > 1 {
            format!(" (x{n})")
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "  {} {:<8} {:<9} {title}{times}\n     by {who} from {}",
            hhmm(f.event.event_ms),
            f.severity,
            cluster,
            f.event.source_ip
        );
    }
    let _ = writeln!(o);

    // cluster access and logging changed through the EKS API: CloudTrail, no audit event
    let calls = api_calls(&read_table(root, "eks_api_events")?);
    let _ = writeln!(
        o,
        "Cluster access and logging changed through the EKS API ({} calls in eks_api_events; no audit event records these):",
        calls.len()
    );
    for (r, what) in &calls {
        let _ = writeln!(
            o,
            "  {} {:<9} {what}\n     by {} from {}",
            hhmm(r.event_ms),
            r.cluster,
            who(r),
            r.source_ip
        );
    }
    let _ = writeln!(o);

    let _ = writeln!(
        o,
        "{:<14} {:<10} {:>7} {:>9} {:>8} {:>10}",
        "account", "cluster", "events", "resolved", "pending", "ambiguous"
    );
    let mut per: BTreeMap<(String, String), [usize; 4]> = BTreeMap::new();
    for r in &rows {
        let e = per
            .entry((r.account_id.clone(), r.cluster.clone()))
            .or_default();
        e[0] += 1;
        match r.status.as_str() {
            "pending" => e[2] += 1,
            "ambiguous" => e[3] += 1,
            s if s.starts_with("resolved") => e[1] += 1,
            _ => {}
        }
    }
    for ((a, c), v) in &per {
        let _ = writeln!(
            o,
            "{a:<14} {c:<10} {:>7} {:>9} {:>8} {:>10}",
            v[0], v[1], v[2], v[3]
        );
    }

    let _ = writeln!(
        o,
        "\nIncident timeline (prod-east / prod-west), who really did it:"
    );
    for (i, t) in timeline(&rows).iter().enumerate() {
        let _ = writeln!(
            o,
            "  {}. {} {}  {}\n     by {} from {}",
            i + 1,
            hhmm(t.row.event_ms),
            t.row.cluster,
            t.what,
            who(t.row),
            t.row.source_ip
        );
    }
    let _ = writeln!(
        o,
        "\nWorkloads acting in the clusters (not people, but named):"
    );
    let mut wl: BTreeMap<(String, String, String), (usize, i64, i64, String, String)> =
        BTreeMap::new();
    for r in rows.iter().filter(|r| {
        matches!(
            r.principal_type.as_str(),
            "k8s_workload" | "ec2_instance" | "aws_service"
        )
    }) {
        let e = wl
            .entry((
                r.principal.clone(),
                r.principal_type.clone(),
                r.cluster.clone(),
            ))
            .or_insert((0, i64::MAX, i64::MIN, String::new(), String::new()));
        e.0 += 1;
        e.1 = e.1.min(r.event_ms);
        e.2 = e.2.max(r.event_ms);
        if e.3.is_empty() {
            e.3 = r.principal_cluster.clone();
        }
        if e.4.is_empty() {
            e.4 = r.principal_pod.clone();
        }
    }
    for ((name, kind, cluster), (n, first, last, from, pod)) in &wl {
        let mut at = String::new();
        if !from.is_empty() {
            at.push_str(&format!(", runs in {from}"));
        }
        if !pod.is_empty() {
            at.push_str(&format!(", pod {pod}"));
        }
        let _ = writeln!(
            o,
            "  {name} [{kind}{at}]: {n} requests on {cluster}, {}-{}",
            hhmm(*first),
            hhmm(*last)
        );
    }

    let dir = root.display();
    let _ = writeln!(
        o,
        "\nThe lake is in {dir}/ (eks_audit/, eks_api_events/, findings/, sts_sessions/, session_index/). Query it with DuckDB"
    );
    let _ = writeln!(o, "(python3 -m pip install duckdb; `bash tests/run.sh` puts it in ~/.cache/eks-audit-lake/venv):");
    let _ = writeln!(o, "  python3 -c \"import duckdb; duckdb.sql(\\\"SELECT principal_type, principal_name, count(*) AS events FROM read_parquet('{dir}/eks_audit/**/*.parquet', hive_partitioning = true) GROUP BY ALL ORDER BY events DESC\\\").show()\"");
    let _ = writeln!(o, "  python3 tests/lakesql.py {dir} schemas/queries/06_aws_auth_changes.sql 2026-11-20 2026-11-20   # a playbook query (Athena SQL), with the attributed view");
    let _ = writeln!(o, "Athena DDL: schemas/athena/ (tables with partition projection, and the eks_audit_attributed view); `auditlake ddl --location s3://bucket/prefix` renders it for your bucket.");
    Ok(o)
}
