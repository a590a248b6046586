//! Test inputs shared by the stage files' unit tests: envelopes in CloudWatch Logs'
//! own field order (`messageType`, `owner` first) and audit events.

use serde_json::{json, Value};

/// A DATA_MESSAGE envelope of `messages`, one log event each.
pub fn envelope(owner: &str, group: &str, stream: &str, messages: &[String]) -> String {
    let events: Vec<Value> = messages
        .iter()
        .enumerate()
        .map(
            |(i, m)| json!({"id": format!("{i}"), "timestamp": 1_732_626_427_000i64, "message": m}),
        )
        .collect();
    format!(
        r#"{{"messageType":"DATA_MESSAGE","owner":{},"logGroup":{},"logStream":{},"logEvents":{}}}"#,
        json!(owner),
        json!(group),
        json!(stream),
        Value::Array(events)
    )
}

/// An envelope of cluster `prod`'s audit stream in `owner`.
pub fn audit_envelope(owner: &str, messages: &[String]) -> String {
    envelope(
        owner,
        "/aws/eks/prod/cluster",
        "kube-apiserver-audit-1",
        messages,
    )
}

/// An audit event with `auditID` and the given fields (`user`, times, ...).
pub fn event(audit_id: &str, fields: Value) -> String {
    let mut e = json!({"kind": "Event", "auditID": audit_id});
    if let (Some(e), Value::Object(f)) = (e.as_object_mut(), fields) {
        e.extend(f);
    }
    e.to_string()
}
