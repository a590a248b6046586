//! Helpers for generated input (the demo and the benchmark).

/// RFC 3339 with microseconds, as the apiserver writes `MicroTime` (a fixed 417 µs past
/// the millisecond, so generated events look like real ones).
pub fn iso(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let micros = ms.rem_euclid(1000) * 1000 + 417;
    let day = secs.div_euclid(86_400);
    let (y, m, d) = resolver::time::civil_from_days(day);
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}
