//! `auditlake`: run the Firehose handler locally (DESIGN 4a).
//!
//! Exit codes: 0 success; 2 bad usage or unreadable input (one-line reason); 1 failure
//! while writing.

/// mimalloc: the handler allocates per event (unescaped messages, rows) from several
/// threads; glibc malloc measured slower (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

mod consume;
mod demo;
mod ingest;
mod out;

use clap::{Parser, Subcommand};

use auditlake::compaction::{self, Scope, Settings};
use auditlake::config::Config;
use auditlake::start::{build_handler, now_ms, LakeHandler};
use consume::{ConsumeOptions, Consumer};
use transformer::firehose::FirehoseEvent;

#[derive(Parser)]
#[command(
    name = "auditlake",
    version,
    about = "EKS audit lake: run the transformer locally"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate a demo organisation (accounts, clusters, people, an incident), run it
    /// through the handler into a local lake and print a forensic report.
    Demo {
        /// Lake directory.
        #[arg(long, default_value = "lake")]
        lake: PathBuf,
    },
    /// Run the handler once on a Firehose transformation event (JSON file or `-`).
    /// Prints the Firehose response on stdout and counts on stderr.
    Invoke {
        /// The event: a JSON file, or `-` for stdin.
        #[arg(long, value_name = "FILE")]
        event: String,
        /// Lake URI (directory or s3://bucket/prefix); default $AUDITLAKE_LAKE or ./lake.
        #[arg(long)]
        lake: Option<String>,
    },
    /// Backfill: CloudWatch Logs subscription payloads (gzip or JSON), the Firehose raw/
    /// archive, CloudTrail S3 log files. Directories are read recursively.
    Ingest {
        /// Lake URI (directory or s3://bucket/prefix); default $AUDITLAKE_LAKE or ./lake.
        #[arg(long)]
        lake: Option<String>,
        /// Files or directories to read.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Firehose stand-in: read every shard of a Kinesis stream, batch like Firehose,
    /// run the handler, archive Ok records under raw/ and failures under errors/.
    Consume {
        /// Kinesis stream name or ARN (the region from AWS_REGION).
        #[arg(long)]
        stream: String,
        /// Lake URI (directory or s3://bucket/prefix); default $AUDITLAKE_LAKE or ./lake.
        #[arg(long)]
        lake: Option<String>,
        /// Stop once every shard is drained (tests, backfills).
        #[arg(long)]
        until_idle: bool,
        /// Flush a batch at this size (Firehose's Lambda buffer is at most 3 MB).
        #[arg(long, default_value_t = 3.0)]
        buffer_mb: f64,
        /// Flush a batch when its oldest record is this old.
        #[arg(long, default_value_t = 60.0)]
        buffer_seconds: f64,
        /// Attempts per failing batch before giving up (exit 1; the batch is replayed
        /// on the next start).
        #[arg(long, default_value_t = 12)]
        max_attempts: u32,
        /// Fault injection for the system tests.
        #[arg(long, hide = true)]
        failpoint: Option<String>,
    },
    /// Merge a day's part files into large ones per (table, day, account, cluster),
    /// sorted by event time; drop events delivered twice; write late attribution into
    /// rows still pending. Safe to re-run or interrupt at any time.
    Compact {
        /// Lake URI (directory or s3://bucket/prefix); default $AUDITLAKE_LAKE or ./lake.
        #[arg(long)]
        lake: Option<String>,
        /// The day to compact (UTC).
        #[arg(long, value_name = "YYYY-MM-DD", conflicts_with_all = ["from", "to"])]
        dt: Option<String>,
        /// First day of a range (with --to; inclusive).
        #[arg(long, value_name = "YYYY-MM-DD", requires = "to")]
        from: Option<String>,
        /// Last day of a range (with --from; inclusive).
        #[arg(long, value_name = "YYYY-MM-DD", requires = "from")]
        to: Option<String>,
        /// Only this account's partitions.
        #[arg(long, value_name = "ID")]
        account: Option<String>,
        /// Only this table: eks_audit, sts_sessions or findings (default: all three).
        #[arg(long)]
        table: Option<String>,
        /// Largest output file, in MB (default $AUDITLAKE_COMPACT_TARGET_MB or 256).
        #[arg(long, value_name = "MB")]
        target_mb: Option<usize>,
        /// zstd level of the output (default $AUDITLAKE_COMPACT_ZSTD_LEVEL or 3).
        #[arg(long, value_name = "N")]
        zstd_level: Option<usize>,
        /// Take over partitions whose manifest another run left less than 10 minutes
        /// ago (only when that run is known to be dead: killed, interrupted).
        #[arg(long)]
        take_over: bool,
    },
    /// The detection rules: the shipped Sigma pack plus the operator's
    /// ($AUDITLAKE_RULES: a directory or s3://bucket/prefix, or --rules).
    Rules {
        #[command(subcommand)]
        cmd: RulesCmd,
    },
    /// Print the Athena DDL (tables and view), or write it to a directory.
    Ddl {
        /// Lake location to put in the DDL (s3://bucket/prefix).
        #[arg(long, default_value = schemas::ddl::LAKE_PLACEHOLDER)]
        location: String,
        /// Write one .sql file per table and view into this directory instead of stdout.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    #[command(flatten)]
    Hidden(HiddenCmd),
}

#[derive(Subcommand)]
enum RulesCmd {
    /// One line per rule: level, name, id, ATT&CK techniques, title, file. Fails (exit
    /// 2) naming the file and the rule if any rule does not compile.
    List {
        /// Your rules (a directory or s3://bucket/prefix); default $AUDITLAKE_RULES.
        #[arg(long, value_name = "DIR|S3")]
        rules: Option<String>,
    },
    /// Each rule as an Athena query over eks_audit_attributed: a retro-hunt over the
    /// lake's history, returning what ingest would have found, with the person.
    Sql {
        /// Your rules (a directory or s3://bucket/prefix); default $AUDITLAKE_RULES.
        #[arg(long, value_name = "DIR|S3")]
        rules: Option<String>,
        /// Only this rule (id or name).
        #[arg(long, value_name = "ID")]
        rule: Option<String>,
        /// First day to scan (with --to; inclusive).
        #[arg(long, value_name = "YYYY-MM-DD", requires = "to")]
        from: Option<String>,
        /// Last day to scan (with --from; inclusive).
        #[arg(long, value_name = "YYYY-MM-DD", requires = "from")]
        to: Option<String>,
    },
    /// Evaluate the rules on audit events (a JSON file holding one event, an array of
    /// events, or one event per line) and print which rules fire on each.
    Test {
        /// Your rules (a directory or s3://bucket/prefix); default $AUDITLAKE_RULES.
        #[arg(long, value_name = "DIR|S3")]
        rules: Option<String>,
        /// Only this rule (id or name).
        #[arg(long, value_name = "ID")]
        rule: Option<String>,
        /// The events file.
        events: PathBuf,
    },
}

#[derive(Subcommand)]
enum HiddenCmd {
    /// The store contracts against an AWS backend (the system tests run them on moto):
    /// the session store on a DynamoDB table (`--table`, empty), or the object store and
    /// the session store on an S3 lake (`--lake`, empty).
    #[command(hide = true)]
    StoreContract {
        #[arg(long)]
        table: Option<String>,
        #[arg(long)]
        lake: Option<String>,
        /// Pretend this many DynamoDB batch responses left their last item unprocessed.
        #[arg(long, default_value_t = 0)]
        inject_unprocessed: u32,
    },
}

/// A failure with its exit code.
struct Fail(u8, String);

impl<E: std::fmt::Display> From<(u8, E)> for Fail {
    fn from((code, e): (u8, E)) -> Self {
        Fail(code, e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("auditlake: cannot start runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            eprintln!("auditlake: {msg}");
            ExitCode::from(code)
        }
    }
}

/// Which CloudTrail sources a command trusts beyond `AUDITLAKE_TRUSTED_TRAILS`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Trust {
    /// Only the configured trails (invoke, consume: what a member account sent).
    Configured,
    /// Also CloudTrail S3 log files named on the command line (ingest: files the
    /// operator chose), which `ingest` wraps under its own marker.
    Backfill,
}

async fn handler(lake: Option<&str>, trust: Trust) -> Result<LakeHandler, Fail> {
    let mut config = Config::from_env(lake, Some("lake")).map_err(|e| Fail(2, e.to_string()))?;
    if let auditlake::lake::LakeUri::Local(dir) = &config.lake {
        // real data goes into what was a demo lake: a demo re-run must now refuse it
        if demo::release(dir) {
            eprintln!(
                "note: {} was a demo lake; it now holds your data too, and `auditlake demo` will no longer clear it",
                dir.display()
            );
        }
    }
    if trust == Trust::Backfill {
        config.trusted_trails = config
            .trusted_trails
            .with(ingest::CLOUDTRAIL_S3_OWNER, ingest::CLOUDTRAIL_S3_GROUP);
    }
    build_handler(&config)
        .await
        .map_err(|e| Fail(2, e.to_string()))
}

async fn run(cli: Cli) -> Result<(), Fail> {
    match cli.cmd {
        Cmd::Demo { lake } => demo::run(&lake)
            .await
            .map(|_| ())
            .map_err(|e| Fail(e.exit_code(), e.to_string())),
        Cmd::Invoke { event, lake } => invoke(&event, lake.as_deref()).await,
        Cmd::Ingest { lake, paths } => ingest(lake.as_deref(), &paths).await,
        Cmd::Consume {
            stream,
            lake,
            until_idle,
            buffer_mb,
            buffer_seconds,
            max_attempts,
            failpoint,
        } => {
            let abort_after_write = match failpoint.as_deref() {
                None => false,
                Some("after-write") => true,
                Some(other) => return Err(Fail(2, format!("unknown failpoint {other:?}"))),
            };
            if !(buffer_mb > 0.0 && buffer_mb <= 64.0)
                || !(buffer_seconds > 0.0 && buffer_seconds <= 900.0)
                || max_attempts == 0
            {
                return Err(Fail(2, "--buffer-mb must be in (0, 64], --buffer-seconds in (0, 900], --max-attempts >= 1".into()));
            }
            let h = handler(lake.as_deref(), Trust::Configured).await?;
            if h.config.trusted_trails.is_empty() {
                eprintln!("consume: AUDITLAKE_TRUSTED_TRAILS is not set: no CloudTrail log group is trusted, no STS session is indexed");
            }
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            tokio::spawn(async move {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
                }
                eprintln!("consume: stopping after the current batch");
                flag.store(true, Ordering::SeqCst);
            });
            let opts = ConsumeOptions {
                stream,
                buffer_bytes: (buffer_mb * 1_048_576.0) as usize,
                buffer_age: std::time::Duration::from_secs_f64(buffer_seconds),
                until_idle,
                max_attempts,
                region: std::env::var("AWS_REGION").ok(),
                abort_after_write,
                ..ConsumeOptions::default()
            };
            let mut c = Consumer::from_env(&h, opts, stop).await;
            let result = c.run().await;
            eprintln!("{}", c.totals.emf_line(now_ms()));
            eprintln!("consume: {} batches, {} records, {} audit events, {} STS sessions, {} failed records",
                c.batches, c.totals.records_in, c.totals.events_written, c.totals.sts_sessions, c.totals.records_failed);
            result.map_err(|e| Fail(1, e.to_string()))
        }
        Cmd::Compact {
            lake,
            dt,
            from,
            to,
            account,
            table,
            target_mb,
            zstd_level,
            take_over,
        } => {
            compact(
                lake.as_deref(),
                Scope::new(
                    dt.as_deref(),
                    from.as_deref(),
                    to.as_deref(),
                    table.as_deref(),
                    account.as_deref(),
                )
                .map_err(|e| Fail(2, e.0))?,
                target_mb,
                zstd_level,
                take_over,
            )
            .await
        }
        Cmd::Hidden(HiddenCmd::StoreContract {
            table,
            lake,
            inject_unprocessed,
        }) => store_contract(table, lake, inject_unprocessed).await,
        Cmd::Rules { cmd } => rules_cmd(cmd).await,
        Cmd::Ddl { location, out } => {
            if location != schemas::ddl::LAKE_PLACEHOLDER {
                match auditlake::lake::LakeUri::parse(&location) {
                    Ok(auditlake::lake::LakeUri::S3 { .. }) => {}
                    Ok(_) => {
                        return Err(Fail(
                            2,
                            format!("--location {location:?}: expected s3://bucket/prefix (Athena reads S3)"),
                        ))
                    }
                    Err(e) => return Err(Fail(2, format!("--location: {e}"))),
                }
            }
            for (file, sql) in schemas::ddl::rendered_files() {
                let sql = sql.replace(
                    schemas::ddl::LAKE_PLACEHOLDER,
                    location.trim_end_matches('/'),
                );
                match &out {
                    Some(dir) => {
                        std::fs::create_dir_all(dir)
                            .map_err(|e| Fail(1, format!("{}: {e}", dir.display())))?;
                        let p = dir.join(file);
                        std::fs::write(&p, sql)
                            .map_err(|e| Fail(1, format!("{}: {e}", p.display())))?;
                    }
                    None => out::emitln(&sql),
                }
            }
            Ok(())
        }
    }
}

async fn compact(
    lake: Option<&str>,
    scope: Scope,
    target_mb: Option<usize>,
    zstd_level: Option<usize>,
    take_over: bool,
) -> Result<(), Fail> {
    let config = Config::from_env(lake, Some("lake")).map_err(|e| Fail(2, e.to_string()))?;
    let mut settings = Settings::from_vars(|n| std::env::var(n).ok(), std::env::temp_dir())
        .map_err(|e| Fail(2, e.to_string()))?;
    let within = |opt: &str, v: Option<usize>, r: std::ops::RangeInclusive<usize>| match v {
        Some(n) if !r.contains(&n) => Err(Fail(
            2,
            format!("{opt} must be in {}..={}", r.start(), r.end()),
        )),
        _ => Ok(v),
    };
    if let Some(n) = within("--target-mb", target_mb, compaction::TARGET_MB)? {
        settings.target_mb = n;
    }
    if let Some(n) = within("--zstd-level", zstd_level, compaction::ZSTD_LEVELS)? {
        settings.zstd_level = n;
    }
    settings.take_over = take_over;
    let job = compaction::build(&config, &settings)
        .await
        .map_err(|e| Fail(2, e.to_string()))?;
    let sum = compaction::run(
        &job,
        &scope,
        now_ms(),
        || false,
        |r| match r {
            Ok(r) => eprintln!("{}", compaction::report_line(r)),
            Err((p, why)) => eprintln!("{p}: failed, left as it was: {why}"),
        },
    )
    .await
    .map_err(|e| Fail(1, e.to_string()))?;
    out::emitln(&sum.line());
    if !sum.failed.is_empty() {
        return Err(Fail(
            1,
            format!("{} partition(s) failed (see above)", sum.failed.len()),
        ));
    }
    Ok(())
}

async fn store_contract(
    table: Option<String>,
    lake: Option<String>,
    inject_unprocessed: u32,
) -> Result<(), Fail> {
    match (table, lake) {
        (Some(table), None) => {
            let store = auditlake::dynamodb::DynamoSessionStore::from_env(table).await;
            store.inject_unprocessed(inject_unprocessed);
            resolver::store::contract(&store).await;
            out::emitln(&format!(
                "contract kept: dynamodb; {}",
                store.requests.summary()
            ));
        }
        (None, Some(lake)) => {
            let uri = auditlake::lake::LakeUri::parse(&lake).map_err(|e| Fail(2, e.to_string()))?;
            let lake = Arc::new(auditlake::lake::Lake::open(&uri).await);
            // the object store's own contract (the same one memory and local directories
            // keep), then the session index over it
            transformer::lake::contract(lake.as_ref()).await;
            resolver::store::contract(&transformer::session_store::LakeSessionStore::new(lake))
                .await;
            out::emitln("contract kept: lake (objects and sessions)");
        }
        _ => return Err(Fail(2, "give --table or --lake".into())),
    }
    Ok(())
}

async fn invoke(event: &str, lake: Option<&str>) -> Result<(), Fail> {
    // the event is read and parsed on another thread while the handler starts (rules
    // compiled, lake opened): on Lambda the two never meet (the handler is built once at
    // init), here they would add up
    let path = event.to_string();
    let parsed = tokio::task::spawn_blocking(move || -> Result<FirehoseEvent, Fail> {
        let text = if path == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| Fail(2, format!("reading stdin: {e}")))?;
            s
        } else {
            std::fs::read_to_string(&path).map_err(|e| Fail(2, format!("{path}: {e}")))?
        };
        read_event(&text).map_err(|e| {
            Fail(
                2,
                format!("{path}: not a Firehose transformation event: {e}"),
            )
        })
    });
    let h = handler(lake, Trust::Configured).await;
    let ev = parsed
        .await
        .map_err(|e| Fail(1, format!("reading the event: {e}")))??;
    let h = h?;
    let now = now_ms();
    let (resp, out) = h
        .handle_firehose(&ev, now)
        .await
        .map_err(|e| Fail(1, e.to_string()))?;
    for (r, o) in resp.records.iter().zip(&out.outcomes) {
        if let Some(why) = &o.error {
            eprintln!("record {}: ProcessingFailed: {why}", r.record_id);
        }
    }
    let json = write_response(&resp).map_err(|e| Fail(1, e.to_string()))?;
    out::emitln(&json);
    eprintln!("{}", out.metrics.emf_line(now));
    Ok(())
}

/// The event as the Lambda runtime parses it. Not inlined: a stage of its own in the
/// benchmark's instruction profile (`bench --instructions`).
#[inline(never)]
fn read_event(text: &str) -> serde_json::Result<FirehoseEvent> {
    serde_json::from_str(text)
}

/// The response as the Lambda runtime serialises it (a stage of the instruction profile).
#[inline(never)]
fn write_response(resp: &transformer::firehose::FirehoseResponse) -> serde_json::Result<String> {
    serde_json::to_string(resp)
}

fn collect_files(p: &Path, out: &mut Vec<PathBuf>) -> Result<(), Fail> {
    let meta = std::fs::metadata(p).map_err(|e| Fail(2, format!("{}: {e}", p.display())))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|e| Fail(2, format!("{}: {e}", p.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            collect_files(&e, out)?;
        }
    } else {
        out.push(p.to_path_buf());
    }
    Ok(())
}

async fn ingest(lake: Option<&str>, paths: &[PathBuf]) -> Result<(), Fail> {
    let mut files = Vec::new();
    for p in paths {
        collect_files(p, &mut files)?;
    }
    let h = handler(lake, Trust::Backfill).await?;
    let mut total = transformer::metrics::Metrics::default();
    let mut unreadable = Vec::new();
    // a progress line on a terminal (rewritten in place); nothing extra into a pipe
    let progress = {
        use std::io::IsTerminal;
        std::io::stderr().is_terminal()
    };
    let started = std::time::Instant::now();
    for (n, f) in files.iter().enumerate() {
        if progress {
            eprint!(
                "\ringest: file {}/{}, {:.1} MB in, {} events, {:.0} s ",
                n + 1,
                files.len(),
                total.bytes_in as f64 / 1e6,
                total.events_written,
                started.elapsed().as_secs_f64()
            );
        }
        let bytes = std::fs::read(f).map_err(|e| Fail(2, format!("{}: {e}", f.display())))?;
        let name = f.display().to_string();
        let records = match ingest::records_from_file(&name, bytes, h.config.max_decompressed) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{name}: {e}");
                unreadable.push(name);
                continue;
            }
        };
        for batch in ingest::batches(records) {
            let out = h
                .process(&batch, None, now_ms())
                .await
                .map_err(|e| Fail(1, format!("{name}: {e}")))?;
            for (r, o) in batch.iter().zip(&out.outcomes) {
                if let Some(why) = &o.error {
                    eprintln!("{}: {why}", r.record_id);
                    if !unreadable.contains(&name) {
                        unreadable.push(name.clone());
                    }
                }
            }
            total += out.metrics;
        }
    }
    if progress {
        eprintln!();
    }
    eprintln!("{}", total.emf_line(now_ms()));
    eprintln!(
        "ingested {} file(s): {} audit events, {} STS sessions, {} objects written",
        files.len(),
        total.events_written,
        total.sts_sessions,
        total.objects_written
    );
    if !unreadable.is_empty() {
        return Err(Fail(
            2,
            format!(
                "{} unreadable input file(s): {}",
                unreadable.len(),
                unreadable.join(", ")
            ),
        ));
    }
    Ok(())
}

/// The `eventName` of a CloudTrail record of the EKS API that is not a row (a read
/// call), read from its own fields rather than its text (an audit body may mention
/// the EKS service name).
fn eks_read_call(m: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(m).ok()?;
    (v["eventSource"] == transformer::eks_api::EVENT_SOURCE)
        .then(|| v["eventName"].as_str().unwrap_or("-").to_owned())
}

/// The rules in force for a `rules` command.
async fn load_rules(rules: Option<&str>) -> Result<transformer::sigma::RuleSet, Fail> {
    let v = rules
        .map(str::to_owned)
        .or_else(|| std::env::var(auditlake::config::ENV_RULES).ok());
    let src = auditlake::config::rules_source(v.as_deref()).map_err(|e| Fail(2, e.to_string()))?;
    let org = auditlake::config::org_accounts(
        std::env::var(auditlake::config::ENV_ORG_ACCOUNTS)
            .ok()
            .as_deref(),
    )
    .map_err(|e| Fail(2, e.to_string()))?;
    auditlake::start::load_rules(src.as_ref(), &auditlake::config::placeholders(&org))
        .await
        .map_err(|e| Fail(2, e.to_string()))
}

fn pick<'r>(
    set: &'r transformer::sigma::RuleSet,
    rule: Option<&str>,
) -> Result<Vec<&'r transformer::sigma::Rule>, Fail> {
    match rule {
        None => Ok(set.rules.iter().collect()),
        Some(id) => set.get(id).map(|r| vec![r]).ok_or_else(|| {
            Fail(
                2,
                format!("--rule {id:?}: no rule has this id or name (see `auditlake rules list`)"),
            )
        }),
    }
}

async fn rules_cmd(cmd: RulesCmd) -> Result<(), Fail> {
    match cmd {
        RulesCmd::List { rules } => {
            let set = load_rules(rules.as_deref()).await?;
            for r in &set.rules {
                out::emitln(&format!(
                    "{:<13} {:<48} {} {:<16} {:<22} {} ({}){}",
                    r.severity.as_str(),
                    r.name,
                    r.id,
                    r.logsource.as_str(),
                    r.techniques.join(","),
                    r.title,
                    r.file,
                    match &r.off {
                        Some(why) =>
                            format!(" OFF: {why}; set {}", auditlake::config::ENV_ORG_ACCOUNTS),
                        None => String::new(),
                    }
                ));
            }
            let off = set.rules.iter().filter(|r| r.off.is_some()).count();
            eprintln!("{} rules ({off} off)", set.len());
            Ok(())
        }
        RulesCmd::Sql {
            rules,
            rule,
            from,
            to,
        } => {
            for d in [&from, &to].into_iter().flatten() {
                if transformer::compactor::day_number(d).is_none() {
                    return Err(Fail(2, format!("{d:?} is not a YYYY-MM-DD date")));
                }
            }
            if let (Some(f), Some(t)) = (&from, &to) {
                if transformer::compactor::day_number(f) > transformer::compactor::day_number(t) {
                    return Err(Fail(2, format!("--from {f} is after --to {t}")));
                }
            }
            let set = load_rules(rules.as_deref()).await?;
            let days = from.as_deref().zip(to.as_deref());
            for r in pick(&set, rule.as_deref())? {
                out::emitln(&r.sql_query(days));
            }
            Ok(())
        }
        RulesCmd::Test {
            rules,
            rule,
            events,
        } => {
            let set = load_rules(rules.as_deref()).await?;
            let chosen = pick(&set, rule.as_deref())?;
            let text = std::fs::read_to_string(&events)
                .map_err(|e| Fail(2, format!("{}: {e}", events.display())))?;
            let messages = ingest::audit_messages(&text)
                .map_err(|e| Fail(2, format!("{}: {e}", events.display())))?;
            use transformer::sigma::LogSource;
            let mut fired = 0;
            for (i, m) in messages.iter().enumerate() {
                // a CloudTrail EKS API call meets the aws/cloudtrail rules, anything
                // else is an audit event for the kubernetes/audit ones
                let call = transformer::eks_api::parse(m);
                let read = matches!(call, Ok(None)).then(|| eks_read_call(m)).flatten();
                let (names, id, status): (Vec<&str>, String, &str) = match (call, read) {
                    (Ok(Some(call)), _) => {
                        let ev = transformer::detect::ApiView::new(&call, &set.bodies);
                        let names = chosen
                            .iter()
                            .filter(|r| {
                                r.logsource == LogSource::CloudTrail
                                    && r.off.is_none()
                                    && r.matches(&ev)
                            })
                            .map(|r| r.name.as_str())
                            .collect();
                        (
                            names,
                            format!("{} {}", call.event_name, call.event_id),
                            "ok",
                        )
                    }
                    // a read-only EKS call (Describe*, List*): never a row
                    (_, Some(name)) => (Vec::new(), name, "readonly"),
                    _ => {
                        let envelope = ingest::test_envelope(std::slice::from_ref(m));
                        let envs = transformer::decode::envelopes(envelope.as_bytes())
                            .map_err(|e| Fail(2, format!("{}: {e}", events.display())))?;
                        let x = transformer::extract::extract(
                            &envs,
                            transformer::extract::Context::new(None),
                        );
                        let Some(row) = x.rows.first() else {
                            continue;
                        };
                        let ev = transformer::detect::RowEvent::new(row, &set.bodies);
                        let names = chosen
                            .iter()
                            .filter(|r| {
                                r.logsource == LogSource::KubernetesAudit
                                    && r.off.is_none()
                                    && row.parse_status == transformer::audit::ParseStatus::Ok
                                    && r.matches(&ev)
                            })
                            .map(|r| r.name.as_str())
                            .collect();
                        (
                            names,
                            row.event.audit_id.as_deref().unwrap_or("-").to_owned(),
                            row.parse_status.as_str(),
                        )
                    }
                };
                fired += usize::from(!names.is_empty());
                out::emitln(&format!(
                    "event {} ({id}, {status}): {}",
                    i + 1,
                    if names.is_empty() {
                        "no rule fires".to_owned()
                    } else {
                        names.join(", ")
                    }
                ));
            }
            eprintln!("{fired} of {} events matched", messages.len());
            Ok(())
        }
    }
}
