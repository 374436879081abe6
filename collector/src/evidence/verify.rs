//! Checking evidence offline (a bundle) or in place (the live tables).
//!
//! Every check runs and every problem found is kept; they are then ordered
//! so that `problems[0]` is the most specific statement of what was done:
//!
//! 1. the key is not the one the auditor pinned (nothing else in the bundle
//!    means anything then);
//! 2. problems that name a chain entry, by seq, and for one entry in the
//!    order of [`ProblemKind`] (missing or misplaced, record hash, entry
//!    hash, links, heads, then the manifest's view of its files);
//! 3. problems with whole files (`chain.jsonl` changed, an unlisted file);
//! 4. the manifest signature.
//!
//! So a record edited together with its manifest line, which only breaks
//! `manifest.sig` at the bundle level, is reported as that record's entry
//! first; one whose chain hashes were recomputed too is reported as the
//! first entry whose signed head no longer matches.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use rusqlite::Connection;
use serde::Serialize;

use super::bundle::{self, BundleContents, Manifest};
use super::key::{fingerprint_of, signature_valid};
use super::{
    ChainEntry, EvidenceError, EvidenceKey, GENESIS_PREV_SHA256, RecordSource, SignedHead, chain,
    is_sha256_hex, sha256_hex, short,
};

/// The outcome of a verification.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// No problem at all. Anything that could not be checked is a problem.
    pub ok: bool,
    /// Chain entries checked.
    pub entries: usize,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    /// The first entry's `prev_sha256`: 64 zeros when the segment starts
    /// the chain, otherwise the hash of the entry before it, which lies
    /// outside the bundle (an earlier bundle's last entry should have it).
    pub anchor_prev_sha256: Option<String>,
    /// The last entry's `entry_sha256`: noting it somewhere else is what
    /// later shows that no newer entry was cut off.
    pub last_entry_sha256: Option<String>,
    /// Fingerprint of the key the evidence is signed with.
    pub key_fingerprint: Option<String>,
    /// Most specific first (see the module docs).
    pub problems: Vec<Problem>,
}

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The chain entry concerned, when there is one.
    pub seq: Option<i64>,
    /// The bundle file concerned, when there is one.
    pub file: Option<String>,
    /// What the evidence says the value should be (a hash, usually).
    pub expected: Option<String>,
    /// What was found instead.
    pub found: Option<String>,
    /// A sentence for people, naming the entry and file.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What kind of problem; for one entry, problems are reported in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The bundle's key is not the fingerprint the auditor pinned.
    KeyNotPinned,
    /// An entry is absent: a gap in seq, or cut from either end.
    EntryMissing,
    /// `chain.jsonl` lists entries out of seq order.
    EntryOutOfOrder,
    /// The same seq appears twice.
    EntryDuplicated,
    /// An entry line or field cannot be read.
    EntryMalformed,
    /// The record file (or stored record) of an entry is absent.
    RecordMissing,
    /// The record does not hash to the entry's `record_sha256`.
    RecordMismatch,
    /// The entry's fields do not hash to its `entry_sha256`.
    EntryHashMismatch,
    /// The first entry's `prev_sha256` is wrong for its position.
    ChainAnchor,
    /// `prev_sha256` is not the previous entry's `entry_sha256`.
    PrevLinkBroken,
    /// `appended_at` goes backwards.
    TimeDecreases,
    /// The entry lies outside the range the manifest claims.
    OutsideRange,
    /// A head is signed by a key other than the evidence key.
    HeadKeyMismatch,
    /// A head's signature does not verify.
    HeadSignatureInvalid,
    /// A validly signed head disagrees with the chain entry at its seq.
    HeadEntryMismatch,
    /// A head names an entry the chain does not hold.
    HeadWithoutEntry,
    /// The newest entries are not covered by a valid signed head.
    NotCoveredByHead,
    /// A file the manifest lists, or the layout requires, is absent.
    FileMissing,
    /// A file does not hash to what the manifest says.
    FileHashMismatch,
    /// A file's size is not what the manifest says.
    FileSizeMismatch,
    /// A file present in the bundle is not in the manifest.
    FileUnlisted,
    /// A file or archive entry a bundle never holds.
    FileUnexpected,
    /// A line of `heads.jsonl` (or an unattributable line) is unreadable.
    LineMalformed,
    /// `public_key.txt` is absent or inconsistent.
    PublicKeyInvalid,
    /// The manifest's own fields contradict the bundle.
    ManifestInconsistent,
    /// Head signatures could not be checked (no usable key).
    HeadsUnchecked,
    /// `manifest.json` is absent or unreadable.
    ManifestUnreadable,
    /// `manifest.sig` is absent or does not verify.
    ManifestSignatureInvalid,
}

impl Problem {
    fn new(kind: ProblemKind, message: String) -> Self {
        Problem {
            kind,
            seq: None,
            file: None,
            expected: None,
            found: None,
            message,
        }
    }

    fn seq(mut self, seq: i64) -> Self {
        self.seq = Some(seq);
        self
    }

    fn maybe_seq(mut self, seq: Option<i64>) -> Self {
        self.seq = seq;
        self
    }

    fn file(mut self, file: &str) -> Self {
        self.file = Some(file.to_owned());
        self
    }

    fn maybe_file(mut self, file: Option<&str>) -> Self {
        self.file = file.map(str::to_owned);
        self
    }

    fn values(mut self, expected: &str, found: &str) -> Self {
        self.expected = Some(expected.to_owned());
        self.found = Some(found.to_owned());
        self
    }

    /// A file or archive entry that no bundle holds (used while reading).
    pub(crate) fn unexpected_file(path: String, why: &str) -> Self {
        let seq = record_seq(&path);
        Problem::new(
            ProblemKind::FileUnexpected,
            format!("unexpected file {path}: {why}"),
        )
        .maybe_seq(seq)
        .file(&path)
    }

    /// Where this problem sorts; see the module docs.
    fn rank(&self) -> (u8, i64, ProblemKind) {
        let class = match (self.kind, self.seq) {
            (ProblemKind::KeyNotPinned, _) => 0,
            (ProblemKind::ManifestSignatureInvalid, _) => 3,
            (_, Some(_)) => 1,
            (_, None) => 2,
        };
        (class, self.seq.unwrap_or(0), self.kind)
    }
}

/// The seq a `records/<seq>-…` path belongs to.
fn record_seq(path: &str) -> Option<i64> {
    let name = path.strip_prefix(bundle::RECORDS_DIR)?.strip_prefix('/')?;
    let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
    if name[digits.len()..].starts_with('-') {
        digits.parse().ok()
    } else {
        None
    }
}

fn label(entry: &ChainEntry) -> String {
    format!("entry {} ({} {})", entry.seq, entry.kind, entry.record_ref)
}

fn span(first: i64, last: i64) -> String {
    if first == last {
        format!("entry {first}")
    } else {
        format!("entries {first}–{last}")
    }
}

/// Verifies a bundle written by [`super::export`], a directory or a
/// .tar.gz, using nothing but its contents. With `expected_fingerprint`
/// (64 hex digits, colons allowed), the bundle must also be signed by that
/// key: without a pin, a bundle forged whole with another key is
/// consistent, and only its reported `key_fingerprint` gives it away.
///
/// Returns an error only when the bundle cannot be read at all; everything
/// wrong inside it is a [`Problem`].
pub fn verify(
    bundle: &Path,
    expected_fingerprint: Option<&str>,
) -> Result<VerifyReport, EvidenceError> {
    let pinned = expected_fingerprint
        .map(normalise_fingerprint)
        .transpose()?;
    let contents = bundle::read_bundle(bundle)?;
    Ok(verify_contents(contents, pinned.as_deref()))
}

fn normalise_fingerprint(raw: &str) -> Result<String, EvidenceError> {
    let hexits: String = raw
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    if is_sha256_hex(&hexits) {
        Ok(hexits)
    } else {
        Err(EvidenceError::BadFingerprint(raw.to_owned()))
    }
}

fn verify_contents(contents: BundleContents, pinned: Option<&str>) -> VerifyReport {
    let BundleContents {
        files,
        metadata,
        layout_problems,
    } = contents;
    let mut problems = layout_problems;

    let public_key = read_public_key(metadata.get(bundle::PUBLIC_KEY), &mut problems);
    let fingerprint = public_key.as_deref().map(fingerprint_of);
    if let Some(pinned) = pinned {
        match &fingerprint {
            Some(fp) if fp == pinned => {}
            Some(fp) => problems.push(
                Problem::new(
                    ProblemKind::KeyNotPinned,
                    format!(
                        "the bundle is signed by key {fp}, not the pinned {pinned}: it is not from the collector you expect, or it was re-signed"
                    ),
                )
                .file(bundle::PUBLIC_KEY)
                .values(pinned, fp),
            ),
            None => problems.push(
                Problem::new(
                    ProblemKind::KeyNotPinned,
                    format!(
                        "the pinned key {pinned} cannot be checked: the bundle has no usable public key"
                    ),
                )
                .file(bundle::PUBLIC_KEY),
            ),
        }
    }

    let manifest = check_manifest(
        &metadata,
        &files,
        public_key.as_deref(),
        fingerprint.as_deref(),
        &mut problems,
    );

    let entries = read_chain_lines(metadata.get(bundle::CHAIN), &mut problems);
    if let Some(manifest) = &manifest {
        check_against_manifest(manifest, &entries, &mut problems);
    } else if entries.is_empty() {
        problems.push(
            Problem::new(
                ProblemKind::EntryMissing,
                "chain.jsonl holds no entries".to_owned(),
            )
            .file(bundle::CHAIN),
        );
    }
    check_record_files(&entries, &files, &mut problems);

    let mut record_digest = |entry: &ChainEntry| {
        let path = format!(
            "{}/{}.json",
            bundle::RECORDS_DIR,
            bundle::record_stem(entry.seq, &entry.kind, &entry.record_ref)
        );
        match files.get(&path) {
            Some(digest) => Ok((Some(path), digest.sha256.clone())),
            None => Err(Problem::new(
                ProblemKind::RecordMissing,
                format!("{}: record file {path} is missing", label(entry)),
            )
            .seq(entry.seq)
            .file(&path)),
        }
    };
    check_chain(&entries, false, &mut record_digest, &mut problems);

    let heads = read_head_lines(metadata.get(bundle::HEADS), &mut problems);
    match &public_key {
        Some(key) => check_heads(&entries, &heads, key, "the bundle's key", &mut problems),
        None => problems.push(Problem::new(
            ProblemKind::HeadsUnchecked,
            "head signatures not checked: the bundle has no usable public key".to_owned(),
        )),
    }

    report(&entries, fingerprint, problems)
}

/// The raw public key from `public_key.txt`, if it is usable.
fn read_public_key(text: Option<&Vec<u8>>, problems: &mut Vec<Problem>) -> Option<Vec<u8>> {
    let invalid = |why: String| {
        Problem::new(
            ProblemKind::PublicKeyInvalid,
            format!("public_key.txt {why}"),
        )
        .file(bundle::PUBLIC_KEY)
    };
    let Some(text) = text else {
        problems.push(invalid("is missing".to_owned()));
        return None;
    };
    let parsed = std::str::from_utf8(text)
        .ok()
        .and_then(bundle::parse_public_key_text);
    let Some((key_hex, claimed)) = parsed else {
        problems.push(invalid(
            "has no `public_key:` and `fingerprint:` lines".to_owned(),
        ));
        return None;
    };
    let key = match hex::decode(&key_hex) {
        Ok(key) if key.len() == 32 => key,
        _ => {
            problems.push(invalid(format!(
                "holds {key_hex:?}, not a 32-byte Ed25519 key in hex"
            )));
            return None;
        }
    };
    let actual = fingerprint_of(&key);
    if claimed != actual {
        problems.push(
            invalid(format!(
                "claims fingerprint {} but its key's fingerprint is {}",
                short(&claimed),
                short(&actual)
            ))
            .values(&claimed, &actual),
        );
    }
    Some(key)
}

/// Checks `manifest.sig` and every listed file; returns the manifest when
/// it can be read (signed or not, so the rest can still be checked).
fn check_manifest(
    metadata: &BTreeMap<String, Vec<u8>>,
    files: &BTreeMap<String, bundle::FileDigest>,
    public_key: Option<&[u8]>,
    fingerprint: Option<&str>,
    problems: &mut Vec<Problem>,
) -> Option<Manifest> {
    let Some(manifest_bytes) = metadata.get(bundle::MANIFEST) else {
        problems.push(
            Problem::new(
                ProblemKind::ManifestUnreadable,
                "manifest.json is missing".to_owned(),
            )
            .file(bundle::MANIFEST),
        );
        problems.push(
            Problem::new(
                ProblemKind::ManifestSignatureInvalid,
                "manifest.sig cannot be checked: manifest.json is missing".to_owned(),
            )
            .file(bundle::MANIFEST_SIG),
        );
        return None;
    };
    let signature = metadata
        .get(bundle::MANIFEST_SIG)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| hex::decode(s.trim()).ok());
    let why_not_signed = match (signature, public_key) {
        (None, _) => Some("manifest.sig is missing or not hex".to_owned()),
        (Some(_), None) => Some("manifest.sig cannot be checked without a public key".to_owned()),
        (Some(sig), Some(key)) if !signature_valid(key, manifest_bytes, &sig) => Some(
            "manifest.sig does not verify: manifest.json was changed after it was signed, or signed with another key"
                .to_owned(),
        ),
        _ => None,
    };
    if let Some(why) = why_not_signed {
        problems.push(
            Problem::new(ProblemKind::ManifestSignatureInvalid, why).file(bundle::MANIFEST_SIG),
        );
    }
    let manifest: Manifest = match serde_json::from_slice(manifest_bytes) {
        Ok(m) => m,
        Err(e) => {
            problems.push(
                Problem::new(
                    ProblemKind::ManifestUnreadable,
                    format!("manifest.json cannot be read: {e}"),
                )
                .file(bundle::MANIFEST),
            );
            return None;
        }
    };
    if manifest.format != bundle::FORMAT {
        problems.push(
            Problem::new(
                ProblemKind::ManifestInconsistent,
                format!(
                    "manifest.json is format {:?}, not {:?}",
                    manifest.format,
                    bundle::FORMAT
                ),
            )
            .file(bundle::MANIFEST),
        );
    }
    if let Some(fp) = fingerprint
        && manifest.key_fingerprint != fp
    {
        problems.push(
            Problem::new(
                ProblemKind::ManifestInconsistent,
                format!(
                    "manifest.json names key {} but public_key.txt holds {}",
                    short(&manifest.key_fingerprint),
                    short(fp)
                ),
            )
            .file(bundle::MANIFEST)
            .values(&manifest.key_fingerprint, fp),
        );
    }
    let mut listed = HashSet::new();
    for item in &manifest.files {
        let seq = record_seq(&item.path);
        if !listed.insert(item.path.as_str())
            || item.path == bundle::MANIFEST
            || item.path == bundle::MANIFEST_SIG
        {
            problems.push(
                Problem::new(
                    ProblemKind::ManifestInconsistent,
                    format!(
                        "manifest.json lists {} twice, or lists the manifest itself",
                        item.path
                    ),
                )
                .maybe_seq(seq)
                .file(&item.path),
            );
            continue;
        }
        match files.get(&item.path) {
            None => problems.push(
                Problem::new(
                    ProblemKind::FileMissing,
                    format!("{} is listed in the manifest but missing", item.path),
                )
                .maybe_seq(seq)
                .file(&item.path),
            ),
            Some(found) if found.sha256 != item.sha256 => problems.push(
                Problem::new(
                    ProblemKind::FileHashMismatch,
                    format!(
                        "{} has SHA-256 {} ({} bytes) but the manifest says {} ({} bytes)",
                        item.path,
                        short(&found.sha256),
                        found.size,
                        short(&item.sha256),
                        item.size
                    ),
                )
                .maybe_seq(seq)
                .file(&item.path)
                .values(&item.sha256, &found.sha256),
            ),
            Some(found) if found.size != item.size => problems.push(
                Problem::new(
                    ProblemKind::FileSizeMismatch,
                    format!(
                        "{} is {} bytes but the manifest says {}",
                        item.path, found.size, item.size
                    ),
                )
                .maybe_seq(seq)
                .file(&item.path)
                .values(&item.size.to_string(), &found.size.to_string()),
            ),
            Some(_) => {}
        }
    }
    for path in files.keys() {
        if path != bundle::MANIFEST
            && path != bundle::MANIFEST_SIG
            && !listed.contains(path.as_str())
        {
            problems.push(
                Problem::new(
                    ProblemKind::FileUnlisted,
                    format!("{path} is in the bundle but not in the manifest"),
                )
                .maybe_seq(record_seq(path))
                .file(path),
            );
        }
    }
    Some(manifest)
}

/// The entries of `chain.jsonl`, sorted by seq with duplicates dropped;
/// problems with the lines themselves (unreadable, out of order, repeated)
/// are reported here.
fn read_chain_lines(text: Option<&Vec<u8>>, problems: &mut Vec<Problem>) -> Vec<ChainEntry> {
    let Some(text) = text else {
        problems.push(
            Problem::new(
                ProblemKind::FileMissing,
                "chain.jsonl is missing".to_owned(),
            )
            .file(bundle::CHAIN),
        );
        return Vec::new();
    };
    let lines: Vec<(usize, ChainEntry)> = parse_lines(
        text,
        bundle::CHAIN,
        "a chain entry",
        ProblemKind::EntryMalformed,
        problems,
    );
    let mut first_line: HashMap<i64, usize> = HashMap::new();
    let mut highest: Option<(i64, usize)> = None;
    let mut kept: BTreeMap<i64, ChainEntry> = BTreeMap::new();
    for (line, entry) in lines {
        let seq = entry.seq;
        if let Some(earlier) = first_line.get(&seq) {
            problems.push(
                Problem::new(
                    ProblemKind::EntryDuplicated,
                    format!(
                        "entry {seq} appears twice in chain.jsonl (lines {earlier} and {line})"
                    ),
                )
                .seq(seq)
                .file(bundle::CHAIN),
            );
            continue;
        }
        first_line.insert(seq, line);
        match highest {
            Some((above, above_line)) if seq < above => problems.push(
                Problem::new(
                    ProblemKind::EntryOutOfOrder,
                    format!(
                        "chain.jsonl line {line} holds entry {seq} after entry {above} (line {above_line}): the lines were reordered"
                    ),
                )
                .seq(seq)
                .file(bundle::CHAIN),
            ),
            _ => highest = Some((seq, line)),
        }
        kept.insert(seq, entry);
    }
    kept.into_values().collect()
}

fn read_head_lines(text: Option<&Vec<u8>>, problems: &mut Vec<Problem>) -> Vec<SignedHead> {
    let Some(text) = text else {
        problems.push(
            Problem::new(
                ProblemKind::FileMissing,
                "heads.jsonl is missing".to_owned(),
            )
            .file(bundle::HEADS),
        );
        return Vec::new();
    };
    parse_lines(
        text,
        bundle::HEADS,
        "a signed head",
        ProblemKind::LineMalformed,
        problems,
    )
    .into_iter()
    .map(|(_, head)| head)
    .collect()
}

/// Parses JSON lines (1-based line numbers); an unreadable line is a
/// problem attributed to the seq it names, when it names one.
fn parse_lines<T: serde::de::DeserializeOwned>(
    text: &[u8],
    file: &str,
    what: &str,
    kind: ProblemKind,
    problems: &mut Vec<Problem>,
) -> Vec<(usize, T)> {
    let text = String::from_utf8_lossy(text);
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    let mut parsed = Vec::new();
    for (i, line) in lines.into_iter().enumerate() {
        let number = i + 1;
        match serde_json::from_str::<T>(line) {
            Ok(value) => parsed.push((number, value)),
            Err(e) => {
                let seq = serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v.get("seq")?.as_i64());
                let kind = if seq.is_some() {
                    kind
                } else {
                    ProblemKind::LineMalformed
                };
                problems.push(
                    Problem::new(kind, format!("{file} line {number} is not {what}: {e}"))
                        .maybe_seq(seq)
                        .file(file),
                );
            }
        }
    }
    parsed
}

/// The manifest's claims about the segment against `chain.jsonl`.
fn check_against_manifest(
    manifest: &Manifest,
    entries: &[ChainEntry],
    problems: &mut Vec<Problem>,
) {
    let (first, last) = (manifest.first_seq, manifest.last_seq);
    match (entries.first(), entries.last()) {
        (Some(head), Some(tail)) => {
            if head.seq > first {
                problems.push(
                    Problem::new(
                        ProblemKind::EntryMissing,
                        format!(
                            "{} missing: the manifest's segment starts at entry {first} but chain.jsonl at entry {}",
                            span(first, head.seq - 1),
                            head.seq
                        ),
                    )
                    .seq(first)
                    .file(bundle::CHAIN),
                );
            }
            if tail.seq < last {
                problems.push(
                    Problem::new(
                        ProblemKind::EntryMissing,
                        format!(
                            "{} missing: the manifest's segment ends at entry {last} but chain.jsonl at entry {}",
                            span(tail.seq + 1, last),
                            tail.seq
                        ),
                    )
                    .seq(tail.seq + 1)
                    .file(bundle::CHAIN),
                );
            }
        }
        _ => problems.push(
            Problem::new(
                ProblemKind::EntryMissing,
                format!(
                    "{} missing: chain.jsonl holds no entries",
                    span(first, last)
                ),
            )
            .seq(first)
            .file(bundle::CHAIN),
        ),
    }
    let from_ms = bundle::ceil_ms(manifest.range.from);
    let to_ms = bundle::ceil_ms(manifest.range.to);
    for entry in entries {
        let outside_seqs = entry.seq < first || entry.seq > last;
        let at = entry.appended_at.timestamp_millis();
        let outside_time = at < from_ms || at >= to_ms;
        if outside_seqs || outside_time {
            problems.push(
                Problem::new(
                    ProblemKind::OutsideRange,
                    format!(
                        "{} (appended {}) lies outside the manifest's segment {} from {} to {}",
                        label(entry),
                        entry.appended_at.to_rfc3339(),
                        span(first, last),
                        manifest.range.from.to_rfc3339(),
                        manifest.range.to.to_rfc3339()
                    ),
                )
                .seq(entry.seq)
                .file(bundle::CHAIN),
            );
        }
    }
    if manifest.entries != entries.len() as u64 {
        problems.push(
            Problem::new(
                ProblemKind::ManifestInconsistent,
                format!(
                    "the manifest counts {} entries but chain.jsonl holds {}",
                    manifest.entries,
                    entries.len()
                ),
            )
            .file(bundle::MANIFEST),
        );
    }
}

/// Each entry has its two record files, and `records/` holds nothing else.
fn check_record_files(
    entries: &[ChainEntry],
    files: &BTreeMap<String, bundle::FileDigest>,
    problems: &mut Vec<Problem>,
) {
    let mut expected = BTreeSet::new();
    for entry in entries {
        let stem = bundle::record_stem(entry.seq, &entry.kind, &entry.record_ref);
        let json = format!("{}/{stem}.json", bundle::RECORDS_DIR);
        let html = format!("{}/{stem}.html", bundle::RECORDS_DIR);
        if !files.contains_key(&html) {
            problems.push(
                Problem::new(
                    ProblemKind::FileMissing,
                    format!("{}: {html} is missing", label(entry)),
                )
                .seq(entry.seq)
                .file(&html),
            );
        }
        expected.insert(json);
        expected.insert(html);
    }
    let known = [
        bundle::MANIFEST,
        bundle::MANIFEST_SIG,
        bundle::CHAIN,
        bundle::HEADS,
        bundle::PUBLIC_KEY,
    ];
    for path in files.keys() {
        if !expected.contains(path) && !known.contains(&path.as_str()) {
            let why = if path.starts_with("records/") {
                "it belongs to no entry in chain.jsonl"
            } else {
                "a bundle holds no such file"
            };
            problems.push(Problem::unexpected_file(path.clone(), why));
        }
    }
}

/// The hash of an entry's record, and the file it was read from (bundle).
type RecordDigest = Result<(Option<String>, String), Problem>;

/// Record hashes, entry hashes, links, seq continuity and time order of
/// `entries` (sorted by seq). `genesis_required`: the entries are the whole
/// chain, so it must start at 1.
fn check_chain(
    entries: &[ChainEntry],
    genesis_required: bool,
    record_digest: &mut dyn FnMut(&ChainEntry) -> RecordDigest,
    problems: &mut Vec<Problem>,
) {
    let mut previous: Option<&ChainEntry> = None;
    for entry in entries {
        let seq = entry.seq;
        let malformed: Vec<&str> = [
            ("record_sha256", &entry.record_sha256),
            ("prev_sha256", &entry.prev_sha256),
            ("entry_sha256", &entry.entry_sha256),
        ]
        .into_iter()
        .filter(|(_, v)| !is_sha256_hex(v))
        .map(|(name, _)| name)
        .collect();
        if !malformed.is_empty() || seq < 1 {
            problems.push(
                Problem::new(
                    ProblemKind::EntryMalformed,
                    format!(
                        "{}: {} not a SHA-256 in lower-case hex, or the seq is below 1",
                        label(entry),
                        malformed.join(", ")
                    ),
                )
                .seq(seq),
            );
        }
        match previous {
            None => {
                if genesis_required && seq > 1 {
                    problems.push(
                        Problem::new(
                            ProblemKind::EntryMissing,
                            format!(
                                "{} missing before entry {seq}: the chain must start at entry 1",
                                span(1, seq - 1)
                            ),
                        )
                        .seq(1),
                    );
                }
                let genesis = entry.prev_sha256 == GENESIS_PREV_SHA256;
                if seq == 1 && !genesis {
                    problems.push(
                        Problem::new(
                            ProblemKind::ChainAnchor,
                            format!(
                                "{} starts the chain but its prev_sha256 is {}, not 64 zeros",
                                label(entry),
                                short(&entry.prev_sha256)
                            ),
                        )
                        .seq(seq)
                        .values(GENESIS_PREV_SHA256, &entry.prev_sha256),
                    );
                } else if seq > 1 && genesis {
                    problems.push(
                        Problem::new(
                            ProblemKind::ChainAnchor,
                            format!(
                                "{} has the first entry's prev_sha256 (64 zeros) but is not entry 1",
                                label(entry)
                            ),
                        )
                        .seq(seq),
                    );
                }
            }
            Some(prev) => {
                if seq != prev.seq + 1 {
                    problems.push(
                        Problem::new(
                            ProblemKind::EntryMissing,
                            format!(
                                "{} missing between {} and {seq}",
                                span(prev.seq + 1, seq - 1),
                                prev.seq
                            ),
                        )
                        .seq(prev.seq + 1),
                    );
                } else if entry.prev_sha256 != prev.entry_sha256 {
                    problems.push(
                        Problem::new(
                            ProblemKind::PrevLinkBroken,
                            format!(
                                "{}: prev_sha256 is {} but entry {}'s entry_sha256 is {}",
                                label(entry),
                                short(&entry.prev_sha256),
                                prev.seq,
                                short(&prev.entry_sha256)
                            ),
                        )
                        .seq(seq)
                        .values(&prev.entry_sha256, &entry.prev_sha256),
                    );
                }
                if entry.appended_at < prev.appended_at {
                    problems.push(
                        Problem::new(
                            ProblemKind::TimeDecreases,
                            format!(
                                "{} was appended at {}, before entry {} ({})",
                                label(entry),
                                entry.appended_at.to_rfc3339(),
                                prev.seq,
                                prev.appended_at.to_rfc3339()
                            ),
                        )
                        .seq(seq),
                    );
                }
            }
        }
        match record_digest(entry) {
            Ok((file, found)) if found != entry.record_sha256 => {
                let source = match &file {
                    Some(path) => format!("record file {path}"),
                    None => "the stored record".to_owned(),
                };
                problems.push(
                    Problem::new(
                        ProblemKind::RecordMismatch,
                        format!(
                            "{}: {source} has SHA-256 {} but the chain says {}",
                            label(entry),
                            short(&found),
                            short(&entry.record_sha256)
                        ),
                    )
                    .seq(seq)
                    .maybe_file(file.as_deref())
                    .values(&entry.record_sha256, &found),
                );
            }
            Ok(_) => {}
            Err(problem) => problems.push(problem),
        }
        let recomputed = chain::recompute(entry);
        if recomputed != entry.entry_sha256 {
            problems.push(
                Problem::new(
                    ProblemKind::EntryHashMismatch,
                    format!(
                        "{}: its fields hash to {} but its entry_sha256 is {}: the entry was edited",
                        label(entry),
                        short(&recomputed),
                        short(&entry.entry_sha256)
                    ),
                )
                .seq(seq)
                .values(&entry.entry_sha256, &recomputed),
            );
        }
        previous = Some(entry);
    }
}

/// Every head is signed by `public_key` and matches the entry at its seq;
/// the last entry is covered by a valid head.
fn check_heads(
    entries: &[ChainEntry],
    heads: &[SignedHead],
    public_key: &[u8],
    key_name: &str,
    problems: &mut Vec<Problem>,
) {
    let by_seq: HashMap<i64, &ChainEntry> = entries.iter().map(|e| (e.seq, e)).collect();
    let key_hex = hex::encode(public_key);
    let key_fp = fingerprint_of(public_key);
    let mut covered: Option<i64> = None;
    for head in heads {
        let seq = head.seq;
        if head.public_key != key_hex {
            let other = hex::decode(&head.public_key)
                .map(|k| fingerprint_of(&k))
                .unwrap_or_else(|_| head.public_key.clone());
            problems.push(
                Problem::new(
                    ProblemKind::HeadKeyMismatch,
                    format!(
                        "the head for entry {seq} is signed by key {}, not {key_name} {}",
                        short(&other),
                        short(&key_fp)
                    ),
                )
                .seq(seq)
                .values(&key_fp, &other),
            );
            continue;
        }
        let message =
            chain::head_message(seq, &head.entry_sha256, head.signed_at.timestamp_millis());
        let signed = hex::decode(&head.signature)
            .is_ok_and(|sig| signature_valid(public_key, &message, &sig));
        if !signed {
            problems.push(
                Problem::new(
                    ProblemKind::HeadSignatureInvalid,
                    format!(
                        "the head for entry {seq}: its signature does not verify with {key_name}: the head was altered"
                    ),
                )
                .seq(seq),
            );
            continue;
        }
        match by_seq.get(&seq) {
            None => problems.push(Problem::new(
                ProblemKind::HeadWithoutEntry,
                format!("a signed head names entry {seq}, which the chain does not hold"),
            )
            .seq(seq)),
            Some(entry) if entry.entry_sha256 != head.entry_sha256 => problems.push(
                Problem::new(
                    ProblemKind::HeadEntryMismatch,
                    format!(
                        "{}: the signed head says entry_sha256 {} but the chain says {}: the chain was rewritten after it was signed",
                        label(entry),
                        short(&head.entry_sha256),
                        short(&entry.entry_sha256)
                    ),
                )
                .seq(seq)
                .values(&head.entry_sha256, &entry.entry_sha256),
            ),
            Some(_) => covered = covered.max(Some(seq)),
        }
    }
    if let (Some(first), Some(last)) = (entries.first(), entries.last())
        && covered.is_none_or(|c| c < last.seq)
    {
        let (from, after) = match covered {
            Some(c) if c >= first.seq => (c + 1, format!("the last valid head is for entry {c}")),
            _ => (first.seq, "no entry has a valid head".to_owned()),
        };
        problems.push(
            Problem::new(
                ProblemKind::NotCoveredByHead,
                format!(
                    "{} not covered by a valid signed head ({after}): they could have been added or altered without the key",
                    span(from, last.seq)
                ),
            )
            .seq(from),
        );
    }
}

/// Orders the problems (module docs), drops repeats, and sums up.
fn report(
    entries: &[ChainEntry],
    key_fingerprint: Option<String>,
    mut problems: Vec<Problem>,
) -> VerifyReport {
    // Stable: problems of equal rank stay in the order the checks found them.
    problems.sort_by_key(Problem::rank);
    let mut seen = HashSet::new();
    problems.retain(|p| seen.insert((p.kind, p.seq, p.file.clone())));
    VerifyReport {
        ok: problems.is_empty(),
        entries: entries.len(),
        first_seq: entries.first().map(|e| e.seq),
        last_seq: entries.last().map(|e| e.seq),
        anchor_prev_sha256: entries.first().map(|e| e.prev_sha256.clone()),
        last_entry_sha256: entries.last().map(|e| e.entry_sha256.clone()),
        key_fingerprint,
        problems,
    }
}

/// The same chain and signature checks over the live tables: every stored
/// record (read through `records`) against the chain, the whole chain from
/// entry 1, and every head against `key`. Used by
/// `xunjian evidence verify --database`.
pub fn verify_database(
    conn: &Connection,
    key: &EvidenceKey,
    records: &dyn RecordSource,
) -> Result<VerifyReport, EvidenceError> {
    let entries = chain::read_entries(conn, None)?;
    let heads = chain::read_heads(conn, None)?;
    let mut problems = Vec::new();
    let mut record_digest =
        |entry: &ChainEntry| match records.record_json(&entry.kind, &entry.record_ref) {
            Ok(bytes) => Ok((None, sha256_hex(&bytes))),
            Err(e) => Err(Problem::new(
                ProblemKind::RecordMissing,
                format!("{}: the stored record cannot be read: {e}", label(entry)),
            )
            .seq(entry.seq)),
        };
    check_chain(&entries, true, &mut record_digest, &mut problems);
    check_heads(
        &entries,
        &heads,
        key.public_key(),
        "the collector's key",
        &mut problems,
    );
    Ok(report(&entries, Some(key.fingerprint()), problems))
}

/// What `xunjian evidence verify` prints: the verdict, the first problem
/// (the one to act on), then the rest.
impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let range = match (self.first_seq, self.last_seq) {
            (Some(a), Some(b)) => format!("entries {a}..={b}"),
            _ => "no entries".to_owned(),
        };
        if self.ok {
            writeln!(f, "OK: {} chain entries ({range}) verified", self.entries)?;
        } else {
            writeln!(
                f,
                "FAILED: {} problem(s) in {} chain entries ({range})",
                self.problems.len(),
                self.entries
            )?;
        }
        if let Some(k) = &self.key_fingerprint {
            writeln!(f, "signing key fingerprint: {k}")?;
        }
        if let Some(h) = &self.last_entry_sha256 {
            writeln!(f, "last entry sha256: {h}")?;
        }
        if let Some(a) = &self.anchor_prev_sha256 {
            writeln!(f, "anchor (hash before the first entry): {a}")?;
        }
        for (i, p) in self.problems.iter().enumerate() {
            let lead = if i == 0 { "first problem" } else { "also" };
            writeln!(f, "{lead}: {p}")?;
        }
        Ok(())
    }
}
