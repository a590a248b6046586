//! Shell glue shared by the binaries: build the handler from configuration, load the
//! aws-auth mapping, read the clock.

use std::sync::Arc;

use resolver::awsauth::AwsAuth;

use crate::config::{AwsAuthSource, Config};
use crate::handler::{Handler, HandlerConfig};
use crate::lake::{Lake, LakeError, ObjectStore, S3Store};
use crate::session_store::LakeSessionStore;

pub type LakeHandler = Handler<Lake, LakeSessionStore<Lake>>;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("reading aws-auth config {source_name}: {message}")]
    AwsAuthRead {
        source_name: String,
        message: String,
    },
    #[error(transparent)]
    AwsAuth(#[from] resolver::awsauth::AwsAuthError),
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Load and parse the aws-auth mapping named by the configuration.
pub async fn load_aws_auth(src: &AwsAuthSource) -> Result<AwsAuth, StartError> {
    let (name, text) = match src {
        AwsAuthSource::File(p) => {
            let name = p.display().to_string();
            let text = std::fs::read_to_string(p).map_err(|e| StartError::AwsAuthRead {
                source_name: name.clone(),
                message: e.to_string(),
            })?;
            (name, text)
        }
        AwsAuthSource::S3 { bucket, key } => {
            let s3 = S3Store::from_env(bucket.clone(), String::new()).await;
            let name = format!("s3://{bucket}/{key}");
            let read_err = |message: String| StartError::AwsAuthRead {
                source_name: name.clone(),
                message,
            };
            let bytes = s3
                .get(key)
                .await
                .map_err(|e: LakeError| read_err(e.to_string()))?
                .ok_or_else(|| read_err("no such object".into()))?;
            let text = String::from_utf8(bytes).map_err(|e| read_err(e.to_string()))?;
            (name, text)
        }
    };
    Ok(AwsAuth::parse(&text, &name)?)
}

/// Build the handler for a validated configuration: open the lake, load aws-auth.
pub async fn build_handler(config: &Config) -> Result<LakeHandler, StartError> {
    let aws_auth = match &config.aws_auth {
        Some(src) => Some(Arc::new(load_aws_auth(src).await?)),
        None => None,
    };
    let lake = Arc::new(Lake::open(&config.lake).await);
    let hc = HandlerConfig {
        raw_archive: config.raw_archive,
        max_decompressed: config.max_decompressed,
        aws_auth,
        ..HandlerConfig::default()
    };
    Ok(Handler::new(hc, lake.clone(), LakeSessionStore::new(lake)))
}
