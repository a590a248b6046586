//! Alerts to an EventBridge bus (`PutEvents`), the AWS [`AlertSink`].
//!
//! At most 10 entries and 256 KB per request; entries EventBridge reports as failed
//! (throttled, internal) are sent again, up to three attempts; anything still failing
//! fails the invocation (Firehose retries the batch).
//! Docs: <https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEvents.html>

use std::time::Duration;

use aws_sdk_eventbridge::primitives::DateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use transformer::alerts::{Alert, AlertError, AlertSink, DETAIL_TYPE, SOURCE};

use crate::aws_error;

/// Entries per `PutEvents` call (the API's limit).
const MAX_ENTRIES: usize = 10;
/// Bytes per `PutEvents` call (the API's limit is 256 KB, counted over source,
/// detail-type, detail and resources).
const MAX_REQUEST: usize = 256 * 1024;
const ATTEMPTS: u32 = 3;

pub struct EventBridgeAlerts {
    client: aws_sdk_eventbridge::Client,
    /// Bus name or ARN (`EventBusName` takes either).
    bus: String,
}

impl EventBridgeAlerts {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: String) -> Self {
        Self { client, bus }
    }

    pub async fn from_env(bus: String) -> Self {
        let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::new(aws_sdk_eventbridge::Client::new(&conf), bus)
    }

    fn entry(&self, a: &Alert) -> PutEventsRequestEntry {
        PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(DETAIL_TYPE)
            .detail(&a.detail)
            .time(DateTime::from_millis(a.event_ms))
            .build()
    }

    fn failed(&self, count: usize, message: String, retryable: bool) -> AlertError {
        AlertError::Publish {
            target: self.target(),
            count,
            message,
            retryable,
            source: None,
        }
    }

    /// Send one request's worth, re-sending the entries EventBridge failed.
    async fn send(&self, alerts: &[&Alert]) -> Result<(), AlertError> {
        let mut pending: Vec<&Alert> = alerts.to_vec();
        for attempt in 1..=ATTEMPTS {
            let r = self
                .client
                .put_events()
                .set_entries(Some(pending.iter().map(|a| self.entry(a)).collect()))
                .send()
                .await;
            let out = match r {
                Ok(o) => o,
                Err(e) => {
                    let f = aws_error::describe(&e);
                    return Err(self.failed(
                        pending.len(),
                        format!("EventBridge PutEvents: {}", f.line),
                        f.retryable,
                    ));
                }
            };
            if out.failed_entry_count() == 0 {
                return Ok(());
            }
            // results are in request order; an entry with an error code failed
            let results = out.entries();
            let mut again = Vec::new();
            let mut why = String::new();
            for (i, a) in pending.iter().enumerate() {
                match results.get(i) {
                    Some(r) if r.error_code().is_none() && r.event_id().is_some() => {}
                    Some(r) => {
                        why = format!(
                            "{}: {}",
                            r.error_code().unwrap_or("failed"),
                            r.error_message().unwrap_or_default()
                        );
                        again.push(*a);
                    }
                    None => again.push(*a),
                }
            }
            if attempt == ATTEMPTS {
                return Err(self.failed(
                    again.len(),
                    format!(
                        "EventBridge PutEvents: {} entries failed ({why})",
                        again.len()
                    ),
                    true,
                ));
            }
            pending = again;
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        Ok(())
    }
}

/// What an entry counts against the request limit.
fn entry_size(a: &Alert) -> usize {
    SOURCE.len() + DETAIL_TYPE.len() + a.detail.len()
}

/// Split alerts into `PutEvents` requests within the entry and size limits.
pub fn requests(alerts: &[Alert]) -> Vec<Vec<&Alert>> {
    let mut out: Vec<Vec<&Alert>> = Vec::new();
    let mut size = 0usize;
    for a in alerts {
        let n = entry_size(a);
        match out.last_mut() {
            Some(cur) if cur.len() < MAX_ENTRIES && size + n <= MAX_REQUEST => {
                cur.push(a);
                size += n;
            }
            _ => {
                out.push(vec![a]);
                size = n;
            }
        }
    }
    out
}

impl AlertSink for EventBridgeAlerts {
    async fn publish(&self, _batch: u64, alerts: &[Alert]) -> Result<(), AlertError> {
        for req in requests(alerts) {
            self.send(&req).await?;
        }
        Ok(())
    }

    fn target(&self) -> String {
        format!("eventbridge://{}", self.bus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use transformer::sigma::Severity;

    fn alert(n: usize) -> Alert {
        Alert {
            finding_id: "f".into(),
            severity: Severity::High,
            event_ms: 0,
            detail: "x".repeat(n),
        }
    }

    #[test]
    fn requests_respect_the_entry_and_size_limits() {
        let small: Vec<Alert> = (0..23).map(|_| alert(10)).collect();
        let r = requests(&small);
        assert_eq!(r.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 3]);
        let big: Vec<Alert> = (0..5).map(|_| alert(100 * 1024)).collect();
        let r = requests(&big);
        assert_eq!(r.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
        for req in r {
            assert!(req.iter().map(|a| entry_size(a)).sum::<usize>() <= MAX_REQUEST);
        }
    }
}
