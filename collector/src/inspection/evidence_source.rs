//! Filed inspection and self-check runs as the evidence export reads them:
//! the exact canonical JSON that was hashed, and its HTML rendering.

use crate::evidence::{EvidenceError, RecordSource};
use crate::report::model::Lang;
use crate::report::render::Format;

/// Records referenced as `run:<id>` in the chain.
pub struct RunSource<'a> {
    pub conn: &'a rusqlite::Connection,
    pub timezone: chrono_tz::Tz,
}

impl RunSource<'_> {
    fn body(&self, record_ref: &str) -> Result<String, EvidenceError> {
        let id: i64 = record_ref
            .strip_prefix("run:")
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| record_error(record_ref, "not a run reference".into()))?;
        self.conn
            .query_row(
                "SELECT body FROM inspection_runs WHERE run_id = ?1 AND state = 'filed'",
                [id],
                |r| r.get::<_, String>(0),
            )
            .map_err(|e| record_error(record_ref, e.to_string()))
    }
}

impl RecordSource for RunSource<'_> {
    fn record_json(&self, _kind: &str, record_ref: &str) -> Result<Vec<u8>, EvidenceError> {
        Ok(self.body(record_ref)?.into_bytes())
    }

    fn record_html(&self, _kind: &str, record_ref: &str) -> Result<String, EvidenceError> {
        let body = self.body(record_ref)?;
        let run: super::record::InspectionRun =
            serde_json::from_str(&body).map_err(|e| record_error(record_ref, e.to_string()))?;
        // Auditors here read Chinese; the JSON beside it is language-neutral.
        let html = super::render::render_inspection(&run, Lang::ZhCn, Format::Html, self.timezone)
            .map_err(|e| record_error(record_ref, e.to_string()))?;
        String::from_utf8(html).map_err(|e| record_error(record_ref, e.to_string()))
    }
}

fn record_error(record_ref: &str, reason: String) -> EvidenceError {
    EvidenceError::Record {
        kind: "inspection run".into(),
        record_ref: record_ref.to_owned(),
        reason,
    }
}
