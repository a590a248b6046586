//! Configuration, read once at start into a validated struct. The Lambda and the CLI
//! read the same variables (DESIGN 4a); a bad value fails start with its name.

use resolver::workload::IssuerClusters;
use transformer::decode::DEFAULT_MAX_DECOMPRESSED;
use transformer::handler::Budget;
use transformer::sigma::Severity;
use transformer::trust::TrustedTrails;

use crate::lake::LakeUri;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{name}: {why}")]
    Invalid { name: &'static str, why: String },
    #[error("{0} is not set")]
    Missing(&'static str),
}

pub const ENV_LAKE: &str = "AUDITLAKE_LAKE";
pub const ENV_AWS_AUTH: &str = "AUDITLAKE_AWS_AUTH";
pub const ENV_RAW_ARCHIVE: &str = "AUDITLAKE_RAW_ARCHIVE";
pub const ENV_MAX_DECOMPRESSED_MB: &str = "AUDITLAKE_MAX_DECOMPRESSED_MB";
pub const ENV_TRUSTED_TRAILS: &str = "AUDITLAKE_TRUSTED_TRAILS";
pub const ENV_MAX_BATCH_DECOMPRESSED_MB: &str = "AUDITLAKE_MAX_BATCH_DECOMPRESSED_MB";
pub const ENV_MAX_BATCH_PARTITIONS: &str = "AUDITLAKE_MAX_BATCH_PARTITIONS";
pub const ENV_MAX_BATCH_LOOKUPS: &str = "AUDITLAKE_MAX_BATCH_LOOKUPS";
pub const ENV_OIDC_CLUSTERS: &str = "AUDITLAKE_OIDC_CLUSTERS";
pub const ENV_SESSION_TABLE: &str = "AUDITLAKE_SESSION_TABLE";
pub const ENV_RULES: &str = "AUDITLAKE_RULES";
pub const ENV_ALERT_BUS: &str = "AUDITLAKE_ALERT_BUS";
pub const ENV_ALERT_SEVERITY: &str = "AUDITLAKE_ALERT_SEVERITY";
pub const ENV_ORG_ACCOUNTS: &str = "AUDITLAKE_ORG_ACCOUNTS";

/// The organisation's account ids (`AUDITLAKE_ORG_ACCOUNTS`: comma-separated 12-digit
/// ids): the rules' `%org_accounts%` placeholder. Unset or empty: none (the rules
/// that need the list are off).
pub fn org_accounts(v: Option<&str>) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for (i, a) in v.unwrap_or_default().split(',').enumerate() {
        let a = a.trim();
        if a.is_empty() {
            continue;
        }
        if !resolver::arn::is_account_id(a) {
            return Err(ConfigError::Invalid {
                name: ENV_ORG_ACCOUNTS,
                why: format!("entry {i} ({a:?}) is not a 12-digit account id"),
            });
        }
        if !out.iter().any(|o| o == a) {
            out.push(a.to_owned());
        }
    }
    Ok(out)
}

/// The `|expand` placeholders of the rules, from the configuration.
pub fn placeholders(org_accounts: &[String]) -> transformer::sigma::Placeholders {
    transformer::sigma::Placeholders::default().with("org_accounts", org_accounts.to_vec())
}

/// Where the operator's own Sigma rules are (on top of the shipped pack).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulesSource {
    /// Every `*.yml`/`*.yaml` file under a directory (recursive).
    Dir(std::path::PathBuf),
    /// Every `*.yml`/`*.yaml` object under `s3://bucket/prefix`.
    S3 { bucket: String, prefix: String },
}

/// Where the operator's rules are: a directory, or `s3://bucket/prefix`; unset or
/// empty: none.
pub fn rules_source(v: Option<&str>) -> Result<Option<RulesSource>, ConfigError> {
    let v = v.unwrap_or_default().trim();
    if v.is_empty() {
        return Ok(None);
    }
    Ok(Some(match v.strip_prefix("s3://") {
        Some(rest) => {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(ConfigError::Invalid {
                    name: ENV_RULES,
                    why: format!("{v:?} is not s3://bucket/prefix"),
                });
            }
            RulesSource::S3 {
                bucket: bucket.into(),
                prefix: prefix.into(),
            }
        }
        None => RulesSource::Dir(v.into()),
    }))
}

/// Where alerts go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertTarget {
    /// An EventBridge bus, by name or ARN.
    EventBridge(String),
    /// `file://<dir>`: JSON Lines files in a local directory (local runs, tests).
    Dir(std::path::PathBuf),
}

/// Where the aws-auth `mapRoles` come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsAuthSource {
    File(std::path::PathBuf),
    S3 { bucket: String, key: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub lake: LakeUri,
    pub aws_auth: Option<AwsAuthSource>,
    pub raw_archive: bool,
    pub max_decompressed: usize,
    /// Unset: no trail is trusted (no STS record is indexed).
    pub trusted_trails: TrustedTrails,
    /// EKS OIDC issuer id -> cluster name, for IRSA workloads (optional).
    pub issuer_clusters: IssuerClusters,
    /// DynamoDB table of the session index; unset: the lake's `session_index/`.
    pub session_table: Option<String>,
    pub budget: Budget,
    pub rules: Option<RulesSource>,
    pub alert_target: Option<AlertTarget>,
    pub alert_severity: Severity,
    /// `AUDITLAKE_ORG_ACCOUNTS`: the organisation's accounts (rules' `%org_accounts%`).
    pub org_accounts: Vec<String>,
}

impl Config {
    /// Read the configuration through `var` (the process environment in binaries).
    /// `lake_default` applies when `AUDITLAKE_LAKE` is unset (the CLI's `./lake`).
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        lake_override: Option<&str>,
        lake_default: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let lake_s = lake_override
            .map(str::to_string)
            .or_else(|| var(ENV_LAKE).filter(|s| !s.is_empty()))
            .or_else(|| lake_default.map(str::to_string))
            .ok_or(ConfigError::Missing(ENV_LAKE))?;
        let lake = LakeUri::parse(&lake_s).map_err(|e| ConfigError::Invalid {
            name: ENV_LAKE,
            why: e.to_string(),
        })?;
        let raw_archive = match var(ENV_RAW_ARCHIVE).as_deref().map(str::trim) {
            None | Some("") => true,
            Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => true,
            Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => false,
            Some(v) => {
                return Err(ConfigError::Invalid {
                    name: ENV_RAW_ARCHIVE,
                    why: format!("expected true or false, got {v:?}"),
                })
            }
        };
        let aws_auth = match var(ENV_AWS_AUTH).filter(|s| !s.is_empty()) {
            None => None,
            Some(v) => Some(match v.strip_prefix("s3://") {
                Some(rest) => match rest.split_once('/') {
                    Some((b, k)) if !b.is_empty() && !k.is_empty() => AwsAuthSource::S3 {
                        bucket: b.to_string(),
                        key: k.to_string(),
                    },
                    _ => {
                        return Err(ConfigError::Invalid {
                            name: ENV_AWS_AUTH,
                            why: format!("{v:?} is not s3://bucket/key"),
                        })
                    }
                },
                None => AwsAuthSource::File(v.into()),
            }),
        };
        let max_decompressed = number(
            &var,
            ENV_MAX_DECOMPRESSED_MB,
            1..=1024,
            DEFAULT_MAX_DECOMPRESSED >> 20,
        )? << 20;
        let trusted_trails = match var(ENV_TRUSTED_TRAILS).filter(|s| !s.trim().is_empty()) {
            None => TrustedTrails::none(),
            Some(v) => TrustedTrails::parse(&v).map_err(|e| ConfigError::Invalid {
                name: ENV_TRUSTED_TRAILS,
                why: e.to_string(),
            })?,
        };
        let issuer_clusters = IssuerClusters::parse(&var(ENV_OIDC_CLUSTERS).unwrap_or_default())
            .map_err(|e| ConfigError::Invalid {
                name: ENV_OIDC_CLUSTERS,
                why: e.to_string(),
            })?;
        let session_table = match var(ENV_SESSION_TABLE).map(|v| v.trim().to_string()) {
            None => None,
            Some(v) if v.is_empty() => None,
            // DynamoDB table names: 3-255 of [A-Za-z0-9_.-]
            Some(v)
                if (3..=255).contains(&v.len())
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) =>
            {
                Some(v)
            }
            Some(v) => {
                return Err(ConfigError::Invalid {
                    name: ENV_SESSION_TABLE,
                    why: format!("{v:?} is not a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)"),
                })
            }
        };
        let d = Budget::default();
        let budget = Budget {
            decompressed: number(
                &var,
                ENV_MAX_BATCH_DECOMPRESSED_MB,
                1..=10240,
                d.decompressed >> 20,
            )? << 20,
            partitions: number(&var, ENV_MAX_BATCH_PARTITIONS, 1..=100_000, d.partitions)?,
            lookups: number(&var, ENV_MAX_BATCH_LOOKUPS, 0..=1_000_000, d.lookups)?,
        };
        if budget.decompressed < max_decompressed {
            return Err(ConfigError::Invalid {
                name: ENV_MAX_BATCH_DECOMPRESSED_MB,
                why: format!(
                    "{} MiB is less than one record may hold ({ENV_MAX_DECOMPRESSED_MB} = {} MiB)",
                    budget.decompressed >> 20,
                    max_decompressed >> 20
                ),
            });
        }
        let rules = rules_source(var(ENV_RULES).as_deref())?;
        let org_accounts = org_accounts(var(ENV_ORG_ACCOUNTS).as_deref())?;
        let alert_target = match var(ENV_ALERT_BUS).map(|v| v.trim().to_string()) {
            None => None,
            Some(v) if v.is_empty() => None,
            Some(v) => match v.strip_prefix("file://") {
                Some(dir) if !dir.trim().is_empty() => Some(AlertTarget::Dir(dir.into())),
                Some(_) => {
                    return Err(ConfigError::Invalid {
                        name: ENV_ALERT_BUS,
                        why: "file:// needs a directory (file:///path/to/alerts)".into(),
                    })
                }
                // bus names: 1-256 of [/.-_A-Za-z0-9]; ARNs add ':'
                _ if v.len() <= 1600
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"/._-:".contains(&b)) =>
                {
                    Some(AlertTarget::EventBridge(v))
                }
                _ => {
                    return Err(ConfigError::Invalid {
                        name: ENV_ALERT_BUS,
                        why: format!(
                            "{v:?} is neither an EventBridge bus name or ARN nor file://<directory>"
                        ),
                    })
                }
            },
        };
        let alert_severity = match var(ENV_ALERT_SEVERITY).map(|v| v.trim().to_ascii_lowercase()) {
            None => Severity::High,
            Some(v) if v.is_empty() => Severity::High,
            Some(v) => Severity::parse(&v).ok_or_else(|| ConfigError::Invalid {
                name: ENV_ALERT_SEVERITY,
                why: format!("{v:?} is not one of informational, low, medium, high, critical"),
            })?,
        };
        Ok(Self {
            lake,
            aws_auth,
            raw_archive,
            max_decompressed,
            trusted_trails,
            issuer_clusters,
            session_table,
            budget,
            rules,
            alert_target,
            alert_severity,
            org_accounts,
        })
    }

    /// The log line a start without trusted trails prints once.
    pub fn trust_warning(&self) -> Option<String> {
        self.trusted_trails.is_empty().then(|| {
            format!(
                "{ENV_TRUSTED_TRAILS} is not set: no CloudTrail log group is trusted, so no STS \
                 session is indexed and access keys stay pending"
            )
        })
    }

    pub fn from_env(
        lake_override: Option<&str>,
        lake_default: Option<&str>,
    ) -> Result<Self, ConfigError> {
        Self::from_vars(|n| std::env::var(n).ok(), lake_override, lake_default)
    }
}

/// An unsigned number variable within `range`, or `default` when unset.
pub(crate) fn number(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    range: std::ops::RangeInclusive<usize>,
    default: usize,
) -> Result<usize, ConfigError> {
    match var(name) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(ConfigError::Invalid {
                name,
                why: format!(
                    "expected a whole number in {}..={}, got {v:?}",
                    range.start(),
                    range.end()
                ),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(|n| m.get(n).cloned(), None, None)
    }

    #[test]
    fn validates_every_variable() {
        assert_eq!(cfg(&[]), Err(ConfigError::Missing(ENV_LAKE)));
        let c = cfg(&[(ENV_LAKE, "s3://lake-bucket/p")]).unwrap();
        assert!(c.raw_archive);
        assert_eq!(c.max_decompressed, DEFAULT_MAX_DECOMPRESSED);
        let c = cfg(&[
            (ENV_LAKE, "/tmp/l"),
            (ENV_RAW_ARCHIVE, "false"),
            (ENV_AWS_AUTH, "s3://cfg/aws-auth.yaml"),
            (ENV_MAX_DECOMPRESSED_MB, "8"),
        ])
        .unwrap();
        assert!(!c.raw_archive);
        assert_eq!(c.max_decompressed, 8 << 20);
        assert_eq!(
            c.aws_auth,
            Some(AwsAuthSource::S3 {
                bucket: "cfg".into(),
                key: "aws-auth.yaml".into()
            })
        );
        let c = cfg(&[
            (ENV_LAKE, "/l"),
            (
                ENV_TRUSTED_TRAILS,
                "111111111111:aws-cloudtrail-logs-o-1, 222222222222:t",
            ),
            (ENV_MAX_BATCH_DECOMPRESSED_MB, "64"),
            (ENV_MAX_BATCH_LOOKUPS, "0"),
            (ENV_OIDC_CLUSTERS, "ABC123=ci-tools"),
        ])
        .unwrap();
        assert_eq!(c.issuer_clusters.get("abc123"), Some("ci-tools"));
        assert_eq!(c.session_table, None);
        let t = cfg(&[
            (ENV_LAKE, "/l"),
            (ENV_SESSION_TABLE, "eks-audit-lake-sessions"),
        ])
        .unwrap();
        assert_eq!(t.session_table.as_deref(), Some("eks-audit-lake-sessions"));
        assert!(c.trusted_trails.trusts("222222222222", "t"));
        assert_eq!(c.trust_warning(), None);
        assert_eq!(c.budget.decompressed, 64 << 20);
        assert_eq!(c.budget.lookups, 0);
        assert!(cfg(&[(ENV_LAKE, "/l")]).unwrap().trust_warning().is_some());
        for bad in [
            vec![(ENV_LAKE, "gs://x/y")],
            vec![(ENV_LAKE, "/l"), (ENV_RAW_ARCHIVE, "yes")],
            vec![(ENV_LAKE, "/l"), (ENV_AWS_AUTH, "s3://only-bucket")],
            vec![(ENV_LAKE, "/l"), (ENV_MAX_DECOMPRESSED_MB, "0")],
            vec![(ENV_LAKE, "/l"), (ENV_TRUSTED_TRAILS, "111111111111")],
            vec![(ENV_LAKE, "/l"), (ENV_TRUSTED_TRAILS, "1:group")],
            vec![(ENV_LAKE, "/l"), (ENV_TRUSTED_TRAILS, "111111111111:ok,x")],
            vec![(ENV_LAKE, "/l"), (ENV_MAX_BATCH_DECOMPRESSED_MB, "16")],
            vec![(ENV_LAKE, "/l"), (ENV_MAX_BATCH_PARTITIONS, "-1")],
            vec![(ENV_LAKE, "/l"), (ENV_MAX_BATCH_LOOKUPS, "lots")],
            vec![(ENV_LAKE, "/l"), (ENV_OIDC_CLUSTERS, "ABC123")],
            vec![(ENV_LAKE, "/l"), (ENV_SESSION_TABLE, "no spaces allowed")],
        ] {
            // every bad value names its variable
            match cfg(&bad) {
                Err(ConfigError::Invalid { name, .. }) => {
                    assert_eq!(name, bad.last().unwrap().0, "{bad:?}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
