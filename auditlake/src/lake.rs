//! The lake a URI names: a local directory or S3, chosen once at start.

use std::path::PathBuf;

use transformer::lake::{ByteRange, LakeError, LocalDir, ObjectStore, Ranged};

use crate::s3::S3Store;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid lake URI {uri:?}: {why}")]
pub struct BadUri {
    pub uri: String,
    pub why: &'static str,
}

/// A lake URI: a local directory or `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakeUri {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl LakeUri {
    pub fn parse(uri: &str) -> Result<Self, BadUri> {
        let bad = |why| BadUri {
            uri: uri.to_string(),
            why,
        };
        if uri.is_empty() {
            return Err(bad("empty"));
        }
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let ok = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            if !ok {
                return Err(bad("not a valid S3 bucket name"));
            }
            return Ok(Self::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if uri.contains("://") {
            return Err(bad("only local directories and s3:// are supported"));
        }
        Ok(Self::Local(PathBuf::from(uri)))
    }
}

/// A lake of either kind, chosen at start from configuration.
#[derive(Debug, Clone)]
pub enum Lake {
    Local(LocalDir),
    S3(S3Store),
}

impl Lake {
    pub async fn open(uri: &LakeUri) -> Self {
        match uri {
            LakeUri::Local(p) => Lake::Local(LocalDir::new(p.clone())),
            LakeUri::S3 { bucket, prefix } => {
                Lake::S3(S3Store::from_env(bucket.clone(), prefix.clone()).await)
            }
        }
    }
}

impl ObjectStore for Lake {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), LakeError> {
        match self {
            Lake::Local(l) => l.put(key, body).await,
            Lake::S3(s) => s.put(key, body).await,
        }
    }
    async fn put_if_absent(&self, key: &str, body: Vec<u8>) -> Result<bool, LakeError> {
        match self {
            Lake::Local(l) => l.put_if_absent(key, body).await,
            Lake::S3(s) => s.put_if_absent(key, body).await,
        }
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, LakeError> {
        match self {
            Lake::Local(l) => l.get(key).await,
            Lake::S3(s) => s.get(key).await,
        }
    }
    async fn get_range(&self, key: &str, range: ByteRange) -> Result<Option<Ranged>, LakeError> {
        match self {
            Lake::Local(l) => l.get_range(key, range).await,
            Lake::S3(s) => s.get_range(key, range).await,
        }
    }
    async fn put_file(&self, key: &str, path: &std::path::Path) -> Result<(), LakeError> {
        match self {
            Lake::Local(l) => l.put_file(key, path).await,
            Lake::S3(s) => s.put_file(key, path).await,
        }
    }
    async fn delete(&self, key: &str) -> Result<(), LakeError> {
        match self {
            Lake::Local(l) => l.delete(key).await,
            Lake::S3(s) => s.delete(key).await,
        }
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, LakeError> {
        match self {
            Lake::Local(l) => l.list(prefix).await,
            Lake::S3(s) => s.list(prefix).await,
        }
    }
    fn locate(&self, key: &str) -> String {
        match self {
            Lake::Local(l) => l.locate(key),
            Lake::S3(s) => s.locate(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lake_uris() {
        assert_eq!(
            LakeUri::parse("s3://my-lake/audit/").unwrap(),
            LakeUri::S3 {
                bucket: "my-lake".into(),
                prefix: "audit".into()
            }
        );
        assert_eq!(
            LakeUri::parse("s3://my-lake").unwrap(),
            LakeUri::S3 {
                bucket: "my-lake".into(),
                prefix: "".into()
            }
        );
        assert_eq!(
            LakeUri::parse("./lake").unwrap(),
            LakeUri::Local("./lake".into())
        );
        assert!(LakeUri::parse("s3://UPPER/x").is_err());
        assert!(LakeUri::parse("gs://b/x").is_err());
        assert!(LakeUri::parse("").is_err());
    }
}
