//! aws-auth `mapRoles`: reversing templated usernames.
//!
//! Older clusters map roles to usernames such as `role:{{AccountID}}:staff:{{SessionName}}`
//! and log only the rendered username. Reversing the template recovers the role and the
//! session name (or the access key, with `{{AccessKeyID}}`).
//! Placeholders (aws-iam-authenticator `renderTemplate`): `{{AccountID}}`,
//! `{{SessionName}}` (`@` replaced by `-`), `{{SessionNameRaw}}`, `{{AccessKeyID}}`,
//! `{{EC2PrivateDNSName}}` (nodes; not reversible to a session, ignored).

use serde::Deserialize;

use crate::arn;

#[derive(Debug, thiserror::Error)]
pub enum AwsAuthError {
    #[error("aws-auth config {source_name}: not YAML: {message}")]
    Yaml {
        source_name: String,
        message: String,
    },
    #[error("aws-auth config {source_name}: no mapRoles entries found")]
    Empty { source_name: String },
    #[error("aws-auth config {source_name}: entry {index}: {what}")]
    Entry {
        source_name: String,
        index: usize,
        what: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
pub struct MapRole {
    pub rolearn: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Lit(String),
    AccountId,
    SessionName,
    SessionNameRaw,
    AccessKeyId,
}

#[derive(Debug, Clone)]
struct Template {
    role_arn: String,
    role_account: Option<String>,
    tokens: Vec<Token>,
}

/// The parsed `mapRoles` entries whose usernames can be reversed.
#[derive(Debug, Clone, Default)]
pub struct AwsAuth {
    templates: Vec<Template>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionPart {
    /// From `{{SessionName}}`: `@` already replaced by `-`.
    Munged(String),
    /// From `{{SessionNameRaw}}`.
    Raw(String),
}

/// One way a username reverses through a `mapRoles` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reversal {
    /// Normalised role ARN (no path).
    pub role_arn: String,
    pub session: Option<SessionPart>,
    pub access_key_id: Option<String>,
}

fn tokenize(t: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut rest = t;
    while !rest.is_empty() {
        let next = [
            "{{AccountID}}",
            "{{SessionNameRaw}}",
            "{{SessionName}}",
            "{{AccessKeyID}}",
        ]
        .iter()
        .filter_map(|p| rest.find(p).map(|i| (i, *p)))
        .min_by_key(|(i, p)| (*i, std::cmp::Reverse(p.len())));
        match next {
            Some((i, p)) => {
                if i > 0 {
                    out.push(Token::Lit(rest[..i].to_string()));
                }
                out.push(match p {
                    "{{AccountID}}" => Token::AccountId,
                    "{{SessionNameRaw}}" => Token::SessionNameRaw,
                    "{{SessionName}}" => Token::SessionName,
                    _ => Token::AccessKeyId,
                });
                rest = &rest[i + p.len()..];
            }
            None => {
                out.push(Token::Lit(rest.to_string()));
                rest = "";
            }
        }
    }
    out
}

/// Longest username that is reversed. A rendered template is a role's template with
/// an account id, a session name (at most 64 characters) or an access key id (at most
/// 128) filled in; anything much longer cannot be one, and a member account controls
/// the username, so matching work is capped here.
pub const MAX_USERNAME_BYTES: usize = 1024;

#[derive(Default, Clone)]
struct Captures {
    account: Option<String>,
    session: Option<SessionPart>,
    key: Option<String>,
}

/// Can the tokens be matched without backtracking? Every variable placeholder must be
/// followed by a literal or end the template (`{{SessionName}}{{AccessKeyID}}` cannot be
/// split reliably, so such entries are not reversed).
fn reversible(tokens: &[Token]) -> bool {
    tokens.windows(2).all(|w| {
        !matches!(
            w,
            [
                Token::SessionName | Token::SessionNameRaw | Token::AccessKeyId,
                Token::AccountId | Token::SessionName | Token::SessionNameRaw | Token::AccessKeyId
            ]
        )
    })
}

/// Match `s` against the tokens in one left-to-right pass: literals must match where
/// they stand, `{{AccountID}}` takes 12 ASCII digits, and a variable placeholder takes
/// the text up to the next occurrence of the literal after it (the whole rest when it
/// ends the template, and up to the suffix when that literal ends it). Linear in
/// `s.len()` times the template's token count; every split is at a character boundary
/// because it is at the start or end of a match of a UTF-8 literal (or of ASCII digits).
fn match_tokens(tokens: &[Token], s: &str) -> Option<Captures> {
    let mut caps = Captures::default();
    let mut pos = 0usize;
    for (i, tok) in tokens.iter().enumerate() {
        let rest = s.get(pos..)?;
        match tok {
            Token::Lit(l) => {
                if !rest.starts_with(l.as_str()) {
                    return None;
                }
                pos += l.len();
            }
            Token::AccountId => {
                let digits = rest.get(..12)?;
                if !arn::is_account_id(digits) {
                    return None;
                }
                caps.account = Some(digits.to_string());
                pos += 12;
            }
            var => {
                let len = match tokens.get(i + 1) {
                    None => rest.len(),
                    Some(Token::Lit(l)) if i + 2 == tokens.len() => {
                        rest.strip_suffix(l.as_str())?.len()
                    }
                    Some(Token::Lit(l)) => rest.find(l.as_str())?,
                    Some(_) => return None, // excluded by `reversible`
                };
                let v = rest.get(..len).filter(|v| !v.is_empty())?;
                match var {
                    Token::AccessKeyId => {
                        if !v
                            .bytes()
                            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
                        {
                            return None;
                        }
                        caps.key = Some(v.to_string());
                    }
                    // A rendered {{SessionName}} never contains '@'.
                    Token::SessionName if v.contains('@') => return None,
                    Token::SessionName => caps.session = Some(SessionPart::Munged(v.to_string())),
                    _ => caps.session = Some(SessionPart::Raw(v.to_string())),
                }
                pos += len;
            }
        }
    }
    (pos == s.len()).then_some(caps)
}

impl AwsAuth {
    /// Parse an aws-auth ConfigMap (YAML or JSON), a `{mapRoles: ...}` document, or a bare
    /// list of `mapRoles` entries. `source_name` names the file or object in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, AwsAuthError> {
        let yaml_err = |e: serde_yaml_ng::Error| AwsAuthError::Yaml {
            source_name: source_name.to_string(),
            message: e.to_string(),
        };
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum MapRolesField {
            Text(String),
            List(Vec<MapRole>),
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Data {
            map_roles: Option<MapRolesField>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Doc {
            List(Vec<MapRole>),
            ConfigMap { data: Data },
            Bare(Data),
        }
        let doc: Doc = serde_yaml_ng::from_str(text).map_err(yaml_err)?;
        let field = match doc {
            Doc::List(l) => Some(MapRolesField::List(l)),
            Doc::ConfigMap { data } | Doc::Bare(data) => data.map_roles,
        };
        let entries = match field {
            Some(MapRolesField::List(l)) => l,
            Some(MapRolesField::Text(t)) => serde_yaml_ng::from_str(&t).map_err(yaml_err)?,
            None => Vec::new(),
        };
        if entries.is_empty() {
            return Err(AwsAuthError::Empty {
                source_name: source_name.to_string(),
            });
        }
        Self::from_entries(entries, source_name)
    }

    pub fn from_entries(entries: Vec<MapRole>, source_name: &str) -> Result<Self, AwsAuthError> {
        let mut templates = Vec::new();
        for (index, e) in entries.into_iter().enumerate() {
            let Some(parsed) = arn::parse(&e.rolearn) else {
                return Err(AwsAuthError::Entry {
                    source_name: source_name.to_string(),
                    index,
                    what: format!("rolearn {:?} is not an ARN", e.rolearn),
                });
            };
            let Some(username) = e.username else { continue };
            if username.contains("{{EC2PrivateDNSName}}") {
                continue; // nodes: not a person's session
            }
            let tokens = tokenize(&username);
            if !reversible(&tokens) {
                continue;
            }
            templates.push(Template {
                role_account: Some(parsed.account.to_string()).filter(|a| arn::is_account_id(a)),
                role_arn: arn::normalize_role_arn(&e.rolearn),
                tokens,
            });
        }
        Ok(Self { templates })
    }

    pub fn len(&self) -> usize {
        self.templates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// Every entry a username could have been rendered from. Entries without a
    /// placeholder match only their literal username.
    /// Usernames longer than [`MAX_USERNAME_BYTES`] reverse to nothing.
    pub fn reverse(&self, username: &str) -> Vec<Reversal> {
        let mut out = Vec::new();
        if username.len() > MAX_USERNAME_BYTES {
            return out;
        }
        for t in &self.templates {
            let Some(c) = match_tokens(&t.tokens, username) else {
                continue;
            };
            if let (Some(a), Some(r)) = (&c.account, &t.role_account) {
                if a != r {
                    continue;
                }
            }
            let r = Reversal {
                role_arn: t.role_arn.clone(),
                session: c.session,
                access_key_id: c.key,
            };
            if !out.contains(&r) {
                out.push(r);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIGMAP: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: aws-auth
  namespace: kube-system
data:
  mapRoles: |
    - rolearn: arn:aws:iam::111122223333:role/staff
      username: role:{{AccountID}}:staff:{{SessionName}}
      groups: [developers]
    - rolearn: arn:aws:iam::111122223333:role/ci
      username: ci:{{AccessKeyID}}
    - rolearn: arn:aws:iam::111122223333:role/raw
      username: raw/{{SessionNameRaw}}
    - rolearn: arn:aws:iam::111122223333:role/NodeInstanceRole
      username: system:node:{{EC2PrivateDNSName}}
      groups: [system:bootstrappers, system:nodes]
"#;

    #[test]
    fn reverses_each_placeholder() {
        let a = AwsAuth::parse(CONFIGMAP, "test").unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(
            a.reverse("role:111122223333:staff:alice-example.com"),
            vec![Reversal {
                role_arn: "arn:aws:iam::111122223333:role/staff".into(),
                session: Some(SessionPart::Munged("alice-example.com".into())),
                access_key_id: None,
            }]
        );
        // wrong account: the role lives in 111122223333
        assert!(a.reverse("role:444455556666:staff:alice").is_empty());
        assert_eq!(
            a.reverse("ci:ASIAEXAMPLEKEY")[0].access_key_id.as_deref(),
            Some("ASIAEXAMPLEKEY")
        );
        assert_eq!(
            a.reverse("raw/bob@example.com")[0].session,
            Some(SessionPart::Raw("bob@example.com".into()))
        );
        assert!(a.reverse("someone-else").is_empty());
    }

    #[test]
    fn hostile_usernames_neither_panic_nor_take_long() {
        let a = AwsAuth::parse(CONFIGMAP, "test").unwrap();
        // a multi-byte character where the 12-digit account id would end
        assert!(a.reverse("role:12345678901\u{e9}:staff:x").is_empty());
        assert!(a.reverse("role:1234567890\u{e9}\u{e9}:staff:x").is_empty());
        assert!(a.reverse("ci:\u{e9}").is_empty());
        assert_eq!(
            a.reverse("raw/\u{e9}\u{1f600}")[0].session,
            Some(SessionPart::Raw("\u{e9}\u{1f600}".into()))
        );
        // 200 KB: over the cap, nothing is matched
        let long = format!("role:111122223333:staff:{}", "x".repeat(200_000));
        assert!(a.reverse(&long).is_empty());
        // just under the cap: matched in one pass
        let ok = format!(
            "role:111122223333:staff:{}",
            "x".repeat(MAX_USERNAME_BYTES - 30)
        );
        assert_eq!(a.reverse(&ok).len(), 1);
        // every prefix of a mixed multi-byte string: no panic, whatever matches
        let tricky = "role:111122223333:staff:\u{e9}@\u{1f600}:ci:AKIA\u{e9}raw/";
        for (i, _) in tricky.char_indices() {
            let _ = a.reverse(&tricky[..i]);
        }
    }

    #[test]
    fn templates_are_matched_at_the_first_literal_and_anchored_at_the_last() {
        let a = AwsAuth::parse(
            "- rolearn: arn:aws:iam::111122223333:role/x\n  username: \"u:{{SessionName}}:end\"\n\
             - rolearn: arn:aws:iam::111122223333:role/y\n  username: \"{{SessionNameRaw}}{{AccessKeyID}}\"\n",
            "t",
        )
        .unwrap();
        // the entry with two adjacent placeholders cannot be reversed and is left out
        assert_eq!(a.len(), 1);
        assert_eq!(
            a.reverse("u:a:end:b:end")[0].session,
            Some(SessionPart::Munged("a:end:b".into()))
        );
        assert!(a.reverse("u::end").is_empty());
    }

    #[test]
    fn accepts_a_bare_list_and_rejects_garbage() {
        let a = AwsAuth::parse(
            "- rolearn: arn:aws:iam::111122223333:role/x\n  username: x:{{SessionName}}\n",
            "list",
        )
        .unwrap();
        assert_eq!(a.len(), 1);
        assert!(matches!(
            AwsAuth::parse("{{{", "bad"),
            Err(AwsAuthError::Yaml { .. })
        ));
        assert!(matches!(
            AwsAuth::parse("foo: bar\n", "empty"),
            Err(AwsAuthError::Empty { .. })
        ));
        assert!(matches!(
            AwsAuth::parse("- rolearn: nope\n  username: x\n", "e"),
            Err(AwsAuthError::Entry { index: 0, .. })
        ));
    }
}
