//! Per-invocation counts, printed as one CloudWatch Embedded Metric Format line.
//! Docs: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>

use std::ops::AddAssign;

use serde::Serialize;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Metrics {
    pub records_in: u64,
    pub records_ok: u64,
    pub records_dropped: u64,
    pub records_failed: u64,
    pub bytes_in: u64,
    pub bytes_decompressed: u64,
    /// CloudWatch log events seen in data messages.
    pub log_events: u64,
    /// `eks_audit` rows written (all parse statuses).
    pub events_written: u64,
    pub truncated: u64,
    pub invalid: u64,
    /// Log events that are not rows: non-audit streams of cluster log groups, CloudTrail
    /// events other than STS credential calls, other log groups.
    pub skipped: u64,
    pub sts_sessions: u64,
    /// CloudTrail-shaped events from log groups that are not trusted trails: refused.
    pub sts_untrusted: u64,
    /// Messages of a trusted trail that are not CloudTrail JSON (or malformed STS).
    pub sts_invalid: u64,
    /// STS records naming an access key already indexed by a different record: not used.
    pub sts_conflicts: u64,
    /// EKS API calls of trusted trails written to `eks_api_events`.
    pub eks_api_events: u64,
    /// `eks.amazonaws.com` records of a trusted trail without an id, name or time (kept
    /// in the raw archive only).
    pub eks_api_invalid: u64,
    pub attribution_resolved: u64,
    pub attribution_pending: u64,
    pub attribution_ambiguous: u64,
    /// Keys whose session is of another role than the event names: no principal.
    pub attribution_conflict: u64,
    pub attribution_not_applicable: u64,
    pub session_lookups: u64,
    /// Lookups not made because the batch's budget was spent (rows stay `pending`).
    pub session_lookups_over_budget: u64,
    /// Records failed back to Firehose because the batch's decompression or partition
    /// budget was spent (kept in errors/, replayable with `auditlake ingest`).
    pub records_over_budget: u64,
    pub objects_written: u64,
    pub bytes_written: u64,
    /// (rule, event) matches written to `findings`.
    pub findings: u64,
    /// Findings at or above the alert severity, published.
    pub alerts_published: u64,
}

impl AddAssign for Metrics {
    fn add_assign(&mut self, o: Self) {
        self.records_in += o.records_in;
        self.records_ok += o.records_ok;
        self.records_dropped += o.records_dropped;
        self.records_failed += o.records_failed;
        self.bytes_in += o.bytes_in;
        self.bytes_decompressed += o.bytes_decompressed;
        self.log_events += o.log_events;
        self.events_written += o.events_written;
        self.truncated += o.truncated;
        self.invalid += o.invalid;
        self.skipped += o.skipped;
        self.sts_sessions += o.sts_sessions;
        self.sts_untrusted += o.sts_untrusted;
        self.sts_invalid += o.sts_invalid;
        self.sts_conflicts += o.sts_conflicts;
        self.eks_api_events += o.eks_api_events;
        self.eks_api_invalid += o.eks_api_invalid;
        self.attribution_resolved += o.attribution_resolved;
        self.attribution_pending += o.attribution_pending;
        self.attribution_ambiguous += o.attribution_ambiguous;
        self.attribution_conflict += o.attribution_conflict;
        self.attribution_not_applicable += o.attribution_not_applicable;
        self.session_lookups += o.session_lookups;
        self.session_lookups_over_budget += o.session_lookups_over_budget;
        self.records_over_budget += o.records_over_budget;
        self.objects_written += o.objects_written;
        self.bytes_written += o.bytes_written;
        self.findings += o.findings;
        self.alerts_published += o.alerts_published;
    }
}

pub const NAMESPACE: &str = "EksAuditLake";

impl Metrics {
    /// The input counts of a batch of records of these sizes.
    pub fn for_input(sizes: impl ExactSizeIterator<Item = usize>) -> Self {
        let records_in = sizes.len() as u64;
        Self {
            records_in,
            bytes_in: sizes.map(|n| n as u64).sum(),
            ..Self::default()
        }
    }

    /// One EMF JSON line: the counts as top-level members plus the `_aws` metadata that
    /// makes CloudWatch extract them as metrics.
    pub fn emf_line(&self, timestamp_ms: i64) -> String {
        let fields = serde_json::to_value(self).unwrap_or_default();
        let names: Vec<serde_json::Value> = fields
            .as_object()
            .map(|m| {
                m.keys()
                    .map(|k| serde_json::json!({"Name": k, "Unit": if k.starts_with("bytes") {"Bytes"} else {"Count"}}))
                    .collect()
            })
            .unwrap_or_default();
        let mut doc = serde_json::json!({
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [[]],
                    "Metrics": names,
                }]
            },
            "message": "auditlake batch",
        });
        if let (Some(d), Some(f)) = (doc.as_object_mut(), fields.as_object()) {
            for (k, v) in f {
                d.insert(k.clone(), v.clone());
            }
        }
        doc.to_string()
    }
}
