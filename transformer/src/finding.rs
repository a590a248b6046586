//! Stage 4c, findings: each (rule, event) hit -> one finding, from an `eks_audit` row or
//! an `eks_api_events` row, with the person behind the event.
//!
//! A finding is built once per hit, here; the `findings` encoder and the alerts read
//! the same values (its id and the source IP are computed once, not per consumer).
//! Both sources fill the same columns: an EKS API call has no verb or object, its
//! CloudTrail `eventName` and target principal take their place.

use std::borrow::Cow;

use resolver::Attribution;
use serde_json::value::RawValue;

use crate::detect::Hit;
use crate::extract::{ApiRow, AuditRow};
use crate::sigma::{Rule, RuleSet};
use crate::text::Text;

/// Where the event of a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceTable {
    EksAudit,
    EksApiEvents,
}

impl SourceTable {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EksAudit => "eks_audit",
            Self::EksApiEvents => "eks_api_events",
        }
    }
}

/// One finding: the rule, the event's identifying columns, and its attribution.
#[derive(Debug, Clone)]
pub struct Finding<'x> {
    pub finding_id: String,
    pub rule: &'x Rule,
    pub source_table: SourceTable,
    pub event_ms: i64,
    pub account_id: &'x str,
    /// `account_id`, or `_invalid_`: the folder of the finding's object.
    pub account_folder: &'x str,
    pub region: Option<&'x str>,
    pub cluster: Option<&'x str>,
    pub log_group: &'x str,
    pub log_stream: &'x str,
    pub cwl_event_id: &'x str,
    pub event_name: Option<&'x str>,
    pub target_principal_arn: Option<&'x str>,
    pub audit_id: Option<&'x str>,
    pub stage: Option<&'x str>,
    pub verb: Option<&'x str>,
    pub request_uri: Option<&'x str>,
    pub object_resource: Option<&'x str>,
    pub object_subresource: Option<&'x str>,
    pub object_namespace: Option<&'x str>,
    pub object_name: Option<&'x str>,
    pub response_code: Option<i32>,
    pub authz_decision: Option<Text<'x>>,
    pub source_ip: Option<Text<'x>>,
    pub user_agent: Option<&'x str>,
    pub username: Option<&'x str>,
    /// `user.groups` as raw JSON (the encoder appends its strings).
    pub user_groups: Option<&'x RawValue>,
    pub impersonated_username: Option<&'x str>,
    pub aws_access_key_id: Option<&'x str>,
    pub aws_arn: Option<&'x str>,
    pub aws_role_arn: Option<&'x str>,
    pub aws_session_name: Option<&'x str>,
    pub attribution: &'x Attribution<'x>,
}

/// `finding_id`: the same rule on the same CloudWatch event is the same finding, so a
/// retried batch (and a re-delivered event) writes the same id.
pub fn finding_id(rule_id: &str, log_group: &str, log_stream: &str, cwl_id: &str) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for part in [rule_id, log_group, log_stream, cwl_id] {
        h.update(part.as_bytes());
        h.update(b"\n");
    }
    format!("{:032x}", h.digest128())
}

/// The findings of audit rows.
pub fn of_audit<'x, A: AsRef<Attribution<'x>>>(
    rows: &'x [AuditRow<'x>],
    attributions: &'x [A],
    rules: &'x RuleSet,
    hits: &[Hit],
) -> Vec<Finding<'x>> {
    hits.iter()
        .map(|h| {
            let r = &rows[h.row as usize];
            let rule = &rules.rules[h.rule as usize];
            let e = &r.event;
            let o = e.object_ref.as_ref();
            let user = e.user.as_ref();
            let x = &r.extra;
            Finding {
                finding_id: finding_id(&rule.id, r.stamp.log_group, r.stamp.log_stream, r.cwl_id),
                rule,
                source_table: SourceTable::EksAudit,
                event_ms: r.event_ms,
                account_id: r.stamp.account_id,
                account_folder: r.stamp.account_folder,
                region: r.region,
                cluster: Some(r.stamp.cluster),
                log_group: r.stamp.log_group,
                log_stream: r.stamp.log_stream,
                cwl_event_id: r.cwl_id,
                event_name: None,
                target_principal_arn: None,
                audit_id: e.audit_id.as_deref(),
                stage: e.stage.as_deref(),
                verb: e.verb.as_deref(),
                request_uri: e.request_uri.as_deref(),
                object_resource: o.and_then(|o| o.resource.as_deref()),
                object_subresource: o.and_then(|o| o.subresource.as_deref()),
                object_namespace: o.and_then(|o| o.namespace.as_deref()),
                object_name: o.and_then(|o| o.name.as_deref()),
                response_code: e.response_status.as_ref().and_then(|s| s.code),
                authz_decision: crate::encode::authz_decision(r),
                source_ip: crate::encode::last_source_ip(r),
                user_agent: e.user_agent.as_deref(),
                username: user.and_then(|u| u.username.as_deref()),
                user_groups: user.and_then(|u| u.groups),
                impersonated_username: e
                    .impersonated_user
                    .as_ref()
                    .and_then(|u| u.username.as_deref()),
                aws_access_key_id: x.access_key_id,
                aws_arn: x.arn,
                aws_role_arn: x.canonical_arn,
                aws_session_name: x.session_name,
                attribution: attributions[h.row as usize].as_ref(),
            }
        })
        .collect()
}

/// The findings of EKS API calls (`hits[].row` indexes `rows`).
pub fn of_api<'x, A: AsRef<Attribution<'x>>>(
    rows: &'x [ApiRow<'x>],
    attributions: &'x [A],
    rules: &'x RuleSet,
    hits: &[Hit],
) -> Vec<Finding<'x>> {
    hits.iter()
        .map(|h| {
            let r = &rows[h.row as usize];
            let rule = &rules.rules[h.rule as usize];
            let e = &r.event;
            let c = &e.caller;
            Finding {
                finding_id: finding_id(&rule.id, r.log_group, r.log_stream, r.cwl_id),
                rule,
                source_table: SourceTable::EksApiEvents,
                event_ms: e.event_ms,
                account_id: e.account_id.as_deref().unwrap_or_default(),
                account_folder: e.account_folder(),
                region: e.region.as_deref(),
                cluster: e.cluster.as_deref(),
                log_group: r.log_group,
                log_stream: r.log_stream,
                cwl_event_id: r.cwl_id,
                event_name: Some(&e.event_name),
                target_principal_arn: e.target.principal_arn.as_deref(),
                audit_id: Some(&e.event_id),
                stage: None,
                verb: None,
                request_uri: None,
                object_resource: None,
                object_subresource: None,
                object_namespace: None,
                object_name: None,
                response_code: None,
                authz_decision: None,
                source_ip: e.source_ip.as_deref().map(|s| Text(Cow::Borrowed(s))),
                user_agent: e.user_agent.as_deref(),
                username: c.arn.as_deref(),
                user_groups: None,
                impersonated_username: None,
                aws_access_key_id: c.access_key_id.as_deref(),
                aws_arn: c.arn.as_deref(),
                aws_role_arn: c.role_arn.as_deref(),
                aws_session_name: c.session_name.as_deref(),
                attribution: attributions[h.row as usize].as_ref(),
            }
        })
        .collect()
}
