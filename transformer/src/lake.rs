//! Where objects go: a local directory, S3, or memory (tests).
//!
//! One small async capability trait, [`ObjectStore`]: a local directory and memory here,
//! S3 in the `auditlake` shell crate; all pass the same contract tests. Keys
//! are `/`-separated and relative to the lake root; every key the handler builds is
//! deterministic for a batch, so a retried batch overwrites instead of duplicating.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What an object-store call was doing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LakeOp {
    Put,
    Get,
    List,
    Delete,
}

impl std::fmt::Display for LakeOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Put => "put",
            Self::Get => "get",
            Self::List => "list",
            Self::Delete => "delete",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("{op} {location}: {source}")]
    Io {
        op: LakeOp,
        location: String,
        #[source]
        source: std::io::Error,
    },
    /// A remote store (S3) refused or failed; `source` is the SDK's error.
    #[error("{op} {location}: {message}")]
    Service {
        op: LakeOp,
        location: String,
        /// One line for people (service, operation, error code).
        message: String,
        /// Worth retrying: throttling, a 5xx, a network failure. Not: a missing bucket,
        /// access denied, a malformed request.
        retryable: bool,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("invalid object key {0:?}")]
    BadKey(String),
}

impl LakeError {
    /// Would the same request succeed later? Local I/O and unknown failures: yes.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Service { retryable, .. } => *retryable,
            Self::BadKey(_) => false,
            Self::Io { .. } => true,
        }
    }
}

/// Which bytes of an object to read: the last `n`, or `start..end` (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    Suffix(u64),
    Span { start: u64, end: u64 },
}

/// Bytes read from an object, and the object's whole size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranged {
    pub bytes: Vec<u8>,
    pub total: u64,
}

impl ByteRange {
    /// The offsets this range selects of an object of `total` bytes (clamped).
    pub fn clamp(self, total: u64) -> (u64, u64) {
        match self {
            Self::Suffix(n) => (total.saturating_sub(n), total),
            Self::Span { start, end } => (start.min(total), end.min(total).max(start.min(total))),
        }
    }
}

/// Put, get, list and delete objects under a lake root.
pub trait ObjectStore: Send + Sync {
    fn put(&self, key: &str, body: Vec<u8>) -> impl Future<Output = Result<(), LakeError>> + Send;
    /// Create `key` only if no object has it: `Ok(true)` when written, `Ok(false)` when
    /// an object already exists (it is left as it is). S3: `If-None-Match: *`.
    fn put_if_absent(
        &self,
        key: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<bool, LakeError>> + Send;
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, LakeError>> + Send;
    /// Part of an object (Parquet footers and row groups, so compaction never holds a
    /// whole large file), with the object's size; `None` when there is no such object.
    fn get_range(
        &self,
        key: &str,
        range: ByteRange,
    ) -> impl Future<Output = Result<Option<Ranged>, LakeError>> + Send;
    /// Upload a local file as `key` (streamed from disk, whole or not at all).
    fn put_file(
        &self,
        key: &str,
        path: &Path,
    ) -> impl Future<Output = Result<(), LakeError>> + Send;
    /// Remove `key`; removing a missing object is not an error.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), LakeError>> + Send;
    /// Keys under `prefix` (recursive), sorted.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, LakeError>> + Send;
    /// Where a key lives, for messages (`/tmp/lake/x`, `s3://b/p/x`).
    fn locate(&self, key: &str) -> String;
}

/// Keys come partly from untrusted input (account, cluster); they are validated when
/// built, and checked again here so no key can leave the lake root.
pub fn check_key(key: &str) -> Result<(), LakeError> {
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

fn io_err(op: LakeOp, p: &Path, source: std::io::Error) -> LakeError {
    LakeError::Io {
        op,
        location: p.display().to_string(),
        source,
    }
}

impl LocalDir {
    /// `key`'s path and a fresh temporary name beside it (unique per process and call,
    /// so concurrent writers never share one), its folder created.
    fn beside(&self, key: &str) -> Result<(PathBuf, PathBuf), LakeError> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        check_key(key)?;
        let path = self.root.join(key);
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(|e| io_err(LakeOp::Put, dir, e))?;
        let tmp = dir.join(format!(
            ".{}.tmp{}-{}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("o"),
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        Ok((path, tmp))
    }

    /// Write `body` to a temporary file beside `key`'s path; returns (path, temporary).
    fn write_beside(&self, key: &str, body: &[u8]) -> Result<(PathBuf, PathBuf), LakeError> {
        let (path, tmp) = self.beside(key)?;
        std::fs::write(&tmp, body).map_err(|e| io_err(LakeOp::Put, &tmp, e))?;
        Ok((path, tmp))
    }
}

impl ObjectStore for LocalDir {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), LakeError> {
        // write then rename: a reader never sees half a Parquet file
        let (path, tmp) = self.write_beside(key, &body)?;
        std::fs::rename(&tmp, &path).map_err(|e| io_err(LakeOp::Put, &path, e))
    }

    async fn put_if_absent(&self, key: &str, body: Vec<u8>) -> Result<bool, LakeError> {
        let (path, tmp) = self.write_beside(key, &body)?;
        // a hard link fails if the name exists: atomic create-if-absent, and a reader
        // never sees a half-written object
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_err(LakeOp::Put, &path, e)),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, LakeError> {
        check_key(key)?;
        let path = self.root.join(key);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(LakeOp::Get, &path, e)),
        }
    }

    async fn get_range(&self, key: &str, range: ByteRange) -> Result<Option<Ranged>, LakeError> {
        use std::io::{Read, Seek, SeekFrom};
        check_key(key)?;
        let path = self.root.join(key);
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(LakeOp::Get, &path, e)),
        };
        let total = f
            .metadata()
            .map_err(|e| io_err(LakeOp::Get, &path, e))?
            .len();
        let (start, end) = range.clamp(total);
        let mut bytes = vec![0; (end - start) as usize];
        f.seek(SeekFrom::Start(start))
            .and_then(|_| f.read_exact(&mut bytes))
            .map_err(|e| io_err(LakeOp::Get, &path, e))?;
        Ok(Some(Ranged { bytes, total }))
    }

    async fn put_file(&self, key: &str, from: &Path) -> Result<(), LakeError> {
        let (path, tmp) = self.beside(key)?;
        let copied = std::fs::copy(from, &tmp)
            .map_err(|e| io_err(LakeOp::Put, from, e))
            .and_then(|_| std::fs::rename(&tmp, &path).map_err(|e| io_err(LakeOp::Put, &path, e)));
        if copied.is_err() {
            // a failed upload leaves no temporary behind
            let _ = std::fs::remove_file(&tmp);
        }
        copied
    }

    async fn delete(&self, key: &str) -> Result<(), LakeError> {
        check_key(key)?;
        let path = self.root.join(key);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(LakeOp::Delete, &path, e)),
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
                Err(e) => return Err(io_err(LakeOp::List, &dir, e)),
            };
            for entry in rd {
                let entry = entry.map_err(|e| io_err(LakeOp::List, &dir, e))?;
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
    /// A valid key, and no injected failure.
    fn writable(&self, key: &str) -> Result<(), LakeError> {
        check_key(key)?;
        if self.fail_puts.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(LakeError::Io {
                op: LakeOp::Put,
                location: format!("memory://{key}"),
                source: std::io::Error::other("injected failure"),
            });
        }
        Ok(())
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.objects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    pub fn keys(&self) -> Vec<String> {
        self.map().keys().cloned().collect()
    }
    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        self.map().get(key).cloned()
    }
}

impl ObjectStore for MemoryStore {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), LakeError> {
        self.writable(key)?;
        self.map().insert(key.to_string(), body);
        Ok(())
    }
    async fn put_if_absent(&self, key: &str, body: Vec<u8>) -> Result<bool, LakeError> {
        self.writable(key)?;
        match self.map().entry(key.to_string()) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(body);
                Ok(true)
            }
            std::collections::btree_map::Entry::Occupied(_) => Ok(false),
        }
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, LakeError> {
        Ok(self.map().get(key).cloned())
    }
    async fn get_range(&self, key: &str, range: ByteRange) -> Result<Option<Ranged>, LakeError> {
        check_key(key)?;
        Ok(self.map().get(key).map(|b| {
            let (start, end) = range.clamp(b.len() as u64);
            Ranged {
                bytes: b[start as usize..end as usize].to_vec(),
                total: b.len() as u64,
            }
        }))
    }
    async fn put_file(&self, key: &str, from: &Path) -> Result<(), LakeError> {
        self.writable(key)?;
        let body = std::fs::read(from).map_err(|e| io_err(LakeOp::Put, from, e))?;
        self.map().insert(key.to_string(), body);
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), LakeError> {
        self.writable(key)?;
        self.map().remove(key);
        Ok(())
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, LakeError> {
        Ok(self
            .map()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
    fn locate(&self, key: &str) -> String {
        format!("memory://{key}")
    }
}

/// The contract every [`ObjectStore`] keeps, run against each implementation (here for
/// memory and a local directory, in the `auditlake` crate for S3 on an emulator).
/// Panics with the broken rule.
pub async fn contract<O: ObjectStore>(store: &O) {
    let k = |n: &str| format!("contract/{n}");
    assert_eq!(
        store.get(&k("absent")).await.unwrap(),
        None,
        "get of a missing key"
    );
    store.put(&k("a/one.bin"), b"1".to_vec()).await.unwrap();
    store.put(&k("a/one.bin"), b"one".to_vec()).await.unwrap();
    assert_eq!(
        store.get(&k("a/one.bin")).await.unwrap().as_deref(),
        Some(&b"one"[..]),
        "put overwrites"
    );
    assert!(
        store
            .put_if_absent(&k("b/new.bin"), b"first".to_vec())
            .await
            .unwrap(),
        "create"
    );
    assert!(
        !store
            .put_if_absent(&k("b/new.bin"), b"second".to_vec())
            .await
            .unwrap(),
        "exists"
    );
    assert_eq!(
        store.get(&k("b/new.bin")).await.unwrap().as_deref(),
        Some(&b"first"[..]),
        "put_if_absent never replaces"
    );
    store.put(&k("a/two.bin"), Vec::new()).await.unwrap();
    assert_eq!(
        store.list(&k("a/")).await.unwrap(),
        vec![k("a/one.bin"), k("a/two.bin")],
        "list is recursive, sorted, and sees only that prefix"
    );
    assert!(store.list(&k("zzz/")).await.unwrap().is_empty());

    store
        .put(&k("r/digits"), b"0123456789".to_vec())
        .await
        .unwrap();
    let r = |range| async move { store.get_range(&k("r/digits"), range).await.unwrap() };
    let got = r(ByteRange::Suffix(4)).await.unwrap();
    assert_eq!(
        (&got.bytes[..], got.total),
        (&b"6789"[..], 10),
        "suffix range"
    );
    let got = r(ByteRange::Span { start: 2, end: 5 }).await.unwrap();
    assert_eq!((&got.bytes[..], got.total), (&b"234"[..], 10), "span");
    let got = r(ByteRange::Suffix(64)).await.unwrap();
    assert_eq!(
        &got.bytes[..],
        b"0123456789",
        "a suffix longer than the object"
    );
    assert_eq!(
        store
            .get_range(&k("absent"), ByteRange::Suffix(8))
            .await
            .unwrap(),
        None
    );

    let src = std::env::temp_dir().join(format!(
        "lake-contract-upload-{}-{:p}",
        std::process::id(),
        store
    ));
    std::fs::write(&src, b"from a file").unwrap();
    store.put_file(&k("f/up.bin"), &src).await.unwrap();
    std::fs::remove_file(&src).unwrap();
    assert_eq!(
        store.get(&k("f/up.bin")).await.unwrap().as_deref(),
        Some(&b"from a file"[..]),
        "put_file uploads the file"
    );
    store.delete(&k("f/up.bin")).await.unwrap();
    assert_eq!(store.get(&k("f/up.bin")).await.unwrap(), None, "deleted");
    store.delete(&k("f/up.bin")).await.unwrap();
    assert!(
        !store.list(&k("")).await.unwrap().contains(&k("f/up.bin")),
        "a deleted key is not listed"
    );
    for bad in ["../escape", "/abs", "a//b"] {
        assert!(
            matches!(store.put(bad, vec![]).await, Err(LakeError::BadKey(_))),
            "{bad}"
        );
        assert!(
            matches!(
                store.put_if_absent(bad, vec![]).await,
                Err(LakeError::BadKey(_))
            ),
            "{bad}"
        );
        assert!(
            matches!(store.delete(bad).await, Err(LakeError::BadKey(_))),
            "{bad}"
        );
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
    fn every_store_keeps_the_contract() {
        futures::executor::block_on(contract(&MemoryStore::default()));
        let dir = std::env::temp_dir().join(format!("lake-contract-{}", std::process::id()));
        futures::executor::block_on(contract(&LocalDir::new(&dir)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn local_dir_roundtrip_and_list() {
        futures::executor::block_on(local_dir_roundtrip());
    }

    async fn local_dir_roundtrip() {
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
