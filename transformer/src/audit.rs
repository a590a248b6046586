//! Stage 2: one CloudWatch log message -> a Kubernetes audit event (audit.k8s.io/v1).
//!
//! Parsed into borrowed typed fields; nested collections (`groups`, `sourceIPs`,
//! `extra`, `annotations`) and the request/response bodies stay `RawValue`s and are only
//! walked when the row is appended to Arrow. Messages that are not valid JSON are kept
//! as `truncated` or `invalid` rows with what a pattern can recover.
//! Schema: <https://kubernetes.io/docs/reference/config-api/apiserver-audit.v1/#audit-k8s-io-v1-Event>

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use resolver::identity::AwsExtra;

use crate::text::Text;

type S<'a> = Option<Text<'a>>;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent<'a> {
    #[serde(borrow, default)]
    pub kind: S<'a>,
    #[serde(borrow, default)]
    pub level: S<'a>,
    #[serde(borrow, default, rename = "auditID")]
    pub audit_id: S<'a>,
    #[serde(borrow, default)]
    pub stage: S<'a>,
    #[serde(borrow, default, rename = "requestURI")]
    pub request_uri: S<'a>,
    #[serde(borrow, default)]
    pub verb: S<'a>,
    #[serde(borrow, default)]
    pub user: Option<UserInfo<'a>>,
    #[serde(borrow, default)]
    pub impersonated_user: Option<UserInfo<'a>>,
    #[serde(borrow, default, rename = "sourceIPs")]
    pub source_ips: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub user_agent: S<'a>,
    #[serde(borrow, default)]
    pub object_ref: Option<ObjectRef<'a>>,
    #[serde(borrow, default)]
    pub response_status: Option<ResponseStatus<'a>>,
    #[serde(borrow, default)]
    pub request_object: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub response_object: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub request_received_timestamp: S<'a>,
    #[serde(borrow, default)]
    pub stage_timestamp: S<'a>,
    #[serde(borrow, default)]
    pub annotations: Option<&'a RawValue>,
}

#[derive(Debug, Default, Deserialize)]
pub struct UserInfo<'a> {
    #[serde(borrow, default)]
    pub username: S<'a>,
    #[serde(borrow, default)]
    pub uid: S<'a>,
    #[serde(borrow, default)]
    pub groups: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub extra: Option<&'a RawValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef<'a> {
    #[serde(borrow, default)]
    pub resource: S<'a>,
    #[serde(borrow, default)]
    pub namespace: S<'a>,
    #[serde(borrow, default)]
    pub name: S<'a>,
    #[serde(borrow, default)]
    pub api_group: S<'a>,
    #[serde(borrow, default)]
    pub api_version: S<'a>,
    #[serde(borrow, default)]
    pub subresource: S<'a>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ResponseStatus<'a> {
    #[serde(default)]
    pub code: Option<i32>,
    #[serde(borrow, default)]
    pub status: S<'a>,
    #[serde(borrow, default)]
    pub reason: S<'a>,
    #[serde(borrow, default)]
    pub message: S<'a>,
}

/// `parse_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseStatus {
    Ok,
    Truncated,
    Invalid,
}

impl ParseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Truncated => "truncated",
            Self::Invalid => "invalid",
        }
    }
}

/// The marker CloudWatch Logs appends to messages it cut at the event size limit.
pub const TRUNCATION_MARKER: &str = "[Truncated...]";

/// A parsed (or recovered) audit event.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub status: ParseStatus,
    pub event: AuditEvent<'a>,
    /// Recovered `extra.accessKeyId` of an unparseable event.
    pub recovered_key: Option<&'a str>,
}

/// Parse one audit message. Never fails: a message that is not an audit event becomes
/// an `invalid` (or `truncated`) event with the fields a pattern recovered.
pub fn parse(message: &str) -> Parsed<'_> {
    match serde_json::from_str::<AuditEvent<'_>>(message) {
        Ok(ev) if ev.kind.as_deref() == Some("Event") || ev.audit_id.is_some() => Parsed {
            status: ParseStatus::Ok,
            event: ev,
            recovered_key: None,
        },
        _ => recover(message),
    }
}

/// The string value of the first `"key":"..."` in `hay`, unescaped (Go escapes `&`,
/// `<`, `>` in URIs as `\u0026`...). `None` if absent, empty or cut off.
fn pattern<'a>(hay: &'a str, key: &str) -> Option<Text<'a>> {
    let needle = format!("\"{key}\":\"");
    let open = hay.find(&needle)? + needle.len() - 1;
    let bytes = hay.as_bytes();
    let mut i = open + 1;
    loop {
        match bytes.get(i)? {
            b'\\' => i += 2,
            b'"' => break,
            _ => i += 1,
        }
    }
    // `i` indexes an ASCII quote, so it is a char boundary
    let v = crate::decode::unescape_json_string(&hay[open..=i])?;
    (!v.is_empty()).then_some(Text(v))
}

fn recover(message: &str) -> Parsed<'_> {
    let status = if message.trim_end().ends_with(TRUNCATION_MARKER) {
        ParseStatus::Truncated
    } else {
        ParseStatus::Invalid
    };
    // Identity and request fields come before the bodies in the apiserver's field order;
    // a body is client-controlled and could carry look-alike keys, so never search it.
    let head = message
        .find("\"requestObject\":")
        .or_else(|| message.find("\"responseObject\":"))
        .map_or(message, |i| &message[..i]);
    let b = |k| pattern(head, k);
    let event = AuditEvent {
        audit_id: b("auditID"),
        verb: b("verb"),
        stage: b("stage"),
        level: b("level"),
        request_uri: b("requestURI"),
        user: Some(UserInfo {
            username: b("username"),
            ..Default::default()
        }),
        request_received_timestamp: b("requestReceivedTimestamp"),
        ..Default::default()
    };
    let recovered_key = head
        .find("\"accessKeyId\":[\"")
        .map(|i| &head[i + 16..])
        .and_then(|r| r.split('"').next())
        .filter(|k| !k.is_empty() && k.bytes().all(|c| c.is_ascii_alphanumeric()));
    Parsed {
        status,
        event,
        recovered_key,
    }
}

/// The aws-iam-authenticator keys of `user.extra` (first value of each array).
pub fn aws_extra<'a>(extra: Option<&'a RawValue>) -> AwsExtra<'a> {
    #[derive(Deserialize, Default)]
    struct Extra<'a> {
        #[serde(borrow, default, rename = "accessKeyId")]
        access_key_id: Option<First<'a>>,
        #[serde(borrow, default)]
        arn: Option<First<'a>>,
        #[serde(borrow, default, rename = "canonicalArn")]
        canonical_arn: Option<First<'a>>,
        #[serde(borrow, default, rename = "sessionName")]
        session_name: Option<First<'a>>,
        #[serde(borrow, default, rename = "principalId")]
        principal_id: Option<First<'a>>,
    }
    let Some(raw) = extra else {
        return AwsExtra::default();
    };
    let e: Extra<'a> = serde_json::from_str(raw.get()).unwrap_or_default();
    let f = |x: Option<First<'a>>| x.and_then(|f| f.0);
    AwsExtra {
        access_key_id: f(e.access_key_id),
        arn: f(e.arn),
        canonical_arn: f(e.canonical_arn),
        session_name: f(e.session_name),
        principal_id: f(e.principal_id),
    }
}

/// First string of a JSON array, borrowed (values with escapes are skipped: AWS ids and
/// ARNs never need escaping).
struct First<'a>(Option<&'a str>);

impl<'de: 'a, 'a> Deserialize<'de> for First<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = First<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of strings")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut first = None;
                while let Some(v) = seq.next_element::<Text<'de>>()? {
                    if first.is_none() {
                        if let Cow::Borrowed(b) = v.0 {
                            first = Some(b);
                        }
                    }
                }
                Ok(First(first))
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(First(Some(v)))
            }
        }
        d.deserialize_any(V)
    }
}

/// Does a `groups` array contain `system:unauthenticated`? (A JSON string token cannot
/// contain that quoted sequence unless it is that element.)
pub fn unauthenticated(groups: Option<&RawValue>) -> bool {
    groups.is_some_and(|g| g.get().contains("\"system:unauthenticated\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"5d0b2a6e","stage":"ResponseComplete","requestURI":"/api/v1/namespaces?limit=500\u0026x=1","verb":"list","user":{"username":"arn:aws:sts::111122223333:assumed-role/ops/alice-example.com","uid":"aws-iam-authenticator:111122223333:AROA1","groups":["system:authenticated"],"extra":{"accessKeyId":["ASIAKEY1"],"arn":["arn:aws:sts::111122223333:assumed-role/ops/alice@example.com"],"canonicalArn":["arn:aws:iam::111122223333:role/ops"],"sessionName":["alice@example.com"],"principalId":["AROA1"]}},"sourceIPs":["198.51.100.24","10.0.0.1"],"userAgent":"kubectl","objectRef":{"resource":"namespaces","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2024-11-26T13:07:07.461683Z","stageTimestamp":"2024-11-26T13:07:07.491536Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}"#;

    #[test]
    fn parses_a_full_event_borrowing_where_possible() {
        let p = parse(EVENT);
        assert_eq!(p.status, ParseStatus::Ok);
        let e = &p.event;
        assert!(e.audit_id.as_ref().unwrap().is_borrowed());
        assert_eq!(e.audit_id.as_deref(), Some("5d0b2a6e"));
        // \u0026 must be unescaped, so this one is owned
        assert_eq!(
            e.request_uri.as_deref(),
            Some("/api/v1/namespaces?limit=500&x=1")
        );
        assert_eq!(e.response_status.as_ref().unwrap().code, Some(200));
        let x = aws_extra(e.user.as_ref().unwrap().extra);
        assert_eq!(x.access_key_id, Some("ASIAKEY1"));
        assert_eq!(x.session_name, Some("alice@example.com"));
        assert_eq!(x.canonical_arn, Some("arn:aws:iam::111122223333:role/ops"));
        assert!(!unauthenticated(e.user.as_ref().unwrap().groups));
    }

    #[test]
    fn truncated_and_invalid_messages_keep_what_a_pattern_finds() {
        let cut = format!("{}{}", &EVENT[..400], TRUNCATION_MARKER);
        let p = parse(&cut);
        assert_eq!(p.status, ParseStatus::Truncated);
        assert_eq!(p.event.audit_id.as_deref(), Some("5d0b2a6e"));
        assert_eq!(p.event.verb.as_deref(), Some("list"));
        assert_eq!(p.recovered_key, Some("ASIAKEY1"));

        let p = parse("not json at all");
        assert_eq!(p.status, ParseStatus::Invalid);
        assert!(p.event.audit_id.is_none());

        // valid JSON that is not an audit event
        let p = parse(r#"{"hello":"world"}"#);
        assert_eq!(p.status, ParseStatus::Invalid);

        // escaped values are recovered unescaped; a value cut by the truncation is not
        let p = parse(
            r#"{"kind":"Event","auditID":"a1","requestURI":"/api?x=1\u0026y=2","verb":"li[Truncated...]"#,
        );
        assert_eq!(p.status, ParseStatus::Truncated);
        assert_eq!(p.event.request_uri.as_deref(), Some("/api?x=1&y=2"));
        assert_eq!(p.event.verb, None);

        // a look-alike key inside a request body is never trusted
        let p = parse(r#"{"kind":"Event","requestObject":{"auditID":"evil","verb":"delete"}"#);
        assert_eq!(p.status, ParseStatus::Invalid);
        assert!(p.event.audit_id.is_none());
        assert!(p.event.verb.is_none());
    }
}
