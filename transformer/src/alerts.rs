//! Alerts: findings at or above a severity, sent on as they are found.
//!
//! [`build`] is a plain function (findings -> alert documents, the person first);
//! [`AlertSink`] is the capability that sends them: memory (tests) and a local
//! directory here, EventBridge `PutEvents` in the `auditlake` crate. A failed send
//! fails the invocation like a failed write: Firehose retries the batch, the findings
//! are rewritten under the same keys and ids, and the alerts are sent again (consumers
//! deduplicate on `finding_id`).
//! Docs: <https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEvents.html>

use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::Serialize;

use resolver::Attribution;

use crate::finding::Finding;
use crate::sigma::Severity;

/// `Source` of every alert event (EventBridge reserves `aws.*`).
pub const SOURCE: &str = "eks-audit-lake";
/// `DetailType` of every alert event (for findings over EKS API calls too: one rule on
/// the bus routes them all).
pub const DETAIL_TYPE: &str = "EKS Audit Finding";
/// Longest text field of an alert (request URIs and user agents are client-chosen):
/// the whole finding is in the lake; an alert must stay far below EventBridge's 256 KB.
pub const MAX_FIELD: usize = 2048;
/// Alerts one account may raise per batch. A member account controls its events: one
/// that sends 30 000 events matching a rule must not make every batch (and so the
/// honest accounts' records in it) spend its time in `PutEvents` or flood the topic.
/// Past the cap, one summary alert per account says how many findings were not sent;
/// every finding is still in the `findings` table.
pub const MAX_ALERTS_PER_ACCOUNT: usize = 100;

/// One alert: the finding's id and its columns as the event's `Detail` (JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub finding_id: String,
    pub severity: Severity,
    /// The audit event's time (the EventBridge event's `Time`).
    pub event_ms: i64,
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("publishing {count} alert(s) to {target}: {message}")]
    Publish {
        target: String,
        count: usize,
        message: String,
        /// Throttling, 5xx, network: retry. A missing bus, access denied: do not.
        retryable: bool,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl AlertError {
    pub fn retryable(&self) -> bool {
        match self {
            Self::Publish { retryable, .. } => *retryable,
        }
    }
}

/// Sends a batch's alerts. `batch` identifies the Firehose batch (the object keys'
/// fingerprint): a retried batch sends under the same id.
pub trait AlertSink: Send + Sync {
    fn publish(
        &self,
        batch: u64,
        alerts: &[Alert],
    ) -> impl Future<Output = Result<(), AlertError>> + Send;
    /// Where alerts go, for logs and errors.
    fn target(&self) -> String;
    /// Whether alerts go anywhere (none are built for a sink that sends nothing).
    fn enabled(&self) -> bool {
        true
    }
}

/// No alerts (no bus configured).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoAlerts;

impl AlertSink for NoAlerts {
    async fn publish(&self, _batch: u64, _alerts: &[Alert]) -> Result<(), AlertError> {
        Ok(())
    }
    fn target(&self) -> String {
        "nowhere".into()
    }
    fn enabled(&self) -> bool {
        false
    }
}

/// Alerts kept in memory (tests).
#[derive(Debug, Default)]
pub struct MemoryAlerts {
    pub sent: Mutex<Vec<(u64, Alert)>>,
}

impl MemoryAlerts {
    pub fn alerts(&self) -> Vec<Alert> {
        self.sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(_, a)| a.clone())
            .collect()
    }
}

impl AlertSink for MemoryAlerts {
    async fn publish(&self, batch: u64, alerts: &[Alert]) -> Result<(), AlertError> {
        self.sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(alerts.iter().map(|a| (batch, a.clone())));
        Ok(())
    }
    fn target(&self) -> String {
        "memory".into()
    }
}

/// Alerts as JSON Lines files in a local directory, one file per batch
/// (`alerts-<batch>.jsonl`, rewritten whole by a retry): each line is the event
/// EventBridge would carry (`source`, `detail-type`, `time`, `detail`).
#[derive(Debug, Clone)]
pub struct DirAlerts {
    pub dir: PathBuf,
}

impl DirAlerts {
    pub fn file_of(&self, batch: u64) -> PathBuf {
        self.dir.join(format!("alerts-{batch:016x}.jsonl"))
    }
}

/// One alert as an EventBridge event document.
pub fn event_json(a: &Alert) -> String {
    format!(
        "{{\"source\":{},\"detail-type\":{},\"time\":{},\"detail\":{}}}",
        serde_json::Value::from(SOURCE),
        serde_json::Value::from(DETAIL_TYPE),
        serde_json::Value::from(resolver::time::iso_ms(a.event_ms)),
        a.detail
    )
}

impl AlertSink for DirAlerts {
    async fn publish(&self, batch: u64, alerts: &[Alert]) -> Result<(), AlertError> {
        if alerts.is_empty() {
            return Ok(());
        }
        let mut body = String::new();
        for a in alerts {
            body.push_str(&event_json(a));
            body.push('\n');
        }
        let path = self.file_of(batch);
        let err = |e: std::io::Error| AlertError::Publish {
            target: path.display().to_string(),
            count: alerts.len(),
            message: e.to_string(),
            retryable: true,
            source: Some(Box::new(e)),
        };
        std::fs::create_dir_all(&self.dir).map_err(err)?;
        let tmp = path.with_extension("jsonl.tmp");
        std::fs::write(&tmp, body).map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)
    }
    fn target(&self) -> String {
        self.dir.display().to_string()
    }
}

/// An alert's `detail`: every `findings` column, the person first.
#[derive(Serialize)]
struct Detail<'a> {
    principal_name: Option<&'a str>,
    principal_type: &'a str,
    principal_arn: Option<&'a str>,
    principal_account_id: Option<&'a str>,
    principal_user_id: Option<&'a str>,
    principal_cluster: Option<&'a str>,
    principal_pod: Option<&'a str>,
    source_identity: Option<&'a str>,
    role_chain: &'a [std::borrow::Cow<'a, str>],
    attribution_method: &'a str,
    attribution_status: &'a str,
    summary: String,
    rule_title: &'a str,
    severity: &'a str,
    rule_id: &'a str,
    rule_name: &'a str,
    mitre_techniques: &'a [String],
    finding_id: &'a str,
    event_time: String,
    account_id: &'a str,
    region: Option<&'a str>,
    cluster: Option<&'a str>,
    source_table: &'a str,
    event_name: Option<&'a str>,
    target_principal_arn: Option<&'a str>,
    audit_id: Option<&'a str>,
    stage: Option<&'a str>,
    verb: Option<&'a str>,
    request_uri: Option<&'a str>,
    object_resource: Option<&'a str>,
    object_subresource: Option<&'a str>,
    object_namespace: Option<&'a str>,
    object_name: Option<&'a str>,
    response_code: Option<i32>,
    source_ip: Option<&'a str>,
    user_agent: Option<&'a str>,
    username: Option<&'a str>,
    impersonated_username: Option<&'a str>,
    aws_access_key_id: Option<&'a str>,
    aws_arn: Option<&'a str>,
    aws_role_arn: Option<&'a str>,
    aws_session_name: Option<&'a str>,
    log_group: &'a str,
    log_stream: &'a str,
    cwl_event_id: &'a str,
}

/// `s` cut to at most [`MAX_FIELD`] bytes on a character boundary.
fn cap(s: &str) -> &str {
    if s.len() <= MAX_FIELD {
        return s;
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn capped(s: Option<&str>) -> Option<&str> {
    s.map(cap)
}

/// Who did it, in one line: the person when attribution found them, else the
/// Kubernetes user (and why the person is not known yet).
pub fn who<'x>(a: &'x Attribution<'_>, username: Option<&'x str>) -> String {
    match (&a.principal_name, username) {
        (Some(p), _) => format!("{p} ({})", a.principal_type.as_str()),
        (None, Some(u)) => format!("{u} (person {})", a.status.as_str()),
        (None, None) => "an unknown user".into(),
    }
}

/// The alerts of `findings` whose rule is at or above `min`, in `findings` order.
pub fn build(findings: &[Finding<'_>], min: Severity) -> Vec<Alert> {
    let mut out = Vec::new();
    // per account: alerts sent, findings held back, their highest severity, first time
    let mut per: std::collections::BTreeMap<&str, (usize, usize, Severity, i64)> =
        Default::default();
    for f in findings {
        let rule = f.rule;
        if rule.severity < min {
            continue;
        }
        let e = per
            .entry(f.account_id)
            .or_insert((0, 0, Severity::Informational, i64::MAX));
        if e.0 >= MAX_ALERTS_PER_ACCOUNT {
            e.1 += 1;
            e.2 = e.2.max(rule.severity);
            e.3 = e.3.min(f.event_ms);
            continue;
        }
        e.0 += 1;
        let a = f.attribution;
        let what = match f.event_name {
            // an EKS API call: what it was and whom it was for
            Some(call) => match f.target_principal_arn {
                Some(t) => format!(" ({call} for {t})"),
                None => format!(" ({call})"),
            },
            None => String::new(),
        };
        let d = Detail {
            principal_name: a.principal_name.as_deref(),
            principal_type: a.principal_type.as_str(),
            principal_arn: a.principal_arn.as_deref(),
            principal_account_id: a.principal_account_id.as_deref(),
            principal_user_id: a.principal_user_id.as_deref(),
            principal_cluster: a.principal_cluster.as_deref(),
            principal_pod: a.principal_pod.as_deref(),
            source_identity: a.source_identity.as_deref(),
            role_chain: &a.role_chain,
            attribution_method: a.method.as_str(),
            attribution_status: a.status.as_str(),
            summary: format!(
                "{}: {}{} in cluster {} ({})",
                rule.title,
                cap(&who(a, f.username)),
                cap(&what),
                f.cluster.unwrap_or("?"),
                f.account_id
            ),
            rule_title: &rule.title,
            severity: rule.severity.as_str(),
            rule_id: &rule.id,
            rule_name: &rule.name,
            mitre_techniques: &rule.techniques,
            finding_id: &f.finding_id,
            event_time: resolver::time::iso_ms(f.event_ms),
            account_id: f.account_id,
            region: f.region,
            cluster: f.cluster,
            source_table: f.source_table.as_str(),
            event_name: f.event_name,
            target_principal_arn: capped(f.target_principal_arn),
            audit_id: capped(f.audit_id),
            stage: capped(f.stage),
            verb: capped(f.verb),
            request_uri: capped(f.request_uri),
            object_resource: capped(f.object_resource),
            object_subresource: capped(f.object_subresource),
            object_namespace: capped(f.object_namespace),
            object_name: capped(f.object_name),
            response_code: f.response_code,
            source_ip: capped(f.source_ip.as_deref()),
            user_agent: capped(f.user_agent),
            username: capped(f.username),
            impersonated_username: capped(f.impersonated_username),
            aws_access_key_id: capped(f.aws_access_key_id),
            aws_arn: capped(f.aws_arn),
            aws_role_arn: capped(f.aws_role_arn),
            aws_session_name: capped(f.aws_session_name),
            log_group: cap(f.log_group),
            log_stream: cap(f.log_stream),
            cwl_event_id: cap(f.cwl_event_id),
        };
        out.push(Alert {
            detail: serde_json::to_string(&d).unwrap_or_else(|_| "{}".into()),
            finding_id: f.finding_id.clone(),
            severity: rule.severity,
            event_ms: f.event_ms,
        });
    }
    for (acct, (_, held, severity, first_ms)) in per {
        if held == 0 {
            continue;
        }
        let detail = serde_json::json!({
            "principal_name": null,
            "summary": format!("{held} more findings in account {acct} in this batch were not sent as alerts (at most {MAX_ALERTS_PER_ACCOUNT} per account per batch): query the findings table"),
            "rule_title": "Alert limit reached",
            "severity": severity.as_str(),
            "account_id": acct,
            "findings_not_sent": held,
            "event_time": resolver::time::iso_ms(first_ms),
        });
        out.push(Alert {
            finding_id: format!("limit-{acct}-{first_ms}"),
            severity,
            event_ms: first_ms,
            detail: detail.to_string(),
        });
    }
    out
}

/// The contract every [`AlertSink`] passes: what was published, and only that, can be
/// read back, whole, once per alert; an empty batch publishes nothing; a retried batch
/// does not leave a second copy where the sink can prevent it. `read` returns what the
/// sink holds (or delivered) since it was created.
pub async fn contract<A: AlertSink>(sink: &A, read: impl Fn() -> Vec<String>) {
    let alert = |i: i64| Alert {
        finding_id: format!("{i:032x}"),
        severity: Severity::High,
        event_ms: 1_764_000_000_000 + i,
        detail: format!(
            "{{\"principal_name\":\"dave@example.com\",\"n\":{i},\"uri\":\"/a\\\"b\"}}"
        ),
    };
    sink.publish(1, &[]).await.expect("empty batch");
    assert!(
        read().is_empty(),
        "{}: an empty batch sent something",
        sink.target()
    );
    let batch: Vec<Alert> = (0..23).map(alert).collect();
    sink.publish(7, &batch).await.expect("publish");
    // compared as JSON: a sink may re-serialise the detail
    let parsed = |v: Vec<String>| {
        let mut v: Vec<String> = v
            .iter()
            .map(|d| {
                serde_json::from_str::<serde_json::Value>(d)
                    .unwrap_or_else(|e| panic!("{}: detail is not JSON ({e}): {d}", sink.target()))
                    .to_string()
            })
            .collect();
        v.sort();
        v
    };
    let got = parsed(read());
    let want = parsed(batch.iter().map(|a| a.detail.clone()).collect());
    assert_eq!(got, want, "{}: what was published", sink.target());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block<F: Future>(f: F) -> F::Output {
        futures::executor::block_on(f)
    }

    #[test]
    fn memory_sink_passes_the_contract() {
        let m = MemoryAlerts::default();
        block(contract(&m, || {
            m.alerts().into_iter().map(|a| a.detail).collect()
        }));
    }

    #[test]
    fn directory_sink_passes_the_contract_and_a_retry_overwrites() {
        let dir = std::env::temp_dir().join(format!("alerts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let d = DirAlerts { dir: dir.clone() };
        let read = || {
            let mut v = Vec::new();
            for f in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                for line in std::fs::read_to_string(f.path()).unwrap().lines() {
                    let ev: serde_json::Value = serde_json::from_str(line).unwrap();
                    assert_eq!(ev["source"], SOURCE);
                    assert_eq!(ev["detail-type"], DETAIL_TYPE);
                    v.push(ev["detail"].to_string());
                }
            }
            v
        };
        block(contract(&d, read));
        let before = read().len();
        let again: Vec<Alert> = (0..23)
            .map(|i| Alert {
                finding_id: format!("{i:032x}"),
                severity: Severity::High,
                event_ms: 1_764_000_000_000 + i,
                detail: format!(
                    "{{\"principal_name\":\"dave@example.com\",\"n\":{i},\"uri\":\"/a\\\"b\"}}"
                ),
            })
            .collect();
        block(d.publish(7, &again)).unwrap();
        assert_eq!(read().len(), before, "the retry replaced its batch's file");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn cap_cuts_on_a_character_boundary() {
        let s = "é".repeat(MAX_FIELD);
        let c = cap(&s);
        assert!(c.len() <= MAX_FIELD && c.len() >= MAX_FIELD - 1);
        assert!(s.starts_with(c));
    }
}
