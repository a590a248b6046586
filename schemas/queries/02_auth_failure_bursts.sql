-- Question: Which principal, from which source IP, produced a burst of failed requests
--           (401 Unauthorized / 403 Forbidden): at least 20 within 5 minutes?
--
-- A burst means credential guessing, a stolen token being tried out, or someone
-- probing what a role may do. Failures are counted per principal and source IP across
-- all accounts and clusters; `clusters` lists where they landed. Requests without an
-- attributed principal (401s have no authenticated user) are grouped by the raw
-- Kubernetes user name, or '(unauthenticated)'.
--
-- Parameters (Athena execution parameters, positional; pass string values in single
-- quotes, e.g. "'2026-11-20'"):
--   1  dt_from   first day to search, 'YYYY-MM-DD' (UTC, inclusive)
--   2  dt_to     last day to search,  'YYYY-MM-DD' (UTC, inclusive)
--
-- Tuning: the threshold (20) and the window (INTERVAL '5' MINUTE) are literals below;
-- Athena allows execution parameters only in WHERE clauses.
--
-- Output: one row per (principal, source IP) whose busiest 5-minute window reached
-- the threshold, busiest first. `peak_failures_5m` is the largest number of failures
-- inside any 5-minute window, `burst_start` the first failure of the first window
-- that reached the threshold.
WITH failures AS (
  SELECT
    event_time, account_id, cluster, audit_id, verb, object_resource, response_code,
    principal_type, principal_arn,
    COALESCE(principal_name, NULLIF(username, ''), '(unauthenticated)') AS principal,
    COALESCE(source_ip, '(none)') AS source_ip,
    user_agent
  FROM eks_audit_attributed
  WHERE dt BETWEEN ? AND ?
    AND response_code IN (401, 403)
    AND stage = 'ResponseComplete'
),
windowed AS (
  SELECT
    failures.*,
    count(*) OVER (
      PARTITION BY principal, source_ip
      ORDER BY event_time
      RANGE BETWEEN CURRENT ROW AND INTERVAL '5' MINUTE FOLLOWING
    ) AS failures_next_5m
  FROM failures
)
SELECT
  principal,
  max(principal_type) AS principal_type,
  max(principal_arn) AS principal_arn,
  source_ip,
  count(*) AS failures,
  max(failures_next_5m) AS peak_failures_5m,
  min(CASE WHEN failures_next_5m >= 20 THEN event_time END) AS burst_start,
  min(event_time) AS first_failure,
  max(event_time) AS last_failure,
  array_join(array_sort(array_agg(DISTINCT CAST(response_code AS varchar))), ', ') AS codes,
  array_join(array_sort(array_agg(DISTINCT account_id || '/' || cluster)), ', ') AS clusters,
  array_join(array_sort(array_agg(DISTINCT verb || ' ' || COALESCE(object_resource, '-'))), ', ') AS attempted,
  array_join(array_sort(array_agg(DISTINCT user_agent)), ', ') AS user_agents
FROM windowed
GROUP BY principal, source_ip
HAVING max(failures_next_5m) >= 20
ORDER BY peak_failures_5m DESC, first_failure
