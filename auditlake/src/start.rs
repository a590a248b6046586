//! Start-up shared by the binaries: build the handler from a validated configuration,
//! load the aws-auth mapping, read the clock.

use std::sync::Arc;

use resolver::awsauth::AwsAuth;
use transformer::handler::{Handler, HandlerConfig};
use transformer::lake::{LakeError, ObjectStore};
use transformer::session_store::LakeSessionStore;

use crate::config::{AwsAuthSource, Config};
use crate::lake::Lake;
use crate::s3::S3Store;
use crate::sessions::Sessions;

pub type LakeHandler = Handler<Lake, Sessions>;

/// Start-up failures name the variable whose value caused them.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "{}: reading aws-auth config {source_name}: {source}",
        crate::config::ENV_AWS_AUTH
    )]
    AwsAuthRead {
        source_name: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{var}: {0}", var = crate::config::ENV_AWS_AUTH)]
    AwsAuth(#[from] resolver::awsauth::AwsAuthError),
}

pub use transformer::compactor::system_ms as now_ms;

/// Load and parse the aws-auth mapping named by the configuration.
pub async fn load_aws_auth(src: &AwsAuthSource) -> Result<AwsAuth, StartError> {
    let (name, text) = match src {
        AwsAuthSource::File(p) => {
            let name = p.display().to_string();
            let text = std::fs::read_to_string(p).map_err(|e| StartError::AwsAuthRead {
                source_name: name.clone(),
                source: Box::new(e),
            })?;
            (name, text)
        }
        AwsAuthSource::S3 { bucket, key } => {
            let s3 = S3Store::from_env(bucket.clone(), String::new()).await;
            let name = format!("s3://{bucket}/{key}");
            let read_err =
                |source: Box<dyn std::error::Error + Send + Sync>| StartError::AwsAuthRead {
                    source_name: name.clone(),
                    source,
                };
            let bytes = s3
                .get(key)
                .await
                .map_err(|e: LakeError| read_err(Box::new(e)))?
                .ok_or_else(|| read_err("no such object".into()))?;
            let text = String::from_utf8(bytes).map_err(|e| read_err(Box::new(e)))?;
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
        trusted_trails: config.trusted_trails.clone(),
        issuer_clusters: std::sync::Arc::new(config.issuer_clusters.clone()),
        budget: config.budget,
        ..HandlerConfig::default()
    };
    let sessions = open_sessions(config, &lake).await;
    Ok(Handler::new(hc, lake, sessions))
}

/// The session store the configuration names: DynamoDB, or the lake's `session_index/`.
pub async fn open_sessions(config: &Config, lake: &Arc<Lake>) -> Sessions {
    match &config.session_table {
        Some(table) => {
            Sessions::Dynamo(crate::dynamodb::DynamoSessionStore::from_env(table.clone()).await)
        }
        None => Sessions::Lake(Arc::new(LakeSessionStore::new(lake.clone()))),
    }
}
