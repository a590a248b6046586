//! Stage 5, partition: group a batch's rows into the lake's partitions, sort each by
//! event time, and name its object.
//!
//! `eks_audit` partitions are (UTC day, account, cluster); `sts_sessions` partitions are
//! (UTC day, recipient account). Object keys hash the batch's record ids with the
//! partition path: a Firehose retry of the same batch overwrites instead of duplicating.
//! Every folder in a key was validated (or replaced by `_invalid_`) by extraction.

use std::collections::BTreeMap;

use resolver::StsSession;

use crate::extract::{ApiRow, AuditRow, INVALID};
use crate::finding::Finding;

pub const DAY_MS: i64 = 86_400_000;

/// One object to write: its key and the positions of its rows, sorted by event time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub key: String,
    pub rows: Vec<usize>,
}

/// A stable fingerprint of a batch: its record ids. A Firehose retry carries the same
/// ids, so it gets the same object keys and overwrites.
pub fn batch_fingerprint<'a>(ids: impl Iterator<Item = &'a str>) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for id in ids {
        h.update(id.as_bytes());
        h.update(b"\n");
    }
    h.digest()
}

/// `<table>/dt=YYYY-MM-DD/<folders...>/part-<hash>.parquet`
pub fn object_key(table: &str, fingerprint: u64, day: i64, folders: &[&str]) -> String {
    let dt = resolver::time::utc_date(day * DAY_MS);
    let mut path = format!("{table}/dt={dt}");
    for f in folders {
        path.push('/');
        path.push_str(f);
    }
    let h = xxhash_rust::xxh3::xxh3_64_with_seed(path.as_bytes(), fingerprint);
    format!("{path}/part-{h:016x}.parquet")
}

/// `eks_audit` partitions of `rows`, in key order.
#[inline(never)] // a stage of the instruction profile (bench --instructions)
pub fn audit_partitions(rows: &[AuditRow<'_>], fingerprint: u64) -> Vec<Partition> {
    let mut parts: BTreeMap<(i64, &str, &str), Vec<usize>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        parts.entry(r.partition()).or_default().push(i);
    }
    let mut out: Vec<Partition> = parts
        .into_iter()
        .map(|((day, account, cluster), mut idx)| {
            idx.sort_by_key(|&i| rows[i].event_ms);
            Partition {
                key: object_key("eks_audit", fingerprint, day, &[account, cluster]),
                rows: idx,
            }
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// Which records to fail back because they would take their account past `max`
/// distinct `eks_audit` partitions (so objects) in this batch, in record order. One
/// record spreading events over thousands of days must not make the batch write
/// thousands of files; the limit is per account (the envelope `owner`, which a member
/// cannot forge), so one member's records never push another's out. Records whose
/// partitions are already open, or that fit, still go through.
pub fn over_partition_budget<'r, 'a: 'r>(
    records: impl Iterator<Item = &'r [AuditRow<'a>]>,
    max: usize,
) -> Vec<bool> {
    use std::collections::{HashMap, HashSet};
    type Part<'p> = (i64, &'p str, &'p str);
    let mut open: HashMap<&str, HashSet<Part<'_>>> = HashMap::new();
    let mut out = Vec::new();
    for rows in records {
        let mut new: HashMap<&str, HashSet<Part<'_>>> = HashMap::new();
        // a record is one log group, so its rows share a partition but at a day's end:
        // hash only when it changes (hashing every row was 0.8 % of a batch, serial)
        let mut last = None;
        for r in rows {
            let p = r.partition();
            if last == Some(p) {
                continue;
            }
            last = Some(p);
            if !open.get(p.1).is_some_and(|o| o.contains(&p)) {
                new.entry(p.1).or_default().insert(p);
            }
        }
        let over = new
            .iter()
            .any(|(acct, n)| open.get(acct).map_or(0, HashSet::len) + n.len() > max);
        if !over {
            for (acct, n) in new {
                open.entry(acct).or_default().extend(n);
            }
        }
        out.push(over);
    }
    out
}

/// `findings` partitions: the batch's findings by (event day, account), each in event
/// order (then in the order given: row, then rule), keyed like the other tables.
pub fn findings_partitions(findings: &[Finding<'_>], fingerprint: u64) -> Vec<Partition> {
    let mut parts: BTreeMap<(i64, &str), Vec<usize>> = BTreeMap::new();
    for (i, f) in findings.iter().enumerate() {
        parts
            .entry((f.event_ms.div_euclid(DAY_MS), f.account_folder))
            .or_default()
            .push(i);
    }
    parts
        .into_iter()
        .map(|((day, acct), mut idx)| {
            idx.sort_by_key(|&i| (findings[i].event_ms, i));
            Partition {
                key: object_key("findings", fingerprint, day, &[acct]),
                rows: idx,
            }
        })
        .collect()
}

/// `eks_api_events` partitions: (event day, account), each in event order.
pub fn api_partitions(rows: &[ApiRow<'_>], fingerprint: u64) -> Vec<Partition> {
    let mut parts: BTreeMap<(i64, &str), Vec<usize>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        parts.entry(r.partition()).or_default().push(i);
    }
    parts
        .into_iter()
        .map(|((day, acct), mut idx)| {
            idx.sort_by_key(|&i| (rows[i].event.event_ms, i));
            Partition {
                key: object_key("eks_api_events", fingerprint, day, &[acct]),
                rows: idx,
            }
        })
        .collect()
}

/// `sts_sessions` partitions of `sessions`, in key order.
pub fn sts_partitions<S: AsRef<StsSession>>(sessions: &[S], fingerprint: u64) -> Vec<Partition> {
    let mut parts: BTreeMap<(i64, &str), Vec<usize>> = BTreeMap::new();
    for (i, s) in sessions.iter().enumerate() {
        let s = s.as_ref();
        let acct = s.account().unwrap_or(INVALID);
        parts
            .entry((s.event_time_ms.div_euclid(DAY_MS), acct))
            .or_default()
            .push(i);
    }
    let mut out: Vec<Partition> = parts
        .into_iter()
        .map(|((day, acct), mut idx)| {
            idx.sort_by_key(|&i| sessions[i].as_ref().event_time_ms);
            Partition {
                key: object_key("sts_sessions", fingerprint, day, &[acct]),
                rows: idx,
            }
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode;
    use crate::extract::extract;
    use crate::testkit::{audit_envelope, event};

    #[test]
    fn object_keys_are_deterministic_per_batch_and_partition() {
        let f1 = batch_fingerprint(["a", "b"].into_iter());
        let f2 = batch_fingerprint(["a", "c"].into_iter());
        let k = |f| object_key("eks_audit", f, 20053, &["111122223333", "prod"]);
        assert_eq!(k(f1), k(f1));
        assert_ne!(k(f1), k(f2));
        assert!(k(f1).starts_with("eks_audit/dt=2024-11-26/111122223333/prod/part-"));
        assert!(k(f1).ends_with(".parquet"));
        assert_ne!(
            object_key("eks_audit", f1, 20053, &["111122223333", "a"]),
            object_key("eks_audit", f1, 20053, &["111122223333", "b"])
        );
    }

    fn record(days: std::ops::Range<i64>) -> String {
        record_of("111122223333", days)
    }

    fn record_of(owner: &str, days: std::ops::Range<i64>) -> String {
        let messages: Vec<String> = days
            .map(|d| {
                let at = resolver::time::utc_date(d * DAY_MS) + "T00:00:00Z";
                event(
                    &format!("{d}"),
                    serde_json::json!({"requestReceivedTimestamp": at}),
                )
            })
            .collect();
        audit_envelope(owner, &messages)
    }

    /// Which of these records (envelope documents) are over a budget of `max`.
    fn over(records: &[String], max: usize) -> Vec<bool> {
        let envs: Vec<_> = records
            .iter()
            .map(|j| decode::envelopes(j.as_bytes()).unwrap())
            .collect();
        let xs: Vec<_> = envs
            .iter()
            .map(|e| extract(e, crate::extract::Context::new(None)))
            .collect();
        over_partition_budget(xs.iter().map(|x| x.rows.as_slice()), max)
    }

    #[test]
    fn a_record_spreading_over_thousands_of_days_is_over_the_partition_budget() {
        let records = [record(0..2), record(100..3100), record(0..2), record(2..5)];
        assert_eq!(over(&records, 10), [false, true, false, false]);
        assert_eq!(
            over(&records, 4),
            [false, true, false, true],
            "2 open + 3 new > 4"
        );
        // another account's records have a budget of their own
        let records = [record(0..4), record_of("444455556666", 0..4), record(4..5)];
        assert_eq!(over(&records, 4), [false, false, true]);
    }

    #[test]
    fn rows_split_by_day_and_sort_by_event_time() {
        let at = [
            "2024-11-26T10:00:02Z",
            "2024-11-27T00:00:00Z",
            "2024-11-26T10:00:01Z",
            "2024-11-26T23:59:59.999Z",
        ];
        let messages: Vec<String> = at
            .iter()
            .enumerate()
            .map(|(i, t)| {
                event(
                    &format!("{i}"),
                    serde_json::json!({"requestReceivedTimestamp": t}),
                )
            })
            .collect();
        let json = audit_envelope("111122223333", &messages);
        let envs = decode::envelopes(json.as_bytes()).unwrap();
        let x = extract(&envs, crate::extract::Context::new(None));
        let p = audit_partitions(&x.rows, 7);
        assert_eq!(p.len(), 2);
        assert!(p[0].key.contains("dt=2024-11-26/111122223333/prod/"));
        assert_eq!(p[0].rows, vec![2, 0, 3]);
        assert!(p[1].key.contains("dt=2024-11-27/"));
        assert_eq!(p[1].rows, vec![1]);
        assert_eq!(audit_partitions(&x.rows, 7), p, "deterministic");
    }
}
