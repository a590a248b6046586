//! The lake in S3 (aws-sdk-s3): the AWS implementation of `transformer::lake::ObjectStore`.
//! Docs: <https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html>

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use transformer::lake::{check_key, ByteRange, LakeError, LakeOp, ObjectStore, Ranged};

use crate::aws_error::describe;

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

    /// An object's size (HeadObject), `None` when missing.
    async fn size(&self, key: &str) -> Result<Option<u64>, LakeError> {
        let r = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await;
        match r {
            Ok(h) => Ok(Some(h.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(sdk_err(LakeOp::Get, self.locate(key), "HeadObject", e)),
        }
    }

    fn full(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{}", self.prefix, key)
        }
    }
}

/// A failed S3 call as one line (`S3 PutObject: NoSuchBucket: ...`), never the SDK's
/// dump, and whether a retry can help.
fn sdk_err<E>(op: LakeOp, location: String, api: &str, e: SdkError<E, HttpResponse>) -> LakeError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let f = describe(&e);
    LakeError::Service {
        op,
        location,
        message: format!("S3 {api}: {}", f.line),
        retryable: f.retryable,
        source: Box::new(e),
    }
}

/// A response body that broke off while being read: worth a retry.
fn body_err(location: String, e: aws_sdk_s3::primitives::ByteStreamError) -> LakeError {
    LakeError::Service {
        op: LakeOp::Get,
        location,
        message: format!("S3 GetObject: reading the body: {e}"),
        retryable: true,
        source: Box::new(e),
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
            .map_err(|e| sdk_err(LakeOp::Put, self.locate(key), "PutObject", e))?;
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, body: Vec<u8>) -> Result<bool, LakeError> {
        check_key(key)?;
        let r = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .if_none_match("*")
            .body(body.into())
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            // 412: the object exists. 409: a concurrent conditional write to the same key
            // is in flight; it will exist, and the caller compares what it holds.
            // Docs: <https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html>
            Err(e)
                if matches!(
                    e.raw_response().map(|r| r.status().as_u16()),
                    Some(412 | 409)
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_err(LakeOp::Put, self.locate(key), "PutObject", e)),
        }
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
                    .map_err(|e| body_err(self.locate(key), e))?;
                Ok(Some(b.into_bytes().to_vec()))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(sdk_err(LakeOp::Get, self.locate(key), "GetObject", e)),
        }
    }

    async fn get_range(&self, key: &str, range: ByteRange) -> Result<Option<Ranged>, LakeError> {
        check_key(key)?;
        // RFC 9110 ranges: `bytes=-N` (suffix) or `bytes=A-B` (inclusive)
        let header = match range {
            ByteRange::Suffix(n) => format!("bytes=-{n}"),
            ByteRange::Span { start, end } if end > start => format!("bytes={start}-{}", end - 1),
            ByteRange::Span { .. } => {
                // nothing to read: only the size
                return Ok(self.size(key).await?.map(|total| Ranged {
                    bytes: Vec::new(),
                    total,
                }));
            }
        };
        let r = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .range(header)
            .send()
            .await;
        match r {
            Ok(o) => {
                // `Content-Range: bytes 0-9/10` names the size; without it (a 200 for a
                // range covering the object) the body is the whole object
                let total = o
                    .content_range()
                    .and_then(|c| c.rsplit_once('/'))
                    .and_then(|(_, t)| t.parse::<u64>().ok());
                let b = o
                    .body
                    .collect()
                    .await
                    .map_err(|e| body_err(self.locate(key), e))?
                    .into_bytes()
                    .to_vec();
                match total {
                    Some(total) => Ok(Some(Ranged { bytes: b, total })),
                    // a 200 with the whole object: cut the range out of it
                    None => {
                        let total = b.len() as u64;
                        let (start, end) = range.clamp(total);
                        Ok(Some(Ranged {
                            bytes: b[start as usize..end as usize].to_vec(),
                            total,
                        }))
                    }
                }
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            // 416: the range starts past the end (an empty object asked for its tail)
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(416) => {
                Ok(self.size(key).await?.map(|total| Ranged {
                    bytes: Vec::new(),
                    total,
                }))
            }
            Err(e) => Err(sdk_err(LakeOp::Get, self.locate(key), "GetObject", e)),
        }
    }

    async fn put_file(&self, key: &str, path: &std::path::Path) -> Result<(), LakeError> {
        check_key(key)?;
        // streamed from disk: a 256 MB compacted file never sits in memory. One PUT takes
        // up to 5 GB: <https://docs.aws.amazon.com/AmazonS3/latest/userguide/upload-objects.html>
        let body = aws_sdk_s3::primitives::ByteStream::from_path(path)
            .await
            .map_err(|e| LakeError::Io {
                op: LakeOp::Put,
                location: path.display().to_string(),
                source: std::io::Error::other(e),
            })?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .body(body)
            .send()
            .await
            .map_err(|e| sdk_err(LakeOp::Put, self.locate(key), "PutObject", e))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), LakeError> {
        check_key(key)?;
        // S3 answers 204 for a missing key too
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
            .map_err(|e| sdk_err(LakeOp::Delete, self.locate(key), "DeleteObject", e))?;
        Ok(())
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
            let page =
                page.map_err(|e| sdk_err(LakeOp::List, self.locate(prefix), "ListObjectsV2", e))?;
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
