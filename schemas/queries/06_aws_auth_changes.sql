-- Question: Who changed the aws-auth ConfigMap (kube-system/aws-auth), which maps IAM
--           roles and users to Kubernetes users and groups, and what did they write?
--
-- Writing aws-auth decides who is cluster admin: a new mapRoles entry with group
-- system:masters is a backdoor that survives the removal of every RBAC binding.
-- Write verbs are create, update, patch and delete; a deletecollection on
-- kube-system configmaps deletes aws-auth as well and is listed too. Denied attempts
-- are listed (see response_code): trying is as interesting as succeeding.
--
-- Parameters (Athena execution parameters, positional; pass string values in single
-- quotes, e.g. "'2026-11-20'"):
--   1  dt_from   first day to search, 'YYYY-MM-DD' (UTC, inclusive)
--   2  dt_to     last day to search,  'YYYY-MM-DD' (UTC, inclusive)
--
-- Output: one row per write request, in time order. map_roles / map_users are the
-- YAML strings from the request body (a strategic-merge or merge patch, or the whole
-- object); they are NULL for a JSON patch (see request_object) and for a delete.
-- EKS access entries (the successor of aws-auth) are managed through the EKS API and
-- show up in CloudTrail, not in the audit log.
WITH aws_auth_writes AS (
  SELECT
    event_time, account_id, cluster, audit_id, verb, object_name,
    request_uri, request_object, response_code, authz_decision,
    principal_type, principal_name, principal_arn, aws_role_arn,
    role_chain, source_identity, attribution_status,
    source_ip, user_agent
  FROM eks_audit_attributed
  WHERE dt BETWEEN ? AND ?
    AND object_resource = 'configmaps'
    AND object_namespace = 'kube-system'
    AND stage = 'ResponseComplete'
    AND (
      (verb IN ('create', 'update', 'patch', 'delete')
        AND COALESCE(object_name, json_extract_scalar(request_object, '$.metadata.name')) = 'aws-auth')
      OR (verb = 'deletecollection' AND object_name IS NULL)
    )
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
  response_code,
  authz_decision,
  json_extract_scalar(request_object, '$.data.mapRoles') AS map_roles,
  json_extract_scalar(request_object, '$.data.mapUsers') AS map_users,
  COALESCE(strpos(request_object, 'system:masters') > 0, false) AS grants_system_masters,
  request_object,
  source_ip,
  user_agent,
  role_chain,
  source_identity,
  attribution_status,
  audit_id
FROM aws_auth_writes
ORDER BY event_time
