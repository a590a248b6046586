//! A lake Parquet file read in pieces: its footer first, then one row group at a time,
//! so compaction never holds a whole large file (plain functions over bytes; the
//! compactor fetches the byte ranges).
//!
//! Footer layout: `<metadata> <4-byte little-endian metadata length> PAR1`
//! (<https://parquet.apache.org/docs/file-format/>).

use std::sync::Arc;

use arrow_array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::statistics::Statistics;

/// Bytes read from the end of a file first: the footer of an ingest file fits.
pub const TAIL_GUESS: u64 = 64 * 1024;
/// A footer larger than this is refused (ours are a few KB to a few MB).
pub const MAX_FOOTER: u64 = 64 << 20;
/// Rows per decoded record batch.
pub const READ_BATCH_ROWS: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum PartError {
    #[error("not a Parquet file (no PAR1 footer)")]
    NotParquet,
    #[error("footer of {0} bytes is larger than the {MAX_FOOTER}-byte limit")]
    FooterTooLarge(u64),
    #[error("needs bytes {0}..{1} of the file")]
    NeedsRange(u64, u64),
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("corrupt Parquet: the reader failed ({0})")]
    Corrupt(String),
}

/// Run a Parquet decoding step, turning a panic of the reader on a corrupt file into an
/// error (the file's partition fails; the run goes on).
fn guarded<T>(f: impl FnOnce() -> Result<T, PartError>) -> Result<T, PartError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let why = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        Err(PartError::Corrupt(why))
    })
}

/// The footer's byte range, from the file's last bytes (`tail`) and its size.
pub fn footer_range(tail: &[u8], total: u64) -> Result<(u64, u64), PartError> {
    let n = tail.len();
    if n < 8 || total < 12 || &tail[n - 4..] != b"PAR1" {
        return Err(PartError::NotParquet);
    }
    let len = u32::from_le_bytes([tail[n - 8], tail[n - 7], tail[n - 6], tail[n - 5]]) as u64;
    if len > MAX_FOOTER {
        return Err(PartError::FooterTooLarge(len));
    }
    let start = total.checked_sub(8 + len).ok_or(PartError::NotParquet)?;
    Ok((start, total - 8))
}

/// Decode the footer: `tail` holds the file's last bytes (at least the footer range
/// [`footer_range`] names, else [`PartError::NeedsRange`]).
pub fn metadata(tail: &[u8], total: u64) -> Result<Arc<ParquetMetaData>, PartError> {
    let (footer_start, end) = footer_range(tail, total)?;
    let start = footer_start;
    let tail_start = total - tail.len() as u64;
    if start < tail_start {
        return Err(PartError::NeedsRange(start, total));
    }
    let from = (start - tail_start) as usize;
    let to = (end - tail_start) as usize;
    let meta = guarded(|| Ok(ParquetMetaDataReader::decode_metadata(&tail[from..to])?))?;
    // every column chunk inside the file: the reader (and `byte_range`) assume it
    for rg in meta.row_groups() {
        for c in rg.columns() {
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            let len = c.compressed_size();
            let inside = start >= 0
                && c.data_page_offset() >= 0
                && len >= 0
                && (start as u64)
                    .checked_add(len as u64)
                    .is_some_and(|e| e <= footer_start);
            if !inside {
                return Err(PartError::Corrupt(format!(
                    "a column chunk at {start}+{len} lies outside the file's {total} bytes"
                )));
            }
        }
    }
    Ok(Arc::new(meta))
}

/// One row group's place in its file and what its statistics say of event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowGroupSpan {
    pub index: usize,
    pub rows: u64,
    /// Bytes of the file holding the row group's column chunks.
    pub start: u64,
    pub end: u64,
    /// Event-time bounds (ms); `None` without statistics (then the whole day).
    pub min_ms: Option<i64>,
    pub max_ms: Option<i64>,
}

/// The row groups of a file, with the bounds of the top-level column `time_col`
/// (found by name among the leaves: a file of another column order or with nested
/// columns before it has it elsewhere).
pub fn row_groups(meta: &ParquetMetaData, time_col: &str) -> Vec<RowGroupSpan> {
    let leaf = meta
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().parts() == [time_col]);
    meta.row_groups()
        .iter()
        .enumerate()
        .map(|(index, rg)| {
            let (mut start, mut end) = (u64::MAX, 0u64);
            for c in rg.columns() {
                let (s, l) = c.byte_range();
                start = start.min(s);
                end = end.max(s + l);
            }
            let stats = leaf
                .and_then(|l| rg.columns().get(l))
                .and_then(|c| c.statistics());
            let (min_ms, max_ms) = match stats {
                Some(Statistics::Int64(s)) => (s.min_opt().copied(), s.max_opt().copied()),
                _ => (None, None),
            };
            RowGroupSpan {
                index,
                rows: rg.num_rows().max(0) as u64,
                start: if start == u64::MAX { 0 } else { start },
                end,
                min_ms,
                max_ms,
            }
        })
        .collect()
}

/// The key-value metadata entry `key` of a file.
pub fn kv<'m>(meta: &'m ParquetMetaData, key: &str) -> Option<&'m str> {
    meta.file_metadata()
        .key_value_metadata()?
        .iter()
        .find(|e| e.key == key)
        .and_then(|e| e.value.as_deref())
}

/// A file of which only one range of bytes is at hand: a row group's column chunks.
struct Slice {
    start: u64,
    data: Bytes,
    total: u64,
}

impl Length for Slice {
    fn len(&self) -> u64 {
        self.total
    }
}

impl ChunkReader for Slice {
    type T = bytes::buf::Reader<Bytes>;
    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use bytes::Buf;
        let end = self.start + self.data.len() as u64;
        Ok(self
            .get_bytes(start, end.saturating_sub(start) as usize)?
            .reader())
    }
    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let end = start.saturating_add(length as u64);
        if start < self.start || end > self.start + self.data.len() as u64 {
            return Err(parquet::errors::ParquetError::General(format!(
                "bytes {start}..{end} are outside the row group read ({}..{})",
                self.start,
                self.start + self.data.len() as u64
            )));
        }
        let from = (start - self.start) as usize;
        Ok(self.data.slice(from..from + length))
    }
}

/// Decode one row group from its bytes (`data` = file bytes `span.start..span.end`).
pub fn read_row_group(
    meta: &Arc<ParquetMetaData>,
    span: &RowGroupSpan,
    data: Vec<u8>,
    total: u64,
) -> Result<Vec<RecordBatch>, PartError> {
    guarded(|| {
        let arrow_meta = ArrowReaderMetadata::try_new(meta.clone(), ArrowReaderOptions::new())?;
        let slice = Slice {
            start: span.start,
            data: Bytes::from(data),
            total,
        };
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(slice, arrow_meta)
            .with_row_groups(vec![span.index])
            .with_batch_size(READ_BATCH_ROWS)
            .build()?;
        Ok(reader.collect::<Result<Vec<_>, _>>()?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Vec<u8> {
        let batch = crate::encode::AuditBuilder::new().finish().unwrap();
        crate::encode::to_parquet("eks_audit", &batch, 12).unwrap()
    }

    #[test]
    fn the_footer_is_found_from_the_tail_or_its_range_asked_for() {
        let f = file();
        let total = f.len() as u64;
        let m = metadata(&f, total).unwrap();
        let top = |m: &ParquetMetaData| {
            m.file_metadata()
                .schema_descr()
                .root_schema()
                .get_fields()
                .len()
        };
        assert_eq!(top(&m), schemas::EKS_AUDIT.len());
        // a tail too short for the footer names the range to fetch
        let tail = &f[f.len() - 16..];
        match metadata(tail, total) {
            Err(PartError::NeedsRange(start, end)) => {
                assert_eq!(end, total);
                let again = metadata(&f[start as usize..], total).unwrap();
                assert_eq!(top(&again), top(&m));
                assert_eq!(again.num_row_groups(), m.num_row_groups());
            }
            other => panic!("{other:?}"),
        }
        for bad in [&b"PAR1"[..], b"0123456789abcdef", b""] {
            assert!(matches!(
                metadata(bad, bad.len() as u64),
                Err(PartError::NotParquet)
            ));
        }
        let mut huge = vec![0u8; 16];
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        huge[12..].copy_from_slice(b"PAR1");
        assert!(matches!(
            metadata(&huge, 1 << 40),
            Err(PartError::FooterTooLarge(_))
        ));
    }
}
