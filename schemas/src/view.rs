//! The `eks_audit_attributed` view: late attribution in SQL.
//!
//! CloudTrail usually lands minutes after the audit event, so some rows are written
//! `pending`. The view joins those rows to `sts_sessions` on the access key id and
//! follows role chaining up to three hops to the origin, using the same rules as the
//! resolver crate (`resolver::attribute`); a DuckDB test checks that both agree.
//!
//! Written in Athena (Trino) SQL. The only construct DuckDB spells differently is the
//! empty typed array, which the test runner rewrites.

use crate::{ColType, EKS_AUDIT};

/// Attribution columns the view may fill; every other column passes through.
const FILLED: &[&str] = &crate::ATTRIBUTION;

/// Session columns carried from the origin hop.
const ORIGIN_FIELDS: &[&str] = &[
    "event_name",
    "caller_type",
    "caller_arn",
    "caller_account_id",
    "caller_user_name",
    "role_arn",
    "role_session_name",
    "assumed_role_arn",
    "saml_subject",
    "saml_provider_arn",
    "web_identity_subject",
    "web_identity_provider",
    "session_tags",
    "on_behalf_of_user_id",
];

fn origin_pick(field: &str) -> String {
    format!(
        "    CASE origin_hop WHEN 1 THEN s1_{f} WHEN 2 THEN s2_{f} WHEN 3 THEN s3_{f} END AS o_{f}",
        f = field
    )
}

/// `s1.x AS s1_x` for every hop and origin field: the later steps cannot see s1..s3.
fn hop_fields() -> String {
    let mut v = Vec::new();
    for hop in 1..=3 {
        for f in ORIGIN_FIELDS {
            v.push(format!("    s{hop}.{f} AS s{hop}_{f}"));
        }
    }
    v.join(",\n")
}

/// Which workload a service-started origin session names (`resolver::workload`):
/// 'irsa', 'pod_identity', 'ec2', 'lambda', 'ecs', or NULL. The patterns are the naming
/// rules the resolver checks, anchored with `\z` (Athena's `$` would also match before a
/// final newline). One difference stays: the view cannot know `AUDITLAKE_OIDC_CLUSTERS`,
/// so a late IRSA row has no `principal_cluster`.
const WORKLOAD_KIND: &str = r"CASE
      WHEN o_event_name = 'AssumeRoleWithWebIdentity'
       AND regexp_like(o_web_identity_provider, '^(arn:aws[^:]*:iam::[0-9]{12}:oidc-provider/|https://)?oidc\.eks\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/id/[A-Za-z0-9]{1,64}\z')
       AND regexp_like(o_web_identity_subject, '^system:serviceaccount:[a-z0-9.-]{1,253}:[a-z0-9.-]{1,253}\z') THEN 'irsa'
      WHEN o_event_name <> 'AssumeRole' OR COALESCE(o_caller_type, '') <> 'AWSService' THEN NULL
      WHEN o_caller_user_name = 'pods.eks.amazonaws.com'
       AND regexp_like(element_at(o_session_tags, 'kubernetes-namespace'), '^[a-z0-9.-]{1,253}\z')
       AND regexp_like(element_at(o_session_tags, 'kubernetes-service-account'), '^[a-z0-9.-]{1,253}\z') THEN 'pod_identity'
      WHEN o_caller_user_name = 'ec2.amazonaws.com'
       AND regexp_like(o_role_session_name, '^i-([0-9a-fA-F]{8}|[0-9a-fA-F]{17})\z') THEN 'ec2'
      WHEN o_caller_user_name = 'lambda.amazonaws.com'
       AND regexp_like(o_role_session_name, '^[A-Za-z0-9_-]{1,64}\z') THEN 'lambda'
      WHEN o_caller_user_name = 'ecs-tasks.amazonaws.com'
       AND regexp_like(o_role_session_name, '^[A-Za-z0-9_-]{1,64}\z') THEN 'ecs'
    END";

/// A Pod Identity session's `eks-cluster-arn` tag, if it is a cluster ARN.
const CLUSTER_ARN: &str = r"CASE WHEN regexp_like(element_at(o_session_tags, 'eks-cluster-arn'),
      '^arn:aws[^:]*:eks:[^:]*:[0-9]{12}:cluster/[A-Za-z0-9][A-Za-z0-9_-]{0,99}\z')
      THEN element_at(o_session_tags, 'eks-cluster-arn') END";

fn filled_expr(col: &str) -> &'static str {
    match col {
        "principal_type" => {
            "CASE
      WHEN o_workload IN ('irsa', 'pod_identity') THEN 'k8s_workload'
      WHEN o_workload = 'ec2' THEN 'ec2_instance'
      WHEN o_event_name = 'AssumeRoleWithSAML' AND strpos(o_saml_provider_arn, ':saml-provider/AWSSSO_') > 0 THEN 'identity_center_user'
      WHEN o_event_name = 'AssumeRoleWithSAML' THEN 'saml_user'
      WHEN o_event_name = 'AssumeRoleWithWebIdentity' THEN 'web_identity'
      WHEN o_event_name = 'GetFederationToken' THEN 'federated_user'
      WHEN o_caller_type = 'IAMUser' THEN 'iam_user'
      WHEN o_caller_type = 'Root' THEN 'root'
      WHEN o_caller_type = 'AWSService' THEN 'aws_service'
      WHEN o_caller_type = 'FederatedUser' THEN 'federated_user'
      ELSE 'unknown' END"
        }
        "principal_name" => {
            "CASE
      WHEN o_workload = 'irsa' THEN substr(o_web_identity_subject, 23)
      WHEN o_workload = 'pod_identity' THEN element_at(o_session_tags, 'kubernetes-namespace') || ':' || element_at(o_session_tags, 'kubernetes-service-account')
      WHEN o_workload = 'ec2' THEN o_role_session_name
      WHEN o_workload = 'lambda' THEN 'lambda:' || o_role_session_name
      WHEN o_workload = 'ecs' THEN 'ecs:' || o_role_session_name
      WHEN o_event_name = 'AssumeRoleWithSAML' THEN o_saml_subject
      WHEN o_event_name = 'AssumeRoleWithWebIdentity' THEN o_web_identity_subject
      WHEN o_event_name = 'GetFederationToken' THEN o_role_session_name
      WHEN o_caller_type = 'Root' THEN 'root'
      ELSE o_caller_user_name END"
        }
        "principal_arn" => {
            "CASE
      WHEN o_workload = 'pod_identity' THEN o_cluster_arn
      WHEN o_event_name = 'AssumeRoleWithSAML' THEN o_saml_provider_arn
      WHEN o_event_name = 'AssumeRoleWithWebIdentity' THEN o_web_identity_provider
      WHEN o_event_name = 'GetFederationToken' THEN o_assumed_role_arn
      WHEN o_caller_type = 'AWSService' THEN NULL
      ELSE o_caller_arn END"
        }
        "principal_account_id" => {
            "CASE
      WHEN o_workload = 'pod_identity' THEN COALESCE(split_part(o_cluster_arn, ':', 5), split_part(o_role_arn, ':', 5))
      WHEN o_workload IS NOT NULL THEN split_part(o_role_arn, ':', 5)
      WHEN o_event_name IN ('AssumeRoleWithSAML', 'AssumeRoleWithWebIdentity') THEN split_part(o_role_arn, ':', 5)
      WHEN o_caller_type = 'AWSService' THEN NULL
      ELSE o_caller_account_id END"
        }
        "principal_cluster" => {
            r"CASE WHEN o_workload = 'pod_identity' THEN COALESCE(
        CASE WHEN regexp_like(element_at(o_session_tags, 'eks-cluster-name'), '^[A-Za-z0-9][A-Za-z0-9_-]{0,99}\z')
          THEN element_at(o_session_tags, 'eks-cluster-name') END,
        regexp_extract(o_cluster_arn, 'cluster/([^/]+)\z', 1)) END"
        }
        "principal_pod" => {
            r"CASE WHEN o_workload = 'pod_identity' AND regexp_like(element_at(o_session_tags, 'kubernetes-pod-name'), '^[a-z0-9.-]{1,253}\z')
      THEN element_at(o_session_tags, 'kubernetes-pod-name') END"
        }
        "principal_user_id" => {
            "COALESCE(s1_on_behalf_of_user_id, s2_on_behalf_of_user_id, s3_on_behalf_of_user_id)"
        }
        "source_identity" => "COALESCE(s1_source_identity, source_identity)",
        "role_chain" => {
            "CASE origin_hop
      WHEN 1 THEN CASE WHEN s1_role_arn IS NULL THEN CAST(ARRAY[] AS array(varchar)) ELSE ARRAY[s1_role_arn] END
      WHEN 2 THEN ARRAY[s2_role_arn, s1_role_arn]
      WHEN 3 THEN ARRAY[s3_role_arn, s2_role_arn, s1_role_arn] END"
        }
        "attribution_method" => "'access_key'",
        "attribution_status" => "'resolved'",
        _ => unreachable!("not a filled column: {col}"),
    }
}

/// The principal an ARN names, as `<account>:role/<name>` or
/// `<account>:federated-user/<name>` (lowercase; IAM names are unique regardless of
/// case), or NULL: `resolver::model::Claim` and `resolver::attribute::session_principal`
/// in SQL. Role ARNs lose their path; assumed-role ARNs their session.
fn principal_key(x: &str) -> String {
    format!(
        "CASE
        WHEN {x} LIKE 'arn:%:sts::%:assumed-role/%/%' THEN lower(split_part({x}, ':', 5) || ':role/' || split_part(split_part({x}, ':', 6), '/', 2))
        WHEN {x} LIKE 'arn:%:iam::%:role/%' THEN lower(split_part({x}, ':', 5) || ':role/' || regexp_extract({x}, '[^/]+$'))
        WHEN {x} LIKE 'arn:%:sts::%:federated-user/%' THEN lower(split_part({x}, ':', 5) || ':federated-user/' || substr(split_part({x}, ':', 6), 16))
      END"
    )
}

/// A row's value when its key belongs to a session of another role than it names.
fn conflict_expr(col: &str) -> &'static str {
    match col {
        "principal_type" => "'assumed_role'",
        "role_chain" => "CAST(ARRAY[] AS array(varchar))",
        "attribution_method" => "'access_key'",
        "attribution_status" => "'conflict'",
        _ => "NULL",
    }
}

/// Renders `CREATE OR REPLACE VIEW eks_audit_attributed`.
pub fn attributed_view() -> String {
    late_attribution_view(
        "eks_audit_attributed",
        "eks_audit",
        EKS_AUDIT,
        AUDIT_KEYS,
        "eks_audit with late attribution: rows written 'pending' (CloudTrail had not arrived)",
    )
}

/// Renders `CREATE OR REPLACE VIEW findings_attributed`: the same late attribution
/// over `findings` (which carries the event's AWS identity columns for it).
pub fn findings_attributed_view() -> String {
    late_attribution_view(
        "findings_attributed",
        "findings",
        crate::FINDINGS,
        AUDIT_KEYS,
        "findings with late attribution, exactly as eks_audit_attributed: findings written 'pending'",
    )
}

/// Renders `CREATE OR REPLACE VIEW eks_api_events_attributed`: the callers of EKS API
/// calls written 'pending', attributed late through their access key like audit events.
pub fn eks_api_events_attributed_view() -> String {
    late_attribution_view(
        "eks_api_events_attributed",
        "eks_api_events",
        crate::EKS_API_EVENTS,
        Keys {
            access_key: "caller_access_key_id",
            arn: "caller_arn",
            role_arn: "caller_role_arn",
        },
        "eks_api_events with late attribution of the caller, exactly as eks_audit_attributed: calls written 'pending'",
    )
}

/// The columns of a table that name the session: its access key, the ARN it claims and
/// the role ARN it claims (the conflict check compares both with the key's session).
struct Keys {
    access_key: &'static str,
    arn: &'static str,
    role_arn: &'static str,
}

const AUDIT_KEYS: Keys = Keys {
    access_key: "aws_access_key_id",
    arn: "aws_arn",
    role_arn: "aws_role_arn",
};

/// The late-attribution view `view` over `table`, whose columns must include the
/// attribution columns and the `keys` columns.
fn late_attribution_view(
    view: &str,
    table: &str,
    columns: &[crate::Column],
    keys: Keys,
    what: &str,
) -> String {
    for needed in FILLED
        .iter()
        .chain(&[keys.access_key, keys.arn, keys.role_arn])
    {
        assert!(
            columns.iter().any(|c| c.name == *needed),
            "{table} lacks {needed}"
        );
    }
    let mut passthrough = Vec::new();
    let mut out_cols = Vec::new();
    for c in columns {
        passthrough.push(format!("    e.{}", c.name));
        if FILLED.contains(&c.name) {
            out_cols.push(format!(
                "  CASE WHEN role_conflict THEN {} WHEN view_resolves THEN {} ELSE {} END AS {}",
                conflict_expr(c.name),
                filled_expr(c.name),
                c.name,
                c.name
            ));
        } else {
            out_cols.push(format!("  {}", c.name));
        }
        debug_assert!(c.ty != ColType::StrListMap || !FILLED.contains(&c.name));
    }
    out_cols.push("  dt".into());
    passthrough.push("    e.dt".into());
    let origin: Vec<String> = ORIGIN_FIELDS.iter().map(|f| origin_pick(f)).collect();

    format!(
        "-- Generated by `auditlake ddl` from schemas/src/view.rs; do not edit by hand.
-- {what}
-- are joined to sts_sessions on the access key id and followed through up to three
-- role-chaining hops to the person who started the chain. Rows resolved at ingest
-- pass through unchanged. Always filter on dt.
CREATE OR REPLACE VIEW {view} AS
WITH sessions AS (
  SELECT access_key_id, event_name, caller_type, caller_arn, caller_account_id,
         caller_access_key_id, caller_user_name, role_arn, role_session_name,
         assumed_role_arn, source_identity, saml_subject, saml_provider_arn,
         web_identity_subject, web_identity_provider, session_tags, on_behalf_of_user_id
  FROM (
    SELECT *,
      row_number() OVER (
        PARTITION BY access_key_id
        -- the caller-account copy of a cross-account call knows the caller's key
        ORDER BY CASE WHEN caller_type = 'AWSAccount' THEN 1 ELSE 0 END, event_time, event_id
      ) AS copy_rank
    FROM sts_sessions
    WHERE access_key_id IS NOT NULL AND error_code IS NULL
  ) ranked
  WHERE copy_rank = 1
),
hops AS (
  SELECT
{passthrough},
{hop_fields},
    s1.source_identity AS s1_source_identity,
    -- the key's session must be of the role the event names (extra.arn,
    -- extra.canonicalArn), else the row names nobody: status 'conflict'
    COALESCE(s1.access_key_id IS NOT NULL AND s1_key IS NOT NULL AND (
      ({claim_arn}) <> s1_key OR ({claim_canonical}) <> s1_key), FALSE) AS role_conflict,
    CASE
      WHEN s1.access_key_id IS NULL THEN NULL
      WHEN NOT (s1.event_name = 'AssumeRole' AND COALESCE(s1.caller_type, '') = 'AssumedRole') THEN 1
      WHEN s2.access_key_id IS NULL THEN NULL
      WHEN NOT (s2.event_name = 'AssumeRole' AND COALESCE(s2.caller_type, '') = 'AssumedRole') THEN 2
      WHEN s3.access_key_id IS NULL THEN NULL
      WHEN NOT (s3.event_name = 'AssumeRole' AND COALESCE(s3.caller_type, '') = 'AssumedRole') THEN 3
    END AS origin_hop
  FROM {table} e
  LEFT JOIN (SELECT sessions.*, CASE WHEN assumed_role_arn IS NOT NULL THEN {s1_assumed} ELSE {s1_role} END AS s1_key
             FROM sessions) s1
    ON e.attribution_status = 'pending' AND s1.access_key_id = e.{access_key}
  LEFT JOIN sessions s2
    ON s1.event_name = 'AssumeRole' AND s1.caller_type = 'AssumedRole'
   AND s2.access_key_id = s1.caller_access_key_id
  LEFT JOIN sessions s3
    ON s2.event_name = 'AssumeRole' AND s2.caller_type = 'AssumedRole'
   AND s3.access_key_id = s2.caller_access_key_id
),
origins AS (
  SELECT hops.*,
{origin}
  FROM hops
),
workloads AS (
  SELECT origins.*,
    {workload_kind} AS o_workload
  FROM origins
),
decided AS (
  SELECT workloads.*,
    {cluster_arn} AS o_cluster_arn,
    (origin_hop IS NOT NULL AND COALESCE(o_caller_type, '') <> 'AWSAccount') AS view_resolves
  FROM workloads
)
SELECT
{out}
FROM decided;
",
        passthrough = passthrough.join(",\n"),
        claim_arn = principal_key(&format!("e.{}", keys.arn)),
        claim_canonical = principal_key(&format!("e.{}", keys.role_arn)),
        access_key = keys.access_key,
        s1_assumed = principal_key("assumed_role_arn"),
        s1_role = principal_key("role_arn"),
        hop_fields = hop_fields(),
        origin = origin.join(",\n"),
        workload_kind = WORKLOAD_KIND,
        cluster_arn = CLUSTER_ARN,
        out = out_cols.join(",\n"),
    )
}
