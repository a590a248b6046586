//! The identity model shared by classification ([`crate::identity`]) and attribution
//! ([`crate::attribute`]): what an audit event says about its user, and the attribution
//! columns it ends with. Kept apart so neither stage imports the other.

use std::borrow::Cow;

macro_rules! str_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

str_enum!(
    /// `principal_type`
    PrincipalType {
        IamUser => "iam_user",
        SamlUser => "saml_user",
        IdentityCenterUser => "identity_center_user",
        WebIdentity => "web_identity",
        FederatedUser => "federated_user",
        AwsService => "aws_service",
        Root => "root",
        AssumedRole => "assumed_role",
        Anonymous => "anonymous",
        K8sServiceAccount => "k8s_service_account",
        // a pod acting through AWS (EKS Pod Identity, IRSA), named `<namespace>:<sa>`
        K8sWorkload => "k8s_workload",
        // an EC2 instance profile session, named by instance id
        Ec2Instance => "ec2_instance",
        K8sSystem => "k8s_system",
        Unknown => "unknown",
    }
);

str_enum!(
    /// `attribution_method`
    AttributionMethod {
        AccessKey => "access_key",
        SessionName => "session_name",
        Direct => "direct",
        None => "none",
    }
);

str_enum!(
    /// `attribution_status`
    AttributionStatus {
        Resolved => "resolved",
        Pending => "pending",
        Ambiguous => "ambiguous",
        Conflict => "conflict",
        NotApplicable => "not_applicable",
    }
);

/// The attribution columns of one `eks_audit` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution<'a> {
    pub principal_type: PrincipalType,
    pub principal_name: Option<Cow<'a, str>>,
    pub principal_arn: Option<Cow<'a, str>>,
    pub principal_account_id: Option<Cow<'a, str>>,
    pub source_identity: Option<Cow<'a, str>>,
    pub role_chain: Vec<Cow<'a, str>>,
    pub method: AttributionMethod,
    pub status: AttributionStatus,
    /// Workloads: the EKS cluster the pod runs in (Pod Identity tags; IRSA issuer map).
    pub principal_cluster: Option<Cow<'a, str>>,
    /// Workloads: the pod (Pod Identity's `kubernetes-pod-name` tag).
    pub principal_pod: Option<Cow<'a, str>>,
    /// The IAM Identity Center user id (`userIdentity.onBehalfOf.userId`), to join with
    /// the identity store.
    pub principal_user_id: Option<Cow<'a, str>>,
}

impl<'a> Attribution<'a> {
    pub(crate) fn bare(
        t: PrincipalType,
        method: AttributionMethod,
        status: AttributionStatus,
    ) -> Self {
        Self {
            principal_type: t,
            principal_name: None,
            principal_arn: None,
            principal_account_id: None,
            source_identity: None,
            role_chain: Vec::new(),
            method,
            status,
            principal_cluster: None,
            principal_pod: None,
            principal_user_id: None,
        }
    }

    /// The same attribution with every borrowed value copied.
    pub fn into_owned(self) -> Attribution<'static> {
        let o = |c: Option<Cow<'_, str>>| c.map(|c| Cow::Owned(c.into_owned()));
        Attribution {
            principal_type: self.principal_type,
            principal_name: o(self.principal_name),
            principal_arn: o(self.principal_arn),
            principal_account_id: o(self.principal_account_id),
            source_identity: o(self.source_identity),
            role_chain: self
                .role_chain
                .into_iter()
                .map(|c| Cow::Owned(c.into_owned()))
                .collect(),
            method: self.method,
            status: self.status,
            principal_cluster: o(self.principal_cluster),
            principal_pod: o(self.principal_pod),
            principal_user_id: o(self.principal_user_id),
        }
    }

    pub fn pending(method: AttributionMethod) -> Self {
        Self::bare(
            PrincipalType::AssumedRole,
            method,
            AttributionStatus::Pending,
        )
    }

    /// The same principal (who), ignoring how it was found.
    pub(crate) fn same_origin(&self, o: &Attribution<'_>) -> bool {
        self.status == AttributionStatus::Resolved
            && o.status == AttributionStatus::Resolved
            && self.principal_type == o.principal_type
            && self.principal_name == o.principal_name
            && self.principal_arn == o.principal_arn
            && self.principal_account_id == o.principal_account_id
            && self.principal_cluster == o.principal_cluster
            && self.principal_user_id == o.principal_user_id
    }
}

/// The aws-iam-authenticator `user.extra` values (first element of each array).
#[derive(Debug, Default, Clone, Copy)]
pub struct AwsExtra<'a> {
    pub access_key_id: Option<&'a str>,
    pub arn: Option<&'a str>,
    pub canonical_arn: Option<&'a str>,
    pub session_name: Option<&'a str>,
    pub principal_id: Option<&'a str>,
}

/// A (role, session name) pair to match against STS sessions; the session name is in
/// `{{SessionName}}` form (`@` replaced by `-`). `raw` is the exact session name when the
/// event carries it, used to narrow candidates that only differ by `@`/`-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSession<'a> {
    pub role: String,
    pub munged: Cow<'a, str>,
    pub raw: Option<Cow<'a, str>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity<'a> {
    Anonymous,
    ServiceAccount {
        name: &'a str,
    },
    K8sSystem,
    /// IAM user, root or federated user named by its ARN: no lookup needed.
    Direct {
        kind: PrincipalType,
        name: Cow<'a, str>,
        arn: &'a str,
        account: &'a str,
    },
    /// An assumed-role session identified by the access key in the presigned token.
    /// `claims`: the principal the event itself names; the key's session must match it.
    AccessKey {
        key: Cow<'a, str>,
        claims: Claims<'a>,
    },
    /// An assumed-role session known only by role and session name (older clusters,
    /// aws-auth templates). Several candidates when more than one template matched.
    SessionName {
        candidates: Vec<RoleSession<'a>>,
    },
    /// Not an AWS identity we can attribute (OIDC, x509, unmatched template).
    Unknown,
}

/// A role (or federated user) an audit event names for its session, from
/// `extra.canonicalArn` or `extra.arn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim<'a> {
    pub account: &'a str,
    /// Role name (no path) or federated user name.
    pub name: &'a str,
    pub federated: bool,
}

impl Claim<'_> {
    /// Accounts compare exactly; IAM names are unique regardless of case.
    pub fn matches(&self, account: &str, name: &str, federated: bool) -> bool {
        self.federated == federated
            && self.account == account
            && self.name.eq_ignore_ascii_case(name)
    }
}

/// What an event with an access key claims about the key's session. A member account
/// controls the event body, so a key only resolves to a person if the session it names
/// is of the role the event says it is (DESIGN 6).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims<'a> {
    pub arn: Option<Claim<'a>>,
    pub canonical_arn: Option<Claim<'a>>,
}

impl<'a> Claims<'a> {
    pub fn from_extra(extra: &AwsExtra<'a>) -> Self {
        Self {
            arn: extra.arn.and_then(claim_of),
            canonical_arn: extra.canonical_arn.and_then(claim_of),
        }
    }

    /// Does a session of (account, name, federated) satisfy every claim made?
    pub fn satisfied_by(&self, account: &str, name: &str, federated: bool) -> bool {
        [&self.arn, &self.canonical_arn]
            .into_iter()
            .flatten()
            .all(|c| c.matches(account, name, federated))
    }
}

fn claim_of(arn: &str) -> Option<Claim<'_>> {
    use crate::arn::Principal;
    Some(match crate::arn::principal(arn)? {
        Principal::AssumedRole { account, role, .. } => Claim {
            account,
            name: role,
            federated: false,
        },
        Principal::Role { account, name } => Claim {
            account,
            name,
            federated: false,
        },
        Principal::FederatedUser { account, name } => Claim {
            account,
            name,
            federated: true,
        },
        _ => return None,
    })
}
