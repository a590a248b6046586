//! Start-up shared by the binaries: build the handler from a validated configuration,
//! load the aws-auth mapping, read the clock.

use std::sync::Arc;

use resolver::awsauth::AwsAuth;
use transformer::alerts::{Alert, AlertError, AlertSink, DirAlerts};
use transformer::handler::{Handler, HandlerConfig};
use transformer::lake::{LakeError, ObjectStore};
use transformer::session_store::LakeSessionStore;
use transformer::sigma::{RuleError, RuleSet};

use crate::config::{AlertTarget, AwsAuthSource, Config, RulesSource, ENV_RULES};
use crate::eventbridge::EventBridgeAlerts;
use crate::lake::Lake;
use crate::s3::S3Store;
use crate::sessions::Sessions;

pub type LakeHandler = Handler<Lake, Sessions, Alerts>;

/// Where the handler's alerts go, as configured (`AUDITLAKE_ALERT_BUS`).
pub enum Alerts {
    None,
    Dir(DirAlerts),
    EventBridge(EventBridgeAlerts),
}

impl AlertSink for Alerts {
    async fn publish(&self, batch: u64, alerts: &[Alert]) -> Result<(), AlertError> {
        match self {
            Self::None => Ok(()),
            Self::Dir(d) => d.publish(batch, alerts).await,
            Self::EventBridge(e) => e.publish(batch, alerts).await,
        }
    }
    fn enabled(&self) -> bool {
        !matches!(self, Self::None)
    }
    fn target(&self) -> String {
        match self {
            Self::None => "nowhere".into(),
            Self::Dir(d) => d.target(),
            Self::EventBridge(e) => e.target(),
        }
    }
}

/// Largest operator rule file read (a rule is a few hundred bytes).
pub const MAX_RULE_FILE: usize = 1 << 20;

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
    #[error("shipped rule pack: {0}")]
    ShippedRules(#[source] RuleError),
    #[error("{ENV_RULES}: {0}")]
    Rules(#[source] RuleError),
    #[error("{ENV_RULES}: reading {location}: {why}")]
    RulesRead { location: String, why: String },
}

fn is_rule_file(name: &str) -> bool {
    name.ends_with(".yml") || name.ends_with(".yaml")
}

/// The shipped pack plus the operator's rules (`AUDITLAKE_RULES`), compiled. A file
/// that does not compile fails start, naming the file and the rule.
pub async fn load_rules(
    src: Option<&RulesSource>,
    placeholders: &transformer::sigma::Placeholders,
) -> Result<RuleSet, StartError> {
    let mut set = RuleSet::from_files_with(schemas::SHIPPED_RULES.iter().copied(), placeholders)
        .map_err(StartError::ShippedRules)?;
    let files: Vec<(String, String)> = match src {
        None => Vec::new(),
        Some(RulesSource::Dir(dir)) => {
            let read_err = |why: String| StartError::RulesRead {
                location: dir.display().to_string(),
                why,
            };
            // recursive, like an S3 prefix
            let mut names: Vec<std::path::PathBuf> = Vec::new();
            let mut stack = vec![dir.clone()];
            let mut first = true;
            while let Some(d) = stack.pop() {
                let rd = match std::fs::read_dir(&d) {
                    Ok(rd) => rd,
                    Err(e) if first => return Err(read_err(e.to_string())),
                    Err(_) => continue,
                };
                first = false;
                for p in rd.flatten().map(|e| e.path()) {
                    if p.is_dir() {
                        stack.push(p);
                    } else if p.is_file()
                        && p.file_name()
                            .is_some_and(|n| is_rule_file(&n.to_string_lossy()))
                    {
                        names.push(p);
                    }
                }
            }
            names.sort();
            let mut out = Vec::new();
            for p in names {
                let location = p.display().to_string();
                let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                if len > MAX_RULE_FILE as u64 {
                    return Err(StartError::RulesRead {
                        location,
                        why: format!("{len} bytes, more than {MAX_RULE_FILE}"),
                    });
                }
                let text = std::fs::read_to_string(&p).map_err(|e| StartError::RulesRead {
                    location: location.clone(),
                    why: e.to_string(),
                })?;
                out.push((location, text));
            }
            out
        }
        Some(RulesSource::S3 { bucket, prefix }) => {
            let s3 = S3Store::from_env(bucket.clone(), String::new()).await;
            let read_err = |location: String, e: &dyn std::fmt::Display| StartError::RulesRead {
                location,
                why: e.to_string(),
            };
            let keys = s3
                .list(prefix)
                .await
                .map_err(|e| read_err(format!("s3://{bucket}/{prefix}"), &e))?;
            let mut out = Vec::new();
            for key in keys.into_iter().filter(|k| is_rule_file(k)) {
                let location = format!("s3://{bucket}/{key}");
                let bytes = s3
                    .get(&key)
                    .await
                    .map_err(|e| read_err(location.clone(), &e))?
                    .ok_or_else(|| read_err(location.clone(), &"no such object"))?;
                if bytes.len() > MAX_RULE_FILE {
                    return Err(read_err(
                        location,
                        &format!("more than {MAX_RULE_FILE} bytes"),
                    ));
                }
                let text = String::from_utf8(bytes).map_err(|e| read_err(location.clone(), &e))?;
                out.push((location, text));
            }
            out
        }
    };
    for (file, text) in &files {
        for r in transformer::sigma::parse_file_with(file, text, placeholders)
            .map_err(StartError::Rules)?
        {
            set.add(r).map_err(StartError::Rules)?;
        }
    }
    Ok(set)
}

/// The alert sink the configuration names.
pub async fn open_alerts(target: Option<&AlertTarget>) -> Alerts {
    match target {
        None => Alerts::None,
        Some(AlertTarget::Dir(dir)) => Alerts::Dir(DirAlerts { dir: dir.clone() }),
        Some(AlertTarget::EventBridge(bus)) => {
            Alerts::EventBridge(EventBridgeAlerts::from_env(bus.clone()).await)
        }
    }
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
    let placeholders = crate::config::placeholders(&config.org_accounts);
    let rules = Arc::new(load_rules(config.rules.as_ref(), &placeholders).await?);
    let lake = Arc::new(Lake::open(&config.lake).await);
    let hc = HandlerConfig {
        rules,
        alert_severity: config.alert_severity,
        raw_archive: config.raw_archive,
        max_decompressed: config.max_decompressed,
        aws_auth,
        trusted_trails: config.trusted_trails.clone(),
        issuer_clusters: std::sync::Arc::new(config.issuer_clusters.clone()),
        budget: config.budget,
        ..HandlerConfig::default()
    };
    let sessions = open_sessions(config, &lake).await;
    let alerts = open_alerts(config.alert_target.as_ref()).await;
    Ok(Handler::new(hc, lake, sessions).with_alerts(alerts))
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
