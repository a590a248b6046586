//! Detections through the real handler: findings written as Parquet (read back), the
//! `detections` column, alerts at or above the severity, a failed publish failing the
//! batch and its retry writing the same findings, and the shipped pack's own test
//! events (`schemas/rules/tests/`) firing exactly where they should.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use common::*;
use transformer::alerts::{Alert, AlertError, AlertSink, MemoryAlerts};
use transformer::handler::{HandlerConfig, HandlerError};
use transformer::sigma::{RuleSet, Severity};

const ACCOUNT: &str = "111122223333";
const AT: &str = "2024-11-26T13:30:00.000001Z";

fn shipped() -> Arc<RuleSet> {
    Arc::new(RuleSet::from_files(schemas::SHIPPED_RULES.iter().copied()).unwrap())
}

fn config() -> HandlerConfig {
    HandlerConfig {
        rules: shipped(),
        ..HandlerConfig::default()
    }
}

/// dave (an assumed role session) execs into a kube-system pod (WebSocket `get` form).
fn exec_event(audit_id: &str) -> String {
    let mut ev: Value = serde_json::from_str(&aws_event(
        audit_id,
        AT,
        "arn:aws:sts::111122223333:assumed-role/eks-admin/dave",
        Some(assumed_extra(
            ACCOUNT,
            "eks-admin",
            "dave",
            "ASIAEXEC0000000000001",
        )),
    ))
    .unwrap();
    ev["stage"] = json!("ResponseStarted");
    ev["verb"] = json!("get");
    ev["requestURI"] = json!("/api/v1/namespaces/kube-system/pods/coredns-1/exec?command=sh");
    ev["objectRef"] = json!({"resource": "pods", "subresource": "exec", "namespace": "kube-system", "name": "coredns-1", "apiVersion": "v1"});
    ev["responseStatus"] = json!({"metadata": {}, "code": 101});
    ev.to_string()
}

fn quiet_event(audit_id: &str) -> String {
    aws_event(audit_id, AT, "system:kube-scheduler", None)
}

#[tokio::test]
async fn findings_are_written_with_the_event_and_the_detections_column_points_to_them() {
    let (h, lake, _) = handler(config());
    let rec = audit_record(
        "r1",
        ACCOUNT,
        "prod",
        &[exec_event("a-exec"), quiet_event("a-quiet")],
    );
    let out = h.process(&[rec], Some("us-east-1"), now()).await.unwrap();
    let rule = h
        .config
        .rules
        .get("k8s_exec_into_kube_system_pod")
        .unwrap()
        .clone();
    let f = rows(&table(&lake, "findings"));
    let mine: Vec<&Value> = f
        .iter()
        .filter(|r| r["rule_id"] == json!(rule.id))
        .collect();
    assert_eq!(mine.len(), 1, "{f:#?}");
    let r = mine[0];
    assert!(r["_object"]
        .as_str()
        .unwrap()
        .starts_with("findings/dt=2024-11-26/111122223333/part-"));
    assert_eq!(r["audit_id"], "a-exec");
    assert_eq!(r["severity"], "high");
    assert_eq!(r["rule_name"], "k8s_exec_into_kube_system_pod");
    assert_eq!(r["mitre_techniques"], json!(rule.techniques));
    assert_eq!(r["object_subresource"], "exec");
    assert_eq!(
        r["username"],
        "arn:aws:sts::111122223333:assumed-role/eks-admin/dave"
    );
    assert_eq!(r["aws_access_key_id"], "ASIAEXEC0000000000001");
    assert_eq!(
        r["attribution_status"], "pending",
        "no CloudTrail yet: the view fills it"
    );
    assert_eq!(r["cluster"], "prod");
    assert_eq!(r["finding_id"].as_str().unwrap().len(), 32);
    assert_eq!(out.metrics.findings as usize, f.len());
    // the event row names its findings; the quiet one has none
    let e = rows(&table(&lake, "eks_audit"));
    let ids = |a: &str| find(&e, "audit_id", a)["detections"].clone();
    let exec_ids: Vec<String> = serde_json::from_value(ids("a-exec")).unwrap();
    assert!(exec_ids.contains(&rule.id));
    let want: std::collections::BTreeSet<&str> = f
        .iter()
        .filter(|r| r["audit_id"] == "a-exec")
        .map(|r| r["rule_id"].as_str().unwrap())
        .collect();
    assert_eq!(want, exec_ids.iter().map(String::as_str).collect());
    assert_eq!(ids("a-quiet"), json!([]));
}

#[tokio::test]
async fn alerts_carry_findings_at_or_above_the_severity_person_first() {
    let (h, _lake, _) = handler(HandlerConfig {
        alert_severity: Severity::High,
        ..config()
    });
    let h = h.with_alerts(MemoryAlerts::default());
    let rec = audit_record("r1", ACCOUNT, "prod", &[exec_event("a-exec")]);
    let out = h.process(&[rec], Some("us-east-1"), now()).await.unwrap();
    let alerts = h.alerts().alerts();
    assert!(!alerts.is_empty());
    assert_eq!(out.metrics.alerts_published as usize, alerts.len());
    for a in &alerts {
        assert!(a.severity >= Severity::High);
        assert!(a.detail.starts_with("{\"principal_name\":"), "{}", a.detail);
        let d: Value = serde_json::from_str(&a.detail).unwrap();
        assert_eq!(d["finding_id"], json!(a.finding_id));
        assert_eq!(d["cluster"], "prod");
        assert!(d["summary"].as_str().unwrap().contains("in cluster prod"));
    }
    // lower threshold: more alerts, never fewer
    let (h2, _, _) = handler(HandlerConfig {
        alert_severity: Severity::Informational,
        ..config()
    });
    let h2 = h2.with_alerts(MemoryAlerts::default());
    let rec = audit_record("r1", ACCOUNT, "prod", &[exec_event("a-exec")]);
    let out2 = h2.process(&[rec], Some("us-east-1"), now()).await.unwrap();
    assert_eq!(out2.metrics.alerts_published, out2.metrics.findings);
    assert!(h2.alerts().alerts().len() >= alerts.len());
}

/// Fails the first `n` publishes.
struct Flaky {
    fail: AtomicUsize,
    ok: MemoryAlerts,
}

impl AlertSink for Flaky {
    async fn publish(&self, batch: u64, alerts: &[Alert]) -> Result<(), AlertError> {
        if self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(AlertError::Publish {
                target: "flaky".into(),
                count: alerts.len(),
                message: "ThrottlingException".into(),
                retryable: true,
                source: None,
            });
        }
        self.ok.publish(batch, alerts).await
    }
    fn target(&self) -> String {
        "flaky".into()
    }
}

#[tokio::test]
async fn a_failed_publish_fails_the_batch_and_the_retry_rewrites_the_same_findings() {
    let (h, lake, _) = handler(config());
    let h = h.with_alerts(Flaky {
        fail: AtomicUsize::new(1),
        ok: MemoryAlerts::default(),
    });
    let rec = audit_record("r1", ACCOUNT, "prod", &[exec_event("a-exec")]);
    let err = h
        .process(std::slice::from_ref(&rec), Some("us-east-1"), now())
        .await
        .unwrap_err();
    assert!(matches!(err, HandlerError::Alert(_)), "{err}");
    assert!(err.retryable());
    let first: Vec<String> = lake.keys();
    let ids = |l: &transformer::lake::MemoryStore| {
        let mut v: Vec<String> = rows(&table(l, "findings"))
            .iter()
            .map(|r| r["finding_id"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    let before = ids(&lake);
    assert!(
        !before.is_empty(),
        "findings are in the lake before the alert is sent"
    );
    h.process(&[rec], Some("us-east-1"), now() + 60_000)
        .await
        .unwrap();
    assert_eq!(lake.keys(), first, "the retry wrote the same objects");
    assert_eq!(ids(&lake), before, "and the same finding ids");
    assert!(!h.alerts().ok.alerts().is_empty());
}

/// Every shipped rule's positive events raise its finding and its negative events do
/// not, through the handler (the Python system test does the same with DuckDB).
#[tokio::test]
async fn the_shipped_packs_test_events_fire_exactly_where_they_should() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/rules/tests");
    // a test file may set placeholders (`%org_accounts%`) its rule needs
    let mut placeholders = transformer::sigma::Placeholders::default();
    for (file, _) in schemas::SHIPPED_RULES {
        let stem = file.trim_end_matches(".yml");
        let t: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{stem}.json"))).unwrap(),
        )
        .unwrap();
        for (name, vs) in t["placeholders"].as_object().into_iter().flatten() {
            let vs = vs.as_array().unwrap().iter();
            placeholders =
                placeholders.with(name, vs.map(|v| v.as_str().unwrap().to_owned()).collect());
        }
    }
    let rules = Arc::new(
        RuleSet::from_files_with(schemas::SHIPPED_RULES.iter().copied(), &placeholders).unwrap(),
    );
    assert!(rules.len() >= 30, "{} rules", rules.len());
    assert!(rules.rules.iter().all(|r| r.off.is_none()));
    let mut records = Vec::new();
    let mut expect: Vec<(String, String, bool)> = Vec::new(); // (rule id, event id, fires)
    for (i, r) in rules.rules.iter().enumerate() {
        let stem = r.file.trim_end_matches(".yml");
        let text = std::fs::read_to_string(dir.join(format!("{stem}.json")))
            .unwrap_or_else(|e| panic!("{stem}: no test events: {e}"));
        let t: Value = serde_json::from_str(&text).unwrap();
        let trail = r.logsource == transformer::sigma::LogSource::CloudTrail;
        let mut evs_all = Vec::new();
        for (kind, fires) in [("positive", true), ("negative", false)] {
            let evs = t[kind]
                .as_array()
                .unwrap_or_else(|| panic!("{stem}: no {kind} events"));
            assert!(!evs.is_empty(), "{stem}: no {kind} events");
            for ev in evs {
                // a finding's audit_id is the CloudTrail eventID for an API call
                let id = ev[if trail { "eventID" } else { "auditID" }]
                    .as_str()
                    .unwrap()
                    .to_owned();
                expect.push((r.id.clone(), id, fires));
                evs_all.push(ev.clone());
            }
        }
        records.push(if trail {
            trail_record(&format!("r{i}"), &evs_all)
        } else {
            let msgs: Vec<String> = evs_all.iter().map(|e| e.to_string()).collect();
            audit_record(&format!("r{i}"), ACCOUNT, "rules", &msgs)
        });
    }
    let (h, lake, _) = handler(HandlerConfig {
        rules: rules.clone(),
        ..HandlerConfig::default()
    });
    h.process(&records, Some("us-east-1"), now()).await.unwrap();
    let found: std::collections::HashSet<(String, String)> = rows(&table(&lake, "findings"))
        .iter()
        .map(|r| {
            (
                r["rule_id"].as_str().unwrap().to_owned(),
                r["audit_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut wrong = Vec::new();
    for (rule, audit, fires) in &expect {
        if found.contains(&(rule.clone(), audit.clone())) != *fires {
            let name = &rules.get(rule).unwrap().name;
            wrong.push(format!(
                "{name}: event {audit} should {}fire",
                if *fires { "" } else { "not " }
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The resource/verb index only skips rules that cannot match: on every pack event,
/// `detect` finds exactly what evaluating every rule finds.
#[test]
fn the_rule_index_skips_only_rules_that_cannot_match() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/rules/tests");
    let rules = shipped();
    let indexed = rules.rules.iter().filter(|r| r.resources.is_some()).count();
    assert!(
        indexed * 2 > rules.len(),
        "most rules name their resources: {indexed}"
    );
    let mut msgs = Vec::new();
    for f in std::fs::read_dir(&dir).unwrap() {
        let t: Value =
            serde_json::from_str(&std::fs::read_to_string(f.unwrap().path()).unwrap()).unwrap();
        for k in ["positive", "negative"] {
            for ev in t[k].as_array().unwrap() {
                msgs.push(ev.to_string());
            }
        }
    }
    let env = cwl_envelope(
        ACCOUNT,
        "/aws/eks/rules/cluster",
        "kube-apiserver-audit-1",
        &msgs
            .iter()
            .enumerate()
            .map(|(i, m)| json!({"id": i.to_string(), "timestamp": 0, "message": m}))
            .collect::<Vec<_>>(),
    );
    let envs = transformer::decode::envelopes(env.as_bytes()).unwrap();
    let x = transformer::extract::extract(&envs, transformer::extract::Context::new(None));
    let d = transformer::detect::detect(&rules, &x.rows);
    let mut brute = Vec::new();
    for (i, row) in x.rows.iter().enumerate() {
        let ev = transformer::detect::RowEvent::new(row, &rules.bodies);
        for (k, r) in rules.rules.iter().enumerate() {
            let audit_rule = r.logsource == transformer::sigma::LogSource::KubernetesAudit;
            if audit_rule && r.off.is_none() && r.matches(&ev) {
                brute.push((i as u32, k as u16));
            }
        }
    }
    let got: Vec<(u32, u16)> = d.hits.iter().map(|h| (h.row, h.rule)).collect();
    assert!(!got.is_empty());
    assert_eq!(got, brute);
}

/// A member account that sends thousands of matching events cannot flood the alert
/// topic or hold every batch in `PutEvents`: at most MAX_ALERTS_PER_ACCOUNT alerts per
/// account per batch plus one summary; every finding is still written; the honest
/// account's alert is sent.
#[tokio::test]
async fn a_flooding_account_is_capped_and_summarised_the_honest_one_is_not() {
    use transformer::alerts::MAX_ALERTS_PER_ACCOUNT;
    let (h, lake, _) = handler(config());
    let h = h.with_alerts(MemoryAlerts::default());
    let flood: Vec<String> = (0..MAX_ALERTS_PER_ACCOUNT + 50)
        .map(|i| exec_event(&format!("f{i}")))
        .collect();
    let honest = audit_record("r2", "444455556666", "prod", &[exec_event("honest")]);
    let out = h
        .process(
            &[audit_record("r1", "666677778888", "prod", &flood), honest],
            Some("us-east-1"),
            now(),
        )
        .await
        .unwrap();
    let alerts = h.alerts().alerts();
    let of = |acct: &str| {
        alerts
            .iter()
            .filter(|a| a.detail.contains(&format!("\"account_id\":\"{acct}\"")))
            .count()
    };
    assert_eq!(
        of("666677778888"),
        MAX_ALERTS_PER_ACCOUNT + 1,
        "the cap and one summary"
    );
    let summary = alerts
        .iter()
        .find(|a| a.detail.contains("Alert limit reached"))
        .unwrap();
    let d: Value = serde_json::from_str(&summary.detail).unwrap();
    assert!(d["findings_not_sent"].as_u64().unwrap() >= 50);
    assert!(
        of("444455556666") >= 1,
        "the honest account's alert is sent"
    );
    let written = rows(&table(&lake, "findings")).len() as u64;
    assert_eq!(written, out.metrics.findings);
    assert!(
        written as usize > MAX_ALERTS_PER_ACCOUNT + 50,
        "every finding is written"
    );
}
