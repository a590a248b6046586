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
/// CloudWatch Logs JSON compresses about 10:1; 64 MiB leaves room and bounds memory.
pub const DEFAULT_MAX_DECOMPRESSED: usize = 64 << 20;

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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CwlLogEvent<'a> {
    /// A ~56-digit decimal string from AWS; the moto emulator sends a JSON number.
    #[serde(borrow, deserialize_with = "string_or_number")]
    pub id: Cow<'a, str>,
    pub timestamp: i64,
    /// Always escaped JSON inside JSON, so usually owned.
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

/// Gunzip every member of `data`, refusing to produce more than `cap` bytes.
pub fn gunzip(data: &[u8], cap: usize) -> Result<Vec<u8>, DecodeError> {
    if data.len() < 2 || data[0] != 0x1f || data[1] != 0x8b {
        return Err(DecodeError::NotGzip(data.iter().take(4).copied().collect()));
    }
    let mut out = Vec::with_capacity((data.len() * 8).min(cap));
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
