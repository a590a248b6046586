//! The compaction job's shell, shared by `auditlake compact` and the scheduled Lambda:
//! its settings (read once, validated), which days a run covers, and the loop over
//! partitions with one report each.

use std::sync::Arc;

use serde::Deserialize;

use transformer::compact::Table;
use transformer::compactor::{CompactConfig, Compactor, Report};

use crate::config::{Config, ConfigError};
use crate::lake::Lake;
use crate::sessions::Sessions;
use crate::start::{load_aws_auth, open_sessions, StartError};

pub const ENV_FUNCTION: &str = "AUDITLAKE_FUNCTION";
pub const ENV_LAG_DAYS: &str = "AUDITLAKE_COMPACT_LAG_DAYS";
pub const ENV_DAYS: &str = "AUDITLAKE_COMPACT_DAYS";
pub const ENV_TARGET_MB: &str = "AUDITLAKE_COMPACT_TARGET_MB";
pub const ENV_ZSTD_LEVEL: &str = "AUDITLAKE_COMPACT_ZSTD_LEVEL";
pub const ENV_SCRATCH_DIR: &str = "AUDITLAKE_SCRATCH_DIR";

pub const DEFAULT_LAG_DAYS: usize = 2;
pub const DEFAULT_DAYS: usize = 3;
/// Output file sizes (MB) and zstd levels accepted, from the environment or the CLI.
pub const TARGET_MB: std::ops::RangeInclusive<usize> = 1..=4096;
pub const ZSTD_LEVELS: std::ops::RangeInclusive<usize> = 1..=22;
/// Longest `--from`..`--to` span one run accepts.
pub const MAX_SPAN_DAYS: i64 = 366;

pub type LakeCompactor = Compactor<Lake, Sessions>;

/// What the bootstrap binary is, chosen at start (`AUDITLAKE_FUNCTION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// The Firehose transformation (default).
    Transform,
    /// The scheduled compaction job.
    Compact,
}

impl Function {
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        match var(ENV_FUNCTION).as_deref().map(str::trim) {
            None | Some("") | Some("transform") => Ok(Self::Transform),
            Some("compact") => Ok(Self::Compact),
            Some(v) => Err(ConfigError::Invalid {
                name: ENV_FUNCTION,
                why: format!("expected transform or compact, got {v:?}"),
            }),
        }
    }
}

/// Compaction settings beyond the shared configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub lag_days: usize,
    pub days: usize,
    pub target_mb: usize,
    pub zstd_level: usize,
    pub scratch: std::path::PathBuf,
    /// Take over any manifest left by another run (CLI `--take-over`; never the Lambda).
    pub take_over: bool,
}

impl Settings {
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        scratch_default: std::path::PathBuf,
    ) -> Result<Self, ConfigError> {
        // an empty value counts as unset (CloudFormation passes `!Ref` of an empty
        // parameter as "")
        let var = |n: &str| var(n).filter(|v| !v.trim().is_empty());
        let number = |name, range, default| crate::config::number(&var, name, range, default);
        Ok(Self {
            lag_days: number(ENV_LAG_DAYS, 1..=30, DEFAULT_LAG_DAYS)?,
            days: number(ENV_DAYS, 1..=31, DEFAULT_DAYS)?,
            target_mb: number(
                ENV_TARGET_MB,
                TARGET_MB,
                (transformer::compactor::DEFAULT_TARGET_BYTES >> 20) as usize,
            )?,
            zstd_level: number(
                ENV_ZSTD_LEVEL,
                ZSTD_LEVELS,
                transformer::compactor::DEFAULT_ZSTD_LEVEL as usize,
            )?,
            scratch: var(ENV_SCRATCH_DIR)
                .filter(|s| !s.trim().is_empty())
                .map(Into::into)
                .unwrap_or(scratch_default),
            take_over: false,
        })
    }
}

/// Build the job for a validated configuration: the same lake, session store, aws-auth
/// mapping and issuer map the handler uses, so late attribution agrees with ingest.
pub async fn build(config: &Config, s: &Settings) -> Result<LakeCompactor, StartError> {
    let aws_auth = match &config.aws_auth {
        Some(src) => Some(Arc::new(load_aws_auth(src).await?)),
        None => None,
    };
    let lake = Arc::new(Lake::open(&config.lake).await);
    let sessions = open_sessions(config, &lake).await;
    let mut cc = CompactConfig::new(s.scratch.clone());
    cc.target_bytes = (s.target_mb as u64) << 20;
    cc.zstd_level = s.zstd_level as i32;
    cc.aws_auth = aws_auth;
    cc.issuer_clusters = Arc::new(config.issuer_clusters.clone());
    if s.take_over {
        cc.lease_ms = 0;
    }
    Ok(Compactor::new(lake, sessions, cc))
}

/// The scheduled event (EventBridge Scheduler's input) or a hand-made one:
/// `{"action":"compact"}`, optionally with `dt` or `from`/`to`, `table`, `account`.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CompactEvent {
    pub action: String,
    pub dt: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub table: Option<String>,
    pub account: Option<String>,
}

/// What to compact: days, tables, one account or all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub days: Vec<String>,
    pub tables: Vec<Table>,
    pub account: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ScopeError(pub String);

fn day_number(d: &str, what: &str) -> Result<i64, ScopeError> {
    transformer::compactor::day_number(d)
        .ok_or_else(|| ScopeError(format!("{what} {d:?} is not a date (YYYY-MM-DD)")))
}

fn date_of(day: i64) -> String {
    resolver::time::utc_date(day * transformer::partition::DAY_MS)
}

impl Scope {
    /// From explicit options: `dt`, or `from` and `to` (inclusive); `table` and
    /// `account` narrow it.
    pub fn new(
        dt: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        table: Option<&str>,
        account: Option<&str>,
    ) -> Result<Self, ScopeError> {
        let (lo, hi) = match (dt, from, to) {
            (Some(d), None, None) => {
                let n = day_number(d, "--dt")?;
                (n, n)
            }
            (None, Some(f), Some(t)) => (day_number(f, "--from")?, day_number(t, "--to")?),
            _ => {
                return Err(ScopeError(
                    "give --dt DAY, or --from DAY and --to DAY".into(),
                ))
            }
        };
        if hi < lo {
            return Err(ScopeError("--to is before --from".into()));
        }
        if hi - lo >= MAX_SPAN_DAYS {
            return Err(ScopeError(format!(
                "--from..--to spans {} days; at most {MAX_SPAN_DAYS} per run",
                hi - lo + 1
            )));
        }
        Self::of_days((lo..=hi).map(date_of).collect(), table, account)
    }

    /// The closed days a scheduled run covers: `days` days ending `lag` days before
    /// today (UTC).
    pub fn closed_days(now_ms: i64, s: &Settings) -> Vec<String> {
        let today = now_ms.div_euclid(transformer::partition::DAY_MS);
        let last = today - s.lag_days as i64;
        (last - s.days as i64 + 1..=last).map(date_of).collect()
    }

    fn of_days(
        days: Vec<String>,
        table: Option<&str>,
        account: Option<&str>,
    ) -> Result<Self, ScopeError> {
        let tables = match table {
            None => Table::ALL.to_vec(),
            Some(t) => vec![Table::parse(t).ok_or_else(|| {
                ScopeError(format!(
                    "table {t:?}: expected one of {}",
                    Table::ALL.map(Table::name).join(", ")
                ))
            })?],
        };
        if let Some(a) = account {
            if a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ScopeError(format!(
                    "account {a:?} is not a 12-digit account id"
                )));
            }
        }
        Ok(Self {
            days,
            tables,
            account: account.map(str::to_string),
        })
    }

    /// The scope an event asks for; without dates, the closed days.
    pub fn of_event(ev: &CompactEvent, now_ms: i64, s: &Settings) -> Result<Self, ScopeError> {
        if ev.action != "compact" {
            return Err(ScopeError(format!(
                "action {:?}: this function only compacts (\"compact\")",
                ev.action
            )));
        }
        if ev.dt.is_none() && ev.from.is_none() && ev.to.is_none() {
            return Self::of_days(
                Self::closed_days(now_ms, s),
                ev.table.as_deref(),
                ev.account.as_deref(),
            );
        }
        Self::new(
            ev.dt.as_deref(),
            ev.from.as_deref(),
            ev.to.as_deref(),
            ev.table.as_deref(),
            ev.account.as_deref(),
        )
    }
}

/// A run's totals.
#[derive(Debug, Default)]
pub struct Summary {
    pub partitions: usize,
    pub compacted: usize,
    pub unchanged: usize,
    pub files_in: usize,
    pub files_out: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duplicates: u64,
    pub filled: u64,
    pub pending: u64,
    /// Partitions that failed, with why (each left as it was, or finished next run).
    pub failed: Vec<(String, String)>,
    /// Partitions not started because the run had to stop (Lambda deadline).
    pub not_started: usize,
}

impl Summary {
    fn add(&mut self, r: &Report) {
        use transformer::compactor::Outcome;
        self.partitions += 1;
        match r.outcome {
            Outcome::Compacted => self.compacted += 1,
            Outcome::Unchanged | Outcome::Empty => self.unchanged += 1,
        }
        self.files_in += r.files_in;
        self.files_out += r.files_out;
        self.bytes_in += r.bytes_in;
        self.bytes_out += r.bytes_out;
        self.duplicates += r.duplicates;
        self.filled += r.filled;
        self.pending += r.pending;
    }

    pub fn line(&self) -> String {
        let mut s = format!(
            "compact: {} partition(s): {} compacted, {} unchanged; files {} -> {}, {:.1} MB -> {:.1} MB; {} duplicate row(s) dropped, {} pending row(s) attributed, {} still pending",
            self.partitions, self.compacted, self.unchanged, self.files_in, self.files_out,
            self.bytes_in as f64 / 1e6, self.bytes_out as f64 / 1e6,
            self.duplicates, self.filled, self.pending
        );
        if !self.failed.is_empty() {
            s.push_str(&format!("; {} failed", self.failed.len()));
        }
        if self.not_started > 0 {
            s.push_str(&format!("; {} not started (out of time)", self.not_started));
        }
        if self.compacted == 0 && self.failed.is_empty() && self.not_started == 0 {
            s.push_str("; nothing changed");
        }
        s
    }
}

/// One line per partition, for the CLI's progress and the Lambda's log.
pub fn report_line(r: &Report) -> String {
    let mut s = format!(
        "{}: {}, files {} -> {}, rows {} -> {}, {:.1} MB -> {:.1} MB",
        r.partition,
        r.outcome.as_str(),
        r.files_in,
        r.files_out,
        r.rows_in,
        r.rows_out,
        r.bytes_in as f64 / 1e6,
        r.bytes_out as f64 / 1e6
    );
    if r.duplicates > 0 {
        s.push_str(&format!(", {} duplicate(s) dropped", r.duplicates));
    }
    if r.filled > 0 {
        s.push_str(&format!(", {} pending row(s) attributed", r.filled));
    }
    if r.pending > 0 {
        s.push_str(&format!(", {} still pending", r.pending));
    }
    match r.resumed {
        Some(transformer::compactor::Resumed::RemovedPartialOutputs(n)) => s.push_str(&format!(
            " (a stopped run's {n} partial output(s) removed first)"
        )),
        Some(transformer::compactor::Resumed::FinishedSwap(n)) => s.push_str(&format!(
            " (finished a stopped run's swap: {n} input(s) removed)"
        )),
        None => {}
    }
    s
}

/// Compact every partition in `scope`, one after another (memory stays that of one
/// partition); `stop` is asked before each partition starts.
pub async fn run(
    job: &LakeCompactor,
    scope: &Scope,
    now_ms: i64,
    stop: impl Fn() -> bool,
    mut on_report: impl FnMut(Result<&Report, (&str, &str)>),
) -> Result<Summary, transformer::compactor::JobError> {
    let mut sum = Summary::default();
    let mut todo = Vec::new();
    for &table in &scope.tables {
        for day in &scope.days {
            for p in job.partitions(table, day, scope.account.as_deref()).await? {
                todo.push((table, p));
            }
        }
    }
    for (n, (table, p)) in todo.iter().enumerate() {
        if stop() {
            sum.not_started = todo.len() - n;
            break;
        }
        match job.compact(*table, p, now_ms).await {
            Ok(r) => {
                sum.add(&r);
                on_report(Ok(&r));
            }
            Err(e) => {
                let why = e.to_string();
                on_report(Err((p, &why)));
                sum.failed.push((p.clone(), why));
            }
        }
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_vars(
            |n| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()),
            "/tmp".into(),
        )
    }

    #[test]
    fn settings_default_and_bad_values_name_the_variable() {
        let s = settings(&[]).unwrap();
        assert_eq!(
            (s.lag_days, s.days, s.target_mb, s.zstd_level),
            (2, 3, 256, 3)
        );
        for (var, bad) in [
            (ENV_LAG_DAYS, "0"),
            (ENV_DAYS, "x"),
            (ENV_TARGET_MB, "0"),
            (ENV_ZSTD_LEVEL, "23"),
        ] {
            let e = settings(&[(var, bad)]).unwrap_err().to_string();
            assert!(e.starts_with(var), "{e}");
        }
        assert_eq!(
            Function::from_vars(|_| Some("compact".into())).unwrap(),
            Function::Compact
        );
        assert_eq!(Function::from_vars(|_| None).unwrap(), Function::Transform);
        assert!(Function::from_vars(|_| Some("both".into()))
            .unwrap_err()
            .to_string()
            .starts_with(ENV_FUNCTION));
    }

    #[test]
    fn scheduled_runs_cover_the_closed_days_and_events_can_name_their_own() {
        let s = settings(&[]).unwrap();
        // 2024-11-30T05:00Z: lag 2 -> the last closed day is 2024-11-28
        let now = resolver::time::parse_rfc3339_ms("2024-11-30T05:00:00Z").unwrap();
        let ev = CompactEvent {
            action: "compact".into(),
            ..CompactEvent::default()
        };
        let scope = Scope::of_event(&ev, now, &s).unwrap();
        assert_eq!(scope.days, ["2024-11-26", "2024-11-27", "2024-11-28"]);
        assert_eq!(scope.tables, Table::ALL.to_vec());
        let ev: CompactEvent = serde_json::from_str(
            r#"{"action":"compact","from":"2024-02-28","to":"2024-03-01","table":"sts_sessions","account":"111122223333"}"#,
        )
        .unwrap();
        let scope = Scope::of_event(&ev, now, &s).unwrap();
        assert_eq!(scope.days, ["2024-02-28", "2024-02-29", "2024-03-01"]);
        assert_eq!(scope.tables, [Table::StsSessions]);
        assert_eq!(scope.account.as_deref(), Some("111122223333"));
        for bad in [
            r#"{"action":"compact","dt":"2024-02-30"}"#,
            r#"{"action":"compact","from":"2024-03-02","to":"2024-03-01"}"#,
            r#"{"action":"compact","dt":"2024-03-01","table":"raw"}"#,
            r#"{"action":"compact","dt":"2024-03-01","account":"../x"}"#,
            r#"{"action":"compact","from":"2020-01-01","to":"2024-01-01"}"#,
            r#"{"action":"delete"}"#,
        ] {
            let ev: CompactEvent = serde_json::from_str(bad).unwrap();
            assert!(Scope::of_event(&ev, now, &s).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<CompactEvent>(r#"{"action":"compact","dayz":1}"#).is_err());
    }
}
