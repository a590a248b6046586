//! Attribution, one test per identity class and per trap (DESIGN 5, issue #3).
//! Sessions are built from CloudTrail events in the wire format and parsed by the real
//! parser; identities by the real classifier.

use std::sync::Arc;

use serde_json::{json, Value};

use resolver::attribute::{AttributionMethod as M, AttributionStatus as S, PrincipalType as P};
use resolver::awsauth::AwsAuth;
use resolver::cloudtrail::{self, dedup, Parsed, StsSession};
use resolver::identity::{classify, AwsExtra, Identity};
use resolver::time::parse_rfc3339_ms;
use resolver::{Attribution, SessionIndex};

const A: &str = "111122223333";
const B: &str = "444455556666";
const C: &str = "777788889999";

fn ms(t: &str) -> i64 {
    parse_rfc3339_ms(t).unwrap()
}

fn session(v: Value) -> StsSession {
    match cloudtrail::parse_event(v.to_string().as_bytes()).unwrap() {
        Parsed::Sts(s) => *s,
        Parsed::Other => panic!("not an STS event: {v}"),
    }
}

fn base(name: &str, at: &str, recipient: &str, ui: Value, req: Value, resp: Value) -> Value {
    json!({"eventVersion": "1.08", "userIdentity": ui, "eventTime": at, "eventSource": "sts.amazonaws.com",
        "eventName": name, "awsRegion": "us-east-1", "requestParameters": req, "responseElements": resp,
        "requestID": format!("req-{at}-{recipient}"), "eventID": format!("ev-{name}-{at}-{recipient}-{}", ui["type"].as_str().unwrap_or("")),
        "recipientAccountId": recipient})
}

fn creds(key: &str, exp: &str) -> Value {
    json!({"accessKeyId": key, "sessionToken": "x", "expiration": exp})
}

fn iam_user(acct: &str, name: &str) -> Value {
    json!({"type": "IAMUser", "principalId": "AIDA1", "arn": format!("arn:aws:iam::{acct}:user/{name}"), "accountId": acct,
        "accessKeyId": format!("AKIA{name}"), "userName": name})
}

fn assumed(acct: &str, role: &str, sess: &str, key: &str, si: Option<&str>) -> Value {
    let mut v = json!({"type": "AssumedRole", "principalId": format!("AROA{role}:{sess}"), "arn": format!("arn:aws:sts::{acct}:assumed-role/{role}/{sess}"),
        "accountId": acct, "accessKeyId": key, "sessionContext": {"sessionIssuer": {"type": "Role", "arn": format!("arn:aws:iam::{acct}:role/{role}"), "userName": role}}});
    if let Some(si) = si {
        v["sessionContext"]["sourceIdentity"] = json!(si);
    }
    v
}

#[allow(clippy::too_many_arguments)]
fn assume_role(
    at: &str,
    exp: &str,
    recipient: &str,
    caller: Value,
    role_arn: &str,
    sess: &str,
    key: &str,
    si: Option<&str>,
) -> StsSession {
    let mut req = json!({"roleArn": role_arn, "roleSessionName": sess});
    let mut resp = json!({"credentials": creds(key, exp), "assumedRoleUser": {"assumedRoleId": format!("AROA:{sess}"),
        "arn": format!("arn:aws:sts::{}:assumed-role/{}/{sess}", role_arn.split(':').nth(4).unwrap(), role_arn.rsplit('/').next().unwrap())}});
    if let Some(si) = si {
        req["sourceIdentity"] = json!(si);
        resp["sourceIdentity"] = json!(si);
    }
    session(base("AssumeRole", at, recipient, caller, req, resp))
}

fn index(sessions: Vec<StsSession>) -> SessionIndex {
    let mut ix = SessionIndex::new();
    for s in sessions {
        ix.insert(Arc::new(s));
    }
    ix.finalize();
    ix
}

/// An audit event using `key`, naming (as aws-iam-authenticator logs it) the role of the
/// key's own session when the index holds it.
fn by_key(ix: &SessionIndex, key: &str, at: &str) -> Attribution<'static> {
    let arn = ix
        .get(key)
        .and_then(|s| {
            s.assumed_role_arn.clone().or_else(|| {
                let r = s.role_arn.as_deref()?;
                let acct = r.split(':').nth(4)?;
                Some(format!(
                    "arn:aws:sts::{acct}:assumed-role/{}/s",
                    r.rsplit('/').next()?
                ))
            })
        })
        .unwrap_or_else(|| "arn:aws:sts::111122223333:assumed-role/r/s".into());
    by_key_claiming(ix, key, &arn, at)
}

/// An audit event using `key` whose `extra.arn` says `arn`.
fn by_key_claiming(ix: &SessionIndex, key: &str, arn: &str, at: &str) -> Attribution<'static> {
    let extra = AwsExtra {
        access_key_id: Some(key),
        arn: Some(arn),
        ..Default::default()
    };
    let id = classify(Some(arn), false, &extra, None);
    into_static(ix.attribute(&id, None, ms(at)).into_owned())
}

fn by_username(
    ix: &SessionIndex,
    username: &str,
    at: &str,
    auth: Option<&AwsAuth>,
) -> Attribution<'static> {
    let extra = AwsExtra::default();
    let id = classify(Some(username), false, &extra, auth);
    into_static(ix.attribute(&id, Some(username), ms(at)).into_owned())
}

fn into_static(a: Attribution<'_>) -> Attribution<'static> {
    a.into_owned()
}

fn who<'a>(a: &'a Attribution<'_>) -> (P, Option<&'a str>, S, M) {
    (
        a.principal_type,
        a.principal_name.as_deref(),
        a.status,
        a.method,
    )
}

const T: &str = "2024-11-26T13:00:00Z";
const EXP: &str = "Nov 26, 2024, 2:00:00 PM";
const USE: &str = "2024-11-26T13:30:00Z";

#[test]
fn iam_user_through_an_assumed_role() {
    let s = assume_role(
        T,
        EXP,
        A,
        iam_user(A, "jdoe"),
        &format!("arn:aws:iam::{A}:role/ops"),
        "jdoe",
        "ASIAJDOE000000000001",
        None,
    );
    let ix = index(vec![s]);
    let a = by_key(&ix, "ASIAJDOE000000000001", USE);
    assert_eq!(
        who(&a),
        (P::IamUser, Some("jdoe"), S::Resolved, M::AccessKey)
    );
    assert_eq!(
        a.principal_arn.as_deref(),
        Some("arn:aws:iam::111122223333:user/jdoe")
    );
    assert_eq!(a.principal_account_id.as_deref(), Some(A));
    assert_eq!(a.role_chain, vec![format!("arn:aws:iam::{A}:role/ops")]);
}

#[test]
fn saml_identity_center_web_identity_root_service_and_federated_users() {
    let saml = |provider: &str, key: &str, subject: &str| {
        session(base(
            "AssumeRoleWithSAML",
            T,
            A,
            json!({"type": "SAMLUser", "principalId": format!("q:{subject}"), "userName": subject}),
            json!({"roleArn": format!("arn:aws:iam::{A}:role/aws-reserved/sso.amazonaws.com/us-east-1/AWSReservedSSO_Admin_0123"),
                   "roleSessionName": subject, "principalArn": format!("arn:aws:iam::{A}:saml-provider/{provider}")}),
            json!({"credentials": creds(key, EXP), "subject": subject, "assumedRoleUser": {"assumedRoleId": "AROA1:x", "arn": "arn:aws:sts::1:assumed-role/x/y"}}),
        ))
    };
    let web = session(base(
        "AssumeRoleWithWebIdentity",
        T,
        A,
        json!({"type": "WebIdentityUser", "userName": "repo:org/app:ref:refs/heads/main", "identityProvider": "token.actions.githubusercontent.com"}),
        json!({"roleArn": format!("arn:aws:iam::{A}:role/gha"), "roleSessionName": "GitHubActions"}),
        json!({"credentials": creds("ASIAWEB0000000000001", EXP), "subjectFromWebIdentityToken": "repo:org/app:ref:refs/heads/main",
               "provider": format!("arn:aws:iam::{A}:oidc-provider/token.actions.githubusercontent.com")}),
    ));
    let root = assume_role(
        T,
        EXP,
        A,
        json!({"type": "Root", "principalId": A, "arn": format!("arn:aws:iam::{A}:root"), "accountId": A}),
        &format!("arn:aws:iam::{A}:role/admin"),
        "root-sess",
        "ASIAROOT000000000001",
        None,
    );
    let svc = assume_role(
        T,
        EXP,
        A,
        json!({"type": "AWSService", "invokedBy": "ec2.amazonaws.com"}),
        &format!("arn:aws:iam::{A}:role/NodeRole"),
        "i-0123456789abcdef0",
        "ASIASVC0000000000001",
        None,
    );
    let fed = session(base(
        "GetFederationToken",
        T,
        A,
        iam_user(A, "broker"),
        json!({"name": "carol", "durationSeconds": 3600}),
        json!({"credentials": creds("ASIAFED0000000000001", EXP), "federatedUser": {"federatedUserId": format!("{A}:carol"), "arn": format!("arn:aws:sts::{A}:federated-user/carol")}}),
    ));
    let ix = index(vec![
        saml(
            "AWSSSO_0a1b2c3d_DO_NOT_DELETE",
            "ASIAIDC0000000000001",
            "alice@example.com",
        ),
        saml("Okta", "ASIAOKTA000000000001", "henry@example.com"),
        web,
        root,
        svc,
        fed,
    ]);
    let cases = [
        (
            "ASIAIDC0000000000001",
            P::IdentityCenterUser,
            Some("alice@example.com"),
            Some("arn:aws:iam::111122223333:saml-provider/AWSSSO_0a1b2c3d_DO_NOT_DELETE"),
        ),
        (
            "ASIAOKTA000000000001",
            P::SamlUser,
            Some("henry@example.com"),
            Some("arn:aws:iam::111122223333:saml-provider/Okta"),
        ),
        (
            "ASIAWEB0000000000001",
            P::WebIdentity,
            Some("repo:org/app:ref:refs/heads/main"),
            Some("arn:aws:iam::111122223333:oidc-provider/token.actions.githubusercontent.com"),
        ),
        (
            "ASIAROOT000000000001",
            P::Root,
            Some("root"),
            Some("arn:aws:iam::111122223333:root"),
        ),
        (
            // an instance profile session: the instance is the principal (issue #11)
            "ASIASVC0000000000001",
            P::Ec2Instance,
            Some("i-0123456789abcdef0"),
            None,
        ),
        (
            "ASIAFED0000000000001",
            P::FederatedUser,
            Some("carol"),
            Some("arn:aws:sts::111122223333:federated-user/carol"),
        ),
    ];
    for (key, t, name, arn) in cases {
        let a = by_key(&ix, key, USE);
        assert_eq!(who(&a), (t, name, S::Resolved, M::AccessKey), "{key}");
        assert_eq!(a.principal_arn.as_deref(), arn, "{key}");
    }
    // GetFederationToken assumes no role: the chain is empty
    assert!(by_key(&ix, "ASIAFED0000000000001", USE)
        .role_chain
        .is_empty());
    // the SAML role keeps its IAM path in the chain
    assert_eq!(
        by_key(&ix, "ASIAIDC0000000000001", USE).role_chain,
        vec!["arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/us-east-1/AWSReservedSSO_Admin_0123".to_string()]
    );
}

#[test]
fn a_chain_across_three_accounts_reaches_the_person_and_carries_source_identity() {
    // jdoe (IAM user in C) -> role in B -> role in A -> role in A again
    let s1 = assume_role(
        T,
        EXP,
        C,
        iam_user(C, "jdoe"),
        &format!("arn:aws:iam::{B}:role/jump"),
        "jdoe",
        "ASIAHOP1000000000001",
        Some("jdoe"),
    );
    let s2 = assume_role(
        "2024-11-26T13:01:00Z",
        EXP,
        B,
        assumed(B, "jump", "jdoe", "ASIAHOP1000000000001", Some("jdoe")),
        &format!("arn:aws:iam::{A}:role/path/to/eks-admin"),
        "jdoe-admin",
        "ASIAHOP2000000000002",
        Some("jdoe"),
    );
    let s3 = assume_role(
        "2024-11-26T13:02:00Z",
        EXP,
        A,
        assumed(
            A,
            "eks-admin",
            "jdoe-admin",
            "ASIAHOP2000000000002",
            Some("jdoe"),
        ),
        &format!("arn:aws:iam::{A}:role/breakglass"),
        "EKSGetTokenAuth",
        "ASIAHOP3000000000003",
        None,
    );
    let ix = index(vec![s3, s1, s2]);
    let a = by_key(&ix, "ASIAHOP3000000000003", USE);
    assert_eq!(
        who(&a),
        (P::IamUser, Some("jdoe"), S::Resolved, M::AccessKey)
    );
    assert_eq!(a.principal_account_id.as_deref(), Some(C));
    assert_eq!(a.source_identity.as_deref(), Some("jdoe"));
    assert_eq!(
        a.role_chain,
        vec![
            format!("arn:aws:iam::{B}:role/jump"),
            format!("arn:aws:iam::{A}:role/path/to/eks-admin"),
            format!("arn:aws:iam::{A}:role/breakglass"),
        ]
    );
    // a missing middle link: the chain cannot be finished, so nobody is named
    let ix = index(vec![assume_role(
        "2024-11-26T13:02:00Z",
        EXP,
        A,
        assumed(A, "eks-admin", "x", "ASIAHOP2000000000002", None),
        &format!("arn:aws:iam::{A}:role/breakglass"),
        "s",
        "ASIAHOP3000000000003",
        None,
    )]);
    assert_eq!(
        ix.missing_link("ASIAHOP3000000000003").as_deref(),
        Some("ASIAHOP2000000000002")
    );
    let a = by_key(&ix, "ASIAHOP3000000000003", USE);
    assert_eq!(who(&a), (P::AssumedRole, None, S::Pending, M::AccessKey));
}

#[test]
fn eksgettokenauth_shared_by_two_people_resolves_by_key_and_is_ambiguous_by_name() {
    let role = format!("arn:aws:iam::{A}:role/platform");
    let f = assume_role(
        T,
        EXP,
        A,
        iam_user(A, "frank"),
        &role,
        "EKSGetTokenAuth",
        "ASIAFRANK00000000001",
        None,
    );
    let g = assume_role(
        "2024-11-26T13:05:00Z",
        EXP,
        A,
        iam_user(A, "grace"),
        &role,
        "EKSGetTokenAuth",
        "ASIAGRACE00000000001",
        None,
    );
    let ix = index(vec![f, g]);
    assert_eq!(
        by_key(&ix, "ASIAFRANK00000000001", USE)
            .principal_name
            .as_deref(),
        Some("frank")
    );
    assert_eq!(
        by_key(&ix, "ASIAGRACE00000000001", USE)
            .principal_name
            .as_deref(),
        Some("grace")
    );
    let a = by_username(
        &ix,
        "arn:aws:sts::111122223333:assumed-role/platform/EKSGetTokenAuth",
        USE,
        None,
    );
    assert_eq!(
        who(&a),
        (P::AssumedRole, None, S::Ambiguous, M::SessionName)
    );
    // before grace's session existed only frank's was live: then the name is unique
    let a = by_username(
        &ix,
        "arn:aws:sts::111122223333:assumed-role/platform/EKSGetTokenAuth",
        "2024-11-26T12:59:30Z",
        None,
    );
    assert_eq!(
        who(&a),
        (P::IamUser, Some("frank"), S::Resolved, M::SessionName)
    );
}

#[test]
fn the_same_person_twice_by_name_is_not_ambiguous() {
    let role = format!("arn:aws:iam::{A}:role/ops");
    let s1 = assume_role(
        T,
        EXP,
        A,
        iam_user(A, "jdoe"),
        &role,
        "jdoe",
        "ASIAJD1",
        None,
    );
    let s2 = assume_role(
        "2024-11-26T13:10:00Z",
        EXP,
        A,
        iam_user(A, "jdoe"),
        &role,
        "jdoe",
        "ASIAJD2",
        None,
    );
    let ix = index(vec![s1, s2]);
    let a = by_username(
        &ix,
        "arn:aws:sts::111122223333:assumed-role/ops/jdoe",
        USE,
        None,
    );
    assert_eq!(
        who(&a),
        (P::IamUser, Some("jdoe"), S::Resolved, M::SessionName)
    );
}

#[test]
fn at_signs_in_identity_center_session_names() {
    let s = session(base(
        "AssumeRoleWithSAML",
        T,
        A,
        json!({"type": "SAMLUser", "userName": "alice@example.com"}),
        json!({"roleArn": format!("arn:aws:iam::{A}:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Dev_1"), "roleSessionName": "alice@example.com",
               "principalArn": format!("arn:aws:iam::{A}:saml-provider/AWSSSO_1_DO_NOT_DELETE")}),
        json!({"credentials": creds("ASIAALICE00000000001", "Nov 26, 2024, 9:00:00 PM"), "subject": "alice@example.com"}),
    ));
    // a different person whose raw session name differs only by '@' vs '-'
    let other = session(base(
        "AssumeRoleWithSAML",
        T,
        A,
        json!({"type": "SAMLUser", "userName": "alice-example.com"}),
        json!({"roleArn": format!("arn:aws:iam::{A}:role/AWSReservedSSO_Dev_1"), "roleSessionName": "alice-example.com",
               "principalArn": format!("arn:aws:iam::{A}:saml-provider/AWSSSO_1_DO_NOT_DELETE")}),
        json!({"credentials": creds("ASIAMALLORY000000001", "Nov 26, 2024, 9:00:00 PM"), "subject": "alice-example.com"}),
    ));
    let ix = index(vec![s, other]);
    // the username renders {{SessionName}} with '-': two sessions match -> never guess
    let u = "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Dev_1/alice-example.com";
    assert_eq!(by_username(&ix, u, USE, None).status, S::Ambiguous);
    // extra.sessionName carries the raw name: it narrows to alice (no key on this event)
    let extra = AwsExtra {
        session_name: Some("alice@example.com"),
        ..Default::default()
    };
    let id = classify(Some(u), false, &extra, None);
    let a = ix.attribute(&id, Some(u), ms(USE));
    assert_eq!(
        who(&a),
        (
            P::IdentityCenterUser,
            Some("alice@example.com"),
            S::Resolved,
            M::SessionName
        )
    );
}

#[test]
fn a_session_used_after_it_expired() {
    let role = format!("arn:aws:iam::{A}:role/ops");
    let s = assume_role(
        T,
        EXP,
        A,
        iam_user(A, "jdoe"),
        &role,
        "jdoe",
        "ASIAEXPIRED000000001",
        None,
    );
    let ix = index(vec![s]);
    // two hours after expiry: no live session has that name
    let late = "2024-11-26T16:00:00Z";
    let a = by_username(
        &ix,
        "arn:aws:sts::111122223333:assumed-role/ops/jdoe",
        late,
        None,
    );
    assert_eq!(who(&a), (P::AssumedRole, None, S::Pending, M::SessionName));
    // within the token's 15-minute validity after expiry it still matches
    let a = by_username(
        &ix,
        "arn:aws:sts::111122223333:assumed-role/ops/jdoe",
        "2024-11-26T14:10:00Z",
        None,
    );
    assert_eq!(a.status, S::Resolved);
    // the access key is proof regardless of the clock
    assert_eq!(
        by_key(&ix, "ASIAEXPIRED000000001", late)
            .principal_name
            .as_deref(),
        Some("jdoe")
    );
}

#[test]
fn a_failed_assume_role_issues_nothing() {
    let mut v = base(
        "AssumeRole",
        T,
        A,
        iam_user(A, "mallory"),
        json!({"roleArn": format!("arn:aws:iam::{A}:role/admin"), "roleSessionName": "m"}),
        json!({"credentials": creds("ASIAFAILED0000000001", EXP)}),
    );
    v["errorCode"] = json!("AccessDenied");
    let s = session(v);
    assert_eq!(s.error_code.as_deref(), Some("AccessDenied"));
    assert_eq!(s.access_key_id, None);
    assert!(!s.issued());
    let ix = index(vec![s]);
    assert!(ix.is_empty());
    assert_eq!(by_key(&ix, "ASIAFAILED0000000001", USE).status, S::Pending);
}

#[test]
fn cross_account_copies_are_deduplicated_preferring_the_caller_copy() {
    let role = format!("arn:aws:iam::{A}:role/eks-ops");
    let mut caller = base(
        "AssumeRole",
        T,
        C,
        iam_user(C, "jdoe"),
        json!({"roleArn": role, "roleSessionName": "jdoe"}),
        json!({"credentials": creds("ASIACROSS00000000001", EXP)}),
    );
    caller["sharedEventID"] = json!("shared-1");
    let mut owner = caller.clone();
    owner["recipientAccountId"] = json!(A);
    owner["eventID"] = json!("owner-copy");
    owner["userIdentity"] = json!({"type": "AWSAccount", "principalId": "AIDA1", "accountId": C});
    let (caller, owner) = (session(caller), session(owner));
    assert!(owner.is_owner_copy() && !caller.is_owner_copy());

    let kept = dedup(vec![owner.clone(), caller.clone(), caller.clone()]);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].caller_type.as_deref(), Some("IAMUser"));
    assert_eq!(kept[0].account(), Some(C));

    // only the owner copy known: the caller is just "an account" -> pending
    let ix = index(vec![owner.clone()]);
    assert_eq!(by_key(&ix, "ASIACROSS00000000001", USE).status, S::Pending);
    // the caller copy replaces it; a later owner copy never replaces the caller copy
    let mut ix = SessionIndex::new();
    assert!(ix.insert(Arc::new(owner.clone())));
    assert!(ix.insert(Arc::new(caller)));
    assert!(!ix.insert(Arc::new(owner)));
    ix.finalize();
    assert_eq!(
        by_key(&ix, "ASIACROSS00000000001", USE)
            .principal_name
            .as_deref(),
        Some("jdoe")
    );
}

#[test]
fn crafted_cycles_terminate_without_naming_anyone() {
    let s1 = assume_role(
        T,
        EXP,
        A,
        assumed(A, "r2", "s", "ASIACYCLE2", None),
        &format!("arn:aws:iam::{A}:role/r1"),
        "s",
        "ASIACYCLE1",
        None,
    );
    let s2 = assume_role(
        T,
        EXP,
        A,
        assumed(A, "r1", "s", "ASIACYCLE1", None),
        &format!("arn:aws:iam::{A}:role/r2"),
        "s",
        "ASIACYCLE2",
        None,
    );
    let ix = index(vec![s1, s2]);
    assert_eq!(ix.missing_link("ASIACYCLE1"), None);
    let a = by_key(&ix, "ASIACYCLE1", USE);
    assert_eq!(who(&a), (P::AssumedRole, None, S::Pending, M::AccessKey));
}

#[test]
fn templated_usernames_reverse_through_aws_auth() {
    let auth = AwsAuth::parse(
        "- rolearn: arn:aws:iam::111122223333:role/staff\n  username: role:{{AccountID}}:staff:{{SessionName}}\n\
         - rolearn: arn:aws:iam::111122223333:role/ci\n  username: ci:{{AccessKeyID}}\n",
        "test",
    )
    .unwrap();
    let staff = session(base(
        "AssumeRoleWithSAML",
        T,
        A,
        json!({"type": "SAMLUser", "userName": "henry@example.com"}),
        json!({"roleArn": format!("arn:aws:iam::{A}:role/staff"), "roleSessionName": "henry@example.com", "principalArn": format!("arn:aws:iam::{A}:saml-provider/Okta")}),
        json!({"credentials": creds("ASIAHENRY00000000001", "Nov 26, 2024, 9:00:00 PM"), "subject": "henry@example.com"}),
    ));
    let ci = assume_role(
        T,
        EXP,
        A,
        iam_user(A, "builder"),
        &format!("arn:aws:iam::{A}:role/ci"),
        "build-42",
        "ASIACIKEY0000000001",
        None,
    );
    let ix = index(vec![staff, ci]);
    let a = by_username(
        &ix,
        "role:111122223333:staff:henry-example.com",
        USE,
        Some(&auth),
    );
    assert_eq!(
        who(&a),
        (
            P::SamlUser,
            Some("henry@example.com"),
            S::Resolved,
            M::SessionName
        )
    );
    let a = by_username(&ix, "ci:ASIACIKEY0000000001", USE, Some(&auth));
    assert_eq!(
        who(&a),
        (P::IamUser, Some("builder"), S::Resolved, M::AccessKey)
    );
    // without the mapping the username means nothing
    let a = by_username(&ix, "role:111122223333:staff:henry-example.com", USE, None);
    assert_eq!(a.principal_type, P::Unknown);
    assert_eq!(a.status, S::NotApplicable);
    // a name nobody used
    assert_eq!(
        by_username(&ix, "role:111122223333:staff:nobody", USE, Some(&auth)).status,
        S::Pending
    );
}

#[test]
fn kubernetes_and_direct_identities() {
    let ix = index(vec![]);
    let c = |u: &str, groups_unauth: bool| {
        let id = classify(Some(u), groups_unauth, &AwsExtra::default(), None);
        let a = ix.attribute(&id, Some(u), 0);
        (
            a.principal_type,
            a.principal_name.as_deref().map(str::to_string),
            a.status,
            a.method,
        )
    };
    assert_eq!(
        c("system:anonymous", true),
        (
            P::Anonymous,
            Some("system:anonymous".into()),
            S::NotApplicable,
            M::None
        )
    );
    assert_eq!(
        c("system:serviceaccount:ci:deployer", false),
        (
            P::K8sServiceAccount,
            Some("ci:deployer".into()),
            S::NotApplicable,
            M::None
        )
    );
    assert_eq!(
        c("system:node:ip-10-0-0-1", false),
        (
            P::K8sSystem,
            Some("system:node:ip-10-0-0-1".into()),
            S::NotApplicable,
            M::None
        )
    );
    assert_eq!(
        c("arn:aws:iam::111122223333:user/jdoe", false),
        (P::IamUser, Some("jdoe".into()), S::Resolved, M::Direct)
    );
    assert_eq!(
        c("arn:aws:iam::111122223333:root", false),
        (P::Root, Some("root".into()), S::Resolved, M::Direct)
    );
}

/// Property: for any access key the index has no record of, attribution never names a
/// principal, whatever else the index holds. (Deterministic pseudo-random cases.)
#[test]
fn never_names_a_principal_for_an_unknown_key() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..200 {
        let n = (next() % 8) as usize;
        let mut known: Vec<String> = Vec::new();
        let mut sessions = Vec::new();
        for i in 0..n {
            let key = format!("ASIAK{round:04}{i:02}{:08X}", next() as u32);
            let caller = if i > 0 && next() % 2 == 0 {
                assumed(A, "r", "s", &known[(next() as usize) % known.len()], None)
            } else {
                iam_user(A, &format!("u{i}"))
            };
            sessions.push(assume_role(
                T,
                EXP,
                A,
                caller,
                &format!("arn:aws:iam::{A}:role/r{i}"),
                "s",
                &key,
                None,
            ));
            known.push(key);
        }
        let ix = index(sessions);
        for _ in 0..10 {
            let unknown = format!("ASIAU{:016X}", next());
            assert!(ix.get(&unknown).is_none());
            let a = by_key(&ix, &unknown, USE);
            assert_eq!(a.status, S::Pending, "{unknown}");
            assert!(
                a.principal_name.is_none()
                    && a.principal_arn.is_none()
                    && a.principal_account_id.is_none()
            );
            assert!(a.role_chain.is_empty());
        }
        for k in &known {
            let a = by_key(&ix, k, USE);
            assert_eq!(a.status, S::Resolved);
            assert!(a.principal_name.as_deref().unwrap().starts_with('u'));
        }
    }
}

#[test]
fn cloudtrail_log_files_and_non_sts_events() {
    let file = json!({"Records": [
        base("AssumeRole", T, A, iam_user(A, "jdoe"), json!({"roleArn": format!("arn:aws:iam::{A}:role/x"), "roleSessionName": "s"}),
            json!({"credentials": creds("ASIAFILE0000000001", "Jan 22, 2021 12:46:28 AM")})),
        {"eventSource": "s3.amazonaws.com", "eventName": "GetObject", "eventTime": T},
        {"eventSource": "sts.amazonaws.com", "eventName": "GetCallerIdentity", "eventTime": T},
    ]});
    let s = cloudtrail::parse_log_file(file.to_string().as_bytes()).unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].expiration_ms, Some(ms("2021-01-22T00:46:28Z")));
    assert!(matches!(
        cloudtrail::parse_event(b"{\"eventSource\":\"ec2.amazonaws.com\"}"),
        Ok(Parsed::Other)
    ));
    assert!(cloudtrail::parse_event(b"not json").is_err());
    let mut missing_time = base("AssumeRole", T, A, iam_user(A, "x"), json!({}), json!({}));
    missing_time.as_object_mut().unwrap().remove("eventTime");
    assert!(cloudtrail::parse_event(missing_time.to_string().as_bytes()).is_err());
    let _: Option<Identity> = None;
}

#[test]
fn a_key_resolves_only_to_a_session_of_the_role_the_event_names() {
    let alice = assume_role(
        T,
        EXP,
        "111122223333",
        iam_user("111122223333", "alice"),
        "arn:aws:iam::111122223333:role/path/ops",
        "alice",
        "ASIAALICE",
        None,
    );
    let ix = index(vec![alice]);
    // the event names the key's own role (the ARN without path, any case): alice
    for arn in [
        "arn:aws:sts::111122223333:assumed-role/ops/alice",
        "arn:aws:sts::111122223333:assumed-role/OPS/other-session",
    ] {
        let a = by_key_claiming(&ix, "ASIAALICE", arn, USE);
        assert_eq!(
            who(&a),
            (P::IamUser, Some("alice"), S::Resolved, M::AccessKey),
            "{arn}"
        );
    }
    // another role, the same role in another account, a federated user: never alice
    for arn in [
        "arn:aws:sts::111122223333:assumed-role/admin/alice",
        "arn:aws:sts::444455556666:assumed-role/ops/alice",
        "arn:aws:sts::111122223333:federated-user/ops",
    ] {
        let a = by_key_claiming(&ix, "ASIAALICE", arn, USE);
        assert_eq!(
            who(&a),
            (P::AssumedRole, None, S::Conflict, M::AccessKey),
            "{arn}"
        );
        assert!(a.role_chain.is_empty() && a.principal_arn.is_none());
    }
    // canonicalArn is checked too, even when arn agrees
    let extra = AwsExtra {
        access_key_id: Some("ASIAALICE"),
        arn: Some("arn:aws:sts::111122223333:assumed-role/ops/alice"),
        canonical_arn: Some("arn:aws:iam::111122223333:role/admin"),
        ..Default::default()
    };
    let id = classify(extra.arn, false, &extra, None);
    assert_eq!(ix.attribute(&id, None, ms(USE)).status, S::Conflict);
    // a key the index does not know stays pending, whatever the event claims
    let a = by_key_claiming(&ix, "ASIAUNKNOWN", "arn:aws:sts::1:assumed-role/x/y", USE);
    assert_eq!(a.status, S::Pending);
}
