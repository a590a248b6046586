//! Workloads as principals: the pod, instance or function behind a session that an AWS
//! service (not a person) started.
//!
//! - **EKS Pod Identity**: `sts:AssumeRole` called by `pods.eks.amazonaws.com`, with six
//!   session tags naming the cluster, namespace, service account and pod.
//!   Docs: <https://docs.aws.amazon.com/eks/latest/userguide/pod-id-abac.html>
//! - **IRSA**: `sts:AssumeRoleWithWebIdentity` whose provider is a cluster's OIDC issuer
//!   (`oidc.eks.<region>.amazonaws.com/id/<ID>`) and whose subject is
//!   `system:serviceaccount:<namespace>:<sa>`.
//!   Docs: <https://docs.aws.amazon.com/eks/latest/userguide/iam-roles-for-service-accounts.html>
//! - **EC2 instance profiles** (`ec2.amazonaws.com`, session name = instance id),
//!   **Lambda** (`lambda.amazonaws.com`, session name = function name) and **ECS tasks**
//!   (`ecs-tasks.amazonaws.com`, session name = task id).
//!
//! Only a trusted trail's record gets here (DESIGN 6), and a service-typed caller cannot
//! be forged inside it; names are still validated against each service's naming rules,
//! so a malformed value never becomes a principal name.

use std::collections::HashMap;

use crate::arn;
use crate::cloudtrail::{StsEventName, StsSession};
use crate::model::PrincipalType;

/// The service principal EKS Pod Identity assumes roles as.
pub const POD_IDENTITY_SERVICE: &str = "pods.eks.amazonaws.com";

/// Session tags EKS Pod Identity adds.
pub mod tag {
    pub const CLUSTER_ARN: &str = "eks-cluster-arn";
    pub const CLUSTER_NAME: &str = "eks-cluster-name";
    pub const NAMESPACE: &str = "kubernetes-namespace";
    pub const SERVICE_ACCOUNT: &str = "kubernetes-service-account";
    pub const POD_NAME: &str = "kubernetes-pod-name";
    pub const POD_UID: &str = "kubernetes-pod-uid";
}

/// What a service-started session names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub kind: PrincipalType,
    pub name: String,
    pub arn: Option<String>,
    pub account: Option<String>,
    pub cluster: Option<String>,
    pub pod: Option<String>,
}

/// A Kubernetes name: DNS-1123 subdomain characters, at most 253 bytes (namespaces are
/// labels of 63; a longer one fails the same check at the API server).
fn k8s_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

fn instance_id(s: &str) -> bool {
    s.strip_prefix("i-").is_some_and(|h| {
        (h.len() == 8 || h.len() == 17) && h.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Lambda function names and ECS task ids: letters, digits, `-` and `_`, at most 64.
fn service_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn role_account(s: &StsSession) -> Option<String> {
    s.role_arn
        .as_deref()
        .and_then(arn::parse)
        .map(|a| a.account.to_string())
}

/// The workload a session was issued for, if an AWS service started it for one: an
/// IRSA token's service account, or what the service's own `AssumeRole` names.
pub fn of(s: &StsSession, issuers: &IssuerClusters) -> Option<Workload> {
    match s.event_name {
        StsEventName::AssumeRoleWithWebIdentity => irsa(s, issuers),
        StsEventName::AssumeRole if s.caller_type.as_deref() == Some("AWSService") => {
            service_session(s, s.caller_user_name.as_deref().unwrap_or(""))
        }
        _ => None,
    }
}

/// The workload behind an `AssumeRole` an AWS service made (`service` = its
/// `invokedBy`); `None` for services that do not name one.
fn service_session(s: &StsSession, service: &str) -> Option<Workload> {
    let session = s.role_session_name.as_deref().unwrap_or("");
    let w = |kind, name: String| Workload {
        kind,
        name,
        arn: None,
        account: role_account(s),
        cluster: None,
        pod: None,
    };
    match service {
        POD_IDENTITY_SERVICE => pod_identity(s),
        "ec2.amazonaws.com" if instance_id(session) => {
            Some(w(PrincipalType::Ec2Instance, session.to_string()))
        }
        "lambda.amazonaws.com" if service_token(session) => {
            Some(w(PrincipalType::AwsService, format!("lambda:{session}")))
        }
        "ecs-tasks.amazonaws.com" if service_token(session) => {
            Some(w(PrincipalType::AwsService, format!("ecs:{session}")))
        }
        _ => None,
    }
}

/// The cluster name of an EKS cluster ARN (`arn:<p>:eks:<region>:<account>:cluster/<name>`).
fn cluster_arn_name(a: &str) -> Option<&str> {
    let p = arn::parse(a).filter(|p| p.service == "eks" && arn::is_account_id(p.account))?;
    p.resource
        .strip_prefix("cluster/")
        .filter(|n| arn::is_cluster_name(n))
}

fn pod_identity(s: &StsSession) -> Option<Workload> {
    let ns = s.tag(tag::NAMESPACE).filter(|v| k8s_name(v))?;
    let sa = s.tag(tag::SERVICE_ACCOUNT).filter(|v| k8s_name(v))?;
    let cluster_arn = s
        .tag(tag::CLUSTER_ARN)
        .filter(|a| cluster_arn_name(a).is_some());
    let cluster = s
        .tag(tag::CLUSTER_NAME)
        .filter(|c| arn::is_cluster_name(c))
        .or_else(|| cluster_arn.and_then(cluster_arn_name));
    Some(Workload {
        kind: PrincipalType::K8sWorkload,
        name: format!("{ns}:{sa}"),
        arn: cluster_arn.map(str::to_string),
        account: cluster_arn
            .and_then(arn::parse)
            .map(|a| a.account.to_string())
            .or_else(|| role_account(s)),
        cluster: cluster.map(str::to_string),
        pod: s
            .tag(tag::POD_NAME)
            .filter(|p| k8s_name(p))
            .map(str::to_string),
    })
}

/// The issuer id of an EKS cluster's OIDC provider, from the provider's ARN
/// (`arn:<p>:iam::<account>:oidc-provider/oidc.eks.<region>.amazonaws.com/id/<ID>`), its
/// URL (`https://oidc.eks.<region>.amazonaws.com/id/<ID>`) or the bare issuer. Nothing may
/// stand between the prefix and the host: IAM accepts providers with a path, and a
/// member account could otherwise register `https://evil.example/oidc.eks.../id/<ID>`.
pub fn eks_issuer_id(provider: &str) -> Option<&str> {
    let issuer = if provider.starts_with("arn:") {
        // IAM ARNs have no region
        let global = provider.split(':').nth(3) == Some("");
        let a = arn::parse(provider)
            .filter(|a| global && a.service == "iam" && arn::is_account_id(a.account))?;
        a.resource.strip_prefix("oidc-provider/")?
    } else {
        provider.strip_prefix("https://").unwrap_or(provider)
    };
    let (host, id) = issuer.split_once("/id/")?;
    let rest = host.strip_prefix("oidc.eks.")?;
    let region = rest
        .strip_suffix(".amazonaws.com")
        .or_else(|| rest.strip_suffix(".amazonaws.com.cn"))?;
    let ok_region = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_id = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric());
    (ok_region && ok_id).then_some(id)
}

/// The IRSA workload behind an `AssumeRoleWithWebIdentity`, if its token came from an
/// EKS cluster's issuer for a service account.
fn irsa(s: &StsSession, clusters: &IssuerClusters) -> Option<Workload> {
    let provider = s.web_identity_provider.as_deref()?;
    let id = eks_issuer_id(provider)?;
    let sa = s
        .web_identity_subject
        .as_deref()?
        .strip_prefix("system:serviceaccount:")?;
    let (ns, name) = sa.split_once(':')?;
    if !k8s_name(ns) || !k8s_name(name) {
        return None;
    }
    Some(Workload {
        kind: PrincipalType::K8sWorkload,
        name: sa.to_string(),
        arn: Some(provider.to_string()),
        account: role_account(s),
        cluster: clusters.get(id).map(str::to_string),
        pod: None,
    })
}

/// Which cluster each EKS OIDC issuer id belongs to (`AUDITLAKE_OIDC_CLUSTERS`): the
/// token of an IRSA session names its issuer, not its cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuerClusters(HashMap<String, String>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("issuer map entry {entry:?}: {what} (expected <issuer id or URL>=<cluster name>, comma-separated)")]
pub struct IssuerMapError {
    pub entry: String,
    pub what: &'static str,
}

impl IssuerClusters {
    /// Parse `ID=cluster,oidc.eks.us-east-1.amazonaws.com/id/ID2=other`.
    pub fn parse(spec: &str) -> Result<Self, IssuerMapError> {
        let mut m = HashMap::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let err = |what| IssuerMapError {
                entry: entry.to_string(),
                what,
            };
            let (issuer, cluster) = entry.split_once('=').ok_or_else(|| err("no '='"))?;
            let id = if issuer.contains("/id/") {
                eks_issuer_id(issuer).ok_or_else(|| err("not an EKS OIDC issuer"))?
            } else {
                issuer
            };
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(err("issuer id must be alphanumeric"));
            }
            if !crate::arn::is_cluster_name(cluster) {
                return Err(err("not a valid EKS cluster name"));
            }
            m.insert(id.to_ascii_uppercase(), cluster.to_string());
        }
        Ok(Self(m))
    }

    pub fn get(&self, issuer_id: &str) -> Option<&str> {
        self.0
            .get(&issuer_id.to_ascii_uppercase())
            .map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_ids_from_arns_and_urls() {
        let arn = "arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
        assert_eq!(eks_issuer_id(arn), Some("EXAMPLED539D4633E53DE1B71EXAMPLE"));
        assert_eq!(
            eks_issuer_id("https://oidc.eks.eu-west-1.amazonaws.com/id/ABC123"),
            Some("ABC123")
        );
        assert_eq!(
            eks_issuer_id("arn:aws:iam::1:oidc-provider/token.actions.githubusercontent.com"),
            None
        );
        assert_eq!(
            eks_issuer_id("https://evil.example/oidc.eks.x/id/ABC"),
            None
        );
        assert_eq!(
            eks_issuer_id("oidc.eks.us-east-1.amazonaws.com/id/AB/../C"),
            None
        );
    }

    #[test]
    fn issuer_map_parses_and_names_bad_entries() {
        let m = IssuerClusters::parse(
            "abc123=prod, oidc.eks.us-east-1.amazonaws.com/id/DEF456=staging",
        )
        .unwrap();
        assert_eq!(m.get("ABC123"), Some("prod"));
        assert_eq!(m.get("def456"), Some("staging"));
        assert_eq!(m.len(), 2);
        let e = IssuerClusters::parse("abc=prod,nocluster").unwrap_err();
        assert_eq!(e.entry, "nocluster");
        assert!(IssuerClusters::parse("a/b=prod").is_err());
        assert!(IssuerClusters::parse("abc=not a cluster").is_err());
        assert!(IssuerClusters::parse("").unwrap().is_empty());
    }

    #[test]
    fn service_names_are_validated() {
        assert!(instance_id("i-0abcd1234ef567890"));
        assert!(instance_id("i-0abc1234"));
        assert!(!instance_id("i-xyz"));
        assert!(!instance_id("alice@example.com"));
        assert!(service_token("orders-api_v2"));
        assert!(!service_token("a/b"));
        assert!(k8s_name("kube-system"));
        assert!(!k8s_name("Kube System"));
    }
}
