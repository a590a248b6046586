//! The Lambda: Firehose transformation for the central Kinesis stream.
//!
//! Configuration is read once at cold start; a bad value fails the start (the Lambda
//! init error is visible in CloudWatch). Each invocation prints one EMF metrics line.

/// mimalloc: the handler allocates per event (unescaped messages, rows) from several
/// threads; glibc malloc measured slower (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use lambda_runtime::{service_fn, Error, LambdaEvent};

use auditlake::config::Config;
use auditlake::start::{build_handler, now_ms};
use transformer::firehose::{FirehoseEvent, FirehoseResponse};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = Config::from_env(None, None).context("configuration")?;
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
