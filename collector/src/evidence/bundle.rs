//! Export bundles: their layout, writing one (a directory or a .tar.gz) from
//! the live tables, and reading one back for the verifier without trusting
//! or extracting anything.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::verify::Problem;
use super::{
    ChainEntry, EvidenceError, EvidenceKey, RecordSource, SignedHead, chain, io, sha256_hex,
};

pub(crate) const FORMAT: &str = "xunjian-evidence-bundle-v1";
pub(crate) const MANIFEST: &str = "manifest.json";
pub(crate) const MANIFEST_SIG: &str = "manifest.sig";
pub(crate) const CHAIN: &str = "chain.jsonl";
pub(crate) const HEADS: &str = "heads.jsonl";
pub(crate) const PUBLIC_KEY: &str = "public_key.txt";
pub(crate) const RECORDS_DIR: &str = "records";

/// The files the verifier reads whole; everything else is only hashed as
/// it streams past.
const METADATA_FILES: [&str; 5] = [MANIFEST, MANIFEST_SIG, CHAIN, HEADS, PUBLIC_KEY];
/// A metadata file larger than this is not read into memory (a year of
/// chain lines is well under a megabyte).
const MAX_METADATA_BYTES: u64 = 256 << 20;
/// Sanitised kinds and references are cut to this many bytes in file names.
const MAX_NAME_PART: usize = 60;

/// `manifest.json`: what the bundle holds, signed as exact bytes by
/// `manifest.sig`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    pub format: String,
    pub created_at: DateTime<Utc>,
    pub range: ManifestRange,
    pub first_seq: i64,
    pub last_seq: i64,
    pub entries: u64,
    pub key_fingerprint: String,
    /// Every file of the bundle except `manifest.json` and `manifest.sig`,
    /// sorted by path.
    pub files: Vec<ManifestFile>,
}

/// The exported range: entries appended at or after `from` and before `to`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ManifestRange {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ManifestFile {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// What [`export`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportSummary {
    pub out: PathBuf,
    pub entries: usize,
    pub first_seq: i64,
    pub last_seq: i64,
    /// Files in the bundle, `manifest.json` and `manifest.sig` included.
    pub files: usize,
    pub key_fingerprint: String,
    /// Entries whose record, as the source returned it, no longer hashes to
    /// what the chain says. They are exported as found (hiding them would
    /// hide the tampering); `verify` reports them.
    pub records_not_matching_chain: Vec<i64>,
}

/// Writes a signed bundle of the chain entries appended in `[from, to)`.
///
/// Layout (under one top directory when `out` ends in `.tar.gz` / `.tgz`,
/// otherwise `out` is a new or empty directory):
///
/// * `records/<seq>-<kind>-<ref>.json`: the record bytes the chain hashed;
///   `.html`: the same record for people (covered by the manifest only).
///   Kind and ref keep `[A-Za-z0-9_-]`, other characters become `_`.
/// * `chain.jsonl`: one [`ChainEntry`] per line, by seq. If the range
///   starts mid-chain, the first entry's `prev_sha256` links to an entry
///   outside the bundle: the verifier reports it as the anchor.
/// * `heads.jsonl`: the [`SignedHead`]s of those entries.
/// * `public_key.txt`: the signing key (hex) and its fingerprint.
/// * `manifest.json`: every other file with its SHA-256 and size, the range,
///   the first/last seq, `created_at` (= `now`) and the key fingerprint.
/// * `manifest.sig`: Ed25519 signature over the exact bytes of
///   `manifest.json`, hex.
///
/// The bundle is built under a temporary name next to `out` and renamed
/// into place, so a failed export leaves nothing behind.
pub fn export(
    conn: &Connection,
    key: &EvidenceKey,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    records: &dyn RecordSource,
    out: &Path,
    now: DateTime<Utc>,
) -> Result<ExportSummary, EvidenceError> {
    if from >= to {
        return Err(EvidenceError::BadRange { from, to });
    }
    let Some(range) = chain::seq_range(conn, ceil_ms(from), ceil_ms(to))? else {
        return Err(EvidenceError::EmptyRange { from, to });
    };
    let entries = chain::read_entries(conn, Some(range))?;
    let heads = chain::read_heads(conn, Some(range))?;
    let target = Target::prepare(out)?;
    let mut sink = target.open_sink(now)?;
    let written = write_bundle(&mut sink, key, from, to, &entries, &heads, records, now);
    let finished = written.and_then(|summary| sink.finish().map(|()| summary));
    match finished.and_then(|summary| target.install().map(|()| summary)) {
        Ok((files, records_not_matching_chain)) => Ok(ExportSummary {
            out: out.to_owned(),
            entries: entries.len(),
            first_seq: range.0,
            last_seq: range.1,
            files,
            key_fingerprint: key.fingerprint(),
            records_not_matching_chain,
        }),
        Err(e) => {
            target.discard();
            Err(e)
        }
    }
}

/// Writes every file; returns the file count and the entries whose record
/// does not match the chain.
#[allow(clippy::too_many_arguments)] // one call site, all inputs of one bundle
fn write_bundle(
    sink: &mut Sink,
    key: &EvidenceKey,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    entries: &[ChainEntry],
    heads: &[SignedHead],
    records: &dyn RecordSource,
    now: DateTime<Utc>,
) -> Result<(usize, Vec<i64>), EvidenceError> {
    let mut listed = Vec::new();
    let mut mismatched = Vec::new();
    let mut add = |sink: &mut Sink, path: String, bytes: &[u8]| -> Result<(), EvidenceError> {
        sink.add(&path, bytes)?;
        listed.push(ManifestFile {
            path,
            sha256: sha256_hex(bytes),
            size: bytes.len() as u64,
        });
        Ok(())
    };
    let mut chain_lines = Vec::new();
    for entry in entries {
        let json = records.record_json(&entry.kind, &entry.record_ref)?;
        if sha256_hex(&json) != entry.record_sha256 {
            mismatched.push(entry.seq);
        }
        let html = records.record_html(&entry.kind, &entry.record_ref)?;
        let stem = record_stem(entry.seq, &entry.kind, &entry.record_ref);
        add(sink, format!("{RECORDS_DIR}/{stem}.json"), &json)?;
        add(sink, format!("{RECORDS_DIR}/{stem}.html"), html.as_bytes())?;
        push_line(&mut chain_lines, entry)?;
    }
    add(sink, CHAIN.to_owned(), &chain_lines)?;
    let mut head_lines = Vec::new();
    for head in heads {
        push_line(&mut head_lines, head)?;
    }
    add(sink, HEADS.to_owned(), &head_lines)?;
    add(
        sink,
        PUBLIC_KEY.to_owned(),
        public_key_text(&key.public_key_hex(), &key.fingerprint()).as_bytes(),
    )?;
    listed.sort_by(|a, b| a.path.cmp(&b.path));
    let files = listed.len() + 2;
    let (first_seq, last_seq) = match (entries.first(), entries.last()) {
        (Some(first), Some(last)) => (first.seq, last.seq),
        // `seq_range` found entries, and the rows between its bounds
        // cannot vanish inside the caller's read.
        _ => return Err(EvidenceError::EmptyRange { from, to }),
    };
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        created_at: now,
        range: ManifestRange { from, to },
        first_seq,
        last_seq,
        entries: entries.len() as u64,
        key_fingerprint: key.fingerprint(),
        files: listed,
    };
    let mut manifest_bytes =
        serde_json::to_vec_pretty(&manifest).map_err(|e| EvidenceError::Encoding(e.to_string()))?;
    manifest_bytes.push(b'\n');
    sink.add(MANIFEST, &manifest_bytes)?;
    let signature = format!("{}\n", hex::encode(key.sign(&manifest_bytes)));
    sink.add(MANIFEST_SIG, signature.as_bytes())?;
    Ok((files, mismatched))
}

fn push_line(out: &mut Vec<u8>, value: &impl Serialize) -> Result<(), EvidenceError> {
    serde_json::to_writer(&mut *out, value).map_err(|e| EvidenceError::Encoding(e.to_string()))?;
    out.push(b'\n');
    Ok(())
}

pub(crate) fn public_key_text(public_key_hex: &str, fingerprint: &str) -> String {
    format!(
        "Xunjian evidence signing key (Ed25519)\npublic_key: {public_key_hex}\nfingerprint: {fingerprint}\n"
    )
}

/// `(public key hex, claimed fingerprint)` from `public_key.txt`.
pub(crate) fn parse_public_key_text(text: &str) -> Option<(String, String)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    Some((field("public_key:")?, field("fingerprint:")?))
}

/// `<seq>-<kind>-<ref>` with kind and ref made safe for any file system.
pub(crate) fn record_stem(seq: i64, kind: &str, record_ref: &str) -> String {
    format!("{seq}-{}-{}", sanitise(kind), sanitise(record_ref))
}

fn sanitise(part: &str) -> String {
    let safe: String = part
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_NAME_PART)
        .collect();
    if safe.is_empty() {
        "_".to_owned()
    } else {
        safe
    }
}

/// Milliseconds at or after `t`: an entry (stored in whole ms) is at or
/// after `t` exactly when its ms are at least this.
pub(crate) fn ceil_ms(t: DateTime<Utc>) -> i64 {
    let ms = t.timestamp_millis();
    if t.timestamp_subsec_nanos().is_multiple_of(1_000_000) {
        ms
    } else {
        ms.saturating_add(1)
    }
}

/// Where the bundle goes, and the temporary name it is built under.
enum Target {
    Dir { out: PathBuf, staging: PathBuf },
    Tar { out: PathBuf, staging: PathBuf },
}

impl Target {
    fn prepare(out: &Path) -> Result<Self, EvidenceError> {
        let name = out
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| EvidenceError::OutputExists {
                path: out.to_owned(),
                detail: " or is not a usable file name",
            })?;
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(io("creating the directory", &parent))?;
        let staging = parent.join(format!(
            ".{name}.partial-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        if is_tarball(name) {
            if out.symlink_metadata().is_ok() {
                return Err(EvidenceError::OutputExists {
                    path: out.to_owned(),
                    detail: "",
                });
            }
            Ok(Target::Tar {
                out: out.to_owned(),
                staging,
            })
        } else {
            if out.symlink_metadata().is_ok() {
                let empty_dir = out.is_dir()
                    && std::fs::read_dir(out)
                        .map_err(io("reading the directory", out))?
                        .next()
                        .is_none();
                if !empty_dir {
                    return Err(EvidenceError::OutputExists {
                        path: out.to_owned(),
                        detail: " and is not an empty directory",
                    });
                }
            }
            xunjian_agent::fsutil::create_dir_private(&staging.join(RECORDS_DIR))
                .map_err(io("creating the bundle directory", &staging))?;
            xunjian_agent::fsutil::create_dir_private(&staging)
                .map_err(io("creating the bundle directory", &staging))?;
            Ok(Target::Dir {
                out: out.to_owned(),
                staging,
            })
        }
    }

    fn open_sink(&self, now: DateTime<Utc>) -> Result<Sink, EvidenceError> {
        match self {
            Target::Dir { staging, .. } => Ok(Sink::Dir(staging.clone())),
            Target::Tar { out, staging } => {
                let file = create_private(staging)?;
                let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
                Ok(Sink::Tar {
                    builder: tar::Builder::new(gz),
                    top: top_dir_name(out),
                    mtime: u64::try_from(now.timestamp()).unwrap_or(0),
                    path: staging.clone(),
                })
            }
        }
    }

    fn install(&self) -> Result<(), EvidenceError> {
        match self {
            Target::Dir { out, staging } => {
                if out.is_dir() {
                    // Checked empty in `prepare`; `remove_dir` refuses if
                    // something has appeared in it since.
                    std::fs::remove_dir(out).map_err(io("replacing the empty directory", out))?;
                }
                std::fs::rename(staging, out).map_err(io("moving the bundle into place at", out))
            }
            Target::Tar { out, staging } => {
                // A hard link never replaces an existing file, unlike rename.
                std::fs::hard_link(staging, out).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        EvidenceError::OutputExists {
                            path: out.clone(),
                            detail: "",
                        }
                    } else {
                        io("moving the bundle into place at", out)(e)
                    }
                })?;
                std::fs::remove_file(staging).map_err(io("removing the temporary file", staging))
            }
        }
    }

    /// Best effort: the export already failed, and its error is the one
    /// worth reporting.
    fn discard(&self) {
        match self {
            Target::Dir { staging, .. } => {
                let _ = std::fs::remove_dir_all(staging);
            }
            Target::Tar { staging, .. } => {
                let _ = std::fs::remove_file(staging);
            }
        }
    }
}

fn is_tarball(name: &str) -> bool {
    name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

fn top_dir_name(out: &Path) -> String {
    let name = out.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let stem = name
        .strip_suffix(".tar.gz")
        .or_else(|| name.strip_suffix(".tgz"))
        .unwrap_or(name);
    let top: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if top.is_empty() || top.starts_with('.') {
        format!("evidence{top}")
    } else {
        top
    }
}

fn create_private(path: &Path) -> Result<File, EvidenceError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path).map_err(io("creating", path))
}

enum Sink {
    Dir(PathBuf),
    Tar {
        builder: tar::Builder<flate2::write::GzEncoder<File>>,
        top: String,
        mtime: u64,
        path: PathBuf,
    },
}

impl Sink {
    fn add(&mut self, rel: &str, bytes: &[u8]) -> Result<(), EvidenceError> {
        match self {
            Sink::Dir(root) => {
                let path = root.join(rel);
                let mut file = create_private(&path)?;
                file.write_all(bytes).map_err(io("writing", &path))
            }
            Sink::Tar {
                builder,
                top,
                mtime,
                path,
            } => {
                let mut header = tar::Header::new_gnu();
                header.set_size(bytes.len() as u64);
                header.set_mode(0o644);
                header.set_mtime(*mtime);
                header.set_entry_type(tar::EntryType::Regular);
                builder
                    .append_data(&mut header, format!("{top}/{rel}"), bytes)
                    .map_err(io("writing the archive", path))
            }
        }
    }

    fn finish(self) -> Result<(), EvidenceError> {
        match self {
            Sink::Dir(_) => Ok(()),
            Sink::Tar { builder, path, .. } => {
                let gz = builder
                    .into_inner()
                    .map_err(io("writing the archive", &path))?;
                let file = gz.finish().map_err(io("writing the archive", &path))?;
                file.sync_all().map_err(io("writing the archive", &path))
            }
        }
    }
}

/// A bundle as the verifier sees it: the hash and size of every regular
/// file, the bytes of the metadata files, and anything found that a bundle
/// never holds.
#[derive(Debug, Default)]
pub(crate) struct BundleContents {
    pub files: BTreeMap<String, FileDigest>,
    pub metadata: BTreeMap<String, Vec<u8>>,
    pub layout_problems: Vec<Problem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileDigest {
    pub sha256: String,
    pub size: u64,
}

/// Reads a bundle directory or .tar.gz without extracting it.
pub(crate) fn read_bundle(path: &Path) -> Result<BundleContents, EvidenceError> {
    let unreadable = |reason: String| EvidenceError::BundleUnreadable {
        path: path.to_owned(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| unreadable(e.to_string()))?;
    let mut contents = BundleContents::default();
    if meta.is_dir() {
        read_dir_into(path, "", &mut contents).map_err(|e| unreadable(e.to_string()))?;
    } else {
        read_tar_into(path, &mut contents)
            .map_err(|e| unreadable(format!("not a readable .tar.gz bundle: {e}")))?;
    }
    Ok(contents)
}

fn read_dir_into(dir: &Path, prefix: &str, contents: &mut BundleContents) -> std::io::Result<()> {
    let mut children: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    children.sort_by_key(|c| c.file_name());
    for child in children {
        let name = child.file_name();
        let rel = match name.to_str() {
            Some(name) => format!("{prefix}{name}"),
            None => {
                contents.layout_problems.push(Problem::unexpected_file(
                    format!("{prefix}{}", name.to_string_lossy()),
                    "its name is not UTF-8",
                ));
                continue;
            }
        };
        let kind = child.file_type()?;
        if kind.is_dir() {
            read_dir_into(&child.path(), &format!("{rel}/"), contents)?;
        } else if kind.is_file() {
            let file = File::open(child.path())?;
            add_file(contents, rel, file)?;
        } else {
            contents
                .layout_problems
                .push(Problem::unexpected_file(rel, "it is not a regular file"));
        }
    }
    Ok(())
}

fn read_tar_into(path: &Path, contents: &mut BundleContents) -> std::io::Result<()> {
    let file = File::open(path)?;
    // Every gzip member, as `gzip -d` would: files hidden in an appended
    // member must not escape the check.
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(file));
    let mut top: Option<String> = None;
    for entry in archive.entries()? {
        let entry = entry?;
        let raw = entry.path()?.into_owned();
        let shown = raw.to_string_lossy().into_owned();
        let mut parts = Vec::new();
        let mut clean = true;
        for component in raw.components() {
            match component {
                Component::Normal(p) => match p.to_str() {
                    Some(p) => parts.push(p.to_owned()),
                    None => clean = false,
                },
                Component::CurDir => {}
                _ => clean = false,
            }
        }
        let entry_type = entry.header().entry_type();
        if !clean || parts.is_empty() {
            contents.layout_problems.push(Problem::unexpected_file(
                shown,
                "its path is absolute, climbs out with `..`, or is not UTF-8",
            ));
            continue;
        }
        let first = parts.remove(0);
        match &top {
            None => top = Some(first),
            Some(t) if *t == first => {}
            Some(t) => {
                contents.layout_problems.push(Problem::unexpected_file(
                    shown,
                    &format!("it is outside the bundle's top directory {t}/"),
                ));
                continue;
            }
        }
        if entry_type.is_dir() {
            continue;
        }
        if parts.is_empty() || !(entry_type.is_file() || entry_type == tar::EntryType::Continuous) {
            contents.layout_problems.push(Problem::unexpected_file(
                shown,
                "it is not a regular file inside the top directory",
            ));
            continue;
        }
        let rel = parts.join("/");
        if contents.files.contains_key(&rel) {
            contents
                .layout_problems
                .push(Problem::unexpected_file(rel, "the archive holds it twice"));
            continue;
        }
        add_file(contents, rel, entry)?;
    }
    Ok(())
}

/// Hashes `reader` as it streams, keeping the bytes of metadata files.
fn add_file(contents: &mut BundleContents, rel: String, reader: impl Read) -> std::io::Result<()> {
    use sha2::{Digest, Sha256};
    let keep = METADATA_FILES.contains(&rel.as_str());
    let mut kept = Vec::new();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut reader = reader;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
        if keep && size <= MAX_METADATA_BYTES {
            kept.extend_from_slice(&buf[..n]);
        }
    }
    if keep {
        if size <= MAX_METADATA_BYTES {
            contents.metadata.insert(rel.clone(), kept);
        } else {
            contents.layout_problems.push(Problem::unexpected_file(
                rel.clone(),
                &format!("it is {size} bytes, too large to be a real {rel}"),
            ));
        }
    }
    contents.files.insert(
        rel,
        FileDigest {
            sha256: hex::encode(hasher.finalize()),
            size,
        },
    );
    Ok(())
}

impl std::fmt::Display for ExportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exported {} chain entries ({}..={}) in {} files to {}; signed by key {}",
            self.entries,
            self.first_seq,
            self.last_seq,
            self.files,
            self.out.display(),
            self.key_fingerprint
        )?;
        if !self.records_not_matching_chain.is_empty() {
            write!(
                f,
                "\nWARNING: records of entries {:?} no longer match the chain (exported as found; verify names them)",
                self.records_not_matching_chain
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names_are_safe_and_keep_their_seq() {
        assert_eq!(
            record_stem(5, "inspection", "run:12"),
            "5-inspection-run_12"
        );
        assert_eq!(
            record_stem(6, "self check", "../../x"),
            "6-self_check-______x"
        );
        assert_eq!(record_stem(7, "", ""), "7-_-_");
        assert_eq!(
            record_stem(8, "k", &"y".repeat(500)).len(),
            4 + MAX_NAME_PART
        );
    }

    #[test]
    fn range_bounds_round_sub_millisecond_times_up() {
        let t = DateTime::from_timestamp_millis(1_000).unwrap();
        assert_eq!(ceil_ms(t), 1_000);
        assert_eq!(ceil_ms(t + chrono::Duration::microseconds(1)), 1_001);
    }

    #[test]
    fn tarball_top_directory_comes_from_the_file_name() {
        assert_eq!(top_dir_name(Path::new("/x/ev-2026.tar.gz")), "ev-2026");
        assert_eq!(top_dir_name(Path::new("a b.tgz")), "a_b");
        assert_eq!(top_dir_name(Path::new(".tgz")), "evidence");
    }
}
