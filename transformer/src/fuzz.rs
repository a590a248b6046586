//! Entry points of the fuzz targets (`fuzz/`, cargo-fuzz) and of their regression
//! replay (`tests/fuzz_regressions.rs`, plain `cargo test`): each takes arbitrary bytes,
//! runs one parser the way the handler does, and checks what must hold for any input.
//! A member account controls these bytes; none of them may panic, loop or allocate
//! without bound.

use std::sync::Arc;

use resolver::awsauth::{AwsAuth, MapRole};

use crate::handler::{Handler, HandlerConfig, InputRecord};
use crate::lake::MemoryStore;
use crate::{audit, decode, extract};

/// Small caps, so a fuzzer's bombs stay cheap.
const CAP: usize = 1 << 20;

/// gunzip + envelopes (as gzip, and as a plain backfill document), then extraction.
pub fn decode(data: &[u8]) {
    for gzip in [true, false] {
        let (n, d) = decode::decode_record(data, gzip, CAP);
        assert!(n <= CAP);
        if let Ok((_, envs)) = d {
            let x = extract::extract(&envs, extract::Context::new(Some("us-east-1")));
            assert!(x.rows.len() as u64 <= x.metrics.log_events);
        }
    }
    let _ = decode::peek_owner(data, true);
    same_envelopes(data);
    if let Ok(json) = decode::gunzip(data, CAP) {
        same_envelopes(&json);
    }
}

/// The one-pass envelope parser: whatever it accepts, serde_json reads the same.
fn same_envelopes(json: &[u8]) {
    if let Some(fast) = crate::envelope::parse(json) {
        match decode::envelopes_serde(json) {
            Ok(slow) => assert_eq!(fast, slow, "fast and serde_json envelopes differ"),
            Err(e) => panic!("the fast path accepted what serde_json refuses: {e}"),
        }
    }
}

/// One audit message: parse (or recover), read `user.extra`, encode the row.
pub fn audit(data: &[u8]) {
    let Ok(message) = std::str::from_utf8(data) else {
        return;
    };
    let p = audit::parse(message);
    if let Some(x) = p.event.user.as_ref().and_then(|u| u.extra.as_ref()) {
        let _ = x.aws();
        assert!(x.entries().count() <= message.len());
    }
    let doc = format!(
        r#"{{"messageType":"DATA_MESSAGE","owner":"111122223333","logGroup":"/aws/eks/f/cluster","logStream":"kube-apiserver-audit-1","logEvents":[{{"id":"1","timestamp":0,"message":{}}}]}}"#,
        serde_json::Value::String(message.to_string())
    );
    let Ok(envs) = decode::envelopes(doc.as_bytes()) else {
        return;
    };
    let x = extract::extract(&envs, extract::Context::new(None));
    assert_eq!(x.rows.len(), 1, "every audit-stream event is a row");
    let index = resolver::SessionIndex::new();
    let a = crate::attribute::attribute(&index, &x.rows, &mut Default::default());
    // every shipped rule on the row: the lax body walk reads member-controlled JSON
    let d = crate::detect::detect(shipped_rules(), &x.rows);
    assert!(d.len() <= shipped_rules().len());
    let bytes =
        crate::encode::audit_parquet(&x.rows, &a, &d, &[0], 0).expect("a row always encodes");
    assert!(!bytes.is_empty());
    let findings = crate::finding::of_audit(&x.rows, &a, shipped_rules(), &d.hits);
    let _ = crate::alerts::build(&findings, crate::sigma::Severity::Informational);
    if !findings.is_empty() {
        let all: Vec<_> = findings.iter().collect();
        let f = crate::encode::findings_parquet(&all, 0).expect("findings always encode");
        assert!(!f.is_empty());
    }
}

fn shipped_rules() -> &'static crate::sigma::RuleSet {
    static RULES: std::sync::OnceLock<crate::sigma::RuleSet> = std::sync::OnceLock::new();
    RULES.get_or_init(|| {
        crate::sigma::RuleSet::from_files(schemas::SHIPPED_RULES.iter().copied())
            .expect("the shipped rules compile")
    })
}

/// A Sigma rule file (an operator's: `AUDITLAKE_RULES`): compiles or is refused with
/// an error naming the file; a compiled rule evaluates and renders as SQL.
pub fn sigma(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::sigma::RuleSet::from_files([("fuzz.yml", text)]) {
        Ok(set) => {
            let j = r#"{"messageType":"DATA_MESSAGE","owner":"111122223333","logGroup":"/aws/eks/f/cluster","logStream":"kube-apiserver-audit-1","logEvents":[{"id":"1","timestamp":0,"message":"{\"kind\":\"Event\",\"auditID\":\"a\",\"verb\":\"create\",\"user\":{\"username\":\"u\",\"groups\":[\"g\"]},\"objectRef\":{\"resource\":\"pods\"},\"requestObject\":{\"spec\":{\"containers\":[{\"securityContext\":{\"privileged\":true}}]}}}"}]}"#;
            let envs = decode::envelopes(j.as_bytes()).expect("a fixed envelope");
            let x = extract::extract(&envs, extract::Context::new(None));
            for r in &set.rules {
                let _ = r.matches(&crate::detect::RowEvent::new(&x.rows[0], &set.bodies));
                let sql = r.sql_condition();
                match r.logsource {
                    crate::sigma::LogSource::KubernetesAudit => {
                        assert!(sql.starts_with("parse_status = 'ok' AND "))
                    }
                    crate::sigma::LogSource::CloudTrail => assert!(!sql.is_empty()),
                }
            }
        }
        Err(e) => assert_eq!(e.file, "fuzz.yml"),
    }
}

/// One bare CloudTrail event, and the same bytes as an S3 log file; an EKS API call
/// through its whole path (typed fields, caller identity, rules, Parquet, alerts).
pub fn cloudtrail(data: &[u8]) {
    if let Ok(Some(event)) = std::str::from_utf8(data)
        .map_err(|_| ())
        .and_then(|s| crate::eks_api::parse(s).map_err(|_| ()))
    {
        assert!(!event.event_id.is_empty() && !event.event_name.is_empty());
        if let Some(c) = &event.cluster {
            assert!(c == crate::extract::INVALID || resolver::arn::is_cluster_name(c));
        }
        let rows = [crate::extract::ApiRow {
            log_group: "trail",
            log_stream: "s",
            cwl_id: "1",
            event,
        }];
        let ids: Vec<_> = rows.iter().map(|r| r.event.identity()).collect();
        let index = resolver::SessionIndex::new();
        let a = crate::attribute::attribute_api(&index, &rows, &ids);
        let d = crate::detect::detect_api(shipped_rules(), &rows);
        let bytes = crate::encode::api_events_parquet(&rows, &a, &d, &[0], 0)
            .expect("an API call always encodes");
        assert!(!bytes.is_empty());
        let findings = crate::finding::of_api(&rows, &a, shipped_rules(), &d.hits);
        let _ = crate::alerts::build(&findings, crate::sigma::Severity::Informational);
    }
    if let Ok(resolver::cloudtrail::Parsed::Sts(s)) = resolver::cloudtrail::parse_event(data) {
        assert!(!s.event_id.is_empty());
        if s.error_code.is_some() {
            assert!(s.access_key_id.is_none(), "a failed call issues nothing");
        }
        let _ = resolver::attribute::session_principal(&s);
    }
    let _ = resolver::cloudtrail::parse_log_file(data);
}

/// A lake Parquet file as compaction reads it: the footer from the file's end, each row
/// group from its byte range, conformed to the table. Files come from the lake, not
/// from a member, but a truncated or corrupt object must fail its partition, never the
/// run (a panic in the reader is caught and becomes an error).
pub fn part_file(data: &[u8]) {
    // The parquet and arrow readers panic on some corrupt files (slice bounds, bit
    // chunks: found by this target); `part_file` catches those panics inside its reader
    // calls and returns an error. libFuzzer's panic hook would abort before that catch,
    // so it is silenced here; a panic that escapes (anywhere outside the guarded calls)
    // is raised again and still ends the run.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(|| part_file_checks(data));
    std::panic::set_hook(hook);
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
}

fn part_file_checks(data: &[u8]) {
    use crate::compact::{conform, Table};
    use crate::part_file as pf;
    let total = data.len() as u64;
    let Ok(meta) = pf::metadata(data, total) else {
        return;
    };
    for span in pf::row_groups(&meta, "event_time") {
        if span.start > span.end || span.end > total {
            continue;
        }
        let bytes = data[span.start as usize..span.end as usize].to_vec();
        if let Ok(batches) = pf::read_row_group(&meta, &span, bytes, total) {
            for b in &batches {
                let _ = conform(Table::EksAudit, b);
            }
        }
    }
}

/// An aws-auth template (first line) and usernames (the other lines).
pub fn awsauth(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let template = lines.next().unwrap_or("");
    let Ok(auth) = AwsAuth::from_entries(
        vec![MapRole {
            rolearn: "arn:aws:iam::111122223333:role/fuzz".into(),
            username: Some(template.to_string()),
            groups: vec![],
        }],
        "fuzz",
    ) else {
        return;
    };
    for user in lines {
        for r in auth.reverse(user) {
            if let Some(k) = &r.access_key_id {
                assert!(user.contains(k.as_str()));
            }
        }
    }
    let _ = AwsAuth::parse(text, "fuzz");
}

/// The whole handler on a batch: the bytes as a Firehose event JSON when they parse as
/// one, else as plain envelope records separated by `\n\x1e`. Every record gets exactly
/// one answer and the batch never fails (the stores are in memory).
pub fn handler(data: &[u8]) {
    let config = HandlerConfig {
        max_decompressed: CAP,
        trusted_trails: crate::trust::TrustedTrails::none()
            .with("999999999999", "aws-cloudtrail-logs-o-example"),
        budget: crate::handler::Budget {
            decompressed: 4 * CAP,
            partitions: 20,
            lookups: 50,
        },
        ..HandlerConfig::default()
    };
    let lake = Arc::new(MemoryStore::default());
    let h = Handler::new(config, lake, resolver::MemorySessionStore::default());
    if let Ok(ev) = serde_json::from_slice::<crate::firehose::FirehoseEvent>(data) {
        let (resp, out) = futures::executor::block_on(h.handle_firehose(&ev, 0))
            .expect("in-memory writes cannot fail");
        assert_eq!(resp.records.len(), ev.records.len());
        assert_eq!(out.outcomes.len(), ev.records.len());
        return;
    }
    let records: Vec<InputRecord> = split(data, b"\n\x1e")
        .enumerate()
        .map(|(i, r)| InputRecord {
            record_id: format!("r{i}"),
            data: r.to_vec(),
            gzip: false,
        })
        .collect();
    let out = futures::executor::block_on(h.process(&records, Some("us-east-1"), 0))
        .expect("in-memory writes cannot fail");
    assert_eq!(out.outcomes.len(), records.len());
    let m = out.metrics;
    assert_eq!(
        m.records_ok + m.records_dropped + m.records_failed,
        m.records_in
    );
}

fn split<'a>(data: &'a [u8], sep: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr::memmem::find(r, sep) {
            Some(i) => {
                rest = Some(&r[i + sep.len()..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}
