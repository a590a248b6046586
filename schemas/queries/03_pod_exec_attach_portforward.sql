-- Question: Who opened a shell or a tunnel into a pod (exec, attach, port-forward),
--           where, and with which command? kube-system first.
--
-- These are `pods/exec`, `pods/attach` and `pods/portforward` requests with verb
-- create (SPDY) or get (WebSocket). A streaming request is logged twice, at
-- ResponseStarted and at ResponseComplete, with the same audit ID: the query keeps one
-- row per audit ID (the ResponseComplete one when both are there).
--
-- Parameters (Athena execution parameters, positional; pass string values in single
-- quotes, e.g. "'2026-11-20'"):
--   1  dt_from   first day to search, 'YYYY-MM-DD' (UTC, inclusive)
--   2  dt_to     last day to search,  'YYYY-MM-DD' (UTC, inclusive)
--
-- Output: one row per session, kube-system sessions first, then by time. `command` is
-- the exec command from the request URI (its `command=` arguments joined by spaces).
WITH sessions AS (
  SELECT
    event_time, account_id, cluster, audit_id, stage, verb,
    object_namespace, object_name, object_subresource, request_uri,
    response_code, authz_decision,
    principal_type, principal_name, principal_arn, aws_role_arn,
    role_chain, source_identity, attribution_status,
    source_ip, user_agent,
    NULLIF(regexp_extract(request_uri, '[?&]container=([^&]*)', 1), '') AS container_raw,
    NULLIF(array_join(regexp_extract_all(request_uri, '[?&]command=([^&]*)', 1), ' '), '') AS command_raw,
    row_number() OVER (
      PARTITION BY account_id, cluster, audit_id
      ORDER BY CASE stage WHEN 'ResponseComplete' THEN 0 ELSE 1 END, stage_time DESC
    ) AS stage_rank
  FROM eks_audit_attributed
  WHERE dt BETWEEN ? AND ?
    AND object_resource = 'pods'
    AND object_subresource IN ('exec', 'attach', 'portforward')
    AND verb IN ('create', 'get')
)
SELECT
  event_time,
  account_id,
  cluster,
  object_namespace AS namespace,
  object_name AS pod,
  object_subresource AS action,
  -- try(): a malformed %-escape in a client-chosen URI must not fail the query
  COALESCE(try(url_decode(container_raw)), container_raw) AS container,
  COALESCE(try(url_decode(command_raw)), command_raw) AS command,
  response_code,
  authz_decision,
  principal_type,
  principal_name,
  principal_arn,
  aws_role_arn AS via_role,
  role_chain,
  source_identity,
  attribution_status,
  source_ip,
  user_agent,
  audit_id
FROM sessions
WHERE stage_rank = 1
ORDER BY
  CASE WHEN object_namespace = 'kube-system' THEN 0 ELSE 1 END,
  event_time
