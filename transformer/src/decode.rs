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

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not gzip (first bytes {0:02x?})")]
    NotGzip(Vec<u8>),
    #[error("corrupt gzip: {0}")]
    CorruptGzip(#[source] std::io::Error),
    #[error("truncated gzip after {0} decompressed bytes")]
    TruncatedGzip(usize),
    #[error("decompressed size exceeds the {0}-byte cap")]
    TooLarge(usize),
    #[error("envelope {index} is not a CloudWatch Logs subscription envelope: {source}")]
    Envelope {
        index: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("no envelope in the record")]
    Empty,
    #[error("over its account's share ({budget} bytes) of the batch's decompression budget: record kept for a replay (auditlake ingest)")]
    OverBudget { budget: usize },
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
#[derive(Debug, PartialEq, Deserialize)]
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

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CwlLogEvent<'a> {
    /// A ~56-digit decimal string from AWS; the moto emulator sends a JSON number.
    #[serde(borrow, deserialize_with = "string_or_number")]
    pub id: Cow<'a, str>,
    pub timestamp: i64,
    /// Always escaped JSON inside JSON, so usually owned: unescaped in the same pass
    /// that scans it ([`crate::envelope`]).
    #[serde(borrow)]
    pub message: Cow<'a, str>,
    #[serde(borrow, default)]
    pub extracted_fields: Option<ExtractedFields<'a>>,
}

/// `extractedFields`, present when the subscription emits system fields.
#[derive(Debug, Default, PartialEq, Deserialize)]
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

/// One JSON escape sequence, `b` starting just after its backslash: the character and
/// how many bytes of `b` it spans. `None` for anything JSON does not allow, lone
/// surrogates included (serde_json refuses them too). Shared by every unescaper here.
pub(crate) fn json_escape(b: &[u8]) -> Option<(char, usize)> {
    let c = match *b.first()? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let hi = hex4(b.get(1..)?)?;
            if !(0xD800..0xDC00).contains(&hi) {
                // a lone low surrogate is not a char: refused here
                return Some((char::from_u32(hi)?, 5));
            }
            // a surrogate pair: \uD83D\uDE00
            if b.get(5..7)? != b"\\u" {
                return None;
            }
            let lo = hex4(b.get(7..)?)?;
            if !(0xDC00..0xE000).contains(&lo) {
                return None;
            }
            let c = char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?;
            return Some((c, 11));
        }
        _ => return None,
    };
    Some((c, 1))
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
        let (c, n) = json_escape(bytes.get(i + 1..)?)?;
        out.push(c);
        i += 1 + n;
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
#[inline(never)] // a stage of the instruction profile (bench --instructions)
pub fn gunzip(data: &[u8], cap: usize) -> Result<Vec<u8>, DecodeError> {
    if data.len() < 2 || data[0] != 0x1f || data[1] != 0x8b {
        return Err(DecodeError::NotGzip(data.iter().take(4).copied().collect()));
    }
    // The last member's ISIZE trailer is the (mod 2^32) size of that member: for the
    // usual single member it sizes the buffer exactly, so it never regrows.
    // (Found by fuzzing: a record shorter than a trailer must not be read past its end.)
    let isize_hint = data
        .last_chunk::<4>()
        .map_or(0, |t| u32::from_le_bytes(*t) as usize);
    // The trailer is untrusted: never reserve more than deflate can expand to (~1032:1).
    let hint = isize_hint
        .min(data.len().saturating_mul(1032))
        .max(data.len() * 4);
    let mut out = Vec::with_capacity(hint.min(cap) + 1);
    // bufread: the slice is the buffer (no BufReader copy of the input per record)
    let mut dec = flate2::bufread::MultiGzDecoder::new(data).take(cap as u64 + 1);
    match dec.read_to_end(&mut out) {
        Ok(_) if out.len() > cap => Err(DecodeError::TooLarge(cap)),
        Ok(_) => Ok(out),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(DecodeError::TruncatedGzip(out.len()))
        }
        Err(e) => Err(DecodeError::CorruptGzip(e)),
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
#[inline(never)] // a stage of the instruction profile (bench --instructions)
pub fn envelopes(json: &[u8]) -> Result<Vec<CwlEnvelope<'_>>, DecodeError> {
    match crate::envelope::parse(json) {
        Some(envs) => Ok(envs),
        None => envelopes_serde(json),
    }
}

/// [`envelopes`] by serde_json alone: the contract the fast path is checked against,
/// and the parser of every shape the fast path leaves (errors included).
pub fn envelopes_serde(json: &[u8]) -> Result<Vec<CwlEnvelope<'_>>, DecodeError> {
    let mut out = Vec::with_capacity(1);
    for doc in serde_json::Deserializer::from_slice(json).into_iter::<CwlEnvelope<'_>>() {
        match doc {
            Ok(env) => out.push(env),
            Err(source) => {
                return Err(DecodeError::Envelope {
                    index: out.len(),
                    source,
                })
            }
        }
    }
    if out.is_empty() {
        return Err(DecodeError::Empty);
    }
    Ok(out)
}

/// A decoded record: its decompressed size and its envelopes, detached from the
/// buffer (which is freed as soon as they are parsed).
pub type Decoded = Result<(usize, Vec<CwlEnvelope<'static>>), DecodeError>;

/// Records decoded at once. Fixed, so which records fit the batch budget never depends
/// on the number of cores; small, so at most this many records' buffers are in flight
/// past the budget.
pub const DECODE_CHUNK: usize = 4;

/// Stage 1 for one record: gunzip (capped at `cap`; backfills of plain JSON pass
/// `gzip: false`), then parse and detach its envelopes. The size is returned even when
/// the envelopes do not parse: decompression is work the batch budget counts.
pub fn decode_record(data: &[u8], gzip: bool, cap: usize) -> (usize, Decoded) {
    let buf: Cow<'_, [u8]> = if gzip {
        match gunzip(data, cap) {
            Ok(b) => Cow::Owned(b),
            Err(e) => return (0, Err(e)),
        }
    } else if data.len() > cap {
        return (0, Err(DecodeError::TooLarge(cap)));
    } else {
        Cow::Borrowed(data)
    };
    let n = buf.len();
    let envs = envelopes(&buf).map(|v| (n, v.into_iter().map(CwlEnvelope::into_owned).collect()));
    (n, envs)
}

/// The envelope `owner` of a record, read from its first bytes: CloudWatch Logs writes
/// `messageType` and `owner` first, before anything a member account controls (log
/// group, stream and messages come after), so this cannot be steered by a member. Only
/// used to share the batch budget fairly; `None` when not found there.
pub fn peek_owner(data: &[u8], gzip: bool) -> Option<[u8; 12]> {
    const PEEK: usize = 512;
    let mut head = [0u8; PEEK];
    let n = if gzip {
        let mut d = flate2::bufread::GzDecoder::new(data);
        let mut n = 0;
        while n < PEEK {
            match d.read(&mut head[n..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        n
    } else {
        let n = data.len().min(PEEK);
        head[..n].copy_from_slice(&data[..n]);
        n
    };
    let head = &head[..n];
    let at = memchr::memmem::find(head, b"\"owner\":\"")? + 9;
    let id: [u8; 12] = head.get(at..at + 12)?.try_into().ok()?;
    (id.iter().all(u8::is_ascii_digit) && head.get(at + 12) == Some(&b'"')).then_some(id)
}

/// The size a gzip record says it decompresses to (its last member's ISIZE trailer).
/// Untrusted: used only as a demand when sharing the budget, never to allocate.
fn claimed_size(data: &[u8], gzip: bool) -> usize {
    if !gzip {
        return data.len();
    }
    data.last_chunk::<4>()
        .map_or(0, |t| u32::from_le_bytes(*t) as usize)
}

/// Max-min fair shares of `budget` among accounts demanding `demand` bytes each: every
/// account gets its demand if that is at most an equal share of what is left, and the
/// rest is split equally among the others (water-filling).
pub fn fair_shares(demand: &[usize], budget: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..demand.len()).collect();
    order.sort_by_key(|&i| (demand[i], i));
    let mut share = vec![0; demand.len()];
    let mut left = budget;
    for (k, &i) in order.iter().enumerate() {
        let equal = left / (demand.len() - k);
        share[i] = demand[i].min(equal);
        left -= share[i];
    }
    share
}

/// Stage 1 for a batch, in record order, `DECODE_CHUNK` records at a time in parallel.
/// Each record is capped at `cap` decompressed bytes; the batch at `budget` in all,
/// shared max-min fairly among the envelope owners (so one account's records cannot
/// spend what the others need), each owner's share enforced on the bytes its records
/// really decompress to. A record that does not fit its owner's share fails with
/// [`DecodeError::OverBudget`] (Firehose keeps it in `errors/`; nothing is lost), and
/// later records still get what is left.
pub fn decode_batch<R: Sync>(
    records: &[R],
    bytes: impl Fn(&R) -> (&[u8], bool) + Sync,
    cap: usize,
    budget: usize,
) -> Vec<Decoded> {
    use rayon::prelude::*;
    use std::collections::HashMap;
    // owners and their claimed demand (records whose owner is not found share one slot)
    let owners: Vec<Option<[u8; 12]>> = records
        .par_iter()
        .map(|r| {
            let (d, gz) = bytes(r);
            peek_owner(d, gz)
        })
        .collect();
    let mut slot_of: HashMap<Option<[u8; 12]>, usize> = HashMap::new();
    let mut demand: Vec<usize> = Vec::new();
    let slots: Vec<usize> = records
        .iter()
        .zip(&owners)
        .map(|(r, o)| {
            let next = slot_of.len();
            let s = *slot_of.entry(*o).or_insert(next);
            if s == demand.len() {
                demand.push(0);
            }
            let (d, gz) = bytes(r);
            demand[s] = demand[s].saturating_add(claimed_size(d, gz).min(cap));
            s
        })
        .collect();
    let share = fair_shares(&demand, budget);
    let mut used = vec![0usize; share.len()];

    let mut out = Vec::with_capacity(records.len());
    for (chunk, chunk_slots) in records.chunks(DECODE_CHUNK).zip(slots.chunks(DECODE_CHUNK)) {
        // a record larger than what its owner has left cannot fit: stop it there
        let caps: Vec<usize> = chunk_slots
            .iter()
            .map(|&s| cap.min(share[s].saturating_sub(used[s])))
            .collect();
        let done: Vec<(usize, Decoded)> = chunk
            .par_iter()
            .zip(&caps)
            .map(|(r, &c)| {
                let (data, gzip) = bytes(r);
                decode_record(data, gzip, c)
            })
            .collect();
        for (((n, d), &s), &c) in done.into_iter().zip(chunk_slots).zip(&caps) {
            let over = DecodeError::OverBudget { budget: share[s] };
            out.push(match d {
                Err(DecodeError::TooLarge(_)) if c < cap => Err(over),
                _ if used[s] + n > share[s] => Err(over),
                d => {
                    used[s] += n;
                    d
                }
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn json_escape_reads_exactly_one_sequence() {
        assert_eq!(json_escape(b"n rest"), Some(('\n', 1)));
        assert_eq!(json_escape(b"u00e9x"), Some(('\u{e9}', 5)));
        assert_eq!(json_escape(b"ud83d\\ude00!"), Some(('\u{1f600}', 11)));
        for bad in [
            &b""[..],
            b"x",
            b"u12",
            b"ud83d",
            b"ud83dx",
            b"ud83d\\u0041",
            b"ude00",
            b"uzzzz",
        ] {
            assert_eq!(json_escape(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        // the unescapers that share it agree on the same text
        let lit = "\"a\\\"b\\u00e9\\ud83d\\ude00\\n\"";
        assert_eq!(
            unescape_json_string(lit).as_deref(),
            Some("a\"b\u{e9}\u{1f600}\n")
        );
    }

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
            // found by fuzzing: shorter than a gzip trailer
            ("magic only", vec![0x1f, 0x8b, 0x06], |e| {
                matches!(
                    e,
                    DecodeError::TruncatedGzip(_) | DecodeError::CorruptGzip(_)
                )
            }),
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
        assert!(matches!(
            envelopes(b"  \n").unwrap_err(),
            DecodeError::Empty
        ));
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
        assert!(matches!(
            gunzip(&bomb, 1 << 20).unwrap_err(),
            DecodeError::TooLarge(c) if c == 1 << 20
        ));
        assert_eq!(gunzip(&bomb, 16 << 20).unwrap().len(), 8 << 20);
    }

    fn env_of(owner: &str, pad: usize) -> Vec<u8> {
        let doc = format!(
            r#"{{"messageType":"DATA_MESSAGE","owner":"{owner}","logGroup":"/aws/eks/a/cluster","logStream":"kube-apiserver-audit-1","logEvents":[{{"id":"1","timestamp":1,"message":"{}"}}]}}"#,
            "x".repeat(pad)
        );
        gz(doc.as_bytes())
    }

    #[test]
    fn owners_are_read_from_the_first_bytes_only() {
        assert_eq!(
            peek_owner(&env_of("111122223333", 10), true),
            Some(*b"111122223333")
        );
        assert_eq!(peek_owner(ENV.as_bytes(), false), Some(*b"111122223333"));
        assert_eq!(peek_owner(b"garbage", true), None);
        assert_eq!(peek_owner(br#"{"owner":"12345"}"#, false), None);
        // an owner far into the record (after member-controlled bytes) is not read
        let late = format!(
            r#"{{"logGroup":"{}","owner":"111122223333"}}"#,
            "g".repeat(600)
        );
        assert_eq!(peek_owner(late.as_bytes(), false), None);
    }

    #[test]
    fn fair_shares_give_small_demands_in_full_and_split_the_rest() {
        assert_eq!(fair_shares(&[10, 1000], 100), vec![10, 90]);
        assert_eq!(fair_shares(&[1000, 1000], 100), vec![50, 50]);
        assert_eq!(fair_shares(&[5, 5, 5], 100), vec![5, 5, 5]);
        assert_eq!(fair_shares(&[], 100), Vec::<usize>::new());
        assert_eq!(fair_shares(&[60, 30, 1000], 100), vec![35, 30, 35]);
    }

    #[test]
    fn one_account_cannot_spend_the_batch_budget_of_the_others() {
        // a hostile account's large records come first; an honest account's after
        let big = env_of("666666666666", 1 << 20);
        let honest = env_of("111122223333", 1000);
        let mut records = vec![big.clone(); 12];
        records.extend(vec![honest.clone(); 3]);
        let out = decode_batch(&records, |r| (r.as_slice(), true), 2 << 20, 4 << 20);
        let ok: Vec<bool> = out.iter().map(|d| d.is_ok()).collect();
        // the honest records all fit; the hostile one gets the rest: 3 of its 1 MiB records
        assert_eq!(ok[12..], [true, true, true]);
        assert_eq!(ok[..12].iter().filter(|o| **o).count(), 3);
        assert!(matches!(out[11], Err(DecodeError::OverBudget { .. })));
        // bombs each under the per-record cap, far over the budget together: each
        // decompressed at most up to what is left, never beyond
        let bomb = gz(&vec![b'{'; 1 << 20]);
        let records = vec![bomb; 64];
        let out = decode_batch(&records, |r| (r.as_slice(), true), 2 << 20, 8 << 20);
        assert_eq!(
            out.iter()
                .filter(|d| matches!(d, Err(DecodeError::OverBudget { .. })))
                .count(),
            56,
            "8 bombs fit the budget (and fail as envelopes), the rest are over it"
        );
        assert!(out[..8]
            .iter()
            .all(|d| matches!(d, Err(DecodeError::Envelope { .. }))));
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
