//! EKS API calls through the handler: every fixture shape (tests/fixtures/cloudtrail_eks)
//! becomes one `eks_api_events` row read back from Parquet; the caller is attributed
//! through the same session chain as an audit event's user ("alice via deployer ->
//! eks-admin"), late when CloudTrail has not delivered the STS call yet; only trusted
//! trails count; the aws/cloudtrail rules write findings naming the person.

mod common;

use std::sync::Arc;

use serde_json::{json, Value};

use common::*;
use transformer::alerts::MemoryAlerts;
use transformer::handler::HandlerConfig;
use transformer::sigma::{Placeholders, RuleSet, Severity};

const A: &str = "111122223333";
const KEY_DEPLOYER: &str = "ASIADEPLOYER00000001";
const KEY_ADMIN: &str = "ASIAEKSADMIN00000001";

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/cloudtrail_eks")
}

fn fixture(name: &str) -> Value {
    let p = fixtures().join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p:?}: {e}")))
        .unwrap()
}

fn rules() -> Arc<RuleSet> {
    let ph = Placeholders::default().with("org_accounts", vec![A.into(), "444455556666".into()]);
    Arc::new(RuleSet::from_files_with(schemas::SHIPPED_RULES.iter().copied(), &ph).unwrap())
}

fn config() -> HandlerConfig {
    HandlerConfig {
        rules: rules(),
        alert_severity: Severity::High,
        ..HandlerConfig::default()
    }
}

/// alice (IAM user) -> deployer -> eks-admin: two AssumeRole calls.
fn chain() -> Vec<Value> {
    let sts = |caller: Value, role: &str, session: &str, key: &str, at: &str| {
        json!({"eventVersion": "1.08", "userIdentity": caller, "eventTime": at,
            "eventSource": "sts.amazonaws.com", "eventName": "AssumeRole", "awsRegion": "eu-west-1",
            "requestParameters": {"roleArn": format!("arn:aws:iam::{A}:role/{role}"), "roleSessionName": session},
            "responseElements": {"credentials": {"accessKeyId": key, "expiration": "Nov 20, 2026, 11:00:00 AM"},
                "assumedRoleUser": {"assumedRoleId": format!("AROA{role}:{session}"), "arn": format!("arn:aws:sts::{A}:assumed-role/{role}/{session}")}},
            "requestID": format!("r-{key}"), "eventID": format!("e-{key}"), "recipientAccountId": A})
    };
    vec![
        sts(
            json!({"type": "IAMUser", "arn": format!("arn:aws:iam::{A}:user/alice@example.com"), "accountId": A, "userName": "alice@example.com", "principalId": "AIDAALICE"}),
            "deployer",
            "alice",
            KEY_DEPLOYER,
            "2026-11-20T09:50:00Z",
        ),
        sts(
            json!({"type": "AssumedRole", "arn": format!("arn:aws:sts::{A}:assumed-role/deployer/alice"), "accountId": A, "accessKeyId": KEY_DEPLOYER, "principalId": "AROAdeployer:alice"}),
            "eks-admin",
            "alice",
            KEY_ADMIN,
            "2026-11-20T09:55:00Z",
        ),
    ]
}

/// A fixture call made by the eks-admin session alice ended up in.
fn by_admin(mut call: Value, id: &str, at: &str) -> Value {
    call["eventID"] = json!(id);
    call["eventTime"] = json!(at);
    call["userIdentity"] = json!({"type": "AssumedRole", "principalId": "AROAeks-admin:alice",
        "arn": format!("arn:aws:sts::{A}:assumed-role/eks-admin/alice"), "accountId": A, "accessKeyId": KEY_ADMIN,
        "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": "AROAeks-admin", "arn": format!("arn:aws:iam::{A}:role/eks-admin"), "accountId": A, "userName": "eks-admin"}}});
    call
}

fn admin_policy() -> Value {
    let mut c = fixture("AssociateAccessPolicy.json");
    c["requestParameters"]["policyArn"] =
        json!("arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy");
    c["requestParameters"]["accessScope"] = json!({"type": "cluster", "namespaces": []});
    c["requestParameters"]["principalArn"] =
        json!("arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Fbob");
    c["responseElements"]["principalArn"] = json!("arn:aws:iam::111122223333:role/bob");
    by_admin(c, "call-admin", "2026-11-20T10:00:00Z")
}

fn audit_off() -> Value {
    by_admin(
        fixture("UpdateClusterConfig.json"),
        "call-off",
        "2026-11-20T10:05:00Z",
    )
}

#[tokio::test]
async fn every_fixture_call_becomes_one_typed_row() {
    let mut calls = Vec::new();
    for dir in [
        fixtures(),
        fixtures().join("failed"),
        fixtures().join("variants"),
    ] {
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        for p in names {
            calls
                .push(serde_json::from_str::<Value>(&std::fs::read_to_string(p).unwrap()).unwrap());
        }
    }
    assert!(calls.len() >= 16, "{} fixtures", calls.len());
    let names: std::collections::BTreeSet<&str> = calls
        .iter()
        .map(|c| c["eventName"].as_str().unwrap())
        .collect();
    for n in transformer::eks_api::ACCESS_CALLS {
        assert!(names.contains(n), "no fixture for {n}");
    }
    // calls the filter would not pass, if they arrive anyway (a widened filter): other
    // services and read-only EKS calls are skipped, an EKS change (TagResource) is a row
    let negatives: Vec<Value> = std::fs::read_dir(fixtures().join("negative"))
        .unwrap()
        .flatten()
        .map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap())
        .collect();
    let eks_negatives = negatives
        .iter()
        .filter(|c| c["eventSource"] == "eks.amazonaws.com" && c["readOnly"] != true)
        .count();
    assert_eq!(eks_negatives, 1, "TagResource");
    let (h, lake, _) = handler(config());
    let mut all = calls.clone();
    all.extend(negatives.iter().cloned());
    let out = h
        .process(&[trail_record("t1", &all)], None, now())
        .await
        .unwrap();
    assert_eq!(
        out.metrics.eks_api_events as usize,
        calls.len() + eks_negatives,
        "{:?}",
        out.metrics
    );
    assert_eq!(out.metrics.eks_api_invalid, 0);
    let got = rows(&table(&lake, "eks_api_events"));
    assert_eq!(got.len(), calls.len() + eks_negatives);
    for c in &calls {
        let id = c["eventID"].as_str().unwrap();
        let r = find(&got, "event_id", id);
        assert_eq!(r["event_name"], c["eventName"]);
        assert_eq!(r["account_id"], A, "{id}");
        assert_eq!(r["cluster"], "prod-east", "{id}: {}", c["eventName"]);
        assert_eq!(r["caller_arn"], c["userIdentity"]["arn"]);
        assert_eq!(
            r["error_code"],
            c.get("errorCode").cloned().unwrap_or(Value::Null)
        );
        assert!(r["_object"].as_str().unwrap().starts_with(&format!(
            "eks_api_events/dt={}/{A}/part-",
            &c["eventTime"].as_str().unwrap()[..10]
        )));
        // the raw parameters are the record's, byte for byte as JSON
        let raw: Value = serde_json::from_str(r["request_parameters"].as_str().unwrap()).unwrap();
        assert_eq!(raw, c["requestParameters"]);
        let name = c["eventName"].as_str().unwrap();
        if name.contains("AccessEntry") || name.contains("AccessPolicy") {
            let t = r["target_principal_arn"]
                .as_str()
                .unwrap_or_else(|| panic!("{id}"));
            assert!(
                t.starts_with("arn:aws:iam::") && !t.contains('%'),
                "{id}: {t}"
            );
            assert_eq!(
                r["target_principal_account_id"],
                t.split(':').nth(4).unwrap()
            );
        }
        if name.contains("PodIdentity") || name.ends_with("Addon") {
            assert!(r["target_principal_arn"]
                .as_str()
                .unwrap()
                .contains(":role/"));
        }
    }
    let off = find(
        &got,
        "event_id",
        fixture("UpdateClusterConfig.json")["eventID"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(off["audit_logging_enabled"], false);
    assert_eq!(off["authenticator_logging_enabled"], false);
    assert_eq!(off["endpoint_public_access"], Value::Null, "untouched");
    let public = find(
        &got,
        "event_id",
        fixture("variants/UpdateClusterConfig-endpointAccess.json")["eventID"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(public["endpoint_public_access"], true);
    assert_eq!(public["audit_logging_enabled"], Value::Null, "untouched");
    let addon = find(
        &got,
        "event_id",
        fixture("CreateAddon.json")["eventID"].as_str().unwrap(),
    );
    assert_eq!(
        addon["target_principal_arn"],
        "arn:aws:iam::111122223333:role/ebs-csi-driver"
    );
    assert_eq!(
        addon["pod_identity_service_account"],
        "ebs-csi-controller-sa"
    );
    let irsa = find(
        &got,
        "event_id",
        fixture("UpdateAddon.json")["eventID"].as_str().unwrap(),
    );
    assert_eq!(
        irsa["target_principal_arn"],
        "arn:aws:iam::111122223333:role/vpc-cni-irsa"
    );
    let entry = find(
        &got,
        "event_id",
        fixture("CreateAccessEntry.json")["eventID"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(
        entry["kubernetes_groups"],
        fixture("CreateAccessEntry.json")["requestParameters"]["kubernetesGroups"]
    );
}

#[tokio::test]
async fn the_caller_is_the_person_behind_the_session_and_the_findings_name_them() {
    let (h, lake, _) = handler(config());
    let h = h.with_alerts(MemoryAlerts::default());
    let mut events = chain();
    events.push(admin_policy());
    events.push(audit_off());
    h.process(&[trail_record("t1", &events)], None, now())
        .await
        .unwrap();
    let calls = rows(&table(&lake, "eks_api_events"));
    assert_eq!(calls.len(), 2);
    for id in ["call-admin", "call-off"] {
        let r = find(&calls, "event_id", id);
        assert_eq!(r["principal_name"], "alice@example.com", "{id}");
        assert_eq!(r["principal_type"], "iam_user");
        assert_eq!(r["attribution_method"], "access_key");
        assert_eq!(r["attribution_status"], "resolved");
        assert_eq!(
            r["role_chain"],
            json!([
                format!("arn:aws:iam::{A}:role/deployer"),
                format!("arn:aws:iam::{A}:role/eks-admin")
            ])
        );
    }
    let admin = find(&calls, "event_id", "call-admin");
    assert_eq!(
        admin["target_principal_arn"],
        format!("arn:aws:iam::{A}:role/bob")
    );
    let rs = rules();
    let admin_rule = rs.get("eks_api_cluster_admin_policy_associated").unwrap();
    let off_rule = rs.get("eks_api_audit_logging_disabled").unwrap();
    assert_eq!(admin["detections"], json!([admin_rule.id]));
    let findings = rows(&table(&lake, "findings"));
    assert_eq!(findings.len(), 2, "{findings:?}");
    for (rule, id) in [(admin_rule, "call-admin"), (off_rule, "call-off")] {
        let f = findings
            .iter()
            .find(|f| f["rule_id"] == rule.id.as_str())
            .unwrap();
        assert_eq!(f["audit_id"], id);
        assert_eq!(f["source_table"], "eks_api_events");
        assert_eq!(f["principal_name"], "alice@example.com");
        assert_eq!(f["cluster"], "prod-east");
        assert_eq!(f["account_id"], A);
        assert_eq!(f["aws_access_key_id"], KEY_ADMIN);
        assert_eq!(
            f["aws_role_arn"],
            format!("arn:aws:iam::{A}:role/eks-admin")
        );
    }
    let f = findings
        .iter()
        .find(|f| f["audit_id"] == "call-admin")
        .unwrap();
    assert_eq!(f["event_name"], "AssociateAccessPolicy");
    assert_eq!(
        f["target_principal_arn"],
        format!("arn:aws:iam::{A}:role/bob")
    );
    // both are high: two alerts, the person first
    let alerts = h.alerts().alerts();
    assert_eq!(alerts.len(), 2);
    for a in &alerts {
        let d: Value = serde_json::from_str(&a.detail).unwrap();
        assert_eq!(d["principal_name"], "alice@example.com");
        assert!(
            d["summary"]
                .as_str()
                .unwrap()
                .contains("alice@example.com (iam_user)"),
            "{d}"
        );
    }
    let d: Value = serde_json::from_str(
        &alerts
            .iter()
            .find(|a| a.detail.contains("call-admin"))
            .unwrap()
            .detail,
    )
    .unwrap();
    assert!(
        d["summary"]
            .as_str()
            .unwrap()
            .contains("AssociateAccessPolicy for arn:aws:iam::111122223333:role/bob"),
        "{d}"
    );
}

#[tokio::test]
async fn a_call_before_its_sessions_is_pending_then_resolved_by_a_later_batch() {
    let (h, lake, _) = handler(config());
    h.process(&[trail_record("t1", &[audit_off()])], None, now())
        .await
        .unwrap();
    let r = rows(&table(&lake, "eks_api_events")).remove(0);
    assert_eq!(r["attribution_status"], "pending");
    assert_eq!(r["principal_name"], Value::Null);
    // the STS calls arrive; the same call redelivered resolves at ingest
    let mut later = chain();
    later.push(audit_off());
    h.process(&[trail_record("t2", &later)], None, now())
        .await
        .unwrap();
    let resolved: Vec<Value> = rows(&table(&lake, "eks_api_events"))
        .into_iter()
        .filter(|r| r["attribution_status"] == "resolved")
        .collect();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0]["principal_name"], "alice@example.com");
}

#[tokio::test]
async fn calls_from_an_untrusted_log_group_are_not_rows() {
    let (h, lake, _) = handler(config());
    let forged = envelope_record(
        "m1",
        "444455556666",
        TRAIL_GROUP,
        "s",
        &[admin_policy().to_string()],
    );
    let out = h.process(&[forged], None, now()).await.unwrap();
    assert_eq!(out.metrics.eks_api_events, 0);
    assert_eq!(out.metrics.sts_untrusted, 1);
    assert!(table(&lake, "eks_api_events").is_empty());
    assert!(table(&lake, "findings").is_empty());
    // a trusted trail's malformed EKS record: counted, nothing written, the record Ok
    let mut bad = admin_policy();
    bad["eventTime"] = json!("yesterday");
    let out = h
        .process(&[trail_record("t1", &[bad])], None, now())
        .await
        .unwrap();
    assert_eq!(out.metrics.eks_api_invalid, 1);
    assert_eq!(
        out.outcomes[0].result,
        transformer::firehose::RecordResult::Ok
    );
}

#[tokio::test]
async fn an_access_entry_outside_the_organisation_is_found_only_when_the_list_is_set() {
    let mut call = fixture("CreateAccessEntry.json");
    call["requestParameters"]["principalArn"] = json!("arn:aws:iam::999988887777:role/vendor");
    call["responseElements"]["accessEntry"]["principalArn"] =
        json!("arn:aws:iam::999988887777:role/vendor");
    let (h, lake, _) = handler(config());
    h.process(
        &[trail_record("t1", std::slice::from_ref(&call))],
        None,
        now(),
    )
    .await
    .unwrap();
    let f = rows(&table(&lake, "findings"));
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0]["rule_name"],
        "eks_api_access_entry_outside_organisation"
    );
    // no %org_accounts%: the rule is off, nothing is found
    let off = Arc::new(RuleSet::from_files(schemas::SHIPPED_RULES.iter().copied()).unwrap());
    assert!(off
        .get("eks_api_access_entry_outside_organisation")
        .unwrap()
        .off
        .is_some());
    let (h, lake, _) = handler(HandlerConfig {
        rules: off,
        ..HandlerConfig::default()
    });
    h.process(&[trail_record("t1", &[call])], None, now())
        .await
        .unwrap();
    assert!(table(&lake, "findings").is_empty());
    assert_eq!(rows(&table(&lake, "eks_api_events")).len(), 1);
}
