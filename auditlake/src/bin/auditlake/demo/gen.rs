//! How one thing of the demo organisation looks on the wire: a CloudTrail STS record,
//! an audit event as the apiserver and aws-iam-authenticator write it, a CloudWatch Logs
//! delivery, and the packing of deliveries into Firehose batches.

use std::collections::BTreeMap;
use std::io::Write;

use flate2::write::GzEncoder;
use serde_json::{json, Value};

use transformer::handler::InputRecord;

use super::scenario::{AUDIT_DELAY, BATCH_WINDOW, HOUR, MGMT, ORG_TRAIL_GROUP, T0, TRAIL_DELAY};
use auditlake::synth::iso;

/// Deterministic xorshift generator: the demo must be the same on every run.
pub struct Rng(u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
    pub fn uuid(&mut self) -> String {
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

pub fn iso_s(ms: i64) -> String {
    let full = iso(ms);
    format!("{}Z", &full[..19])
}

/// Java-style CloudTrail expiration (`Nov 20, 2026, 9:00:00 AM`).
pub fn java_time(ms: i64) -> String {
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
pub struct Delivery {
    pub arrival: i64,
    pub owner: String,
    pub group: String,
    pub stream: String,
    pub ts: i64,
    pub message: String,
    /// `extractedFields["@aws.region"]` (the member template emits system fields).
    pub region: Option<&'static str>,
}

/// An AWS session a person uses against a cluster.
#[derive(Clone)]
pub struct Session {
    pub key: String,
    pub account: String,
    pub role: String,
    pub session_name: String,
    pub principal_id: String,
}

pub struct Cluster {
    pub account: &'static str,
    pub name: &'static str,
    pub region: &'static str,
    /// Older clusters: aws-iam-authenticator without `extra` (usernames from aws-auth).
    pub legacy: bool,
}

pub struct Gen {
    pub rng: Rng,
    pub deliveries: Vec<Delivery>,
    pub key_seq: u32,
}

/// What one audit event says.
#[derive(Default)]
pub struct Req<'a> {
    pub verb: &'a str,
    pub uri: String,
    pub resource: Option<&'a str>,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    pub api_group: Option<&'a str>,
    pub code: i32,
    pub level: &'a str,
    pub stage: &'a str,
    pub request_object: Option<Value>,
    pub reason: String,
    /// Stages of one request (exec: ResponseStarted, ResponseComplete) share an audit id.
    pub audit_id: Option<String>,
}

impl Gen {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Rng(seed),
            deliveries: Vec::new(),
            key_seq: 0,
        }
    }

    pub fn key(&mut self, tag: &str) -> String {
        self.key_seq += 1;
        let mut k = format!("ASIA{}{:04}", tag.to_ascii_uppercase(), self.key_seq);
        while k.len() < 20 {
            k.push('X');
        }
        k
    }

    pub fn trail(&mut self, recipient: &str, event: Value) {
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

    /// A CloudTrail STS record into the trail's log group.
    #[allow(clippy::too_many_arguments)]
    pub fn sts_event(
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
        let e = self.sts_record(
            at,
            name,
            recipient,
            user_identity,
            request,
            response,
            shared,
            error,
        );
        self.trail(recipient, e);
    }

    #[allow(clippy::too_many_arguments)]
    fn sts_record(
        &mut self,
        at: i64,
        name: &str,
        recipient: &str,
        user_identity: Value,
        request: Value,
        response: Value,
        shared: Option<&str>,
        error: Option<&str>,
    ) -> Value {
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
        e
    }

    /// A new session's access key and role id (what CloudTrail and the audit log name).
    fn session(&mut self, tag: &str, account: &str, role: &str, session_name: &str) -> Session {
        let key = self.key(tag);
        let principal_id = format!("AROA{}{}", role.len(), &key[4..]);
        Session {
            key,
            account: account.into(),
            role: role.into(),
            session_name: session_name.into(),
            principal_id,
        }
    }

    pub fn credentials(&self, key: &str, at: i64, hours: i64) -> Value {
        json!({"accessKeyId": key, "sessionToken": "IQoJb3JpZ2luEXAMPLE", "expiration": java_time(at + hours * HOUR)})
    }

    /// IAM Identity Center (or another SAML IdP) sign-in: AssumeRoleWithSAML.
    pub fn saml_signin(
        &mut self,
        at: i64,
        account: &str,
        role_path: &str,
        role: &str,
        person: &str,
        provider: &str,
    ) -> Session {
        let sess = self.session(&person[..4.min(person.len())], account, role, person);
        let (key, role_id) = (&sess.key, &sess.principal_id);
        let role_arn = format!("arn:aws:iam::{account}:role/{role_path}{role}");
        let assertion = format!("_{}", self.rng.uuid());
        self.sts_event(
            at,
            "AssumeRoleWithSAML",
            account,
            json!({"type": "SAMLUser", "principalId": format!("ZXhhbXBsZQ==:{person}"), "userName": person, "identityProvider": "ZXhhbXBsZQ=="}),
            json!({"sAMLAssertionID": assertion, "roleSessionName": person, "durationSeconds": 28800, "roleArn": role_arn,
                   "principalArn": format!("arn:aws:iam::{account}:saml-provider/{provider}")}),
            json!({"credentials": self.credentials(key, at, 8),
                   "assumedRoleUser": {"assumedRoleId": format!("{role_id}:{person}"), "arn": format!("arn:aws:sts::{account}:assumed-role/{role}/{person}")},
                   "subject": person, "subjectType": "persistent", "audience": "https://signin.aws.amazon.com/saml", "nameQualifier": "ZXhhbXBsZQ=="}),
            None,
            None,
        );
        sess
    }

    /// AssumeRole by an IAM user or an assumed-role session; cross-account calls are
    /// delivered twice (caller and role owner), sharing `sharedEventID`.
    #[allow(clippy::too_many_arguments)]
    pub fn assume_role(
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
        let sess = self.session(tag, account, role, session_name);
        let (key, role_id) = (&sess.key, &sess.principal_id);
        let role_arn = format!("arn:aws:iam::{account}:role/{role}");
        let mut req =
            json!({"roleArn": role_arn, "roleSessionName": session_name, "durationSeconds": 3600});
        let mut resp = json!({"credentials": self.credentials(key, at, 1),
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
        sess
    }

    pub fn web_identity(&mut self, at: i64, account: &str, role: &str, subject: &str) -> Session {
        let session_name = format!("GitHubActions-{}", 1000 + self.rng.below(9000));
        let provider =
            format!("arn:aws:iam::{account}:oidc-provider/token.actions.githubusercontent.com");
        self.web_identity_from(at, account, role, &provider, subject, &session_name, "CI")
    }

    /// AssumeRoleWithWebIdentity with the token of `provider` (a provider ARN), as
    /// GitHub Actions or an IRSA pod (an EKS cluster's OIDC issuer) makes it.
    #[allow(clippy::too_many_arguments)]
    pub fn web_identity_from(
        &mut self,
        at: i64,
        account: &str,
        role: &str,
        provider: &str,
        subject: &str,
        session_name: &str,
        tag: &str,
    ) -> Session {
        let sess = self.session(tag, account, role, session_name);
        let (key, role_id) = (&sess.key, &sess.principal_id);
        self.sts_event(
            at,
            "AssumeRoleWithWebIdentity",
            account,
            json!({"type": "WebIdentityUser", "principalId": format!("{provider}:sts.amazonaws.com:{subject}"), "userName": subject, "identityProvider": provider}),
            json!({"roleArn": format!("arn:aws:iam::{account}:role/{role}"), "roleSessionName": session_name}),
            json!({"subjectFromWebIdentityToken": subject, "audience": "sts.amazonaws.com", "provider": provider, "credentials": self.credentials(key, at, 1),
                   "assumedRoleUser": {"assumedRoleId": format!("{role_id}:{session_name}"), "arn": format!("arn:aws:sts::{account}:assumed-role/{role}/{session_name}")}}),
            None,
            None,
        );
        sess
    }

    /// AssumeRole made by an AWS service for a workload: EKS Pod Identity
    /// (`pods.eks.amazonaws.com`, with its session tags), an EC2 instance profile
    /// (`ec2.amazonaws.com`, session name = instance id), a Lambda function.
    #[allow(clippy::too_many_arguments)]
    pub fn service_assume_role(
        &mut self,
        at: i64,
        service: &str,
        account: &str,
        role: &str,
        session_name: &str,
        tags: &[(&str, &str)],
        tag: &str,
    ) -> Session {
        let sess = self.session(tag, account, role, session_name);
        let mut req = json!({"roleArn": format!("arn:aws:iam::{account}:role/{role}"), "roleSessionName": session_name, "durationSeconds": 21600});
        if !tags.is_empty() {
            req["tags"] = tags
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
            req["transitiveTagKeys"] = tags.iter().map(|(k, _)| json!(k)).collect();
        }
        let resp = json!({"credentials": self.credentials(&sess.key, at, 6),
            "assumedRoleUser": {"assumedRoleId": format!("{}:{session_name}", sess.principal_id), "arn": format!("arn:aws:sts::{account}:assumed-role/{role}/{session_name}")}});
        let ui = json!({"type": "AWSService", "invokedBy": service});
        let mut e = self.sts_record(at, "AssumeRole", account, ui, req, resp, None, None);
        // a service calls from its own principal; only the role owner gets a copy
        e["sourceIPAddress"] = json!(service);
        e["userAgent"] = json!(service);
        e["resources"] = json!([{"accountId": account, "type": "AWS::IAM::Role", "ARN": format!("arn:aws:iam::{account}:role/{role}")}]);
        e["sharedEventID"] = json!(self.rng.uuid());
        self.trail(account, e);
        sess
    }

    pub fn iam_user(account: &str, name: &str) -> Value {
        json!({"type": "IAMUser", "principalId": format!("AIDA{}", name.to_ascii_uppercase()), "arn": format!("arn:aws:iam::{account}:user/{name}"),
               "accountId": account, "accessKeyId": format!("AKIA{}EXAMPLE", name.to_ascii_uppercase()), "userName": name})
    }

    pub fn assumed(s: &Session, source_identity: Option<&str>) -> Value {
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
    pub fn audit(&mut self, c: &Cluster, at: i64, user: Value, ip: &str, agent: &str, r: Req<'_>) {
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

    pub fn push_cluster_log(&mut self, c: &Cluster, at: i64, stream: &str, message: String) {
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
    pub fn aws_user(c: &Cluster, s: &Session, groups: &[&str]) -> Value {
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

    pub fn kubectl(
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

/// Group deliveries into Firehose batches (one per buffering window) of Kinesis records
/// (one gzip envelope per log stream and window, as CloudWatch Logs sends them).
pub fn pack(mut d: Vec<Delivery>) -> Vec<Vec<InputRecord>> {
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
                // CloudWatch Logs' own field order: messageType and owner first
                let env = format!(
                    r#"{{"messageType":"DATA_MESSAGE","owner":{},"logGroup":{},"logStream":{},"subscriptionFilters":["org-audit-to-central"],"logEvents":{}}}"#,
                    json!(owner),
                    json!(group),
                    json!(stream),
                    Value::Array(log_events)
                );
                let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
                let _ = gz.write_all(env.as_bytes());
                let data = gz.finish().unwrap_or_default();
                seq += 1;
                batch.push(InputRecord::gzip(format!("{seq}000000"), data));
            }
        }
        batches.push(batch);
    }
    batches
}
