//! Attribution through the handler and the lake's session store: sessions indexed in
//! one batch attribute audit events of later batches (and other Lambda instances).

mod common;

use std::sync::Arc;

use serde_json::{json, Value};

use common::*;
use resolver::awsauth::AwsAuth;
use resolver::store::SessionStore;
use transformer::handler::{Handler, HandlerConfig};
use transformer::lake::MemoryStore;
use transformer::session_store::LakeSessionStore;

const A: &str = "111122223333";
const B: &str = "444455556666";

type LakeHandler = Handler<MemoryStore, LakeSessionStore<MemoryStore>>;

fn lake_handler(lake: &Arc<MemoryStore>, config: HandlerConfig) -> LakeHandler {
    Handler::new(
        trusting(config),
        lake.clone(),
        LakeSessionStore::new(lake.clone()),
    )
}

fn assume_role(
    at: &str,
    caller: Value,
    recipient: &str,
    role_arn: &str,
    session: &str,
    key: &str,
) -> Value {
    // the issued ARN: the role's account and name (no path), then the session name
    let acct = role_arn.split(':').nth(4).unwrap_or("");
    let name = role_arn.rsplit('/').next().unwrap_or("");
    json!({"eventVersion": "1.08", "userIdentity": caller, "eventTime": at, "eventSource": "sts.amazonaws.com", "eventName": "AssumeRole",
        "awsRegion": "us-east-1", "requestParameters": {"roleArn": role_arn, "roleSessionName": session},
        "responseElements": {"credentials": {"accessKeyId": key, "expiration": "Nov 26, 2024, 2:00:00 PM"},
            "assumedRoleUser": {"assumedRoleId": format!("AROA1:{session}"), "arn": format!("arn:aws:sts::{acct}:assumed-role/{name}/{session}")}},
        "requestID": format!("r-{key}-{recipient}"), "eventID": format!("e-{key}-{recipient}"), "recipientAccountId": recipient})
}

fn user(acct: &str, name: &str) -> Value {
    json!({"type": "IAMUser", "arn": format!("arn:aws:iam::{acct}:user/{name}"), "accountId": acct, "userName": name, "principalId": "AIDA1"})
}

fn assumed(acct: &str, role: &str, key: &str) -> Value {
    json!({"type": "AssumedRole", "arn": format!("arn:aws:sts::{acct}:assumed-role/{role}/s"), "accountId": acct, "accessKeyId": key, "principalId": "AROA1:s"})
}

fn audit_rows(lake: &MemoryStore) -> Vec<Value> {
    rows(&table(lake, "eks_audit"))
}

fn ev(id: &str, key: &str) -> String {
    aws_event(
        id,
        "2024-11-26T13:30:00.000001Z",
        "arn:aws:sts::111122223333:assumed-role/ops/jdoe",
        Some(assumed_extra(A, "ops", "jdoe", key)),
    )
}

#[tokio::test]
async fn cloudtrail_in_a_later_batch_pending_then_resolved_at_ingest_and_across_instances() {
    let lake = Arc::new(MemoryStore::default());
    let h = lake_handler(
        &lake,
        HandlerConfig {
            negative_ttl_ms: 0,
            ..HandlerConfig::default()
        },
    );
    let key = "ASIALATE000000000001";

    let out = h
        .process(
            &[audit_record("b1", A, "prod", &[ev("audit-1", key)])],
            Some("us-east-1"),
            now(),
        )
        .await
        .unwrap();
    assert_eq!(out.metrics.attribution_pending, 1);
    assert_eq!(out.metrics.session_lookups, 1);

    let trail = assume_role(
        "2024-11-26T13:00:00Z",
        user(A, "jdoe"),
        A,
        "arn:aws:iam::111122223333:role/ops",
        "jdoe",
        key,
    );
    let out = h
        .process(&[trail_record("b2", &[trail])], None, now())
        .await
        .unwrap();
    assert_eq!(out.metrics.sts_sessions, 1);
    assert!(lake
        .keys()
        .iter()
        .any(|k| k == &format!("session_index/by_key/{key}.json")));

    let out = h
        .process(
            &[audit_record("b3", A, "prod", &[ev("audit-2", key)])],
            None,
            now(),
        )
        .await
        .unwrap();
    assert_eq!(out.metrics.attribution_resolved, 1);
    assert_eq!(out.metrics.session_lookups, 0, "the warm cache answered");

    // another Lambda instance (cold cache) finds the session in the lake's index
    let cold = lake_handler(&lake, HandlerConfig::default());
    let out = cold
        .process(
            &[audit_record("b4", A, "prod", &[ev("audit-3", key)])],
            None,
            now(),
        )
        .await
        .unwrap();
    assert_eq!(out.metrics.attribution_resolved, 1);
    assert_eq!(out.metrics.session_lookups, 1);

    let rows = audit_rows(&lake);
    let status =
        |id: &str| rows.iter().find(|r| r["audit_id"] == id).unwrap()["attribution_status"].clone();
    assert_eq!(status("audit-1"), "pending");
    assert_eq!(status("audit-2"), "resolved");
    assert_eq!(status("audit-3"), "resolved");
    let r3 = rows.iter().find(|r| r["audit_id"] == "audit-3").unwrap();
    assert_eq!(r3["principal_name"], "jdoe");
    assert_eq!(r3["principal_arn"], "arn:aws:iam::111122223333:user/jdoe");
}

#[tokio::test]
async fn a_miss_is_remembered_only_briefly() {
    let lake = Arc::new(MemoryStore::default());
    let warm = lake_handler(
        &lake,
        HandlerConfig {
            negative_ttl_ms: 60_000,
            ..HandlerConfig::default()
        },
    );
    let key = "ASIANEG0000000000001";
    warm.process(
        &[audit_record("n1", A, "prod", &[ev("n-1", key)])],
        None,
        now(),
    )
    .await
    .unwrap();
    // another instance indexes the session meanwhile
    let other = lake_handler(&lake, HandlerConfig::default());
    let trail = assume_role(
        "2024-11-26T13:00:00Z",
        user(A, "jdoe"),
        A,
        "arn:aws:iam::111122223333:role/ops",
        "jdoe",
        key,
    );
    other
        .process(&[trail_record("n2", &[trail])], None, now())
        .await
        .unwrap();
    // within the negative TTL the warm instance does not ask again
    let out = warm
        .process(
            &[audit_record("n3", A, "prod", &[ev("n-3", key)])],
            None,
            now() + 10_000,
        )
        .await
        .unwrap();
    assert_eq!(
        (out.metrics.attribution_pending, out.metrics.session_lookups),
        (1, 0)
    );
    // after it, it does, and resolves
    let out = warm
        .process(
            &[audit_record("n4", A, "prod", &[ev("n-4", key)])],
            None,
            now() + 61_000,
        )
        .await
        .unwrap();
    assert_eq!(
        (
            out.metrics.attribution_resolved,
            out.metrics.session_lookups
        ),
        (1, 1)
    );
}

#[tokio::test]
async fn role_chains_are_followed_through_the_store_link_by_link() {
    let lake = Arc::new(MemoryStore::default());
    let indexer = lake_handler(&lake, HandlerConfig::default());
    let t1 = assume_role(
        "2024-11-26T13:00:00Z",
        user(B, "jdoe"),
        B,
        "arn:aws:iam::444455556666:role/jump",
        "jdoe",
        "ASIACHAIN00000000001",
    );
    let t2 = assume_role(
        "2024-11-26T13:01:00Z",
        assumed(B, "jump", "ASIACHAIN00000000001"),
        B,
        "arn:aws:iam::777788889999:role/mid",
        "jdoe",
        "ASIACHAIN00000000002",
    );
    let t3 = assume_role(
        "2024-11-26T13:02:00Z",
        assumed("777788889999", "mid", "ASIACHAIN00000000002"),
        "777788889999",
        "arn:aws:iam::111122223333:role/ops",
        "jdoe",
        "ASIACHAIN00000000003",
    );
    // each link arrives in its own batch
    for (i, t) in [t1, t2, t3].into_iter().enumerate() {
        indexer
            .process(&[trail_record(&format!("c{i}"), &[t])], None, now())
            .await
            .unwrap();
    }
    let cold = lake_handler(&lake, HandlerConfig::default());
    let out = cold
        .process(
            &[audit_record(
                "c9",
                A,
                "prod",
                &[ev("chain-1", "ASIACHAIN00000000003")],
            )],
            None,
            now(),
        )
        .await
        .unwrap();
    assert_eq!(out.metrics.attribution_resolved, 1);
    assert_eq!(out.metrics.session_lookups, 3, "one lookup per link");
    let r = audit_rows(&lake)
        .into_iter()
        .find(|r| r["audit_id"] == "chain-1")
        .unwrap();
    assert_eq!(r["principal_name"], "jdoe");
    assert_eq!(r["principal_account_id"], B);
    assert_eq!(
        r["role_chain"],
        json!([
            "arn:aws:iam::444455556666:role/jump",
            "arn:aws:iam::777788889999:role/mid",
            "arn:aws:iam::111122223333:role/ops"
        ])
    );
}

#[tokio::test]
async fn cross_account_copies_in_one_batch_become_one_row() {
    let lake = Arc::new(MemoryStore::default());
    let h = lake_handler(&lake, HandlerConfig::default());
    let mut caller = assume_role(
        "2024-11-26T13:00:00Z",
        user(B, "jdoe"),
        B,
        "arn:aws:iam::111122223333:role/ops",
        "jdoe",
        "ASIAXACCT0000000001",
    );
    caller["sharedEventID"] = json!("shared-9");
    let mut owner = caller.clone();
    owner["recipientAccountId"] = json!(A);
    owner["eventID"] = json!("owner-9");
    owner["userIdentity"] = json!({"type": "AWSAccount", "principalId": "AIDA1", "accountId": B});
    // the owner copy first, in a different record of the same batch
    let out = h
        .process(
            &[
                trail_record("x1", &[owner.clone()]),
                trail_record("x2", &[caller]),
            ],
            None,
            now(),
        )
        .await
        .unwrap();
    assert_eq!(out.metrics.sts_sessions, 1);
    let sts = rows(&table(&lake, "sts_sessions"));
    assert_eq!(sts.len(), 1);
    assert_eq!(sts[0]["caller_type"], "IAMUser");
    assert_eq!(sts[0]["shared_event_id"], "shared-9");
    assert!(sts[0]["_object"]
        .as_str()
        .unwrap()
        .contains(&format!("/{B}/")));
    // a later owner copy alone does not replace the stored caller copy
    h.process(&[trail_record("x3", &[owner])], None, now())
        .await
        .unwrap();
    let stored = LakeSessionStore::new(lake.clone())
        .get("ASIAXACCT0000000001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.caller_type.as_deref(), Some("IAMUser"));
}

#[tokio::test]
async fn legacy_usernames_resolve_by_name_through_the_store() {
    let lake = Arc::new(MemoryStore::default());
    let auth = AwsAuth::parse("- rolearn: arn:aws:iam::111122223333:role/staff\n  username: role:{{AccountID}}:staff:{{SessionName}}\n", "t").unwrap();
    let config = HandlerConfig {
        aws_auth: Some(Arc::new(auth)),
        ..HandlerConfig::default()
    };
    lake_handler(&lake, config.clone())
        .process(
            &[trail_record(
                "l1",
                &[assume_role(
                    "2024-11-26T13:00:00Z",
                    user(A, "henry"),
                    A,
                    "arn:aws:iam::111122223333:role/staff",
                    "henry@example.com",
                    "ASIALEGACY000000001",
                )],
            )],
            None,
            now(),
        )
        .await
        .unwrap();
    let cold = lake_handler(&lake, config);
    let msg = aws_event(
        "legacy-1",
        "2024-11-26T13:20:00Z",
        "role:111122223333:staff:henry-example.com",
        None,
    );
    let out = cold
        .process(&[audit_record("l2", A, "old", &[msg])], None, now())
        .await
        .unwrap();
    assert_eq!(out.metrics.attribution_resolved, 1);
    let r = audit_rows(&lake)
        .into_iter()
        .find(|r| r["audit_id"] == "legacy-1")
        .unwrap();
    assert_eq!(r["principal_name"], "henry");
    assert_eq!(r["attribution_method"], "session_name");
}

#[tokio::test]
async fn session_store_refuses_key_ids_that_are_not_aws_key_ids() {
    let lake = Arc::new(MemoryStore::default());
    let store = LakeSessionStore::new(lake.clone());
    for bad in [
        "../../etc/passwd",
        "ASIA/../../x",
        "short",
        "",
        "ASIA KEY WITH SPACES",
    ] {
        assert!(store.get(bad).await.unwrap().is_none(), "{bad}");
    }
    // an audit event carrying a hostile key id is attributed to nobody and causes no lookup
    let h = lake_handler(&lake, HandlerConfig::default());
    let msg = aws_event(
        "hostile-1",
        "2024-11-26T13:20:00Z",
        "arn:aws:sts::111122223333:assumed-role/ops/x",
        Some(assumed_extra(A, "ops", "x", "../../session_index/by_key/X")),
    );
    let out = h
        .process(&[audit_record("h1", A, "prod", &[msg])], None, now())
        .await
        .unwrap();
    assert_eq!(
        (out.metrics.attribution_pending, out.metrics.session_lookups),
        (1, 0)
    );
}

/// Workloads through the handler (issue #11): a Pod Identity session and an IRSA session
/// chained into another role, their CloudTrail first in one batch and late in another;
/// the Parquet row names the workload, its cluster and pod, and `sts_sessions` keeps
/// the session tags as a map.
#[tokio::test]
async fn workloads_through_the_handler_early_and_late() {
    let tags = [
        (
            "eks-cluster-arn",
            "arn:aws:eks:us-west-2:111122223333:cluster/prod-west",
        ),
        ("eks-cluster-name", "prod-west"),
        ("kubernetes-namespace", "platform"),
        ("kubernetes-service-account", "fleet-operator"),
        ("kubernetes-pod-name", "fleet-operator-7c9d8b6f4-x2k4q"),
        ("kubernetes-pod-uid", "8d2c6f1e-3a4b-4c5d-9e8f-7a6b5c4d3e2f"),
    ];
    let mut pod = assume_role(
        "2024-11-26T13:00:00Z",
        json!({"type": "AWSService", "invokedBy": "pods.eks.amazonaws.com"}),
        A,
        "arn:aws:iam::111122223333:role/fleet-operator",
        "eks-prod-west-fleet-oper-1",
        "ASIAPODIDENTITY00001",
    );
    pod["requestParameters"]["tags"] = tags
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    let provider = "arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/C1A0B2C3D4E5F607";
    let mut irsa = assume_role(
        "2024-11-26T13:00:00Z",
        json!({"type": "WebIdentityUser", "userName": "system:serviceaccount:ci:runner", "identityProvider": provider}),
        A,
        "arn:aws:iam::111122223333:role/runner",
        "botocore-session-1",
        "ASIAIRSA000000000001",
    );
    irsa["eventName"] = json!("AssumeRoleWithWebIdentity");
    irsa["responseElements"]["subjectFromWebIdentityToken"] =
        json!("system:serviceaccount:ci:runner");
    irsa["responseElements"]["provider"] = json!(provider);
    let hop = assume_role(
        "2024-11-26T13:01:00Z",
        assumed(A, "runner", "ASIAIRSA000000000001"),
        A,
        "arn:aws:iam::111122223333:role/deployer",
        "hop",
        "ASIAIRSACHAINED00001",
    );
    let events = |suffix: &str| {
        vec![
            aws_event(
                &format!("pod-{suffix}"),
                "2024-11-26T13:30:00Z",
                "arn:aws:sts::111122223333:assumed-role/fleet-operator/eks-prod-west-fleet-oper-1",
                Some(assumed_extra(
                    A,
                    "fleet-operator",
                    "eks-prod-west-fleet-oper-1",
                    "ASIAPODIDENTITY00001",
                )),
            ),
            aws_event(
                &format!("irsa-{suffix}"),
                "2024-11-26T13:30:00Z",
                "arn:aws:sts::111122223333:assumed-role/deployer/hop",
                Some(assumed_extra(A, "deployer", "hop", "ASIAIRSACHAINED00001")),
            ),
        ]
    };
    let config = || HandlerConfig {
        negative_ttl_ms: 0,
        issuer_clusters: Arc::new(
            resolver::workload::IssuerClusters::parse("C1A0B2C3D4E5F607=ci-tools").unwrap(),
        ),
        ..HandlerConfig::default()
    };
    let lake = Arc::new(MemoryStore::default());
    let h = lake_handler(&lake, config());
    // late: the audit events first (pending), then CloudTrail, then the same events again
    h.process(
        &[audit_record("b1", A, "prod-east", &events("late"))],
        None,
        now(),
    )
    .await
    .unwrap();
    h.process(&[trail_record("b2", &[pod, irsa, hop])], None, now())
        .await
        .unwrap();
    let cold = lake_handler(&lake, config());
    let out = cold
        .process(
            &[audit_record("b3", A, "prod-east", &events("early"))],
            None,
            now(),
        )
        .await
        .unwrap();
    assert_eq!(out.metrics.attribution_resolved, 2);
    let rows = audit_rows(&lake);
    for (id, status) in [("pod-late", "pending"), ("irsa-late", "pending")] {
        assert_eq!(find(&rows, "audit_id", id)["attribution_status"], status);
    }
    let p = find(&rows, "audit_id", "pod-early");
    assert_eq!(
        (
            &p["principal_type"],
            &p["principal_name"],
            &p["principal_cluster"],
            &p["principal_pod"],
            &p["principal_arn"]
        ),
        (
            &json!("k8s_workload"),
            &json!("platform:fleet-operator"),
            &json!("prod-west"),
            &json!("fleet-operator-7c9d8b6f4-x2k4q"),
            &json!("arn:aws:eks:us-west-2:111122223333:cluster/prod-west")
        )
    );
    let i = find(&rows, "audit_id", "irsa-early");
    assert_eq!(
        (
            &i["principal_type"],
            &i["principal_name"],
            &i["principal_cluster"],
            &i["principal_arn"],
            &i["principal_pod"]
        ),
        (
            &json!("k8s_workload"),
            &json!("ci:runner"),
            &json!("ci-tools"),
            &json!(provider),
            &Value::Null
        )
    );
    assert_eq!(
        i["role_chain"],
        json!([
            "arn:aws:iam::111122223333:role/runner",
            "arn:aws:iam::111122223333:role/deployer"
        ])
    );
    let sts = rows_of(&lake, "sts_sessions");
    let s = find(&sts, "access_key_id", "ASIAPODIDENTITY00001");
    assert_eq!(
        s["session_tags"]["kubernetes-service-account"],
        "fleet-operator"
    );
    assert_eq!(s["session_tags"].as_object().unwrap().len(), 6);
    assert_eq!(
        find(&sts, "access_key_id", "ASIAIRSA000000000001")["session_tags"],
        json!({})
    );
}

fn rows_of(lake: &MemoryStore, t: &str) -> Vec<Value> {
    rows(&table(lake, t))
}
