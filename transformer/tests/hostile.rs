//! A hostile member account (DESIGN 6): it controls every byte its log groups send.
//! One test per attack; each asserts the outcome *and* that the batch's other records
//! (an honest account's) are answered `Ok` and written with the right person.

mod common;

use std::io::Write;
use std::sync::Arc;

use serde_json::{json, Value};

use common::*;
use resolver::awsauth::AwsAuth;
use resolver::store::SessionStore;
use transformer::firehose::RecordResult;
use transformer::handler::{Budget, HandlerConfig, InputRecord};

/// The honest account and the hostile one.
const HONEST: &str = "111122223333";
const HOSTILE: &str = "666677778888";
const AT: &str = "2024-11-26T13:30:00.000001Z";

fn assume_role(role_arn: &str, person: &str, key: &str, event_id: &str) -> Value {
    let acct = role_arn.split(':').nth(4).unwrap();
    let name = role_arn.rsplit('/').next().unwrap();
    json!({"eventVersion": "1.08", "eventTime": "2024-11-26T13:00:00Z", "eventSource": "sts.amazonaws.com",
        "eventName": "AssumeRole", "awsRegion": "us-east-1", "eventID": event_id, "recipientAccountId": acct,
        "userIdentity": {"type": "IAMUser", "arn": format!("arn:aws:iam::{acct}:user/{person}"), "accountId": acct,
            "userName": person, "principalId": "AIDA1"},
        "requestParameters": {"roleArn": role_arn, "roleSessionName": person},
        "responseElements": {"credentials": {"accessKeyId": key, "expiration": "Nov 26, 2024, 2:00:00 PM"},
            "assumedRoleUser": {"assumedRoleId": "AROA1:x", "arn": format!("arn:aws:sts::{acct}:assumed-role/{name}/{person}")}}})
}

/// An audit event in `account` made with `key`, naming `role` (as the authenticator logs it).
fn keyed_event(audit_id: &str, account: &str, role: &str, key: &str) -> String {
    aws_event(
        audit_id,
        AT,
        &format!("arn:aws:sts::{account}:assumed-role/{role}/s"),
        Some(assumed_extra(account, role, "s", key)),
    )
}

/// The honest account's record: alice's event through role `ops`.
fn honest_record(id: &str) -> InputRecord {
    audit_record(
        id,
        HONEST,
        "prod",
        &[keyed_event(
            "honest-1",
            HONEST,
            "ops",
            "ASIAALICE0000000001",
        )],
    )
}

fn alice_session() -> Value {
    assume_role(
        &format!("arn:aws:iam::{HONEST}:role/ops"),
        "alice",
        "ASIAALICE0000000001",
        "ev-alice",
    )
}

/// Index alice's session through the trusted trail, as an earlier batch would.
async fn index_alice(h: &TestHandler) {
    let out = h
        .process(&[trail_record("t", &[alice_session()])], None, now())
        .await
        .unwrap();
    assert_eq!(out.metrics.sts_sessions, 1);
}

/// The honest row was written and names alice.
fn assert_honest_row_names_alice(lake: &transformer::lake::MemoryStore) {
    let rows = rows(&table(lake, "eks_audit"));
    let r = find(&rows, "audit_id", "honest-1");
    assert_eq!(r["principal_name"], json!("alice"), "{r}");
    assert_eq!(r["attribution_status"], json!("resolved"));
}

fn results(out: &transformer::BatchOutput) -> Vec<RecordResult> {
    out.outcomes.iter().map(|o| o.result).collect()
}

#[tokio::test]
async fn forged_sts_from_an_untrusted_log_group_is_neither_indexed_nor_written() {
    let (h, lake, store) = handler(HandlerConfig::default());
    index_alice(&h).await;
    // the hostile account's own log group, CloudTrail-shaped: a record for alice's key
    // naming mallory, one for a new key, and its claimed recipient is the honest account
    let forged = [
        assume_role(
            &format!("arn:aws:iam::{HONEST}:role/ops"),
            "mallory",
            "ASIAALICE0000000001",
            "forged-1",
        ),
        assume_role(
            &format!("arn:aws:iam::{HONEST}:role/ops"),
            "mallory",
            "ASIAFORGED000000001",
            "forged-2",
        ),
    ];
    let msgs: Vec<String> = forged.iter().map(Value::to_string).collect();
    // the trail's own log group name, but in the hostile account; and a group of its own
    let batch = [
        envelope_record("f1", HOSTILE, TRAIL_GROUP, "s", &msgs),
        envelope_record("f2", HOSTILE, "my-cloudtrail", "s", &msgs),
        honest_record("h"),
        audit_record(
            "h2",
            HONEST,
            "prod",
            &[keyed_event(
                "honest-2",
                HONEST,
                "ops",
                "ASIAFORGED000000001",
            )],
        ),
    ];
    let out = h.process(&batch, None, now()).await.unwrap();
    assert_eq!(
        results(&out),
        [RecordResult::Ok; 4],
        "forged records stay in raw/"
    );
    assert_eq!(out.metrics.sts_untrusted, 4);
    assert_eq!(out.metrics.sts_sessions, 0);
    assert_honest_row_names_alice(&lake);
    let rows = rows(&table(&lake, "eks_audit"));
    assert_eq!(
        find(&rows, "audit_id", "honest-2")["attribution_status"],
        json!("pending")
    );
    assert!(store.get("ASIAFORGED000000001").await.unwrap().is_none());
    let sts = rows_of(&lake, "sts_sessions");
    assert!(sts.iter().all(|r| r["event_id"] != json!("forged-1")));
}

fn rows_of(lake: &transformer::lake::MemoryStore, t: &str) -> Vec<Value> {
    rows(&table(lake, t))
}

#[tokio::test]
async fn a_conflicting_record_for_an_indexed_key_is_counted_and_not_used() {
    let (h, lake, store) = handler(HandlerConfig::default());
    index_alice(&h).await;
    // a different call (another event id) claiming the same key, even from the trusted
    // trail, never replaces the indexed session; a replay of the real one is no conflict
    let other = assume_role(
        &format!("arn:aws:iam::{HONEST}:role/ops"),
        "mallory",
        "ASIAALICE0000000001",
        "ev-other",
    );
    let out = h
        .process(
            &[
                trail_record("t2", &[other, alice_session()]),
                honest_record("h"),
            ],
            None,
            now(),
        )
        .await
        .unwrap();
    assert_eq!(results(&out), [RecordResult::Ok; 2]);
    assert_eq!(out.metrics.sts_conflicts, 1);
    let held = store.get("ASIAALICE0000000001").await.unwrap().unwrap();
    assert_eq!(held.event_id, "ev-alice");
    assert_honest_row_names_alice(&lake);

    // in one batch: the first record for a key holds it
    let (h, lake, store) = handler(HandlerConfig::default());
    let forged_first = assume_role(
        &format!("arn:aws:iam::{HONEST}:role/ops"),
        "mallory",
        "ASIAALICE0000000001",
        "ev-first",
    );
    let out = h
        .process(
            &[
                trail_record("t", &[forged_first, alice_session()]),
                honest_record("h"),
            ],
            None,
            now(),
        )
        .await
        .unwrap();
    assert_eq!(out.metrics.sts_conflicts, 1);
    assert_eq!(
        store
            .get("ASIAALICE0000000001")
            .await
            .unwrap()
            .unwrap()
            .event_id,
        "ev-first"
    );
    let rows = rows(&table(&lake, "eks_audit"));
    assert_eq!(
        find(&rows, "audit_id", "honest-1")["principal_name"],
        json!("mallory")
    );
}

#[tokio::test]
async fn an_event_naming_another_role_than_its_keys_session_names_nobody() {
    let (h, lake, _) = handler(HandlerConfig::default());
    index_alice(&h).await;
    // alice's key, but the event says role `admin`: the key's session is of role `ops`
    let forged = audit_record(
        "x",
        HOSTILE,
        "prod",
        &[keyed_event(
            "forged-1",
            HONEST,
            "admin",
            "ASIAALICE0000000001",
        )],
    );
    let out = h
        .process(&[forged, honest_record("h")], None, now())
        .await
        .unwrap();
    assert_eq!(results(&out), [RecordResult::Ok; 2]);
    assert_eq!(out.metrics.attribution_conflict, 1);
    let rows = rows(&table(&lake, "eks_audit"));
    let r = find(&rows, "audit_id", "forged-1");
    assert_eq!(r["attribution_status"], json!("conflict"));
    assert_eq!(r["principal_name"], Value::Null);
    assert_eq!(r["role_chain"], json!([]));
    assert_honest_row_names_alice(&lake);
}

const TEMPLATES: &str = "- rolearn: arn:aws:iam::111122223333:role/staff\n  username: role:{{AccountID}}:staff:{{SessionName}}\n";

fn templated(audit_id: &str, username: &str) -> String {
    aws_event(audit_id, AT, username, None)
}

#[tokio::test]
async fn non_ascii_and_huge_templated_usernames_do_not_stall_the_batch() {
    let auth = Arc::new(AwsAuth::parse(TEMPLATES, "t").unwrap());
    let (h, lake, _) = handler(HandlerConfig {
        aws_auth: Some(auth),
        ..HandlerConfig::default()
    });
    index_alice(&h).await;
    let huge = format!("role:111122223333:staff:{}", "x".repeat(200_000));
    let hostile = audit_record(
        "x",
        HOSTILE,
        "prod",
        &[
            templated("utf8-1", "role:12345678901\u{e9}:staff:x"),
            templated("utf8-2", "role:111122223333:staff:\u{e9}\u{1f600}"),
            templated("huge", &huge),
        ],
    );
    let out = h
        .process(&[hostile, honest_record("h")], None, now())
        .await
        .unwrap();
    assert_eq!(results(&out), [RecordResult::Ok; 2]);
    let rows = rows(&table(&lake, "eks_audit"));
    for id in ["utf8-1", "utf8-2", "huge"] {
        let r = find(&rows, "audit_id", id);
        assert_ne!(r["attribution_status"], json!("resolved"), "{id}");
    }
    assert_eq!(find(&rows, "audit_id", "huge")["username"], json!(huge));
    assert_honest_row_names_alice(&lake);
}

fn gz_best(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn gzip_bombs_just_under_the_record_cap_cannot_push_out_other_accounts() {
    // smaller caps than the defaults keep the test quick; the mechanism is the same
    let cap = 4 << 20;
    let (h, lake, _) = handler(HandlerConfig {
        max_decompressed: cap,
        budget: Budget {
            decompressed: 24 << 20,
            ..Budget::default()
        },
        ..HandlerConfig::default()
    });
    index_alice(&h).await;
    // valid envelopes whose one message pads the record to just under the cap
    let pad = cap - 400;
    let doc = cwl_envelope(
        HOSTILE,
        "/aws/eks/prod/cluster",
        "kube-apiserver-audit-1",
        &[json!({"id": "1", "timestamp": 1_732_626_427_000i64, "message": "a".repeat(pad)})],
    );
    assert!(doc.len() < cap);
    let bomb = gz_best(doc.as_bytes());
    let mut batch: Vec<InputRecord> = (0..40)
        .map(|i| InputRecord::gzip(format!("bomb{i}"), bomb.clone()))
        .collect();
    batch.push(honest_record("h"));
    let out = h.process(&batch, None, now()).await.unwrap();
    let r = results(&out);
    assert_eq!(r[40], RecordResult::Ok, "the honest record is answered");
    let ok = r[..40].iter().filter(|x| **x == RecordResult::Ok).count();
    // the hostile account's share is the budget less the honest record's few bytes:
    // room for 6 records of just under 4 MiB, and no more
    assert_eq!(ok, 6, "bombs that fit the hostile share");
    assert!(r[..6].iter().all(|x| *x == RecordResult::Ok));
    assert_eq!(out.metrics.records_over_budget, (40 - ok) as u64);
    assert!(out.metrics.bytes_decompressed <= 24 << 20);
    let why = out.outcomes[39].error.as_deref().unwrap();
    assert!(why.contains("decompression budget"), "{why}");
    assert_honest_row_names_alice(&lake);
}

#[tokio::test]
async fn one_record_spreading_events_over_thousands_of_days_is_failed_back() {
    let (h, lake, _) = handler(HandlerConfig::default());
    index_alice(&h).await;
    let day = 86_400_000i64;
    let msgs: Vec<String> = (0..3000)
        .map(|d| {
            let at = resolver::time::utc_date(d * day) + "T00:00:00Z";
            aws_event(&format!("spread-{d}"), &at, "system:anonymous", None)
        })
        .collect();
    let spread = audit_record("spread", HOSTILE, "prod", &msgs);
    let small = audit_record(
        "small",
        HOSTILE,
        "prod",
        &[aws_event("own-1", AT, "system:anonymous", None)],
    );
    let out = h
        .process(&[spread, small, honest_record("h")], None, now())
        .await
        .unwrap();
    assert_eq!(
        results(&out),
        [
            RecordResult::ProcessingFailed,
            RecordResult::Ok,
            RecordResult::Ok
        ]
    );
    assert!(out.outcomes[0]
        .error
        .as_deref()
        .unwrap()
        .contains("partition budget"));
    assert_eq!(out.metrics.records_over_budget, 1);
    assert!(
        out.metrics.objects_written <= 3,
        "{}",
        out.metrics.objects_written
    );
    assert_honest_row_names_alice(&lake);
    let rows = rows(&table(&lake, "eks_audit"));
    find(&rows, "audit_id", "own-1");
}

#[tokio::test]
async fn thousands_of_distinct_unknown_keys_spend_only_the_lookup_budget() {
    let (h, lake, sessions) = handler(HandlerConfig {
        budget: Budget {
            lookups: 100,
            ..Budget::default()
        },
        ..HandlerConfig::default()
    });
    // alice's session is in the store, not in this instance's warm cache
    let alice = match resolver::cloudtrail::parse_event(alice_session().to_string().as_bytes()) {
        Ok(resolver::cloudtrail::Parsed::Sts(s)) => Arc::new(*s),
        _ => unreachable!(),
    };
    sessions.put(&[alice]).await.unwrap();
    let unknown: Vec<String> = (0..5000)
        .map(|i| {
            keyed_event(
                &format!("u{i}"),
                HOSTILE,
                "r",
                &format!("AAAAUNKNOWN{i:08}"),
            )
        })
        .collect();
    let out = h
        .process(
            &[
                audit_record("x", HOSTILE, "prod", &unknown),
                honest_record("h"),
            ],
            None,
            now(),
        )
        .await
        .unwrap();
    assert_eq!(results(&out), [RecordResult::Ok; 2]);
    assert_eq!(out.metrics.session_lookups, 100);
    assert_eq!(out.metrics.session_lookups_over_budget, 4901);
    assert_eq!(out.metrics.attribution_pending, 5000);
    assert_honest_row_names_alice(&lake);
}
