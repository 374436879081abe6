//! Bounded, crash-safe on-disk spool: every report is appended here before it is sent and deleted only after the collector acknowledges it.
//!
//! # On-disk layout
//!
//! * Segment files `<first seq, 20 digits>.seg` hold records
//!   `[u32 LE payload len][u32 LE crc32(seq LE bytes ++ payload)][u64 LE seq][payload]`.
//!   Within a segment sequences go up by exactly 1; across segments they keep increasing
//!   (gaps only where data was dropped or lost).
//! * `spool.meta` is a small text file (`key value` lines plus a trailing `crc32` line) with the
//!   acknowledged watermark, the highest sequence ever handed out and the persistent drop
//!   counters. It is always replaced atomically (temp file, fsync, rename, directory fsync).
//! * `quarantine/<seq, 20 digits>.report` (the record's payload) and `.reason` (the
//!   collector's words): reports the collector refused for their content, the newest
//!   [`QUARANTINE_KEEP`], owner-only.
//!
//! # Guarantees
//!
//! Nothing is lost silently: data only leaves the disk when it is acknowledged, when the size
//! bound forces the oldest segments out, when recovery finds corruption, or when the collector
//! refuses a report for its content (quarantined). All but the first are counted in the
//! persistent drop totals and logged.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tracing::{debug, error, warn};

/// Framing: payload length, crc, sequence.
const HEADER_LEN: u64 = 16;
/// Absolute cap on a record's payload, independent of the configured bound, so a garbage length
/// field is recognised as corruption even if `max_bytes` changed between runs.
const HARD_MAX_PAYLOAD: u64 = 256 * 1024 * 1024;
const MIN_SEGMENT_BYTES: u64 = 64 * 1024;
const MAX_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
const SEGMENT_SUFFIX: &str = ".seg";
const SEGMENT_DIGITS: usize = 20;
const META_FILE: &str = "spool.meta";
const META_TMP_FILE: &str = "spool.meta.tmp";
const META_MAGIC: &str = "xunjian-spool-meta v1";
const READ_BUF: usize = 64 * 1024;
const QUARANTINE_DIR: &str = "quarantine";
/// Quarantined reports kept for inspection; older ones are deleted (they
/// stay counted as dropped).
pub const QUARANTINE_KEEP: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The operation being attempted travels inside `source` (see [`io_err`]), so callers can
    /// build this variant from any `io::Error` with just a path.
    #[error("spool: failed to {} {}", operation(source), path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("spool: record of {len} bytes exceeds the per-record limit of {max} bytes")]
    RecordTooLarge { len: u64, max: u64 },
    #[error("spool: sequence numbers exhausted")]
    SequenceExhausted,
}

/// An `io::Error` tagged with what the spool was doing. It displays as the inner error so the
/// error chain reads "failed to <op> <path>: <os error>" without repeating itself.
#[derive(Debug)]
struct OpError {
    op: &'static str,
    error: io::Error,
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for OpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

fn operation(source: &io::Error) -> &'static str {
    source
        .get_ref()
        .and_then(|e| e.downcast_ref::<OpError>())
        .map_or("access", |e| e.op)
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SpoolError {
    move |error| SpoolError::Io {
        path: path.to_path_buf(),
        // The kind is kept so callers can still tell e.g. a full disk from a permission problem.
        source: io::Error::new(error.kind(), OpError { op, error }),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpoolStatus {
    /// Records with seq > acked_seq still on disk.
    pub pending_reports: u64,
    /// Bytes of those records on disk (framing included).
    pub pending_bytes: u64,
    /// Records dropped because of the size bound or corruption, persisted across restarts.
    pub dropped_reports_total: u64,
    pub dropped_bytes_total: u64,
    pub max_bytes: u64,
    /// Highest sequence acknowledged.
    pub acked_seq: u64,
    /// Highest sequence ever assigned (0 = none).
    pub last_seq: u64,
}

/// What `open()` found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes cut off a torn or corrupt tail.
    pub truncated_bytes: u64,
    /// Records that could not be read back (also counted into the dropped totals).
    pub lost_records: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Meta {
    acked_seq: u64,
    last_seq: u64,
    dropped_reports_total: u64,
    dropped_bytes_total: u64,
}

impl Meta {
    fn encode(&self) -> String {
        let body = format!(
            "{META_MAGIC}\nacked_seq {}\nlast_seq {}\ndropped_reports_total {}\ndropped_bytes_total {}\n",
            self.acked_seq, self.last_seq, self.dropped_reports_total, self.dropped_bytes_total
        );
        let crc = crc32fast::hash(body.as_bytes());
        format!("{body}crc32 {crc:08x}\n")
    }

    fn decode(bytes: &[u8]) -> Option<Meta> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (body, crc_line) = text.strip_suffix('\n')?.rsplit_once('\n')?;
        let crc_hex = crc_line.strip_prefix("crc32 ")?;
        if crc_hex.len() != 8 || !crc_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let crc = u32::from_str_radix(crc_hex, 16).ok()?;
        // The checksummed body includes its final newline.
        if crc32fast::hash(&bytes[..body.len() + 1]) != crc {
            return None;
        }
        let mut lines = body.split('\n');
        if lines.next()? != META_MAGIC {
            return None;
        }
        let mut field = |key: &str| -> Option<u64> {
            let value = lines.next()?.strip_prefix(key)?.strip_prefix(' ')?;
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            value.parse().ok()
        };
        let meta = Meta {
            acked_seq: field("acked_seq")?,
            last_seq: field("last_seq")?,
            dropped_reports_total: field("dropped_reports_total")?,
            dropped_bytes_total: field("dropped_bytes_total")?,
        };
        if lines.next().is_some() {
            return None;
        }
        Some(meta)
    }
}

/// In-memory index of one non-empty segment file.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    first_seq: u64,
    /// Start offset of every record; record `i` holds `first_seq + i`. Keeping offsets lets
    /// `read_after` seek straight to a sequence and lets pending bytes of a partially
    /// acknowledged segment be computed without reading the file.
    offsets: Vec<u64>,
    bytes: u64,
}

impl Segment {
    fn count(&self) -> u64 {
        self.offsets.len() as u64
    }

    fn last_seq(&self) -> u64 {
        // Segments are never empty; subtracting first keeps a segment ending at u64::MAX from
        // overflowing.
        self.first_seq + (self.count() - 1)
    }

    fn record_end(&self, index: usize) -> u64 {
        self.offsets.get(index + 1).copied().unwrap_or(self.bytes)
    }

    /// (records, bytes) held by this segment with seq > `acked`.
    fn pending_after(&self, acked: u64) -> (u64, u64) {
        if self.last_seq() <= acked {
            (0, 0)
        } else if self.first_seq > acked {
            (self.count(), self.bytes)
        } else {
            let index = (acked - self.first_seq + 1) as usize;
            (
                self.count() - index as u64,
                self.bytes - self.offsets[index],
            )
        }
    }
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    /// Sum of all segment file sizes, acknowledged data included: that is what the bound limits.
    total_bytes: u64,
    /// Live values; the file lags behind for `last_seq`, which is fine because segments on disk
    /// cover everything appended since the last meta write.
    meta: Meta,
    /// Append handle on the newest segment.
    writer: Option<File>,
}

/// Result of scanning one segment file, before anything is repaired.
struct Scan {
    offsets: Vec<u64>,
    good_len: u64,
    file_len: u64,
    /// Sequence the first cut record should have had.
    expected_seq: u64,
    /// Complete-looking records (plausible length, fully present) from the cut point on,
    /// validated or not: an estimate of what the cut throws away.
    cut_records: u64,
    /// Whether those complete-looking records end exactly at end of file.
    cut_reaches_eof: bool,
}

impl Spool {
    /// Opens (creating the directory if needed) the spool in `dir`, bounded to `max_bytes` on disk.
    ///
    /// Corrupt content never makes this fail, only I/O errors do: a corrupt meta file is
    /// logged and rebuilt from the segments (sequences continue after the highest one on disk,
    /// the acknowledged watermark falls back to 0 so data is re-sent rather than lost, and the
    /// drop counters restart), and corrupt segment data is cut off and counted.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(Spool, Recovery), SpoolError> {
        fs::create_dir_all(dir).map_err(io_err("create spool directory", dir))?;
        let meta_path = dir.join(META_FILE);
        let (mut meta, mut meta_dirty) = match fs::read(&meta_path) {
            Ok(bytes) => match Meta::decode(&bytes) {
                Some(meta) => (meta, false),
                None => {
                    error!(
                        path = %meta_path.display(),
                        "spool metadata is corrupt; rebuilding from segments (acknowledged \
                         watermark and drop counters reset, already-acknowledged reports may be \
                         re-sent)"
                    );
                    (Meta::default(), true)
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Meta::default(), false),
            Err(e) => return Err(io_err("read spool metadata", &meta_path)(e)),
        };
        // A watermark above the sequence counter would mean someone edited the file; keep both
        // monotonic rather than trusting either alone.
        meta.last_seq = meta.last_seq.max(meta.acked_seq);

        let mut files = list_segments(dir)?;
        files.sort();

        // Phase 1: read-only scan, so loss can be persisted before anything is cut.
        let mut recovery = Recovery::default();
        let mut segments = VecDeque::new();
        let mut repairs: Vec<(PathBuf, u64, u64)> = Vec::new(); // (path, good_len, file_len)
        let mut lost_bytes = 0u64;
        let mut prev_last: Option<u64> = None;
        let file_count = files.len();
        for (i, (name_seq, path)) in files.into_iter().enumerate() {
            let is_last_file = i + 1 == file_count;
            let scan = scan_segment(&path, name_seq, prev_last)?;
            if scan.good_len < scan.file_len {
                let cut = scan.file_len - scan.good_len;
                recovery.truncated_bytes += cut;
                // A crash mid-append leaves at most one record's worth of junk at the very end of
                // the newest segment; that append never returned, so nobody saw the record.
                // Anything more (or any cut in an older segment) destroyed records that had been
                // written successfully.
                let torn_tail = is_last_file
                    && (scan.cut_records == 0 || (scan.cut_records == 1 && scan.cut_reaches_eof));
                if torn_tail {
                    warn!(path = %path.display(), cut_bytes = cut, "spool: truncated torn tail");
                } else {
                    let cut_end = scan.expected_seq.saturating_add(scan.cut_records);
                    let unacked_start = scan.expected_seq.max(meta.acked_seq.saturating_add(1));
                    let mut lost = cut_end.saturating_sub(unacked_start);
                    if !is_last_file && scan.expected_seq > meta.acked_seq {
                        lost = lost.max(1);
                    }
                    // Cut sequences may already have been delivered: never hand them out again,
                    // not even after the next restart, when the cut records are gone.
                    if scan.cut_records > 0 && cut_end - 1 > meta.last_seq {
                        meta.last_seq = cut_end - 1;
                        meta_dirty = true;
                    }
                    if lost > 0 {
                        recovery.lost_records += lost;
                        lost_bytes += cut;
                    }
                    error!(
                        path = %path.display(),
                        offset = scan.good_len,
                        cut_bytes = cut,
                        lost_records = lost,
                        "spool: corrupt data in segment; cut at last good record"
                    );
                }
                repairs.push((path.clone(), scan.good_len, scan.file_len));
            }
            if scan.offsets.is_empty() {
                continue;
            }
            let segment = Segment {
                path,
                first_seq: name_seq,
                offsets: scan.offsets,
                bytes: scan.good_len,
            };
            prev_last = Some(segment.last_seq());
            segments.push_back(segment);
        }

        // After a torn tail is cut, `last_seq` falls back to the last intact record (unless the
        // meta file already recorded something higher), so the torn record's sequence is reused
        // by the next append. Its append() never returned and no reader saw it, so reuse keeps
        // the delivered sequence gap-free without risking two reports under one number.
        if let Some(prev_last) = prev_last {
            meta.last_seq = meta.last_seq.max(prev_last);
        }
        if recovery.lost_records > 0 {
            meta.dropped_reports_total = meta
                .dropped_reports_total
                .saturating_add(recovery.lost_records);
            meta.dropped_bytes_total = meta.dropped_bytes_total.saturating_add(lost_bytes);
            meta_dirty = true;
        }
        if meta_dirty {
            write_meta(dir, &meta)?;
        }

        // Phase 2: repair.
        let mut dir_changed = false;
        for (path, good_len, file_len) in repairs {
            if good_len == 0 {
                remove_file(&path)?;
                dir_changed = true;
            } else {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err("open segment for truncation", &path))?;
                file.set_len(good_len)
                    .and_then(|()| file.sync_all())
                    .map_err(io_err("truncate segment", &path))?;
                debug!(path = %path.display(), good_len, file_len, "spool: segment truncated");
            }
        }
        // A crash between persisting an ack and deleting its segments leaves them behind.
        while segments
            .front()
            .is_some_and(|s| s.last_seq() <= meta.acked_seq)
        {
            if let Some(segment) = segments.pop_front() {
                remove_file(&segment.path)?;
                dir_changed = true;
            }
        }
        if dir_changed {
            sync_dir(dir)?;
        }

        let total_bytes = segments.iter().map(|s| s.bytes).sum();
        let spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes: (max_bytes / 16).clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES),
            segments,
            total_bytes,
            meta,
            writer: None,
        };
        Ok((spool, recovery))
    }

    /// Assigns the next sequence, calls `encode(seq)` for the payload, appends and fsyncs one
    /// record, and returns the sequence. Drops the oldest whole segments (counted, logged) if
    /// the bound would be exceeded. Payloads over `max_bytes / 4` are refused with nothing
    /// written and no sequence consumed.
    pub fn append(&mut self, encode: impl FnOnce(u64) -> Vec<u8>) -> Result<u64, SpoolError> {
        let seq = self
            .meta
            .last_seq
            .checked_add(1)
            .ok_or(SpoolError::SequenceExhausted)?;
        let payload = encode(seq);
        let len = payload.len() as u64;
        let max = (self.max_bytes / 4).min(HARD_MAX_PAYLOAD);
        if len > max {
            return Err(SpoolError::RecordTooLarge { len, max });
        }
        let record = encode_record(seq, &payload);
        let record_len = record.len() as u64;
        // Within a segment sequences must go up by exactly one (recovery relies on it), so a
        // gap (burnt or cut sequences) also starts a new segment.
        let roll = self
            .segments
            .back()
            .is_none_or(|s| s.last_seq() + 1 != seq || s.bytes + record_len > self.segment_bytes);

        self.enforce_bound(record_len, roll)?;
        if roll {
            self.write_new_segment(seq, &record)?;
        } else {
            self.write_to_current(seq, &record)?;
        }
        self.meta.last_seq = seq;
        Ok(seq)
    }

    /// Up to `max` records with sequence > `after` (and > acked_seq), oldest first.
    pub fn read_after(&self, after: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>, SpoolError> {
        let mut out = Vec::new();
        let Some(start) = after.max(self.meta.acked_seq).checked_add(1) else {
            return Ok(out);
        };
        for segment in &self.segments {
            if out.len() >= max {
                break;
            }
            if segment.last_seq() < start {
                continue;
            }
            let first_index = start.saturating_sub(segment.first_seq) as usize;
            read_segment(segment, first_index, max - out.len(), &mut out)?;
        }
        Ok(out)
    }

    /// Marks everything up to and including `seq` as acknowledged, persists the watermark and
    /// deletes fully acknowledged segments.
    pub fn ack(&mut self, seq: u64) -> Result<(), SpoolError> {
        if seq <= self.meta.acked_seq {
            return Ok(());
        }
        let seq = if seq > self.meta.last_seq {
            warn!(
                ack = seq,
                last_seq = self.meta.last_seq,
                "spool: acknowledgement beyond the last assigned sequence; clamping"
            );
            self.meta.last_seq
        } else {
            seq
        };
        if seq <= self.meta.acked_seq {
            return Ok(());
        }
        let meta = Meta {
            acked_seq: seq,
            ..self.meta
        };
        write_meta(&self.dir, &meta)?;
        self.meta = meta;
        self.remove_acked_segments()
    }

    /// The collector refused the report at the head of the spool for its content and named
    /// its sequence: resending it can never succeed, and would hold back everything after it
    /// for good. It is copied to `quarantine/` for inspection, counted as dropped (so the
    /// collector's spool-drop rule raises an incident) and acknowledged here. False, and
    /// nothing changed, when `seq` is not the next unacknowledged record held.
    pub fn quarantine(&mut self, seq: u64, reason: &str) -> Result<bool, SpoolError> {
        // The next record, whatever its number: after the bound dropped the
        // oldest it may be well above the acknowledged watermark.
        let Some((found, payload)) = self.read_after(self.meta.acked_seq, 1)?.pop() else {
            return Ok(false);
        };
        if found != seq {
            return Ok(false);
        }
        let dir = self.dir.join(QUARANTINE_DIR);
        crate::fsutil::create_dir_private(&dir).map_err(io_err("create quarantine", &dir))?;
        let base = dir.join(format!("{seq:0width$}", width = SEGMENT_DIGITS));
        for (ext, bytes) in [
            ("report", payload.as_slice()),
            ("reason", reason.as_bytes()),
        ] {
            let path = base.with_extension(ext);
            crate::fsutil::write_atomic(&path, bytes, 0o600)
                .map_err(io_err("write quarantined report", &path))?;
        }
        prune_quarantine(&dir);
        let meta = Meta {
            acked_seq: seq,
            dropped_reports_total: self.meta.dropped_reports_total.saturating_add(1),
            dropped_bytes_total: self
                .meta
                .dropped_bytes_total
                .saturating_add(HEADER_LEN + payload.len() as u64),
            ..self.meta
        };
        write_meta(&self.dir, &meta)?;
        self.meta = meta;
        error!(
            sequence = seq,
            kept = %base.with_extension("report").display(),
            reason,
            "the collector refused this report for its content; quarantined and counted as dropped"
        );
        self.remove_acked_segments()?;
        Ok(true)
    }

    /// Deletes the segments whose every record is acknowledged.
    fn remove_acked_segments(&mut self) -> Result<(), SpoolError> {
        let seq = self.meta.acked_seq;
        let mut removed = false;
        while self.segments.front().is_some_and(|s| s.last_seq() <= seq) {
            if let Some(front) = self.segments.front() {
                // Delete before unindexing: on failure the segment stays tracked and is retried
                // on the next ack (or on the next open).
                remove_file(&front.path)?;
            }
            if let Some(segment) = self.segments.pop_front() {
                self.total_bytes -= segment.bytes;
                removed = true;
            }
            if self.segments.is_empty() {
                self.writer = None;
            }
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// The collector has already stored this agent's sequences up to `seq`, but this spool
    /// numbers below that: its directory was wiped or its metadata lost. Reports still held here
    /// cannot be delivered under their numbers (the collector would take them for replays), so
    /// they are counted as dropped, not lost silently, and numbering continues after `seq`.
    /// Returns how many records were dropped.
    pub fn skip_to(&mut self, seq: u64) -> Result<u64, SpoolError> {
        if seq <= self.meta.last_seq {
            return Ok(0);
        }
        let status = self.status();
        let meta = Meta {
            acked_seq: seq,
            last_seq: seq,
            dropped_reports_total: self.meta.dropped_reports_total + status.pending_reports,
            dropped_bytes_total: self.meta.dropped_bytes_total + status.pending_bytes,
        };
        write_meta(&self.dir, &meta)?;
        self.meta = meta;
        while let Some(front) = self.segments.front() {
            remove_file(&front.path)?;
            if let Some(segment) = self.segments.pop_front() {
                self.total_bytes -= segment.bytes;
            }
        }
        self.writer = None;
        sync_dir(&self.dir)?;
        if status.pending_reports > 0 {
            warn!(
                dropped = status.pending_reports,
                skipped_to = seq,
                "spool: numbering was behind the collector's; pending reports counted as dropped"
            );
        }
        Ok(status.pending_reports)
    }

    pub fn status(&self) -> SpoolStatus {
        let (pending_reports, pending_bytes) = self
            .segments
            .iter()
            .map(|s| s.pending_after(self.meta.acked_seq))
            .fold((0, 0), |(r, b), (sr, sb)| (r + sr, b + sb));
        SpoolStatus {
            pending_reports,
            pending_bytes,
            dropped_reports_total: self.meta.dropped_reports_total,
            dropped_bytes_total: self.meta.dropped_bytes_total,
            max_bytes: self.max_bytes,
            acked_seq: self.meta.acked_seq,
            last_seq: self.meta.last_seq,
        }
    }

    /// Drops whole oldest segments until `incoming` more bytes fit. The segment still being
    /// written (the newest one, unless we are about to roll) is kept, so the bound can be
    /// overshot by at most one segment.
    fn enforce_bound(&mut self, incoming: u64, roll: bool) -> Result<(), SpoolError> {
        let keep = usize::from(!roll);
        let mut total = self.total_bytes;
        let mut count = 0;
        while total + incoming > self.max_bytes && self.segments.len() - count > keep {
            total -= self.segments[count].bytes;
            count += 1;
        }
        if count == 0 {
            return Ok(());
        }
        let (reports, bytes) = self
            .segments
            .iter()
            .take(count)
            .map(|s| s.pending_after(self.meta.acked_seq))
            .fold((0u64, 0u64), |(r, b), (sr, sb)| (r + sr, b + sb));
        let meta = Meta {
            dropped_reports_total: self.meta.dropped_reports_total.saturating_add(reports),
            dropped_bytes_total: self.meta.dropped_bytes_total.saturating_add(bytes),
            ..self.meta
        };
        // Counted before deleted: a crash in between re-sends data already counted as dropped,
        // which is better than losing it uncounted.
        write_meta(&self.dir, &meta)?;
        self.meta = meta;
        if count == self.segments.len() {
            self.writer = None;
        }
        for segment in self.segments.drain(..count) {
            if let Err(e) = fs::remove_file(&segment.path)
                && e.kind() != io::ErrorKind::NotFound
            {
                error!(path = %segment.path.display(), error = %e, "spool: failed to delete dropped segment");
            }
        }
        self.total_bytes = total;
        if let Err(e) = sync_dir(&self.dir) {
            error!(error = %e, "spool: failed to sync directory after dropping segments");
        }
        if reports > 0 {
            warn!(
                dropped_reports = reports,
                dropped_bytes = bytes,
                dropped_reports_total = self.meta.dropped_reports_total,
                dropped_bytes_total = self.meta.dropped_bytes_total,
                max_bytes = self.max_bytes,
                "spool full: dropped oldest unacknowledged reports"
            );
        }
        Ok(())
    }

    fn write_new_segment(&mut self, seq: u64, record: &[u8]) -> Result<(), SpoolError> {
        self.writer = None;
        let path = self.dir.join(segment_name(seq));
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err("create segment", &path))?;
        let written = (|| {
            // Leftover from an earlier failed attempt at this same sequence: never indexed, so
            // it holds nothing anyone saw.
            if file.metadata()?.len() != 0 {
                file.set_len(0)?;
            }
            file.write_all(record)?;
            file.sync_data()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&path);
            return Err(io_err("write new segment", &path)(e));
        }
        sync_dir(&self.dir)?;
        let bytes = record.len() as u64;
        self.segments.push_back(Segment {
            path,
            first_seq: seq,
            offsets: vec![0],
            bytes,
        });
        self.total_bytes += bytes;
        self.writer = Some(file);
        Ok(())
    }

    fn write_to_current(&mut self, seq: u64, record: &[u8]) -> Result<(), SpoolError> {
        let Some(segment) = self.segments.back_mut() else {
            return self.write_new_segment(seq, record);
        };
        let file = match &mut self.writer {
            Some(file) => file,
            slot @ None => slot.insert(
                OpenOptions::new()
                    .append(true)
                    .open(&segment.path)
                    .map_err(io_err("open segment for append", &segment.path))?,
            ),
        };
        let old_len = segment.bytes;
        if let Err(e) = file.write_all(record).and_then(|()| file.sync_data()) {
            // Roll back so the segment stays clean and the sequence can be reused. If even that
            // fails the tail may hold (part of) this record: burn the sequence, which makes the
            // next append start a fresh segment so no later record lands behind the junk.
            if file
                .set_len(old_len)
                .and_then(|()| file.sync_data())
                .is_err()
            {
                self.meta.last_seq = seq;
                self.writer = None;
            }
            return Err(io_err("append record to", &segment.path)(e));
        }
        segment.offsets.push(old_len);
        segment.bytes += record.len() as u64;
        self.total_bytes += record.len() as u64;
        Ok(())
    }
}

fn segment_name(seq: u64) -> String {
    format!("{seq:0width$}{SEGMENT_SUFFIX}", width = SEGMENT_DIGITS)
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Keeps the newest [`QUARANTINE_KEEP`] quarantined reports. Best effort: a
/// file that cannot be deleted is logged, and the bound is tried again next time.
fn prune_quarantine(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut reports: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "report"))
        .collect();
    // Zero-padded names: sorted by name is sorted by sequence.
    reports.sort();
    let excess = reports.len().saturating_sub(QUARANTINE_KEEP);
    for old in &reports[..excess] {
        for path in [old.clone(), old.with_extension("reason")] {
            if let Err(e) = fs::remove_file(&path)
                && e.kind() != io::ErrorKind::NotFound
            {
                error!(path = %path.display(), error = %e, "cannot delete an old quarantined report");
            }
        }
    }
}

fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list spool directory", dir))? {
        let entry = entry.map_err(io_err("list spool directory", dir))?;
        let Some(seq) = entry.file_name().to_str().and_then(parse_segment_name) else {
            continue;
        };
        let path = entry.path();
        let file_type = entry.file_type().map_err(io_err("stat", &path))?;
        if file_type.is_file() {
            files.push((seq, path));
        }
    }
    Ok(files)
}

fn encode_record(seq: u64, payload: &[u8]) -> Vec<u8> {
    let seq_bytes = seq.to_le_bytes();
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq_bytes);
    hasher.update(payload);
    let mut record = Vec::with_capacity(HEADER_LEN as usize + payload.len());
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&hasher.finalize().to_le_bytes());
    record.extend_from_slice(&seq_bytes);
    record.extend_from_slice(payload);
    record
}

struct Header {
    len: u64,
    crc: u32,
    seq: u64,
}

fn parse_header(bytes: &[u8; HEADER_LEN as usize]) -> Header {
    let [l0, l1, l2, l3, c0, c1, c2, c3, s @ ..] = *bytes;
    Header {
        len: u64::from(u32::from_le_bytes([l0, l1, l2, l3])),
        crc: u32::from_le_bytes([c0, c1, c2, c3]),
        seq: u64::from_le_bytes(s),
    }
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` if the file ended first.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Streams `len` payload bytes through the crc without holding them all in memory; `Ok(None)` if
/// the file ended first.
fn payload_crc(
    reader: &mut impl Read,
    seq: u64,
    len: u64,
    chunk: &mut [u8],
) -> io::Result<Option<u32>> {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    let mut remaining = len;
    while remaining > 0 {
        let n = remaining.min(chunk.len() as u64) as usize;
        if !read_full(reader, &mut chunk[..n])? {
            return Ok(None);
        }
        hasher.update(&chunk[..n]);
        remaining -= n as u64;
    }
    Ok(Some(hasher.finalize()))
}

/// Finds the longest valid prefix of a segment file without modifying it.
fn scan_segment(path: &Path, name_seq: u64, prev_last: Option<u64>) -> Result<Scan, SpoolError> {
    let file = File::open(path).map_err(io_err("open segment for recovery", path))?;
    let file_len = file.metadata().map_err(io_err("stat segment", path))?.len();
    let mut reader = BufReader::with_capacity(READ_BUF, file);
    let mut chunk = vec![0u8; READ_BUF];
    let mut offsets = Vec::new();
    let mut pos = 0u64;
    let mut expected = name_seq;
    // A segment whose name does not come after its predecessor's records cannot be ordered.
    let name_ok = prev_last.is_none_or(|p| name_seq > p);
    if name_ok {
        loop {
            let remaining = file_len - pos;
            if remaining < HEADER_LEN {
                break;
            }
            let mut header = [0u8; HEADER_LEN as usize];
            if !read_full(&mut reader, &mut header).map_err(io_err("read segment", path))? {
                break;
            }
            let h = parse_header(&header);
            if h.len > HARD_MAX_PAYLOAD || h.len > remaining - HEADER_LEN || h.seq != expected {
                break;
            }
            match payload_crc(&mut reader, h.seq, h.len, &mut chunk)
                .map_err(io_err("read segment", path))?
            {
                Some(crc) if crc == h.crc => {}
                _ => break,
            }
            offsets.push(pos);
            pos += HEADER_LEN + h.len;
            match expected.checked_add(1) {
                Some(next) => expected = next,
                None => break,
            }
        }
    } else if let Some(p) = prev_last {
        expected = p.saturating_add(1);
    }

    // Estimate how many records the cut removes by walking the length fields alone.
    let mut cut_records = 0u64;
    let mut walk = pos;
    if pos < file_len {
        reader
            .seek(SeekFrom::Start(pos))
            .map_err(io_err("seek in segment", path))?;
        loop {
            let remaining = file_len - walk;
            if remaining < HEADER_LEN {
                break;
            }
            let mut header = [0u8; HEADER_LEN as usize];
            if !read_full(&mut reader, &mut header).map_err(io_err("read segment", path))? {
                break;
            }
            let h = parse_header(&header);
            if h.len > HARD_MAX_PAYLOAD || h.len > remaining - HEADER_LEN {
                break;
            }
            walk += HEADER_LEN + h.len;
            cut_records += 1;
            reader
                .seek(SeekFrom::Start(walk))
                .map_err(io_err("seek in segment", path))?;
        }
    }
    Ok(Scan {
        offsets,
        good_len: pos,
        file_len,
        expected_seq: expected,
        cut_records,
        cut_reaches_eof: walk == file_len,
    })
}

/// Reads up to `max` records of `segment` starting at record `first_index`. Records that no
/// longer verify (the disk changed under us after open) are skipped with an error log rather
/// than blocking delivery of everything behind them forever; the collector sees the gap and the
/// next open() cuts and counts the damage.
fn read_segment(
    segment: &Segment,
    first_index: usize,
    max: usize,
    out: &mut Vec<(u64, Vec<u8>)>,
) -> Result<(), SpoolError> {
    let path = &segment.path;
    let Some(&start) = segment.offsets.get(first_index) else {
        return Ok(());
    };
    let file = File::open(path).map_err(io_err("open segment for reading", path))?;
    let mut reader = BufReader::with_capacity(READ_BUF, file);
    reader
        .seek(SeekFrom::Start(start))
        .map_err(io_err("seek in segment", path))?;
    let end_index = segment.offsets.len().min(first_index.saturating_add(max));
    for index in first_index..end_index {
        let seq = segment.first_seq + index as u64;
        let record_start = segment.offsets[index];
        let record_end = segment.record_end(index);
        let mut header = [0u8; HEADER_LEN as usize];
        if !read_full(&mut reader, &mut header).map_err(io_err("read segment", path))? {
            error!(path = %path.display(), seq, "spool: segment shrank under us; skipping rest of segment");
            break;
        }
        let h = parse_header(&header);
        let verified = if h.seq == seq && HEADER_LEN + h.len == record_end - record_start {
            let mut payload = vec![0u8; h.len as usize];
            if !read_full(&mut reader, &mut payload).map_err(io_err("read segment", path))? {
                error!(path = %path.display(), seq, "spool: segment shrank under us; skipping rest of segment");
                break;
            }
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&seq.to_le_bytes());
            hasher.update(&payload);
            (hasher.finalize() == h.crc).then_some(payload)
        } else {
            None
        };
        match verified {
            Some(payload) => out.push((seq, payload)),
            None => {
                error!(
                    path = %path.display(),
                    seq,
                    offset = record_start,
                    "spool: record failed verification on read; skipping it"
                );
                reader
                    .seek(SeekFrom::Start(record_end))
                    .map_err(io_err("seek in segment", path))?;
            }
        }
    }
    Ok(())
}

fn remove_file(path: &Path) -> Result<(), SpoolError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("delete segment", path)(e)),
    }
}

fn write_meta(dir: &Path, meta: &Meta) -> Result<(), SpoolError> {
    let tmp = dir.join(META_TMP_FILE);
    let path = dir.join(META_FILE);
    let mut file = File::create(&tmp).map_err(io_err("create spool metadata", &tmp))?;
    file.write_all(meta.encode().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_err("write spool metadata", &tmp))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io_err("replace spool metadata", &path))?;
    sync_dir(dir)
}

/// Makes creations, renames and deletions in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("sync spool directory", dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn payload(seq: u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (seq as usize).wrapping_mul(31).wrapping_add(i) as u8)
            .collect()
    }

    fn seg_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(parse_segment_name)
                    .is_some()
            })
            .collect();
        files.sort();
        files
    }

    fn seg_bytes_on_disk(dir: &Path) -> u64 {
        seg_files(dir)
            .iter()
            .map(|p| fs::metadata(p).unwrap().len())
            .sum()
    }

    fn seqs(records: &[(u64, Vec<u8>)]) -> Vec<u64> {
        records.iter().map(|(s, _)| *s).collect()
    }

    const MB: u64 = 1024 * 1024;

    #[test]
    fn a_refused_head_is_quarantined_counted_and_the_rest_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), 16 * MB).unwrap();
        for _ in 1..=QUARANTINE_KEEP + 3 {
            spool.append(|s| payload(s, 100)).unwrap();
        }
        // Only the next unacknowledged record can be refused.
        assert!(!spool.quarantine(2, "not the head").unwrap());
        assert!(!spool.quarantine(0, "nothing").unwrap());
        assert_eq!(spool.status().dropped_reports_total, 0);
        assert!(spool.quarantine(1, "metric Bad Name").unwrap());
        assert!(!spool.quarantine(1, "again").unwrap(), "already set aside");
        assert!(!spool.quarantine(3, "not the head").unwrap());
        assert_eq!(seqs(&spool.read_after(0, 1).unwrap()), vec![2]);
        let status = spool.status();
        assert_eq!((status.acked_seq, status.dropped_reports_total), (1, 1));
        assert_eq!(status.dropped_bytes_total, HEADER_LEN + 100);
        let kept = dir.path().join(QUARANTINE_DIR).join(format!("{:020}", 1));
        assert_eq!(
            fs::read(kept.with_extension("report")).unwrap(),
            payload(1, 100)
        );
        assert_eq!(
            fs::read_to_string(kept.with_extension("reason")).unwrap(),
            "metric Bad Name"
        );
        // Survives a restart, and the quarantine keeps only the newest.
        drop(spool);
        let (mut spool, _) = Spool::open(dir.path(), 16 * MB).unwrap();
        assert_eq!(spool.status().dropped_reports_total, 1);
        for seq in 2..=QUARANTINE_KEEP as u64 + 3 {
            assert!(spool.quarantine(seq, "refused").unwrap());
        }
        let mut left: Vec<String> = fs::read_dir(dir.path().join(QUARANTINE_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left.len(), 2 * QUARANTINE_KEEP);
        assert_eq!(left[0], format!("{:020}.reason", 4));
        assert_eq!(
            spool.status().dropped_reports_total,
            QUARANTINE_KEEP as u64 + 3
        );
        assert_eq!(spool.status().pending_reports, 0);
    }

    #[test]
    fn a_refused_head_after_a_drop_at_the_bound_is_quarantined_too() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), 256 * 1024).unwrap();
        for _ in 0..100 {
            spool.append(|s| payload(s, 10 * 1024)).unwrap();
        }
        let dropped = spool.status().dropped_reports_total;
        let head = spool.read_after(0, 1).unwrap()[0].0;
        assert!(head > 1, "the bound dropped the oldest");
        assert_eq!(spool.status().acked_seq, 0);
        assert!(!spool.quarantine(head + 1, "not the head").unwrap());
        assert!(spool.quarantine(head, "refused").unwrap());
        assert_eq!(spool.read_after(0, 1).unwrap()[0].0, head + 1);
        let status = spool.status();
        assert_eq!(
            (status.acked_seq, status.dropped_reports_total),
            (head, dropped + 1)
        );
    }

    #[test]
    fn append_read_ack_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, recovery) = Spool::open(dir.path(), 16 * MB).unwrap();
        assert_eq!(recovery, Recovery::default());
        for expected in 1..=3 {
            assert_eq!(spool.append(|s| payload(s, 100)).unwrap(), expected);
        }
        let all = spool.read_after(0, 100).unwrap();
        assert_eq!(seqs(&all), vec![1, 2, 3]);
        for (seq, data) in &all {
            assert_eq!(data, &payload(*seq, 100));
        }
        let status = spool.status();
        assert_eq!(status.pending_reports, 3);
        assert_eq!(status.pending_bytes, 3 * (HEADER_LEN + 100));

        spool.ack(2).unwrap();
        assert_eq!(seqs(&spool.read_after(0, 100).unwrap()), vec![3]);
        assert_eq!(spool.status().pending_reports, 1);
        assert_eq!(spool.status().pending_bytes, HEADER_LEN + 100);
        spool.ack(1).unwrap(); // lower ack ignored
        assert_eq!(spool.status().acked_seq, 2);
        drop(spool);

        let (mut spool, recovery) = Spool::open(dir.path(), 16 * MB).unwrap();
        assert_eq!(recovery, Recovery::default());
        let rest = spool.read_after(0, 100).unwrap();
        assert_eq!(rest, vec![(3, payload(3, 100))]);
        assert_eq!(spool.status().last_seq, 3);
        assert_eq!(spool.status().acked_seq, 2);
        assert_eq!(spool.append(|s| payload(s, 10)).unwrap(), 4);
        assert_eq!(seqs(&spool.read_after(3, 100).unwrap()), vec![4]);
        assert_eq!(seqs(&spool.read_after(0, 1).unwrap()), vec![3]);
    }

    #[test]
    fn torn_tail_is_truncated_and_sequence_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), 16 * MB).unwrap();
        for _ in 0..3 {
            spool.append(|s| payload(s, 50)).unwrap();
        }
        drop(spool);
        let files = seg_files(dir.path());
        assert_eq!(files.len(), 1);
        let good_len = fs::metadata(&files[0]).unwrap().len();
        let mut torn = Vec::new();
        torn.extend_from_slice(&100u32.to_le_bytes());
        torn.extend_from_slice(&0u32.to_le_bytes());
        torn.extend_from_slice(&4u64.to_le_bytes());
        torn.extend_from_slice(&[7u8; 10]);
        OpenOptions::new()
            .append(true)
            .open(&files[0])
            .unwrap()
            .write_all(&torn)
            .unwrap();

        let (mut spool, recovery) = Spool::open(dir.path(), 16 * MB).unwrap();
        assert_eq!(recovery.truncated_bytes, torn.len() as u64);
        assert_eq!(recovery.lost_records, 0);
        assert_eq!(fs::metadata(&files[0]).unwrap().len(), good_len);
        let all = spool.read_after(0, 100).unwrap();
        assert_eq!(seqs(&all), vec![1, 2, 3]);
        for (seq, data) in &all {
            assert_eq!(data, &payload(*seq, 50));
        }
        assert_eq!(spool.status().dropped_reports_total, 0);
        assert_eq!(spool.append(|s| payload(s, 50)).unwrap(), 4);
        assert_eq!(spool.read_after(3, 10).unwrap(), vec![(4, payload(4, 50))]);
    }

    #[test]
    fn corrupt_crc_in_last_segment_cuts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), 16 * MB).unwrap();
        for _ in 0..5 {
            spool.append(|s| payload(s, 40)).unwrap();
        }
        drop(spool);
        let files = seg_files(dir.path());
        let mut bytes = fs::read(&files[0]).unwrap();
        let record = (HEADER_LEN + 40) as usize;
        // Flip a payload byte of record 3.
        bytes[2 * record + HEADER_LEN as usize + 5] ^= 0xff;
        fs::write(&files[0], &bytes).unwrap();

        let (mut spool, recovery) = Spool::open(dir.path(), 16 * MB).unwrap();
        assert_eq!(recovery.truncated_bytes, 3 * record as u64);
        // Records 3..=5 had been written completely: this is loss, not a torn write.
        assert_eq!(recovery.lost_records, 3);
        assert_eq!(spool.status().dropped_reports_total, 3);
        let all = spool.read_after(0, 100).unwrap();
        assert_eq!(all, vec![(1, payload(1, 40)), (2, payload(2, 40))]);
        // The cut sequences may have been delivered already, so they are not reused.
        assert_eq!(spool.append(|s| payload(s, 40)).unwrap(), 6);
        drop(spool);
        let (spool, _) = Spool::open(dir.path(), 16 * MB).unwrap();
        assert_eq!(seqs(&spool.read_after(0, 100).unwrap()), vec![1, 2, 6]);
        assert_eq!(spool.status().dropped_reports_total, 3);
    }

    #[test]
    fn corruption_in_older_segment_counts_lost_records() {
        let dir = tempfile::tempdir().unwrap();
        let max = 256 * 1024;
        let (mut spool, _) = Spool::open(dir.path(), max).unwrap();
        for _ in 0..15 {
            spool.append(|s| payload(s, 10_000)).unwrap();
        }
        drop(spool);
        let files = seg_files(dir.path());
        assert!(files.len() >= 2);
        let mut bytes = fs::read(&files[0]).unwrap();
        let record = (HEADER_LEN + 10_000) as usize;
        bytes[record + 20] ^= 1; // payload of record 2
        fs::write(&files[0], &bytes).unwrap();

        let (spool, recovery) = Spool::open(dir.path(), max).unwrap();
        let per_segment = (bytes.len() / record) as u64;
        assert_eq!(recovery.lost_records, per_segment - 1);
        assert_eq!(spool.status().dropped_reports_total, per_segment - 1);
        let got = seqs(&spool.read_after(0, 100).unwrap());
        let mut expected = vec![1];
        expected.extend(per_segment + 1..=15);
        assert_eq!(got, expected);
    }

    #[test]
    fn bound_drops_oldest_segments_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let max = 256 * 1024;
        let (mut spool, _) = Spool::open(dir.path(), max).unwrap();
        assert_eq!(spool.segment_bytes, 64 * 1024);
        let appended = 100u64;
        for _ in 0..appended {
            spool.append(|s| payload(s, 10 * 1024)).unwrap();
            assert!(seg_bytes_on_disk(dir.path()) <= max + spool.segment_bytes);
        }
        let status = spool.status();
        let records = spool.read_after(0, 1000).unwrap();
        assert!(status.dropped_reports_total > 0);
        assert_eq!(
            status.dropped_reports_total,
            appended - records.len() as u64
        );
        assert_eq!(status.pending_reports, records.len() as u64);
        assert_eq!(
            status.dropped_bytes_total,
            status.dropped_reports_total * (HEADER_LEN + 10 * 1024)
        );
        assert!(records[0].0 > 1);
        assert_eq!(records.last().unwrap().0, appended);
        for pair in records.windows(2) {
            assert_eq!(pair[1].0, pair[0].0 + 1);
        }
        for (seq, data) in &records {
            assert_eq!(data, &payload(*seq, 10 * 1024));
        }
        drop(spool);

        let (spool, recovery) = Spool::open(dir.path(), max).unwrap();
        assert_eq!(recovery, Recovery::default());
        assert_eq!(spool.status(), status);
    }

    #[test]
    fn acked_data_is_not_counted_as_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let max = 256 * 1024;
        let (mut spool, _) = Spool::open(dir.path(), max).unwrap();
        for _ in 0..100 {
            let seq = spool.append(|s| payload(s, 10 * 1024)).unwrap();
            spool.ack(seq - 1).unwrap();
        }
        assert_eq!(spool.status().dropped_reports_total, 0);
        assert_eq!(spool.status().pending_reports, 1);
    }

    #[test]
    fn ack_all_then_reopen_continues_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), 16 * MB).unwrap();
        for _ in 0..5 {
            spool.append(|s| payload(s, 10)).unwrap();
        }
        spool.ack(1000).unwrap(); // clamped to last_seq
        assert_eq!(spool.status().acked_seq, 5);
        assert!(seg_files(dir.path()).is_empty());
        drop(spool);

        let (mut spool, recovery) = Spool::open(dir.path(), 16 * MB).unwrap();
        assert_eq!(recovery, Recovery::default());
        let status = spool.status();
        assert_eq!(status.pending_reports, 0);
        assert_eq!(status.pending_bytes, 0);
        assert_eq!(status.last_seq, 5);
        assert!(spool.read_after(0, 10).unwrap().is_empty());
        assert_eq!(spool.append(|s| payload(s, 10)).unwrap(), 6);
        assert_eq!(seqs(&spool.read_after(0, 10).unwrap()), vec![6]);
    }

    #[test]
    fn skip_to_continues_after_the_collectors_sequence_and_counts_what_it_drops() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), 1024 * 1024).unwrap();
        for i in 0..3 {
            spool.append(|s| payload(s, 10 + i)).unwrap();
        }
        assert_eq!(
            spool.skip_to(2).unwrap(),
            0,
            "behind our own numbering: nothing to do"
        );
        assert_eq!(spool.skip_to(500).unwrap(), 3);
        let st = spool.status();
        assert_eq!(
            (st.acked_seq, st.last_seq, st.pending_reports),
            (500, 500, 0)
        );
        assert_eq!(st.dropped_reports_total, 3);
        assert_eq!(spool.append(|s| payload(s, 5)).unwrap(), 501);
        drop(spool);
        let (spool, _) = Spool::open(dir.path(), 1024 * 1024).unwrap();
        assert_eq!(seqs(&spool.read_after(0, 10).unwrap()), vec![501]);
        assert_eq!(spool.status().dropped_reports_total, 3);
    }

    #[test]
    fn record_too_large_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let max = 256 * 1024;
        let (mut spool, _) = Spool::open(dir.path(), max).unwrap();
        spool.append(|s| payload(s, 10)).unwrap();
        let before = seg_bytes_on_disk(dir.path());
        let err = spool
            .append(|s| payload(s, (max / 4 + 1) as usize))
            .unwrap_err();
        assert!(
            matches!(err, SpoolError::RecordTooLarge { len, max: m } if len == max / 4 + 1 && m == max / 4)
        );
        assert_eq!(seg_bytes_on_disk(dir.path()), before);
        assert_eq!(spool.status().last_seq, 1);
        assert_eq!(spool.append(|s| payload(s, (max / 4) as usize)).unwrap(), 2);
    }

    #[test]
    fn corrupt_meta_recovers_from_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), 16 * MB).unwrap();
        for _ in 0..4 {
            spool.append(|s| payload(s, 10)).unwrap();
        }
        spool.ack(1).unwrap();
        drop(spool);
        fs::write(dir.path().join(META_FILE), b"garbage\n").unwrap();
        fs::write(dir.path().join("unrelated.txt"), b"ignored").unwrap();

        let (mut spool, _) = Spool::open(dir.path(), 16 * MB).unwrap();
        assert_eq!(spool.status().last_seq, 4);
        // Watermark lost: re-send rather than lose.
        assert_eq!(seqs(&spool.read_after(0, 10).unwrap()), vec![1, 2, 3, 4]);
        assert_eq!(spool.append(|s| payload(s, 10)).unwrap(), 5);
        assert!(dir.path().join("unrelated.txt").exists());
    }

    #[test]
    fn io_error_names_operation_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("file");
        fs::write(&not_a_dir, b"x").unwrap();
        let err = Spool::open(&not_a_dir.join("spool"), MB).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("create spool directory"), "{message}");
        assert!(
            message.contains(&not_a_dir.display().to_string()),
            "{message}"
        );
        let SpoolError::Io { source, .. } = &err else {
            panic!("{err:?}");
        };
        assert_ne!(source.to_string(), "");
        // Built by a caller from a bare io::Error, the message still reads sensibly.
        let foreign = SpoolError::Io {
            path: PathBuf::from("/x"),
            source: io::Error::other("boom"),
        };
        assert_eq!(foreign.to_string(), "spool: failed to access /x");
    }

    #[test]
    fn meta_roundtrip_and_rejects_damage() {
        let meta = Meta {
            acked_seq: 7,
            last_seq: 9,
            dropped_reports_total: 3,
            dropped_bytes_total: 1234,
        };
        let text = meta.encode();
        assert_eq!(Meta::decode(text.as_bytes()), Some(meta));
        let tampered = text.replace("last_seq 9", "last_seq 8");
        assert_eq!(Meta::decode(tampered.as_bytes()), None);
        for cut in 0..text.len() {
            assert_eq!(Meta::decode(&text.as_bytes()[..cut]), None);
        }
    }

    #[test]
    fn garbage_segments_never_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = 0x1234_5678_9abc_def0u64;
        for i in 0..20u64 {
            let len = (xorshift(&mut state) % 300) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| xorshift(&mut state) as u8).collect();
            fs::write(dir.path().join(segment_name(i * 3 + 1)), bytes).unwrap();
        }
        let (mut spool, _) = Spool::open(dir.path(), 16 * MB).unwrap();
        let seq = spool.append(|s| payload(s, 10)).unwrap();
        assert_eq!(
            spool.read_after(seq - 1, 10).unwrap(),
            vec![(seq, payload(seq, 10))]
        );
    }

    /// Found by fuzzing (`fuzz/artifacts/spool_recovery`): a cut that raised the sequence
    /// counter was not persisted, so the next open handed the cut sequences out again.
    #[test]
    fn sequences_raised_by_a_cut_stay_raised_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(segment_name(u64::MAX)), [0u8; 68]).unwrap();
        let (spool, _) = Spool::open(dir.path(), 16 * MB).unwrap();
        let first = spool.status();
        drop(spool);
        let (spool, recovery) = Spool::open(dir.path(), 16 * MB).unwrap();
        assert_eq!(recovery, Recovery::default());
        assert_eq!(spool.status(), first);
    }

    /// Found by fuzzing (`fuzz/artifacts/spool_recovery`): a segment whose last record is
    /// sequence u64::MAX overflowed computing its last sequence.
    #[test]
    fn segment_ending_at_the_last_sequence_opens() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(segment_name(u64::MAX)),
            encode_record(u64::MAX, b"last"),
        )
        .unwrap();
        let (mut spool, _) = Spool::open(dir.path(), 16 * MB).unwrap();
        assert_eq!(spool.status().last_seq, u64::MAX);
        assert_eq!(
            spool.read_after(0, 10).unwrap(),
            vec![(u64::MAX, b"last".to_vec())]
        );
        assert!(matches!(
            spool.append(|_| Vec::new()),
            Err(SpoolError::SequenceExhausted)
        ));
    }

    fn xorshift(state: &mut u64) -> u64 {
        let mut x = *state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *state = x;
        x
    }

    #[test]
    fn randomized_operations_keep_invariants() {
        for seed in [0x9e37_79b9_7f4a_7c15u64, 0xdead_beef_cafe_f00d, 42] {
            run_randomized(seed);
        }
    }

    fn run_randomized(seed: u64) {
        let dir = tempfile::tempdir().unwrap();
        let max = 256 * 1024;
        let mut state = seed;
        let mut truncations = 0;
        let mut expected: HashMap<u64, Vec<u8>> = HashMap::new();
        let (mut spool, _) = Spool::open(dir.path(), max).unwrap();
        let mut prev_dropped = 0;
        for step in 0..600 {
            match xorshift(&mut state) % 40 {
                0..=30 => {
                    let len = (xorshift(&mut state) % 9000) as usize;
                    let salt = xorshift(&mut state) as u8;
                    let mut data = Vec::new();
                    let seq = spool
                        .append(|s| {
                            data = payload(s, len);
                            data.push(salt);
                            data.clone()
                        })
                        .unwrap();
                    expected.insert(seq, data);
                }
                31..=33 => {
                    let status = spool.status();
                    // Mostly small acks so the bound is reached; occasionally past last_seq.
                    let span = (status.last_seq - status.acked_seq).min(4) + 2;
                    spool
                        .ack(status.acked_seq + xorshift(&mut state) % span)
                        .unwrap();
                }
                34..=37 => {
                    drop(spool);
                    spool = Spool::open(dir.path(), max).unwrap().0;
                }
                _ => {
                    drop(spool);
                    truncations += 1;
                    if let Some(last) = seg_files(dir.path()).last() {
                        let len = fs::metadata(last).unwrap().len();
                        // Mostly near the end, like a crash mid-write; sometimes deep.
                        let cut = len - xorshift(&mut state) % (len.min(30_000) + 1);
                        OpenOptions::new()
                            .write(true)
                            .open(last)
                            .unwrap()
                            .set_len(cut)
                            .unwrap();
                    }
                    spool = Spool::open(dir.path(), max).unwrap().0;
                }
            }

            let status = spool.status();
            assert!(status.acked_seq <= status.last_seq, "step {step}");
            assert!(status.dropped_reports_total >= prev_dropped, "step {step}");
            prev_dropped = status.dropped_reports_total;
            let records = spool.read_after(status.acked_seq, usize::MAX).unwrap();
            assert_eq!(records.len() as u64, status.pending_reports, "step {step}");
            let bytes: u64 = records
                .iter()
                .map(|(_, d)| HEADER_LEN + d.len() as u64)
                .sum();
            assert_eq!(bytes, status.pending_bytes, "step {step}");
            let mut prev = status.acked_seq;
            for (seq, data) in &records {
                assert!(*seq > prev, "step {step}: {seq} after {prev}");
                assert!(*seq <= status.last_seq, "step {step}");
                prev = *seq;
                assert_eq!(Some(data), expected.get(seq), "step {step}: seq {seq}");
            }
            assert!(
                seg_bytes_on_disk(dir.path()) <= max + spool.segment_bytes,
                "step {step}"
            );
        }
        // The run must actually have exercised the interesting paths.
        assert!(truncations > 0, "seed {seed:x}");
        assert!(prev_dropped > 0, "seed {seed:x}");
    }
}
