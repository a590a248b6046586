//! The Lambda: Firehose transformation for the central Kinesis stream, or (with
//! `AUDITLAKE_FUNCTION=compact`, a second function from the same zip) the scheduled
//! compaction of closed days.
//!
//! Configuration is read once at cold start; a bad value fails the start (the Lambda
//! init error is visible in CloudWatch). Each Firehose invocation prints one EMF metrics
//! line; each compaction run one JSON line per partition and a summary.

/// mimalloc: the handler allocates per event (unescaped messages, rows) from several
/// threads; glibc malloc measured slower (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use lambda_runtime::{service_fn, Error, LambdaEvent};

use auditlake::compaction::{self, CompactEvent, Function, Scope, Settings};
use auditlake::config::Config;
use auditlake::start::{build_handler, now_ms};
use transformer::firehose::{FirehoseEvent, FirehoseResponse};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = Config::from_env(None, None).context("configuration")?;
    if Function::from_vars(|n| std::env::var(n).ok()).context("configuration")? == Function::Compact
    {
        return compact(config).await;
    }
    if let Some(w) = config.trust_warning() {
        eprintln!("{{\"level\":\"warn\",\"message\":{w:?}}}");
    }
    let handler = build_handler(&config).await.context("start")?;
    // lives for the whole process; the runtime needs 'static
    let handler: &'static _ = Box::leak(Box::new(handler));
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<FirehoseEvent>| async move {
        let now = now_ms();
        let (resp, out) = handler
            .handle_firehose(&ev.payload, now)
            .await
            .map_err(|e| {
                // An error makes Firehose retry the whole batch; keys are deterministic.
                eprintln!("{{\"level\":\"error\",\"message\":{:?}}}", e.to_string());
                e
            })?;
        for (r, o) in resp.records.iter().zip(&out.outcomes) {
            if let Some(why) = &o.error {
                eprintln!(
                    "{{\"level\":\"warn\",\"recordId\":{:?},\"result\":\"ProcessingFailed\",\"reason\":{:?}}}",
                    r.record_id, why
                );
            }
        }
        println!("{}", out.metrics.emf_line(now));
        Ok::<FirehoseResponse, Error>(resp)
    }))
    .await
}

/// Stop starting partitions with less than this left before the Lambda's deadline: a
/// partition stopped midway is finished by the next run (its manifest), but time spent
/// on it is wasted.
const COMPACT_MARGIN_MS: i64 = 120_000;

async fn compact(config: Config) -> Result<(), Error> {
    let settings =
        Settings::from_vars(|n| std::env::var(n).ok(), "/tmp".into()).context("configuration")?;
    let job = compaction::build(&config, &settings)
        .await
        .context("start")?;
    let job: &'static _ = Box::leak(Box::new(job));
    let settings: &'static _ = Box::leak(Box::new(settings));
    lambda_runtime::run(service_fn(
        move |ev: LambdaEvent<CompactEvent>| async move {
            let now = now_ms();
            let scope = Scope::of_event(&ev.payload, now, settings)?;
            let deadline = ev.context.deadline as i64;
            let sum = compaction::run(
                job,
                &scope,
                now,
                || now_ms() + COMPACT_MARGIN_MS > deadline,
                |r| match r {
                    Ok(r) => println!(
                        "{{\"level\":\"info\",\"message\":{:?}}}",
                        compaction::report_line(r)
                    ),
                    Err((p, why)) => {
                        eprintln!("{{\"level\":\"error\",\"partition\":{p:?},\"message\":{why:?}}}")
                    }
                },
            )
            .await?;
            let line = sum.line();
            println!("{{\"level\":\"info\",\"message\":{line:?}}}");
            if !sum.failed.is_empty() {
                // an error makes the schedule's retry policy (and the alarm) see it
                return Err(Error::from(line));
            }
            Ok::<serde_json::Value, Error>(serde_json::json!({
                "partitions": sum.partitions,
                "compacted": sum.compacted,
                "unchanged": sum.unchanged,
                "not_started": sum.not_started,
            }))
        },
    ))
    .await
}
