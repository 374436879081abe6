//! Appending to the chain inside the filing transaction, the entry-hash and
//! head-message layouts, and reading the chain back.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    ChainEntry, EvidenceError, EvidenceKey, GENESIS_PREV_SHA256, SignedHead, sha256_hex, sql,
};

/// Appends an entry for `record` (the exact bytes the caller stores) and
/// signs the new head, inside the caller's transaction so the record, its
/// entry and the head are filed together or not at all.
///
/// `appended_at` is `now`, except that a clock stepping back never makes
/// the chain's times decrease: the entry then takes the previous entry's
/// time (the head's `signed_at` keeps the true `now`).
pub fn append(
    tx: &Connection,
    key: &EvidenceKey,
    now: DateTime<Utc>,
    kind: &str,
    record_ref: &str,
    record: &[u8],
) -> Result<ChainEntry, EvidenceError> {
    if kind.trim().is_empty() || record_ref.trim().is_empty() {
        return Err(EvidenceError::InvalidEntry(format!(
            "kind {kind:?} and record reference {record_ref:?} must both be non-empty"
        )));
    }
    let last: Option<(i64, i64, String)> = tx
        .query_row(
            "SELECT seq, appended_at, entry_sha256 FROM evidence_chain ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(sql("reading the evidence chain's head"))?;
    let now_ms = now.timestamp_millis();
    let (seq, appended_ms, prev_sha256) = match last {
        Some((seq, at, entry)) => (seq + 1, now_ms.max(at), entry),
        None => (1, now_ms, GENESIS_PREV_SHA256.to_owned()),
    };
    let appended_at = from_ms(appended_ms, seq)?;
    let record_sha256 = sha256_hex(record);
    let entry_sha256 = entry_sha256(
        seq,
        appended_ms,
        kind,
        record_ref,
        &record_sha256,
        &prev_sha256,
    );
    tx.execute(
        "INSERT INTO evidence_chain (seq, appended_at, kind, record_ref, record_sha256, prev_sha256, entry_sha256)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![seq, appended_ms, kind, record_ref, record_sha256, prev_sha256, entry_sha256],
    )
    .map_err(sql("appending to the evidence chain"))?;
    let signature = key.sign(&head_message(seq, &entry_sha256, now_ms));
    tx.execute(
        "INSERT INTO evidence_heads (seq, entry_sha256, signed_at, public_key, signature)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            seq,
            entry_sha256,
            now_ms,
            key.public_key_hex(),
            hex::encode(signature)
        ],
    )
    .map_err(sql("signing the evidence chain's head"))?;
    Ok(ChainEntry {
        seq,
        appended_at,
        kind: kind.to_owned(),
        record_ref: record_ref.to_owned(),
        record_sha256,
        prev_sha256,
        entry_sha256,
    })
}

/// SHA-256 of the entry layout documented in the module docs.
pub(crate) fn entry_sha256(
    seq: i64,
    appended_at_ms: i64,
    kind: &str,
    record_ref: &str,
    record_sha256: &str,
    prev_sha256: &str,
) -> String {
    let layout = format!(
        "xunjian-evidence-entry-v1\nseq={seq}\nappended_at={appended_at_ms}\nkind={}:{kind}\nrecord_ref={}:{record_ref}\nrecord_sha256={record_sha256}\nprev_sha256={prev_sha256}\n",
        kind.len(),
        record_ref.len(),
    );
    sha256_hex(layout.as_bytes())
}

/// The entry hash recomputed from `entry`'s own fields.
pub(crate) fn recompute(entry: &ChainEntry) -> String {
    entry_sha256(
        entry.seq,
        entry.appended_at.timestamp_millis(),
        &entry.kind,
        &entry.record_ref,
        &entry.record_sha256,
        &entry.prev_sha256,
    )
}

/// The bytes a head signature covers.
pub(crate) fn head_message(seq: i64, entry_sha256: &str, signed_at_ms: i64) -> Vec<u8> {
    format!(
        "xunjian-evidence-head-v1\nseq={seq}\nentry_sha256={entry_sha256}\nsigned_at={signed_at_ms}\n"
    )
    .into_bytes()
}

fn from_ms(ms: i64, seq: i64) -> Result<DateTime<Utc>, EvidenceError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| {
        EvidenceError::CorruptRow(format!("entry {seq} has an impossible time {ms} ms"))
    })
}

/// The `(first, last)` seq of the entries appended in `[from_ms, to_ms)`.
pub(crate) fn seq_range(
    conn: &Connection,
    from_ms: i64,
    to_ms: i64,
) -> Result<Option<(i64, i64)>, EvidenceError> {
    let (first, last): (Option<i64>, Option<i64>) = conn
        .query_row(
            "SELECT MIN(seq), MAX(seq) FROM evidence_chain WHERE appended_at >= ?1 AND appended_at < ?2",
            params![from_ms, to_ms],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(sql("finding the evidence in the range"))?;
    Ok(first.zip(last))
}

/// Chain entries with seq in `[first, last]` (all when `None`), by seq.
pub(crate) fn read_entries(
    conn: &Connection,
    range: Option<(i64, i64)>,
) -> Result<Vec<ChainEntry>, EvidenceError> {
    let (first, last) = range.unwrap_or((i64::MIN, i64::MAX));
    let mut stmt = conn
        .prepare(
            "SELECT seq, appended_at, kind, record_ref, record_sha256, prev_sha256, entry_sha256
             FROM evidence_chain WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
        )
        .map_err(sql("reading the evidence chain"))?;
    let rows = stmt
        .query_map(params![first, last], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .map_err(sql("reading the evidence chain"))?;
    let mut entries = Vec::new();
    for row in rows {
        let (seq, at, kind, record_ref, record_sha256, prev_sha256, entry_sha256) =
            row.map_err(sql("reading the evidence chain"))?;
        entries.push(ChainEntry {
            seq,
            appended_at: from_ms(at, seq)?,
            kind,
            record_ref,
            record_sha256,
            prev_sha256,
            entry_sha256,
        });
    }
    Ok(entries)
}

/// Signed heads with seq in `[first, last]` (all when `None`), in signing
/// order.
pub(crate) fn read_heads(
    conn: &Connection,
    range: Option<(i64, i64)>,
) -> Result<Vec<SignedHead>, EvidenceError> {
    let (first, last) = range.unwrap_or((i64::MIN, i64::MAX));
    let mut stmt = conn
        .prepare(
            "SELECT seq, entry_sha256, signed_at, public_key, signature
             FROM evidence_heads WHERE seq BETWEEN ?1 AND ?2 ORDER BY head_id",
        )
        .map_err(sql("reading the evidence heads"))?;
    let rows = stmt
        .query_map(params![first, last], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get(1)?,
                r.get::<_, i64>(2)?,
                r.get(3)?,
                r.get(4)?,
            ))
        })
        .map_err(sql("reading the evidence heads"))?;
    let mut heads = Vec::new();
    for row in rows {
        let (seq, entry_sha256, signed_at, public_key, signature) =
            row.map_err(sql("reading the evidence heads"))?;
        heads.push(SignedHead {
            seq,
            entry_sha256,
            signed_at: from_ms(signed_at, seq)?,
            public_key,
            signature,
        });
    }
    Ok(heads)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::evidence::key::signature_valid;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, minute, 0).unwrap()
    }

    fn setup() -> (tempfile::TempDir, Connection, EvidenceKey) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("db.sqlite")).unwrap();
        let key = EvidenceKey::load_or_create(&dir.path().join("pki")).unwrap();
        (dir, conn, key)
    }

    #[test]
    fn entries_link_and_every_append_signs_the_head() {
        let (_dir, mut conn, key) = setup();
        let tx = conn.transaction().unwrap();
        let first = append(&tx, &key, at(1), "inspection", "run:1", b"{}").unwrap();
        let second = append(&tx, &key, at(2), "selfcheck", "run:2", b"{\"a\":1}").unwrap();
        tx.commit().unwrap();
        assert_eq!((first.seq, second.seq), (1, 2));
        assert_eq!(first.prev_sha256, GENESIS_PREV_SHA256);
        assert_eq!(second.prev_sha256, first.entry_sha256);
        assert_eq!(first.record_sha256, sha256_hex(b"{}"));
        assert_eq!(recompute(&second), second.entry_sha256);
        assert_eq!(
            read_entries(&conn, None).unwrap(),
            vec![first, second.clone()]
        );
        let heads = read_heads(&conn, None).unwrap();
        assert_eq!(heads.len(), 2);
        let head = &heads[1];
        assert_eq!((head.seq, &head.entry_sha256), (2, &second.entry_sha256));
        let msg = head_message(2, &second.entry_sha256, at(2).timestamp_millis());
        assert!(signature_valid(
            &hex::decode(&head.public_key).unwrap(),
            &msg,
            &hex::decode(&head.signature).unwrap()
        ));
    }

    #[test]
    fn entry_layout_is_length_prefixed_and_fixed() {
        // Pinned so a change to the layout cannot slip through unnoticed:
        // every stored chain depends on it.
        let layout = "xunjian-evidence-entry-v1\nseq=3\nappended_at=1767225600000\nkind=10:inspection\nrecord_ref=6:run:12\nrecord_sha256=aa\nprev_sha256=bb\n";
        assert_eq!(
            entry_sha256(3, 1_767_225_600_000, "inspection", "run:12", "aa", "bb"),
            sha256_hex(layout.as_bytes())
        );
        // Moving a character between kind and ref changes the hash.
        assert_ne!(
            entry_sha256(3, 0, "ab", "c", "aa", "bb"),
            entry_sha256(3, 0, "a", "bc", "aa", "bb")
        );
    }

    #[test]
    fn a_clock_stepping_back_never_makes_times_decrease() {
        let (_dir, mut conn, key) = setup();
        let tx = conn.transaction().unwrap();
        append(&tx, &key, at(5), "inspection", "run:1", b"1").unwrap();
        let e = append(&tx, &key, at(3), "inspection", "run:2", b"2").unwrap();
        tx.commit().unwrap();
        assert_eq!(e.appended_at, at(5));
        assert_eq!(read_heads(&conn, None).unwrap()[1].signed_at, at(3));
    }

    #[test]
    fn empty_kind_or_ref_is_refused_and_changes_nothing() {
        let (_dir, mut conn, key) = setup();
        let tx = conn.transaction().unwrap();
        assert!(matches!(
            append(&tx, &key, at(1), "", "run:1", b"x"),
            Err(EvidenceError::InvalidEntry(_))
        ));
        assert!(append(&tx, &key, at(1), "inspection", " ", b"x").is_err());
        tx.commit().unwrap();
        assert!(read_entries(&conn, None).unwrap().is_empty());
    }

    #[test]
    fn triggers_refuse_update_and_delete() {
        let (_dir, mut conn, key) = setup();
        let tx = conn.transaction().unwrap();
        append(&tx, &key, at(1), "inspection", "run:1", b"x").unwrap();
        tx.commit().unwrap();
        for statement in [
            "UPDATE evidence_chain SET record_sha256 = 'x' WHERE seq = 1",
            "DELETE FROM evidence_chain WHERE seq = 1",
            "UPDATE evidence_heads SET signature = 'x'",
            "DELETE FROM evidence_heads",
        ] {
            let err = conn.execute(statement, []).unwrap_err().to_string();
            assert!(err.contains("append-only"), "{statement}: {err}");
        }
        assert_eq!(read_entries(&conn, None).unwrap().len(), 1);
        assert_eq!(read_heads(&conn, None).unwrap().len(), 1);
    }
}
