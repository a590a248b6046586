//! Stage 6, encode: a partition's rows and attributions -> Arrow record batch -> Parquet.
//!
//! Builders are laid out from the table's column list in `schemas` and filled straight
//! from the borrowed rows; positions are resolved at compile time, so the written schema
//! is the contract by construction. Nested JSON is walked once: `user.extra` was parsed
//! by extraction, `groups`/`sourceIPs`/`annotations` are read by serde visitors that
//! append into the builders as they go.

use std::fmt;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Int32Builder, ListBuilder, MapBuilder, MapFieldNames, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use resolver::{Attribution, StsSession};
use schemas::{ColType, Column, EKS_API_EVENTS, EKS_AUDIT, FINDINGS, LIST_ITEM, STS_SESSIONS};

use crate::audit::UserExtra;
use crate::detect::Detections;
use crate::extract::{ApiRow, AuditRow};
use crate::finding::Finding;
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
    writer_properties_with(sort_col, ZSTD_LEVEL, ROW_GROUP_ROWS)
}

/// [`writer_properties`] at another zstd level and row-group size (compaction writes
/// larger files at a higher level; everything else is the same convention).
pub fn writer_properties_with(
    sort_col: usize,
    zstd_level: i32,
    row_group_rows: usize,
) -> WriterProperties {
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
    // Random UUIDs: lengths apart from the bytes, so zstd's literal coder sees only hex
    // digits (measured -10 % on the column, -5 % on a compacted file; BENCHMARKS.md).
    b = b.set_column_encoding(
        ColumnPath::from("audit_id"),
        Encoding::DELTA_LENGTH_BYTE_ARRAY,
    );
    // levels outside zstd's range are refused by configuration; clamped here as well
    let level = ZstdLevel::try_new(zstd_level.clamp(1, 22)).expect("1..=22 is zstd's range");
    b.set_compression(Compression::ZSTD(level))
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: sort_col as i32,
            descending: false,
            nulls_first: false,
        }]))
        .set_created_by(format!("eks-audit-lake {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Encode one record batch as a Parquet file.
#[inline(never)] // a stage of the instruction profile (bench --instructions)
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

// ---- builders laid out from a table's column list ----------------------------------------

/// One column's Arrow builder, of the type `schemas` gives the column.
enum ColBuilder {
    Str(StringBuilder),
    Int(Int32Builder),
    Ts(TimestampMillisecondBuilder),
    Bool(BooleanBuilder),
    List(ListBuilder<StringBuilder>),
    Map(MapBuilder<StringBuilder, StringBuilder>),
    ListMap(MapBuilder<StringBuilder, ListBuilder<StringBuilder>>),
}

impl ColBuilder {
    fn new(ty: ColType, rows: usize) -> Self {
        match ty {
            ColType::Str => Self::Str(StringBuilder::with_capacity(rows, rows * 16)),
            ColType::Int => Self::Int(Int32Builder::with_capacity(rows)),
            ColType::TimestampMs => {
                Self::Ts(TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC"))
            }
            ColType::Bool => Self::Bool(BooleanBuilder::with_capacity(rows)),
            ColType::StrList => Self::List(list_builder()),
            ColType::StrMap => Self::Map(MapBuilder::new(
                Some(map_names()),
                StringBuilder::new(),
                StringBuilder::new(),
            )),
            ColType::StrListMap => Self::ListMap(MapBuilder::new(
                Some(map_names()),
                StringBuilder::new(),
                list_builder(),
            )),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Str(b) => Arc::new(b.finish()),
            Self::Int(b) => Arc::new(b.finish()),
            Self::Ts(b) => Arc::new(b.finish()),
            Self::Bool(b) => Arc::new(b.finish()),
            Self::List(b) => Arc::new(b.finish()),
            Self::Map(b) => Arc::new(b.finish()),
            Self::ListMap(b) => Arc::new(b.finish()),
        }
    }
}

/// The builders of one table, in its column order. Accessors by position panic only on a
/// position/type mismatch in this file, which the schema tests below catch.
struct Columns {
    table: &'static str,
    columns: &'static [Column],
    b: Vec<ColBuilder>,
}

macro_rules! accessor {
    ($name:ident, $variant:ident, $ty:ty) => {
        fn $name(&mut self, i: usize) -> &mut $ty {
            match &mut self.b[i] {
                ColBuilder::$variant(b) => b,
                _ => unreachable!(
                    "column {} is not {}",
                    self.columns[i].name,
                    stringify!($variant)
                ),
            }
        }
    };
}

impl Columns {
    fn new(table: &'static str, columns: &'static [Column], rows: usize) -> Self {
        Self {
            table,
            columns,
            b: columns
                .iter()
                .map(|c| ColBuilder::new(c.ty, rows))
                .collect(),
        }
    }

    accessor!(s, Str, StringBuilder);
    accessor!(int, Int, Int32Builder);
    accessor!(ts, Ts, TimestampMillisecondBuilder);
    accessor!(bool, Bool, BooleanBuilder);
    accessor!(list, List, ListBuilder<StringBuilder>);
    accessor!(map, Map, MapBuilder<StringBuilder, StringBuilder>);
    accessor!(list_map, ListMap, MapBuilder<StringBuilder, ListBuilder<StringBuilder>>);

    fn opt(&mut self, i: usize, v: Option<&str>) {
        match v {
            Some(v) => self.s(i).append_value(v),
            None => self.s(i).append_null(),
        }
    }

    fn finish(mut self) -> Result<RecordBatch, EncodeError> {
        let cols: Vec<ArrayRef> = self.b.iter_mut().map(ColBuilder::finish).collect();
        RecordBatch::try_new(schemas::arrow_schema(self.columns), cols).map_err(|source| {
            EncodeError::Arrow {
                table: self.table,
                source,
            }
        })
    }
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

/// One annotation value, appended in the same pass that reads it: strings as
/// themselves, `null` as null, numbers and booleans as their JSON text. (The audit API
/// types annotations as strings; anything else is rendered as compact JSON.)
struct AnnotationValue<'b>(&'b mut StringBuilder);

impl<'de> DeserializeSeed<'de> for AnnotationValue<'_> {
    type Value = Option<Text<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AnnotationValue<'_> {
    type Value = Option<Text<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        self.0.append_value(v);
        Ok(Some(Text(std::borrow::Cow::Borrowed(v))))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.0.append_value(v);
        Ok(Some(Text(std::borrow::Cow::Owned(v.to_owned()))))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.0.append_null();
        Ok(None)
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        self.0.append_value(if v { "true" } else { "false" });
        Ok(None)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.0.append_value(v.to_string());
        Ok(None)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.0.append_value(v.to_string());
        Ok(None)
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.0.append_value(serde_json::Value::from(v).to_string());
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, s: A) -> Result<Self::Value, A::Error> {
        let v = serde_json::Value::deserialize(serde::de::value::SeqAccessDeserializer::new(s))?;
        self.0.append_value(v.to_string());
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Self::Value, A::Error> {
        let v = serde_json::Value::deserialize(serde::de::value::MapAccessDeserializer::new(m))?;
        self.0.append_value(v.to_string());
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
            let v = m.next_value_seed(AnnotationValue(self.0.values()))?;
            match &*k {
                DECISION => decision = v,
                REASON => reason = v,
                _ => {}
            }
        }
        Ok((decision, reason))
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

fn append_extra(
    b: &mut MapBuilder<StringBuilder, ListBuilder<StringBuilder>>,
    x: Option<&UserExtra<'_>>,
) {
    let Some(x) = x.filter(|x| x.is_map()) else {
        let _ = b.append(false);
        return;
    };
    for e in x.entries() {
        b.keys().append_value(e.key);
        let l = b.values();
        match e.values {
            Some(vals) => {
                for v in vals {
                    match v {
                        Some(t) => l.values().append_value(&**t),
                        None => l.values().append_null(),
                    }
                }
                l.append(true);
            }
            None => l.append(false),
        }
    }
    let _ = b.append(true);
}

// ---- eks_audit --------------------------------------------------------------------------

/// Column positions of `eks_audit`, from `schemas` at compile time.
pub mod col {
    use schemas::{position, EKS_AUDIT};
    macro_rules! cols {
        ($($c:ident => $n:literal),+ $(,)?) => { $(pub const $c: usize = position(EKS_AUDIT, $n);)+ };
    }
    cols! {
        ACCOUNT_ID => "account_id", REGION => "region", CLUSTER => "cluster",
        LOG_GROUP => "log_group", LOG_STREAM => "log_stream", CWL_EVENT_ID => "cwl_event_id",
        INGEST_TIME => "ingest_time", AUDIT_ID => "audit_id", STAGE => "stage", LEVEL => "level",
        VERB => "verb", REQUEST_URI => "request_uri", EVENT_TIME => "event_time",
        STAGE_TIME => "stage_time", USERNAME => "username", USER_UID => "user_uid",
        USER_GROUPS => "user_groups", USER_EXTRA => "user_extra",
        IMPERSONATED_USERNAME => "impersonated_username",
        IMPERSONATED_GROUPS => "impersonated_groups", SOURCE_IPS => "source_ips",
        SOURCE_IP => "source_ip", USER_AGENT => "user_agent",
        OBJECT_RESOURCE => "object_resource", OBJECT_SUBRESOURCE => "object_subresource",
        OBJECT_NAMESPACE => "object_namespace", OBJECT_NAME => "object_name",
        OBJECT_API_GROUP => "object_api_group", OBJECT_API_VERSION => "object_api_version",
        RESPONSE_CODE => "response_code", RESPONSE_STATUS => "response_status",
        RESPONSE_REASON => "response_reason", RESPONSE_MESSAGE => "response_message",
        AUTHZ_DECISION => "authz_decision", AUTHZ_REASON => "authz_reason",
        ANNOTATIONS => "annotations", REQUEST_OBJECT => "request_object",
        RESPONSE_OBJECT => "response_object", AWS_ACCESS_KEY_ID => "aws_access_key_id",
        AWS_ARN => "aws_arn", AWS_ROLE_ARN => "aws_role_arn",
        AWS_SESSION_NAME => "aws_session_name", AWS_PRINCIPAL_ID => "aws_principal_id",
        PRINCIPAL_TYPE => "principal_type", PRINCIPAL_NAME => "principal_name",
        PRINCIPAL_ARN => "principal_arn", PRINCIPAL_ACCOUNT_ID => "principal_account_id",
        SOURCE_IDENTITY => "source_identity", ROLE_CHAIN => "role_chain",
        ATTRIBUTION_METHOD => "attribution_method", ATTRIBUTION_STATUS => "attribution_status",
        PRINCIPAL_CLUSTER => "principal_cluster", PRINCIPAL_POD => "principal_pod",
        PRINCIPAL_USER_ID => "principal_user_id", DETECTIONS => "detections",
        PARSE_STATUS => "parse_status", RAW_MESSAGE => "raw_message",
    }
}

/// The attribution columns of `eks_audit`, in the order [`attribution_arrays`] returns.
pub const ATTRIBUTION_COLUMNS: [usize; schemas::ATTRIBUTION.len()] =
    schemas::positions(EKS_AUDIT, schemas::ATTRIBUTION);

/// The attribution columns of `findings`, in [`schemas::ATTRIBUTION`] order.
const FINDINGS_ATTRIBUTION: [usize; schemas::ATTRIBUTION.len()] =
    schemas::positions(FINDINGS, schemas::ATTRIBUTION);

fn append_attribution(c: &mut Columns, a: &Attribution<'_>) {
    append_attribution_at(c, a, ATTRIBUTION_COLUMNS)
}

/// Append an attribution into the columns at `at` ([`schemas::ATTRIBUTION`] order).
fn append_attribution_at(
    c: &mut Columns,
    a: &Attribution<'_>,
    at: [usize; schemas::ATTRIBUTION.len()],
) {
    let [ty, name, arn, account, source_identity, chain, method, status, cluster, pod, user_id] =
        at;
    c.s(ty).append_value(a.principal_type.as_str());
    c.opt(name, a.principal_name.as_deref());
    c.opt(arn, a.principal_arn.as_deref());
    c.opt(account, a.principal_account_id.as_deref());
    c.opt(source_identity, a.source_identity.as_deref());
    let l = c.list(chain);
    for r in &a.role_chain {
        l.values().append_value(r);
    }
    l.append(true);
    c.s(method).append_value(a.method.as_str());
    c.s(status).append_value(a.status.as_str());
    c.opt(cluster, a.principal_cluster.as_deref());
    c.opt(pod, a.principal_pod.as_deref());
    c.opt(user_id, a.principal_user_id.as_deref());
}

/// The [`ATTRIBUTION_COLUMNS`] of `attributions`, one row each, exactly as ingest
/// writes them (compaction replaces a pending row's attribution with these).
pub fn attribution_arrays(attributions: &[&Attribution<'_>]) -> Vec<ArrayRef> {
    let mut c = Columns::new("eks_audit", EKS_AUDIT, attributions.len());
    for a in attributions {
        append_attribution(&mut c, a);
    }
    ATTRIBUTION_COLUMNS
        .iter()
        .map(|&i| c.b[i].finish())
        .collect()
}

/// Builds one `eks_audit` record batch from rows and their attributions.
pub struct AuditBuilder {
    c: Columns,
    rows: usize,
}

impl Default for AuditBuilder {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl AuditBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builders sized for `rows` rows (fewer regrowths on the hot path).
    pub fn with_capacity(rows: usize) -> Self {
        Self {
            c: Columns::new("eks_audit", EKS_AUDIT, rows),
            rows: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Append one row; `detections` are the ids of the rules it matched.
    pub fn append<'d>(
        &mut self,
        r: &AuditRow<'_>,
        a: &Attribution<'_>,
        detections: impl Iterator<Item = &'d str>,
        ingest_ms: i64,
    ) {
        use col::*;
        let c = &mut self.c;
        let e = &r.event;
        c.s(ACCOUNT_ID).append_value(r.stamp.account_id);
        c.opt(REGION, r.region);
        c.s(CLUSTER).append_value(r.stamp.cluster);
        c.s(LOG_GROUP).append_value(r.stamp.log_group);
        c.s(LOG_STREAM).append_value(r.stamp.log_stream);
        c.s(CWL_EVENT_ID).append_value(r.cwl_id);
        c.ts(INGEST_TIME).append_value(ingest_ms);
        c.opt(AUDIT_ID, e.audit_id.as_deref());
        c.opt(STAGE, e.stage.as_deref());
        c.opt(LEVEL, e.level.as_deref());
        c.opt(VERB, e.verb.as_deref());
        c.opt(REQUEST_URI, e.request_uri.as_deref());
        c.ts(EVENT_TIME).append_value(r.event_ms);
        c.ts(STAGE_TIME).append_option(
            e.stage_timestamp
                .as_deref()
                .and_then(resolver::time::parse_rfc3339_ms),
        );
        let user = e.user.as_ref();
        c.opt(USERNAME, user.and_then(|u| u.username.as_deref()));
        c.opt(USER_UID, user.and_then(|u| u.uid.as_deref()));
        append_list(c.list(USER_GROUPS), user.and_then(|u| u.groups));
        append_extra(c.list_map(USER_EXTRA), user.and_then(|u| u.extra.as_ref()));
        let imp = e.impersonated_user.as_ref();
        c.opt(
            IMPERSONATED_USERNAME,
            imp.and_then(|u| u.username.as_deref()),
        );
        append_list(c.list(IMPERSONATED_GROUPS), imp.and_then(|u| u.groups));
        // source_ip: the last entry, the one the apiserver saw (earlier ones come from
        // X-Forwarded-For and can be forged by the client).
        let last_ip = append_list(c.list(SOURCE_IPS), e.source_ips);
        c.opt(SOURCE_IP, last_ip.as_deref());
        c.opt(USER_AGENT, e.user_agent.as_deref());
        let o = e.object_ref.as_ref();
        c.opt(OBJECT_RESOURCE, o.and_then(|o| o.resource.as_deref()));
        c.opt(OBJECT_SUBRESOURCE, o.and_then(|o| o.subresource.as_deref()));
        c.opt(OBJECT_NAMESPACE, o.and_then(|o| o.namespace.as_deref()));
        c.opt(OBJECT_NAME, o.and_then(|o| o.name.as_deref()));
        c.opt(OBJECT_API_GROUP, o.and_then(|o| o.api_group.as_deref()));
        c.opt(OBJECT_API_VERSION, o.and_then(|o| o.api_version.as_deref()));
        let rs = e.response_status.as_ref();
        c.int(RESPONSE_CODE).append_option(rs.and_then(|r| r.code));
        c.opt(RESPONSE_STATUS, rs.and_then(|r| r.status.as_deref()));
        c.opt(RESPONSE_REASON, rs.and_then(|r| r.reason.as_deref()));
        c.opt(RESPONSE_MESSAGE, rs.and_then(|r| r.message.as_deref()));
        let ann = c.map(ANNOTATIONS);
        let (decision, reason) = match e.annotations {
            Some(raw) if raw.get().starts_with('{') => {
                let mut de = serde_json::Deserializer::from_str(raw.get());
                let found = de.deserialize_map(StrMap(ann)).unwrap_or((None, None));
                let _ = ann.append(true);
                found
            }
            _ => {
                let _ = ann.append(false);
                (None, None)
            }
        };
        c.opt(AUTHZ_DECISION, decision.as_deref());
        c.opt(AUTHZ_REASON, reason.as_deref());
        c.opt(REQUEST_OBJECT, e.request_object.map(RawValue::get));
        c.opt(RESPONSE_OBJECT, e.response_object.map(RawValue::get));
        let x = &r.extra;
        c.opt(AWS_ACCESS_KEY_ID, x.access_key_id);
        c.opt(AWS_ARN, x.arn);
        c.opt(AWS_ROLE_ARN, x.canonical_arn);
        c.opt(AWS_SESSION_NAME, x.session_name);
        c.opt(AWS_PRINCIPAL_ID, x.principal_id);
        append_attribution(c, a);
        let d = c.list(DETECTIONS);
        for id in detections {
            d.values().append_value(id);
        }
        d.append(true);
        c.s(PARSE_STATUS).append_value(r.parse_status.as_str());
        c.opt(RAW_MESSAGE, r.raw_message);
        self.rows += 1;
    }

    pub fn finish(self) -> Result<RecordBatch, EncodeError> {
        self.c.finish()
    }
}

/// One `eks_audit` partition -> Parquet bytes.
pub fn audit_parquet<'x, A: AsRef<Attribution<'x>>>(
    rows: &[AuditRow<'_>],
    attributions: &[A],
    detections: &Detections<'_>,
    positions: &[usize],
    ingest_ms: i64,
) -> Result<Vec<u8>, EncodeError> {
    let batch = audit_batch(rows, attributions, detections, positions, ingest_ms)?;
    to_parquet("eks_audit", &batch, col::EVENT_TIME)
}

/// One `eks_audit` partition as an Arrow record batch. Not inlined: a stage of the
/// instruction profile (bench --instructions).
#[inline(never)]
pub fn audit_batch<'x, A: AsRef<Attribution<'x>>>(
    rows: &[AuditRow<'_>],
    attributions: &[A],
    detections: &Detections<'_>,
    positions: &[usize],
    ingest_ms: i64,
) -> Result<RecordBatch, EncodeError> {
    let mut b = AuditBuilder::with_capacity(positions.len());
    for &i in positions {
        b.append(
            &rows[i],
            attributions[i].as_ref(),
            detections.rule_ids(i),
            ingest_ms,
        );
    }
    b.finish()
}

// ---- findings ---------------------------------------------------------------------------

const FINDINGS_EVENT_TIME: usize = schemas::position(FINDINGS, "event_time");

/// The last entry of `sourceIPs` (the one the apiserver saw), as `source_ip`.
pub fn last_source_ip<'r>(r: &AuditRow<'r>) -> Option<Text<'r>> {
    let raw = r.event.source_ips.filter(|s| s.get().starts_with('['))?;
    let mut b = StringBuilder::new();
    let mut de = serde_json::Deserializer::from_str(raw.get());
    de.deserialize_seq(StrSeq(&mut b)).ok().flatten()
}

/// One `findings` partition: `findings` in the order given (event order).
pub fn findings_batch(
    findings: &[&Finding<'_>],
    ingest_ms: i64,
) -> Result<RecordBatch, EncodeError> {
    let mut c = Columns::new("findings", FINDINGS, findings.len());
    let p = |n| schemas::position(FINDINGS, n);
    for f in findings {
        let rule = f.rule;
        c.s(p("finding_id")).append_value(&f.finding_id);
        c.s(p("rule_id")).append_value(&rule.id);
        c.s(p("rule_name")).append_value(&rule.name);
        c.s(p("rule_title")).append_value(&rule.title);
        c.s(p("severity")).append_value(rule.severity.as_str());
        let t = c.list(p("mitre_techniques"));
        for id in &rule.techniques {
            t.values().append_value(id);
        }
        t.append(true);
        c.ts(p("event_time")).append_value(f.event_ms);
        c.ts(p("ingest_time")).append_value(ingest_ms);
        c.s(p("account_id")).append_value(f.account_id);
        c.opt(p("region"), f.region);
        c.opt(p("cluster"), f.cluster);
        c.s(p("log_group")).append_value(f.log_group);
        c.s(p("log_stream")).append_value(f.log_stream);
        c.s(p("cwl_event_id")).append_value(f.cwl_event_id);
        c.s(p("source_table")).append_value(f.source_table.as_str());
        c.opt(p("event_name"), f.event_name);
        c.opt(p("target_principal_arn"), f.target_principal_arn);
        c.opt(p("audit_id"), f.audit_id);
        c.opt(p("stage"), f.stage);
        c.opt(p("verb"), f.verb);
        c.opt(p("request_uri"), f.request_uri);
        c.opt(p("object_resource"), f.object_resource);
        c.opt(p("object_subresource"), f.object_subresource);
        c.opt(p("object_namespace"), f.object_namespace);
        c.opt(p("object_name"), f.object_name);
        c.int(p("response_code")).append_option(f.response_code);
        c.opt(p("authz_decision"), f.authz_decision.as_deref());
        c.opt(p("source_ip"), f.source_ip.as_deref());
        c.opt(p("user_agent"), f.user_agent);
        c.opt(p("username"), f.username);
        append_list(c.list(p("user_groups")), f.user_groups);
        c.opt(p("impersonated_username"), f.impersonated_username);
        c.opt(p("aws_access_key_id"), f.aws_access_key_id);
        c.opt(p("aws_arn"), f.aws_arn);
        c.opt(p("aws_role_arn"), f.aws_role_arn);
        c.opt(p("aws_session_name"), f.aws_session_name);
        append_attribution_at(&mut c, f.attribution, FINDINGS_ATTRIBUTION);
    }
    c.finish()
}

/// One `findings` partition -> Parquet bytes.
pub fn findings_parquet(findings: &[&Finding<'_>], ingest_ms: i64) -> Result<Vec<u8>, EncodeError> {
    let b = findings_batch(findings, ingest_ms)?;
    to_parquet("findings", &b, FINDINGS_EVENT_TIME)
}

/// The `authorization.k8s.io/decision` annotation, as the `authz_decision` column has it.
pub fn authz_decision<'r>(r: &AuditRow<'r>) -> Option<Text<'r>> {
    let raw = r.event.annotations.filter(|a| a.get().starts_with('{'))?;
    let mut b = MapBuilder::new(
        Some(map_names()),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let mut de = serde_json::Deserializer::from_str(raw.get());
    de.deserialize_map(StrMap(&mut b)).ok()?.0
}

// ---- eks_api_events ---------------------------------------------------------------------

const API_EVENT_TIME: usize = schemas::position(EKS_API_EVENTS, "event_time");

/// The attribution columns of `eks_api_events`, in [`schemas::ATTRIBUTION`] order.
const API_ATTRIBUTION: [usize; schemas::ATTRIBUTION.len()] =
    schemas::positions(EKS_API_EVENTS, schemas::ATTRIBUTION);

fn strs(b: &mut ListBuilder<StringBuilder>, v: Option<&Vec<String>>) {
    match v {
        Some(v) => {
            for s in v {
                b.values().append_value(s);
            }
            b.append(true);
        }
        None => b.append(false),
    }
}

/// One `eks_api_events` partition (rows at `positions`, in event order) -> a batch.
pub fn api_events_batch<'x, A: AsRef<Attribution<'x>>>(
    rows: &[ApiRow<'_>],
    attributions: &[A],
    detections: &Detections<'_>,
    positions: &[usize],
    ingest_ms: i64,
) -> Result<RecordBatch, EncodeError> {
    let mut c = Columns::new("eks_api_events", EKS_API_EVENTS, positions.len());
    let p = |n| schemas::position(EKS_API_EVENTS, n);
    for &i in positions {
        let r = &rows[i];
        let e = &r.event;
        let k = &e.caller;
        let t = &e.target;
        c.opt(p("account_id"), e.account_id.as_deref());
        c.opt(p("region"), e.region.as_deref());
        c.opt(p("cluster"), e.cluster.as_deref());
        c.s(p("log_group")).append_value(r.log_group);
        c.s(p("log_stream")).append_value(r.log_stream);
        c.s(p("cwl_event_id")).append_value(r.cwl_id);
        c.ts(p("ingest_time")).append_value(ingest_ms);
        c.ts(p("event_time")).append_value(e.event_ms);
        c.s(p("event_id")).append_value(&e.event_id);
        c.s(p("event_name")).append_value(&e.event_name);
        c.s(p("event_source")).append_value(&e.event_source);
        c.opt(p("event_type"), e.event_type.as_deref());
        c.opt(p("request_id"), e.request_id.as_deref());
        c.opt(p("source_ip"), e.source_ip.as_deref());
        c.opt(p("user_agent"), e.user_agent.as_deref());
        c.opt(p("error_code"), e.error_code.as_deref());
        c.opt(p("error_message"), e.error_message.as_deref());
        c.opt(p("caller_type"), k.kind.as_deref());
        c.opt(p("caller_arn"), k.arn.as_deref());
        c.opt(p("caller_account_id"), k.account_id.as_deref());
        c.opt(p("caller_principal_id"), k.principal_id.as_deref());
        c.opt(p("caller_access_key_id"), k.access_key_id.as_deref());
        c.opt(p("caller_user_name"), k.user_name.as_deref());
        c.opt(p("caller_role_arn"), k.role_arn.as_deref());
        c.opt(p("caller_session_name"), k.session_name.as_deref());
        append_attribution_at(&mut c, attributions[i].as_ref(), API_ATTRIBUTION);
        c.opt(p("target_principal_arn"), t.principal_arn.as_deref());
        c.opt(
            p("target_principal_account_id"),
            t.principal_account_id.as_deref(),
        );
        c.opt(p("access_entry_type"), t.access_entry_type.as_deref());
        c.opt(
            p("access_entry_username"),
            t.access_entry_username.as_deref(),
        );
        strs(c.list(p("kubernetes_groups")), t.kubernetes_groups.as_ref());
        c.opt(p("access_policy_arn"), t.access_policy_arn.as_deref());
        c.opt(p("access_scope_type"), t.access_scope_type.as_deref());
        strs(
            c.list(p("access_scope_namespaces")),
            t.access_scope_namespaces.as_ref(),
        );
        c.opt(
            p("pod_identity_namespace"),
            t.pod_identity_namespace.as_deref(),
        );
        c.opt(
            p("pod_identity_service_account"),
            t.pod_identity_service_account.as_deref(),
        );
        c.opt(p("association_id"), t.association_id.as_deref());
        c.bool(p("audit_logging_enabled"))
            .append_option(t.audit_logging_enabled);
        c.bool(p("authenticator_logging_enabled"))
            .append_option(t.authenticator_logging_enabled);
        c.bool(p("endpoint_public_access"))
            .append_option(t.endpoint_public_access);
        strs(
            c.list(p("public_access_cidrs")),
            t.public_access_cidrs.as_ref(),
        );
        c.opt(p("authentication_mode"), t.authentication_mode.as_deref());
        c.bool(p("bootstrap_cluster_creator_admin"))
            .append_option(t.bootstrap_cluster_creator_admin);
        c.opt(
            p("identity_provider_config_name"),
            t.identity_provider_config_name.as_deref(),
        );
        c.opt(
            p("identity_provider_issuer_url"),
            t.identity_provider_issuer_url.as_deref(),
        );
        c.opt(p("request_parameters"), e.request_parameters.as_deref());
        c.opt(p("response_elements"), e.response_elements.as_deref());
        let d = c.list(p("detections"));
        for id in detections.rule_ids(i) {
            d.values().append_value(id);
        }
        d.append(true);
    }
    c.finish()
}

/// One `eks_api_events` partition -> Parquet bytes.
pub fn api_events_parquet<'x, A: AsRef<Attribution<'x>>>(
    rows: &[ApiRow<'_>],
    attributions: &[A],
    detections: &Detections<'_>,
    positions: &[usize],
    ingest_ms: i64,
) -> Result<Vec<u8>, EncodeError> {
    let b = api_events_batch(rows, attributions, detections, positions, ingest_ms)?;
    to_parquet("eks_api_events", &b, API_EVENT_TIME)
}

// ---- sts_sessions -----------------------------------------------------------------------

const STS_EVENT_TIME: usize = schemas::position(STS_SESSIONS, "event_time");

/// Builds `sts_sessions` from parsed sessions (few per batch; filled column by column).
pub fn sts_batch(rows: &[&StsSession]) -> Result<RecordBatch, EncodeError> {
    let mut c = Columns::new("sts_sessions", STS_SESSIONS, rows.len());
    for (i, col) in STS_SESSIONS.iter().enumerate() {
        for r in rows {
            let v: Option<&str> = match col.name {
                "event_time" => {
                    c.ts(i).append_value(r.event_time_ms);
                    continue;
                }
                "expiration" => {
                    c.ts(i).append_option(r.expiration_ms);
                    continue;
                }
                "session_tags" => {
                    let m = c.map(i);
                    for (k, v) in &r.session_tags {
                        m.keys().append_value(k);
                        m.values().append_value(v);
                    }
                    let _ = m.append(true);
                    continue;
                }
                "on_behalf_of_user_id" => r.on_behalf_of_user_id.as_deref(),
                "on_behalf_of_identity_store_arn" => r.on_behalf_of_identity_store_arn.as_deref(),
                "event_id" => Some(&r.event_id),
                "shared_event_id" => r.shared_event_id.as_deref(),
                "request_id" => r.request_id.as_deref(),
                "recipient_account_id" => r.recipient_account_id.as_deref(),
                "event_name" => Some(r.event_name.as_str()),
                "aws_region" => r.aws_region.as_deref(),
                "source_ip" => r.source_ip.as_deref(),
                "user_agent" => r.user_agent.as_deref(),
                "error_code" => r.error_code.as_deref(),
                "error_message" => r.error_message.as_deref(),
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
                other => unreachable!("sts_sessions column {other} has no source"),
            };
            c.opt(i, v);
        }
    }
    c.finish()
}

/// One `sts_sessions` partition -> Parquet bytes.
pub fn sts_parquet(rows: &[&StsSession]) -> Result<Vec<u8>, EncodeError> {
    to_parquet("sts_sessions", &sts_batch(rows)?, STS_EVENT_TIME)
}

#[cfg(test)]
mod tests {
    use super::*;

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
