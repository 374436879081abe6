//! End-to-end tests: append, export, tamper, verify.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, TimeZone, Utc};
use rusqlite::Connection;

use super::bundle::{self, Manifest};
use super::*;

fn hour(h: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::hours(h)
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 2, 1, 12, 0, 0).unwrap()
}

#[derive(Default)]
struct Source(HashMap<(String, String), Vec<u8>>);

impl RecordSource for Source {
    fn record_json(&self, kind: &str, record_ref: &str) -> Result<Vec<u8>, EvidenceError> {
        self.0
            .get(&(kind.to_owned(), record_ref.to_owned()))
            .cloned()
            .ok_or_else(|| EvidenceError::Record {
                kind: kind.to_owned(),
                record_ref: record_ref.to_owned(),
                reason: "not stored".to_owned(),
            })
    }

    fn record_html(&self, kind: &str, record_ref: &str) -> Result<String, EvidenceError> {
        self.record_json(kind, record_ref)?;
        Ok(format!("<h1>{kind} {record_ref}</h1>"))
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    conn: Connection,
    key: EvidenceKey,
    source: Source,
}

fn kind_of(seq: i64) -> &'static str {
    if seq % 2 == 1 {
        "inspection"
    } else {
        "selfcheck"
    }
}

/// Six entries, entry n appended at hour n.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = crate::store::open(&dir.path().join("db.sqlite")).unwrap();
    let key = EvidenceKey::load_or_create(&dir.path().join("pki")).unwrap();
    let mut source = Source::default();
    for seq in 1..=6 {
        let kind = kind_of(seq);
        let record_ref = format!("run:{seq}");
        let record = canonical_json(&serde_json::json!({
            "run": seq,
            "kind": kind,
            "hosts": [{"host": "db-1", "verdict": "normal", "load": 0.25}],
        }))
        .unwrap();
        let tx = conn.transaction().unwrap();
        let entry = append(&tx, &key, hour(seq), kind, &record_ref, &record).unwrap();
        tx.commit().unwrap();
        assert_eq!(entry.seq, seq);
        source.0.insert((kind.to_owned(), record_ref), record);
    }
    Fixture {
        dir,
        conn,
        key,
        source,
    }
}

impl Fixture {
    fn export_to(&self, name: &str) -> (PathBuf, ExportSummary) {
        let out = self.dir.path().join(name);
        let summary = export(
            &self.conn,
            &self.key,
            hour(0),
            hour(100),
            &self.source,
            &out,
            now(),
        )
        .unwrap();
        (out, summary)
    }

    fn bundle(&self) -> PathBuf {
        self.export_to("bundle").0
    }
}

fn record_file(seq: i64, ext: &str) -> String {
    format!("records/{seq}-{}-run_{seq}.{ext}", kind_of(seq))
}

fn read_lines(dir: &Path, file: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(file))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(dir: &Path, file: &str, lines: &[String]) {
    std::fs::write(dir.join(file), format!("{}\n", lines.join("\n"))).unwrap();
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

/// What a careful attacker does next: recompute every manifest line from
/// the files as they now are (optionally naming another key).
fn rewrite_manifest(dir: &Path, fingerprint: Option<&str>) {
    let path = dir.join(bundle::MANIFEST);
    let mut manifest: Manifest = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for file in &mut manifest.files {
        let bytes = std::fs::read(dir.join(&file.path)).unwrap();
        file.sha256 = sha256_hex(&bytes);
        file.size = bytes.len() as u64;
    }
    if let Some(fp) = fingerprint {
        manifest.key_fingerprint = fp.to_owned();
    }
    let mut bytes = serde_json::to_vec_pretty(&manifest).unwrap();
    bytes.push(b'\n');
    std::fs::write(path, bytes).unwrap();
}

fn sign_manifest(dir: &Path, key: &EvidenceKey) {
    let bytes = std::fs::read(dir.join(bundle::MANIFEST)).unwrap();
    std::fs::write(
        dir.join(bundle::MANIFEST_SIG),
        format!("{}\n", hex::encode(key.sign(&bytes))),
    )
    .unwrap();
}

fn first(report: &VerifyReport) -> &Problem {
    assert!(!report.ok, "expected problems");
    &report.problems[0]
}

#[test]
fn untouched_bundle_verifies_as_directory_and_tarball() {
    let f = fixture();
    let (dir, summary) = f.export_to("bundle");
    assert_eq!(
        (summary.entries, summary.first_seq, summary.last_seq),
        (6, 1, 6)
    );
    assert_eq!(summary.files, 6 * 2 + 5);
    assert!(summary.records_not_matching_chain.is_empty());
    let report = verify(&dir, Some(&f.key.fingerprint())).unwrap();
    assert!(report.ok, "{:#?}", report.problems);
    assert_eq!(report.entries, 6);
    assert_eq!((report.first_seq, report.last_seq), (Some(1), Some(6)));
    assert_eq!(
        report.anchor_prev_sha256.as_deref(),
        Some(GENESIS_PREV_SHA256)
    );
    assert_eq!(report.key_fingerprint, Some(f.key.fingerprint()));
    let db = chain::read_entries(&f.conn, None).unwrap();
    assert_eq!(report.last_entry_sha256, Some(db[5].entry_sha256.clone()));
    assert!(dir.join(record_file(5, "json")).is_file());
    assert!(dir.join(record_file(5, "html")).is_file());

    let (tarball, _) = f.export_to("ev-2026.tar.gz");
    // Pinned in the form people copy from a screen.
    let pin = f
        .key
        .fingerprint()
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    let report = verify(&tarball, Some(&pin)).unwrap();
    assert!(report.ok, "{:#?}", report.problems);
    assert_eq!(report.entries, 6);
    let file = std::fs::File::open(&tarball).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive.entries().unwrap() {
        let path = entry.unwrap().path().unwrap().into_owned();
        assert!(path.starts_with("ev-2026"), "{}", path.display());
    }
    let leftovers: Vec<_> = std::fs::read_dir(f.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn one_byte_changed_in_a_record_names_the_entry_and_file() {
    let f = fixture();
    let dir = f.bundle();
    flip_byte(&dir.join(record_file(3, "json")), 10);
    let report = verify(&dir, None).unwrap();
    let p = first(&report);
    assert_eq!(p.kind, ProblemKind::RecordMismatch);
    assert_eq!(p.seq, Some(3));
    assert_eq!(p.file.as_deref(), Some(record_file(3, "json").as_str()));
    assert!(
        p.message.starts_with(
            "entry 3 (inspection run:3): record file records/3-inspection-run_3.json has SHA-256 "
        ),
        "{}",
        p.message
    );
    assert!(p.message.contains("but the chain says"), "{}", p.message);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::FileHashMismatch && p.seq == Some(3))
    );
}

#[test]
fn deleted_record_file_names_the_entry() {
    let f = fixture();
    let dir = f.bundle();
    std::fs::remove_file(dir.join(record_file(2, "json"))).unwrap();
    let report = verify(&dir, None).unwrap();
    let p = first(&report);
    assert_eq!(p.kind, ProblemKind::RecordMissing);
    assert_eq!(p.seq, Some(2));
    assert_eq!(p.file.as_deref(), Some(record_file(2, "json").as_str()));
}

#[test]
fn deleted_chain_line_is_a_gap() {
    let f = fixture();
    let dir = f.bundle();
    let mut lines = read_lines(&dir, bundle::CHAIN);
    lines.remove(3);
    write_lines(&dir, bundle::CHAIN, &lines);
    let report = verify(&dir, None).unwrap();
    let p = first(&report);
    assert_eq!(p.kind, ProblemKind::EntryMissing);
    assert_eq!(p.seq, Some(4));
    assert_eq!(p.message, "entry 4 missing between 3 and 5");
}

#[test]
fn deleted_last_chain_line_is_caught_by_the_manifest_and_heads() {
    let f = fixture();
    let dir = f.bundle();
    let mut lines = read_lines(&dir, bundle::CHAIN);
    lines.pop();
    write_lines(&dir, bundle::CHAIN, &lines);
    let report = verify(&dir, None).unwrap();
    let p = first(&report);
    assert_eq!((p.kind, p.seq), (ProblemKind::EntryMissing, Some(6)));
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::HeadWithoutEntry && p.seq == Some(6))
    );
}

#[test]
fn swapped_chain_lines_are_out_of_order() {
    let f = fixture();
    let dir = f.bundle();
    let mut lines = read_lines(&dir, bundle::CHAIN);
    lines.swap(1, 2);
    write_lines(&dir, bundle::CHAIN, &lines);
    let report = verify(&dir, None).unwrap();
    let p = first(&report);
    assert_eq!(p.kind, ProblemKind::EntryOutOfOrder);
    assert_eq!(p.seq, Some(2));
    assert_eq!(p.file.as_deref(), Some(bundle::CHAIN));
    assert!(
        p.message.contains("line 3 holds entry 2 after entry 3"),
        "{}",
        p.message
    );
}

#[test]
fn swapped_record_contents_name_the_first_entry() {
    let f = fixture();
    let dir = f.bundle();
    let (a, b) = (
        dir.join(record_file(2, "json")),
        dir.join(record_file(5, "json")),
    );
    let (bytes_a, bytes_b) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    std::fs::write(&a, bytes_b).unwrap();
    std::fs::write(&b, bytes_a).unwrap();
    let report = verify(&dir, None).unwrap();
    let p = first(&report);
    assert_eq!((p.kind, p.seq), (ProblemKind::RecordMismatch, Some(2)));
    assert_eq!(p.file.as_deref(), Some(record_file(2, "json").as_str()));
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::RecordMismatch && p.seq == Some(5))
    );
}

#[test]
fn altered_head_signature_names_the_entry() {
    let f = fixture();
    let dir = f.bundle();
    let mut lines = read_lines(&dir, bundle::HEADS);
    let mut head: SignedHead = serde_json::from_str(&lines[3]).unwrap();
    assert_eq!(head.seq, 4);
    let flipped = if head.signature.starts_with('0') {
        "1"
    } else {
        "0"
    };
    head.signature.replace_range(0..1, flipped);
    lines[3] = serde_json::to_string(&head).unwrap();
    write_lines(&dir, bundle::HEADS, &lines);
    let report = verify(&dir, None).unwrap();
    let p = first(&report);
    assert_eq!(
        (p.kind, p.seq),
        (ProblemKind::HeadSignatureInvalid, Some(4))
    );
}

#[test]
fn bundle_resigned_with_another_key_fails_the_pin() {
    let f = fixture();
    let dir = f.bundle();
    let other_dir = tempfile::tempdir().unwrap();
    let other = EvidenceKey::load_or_create(other_dir.path()).unwrap();
    std::fs::write(
        dir.join(bundle::PUBLIC_KEY),
        bundle::public_key_text(&other.public_key_hex(), &other.fingerprint()),
    )
    .unwrap();
    rewrite_manifest(&dir, Some(&other.fingerprint()));
    sign_manifest(&dir, &other);

    let pinned = verify(&dir, Some(&f.key.fingerprint())).unwrap();
    let p = first(&pinned);
    assert_eq!(p.kind, ProblemKind::KeyNotPinned);
    assert_eq!(p.file.as_deref(), Some(bundle::PUBLIC_KEY));
    assert_eq!(p.expected, Some(f.key.fingerprint()));
    assert_eq!(p.found, Some(other.fingerprint()));
    // Unpinned, the heads still give it away: they carry the real key.
    let unpinned = verify(&dir, None).unwrap();
    let p = first(&unpinned);
    assert_eq!((p.kind, p.seq), (ProblemKind::HeadKeyMismatch, Some(1)));

    // Heads re-signed too: a complete forgery is consistent on its own,
    // which is why auditors pin the fingerprint.
    let heads: Vec<String> = read_lines(&dir, bundle::HEADS)
        .iter()
        .map(|line| {
            let mut head: SignedHead = serde_json::from_str(line).unwrap();
            let msg = chain::head_message(
                head.seq,
                &head.entry_sha256,
                head.signed_at.timestamp_millis(),
            );
            head.public_key = other.public_key_hex();
            head.signature = hex::encode(other.sign(&msg));
            serde_json::to_string(&head).unwrap()
        })
        .collect();
    write_lines(&dir, bundle::HEADS, &heads);
    rewrite_manifest(&dir, None);
    sign_manifest(&dir, &other);
    assert!(verify(&dir, None).unwrap().ok);
    let pinned = verify(&dir, Some(&f.key.fingerprint())).unwrap();
    assert_eq!(pinned.problems.len(), 1);
    assert_eq!(pinned.problems[0].kind, ProblemKind::KeyNotPinned);
}

#[test]
fn record_changed_with_its_manifest_line_recomputed_names_the_entry() {
    let f = fixture();
    let dir = f.bundle();
    flip_byte(&dir.join(record_file(3, "json")), 10);
    rewrite_manifest(&dir, None);
    let report = verify(&dir, None).unwrap();
    let p = first(&report);
    assert_eq!((p.kind, p.seq), (ProblemKind::RecordMismatch, Some(3)));
    assert_eq!(
        report.problems.last().map(|p| p.kind),
        Some(ProblemKind::ManifestSignatureInvalid)
    );
    assert!(
        !report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::FileHashMismatch)
    );
}

#[test]
fn record_changed_with_chain_recomputed_is_caught_by_the_signed_heads() {
    let f = fixture();
    let dir = f.bundle();
    let record = dir.join(record_file(3, "json"));
    flip_byte(&record, 10);
    let new_record_sha = sha256_hex(&std::fs::read(&record).unwrap());
    let mut entries: Vec<ChainEntry> = read_lines(&dir, bundle::CHAIN)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    entries[2].record_sha256 = new_record_sha;
    for i in 2..entries.len() {
        if i > 2 {
            entries[i].prev_sha256 = entries[i - 1].entry_sha256.clone();
        }
        entries[i].entry_sha256 = chain::recompute(&entries[i]);
    }
    let lines: Vec<String> = entries
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    write_lines(&dir, bundle::CHAIN, &lines);
    rewrite_manifest(&dir, None);
    let report = verify(&dir, None).unwrap();
    let p = first(&report);
    assert_eq!((p.kind, p.seq), (ProblemKind::HeadEntryMismatch, Some(3)));
    assert!(
        p.message
            .starts_with("entry 3 (inspection run:3): the signed head says")
    );
    assert!(
        !report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::RecordMismatch)
    );
}

#[test]
fn segment_starting_mid_chain_reports_its_anchor() {
    let f = fixture();
    let out = f.dir.path().join("mid");
    let summary = export(&f.conn, &f.key, hour(3), hour(5), &f.source, &out, now()).unwrap();
    assert_eq!((summary.first_seq, summary.last_seq), (3, 4));
    let report = verify(&out, None).unwrap();
    assert!(report.ok, "{:#?}", report.problems);
    let db = chain::read_entries(&f.conn, None).unwrap();
    assert_eq!(report.first_seq, Some(3));
    assert_eq!(report.anchor_prev_sha256, Some(db[1].entry_sha256.clone()));
}

#[test]
fn first_entry_must_link_to_genesis() {
    let f = fixture();
    let dir = f.bundle();
    let mut lines = read_lines(&dir, bundle::CHAIN);
    let mut entry: ChainEntry = serde_json::from_str(&lines[0]).unwrap();
    entry.prev_sha256 = "ab".repeat(32);
    entry.entry_sha256 = chain::recompute(&entry);
    lines[0] = serde_json::to_string(&entry).unwrap();
    write_lines(&dir, bundle::CHAIN, &lines);
    let report = verify(&dir, None).unwrap();
    let p = first(&report);
    assert_eq!((p.kind, p.seq), (ProblemKind::ChainAnchor, Some(1)));
}

#[test]
fn empty_or_reversed_range_is_an_error_and_writes_nothing() {
    let f = fixture();
    let out = f.dir.path().join("none");
    let err = export(&f.conn, &f.key, hour(50), hour(60), &f.source, &out, now()).unwrap_err();
    assert!(matches!(err, EvidenceError::EmptyRange { .. }), "{err}");
    assert!(err.to_string().starts_with("no evidence between "));
    let err = export(&f.conn, &f.key, hour(5), hour(5), &f.source, &out, now()).unwrap_err();
    assert!(matches!(err, EvidenceError::BadRange { .. }), "{err}");
    assert!(!out.exists());
}

#[test]
fn existing_output_is_refused_unless_an_empty_directory() {
    let f = fixture();
    let busy = f.dir.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("keep.txt"), b"mine").unwrap();
    let err = export(&f.conn, &f.key, hour(0), hour(9), &f.source, &busy, now()).unwrap_err();
    assert!(matches!(err, EvidenceError::OutputExists { .. }), "{err}");
    assert_eq!(std::fs::read(busy.join("keep.txt")).unwrap(), b"mine");

    let empty = f.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    export(&f.conn, &f.key, hour(0), hour(9), &f.source, &empty, now()).unwrap();
    assert!(verify(&empty, None).unwrap().ok);

    let (tarball, _) = f.export_to("b.tgz");
    let err = export(
        &f.conn,
        &f.key,
        hour(0),
        hour(9),
        &f.source,
        &tarball,
        now(),
    )
    .unwrap_err();
    assert!(matches!(err, EvidenceError::OutputExists { .. }), "{err}");
}

#[test]
fn failed_export_leaves_nothing_behind() {
    let mut f = fixture();
    f.source
        .0
        .remove(&("selfcheck".to_owned(), "run:4".to_owned()));
    for name in ["broken", "broken.tar.gz"] {
        let out = f.dir.path().join(name);
        let err = export(&f.conn, &f.key, hour(0), hour(9), &f.source, &out, now()).unwrap_err();
        assert!(matches!(err, EvidenceError::Record { .. }), "{err}");
        assert!(!out.exists());
    }
    let names: Vec<_> = std::fs::read_dir(f.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.contains("broken")), "{names:?}");
}

#[test]
fn export_reports_records_that_no_longer_match() {
    let mut f = fixture();
    f.source
        .0
        .insert(("selfcheck".to_owned(), "run:2".to_owned()), b"{}".to_vec());
    let (dir, summary) = f.export_to("bundle");
    assert_eq!(summary.records_not_matching_chain, vec![2]);
    assert_eq!(first(&verify(&dir, None).unwrap()).seq, Some(2));
}

#[test]
fn malformed_pin_is_an_error() {
    let f = fixture();
    let dir = f.bundle();
    assert!(matches!(
        verify(&dir, Some("abc")),
        Err(EvidenceError::BadFingerprint(_))
    ));
}

#[test]
fn database_verification_finds_changed_records_and_rows() {
    let mut f = fixture();
    let report = verify_database(&f.conn, &f.key, &f.source).unwrap();
    assert!(report.ok, "{:#?}", report.problems);
    assert_eq!((report.entries, report.last_seq), (6, Some(6)));

    f.source
        .0
        .insert(("selfcheck".to_owned(), "run:2".to_owned()), b"{}".to_vec());
    let report = verify_database(&f.conn, &f.key, &f.source).unwrap();
    let p = first(&report);
    assert_eq!((p.kind, p.seq), (ProblemKind::RecordMismatch, Some(2)));
    assert!(
        p.message
            .starts_with("entry 2 (selfcheck run:2): the stored record has SHA-256")
    );

    // Someone with write access to the file drops the trigger and edits.
    f.conn
        .execute_batch(
            "DROP TRIGGER evidence_chain_no_update;
             UPDATE evidence_chain SET appended_at = appended_at + 1 WHERE seq = 1;",
        )
        .unwrap();
    let report = verify_database(&f.conn, &f.key, &f.source).unwrap();
    let p = first(&report);
    assert_eq!((p.kind, p.seq), (ProblemKind::EntryHashMismatch, Some(1)));
}

#[test]
fn tampered_tarball_names_the_entry() {
    let f = fixture();
    let dir = f.bundle();
    flip_byte(&dir.join(record_file(3, "json")), 10);
    let tarball = f.dir.path().join("tampered.tar.gz");
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&tarball).unwrap(),
        flate2::Compression::default(),
    );
    let mut builder = tar::Builder::new(gz);
    builder.append_dir_all("tampered", &dir).unwrap();
    builder.into_inner().unwrap().finish().unwrap();
    let report = verify(&tarball, None).unwrap();
    let p = first(&report);
    assert_eq!((p.kind, p.seq), (ProblemKind::RecordMismatch, Some(3)));
    assert_eq!(p.file.as_deref(), Some(record_file(3, "json").as_str()));
}
