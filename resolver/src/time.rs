//! Timestamps on the wire.
//!
//! Kubernetes writes `metav1.MicroTime` (`2024-11-26T13:07:07.461683Z`) and CloudTrail
//! `eventTime` (`2024-11-26T13:01:02Z`); both are parsed on a fast path without
//! allocation, with chrono as the fallback for any other RFC 3339 form (offsets).
//! CloudTrail's `credentials.expiration` is a Java locale string, not ISO-8601.

use chrono::{DateTime, NaiveDateTime};

fn digits(b: &[u8]) -> Option<i64> {
    let mut v: i64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DD` (UTC) of an epoch-millisecond instant: the `dt` partition value.
pub fn utc_date(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(86_400_000));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of a Unix time in milliseconds (UTC).
pub fn iso_ms(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(86_400_000));
    let t = ms.rem_euclid(86_400_000);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        t / 3_600_000,
        t / 60_000 % 60,
        t / 1000 % 60,
        t % 1000
    )
}

/// Epoch milliseconds of an RFC 3339 timestamp, truncating below the millisecond.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    // Fast path: YYYY-MM-DDTHH:MM:SS[.frac]Z
    if b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b't')
        && b[13] == b':'
        && b[16] == b':'
        && (b[b.len() - 1] == b'Z' || b[b.len() - 1] == b'z')
    {
        let y = digits(&b[0..4])?;
        let mo = digits(&b[5..7])?;
        let d = digits(&b[8..10])?;
        let h = digits(&b[11..13])?;
        let mi = digits(&b[14..16])?;
        let sec = digits(&b[17..19])?;
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        let frac = &b[19..b.len() - 1];
        let mut ms = 0;
        if !frac.is_empty() {
            if frac[0] != b'.' || frac.len() < 2 {
                return None;
            }
            let f = &frac[1..];
            if !f.iter().all(u8::is_ascii_digit) {
                return None;
            }
            for i in 0..3 {
                ms = ms * 10 + f.get(i).map_or(0, |c| i64::from(c - b'0'));
            }
        }
        let days = days_from_civil(y, mo, d);
        return Some(((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + ms);
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// CloudTrail `credentials.expiration`: `"Nov 26, 2024, 2:01:02 PM"`,
/// `"Jan 22, 2021 12:46:28 AM"` (Java's `MMM d, yyyy[,] h:mm:ss a`, in UTC), and newer JDKs
/// put a narrow no-break space before AM/PM. ISO-8601 is accepted too.
pub fn parse_expiration(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Some(ms) = parse_rfc3339_ms(s) {
        return Some(ms);
    }
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c == '\u{202f}' || c == '\u{a0}' {
                ' '
            } else {
                c
            }
        })
        .collect();
    for fmt in [
        "%b %d, %Y, %I:%M:%S %p",
        "%b %d, %Y %I:%M:%S %p",
        "%b %d %Y %I:%M:%S %p",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(&cleaned, fmt) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_fast_path_and_fallback_agree_with_chrono() {
        let cases = [
            "2024-11-26T13:07:07.461683Z",
            "2024-11-26T13:01:02Z",
            "1999-12-31T23:59:59.999Z",
            "2024-02-29T00:00:00.1Z",
            "2024-11-26T15:07:07.461683+02:00",
        ];
        for c in cases {
            let want = DateTime::parse_from_rfc3339(c).unwrap().timestamp_millis();
            assert_eq!(parse_rfc3339_ms(c), Some(want), "{c}");
        }
        for bad in [
            "",
            "2024-13-01T00:00:00Z",
            "2024-11-26 13:07:07",
            "2024-11-26T13:07:07.Z",
            "garbage",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn expiration_locale_forms() {
        let want = parse_rfc3339_ms("2024-11-26T14:01:02Z");
        for s in [
            "Nov 26, 2024, 2:01:02 PM",
            "Nov 26, 2024 2:01:02 PM",
            "Nov 26, 2024, 2:01:02\u{202f}PM",
            "2024-11-26T14:01:02Z",
        ] {
            assert_eq!(parse_expiration(s), want, "{s}");
        }
        assert_eq!(
            parse_expiration("Jan 22, 2021 12:46:28 AM"),
            parse_rfc3339_ms("2021-01-22T00:46:28Z")
        );
        assert_eq!(parse_expiration("tomorrow"), None);
    }

    #[test]
    fn civil_roundtrip_and_dates() {
        for days in [-800_000, -1, 0, 1, 19_000, 20_053, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, i64::from(m), i64::from(d)), days);
        }
        assert_eq!(
            utc_date(parse_rfc3339_ms("2024-11-26T23:59:59.999Z").unwrap()),
            "2024-11-26"
        );
        assert_eq!(
            utc_date(parse_rfc3339_ms("2024-11-27T00:00:00Z").unwrap()),
            "2024-11-27"
        );
    }
}
