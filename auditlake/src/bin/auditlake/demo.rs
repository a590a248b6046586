//! `auditlake demo`: a generated organisation run through the real handler.
//!
//! Four accounts, four clusters, people signing in through IAM Identity Center, an
//! external SAML IdP, IAM users and GitHub Actions (web identity), role chains across
//! three accounts, controllers, nodes and health probes, and one incident:
//! dave binds `system:anonymous` to `cluster-admin`, secrets are then listed anonymously,
//! bob (through a three-account role chain) execs into a `kube-system` pod and starts a
//! privileged pod, and erin's credentials produce a burst of 403s from one IP.
//! CloudTrail lands five minutes after each STS call, as it does in AWS, so a few events
//! are `pending` at ingest and resolve through the view.
//!
//! Generation is deterministic (fixed seed and clock), so tests can assert on it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{Array, ListArray, RecordBatch, StringArray, TimestampMillisecondArray};
use flate2::write::GzEncoder;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{json, Value};

use resolver::awsauth::AwsAuth;
use resolver::identity::{classify, AwsExtra};
use resolver::{SessionIndex, StsSession};

use transformer::handler::{Handler, HandlerConfig, HandlerError, InputRecord};
use transformer::lake::{LocalDir, ObjectStore};
use transformer::metrics::Metrics;
use transformer::session_store::LakeSessionStore;
use transformer::trust::TrustedTrails;

pub const MGMT: &str = "111111111111";
pub const PROD: &str = "222222222222";
pub const STAGING: &str = "333333333333";
pub const TOOLS: &str = "444444444444";
pub const ORG_TRAIL_GROUP: &str = "aws-cloudtrail-logs-o-demo1234";

/// 2026-11-20T08:00:00Z
pub const T0: i64 = 1_795_161_600_000;
const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
/// CloudTrail delivery delay (DESIGN 5: minutes after the call).
const TRAIL_DELAY: i64 = 5 * MIN;
/// CloudWatch Logs -> Kinesis -> Firehose delay of audit events.
const AUDIT_DELAY: i64 = 30_000;
/// Firehose buffering interval of the demo.
const BATCH_WINDOW: i64 = 60_000;

pub const DEMO_AWS_AUTH: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: aws-auth
  namespace: kube-system
data:
  mapRoles: |
    - rolearn: arn:aws:iam::333333333333:role/staff
      username: role:{{AccountID}}:staff:{{SessionName}}
      groups: [developers]
    - rolearn: arn:aws:iam::333333333333:role/NodeInstanceRole
      username: system:node:{{EC2PrivateDNSName}}
      groups: [system:bootstrappers, system:nodes]
"#;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Handler(#[from] HandlerError),
    #[error("reading back {path}: {message}")]
    Read { path: String, message: String },
    #[error(transparent)]
    AwsAuth(#[from] resolver::awsauth::AwsAuthError),
}

/// Deterministic xorshift generator: the demo must be the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
    fn uuid(&mut self) -> String {
        let a = self.next();
        let b = self.next();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }
}

use auditlake::synth::iso;

fn iso_s(ms: i64) -> String {
    let full = iso(ms);
    format!("{}Z", &full[..19])
}

/// Java-style CloudTrail expiration (`Nov 20, 2026, 9:00:00 AM`).
fn java_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = resolver::time::civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let (h, ampm) = match s / 3600 {
        0 => (12, "AM"),
        h @ 1..=11 => (h, "AM"),
        12 => (12, "PM"),
        h => (h - 12, "PM"),
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {d}, {y}, {h}:{:02}:{:02} {ampm}",
        MONTHS[(m - 1) as usize],
        (s / 60) % 60,
        s % 60
    )
}

/// A CloudWatch log event waiting for delivery.
struct Delivery {
    arrival: i64,
    owner: String,
    group: String,
    stream: String,
    ts: i64,
    message: String,
    /// `extractedFields["@aws.region"]` (the member template emits system fields).
    region: Option<&'static str>,
}

/// An AWS session a person uses against a cluster.
#[derive(Clone)]
struct Session {
    key: String,
    account: String,
    role: String,
    session_name: String,
    principal_id: String,
}

struct Cluster {
    account: &'static str,
    name: &'static str,
    region: &'static str,
    /// Older clusters: aws-iam-authenticator without `extra` (usernames from aws-auth).
    legacy: bool,
}

const CLUSTERS: [Cluster; 4] = [
    Cluster {
        account: PROD,
        name: "prod-east",
        region: "us-east-1",
        legacy: false,
    },
    Cluster {
        account: PROD,
        name: "prod-west",
        region: "us-west-2",
        legacy: false,
    },
    Cluster {
        account: STAGING,
        name: "staging",
        region: "us-east-1",
        legacy: true,
    },
    Cluster {
        account: TOOLS,
        name: "ci-tools",
        region: "us-east-1",
        legacy: false,
    },
];

struct Gen {
    rng: Rng,
    deliveries: Vec<Delivery>,
    key_seq: u32,
}

/// What one audit event says.
#[derive(Default)]
struct Req<'a> {
    verb: &'a str,
    uri: String,
    resource: Option<&'a str>,
    subresource: Option<&'a str>,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    api_group: Option<&'a str>,
    code: i32,
    level: &'a str,
    stage: &'a str,
    request_object: Option<Value>,
    reason: String,
    /// Stages of one request (exec: ResponseStarted, ResponseComplete) share an audit id.
    audit_id: Option<String>,
}

impl Gen {
    fn key(&mut self, tag: &str) -> String {
        self.key_seq += 1;
        let mut k = format!("ASIA{}{:04}", tag.to_ascii_uppercase(), self.key_seq);
        while k.len() < 20 {
            k.push('X');
        }
        k
    }

    fn trail(&mut self, recipient: &str, event: Value) {
        let ts = resolver::time::parse_rfc3339_ms(event["eventTime"].as_str().unwrap_or(""))
            .unwrap_or(T0);
        self.deliveries.push(Delivery {
            arrival: ts + TRAIL_DELAY,
            owner: MGMT.into(),
            group: ORG_TRAIL_GROUP.into(),
            stream: format!("o-demo1234_{recipient}_CloudTrail_us-east-1"),
            ts,
            message: event.to_string(),
            region: None,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn sts_event(
        &mut self,
        at: i64,
        name: &str,
        recipient: &str,
        user_identity: Value,
        request: Value,
        response: Value,
        shared: Option<&str>,
        error: Option<&str>,
    ) {
        let mut e = json!({
            "eventVersion": "1.08",
            "userIdentity": user_identity,
            "eventTime": iso_s(at),
            "eventSource": "sts.amazonaws.com",
            "eventName": name,
            "awsRegion": "us-east-1",
            "sourceIPAddress": "198.51.100.24",
            "userAgent": "aws-cli/2.17.50",
            "requestParameters": request,
            "responseElements": response,
            "requestID": self.rng.uuid(),
            "eventID": self.rng.uuid(),
            "readOnly": true,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": recipient,
            "eventCategory": "Management",
        });
        if let Some(s) = shared {
            e["sharedEventID"] = json!(s);
        }
        if let Some(code) = error {
            e["errorCode"] = json!(code);
            e["errorMessage"] = json!("User is not authorized to perform: sts:AssumeRole");
            e["responseElements"] = Value::Null;
        }
        self.trail(recipient, e);
    }

    fn credentials(&self, key: &str, at: i64, hours: i64) -> Value {
        json!({"accessKeyId": key, "sessionToken": "IQoJb3JpZ2luEXAMPLE", "expiration": java_time(at + hours * HOUR)})
    }

    /// IAM Identity Center (or another SAML IdP) sign-in: AssumeRoleWithSAML.
    fn saml_signin(
        &mut self,
        at: i64,
        account: &str,
        role_path: &str,
        role: &str,
        person: &str,
        provider: &str,
    ) -> Session {
        let key = self.key(&person[..4.min(person.len())]);
        let role_id = format!("AROA{}{}", role.len(), &key[4..]);
        let role_arn = format!("arn:aws:iam::{account}:role/{role_path}{role}");
        let assertion = format!("_{}", self.rng.uuid());
        self.sts_event(
            at,
            "AssumeRoleWithSAML",
            account,
            json!({"type": "SAMLUser", "principalId": format!("ZXhhbXBsZQ==:{person}"), "userName": person, "identityProvider": "ZXhhbXBsZQ=="}),
            json!({"sAMLAssertionID": assertion, "roleSessionName": person, "durationSeconds": 28800, "roleArn": role_arn,
                   "principalArn": format!("arn:aws:iam::{account}:saml-provider/{provider}")}),
            json!({"credentials": self.credentials(&key, at, 8),
                   "assumedRoleUser": {"assumedRoleId": format!("{role_id}:{person}"), "arn": format!("arn:aws:sts::{account}:assumed-role/{role}/{person}")},
                   "subject": person, "subjectType": "persistent", "audience": "https://signin.aws.amazon.com/saml", "nameQualifier": "ZXhhbXBsZQ=="}),
            None,
            None,
        );
        Session {
            key,
            account: account.into(),
            role: role.into(),
            session_name: person.into(),
            principal_id: role_id,
        }
    }

    /// AssumeRole by an IAM user or an assumed-role session; cross-account calls are
    /// delivered twice (caller and role owner), sharing `sharedEventID`.
    #[allow(clippy::too_many_arguments)]
    fn assume_role(
        &mut self,
        at: i64,
        caller: Value,
        caller_account: &str,
        account: &str,
        role: &str,
        session_name: &str,
        source_identity: Option<&str>,
        tag: &str,
    ) -> Session {
        let key = self.key(tag);
        let role_id = format!("AROA{}{}", role.len(), &key[4..]);
        let role_arn = format!("arn:aws:iam::{account}:role/{role}");
        let mut req =
            json!({"roleArn": role_arn, "roleSessionName": session_name, "durationSeconds": 3600});
        let mut resp = json!({"credentials": self.credentials(&key, at, 1),
            "assumedRoleUser": {"assumedRoleId": format!("{role_id}:{session_name}"), "arn": format!("arn:aws:sts::{account}:assumed-role/{role}/{session_name}")}});
        if let Some(si) = source_identity {
            req["sourceIdentity"] = json!(si);
            resp["sourceIdentity"] = json!(si);
        }
        let cross = caller_account != account;
        let shared = cross.then(|| self.rng.uuid());
        self.sts_event(
            at,
            "AssumeRole",
            caller_account,
            caller.clone(),
            req.clone(),
            resp.clone(),
            shared.as_deref(),
            None,
        );
        if cross {
            let owner_view = json!({"type": "AWSAccount", "principalId": caller["principalId"], "accountId": caller_account});
            self.sts_event(
                at,
                "AssumeRole",
                account,
                owner_view,
                req,
                resp,
                shared.as_deref(),
                None,
            );
        }
        Session {
            key,
            account: account.into(),
            role: role.into(),
            session_name: session_name.into(),
            principal_id: role_id,
        }
    }

    fn web_identity(&mut self, at: i64, account: &str, role: &str, subject: &str) -> Session {
        let key = self.key("CI");
        let session_name = format!("GitHubActions-{}", 1000 + self.rng.below(9000));
        let role_id = format!("AROA{}{}", role.len(), &key[4..]);
        let provider =
            format!("arn:aws:iam::{account}:oidc-provider/token.actions.githubusercontent.com");
        self.sts_event(
            at,
            "AssumeRoleWithWebIdentity",
            account,
            json!({"type": "WebIdentityUser", "principalId": format!("{provider}:sts.amazonaws.com:{subject}"), "userName": subject, "identityProvider": provider}),
            json!({"roleArn": format!("arn:aws:iam::{account}:role/{role}"), "roleSessionName": session_name}),
            json!({"subjectFromWebIdentityToken": subject, "audience": "sts.amazonaws.com", "provider": provider, "credentials": self.credentials(&key, at, 1),
                   "assumedRoleUser": {"assumedRoleId": format!("{role_id}:{session_name}"), "arn": format!("arn:aws:sts::{account}:assumed-role/{role}/{session_name}")}}),
            None,
            None,
        );
        Session {
            key,
            account: account.into(),
            role: role.into(),
            session_name,
            principal_id: role_id,
        }
    }

    fn iam_user(account: &str, name: &str) -> Value {
        json!({"type": "IAMUser", "principalId": format!("AIDA{}", name.to_ascii_uppercase()), "arn": format!("arn:aws:iam::{account}:user/{name}"),
               "accountId": account, "accessKeyId": format!("AKIA{}EXAMPLE", name.to_ascii_uppercase()), "userName": name})
    }

    fn assumed(s: &Session, source_identity: Option<&str>) -> Value {
        let mut v = json!({"type": "AssumedRole", "principalId": format!("{}:{}", s.principal_id, s.session_name),
            "arn": format!("arn:aws:sts::{}:assumed-role/{}/{}", s.account, s.role, s.session_name), "accountId": s.account, "accessKeyId": s.key,
            "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": s.principal_id, "arn": format!("arn:aws:iam::{}:role/{}", s.account, s.role),
                "accountId": s.account, "userName": s.role}, "attributes": {"creationDate": "2026-11-20T08:00:00Z", "mfaAuthenticated": "false"}}});
        if let Some(si) = source_identity {
            v["sessionContext"]["sourceIdentity"] = json!(si);
        }
        v
    }

    /// One audit event from a cluster's apiserver.
    fn audit(&mut self, c: &Cluster, at: i64, user: Value, ip: &str, agent: &str, r: Req<'_>) {
        let mut obj = serde_json::Map::new();
        for (k, v) in [
            ("resource", r.resource),
            ("subresource", r.subresource),
            ("namespace", r.namespace),
            ("name", r.name),
            ("apiGroup", r.api_group),
        ] {
            if let Some(v) = v {
                obj.insert(k.into(), json!(v));
            }
        }
        obj.insert("apiVersion".into(), json!("v1"));
        let decision = if r.code == 403 { "forbid" } else { "allow" };
        let mut ev = json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": if r.level.is_empty() { "Metadata" } else { r.level },
            "auditID": r.audit_id.unwrap_or_else(|| self.rng.uuid()), "stage": if r.stage.is_empty() { "ResponseComplete" } else { r.stage },
            "requestURI": r.uri, "verb": r.verb, "user": user,
            "sourceIPs": [ip], "userAgent": agent,
            "responseStatus": {"metadata": {}, "code": r.code},
            "requestReceivedTimestamp": iso(at), "stageTimestamp": iso(at + 12),
            "annotations": {"authorization.k8s.io/decision": decision, "authorization.k8s.io/reason": r.reason},
        });
        if r.resource.is_some() {
            ev["objectRef"] = Value::Object(obj);
        }
        if r.code == 403 {
            ev["responseStatus"] = json!({"metadata": {}, "status": "Failure", "reason": "Forbidden", "code": 403,
                "message": format!("{} is forbidden", r.resource.unwrap_or("resource"))});
        }
        if let Some(o) = r.request_object {
            ev["requestObject"] = o;
        }
        let stream = format!(
            "kube-apiserver-audit-{:032x}",
            (c.name.len() as u128) << 64 | 0xa1b2c3d4
        );
        self.push_cluster_log(c, at, &stream, ev.to_string());
    }

    fn push_cluster_log(&mut self, c: &Cluster, at: i64, stream: &str, message: String) {
        self.deliveries.push(Delivery {
            arrival: at + AUDIT_DELAY,
            owner: c.account.into(),
            group: format!("/aws/eks/{}/cluster", c.name),
            stream: stream.into(),
            ts: at,
            message,
            region: Some(c.region),
        });
    }

    /// The audit `user` of an AWS session, as aws-iam-authenticator logs it.
    fn aws_user(c: &Cluster, s: &Session, groups: &[&str]) -> Value {
        let munged = s.session_name.replace('@', "-");
        let username = if c.legacy && s.role == "staff" {
            format!("role:{}:staff:{munged}", s.account)
        } else {
            format!(
                "arn:aws:sts::{}:assumed-role/{}/{munged}",
                s.account, s.role
            )
        };
        let mut u = json!({"username": username, "uid": format!("aws-iam-authenticator:{}:{}", s.account, s.principal_id), "groups": groups});
        if !c.legacy {
            u["extra"] = json!({
                "accessKeyId": [s.key], "arn": [format!("arn:aws:sts::{}:assumed-role/{}/{}", s.account, s.role, s.session_name)],
                "canonicalArn": [format!("arn:aws:iam::{}:role/{}", s.account, s.role)], "principalId": [s.principal_id], "sessionName": [s.session_name]});
        }
        u
    }

    fn kubectl(
        &mut self,
        c: &Cluster,
        at: i64,
        s: &Session,
        ip: &str,
        verb: &'static str,
        resource: &'static str,
        ns: Option<&'static str>,
        name: Option<&'static str>,
    ) {
        let uri = match (ns, name) {
            (Some(ns), Some(n)) => format!("/api/v1/namespaces/{ns}/{resource}/{n}"),
            (Some(ns), None) => format!("/api/v1/namespaces/{ns}/{resource}?limit=500"),
            _ => format!("/api/v1/{resource}?limit=500"),
        };
        let user = Self::aws_user(c, s, &["system:authenticated"]);
        self.audit(
            c,
            at,
            user,
            ip,
            "kubectl/v1.31.2 (darwin/arm64) kubernetes/5864a46",
            Req {
                verb,
                uri,
                resource: Some(resource),
                namespace: ns,
                name,
                code: 200,
                ..Default::default()
            },
        );
    }
}

/// Generate the organisation's deliveries and pack them into Firehose-like batches.
pub fn generate() -> Vec<Vec<InputRecord>> {
    let mut g = Gen {
        rng: Rng(0x5eed_cafe_f00d_d00d),
        deliveries: Vec::new(),
        key_seq: 0,
    };
    let [prod_east, prod_west, staging, ci_tools] = &CLUSTERS;
    let idc = "AWSSSO_0a1b2c3d4e5f6a7b_DO_NOT_DELETE";
    let sso_path = "aws-reserved/sso.amazonaws.com/us-east-1/";

    // --- control plane and nodes: the bulk of any audit log ---
    for c in &CLUSTERS {
        let mut t = T0;
        while t < T0 + 8 * HOUR {
            for (user, verb, res, ns, name) in [
                (
                    "system:kube-controller-manager",
                    "update",
                    "leases",
                    "kube-system",
                    "kube-controller-manager",
                ),
                (
                    "system:kube-scheduler",
                    "update",
                    "leases",
                    "kube-system",
                    "kube-scheduler",
                ),
                (
                    "system:node:ip-10-0-12-7.ec2.internal",
                    "patch",
                    "nodes",
                    "",
                    "ip-10-0-12-7.ec2.internal",
                ),
                (
                    "eks:certificate-controller",
                    "get",
                    "configmaps",
                    "kube-system",
                    "eks-certificates-controller",
                ),
            ] {
                let at = t + g.rng.below(30_000) as i64;
                let ns = (!ns.is_empty()).then_some(ns);
                let uri = match ns {
                    Some(ns) => {
                        format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/{res}/{name}")
                    }
                    None => format!("/api/v1/{res}/{name}/status"),
                };
                g.audit(
                    c,
                    at,
                    json!({"username": user, "groups": ["system:authenticated"]}),
                    "10.0.12.7",
                    "kube-controller-manager/v1.31.2",
                    Req {
                        verb,
                        uri,
                        resource: Some(res),
                        namespace: ns,
                        name: Some(name),
                        code: 200,
                        ..Default::default()
                    },
                );
            }
            // pods' service accounts
            let at = t + g.rng.below(30_000) as i64;
            g.audit(c, at, json!({"username": "system:serviceaccount:kube-system:aws-node", "uid": "6a7b8c9d", "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
                "extra": {"authentication.kubernetes.io/credential-id": ["JTI=3f2e1d0c"], "authentication.kubernetes.io/pod-name": ["aws-node-7xk2p"]}}),
                "10.0.12.7", "aws-node/v1.19.0", Req { verb: "list", uri: "/api/v1/pods?fieldSelector=spec.nodeName%3Dip-10-0-12-7.ec2.internal".into(), resource: Some("pods"), code: 200, ..Default::default() });
            // health probes (anonymous, allowed by the default RBAC)
            for path in ["/healthz", "/livez", "/readyz"] {
                let at = t + g.rng.below(60_000) as i64;
                g.audit(c, at, json!({"username": "system:anonymous", "groups": ["system:unauthenticated"]}), "10.0.0.2", "kube-probe/1.31",
                    Req { verb: "get", uri: path.into(), code: 200, reason: "RBAC: allowed by ClusterRoleBinding \"system:public-info-viewer\" of ClusterRole \"system:public-info-viewer\" to Group \"system:unauthenticated\"".into(), ..Default::default() });
            }
            t += 5 * MIN;
        }
        // the authenticator's own stream: counted, not rows
        for i in 0..20 {
            g.push_cluster_log(
                c,
                T0 + i * 10 * MIN,
                "authenticator-0a1b2c3d4e5f",
                format!(
                    "time=\"{}\" level=info msg=\"access granted\"",
                    iso(T0 + i * 10 * MIN)
                ),
            );
        }
    }

    // --- people ---
    let alice = g.saml_signin(
        T0 + HOUR,
        PROD,
        sso_path,
        "AWSReservedSSO_AdministratorAccess_1a2b3c4d5e6f7a8b",
        "alice@example.com",
        idc,
    );
    for i in 0..60 {
        let at = T0 + HOUR + 2 * MIN + i * 3 * MIN; // the first two minutes land before CloudTrail: pending at ingest
        let c = if i % 2 == 0 { prod_east } else { prod_west };
        let verb = *g.rng.pick(&["get", "list", "list", "watch"]);
        let res = *g.rng.pick(&["pods", "deployments", "services", "events"]);
        g.kubectl(
            c,
            at,
            &alice,
            "198.51.100.24",
            verb,
            res,
            Some("payments"),
            None,
        );
    }
    // alice edits the aws-auth ConfigMap on prod-west
    let user = Gen::aws_user(prod_west, &alice, &["system:authenticated"]);
    g.audit(prod_west, T0 + HOUR + 90 * MIN, user, "198.51.100.24", "kubectl/v1.31.2", Req {
        verb: "patch", uri: "/api/v1/namespaces/kube-system/configmaps/aws-auth".into(), resource: Some("configmaps"), namespace: Some("kube-system"), name: Some("aws-auth"),
        code: 200, level: "RequestResponse", request_object: Some(json!({"data": {"mapRoles": "- rolearn: arn:aws:iam::222222222222:role/ci-deploy\n  username: ci\n  groups: [system:masters]\n"}})), ..Default::default() });

    let dave = g.saml_signin(
        T0 + 2 * HOUR,
        PROD,
        sso_path,
        "AWSReservedSSO_PowerUserAccess_9f8e7d6c5b4a3f2e",
        "dave@example.com",
        idc,
    );
    for i in 0..30 {
        g.kubectl(
            prod_east,
            T0 + 2 * HOUR + 10 * MIN + i * 4 * MIN,
            &dave,
            "203.0.113.10",
            "get",
            "pods",
            Some("default"),
            None,
        );
    }

    // bob: IAM user in tools -> deployer in staging -> eks-breakglass in prod
    let bob1 = g.assume_role(
        T0 + 3 * HOUR,
        Gen::iam_user(TOOLS, "bob"),
        TOOLS,
        STAGING,
        "deployer",
        "bob",
        Some("bob"),
        "BOB",
    );
    let bob2 = g.assume_role(
        T0 + 3 * HOUR + MIN,
        Gen::assumed(&bob1, Some("bob")),
        STAGING,
        PROD,
        "eks-breakglass",
        "bob-breakglass",
        Some("bob"),
        "BOBBG",
    );

    // CI: GitHub Actions -> github-deployer (tools) -> ci-deploy (prod)
    for run in 0..8 {
        let at = T0 + 20 * MIN + run * 50 * MIN;
        let wi = g.web_identity(
            at,
            TOOLS,
            "github-deployer",
            "repo:example/payments:ref:refs/heads/main",
        );
        let ci = g.assume_role(
            at + 20_000,
            Gen::assumed(&wi, None),
            TOOLS,
            PROD,
            "ci-deploy",
            &wi.session_name.clone(),
            None,
            "CID",
        );
        for i in 0..12 {
            let c = if i % 2 == 0 { prod_east } else { prod_west };
            let user = Gen::aws_user(c, &ci, &["system:authenticated"]);
            g.audit(c, at + 6 * MIN + i * 20_000, user, "203.0.113.40", "argocd-application-controller/v2.12", Req {
                verb: "patch", uri: "/apis/apps/v1/namespaces/payments/deployments/payments-api".into(), resource: Some("deployments"), api_group: Some("apps"),
                namespace: Some("payments"), name: Some("payments-api"), code: 200, level: "RequestResponse",
                request_object: Some(json!({"spec": {"template": {"spec": {"containers": [{"name": "api", "image": format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/payments-api:1.4.{run}")}]}}}})),
                ..Default::default() });
        }
    }

    // frank and grace share the session name EKSGetTokenAuth on platform-eng roles
    let frank_prod = g.assume_role(
        T0 + 4 * HOUR,
        Gen::iam_user(TOOLS, "frank"),
        TOOLS,
        PROD,
        "platform-eng",
        "EKSGetTokenAuth",
        None,
        "FRANK",
    );
    let grace_prod = g.assume_role(
        T0 + 4 * HOUR + 2 * MIN,
        Gen::iam_user(TOOLS, "grace"),
        TOOLS,
        PROD,
        "platform-eng",
        "EKSGetTokenAuth",
        None,
        "GRACE",
    );
    let frank_stg = g.assume_role(
        T0 + 4 * HOUR,
        Gen::iam_user(TOOLS, "frank"),
        TOOLS,
        STAGING,
        "platform-eng",
        "EKSGetTokenAuth",
        None,
        "FRANKS",
    );
    let grace_stg = g.assume_role(
        T0 + 4 * HOUR + MIN,
        Gen::iam_user(TOOLS, "grace"),
        TOOLS,
        STAGING,
        "platform-eng",
        "EKSGetTokenAuth",
        None,
        "GRACES",
    );
    for i in 0..15 {
        let at = T0 + 4 * HOUR + 8 * MIN + i * 2 * MIN;
        g.kubectl(
            prod_west,
            at,
            &frank_prod,
            "198.51.100.31",
            "list",
            "nodes",
            None,
            None,
        );
        g.kubectl(
            prod_west,
            at + 30_000,
            &grace_prod,
            "198.51.100.32",
            "get",
            "namespaces",
            None,
            None,
        );
        // staging is an older cluster: no access key in the audit log -> ambiguous by name
        let s = if i % 2 == 0 { &frank_stg } else { &grace_stg };
        g.kubectl(
            staging,
            at,
            s,
            "198.51.100.31",
            "list",
            "pods",
            Some("default"),
            None,
        );
    }

    // henry signs in through the external Okta IdP; staging maps role/staff via aws-auth
    let henry = g.saml_signin(
        T0 + 5 * HOUR,
        STAGING,
        "",
        "staff",
        "henry@example.com",
        "Okta",
    );
    for i in 0..20 {
        g.kubectl(
            staging,
            T0 + 5 * HOUR + 7 * MIN + i * 3 * MIN,
            &henry,
            "198.51.100.50",
            "get",
            "deployments",
            Some("web"),
            None,
        );
    }

    // ivan's session was created in a region whose trail is not forwarded: stays pending
    let ivan = Session {
        key: "ASIAIVANNOTRAIL00001".into(),
        account: PROD.into(),
        role: "analyst".into(),
        session_name: "ivan".into(),
        principal_id: "AROAIVAN".into(),
    };
    for i in 0..5 {
        g.kubectl(
            prod_west,
            T0 + 6 * HOUR + i * MIN,
            &ivan,
            "198.51.100.60",
            "list",
            "pods",
            Some("default"),
            None,
        );
    }
    // a failed AssumeRole (denied): recorded, issues nothing
    g.sts_event(T0 + 6 * HOUR, "AssumeRole", TOOLS, Gen::iam_user(TOOLS, "mallory"),
        json!({"roleArn": "arn:aws:iam::222222222222:role/eks-breakglass", "roleSessionName": "mallory"}), Value::Null, None, Some("AccessDenied"));
    // unrelated CloudTrail traffic in the same log group: skipped
    for i in 0..10 {
        g.trail(PROD, json!({"eventVersion": "1.08", "eventTime": iso_s(T0 + i * 40 * MIN), "eventSource": "eks.amazonaws.com", "eventName": "DescribeCluster",
            "eventID": format!("describe-{i}"), "recipientAccountId": PROD, "userIdentity": Gen::assumed(&alice, None)}));
    }

    // --- the incident, on prod-east ---
    let user = Gen::aws_user(prod_east, &dave, &["system:authenticated"]);
    g.audit(prod_east, T0 + 3 * HOUR, user, "203.0.113.10", "kubectl/v1.31.2", Req {
        verb: "create", uri: "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings?fieldManager=kubectl-create".into(), resource: Some("clusterrolebindings"),
        api_group: Some("rbac.authorization.k8s.io"), name: Some("anonymous-admin"), code: 201, level: "RequestResponse",
        request_object: Some(json!({"kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": {"name": "anonymous-admin"},
            "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "system:anonymous"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"}})),
        reason: "EKS Access Policy: allowed by ClusterRoleBinding \"arn:aws:iam::222222222222:role/aws-reserved/sso.amazonaws.com/us-east-1/AWSReservedSSO_PowerUserAccess_9f8e7d6c5b4a3f2e+arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy\"".into(),
        ..Default::default() });
    for (i, ns) in ["kube-system", "payments", "default", "monitoring"]
        .iter()
        .enumerate()
    {
        for j in 0..5 {
            let ns: &'static str = ns;
            g.audit(prod_east, T0 + 3 * HOUR + 5 * MIN + (i as i64 * 5 + j) * 10_000, json!({"username": "system:anonymous", "groups": ["system:unauthenticated"]}),
                "203.0.113.66", "curl/8.5.0", Req { verb: "list", uri: format!("/api/v1/namespaces/{ns}/secrets"), resource: Some("secrets"), namespace: Some(ns), code: 200,
                reason: "RBAC: allowed by ClusterRoleBinding \"anonymous-admin\" of ClusterRole \"cluster-admin\" to User \"system:anonymous\"".into(), ..Default::default() });
        }
    }
    let user = Gen::aws_user(prod_east, &bob2, &["system:authenticated"]);
    let exec_id = g.rng.uuid();
    for stage in ["ResponseStarted", "ResponseComplete"] {
        g.audit(prod_east, T0 + 3 * HOUR + 20 * MIN, user.clone(), "198.51.100.77", "kubectl/v1.31.2", Req {
            verb: "create", uri: "/api/v1/namespaces/kube-system/pods/aws-node-7xk2p/exec?command=sh&container=aws-node&stdin=true&stdout=true&tty=true".into(),
            resource: Some("pods"), subresource: Some("exec"), namespace: Some("kube-system"), name: Some("aws-node-7xk2p"), code: 101, stage,
            audit_id: Some(exec_id.clone()), ..Default::default() });
    }
    g.audit(prod_east, T0 + 3 * HOUR + 25 * MIN, user, "198.51.100.77", "kubectl/v1.31.2", Req {
        verb: "create", uri: "/api/v1/namespaces/kube-system/pods".into(), resource: Some("pods"), namespace: Some("kube-system"), name: Some("node-debugger"),
        code: 201, level: "RequestResponse",
        request_object: Some(json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "node-debugger", "namespace": "kube-system"},
            "spec": {"hostPID": true, "hostNetwork": true, "containers": [{"name": "shell", "image": "public.ecr.aws/docker/library/busybox:1.36",
            "securityContext": {"privileged": true}, "volumeMounts": [{"name": "host", "mountPath": "/host"}]}], "volumes": [{"name": "host", "hostPath": {"path": "/"}}]}})),
        ..Default::default() });

    // erin's session, from one IP, probes what it can reach: a burst of 403s
    let erin = g.saml_signin(
        T0 + 2 * HOUR + 30 * MIN,
        PROD,
        sso_path,
        "AWSReservedSSO_ReadOnly_5e4d3c2b1a0f9e8d",
        "erin@example.com",
        idc,
    );
    for i in 0..60 {
        let res = *g
            .rng
            .pick(&["secrets", "clusterrolebindings", "pods", "serviceaccounts"]);
        let user = Gen::aws_user(prod_west, &erin, &["system:authenticated"]);
        let verb = *g.rng.pick(&["get", "list", "create", "delete"]);
        g.audit(
            prod_west,
            T0 + 2 * HOUR + 50 * MIN + i * 2_000,
            user,
            "198.51.100.99",
            "python-requests/2.32.3",
            Req {
                verb,
                uri: format!("/api/v1/namespaces/kube-system/{res}"),
                resource: Some(res),
                namespace: Some("kube-system"),
                code: 403,
                ..Default::default()
            },
        );
    }

    // --- bad input the lake must keep: one truncated and one invalid message ---
    let big = format!("{{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",\"level\":\"RequestResponse\",\"auditID\":\"{}\",\"stage\":\"ResponseComplete\",\"requestURI\":\"/api/v1/namespaces/payments/configmaps\",\"verb\":\"create\",\"user\":{{\"username\":\"system:serviceaccount:ci:deployer\"}},\"requestObject\":{{\"data\":\"{}[Truncated...]",
        g.rng.uuid(), "x".repeat(2000));
    g.push_cluster_log(
        ci_tools,
        T0 + 7 * HOUR,
        "kube-apiserver-audit-00000000000000000000000000000001",
        big,
    );
    g.push_cluster_log(
        ci_tools,
        T0 + 7 * HOUR + 1000,
        "kube-apiserver-audit-00000000000000000000000000000001",
        "\u{1b}[31mnot an audit event".into(),
    );

    pack(g.deliveries)
}

/// Group deliveries into Firehose batches (one per buffering window) of Kinesis records
/// (one gzip envelope per log stream and window, as CloudWatch Logs sends them).
fn pack(mut d: Vec<Delivery>) -> Vec<Vec<InputRecord>> {
    d.sort_by(|a, b| (a.arrival, a.ts).cmp(&(b.arrival, b.ts)));
    let mut windows: BTreeMap<i64, BTreeMap<(String, String, String), Vec<&Delivery>>> =
        BTreeMap::new();
    for x in &d {
        windows
            .entry(x.arrival / BATCH_WINDOW)
            .or_default()
            .entry((x.owner.clone(), x.group.clone(), x.stream.clone()))
            .or_default()
            .push(x);
    }
    let mut batches = Vec::new();
    let mut seq: u64 = 49_656_239_405_717_329;
    for (_, streams) in windows {
        let mut batch = Vec::new();
        for ((owner, group, stream), evs) in streams {
            for chunk in evs.chunks(200) {
                let log_events: Vec<Value> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, e)| {
                        let mut ev = json!({"id": format!("{}{:020}", e.ts, i), "timestamp": e.ts, "message": e.message});
                        if let Some(r) = e.region {
                            ev["extractedFields"] = json!({"@aws.account": owner, "@aws.region": r});
                        }
                        ev
                    })
                    .collect();
                let env = json!({"messageType": "DATA_MESSAGE", "owner": owner, "logGroup": group, "logStream": stream,
                    "subscriptionFilters": ["org-audit-to-central"], "logEvents": log_events});
                let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
                let _ = gz.write_all(env.to_string().as_bytes());
                let data = gz.finish().unwrap_or_default();
                seq += 1;
                batch.push(InputRecord::gzip(format!("{seq}000000"), data));
            }
        }
        batches.push(batch);
    }
    batches
}

// ---- reading the lake back for the report ---------------------------------------------

fn read_table(root: &Path, table: &str) -> Result<Vec<RecordBatch>, DemoError> {
    let mut files = Vec::new();
    let mut stack = vec![root.join(table)];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let err = |message: String| DemoError::Read {
            path: f.display().to_string(),
            message,
        };
        let file = std::fs::File::open(&f).map_err(|e| err(e.to_string()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|e| err(e.to_string()))?;
        for b in reader {
            out.push(b.map_err(|e| err(e.to_string()))?);
        }
    }
    Ok(out)
}

fn s<'b>(b: &'b RecordBatch, name: &str) -> &'b StringArray {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .unwrap_or_else(|| panic!("eks_audit column {name} is not a string column"))
}

fn get(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

/// One `eks_audit` row, as the report needs it.
#[derive(Debug, Clone)]
pub struct ReportRow {
    pub event_ms: i64,
    pub account_id: String,
    pub cluster: String,
    pub verb: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub username: String,
    pub source_ip: String,
    pub response_code: Option<i32>,
    pub request_object: String,
    pub principal: String,
    pub principal_type: String,
    pub method: String,
    pub status: String,
    pub role_chain: Vec<String>,
    pub access_key: Option<String>,
}

fn rows(batches: &[RecordBatch]) -> Vec<ReportRow> {
    let mut out = Vec::new();
    for b in batches {
        let t = b
            .column_by_name("event_time")
            .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
            .expect("event_time");
        let code = b
            .column_by_name("response_code")
            .and_then(|c| c.as_any().downcast_ref::<arrow_array::Int32Array>())
            .expect("response_code");
        let chain = b
            .column_by_name("role_chain")
            .and_then(|c| c.as_any().downcast_ref::<ListArray>())
            .expect("role_chain");
        let cols = [
            "account_id",
            "cluster",
            "verb",
            "object_resource",
            "object_subresource",
            "object_namespace",
            "object_name",
            "username",
            "source_ip",
            "request_object",
            "principal_name",
            "principal_type",
            "attribution_method",
            "attribution_status",
            "aws_access_key_id",
        ];
        let c: Vec<&StringArray> = cols.iter().map(|n| s(b, n)).collect();
        for i in 0..b.num_rows() {
            let v = |k: usize| get(c[k], i).unwrap_or("").to_string();
            let rc = chain.value(i);
            let rc = rc
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("list of strings");
            out.push(ReportRow {
                event_ms: t.value(i),
                account_id: v(0),
                cluster: v(1),
                verb: v(2),
                resource: v(3),
                subresource: v(4),
                namespace: v(5),
                name: v(6),
                username: v(7),
                source_ip: v(8),
                request_object: v(9),
                principal: v(10),
                principal_type: v(11),
                method: v(12),
                status: v(13),
                role_chain: (0..rc.len()).map(|j| rc.value(j).to_string()).collect(),
                access_key: get(c[14], i).map(str::to_string),
                response_code: code.is_valid(i).then(|| code.value(i)),
            });
        }
    }
    out.sort_by_key(|r| r.event_ms);
    out
}

/// Late attribution, as the `eks_audit_attributed` view does it: pending rows with an
/// access key are resolved against every session the lake now knows.
fn late_attribution(rows: &mut [ReportRow], index: &SessionIndex) -> usize {
    let mut n = 0;
    for r in rows.iter_mut().filter(|r| r.status == "pending") {
        let Some(key) = r.access_key.clone() else {
            continue;
        };
        let extra = AwsExtra {
            access_key_id: Some(&key),
            ..Default::default()
        };
        let id = classify(
            Some("arn:aws:sts::000000000000:assumed-role/x/y"),
            false,
            &extra,
            None,
        );
        let a = index.attribute(&id, None, r.event_ms);
        if a.status == resolver::AttributionStatus::Resolved {
            r.principal = a.principal_name.as_deref().unwrap_or("").to_string();
            r.principal_type = a.principal_type.as_str().to_string();
            r.role_chain = a.role_chain.iter().map(|c| c.to_string()).collect();
            r.status = "resolved (late, view)".into();
            n += 1;
        }
    }
    n
}

/// Rebuild the session index from `<lake>/session_index/by_key/`.
async fn load_sessions(lake: &LocalDir) -> Result<SessionIndex, DemoError> {
    let mut index = SessionIndex::new();
    let keys = lake
        .list("session_index/by_key/")
        .await
        .map_err(|e| DemoError::Read {
            path: "session_index".into(),
            message: e.to_string(),
        })?;
    for k in keys {
        if let Ok(Some(b)) = lake.get(&k).await {
            if let Ok(s) = serde_json::from_slice::<StsSession>(&b) {
                index.insert(Arc::new(s));
            }
        }
    }
    index.finalize();
    Ok(index)
}

fn hhmm(ms: i64) -> String {
    iso(ms)[11..19].to_string()
}

fn who(r: &ReportRow) -> String {
    let chain = if r.role_chain.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = r
            .role_chain
            .iter()
            .map(|a| a.rsplit('/').next().unwrap_or(a))
            .collect();
        format!(" via {}", names.join(" -> "))
    };
    format!(
        "{} [{}]{chain} ({}, {})",
        if r.principal.is_empty() {
            "?"
        } else {
            &r.principal
        },
        r.principal_type,
        r.method,
        r.status
    )
}

/// Run the demo into `lake_dir` and print the report. Returns the report text.
pub async fn run(lake_dir: &Path) -> Result<String, DemoError> {
    let lake = Arc::new(LocalDir::new(lake_dir));
    let config = HandlerConfig {
        aws_auth: Some(Arc::new(AwsAuth::parse(DEMO_AWS_AUTH, "demo aws-auth")?)),
        // the demo organisation's trail: the only CloudTrail source it trusts
        trusted_trails: TrustedTrails::none().with(MGMT, ORG_TRAIL_GROUP),
        ..HandlerConfig::default()
    };
    let handler = Handler::new(config, lake.clone(), LakeSessionStore::new(lake.clone()));
    let batches = generate();
    let mut total = Metrics::default();
    let started = std::time::Instant::now();
    for (i, b) in batches.iter().enumerate() {
        // ingest time = the batch's window, so the demo is reproducible
        let now = T0 + i as i64 * BATCH_WINDOW;
        let out = handler.process(b, Some("us-east-1"), now).await?;
        total += out.metrics;
    }
    let elapsed = started.elapsed();
    let report = report(lake_dir, &lake, &total, batches.len(), elapsed).await?;
    println!("{report}");
    Ok(report)
}

async fn report(
    root: &Path,
    lake: &LocalDir,
    m: &Metrics,
    batches: usize,
    elapsed: std::time::Duration,
) -> Result<String, DemoError> {
    use std::fmt::Write as _;
    let mut rows = rows(&read_table(root, "eks_audit")?);
    let index = load_sessions(lake).await?;
    let pending_at_ingest = rows.iter().filter(|r| r.status == "pending").count();
    let late = late_attribution(&mut rows, &index);
    let mut o = String::new();
    let _ = writeln!(o, "eks-audit-lake demo: {} Firehose batches, {} records ({:.2} MB compressed, {:.1} MB JSON) in {:.2} s",
        batches, m.records_in, m.bytes_in as f64 / 1e6, m.bytes_decompressed as f64 / 1e6, elapsed.as_secs_f64());
    let _ = writeln!(o, "  {} audit events written ({} truncated, {} invalid kept), {} non-audit log events skipped, {} STS sessions indexed",
        m.events_written, m.truncated, m.invalid, m.skipped, m.sts_sessions);
    let _ = writeln!(o, "  attribution at ingest: {} resolved, {} pending, {} ambiguous, {} not applicable (Kubernetes identities)",
        m.attribution_resolved, m.attribution_pending, m.attribution_ambiguous, m.attribution_not_applicable);
    let _ = writeln!(o, "  {pending_at_ingest} events were pending at ingest (CloudTrail lands ~5 min later); {late} resolve now through the view, the rest have no STS record\n");

    let _ = writeln!(
        o,
        "{:<14} {:<10} {:>7} {:>9} {:>8} {:>10}",
        "account", "cluster", "events", "resolved", "pending", "ambiguous"
    );
    let mut per: BTreeMap<(String, String), [usize; 4]> = BTreeMap::new();
    for r in &rows {
        let e = per
            .entry((r.account_id.clone(), r.cluster.clone()))
            .or_default();
        e[0] += 1;
        match r.status.as_str() {
            "pending" => e[2] += 1,
            "ambiguous" => e[3] += 1,
            s if s.starts_with("resolved") => e[1] += 1,
            _ => {}
        }
    }
    for ((a, c), v) in &per {
        let _ = writeln!(
            o,
            "{a:<14} {c:<10} {:>7} {:>9} {:>8} {:>10}",
            v[0], v[1], v[2], v[3]
        );
    }

    let _ = writeln!(
        o,
        "\nIncident report (prod-east / prod-west), who really did it:"
    );
    let mut step = 0;
    let mut line = |o: &mut String, title: &str, r: &ReportRow, extra: &str| {
        step += 1;
        let _ = writeln!(
            o,
            "  {step}. {} {title}{extra}\n     by {} from {} on {}/{}",
            hhmm(r.event_ms),
            who(r),
            r.source_ip,
            r.account_id,
            r.cluster
        );
    };
    if let Some(r) = rows.iter().find(|r| {
        r.resource == "clusterrolebindings"
            && r.verb == "create"
            && r.request_object.contains("system:anonymous")
    }) {
        line(
            &mut o,
            &format!(
                "created ClusterRoleBinding {} binding system:anonymous to cluster-admin",
                r.name
            ),
            r,
            "",
        );
    }
    let anon: Vec<&ReportRow> = rows
        .iter()
        .filter(|r| {
            r.username == "system:anonymous"
                && r.resource == "secrets"
                && r.response_code.is_some_and(|c| c < 400)
        })
        .collect();
    if let Some(r) = anon.first() {
        let ns: std::collections::BTreeSet<&str> =
            anon.iter().map(|r| r.namespace.as_str()).collect();
        line(
            &mut o,
            &format!(
                "secrets listed anonymously ({} requests, namespaces {})",
                anon.len(),
                ns.into_iter().collect::<Vec<_>>().join(", ")
            ),
            r,
            "",
        );
    }
    if let Some(r) = rows
        .iter()
        .find(|r| r.subresource == "exec" && r.namespace == "kube-system")
    {
        line(
            &mut o,
            &format!("exec into kube-system pod {}", r.name),
            r,
            "",
        );
    }
    if let Some(r) = rows.iter().find(|r| {
        r.resource == "pods"
            && r.verb == "create"
            && r.request_object.contains("\"privileged\":true")
    }) {
        line(
            &mut o,
            &format!(
                "created privileged hostPID/hostNetwork pod {}/{} mounting /",
                r.namespace, r.name
            ),
            r,
            "",
        );
    }
    let mut by_ip: BTreeMap<&str, Vec<&ReportRow>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.response_code == Some(403)) {
        by_ip.entry(&r.source_ip).or_default().push(r);
    }
    if let Some((ip, v)) = by_ip.iter().max_by_key(|(_, v)| v.len()) {
        let span = (v[v.len() - 1].event_ms - v[0].event_ms) / 1000;
        line(
            &mut o,
            &format!(
                "burst of {} forbidden (403) requests from {ip} in {span} s",
                v.len()
            ),
            v[0],
            "",
        );
    }

    let dir = root.display();
    let _ = writeln!(o, "\nThe lake is in {dir}/ (eks_audit/, sts_sessions/, session_index/). Query it with DuckDB:");
    let _ = writeln!(o, "  duckdb -c \"SELECT principal_type, principal_name, count(*) AS events FROM read_parquet('{dir}/eks_audit/**/*.parquet', hive_partitioning = true) GROUP BY ALL ORDER BY events DESC\"");
    let _ = writeln!(
        o,
        "  (account_id is a VARCHAR column in the files; dt is the only partition key.)"
    );
    let _ = writeln!(o, "Athena DDL: schemas/athena/ (tables with partition projection, and the eks_audit_attributed view); `auditlake ddl --location s3://bucket/prefix` renders it for your bucket.");
    Ok(o)
}
