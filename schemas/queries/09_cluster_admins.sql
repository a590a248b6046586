-- Question: Who can administer this cluster, granted how and by whom? And did anyone
--           turn its audit log off after granting it?
--
-- Run with a grantee, this is the one-query answer to "who made this principal a
-- cluster admin, and did anyone turn the audit log off?".
--
-- Cluster admin is granted four ways; only the last two leave a Kubernetes audit event
-- (granted_via):
--   access_policy     AssociateAccessPolicy of AmazonEKSClusterAdminPolicy or
--                     AmazonEKSAdminPolicy to an access entry's principal (an EKS API
--                     call; detail gives the policy and its scope)
--   cluster_creator   the IAM principal that called CreateCluster (the creator is cluster
--                     admin unless bootstrapClusterCreatorAdminPermissions is false)
--   aws_auth          a mapRoles / mapUsers entry of kube-system/aws-auth with group
--                     system:masters (the writes of 06_aws_auth_changes.sql; entries
--                     start with '- ' at the start of a line)
--   rbac_binding      a ClusterRoleBinding or RoleBinding to the ClusterRole cluster-admin
--                     (the writes of 01_rbac_binding_changes.sql), one row per subject
--
-- still_granted is the current state as far as the lake shows within the dt range. An
-- access policy later disassociated, its access entry deleted, an aws-auth entry a later
-- write of aws-auth left out (or aws-auth deleted), a binding later deleted or written
-- without the subject, a cluster deleted: false. A grant made before dt_from is not
-- seen (search from the cluster's creation for the whole picture); a JSON patch, a
-- deletecollection or a binding patch without roleRef is not read.
-- A grant repeated unchanged (every write of aws-auth repeats its entries) is one row,
-- named by its first writer; a changed one (another scope) is a row of its own, and the
-- one it replaced is no longer still_granted.
-- audit_log_off_at / _by: the first UpdateClusterConfig after the grant that turned the
-- cluster's audit log off, and audit_log_back_on_at when a later one turned it on (NULL:
-- still off). 10_audit_logging_gaps.sql shows what happened around it.
--
-- Parameters (Athena execution parameters, positional; pass string values in single
-- quotes, e.g. "'2026-11-20'"):
--   1  dt_from   first day to search, 'YYYY-MM-DD' (UTC, inclusive)
--   2  dt_to     last day to search,  'YYYY-MM-DD' (UTC, inclusive)
--   3  cluster   the cluster, e.g. 'prod-east'; '' for every cluster
--   4  grantee   the grantee as the column prints it, e.g.
--                'arn:aws:iam::333333333333:role/deployer' or 'User system:anonymous';
--                '' for every grantee
--
-- Output: one row per grant, by cluster and time. grantee is an IAM principal ARN, or an
-- RBAC subject ('User <name>', 'Group <name>', 'ServiceAccount <namespace>/<name>').
-- granted_by is the person or workload behind the call or request, as attributed
-- through role chains (role_chain, first role first); ref is the CloudTrail eventID or
-- the audit ID of the grant.
WITH lake AS (
  -- the EKS API calls and the Kubernetes writes that grant or take away cluster admin,
  -- and the audit log switches, in one shape (one dt filter below covers both views)
  SELECT
    'eks_api' AS source, dt, account_id, cluster, event_time, event_id AS ref,
    event_name AS action, target_principal_arn,
    split_part(access_policy_arn, '/', 2) AS policy,
    access_scope_type, array_join(access_scope_namespaces, ', ') AS scope_namespaces,
    bootstrap_cluster_creator_admin, audit_logging_enabled,
    COALESCE(caller_role_arn, caller_arn) AS caller_principal,
    CAST(NULL AS varchar) AS object_resource, CAST(NULL AS varchar) AS object_namespace,
    CAST(NULL AS varchar) AS object_name, CAST(NULL AS varchar) AS request_object,
    CAST(NULL AS varchar) AS response_object,
    principal_type, principal_name, principal_arn, role_chain, source_ip, attribution_status
  FROM eks_api_events_attributed
  WHERE error_code IS NULL
    AND event_name IN ('CreateCluster', 'DeleteCluster', 'AssociateAccessPolicy',
                       'DisassociateAccessPolicy', 'DeleteAccessEntry', 'UpdateClusterConfig')
  UNION ALL
  SELECT
    CASE WHEN object_resource = 'configmaps' THEN 'aws_auth' ELSE 'rbac_binding' END,
    dt, account_id, cluster, event_time, audit_id, verb,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    object_resource, object_namespace,
    COALESCE(object_name,
             json_extract_scalar(request_object, '$.metadata.name'),
             json_extract_scalar(response_object, '$.metadata.name')),
    request_object, response_object,
    principal_type, principal_name, principal_arn, role_chain, source_ip, attribution_status
  FROM eks_audit_attributed
  WHERE stage = 'ResponseComplete'
    AND response_code BETWEEN 200 AND 299
    AND verb IN ('create', 'update', 'patch', 'delete')
    AND (object_resource IN ('clusterrolebindings', 'rolebindings')
         OR (object_resource = 'configmaps' AND object_namespace = 'kube-system'
             AND COALESCE(object_name, json_extract_scalar(request_object, '$.metadata.name')) = 'aws-auth'))
),
in_range AS (
  SELECT * FROM lake
  WHERE dt BETWEEN ? AND ?
    AND ? IN ('', cluster)
),
-- ---- EKS API: access policies and the cluster creator
api_grants AS (
  SELECT
    in_range.*, 'access_policy' AS granted_via, target_principal_arn AS grantee,
    policy || ' (' || COALESCE(access_scope_type, 'cluster')
      || CASE WHEN scope_namespaces <> '' THEN ': ' || scope_namespaces ELSE '' END || ')' AS detail
  FROM in_range
  WHERE source = 'eks_api' AND action = 'AssociateAccessPolicy'
    AND policy IN ('AmazonEKSClusterAdminPolicy', 'AmazonEKSAdminPolicy')
    AND target_principal_arn IS NOT NULL
  UNION ALL
  SELECT
    in_range.*, 'cluster_creator', caller_principal,
    'AmazonEKSClusterAdminPolicy (cluster creator)'
  FROM in_range
  WHERE source = 'eks_api' AND action = 'CreateCluster'
    AND COALESCE(bootstrap_cluster_creator_admin, true)
    AND caller_principal IS NOT NULL
),
api_revokes AS (
  -- a disassociation takes away one policy, an access entry's deletion every one
  SELECT r.*, r.target_principal_arn AS grantee, r.policy AS revoked_policy
  FROM in_range r
  WHERE r.source = 'eks_api' AND r.action = 'DisassociateAccessPolicy'
  UNION ALL
  SELECT r.*, r.target_principal_arn, p.name
  FROM in_range r
  CROSS JOIN (VALUES ('AmazonEKSClusterAdminPolicy'), ('AmazonEKSAdminPolicy')) AS p(name)
  WHERE r.source = 'eks_api' AND r.action = 'DeleteAccessEntry'
),
-- ---- aws-auth entries mapping a role or user to system:masters
aws_auth_writes AS (
  SELECT
    in_range.*,
    json_extract_scalar(request_object, '$.data.mapRoles') AS map_roles,
    json_extract_scalar(request_object, '$.data.mapUsers') AS map_users
  FROM in_range
  WHERE source = 'aws_auth'
),
aws_auth_entries AS (
  SELECT w.account_id, w.cluster, w.ref, 'mapRoles' AS map,
         NULLIF(regexp_extract(e.entry, '(?:^|\n)\s*rolearn:\s*["'']?([^\s"'']+)', 1), '') AS grantee,
         strpos(e.entry, 'system:masters') > 0 AS masters
  FROM aws_auth_writes w
  CROSS JOIN UNNEST(regexp_split(chr(10) || w.map_roles, '\n-[ \t]+')) AS e(entry)
  UNION ALL
  SELECT w.account_id, w.cluster, w.ref, 'mapUsers',
         NULLIF(regexp_extract(e.entry, '(?:^|\n)\s*userarn:\s*["'']?([^\s"'']+)', 1), ''),
         strpos(e.entry, 'system:masters') > 0
  FROM aws_auth_writes w
  CROSS JOIN UNNEST(regexp_split(chr(10) || w.map_users, '\n-[ \t]+')) AS e(entry)
),
aws_auth_grants AS (
  SELECT w.*, 'aws_auth' AS granted_via, a.grantee, a.map, 'system:masters (' || a.map || ')' AS detail
  FROM aws_auth_writes w
  JOIN aws_auth_entries a ON a.account_id = w.account_id AND a.cluster = w.cluster AND a.ref = w.ref
  WHERE a.masters AND a.grantee IS NOT NULL
),
aws_auth_revokes AS (
  -- a later write of aws-auth that sets the map without the entry, or deletes aws-auth
  SELECT w.*, g.map, g.grantee
  FROM (SELECT DISTINCT account_id, cluster, map, grantee FROM aws_auth_grants) g
  JOIN aws_auth_writes w ON w.account_id = g.account_id AND w.cluster = g.cluster
  LEFT JOIN aws_auth_entries a
    ON a.account_id = w.account_id AND a.cluster = w.cluster AND a.ref = w.ref
   AND a.map = g.map AND a.grantee = g.grantee AND a.masters
  WHERE a.ref IS NULL
    AND (w.action = 'delete'
         OR (g.map = 'mapRoles' AND w.map_roles IS NOT NULL)
         OR (g.map = 'mapUsers' AND w.map_users IS NOT NULL))
),
-- ---- RBAC bindings to cluster-admin, one row per subject
rbac_writes AS (
  SELECT
    in_range.*,
    COALESCE(json_extract_scalar(request_object, '$.roleRef.kind'),
             json_extract_scalar(response_object, '$.roleRef.kind')) AS role_kind,
    COALESCE(json_extract_scalar(request_object, '$.roleRef.name'),
             json_extract_scalar(response_object, '$.roleRef.name')) AS role_name,
    json_format(COALESCE(json_extract(request_object, '$.subjects'),
                         json_extract(response_object, '$.subjects'))) AS subjects
  FROM in_range
  WHERE source = 'rbac_binding'
),
rbac_subjects AS (
  SELECT w.account_id, w.cluster, w.ref,
    CASE json_extract_scalar(s.subject, '$.kind')
      WHEN 'ServiceAccount' THEN 'ServiceAccount '
        || COALESCE(json_extract_scalar(s.subject, '$.namespace'), w.object_namespace, '') || '/'
        || json_extract_scalar(s.subject, '$.name')
      ELSE json_extract_scalar(s.subject, '$.kind') || ' ' || json_extract_scalar(s.subject, '$.name')
    END AS grantee
  FROM rbac_writes w
  CROSS JOIN UNNEST(regexp_extract_all(w.subjects, '\{[^{}]*\}')) AS s(subject)
),
rbac_grants AS (
  SELECT w.*, 'rbac_binding' AS granted_via, s.grantee,
    CASE w.object_resource WHEN 'clusterrolebindings' THEN 'ClusterRoleBinding ' || w.object_name
      ELSE 'RoleBinding ' || w.object_namespace || '/' || w.object_name END || ' to ClusterRole cluster-admin' AS detail
  FROM rbac_writes w
  JOIN rbac_subjects s ON s.account_id = w.account_id AND s.cluster = w.cluster AND s.ref = w.ref
  WHERE w.action <> 'delete' AND w.role_kind = 'ClusterRole' AND w.role_name = 'cluster-admin'
    AND s.grantee IS NOT NULL
),
rbac_revokes AS (
  -- a later delete of the binding, or a write of it whose subjects leave the subject out
  SELECT w.*, g.grantee
  FROM (SELECT DISTINCT account_id, cluster, object_resource, object_namespace, object_name, grantee FROM rbac_grants) g
  JOIN rbac_writes w
    ON w.account_id = g.account_id AND w.cluster = g.cluster AND w.object_resource = g.object_resource
   AND COALESCE(w.object_namespace, '') = COALESCE(g.object_namespace, '') AND w.object_name = g.object_name
  LEFT JOIN rbac_subjects s
    ON s.account_id = w.account_id AND s.cluster = w.cluster AND s.ref = w.ref AND s.grantee = g.grantee
  WHERE w.action = 'delete' OR (w.subjects IS NOT NULL AND s.ref IS NULL)
),
-- ---- every grant and revocation, by what it is about (key)
changes AS (
  SELECT account_id, cluster, 'eks_api ' || grantee || ' ' || policy AS grant_key, TRUE AS grants,
         granted_via, grantee, detail, event_time, ref,
         principal_type, principal_name, principal_arn, role_chain, source_ip, attribution_status
  FROM api_grants
  UNION ALL
  SELECT account_id, cluster, 'eks_api ' || grantee || ' ' || revoked_policy, FALSE,
         NULL, grantee, NULL, event_time, ref, NULL, NULL, NULL, NULL, NULL, NULL
  FROM api_revokes
  UNION ALL
  SELECT account_id, cluster, 'aws_auth ' || map || ' ' || grantee, TRUE,
         granted_via, grantee, detail, event_time, ref,
         principal_type, principal_name, principal_arn, role_chain, source_ip, attribution_status
  FROM aws_auth_grants
  UNION ALL
  SELECT account_id, cluster, 'aws_auth ' || map || ' ' || grantee, FALSE,
         NULL, grantee, NULL, event_time, ref, NULL, NULL, NULL, NULL, NULL, NULL
  FROM aws_auth_revokes
  UNION ALL
  SELECT account_id, cluster,
         'rbac ' || object_resource || ' ' || COALESCE(object_namespace, '') || '/' || object_name || ' ' || grantee, TRUE,
         granted_via, grantee, detail, event_time, ref,
         principal_type, principal_name, principal_arn, role_chain, source_ip, attribution_status
  FROM rbac_grants
  UNION ALL
  SELECT account_id, cluster,
         'rbac ' || object_resource || ' ' || COALESCE(object_namespace, '') || '/' || object_name || ' ' || grantee, FALSE,
         NULL, grantee, NULL, event_time, ref, NULL, NULL, NULL, NULL, NULL, NULL
  FROM rbac_revokes
),
ordered AS (
  SELECT
    changes.*,
    lag(grants) OVER (PARTITION BY account_id, cluster, grant_key ORDER BY event_time, ref) AS prev_grants,
    lag(detail) OVER (PARTITION BY account_id, cluster, grant_key ORDER BY event_time, ref) AS prev_detail
  FROM changes
),
episodes AS (
  -- a grant starts an episode unless the change before it granted the same; a revocation
  -- starts one (of not being granted)
  SELECT
    ordered.*,
    sum(CASE WHEN grants AND prev_grants AND prev_detail = detail THEN 0 ELSE 1 END) OVER (
      PARTITION BY account_id, cluster, grant_key ORDER BY event_time, ref
      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS episode,
    CASE WHEN grants AND prev_grants AND prev_detail = detail THEN 0 ELSE 1 END AS starts
  FROM ordered
),
grants AS (
  SELECT
    episodes.*,
    episode = max(episode) OVER (PARTITION BY account_id, cluster, grant_key) AS last_episode
  FROM episodes
),
deletions AS (
  SELECT account_id, cluster, max(event_time) AS deleted_at
  FROM in_range
  WHERE source = 'eks_api' AND action = 'DeleteCluster'
  GROUP BY account_id, cluster
),
audit_log_offs AS (
  -- each call that turned the audit log off, with the first later one that turned it on
  SELECT account_id, cluster, event_time, principal_name,
    min(CASE WHEN audit_logging_enabled THEN event_time END) OVER (
      PARTITION BY account_id, cluster ORDER BY event_time, ref
      ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING
    ) AS back_on_at,
    audit_logging_enabled
  FROM in_range
  WHERE source = 'eks_api' AND action IN ('UpdateClusterConfig', 'CreateCluster')
    AND audit_logging_enabled IS NOT NULL
),
admins AS (
  SELECT
    g.*,
    g.last_episode AND COALESCE(d.deleted_at < g.event_time, true) AS still_granted,
    o.event_time AS audit_log_off_at,
    o.principal_name AS audit_log_off_by,
    o.back_on_at AS audit_log_back_on_at,
    row_number() OVER (
      PARTITION BY g.account_id, g.cluster, g.grant_key, g.ref ORDER BY o.event_time
    ) AS off_rank
  FROM grants g
  LEFT JOIN deletions d ON d.account_id = g.account_id AND d.cluster = g.cluster
  LEFT JOIN audit_log_offs o
    ON o.account_id = g.account_id AND o.cluster = g.cluster
   AND NOT o.audit_logging_enabled AND o.event_time >= g.event_time
  WHERE g.grants AND g.starts = 1
)
SELECT
  cluster,
  account_id,
  grantee,
  granted_via,
  detail,
  event_time AS granted_at,
  principal_name AS granted_by,
  principal_type AS granted_by_type,
  principal_arn AS granted_by_arn,
  role_chain,
  source_ip,
  still_granted,
  audit_log_off_at,
  audit_log_off_by,
  audit_log_back_on_at,
  attribution_status,
  ref
FROM admins
WHERE off_rank = 1
  AND ? IN ('', grantee)
ORDER BY account_id, cluster, granted_at, grantee
