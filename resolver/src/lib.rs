//! Attribution of EKS audit identities to the people who started their AWS sessions.
//!
//! Pure logic: parsing CloudTrail STS events, classifying audit identities, following
//! role chains. No I/O happens here; [`store::SessionStore`] is the seam the transformer
//! implements over the lake.

pub mod arn;
pub mod attribute;
pub mod awsauth;
pub mod cloudtrail;
pub mod identity;
pub mod model;
pub mod store;
pub mod time;
pub mod workload;

pub use attribute::{
    Attribution, AttributionMethod, AttributionStatus, PrincipalType, SessionIndex,
};
pub use cloudtrail::{StsEventName, StsSession};
pub use identity::{classify, AwsExtra, Identity};
pub use store::{MemorySessionStore, SessionCache, SessionStore, StoreError};
