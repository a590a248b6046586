//! Stage 4: rows -> Arrow record batches -> Parquet bytes.
//!
//! Builders are filled straight from the borrowed parse results; nested JSON (`groups`,
//! `extra`, `annotations`) is walked once by serde visitors that append into the Arrow
//! builders without building intermediate collections. The column order comes from
//! `schemas`, so the written schema is the contract by construction.

use std::fmt;
use std::sync::Arc;

use arrow_array::builder::{
    Int32Builder, ListBuilder, MapBuilder, MapFieldNames, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use resolver::{Attribution, StsSession};
use schemas::{EKS_AUDIT, LIST_ITEM, STS_SESSIONS};

use crate::text::Text;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("building {table} record batch: {source}")]
    Arrow {
        table: &'static str,
        #[source]
        source: arrow_schema::ArrowError,
    },
    #[error("writing {table} Parquet: {source}")]
    Parquet {
        table: &'static str,
        #[source]
        source: parquet::errors::ParquetError,
    },
}

/// Rows per Parquet row group: one batch of a 3 MB Firehose buffer is far below this, so
/// a file is one row group; compaction can merge to larger files later.
pub const ROW_GROUP_ROWS: usize = 256 * 1024;
/// zstd level 1: most of the size win of zstd at a fraction of the CPU (DESIGN 7).
pub const ZSTD_LEVEL: i32 = 1;

/// Columns whose values are (nearly) all distinct: a dictionary only costs time (the
/// writer builds it, overflows and falls back) and bytes. Everything else is dictionary
/// encoded (accounts, clusters, verbs, users, URIs, annotations repeat heavily).
pub const NO_DICTIONARY: &[&str] = &[
    "cwl_event_id",
    "audit_id",
    "event_time",
    "stage_time",
    "request_object",
    "response_object",
    "raw_message",
];

/// Writer settings, explicit rather than library defaults.
pub fn writer_properties(sort_col: usize) -> WriterProperties {
    use parquet::basic::Encoding;
    use parquet::schema::types::ColumnPath;
    let mut b = WriterProperties::builder();
    for c in NO_DICTIONARY {
        b = b.set_column_dictionary_enabled(ColumnPath::from(*c), false);
    }
    // Sorted timestamps: deltas are tiny. Event ids share long prefixes.
    for c in ["event_time", "stage_time"] {
        b = b.set_column_encoding(ColumnPath::from(c), Encoding::DELTA_BINARY_PACKED);
    }
    b = b.set_column_encoding(ColumnPath::from("cwl_event_id"), Encoding::DELTA_BYTE_ARRAY);
    b.set_compression(Compression::ZSTD(
        ZstdLevel::try_new(ZSTD_LEVEL).expect("valid zstd level"),
    ))
    .set_dictionary_enabled(true)
    .set_statistics_enabled(EnabledStatistics::Chunk)
    .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
    .set_sorting_columns(Some(vec![SortingColumn {
        column_idx: sort_col as i32,
        descending: false,
        nulls_first: false,
    }]))
    .set_created_by(format!("eks-audit-lake {}", env!("CARGO_PKG_VERSION")))
    .build()
}

/// Encode one record batch as a Parquet file.
pub fn to_parquet(
    table: &'static str,
    batch: &RecordBatch,
    sort_col: usize,
) -> Result<Vec<u8>, EncodeError> {
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() / 4 + 4096);
    let pq = |source| EncodeError::Parquet { table, source };
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(writer_properties(sort_col)))
        .map_err(pq)?;
    w.write(batch).map_err(pq)?;
    w.close().map_err(pq)?;
    Ok(buf)
}

fn list_builder() -> ListBuilder<StringBuilder> {
    ListBuilder::new(StringBuilder::new()).with_field(Arc::new(Field::new(
        LIST_ITEM,
        DataType::Utf8,
        true,
    )))
}

fn map_names() -> MapFieldNames {
    MapFieldNames {
        entry: "key_value".into(),
        key: "key".into(),
        value: "value".into(),
    }
}

fn ts_builder() -> TimestampMillisecondBuilder {
    TimestampMillisecondBuilder::new().with_timezone("UTC")
}

// ---- serde visitors appending into Arrow builders -------------------------------------

/// Appends the strings of a JSON array into a list builder's values; yields the last.
struct StrSeq<'b>(&'b mut StringBuilder);

impl<'de> Visitor<'de> for StrSeq<'_> {
    type Value = Option<Text<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of strings")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut last = None;
        while let Some(v) = seq.next_element::<Option<Text<'de>>>()? {
            match &v {
                Some(s) => self.0.append_value(&**s),
                None => self.0.append_null(),
            }
            last = v;
        }
        Ok(last)
    }
}

/// A JSON value rendered as a string: strings as themselves, anything else as its JSON.
/// Yields the string when it was one.
struct AnyAsStr<'b>(&'b mut StringBuilder);

impl<'de> DeserializeSeed<'de> for AnyAsStr<'_> {
    type Value = Option<Text<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let raw: &'de RawValue = serde::Deserialize::deserialize(d)?;
        let t = raw.get();
        if t.starts_with('"') {
            match serde_json::from_str::<Text<'de>>(t) {
                Ok(s) => {
                    self.0.append_value(&*s);
                    return Ok(Some(s));
                }
                Err(_) => self.0.append_value(t),
            }
        } else if t == "null" {
            self.0.append_null();
        } else {
            self.0.append_value(t);
        }
        Ok(None)
    }
}

/// Appends a JSON object of strings into a `map<string,string>` builder; yields the two
/// authorization annotations, which also have columns of their own.
struct StrMap<'b>(&'b mut MapBuilder<StringBuilder, StringBuilder>);

const DECISION: &str = "authorization.k8s.io/decision";
const REASON: &str = "authorization.k8s.io/reason";

impl<'de> Visitor<'de> for StrMap<'_> {
    type Value = (Option<Text<'de>>, Option<Text<'de>>);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of strings")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
        let (mut decision, mut reason) = (None, None);
        while let Some(k) = m.next_key::<Text<'de>>()? {
            self.0.keys().append_value(&*k);
            let v = m.next_value_seed(AnyAsStr(self.0.values()))?;
            match &*k {
                DECISION => decision = v,
                REASON => reason = v,
                _ => {}
            }
        }
        Ok((decision, reason))
    }
}

/// Appends `user.extra` (object of string arrays) into a `map<string,array<string>>`.
struct ListMap<'b>(&'b mut MapBuilder<StringBuilder, ListBuilder<StringBuilder>>);

struct ListValue<'b>(&'b mut ListBuilder<StringBuilder>);

impl<'de> DeserializeSeed<'de> for ListValue<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let raw: &RawValue = serde::Deserialize::deserialize(d)?;
        let t = raw.get();
        if t.starts_with('[') {
            let mut de = serde_json::Deserializer::from_str(t);
            // an element that is not a string ends the list early; it stays well-formed
            let _ = de.deserialize_seq(StrSeq(self.0.values()));
            self.0.append(true);
        } else if t.starts_with('"') {
            if let Ok(s) = serde_json::from_str::<Text<'_>>(t) {
                self.0.values().append_value(&*s);
            }
            self.0.append(true);
        } else {
            self.0.append(false);
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for ListMap<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of string arrays")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        while let Some(k) = m.next_key::<Text<'de>>()? {
            self.0.keys().append_value(&*k);
            m.next_value_seed(ListValue(self.0.values()))?;
        }
        Ok(())
    }
}

/// Append a JSON string array (or null); returns its last element.
fn append_list<'r>(
    b: &mut ListBuilder<StringBuilder>,
    raw: Option<&'r RawValue>,
) -> Option<Text<'r>> {
    match raw {
        Some(r) if r.get().starts_with('[') => {
            let mut de = serde_json::Deserializer::from_str(r.get());
            let last = de.deserialize_seq(StrSeq(b.values())).ok().flatten();
            b.append(true);
            last
        }
        _ => {
            b.append(false);
            None
        }
    }
}

fn append_str_list<S: AsRef<str>>(b: &mut ListBuilder<StringBuilder>, items: &[S]) {
    for i in items {
        b.values().append_value(i.as_ref());
    }
    b.append(true);
}

// ---- eks_audit --------------------------------------------------------------------------

/// Everything one `eks_audit` row needs, borrowed.
pub struct AuditRowRef<'r> {
    pub account_id: &'r str,
    pub region: Option<&'r str>,
    pub cluster: &'r str,
    pub log_group: &'r str,
    pub log_stream: &'r str,
    pub cwl_event_id: &'r str,
    pub ingest_ms: i64,
    pub event_ms: i64,
    pub event: &'r crate::audit::AuditEvent<'r>,
    pub parse_status: crate::audit::ParseStatus,
    pub raw_message: Option<&'r str>,
    pub extra: &'r resolver::AwsExtra<'r>,
    pub attribution: &'r Attribution<'r>,
}

pub struct AuditBuilder {
    s: Vec<StringBuilder>,
    ingest_time: TimestampMillisecondBuilder,
    event_time: TimestampMillisecondBuilder,
    stage_time: TimestampMillisecondBuilder,
    user_groups: ListBuilder<StringBuilder>,
    impersonated_groups: ListBuilder<StringBuilder>,
    source_ips: ListBuilder<StringBuilder>,
    role_chain: ListBuilder<StringBuilder>,
    user_extra: MapBuilder<StringBuilder, ListBuilder<StringBuilder>>,
    annotations: MapBuilder<StringBuilder, StringBuilder>,
    response_code: Int32Builder,
    rows: usize,
}

/// String columns of `eks_audit`, in the order of `AuditBuilder::s`.
const AUDIT_STR: &[&str] = &[
    "account_id",
    "region",
    "cluster",
    "log_group",
    "log_stream",
    "cwl_event_id",
    "audit_id",
    "stage",
    "level",
    "verb",
    "request_uri",
    "username",
    "user_uid",
    "impersonated_username",
    "source_ip",
    "user_agent",
    "object_resource",
    "object_subresource",
    "object_namespace",
    "object_name",
    "object_api_group",
    "object_api_version",
    "response_status",
    "response_reason",
    "response_message",
    "authz_decision",
    "authz_reason",
    "request_object",
    "response_object",
    "aws_access_key_id",
    "aws_arn",
    "aws_role_arn",
    "aws_session_name",
    "aws_principal_id",
    "principal_type",
    "principal_name",
    "principal_arn",
    "principal_account_id",
    "source_identity",
    "attribution_method",
    "attribution_status",
    "parse_status",
    "raw_message",
];

mod col {
    // Positions in AUDIT_STR (checked by a test).
    pub const ACCOUNT_ID: usize = 0;
    pub const REGION: usize = 1;
    pub const CLUSTER: usize = 2;
    pub const LOG_GROUP: usize = 3;
    pub const LOG_STREAM: usize = 4;
    pub const CWL_EVENT_ID: usize = 5;
    pub const AUDIT_ID: usize = 6;
    pub const STAGE: usize = 7;
    pub const LEVEL: usize = 8;
    pub const VERB: usize = 9;
    pub const REQUEST_URI: usize = 10;
    pub const USERNAME: usize = 11;
    pub const USER_UID: usize = 12;
    pub const IMPERSONATED_USERNAME: usize = 13;
    pub const SOURCE_IP: usize = 14;
    pub const USER_AGENT: usize = 15;
    pub const OBJECT_RESOURCE: usize = 16;
    pub const OBJECT_SUBRESOURCE: usize = 17;
    pub const OBJECT_NAMESPACE: usize = 18;
    pub const OBJECT_NAME: usize = 19;
    pub const OBJECT_API_GROUP: usize = 20;
    pub const OBJECT_API_VERSION: usize = 21;
    pub const RESPONSE_STATUS: usize = 22;
    pub const RESPONSE_REASON: usize = 23;
    pub const RESPONSE_MESSAGE: usize = 24;
    pub const AUTHZ_DECISION: usize = 25;
    pub const AUTHZ_REASON: usize = 26;
    pub const REQUEST_OBJECT: usize = 27;
    pub const RESPONSE_OBJECT: usize = 28;
    pub const AWS_ACCESS_KEY_ID: usize = 29;
    pub const AWS_ARN: usize = 30;
    pub const AWS_ROLE_ARN: usize = 31;
    pub const AWS_SESSION_NAME: usize = 32;
    pub const AWS_PRINCIPAL_ID: usize = 33;
    pub const PRINCIPAL_TYPE: usize = 34;
    pub const PRINCIPAL_NAME: usize = 35;
    pub const PRINCIPAL_ARN: usize = 36;
    pub const PRINCIPAL_ACCOUNT_ID: usize = 37;
    pub const SOURCE_IDENTITY: usize = 38;
    pub const ATTRIBUTION_METHOD: usize = 39;
    pub const ATTRIBUTION_STATUS: usize = 40;
    pub const PARSE_STATUS: usize = 41;
    pub const RAW_MESSAGE: usize = 42;
}

fn opt(b: &mut StringBuilder, v: Option<&str>) {
    match v {
        Some(v) => b.append_value(v),
        None => b.append_null(),
    }
}

impl Default for AuditBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl AuditBuilder {
    pub fn new() -> Self {
        Self {
            s: AUDIT_STR.iter().map(|_| StringBuilder::new()).collect(),
            ingest_time: ts_builder(),
            event_time: ts_builder(),
            stage_time: ts_builder(),
            user_groups: list_builder(),
            impersonated_groups: list_builder(),
            source_ips: list_builder(),
            role_chain: list_builder(),
            user_extra: MapBuilder::new(Some(map_names()), StringBuilder::new(), list_builder()),
            annotations: MapBuilder::new(
                Some(map_names()),
                StringBuilder::new(),
                StringBuilder::new(),
            ),
            response_code: Int32Builder::new(),
            rows: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn append(&mut self, r: &AuditRowRef<'_>) {
        use col::*;
        let e = r.event;
        let s = &mut self.s;
        s[ACCOUNT_ID].append_value(r.account_id);
        opt(&mut s[REGION], r.region);
        s[CLUSTER].append_value(r.cluster);
        s[LOG_GROUP].append_value(r.log_group);
        s[LOG_STREAM].append_value(r.log_stream);
        s[CWL_EVENT_ID].append_value(r.cwl_event_id);
        self.ingest_time.append_value(r.ingest_ms);
        opt(&mut s[AUDIT_ID], e.audit_id.as_deref());
        opt(&mut s[STAGE], e.stage.as_deref());
        opt(&mut s[LEVEL], e.level.as_deref());
        opt(&mut s[VERB], e.verb.as_deref());
        opt(&mut s[REQUEST_URI], e.request_uri.as_deref());
        self.event_time.append_value(r.event_ms);
        self.stage_time.append_option(
            e.stage_timestamp
                .as_deref()
                .and_then(resolver::time::parse_rfc3339_ms),
        );
        let user = e.user.as_ref();
        opt(&mut s[USERNAME], user.and_then(|u| u.username.as_deref()));
        opt(&mut s[USER_UID], user.and_then(|u| u.uid.as_deref()));
        append_list(&mut self.user_groups, user.and_then(|u| u.groups));
        match user.and_then(|u| u.extra) {
            Some(raw) if raw.get().starts_with('{') => {
                let mut de = serde_json::Deserializer::from_str(raw.get());
                let _ = de.deserialize_map(ListMap(&mut self.user_extra));
                let _ = self.user_extra.append(true);
            }
            _ => {
                let _ = self.user_extra.append(false);
            }
        }
        let imp = e.impersonated_user.as_ref();
        opt(
            &mut s[IMPERSONATED_USERNAME],
            imp.and_then(|u| u.username.as_deref()),
        );
        append_list(&mut self.impersonated_groups, imp.and_then(|u| u.groups));
        // source_ip: the last entry, the one the apiserver saw (earlier ones come from
        // X-Forwarded-For and can be forged by the client).
        let last_ip = append_list(&mut self.source_ips, e.source_ips);
        let s = &mut self.s;
        opt(&mut s[SOURCE_IP], last_ip.as_deref());
        opt(&mut s[USER_AGENT], e.user_agent.as_deref());
        let o = e.object_ref.as_ref();
        opt(
            &mut s[OBJECT_RESOURCE],
            o.and_then(|o| o.resource.as_deref()),
        );
        opt(
            &mut s[OBJECT_SUBRESOURCE],
            o.and_then(|o| o.subresource.as_deref()),
        );
        opt(
            &mut s[OBJECT_NAMESPACE],
            o.and_then(|o| o.namespace.as_deref()),
        );
        opt(&mut s[OBJECT_NAME], o.and_then(|o| o.name.as_deref()));
        opt(
            &mut s[OBJECT_API_GROUP],
            o.and_then(|o| o.api_group.as_deref()),
        );
        opt(
            &mut s[OBJECT_API_VERSION],
            o.and_then(|o| o.api_version.as_deref()),
        );
        let rs = e.response_status.as_ref();
        self.response_code.append_option(rs.and_then(|r| r.code));
        opt(
            &mut s[RESPONSE_STATUS],
            rs.and_then(|r| r.status.as_deref()),
        );
        opt(
            &mut s[RESPONSE_REASON],
            rs.and_then(|r| r.reason.as_deref()),
        );
        opt(
            &mut s[RESPONSE_MESSAGE],
            rs.and_then(|r| r.message.as_deref()),
        );
        let (decision, reason) = match e.annotations {
            Some(raw) if raw.get().starts_with('{') => {
                let mut de = serde_json::Deserializer::from_str(raw.get());
                let found = de
                    .deserialize_map(StrMap(&mut self.annotations))
                    .unwrap_or((None, None));
                let _ = self.annotations.append(true);
                found
            }
            _ => {
                let _ = self.annotations.append(false);
                (None, None)
            }
        };
        let s = &mut self.s;
        opt(&mut s[AUTHZ_DECISION], decision.as_deref());
        opt(&mut s[AUTHZ_REASON], reason.as_deref());
        opt(&mut s[REQUEST_OBJECT], e.request_object.map(RawValue::get));
        opt(
            &mut s[RESPONSE_OBJECT],
            e.response_object.map(RawValue::get),
        );
        let x = r.extra;
        opt(&mut s[AWS_ACCESS_KEY_ID], x.access_key_id);
        opt(&mut s[AWS_ARN], x.arn);
        opt(&mut s[AWS_ROLE_ARN], x.canonical_arn);
        opt(&mut s[AWS_SESSION_NAME], x.session_name);
        opt(&mut s[AWS_PRINCIPAL_ID], x.principal_id);
        let a = r.attribution;
        s[PRINCIPAL_TYPE].append_value(a.principal_type.as_str());
        opt(&mut s[PRINCIPAL_NAME], a.principal_name.as_deref());
        opt(&mut s[PRINCIPAL_ARN], a.principal_arn.as_deref());
        opt(
            &mut s[PRINCIPAL_ACCOUNT_ID],
            a.principal_account_id.as_deref(),
        );
        opt(&mut s[SOURCE_IDENTITY], a.source_identity.as_deref());
        append_str_list(&mut self.role_chain, &a.role_chain);
        s[ATTRIBUTION_METHOD].append_value(a.method.as_str());
        s[ATTRIBUTION_STATUS].append_value(a.status.as_str());
        s[PARSE_STATUS].append_value(r.parse_status.as_str());
        opt(&mut s[RAW_MESSAGE], r.raw_message);
        self.rows += 1;
    }

    pub fn finish(mut self) -> Result<RecordBatch, EncodeError> {
        let mut strs: Vec<Option<ArrayRef>> = self
            .s
            .iter_mut()
            .map(|b| Some(Arc::new(b.finish()) as ArrayRef))
            .collect();
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(EKS_AUDIT.len());
        for c in EKS_AUDIT {
            let a: ArrayRef = match c.name {
                "ingest_time" => Arc::new(self.ingest_time.finish()),
                "event_time" => Arc::new(self.event_time.finish()),
                "stage_time" => Arc::new(self.stage_time.finish()),
                "user_groups" => Arc::new(self.user_groups.finish()),
                "impersonated_groups" => Arc::new(self.impersonated_groups.finish()),
                "source_ips" => Arc::new(self.source_ips.finish()),
                "role_chain" => Arc::new(self.role_chain.finish()),
                "user_extra" => Arc::new(self.user_extra.finish()),
                "annotations" => Arc::new(self.annotations.finish()),
                "response_code" => Arc::new(self.response_code.finish()),
                name => {
                    let i = AUDIT_STR
                        .iter()
                        .position(|n| *n == name)
                        .unwrap_or_else(|| panic!("column {name} has no builder"));
                    strs[i].take().expect("each string column used once")
                }
            };
            cols.push(a);
        }
        RecordBatch::try_new(schemas::arrow_schema(EKS_AUDIT), cols).map_err(|source| {
            EncodeError::Arrow {
                table: "eks_audit",
                source,
            }
        })
    }
}

// ---- sts_sessions -----------------------------------------------------------------------

/// Builds `sts_sessions` from parsed sessions (few per batch; plain column vectors).
pub fn sts_batch(rows: &[&StsSession]) -> Result<RecordBatch, EncodeError> {
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(STS_SESSIONS.len());
    for c in STS_SESSIONS {
        let a: ArrayRef = match c.name {
            "event_time" => {
                let mut b = ts_builder();
                rows.iter().for_each(|r| b.append_value(r.event_time_ms));
                Arc::new(b.finish())
            }
            "expiration" => {
                let mut b = ts_builder();
                rows.iter().for_each(|r| b.append_option(r.expiration_ms));
                Arc::new(b.finish())
            }
            name => {
                let mut b = StringBuilder::new();
                for r in rows {
                    let v: Option<&str> = match name {
                        "event_id" => Some(&r.event_id),
                        "shared_event_id" => r.shared_event_id.as_deref(),
                        "request_id" => r.request_id.as_deref(),
                        "recipient_account_id" => r.recipient_account_id.as_deref(),
                        "event_name" => Some(r.event_name.as_str()),
                        "aws_region" => r.aws_region.as_deref(),
                        "source_ip" => r.source_ip.as_deref(),
                        "user_agent" => r.user_agent.as_deref(),
                        "error_code" => r.error_code.as_deref(),
                        "caller_type" => r.caller_type.as_deref(),
                        "caller_arn" => r.caller_arn.as_deref(),
                        "caller_principal_id" => r.caller_principal_id.as_deref(),
                        "caller_account_id" => r.caller_account_id.as_deref(),
                        "caller_access_key_id" => r.caller_access_key_id.as_deref(),
                        "caller_user_name" => r.caller_user_name.as_deref(),
                        "role_arn" => r.role_arn.as_deref(),
                        "role_session_name" => r.role_session_name.as_deref(),
                        "source_identity" => r.source_identity.as_deref(),
                        "assumed_role_id" => r.assumed_role_id.as_deref(),
                        "assumed_role_arn" => r.assumed_role_arn.as_deref(),
                        "access_key_id" => r.access_key_id.as_deref(),
                        "saml_subject" => r.saml_subject.as_deref(),
                        "saml_provider_arn" => r.saml_provider_arn.as_deref(),
                        "web_identity_subject" => r.web_identity_subject.as_deref(),
                        "web_identity_provider" => r.web_identity_provider.as_deref(),
                        other => panic!("sts_sessions column {other} has no source"),
                    };
                    opt(&mut b, v);
                }
                Arc::new(b.finish())
            }
        };
        cols.push(a);
    }
    RecordBatch::try_new(schemas::arrow_schema(STS_SESSIONS), cols).map_err(|source| {
        EncodeError::Arrow {
            table: "sts_sessions",
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_column_positions_match_names() {
        use col::*;
        let pairs = [
            (ACCOUNT_ID, "account_id"),
            (REGION, "region"),
            (CLUSTER, "cluster"),
            (LOG_GROUP, "log_group"),
            (LOG_STREAM, "log_stream"),
            (CWL_EVENT_ID, "cwl_event_id"),
            (AUDIT_ID, "audit_id"),
            (STAGE, "stage"),
            (LEVEL, "level"),
            (VERB, "verb"),
            (REQUEST_URI, "request_uri"),
            (USERNAME, "username"),
            (USER_UID, "user_uid"),
            (IMPERSONATED_USERNAME, "impersonated_username"),
            (SOURCE_IP, "source_ip"),
            (USER_AGENT, "user_agent"),
            (OBJECT_RESOURCE, "object_resource"),
            (OBJECT_SUBRESOURCE, "object_subresource"),
            (OBJECT_NAMESPACE, "object_namespace"),
            (OBJECT_NAME, "object_name"),
            (OBJECT_API_GROUP, "object_api_group"),
            (OBJECT_API_VERSION, "object_api_version"),
            (RESPONSE_STATUS, "response_status"),
            (RESPONSE_REASON, "response_reason"),
            (RESPONSE_MESSAGE, "response_message"),
            (AUTHZ_DECISION, "authz_decision"),
            (AUTHZ_REASON, "authz_reason"),
            (REQUEST_OBJECT, "request_object"),
            (RESPONSE_OBJECT, "response_object"),
            (AWS_ACCESS_KEY_ID, "aws_access_key_id"),
            (AWS_ARN, "aws_arn"),
            (AWS_ROLE_ARN, "aws_role_arn"),
            (AWS_SESSION_NAME, "aws_session_name"),
            (AWS_PRINCIPAL_ID, "aws_principal_id"),
            (PRINCIPAL_TYPE, "principal_type"),
            (PRINCIPAL_NAME, "principal_name"),
            (PRINCIPAL_ARN, "principal_arn"),
            (PRINCIPAL_ACCOUNT_ID, "principal_account_id"),
            (SOURCE_IDENTITY, "source_identity"),
            (ATTRIBUTION_METHOD, "attribution_method"),
            (ATTRIBUTION_STATUS, "attribution_status"),
            (PARSE_STATUS, "parse_status"),
            (RAW_MESSAGE, "raw_message"),
        ];
        assert_eq!(pairs.len(), AUDIT_STR.len());
        for (i, n) in pairs {
            assert_eq!(AUDIT_STR[i], n);
        }
        // every string column of the schema has a builder
        for c in EKS_AUDIT.iter().filter(|c| c.ty == schemas::ColType::Str) {
            assert!(AUDIT_STR.contains(&c.name), "{}", c.name);
        }
    }

    #[test]
    fn empty_builder_matches_the_schema() {
        let b = AuditBuilder::new().finish().unwrap();
        assert_eq!(b.num_rows(), 0);
        assert_eq!(b.schema(), schemas::arrow_schema(EKS_AUDIT));
        assert_eq!(
            sts_batch(&[]).unwrap().schema(),
            schemas::arrow_schema(STS_SESSIONS)
        );
    }
}
