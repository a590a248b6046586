//! Who an audit event says the user is, before any CloudTrail lookup.
//!
//! Inputs are the audit event's `user` fields as aws-iam-authenticator fills them:
//! `username` (possibly rendered from an aws-auth template), `groups`, and the `extra`
//! keys `arn`, `canonicalArn`, `sessionName`, `accessKeyId`, `principalId`.
//! Source: kubernetes-sigs/aws-iam-authenticator `pkg/server/server.go`.

use std::borrow::Cow;

use crate::arn::{self, Principal};
use crate::awsauth::AwsAuth;
use crate::model::PrincipalType;
pub use crate::model::{AwsExtra, Claims, Identity, RoleSession};

/// Classify an audit event's user. `aws_auth` reverses templated usernames.
pub fn classify<'a>(
    username: Option<&'a str>,
    unauthenticated: bool,
    extra: &AwsExtra<'a>,
    aws_auth: Option<&AwsAuth>,
) -> Identity<'a> {
    let user = username.unwrap_or("");
    if user == "system:anonymous" || unauthenticated {
        return Identity::Anonymous;
    }
    if let Some(sa) = user.strip_prefix("system:serviceaccount:") {
        return Identity::ServiceAccount { name: sa };
    }
    // Nodes and control-plane components authenticate through the same authenticator,
    // but their Kubernetes identity is what matters here.
    if user.starts_with("system:") || user.starts_with("eks:") {
        return Identity::K8sSystem;
    }
    if let Some(id) = extra.arn.and_then(|a| from_arn(a, extra)) {
        return id;
    }
    if let Some(id) = from_arn(user, extra) {
        return id;
    }
    if let Some(auth) = aws_auth {
        let reversed = auth.reverse(user);
        if let Some(key) = reversed.iter().find_map(|r| r.access_key_id.clone()) {
            return Identity::AccessKey {
                key: Cow::Owned(key),
                claims: Claims::from_extra(extra),
            };
        }
        let candidates: Vec<RoleSession<'a>> = reversed
            .into_iter()
            .filter_map(|r| {
                let (munged, raw) = match r.session {
                    Some(crate::awsauth::SessionPart::Munged(s)) => (s, None),
                    Some(crate::awsauth::SessionPart::Raw(s)) => (
                        arn::munge_session_name(&s).into_owned(),
                        Some(Cow::Owned(s)),
                    ),
                    None => return None,
                };
                Some(RoleSession {
                    role: r.role_arn,
                    munged: Cow::Owned(munged),
                    raw,
                })
            })
            .collect();
        if !candidates.is_empty() {
            return Identity::SessionName { candidates };
        }
    }
    Identity::Unknown
}

fn from_arn<'a>(a: &'a str, extra: &AwsExtra<'a>) -> Option<Identity<'a>> {
    Some(match arn::principal(a)? {
        Principal::IamUser { account, name } => Identity::Direct {
            kind: PrincipalType::IamUser,
            name: Cow::Borrowed(name),
            arn: a,
            account,
        },
        Principal::Root { account } => Identity::Direct {
            kind: PrincipalType::Root,
            name: Cow::Borrowed("root"),
            arn: a,
            account,
        },
        Principal::FederatedUser { account, name } => {
            if let Some(key) = extra.access_key_id.filter(|k| !k.is_empty()) {
                return Some(Identity::AccessKey {
                    key: Cow::Borrowed(key),
                    claims: Claims::from_extra(extra),
                });
            }
            Identity::Direct {
                kind: PrincipalType::FederatedUser,
                name: Cow::Borrowed(name),
                arn: a,
                account,
            }
        }
        Principal::AssumedRole {
            partition,
            account,
            role,
            session,
        } => {
            if let Some(key) = extra.access_key_id.filter(|k| !k.is_empty()) {
                return Some(Identity::AccessKey {
                    key: Cow::Borrowed(key),
                    claims: Claims::from_extra(extra),
                });
            }
            // The username renders {{SessionName}} ('@' -> '-'); extra.sessionName is raw.
            let raw = extra.session_name.filter(|s| !s.is_empty());
            let munged = match raw {
                Some(r) => arn::munge_session_name(r),
                None => arn::munge_session_name(session),
            };
            Identity::SessionName {
                candidates: vec![RoleSession {
                    role: format!("arn:{partition}:iam::{account}:role/{role}"),
                    munged,
                    raw: raw.map(Cow::Borrowed),
                }],
            }
        }
        Principal::Role { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c<'a>(user: &'a str, extra: AwsExtra<'a>) -> Identity<'a> {
        classify(Some(user), false, &extra, None)
    }

    #[test]
    fn kubernetes_identities() {
        assert_eq!(
            c("system:anonymous", AwsExtra::default()),
            Identity::Anonymous
        );
        assert_eq!(
            classify(Some("whoever"), true, &AwsExtra::default(), None),
            Identity::Anonymous
        );
        assert_eq!(
            c("system:serviceaccount:ci:deployer", AwsExtra::default()),
            Identity::ServiceAccount {
                name: "ci:deployer"
            }
        );
        assert_eq!(
            c("system:node:ip-10-0-1-2.ec2.internal", AwsExtra::default()),
            Identity::K8sSystem
        );
        assert_eq!(
            c("eks:addon-manager", AwsExtra::default()),
            Identity::K8sSystem
        );
        assert_eq!(c("oidc:alice", AwsExtra::default()), Identity::Unknown);
    }

    #[test]
    fn iam_user_is_direct_from_extra_or_username() {
        let arn = "arn:aws:iam::111122223333:user/jdoe";
        for id in [
            c(arn, AwsExtra::default()),
            c(
                "jdoe-mapped",
                AwsExtra {
                    arn: Some(arn),
                    ..Default::default()
                },
            ),
        ] {
            match id {
                Identity::Direct {
                    kind,
                    name,
                    account,
                    ..
                } => {
                    assert_eq!(kind, PrincipalType::IamUser);
                    assert_eq!(name, "jdoe");
                    assert_eq!(account, "111122223333");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn assumed_role_prefers_access_key() {
        let extra = AwsExtra {
            access_key_id: Some("ASIAEXAMPLE1"),
            arn: Some("arn:aws:sts::111122223333:assumed-role/ops/alice@example.com"),
            canonical_arn: Some("arn:aws:iam::111122223333:role/ops"),
            session_name: Some("alice@example.com"),
            principal_id: Some("AROA1"),
        };
        assert_eq!(
            c(
                "arn:aws:sts::111122223333:assumed-role/ops/alice-example.com",
                extra
            ),
            Identity::AccessKey {
                key: Cow::Borrowed("ASIAEXAMPLE1"),
                claims: Claims::from_extra(&extra),
            }
        );
    }

    #[test]
    fn assumed_role_without_key_matches_on_session_name() {
        // Older clusters: no extra at all; the username is the rendered template.
        let id = c(
            "arn:aws:sts::111122223333:assumed-role/ops/alice-example.com",
            AwsExtra::default(),
        );
        assert_eq!(
            id,
            Identity::SessionName {
                candidates: vec![RoleSession {
                    role: "arn:aws:iam::111122223333:role/ops".into(),
                    munged: Cow::Borrowed("alice-example.com"),
                    raw: None,
                }]
            }
        );
    }
}
