//! The demo organisation as data: accounts, clusters, background traffic, who signs in
//! how, what they do, and the incident. [`generate`] plays these tables through the
//! event writers of `gen.rs` and packs the deliveries into Firehose batches.

use serde_json::{json, Value};

use transformer::handler::InputRecord;

use super::gen::{iso_s, pack, Cluster, Gen, Req, Session};

pub const MGMT: &str = "111111111111";
pub const PROD: &str = "222222222222";
pub const STAGING: &str = "333333333333";
pub const TOOLS: &str = "444444444444";
pub const ORG_TRAIL_GROUP: &str = "aws-cloudtrail-logs-o-demo1234";

/// 2026-11-20T08:00:00Z
pub const T0: i64 = 1_795_161_600_000;
pub const MIN: i64 = 60_000;
pub const HOUR: i64 = 60 * MIN;
/// CloudTrail delivery delay (minutes after the call, as in AWS).
pub const TRAIL_DELAY: i64 = 5 * MIN;
/// CloudWatch Logs -> Kinesis -> Firehose delay of audit events.
pub const AUDIT_DELAY: i64 = 30_000;
/// Firehose buffering interval of the demo.
pub const BATCH_WINDOW: i64 = 60_000;

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

pub const CLUSTERS: [Cluster; 4] = [
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
    // an older cluster: no `extra` in its audit log, usernames from aws-auth
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
const PROD_EAST: usize = 0;
const PROD_WEST: usize = 1;
const STAGING_CLUSTER: usize = 2;
const CI_TOOLS: usize = 3;

const IDC: &str = "AWSSSO_0a1b2c3d4e5f6a7b_DO_NOT_DELETE";

/// The ci-tools cluster's OIDC issuer id: IRSA tokens name the issuer, not the cluster,
/// so the demo maps it (`AUDITLAKE_OIDC_CLUSTERS`).
pub const CI_TOOLS_ISSUER_ID: &str = "C1A0B2C3D4E5F60718293A4B5C6D7E8F";
pub const DEMO_OIDC_CLUSTERS: &str = "C1A0B2C3D4E5F60718293A4B5C6D7E8F=ci-tools";
const SSO_PATH: &str = "aws-reserved/sso.amazonaws.com/us-east-1/";

// ---- background traffic: every cluster, every 5 minutes for 8 hours -------------------

/// (user, verb, resource, namespace, name) of the controllers and nodes.
const CONTROL_PLANE: [(&str, &str, &str, &str, &str); 4] = [
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
];
/// Health probes: anonymous, allowed by the default RBAC.
const PROBES: [&str; 3] = ["/healthz", "/livez", "/readyz"];

// ---- who signs in how --------------------------------------------------------------------

/// How a session starts (what CloudTrail records of it).
enum Start {
    /// IAM Identity Center or another SAML IdP: AssumeRoleWithSAML.
    Saml {
        account: &'static str,
        role_path: &'static str,
        role: &'static str,
        person: &'static str,
        provider: &'static str,
    },
    /// AssumeRole by an IAM user, or chained from an earlier session.
    AssumeRole {
        caller: Caller,
        caller_account: &'static str,
        account: &'static str,
        role: &'static str,
        session: &'static str,
        source_identity: Option<&'static str>,
        tag: &'static str,
    },
    /// A session whose CloudTrail is never forwarded (another region's trail).
    NoTrail {
        key: &'static str,
        account: &'static str,
        role: &'static str,
        session: &'static str,
    },
}

enum Caller {
    IamUser(&'static str),
    Chained(&'static str),
}

/// (name, when, how): the sessions of the story, started in this order.
const SESSIONS: &[(&str, i64, Start)] = &[
    (
        "alice",
        T0 + HOUR,
        Start::Saml {
            account: PROD,
            role_path: SSO_PATH,
            role: "AWSReservedSSO_AdministratorAccess_1a2b3c4d5e6f7a8b",
            person: "alice@example.com",
            provider: IDC,
        },
    ),
    (
        "dave",
        T0 + 2 * HOUR,
        Start::Saml {
            account: PROD,
            role_path: SSO_PATH,
            role: "AWSReservedSSO_PowerUserAccess_9f8e7d6c5b4a3f2e",
            person: "dave@example.com",
            provider: IDC,
        },
    ),
    (
        "erin",
        T0 + 2 * HOUR + 30 * MIN,
        Start::Saml {
            account: PROD,
            role_path: SSO_PATH,
            role: "AWSReservedSSO_ReadOnly_5e4d3c2b1a0f9e8d",
            person: "erin@example.com",
            provider: IDC,
        },
    ),
    // bob: IAM user in tools -> deployer in staging -> eks-breakglass in prod
    (
        "bob-deployer",
        T0 + 3 * HOUR,
        Start::AssumeRole {
            caller: Caller::IamUser("bob"),
            caller_account: TOOLS,
            account: STAGING,
            role: "deployer",
            session: "bob",
            source_identity: Some("bob"),
            tag: "BOB",
        },
    ),
    (
        "bob-breakglass",
        T0 + 3 * HOUR + MIN,
        Start::AssumeRole {
            caller: Caller::Chained("bob-deployer"),
            caller_account: STAGING,
            account: PROD,
            role: "eks-breakglass",
            session: "bob-breakglass",
            source_identity: Some("bob"),
            tag: "BOBBG",
        },
    ),
    // frank and grace share the session name EKSGetTokenAuth on platform-eng roles
    (
        "frank-prod",
        T0 + 4 * HOUR,
        Start::AssumeRole {
            caller: Caller::IamUser("frank"),
            caller_account: TOOLS,
            account: PROD,
            role: "platform-eng",
            session: "EKSGetTokenAuth",
            source_identity: None,
            tag: "FRANK",
        },
    ),
    (
        "grace-prod",
        T0 + 4 * HOUR + 2 * MIN,
        Start::AssumeRole {
            caller: Caller::IamUser("grace"),
            caller_account: TOOLS,
            account: PROD,
            role: "platform-eng",
            session: "EKSGetTokenAuth",
            source_identity: None,
            tag: "GRACE",
        },
    ),
    (
        "frank-staging",
        T0 + 4 * HOUR,
        Start::AssumeRole {
            caller: Caller::IamUser("frank"),
            caller_account: TOOLS,
            account: STAGING,
            role: "platform-eng",
            session: "EKSGetTokenAuth",
            source_identity: None,
            tag: "FRANKS",
        },
    ),
    (
        "grace-staging",
        T0 + 4 * HOUR + MIN,
        Start::AssumeRole {
            caller: Caller::IamUser("grace"),
            caller_account: TOOLS,
            account: STAGING,
            role: "platform-eng",
            session: "EKSGetTokenAuth",
            source_identity: None,
            tag: "GRACES",
        },
    ),
    // henry signs in through the external Okta IdP; staging maps role/staff via aws-auth
    (
        "henry",
        T0 + 5 * HOUR,
        Start::Saml {
            account: STAGING,
            role_path: "",
            role: "staff",
            person: "henry@example.com",
            provider: "Okta",
        },
    ),
    // ivan's session was created in a region whose trail is not forwarded: stays pending
    (
        "ivan",
        T0 + 6 * HOUR,
        Start::NoTrail {
            key: "ASIAIVANNOTRAIL00001",
            account: PROD,
            role: "analyst",
            session: "ivan",
        },
    ),
];

// ---- what they do -------------------------------------------------------------------------

/// kubectl requests: `count` of them, `every` ms apart from `start` (+ `offset`), taking
/// sessions, clusters, verbs and resources in turn (a list of one is fixed; verbs and
/// resources of several are picked at random, the same way on every run).
struct Activity {
    who: &'static [&'static str],
    clusters: &'static [usize],
    start: i64,
    every: i64,
    count: i64,
    verbs: &'static [&'static str],
    resources: &'static [&'static str],
    namespace: Option<&'static str>,
    ip: &'static str,
}

const ACTIVITY: &[Activity] = &[
    // the first two minutes land before CloudTrail: pending at ingest
    Activity {
        who: &["alice"],
        clusters: &[PROD_EAST, PROD_WEST],
        start: T0 + HOUR + 2 * MIN,
        every: 3 * MIN,
        count: 60,
        verbs: &["get", "list", "list", "watch"],
        resources: &["pods", "deployments", "services", "events"],
        namespace: Some("payments"),
        ip: "198.51.100.24",
    },
    Activity {
        who: &["dave"],
        clusters: &[PROD_EAST],
        start: T0 + 2 * HOUR + 10 * MIN,
        every: 4 * MIN,
        count: 30,
        verbs: &["get"],
        resources: &["pods"],
        namespace: Some("default"),
        ip: "203.0.113.10",
    },
    Activity {
        who: &["frank-prod"],
        clusters: &[PROD_WEST],
        start: T0 + 4 * HOUR + 8 * MIN,
        every: 2 * MIN,
        count: 15,
        verbs: &["list"],
        resources: &["nodes"],
        namespace: None,
        ip: "198.51.100.31",
    },
    Activity {
        who: &["grace-prod"],
        clusters: &[PROD_WEST],
        start: T0 + 4 * HOUR + 8 * MIN + 30_000,
        every: 2 * MIN,
        count: 15,
        verbs: &["get"],
        resources: &["namespaces"],
        namespace: None,
        ip: "198.51.100.32",
    },
    // staging logs no access key: frank's and grace's EKSGetTokenAuth are ambiguous by name
    Activity {
        who: &["frank-staging", "grace-staging"],
        clusters: &[STAGING_CLUSTER],
        start: T0 + 4 * HOUR + 8 * MIN,
        every: 2 * MIN,
        count: 15,
        verbs: &["list"],
        resources: &["pods"],
        namespace: Some("default"),
        ip: "198.51.100.31",
    },
    Activity {
        who: &["henry"],
        clusters: &[STAGING_CLUSTER],
        start: T0 + 5 * HOUR + 7 * MIN,
        every: 3 * MIN,
        count: 20,
        verbs: &["get"],
        resources: &["deployments"],
        namespace: Some("web"),
        ip: "198.51.100.50",
    },
    Activity {
        who: &["ivan"],
        clusters: &[PROD_WEST],
        start: T0 + 6 * HOUR,
        every: MIN,
        count: 5,
        verbs: &["list"],
        resources: &["pods"],
        namespace: Some("default"),
        ip: "198.51.100.60",
    },
];

/// GitHub Actions runs: web identity into tools' github-deployer, chained into prod's
/// ci-deploy, then Argo CD-style patches of the payments deployment on both prod clusters.
const CI_RUNS: i64 = 8;
const CI_FIRST: i64 = T0 + 20 * MIN;
const CI_EVERY: i64 = 50 * MIN;
const CI_SUBJECT: &str = "repo:example/payments:ref:refs/heads/main";

// ---- the incident, on prod-east (and erin's probing on prod-west) -----------------------

/// A single request of the story.
struct Act {
    who: &'static str,
    cluster: usize,
    at: i64,
    ip: &'static str,
    verb: &'static str,
    uri: &'static str,
    resource: &'static str,
    subresource: Option<&'static str>,
    namespace: Option<&'static str>,
    name: &'static str,
    api_group: Option<&'static str>,
    code: i32,
    /// Stages logged for the request (exec: started, then complete; one audit id).
    stages: &'static [&'static str],
    request_object: Option<fn() -> Value>,
    reason: &'static str,
}

const ACTS: &[Act] = &[
    // alice edits the aws-auth ConfigMap on prod-west: ci-deploy gets system:masters
    Act { who: "alice", cluster: PROD_WEST, at: T0 + HOUR + 90 * MIN, ip: "198.51.100.24", verb: "patch",
        uri: "/api/v1/namespaces/kube-system/configmaps/aws-auth", resource: "configmaps", subresource: None,
        namespace: Some("kube-system"), name: "aws-auth", api_group: None, code: 200, stages: &["ResponseComplete"],
        request_object: Some(|| json!({"data": {"mapRoles": "- rolearn: arn:aws:iam::222222222222:role/ci-deploy\n  username: ci\n  groups: [system:masters]\n"}})),
        reason: "" },
    // dave binds system:anonymous to cluster-admin
    Act { who: "dave", cluster: PROD_EAST, at: T0 + 3 * HOUR, ip: "203.0.113.10", verb: "create",
        uri: "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings?fieldManager=kubectl-create", resource: "clusterrolebindings",
        subresource: None, namespace: None, name: "anonymous-admin", api_group: Some("rbac.authorization.k8s.io"), code: 201,
        stages: &["ResponseComplete"],
        request_object: Some(|| json!({"kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": {"name": "anonymous-admin"},
            "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "system:anonymous"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"}})),
        reason: "EKS Access Policy: allowed by ClusterRoleBinding \"arn:aws:iam::222222222222:role/aws-reserved/sso.amazonaws.com/us-east-1/AWSReservedSSO_PowerUserAccess_9f8e7d6c5b4a3f2e+arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy\"" },
    // bob, through the three-account chain, execs into a kube-system pod ...
    Act { who: "bob-breakglass", cluster: PROD_EAST, at: T0 + 3 * HOUR + 20 * MIN, ip: "198.51.100.77", verb: "create",
        uri: "/api/v1/namespaces/kube-system/pods/aws-node-7xk2p/exec?command=sh&container=aws-node&stdin=true&stdout=true&tty=true",
        resource: "pods", subresource: Some("exec"), namespace: Some("kube-system"), name: "aws-node-7xk2p", api_group: None,
        code: 101, stages: &["ResponseStarted", "ResponseComplete"], request_object: None, reason: "" },
    // ... and starts a privileged pod that mounts the node's root
    Act { who: "bob-breakglass", cluster: PROD_EAST, at: T0 + 3 * HOUR + 25 * MIN, ip: "198.51.100.77", verb: "create",
        uri: "/api/v1/namespaces/kube-system/pods", resource: "pods", subresource: None, namespace: Some("kube-system"),
        name: "node-debugger", api_group: None, code: 201, stages: &["ResponseComplete"],
        request_object: Some(|| json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "node-debugger", "namespace": "kube-system"},
            "spec": {"hostPID": true, "hostNetwork": true, "containers": [{"name": "shell", "image": "public.ecr.aws/docker/library/busybox:1.36",
            "securityContext": {"privileged": true}, "volumeMounts": [{"name": "host", "mountPath": "/host"}]}], "volumes": [{"name": "host", "hostPath": {"path": "/"}}]}})),
        reason: "" },
];

/// After dave's binding: secrets listed anonymously, 5 requests per namespace, 10 s apart.
const ANONYMOUS_SECRETS: (i64, &[&str]) = (
    T0 + 3 * HOUR + 5 * MIN,
    &["kube-system", "payments", "default", "monitoring"],
);
/// erin's session probes what it can reach from one IP: 60 forbidden requests, 2 s apart.
const ERIN_PROBE: (i64, &str) = (T0 + 2 * HOUR + 50 * MIN, "198.51.100.99");

// ---- the driver --------------------------------------------------------------------------

/// Generate the organisation's deliveries and pack them into Firehose-like batches.
pub fn generate() -> Vec<Vec<InputRecord>> {
    let mut g = Gen::new(0x5eed_cafe_f00d_d00d);
    for c in &CLUSTERS {
        background(&mut g, c);
    }
    let sessions = start_sessions(&mut g);
    let s = |name: &str| &sessions[SESSIONS.iter().position(|x| x.0 == name).unwrap_or(0)];
    for a in ACTIVITY {
        for i in 0..a.count {
            let c = &CLUSTERS[a.clusters[i as usize % a.clusters.len()]];
            let who = s(a.who[i as usize % a.who.len()]);
            let verb = if a.verbs.len() > 1 {
                *g.rng.pick(a.verbs)
            } else {
                a.verbs[0]
            };
            let res = if a.resources.len() > 1 {
                *g.rng.pick(a.resources)
            } else {
                a.resources[0]
            };
            g.kubectl(
                c,
                a.start + i * a.every,
                who,
                a.ip,
                verb,
                res,
                a.namespace,
                None,
            );
        }
    }
    ci_runs(&mut g);
    workloads(&mut g);
    trail_noise(&mut g, s("alice"));
    for a in ACTS {
        act(&mut g, a, s(a.who));
    }
    anonymous_secrets(&mut g);
    erin_probes(&mut g, s("erin"));
    eks_api_calls(
        &mut g,
        s("alice"),
        s("dave"),
        s("erin"),
        s("bob-breakglass"),
    );
    bad_input(&mut g);
    // prod-east's audit log is off from AUDIT_OFF_AT (EKS applies the change within a
    // minute): nothing it would have logged reaches the lake
    let off_group = format!("/aws/eks/{}/cluster", CLUSTERS[PROD_EAST].name);
    g.deliveries.retain(|d| {
        !(d.group == off_group
            && d.stream.starts_with("kube-apiserver-audit")
            && d.ts > AUDIT_OFF_AT + MIN)
    });
    pack(g.deliveries)
}

// ---- cluster access granted through the EKS API (CloudTrail, not the audit log) ---------

/// When bob switches prod-east's audit log off.
pub const AUDIT_OFF_AT: i64 = T0 + 7 * HOUR + 30 * MIN;
/// The role bob makes cluster admin: staging's deployer, which he can assume.
pub const BOB_ADMIN_ROLE: &str = "arn:aws:iam::333333333333:role/deployer";
/// The organisation's accounts (`AUDITLAKE_ORG_ACCOUNTS` of the demo).
pub const DEMO_ORG_ACCOUNTS: [&str; 4] = [MGMT, PROD, STAGING, TOOLS];

/// One EKS API call as the org trail logs it (the eks.amazonaws.com management event).
#[allow(clippy::too_many_arguments)]
fn eks_call(
    g: &mut Gen,
    at: i64,
    who: &Session,
    ip: &str,
    name: &str,
    params: Value,
    response: Value,
    error: Option<(&str, &str)>,
) {
    let id = g.rng.uuid();
    let req = g.rng.uuid();
    let mut e = json!({"eventVersion": "1.09", "userIdentity": Gen::assumed(who, None), "eventTime": iso_s(at),
        "eventSource": "eks.amazonaws.com", "eventName": name, "awsRegion": "us-east-1", "sourceIPAddress": ip,
        "userAgent": "aws-cli/2.22.10 md/command#eks", "requestParameters": params, "responseElements": response,
        "requestID": req, "eventID": id, "readOnly": false, "eventType": "AwsApiCall", "managementEvent": true,
        "recipientAccountId": who.account, "eventCategory": "Management"});
    if let Some((code, message)) = error {
        e["errorCode"] = json!(code);
        e["errorMessage"] = json!(message);
        e["responseElements"] = Value::Null;
    }
    let recipient = who.account.clone();
    g.trail(&recipient, e);
}

/// The URI member as CloudTrail logs it (percent-encoded).
fn uri_encoded(arn: &str) -> String {
    arn.replace(':', "%3A").replace('/', "%2F")
}

/// alice grants the platform team namespace admin (routine); dave lets a vendor role in
/// (outside the organisation); erin (read-only) tries to make herself cluster admin and
/// is denied; bob, on the break-glass session, makes a role he can assume cluster admin
/// and later turns prod-east's audit log off.
fn eks_api_calls(g: &mut Gen, alice: &Session, dave: &Session, erin: &Session, bob: &Session) {
    let cluster = CLUSTERS[PROD_EAST].name;
    let entry = |principal: &str, groups: Value| json!({"name": cluster, "principalArn": principal, "kubernetesGroups": groups, "type": "STANDARD"});
    let entry_response = |principal: &str| {
        json!({"accessEntry": {"clusterName": cluster, "principalArn": principal, "kubernetesGroups": [], "type": "STANDARD",
            "username": format!("{principal}/{{{{SessionName}}}}"),
            "accessEntryArn": format!("arn:aws:eks:us-east-1:{PROD}:access-entry/{cluster}/role/{}", principal.rsplit('/').next().unwrap_or(""))}})
    };
    let policy = |principal: &str, policy: &str, scope: Value| {
        json!({"name": cluster, "principalArn": uri_encoded(principal),
            "policyArn": format!("arn:aws:eks::aws:cluster-access-policy/{policy}"), "accessScope": scope})
    };
    let policy_response = |principal: &str, policy: &str, scope: Value| {
        json!({"clusterName": cluster, "principalArn": principal, "associatedAccessPolicy": {
            "policyArn": format!("arn:aws:eks::aws:cluster-access-policy/{policy}"), "accessScope": scope}})
    };
    let platform = format!("arn:aws:iam::{PROD}:role/platform-eng");
    let ns_scope = json!({"type": "namespace", "namespaces": ["payments"]});
    let t = T0 + HOUR + 20 * MIN;
    eks_call(
        g,
        t,
        alice,
        "198.51.100.24",
        "CreateAccessEntry",
        entry(&platform, json!([])),
        entry_response(&platform),
        None,
    );
    eks_call(
        g,
        t + MIN,
        alice,
        "198.51.100.24",
        "AssociateAccessPolicy",
        policy(&platform, "AmazonEKSAdminPolicy", ns_scope.clone()),
        policy_response(&platform, "AmazonEKSAdminPolicy", ns_scope),
        None,
    );
    let vendor = "arn:aws:iam::999900001111:role/vendor-support";
    eks_call(
        g,
        T0 + 2 * HOUR + 20 * MIN,
        dave,
        "198.51.100.31",
        "CreateAccessEntry",
        entry(vendor, json!(["vendor-readers"])),
        entry_response(vendor),
        None,
    );
    let erin_role = format!("arn:aws:iam::{PROD}:role/{}", erin.role);
    let cluster_scope = json!({"type": "cluster", "namespaces": []});
    eks_call(
        g,
        ERIN_PROBE.0 + 5 * MIN,
        erin,
        ERIN_PROBE.1,
        "AssociateAccessPolicy",
        policy(
            &erin_role,
            "AmazonEKSClusterAdminPolicy",
            cluster_scope.clone(),
        ),
        Value::Null,
        Some((
            "AccessDeniedException",
            "User is not authorized to perform: eks:AssociateAccessPolicy",
        )),
    );
    let t = T0 + 3 * HOUR + 30 * MIN;
    eks_call(
        g,
        t,
        bob,
        "198.51.100.77",
        "CreateAccessEntry",
        entry(BOB_ADMIN_ROLE, json!([])),
        entry_response(BOB_ADMIN_ROLE),
        None,
    );
    eks_call(
        g,
        t + MIN,
        bob,
        "198.51.100.77",
        "AssociateAccessPolicy",
        policy(
            BOB_ADMIN_ROLE,
            "AmazonEKSClusterAdminPolicy",
            cluster_scope.clone(),
        ),
        policy_response(BOB_ADMIN_ROLE, "AmazonEKSClusterAdminPolicy", cluster_scope),
        None,
    );
    let update_id = g.rng.uuid();
    eks_call(
        g,
        AUDIT_OFF_AT,
        bob,
        "198.51.100.77",
        "UpdateClusterConfig",
        json!({"name": cluster, "logging": {"clusterLogging": [{"types": ["audit", "authenticator"], "enabled": false}]}}),
        json!({"update": {"id": update_id, "status": "InProgress", "type": "LoggingUpdate",
            "params": [{"type": "ClusterLogging", "value": "{\"clusterLogging\":[{\"types\":[\"audit\",\"authenticator\"],\"enabled\":false}]}"}], "errors": []}}),
        None,
    );
}

/// Controllers, nodes, a service account and health probes every 5 minutes; and the
/// authenticator's own stream (counted, not rows).
fn background(g: &mut Gen, c: &Cluster) {
    let mut t = T0;
    while t < T0 + 8 * HOUR {
        for (user, verb, res, ns, name) in CONTROL_PLANE {
            let at = t + g.rng.below(30_000) as i64;
            let ns = (!ns.is_empty()).then_some(ns);
            let uri = match ns {
                Some(ns) => format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/{res}/{name}"),
                None => format!("/api/v1/{res}/{name}/status"),
            };
            let req = Req {
                verb,
                uri,
                resource: Some(res),
                namespace: ns,
                name: Some(name),
                code: 200,
                ..Default::default()
            };
            g.audit(
                c,
                at,
                json!({"username": user, "groups": ["system:authenticated"]}),
                "10.0.12.7",
                "kube-controller-manager/v1.31.2",
                req,
            );
        }
        let at = t + g.rng.below(30_000) as i64;
        g.audit(c, at, json!({"username": "system:serviceaccount:kube-system:aws-node", "uid": "6a7b8c9d", "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
            "extra": {"authentication.kubernetes.io/credential-id": ["JTI=3f2e1d0c"], "authentication.kubernetes.io/pod-name": ["aws-node-7xk2p"]}}),
            "10.0.12.7", "aws-node/v1.19.0", Req { verb: "list", uri: "/api/v1/pods?fieldSelector=spec.nodeName%3Dip-10-0-12-7.ec2.internal".into(), resource: Some("pods"), code: 200, ..Default::default() });
        for path in PROBES {
            let at = t + g.rng.below(60_000) as i64;
            g.audit(c, at, json!({"username": "system:anonymous", "groups": ["system:unauthenticated"]}), "10.0.0.2", "kube-probe/1.31",
                Req { verb: "get", uri: path.into(), code: 200, reason: "RBAC: allowed by ClusterRoleBinding \"system:public-info-viewer\" of ClusterRole \"system:public-info-viewer\" to Group \"system:unauthenticated\"".into(), ..Default::default() });
        }
        t += 5 * MIN;
    }
    for i in 0..20 {
        let at = T0 + i * 10 * MIN;
        let line = format!(
            "time=\"{}\" level=info msg=\"access granted\"",
            auditlake::synth::iso(at)
        );
        g.push_cluster_log(c, at, "authenticator-0a1b2c3d4e5f", line);
    }
}

/// Every session of [`SESSIONS`], in order (chained ones after their caller).
fn start_sessions(g: &mut Gen) -> Vec<Session> {
    let mut out: Vec<Session> = Vec::with_capacity(SESSIONS.len());
    for (_, at, start) in SESSIONS {
        let s = match start {
            Start::Saml {
                account,
                role_path,
                role,
                person,
                provider,
            } => g.saml_signin(*at, account, role_path, role, person, provider),
            Start::AssumeRole {
                caller,
                caller_account,
                account,
                role,
                session,
                source_identity,
                tag,
            } => {
                let caller = match caller {
                    Caller::IamUser(name) => Gen::iam_user(caller_account, name),
                    Caller::Chained(from) => {
                        let i = SESSIONS.iter().position(|x| x.0 == *from).unwrap_or(0);
                        Gen::assumed(&out[i], *source_identity)
                    }
                };
                g.assume_role(
                    *at,
                    caller,
                    caller_account,
                    account,
                    role,
                    session,
                    *source_identity,
                    tag,
                )
            }
            Start::NoTrail {
                key,
                account,
                role,
                session,
            } => Session {
                key: key.to_string(),
                account: account.to_string(),
                role: role.to_string(),
                session_name: session.to_string(),
                principal_id: format!("AROA{}", session.to_ascii_uppercase()),
            },
        };
        out.push(s);
    }
    out
}

fn ci_runs(g: &mut Gen) {
    for run in 0..CI_RUNS {
        let at = CI_FIRST + run * CI_EVERY;
        let wi = g.web_identity(at, TOOLS, "github-deployer", CI_SUBJECT);
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
            let c = &CLUSTERS[if i % 2 == 0 { PROD_EAST } else { PROD_WEST }];
            let user = Gen::aws_user(c, &ci, &["system:authenticated"]);
            let image =
                format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/payments-api:1.4.{run}");
            g.audit(c, at + 6 * MIN + i * 20_000, user, "203.0.113.40", "argocd-application-controller/v2.12", Req {
                verb: "patch", uri: "/apis/apps/v1/namespaces/payments/deployments/payments-api".into(), resource: Some("deployments"), api_group: Some("apps"),
                namespace: Some("payments"), name: Some("payments-api"), code: 200, level: "RequestResponse",
                request_object: Some(json!({"spec": {"template": {"spec": {"containers": [{"name": "api", "image": image}]}}}})),
                ..Default::default() });
        }
    }
}

// ---- workloads as principals --------------------------------------------------------------

/// A release job in ci-tools (IRSA, chained into prod), an operator pod on prod-west
/// (EKS Pod Identity) managing prod-east through an access entry, and a bastion
/// instance (EC2 instance profile).
const RELEASE_AT: i64 = T0 + 5 * HOUR + 40 * MIN;
const FLEET_POD: &str = "fleet-operator-7c9d8b6f4-x2k4q";
const BASTION: &str = "i-0b7e3c9a1f2d4e6a8";

fn workloads(g: &mut Gen) {
    // IRSA: the build pod's projected token -> tools' release-runner -> prod's release-deployer
    let provider = format!(
        "arn:aws:iam::{TOOLS}:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/{CI_TOOLS_ISSUER_ID}"
    );
    let runner = g.web_identity_from(
        RELEASE_AT,
        TOOLS,
        "release-runner",
        &provider,
        "system:serviceaccount:ci:release-runner",
        "botocore-session-1795181999",
        "IRSA",
    );
    let deployer = g.assume_role(
        RELEASE_AT + 10_000,
        Gen::assumed(&runner, None),
        TOOLS,
        PROD,
        "release-deployer",
        "release-1142",
        None,
        "REL",
    );
    let c = &CLUSTERS[PROD_EAST];
    for i in 0..3 {
        let user = Gen::aws_user(c, &deployer, &["system:authenticated"]);
        let image = format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/orders-api:2.8.{i}");
        // the first patch lands a minute after the STS call: pending at ingest
        g.audit(c, RELEASE_AT + MIN + i * 6 * MIN, user, "10.40.7.12", "tekton-pipelines-controller/v0.62 kubectl/v1.31.2", Req {
            verb: "patch", uri: "/apis/apps/v1/namespaces/orders/deployments/orders-api".into(), resource: Some("deployments"), api_group: Some("apps"),
            namespace: Some("orders"), name: Some("orders-api"), code: 200, level: "RequestResponse",
            request_object: Some(json!({"spec": {"template": {"spec": {"containers": [{"name": "api", "image": image}]}}}})),
            ..Default::default() });
    }

    // EKS Pod Identity on prod-west; the operator acts on prod-east through an access
    // entry (default username, only system:authenticated, rights in the reason)
    let cluster_arn = format!("arn:aws:eks:us-west-2:{PROD}:cluster/prod-west");
    let fleet = g.service_assume_role(
        T0 + HOUR,
        "pods.eks.amazonaws.com",
        PROD,
        "fleet-operator",
        "eks-prod-west-fleet-oper-5f0c2d8e-4b1a-4e7c-9a3d-2f6b8c1e0d47",
        &[
            ("eks-cluster-arn", &cluster_arn),
            ("eks-cluster-name", "prod-west"),
            ("kubernetes-namespace", "platform"),
            ("kubernetes-service-account", "fleet-operator"),
            ("kubernetes-pod-name", FLEET_POD),
            ("kubernetes-pod-uid", "8d2c6f1e-3a4b-4c5d-9e8f-7a6b5c4d3e2f"),
        ],
        "FLEET",
    );
    let reason = format!("EKS Access Policy: allowed by ClusterRoleBinding \"arn:aws:iam::{PROD}:role/fleet-operator+arn:aws:eks::aws:cluster-access-policy/AmazonEKSEditPolicy\" of ClusterRole \"arn:aws:eks::aws:cluster-access-policy/AmazonEKSEditPolicy\" to User \"arn:aws:sts::{PROD}:assumed-role/fleet-operator/{}\"", fleet.session_name);
    let mut t = T0 + HOUR + 10 * MIN;
    let mut n = 0;
    while t < T0 + 7 * HOUR {
        let user = Gen::aws_user(c, &fleet, &["system:authenticated"]);
        let replicas = 4 + n % 3;
        g.audit(
            c,
            t,
            user,
            "10.20.4.31",
            "fleet-operator/v0.9.3",
            Req {
                verb: "patch",
                uri: "/apis/apps/v1/namespaces/payments/deployments/payments-worker/scale".into(),
                resource: Some("deployments"),
                subresource: Some("scale"),
                api_group: Some("apps"),
                namespace: Some("payments"),
                name: Some("payments-worker"),
                code: 200,
                level: "RequestResponse",
                request_object: Some(json!({"spec": {"replicas": replicas}})),
                reason: reason.clone(),
                ..Default::default()
            },
        );
        t += 30 * MIN;
        n += 1;
    }

    // a bastion host's instance profile: kubectl from the instance itself
    let bastion = g.service_assume_role(
        T0 + 30 * MIN,
        "ec2.amazonaws.com",
        PROD,
        "bastion-host",
        BASTION,
        &[],
        "BAST",
    );
    for i in 0..12 {
        g.kubectl(
            c,
            T0 + 40 * MIN + i * 30 * MIN,
            &bastion,
            "10.0.3.15",
            "list",
            "pods",
            Some("payments"),
            None,
        );
    }
}

/// A denied AssumeRole (recorded, issues nothing) and unrelated CloudTrail traffic in
/// the trail's log group (skipped).
fn trail_noise(g: &mut Gen, alice: &Session) {
    g.sts_event(T0 + 6 * HOUR, "AssumeRole", TOOLS, Gen::iam_user(TOOLS, "mallory"),
        json!({"roleArn": "arn:aws:iam::222222222222:role/eks-breakglass", "roleSessionName": "mallory"}), Value::Null, None, Some("AccessDenied"));
    for i in 0..10 {
        g.trail(PROD, json!({"eventVersion": "1.08", "eventTime": iso_s(T0 + i * 40 * MIN), "eventSource": "eks.amazonaws.com", "eventName": "DescribeCluster", "readOnly": true,
            "eventID": format!("describe-{i}"), "recipientAccountId": PROD, "userIdentity": Gen::assumed(alice, None)}));
    }
}

fn act(g: &mut Gen, a: &Act, who: &Session) {
    let c = &CLUSTERS[a.cluster];
    let user = Gen::aws_user(c, who, &["system:authenticated"]);
    let audit_id = g.rng.uuid();
    for stage in a.stages {
        g.audit(
            c,
            a.at,
            user.clone(),
            a.ip,
            "kubectl/v1.31.2",
            Req {
                verb: a.verb,
                uri: a.uri.into(),
                resource: Some(a.resource),
                subresource: a.subresource,
                namespace: a.namespace,
                name: Some(a.name),
                api_group: a.api_group,
                code: a.code,
                stage,
                level: if a.request_object.is_some() {
                    "RequestResponse"
                } else {
                    ""
                },
                request_object: a.request_object.map(|f| f()),
                reason: a.reason.into(),
                audit_id: Some(audit_id.clone()),
                ..Default::default()
            },
        );
    }
}

fn anonymous_secrets(g: &mut Gen) {
    let (start, namespaces) = ANONYMOUS_SECRETS;
    for (i, ns) in namespaces.iter().enumerate() {
        for j in 0..5 {
            let ns: &'static str = ns;
            g.audit(&CLUSTERS[PROD_EAST], start + (i as i64 * 5 + j) * 10_000, json!({"username": "system:anonymous", "groups": ["system:unauthenticated"]}),
                "203.0.113.66", "curl/8.5.0", Req { verb: "list", uri: format!("/api/v1/namespaces/{ns}/secrets"), resource: Some("secrets"), namespace: Some(ns), code: 200,
                reason: "RBAC: allowed by ClusterRoleBinding \"anonymous-admin\" of ClusterRole \"cluster-admin\" to User \"system:anonymous\"".into(), ..Default::default() });
        }
    }
}

fn erin_probes(g: &mut Gen, erin: &Session) {
    let (start, ip) = ERIN_PROBE;
    let c = &CLUSTERS[PROD_WEST];
    for i in 0..60 {
        let res = *g
            .rng
            .pick(&["secrets", "clusterrolebindings", "pods", "serviceaccounts"]);
        let verb = *g.rng.pick(&["get", "list", "create", "delete"]);
        let user = Gen::aws_user(c, erin, &["system:authenticated"]);
        g.audit(
            c,
            start + i * 2_000,
            user,
            ip,
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
}

/// Bad input the lake must keep: one truncated and one invalid message.
fn bad_input(g: &mut Gen) {
    let stream = "kube-apiserver-audit-00000000000000000000000000000001";
    let big = format!("{{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",\"level\":\"RequestResponse\",\"auditID\":\"{}\",\"stage\":\"ResponseComplete\",\"requestURI\":\"/api/v1/namespaces/payments/configmaps\",\"verb\":\"create\",\"user\":{{\"username\":\"system:serviceaccount:ci:deployer\"}},\"requestObject\":{{\"data\":\"{}[Truncated...]",
        g.rng.uuid(), "x".repeat(2000));
    g.push_cluster_log(&CLUSTERS[CI_TOOLS], T0 + 7 * HOUR, stream, big);
    g.push_cluster_log(
        &CLUSTERS[CI_TOOLS],
        T0 + 7 * HOUR + 1000,
        stream,
        "\u{1b}[31mnot an audit event".into(),
    );
}
