//! Renders a filed inspection record (巡检记录, or a security self-check,
//! 安全自查) as HTML, CSV or JSON, on the report renderer's shared pieces
//! (formats, error, strings table, stylesheet, time formatting, CSV
//! quoting), so both documents look and read alike.
//!
//! CSV: one row per check item, plus one row for each host without items
//! (not inspected, or answered with nothing), with the columns
//! `run_id,kind,plan,host,agent_id,item_id,title,value,threshold,verdict,
//! measured_at,incident_id,detail,last_seen_at`. `verdict` is the item's;
//! on a host row it is the host's (`not_inspected`). Times are RFC 3339 in
//! the requested time zone with its offset; the file has a UTF-8 BOM and
//! the same quoting as the report CSV (see [`crate::report::render`]).

use askama::Template;
use chrono_tz::Tz;

use crate::inspection::record::{HostRecord, HostVerdict, InspectionRun, ItemVerdict, RunKind};
use crate::report::i18n::{self, Strings, fmt_local, fmt_local_opt};
use crate::report::model::Lang;
use crate::report::render::{
    Cell, CsvWriter, Fact, Format, RenderError, Table, Tile, csv_time, fact, incident_ref, tile,
};

/// Renders `run` in `format`, times in `timezone`; `lang` only changes HTML.
pub fn render_inspection(
    run: &InspectionRun,
    lang: Lang,
    format: Format,
    timezone: Tz,
) -> Result<Vec<u8>, RenderError> {
    match format {
        Format::Json => Ok(serde_json::to_vec_pretty(run)?),
        Format::Csv => Ok(inspection_csv(run, timezone)),
        Format::Html => Ok(InspectionPage::new(run, lang, timezone)
            .render()?
            .into_bytes()),
    }
}

#[derive(Template)]
#[template(path = "inspection.html")]
struct InspectionPage {
    t: &'static Strings,
    lang_attr: &'static str,
    doc_title: &'static str,
    subtitle: String,
    facts: Vec<Fact>,
    tiles: Vec<Tile>,
    overview: Table,
    not_inspected: Table,
    hosts: Vec<HostBlock>,
}

#[derive(Debug)]
struct HostBlock {
    anchor: String,
    hostname: String,
    verdict: &'static str,
    verdict_badge: &'static str,
    facts: Vec<Fact>,
    items: Table,
}

fn host_verdict(verdict: HostVerdict, t: &Strings) -> (&'static str, &'static str) {
    match verdict {
        HostVerdict::Normal => (t.verdict_normal, "normal"),
        HostVerdict::Abnormal => (t.verdict_abnormal, "abnormal"),
        HostVerdict::Unknown => (t.verdict_unknown, "unknown"),
        HostVerdict::NotInspected => (t.verdict_not_inspected, "not-inspected"),
    }
}

fn item_verdict(verdict: ItemVerdict, t: &Strings) -> (&'static str, &'static str) {
    match verdict {
        ItemVerdict::Normal => (t.verdict_normal, "normal"),
        ItemVerdict::Abnormal => (t.verdict_abnormal, "abnormal"),
        ItemVerdict::Unknown => (t.verdict_unknown, "unknown"),
    }
}

/// The first 16 hex digits: enough to compare by eye, short enough for a
/// table; the full hash is the cell's hover title and is in CSV and JSON.
fn short_hash(sha256: &str) -> String {
    match sha256.get(..16) {
        Some(prefix) if sha256.len() > 16 => format!("{prefix}…"),
        _ => sha256.to_owned(),
    }
}

/// In-document anchor of the host at `index`; built from the position, not
/// the hostname, which is untrusted and need not be a valid id.
fn host_anchor(index: usize) -> String {
    format!("host-{}", index + 1)
}

impl InspectionPage {
    fn new(run: &InspectionRun, lang: Lang, tz: Tz) -> Self {
        let t = i18n::strings(lang);
        let (doc_title, kind) = match run.kind {
            RunKind::Inspection => (t.record_inspection, t.kind_inspection),
            RunKind::Selfcheck => (t.record_selfcheck, t.kind_selfcheck),
        };
        let summary = &run.summary;
        let scope = format!(
            "{} ({})",
            run.scope,
            if run.full_fleet {
                t.full_fleet
            } else {
                t.partial
            }
        );
        let facts = vec![
            fact(t.run_id, run.run_id.to_string()),
            fact(t.kind, kind),
            fact(t.plan, run.plan.clone()),
            fact(t.scope, scope),
            fact(t.checks, run.checks.join(", ")),
            fact(t.requested_by, run.requested_by.clone()),
            fact(t.requested_at, fmt_local(run.requested_at, tz)),
            fact(t.started_at, fmt_local(run.started_at, tz)),
            fact(t.filed_at, fmt_local(run.filed_at, tz)),
            fact(t.waited, format!("{} {}", run.wait_seconds, t.unit_seconds)),
            fact(t.time_zone, tz.name()),
        ];
        let tiles = vec![
            tile(t.hosts_in_scope, summary.hosts_in_scope.to_string()),
            tile(t.hosts_inspected, summary.hosts_inspected.to_string()),
            tile(t.verdict_normal, summary.hosts_normal.to_string()),
            tile(t.verdict_abnormal, summary.hosts_abnormal.to_string()),
            tile(t.verdict_unknown, summary.hosts_unknown.to_string()),
            tile(
                t.verdict_not_inspected,
                summary.hosts_not_reached.to_string(),
            ),
            tile(t.items_total, summary.items_total.to_string()),
            tile(t.items_abnormal, summary.items_abnormal.to_string()),
            tile(t.items_unknown, summary.items_unknown.to_string()),
        ];

        let mut overview = Table::new("", t)
            .col(t.host)
            .col(t.verdict)
            .num_col(t.items_abnormal)
            .num_col(t.items_unknown)
            .col(t.measured_at)
            .col(t.last_seen);
        let mut not_inspected = Table::new("", t)
            .col(t.host)
            .col(t.last_seen)
            .col(t.verdict);
        let mut hosts = Vec::new();
        for (index, host) in run.hosts.iter().enumerate() {
            let (verdict, badge) = host_verdict(host.verdict, t);
            let count = |wanted: ItemVerdict| {
                host.items
                    .iter()
                    .filter(|item| item.verdict == wanted)
                    .count()
            };
            let last_seen = fmt_local_opt(host.last_seen_at, tz, t.never);
            let mut name = Cell::host_parts(&host.hostname, &host.agent_id);
            if host.verdict == HostVerdict::NotInspected {
                not_inspected.marked_row(
                    "abnormal",
                    vec![
                        Cell::host_parts(&host.hostname, &host.agent_id),
                        Cell::text(last_seen.clone()),
                        Cell::badge(verdict, badge),
                    ],
                );
            } else {
                name.href = format!("#{}", host_anchor(index));
                hosts.push(host_block(host, index, tz, t));
            }
            overview.row(vec![
                name,
                Cell::badge(verdict, badge),
                Cell::num(count(ItemVerdict::Abnormal)),
                Cell::num(count(ItemVerdict::Unknown)),
                Cell::text(fmt_local_opt(host.measured_at, tz, "")),
                Cell::text(last_seen),
            ]);
        }
        InspectionPage {
            t,
            lang_attr: lang.as_str(),
            doc_title,
            subtitle: format!("{} · #{}", run.plan, run.run_id),
            facts,
            tiles,
            overview,
            not_inspected,
            hosts,
        }
    }
}

fn host_block(host: &HostRecord, index: usize, tz: Tz, t: &'static Strings) -> HostBlock {
    let (verdict, verdict_badge) = host_verdict(host.verdict, t);
    let mut items = Table::new("", t)
        .col(t.item)
        .col(t.value)
        .col(t.threshold)
        .col(t.verdict)
        .col(t.measured_at)
        .col(t.incident);
    for item in &host.items {
        let (text, badge) = item_verdict(item.verdict, t);
        let cells = vec![
            Cell::text(&item.title).with_sub(&item.item_id),
            Cell::text(&item.value).with_sub(&item.detail),
            Cell::text(&item.threshold),
            Cell::badge(text, badge),
            Cell::text(fmt_local(item.measured_at, tz)),
            Cell::text(incident_ref(item.incident_id)),
        ];
        match item.verdict {
            ItemVerdict::Abnormal => items.marked_row("abnormal", cells),
            ItemVerdict::Normal | ItemVerdict::Unknown => items.row(cells),
        }
    }
    let sequence = host
        .report_sequence
        .map(|s| s.to_string())
        .unwrap_or_else(|| t.unknown.to_owned());
    HostBlock {
        anchor: host_anchor(index),
        hostname: host.hostname.clone(),
        verdict,
        verdict_badge,
        facts: vec![
            fact(t.agent_id, host.agent_id.clone()),
            fact(t.cert_sha256, short_hash(&host.agent_cert_sha256)),
            fact(
                t.measured_at,
                fmt_local_opt(host.measured_at, tz, t.unknown),
            ),
            fact(t.last_seen, fmt_local_opt(host.last_seen_at, tz, t.never)),
            fact(t.report_sequence, sequence),
        ],
        items,
    }
}

const CSV_HEADER: [&str; 14] = [
    "run_id",
    "kind",
    "plan",
    "host",
    "agent_id",
    "item_id",
    "title",
    "value",
    "threshold",
    "verdict",
    "measured_at",
    "incident_id",
    "detail",
    "last_seen_at",
];

fn inspection_csv(run: &InspectionRun, tz: Tz) -> Vec<u8> {
    let mut csv = CsvWriter::new(&CSV_HEADER);
    let run_id = run.run_id.to_string();
    let kind = run.kind.as_str();
    for host in &run.hosts {
        let last_seen = host
            .last_seen_at
            .map(|at| csv_time(at, tz))
            .unwrap_or_default();
        if host.items.is_empty() {
            let measured = host
                .measured_at
                .map(|at| csv_time(at, tz))
                .unwrap_or_default();
            csv.row(&[
                &run_id,
                kind,
                &run.plan,
                &host.hostname,
                &host.agent_id,
                "",
                "",
                "",
                "",
                host.verdict.as_str(),
                &measured,
                "",
                "",
                &last_seen,
            ]);
        }
        for item in &host.items {
            let incident = item
                .incident_id
                .map(|id| id.to_string())
                .unwrap_or_default();
            csv.row(&[
                &run_id,
                kind,
                &run.plan,
                &host.hostname,
                &host.agent_id,
                &item.item_id,
                &item.title,
                &item.value,
                &item.threshold,
                item.verdict.as_str(),
                &csv_time(item.measured_at, tz),
                &incident,
                &item.detail,
                &last_seen,
            ]);
        }
    }
    csv.into_bytes()
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::inspection::record::{Item, RunSummary};
    use crate::report::render::test_support::{assert_golden, visible_text};

    fn at(hour: u32, minute: u32) -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 15, hour, minute, 0).unwrap()
    }

    fn item(id: &str, title: &str, value: &str, threshold: &str, verdict: ItemVerdict) -> Item {
        Item {
            item_id: id.to_owned(),
            title: title.to_owned(),
            value: value.to_owned(),
            threshold: threshold.to_owned(),
            verdict,
            measured_at: at(2, 3),
            detail: String::new(),
            incident_id: None,
        }
    }

    /// Run 12 of the monthly baseline plan: one normal host, one abnormal
    /// (with an incident and an unknown item), one not reached.
    fn sample_run() -> InspectionRun {
        let mut full = item(
            "fs.used_pct{mount=/var/lib/mysql}",
            "Filesystem usage",
            "86.2",
            "< 85",
            ItemVerdict::Abnormal,
        );
        full.incident_id = Some(104);
        let mut unknown = item(
            "baseline.auditd.enabled",
            "auditd enabled",
            "",
            "= true",
            ItemVerdict::Unknown,
        );
        unknown.detail = "systemctl: permission denied".to_owned();
        InspectionRun {
            run_id: 12,
            kind: RunKind::Inspection,
            plan: "monthly-baseline".to_owned(),
            full_fleet: true,
            scope: "all hosts".to_owned(),
            checks: vec!["baseline.*".to_owned(), "fs.used_pct".to_owned()],
            requested_by: "scheduler".to_owned(),
            requested_at: at(2, 0),
            started_at: at(2, 0),
            filed_at: at(2, 10),
            wait_seconds: 600,
            summary: RunSummary {
                hosts_in_scope: 3,
                hosts_inspected: 2,
                hosts_normal: 1,
                hosts_abnormal: 1,
                hosts_unknown: 0,
                hosts_not_reached: 1,
                items_total: 4,
                items_abnormal: 1,
                items_unknown: 1,
            },
            hosts: vec![
                HostRecord {
                    agent_id: "agent-0004".to_owned(),
                    hostname: "app-02".to_owned(),
                    agent_cert_sha256: String::new(),
                    verdict: HostVerdict::NotInspected,
                    measured_at: None,
                    report_sequence: None,
                    last_seen_at: Some(Utc.with_ymd_and_hms(2026, 11, 13, 22, 41, 0).unwrap()),
                    items: vec![],
                },
                HostRecord {
                    agent_id: "agent-0002".to_owned(),
                    hostname: "db-01".to_owned(),
                    agent_cert_sha256:
                        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
                            .to_owned(),
                    verdict: HostVerdict::Abnormal,
                    measured_at: Some(at(2, 3)),
                    report_sequence: Some(88_412),
                    last_seen_at: Some(at(2, 9)),
                    items: vec![
                        full,
                        unknown,
                        item(
                            "baseline.ssh.permit_root_login",
                            "SSH root login",
                            "no",
                            "= no",
                            ItemVerdict::Normal,
                        ),
                    ],
                },
                HostRecord {
                    agent_id: "agent-0001".to_owned(),
                    hostname: "web-01".to_owned(),
                    agent_cert_sha256:
                        "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"
                            .to_owned(),
                    verdict: HostVerdict::Normal,
                    measured_at: Some(at(2, 1)),
                    report_sequence: Some(90_001),
                    last_seen_at: Some(at(2, 9)),
                    items: vec![item(
                        "baseline.ssh.permit_root_login",
                        "SSH root login",
                        "no",
                        "= no",
                        ItemVerdict::Normal,
                    )],
                },
            ],
        }
    }

    fn html(run: &InspectionRun, lang: Lang) -> String {
        let out = render_inspection(run, lang, Format::Html, chrono_tz::Asia::Shanghai).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_format_and_language_matches_its_golden_file() {
        let run = sample_run();
        for (lang, tag) in [(Lang::En, "en"), (Lang::ZhCn, "zh-CN")] {
            for format in [Format::Html, Format::Csv, Format::Json] {
                let out = render_inspection(&run, lang, format, chrono_tz::Asia::Shanghai).unwrap();
                assert_golden(&format!("inspection.{tag}.{format}"), &out);
            }
        }
    }

    #[test]
    fn chinese_record_uses_the_chinese_terms() {
        let page = html(&sample_run(), Lang::ZhCn);
        let zh = visible_text(&page);
        for term in [
            "巡检记录",
            "正常",
            "异常",
            "未知",
            "未巡检",
            "#104",
            "2026-11-15 10:03",
        ] {
            assert!(zh.contains(term), "missing {term}");
        }
        for (id, en, cn) in crate::report::i18n::TABLE {
            // A label is the whole text of its element (heading, cell,
            // badge), which data such as "Filesystem usage" never is.
            if en != cn && (page.contains(&format!(">{en}<")) || page.contains(&format!(">{en} <")))
            {
                panic!("English label {id} = {en:?} in the Chinese record");
            }
        }
    }

    #[test]
    fn not_inspected_hosts_are_listed_with_last_seen() {
        let en = html(&sample_run(), Lang::En);
        let section = en
            .split("id=\"not-inspected\"")
            .nth(1)
            .and_then(|rest| rest.split("</section>").next())
            .unwrap();
        assert!(section.contains("app-02"));
        assert!(
            section.contains("2026-11-14 06:41"),
            "last seen in Shanghai time"
        );
        assert!(section.contains("Not inspected"));
    }

    #[test]
    fn self_contained_printable_and_escaped() {
        let mut run = sample_run();
        run.hosts[1].hostname = "<script>alert(1)</script>".to_owned();
        run.hosts[1].items[0].value = "<b onmouseover=x>".to_owned();
        let en = html(&run, Lang::En);
        assert!(!en.contains("<script") && !en.contains("<b "));
        assert!(!en.contains("http://") && !en.contains("https://"));
        assert!(en.contains("@media print"));
    }

    #[test]
    fn csv_has_a_row_per_item_and_per_host_without_items() {
        let csv =
            render_inspection(&sample_run(), Lang::ZhCn, Format::Csv, chrono_tz::UTC).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 1 + 1 + 3 + 1);
        assert!(lines[0].starts_with("\u{feff}run_id,kind,plan,host,agent_id,item_id,"));
        assert_eq!(
            lines[1],
            "12,inspection,monthly-baseline,app-02,agent-0004,,,,,not_inspected,,,,2026-11-13T22:41:00Z"
        );
        assert!(lines[2].ends_with(",abnormal,2026-11-15T02:03:00Z,104,,2026-11-15T02:09:00Z"));
    }

    #[test]
    fn an_empty_run_renders() {
        let mut run = sample_run();
        run.hosts.clear();
        let en = html(&run, Lang::En);
        assert!(en.matches("<tr class=\"none\">").count() >= 2);
    }
}
