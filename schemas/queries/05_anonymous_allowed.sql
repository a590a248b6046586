-- Question: Which anonymous (unauthenticated) requests did the API server allow,
--           other than health checks?
--
-- Anonymous means user system:anonymous or group system:unauthenticated. Load
-- balancers and kubelets probe /healthz, /livez, /readyz and /version anonymously
-- (subpaths such as /readyz/etcd too); those are left out. Anything else allowed for
-- an anonymous caller means an RBAC binding grants rights to system:anonymous or
-- system:unauthenticated (see 01_rbac_binding_changes.sql).
--
-- Parameters (Athena execution parameters, positional; pass string values in single
-- quotes, e.g. "'2026-11-20'"):
--   1  dt_from   first day to search, 'YYYY-MM-DD' (UTC, inclusive)
--   2  dt_to     last day to search,  'YYYY-MM-DD' (UTC, inclusive)
--
-- Output: one row per request (deduplicated by audit ID), in time order.
WITH anonymous_allowed AS (
  SELECT
    event_time, account_id, cluster, audit_id, stage, stage_time, verb, request_uri,
    object_resource, object_subresource, object_namespace, object_name,
    response_code, authz_reason, username, source_ip, user_agent,
    row_number() OVER (
      PARTITION BY account_id, cluster, audit_id
      ORDER BY CASE stage WHEN 'ResponseComplete' THEN 0 ELSE 1 END, stage_time DESC
    ) AS stage_rank
  FROM eks_audit_attributed
  WHERE dt BETWEEN ? AND ?
    AND (username = 'system:anonymous' OR contains(user_groups, 'system:unauthenticated'))
    AND authz_decision = 'allow'
    AND NOT regexp_like(COALESCE(request_uri, ''), '^/(healthz|livez|readyz|version)(/|\?|$)')
)
SELECT
  event_time,
  account_id,
  cluster,
  verb,
  object_resource AS resource,
  object_subresource AS subresource,
  object_namespace AS namespace,
  object_name AS name,
  request_uri,
  response_code,
  authz_reason,
  username,
  source_ip,
  user_agent,
  audit_id
FROM anonymous_allowed
WHERE stage_rank = 1
ORDER BY event_time, account_id, cluster
