//! Stage 1b, the fast path: CloudWatch Logs subscription envelopes in one pass, each
//! `message` unescaped while it is scanned.
//!
//! Every audit event arrives as JSON escaped inside the envelope's JSON (`{\"kind\":
//! \"Event\",...`): an escape every few bytes. serde_json handles that run by run (a
//! scan to the next escape, a copy of the run, the escape), which measured 18.5
//! instructions per byte of CloudWatch JSON, the most expensive stage of the handler.
//! Here a message is read eight bytes at a time: each word is copied out whole and
//! checked for a quote, a backslash or a control character at once (SWAR), so a run
//! between escapes costs a few instructions and no call (BENCHMARKS.md, issue #16).
//!
//! Only the envelope shape CloudWatch Logs writes is accepted: the keys it sends, each
//! once, with the types it sends (docs below). Anything else — an unknown key, a
//! numeric event id (the moto emulator's), a lone surrogate, invalid UTF-8, a number
//! with a fraction — returns `None`, and the caller parses the record with serde_json,
//! whose answer (envelopes or an error) is the contract. The fuzz target `decode`
//! checks that whenever this returns envelopes, serde_json returns the same ones.
//! Docs: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/SubscriptionFilters.html>

use std::borrow::Cow;

use crate::decode::{CwlEnvelope, CwlLogEvent, ExtractedFields, MessageType};

/// Every envelope of a decompressed record (one or more documents back to back), or
/// `None` when anything in it is outside the shape this parser knows.
pub fn parse(json: &[u8]) -> Option<Vec<CwlEnvelope<'_>>> {
    let mut p = Parser {
        s: json,
        i: 0,
        scratch: Vec::new(),
    };
    let mut out = Vec::with_capacity(1);
    loop {
        p.ws();
        if p.i == p.s.len() {
            break;
        }
        out.push(p.envelope()?);
    }
    (!out.is_empty()).then_some(out)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    /// The unescaped bytes of the current string, reused for every string.
    scratch: Vec<u8>,
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The high bit of the first byte of `w` (in memory order) that is `"`, `\` or below
/// 0x20 is set; bits above it may be set too (borrows), bits below it never are.
#[inline(always)]
fn specials(w: u64) -> u64 {
    let zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
    zero(w ^ (LO * b'"' as u64))
        | zero(w ^ (LO * b'\\' as u64))
        | (w.wrapping_sub(LO * 0x20) & !w & HI)
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn lit(&mut self, word: &[u8]) -> bool {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    /// `{`, then `f` for each key until `}`.
    fn object(&mut self, mut f: impl FnMut(&mut Self, &[u8]) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.eat(b'"')?;
            let key = self.raw_key()?;
            self.eat(b':')?;
            f(self, key)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// `[`, then `f` for each element until `]`.
    fn array(&mut self, mut f: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.i += 1;
            return Some(());
        }
        loop {
            f(self)?;
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A key without escapes (every key CloudWatch sends), after its opening quote.
    fn raw_key(&mut self) -> Option<&'a [u8]> {
        let rest = &self.s[self.i..];
        let n = memchr::memchr2(b'"', b'\\', rest)?;
        if rest[n] != b'"' {
            return None;
        }
        self.i += n + 1;
        Some(&rest[..n])
    }

    fn null(&mut self) -> bool {
        self.peek() == Some(b'n') && self.lit(b"null")
    }

    /// A string value: borrowed when it has no escape, else unescaped (owned).
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let start = self.i;
        let s = self.s;
        // the common short field: no escape before the closing quote
        loop {
            let b = *s.get(self.i)?;
            match b {
                b'"' => {
                    let v = std::str::from_utf8(&s[start..self.i]).ok()?;
                    self.i += 1;
                    return Some(Cow::Borrowed(v));
                }
                b'\\' => break,
                0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(&s[start..self.i]);
        self.unescape_rest()?;
        let v = std::str::from_utf8(&self.scratch).ok()?;
        Some(Cow::Owned(v.to_owned()))
    }

    /// From an escape inside a string to past its closing quote, into `scratch`.
    fn unescape_rest(&mut self) -> Option<()> {
        let s = self.s;
        // room for the rest of a typical message at once (capacity is kept from string to
        // string within the record, so this reserves once per record)
        self.scratch.reserve((s.len() - self.i).min(1 << 16));
        let mut i = self.i;
        loop {
            // eight bytes at a time: copy the whole word, then keep what precedes its
            // first special byte (a fixed-size copy: no call per run)
            while let Some(w) = s.get(i..i + 8) {
                let w: [u8; 8] = w.try_into().ok()?;
                let len = self.scratch.len();
                self.scratch.extend_from_slice(&w);
                let m = specials(u64::from_le_bytes(w));
                if m != 0 {
                    let k = (m.trailing_zeros() / 8) as usize;
                    self.scratch.truncate(len + k);
                    i += k;
                    break;
                }
                i += 8;
            }
            match *s.get(i)? {
                b'"' => {
                    self.i = i + 1;
                    return Some(());
                }
                // the escape JSON-in-JSON is made of
                b'\\' if s.get(i + 1) == Some(&b'"') => {
                    self.scratch.push(b'"');
                    i += 2;
                }
                b'\\' => {
                    self.i = i;
                    self.escape()?;
                    i = self.i;
                }
                0..=0x1f => return None,
                b => {
                    // the last few bytes of the input, byte by byte
                    self.scratch.push(b);
                    i += 1;
                }
            }
        }
    }

    /// One escape sequence at `self.i` (a backslash), appended to `scratch`.
    fn escape(&mut self) -> Option<()> {
        let (c, n) = crate::decode::json_escape(self.s.get(self.i + 1..)?)?;
        self.i += 1 + n;
        if c.is_ascii() {
            // `\\`, `\n`, `\/`: the escapes of escaped JSON besides `\"`
            self.scratch.push(c as u8);
        } else {
            let mut buf = [0u8; 4];
            self.scratch
                .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
        Some(())
    }

    /// A JSON integer that fits an i64 (no fraction, no exponent, no leading zero).
    fn int(&mut self) -> Option<i64> {
        self.ws();
        let neg = self.s.get(self.i) == Some(&b'-');
        if neg {
            self.i += 1;
        }
        let start = self.i;
        let mut v: i64 = 0;
        while let Some(&d @ b'0'..=b'9') = self.s.get(self.i) {
            let d = (d - b'0') as i64;
            v = v.checked_mul(10)?;
            v = if neg {
                v.checked_sub(d)?
            } else {
                v.checked_add(d)?
            };
            self.i += 1;
        }
        let digits = self.i - start;
        if digits == 0 || (digits > 1 && self.s[start] == b'0') {
            return None;
        }
        match self.s.get(self.i) {
            Some(b'.' | b'e' | b'E') => None,
            _ => Some(v),
        }
    }

    /// An array of strings, read and dropped (`subscriptionFilters`).
    fn skip_strings(&mut self) -> Option<()> {
        self.array(|p| p.string().map(drop))
    }

    fn envelope(&mut self) -> Option<CwlEnvelope<'a>> {
        let (mut message_type, mut owner, mut log_group, mut log_stream) = (None, None, None, None);
        let (mut log_events, mut policy_level, mut filters) = (None, None, false);
        self.object(|p, key| {
            match key {
                b"messageType" if message_type.is_none() => {
                    message_type = Some(match &*p.string()? {
                        "DATA_MESSAGE" => MessageType::Data,
                        "CONTROL_MESSAGE" => MessageType::Control,
                        _ => return None,
                    })
                }
                b"owner" if owner.is_none() => owner = Some(p.string()?),
                b"logGroup" if log_group.is_none() => log_group = Some(p.string()?),
                b"logStream" if log_stream.is_none() => log_stream = Some(p.string()?),
                b"subscriptionFilters" if !filters => {
                    filters = true;
                    p.skip_strings()?
                }
                b"policyLevel" if policy_level.is_none() => {
                    policy_level = Some(if p.null() { None } else { Some(p.string()?) })
                }
                b"logEvents" if log_events.is_none() => {
                    let mut events = Vec::new();
                    p.array(|p| {
                        events.push(p.log_event()?);
                        Some(())
                    })?;
                    log_events = Some(events);
                }
                // an unknown or repeated key: serde_json decides
                _ => return None,
            }
            Some(())
        })?;
        Some(CwlEnvelope {
            message_type: message_type?,
            owner: owner?,
            log_group: log_group?,
            log_stream: log_stream.unwrap_or_default(),
            log_events: log_events?,
            policy_level: policy_level.flatten(),
        })
    }

    fn log_event(&mut self) -> Option<CwlLogEvent<'a>> {
        let (mut id, mut timestamp, mut message, mut fields) = (None, None, None, None);
        self.object(|p, key| {
            match key {
                b"id" if id.is_none() => id = Some(p.string()?),
                b"timestamp" if timestamp.is_none() => timestamp = Some(p.int()?),
                b"message" if message.is_none() => message = Some(p.string()?),
                b"extractedFields" if fields.is_none() => {
                    fields = Some(if p.null() {
                        None
                    } else {
                        Some(p.extracted_fields()?)
                    })
                }
                _ => return None,
            }
            Some(())
        })?;
        Some(CwlLogEvent {
            id: id?,
            timestamp: timestamp?,
            message: message?,
            extracted_fields: fields.flatten(),
        })
    }

    fn extracted_fields(&mut self) -> Option<ExtractedFields<'a>> {
        let mut f = ExtractedFields::default();
        let (mut region, mut account) = (false, false);
        self.object(|p, key| {
            let v = if p.null() { None } else { Some(p.string()?) };
            match key {
                b"@aws.region" if !region => (region, f.region) = (true, v),
                b"@aws.account" if !account => (account, f.account) = (true, v),
                _ => return None,
            }
            Some(())
        })?;
        Some(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde(json: &[u8]) -> Vec<CwlEnvelope<'_>> {
        crate::decode::envelopes_serde(json).expect("serde_json parses it")
    }

    const ENV: &str = r#"{"messageType":"DATA_MESSAGE","owner":"111122223333","logGroup":"/aws/eks/prod/cluster","logStream":"kube-apiserver-audit-1","subscriptionFilters":["a","b"],"logEvents":[{"id":"3848091786504269726762749004560363313948049107104","timestamp":1700000000123,"message":"{\"kind\":\"Event\",\"a\\\\b\":\"\\u00e9\\ud83d\\ude00 \\n\\t\\/\",\"x\":\"caf\u00e9 \"}","extractedFields":{"@aws.account":"111122223333","@aws.region":"us-east-1"}},{"id":"2","timestamp":-5,"message":"plain"}],"policyLevel":"ACCOUNT_LEVEL_POLICY"}"#;

    #[test]
    fn equals_serde_json_on_what_cloudwatch_sends() {
        let fast = parse(ENV.as_bytes()).expect("fast path");
        assert_eq!(fast, serde(ENV.as_bytes()));
        assert_eq!(
            fast[0].log_events[0].message,
            "{\"kind\":\"Event\",\"a\\\\b\":\"\\u00e9\\ud83d\\ude00 \\n\\t\\/\",\"x\":\"café \"}"
        );
        // two documents back to back, whitespace around and between
        let two = format!(" {ENV}\n\t{ENV} \r\n");
        let fast = parse(two.as_bytes()).expect("fast path");
        assert_eq!(fast.len(), 2);
        assert_eq!(fast, serde(two.as_bytes()));
        // a message longer than a word, with escapes at every offset of a word
        for pad in 0..9 {
            let m = format!(
                "{}\\\"k\\\":\\\"v\\\\\\\"\\u0041\\ud83d\\ude00",
                "x".repeat(pad)
            );
            let doc = ENV.replace("plain", &m);
            assert_eq!(
                parse(doc.as_bytes()).expect("fast"),
                serde(doc.as_bytes()),
                "{pad}"
            );
        }
    }

    #[test]
    fn leaves_every_other_shape_to_serde_json() {
        let cases = [
            ENV.replace(r#""id":"2""#, r#""id":2"#), // numeric id (moto)
            ENV.replace("\"policyLevel\"", "\"extra\""), // unknown key
            ENV.replace(
                r#""logStream":"kube-apiserver-audit-1","#,
                r#""logStream":"a","logStream":"b","#,
            ), // repeated key
            ENV.replace("plain", "\\ud83d alone"),   // lone surrogate
            ENV.replace("-5", "5.0"),                // fraction
            ENV.replace("-5", "05"),                 // leading zero
            ENV.replace("-5", "99999999999999999999"), // overflows i64
            ENV.replace("plain", "tab\there"),       // control character
            ENV.replace("DATA_MESSAGE", "OTHER"),    // unknown message type
            ENV.replace(r#""owner":"111122223333","#, ""), // required key missing
            ENV[..ENV.len() - 1].to_string(),        // truncated
            format!("{ENV}x"),                       // trailing bytes
            String::new(),
        ];
        for (k, c) in cases.iter().enumerate() {
            assert!(parse(c.as_bytes()).is_none(), "case {k} must fall back");
        }
        // invalid UTF-8 inside a string
        let mut bad = ENV.as_bytes().to_vec();
        let at = ENV.find("plain").expect("plain");
        bad[at] = 0xff;
        assert!(parse(&bad).is_none());
    }
}
