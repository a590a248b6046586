//! Where objects go: a local directory, S3, or memory (tests).
//!
//! One small async capability trait, [`ObjectStore`], with three implementations. Keys
//! are `/`-separated and relative to the lake root; every key the handler builds is
//! deterministic for a batch, so a retried batch overwrites instead of duplicating.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("{op} {location}: {message}")]
    Io {
        op: &'static str,
        location: String,
        message: String,
    },
    #[error("invalid object key {0:?}")]
    BadKey(String),
    #[error("invalid lake URI {uri:?}: {why}")]
    BadUri { uri: String, why: &'static str },
}

/// Put, get and list objects under a lake root.
pub trait ObjectStore: Send + Sync {
    fn put(&self, key: &str, body: Vec<u8>) -> impl Future<Output = Result<(), LakeError>> + Send;
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, LakeError>> + Send;
    /// Keys under `prefix` (recursive), sorted.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, LakeError>> + Send;
    /// Where a key lives, for messages (`/tmp/lake/x`, `s3://b/p/x`).
    fn locate(&self, key: &str) -> String;
}

/// Keys come partly from untrusted input (account, cluster); they are validated when
/// built, and checked again here so no key can leave the lake root.
fn check_key(key: &str) -> Result<(), LakeError> {
    if key.is_empty()
        || key.starts_with('/')
        || key
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        || key.contains('\\')
        || key.contains('\0')
    {
        return Err(LakeError::BadKey(key.to_string()));
    }
    Ok(())
}

/// A lake in a local directory.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
}

fn io_err(op: &'static str, p: &Path, e: std::io::Error) -> LakeError {
    LakeError::Io {
        op,
        location: p.display().to_string(),
        message: e.to_string(),
    }
}

impl ObjectStore for LocalDir {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), LakeError> {
        check_key(key)?;
        let path = self.root.join(key);
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(|e| io_err("create", dir, e))?;
        // write then rename: a reader never sees half a Parquet file
        let tmp = dir.join(format!(
            ".{}.tmp{}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("o"),
            std::process::id()
        ));
        std::fs::write(&tmp, &body).map_err(|e| io_err("write", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_err("rename", &path, e))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, LakeError> {
        check_key(key)?;
        let path = self.root.join(key);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &path, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, LakeError> {
        let base = self.root.join(prefix.trim_end_matches('/'));
        let mut out = Vec::new();
        let mut stack = vec![base];
        while let Some(dir) = stack.pop() {
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("list", &dir, e)),
            };
            for entry in rd {
                let entry = entry.map_err(|e| io_err("list", &dir, e))?;
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(rel) = p.strip_prefix(&self.root) {
                    let k = rel.to_string_lossy().replace('\\', "/");
                    if !k.rsplit('/').next().is_some_and(|n| n.starts_with('.')) {
                        out.push(k);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn locate(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }
}

/// An in-memory lake for tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
    /// When set, every put fails (to test that a failed write fails the invocation).
    pub fail_puts: std::sync::atomic::AtomicBool,
}

impl MemoryStore {
    pub fn keys(&self) -> Vec<String> {
        self.objects
            .lock()
            .expect("poisoned")
            .keys()
            .cloned()
            .collect()
    }
    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        self.objects.lock().expect("poisoned").get(key).cloned()
    }
}

impl ObjectStore for MemoryStore {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), LakeError> {
        check_key(key)?;
        if self.fail_puts.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(LakeError::Io {
                op: "put",
                location: format!("memory://{key}"),
                message: "injected failure".into(),
            });
        }
        self.objects
            .lock()
            .expect("poisoned")
            .insert(key.to_string(), body);
        Ok(())
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, LakeError> {
        Ok(self.objects.lock().expect("poisoned").get(key).cloned())
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, LakeError> {
        Ok(self
            .objects
            .lock()
            .expect("poisoned")
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
    fn locate(&self, key: &str) -> String {
        format!("memory://{key}")
    }
}

/// A lake in S3 (`s3://bucket/prefix`), through aws-sdk-s3 with the standard AWS
/// environment (`AWS_ENDPOINT_URL` included, for emulators).
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client, bucket: String, prefix: String) -> Self {
        let prefix = prefix.trim_matches('/').to_string();
        Self {
            client,
            bucket,
            prefix,
        }
    }

    /// Build a client from the environment. Path-style addressing when an endpoint
    /// override is set (emulators have no per-bucket host names).
    pub async fn from_env(bucket: String, prefix: String) -> Self {
        let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let path_style = std::env::var_os("AWS_ENDPOINT_URL").is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        let s3conf = aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(path_style)
            .build();
        Self::new(aws_sdk_s3::Client::from_conf(s3conf), bucket, prefix)
    }

    fn full(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{}", self.prefix, key)
        }
    }
}

fn sdk_err<E: std::error::Error>(op: &'static str, location: String, e: E) -> LakeError {
    // DisplayErrorContext prints the whole source chain (service code, dispatch failure)
    LakeError::Io {
        op,
        location,
        message: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
    }
}

impl ObjectStore for S3Store {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), LakeError> {
        check_key(key)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .body(body.into())
            .send()
            .await
            .map_err(|e| sdk_err("put", self.locate(key), e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, LakeError> {
        check_key(key)?;
        let r = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await;
        match r {
            Ok(o) => {
                let b = o
                    .body
                    .collect()
                    .await
                    .map_err(|e| sdk_err("read", self.locate(key), e))?;
                Ok(Some(b.into_bytes().to_vec()))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(sdk_err("get", self.locate(key), e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, LakeError> {
        let full = self.full(prefix);
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(full)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_err("list", self.locate(prefix), e))?;
            for o in page.contents() {
                if let Some(k) = o.key() {
                    out.push(k[strip.min(k.len())..].to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn locate(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.full(key))
    }
}

/// A lake URI: a local directory or `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakeUri {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl LakeUri {
    pub fn parse(uri: &str) -> Result<Self, LakeError> {
        let bad = |why| LakeError::BadUri {
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
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, LakeError> {
        match self {
            Lake::Local(l) => l.get(key).await,
            Lake::S3(s) => s.get(key).await,
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
    fn keys_cannot_escape_the_root() {
        for bad in ["", "/abs", "a/../b", "a//b", "./a", "a\\b", "a/.."] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
        assert!(check_key("eks_audit/dt=2024-11-26/111122223333/prod/part-1.parquet").is_ok());
    }

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

    #[tokio::test]
    async fn local_dir_roundtrip_and_list() {
        let dir = std::env::temp_dir().join(format!("lake-test-{}", std::process::id()));
        let l = LocalDir::new(&dir);
        l.put("a/b/c.bin", b"123".to_vec()).await.unwrap();
        l.put("a/d.bin", b"4".to_vec()).await.unwrap();
        assert_eq!(l.get("a/b/c.bin").await.unwrap().unwrap(), b"123");
        assert_eq!(l.get("a/none").await.unwrap(), None);
        assert_eq!(l.list("a/").await.unwrap(), vec!["a/b/c.bin", "a/d.bin"]);
        assert!(l.list("zzz/").await.unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
