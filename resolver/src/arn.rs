//! ARN helpers. IAM role ARNs may carry a path (`role/aws-reserved/sso.amazonaws.com/..`);
//! aws-iam-authenticator's `canonicalArn` and STS assumed-role ARNs never do, so every
//! comparison goes through [`normalize_role_arn`].
//! Docs: <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-arns>

/// The parts of an ARN we use: `arn:<partition>:<service>:<region>:<account>:<resource>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arn<'a> {
    pub partition: &'a str,
    pub service: &'a str,
    pub account: &'a str,
    pub resource: &'a str,
}

pub fn parse(arn: &str) -> Option<Arn<'_>> {
    let mut it = arn.splitn(6, ':');
    if it.next()? != "arn" {
        return None;
    }
    let partition = it.next()?;
    let service = it.next()?;
    let _region = it.next()?;
    let account = it.next()?;
    let resource = it.next()?;
    if !partition.starts_with("aws") {
        return None;
    }
    Some(Arn {
        partition,
        service,
        account,
        resource,
    })
}

/// What an IAM/STS principal ARN names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal<'a> {
    IamUser {
        account: &'a str,
        name: &'a str,
    },
    Root {
        account: &'a str,
    },
    /// `arn:aws:sts::<acct>:assumed-role/<role>/<session>`
    AssumedRole {
        partition: &'a str,
        account: &'a str,
        role: &'a str,
        session: &'a str,
    },
    Role {
        account: &'a str,
        name: &'a str,
    },
    FederatedUser {
        account: &'a str,
        name: &'a str,
    },
}

pub fn principal(arn: &str) -> Option<Principal<'_>> {
    let a = parse(arn)?;
    let account = a.account;
    match a.service {
        "iam" => {
            if a.resource == "root" {
                Some(Principal::Root { account })
            } else if let Some(rest) = a.resource.strip_prefix("user/") {
                Some(Principal::IamUser {
                    account,
                    name: rest.rsplit('/').next().unwrap_or(rest),
                })
            } else if let Some(rest) = a.resource.strip_prefix("role/") {
                Some(Principal::Role {
                    account,
                    name: rest.rsplit('/').next().unwrap_or(rest),
                })
            } else {
                None
            }
        }
        "sts" => {
            if let Some(rest) = a.resource.strip_prefix("assumed-role/") {
                let (role, session) = rest.split_once('/')?;
                Some(Principal::AssumedRole {
                    partition: a.partition,
                    account,
                    role,
                    session,
                })
            } else {
                a.resource
                    .strip_prefix("federated-user/")
                    .map(|name| Principal::FederatedUser { account, name })
            }
        }
        _ => None,
    }
}

/// `arn:aws:iam::A:role/path/Name` and `arn:aws:sts::A:assumed-role/Name/Session` both
/// become `arn:aws:iam::A:role/Name`. Anything else is returned unchanged.
pub fn normalize_role_arn(arn: &str) -> String {
    if let Some(a) = parse(arn) {
        let name = match a.service {
            "iam" => a
                .resource
                .strip_prefix("role/")
                .map(|r| r.rsplit('/').next().unwrap_or(r)),
            "sts" => a
                .resource
                .strip_prefix("assumed-role/")
                .and_then(|r| r.split('/').next()),
            _ => None,
        };
        if let Some(name) = name {
            return format!("arn:{}:iam::{}:role/{}", a.partition, a.account, name);
        }
    }
    arn.to_string()
}

/// `{{SessionName}}` in aws-iam-authenticator replaces only `@` with `-`.
pub fn munge_session_name(raw: &str) -> std::borrow::Cow<'_, str> {
    if raw.contains('@') {
        std::borrow::Cow::Owned(raw.replace('@', "-"))
    } else {
        std::borrow::Cow::Borrowed(raw)
    }
}

/// An EKS cluster name: 1-100 letters, digits, `-` and `_`, starting with a letter or
/// digit (<https://docs.aws.amazon.com/eks/latest/APIReference/API_CreateCluster.html>).
pub fn is_cluster_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 100
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
}

/// A 12-digit AWS account id.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_paths_and_assumed_roles() {
        let cases = [
            (
                "arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/us-east-1/AWSReservedSSO_Admin_0123",
                "arn:aws:iam::111122223333:role/AWSReservedSSO_Admin_0123",
            ),
            (
                "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Admin_0123/alice@example.com",
                "arn:aws:iam::111122223333:role/AWSReservedSSO_Admin_0123",
            ),
            ("arn:aws:iam::111122223333:role/eks-ops", "arn:aws:iam::111122223333:role/eks-ops"),
            ("arn:aws-cn:iam::111122223333:role/a/b/c", "arn:aws-cn:iam::111122223333:role/c"),
            ("not-an-arn", "not-an-arn"),
            ("arn:aws:iam::111122223333:user/jdoe", "arn:aws:iam::111122223333:user/jdoe"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_role_arn(input), want, "{input}");
        }
    }

    #[test]
    fn classifies_principals() {
        assert_eq!(
            principal("arn:aws:iam::111122223333:user/team/jdoe"),
            Some(Principal::IamUser {
                account: "111122223333",
                name: "jdoe"
            })
        );
        assert_eq!(
            principal("arn:aws:iam::111122223333:root"),
            Some(Principal::Root {
                account: "111122223333"
            })
        );
        assert_eq!(
            principal("arn:aws:sts::111122223333:assumed-role/ops/alice@x.com"),
            Some(Principal::AssumedRole {
                partition: "aws",
                account: "111122223333",
                role: "ops",
                session: "alice@x.com"
            })
        );
        assert_eq!(principal("arn:aws:s3:::bucket"), None);
        assert_eq!(principal("system:anonymous"), None);
    }

    #[test]
    fn munges_only_at_signs() {
        assert_eq!(munge_session_name("jdoe@example.com"), "jdoe-example.com");
        assert_eq!(munge_session_name("a.b_c=d,e"), "a.b_c=d,e");
    }
}
