//! Stage 1: a Kinesis record's bytes -> CloudWatch Logs subscription envelopes.
//!
//! The record is gzip (possibly several members: Firehose's S3 objects concatenate
//! records) of one or more JSON documents. Decompression is capped so a decompression
//! bomb fails its record, not the process.
//! Docs: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/SubscriptionFilters.html>

use std::borrow::Cow;
use std::io::Read;

use serde::de::{self, Visitor};
use serde::Deserialize;

/// Default cap on one record's decompressed size. A Kinesis record is at most 1 MiB and
/// CloudWatch Logs JSON compresses about 10:1; 32 MiB leaves room and keeps a batch of
/// 3 MB of bombs within the Lambda's memory.
pub const DEFAULT_MAX_DECOMPRESSED: usize = 32 << 20;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("not gzip (first bytes {0:02x?})")]
    NotGzip(Vec<u8>),
    #[error("corrupt gzip: {0}")]
    CorruptGzip(String),
    #[error("truncated gzip after {0} decompressed bytes")]
    TruncatedGzip(usize),
    #[error("decompressed size exceeds the {0}-byte cap")]
    TooLarge(usize),
    #[error("envelope {index} is not a CloudWatch Logs subscription envelope: {message}")]
    Envelope { index: usize, message: String },
    #[error("no envelope in the record")]
    Empty,
}

/// `messageType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum MessageType {
    #[serde(rename = "DATA_MESSAGE")]
    Data,
    #[serde(rename = "CONTROL_MESSAGE")]
    Control,
}

/// A CloudWatch Logs subscription envelope, borrowing from the decompressed buffer.
/// `owner`, `logGroup` and `logEvents` are required; a document without them is not an
/// envelope and fails the record.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CwlEnvelope<'a> {
    pub message_type: MessageType,
    #[serde(borrow)]
    pub owner: Cow<'a, str>,
    #[serde(borrow)]
    pub log_group: Cow<'a, str>,
    #[serde(borrow, default)]
    pub log_stream: Cow<'a, str>,
    #[serde(borrow)]
    pub log_events: Vec<CwlLogEvent<'a>>,
    /// `ACCOUNT_LEVEL_POLICY` for account-level subscription policies.
    #[serde(borrow, default)]
    pub policy_level: Option<Cow<'a, str>>,
}

fn own(c: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(c.into_owned())
}

impl CwlEnvelope<'_> {
    /// Detach from the decompressed buffer so it can be freed: the messages are already
    /// owned (unescaped), so this copies only the short fields. Halves a batch's peak
    /// memory (the buffer is as large as all its messages).
    pub fn into_owned(self) -> CwlEnvelope<'static> {
        CwlEnvelope {
            message_type: self.message_type,
            owner: own(self.owner),
            log_group: own(self.log_group),
            log_stream: own(self.log_stream),
            log_events: self
                .log_events
                .into_iter()
                .map(|e| CwlLogEvent {
                    id: own(e.id),
                    timestamp: e.timestamp,
                    message: own(e.message),
                    extracted_fields: e.extracted_fields.map(|f| ExtractedFields {
                        region: f.region.map(own),
                        account: f.account.map(own),
                    }),
                })
                .collect(),
            policy_level: self.policy_level.map(own),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CwlLogEvent<'a> {
    /// A ~56-digit decimal string from AWS; the moto emulator sends a JSON number.
    #[serde(borrow, deserialize_with = "string_or_number")]
    pub id: Cow<'a, str>,
    pub timestamp: i64,
    /// Always escaped JSON inside JSON, so usually owned. (A raw-value capture plus a
    /// memchr unescape measured slower than serde_json's own unescape: BENCHMARKS.md.)
    #[serde(borrow)]
    pub message: Cow<'a, str>,
    #[serde(borrow, default)]
    pub extracted_fields: Option<ExtractedFields<'a>>,
}

/// `extractedFields`, present when the subscription emits system fields.
#[derive(Debug, Default, Deserialize)]
pub struct ExtractedFields<'a> {
    #[serde(borrow, rename = "@aws.region", default)]
    pub region: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "@aws.account", default)]
    pub account: Option<Cow<'a, str>>,
}

fn string_or_number<'de, D: de::Deserializer<'de>>(d: D) -> Result<Cow<'de, str>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Cow<'de, str>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or number")
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Cow::Borrowed(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v.to_string()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v.to_string()))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v.to_string()))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Cow::Owned(format!("{v}")))
        }
    }
    d.deserialize_any(V)
}

fn hex4(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b.get(..4)? {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

/// Unescape a JSON string literal (with its quotes). `None` if it is not one. Used where
/// a recovered field must be read from escaped text.
pub fn unescape_json_string(lit: &str) -> Option<Cow<'_, str>> {
    let s = lit.strip_prefix('"')?.strip_suffix('"')?;
    let bytes = s.as_bytes();
    let Some(first) = memchr::memchr(b'\\', bytes) else {
        return Some(Cow::Borrowed(s));
    };
    let mut out = String::with_capacity(s.len());
    out.push_str(&s[..first]);
    let mut i = first;
    while i < bytes.len() {
        // bytes[i] is a backslash
        let esc = *bytes.get(i + 1)?;
        i += 2;
        match esc {
            b'"' => out.push('"'),
            b'\\' => out.push('\\'),
            b'/' => out.push('/'),
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'n' => out.push('\n'),
            b'r' => out.push('\r'),
            b't' => out.push('\t'),
            b'u' => {
                let hi = hex4(&bytes[i..])?;
                i += 4;
                let c = if (0xD800..0xDC00).contains(&hi) {
                    // a surrogate pair: \uD83D\uDE00
                    if bytes.get(i..i + 2)? != b"\\u" {
                        return None;
                    }
                    let lo = hex4(&bytes[i + 2..])?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return None;
                    }
                    i += 6;
                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?
                } else {
                    char::from_u32(hi)? // lone low surrogates are rejected here
                };
                out.push(c);
            }
            _ => return None,
        }
        match memchr::memchr(b'\\', &bytes[i..]) {
            Some(j) => {
                out.push_str(&s[i..i + j]);
                i += j;
            }
            None => {
                out.push_str(&s[i..]);
                break;
            }
        }
    }
    Some(Cow::Owned(out))
}

/// Gunzip every member of `data`, refusing to produce more than `cap` bytes.
pub fn gunzip(data: &[u8], cap: usize) -> Result<Vec<u8>, DecodeError> {
    if data.len() < 2 || data[0] != 0x1f || data[1] != 0x8b {
        return Err(DecodeError::NotGzip(data.iter().take(4).copied().collect()));
    }
    // The last member's ISIZE trailer is the (mod 2^32) size of that member: for the
    // usual single member it sizes the buffer exactly, so it never regrows.
    let isize_hint = data
        .get(data.len().saturating_sub(4)..)
        .map_or(0, |t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) as usize);
    // The trailer is untrusted: never reserve more than deflate can expand to (~1032:1).
    let hint = isize_hint
        .min(data.len().saturating_mul(1032))
        .max(data.len() * 4);
    let mut out = Vec::with_capacity(hint.min(cap) + 1);
    let mut dec = flate2::read::MultiGzDecoder::new(data).take(cap as u64 + 1);
    match dec.read_to_end(&mut out) {
        Ok(_) if out.len() > cap => Err(DecodeError::TooLarge(cap)),
        Ok(_) => Ok(out),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(DecodeError::TruncatedGzip(out.len()))
        }
        Err(e) => Err(DecodeError::CorruptGzip(e.to_string())),
    }
}

/// Gunzip when the bytes are gzip, repeatedly (a Firehose raw archive written with GZIP
/// compression holds gzip records inside gzip). Plain bytes pass through.
pub fn gunzip_any(data: Vec<u8>, cap: usize) -> Result<Vec<u8>, DecodeError> {
    let mut cur = data;
    for _ in 0..3 {
        if cur.len() >= 2 && cur[0] == 0x1f && cur[1] == 0x8b {
            cur = gunzip(&cur, cap)?;
        } else {
            break;
        }
    }
    Ok(cur)
}

/// Parse the stream of envelopes in a decompressed record (one or more documents,
/// back to back, as Firehose's archive concatenates them).
pub fn envelopes(json: &[u8]) -> Result<Vec<CwlEnvelope<'_>>, DecodeError> {
    let mut out = Vec::with_capacity(1);
    for doc in serde_json::Deserializer::from_slice(json).into_iter::<CwlEnvelope<'_>>() {
        match doc {
            Ok(env) => out.push(env),
            Err(e) => {
                return Err(DecodeError::Envelope {
                    index: out.len(),
                    message: e.to_string(),
                })
            }
        }
    }
    if out.is_empty() {
        return Err(DecodeError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    const ENV: &str = r#"{"messageType":"DATA_MESSAGE","owner":"111122223333","logGroup":"/aws/eks/a/cluster","logStream":"kube-apiserver-audit-1","subscriptionFilters":["f"],"logEvents":[{"id":"38480917865042697267627490045603633139480491071049695232","timestamp":1,"message":"{\"a\":1}"},{"id":42,"timestamp":2,"message":"m","extractedFields":{"@aws.account":"111122223333","@aws.region":"eu-west-1"}}],"policyLevel":"ACCOUNT_LEVEL_POLICY"}"#;

    #[test]
    fn every_gzip_member_and_every_document_is_read() {
        // GzDecoder would stop after the first member; the second must not be lost.
        let mut two = gz(ENV.as_bytes());
        two.extend(gz(ENV.as_bytes()));
        let json = gunzip(&two, DEFAULT_MAX_DECOMPRESSED).unwrap();
        let envs = envelopes(&json).unwrap();
        assert_eq!(envs.len(), 2);
        let e = &envs[0];
        assert_eq!(e.message_type, MessageType::Data);
        assert_eq!(e.policy_level.as_deref(), Some("ACCOUNT_LEVEL_POLICY"));
        assert_eq!(
            e.log_events[0].id,
            "38480917865042697267627490045603633139480491071049695232"
        );
        assert_eq!(e.log_events[1].id, "42"); // moto sends a number
        assert_eq!(e.log_events[0].message, "{\"a\":1}");
        assert_eq!(
            e.log_events[1]
                .extracted_fields
                .as_ref()
                .unwrap()
                .region
                .as_deref(),
            Some("eu-west-1")
        );
        // documents back to back without gzip framing (Firehose archive after gunzip)
        let concat = format!("{ENV}{ENV}\n{ENV}");
        assert_eq!(envelopes(concat.as_bytes()).unwrap().len(), 3);
    }

    #[test]
    fn bad_records_get_a_precise_error() {
        let cases: Vec<(&str, Vec<u8>, fn(&DecodeError) -> bool)> = vec![
            ("empty", vec![], |e| matches!(e, DecodeError::NotGzip(_))),
            ("plain json", ENV.as_bytes().to_vec(), |e| {
                matches!(e, DecodeError::NotGzip(_))
            }),
            ("truncated", gz(ENV.as_bytes())[..40].to_vec(), |e| {
                matches!(e, DecodeError::TruncatedGzip(_))
            }),
            (
                "corrupt",
                {
                    let mut g = gz(ENV.as_bytes());
                    for b in &mut g[12..30] {
                        *b ^= 0x5a;
                    }
                    g
                },
                |e| {
                    matches!(
                        e,
                        DecodeError::CorruptGzip(_) | DecodeError::TruncatedGzip(_)
                    )
                },
            ),
        ];
        for (name, data, ok) in cases {
            let err = gunzip(&data, DEFAULT_MAX_DECOMPRESSED).unwrap_err();
            assert!(ok(&err), "{name}: {err}");
        }
        let trailing = format!("{ENV} trailing");
        let doc_cases: Vec<(&str, &str)> = vec![
            ("not json", "<xml/>"),
            (
                "missing owner",
                r#"{"messageType":"DATA_MESSAGE","logGroup":"g","logEvents":[]}"#,
            ),
            (
                "missing logGroup",
                r#"{"messageType":"DATA_MESSAGE","owner":"1","logEvents":[]}"#,
            ),
            (
                "missing logEvents",
                r#"{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g"}"#,
            ),
            (
                "unknown type",
                r#"{"messageType":"OTHER","owner":"1","logGroup":"g","logEvents":[]}"#,
            ),
            ("good then garbage", &trailing),
        ];
        for (name, doc) in doc_cases {
            assert!(
                matches!(envelopes(doc.as_bytes()), Err(DecodeError::Envelope { .. })),
                "{name}"
            );
        }
        assert_eq!(envelopes(b"  \n").unwrap_err(), DecodeError::Empty);
    }

    #[test]
    fn string_unescape_agrees_with_serde_json() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let alphabet: Vec<char> = "ab\"\\/\n\r\t\u{8}\u{c}\u{1}\u{1f}é€😀{}:,&<>"
            .chars()
            .collect();
        for _ in 0..2000 {
            let len = (x % 40) as usize;
            let s: String = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x % alphabet.len() as u64) as usize]
                })
                .collect();
            let lit = serde_json::to_string(&s).unwrap();
            assert_eq!(
                unescape_json_string(&lit).as_deref(),
                Some(s.as_str()),
                "{lit}"
            );
        }
        // escapes serde_json writes differently, and ones it never writes
        assert_eq!(
            unescape_json_string(r#""\u0041\u00e9\ud83d\ude00\/""#).as_deref(),
            Some("Aé😀/")
        );
        for bad in [
            r#""\x""#,
            r#""\ud83d""#,
            r#""\ude00""#,
            r#""\u12""#,
            "\"abc",
            "abc\"",
            r#""\""#,
        ] {
            assert_eq!(unescape_json_string(bad), None, "{bad}");
        }
        assert!(matches!(
            unescape_json_string(r#""plain""#),
            Some(Cow::Borrowed("plain"))
        ));
    }

    #[test]
    fn a_decompression_bomb_fails_the_record_not_the_process() {
        let bomb = gz(&vec![b'{'; 8 << 20]); // 8 MiB of '{' compresses to ~8 KiB
        assert!(bomb.len() < 64 << 10);
        assert_eq!(
            gunzip(&bomb, 1 << 20).unwrap_err(),
            DecodeError::TooLarge(1 << 20)
        );
        assert_eq!(gunzip(&bomb, 16 << 20).unwrap().len(), 8 << 20);
    }

    #[test]
    fn nested_gzip_is_unwrapped_for_backfills() {
        let inner = gz(ENV.as_bytes());
        let outer = gz(&inner);
        assert_eq!(gunzip_any(outer, 1 << 20).unwrap(), ENV.as_bytes());
        assert_eq!(
            gunzip_any(ENV.as_bytes().to_vec(), 1 << 20).unwrap(),
            ENV.as_bytes()
        );
    }
}
