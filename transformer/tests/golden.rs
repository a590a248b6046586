//! Golden test: the Firehose event fixture (shaped exactly as Firehose sends it, every
//! row of DESIGN section 3's table) -> response JSON and Parquet rows read back.
#![recursion_limit = "256"]

mod common;

use std::path::PathBuf;

use serde_json::{json, Value};

use common::*;
use transformer::firehose::{FirehoseEvent, FirehoseResponse, RecordResult};
use transformer::HandlerConfig;

fn fixture() -> (FirehoseEvent, Vec<String>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let ev: FirehoseEvent =
        serde_json::from_str(&std::fs::read_to_string(dir.join("firehose-golden.json")).unwrap())
            .unwrap();
    let names: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(dir.join("firehose-golden.names.json")).unwrap(),
    )
    .unwrap();
    (ev, names)
}

#[tokio::test]
async fn response_has_one_entry_per_record_with_the_contracted_result() {
    let (ev, names) = fixture();
    let (h, lake, _) = handler(HandlerConfig::default());
    let (resp, out) = h.handle_firehose(&ev, now()).await.unwrap();
    assert_eq!(resp.records.len(), ev.records.len());
    let expected = [
        ("ok-audit", RecordResult::Ok),
        ("control", RecordResult::Dropped),
        ("not-gzip", RecordResult::ProcessingFailed),
        ("truncated-gzip", RecordResult::ProcessingFailed),
        ("corrupt-gzip", RecordResult::ProcessingFailed),
        ("not-json", RecordResult::ProcessingFailed),
        ("no-owner", RecordResult::ProcessingFailed),
        ("multi-member", RecordResult::Ok),
        ("cloudtrail", RecordResult::Ok),
        ("hostile", RecordResult::Ok),
    ];
    for ((name, want), (got, input)) in expected.iter().zip(resp.records.iter().zip(&ev.records)) {
        assert_eq!(
            names.iter().position(|n| n == name),
            ev.records.iter().position(|r| r.record_id == got.record_id),
            "{name}"
        );
        assert_eq!(got.record_id, input.record_id, "{name}");
        assert_eq!(got.result, *want, "{name}");
        match want {
            // Ok and ProcessingFailed return the original bytes unchanged
            RecordResult::Ok | RecordResult::ProcessingFailed => {
                assert_eq!(got.data, input.data, "{name}")
            }
            RecordResult::Dropped => assert_eq!(got.data, "", "{name}"),
        }
    }
    // The response is never larger than the request.
    let req_len = serde_json::to_vec(&ev).unwrap().len();
    let resp_json = serde_json::to_string(&resp).unwrap();
    assert!(
        resp_json.len() <= req_len,
        "{} > {req_len}",
        resp_json.len()
    );
    // Exactly Ok / Dropped / ProcessingFailed on the wire, and no metadata.
    let parsed: Value = serde_json::from_str(&resp_json).unwrap();
    for r in parsed["records"].as_array().unwrap() {
        assert!(["Ok", "Dropped", "ProcessingFailed"].contains(&r["result"].as_str().unwrap()));
        assert_eq!(r.as_object().unwrap().len(), 3);
    }
    let _: FirehoseResponse = serde_json::from_str(&resp_json).unwrap();
    let m = out.metrics;
    assert_eq!(
        (
            m.records_in,
            m.records_ok,
            m.records_dropped,
            m.records_failed
        ),
        (10, 4, 1, 5)
    );
    assert_eq!(
        (
            m.events_written,
            m.truncated,
            m.invalid,
            m.skipped,
            m.sts_sessions
        ),
        (7, 1, 1, 2, 1)
    );
    assert_eq!(
        m.attribution_resolved
            + m.attribution_pending
            + m.attribution_ambiguous
            + m.attribution_not_applicable,
        7
    );
    // the session index lives in the (memory) session store, not in this lake
    assert_eq!(lake.keys().len() as u64, m.objects_written);
}

#[tokio::test]
async fn parquet_rows_carry_stamps_audit_fields_and_attribution() {
    let (ev, _) = fixture();
    let (h, lake, _) = handler(HandlerConfig::default());
    h.handle_firehose(&ev, now()).await.unwrap();
    let rows = rows(&table(&lake, "eks_audit"));
    assert_eq!(rows.len(), 7);

    let ok_rows: Vec<Value> = rows
        .iter()
        .filter(|r| r["parse_status"] == "ok")
        .cloned()
        .collect();
    let rb = find(&ok_rows, "audit_id", "7f3c2a1e-5b8d-4c1a-9e2f-0a1b2c3d4e5f");
    let expect = json!({
        "account_id": "111122223333", "region": "us-east-1", "cluster": "prod-east",
        "log_group": "/aws/eks/prod-east/cluster", "log_stream": "kube-apiserver-audit-0a1b2c3d4e5f60718293a4b5c6d7e8f9",
        "cwl_event_id": "38480917865042697267627490045603633139480491071049695232",
        "ingest_time": now(), "stage": "ResponseComplete", "level": "RequestResponse", "verb": "create",
        "request_uri": "/apis/rbac.authorization.k8s.io/v1/namespaces/payments/rolebindings?fieldManager=kubectl-client-side-apply&fieldValidation=Strict",
        "event_time": 1732626429118i64, "stage_time": 1732626429131i64,
        "username": "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_AdministratorAccess_0123456789abcdef/alice-example.com",
        "user_uid": "aws-iam-authenticator:111122223333:AROAEXAMPLEROLEID0001",
        "user_groups": ["system:authenticated"],
        "source_ips": ["10.1.2.3", "198.51.100.24"], "source_ip": "198.51.100.24",
        "user_agent": "kubectl/v1.31.2 (darwin/arm64) kubernetes/5864a46",
        "object_resource": "rolebindings", "object_subresource": null, "object_namespace": "payments", "object_name": "bob-edit",
        "object_api_group": "rbac.authorization.k8s.io", "object_api_version": "v1",
        "response_code": 201, "response_status": null, "authz_decision": "allow", "authz_reason": "EKS Access Policy: allowed",
        "aws_access_key_id": "ASIAEXAMPLETEMPKEY03",
        "aws_arn": "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_AdministratorAccess_0123456789abcdef/alice@example.com",
        "aws_role_arn": "arn:aws:iam::111122223333:role/AWSReservedSSO_AdministratorAccess_0123456789abcdef",
        "aws_session_name": "alice@example.com", "aws_principal_id": "AROAEXAMPLEROLEID0001",
        "principal_type": "identity_center_user", "principal_name": "alice@example.com",
        "principal_arn": "arn:aws:iam::111122223333:saml-provider/AWSSSO_0a1b2c3d4e5f6a7b_DO_NOT_DELETE",
        "principal_account_id": "111122223333", "source_identity": null,
        "role_chain": ["arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/us-east-1/AWSReservedSSO_AdministratorAccess_0123456789abcdef"],
        "attribution_method": "access_key", "attribution_status": "resolved",
        "parse_status": "ok", "raw_message": null,
    });
    for (k, v) in expect.as_object().unwrap() {
        assert_eq!(&rb[k], v, "column {k}");
    }
    assert_eq!(
        rb["user_extra"]["sessionName"],
        json!(["alice@example.com"])
    );
    assert_eq!(
        rb["user_extra"]["sigs.k8s.io/aws-iam-authenticator/principalId"],
        json!(["AROAEXAMPLEROLEID0001"])
    );
    assert_eq!(
        rb["annotations"]["authorization.k8s.io/decision"],
        json!("allow")
    );
    let body: Value = serde_json::from_str(rb["request_object"].as_str().unwrap()).unwrap();
    assert_eq!(body["roleRef"]["name"], "edit");
    assert!(rb["_object"]
        .as_str()
        .unwrap()
        .starts_with("eks_audit/dt=2024-11-26/111122223333/prod-east/part-"));

    // anonymous probe: region from extractedFields
    let east: Vec<Value> = ok_rows
        .iter()
        .filter(|r| r["cluster"] == "prod-east")
        .cloned()
        .collect();
    let hz = find(&east, "audit_id", "0e6d1c55-94aa-4e0f-8e0c-b0f7d0a3c2d4");
    assert_eq!(hz["region"], "eu-west-1");
    assert_eq!(hz["principal_type"], "anonymous");
    assert_eq!(hz["attribution_status"], "not_applicable");
    assert_eq!(hz["source_ip"], "10.0.12.7");

    // service account with impersonation, forbidden
    let sa = find(&rows, "audit_id", "0b6a8d1e-2c3f-4a5b-9c8d-7e6f5a4b3c2d");
    assert_eq!(sa["principal_type"], "k8s_service_account");
    assert_eq!(sa["principal_name"], "ci:deployer");
    assert_eq!(sa["impersonated_username"], "payments-operator");
    assert_eq!(sa["impersonated_groups"], json!(["payments-ops"]));
    assert_eq!(sa["response_code"], 403);
    assert_eq!(sa["response_reason"], "Forbidden");
    assert_eq!(sa["authz_decision"], "forbid");
    assert_eq!(sa["aws_access_key_id"], Value::Null);

    // IAM user, event after midnight UTC: its own dt partition
    let iu = find(&rows, "audit_id", "aa11bb22-0000-4000-8000-000000000001");
    assert_eq!(iu["principal_type"], "iam_user");
    assert_eq!(iu["principal_name"], "jdoe");
    assert_eq!(iu["attribution_method"], "direct");
    assert!(iu["_object"]
        .as_str()
        .unwrap()
        .starts_with("eks_audit/dt=2024-11-27/"));

    // truncated: kept, fields recovered by pattern, attributed through the recovered key
    let tr = rows
        .iter()
        .find(|r| r["parse_status"] == "truncated")
        .unwrap();
    assert_eq!(tr["audit_id"], "7f3c2a1e-5b8d-4c1a-9e2f-0a1b2c3d4e5f");
    assert_eq!(tr["verb"], "create");
    assert_eq!(tr["cluster"], "prod-west");
    assert_eq!(tr["cwl_event_id"], "7001");
    assert!(tr["raw_message"]
        .as_str()
        .unwrap()
        .ends_with("[Truncated...]"));
    assert_eq!(tr["principal_name"], "alice@example.com");
    // invalid: kept with the raw message, event time from CloudWatch
    let inv = rows
        .iter()
        .find(|r| r["parse_status"] == "invalid" && r["cluster"] == "prod-west")
        .unwrap();
    assert_eq!(inv["raw_message"], "I1126 13:07:11.000000 not json");
    assert_eq!(inv["event_time"], 1732626431000i64);
    assert_eq!(inv["audit_id"], Value::Null);

    // hostile log group and owner: under _invalid_, original log group kept
    let bad = rows
        .iter()
        .find(|r| r["log_group"] == "/aws/eks/../../etc/cluster")
        .unwrap();
    assert_eq!(bad["cluster"], "_invalid_");
    assert_eq!(bad["account_id"], "12345");
    assert!(bad["_object"]
        .as_str()
        .unwrap()
        .starts_with("eks_audit/dt=2024-11-26/_invalid_/_invalid_/part-"));

    // sorted by event time within each file
    for (_, b) in table(&lake, "eks_audit") {
        let r = common::rows(&[(String::new(), b)]);
        let t: Vec<i64> = r
            .iter()
            .map(|x| x["event_time"].as_i64().unwrap())
            .collect();
        assert!(t.windows(2).all(|w| w[0] <= w[1]));
    }

    // sts_sessions: the SAML sign-in, expiration parsed from the locale string
    let sts = common::rows(&table(&lake, "sts_sessions"));
    assert_eq!(sts.len(), 1);
    let s = &sts[0];
    assert_eq!(s["event_name"], "AssumeRoleWithSAML");
    assert_eq!(s["access_key_id"], "ASIAEXAMPLETEMPKEY03");
    assert_eq!(s["saml_subject"], "alice@example.com");
    assert_eq!(s["expiration"], 1732654691000i64); // 2024-11-26T20:58:11Z
    assert_eq!(s["event_time"], 1732625891000i64);
    assert!(s["_object"]
        .as_str()
        .unwrap()
        .starts_with("sts_sessions/dt=2024-11-26/111122223333/part-"));
}

#[tokio::test]
async fn parquet_files_follow_the_storage_contract() {
    use parquet::basic::Compression;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let (ev, _) = fixture();
    let (h, lake, _) = handler(HandlerConfig::default());
    h.handle_firehose(&ev, now()).await.unwrap();
    for k in lake.keys().into_iter().filter(|k| k.ends_with(".parquet")) {
        let r = SerializedFileReader::new(bytes::Bytes::from(lake.object(&k).unwrap())).unwrap();
        let md = r.metadata();
        let schema = md.file_metadata().schema_descr();
        assert!(
            schema.columns().iter().all(|c| c.path().parts()[0] != "dt"),
            "{k}: dt inside the file"
        );
        for rg in md.row_groups() {
            assert!(
                rg.sorting_columns().is_some(),
                "{k}: sorting columns not recorded"
            );
            for c in rg.columns() {
                assert!(
                    matches!(c.compression(), Compression::ZSTD(_)),
                    "{k}: {:?}",
                    c.compression()
                );
                assert!(
                    c.statistics().is_some(),
                    "{k}: no statistics for {}",
                    c.column_path()
                );
            }
        }
        let ts = schema
            .columns()
            .iter()
            .find(|c| c.name() == "event_time")
            .unwrap();
        let lt = format!("{:?}", ts.logical_type_ref());
        assert!(
            lt.contains("is_adjusted_to_u_t_c: true") && lt.contains("MILLIS"),
            "{lt}"
        );
    }
}

#[tokio::test]
async fn a_retried_batch_overwrites_instead_of_duplicating() {
    let (ev, _) = fixture();
    let (h, lake, _) = handler(HandlerConfig::default());
    let (_, first) = h.handle_firehose(&ev, now()).await.unwrap();
    let keys = lake.keys();
    let (_, second) = h.handle_firehose(&ev, now() + 60_000).await.unwrap();
    assert_eq!(first.objects, second.objects);
    assert_eq!(lake.keys(), keys);
    assert_eq!(rows(&table(&lake, "eks_audit")).len(), 7);
}

#[tokio::test]
async fn raw_archive_off_drops_processed_records() {
    let (ev, _) = fixture();
    let (h, _, _) = handler(HandlerConfig {
        raw_archive: false,
        ..HandlerConfig::default()
    });
    let (resp, out) = h.handle_firehose(&ev, now()).await.unwrap();
    let results: Vec<RecordResult> = resp.records.iter().map(|r| r.result).collect();
    assert_eq!(
        results
            .iter()
            .filter(|r| **r == RecordResult::Dropped)
            .count(),
        5
    );
    assert_eq!(
        results
            .iter()
            .filter(|r| **r == RecordResult::ProcessingFailed)
            .count(),
        5
    );
    assert!(resp
        .records
        .iter()
        .filter(|r| r.result == RecordResult::Dropped)
        .all(|r| r.data.is_empty()));
    assert_eq!(out.metrics.events_written, 7);
}

#[tokio::test]
async fn a_failed_write_fails_the_invocation_so_firehose_retries() {
    let (ev, _) = fixture();
    let (h, lake, _) = handler(HandlerConfig::default());
    lake.fail_puts
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let err = h.handle_firehose(&ev, now()).await.unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert!(lake.keys().is_empty());
}

#[tokio::test]
async fn base64_garbage_fails_only_its_record() {
    let (mut ev, _) = fixture();
    ev.records[0].data = "%%%not base64%%%".into();
    let (h, _, _) = handler(HandlerConfig::default());
    let (resp, out) = h.handle_firehose(&ev, now()).await.unwrap();
    assert_eq!(resp.records[0].result, RecordResult::ProcessingFailed);
    assert_eq!(resp.records[0].data, "%%%not base64%%%");
    assert_eq!(resp.records[7].result, RecordResult::Ok);
    assert_eq!(out.metrics.records_failed, 6);
    assert_eq!(out.metrics.records_ok, 3);
}
