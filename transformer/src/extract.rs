//! Stage 2, extract: a record's envelopes -> `eks_audit` rows (stamped, parsed,
//! classified), CloudTrail STS records and EKS API calls (`eks_api_events` rows).
//!
//! Every log event of a cluster log group's audit stream becomes a row, whatever its
//! message holds (unparseable messages are kept as `truncated`/`invalid` rows). The
//! stamps come from the envelope: `owner` is written by CloudWatch Logs and cannot be
//! forged, the log group (so the cluster name) can. Account and cluster are validated
//! before they may become folders of an object key.
//! Docs: <https://docs.aws.amazon.com/eks/latest/userguide/control-plane-logs.html>

use std::borrow::Cow;

use resolver::awsauth::AwsAuth;
use resolver::cloudtrail::{self, StsSession};
use resolver::identity::{AwsExtra, Identity};

use crate::audit::{self, ParseStatus};
use crate::decode::{CwlEnvelope, CwlLogEvent, MessageType};
use crate::eks_api::{self, ApiEvent};
use crate::metrics::Metrics;
use crate::trust::TrustedTrails;

/// What extraction needs besides the envelopes, fixed for a batch.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The Firehose event's region, for envelopes without `@aws.region`.
    pub default_region: Option<&'a str>,
    /// aws-auth `mapRoles`, to reverse templated usernames.
    pub aws_auth: Option<&'a AwsAuth>,
    /// The only log groups whose CloudTrail events are read.
    pub trusted_trails: &'a TrustedTrails,
}

static TRUST_NONE: TrustedTrails = TrustedTrails::none();

impl<'a> Context<'a> {
    /// No aws-auth, no trusted trail.
    pub fn new(default_region: Option<&'a str>) -> Self {
        Self {
            default_region,
            aws_auth: None,
            trusted_trails: &TRUST_NONE,
        }
    }
}

/// Folder used in place of an account id or cluster name that fails validation.
pub const INVALID: &str = "_invalid_";

/// The audit stream of a cluster log group; the others (authenticator, scheduler,
/// controller manager) are not rows.
pub const AUDIT_STREAM_PREFIX: &str = "kube-apiserver-audit";

/// Stamps shared by every event of an envelope.
#[derive(Debug, Clone, Copy)]
pub struct Stamp<'a> {
    pub account_id: &'a str,
    /// `account_id`, or [`INVALID`] when it is not 12 digits.
    pub account_folder: &'a str,
    /// The cluster name, or [`INVALID`] when it is not a valid EKS name.
    pub cluster: &'a str,
    pub log_group: &'a str,
    pub log_stream: &'a str,
}

/// One `eks_audit` row, from extraction to Arrow: everything but the attribution,
/// borrowed from the record's envelopes.
#[derive(Debug)]
pub struct AuditRow<'a> {
    pub stamp: Stamp<'a>,
    pub cwl_id: &'a str,
    pub region: Option<&'a str>,
    /// `requestReceivedTimestamp`, else the CloudWatch timestamp.
    pub event_ms: i64,
    pub parse_status: ParseStatus,
    pub event: audit::AuditEvent<'a>,
    /// The message, kept only when it did not parse.
    pub raw_message: Option<&'a str>,
    pub extra: AwsExtra<'a>,
    pub identity: Identity<'a>,
}

impl AuditRow<'_> {
    pub fn username(&self) -> Option<&str> {
        self.event.user.as_ref().and_then(|u| u.username.as_deref())
    }

    /// (day, account folder, cluster): the `eks_audit` partition of the row.
    pub fn partition(&self) -> (i64, &str, &str) {
        (
            self.event_ms.div_euclid(86_400_000),
            self.stamp.account_folder,
            self.stamp.cluster,
        )
    }
}

/// One `eks_api_events` row: an EKS API call from a trusted trail and where it came from.
#[derive(Debug)]
pub struct ApiRow<'a> {
    pub log_group: &'a str,
    pub log_stream: &'a str,
    pub cwl_id: &'a str,
    pub event: ApiEvent,
}

impl ApiRow<'_> {
    /// (day, account folder): the `eks_api_events` partition of the row.
    pub fn partition(&self) -> (i64, &str) {
        (
            self.event.event_ms.div_euclid(86_400_000),
            self.event.account_folder(),
        )
    }
}

/// What extraction produced for one record.
#[derive(Debug, Default)]
pub struct Extracted<'a> {
    pub rows: Vec<AuditRow<'a>>,
    pub sessions: Vec<StsSession>,
    pub api_events: Vec<ApiRow<'a>>,
    pub metrics: Metrics,
    /// Every envelope was a control message.
    pub control_only: bool,
}

/// EKS cluster names: `[0-9A-Za-z][A-Za-z0-9_-]{0,99}`.
pub use resolver::arn::is_cluster_name as valid_cluster;

/// `/aws/eks/<cluster>/cluster` -> `Some(cluster)` (the raw part, validated later).
pub fn eks_cluster_of(log_group: &str) -> Option<&str> {
    log_group
        .strip_prefix("/aws/eks/")
        .and_then(|r| r.strip_suffix("/cluster"))
}

/// Classify and parse every log event of a record's envelopes.
#[inline(never)] // a stage of the instruction profile (bench --instructions)
pub fn extract<'a>(envelopes: &'a [CwlEnvelope<'a>], cx: Context<'a>) -> Extracted<'a> {
    let mut out = Extracted {
        control_only: true,
        ..Default::default()
    };
    for env in envelopes {
        if env.message_type == MessageType::Control {
            continue;
        }
        out.control_only = false;
        out.metrics.log_events += env.log_events.len() as u64;
        match eks_cluster_of(&env.log_group) {
            Some(cluster) if env.log_stream.starts_with(AUDIT_STREAM_PREFIX) => {
                let stamp = stamp(env, cluster);
                out.rows.reserve(env.log_events.len());
                for ev in &env.log_events {
                    let row = audit_row(stamp, ev, cx.default_region, cx.aws_auth);
                    match row.parse_status {
                        ParseStatus::Ok => {}
                        ParseStatus::Truncated => out.metrics.truncated += 1,
                        ParseStatus::Invalid => out.metrics.invalid += 1,
                    }
                    out.rows.push(row);
                }
            }
            // authenticator, scheduler, controller manager: kept in raw/ only
            Some(_) => out.metrics.skipped += env.log_events.len() as u64,
            // the org trail's log group: STS records; any other group (a member account's
            // own, perhaps CloudTrail-shaped) is refused and counted
            None if cx.trusted_trails.trusts(&env.owner, &env.log_group) => {
                trail_records(env, &mut out)
            }
            None => out.metrics.sts_untrusted += env.log_events.len() as u64,
        }
    }
    out
}

fn stamp<'a>(env: &'a CwlEnvelope<'a>, cluster: &'a str) -> Stamp<'a> {
    let owner: &str = &env.owner;
    Stamp {
        account_id: owner,
        account_folder: if resolver::arn::is_account_id(owner) {
            owner
        } else {
            INVALID
        },
        cluster: if valid_cluster(cluster) {
            cluster
        } else {
            INVALID
        },
        log_group: &env.log_group,
        log_stream: &env.log_stream,
    }
}

/// A trusted trail's events: STS credential calls for the session index, EKS API calls
/// for `eks_api_events`; anything else the filter let through is counted as skipped.
/// (An EKS call is parsed twice, as an STS candidate and then as itself: they are a
/// handful per day, STS calls the bulk.)
fn trail_records<'a>(env: &'a CwlEnvelope<'a>, out: &mut Extracted<'a>) {
    for ev in &env.log_events {
        let sts = cloudtrail::parse_event(ev.message.as_bytes());
        match sts {
            Ok(cloudtrail::Parsed::Sts(s)) => {
                let mut s = *s;
                if s.recipient_account_id.is_none() {
                    s.recipient_account_id = Some(env.owner.to_string());
                }
                out.sessions.push(s);
            }
            // the STS parser types `requestParameters` for STS calls: an EKS call with
            // tags (a map, where STS has a list) does not parse as one, and is still an
            // EKS call
            Ok(cloudtrail::Parsed::Other) | Err(_) => match eks_api::parse(&ev.message) {
                Ok(Some(mut event)) => {
                    if event.account_id.is_none() {
                        event.account_id = Some(env.owner.to_string());
                    }
                    out.metrics.eks_api_events += 1;
                    out.api_events.push(ApiRow {
                        log_group: &env.log_group,
                        log_stream: &env.log_stream,
                        cwl_id: &ev.id,
                        event,
                    });
                }
                Ok(None) if sts.is_ok() => out.metrics.skipped += 1,
                Ok(None) => out.metrics.sts_invalid += 1,
                Err(eks_api::EksApiError::NotJson(_)) => out.metrics.sts_invalid += 1,
                Err(_) => out.metrics.eks_api_invalid += 1,
            },
        }
    }
}

fn audit_row<'a>(
    stamp: Stamp<'a>,
    ev: &'a CwlLogEvent<'a>,
    default_region: Option<&'a str>,
    aws_auth: Option<&'a AwsAuth>,
) -> AuditRow<'a> {
    let parsed = audit::parse(&ev.message);
    let event = parsed.event;
    let event_ms = event
        .request_received_timestamp
        .as_deref()
        .and_then(resolver::time::parse_rfc3339_ms)
        .unwrap_or(ev.timestamp);
    let user = event.user.as_ref();
    let mut extra = user
        .and_then(|u| u.extra.as_ref())
        .map(|x| x.aws())
        .unwrap_or_default();
    if extra.access_key_id.is_none() {
        extra.access_key_id = parsed.recovered_key;
    }
    let region = ev
        .extracted_fields
        .as_ref()
        .and_then(|f| f.region.as_deref())
        .or(default_region);
    let raw_message = (parsed.status != ParseStatus::Ok).then_some(&*ev.message);
    // Identity borrows from the message, not from `event` (which moves into the row).
    let username: Option<&'a str> = match user.and_then(|u| u.username.as_ref()) {
        Some(t) => match &t.0 {
            Cow::Borrowed(b) => Some(b),
            // An escaped username (rare): classification uses the extra fields only.
            Cow::Owned(_) => None,
        },
        None => None,
    };
    let unauth = audit::unauthenticated(user.and_then(|u| u.groups));
    let identity = resolver::classify(username, unauth, &extra, aws_auth);
    AuditRow {
        stamp,
        cwl_id: &ev.id,
        region,
        event_ms,
        parse_status: parsed.status,
        event,
        raw_message,
        extra,
        identity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode;

    fn env(group: &str, stream: &str, owner: &str, messages: &[&str]) -> String {
        let m: Vec<String> = messages.iter().map(|s| s.to_string()).collect();
        crate::testkit::envelope(owner, group, stream, &m)
    }

    const AUDIT: &str = r#"{"kind":"Event","auditID":"a1","verb":"get","requestReceivedTimestamp":"2024-11-26T13:07:07.461683Z","user":{"username":"arn:aws:sts::111122223333:assumed-role/ops/alice","extra":{"accessKeyId":["ASIAKEY1"],"arn":["arn:aws:sts::111122223333:assumed-role/ops/alice"]}}}"#;

    #[test]
    fn cluster_names_follow_eks_rules() {
        for ok in ["prod-east", "a", "Prod_1", &"x".repeat(100)] {
            assert!(valid_cluster(ok), "{ok}");
        }
        for bad in [
            "",
            "-lead",
            "_lead",
            "has space",
            "a/b",
            "..",
            "x.y",
            &"x".repeat(101),
        ] {
            assert!(!valid_cluster(bad), "{bad}");
        }
        assert_eq!(
            eks_cluster_of("/aws/eks/prod-east/cluster"),
            Some("prod-east")
        );
        assert_eq!(eks_cluster_of("/aws/eks/../../x/cluster"), Some("../../x"));
        assert_eq!(eks_cluster_of("aws-cloudtrail-logs"), None);
    }

    #[test]
    fn rows_are_stamped_parsed_and_classified() {
        let json = env(
            "/aws/eks/prod/cluster",
            "kube-apiserver-audit-1",
            "111122223333",
            &[AUDIT, "not json"],
        );
        let envs = decode::envelopes(json.as_bytes()).unwrap();
        let x = extract(&envs, Context::new(Some("eu-west-1")));
        assert_eq!(x.rows.len(), 2);
        assert!(!x.control_only);
        let r = &x.rows[0];
        assert_eq!(r.stamp.cluster, "prod");
        assert_eq!(r.stamp.account_folder, "111122223333");
        assert_eq!(r.region, Some("eu-west-1"));
        assert_eq!(r.event_ms, 1_732_626_427_461);
        assert_eq!(r.extra.access_key_id, Some("ASIAKEY1"));
        assert!(matches!(&r.identity, Identity::AccessKey { key, .. } if key == "ASIAKEY1"));
        assert_eq!(r.partition(), (20053, "111122223333", "prod"));
        assert_eq!(x.rows[1].parse_status, ParseStatus::Invalid);
        assert_eq!(x.rows[1].raw_message, Some("not json"));
        assert_eq!(x.rows[1].event_ms, 1_732_626_427_000);
        assert_eq!(x.metrics.invalid, 1);
        assert_eq!(x.metrics.log_events, 2);
    }

    #[test]
    fn sts_records_count_only_from_trusted_trails() {
        let sts = r#"{"eventVersion":"1.08","eventSource":"sts.amazonaws.com","eventName":"AssumeRole","eventID":"e1","eventTime":"2024-11-26T13:00:00Z","recipientAccountId":"111122223333","userIdentity":{"type":"IAMUser","userName":"u"},"responseElements":{"credentials":{"accessKeyId":"ASIAKEY1","expiration":"Nov 26, 2024, 2:00:00 PM"}}}"#;
        let other = r#"{"eventSource":"ec2.amazonaws.com","eventName":"RunInstances"}"#;
        let json = env("org-trail", "s", "999999999999", &[sts, other, "{not json"]);
        let envs = decode::envelopes(json.as_bytes()).unwrap();
        let trusted = TrustedTrails::parse("999999999999:org-trail").unwrap();
        let cx = Context {
            trusted_trails: &trusted,
            ..Context::new(None)
        };
        let x = extract(&envs, cx);
        assert_eq!(x.sessions.len(), 1);
        assert_eq!(x.sessions[0].access_key_id.as_deref(), Some("ASIAKEY1"));
        assert_eq!((x.metrics.skipped, x.metrics.sts_invalid), (1, 1));
        // the same bytes from another account's group, or the right group name in
        // another account: nothing indexed
        for (group, owner) in [("org-trail", "444455556666"), ("my-trail", "999999999999")] {
            let json = env(group, "s", owner, &[sts, other]);
            let envs = decode::envelopes(json.as_bytes()).unwrap();
            let x = extract(&envs, cx);
            assert!(x.sessions.is_empty());
            assert_eq!(x.metrics.sts_untrusted, 2);
        }
    }

    #[test]
    fn bad_stamps_become_invalid_folders_and_other_streams_are_skipped() {
        let json = env(
            "/aws/eks/../x/cluster",
            "kube-apiserver-audit-1",
            "12",
            &[AUDIT],
        );
        let envs = decode::envelopes(json.as_bytes()).unwrap();
        let x = extract(&envs, Context::new(None));
        assert_eq!(x.rows[0].stamp.cluster, INVALID);
        assert_eq!(x.rows[0].stamp.account_folder, INVALID);
        assert_eq!(x.rows[0].stamp.log_group, "/aws/eks/../x/cluster");

        let json = env(
            "/aws/eks/prod/cluster",
            "authenticator-1",
            "111122223333",
            &[AUDIT],
        );
        let envs = decode::envelopes(json.as_bytes()).unwrap();
        let x = extract(&envs, Context::new(None));
        assert!(x.rows.is_empty());
        assert_eq!(x.metrics.skipped, 1);
    }
}
