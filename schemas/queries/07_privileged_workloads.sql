-- Question: Who created or changed a pod or workload that escapes its container:
--           privileged containers, hostPath volumes, hostNetwork, hostPID, hostIPC or
--           added Linux capabilities?
--
-- Looks at pods and at the pod templates of deployments, daemonsets, statefulsets,
-- replicasets, jobs and cronjobs, in the request body of create, update and patch
-- requests (needs audit level Request or RequestResponse for these resources). The
-- pod spec is read with json_extract; hostPID, hostNetwork and hostIPC with
-- json_extract_scalar; the container-level settings (securityContext.privileged,
-- capabilities.add, hostPath volumes) are matched in the spec's JSON text, so that
-- every container, init container and ephemeral container counts. A JSON patch (an
-- array of operations) has no pod spec: it is listed for review (json_patch_to_review)
-- when it mentions any of these settings.
--
-- Parameters (Athena execution parameters, positional; pass string values in single
-- quotes, e.g. "'2026-11-20'"):
--   1  dt_from   first day to search, 'YYYY-MM-DD' (UTC, inclusive)
--   2  dt_to     last day to search,  'YYYY-MM-DD' (UTC, inclusive)
--
-- Output: one row per request that sets at least one of these (or a JSON patch to
-- review), in time order. Denied
-- requests (e.g. rejected by Pod Security admission) are listed too: see
-- response_code.
WITH workload_writes AS (
  SELECT
    event_time, account_id, cluster, audit_id, verb,
    object_resource, object_subresource, object_namespace, object_name,
    request_object, response_code,
    principal_type, principal_name, principal_arn, aws_role_arn,
    role_chain, source_identity, attribution_status,
    source_ip, user_agent
  FROM eks_audit_attributed
  WHERE dt BETWEEN ? AND ?
    AND object_resource IN ('pods', 'deployments', 'daemonsets', 'statefulsets',
                            'replicasets', 'jobs', 'cronjobs')
    -- pods/ephemeralcontainers: `kubectl debug` adding a container to a running pod
    AND (object_subresource IS NULL OR object_subresource = 'ephemeralcontainers')
    AND verb IN ('create', 'update', 'patch')
    AND stage = 'ResponseComplete'
    AND request_object IS NOT NULL
),
specs AS (
  SELECT
    workload_writes.*,
    CASE object_resource
      WHEN 'pods' THEN json_extract(request_object, '$.spec')
      WHEN 'cronjobs' THEN json_extract(request_object, '$.spec.jobTemplate.spec.template.spec')
      ELSE json_extract(request_object, '$.spec.template.spec')
    END AS pod_spec
  FROM workload_writes
),
checked AS (
  SELECT
    specs.*,
    -- pod-level switches, read from the pod spec
    COALESCE(json_extract_scalar(pod_spec, '$.hostPID') = 'true', false) AS host_pid,
    COALESCE(json_extract_scalar(pod_spec, '$.hostNetwork') = 'true', false) AS host_network,
    COALESCE(json_extract_scalar(pod_spec, '$.hostIPC') = 'true', false) AS host_ipc,
    -- container-level settings, matched in the pod spec's JSON text
    COALESCE(regexp_like(json_format(pod_spec), '"privileged"\s*:\s*true'), false) AS privileged,
    -- every hostPath volume's path, e.g. '/, /var/run/docker.sock'
    NULLIF(array_join(regexp_extract_all(json_format(pod_spec),
      '"hostPath"\s*:\s*\{[^}]*"path"\s*:\s*"([^"]*)"', 1), ', '), '') AS host_paths,
    -- every securityContext.capabilities.add list, e.g. 'SYS_ADMIN,NET_ADMIN'
    NULLIF(replace(array_join(regexp_extract_all(json_format(pod_spec),
      '"capabilities"\s*:\s*\{[^}]*"add"\s*:\s*\[([^\]]*)\]', 1), ','), '"', ''), '') AS added_capabilities,
    -- a JSON patch (an array of operations) has no pod spec to read: list it for a
    -- manual look when it touches any of these settings
    COALESCE(starts_with(ltrim(request_object), '[')
             AND regexp_like(request_object, 'privileged|hostPID|hostNetwork|hostIPC|hostPath|capabilities'),
             false) AS json_patch_to_review
  FROM specs
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
  object_resource || COALESCE('/' || object_subresource, '') AS kind,
  COALESCE(object_namespace, json_extract_scalar(request_object, '$.metadata.namespace')) AS namespace,
  COALESCE(object_name, json_extract_scalar(request_object, '$.metadata.name')) AS name,
  privileged,
  host_pid,
  host_network,
  host_ipc,
  host_paths,
  added_capabilities,
  json_patch_to_review,
  response_code,
  source_ip,
  user_agent,
  role_chain,
  source_identity,
  attribution_status,
  audit_id
FROM checked
WHERE privileged OR host_pid OR host_network OR host_ipc
   OR host_paths IS NOT NULL OR added_capabilities IS NOT NULL OR json_patch_to_review
ORDER BY event_time
