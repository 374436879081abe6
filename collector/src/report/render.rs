//! Renders an [`OpsReport`] as HTML (what the customer gets and the auditor
//! keeps), CSV (long format, for spreadsheets) or JSON (the model itself),
//! and holds what the inspection-record renderer shares with it: the
//! formats, the error, the view types the templates draw, and CSV quoting.
//!
//! HTML is one self-contained file (inline CSS and SVG, no fonts, scripts or
//! images from anywhere) built from `templates/report.html`; every label
//! comes from the strings table in [`crate::report::i18n`]; every value
//! goes through askama's HTML escaping, because hostnames, mounts, reasons
//! and check values come from agents and are untrusted.
//!
//! CSV: one table, columns `section,key,agent_id,hostname,item,date,value`,
//! one row per number or text of the model, so every figure of the JSON is
//! there. Keys stay English in every language (they are for machines).
//! `item` names the thing within the section (severity, rule id, mount,
//! run id; a finding is `run_id:item_id`), `date` is set on daily series.
//! Times are RFC 3339 in the report's time zone with its offset. A missing
//! measurement is `unknown` (never 0 or 100); an unmet breach has `met_at`
//! `not_met`; a finding without incident has an empty `incident_id`. The
//! file starts with a UTF-8 byte-order mark: Excel only reads UTF-8 CSV
//! (Chinese hostnames, reasons) correctly with it, and other readers skip
//! it. Cells are quoted per RFC 4180, lines end in CRLF, and a text cell an
//! agent could have chosen that starts with `=`, `+`, `-`, `@` (and is not
//! a number) gets a leading `'`, so a spreadsheet shows it instead of
//! running it as a formula.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use askama::Template;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use chrono_tz::Tz;

use crate::report::charts::{self, ChartError, PercentAxis};
use crate::report::i18n::{self, Strings, fmt_local, fmt_pct};
use crate::report::model::{ComplianceStat, FsForecast, HostRef, Lang, OpsReport, PeriodKind};

/// Output format of a rendered report or inspection record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Csv,
    Json,
}

impl Format {
    /// File name extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }

    /// Media type, for mail attachments and HTTP.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Html => "text/html; charset=utf-8",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

/// A format name that is not `html`, `csv` or `json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format {0:?}: expected html, csv or json")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.to_ascii_lowercase().as_str() {
            "html" => Ok(Format::Html),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            _ => Err(UnknownFormat(name.to_owned())),
        }
    }
}

/// A language name that is not `en` or `zh-CN`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown language {0:?}: expected en or zh-CN")]
pub struct UnknownLang(pub String);

/// Parses `en` or `zh-CN` (any case; `zh` and `zh_CN` too), for the CLI
/// (`#[arg(value_parser = parse_lang)]`).
pub fn parse_lang(name: &str) -> Result<Lang, UnknownLang> {
    match name.to_ascii_lowercase().as_str() {
        "en" => Ok(Lang::En),
        "zh-cn" | "zh_cn" | "zh" => Ok(Lang::ZhCn),
        _ => Err(UnknownLang(name.to_owned())),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("unknown time zone {0:?}: expected an IANA name such as Asia/Shanghai")]
    UnknownTimezone(String),
    #[error("rendering the HTML template: {0}")]
    Template(#[from] askama::Error),
    #[error(transparent)]
    Chart(#[from] ChartError),
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Renders `report` in `format`; `lang` only changes HTML (CSV and JSON are
/// for machines and stay English).
pub fn render_report(
    report: &OpsReport,
    lang: Lang,
    format: Format,
) -> Result<Vec<u8>, RenderError> {
    match format {
        Format::Json => Ok(serde_json::to_vec_pretty(report)?),
        Format::Csv => Ok(report_csv(report, parse_timezone(&report.timezone)?).into_bytes()),
        Format::Html => {
            let tz = parse_timezone(&report.timezone)?;
            Ok(ReportPage::new(report, lang, tz)?.render()?.into_bytes())
        }
    }
}

pub(crate) fn parse_timezone(name: &str) -> Result<Tz, RenderError> {
    name.parse::<Tz>()
        .map_err(|_| RenderError::UnknownTimezone(name.to_owned()))
}

// ---------------------------------------------------------------------------
// View types shared by the report and inspection templates
// (`templates/macros.html` draws them).

/// A label and its value, shown as a definition list.
#[derive(Debug)]
pub(crate) struct Fact {
    pub label: &'static str,
    pub value: String,
}

pub(crate) fn fact(label: &'static str, value: impl Into<String>) -> Fact {
    Fact {
        label,
        value: value.into(),
    }
}

/// A key figure in a box.
#[derive(Debug)]
pub(crate) struct Tile {
    pub label: &'static str,
    pub value: String,
    /// "unknown" draws the tile dashed and greyed, so it cannot be mistaken
    /// for a good figure.
    pub class: &'static str,
}

pub(crate) fn tile(label: &'static str, value: impl Into<String>) -> Tile {
    Tile {
        label,
        value: value.into(),
        class: "",
    }
}

pub(crate) fn pct_tile(label: &'static str, pct: Option<f64>, t: &Strings) -> Tile {
    Tile {
        label,
        value: fmt_pct(pct, t),
        class: if known(pct) { "" } else { "unknown" },
    }
}

#[derive(Debug)]
pub(crate) struct Header {
    pub text: &'static str,
    pub numeric: bool,
}

/// A heading over several columns ("Response" over decided / on time / %).
#[derive(Debug)]
pub(crate) struct HeaderGroup {
    pub text: &'static str,
    pub span: usize,
}

/// A table; with no rows it shows one row saying "None", never an empty
/// grid that could be read as "not looked at".
#[derive(Debug)]
pub(crate) struct Table {
    pub caption: &'static str,
    /// Optional row of headings above `headers`.
    pub groups: Vec<HeaderGroup>,
    pub headers: Vec<Header>,
    pub rows: Vec<Row>,
    pub none_text: &'static str,
}

impl Table {
    pub(crate) fn new(caption: &'static str, t: &Strings) -> Self {
        Table {
            caption,
            groups: Vec::new(),
            headers: Vec::new(),
            rows: Vec::new(),
            none_text: t.none,
        }
    }

    pub(crate) fn group(mut self, text: &'static str, span: usize) -> Self {
        self.groups.push(HeaderGroup { text, span });
        self
    }

    pub(crate) fn col(mut self, text: &'static str) -> Self {
        self.headers.push(Header {
            text,
            numeric: false,
        });
        self
    }

    pub(crate) fn num_col(mut self, text: &'static str) -> Self {
        self.headers.push(Header {
            text,
            numeric: true,
        });
        self
    }

    pub(crate) fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(Row { class: "", cells });
    }

    pub(crate) fn marked_row(&mut self, class: &'static str, cells: Vec<Cell>) {
        self.rows.push(Row { class, cells });
    }
}

#[derive(Debug)]
pub(crate) struct Row {
    pub class: &'static str,
    pub cells: Vec<Cell>,
}

#[derive(Debug, Default)]
pub(crate) struct Cell {
    pub text: String,
    /// Second, smaller line (the agent id under a hostname, evidence under
    /// a check title).
    pub sub: String,
    pub class: &'static str,
    /// Non-empty: the text is a badge of this kind ("normal", "abnormal",
    /// "unknown", "not-inspected", "warn").
    pub badge: &'static str,
    /// Full value on hover when the text is shortened.
    pub title: String,
    /// In-document link target ("#host-3"); never a URL.
    pub href: String,
}

impl Cell {
    pub(crate) fn text(text: impl Into<String>) -> Self {
        Cell {
            text: text.into(),
            ..Cell::default()
        }
    }

    pub(crate) fn num(value: impl fmt::Display) -> Self {
        Cell {
            text: value.to_string(),
            class: "num",
            ..Cell::default()
        }
    }

    /// A percentage or other measured value, right-aligned, "unknown" in
    /// the unknown style.
    pub(crate) fn measured(text: String, is_known: bool) -> Self {
        Cell {
            text,
            class: if is_known { "num" } else { "num unknown" },
            ..Cell::default()
        }
    }

    pub(crate) fn host(host: &HostRef) -> Self {
        Cell::host_parts(&host.hostname, &host.agent_id)
    }

    pub(crate) fn host_parts(hostname: &str, agent_id: &str) -> Self {
        Cell {
            text: hostname.to_owned(),
            sub: agent_id.to_owned(),
            ..Cell::default()
        }
    }

    pub(crate) fn badge(text: impl Into<String>, kind: &'static str) -> Self {
        Cell {
            text: text.into(),
            badge: kind,
            ..Cell::default()
        }
    }

    pub(crate) fn with_sub(mut self, sub: impl Into<String>) -> Self {
        self.sub = sub.into();
        self
    }
}

/// A chart with its caption and, for several series, a legend.
#[derive(Debug)]
pub(crate) struct Figure {
    pub caption: &'static str,
    /// Written by plotters (which escapes its text) and wrapped by
    /// [`charts`]; the only markup a template outputs unescaped.
    pub svg: String,
    pub legend: Vec<LegendEntry>,
}

#[derive(Debug)]
pub(crate) struct LegendEntry {
    /// Built by [`charts::legend_swatch`] from constants only.
    pub swatch: String,
    pub label: String,
}

pub(crate) fn known(value: Option<f64>) -> bool {
    value.is_some_and(f64::is_finite)
}

/// The incident reference people quote ("#123").
pub(crate) fn incident_ref(id: Option<i64>) -> String {
    id.map(|id| format!("#{id}")).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Report HTML

#[derive(Template)]
#[template(path = "report.html")]
struct ReportPage {
    t: &'static Strings,
    lang_attr: &'static str,
    doc_title: &'static str,
    period: String,
    title_facts: Vec<Fact>,
    tiles: Vec<Tile>,
    attention: Vec<Fact>,
    fleet_facts: Vec<Fact>,
    added: Table,
    removed: Table,
    changes: Table,
    availability_facts: Vec<Fact>,
    availability_chart: Figure,
    host_availability: Table,
    incident_facts: Vec<Fact>,
    by_severity: Table,
    by_rule: Table,
    top_recurring: Table,
    top_hosts: Table,
    sla: Table,
    breaches: Table,
    opened_chart: Figure,
    compliance: Vec<ComplianceBlock>,
    baseline_item_facts: Vec<Fact>,
    capacity_facts: Vec<Fact>,
    filesystems: Table,
    capacity_chart: Figure,
    runs: Table,
    findings: Table,
}

#[derive(Debug)]
struct ComplianceBlock {
    title: &'static str,
    pct: String,
    pct_class: &'static str,
    facts: Vec<Fact>,
    exceptions: Table,
}

impl ReportPage {
    fn new(report: &OpsReport, lang: Lang, tz: Tz) -> Result<Self, RenderError> {
        let t = i18n::strings(lang);
        let doc_title = match report.kind {
            PeriodKind::Monthly => t.report_monthly,
            PeriodKind::Quarterly => t.report_quarterly,
            PeriodKind::Annual => t.report_annual,
        };
        let all_sla = report
            .incidents
            .sla
            .iter()
            .find(|row| row.severity == "all");
        let compliance = &report.compliance;
        let tiles = vec![
            tile(t.fleet_size_end, report.fleet.size_end.to_string()),
            pct_tile(t.availability, report.availability.fleet_pct, t),
            tile(t.incidents_opened, report.incidents.opened.to_string()),
            pct_tile(t.sla_response, all_sla.and_then(|row| row.response_pct), t),
            pct_tile(
                t.sla_resolution,
                all_sla.and_then(|row| row.resolution_pct),
                t,
            ),
            pct_tile(t.patch_compliance, compliance.patch.pct, t),
            pct_tile(t.av_compliance, compliance.antivirus.pct, t),
            pct_tile(t.baseline_pass, compliance.baseline.pct, t),
        ];
        Ok(ReportPage {
            t,
            lang_attr: lang.as_str(),
            doc_title,
            period: report.period.clone(),
            title_facts: vec![
                fact(t.period, report.period.clone()),
                fact(t.dates, period_dates(report.from, report.to, tz)),
                fact(t.time_zone, report.timezone.clone()),
                fact(t.generated_at, fmt_local(report.generated_at, tz)),
            ],
            tiles,
            attention: attention(report, t),
            fleet_facts: vec![
                fact(t.fleet_size_start, report.fleet.size_start.to_string()),
                fact(t.fleet_size_end, report.fleet.size_end.to_string()),
                fact(t.hosts_added, report.fleet.added.len().to_string()),
                fact(t.hosts_removed, report.fleet.removed.len().to_string()),
                fact(
                    t.config_changes,
                    report.fleet.config_changes_total.to_string(),
                ),
            ],
            added: host_list(t.hosts_added, &report.fleet.added, t),
            removed: host_list(t.hosts_removed, &report.fleet.removed, t),
            changes: {
                let mut table = Table::new(t.config_changes_by_host, t)
                    .col(t.host)
                    .num_col(t.changes);
                for entry in &report.fleet.config_changes_by_host {
                    table.row(vec![Cell::host(&entry.host), Cell::num(entry.count)]);
                }
                table
            },
            availability_facts: vec![fact(
                t.fleet_availability,
                fmt_pct(report.availability.fleet_pct, t),
            )],
            availability_chart: Figure {
                caption: t.daily_fleet_availability,
                svg: charts::percent_line_chart(
                    &report.availability.daily,
                    PercentAxis::ZoomToData,
                    t.no_data,
                )?,
                legend: Vec::new(),
            },
            host_availability: {
                let mut table = Table::new(t.host_availability, t)
                    .col(t.host)
                    .num_col(t.slots_seen)
                    .num_col(t.slots_expected)
                    .num_col(t.availability);
                for host in &report.availability.hosts {
                    table.row(vec![
                        Cell::host(&host.host),
                        Cell::num(host.seen_slots),
                        Cell::num(host.expected_slots),
                        Cell::measured(fmt_pct(host.pct, t), known(host.pct)),
                    ]);
                }
                table
            },
            incident_facts: vec![
                fact(t.incidents_opened, report.incidents.opened.to_string()),
                fact(t.incidents_resolved, report.incidents.resolved.to_string()),
            ],
            by_severity: {
                let mut table = Table::new(t.by_severity, t)
                    .col(t.severity)
                    .num_col(t.opened)
                    .num_col(t.resolved)
                    .num_col(t.open_at_end);
                for row in &report.incidents.by_severity {
                    table.row(vec![
                        Cell::text(i18n::severity_label(&row.severity, t)),
                        Cell::num(row.opened),
                        Cell::num(row.resolved),
                        Cell::num(row.open_at_end),
                    ]);
                }
                table
            },
            by_rule: {
                let mut table = Table::new(t.by_rule, t)
                    .col(t.rule)
                    .col(t.title)
                    .num_col(t.incident_count);
                for row in &report.incidents.by_rule {
                    table.row(vec![
                        Cell::text(&row.rule_id),
                        Cell::text(&row.title),
                        Cell::num(row.count),
                    ]);
                }
                table
            },
            top_recurring: {
                let mut table = Table::new(t.top_recurring, t)
                    .col(t.rule)
                    .col(t.host)
                    .num_col(t.incident_count)
                    .num_col(t.reopens)
                    .num_col(t.occurrences);
                for row in &report.incidents.top_recurring {
                    table.row(vec![
                        Cell::text(&row.rule_id),
                        Cell::host(&row.host),
                        Cell::num(row.incidents),
                        Cell::num(row.reopens),
                        Cell::num(row.occurrences),
                    ]);
                }
                table
            },
            top_hosts: {
                let mut table = Table::new(t.top_hosts, t)
                    .col(t.host)
                    .num_col(t.incident_count);
                for row in &report.incidents.top_hosts {
                    table.row(vec![Cell::host(&row.host), Cell::num(row.count)]);
                }
                table
            },
            sla: sla_table(report, lang, t),
            breaches: {
                let mut table = Table::new(t.breaches, t)
                    .col(t.incident)
                    .col(t.host)
                    .col(t.rule)
                    .col(t.severity)
                    .col(t.target)
                    .col(t.due_at)
                    .col(t.met_at);
                for breach in &report.incidents.breaches {
                    let target = match breach.target.as_str() {
                        "response" => t.response.to_owned(),
                        "resolution" => t.resolution.to_owned(),
                        other => other.to_owned(),
                    };
                    let met = match breach.met_at {
                        Some(at) => Cell::text(fmt_local(at, tz)),
                        None => Cell::badge(t.not_met, "abnormal"),
                    };
                    table.row(vec![
                        Cell::text(incident_ref(Some(breach.incident_id))),
                        Cell::host(&breach.host),
                        Cell::text(&breach.rule_id),
                        Cell::text(&breach.severity),
                        Cell::text(target),
                        Cell::text(fmt_local(breach.due_at, tz)),
                        met,
                    ]);
                }
                table
            },
            opened_chart: Figure {
                caption: t.daily_opened,
                svg: charts::count_bar_chart(&report.incidents.daily_opened, t.no_data)?,
                legend: Vec::new(),
            },
            compliance: vec![
                compliance_block(t.patch_compliance, &compliance.patch, t).with_fact(fact(
                    t.patch_max_age,
                    compliance.patch_max_age_days.to_string(),
                )),
                compliance_block(t.av_compliance, &compliance.antivirus, t),
                compliance_block(t.baseline_pass, &compliance.baseline, t),
            ],
            baseline_item_facts: vec![
                fact(t.items_passed, compliance.baseline_items_passed.to_string()),
                fact(t.items_failed, compliance.baseline_items_failed.to_string()),
                fact(
                    t.verdict_unknown,
                    compliance.baseline_items_unknown.to_string(),
                ),
                fact(
                    t.item_pass_rate,
                    fmt_pct(compliance.baseline_item_pass_pct, t),
                ),
            ],
            capacity_facts: vec![fact(
                t.next_period_days,
                i18n::fmt_decimal(Some(report.capacity.next_period_days), t),
            )],
            filesystems: filesystem_table(&report.capacity.filesystems, t),
            capacity_chart: capacity_chart(&report.capacity.filesystems, t)?,
            runs: {
                let mut table = Table::new(t.runs, t)
                    .num_col(t.run)
                    .col(t.kind)
                    .col(t.plan)
                    .col(t.scope)
                    .col(t.filed_at)
                    .num_col(t.hosts_in_scope)
                    .num_col(t.hosts_inspected)
                    .num_col(t.verdict_abnormal)
                    .num_col(t.hosts_not_reached);
                for run in &report.inspections.runs {
                    table.row(vec![
                        Cell::num(run.run_id),
                        Cell::text(i18n::run_kind_label(&run.kind, t)),
                        Cell::text(&run.plan),
                        Cell::text(if run.full_fleet {
                            t.full_fleet
                        } else {
                            t.partial
                        }),
                        Cell::text(fmt_local(run.filed_at, tz)),
                        Cell::num(run.hosts_in_scope),
                        Cell::num(run.hosts_inspected),
                        Cell::num(run.hosts_abnormal),
                        Cell::num(run.hosts_not_reached),
                    ]);
                }
                table
            },
            findings: {
                let mut table = Table::new(t.abnormal_findings, t)
                    .num_col(t.run)
                    .col(t.host)
                    .col(t.item)
                    .col(t.value)
                    .col(t.threshold)
                    .col(t.measured_at)
                    .col(t.incident);
                for finding in &report.inspections.abnormal_findings {
                    table.marked_row(
                        "abnormal",
                        vec![
                            Cell::num(finding.run_id),
                            Cell::host(&finding.host),
                            Cell::text(&finding.title).with_sub(&finding.item_id),
                            Cell::text(&finding.value),
                            Cell::text(&finding.threshold),
                            Cell::text(fmt_local(finding.measured_at, tz)),
                            Cell::text(incident_ref(finding.incident_id)),
                        ],
                    );
                }
                table
            },
        })
    }
}

impl ComplianceBlock {
    fn with_fact(mut self, extra: Fact) -> Self {
        self.facts.push(extra);
        self
    }
}

/// The counts a reader should look at first, each pointing to a section.
fn attention(report: &OpsReport, t: &Strings) -> Vec<Fact> {
    let fleet = &report.fleet;
    let compliance = &report.compliance;
    let stats = [
        &compliance.patch,
        &compliance.antivirus,
        &compliance.baseline,
    ];
    let per_stat = |count: fn(&ComplianceStat) -> u64| {
        stats
            .iter()
            .map(|stat| count(stat).to_string())
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let open_at_end: u64 = report
        .incidents
        .by_severity
        .iter()
        .map(|s| s.open_at_end)
        .sum();
    let filling = report
        .capacity
        .filesystems
        .iter()
        .filter(|fs| fs.fills_within_next_period)
        .count();
    let not_reached: u64 = report
        .inspections
        .runs
        .iter()
        .map(|r| r.hosts_not_reached)
        .sum();
    vec![
        fact(
            t.fleet_change,
            format!(
                "{} → {} (+{} / −{})",
                fleet.size_start,
                fleet.size_end,
                fleet.added.len(),
                fleet.removed.len()
            ),
        ),
        fact(t.open_incidents_end, open_at_end.to_string()),
        fact(
            t.sla_breach_count,
            report.incidents.breaches.len().to_string(),
        ),
        fact(t.fs_filling, filling.to_string()),
        fact(t.non_compliant_hosts, per_stat(|s| s.non_compliant)),
        fact(t.unknown_hosts, per_stat(|s| s.unknown)),
        fact(
            t.findings_count,
            report.inspections.abnormal_findings_total.to_string(),
        ),
        fact(t.not_reached_count, not_reached.to_string()),
    ]
}

/// "2026-11-01 – 2026-11-30": the end is exclusive (midnight after the last
/// day), so the last day shown is the one before it.
fn period_dates(from: DateTime<Utc>, to: DateTime<Utc>, tz: Tz) -> String {
    let first = from.with_timezone(&tz).date_naive();
    let last = if to > from {
        (to - TimeDelta::seconds(1)).with_timezone(&tz).date_naive()
    } else {
        to.with_timezone(&tz).date_naive()
    };
    format!("{first} – {last}")
}

fn host_list(caption: &'static str, hosts: &[HostRef], t: &Strings) -> Table {
    let mut table = Table::new(caption, t).col(t.host).col(t.agent_id);
    for host in hosts {
        table.row(vec![Cell::text(&host.hostname), Cell::text(&host.agent_id)]);
    }
    table
}

fn sla_table(report: &OpsReport, lang: Lang, t: &Strings) -> Table {
    let mut table = Table::new(t.sla_title, t)
        .group("", 1)
        .group(t.response, 3)
        .group(t.resolution, 3)
        .group("", 2)
        .col(t.severity)
        .num_col(t.decided)
        .num_col(t.on_time)
        .num_col(t.attainment)
        .num_col(t.decided)
        .num_col(t.on_time)
        .num_col(t.attainment)
        .num_col(t.mtta)
        .num_col(t.mttr);
    for row in &report.incidents.sla {
        let cells = vec![
            Cell::text(i18n::severity_label(&row.severity, t)),
            Cell::num(row.response_decided),
            Cell::num(row.response_on_time),
            Cell::measured(fmt_pct(row.response_pct, t), known(row.response_pct)),
            Cell::num(row.resolution_decided),
            Cell::num(row.resolution_on_time),
            Cell::measured(fmt_pct(row.resolution_pct, t), known(row.resolution_pct)),
            Cell::measured(
                i18n::fmt_minutes(row.mtta_minutes, lang, t),
                known(row.mtta_minutes),
            ),
            Cell::measured(
                i18n::fmt_minutes(row.mttr_minutes, lang, t),
                known(row.mttr_minutes),
            ),
        ];
        if row.severity == "all" {
            table.marked_row("total", cells);
        } else {
            table.row(cells);
        }
    }
    table
}

fn compliance_block(title: &'static str, stat: &ComplianceStat, t: &Strings) -> ComplianceBlock {
    let mut exceptions = Table::new(t.exceptions, t)
        .col(t.host)
        .col(t.status)
        .col(t.reason);
    for exception in &stat.exceptions {
        let status = match exception.status.as_str() {
            "non_compliant" => Cell::badge(t.non_compliant, "abnormal"),
            "unknown" => Cell::badge(t.verdict_unknown, "unknown"),
            other => Cell::badge(other, "unknown"),
        };
        exceptions.row(vec![
            Cell::host(&exception.host),
            status,
            Cell::text(&exception.reason),
        ]);
    }
    ComplianceBlock {
        title,
        pct: fmt_pct(stat.pct, t),
        pct_class: if known(stat.pct) { "" } else { "unknown" },
        facts: vec![
            fact(t.compliant, stat.compliant.to_string()),
            fact(t.non_compliant, stat.non_compliant.to_string()),
            fact(t.verdict_unknown, stat.unknown.to_string()),
        ],
        exceptions,
    }
}

fn filesystem_table(filesystems: &[FsForecast], t: &Strings) -> Table {
    let mut table = Table::new(t.filesystems_by_fill, t)
        .col(t.host)
        .col(t.filesystem)
        .num_col(t.used_start)
        .num_col(t.used_end)
        .num_col(t.growth_per_day)
        .num_col(t.days_until_full)
        .col("");
    for fs in filesystems {
        let growth = match fs.growth_pct_per_day {
            Some(g) if g.is_finite() => format!("{g:+.2} {}", t.unit_pp_per_day),
            _ => t.unknown.to_owned(),
        };
        let until_full = match (fs.days_until_full, fs.growth_pct_per_day) {
            (Some(days), _) if days.is_finite() => format!("{days:.1} {}", t.unit_days),
            (_, Some(g)) if g.is_finite() => t.not_growing.to_owned(),
            _ => t.unknown.to_owned(),
        };
        let growth_known = known(fs.growth_pct_per_day);
        let cells = vec![
            Cell::host(&fs.host),
            Cell::text(&fs.mount),
            Cell::measured(fmt_pct(fs.used_pct_start, t), known(fs.used_pct_start)),
            Cell::measured(fmt_pct(fs.used_pct_end, t), known(fs.used_pct_end)),
            Cell::measured(growth, growth_known),
            Cell::measured(until_full, growth_known),
            if fs.fills_within_next_period {
                Cell::badge(t.fills_next_period, "warn")
            } else {
                Cell::default()
            },
        ];
        if fs.fills_within_next_period {
            table.marked_row("highlight", cells);
        } else {
            table.row(cells);
        }
    }
    table
}

/// Daily usage of the fastest-growing filesystems (shrinking and unknown
/// ones are not "growing" and left out); ties broken by host and
/// mount so the choice never depends on input order.
fn capacity_chart(filesystems: &[FsForecast], t: &Strings) -> Result<Figure, RenderError> {
    let mut growing: Vec<(&FsForecast, f64)> = filesystems
        .iter()
        .filter_map(|fs| Some((fs, fs.growth_pct_per_day.filter(|g| *g > 0.0)?)))
        .collect();
    growing.sort_by(|(a, a_growth), (b, b_growth)| {
        b_growth
            .total_cmp(a_growth)
            .then_with(|| a.host.hostname.cmp(&b.host.hostname))
            .then_with(|| a.mount.cmp(&b.mount))
    });
    growing.truncate(charts::MAX_SERIES);
    let series: Vec<&[crate::report::model::DailyValue]> =
        growing.iter().map(|(fs, _)| fs.daily.as_slice()).collect();
    Ok(Figure {
        caption: t.top_growth_chart,
        svg: charts::percent_multi_line_chart(&series, t.no_data)?,
        legend: growing
            .iter()
            .enumerate()
            .map(|(index, (fs, _))| LegendEntry {
                swatch: charts::legend_swatch(index),
                label: format!("{} {}", fs.host.hostname, fs.mount),
            })
            .collect(),
    })
}

// ---------------------------------------------------------------------------
// CSV

/// Builds a CSV file: BOM, RFC 4180 quoting, CRLF line ends, formula guard.
#[derive(Debug)]
pub(crate) struct CsvWriter {
    out: String,
}

impl CsvWriter {
    pub(crate) fn new(header: &[&str]) -> Self {
        let mut writer = CsvWriter {
            out: String::from("\u{feff}"),
        };
        writer.row(header);
        writer
    }

    pub(crate) fn row(&mut self, cells: &[&str]) {
        for (index, cell) in cells.iter().enumerate() {
            if index > 0 {
                self.out.push(',');
            }
            self.out.push_str(&csv_cell(cell));
        }
        self.out.push_str("\r\n");
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.out.into_bytes()
    }
}

fn csv_cell(cell: &str) -> Cow<'_, str> {
    let formula_like =
        cell.starts_with(['=', '+', '-', '@', '\t', '\r']) && cell.parse::<f64>().is_err();
    let cell: Cow<'_, str> = if formula_like {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    };
    if cell.contains([',', '"', '\r', '\n']) {
        Cow::Owned(format!("\"{}\"", cell.replace('"', "\"\"")))
    } else {
        cell
    }
}

/// A time for machines: RFC 3339 in `tz`, with its offset.
pub(crate) fn csv_time(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz)
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A measured number, shortest exact form; `unknown` when there is none.
pub(crate) fn csv_number(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => v.to_string(),
        _ => "unknown".to_owned(),
    }
}

struct ReportCsv {
    writer: CsvWriter,
}

impl ReportCsv {
    const HEADER: [&'static str; 7] = [
        "section", "key", "agent_id", "hostname", "item", "date", "value",
    ];

    fn value(&mut self, section: &str, key: &str, value: &str) {
        self.writer.row(&[section, key, "", "", "", "", value]);
    }

    fn item(&mut self, section: &str, key: &str, item: &str, value: &str) {
        self.writer.row(&[section, key, "", "", item, "", value]);
    }

    fn host(&mut self, section: &str, key: &str, host: &HostRef, item: &str, value: &str) {
        self.writer.row(&[
            section,
            key,
            &host.agent_id,
            &host.hostname,
            item,
            "",
            value,
        ]);
    }

    fn daily(
        &mut self,
        section: &str,
        key: &str,
        host: Option<&HostRef>,
        item: &str,
        date: &str,
        value: &str,
    ) {
        let (agent_id, hostname) =
            host.map_or(("", ""), |h| (h.agent_id.as_str(), h.hostname.as_str()));
        self.writer
            .row(&[section, key, agent_id, hostname, item, date, value]);
    }
}

fn report_csv(report: &OpsReport, tz: Tz) -> CsvWriter {
    let mut csv = ReportCsv {
        writer: CsvWriter::new(&ReportCsv::HEADER),
    };
    csv.value("report", "kind", report.kind.as_str());
    csv.value("report", "period", &report.period);
    csv.value("report", "from", &csv_time(report.from, tz));
    csv.value("report", "to", &csv_time(report.to, tz));
    csv.value("report", "timezone", &report.timezone);
    csv.value("report", "generated_at", &csv_time(report.generated_at, tz));

    let fleet = &report.fleet;
    csv.value("fleet", "size_start", &fleet.size_start.to_string());
    csv.value("fleet", "size_end", &fleet.size_end.to_string());
    for host in &fleet.added {
        csv.host("fleet", "added", host, "", "");
    }
    for host in &fleet.removed {
        csv.host("fleet", "removed", host, "", "");
    }
    csv.value(
        "fleet",
        "config_changes_total",
        &fleet.config_changes_total.to_string(),
    );
    for entry in &fleet.config_changes_by_host {
        csv.host(
            "fleet",
            "config_changes",
            &entry.host,
            "",
            &entry.count.to_string(),
        );
    }

    let availability = &report.availability;
    csv.value(
        "availability",
        "fleet_pct",
        &csv_number(availability.fleet_pct),
    );
    for host in &availability.hosts {
        csv.host(
            "availability",
            "expected_slots",
            &host.host,
            "",
            &host.expected_slots.to_string(),
        );
        csv.host(
            "availability",
            "seen_slots",
            &host.host,
            "",
            &host.seen_slots.to_string(),
        );
        csv.host("availability", "pct", &host.host, "", &csv_number(host.pct));
    }
    for day in &availability.daily {
        csv.daily(
            "availability",
            "daily_pct",
            None,
            "",
            &day.date,
            &csv_number(day.value),
        );
    }

    let incidents = &report.incidents;
    csv.value("incidents", "opened", &incidents.opened.to_string());
    csv.value("incidents", "resolved", &incidents.resolved.to_string());
    for row in &incidents.by_severity {
        csv.item(
            "incidents",
            "severity_opened",
            &row.severity,
            &row.opened.to_string(),
        );
        csv.item(
            "incidents",
            "severity_resolved",
            &row.severity,
            &row.resolved.to_string(),
        );
        csv.item(
            "incidents",
            "severity_open_at_end",
            &row.severity,
            &row.open_at_end.to_string(),
        );
    }
    for row in &incidents.by_rule {
        csv.item("incidents", "rule_title", &row.rule_id, &row.title);
        csv.item(
            "incidents",
            "rule_count",
            &row.rule_id,
            &row.count.to_string(),
        );
    }
    for row in &incidents.top_recurring {
        csv.host(
            "incidents",
            "recurring_incidents",
            &row.host,
            &row.rule_id,
            &row.incidents.to_string(),
        );
        csv.host(
            "incidents",
            "recurring_reopens",
            &row.host,
            &row.rule_id,
            &row.reopens.to_string(),
        );
        csv.host(
            "incidents",
            "recurring_occurrences",
            &row.host,
            &row.rule_id,
            &row.occurrences.to_string(),
        );
    }
    for row in &incidents.top_hosts {
        csv.host(
            "incidents",
            "top_host_incidents",
            &row.host,
            "",
            &row.count.to_string(),
        );
    }
    for row in &incidents.sla {
        let s = row.severity.as_str();
        csv.item(
            "sla",
            "response_decided",
            s,
            &row.response_decided.to_string(),
        );
        csv.item(
            "sla",
            "response_on_time",
            s,
            &row.response_on_time.to_string(),
        );
        csv.item("sla", "response_pct", s, &csv_number(row.response_pct));
        csv.item(
            "sla",
            "resolution_decided",
            s,
            &row.resolution_decided.to_string(),
        );
        csv.item(
            "sla",
            "resolution_on_time",
            s,
            &row.resolution_on_time.to_string(),
        );
        csv.item("sla", "resolution_pct", s, &csv_number(row.resolution_pct));
        csv.item("sla", "mtta_minutes", s, &csv_number(row.mtta_minutes));
        csv.item("sla", "mttr_minutes", s, &csv_number(row.mttr_minutes));
    }
    for breach in &incidents.breaches {
        let id = breach.incident_id.to_string();
        let met_at = breach
            .met_at
            .map_or_else(|| "not_met".to_owned(), |at| csv_time(at, tz));
        csv.host("breaches", "rule_id", &breach.host, &id, &breach.rule_id);
        csv.host("breaches", "severity", &breach.host, &id, &breach.severity);
        csv.host("breaches", "target", &breach.host, &id, &breach.target);
        csv.host(
            "breaches",
            "due_at",
            &breach.host,
            &id,
            &csv_time(breach.due_at, tz),
        );
        csv.host("breaches", "met_at", &breach.host, &id, &met_at);
    }
    for day in &incidents.daily_opened {
        csv.daily(
            "incidents",
            "daily_opened",
            None,
            "",
            &day.date,
            &csv_number(day.value),
        );
    }

    let compliance = &report.compliance;
    csv.value(
        "compliance",
        "patch_max_age_days",
        &compliance.patch_max_age_days.to_string(),
    );
    for (name, stat) in [
        ("patch", &compliance.patch),
        ("antivirus", &compliance.antivirus),
        ("baseline", &compliance.baseline),
    ] {
        csv.value(
            "compliance",
            &format!("{name}_compliant"),
            &stat.compliant.to_string(),
        );
        csv.value(
            "compliance",
            &format!("{name}_non_compliant"),
            &stat.non_compliant.to_string(),
        );
        csv.value(
            "compliance",
            &format!("{name}_unknown"),
            &stat.unknown.to_string(),
        );
        csv.value("compliance", &format!("{name}_pct"), &csv_number(stat.pct));
        for exception in &stat.exceptions {
            csv.host(
                "compliance",
                &format!("{name}_exception"),
                &exception.host,
                &exception.status,
                &exception.reason,
            );
        }
    }
    csv.value(
        "compliance",
        "baseline_items_passed",
        &compliance.baseline_items_passed.to_string(),
    );
    csv.value(
        "compliance",
        "baseline_items_failed",
        &compliance.baseline_items_failed.to_string(),
    );
    csv.value(
        "compliance",
        "baseline_items_unknown",
        &compliance.baseline_items_unknown.to_string(),
    );
    csv.value(
        "compliance",
        "baseline_item_pass_pct",
        &csv_number(compliance.baseline_item_pass_pct),
    );

    let capacity = &report.capacity;
    csv.value(
        "capacity",
        "next_period_days",
        &csv_number(Some(capacity.next_period_days)),
    );
    for fs in &capacity.filesystems {
        let until_full = match (fs.days_until_full, fs.growth_pct_per_day) {
            (Some(days), _) => csv_number(Some(days)),
            (None, Some(growth)) if growth.is_finite() => "not_growing".to_owned(),
            (None, _) => "unknown".to_owned(),
        };
        csv.host(
            "capacity",
            "used_pct_start",
            &fs.host,
            &fs.mount,
            &csv_number(fs.used_pct_start),
        );
        csv.host(
            "capacity",
            "used_pct_end",
            &fs.host,
            &fs.mount,
            &csv_number(fs.used_pct_end),
        );
        csv.host(
            "capacity",
            "growth_pct_per_day",
            &fs.host,
            &fs.mount,
            &csv_number(fs.growth_pct_per_day),
        );
        csv.host(
            "capacity",
            "days_until_full",
            &fs.host,
            &fs.mount,
            &until_full,
        );
        csv.host(
            "capacity",
            "fills_within_next_period",
            &fs.host,
            &fs.mount,
            if fs.fills_within_next_period {
                "true"
            } else {
                "false"
            },
        );
        for day in &fs.daily {
            csv.daily(
                "capacity",
                "daily_used_pct",
                Some(&fs.host),
                &fs.mount,
                &day.date,
                &csv_number(day.value),
            );
        }
    }

    for run in &report.inspections.runs {
        let id = run.run_id.to_string();
        csv.item("inspections", "run_kind", &id, &run.kind);
        csv.item("inspections", "run_plan", &id, &run.plan);
        csv.item(
            "inspections",
            "run_full_fleet",
            &id,
            if run.full_fleet { "true" } else { "false" },
        );
        csv.item(
            "inspections",
            "run_filed_at",
            &id,
            &csv_time(run.filed_at, tz),
        );
        csv.item(
            "inspections",
            "run_hosts_in_scope",
            &id,
            &run.hosts_in_scope.to_string(),
        );
        csv.item(
            "inspections",
            "run_hosts_inspected",
            &id,
            &run.hosts_inspected.to_string(),
        );
        csv.item(
            "inspections",
            "run_hosts_abnormal",
            &id,
            &run.hosts_abnormal.to_string(),
        );
        csv.item(
            "inspections",
            "run_hosts_not_reached",
            &id,
            &run.hosts_not_reached.to_string(),
        );
    }
    csv.item(
        "inspections",
        "abnormal_findings_total",
        "",
        &report.inspections.abnormal_findings_total.to_string(),
    );
    for finding in &report.inspections.abnormal_findings {
        let item = format!("{}:{}", finding.run_id, finding.item_id);
        let incident = finding
            .incident_id
            .map(|id| id.to_string())
            .unwrap_or_default();
        csv.host("findings", "title", &finding.host, &item, &finding.title);
        csv.host("findings", "value", &finding.host, &item, &finding.value);
        csv.host(
            "findings",
            "threshold",
            &finding.host,
            &item,
            &finding.threshold,
        );
        csv.host(
            "findings",
            "measured_at",
            &finding.host,
            &item,
            &csv_time(finding.measured_at, tz),
        );
        csv.host("findings", "incident_id", &finding.host, &item, &incident);
    }
    csv.writer
}

// ---------------------------------------------------------------------------
// Tests and the fixtures shared with the inspection renderer's tests.

#[cfg(test)]
pub(crate) mod test_support {
    //! Golden-file comparison and a hand-made report.

    use std::path::PathBuf;

    use chrono::{TimeZone, Utc};

    use crate::report::model::*;

    /// Compares `actual` with `testdata/golden/<name>`; with
    /// `UPDATE_GOLDEN=1` in the environment, writes it instead.
    pub(crate) fn assert_golden(name: &str, actual: &[u8]) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/golden")
            .join(name);
        if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
            std::fs::write(&path, actual).unwrap();
            return;
        }
        let expected = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "reading golden file {}: {e} (run with UPDATE_GOLDEN=1 to create it)",
                path.display()
            )
        });
        if expected == actual {
            return;
        }
        let expected = String::from_utf8_lossy(&expected);
        let actual = String::from_utf8_lossy(actual);
        let mut expected_lines = expected.lines();
        let mut actual_lines = actual.lines();
        for line in 1.. {
            match (expected_lines.next(), actual_lines.next()) {
                (Some(e), Some(a)) if e == a => continue,
                (e, a) => panic!(
                    "{} differs at line {line}:\n  expected: {e:?}\n  actual:   {a:?}\n\
                     (run with UPDATE_GOLDEN=1 to accept the new output)",
                    path.display()
                ),
            }
        }
    }

    /// The text a reader sees: without the stylesheet and the tags (class
    /// names such as "unknown" are not text).
    pub(crate) fn visible_text(html: &str) -> String {
        let without_style = match (html.find("<style>"), html.find("</style>")) {
            (Some(start), Some(end)) => format!("{}{}", &html[..start], &html[end..]),
            _ => html.to_owned(),
        };
        let mut text = String::new();
        let mut in_tag = false;
        for c in without_style.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => text.push(c),
                _ => {}
            }
        }
        text
    }

    pub(crate) fn host(n: u32) -> HostRef {
        let names = ["web-01", "db-01", "文件服务器-01", "app-02"];
        HostRef {
            agent_id: format!("agent-000{n}"),
            hostname: names[(n as usize - 1) % names.len()].to_owned(),
        }
    }

    fn at(day: u32, hour: u32, minute: u32) -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, minute, 0)
            .unwrap()
    }

    fn days(values: &[Option<f64>]) -> Vec<DailyValue> {
        values
            .iter()
            .enumerate()
            .map(|(i, value)| DailyValue {
                date: format!("2026-11-{:02}", i + 1),
                value: *value,
            })
            .collect()
    }

    fn sla_row(
        severity: &str,
        decided: u64,
        on_time: u64,
        pct: Option<f64>,
        mtta: Option<f64>,
        mttr: Option<f64>,
    ) -> SlaRow {
        SlaRow {
            severity: severity.to_owned(),
            response_decided: decided,
            response_on_time: on_time,
            response_pct: pct,
            resolution_decided: decided,
            resolution_on_time: on_time,
            resolution_pct: pct,
            mtta_minutes: mtta,
            mttr_minutes: mttr,
        }
    }

    /// November 2026 in Shanghai: four hosts (one with a Chinese name, one
    /// added, one removed), incidents of every severity with one breach, a
    /// host whose antivirus state is unknown, a filesystem filling within
    /// the next month, and an inspection with a host not reached.
    pub(crate) fn sample_report() -> OpsReport {
        let daily_availability = days(&[
            Some(100.0),
            Some(99.65),
            Some(100.0),
            None,
            Some(97.2),
            Some(100.0),
            Some(99.96),
        ]);
        OpsReport {
            kind: PeriodKind::Monthly,
            period: "2026-11".to_owned(),
            from: Utc.with_ymd_and_hms(2026, 10, 31, 16, 0, 0).unwrap(),
            to: Utc.with_ymd_and_hms(2026, 11, 30, 16, 0, 0).unwrap(),
            timezone: "Asia/Shanghai".to_owned(),
            generated_at: Utc.with_ymd_and_hms(2026, 11, 30, 17, 5, 0).unwrap(),
            fleet: Fleet {
                size_start: 3,
                size_end: 3,
                added: vec![host(4)],
                removed: vec![host(3)],
                config_changes_total: 7,
                config_changes_by_host: vec![
                    HostCount {
                        host: host(2),
                        count: 5,
                    },
                    HostCount {
                        host: host(1),
                        count: 2,
                    },
                ],
            },
            availability: Availability {
                fleet_pct: Some(99.4321),
                hosts: vec![
                    HostAvailability {
                        host: host(4),
                        expected_slots: 0,
                        seen_slots: 0,
                        pct: None,
                    },
                    HostAvailability {
                        host: host(2),
                        expected_slots: 8640,
                        seen_slots: 8500,
                        pct: Some(98.37962962962963),
                    },
                    HostAvailability {
                        host: host(1),
                        expected_slots: 8640,
                        seen_slots: 8640,
                        pct: Some(100.0),
                    },
                ],
                daily: daily_availability,
            },
            incidents: IncidentStats {
                opened: 6,
                resolved: 5,
                by_severity: vec![
                    SeverityCount {
                        severity: "I".into(),
                        opened: 1,
                        resolved: 1,
                        open_at_end: 0,
                    },
                    SeverityCount {
                        severity: "II".into(),
                        opened: 1,
                        resolved: 1,
                        open_at_end: 0,
                    },
                    SeverityCount {
                        severity: "III".into(),
                        opened: 2,
                        resolved: 2,
                        open_at_end: 0,
                    },
                    SeverityCount {
                        severity: "IV".into(),
                        opened: 2,
                        resolved: 1,
                        open_at_end: 1,
                    },
                ],
                by_rule: vec![
                    RuleCount {
                        rule_id: "fs.used_pct".into(),
                        title: "Filesystem almost full".into(),
                        count: 3,
                    },
                    RuleCount {
                        rule_id: "agent.offline".into(),
                        title: "Agent offline".into(),
                        count: 2,
                    },
                    RuleCount {
                        rule_id: "av.outdated".into(),
                        title: "Antivirus signatures outdated".into(),
                        count: 1,
                    },
                ],
                top_recurring: vec![Recurring {
                    rule_id: "fs.used_pct".into(),
                    host: host(2),
                    incidents: 2,
                    reopens: 1,
                    occurrences: 9,
                }],
                top_hosts: vec![
                    HostCount {
                        host: host(2),
                        count: 4,
                    },
                    HostCount {
                        host: host(1),
                        count: 2,
                    },
                ],
                sla: vec![
                    sla_row("I", 1, 0, Some(0.0), Some(42.0), Some(185.0)),
                    sla_row("II", 1, 1, Some(100.0), Some(12.0), Some(95.0)),
                    sla_row("III", 2, 2, Some(100.0), Some(30.5), Some(720.0)),
                    sla_row("IV", 0, 0, None, None, None),
                    sla_row("all", 4, 3, Some(75.0), Some(28.75), Some(3060.0)),
                ],
                breaches: vec![
                    Breach {
                        incident_id: 101,
                        host: host(2),
                        rule_id: "agent.offline".into(),
                        severity: "I".into(),
                        target: "response".into(),
                        due_at: at(5, 2, 15),
                        met_at: Some(at(5, 2, 57)),
                    },
                    Breach {
                        incident_id: 106,
                        host: host(1),
                        rule_id: "av.outdated".into(),
                        severity: "IV".into(),
                        target: "resolution".into(),
                        due_at: at(27, 1, 0),
                        met_at: None,
                    },
                ],
                daily_opened: days(&[
                    Some(1.0),
                    Some(0.0),
                    Some(2.0),
                    Some(0.0),
                    Some(3.0),
                    Some(0.0),
                    Some(0.0),
                ]),
            },
            compliance: Compliance {
                patch_max_age_days: 30,
                patch: ComplianceStat {
                    compliant: 2,
                    non_compliant: 1,
                    unknown: 0,
                    pct: Some(66.66666666666667),
                    exceptions: vec![ComplianceException {
                        host: host(2),
                        status: "non_compliant".into(),
                        reason: "KB5031356 pending 41 days".into(),
                    }],
                },
                antivirus: ComplianceStat {
                    compliant: 2,
                    non_compliant: 0,
                    unknown: 1,
                    pct: Some(66.66666666666667),
                    exceptions: vec![ComplianceException {
                        host: host(4),
                        status: "unknown".into(),
                        reason: "MSFT_MpComputerStatus not available".into(),
                    }],
                },
                baseline: ComplianceStat {
                    compliant: 3,
                    non_compliant: 0,
                    unknown: 0,
                    pct: Some(100.0),
                    exceptions: vec![],
                },
                baseline_items_passed: 58,
                baseline_items_failed: 2,
                baseline_items_unknown: 3,
                baseline_item_pass_pct: Some(96.66666666666667),
            },
            capacity: Capacity {
                next_period_days: 31.0,
                filesystems: vec![
                    FsForecast {
                        host: host(2),
                        mount: "/var/lib/mysql".into(),
                        used_pct_start: Some(71.0),
                        used_pct_end: Some(88.5),
                        growth_pct_per_day: Some(0.58),
                        days_until_full: Some(19.8),
                        fills_within_next_period: true,
                        daily: days(&[
                            Some(71.0),
                            Some(72.1),
                            Some(73.0),
                            Some(75.2),
                            None,
                            Some(80.1),
                            Some(88.5),
                        ]),
                    },
                    FsForecast {
                        host: host(1),
                        mount: "/".into(),
                        used_pct_start: Some(40.0),
                        used_pct_end: Some(42.0),
                        growth_pct_per_day: Some(0.07),
                        days_until_full: Some(828.6),
                        fills_within_next_period: false,
                        daily: days(&[
                            Some(40.0),
                            Some(40.2),
                            Some(40.9),
                            Some(41.0),
                            Some(41.3),
                            Some(41.8),
                            Some(42.0),
                        ]),
                    },
                    FsForecast {
                        host: host(1),
                        mount: "/tmp".into(),
                        used_pct_start: Some(5.0),
                        used_pct_end: Some(3.0),
                        growth_pct_per_day: Some(-0.1),
                        days_until_full: None,
                        fills_within_next_period: false,
                        daily: days(&[Some(5.0), Some(4.0), Some(3.0)]),
                    },
                    FsForecast {
                        host: host(4),
                        mount: "C:\\".into(),
                        used_pct_start: None,
                        used_pct_end: Some(55.0),
                        growth_pct_per_day: None,
                        days_until_full: None,
                        fills_within_next_period: false,
                        daily: vec![],
                    },
                ],
            },
            inspections: InspectionStats {
                runs: vec![InspectionRunSummary {
                    run_id: 12,
                    kind: "inspection".into(),
                    plan: "monthly-baseline".into(),
                    full_fleet: true,
                    filed_at: at(15, 2, 10),
                    hosts_in_scope: 3,
                    hosts_inspected: 2,
                    hosts_abnormal: 1,
                    hosts_not_reached: 1,
                }],
                abnormal_findings: vec![Finding {
                    run_id: 12,
                    host: host(2),
                    item_id: "fs.used_pct{mount=/var/lib/mysql}".into(),
                    title: "Filesystem usage".into(),
                    value: "86.2".into(),
                    threshold: "< 85".into(),
                    measured_at: at(15, 2, 3),
                    incident_id: Some(104),
                }],
                abnormal_findings_total: 1,
            },
        }
    }

    /// The report with nothing in it: every list empty, every percentage
    /// unknown.
    pub(crate) fn empty_report() -> OpsReport {
        let mut report = sample_report();
        report.fleet = Fleet {
            size_start: 0,
            size_end: 0,
            added: vec![],
            removed: vec![],
            config_changes_total: 0,
            config_changes_by_host: vec![],
        };
        report.availability = Availability {
            fleet_pct: None,
            hosts: vec![],
            daily: vec![],
        };
        report.incidents = IncidentStats {
            opened: 0,
            resolved: 0,
            by_severity: vec![],
            by_rule: vec![],
            top_recurring: vec![],
            top_hosts: vec![],
            sla: vec![sla_row("all", 0, 0, None, None, None)],
            breaches: vec![],
            daily_opened: vec![],
        };
        let nothing = ComplianceStat {
            compliant: 0,
            non_compliant: 0,
            unknown: 0,
            pct: None,
            exceptions: vec![],
        };
        report.compliance.patch = nothing.clone();
        report.compliance.antivirus = nothing.clone();
        report.compliance.baseline = nothing;
        report.compliance.baseline_item_pass_pct = None;
        report.capacity.filesystems = vec![];
        report.inspections = InspectionStats {
            runs: vec![],
            abnormal_findings: vec![],
            abnormal_findings_total: 0,
        };
        report
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{assert_golden, empty_report, sample_report, visible_text};
    use super::*;
    use crate::report::i18n::TABLE;

    fn html(report: &OpsReport, lang: Lang) -> String {
        String::from_utf8(render_report(report, lang, Format::Html).unwrap()).unwrap()
    }

    #[test]
    fn every_format_and_language_matches_its_golden_file() {
        let report = sample_report();
        for (lang, tag) in [(Lang::En, "en"), (Lang::ZhCn, "zh-CN")] {
            for format in [Format::Html, Format::Csv, Format::Json] {
                let out = render_report(&report, lang, format).unwrap();
                assert_golden(&format!("report-monthly.{tag}.{format}"), &out);
            }
        }
        for format in [Format::Csv, Format::Json] {
            assert_eq!(
                render_report(&report, Lang::En, format).unwrap(),
                render_report(&report, Lang::ZhCn, format).unwrap(),
                "{format} does not depend on the language"
            );
        }
        assert_golden(
            "report-empty.en.html",
            html(&empty_report(), Lang::En).as_bytes(),
        );
    }

    #[test]
    fn rendering_is_deterministic() {
        let report = sample_report();
        for format in [Format::Html, Format::Csv, Format::Json] {
            assert_eq!(
                render_report(&report, Lang::ZhCn, format).unwrap(),
                render_report(&report, Lang::ZhCn, format).unwrap()
            );
        }
    }

    #[test]
    fn chinese_report_is_fully_translated() {
        let page = html(&sample_report(), Lang::ZhCn);
        let zh = visible_text(&page);
        assert!(page.contains("<html lang=\"zh-CN\">"));
        for term in [
            "运维月报",
            "可用率",
            "严重级别",
            "响应 SLA 达成率",
            "平均解决时间 (MTTR)",
            "补丁合规",
            "容量预测",
            "未知",
        ] {
            assert!(zh.contains(term), "missing {term}");
        }
        for (id, en, cn) in TABLE {
            // Ids are snake_case; none may show up in place of its text.
            if id.contains('_') {
                assert!(!zh.contains(id), "label id {id} in the Chinese report");
            }
            // A label is the whole text of its element (heading, cell,
            // badge), which data such as "Filesystem usage" never is.
            if en != cn && (page.contains(&format!(">{en}<")) || page.contains(&format!(">{en} <")))
            {
                panic!("English label {id} = {en:?} in the Chinese report");
            }
        }
    }

    #[test]
    fn every_period_kind_has_its_title() {
        let mut report = sample_report();
        for (kind, en, zh) in [
            (PeriodKind::Monthly, "Monthly Operations Report", "运维月报"),
            (
                PeriodKind::Quarterly,
                "Quarterly Operations Report",
                "运维季报",
            ),
            (PeriodKind::Annual, "Annual Operations Report", "运维年报"),
        ] {
            report.kind = kind;
            assert!(html(&report, Lang::En).contains(&format!("<title>{en} 2026-11</title>")));
            assert!(html(&report, Lang::ZhCn).contains(&format!("<title>{zh} 2026-11</title>")));
        }
    }

    #[test]
    fn none_renders_unknown_never_zero_or_hundred() {
        let en = html(&empty_report(), Lang::En);
        // Every tile but the two counts is a percentage, all unknown.
        assert_eq!(en.matches("class=\"tile unknown\"").count(), 6, "{en}");
        assert!(!en.contains("100.0%") && !en.contains(">0.0%"));
        let zh = html(&empty_report(), Lang::ZhCn);
        assert!(zh.contains("未知"));
        // A 99.96 % day is not shown as perfect; a None host is unknown.
        let sample = html(&sample_report(), Lang::En);
        assert!(sample.contains("<td class=\"num unknown\">unknown</td>"));
    }

    #[test]
    fn empty_lists_say_none_and_empty_charts_say_no_data() {
        let en = html(&empty_report(), Lang::En);
        assert!(en.matches("<tr class=\"none\">").count() >= 10);
        assert_eq!(
            en.matches("\nno data\n</text>").count(),
            3,
            "three charts, all empty"
        );
    }

    #[test]
    fn html_is_self_contained_and_printable() {
        for lang in [Lang::En, Lang::ZhCn] {
            let page = html(&sample_report(), lang);
            assert!(!page.contains("http://") && !page.contains("https://"));
            assert!(!page.contains("<script") && !page.contains("<link") && !page.contains("<img"));
            assert!(page.contains("@media print"));
            assert!(page.contains("size: A4"));
            assert!(page.contains("display: table-header-group"));
            assert!(page.matches("<svg class=\"chart\"").count() == 3);
        }
    }

    #[test]
    fn untrusted_text_is_escaped() {
        let mut report = sample_report();
        let evil = "<script>alert(1)</script>";
        report.availability.hosts[0].host.hostname = evil.to_owned();
        report.capacity.filesystems[0].host.hostname = evil.to_owned();
        report.compliance.antivirus.exceptions[0].reason =
            "\"><img src=x onerror=alert(1)>".to_owned();
        let page = html(&report, Lang::En);
        assert!(!page.contains("<script"), "hostname was not escaped");
        assert!(!page.contains("<img"));
        assert!(
            page.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
                || page.contains("&lt;script&gt;")
        );
    }

    #[test]
    fn csv_has_bom_english_keys_every_number_and_quotes() {
        let mut report = sample_report();
        report.compliance.patch.exceptions[0].reason = "pending, \"critical\"\nsee KB".to_owned();
        report.fleet.added[0].hostname = "=HYPERLINK(\"x\")".to_owned();
        let csv =
            String::from_utf8(render_report(&report, Lang::ZhCn, Format::Csv).unwrap()).unwrap();
        assert!(csv.starts_with("\u{feff}section,key,agent_id,hostname,item,date,value\r\n"));
        assert!(csv.contains("availability,fleet_pct,,,,,99.4321\r\n"));
        assert!(csv.contains("availability,pct,agent-0004,app-02,,,unknown\r\n"));
        assert!(csv.contains("sla,mttr_minutes,,,all,,3060\r\n"));
        assert!(csv.contains("capacity,days_until_full,agent-0001,web-01,/tmp,,not_growing\r\n"));
        assert!(csv.contains("\"pending, \"\"critical\"\"\nsee KB\""));
        assert!(csv.contains("\"'=HYPERLINK(\"\"x\"\")\""));
        assert!(csv.contains("capacity,growth_pct_per_day,agent-0001,web-01,/tmp,,-0.1\r\n"));
        assert!(!csv.contains("运维"));
    }

    #[test]
    fn json_is_the_model() {
        let report = sample_report();
        let json = render_report(&report, Lang::ZhCn, Format::Json).unwrap();
        assert_eq!(json, serde_json::to_vec_pretty(&report).unwrap());
        // Parsed back (serde_json's default float parsing may differ in the
        // last digit, so compare what does not depend on it).
        let back: OpsReport = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.incidents, report.incidents);
        assert_eq!(back.availability, report.availability);
        let text = String::from_utf8(json).unwrap();
        assert!(text.contains("\"fleet_pct\": 99.4321"));
        assert!(text.contains("\"pct\": null"));
    }

    #[test]
    fn bad_time_zone_is_a_clear_error() {
        let mut report = sample_report();
        report.timezone = "Mars/Olympus".to_owned();
        let error = render_report(&report, Lang::En, Format::Html).unwrap_err();
        assert!(error.to_string().contains("Mars/Olympus"));
    }

    #[test]
    fn formats_and_languages_parse() {
        assert_eq!("html".parse::<Format>(), Ok(Format::Html));
        assert_eq!("CSV".parse::<Format>(), Ok(Format::Csv));
        assert_eq!("json".parse::<Format>(), Ok(Format::Json));
        let error = "pdf".parse::<Format>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown format \"pdf\": expected html, csv or json"
        );
        assert_eq!(parse_lang("zh-CN"), Ok(Lang::ZhCn));
        assert_eq!(parse_lang("en"), Ok(Lang::En));
        assert!(parse_lang("fr").is_err());
    }
}
