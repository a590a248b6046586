//! The session store a deployment uses, chosen at start: the lake's `session_index/`
//! (the default, and what the CLI's local lakes use) or a DynamoDB table
//! (`AUDITLAKE_SESSION_TABLE`).

use std::sync::Arc;

use resolver::store::{Indexed, SessionStore, StoreError};
use resolver::StsSession;
use transformer::session_store::LakeSessionStore;

use crate::dynamodb::DynamoSessionStore;
use crate::lake::Lake;

#[derive(Clone)]
pub enum Sessions {
    Lake(Arc<LakeSessionStore<Lake>>),
    Dynamo(DynamoSessionStore),
}

impl SessionStore for Sessions {
    async fn get(&self, key: &str) -> Result<Option<StsSession>, StoreError> {
        match self {
            Self::Lake(s) => s.get(key).await,
            Self::Dynamo(s) => s.get(key).await,
        }
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<StsSession>>, StoreError> {
        match self {
            Self::Lake(s) => s.get_many(keys).await,
            Self::Dynamo(s) => s.get_many(keys).await,
        }
    }

    async fn find_by_role_session(
        &self,
        role: &str,
        munged: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<StsSession>, StoreError> {
        match self {
            Self::Lake(s) => s.find_by_role_session(role, munged, from_ms, to_ms).await,
            Self::Dynamo(s) => s.find_by_role_session(role, munged, from_ms, to_ms).await,
        }
    }

    async fn put(&self, sessions: &[Arc<StsSession>]) -> Result<Vec<Indexed>, StoreError> {
        match self {
            Self::Lake(s) => s.put(sessions).await,
            Self::Dynamo(s) => s.put(sessions).await,
        }
    }
}
