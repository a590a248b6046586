//! Which CloudTrail sources may feed the session index.
//!
//! A member account controls every byte its log groups send, including CloudTrail-shaped
//! JSON in a log group of its own. Only the envelope's `owner` (stamped by CloudWatch
//! Logs) and `logGroup` identify the source, so STS records count only from the
//! (account, log group) pairs the operator names in `AUDITLAKE_TRUSTED_TRAILS`: the
//! organisation trail's CloudWatch Logs group, and any other trail they trust.
//! Docs: <https://docs.aws.amazon.com/awscloudtrail/latest/userguide/send-cloudtrail-events-to-cloudwatch-logs.html>

use std::collections::BTreeSet;

/// Log group names: 1-512 characters of `[.\-_/#A-Za-z0-9]`.
/// Docs: <https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_CreateLogGroup.html>
pub fn valid_log_group(name: &str) -> bool {
    (1..=512).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/' | b'#'))
}

/// The trusted (account, log group) pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedTrails {
    pairs: BTreeSet<(String, String)>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TrustError {
    #[error("entry {index} ({entry:?}) is not <12-digit account id>:<log group name>")]
    Malformed { index: usize, entry: String },
}

impl TrustedTrails {
    /// Trust nothing (the default): no STS record is indexed.
    pub const fn none() -> Self {
        Self {
            pairs: BTreeSet::new(),
        }
    }

    /// Parse `<account_id>:<log group>[,<account_id>:<log group>...]` (spaces around
    /// entries ignored, empty entries not allowed).
    pub fn parse(s: &str) -> Result<Self, TrustError> {
        let mut pairs = BTreeSet::new();
        for (index, entry) in s.split(',').enumerate() {
            let e = entry.trim();
            let bad = || TrustError::Malformed {
                index,
                entry: entry.to_string(),
            };
            let (acct, group) = e.split_once(':').ok_or_else(bad)?;
            if !resolver::arn::is_account_id(acct) || !valid_log_group(group) {
                return Err(bad());
            }
            pairs.insert((acct.to_string(), group.to_string()));
        }
        Ok(Self { pairs })
    }

    /// Add one source (the CLI's own backfill marker, the demo's trail).
    pub fn with(mut self, account: &str, log_group: &str) -> Self {
        self.pairs
            .insert((account.to_string(), log_group.to_string()));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Does an envelope from `owner`'s `log_group` come from a trusted trail?
    pub fn trusts(&self, owner: &str, log_group: &str) -> bool {
        // no allocation per envelope: compare against each pair (a handful)
        self.pairs.iter().any(|(a, g)| a == owner && g == log_group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_rejects_anything_else() {
        let t = TrustedTrails::parse(
            "111111111111:aws-cloudtrail-logs-o-abc123, 222222222222:/org/trail#1",
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        assert!(t.trusts("111111111111", "aws-cloudtrail-logs-o-abc123"));
        assert!(t.trusts("222222222222", "/org/trail#1"));
        assert!(!t.trusts("333333333333", "aws-cloudtrail-logs-o-abc123"));
        assert!(!t.trusts("111111111111", "aws-cloudtrail-logs-o-abc12"));
        for bad in [
            "",
            "111111111111",
            "111111111111:",
            ":group",
            "11111111111:group",
            "1111111111112:group",
            "abcdefghijkl:group",
            "111111111111:group with space",
            "111111111111:a,",
            "111111111111:a,,222222222222:b",
            "111111111111:gr\u{e9}up",
        ] {
            assert!(TrustedTrails::parse(bad).is_err(), "{bad:?}");
        }
        assert!(TrustedTrails::none().is_empty());
        assert!(!TrustedTrails::none().trusts("111111111111", "g"));
        let long = format!("111111111111:{}", "g".repeat(513));
        assert!(TrustedTrails::parse(&long).is_err());
    }
}
