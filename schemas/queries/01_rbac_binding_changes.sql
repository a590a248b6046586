-- Question: Who created, changed or deleted a RoleBinding or ClusterRoleBinding, and
--           which role did it grant to which subjects?
--
-- Flags (column `flags`, flagged rows sort first):
--   role cluster-admin / role admin           roleRef names one of these ClusterRoles
--   subject system:anonymous                  binds unauthenticated requests (user)
--   subject system:unauthenticated            binds unauthenticated requests (group)
--   subject system:authenticated              binds every identity that can log in
--   subject default service account           binds a namespace's `default` service
--                                             account, which every pod gets unless
--                                             it names another one
--
-- Parameters (Athena execution parameters, positional; pass string values in single
-- quotes, e.g. "'2026-11-20'"):
--   1  dt_from   first day to search, 'YYYY-MM-DD' (UTC, inclusive)
--   2  dt_to     last day to search,  'YYYY-MM-DD' (UTC, inclusive)
--
-- Output: one row per successful write (2xx) to a (Cluster)RoleBinding. Denied
-- attempts are not listed here; they show up in 02_auth_failure_bursts.sql.
-- roleRef and subjects come from the request body (audit level Request or
-- RequestResponse), falling back to the response body; a JSON patch or a delete
-- carries neither, so those rows show the binding name only.
WITH binding_writes AS (
  SELECT
    event_time, account_id, cluster, audit_id, verb,
    object_resource, object_namespace, object_name,
    request_object, response_object, response_code,
    principal_type, principal_name, principal_arn, aws_role_arn,
    role_chain, source_identity, attribution_status,
    source_ip, user_agent
  FROM eks_audit_attributed
  WHERE dt BETWEEN ? AND ?
    AND object_resource IN ('clusterrolebindings', 'rolebindings')
    AND verb IN ('create', 'update', 'patch', 'delete', 'deletecollection')
    AND stage = 'ResponseComplete'
    AND response_code BETWEEN 200 AND 299
),
bindings AS (
  SELECT
    binding_writes.*,
    COALESCE(object_name,
             json_extract_scalar(request_object, '$.metadata.name'),
             json_extract_scalar(response_object, '$.metadata.name')) AS binding_name,
    COALESCE(json_extract_scalar(request_object, '$.roleRef.kind'),
             json_extract_scalar(response_object, '$.roleRef.kind')) AS role_kind,
    COALESCE(json_extract_scalar(request_object, '$.roleRef.name'),
             json_extract_scalar(response_object, '$.roleRef.name')) AS role_name,
    -- the subjects array as compact JSON text, e.g.
    -- [{"apiGroup":"rbac.authorization.k8s.io","kind":"User","name":"system:anonymous"}]
    json_format(COALESCE(json_extract(request_object, '$.subjects'),
                         json_extract(response_object, '$.subjects'))) AS subjects
  FROM binding_writes
),
flagged AS (
  SELECT
    bindings.*,
    NULLIF(concat_ws(', ',
      CASE WHEN role_name IN ('cluster-admin', 'admin') THEN 'role ' || role_name END,
      CASE WHEN strpos(subjects, '"system:anonymous"') > 0 THEN 'subject system:anonymous' END,
      CASE WHEN strpos(subjects, '"system:unauthenticated"') > 0 THEN 'subject system:unauthenticated' END,
      CASE WHEN strpos(subjects, '"system:authenticated"') > 0 THEN 'subject system:authenticated' END,
      -- {"kind":"ServiceAccount","name":"default",...} in either key order, or the
      -- service account written as a user name: system:serviceaccount:<ns>:default
      CASE WHEN regexp_like(subjects, '\{[^{}]*"kind"\s*:\s*"ServiceAccount"[^{}]*"name"\s*:\s*"default"[^{}]*\}')
             OR regexp_like(subjects, '\{[^{}]*"name"\s*:\s*"default"[^{}]*"kind"\s*:\s*"ServiceAccount"[^{}]*\}')
             OR regexp_like(subjects, '"system:serviceaccount:[^":]+:default"')
           THEN 'subject default service account' END
    ), '') AS flags
  FROM bindings
)
SELECT
  event_time,
  account_id,
  cluster,
  principal_type,
  principal_name,
  principal_arn,
  aws_role_arn AS via_role,
  verb,
  object_resource AS binding_kind,
  object_namespace AS binding_namespace,
  binding_name,
  role_kind,
  role_name,
  subjects,
  flags,
  source_ip,
  user_agent,
  role_chain,
  source_identity,
  attribution_status,
  audit_id
FROM flagged
ORDER BY
  CASE WHEN flags IS NULL THEN 1 ELSE 0 END,
  event_time
