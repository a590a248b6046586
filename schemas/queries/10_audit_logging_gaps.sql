-- Question: When was a cluster's audit log off, who turned it off (and on again), and
--           what happened in that cluster around it?
--
-- Turning the audit log off (UpdateClusterConfig with logging.clusterLogging audit
-- enabled false) is the classic first move of someone who wants no record: nothing a
-- caller does in the cluster afterwards is in eks_audit. The call itself is an EKS API
-- call, in the lake through the organisation trail. A cluster created without the audit
-- log (CreateCluster without it: EKS's default) starts a gap too. Gaps are read from the
-- calls in the dt range: a gap that started before dt_from is not seen.
--
-- Around each gap:
--   audit_events_before / last_audit_event_before   eks_audit events of the cluster in
--       the 60 minutes before the log went off (what was going on), and the last one
--   audit_events_after_off / last_audit_event_after_off   eks_audit events after the
--       call while it was off: EKS takes a minute or so to apply the change, so a few
--       are expected right after the call; later ones mean the log was on after all
--   eks_api_calls   the cluster's other EKS API calls in the dt range up to the end of
--       the gap (access entries, access policies, ...: the grants the gap may hide)
--   findings   detections in the cluster from 60 minutes before the gap to its end
-- Tuning: the window (INTERVAL '60' MINUTE) is a literal below; Athena allows execution
-- parameters only in WHERE clauses.
--
-- Parameters (Athena execution parameters, positional; pass string values in single
-- quotes, e.g. "'2026-11-20'"):
--   1  dt_from   first day to search, 'YYYY-MM-DD' (UTC, inclusive)
--   2  dt_to     last day to search,  'YYYY-MM-DD' (UTC, inclusive)
--   3  cluster   the cluster, e.g. 'prod-east'; '' for every cluster
--
-- Output: one row per gap, by cluster and time. back_on_at is NULL while the log is still
-- off (as far as the lake shows); off_by / back_on_by are the people (or workloads)
-- behind the calls, as attributed through role chains.
WITH lake AS (
  -- EKS API calls, audit events and findings in one shape (one dt filter below covers
  -- the three views)
  SELECT
    'eks_api' AS source, dt, account_id, cluster, event_time, event_id AS ref,
    event_name, error_code, audit_logging_enabled, authenticator_logging_enabled,
    target_principal_arn, split_part(access_policy_arn, '/', 2) AS policy,
    CAST(NULL AS varchar) AS rule_name, CAST(NULL AS varchar) AS severity,
    principal_type, principal_name, principal_arn, role_chain, source_ip, caller_arn
  FROM eks_api_events_attributed
  UNION ALL
  SELECT
    'eks_audit', dt, account_id, cluster, event_time, audit_id,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL
  FROM eks_audit_attributed
  UNION ALL
  SELECT
    'finding', dt, account_id, cluster, event_time, audit_id,
    event_name, NULL, NULL, NULL, target_principal_arn, NULL, rule_name, severity,
    principal_type, principal_name, principal_arn, role_chain, source_ip, NULL
  FROM findings_attributed
),
in_range AS (
  SELECT * FROM lake
  WHERE dt BETWEEN ? AND ?
    AND ? IN ('', cluster)
),
settings AS (
  -- the successful calls that set the audit log, in order; CreateCluster without it: off
  SELECT
    in_range.*,
    COALESCE(audit_logging_enabled, false) AS audit_on
  FROM in_range
  WHERE source = 'eks_api' AND error_code IS NULL
    AND ((event_name = 'UpdateClusterConfig' AND audit_logging_enabled IS NOT NULL)
         OR event_name = 'CreateCluster')
),
marked AS (
  SELECT
    settings.*,
    lag(audit_on) OVER (PARTITION BY account_id, cluster ORDER BY event_time, ref) AS was_on,
    min(CASE WHEN audit_on THEN event_time END) OVER (
      PARTITION BY account_id, cluster ORDER BY event_time, ref
      ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING
    ) AS back_on_at
  FROM settings
),
gaps AS (
  -- a call that turned the log off while it was on (or not known to be off)
  SELECT m.*
  FROM marked m
  WHERE NOT m.audit_on AND COALESCE(m.was_on, true)
),
gaps_named AS (
  SELECT
    g.*,
    o.principal_name AS back_on_by,
    row_number() OVER (PARTITION BY g.account_id, g.cluster, g.ref ORDER BY o.ref) AS on_rank
  FROM gaps g
  LEFT JOIN settings o
    ON o.account_id = g.account_id AND o.cluster = g.cluster
   AND o.audit_on AND o.event_time = g.back_on_at
),
audit_around AS (
  SELECT
    g.account_id, g.cluster, g.ref,
    count(CASE WHEN a.event_time < g.event_time THEN 1 END) AS audit_events_before,
    max(CASE WHEN a.event_time < g.event_time THEN a.event_time END) AS last_audit_event_before,
    count(CASE WHEN a.event_time >= g.event_time THEN 1 END) AS audit_events_after_off,
    max(CASE WHEN a.event_time >= g.event_time THEN a.event_time END) AS last_audit_event_after_off
  FROM gaps g
  LEFT JOIN in_range a
    ON a.source = 'eks_audit' AND a.account_id = g.account_id AND a.cluster = g.cluster
   AND a.event_time >= g.event_time - INTERVAL '60' MINUTE
   AND (g.back_on_at IS NULL OR a.event_time < g.back_on_at)
  GROUP BY g.account_id, g.cluster, g.ref
),
calls_around AS (
  SELECT
    g.account_id, g.cluster, g.ref,
    array_join(array_agg(
      date_format(c.event_time, '%Y-%m-%d %H:%i:%s') || ' ' || c.event_name
        || COALESCE(' ' || c.target_principal_arn, '')
        || COALESCE(' ' || c.policy, '')
        || COALESCE(' (' || c.error_code || ')', '')
        || ' by ' || COALESCE(c.principal_name, c.caller_arn, '?')
      ORDER BY c.event_time, c.ref), '; ') AS eks_api_calls
  FROM gaps g
  JOIN in_range c
    ON c.source = 'eks_api' AND c.account_id = g.account_id AND c.cluster = g.cluster
   AND c.ref <> g.ref
   AND (g.back_on_at IS NULL OR c.event_time < g.back_on_at)
  GROUP BY g.account_id, g.cluster, g.ref
),
findings_around AS (
  SELECT
    g.account_id, g.cluster, g.ref,
    count(*) AS finding_count,
    array_join(array_sort(array_distinct(array_agg(
      f.rule_name || ' (' || COALESCE(f.principal_name, '?') || ')'))), ', ') AS findings
  FROM gaps g
  JOIN in_range f
    ON f.source = 'finding' AND f.account_id = g.account_id AND f.cluster = g.cluster
   AND f.event_time >= g.event_time - INTERVAL '60' MINUTE
   AND (g.back_on_at IS NULL OR f.event_time < g.back_on_at)
  GROUP BY g.account_id, g.cluster, g.ref
)
SELECT
  g.cluster,
  g.account_id,
  g.event_time AS off_at,
  g.event_name AS off_by_call,
  g.principal_name AS off_by,
  g.principal_type AS off_by_type,
  g.principal_arn AS off_by_arn,
  g.role_chain AS off_role_chain,
  g.source_ip AS off_source_ip,
  COALESCE(NOT g.authenticator_logging_enabled, false) AS authenticator_off,
  g.back_on_at,
  g.back_on_by,
  a.audit_events_before,
  a.last_audit_event_before,
  a.audit_events_after_off,
  a.last_audit_event_after_off,
  c.eks_api_calls,
  COALESCE(f.finding_count, 0) AS finding_count,
  f.findings,
  g.ref AS off_event_id
FROM gaps_named g
LEFT JOIN audit_around a ON a.account_id = g.account_id AND a.cluster = g.cluster AND a.ref = g.ref
LEFT JOIN calls_around c ON c.account_id = g.account_id AND c.cluster = g.cluster AND c.ref = g.ref
LEFT JOIN findings_around f ON f.account_id = g.account_id AND f.cluster = g.cluster AND f.ref = g.ref
WHERE g.on_rank = 1
ORDER BY g.account_id, g.cluster, g.event_time
