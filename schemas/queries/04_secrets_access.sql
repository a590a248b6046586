-- Question: Who read Secrets (get, list, watch), in which clusters and namespaces,
--           and how much of it was allowed?
--
-- Controllers and node agents read secrets all the time; look for people, anonymous
-- callers, unusual service accounts, list/watch across many namespaces, and denied
-- reads. A long-running watch is logged at ResponseStarted and ResponseComplete with
-- one audit ID, so requests are counted by distinct audit ID.
--
-- Parameters (Athena execution parameters, positional; pass string values in single
-- quotes, e.g. "'2026-11-20'"):
--   1  dt_from   first day to search, 'YYYY-MM-DD' (UTC, inclusive)
--   2  dt_to     last day to search,  'YYYY-MM-DD' (UTC, inclusive)
--
-- Output: one row per principal and cluster, most allowed reads first. Requests
-- without an attributed principal are grouped by the raw Kubernetes user name.
WITH secret_reads AS (
  SELECT
    event_time, account_id, cluster, audit_id, verb,
    object_namespace, object_name, response_code, authz_decision,
    principal_type, principal_arn,
    COALESCE(principal_name, username) AS principal,
    source_ip
  FROM eks_audit_attributed
  WHERE dt BETWEEN ? AND ?
    AND object_resource = 'secrets'
    AND verb IN ('get', 'list', 'watch')
)
SELECT
  principal,
  max(principal_type) AS principal_type,
  max(principal_arn) AS principal_arn,
  account_id,
  cluster,
  count(DISTINCT audit_id) AS requests,
  count(DISTINCT CASE WHEN authz_decision = 'allow' AND response_code < 400 THEN audit_id END) AS allowed,
  count(DISTINCT CASE WHEN response_code IN (401, 403) OR authz_decision = 'forbid' THEN audit_id END) AS denied,
  count(DISTINCT CASE WHEN verb = 'get' THEN audit_id END) AS gets,
  count(DISTINCT CASE WHEN verb = 'list' THEN audit_id END) AS lists,
  count(DISTINCT CASE WHEN verb = 'watch' THEN audit_id END) AS watches,
  array_join(array_sort(array_agg(DISTINCT COALESCE(object_namespace, '(all namespaces)'))), ', ') AS namespaces,
  count(DISTINCT object_name) AS named_secrets,
  array_join(array_sort(array_agg(DISTINCT source_ip)), ', ') AS source_ips,
  min(event_time) AS first_seen,
  max(event_time) AS last_seen
FROM secret_reads
GROUP BY principal, account_id, cluster
ORDER BY allowed DESC, requests DESC, principal
