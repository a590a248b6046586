//! Workloads as principals (issue #11): each identity class from its CloudTrail record
//! as AWS writes it, parsed by the real parser, attributed by key and (where the
//! cluster logs no key) by session name, with and without a role chained after the
//! workload's own session.
//!
//! Shapes: EKS Pod Identity's `AssumeRole` (caller `AWSService`/`invokedBy`
//! `pods.eks.amazonaws.com`, the six documented session tags in `requestParameters.tags`);
//! IRSA's `AssumeRoleWithWebIdentity` (provider = the cluster's `oidc-provider` ARN,
//! subject `system:serviceaccount:<ns>:<sa>`); EC2, Lambda and ECS `AssumeRole` made by
//! the service principal with the instance id / function name / task id as session name;
//! `userIdentity.onBehalfOf` for Identity Center trusted identity propagation.

use std::sync::Arc;

use serde_json::{json, Value};

use resolver::attribute::{AttributionMethod as M, AttributionStatus as S, PrincipalType as P};
use resolver::awsauth::AwsAuth;
use resolver::cloudtrail::{self, Parsed, StsSession};
use resolver::identity::{classify, AwsExtra};
use resolver::time::parse_rfc3339_ms;
use resolver::workload::IssuerClusters;
use resolver::{Attribution, SessionIndex};

const A: &str = "111122223333";
const B: &str = "444455556666";
const ISSUER: &str = "EXAMPLED539D4633E53DE1B71EXAMPLE";

fn ms(t: &str) -> i64 {
    parse_rfc3339_ms(t).unwrap()
}

fn parse(v: Value) -> StsSession {
    match cloudtrail::parse_event(v.to_string().as_bytes()).unwrap() {
        Parsed::Sts(s) => *s,
        Parsed::Other => panic!("not an STS event: {v}"),
    }
}

fn record(name: &str, id: &str, at: &str, ui: Value, req: Value, resp: Value) -> Value {
    json!({"eventVersion": "1.08", "userIdentity": ui, "eventTime": at, "eventSource": "sts.amazonaws.com",
        "eventName": name, "awsRegion": "us-east-1", "sourceIPAddress": ui["invokedBy"].as_str().unwrap_or("198.51.100.1"),
        "requestParameters": req, "responseElements": resp, "requestID": format!("req-{id}"), "eventID": id,
        "readOnly": true, "eventType": "AwsApiCall", "managementEvent": true, "recipientAccountId": A})
}

fn issued(key: &str, account: &str, role: &str, session: &str) -> Value {
    json!({"credentials": {"accessKeyId": key, "sessionToken": "x", "expiration": "Nov 26, 2024, 6:00:00 PM"},
        "assumedRoleUser": {"assumedRoleId": format!("AROAEXAMPLE:{session}"), "arn": format!("arn:aws:sts::{account}:assumed-role/{role}/{session}")}})
}

/// `AssumeRole` made by an AWS service (`invokedBy`), with optional session tags.
fn service_assume(
    service: &str,
    key: &str,
    role: &str,
    session: &str,
    tags: &[(&str, &str)],
) -> StsSession {
    let mut req = json!({"roleArn": format!("arn:aws:iam::{A}:role/{role}"), "roleSessionName": session, "durationSeconds": 21600});
    if !tags.is_empty() {
        req["tags"] = tags
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        req["transitiveTagKeys"] = tags.iter().map(|(k, _)| json!(k)).collect();
    }
    parse(record(
        "AssumeRole",
        &format!("ev-{key}"),
        "2024-11-26T12:00:00Z",
        json!({"type": "AWSService", "invokedBy": service}),
        req,
        issued(key, A, role, session),
    ))
}

fn pod_identity_tags() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "eks-cluster-arn",
            "arn:aws:eks:us-west-2:111122223333:cluster/prod-west",
        ),
        ("eks-cluster-name", "prod-west"),
        ("kubernetes-namespace", "platform"),
        ("kubernetes-service-account", "fleet-operator"),
        ("kubernetes-pod-name", "fleet-operator-7c9d8b6f4-x2k4q"),
        ("kubernetes-pod-uid", "8d2c6f1e-3a4b-4c5d-9e8f-7a6b5c4d3e2f"),
    ]
}

fn irsa(key: &str, subject: &str, provider_host: &str) -> StsSession {
    let provider = format!("arn:aws:iam::{A}:oidc-provider/{provider_host}");
    parse(record(
        "AssumeRoleWithWebIdentity",
        &format!("ev-{key}"),
        "2024-11-26T12:00:00Z",
        json!({"type": "WebIdentityUser", "principalId": format!("{provider}:sts.amazonaws.com:{subject}"), "userName": subject, "identityProvider": provider}),
        json!({"roleArn": format!("arn:aws:iam::{A}:role/release-runner"), "roleSessionName": "botocore-session-1732622400"}),
        {
            let mut r = issued(key, A, "release-runner", "botocore-session-1732622400");
            r["subjectFromWebIdentityToken"] = json!(subject);
            r["provider"] = json!(provider);
            r["audience"] = json!("sts.amazonaws.com");
            r
        },
    ))
}

/// A role chained from `caller_key`'s session (role `caller_role` in A) into B.
fn chained(
    caller_key: &str,
    caller_role: &str,
    caller_session: &str,
    key: &str,
    role: &str,
) -> StsSession {
    parse(record(
        "AssumeRole",
        &format!("ev-{key}"),
        "2024-11-26T12:01:00Z",
        json!({"type": "AssumedRole", "principalId": format!("AROAX:{caller_session}"), "arn": format!("arn:aws:sts::{A}:assumed-role/{caller_role}/{caller_session}"),
            "accountId": A, "accessKeyId": caller_key, "sessionContext": {"sessionIssuer": {"type": "Role", "arn": format!("arn:aws:iam::{A}:role/{caller_role}"), "userName": caller_role}}}),
        json!({"roleArn": format!("arn:aws:iam::{B}:role/{role}"), "roleSessionName": "hop"}),
        issued(key, B, role, "hop"),
    ))
}

fn index(sessions: Vec<StsSession>, issuers: IssuerClusters) -> SessionIndex {
    let mut ix = SessionIndex::with_issuers(Arc::new(issuers));
    for s in sessions {
        ix.insert(Arc::new(s));
    }
    ix.finalize();
    ix
}

/// An audit event of a current cluster: the key and the session's ARN in `extra`.
fn by_key(ix: &SessionIndex, key: &str) -> Attribution<'static> {
    let s = ix.get(key).expect("indexed");
    let arn = s.assumed_role_arn.clone().unwrap();
    let extra = AwsExtra {
        access_key_id: Some(key),
        arn: Some(&arn),
        ..Default::default()
    };
    let id = classify(Some(&arn), false, &extra, None);
    ix.attribute(&id, None, ms("2024-11-26T12:30:00Z"))
        .into_owned()
        .into_owned()
}

/// An audit event without `extra`: only the (access entry or aws-auth) username.
fn by_username(ix: &SessionIndex, username: &str, auth: Option<&AwsAuth>) -> Attribution<'static> {
    let id = classify(Some(username), false, &AwsExtra::default(), auth);
    ix.attribute(&id, Some(username), ms("2024-11-26T12:30:00Z"))
        .into_owned()
        .into_owned()
}

fn who<'a>(a: &'a Attribution<'_>) -> (P, Option<&'a str>, Option<&'a str>, Option<&'a str>, S) {
    (
        a.principal_type,
        a.principal_name.as_deref(),
        a.principal_cluster.as_deref(),
        a.principal_pod.as_deref(),
        a.status,
    )
}

#[test]
fn pod_identity_names_the_pod_and_its_cluster_through_a_chain() {
    let pod = service_assume(
        "pods.eks.amazonaws.com",
        "ASIAPODIDENTITY00001",
        "fleet-operator",
        "eks-prod-west-fleet-oper-5f0c2d8e",
        &pod_identity_tags(),
    );
    assert_eq!(pod.tag("kubernetes-namespace"), Some("platform"));
    assert_eq!(pod.session_tags.len(), 6);
    let hop = chained(
        "ASIAPODIDENTITY00001",
        "fleet-operator",
        "eks-prod-west-fleet-oper-5f0c2d8e",
        "ASIAPODCHAINED000001",
        "eks-admin",
    );
    let ix = index(vec![pod, hop], IssuerClusters::default());
    for key in ["ASIAPODIDENTITY00001", "ASIAPODCHAINED000001"] {
        let a = by_key(&ix, key);
        assert_eq!(
            who(&a),
            (
                P::K8sWorkload,
                Some("platform:fleet-operator"),
                Some("prod-west"),
                Some("fleet-operator-7c9d8b6f4-x2k4q"),
                S::Resolved
            ),
            "{key}"
        );
        assert_eq!(
            a.principal_arn.as_deref(),
            Some("arn:aws:eks:us-west-2:111122223333:cluster/prod-west")
        );
        assert_eq!(a.principal_account_id.as_deref(), Some(A));
        assert_eq!(a.method, M::AccessKey);
    }
    let a = by_key(&ix, "ASIAPODCHAINED000001");
    assert_eq!(
        a.role_chain,
        vec![
            format!("arn:aws:iam::{A}:role/fleet-operator"),
            format!("arn:aws:iam::{B}:role/eks-admin")
        ]
    );
}

#[test]
fn pod_identity_without_tags_or_with_bad_ones_stays_the_service() {
    // disableSessionTags: the association sets no tags
    let bare = service_assume(
        "pods.eks.amazonaws.com",
        "ASIAPODNOTAGS0000001",
        "fleet-operator",
        "eks-x-y",
        &[],
    );
    let mut bad_tags = pod_identity_tags();
    bad_tags[2] = ("kubernetes-namespace", "Not A Namespace");
    let bad = service_assume(
        "pods.eks.amazonaws.com",
        "ASIAPODBADTAGS000001",
        "fleet-operator",
        "eks-x-z",
        &bad_tags,
    );
    let ix = index(vec![bare, bad], IssuerClusters::default());
    for key in ["ASIAPODNOTAGS0000001", "ASIAPODBADTAGS000001"] {
        let a = by_key(&ix, key);
        assert_eq!(
            who(&a),
            (
                P::AwsService,
                Some("pods.eks.amazonaws.com"),
                None,
                None,
                S::Resolved
            ),
            "{key}"
        );
    }
}

#[test]
fn irsa_names_the_service_account_and_maps_the_issuer_to_a_cluster() {
    let host = format!("oidc.eks.us-east-1.amazonaws.com/id/{ISSUER}");
    let s = irsa(
        "ASIAIRSA000000000001",
        "system:serviceaccount:ci:release-runner",
        &host,
    );
    let hop = chained(
        "ASIAIRSA000000000001",
        "release-runner",
        "botocore-session-1732622400",
        "ASIAIRSACHAINED00001",
        "release-deployer",
    );
    let unmapped = index(vec![s.clone(), hop.clone()], IssuerClusters::default());
    let mapped = index(
        vec![s, hop],
        IssuerClusters::parse(&format!("{}=ci-tools", ISSUER.to_lowercase())).unwrap(),
    );
    for key in ["ASIAIRSA000000000001", "ASIAIRSACHAINED00001"] {
        let a = by_key(&unmapped, key);
        assert_eq!(
            who(&a),
            (
                P::K8sWorkload,
                Some("ci:release-runner"),
                None,
                None,
                S::Resolved
            )
        );
        assert_eq!(
            a.principal_arn.as_deref(),
            Some(format!("arn:aws:iam::{A}:oidc-provider/{host}").as_str())
        );
        let a = by_key(&mapped, key);
        assert_eq!(
            who(&a),
            (
                P::K8sWorkload,
                Some("ci:release-runner"),
                Some("ci-tools"),
                None,
                S::Resolved
            )
        );
    }
    assert_eq!(by_key(&mapped, "ASIAIRSACHAINED00001").role_chain.len(), 2);
}

#[test]
fn web_identity_that_is_not_irsa_stays_web_identity() {
    // GitHub Actions, and an EKS-looking subject from a non-EKS issuer
    let gh = irsa(
        "ASIAGITHUB0000000001",
        "repo:org/app:ref:refs/heads/main",
        "token.actions.githubusercontent.com",
    );
    let fake = irsa(
        "ASIAFAKEEKS000000001",
        "system:serviceaccount:ci:release-runner",
        "oidc.example.com/id/ABC",
    );
    let ix = index(vec![gh, fake], IssuerClusters::default());
    assert_eq!(
        who(&by_key(&ix, "ASIAGITHUB0000000001")),
        (
            P::WebIdentity,
            Some("repo:org/app:ref:refs/heads/main"),
            None,
            None,
            S::Resolved
        )
    );
    assert_eq!(who(&by_key(&ix, "ASIAFAKEEKS000000001")).0, P::WebIdentity);
}

#[test]
fn instances_functions_and_tasks() {
    let ec2 = service_assume(
        "ec2.amazonaws.com",
        "ASIAEC2INSTANCE00001",
        "bastion-host",
        "i-0b7e3c9a1f2d4e6a8",
        &[],
    );
    let lambda = service_assume(
        "lambda.amazonaws.com",
        "ASIALAMBDA0000000001",
        "orders-fn-role",
        "orders-reconciler",
        &[],
    );
    let ecs = service_assume(
        "ecs-tasks.amazonaws.com",
        "ASIAECSTASK000000001",
        "task-role",
        "8f3e2d1c0b9a48e7a6b5c4d3e2f1a0b9",
        &[],
    );
    let other = service_assume(
        "codebuild.amazonaws.com",
        "ASIACODEBUILD0000001",
        "cb-role",
        "AWSCodeBuild-1234",
        &[],
    );
    let odd_ec2 = service_assume(
        "ec2.amazonaws.com",
        "ASIAEC2ODDNAME000001",
        "bastion-host",
        "not-an-instance",
        &[],
    );
    let hop = chained(
        "ASIAEC2INSTANCE00001",
        "bastion-host",
        "i-0b7e3c9a1f2d4e6a8",
        "ASIAEC2CHAINED000001",
        "eks-admin",
    );
    let ix = index(
        vec![ec2, lambda, ecs, other, odd_ec2, hop],
        IssuerClusters::default(),
    );
    let cases: [(&str, P, &str, Option<&str>); 6] = [
        (
            "ASIAEC2INSTANCE00001",
            P::Ec2Instance,
            "i-0b7e3c9a1f2d4e6a8",
            Some(A),
        ),
        // a role chained from the instance's session: still the instance
        (
            "ASIAEC2CHAINED000001",
            P::Ec2Instance,
            "i-0b7e3c9a1f2d4e6a8",
            Some(A),
        ),
        (
            "ASIALAMBDA0000000001",
            P::AwsService,
            "lambda:orders-reconciler",
            Some(A),
        ),
        (
            "ASIAECSTASK000000001",
            P::AwsService,
            "ecs:8f3e2d1c0b9a48e7a6b5c4d3e2f1a0b9",
            Some(A),
        ),
        // other services, and a session name that is not an instance id: the service
        (
            "ASIACODEBUILD0000001",
            P::AwsService,
            "codebuild.amazonaws.com",
            None,
        ),
        (
            "ASIAEC2ODDNAME000001",
            P::AwsService,
            "ec2.amazonaws.com",
            None,
        ),
    ];
    for (key, kind, name, account) in cases {
        let a = by_key(&ix, key);
        assert_eq!(
            (
                a.principal_type,
                a.principal_name.as_deref(),
                a.principal_account_id.as_deref()
            ),
            (kind, Some(name), account),
            "{key}"
        );
    }
}

#[test]
fn access_entry_usernames_attribute_with_and_without_extra() {
    // a workload session (Pod Identity) used through an access entry: the default
    // username arn:aws:sts::<acct>:assumed-role/<role>/{{SessionName}}, groups only
    // system:authenticated; with extra (key) and without (session name, '@' -> '-')
    let pod = service_assume(
        "pods.eks.amazonaws.com",
        "ASIAPODACCESSENTRY01",
        "fleet-operator",
        "eks-prod-west-fleet-oper-1",
        &pod_identity_tags(),
    );
    let person = parse(record(
        "AssumeRoleWithSAML",
        "ev-saml",
        "2024-11-26T12:00:00Z",
        json!({"type": "SAMLUser", "principalId": "x:alice@example.com", "userName": "alice@example.com", "identityProvider": "x"}),
        json!({"roleArn": format!("arn:aws:iam::{A}:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_1"), "roleSessionName": "alice@example.com",
            "principalArn": format!("arn:aws:iam::{A}:saml-provider/AWSSSO_abc_DO_NOT_DELETE")}),
        {
            let mut r = issued(
                "ASIAALICESSO00000001",
                A,
                "AWSReservedSSO_Admin_1",
                "alice@example.com",
            );
            r["subject"] = json!("alice@example.com");
            r
        },
    ));
    let ix = index(vec![pod, person], IssuerClusters::default());
    assert_eq!(
        who(&by_key(&ix, "ASIAPODACCESSENTRY01")).1,
        Some("platform:fleet-operator")
    );
    let a = by_username(
        &ix,
        "arn:aws:sts::111122223333:assumed-role/fleet-operator/eks-prod-west-fleet-oper-1",
        None,
    );
    assert_eq!(
        who(&a),
        (
            P::K8sWorkload,
            Some("platform:fleet-operator"),
            Some("prod-west"),
            Some("fleet-operator-7c9d8b6f4-x2k4q"),
            S::Resolved
        )
    );
    assert_eq!(a.method, M::SessionName);
    // path stripped from the role, '@' rendered as '-'
    let a = by_username(
        &ix,
        "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Admin_1/alice-example.com",
        None,
    );
    assert_eq!(
        (a.principal_type, a.principal_name.as_deref()),
        (P::IdentityCenterUser, Some("alice@example.com"))
    );
    // a custom access entry username with {{SessionNameRaw}} / {{AccessKeyID}}, given to
    // the resolver in aws-auth mapRoles form
    let auth = AwsAuth::parse(&format!("mapRoles: |\n  - rolearn: arn:aws:iam::{A}:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_1\n    username: sso:{{{{SessionNameRaw}}}}\n  - rolearn: arn:aws:iam::{A}:role/fleet-operator\n    username: fleet:{{{{AccessKeyID}}}}\n"), "test").unwrap();
    let a = by_username(&ix, "sso:alice@example.com", Some(&auth));
    assert_eq!(
        (a.principal_name.as_deref(), a.status),
        (Some("alice@example.com"), S::Resolved)
    );
    let a = by_username(&ix, "fleet:ASIAPODACCESSENTRY01", Some(&auth));
    assert_eq!(
        (a.principal_name.as_deref(), a.method),
        (Some("platform:fleet-operator"), M::AccessKey)
    );
}

#[test]
fn identity_center_on_behalf_of_is_kept_and_shown_with_the_person() {
    let ui = json!({"type": "AssumedRole", "principalId": "AROAEXAMPLE:alice", "arn": format!("arn:aws:sts::{A}:assumed-role/DataAnalyst/alice"),
        "accountId": A, "accessKeyId": "ASIACALLER0000000001",
        "sessionContext": {"sessionIssuer": {"type": "Role", "arn": format!("arn:aws:iam::{A}:role/DataAnalyst"), "userName": "DataAnalyst"}},
        "onBehalfOf": {"userId": "94482488-3041-7026-18f3-be45837cd0e4", "identityStoreArn": "arn:aws:identitystore::111122223333:identitystore/d-9067642ac7"}});
    let first = parse(record(
        "AssumeRoleWithSAML",
        "ev-first",
        "2024-11-26T11:59:00Z",
        json!({"type": "SAMLUser", "principalId": "x:alice@example.com", "userName": "alice@example.com", "identityProvider": "x"}),
        json!({"roleArn": format!("arn:aws:iam::{A}:role/DataAnalyst"), "roleSessionName": "alice", "principalArn": format!("arn:aws:iam::{A}:saml-provider/AWSSSO_abc_DO_NOT_DELETE")}),
        {
            let mut r = issued("ASIACALLER0000000001", A, "DataAnalyst", "alice");
            r["subject"] = json!("alice@example.com");
            r
        },
    ));
    let hop = parse(record(
        "AssumeRole",
        "ev-obo",
        "2024-11-26T12:00:00Z",
        ui,
        json!({"roleArn": format!("arn:aws:iam::{B}:role/eks-admin"), "roleSessionName": "alice"}),
        issued("ASIAONBEHALF00000001", B, "eks-admin", "alice"),
    ));
    assert_eq!(
        hop.on_behalf_of_user_id.as_deref(),
        Some("94482488-3041-7026-18f3-be45837cd0e4")
    );
    assert_eq!(
        hop.on_behalf_of_identity_store_arn.as_deref(),
        Some("arn:aws:identitystore::111122223333:identitystore/d-9067642ac7")
    );
    let ix = index(vec![first, hop], IssuerClusters::default());
    let a = by_key(&ix, "ASIAONBEHALF00000001");
    assert_eq!(
        (
            a.principal_type,
            a.principal_name.as_deref(),
            a.principal_user_id.as_deref()
        ),
        (
            P::IdentityCenterUser,
            Some("alice@example.com"),
            Some("94482488-3041-7026-18f3-be45837cd0e4")
        )
    );
    assert_eq!(by_key(&ix, "ASIACALLER0000000001").principal_user_id, None);
}

#[test]
fn session_tags_are_capped_and_survive_the_store_format() {
    let many: Vec<(String, String)> = (0..80).map(|i| (format!("k{i}"), "v".into())).collect();
    let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut s = service_assume(
        "pods.eks.amazonaws.com",
        "ASIAMANYTAGS00000001",
        "r",
        "s",
        &refs,
    );
    assert_eq!(s.session_tags.len(), resolver::cloudtrail::MAX_SESSION_TAGS);
    let long = "x".repeat(300);
    let s2 = service_assume(
        "pods.eks.amazonaws.com",
        "ASIALONGTAG000000001",
        "r",
        "s",
        &[("kubernetes-namespace", &long)],
    );
    assert!(s2.session_tags.is_empty());
    s.session_tags.truncate(2);
    let back: StsSession = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
    assert_eq!(back, s);
    // a session stored before tags existed still reads
    let mut old = serde_json::to_value(&s).unwrap();
    old.as_object_mut().unwrap().remove("session_tags");
    let back: StsSession = serde_json::from_value(old).unwrap();
    assert!(back.session_tags.is_empty());
}
