-- Question: What did one person (or one workload) do, across every account and cluster,
--           in a time window?
--
-- The person is the origin of the session, as attributed: an IAM user, an IAM Identity
-- Center / SAML user, a web identity, a Kubernetes workload (Pod Identity, IRSA), an EC2
-- instance, a Lambda function ... however many roles they chained through and whichever
-- accounts those roles were in. Pass the exact principal_arn and principal_name that the
-- other playbook queries print ('' for principal_arn when they print none):
--   IAM user                principal_arn arn:aws:iam::444444444444:user/bob,
--                           principal_name bob
--   Identity Center user    principal_arn the account's AWSSSO_... saml-provider ARN,
--                           principal_name the user's name, e.g. alice@example.com
--   web identity (CI)       principal_arn the OIDC provider ARN,
--                           principal_name the token subject, e.g. repo:org/repo:ref:...
--   Pod Identity workload   principal_arn the cluster ARN the pod runs in,
--                           principal_name <namespace>:<service account>
--   IRSA workload           principal_arn the cluster's OIDC provider ARN,
--                           principal_name <namespace>:<service account>
--   EC2 instance / Lambda   principal_arn '', principal_name the instance id or
--                           lambda:<function>
-- The role used in each request is in via_role, the whole chain in role_chain (first
-- role first), and source_identity if the first AssumeRole set one.
--
-- Parameters (Athena execution parameters, positional; pass string values in single
-- quotes, e.g. "'2026-11-20'"):
--   1  dt_from         first day to search, 'YYYY-MM-DD' (UTC, inclusive); must cover the window
--   2  dt_to           last day to search,  'YYYY-MM-DD' (UTC, inclusive); must cover the window
--   3  principal_arn   e.g. 'arn:aws:iam::444444444444:user/bob', or '' when none
--   4  principal_name  e.g. 'bob'
--   5  window_start    'YYYY-MM-DD HH:MM:SS' (UTC, inclusive)
--   6  window_end      'YYYY-MM-DD HH:MM:SS' (UTC, exclusive)
--
-- Output: one row per request (deduplicated by audit ID: exec, attach, port-forward
-- and watch log two stages), in time order. Requests still `pending` or `ambiguous`
-- carry no principal and cannot match; look for them by via_role and time.
WITH requests AS (
  SELECT
    event_time, account_id, cluster, audit_id, stage, verb, request_uri,
    object_resource, object_subresource, object_namespace, object_name,
    response_code, authz_decision,
    principal_type, principal_name, principal_arn, principal_account_id, aws_role_arn,
    role_chain, source_identity, attribution_method, attribution_status,
    principal_cluster, principal_pod, principal_user_id,
    source_ip, user_agent,
    row_number() OVER (
      PARTITION BY account_id, cluster, audit_id
      ORDER BY CASE stage WHEN 'ResponseComplete' THEN 0 ELSE 1 END, stage_time DESC
    ) AS stage_rank
  FROM eks_audit_attributed
  WHERE dt BETWEEN ? AND ?
    AND COALESCE(principal_arn, '') = ?
    AND principal_name = ?
    AND event_time >= CAST(? AS timestamp)
    AND event_time < CAST(? AS timestamp)
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
  authz_decision,
  source_ip,
  user_agent,
  principal_type,
  principal_name,
  principal_arn,
  principal_account_id,
  principal_cluster,
  principal_pod,
  principal_user_id,
  aws_role_arn AS via_role,
  role_chain,
  source_identity,
  attribution_method,
  attribution_status,
  audit_id
FROM requests
WHERE stage_rank = 1
ORDER BY event_time, account_id, cluster
