//! Stage 3, plan lookups: which sessions the batch's rows need from the session store.
//!
//! Rows identified by an access key need the session that issued it (and then each link
//! of its role chain, which only the fetched sessions reveal: see `lookup`). Rows known
//! only by role and session name need the sessions of that pair issued within the
//! window the resolver's lifetime rules give ([`resolver::attribute::issue_window`]).
//! The plan is ordered fairly and deterministically: round-robin over the accounts whose
//! rows need each lookup (the envelope's `owner`, which a member cannot forge), sorted
//! within an account. A batch's lookup budget is then spent first on every account's
//! first needs, so one member sending thousands of unknown keys cannot starve the
//! others, and a retry asks in the same order.

use std::collections::{BTreeMap, BTreeSet};

use resolver::identity::{Identity, RoleSession};

use crate::extract::AuditRow;

/// One role + `{{SessionName}}` lookup and the issue-time window to search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSessionQuery {
    pub role: String,
    pub munged: String,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// What the batch must fetch before attribution.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LookupPlan {
    /// Access keys named by the rows, each once, in fair order.
    pub keys: Vec<String>,
    /// Role + session-name queries, each once, in fair order.
    pub role_sessions: Vec<RoleSessionQuery>,
}

pub fn plan(rows: &[AuditRow<'_>]) -> LookupPlan {
    plan_of(
        rows.iter()
            .map(|r| (r.stamp.account_id, &r.identity, r.event_ms)),
    )
}

/// The plan for (account, identity, event time) triples: the rows of a batch at
/// ingest, or the pending rows of a partition at compaction.
pub fn plan_of<'r, 'a: 'r>(
    rows: impl Iterator<Item = (&'r str, &'r Identity<'a>, i64)>,
) -> LookupPlan {
    // per account: keys, and (role, munged) -> (earliest, latest) event time
    let mut keys: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut pairs: BTreeMap<(&str, &str), (i64, i64)> = BTreeMap::new();
    let mut pair_accounts: BTreeMap<&str, BTreeSet<(&str, &str)>> = BTreeMap::new();
    for (account, identity, event_ms) in rows {
        match identity {
            Identity::AccessKey { key, .. } => {
                keys.entry(account).or_default().insert(key.as_ref());
            }
            Identity::SessionName { candidates } => {
                for RoleSession { role, munged, .. } in candidates {
                    let pair = (role.as_str(), munged.as_ref());
                    let e = pairs.entry(pair).or_insert((event_ms, event_ms));
                    e.0 = e.0.min(event_ms);
                    e.1 = e.1.max(event_ms);
                    pair_accounts.entry(account).or_default().insert(pair);
                }
            }
            _ => {}
        }
    }
    LookupPlan {
        keys: round_robin(&keys).into_iter().map(str::to_string).collect(),
        role_sessions: round_robin(&pair_accounts)
            .into_iter()
            .map(|(role, munged)| {
                let (lo, hi) = pairs[&(role, munged)];
                let (from_ms, to_ms) = resolver::attribute::issue_window(lo, hi);
                RoleSessionQuery {
                    role: role.to_string(),
                    munged: munged.to_string(),
                    from_ms,
                    to_ms,
                }
            })
            .collect(),
    }
}

/// Interleave each account's sorted needs, first of each, then second of each, ...;
/// a need shared by several accounts comes once, at its first turn.
fn round_robin<T: Ord + Copy>(per_account: &BTreeMap<&str, BTreeSet<T>>) -> Vec<T> {
    let mut iters: Vec<_> = per_account.values().map(|s| s.iter()).collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    loop {
        let mut any = false;
        for it in iters.iter_mut() {
            if let Some(&x) = it.next() {
                any = true;
                if seen.insert(x) {
                    out.push(x);
                }
            }
        }
        if !any {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode;
    use crate::extract::extract;
    use crate::testkit::{audit_envelope, event};

    fn rows_json(users: &[(&str, Option<&str>, &str)]) -> String {
        rows_json_of("111122223333", users)
    }

    fn rows_json_of(owner: &str, users: &[(&str, Option<&str>, &str)]) -> String {
        let messages: Vec<String> = users
            .iter()
            .enumerate()
            .map(|(i, (user, key, at))| {
                let mut u = serde_json::json!({"username": user});
                if let Some(k) = key {
                    u["extra"] = serde_json::json!({"accessKeyId": [k]});
                }
                event(
                    &format!("a{i}"),
                    serde_json::json!({"user": u, "requestReceivedTimestamp": at}),
                )
            })
            .collect();
        audit_envelope(owner, &messages)
    }

    #[test]
    fn keys_once_and_role_sessions_with_the_lifetime_window() {
        let role_user = "arn:aws:sts::111122223333:assumed-role/ops/alice";
        let json = rows_json(&[
            (role_user, Some("ASIAKEYB"), "2024-11-26T10:00:00Z"),
            (role_user, Some("ASIAKEYA"), "2024-11-26T10:00:00Z"),
            (role_user, Some("ASIAKEYB"), "2024-11-26T10:00:00Z"),
            (role_user, None, "2024-11-26T10:00:00Z"),
            (role_user, None, "2024-11-26T12:00:00Z"),
            ("system:serviceaccount:a:b", None, "2024-11-26T10:00:00Z"),
        ]);
        let envs = decode::envelopes(json.as_bytes()).unwrap();
        let x = extract(&envs, crate::extract::Context::new(None));
        let p = plan(&x.rows);
        assert_eq!(p.keys, vec!["ASIAKEYA", "ASIAKEYB"]);
        assert_eq!(p.role_sessions.len(), 1);
        let q = &p.role_sessions[0];
        assert_eq!(q.role, "arn:aws:iam::111122223333:role/ops");
        assert_eq!(q.munged, "alice");
        let ten = resolver::time::parse_rfc3339_ms("2024-11-26T10:00:00Z").unwrap();
        let noon = ten + 2 * 3_600_000;
        assert_eq!(
            (q.from_ms, q.to_ms),
            resolver::attribute::issue_window(ten, noon)
        );
        assert!(q.from_ms <= ten - resolver::attribute::MAX_SESSION_MS);
        assert!(q.to_ms > noon);
        assert_eq!(plan(&[]), LookupPlan::default());
    }

    #[test]
    fn one_account_with_many_keys_cannot_push_the_others_back() {
        let role_user = "arn:aws:sts::111122223333:assumed-role/ops/alice";
        let mk = |owner: &str, keys: &[&str]| {
            let users: Vec<(&str, Option<&str>, &str)> = keys
                .iter()
                .map(|k| (role_user, Some(*k), "2024-11-26T10:00:00Z"))
                .collect();
            rows_json_of(owner, &users)
        };
        let hostile: Vec<String> = (0..50).map(|i| format!("AAAAHOSTILE{i:04}")).collect();
        let hk: Vec<&str> = hostile.iter().map(String::as_str).collect();
        let docs = [
            mk("999999999999", &hk),
            mk("111122223333", &["ASIAREAL1", "ASIAREAL2"]),
        ];
        let envs: Vec<_> = docs
            .iter()
            .map(|d| decode::envelopes(d.as_bytes()).unwrap())
            .collect();
        let rows: Vec<_> = envs
            .iter()
            .flat_map(|e| extract(e, crate::extract::Context::new(None)).rows)
            .collect();
        let p = plan(&rows);
        assert_eq!(p.keys.len(), 52);
        // the honest account's keys are among the first four asked
        assert_eq!(
            &p.keys[..4],
            [
                "ASIAREAL1",
                "AAAAHOSTILE0000",
                "ASIAREAL2",
                "AAAAHOSTILE0001"
            ]
        );
    }
}
