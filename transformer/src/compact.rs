//! Stage: compact. A partition's rows, gathered from its many part files, become each
//! event once, sorted by event time, with late attribution written in. Plain functions
//! over record batches; [`crate::compactor`] does the reading and writing.
//!
//! Delivery is at least once: CloudWatch Logs, Kinesis and Firehose may deliver a record
//! again under a new Firehose `recordId`, so the same audit event lands in two part files.
//! The event's identity is its CloudWatch Logs coordinates (`log_group`, `log_stream`,
//! `cwl_event_id`); for `sts_sessions` the CloudTrail `event_id` within the recipient
//! account's partition.

use std::collections::HashSet;

use arrow_array::{
    Array, ArrayRef, BooleanArray, ListArray, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow_schema::{ArrowError, DataType, SchemaRef};

use resolver::awsauth::AwsAuth;
use resolver::identity::{AwsExtra, Identity};
use resolver::Attribution;
use schemas::{Column, EKS_API_EVENTS, EKS_AUDIT, FINDINGS, STS_SESSIONS};

use crate::encode::{self, col};

/// A table compaction knows: its columns, time column and event identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    EksAudit,
    StsSessions,
    /// One row per (rule, event); its late attribution is left to `findings_attributed`.
    Findings,
    /// One row per EKS API call; late attribution is left to `eks_api_events_attributed`.
    EksApiEvents,
}

const STS_EVENT_TIME: usize = schemas::position(STS_SESSIONS, "event_time");
const STS_EVENT_ID: usize = schemas::position(STS_SESSIONS, "event_id");
const FINDINGS_EVENT_TIME: usize = schemas::position(FINDINGS, "event_time");
const FINDING_ID: usize = schemas::position(FINDINGS, "finding_id");
const API_EVENT_TIME: usize = schemas::position(EKS_API_EVENTS, "event_time");
const API_EVENT_ID: usize = schemas::position(EKS_API_EVENTS, "event_id");

impl Table {
    pub const ALL: [Table; 4] = [
        Table::EksAudit,
        Table::StsSessions,
        Table::Findings,
        Table::EksApiEvents,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::EksAudit => "eks_audit",
            Self::StsSessions => "sts_sessions",
            Self::Findings => "findings",
            Self::EksApiEvents => "eks_api_events",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == s)
    }

    pub fn columns(self) -> &'static [Column] {
        match self {
            Self::EksAudit => EKS_AUDIT,
            Self::StsSessions => STS_SESSIONS,
            Self::Findings => FINDINGS,
            Self::EksApiEvents => EKS_API_EVENTS,
        }
    }

    pub fn schema(self) -> SchemaRef {
        schemas::arrow_schema(self.columns())
    }

    /// The event-time column: files are sorted by it.
    pub fn time_column(self) -> usize {
        match self {
            Self::EksAudit => col::EVENT_TIME,
            Self::StsSessions => STS_EVENT_TIME,
            Self::Findings => FINDINGS_EVENT_TIME,
            Self::EksApiEvents => API_EVENT_TIME,
        }
    }

    /// The columns that together name one delivered event (at most 3: `dedup_sort`
    /// keeps a key in a fixed array).
    pub fn key_columns(self) -> &'static [usize] {
        match self {
            Self::EksAudit => &[col::LOG_GROUP, col::LOG_STREAM, col::CWL_EVENT_ID],
            Self::StsSessions => &[STS_EVENT_ID],
            // the rule and the event's CloudWatch coordinates, hashed
            Self::Findings => &[FINDING_ID],
            // a CloudTrail event id is unique per call (and per delivered copy)
            Self::EksApiEvents => &[API_EVENT_ID],
        }
    }

    /// Folders below `dt=`: account and cluster, or account.
    pub fn folders(self) -> usize {
        match self {
            Self::EksAudit => 2,
            Self::StsSessions | Self::Findings | Self::EksApiEvents => 1,
        }
    }

    /// Only `eks_audit` rows carry an attribution to fill.
    pub fn attributed(self) -> bool {
        self == Self::EksAudit
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error("column {column} is {found} in the file, {expected} in the table")]
    ColumnType {
        column: &'static str,
        found: DataType,
        expected: DataType,
    },
    #[error(transparent)]
    Arrow(#[from] ArrowError),
}

/// A batch read from a file of any earlier version, in today's schema: columns are
/// matched by name, a column the file lacks (added since) is all null, a column the
/// table no longer has is dropped. A column of another type is an error: nothing is
/// cast silently.
pub fn conform(table: Table, batch: &RecordBatch) -> Result<RecordBatch, CompactError> {
    let schema = table.schema();
    if batch.schema().fields() == schema.fields() {
        return Ok(RecordBatch::try_new(schema, batch.columns().to_vec())?);
    }
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (c, f) in table.columns().iter().zip(schema.fields()) {
        match batch.column_by_name(c.name) {
            Some(a) if a.data_type() == f.data_type() => cols.push(a.clone()),
            Some(a) => {
                return Err(CompactError::ColumnType {
                    column: c.name,
                    found: a.data_type().clone(),
                    expected: f.data_type().clone(),
                })
            }
            None => cols.push(arrow_array::new_null_array(f.data_type(), batch.num_rows())),
        }
    }
    Ok(RecordBatch::try_new(schema, cols)?)
}

fn times(table: Table, b: &RecordBatch) -> &TimestampMillisecondArray {
    b.column(table.time_column())
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .expect("conformed batches have the table's time type")
}

fn strings(b: &RecordBatch, i: usize) -> &StringArray {
    b.column(i)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("conformed batches have the table's string type")
}

/// Rows without an event time sort last (ingest always writes one).
fn time_at(t: &TimestampMillisecondArray, i: usize) -> i64 {
    if t.is_valid(i) {
        t.value(i)
    } else {
        i64::MAX
    }
}

/// Split a conformed batch at event time `cut`: (rows before `cut`, the rest).
pub fn split_at(
    table: Table,
    batch: &RecordBatch,
    cut: i64,
) -> Result<(RecordBatch, RecordBatch), CompactError> {
    let t = times(table, batch);
    let before: BooleanArray = (0..batch.num_rows())
        .map(|i| Some(time_at(t, i) < cut))
        .collect();
    let after: BooleanArray = before.iter().map(|v| v.map(|v| !v)).collect();
    Ok((
        arrow_select::filter::filter_record_batch(batch, &before)?,
        arrow_select::filter::filter_record_batch(batch, &after)?,
    ))
}

/// Attribution outcomes, best first: of two copies of an event, the better attributed
/// one is kept.
fn status_rank(s: Option<&str>) -> u8 {
    match s {
        Some("resolved") => 0,
        Some("not_applicable") => 1,
        Some("ambiguous") => 2,
        Some("conflict") => 3,
        Some("pending") => 4,
        _ => 5,
    }
}

/// What [`dedup_sort`] made of its input.
#[derive(Debug)]
pub struct Merged {
    pub batch: RecordBatch,
    /// Rows dropped as second deliveries of an event already kept.
    pub duplicates: usize,
}

/// Each event once, sorted by event time. Ties keep a stable order: the key, then the
/// better attribution, then the earlier ingest. Rows with a missing key part are never
/// taken for duplicates. The rows are copied once, straight from the input batches.
pub fn dedup_sort(table: Table, batches: &[RecordBatch]) -> Result<Merged, CompactError> {
    /// One row's sort key, computed once (not per comparison).
    struct Row<'b> {
        batch: u32,
        row: u32,
        time: i64,
        key: Option<[&'b str; 3]>,
        rank: u8,
        ingest: i64,
    }
    let mut rows: Vec<Row<'_>> =
        Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for (b, batch) in batches.iter().enumerate() {
        let t = times(table, batch);
        let keys: Vec<&StringArray> = table
            .key_columns()
            .iter()
            .map(|&i| strings(batch, i))
            .collect();
        let status = table
            .attributed()
            .then(|| strings(batch, col::ATTRIBUTION_STATUS));
        let ingest = table.attributed().then(|| {
            batch
                .column(col::INGEST_TIME)
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .expect("conformed batches have the table's time type")
        });
        for i in 0..batch.num_rows() {
            let mut key = [""; 3];
            let mut whole = true;
            for (k, a) in keys.iter().enumerate() {
                if a.is_valid(i) {
                    key[k] = a.value(i);
                } else {
                    whole = false;
                }
            }
            rows.push(Row {
                batch: b as u32,
                row: i as u32,
                time: time_at(t, i),
                key: whole.then_some(key),
                rank: status.map_or(0, |s| status_rank(s.is_valid(i).then(|| s.value(i)))),
                ingest: ingest.map_or(0, |g| time_at(g, i)),
            });
        }
    }
    rows.sort_by(|a, b| (a.time, a.key, a.rank, a.ingest).cmp(&(b.time, b.key, b.rank, b.ingest)));
    let mut seen: HashSet<[&str; 3]> = HashSet::with_capacity(rows.len());
    let before = rows.len();
    rows.retain(|r| r.key.is_none_or(|k| seen.insert(k)));
    let duplicates = before - rows.len();
    let from: Vec<(usize, usize)> = rows
        .iter()
        .map(|r| (r.batch as usize, r.row as usize))
        .collect();
    drop(seen);
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let batch = if from.is_empty() {
        RecordBatch::new_empty(table.schema())
    } else {
        arrow_select::interleave::interleave_record_batch(&refs, &from)?
    };
    Ok(Merged { batch, duplicates })
}

/// Rows of an `eks_audit` batch whose attribution is still `pending`.
pub fn pending_rows(batch: &RecordBatch) -> Vec<usize> {
    let s = strings(batch, col::ATTRIBUTION_STATUS);
    (0..batch.num_rows())
        .filter(|&i| s.is_valid(i) && s.value(i) == "pending")
        .collect()
}

/// A row's identity as ingest classified it, rebuilt from the columns ingest wrote.
#[derive(Debug)]
pub struct RowIdentity<'a> {
    pub row: usize,
    pub account: &'a str,
    pub username: Option<&'a str>,
    pub event_ms: i64,
    pub identity: Identity<'a>,
}

/// The identities of `rows`: the same classification ingest made (the same
/// `username`, `user.groups`, `user.extra` fields and aws-auth mapping).
pub fn identities<'a>(
    batch: &'a RecordBatch,
    rows: &[usize],
    aws_auth: Option<&AwsAuth>,
) -> Vec<RowIdentity<'a>> {
    let s = |i| strings(batch, i);
    let opt = |a: &'a StringArray, i: usize| a.is_valid(i).then(|| a.value(i));
    let (account, username) = (s(col::ACCOUNT_ID), s(col::USERNAME));
    let (key, arn, canonical, session, principal) = (
        s(col::AWS_ACCESS_KEY_ID),
        s(col::AWS_ARN),
        s(col::AWS_ROLE_ARN),
        s(col::AWS_SESSION_NAME),
        s(col::AWS_PRINCIPAL_ID),
    );
    let groups = batch
        .column(col::USER_GROUPS)
        .as_any()
        .downcast_ref::<ListArray>()
        .expect("conformed batches have the table's list type");
    let t = times(Table::EksAudit, batch);
    rows.iter()
        .map(|&i| {
            let extra = AwsExtra {
                access_key_id: opt(key, i),
                arn: opt(arn, i),
                canonical_arn: opt(canonical, i),
                session_name: opt(session, i),
                principal_id: opt(principal, i),
            };
            let unauthenticated = groups.is_valid(i) && {
                let g = groups.value(i);
                g.as_any()
                    .downcast_ref::<StringArray>()
                    .is_some_and(|g| g.iter().any(|v| v == Some("system:unauthenticated")))
            };
            let username = opt(username, i);
            RowIdentity {
                row: i,
                account: opt(account, i).unwrap_or(""),
                username,
                event_ms: time_at(t, i),
                identity: resolver::classify(username, unauthenticated, &extra, aws_auth),
            }
        })
        .collect()
}

/// `batch` with the attribution of `rows[k]` replaced by `attributions[k]`; every
/// other row and column as it was.
pub fn fill(
    batch: &RecordBatch,
    rows: &[usize],
    attributions: &[&Attribution<'_>],
) -> Result<RecordBatch, CompactError> {
    if rows.is_empty() {
        return Ok(batch.clone());
    }
    let fresh = encode::attribution_arrays(attributions);
    let mut from: Vec<(usize, usize)> = (0..batch.num_rows()).map(|i| (0, i)).collect();
    for (k, &r) in rows.iter().enumerate() {
        from[r] = (1, k);
    }
    let mut cols = batch.columns().to_vec();
    for (&c, new) in encode::ATTRIBUTION_COLUMNS.iter().zip(&fresh) {
        let old = batch.column(c);
        cols[c] = arrow_select::interleave::interleave(&[old.as_ref(), new.as_ref()], &from)?;
    }
    Ok(RecordBatch::try_new(batch.schema(), cols)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{StringBuilder, TimestampMillisecondBuilder};
    use std::sync::Arc;

    /// (cwl id, event ms, status, ingest ms)
    type Row<'a> = (&'a str, i64, &'a str, i64);

    /// An `eks_audit` batch of such rows, every other column null.
    fn audit(rows: &[Row<'_>]) -> RecordBatch {
        let schema = Table::EksAudit.schema();
        let n = rows.len();
        let mut cols: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| arrow_array::new_null_array(f.data_type(), n))
            .collect();
        let strs = |f: &dyn Fn(&Row<'_>) -> String| {
            let mut b = StringBuilder::new();
            rows.iter().for_each(|r| b.append_value(f(r)));
            Arc::new(b.finish()) as ArrayRef
        };
        let ts = |f: &dyn Fn(&Row<'_>) -> i64| {
            let mut b = TimestampMillisecondBuilder::new().with_timezone("UTC");
            rows.iter().for_each(|r| b.append_value(f(r)));
            Arc::new(b.finish()) as ArrayRef
        };
        cols[col::LOG_GROUP] = strs(&|_| "/aws/eks/prod/cluster".into());
        cols[col::LOG_STREAM] = strs(&|_| "kube-apiserver-audit-1".into());
        cols[col::CWL_EVENT_ID] = strs(&|r| r.0.into());
        cols[col::EVENT_TIME] = ts(&|r| r.1);
        cols[col::ATTRIBUTION_STATUS] = strs(&|r| r.2.into());
        cols[col::INGEST_TIME] = ts(&|r| r.3);
        RecordBatch::try_new(schema, cols).unwrap()
    }

    fn column(b: &RecordBatch, i: usize) -> Vec<String> {
        let a = strings(b, i);
        (0..a.len()).map(|r| a.value(r).to_string()).collect()
    }

    #[test]
    fn dedup_keeps_the_better_attributed_then_earlier_copy_and_sorts() {
        let a = audit(&[("e2", 20, "pending", 1), ("e1", 10, "pending", 1)]);
        let b = audit(&[("e2", 20, "resolved", 2), ("e3", 5, "pending", 2)]);
        let c = audit(&[("e1", 10, "pending", 0)]);
        let m = dedup_sort(Table::EksAudit, &[a, b, c]).unwrap();
        assert_eq!(m.duplicates, 2);
        assert_eq!(column(&m.batch, col::CWL_EVENT_ID), ["e3", "e1", "e2"]);
        assert_eq!(
            column(&m.batch, col::ATTRIBUTION_STATUS),
            ["pending", "pending", "resolved"]
        );
        let ingest = times_of(&m.batch, col::INGEST_TIME);
        assert_eq!(
            ingest,
            [2, 0, 2],
            "e1: the earlier ingest; e2: the resolved copy"
        );
    }

    fn times_of(b: &RecordBatch, i: usize) -> Vec<i64> {
        let a = b
            .column(i)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        a.values().to_vec()
    }

    #[test]
    fn every_table_names_an_event_by_at_most_three_columns() {
        for t in Table::ALL {
            assert!((1..=3).contains(&t.key_columns().len()), "{}", t.name());
        }
    }

    #[test]
    fn split_at_cuts_by_event_time() {
        let b = audit(&[("a", 1, "x", 0), ("b", 5, "x", 0), ("c", 3, "x", 0)]);
        let (before, after) = split_at(Table::EksAudit, &b, 3).unwrap();
        assert_eq!(column(&before, col::CWL_EVENT_ID), ["a"]);
        assert_eq!(column(&after, col::CWL_EVENT_ID), ["b", "c"]);
    }

    #[test]
    fn older_files_are_conformed_by_name_and_other_types_refused() {
        let full = audit(&[("e1", 10, "pending", 1)]);
        // a file written before the workload columns existed, columns in another order
        let keep: Vec<usize> = (0..full.num_columns())
            .rev()
            .filter(|&i| i != col::PRINCIPAL_CLUSTER && i != col::PRINCIPAL_POD)
            .collect();
        let old = full.project(&keep).unwrap();
        let c = conform(Table::EksAudit, &old).unwrap();
        assert_eq!(c.schema(), Table::EksAudit.schema());
        assert_eq!(column(&c, col::CWL_EVENT_ID), ["e1"]);
        assert!(c.column(col::PRINCIPAL_CLUSTER).is_null(0));
        // a column of another type is not cast
        let mut fields: Vec<arrow_schema::Field> = old
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut cols = old.columns().to_vec();
        let i = old.schema().index_of("verb").unwrap();
        fields[i] = arrow_schema::Field::new("verb", DataType::Int32, true);
        cols[i] = Arc::new(arrow_array::Int32Array::from(vec![Some(1)]));
        let odd = RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), cols).unwrap();
        let e = conform(Table::EksAudit, &odd).unwrap_err();
        assert!(e.to_string().starts_with("column verb is Int32"), "{e}");
    }
}
