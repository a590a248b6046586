//! Stage 2: one CloudWatch log message -> a Kubernetes audit event (audit.k8s.io/v1).
//!
//! Parsed into borrowed typed fields; nested collections (`groups`, `sourceIPs`,
//! `extra`, `annotations`) and the request/response bodies stay `RawValue`s and are only
//! walked when the row is appended to Arrow. Messages that are not valid JSON are kept
//! as `truncated` or `invalid` rows with what a pattern can recover.
//! Schema: <https://kubernetes.io/docs/reference/config-api/apiserver-audit.v1/#audit-k8s-io-v1-Event>

use std::borrow::Cow;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
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
    /// Parsed once, here: the AWS identity and the `user_extra` column both read it.
    #[serde(borrow, default)]
    pub extra: Option<UserExtra<'a>>,
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

/// `user.extra` (`map[string][]string`), parsed in one pass into flat borrowed vectors:
/// each key with the range of its values. A value that is a bare string counts as a
/// one-element list; an array stops at its first element that is not a string or null
/// (the list stays well-formed); any other value is a null list. A document that is not
/// an object is kept as "not a map".
#[derive(Debug, Default)]
pub struct UserExtra<'a> {
    /// (key, end of its values in `values`, whether the value was a list)
    keys: Vec<(Text<'a>, u32, bool)>,
    values: Vec<Option<Text<'a>>>,
    is_map: bool,
}

/// One entry of [`UserExtra`].
pub struct ExtraEntry<'e, 'a> {
    pub key: &'e str,
    /// `None`: the value was not a list (a null list in Arrow).
    pub values: Option<&'e [Option<Text<'a>>]>,
}

impl<'a> UserExtra<'a> {
    pub fn is_map(&self) -> bool {
        self.is_map
    }

    pub fn entries(&self) -> impl Iterator<Item = ExtraEntry<'_, 'a>> {
        let mut start = 0usize;
        self.keys.iter().map(move |(k, end, list)| {
            let end = *end as usize;
            let vals = &self.values[start..end];
            start = end;
            ExtraEntry {
                key: k,
                values: list.then_some(vals),
            }
        })
    }

    /// The aws-iam-authenticator keys (first value of each list that needs no
    /// unescaping: AWS ids and ARNs never do). A key given twice makes all of them
    /// absent: a forged event must not choose which copy counts.
    pub fn aws(&self) -> AwsExtra<'a> {
        let mut x = AwsExtra::default();
        let mut seen = [false; 5];
        for e in self.entries() {
            let slot = match e.key {
                "accessKeyId" => 0,
                "arn" => 1,
                "canonicalArn" => 2,
                "sessionName" => 3,
                "principalId" => 4,
                _ => continue,
            };
            if std::mem::replace(&mut seen[slot], true) {
                return AwsExtra::default();
            }
            let first = e.values.and_then(|v| {
                v.iter().flatten().find_map(|t| match &t.0 {
                    Cow::Borrowed(b) => Some(*b),
                    Cow::Owned(_) => None,
                })
            });
            match slot {
                0 => x.access_key_id = first,
                1 => x.arn = first,
                2 => x.canonical_arn = first,
                3 => x.session_name = first,
                _ => x.principal_id = first,
            }
        }
        x
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for UserExtra<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ExtraVisitor)
    }
}

struct ExtraVisitor;

impl<'de> Visitor<'de> for ExtraVisitor {
    type Value = UserExtra<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object of string arrays")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
        let mut x = UserExtra {
            is_map: true,
            ..Default::default()
        };
        while let Some(k) = m.next_key::<Text<'de>>()? {
            let list = m.next_value_seed(ExtraValue(&mut x.values))?;
            x.keys.push((k, x.values.len() as u32, list));
        }
        Ok(x)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
        while s.next_element::<IgnoredAny>()?.is_some() {}
        Ok(UserExtra::default())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(UserExtra::default())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(UserExtra::default())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(UserExtra::default())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(UserExtra::default())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(UserExtra::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(UserExtra::default())
    }
}

/// One value of `user.extra`, appended to the flat list; yields whether it was a list.
struct ExtraValue<'v, 'a>(&'v mut Vec<Option<Text<'a>>>);

impl<'de: 'a, 'a> DeserializeSeed<'de> for ExtraValue<'_, 'a> {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for ExtraValue<'_, 'a> {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of strings")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<bool, A::Error> {
        let mut open = true;
        while let Some(v) = s.next_element::<Scalar<'de>>()? {
            match v {
                Scalar::Str(t) if open => self.0.push(Some(t)),
                Scalar::Null if open => self.0.push(None),
                _ => open = false,
            }
        }
        Ok(true)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<bool, E> {
        self.0.push(Some(Text(Cow::Borrowed(v))));
        Ok(true)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        self.0.push(Some(Text(Cow::Owned(v.to_owned()))));
        Ok(true)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<bool, A::Error> {
        while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// An array element: a string, null, or anything else (skipped).
enum Scalar<'a> {
    Str(Text<'a>),
    Null,
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Text(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Text(Cow::Owned(v.to_owned()))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
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
        let x = e.user.as_ref().unwrap().extra.as_ref().unwrap().aws();
        assert_eq!(x.access_key_id, Some("ASIAKEY1"));
        assert_eq!(x.session_name, Some("alice@example.com"));
        assert_eq!(x.canonical_arn, Some("arn:aws:iam::111122223333:role/ops"));
        assert!(!unauthenticated(e.user.as_ref().unwrap().groups));
    }

    fn extra_of(json: &str) -> UserExtra<'_> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn user_extra_is_read_once_into_entries_and_aws_fields() {
        let x = extra_of(
            r#"{"accessKeyId":["ASIAKEY1"],"arn":["arn:aws:sts::1:assumed-role/r/s","x"],"other":["a",null,"b"],"bare":"v","num":[1,"after"],"obj":{"k":1},"esc":["a\u0041"]}"#,
        );
        assert!(x.is_map());
        let entries: Vec<(String, Option<Vec<Option<String>>>)> = x
            .entries()
            .map(|e| {
                (
                    e.key.to_string(),
                    e.values
                        .map(|v| v.iter().map(|t| t.as_deref().map(str::to_string)).collect()),
                )
            })
            .collect();
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            entries,
            vec![
                ("accessKeyId".into(), Some(vec![s("ASIAKEY1")])),
                (
                    "arn".into(),
                    Some(vec![s("arn:aws:sts::1:assumed-role/r/s"), s("x")])
                ),
                ("other".into(), Some(vec![s("a"), None, s("b")])),
                ("bare".into(), Some(vec![s("v")])),
                // a list stops at its first element that is not a string
                ("num".into(), Some(vec![])),
                ("obj".into(), None),
                ("esc".into(), Some(vec![s("aA")])),
            ]
        );
        let aws = x.aws();
        assert_eq!(aws.access_key_id, Some("ASIAKEY1"));
        assert_eq!(aws.arn, Some("arn:aws:sts::1:assumed-role/r/s"));
        assert_eq!(aws.session_name, None);
        // not an object: not a map, no AWS fields
        for not_map in [r#"["a"]"#, r#""s""#, "1", "null"] {
            let x = extra_of(not_map);
            assert!(!x.is_map(), "{not_map}");
            assert!(x.aws().access_key_id.is_none());
        }
    }

    #[test]
    fn a_duplicated_aws_key_makes_every_aws_field_absent() {
        // a forged event must not choose which copy of accessKeyId counts
        let x =
            extra_of(r#"{"accessKeyId":["ASIAVICTIM"],"arn":["a"],"accessKeyId":["ASIAMINE"]}"#);
        let aws = x.aws();
        assert_eq!((aws.access_key_id, aws.arn), (None, None));
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
