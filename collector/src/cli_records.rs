//! The records commands of `xunjian`: inspections and self-checks, periodic
//! reports, and the evidence bundle auditors take away.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Subcommand, ValueEnum};

use crate::clock::{Clock, SystemClock};
use crate::config::CollectorConfig;
use crate::inspection::plan::Scope;
use crate::inspection::record::InspectionRun;
use crate::inspection::runner::{RunRequest, request_run};
use crate::report::model::{Lang, PeriodKind};
use crate::report::render::Format;
use crate::store::{self, fmt_time};

#[derive(Debug, Subcommand)]
pub enum InspectCommand {
    /// Run an inspection now through the running collector and wait for the
    /// record: a configured plan (--plan) or every item on --scope.
    Run {
        /// A plan from `[[inspection.plans]]`.
        #[arg(long, conflicts_with = "scope")]
        plan: Option<String>,
        /// all, group=NAME, label=KEY=VALUE, host=NAME (repeatable).
        #[arg(long)]
        scope: Vec<String>,
        /// Return once requested instead of waiting for the record.
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SelfcheckCommand {
    /// Run a security self-check now: `--scope all` is a full self-check of
    /// the whole fleet (required once a year), anything else is partial.
    Run {
        /// all, group=NAME, label=KEY=VALUE, host=NAME (repeatable).
        #[arg(long, required = true)]
        scope: Vec<String>,
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LangArg {
    #[value(name = "zh-CN")]
    ZhCn,
    #[value(name = "en")]
    En,
}

impl From<LangArg> for Lang {
    fn from(l: LangArg) -> Lang {
        match l {
            LangArg::ZhCn => Lang::ZhCn,
            LangArg::En => Lang::En,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Html,
    Csv,
    Json,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Html => Format::Html,
            FormatArg::Csv => Format::Csv,
            FormatArg::Json => Format::Json,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PeriodArg {
    Monthly,
    Quarterly,
    Annual,
}

impl From<PeriodArg> for PeriodKind {
    fn from(p: PeriodArg) -> PeriodKind {
        match p {
            PeriodArg::Monthly => PeriodKind::Monthly,
            PeriodArg::Quarterly => PeriodKind::Quarterly,
            PeriodArg::Annual => PeriodKind::Annual,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Write the evidence of a period (records as HTML and JSON, the chain
    /// segment, signed heads, manifest, public key) to a directory, or to a
    /// .tar.gz when OUT ends so.
    Export {
        /// First day, YYYY-MM-DD (inclusive, in `reports.timezone`).
        #[arg(long)]
        from: String,
        /// Last day, YYYY-MM-DD (inclusive).
        #[arg(long)]
        to: String,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Check a bundle offline, or with --database the live chain of this
    /// collector; names the first entry that does not match. Exit 1 when it
    /// fails.
    Verify {
        #[arg(required_unless_present = "database")]
        bundle: Option<PathBuf>,
        /// Check the collector's own database (its records, chain and signed
        /// heads) instead of a bundle.
        #[arg(long, conflicts_with = "bundle")]
        database: bool,
        /// The collector key fingerprint the bundle must be signed with
        /// (`xunjian evidence key` on the collector prints it).
        #[arg(long)]
        key: Option<String>,
    },
    /// The collector's evidence signing key: public key and fingerprint.
    Key,
}

/// `xunjian inspect run` / `selfcheck run`: request, then wait for filing.
pub fn request_and_wait(
    config: &CollectorConfig,
    request: RunRequest,
    no_wait: bool,
) -> anyhow::Result<()> {
    let pid = crate::cli::running_collector(config).map_err(|e| {
        anyhow::anyhow!("{e}; inspections are carried out by the running collector (`xunjian serve` or `xunjian up`)")
    })?;
    let conn = store::open(&config.database_path())?;
    let run_id = request_run(&conn, &request, &crate::cli::actor(), SystemClock.now())?;
    println!(
        "requested {} run {run_id} ({}, scope: {}) from collector {pid}",
        request.kind.as_str(),
        request.plan,
        request.scope
    );
    if no_wait {
        return Ok(());
    }
    let give_up = std::time::Instant::now() + Duration::from_secs(request.wait_seconds + 60);
    loop {
        let (state, failure): (String, String) = conn.query_row(
            "SELECT state, failure FROM inspection_runs WHERE run_id = ?1",
            [run_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        match state.as_str() {
            "filed" => break,
            "failed" => anyhow::bail!("run {run_id} failed: {failure}"),
            _ => {}
        }
        if std::time::Instant::now() > give_up {
            anyhow::bail!(
                "run {run_id} is still {state}; see `xunjian inspections` later (the collector files it)"
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let run = load_run(&conn, run_id)?;
    let s = &run.summary;
    println!(
        "filed run {run_id}: {} in scope, {} inspected ({} normal, {} abnormal, {} unknown), {} not reached; {} abnormal item(s)",
        s.hosts_in_scope,
        s.hosts_inspected,
        s.hosts_normal,
        s.hosts_abnormal,
        s.hosts_unknown,
        s.hosts_not_reached,
        s.items_abnormal
    );
    println!("show it: xunjian inspection show {run_id} --format html -o run-{run_id}.html");
    Ok(())
}

/// The scope given on the command line (empty = whole fleet).
pub fn scope_arg(values: &[String]) -> anyhow::Result<Scope> {
    Scope::parse_cli(values).map_err(|e| anyhow::anyhow!(e))
}

/// A filed run's record, from its canonical JSON.
pub fn load_run(conn: &rusqlite::Connection, run_id: i64) -> anyhow::Result<InspectionRun> {
    let row: Option<(String, Option<String>)> =
        rusqlite::OptionalExtension::optional(conn.query_row(
            "SELECT state, body FROM inspection_runs WHERE run_id = ?1",
            [run_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        ))?;
    match row {
        None => anyhow::bail!("no inspection run {run_id} (see `xunjian inspections`)"),
        Some((state, None)) => anyhow::bail!("inspection run {run_id} is {state}, not filed yet"),
        Some((_, Some(body))) => Ok(serde_json::from_str(&body)?),
    }
}

/// `xunjian inspections`.
pub fn list_runs(config: &CollectorConfig, limit: u32, json: bool) -> anyhow::Result<()> {
    let conn = store::open_read_only(&config.database_path())?;
    let mut stmt = conn.prepare(
        "SELECT run_id, kind, plan, state, requested_by, requested_at, filed_at, hosts_in_scope,
                hosts_inspected, hosts_abnormal, hosts_not_reached
         FROM inspection_runs ORDER BY run_id DESC LIMIT ?1",
    )?;
    let rows: Vec<serde_json::Value> = stmt
        .query_map([limit], |r| {
            Ok(serde_json::json!({
                "run_id": r.get::<_, i64>(0)?,
                "kind": r.get::<_, String>(1)?,
                "plan": r.get::<_, String>(2)?,
                "state": r.get::<_, String>(3)?,
                "requested_by": r.get::<_, String>(4)?,
                "requested_at": fmt_time(r.get(5)?),
                "filed_at": r.get::<_, Option<i64>>(6)?.map(fmt_time),
                "hosts_in_scope": r.get::<_, i64>(7)?,
                "hosts_inspected": r.get::<_, i64>(8)?,
                "hosts_abnormal": r.get::<_, i64>(9)?,
                "hosts_not_reached": r.get::<_, i64>(10)?,
            }))
        })?
        .collect::<Result<_, _>>()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:>5} {:<10} {:<18} {:<9} {:<21} {:>6} {:>9} {:>8} {:>11}",
        "RUN", "KIND", "PLAN", "STATE", "FILED", "SCOPE", "INSPECTED", "ABNORMAL", "NOT REACHED"
    );
    let num = |v: &serde_json::Value| v.as_i64().unwrap_or(0);
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
    for r in &rows {
        println!(
            "{:>5} {:<10} {:<18} {:<9} {:<21} {:>6} {:>9} {:>8} {:>11}",
            num(&r["run_id"]),
            text(&r["kind"]),
            text(&r["plan"]),
            text(&r["state"]),
            text(&r["filed_at"]),
            num(&r["hosts_in_scope"]),
            num(&r["hosts_inspected"]),
            num(&r["hosts_abnormal"]),
            num(&r["hosts_not_reached"]),
        );
    }
    if rows.is_empty() {
        println!(
            "(no inspection runs yet: `xunjian inspect run` or configure [[inspection.plans]])"
        );
    }
    Ok(())
}

/// `xunjian inspection show`.
pub fn show_run(
    config: &CollectorConfig,
    run_id: i64,
    format: Format,
    lang: Lang,
    output: Option<&Path>,
) -> anyhow::Result<()> {
    let conn = store::open_read_only(&config.database_path())?;
    let run = load_run(&conn, run_id)?;
    let tz = timezone(&config.inspection.timezone)?;
    let bytes = crate::inspection::render::render_inspection(&run, lang, format, tz)?;
    write_output(output, &bytes)
}

/// `xunjian report KIND --period P`.
pub fn report(
    config: &CollectorConfig,
    kind: PeriodKind,
    period: &str,
    lang: Lang,
    format: Format,
    output: Option<&Path>,
) -> anyhow::Result<()> {
    let conn = store::open_read_only(&config.database_path())?;
    let bytes = crate::report::make(&conn, config, kind, period, lang, format, SystemClock.now())?;
    write_output(output, &bytes)
}

/// `xunjian evidence ...`; returns false when a bundle failed verification.
pub fn evidence(config: &CollectorConfig, command: EvidenceCommand) -> anyhow::Result<bool> {
    match command {
        EvidenceCommand::Key => {
            let key = existing_key(config)?;
            println!("public key (Ed25519, hex): {}", key.public_key_hex());
            println!("fingerprint (sha256):      {}", key.fingerprint());
            Ok(true)
        }
        EvidenceCommand::Export { from, to, output } => {
            let tz = timezone(&config.reports.timezone)?;
            let from_at = local_midnight(&from, tz, 0)?;
            let to_at = local_midnight(&to, tz, 1)?;
            if to_at <= from_at {
                anyhow::bail!("--to {to} is before --from {from}");
            }
            let conn = store::open_read_only(&config.database_path())?;
            let key = existing_key(config)?;
            let source = crate::inspection::evidence_source::RunSource {
                conn: &conn,
                timezone: tz_inspection(config)?,
            };
            let summary = crate::evidence::export(
                &conn,
                &key,
                from_at,
                to_at,
                &source,
                &output,
                SystemClock.now(),
            )?;
            println!("{summary}");
            println!(
                "verify: xunjian evidence verify {} --key {}",
                output.display(),
                key.fingerprint()
            );
            Ok(true)
        }
        EvidenceCommand::Verify {
            bundle,
            database,
            key,
        } => {
            let report = match bundle {
                Some(bundle) if !database => crate::evidence::verify(&bundle, key.as_deref())?,
                _ => {
                    let conn = store::open_read_only(&config.database_path())?;
                    let signing = existing_key(config)?;
                    let source = crate::inspection::evidence_source::RunSource {
                        conn: &conn,
                        timezone: tz_inspection(config)?,
                    };
                    crate::evidence::verify_database(&conn, &signing, &source)?
                }
            };
            println!("{report}");
            if key.is_none() {
                println!(
                    "NOTE: no --key given: the bundle is consistent with the key inside it, but only \
                     comparing that fingerprint with the collector's published one (`xunjian evidence key`) \
                     shows it was not forged whole with another key."
                );
            }
            Ok(report.ok)
        }
    }
}

/// The collector's signing key; never created here (a new key from the
/// CLI, run as the wrong user or on the wrong data directory, would be a
/// fingerprint nobody can trust).
fn existing_key(config: &CollectorConfig) -> anyhow::Result<crate::evidence::EvidenceKey> {
    let dir = config.pki_dir();
    if !dir.join(crate::evidence::KEY_FILE).exists() {
        anyhow::bail!(
            "no evidence signing key in {}: start the collector once (it creates the key), or pass the collector's --data-dir/--config",
            dir.display()
        );
    }
    Ok(crate::evidence::EvidenceKey::load_or_create(&dir)?)
}

fn tz_inspection(config: &CollectorConfig) -> anyhow::Result<chrono_tz::Tz> {
    timezone(&config.inspection.timezone)
}

fn timezone(name: &str) -> anyhow::Result<chrono_tz::Tz> {
    name.parse()
        .map_err(|_| anyhow::anyhow!("unknown time zone `{name}`"))
}

/// Local midnight of `date` (+ `days`) in `tz`, as UTC.
fn local_midnight(date: &str, tz: chrono_tz::Tz, days: i64) -> anyhow::Result<DateTime<Utc>> {
    let d = NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map_err(|e| anyhow::anyhow!("`{date}` is not a date YYYY-MM-DD: {e}"))?
        + chrono::Duration::days(days);
    Ok(crate::schedule::start_of_day(tz, d))
}

/// Writes to the file (atomically: a half-written report never appears
/// under its name) or to stdout.
fn write_output(output: Option<&Path>, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    match output {
        Some(path) => {
            xunjian_agent::fsutil::write_atomic(path, bytes, 0o644)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
        }
        None => std::io::stdout().write_all(bytes)?,
    }
    Ok(())
}
