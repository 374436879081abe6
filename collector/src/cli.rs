//! Command-line interface of `xunjian`: the collector (`up`, `serve`) and
//! the operators' commands. clap derive; every flag also readable from an
//! environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use xunjian_agent::logging::{self, LogFormat};
use xunjian_agent::{EXIT_CONFIG, signals};

use crate::clock::{Clock, SystemClock};
use crate::config::{CollectorConfig, ConfigError};
use crate::pki::Pki;
use crate::server::Collector;
use crate::store::{self, HostRow, fmt_time};

/// Xunjian: fleet inspection collector and operators' CLI.
#[derive(Debug, Parser)]
#[command(name = "xunjian", version, propagate_version = true)]
pub struct Cli {
    /// Collector configuration file (TOML). Operator commands read the data
    /// directory from it.
    #[arg(long, short, global = true, env = "XUNJIAN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (database and PKI); overrides the config file's.
    /// Default: $XDG_DATA_HOME/xunjian or ~/.local/share/xunjian.
    #[arg(long, global = true, env = "XUNJIAN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, env = "XUNJIAN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log level or filter (RUST_LOG overrides it).
    #[arg(long, global = true, env = "XUNJIAN_LOG", default_value = "info")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Quick start: a collector on the embedded database plus an agent for
    /// this machine, enrolled automatically. Ctrl-C stops both.
    Up {
        /// Address to listen on.
        #[arg(long, env = "XUNJIAN_LISTEN", default_value = "127.0.0.1:7443")]
        listen: SocketAddr,
        /// How often the local agent collects.
        #[arg(long, env = "XUNJIAN_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
        interval: Duration,
    },
    /// Run the collector (production): TLS gRPC listener and storage.
    Serve,
    /// Check the configuration file and exit (64 when it is invalid).
    Validate,
    /// The fleet: every enrolled host with its OS, usage and last contact.
    Hosts {
        #[arg(long)]
        json: bool,
    },
    /// Configuration changes (inventory differences between inspections).
    Changes {
        /// Only this agent (id or unique prefix).
        #[arg(long)]
        agent: Option<String>,
        /// Most rows shown.
        #[arg(long, default_value_t = 200)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Incidents raised by the rules.
    Incidents {
        /// Only open and acknowledged ones.
        #[arg(long)]
        open: bool,
        /// Most rows shown.
        #[arg(long, default_value_t = 200)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Work one incident: show, acknowledge, assign, comment, resolve, close.
    Incident {
        #[command(subcommand)]
        command: IncidentCommand,
    },
    /// Silences and maintenance windows: matching incidents are recorded but
    /// notify nobody and do not escalate.
    Silence {
        #[command(subcommand)]
        command: SilenceCommand,
    },
    /// Alerting rules.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Enrolled agents.
    Agents {
        #[command(subcommand)]
        command: AgentsCommand,
    },
    /// One-time enrollment tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Run an inspection now.
    Inspect {
        #[command(subcommand)]
        command: crate::cli_records::InspectCommand,
    },
    /// Inspection and self-check runs, newest first.
    Inspections {
        /// Most rows shown.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// One filed inspection record (巡检记录).
    Inspection {
        #[command(subcommand)]
        command: InspectionCommand,
    },
    /// Security self-checks (安全自查).
    Selfcheck {
        #[command(subcommand)]
        command: crate::cli_records::SelfcheckCommand,
    },
    /// The monthly, quarterly or annual ops report (运维月报/季报/年报).
    Report {
        #[arg(value_enum)]
        kind: crate::cli_records::PeriodArg,
        /// 2026-11 (monthly), 2026-Q4 (quarterly) or 2026 (annual).
        #[arg(long)]
        period: String,
        #[arg(long, value_enum, default_value = "zh-CN")]
        lang: crate::cli_records::LangArg,
        #[arg(long, value_enum, default_value = "html")]
        format: crate::cli_records::FormatArg,
        /// Output file (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Evidence for auditors: export a verifiable bundle, verify one.
    Evidence {
        #[command(subcommand)]
        command: crate::cli_records::EvidenceCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum InspectionCommand {
    /// Render a filed run: every host, every item, verdicts, incidents.
    Show {
        id: i64,
        #[arg(long, value_enum, default_value = "html")]
        format: crate::cli_records::FormatArg,
        #[arg(long, value_enum, default_value = "zh-CN")]
        lang: crate::cli_records::LangArg,
        /// Output file (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// List agents (same rows as `hosts`).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Set a label on a host (`--remove` to drop it); rules and silences can
    /// select hosts by label.
    Label {
        /// Agent id or unique prefix.
        id: String,
        /// name=value
        label: String,
        #[arg(long)]
        remove: bool,
    },
    /// Put a host in a group (`--remove` to take it out).
    Group {
        /// Agent id or unique prefix.
        id: String,
        group: String,
        #[arg(long)]
        remove: bool,
    },
    /// Revoke an agent: its open stream is closed and every later connection
    /// refused.
    Revoke {
        /// Agent id, or a unique prefix of it (at least 4 characters).
        id: String,
        /// Why, for the audit log.
        #[arg(long, default_value = "revoked by operator")]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// The incident and its history.
    Show { id: i64 },
    /// Acknowledge (stops the response clock).
    Ack { id: i64 },
    /// Assign to a person.
    Assign { id: i64, person: String },
    /// Add a comment to the history.
    Comment { id: i64, text: String },
    /// Resolve by hand: root cause (故障原因) and what was done (处理过程) are required.
    Resolve {
        id: i64,
        #[arg(long)]
        cause: String,
        #[arg(long)]
        actions: String,
    },
    /// Close a resolved incident.
    Close { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum SilenceCommand {
    /// Add one. Give --agent, --rule or both; --starts-in makes it a
    /// maintenance window that begins later.
    Add {
        /// Agent id or unique prefix.
        #[arg(long)]
        agent: Option<String>,
        /// Hosts in this group (`xunjian agents group`).
        #[arg(long)]
        group: Option<String>,
        /// Rule id.
        #[arg(long)]
        rule: Option<String>,
        /// How long it lasts, e.g. 2h.
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Start later (maintenance window), e.g. 30m.
        #[arg(long, value_parser = humantime::parse_duration)]
        starts_in: Option<Duration>,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Current and upcoming silences.
    List {
        #[arg(long)]
        json: bool,
    },
    /// End a silence now.
    Remove { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Check a rules file; every mistake is reported with its line (exit 64
    /// when invalid).
    Validate { file: PathBuf },
    /// Make the running collector re-read its rules (same as SIGHUP). The
    /// file is checked first; with mistakes, nothing is sent.
    Reload,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (alone on stdout).
    Create {
        /// How long the token stays valid, e.g. 30m, 24h, 7d.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// How many agents may enroll with it.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        uses: u32,
        /// Free text kept with the token.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
}

/// Runs a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    logging::init(cli.log_format, &cli.log_level);
    let config = match resolve_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xunjian: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let result = match cli.command {
        Command::Validate => {
            let Some(path) = cli.config.as_deref() else {
                eprintln!("xunjian: validate needs --config FILE");
                return ExitCode::from(EXIT_CONFIG);
            };
            if let Err(e) = crate::server::load_rules(&config) {
                eprintln!("xunjian: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
            println!("{}: ok", path.display());
            Ok(())
        }
        Command::Rules {
            command: RulesCommand::Validate { file },
        } => {
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("xunjian: cannot read {}: {e}", file.display());
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            match crate::rules::parse_rules(&file.display().to_string(), &text) {
                Ok(rules) => {
                    println!("{}: ok, {} rules", file.display(), rules.len());
                    Ok(())
                }
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            }
        }
        Command::Rules {
            command: RulesCommand::Reload,
        } => {
            if let Err(e) = crate::server::load_rules(&config) {
                eprintln!("xunjian: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
            reload_rules(&config)
        }
        Command::Incidents { open, limit, json } => print_incidents(&config, open, limit, json),
        Command::Inspect {
            command:
                crate::cli_records::InspectCommand::Run {
                    plan,
                    scope,
                    no_wait,
                },
        } => {
            let request = match plan {
                Some(name) => {
                    match crate::inspection::runner::RunRequest::for_plan(&config.inspection, &name)
                    {
                        Some(r) => r,
                        None => {
                            eprintln!("xunjian: no plan named `{name}` in [[inspection.plans]]");
                            return ExitCode::from(EXIT_CONFIG);
                        }
                    }
                }
                None => match crate::cli_records::scope_arg(&scope) {
                    Ok(s) => crate::inspection::runner::RunRequest::adhoc(&config.inspection, s),
                    Err(e) => {
                        eprintln!("xunjian: {e}");
                        return ExitCode::from(EXIT_CONFIG);
                    }
                },
            };
            crate::cli_records::request_and_wait(&config, request, no_wait)
        }
        Command::Selfcheck {
            command: crate::cli_records::SelfcheckCommand::Run { scope, no_wait },
        } => match crate::cli_records::scope_arg(&scope) {
            Ok(s) => crate::cli_records::request_and_wait(
                &config,
                crate::inspection::runner::RunRequest::selfcheck(&config.inspection, s),
                no_wait,
            ),
            Err(e) => {
                eprintln!("xunjian: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        Command::Inspections { limit, json } => crate::cli_records::list_runs(&config, limit, json),
        Command::Inspection {
            command:
                InspectionCommand::Show {
                    id,
                    format,
                    lang,
                    output,
                },
        } => {
            crate::cli_records::show_run(&config, id, format.into(), lang.into(), output.as_deref())
        }
        Command::Report {
            kind,
            period,
            lang,
            format,
            output,
        } => crate::cli_records::report(
            &config,
            kind.into(),
            &period,
            lang.into(),
            format.into(),
            output.as_deref(),
        ),
        Command::Evidence { command } => match crate::cli_records::evidence(&config, command) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => Err(e),
        },
        Command::Incident { command } => incident(&config, command),
        Command::Silence { command } => silence(&config, command),
        Command::Serve => serve(config).await,
        Command::Up { listen, interval } => crate::up::up(config, listen, interval).await,
        Command::Hosts { json }
        | Command::Agents {
            command: AgentsCommand::List { json },
        } => print_hosts(&config, json),
        Command::Changes { agent, limit, json } => {
            print_changes(&config, agent.as_deref(), limit, json)
        }
        Command::Agents {
            command: AgentsCommand::Label { id, label, remove },
        } => {
            let (name, value) = match (label.split_once('='), remove) {
                (Some((n, v)), false) if !v.is_empty() => (n, v),
                (None, true) => (label.as_str(), ""),
                _ => {
                    eprintln!("xunjian: give a label as name=value, or a name with --remove");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            tag(
                &config,
                &id,
                store::HostTag::Label {
                    name: name.to_owned(),
                    value: value.to_owned(),
                },
            )
        }
        Command::Agents {
            command: AgentsCommand::Group { id, group, remove },
        } => tag(
            &config,
            &id,
            store::HostTag::Group {
                name: group,
                member: !remove,
            },
        ),
        Command::Agents {
            command: AgentsCommand::Revoke { id, reason },
        } => revoke(&config, &id, &reason),
        Command::Token {
            command: TokenCommand::Create { ttl, uses, note },
        } => create_token(&config, ttl, uses, &note),
        Command::Token {
            command: TokenCommand::List { json },
        } => list_tokens(&config, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xunjian: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The config file if given (else defaults), with --data-dir applied.
fn resolve_config(cli: &Cli) -> Result<CollectorConfig, ConfigError> {
    let mut config = match &cli.config {
        Some(path) => CollectorConfig::load(path)?,
        None => CollectorConfig::default(),
    };
    if let Some(dir) = &cli.data_dir {
        config.storage.data_dir = dir.clone();
    }
    Ok(config)
}

async fn serve(config: CollectorConfig) -> anyhow::Result<()> {
    let stop = signals::shutdown_token();
    let collector = Collector::start(&config, Arc::new(SystemClock), stop).await?;
    println!("xunjian collector listening on {}", collector.addr());
    println!("CA fingerprint (sha256): {}", collector.ca_fingerprint());
    collector.wait().await?;
    Ok(())
}

/// Who is acting, for the audit log: the login name of the process's real
/// user (not `$USER`, which anyone can set), `sudo`'s caller when present.
pub(crate) fn actor() -> String {
    let uid = nix::unistd::getuid();
    let user = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid{uid}"));
    match std::env::var("SUDO_USER") {
        Ok(caller) if uid.is_root() && !caller.is_empty() => {
            format!("cli:{user} (sudo by {caller})")
        }
        _ => format!("cli:{user}"),
    }
}

fn create_token(
    config: &CollectorConfig,
    ttl: Duration,
    uses: u32,
    note: &str,
) -> anyhow::Result<()> {
    let pki = Pki::load_or_create(&config.pki_dir())?;
    let mut conn = store::open(&config.database_path())?;
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let token = store::create_token(
        &mut conn,
        SystemClock.now_ms(),
        ttl_ms,
        uses,
        &actor(),
        note,
    )?;
    println!(
        "{}",
        xunjian_proto::token::format(&token.secret, &pki.ca_fingerprint())
    );
    eprintln!(
        "token {}: {uses} use(s), expires {}.\nOn the new host: xunjian-agent enroll --collector https://THIS_HOST:{} --token <the token above>",
        token.token_id,
        fmt_time(token.expires_at_ms),
        config.server.listen.port()
    );
    Ok(())
}

fn list_tokens(config: &CollectorConfig, json: bool) -> anyhow::Result<()> {
    let conn = store::open_read_only(&config.database_path())?;
    let tokens = store::list_tokens(&conn)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&tokens)?);
        return Ok(());
    }
    let now = SystemClock.now_ms();
    println!(
        "{:<10} {:<21} {:<21} {:>9}  {:<8} NOTE",
        "TOKEN", "CREATED", "EXPIRES", "USES", "STATE"
    );
    for t in tokens {
        let state = if t.uses >= t.uses_allowed {
            "used up"
        } else if now >= t.expires_at {
            "expired"
        } else {
            "valid"
        };
        println!(
            "{:<10} {:<21} {:<21} {:>4}/{:<4}  {:<8} {}",
            t.token_id,
            fmt_time(t.created_at),
            fmt_time(t.expires_at),
            t.uses,
            t.uses_allowed,
            state,
            t.note
        );
    }
    Ok(())
}

fn tag(config: &CollectorConfig, id: &str, change: store::HostTag) -> anyhow::Result<()> {
    let mut conn = store::open(&config.database_path())?;
    let agent = store::resolve_agent(&conn, id)?;
    store::tag_host(&mut conn, agent, &change, &actor(), SystemClock.now_ms())?;
    match change {
        store::HostTag::Label { name, value } if value.is_empty() => {
            println!("agent {agent}: label {name} removed")
        }
        store::HostTag::Label { name, value } => println!("agent {agent}: label {name}={value}"),
        store::HostTag::Group { name, member: true } => println!("agent {agent}: in group {name}"),
        store::HostTag::Group {
            name,
            member: false,
        } => println!("agent {agent}: out of group {name}"),
    }
    Ok(())
}

fn revoke(config: &CollectorConfig, id: &str, reason: &str) -> anyhow::Result<()> {
    let mut conn = store::open(&config.database_path())?;
    let agent = store::resolve_agent(&conn, id)?;
    if store::revoke_agent(&mut conn, agent, &actor(), reason, SystemClock.now_ms())? {
        println!("revoked agent {agent}; its connections are refused from now on");
    } else {
        println!("agent {agent} was already revoked");
    }
    Ok(())
}

fn print_hosts(config: &CollectorConfig, json: bool) -> anyhow::Result<()> {
    let conn = store::open_read_only(&config.database_path())?;
    let hosts = store::hosts(&conn)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&hosts)?);
        return Ok(());
    }
    let now = SystemClock.now_ms();
    let offline_after = offline_after(config);
    print!("{}", hosts_table(&hosts, now, offline_after));
    Ok(())
}

fn incident(config: &CollectorConfig, command: IncidentCommand) -> anyhow::Result<()> {
    use crate::store::incident_actions::{self, Action};
    let (id, action) = match command {
        IncidentCommand::Show { id } => {
            let conn = store::open_read_only(&config.database_path())?;
            let incident = incident_actions::load(&conn, id)?
                .ok_or_else(|| anyhow::anyhow!("no incident {id}"))?;
            println!("incident {id}: [{}] {}", incident.severity, incident.title);
            println!("state      {}", incident.state);
            println!(
                "rule       {}  (agent {})",
                incident.rule_id, incident.agent_id
            );
            println!(
                "value      {} (first {}, threshold {})",
                incident.last_value, incident.first_value, incident.threshold
            );
            println!(
                "opened     {}",
                incident
                    .opened_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            if let Some(a) = &incident.assignee {
                println!("assignee   {a}");
            }
            if let Some(c) = &incident.root_cause {
                println!("root cause {c}");
            }
            if let Some(a) = &incident.actions_taken {
                println!("actions    {a}");
            }
            println!("history:");
            for (at, actor, action, detail) in incident_actions::history(&conn, id)? {
                println!(
                    "  {}  {:<14} {:<12} {}",
                    fmt_time(at),
                    actor,
                    action,
                    detail
                );
            }
            return Ok(());
        }
        IncidentCommand::Ack { id } => (id, Action::Acknowledge),
        IncidentCommand::Assign { id, person } => (id, Action::Assign(person)),
        IncidentCommand::Comment { id, text } => (id, Action::Comment(text)),
        IncidentCommand::Resolve { id, cause, actions } => (
            id,
            Action::Resolve {
                root_cause: cause,
                actions_taken: actions,
            },
        ),
        IncidentCommand::Close { id } => (id, Action::Close),
    };
    let mut conn = store::open(&config.database_path())?;
    let entry = incident_actions::act(&mut conn, id, &action, &actor(), chrono::Utc::now())?;
    println!(
        "incident {id}: {} by {}",
        entry.action.as_str(),
        entry.actor
    );
    Ok(())
}

fn silence(config: &CollectorConfig, command: SilenceCommand) -> anyhow::Result<()> {
    let now = SystemClock.now_ms();
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    match command {
        SilenceCommand::Add {
            agent,
            group,
            rule,
            duration,
            starts_in,
            reason,
        } => {
            let mut conn = store::open(&config.database_path())?;
            let agent = agent.map(|a| store::resolve_agent(&conn, &a)).transpose()?;
            let starts = now.saturating_add(starts_in.map_or(0, ms));
            let ends = starts.saturating_add(ms(duration));
            let id = store::add_silence(
                &mut conn,
                agent,
                group.as_deref(),
                rule.as_deref(),
                starts,
                ends,
                &reason,
                &actor(),
                now,
            )?;
            println!("silence {id}: {} to {}", fmt_time(starts), fmt_time(ends));
        }
        SilenceCommand::List { json } => {
            let conn = store::open_read_only(&config.database_path())?;
            let rows = store::active_silences(&conn, now)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            println!(
                "{:>4} {:<21} {:<21} {:<9} {:<12} {:<24} REASON",
                "ID", "FROM", "UNTIL", "AGENT", "GROUP", "RULE"
            );
            for s in &rows {
                println!(
                    "{:>4} {:<21} {:<21} {:<9} {:<12} {:<24} {}",
                    s.silence_id,
                    fmt_time(s.starts_at),
                    fmt_time(s.ends_at),
                    s.agent_id.as_deref().map_or("*", |a| &a[..8.min(a.len())]),
                    s.group_name.as_deref().unwrap_or("*"),
                    s.rule_id.as_deref().unwrap_or("*"),
                    s.reason
                );
            }
            if rows.is_empty() {
                println!("(no silences)");
            }
        }
        SilenceCommand::Remove { id } => {
            let mut conn = store::open(&config.database_path())?;
            if store::remove_silence(&mut conn, id, &actor(), now)? {
                println!("silence {id} removed");
            } else {
                anyhow::bail!("no active silence {id}");
            }
        }
    }
    Ok(())
}

fn reload_rules(config: &CollectorConfig) -> anyhow::Result<()> {
    let pid = running_collector(config)?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .map_err(|e| anyhow::anyhow!("cannot signal collector process {pid}: {e}"))?;
    println!("asked collector {pid} to reload its rules; its log says whether they were taken");
    Ok(())
}

/// The pid of the collector running on this data directory, from its pid
/// file, checked to be a xunjian process.
pub(crate) fn running_collector(config: &CollectorConfig) -> anyhow::Result<i32> {
    let path = crate::server::pid_file(config);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("no running collector found ({}: {e})", path.display()))?;
    let pid: i32 = text
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{} is damaged", path.display()))?;
    // The file survives a crash, and the pid may since belong to something
    // else (SIGHUP would end most programs): signal only a xunjian process.
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    if !exe
        .as_deref()
        .and_then(|p| p.file_name())
        .is_some_and(|n| n.to_string_lossy().starts_with("xunjian"))
    {
        anyhow::bail!(
            "no running collector found: process {pid} from {} is not xunjian (stale pid file)",
            path.display()
        );
    }
    Ok(pid)
}

fn print_incidents(
    config: &CollectorConfig,
    open_only: bool,
    limit: u32,
    json: bool,
) -> anyhow::Result<()> {
    let conn = store::open_read_only(&config.database_path())?;
    let rows = store::list_incidents(&conn, open_only, limit)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:>5} {:<4} {:<13} {:<21} {:<16} {:<12} TITLE",
        "ID", "SEV", "STATE", "OPENED", "HOSTNAME", "VALUE"
    );
    for r in &rows {
        let mut state = r.state.clone();
        if r.flapping {
            state.push_str(" (flap)");
        }
        println!(
            "{:>5} {:<4} {:<13} {:<21} {:<16} {:<12} {}",
            r.incident_id,
            r.severity,
            state,
            fmt_time(r.opened_at),
            clip(&r.hostname, 16),
            clip(&r.last_value, 12),
            r.title
        );
    }
    if rows.is_empty() {
        println!("(no incidents)");
    }
    Ok(())
}

fn print_changes(
    config: &CollectorConfig,
    agent: Option<&str>,
    limit: u32,
    json: bool,
) -> anyhow::Result<()> {
    let conn = store::open_read_only(&config.database_path())?;
    let agent = agent.map(|a| store::resolve_agent(&conn, a)).transpose()?;
    let rows = store::config_changes(&conn, agent, limit)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<21} {:<9} {:<16} {:<40} CHANGE",
        "WHEN", "AGENT", "HOSTNAME", "WHAT"
    );
    for r in &rows {
        let change = match (r.before.is_empty(), r.after.is_empty()) {
            (true, _) => format!("added: {}", r.after),
            (_, true) => format!("removed: {}", r.before),
            _ => format!("{} -> {}", r.before, r.after),
        };
        println!(
            "{:<21} {:<9} {:<16} {:<40} {}",
            fmt_time(r.collected_at),
            &r.agent_id[..8.min(r.agent_id.len())],
            clip(&r.hostname, 16),
            clip(&r.path, 40),
            change
        );
    }
    if rows.is_empty() {
        println!("(no configuration changes recorded)");
    }
    Ok(())
}

/// A host is offline when nothing arrived for three collection intervals
/// (at least a minute).
pub fn offline_after(config: &CollectorConfig) -> i64 {
    let interval = config
        .policy
        .metrics_interval
        .unwrap_or(crate::config::AGENT_DEFAULT_INTERVAL);
    let ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
    ms.saturating_mul(3).max(60_000)
}

/// The `xunjian hosts` table.
pub fn hosts_table(hosts: &[HostRow], now_ms: i64, offline_after_ms: i64) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<9} {:<20} {:<26} {:>6} {:>6} {:>6}  {:<10} STATUS",
        "AGENT", "HOSTNAME", "OS", "CPU%", "MEM%", "DISK%", "LAST SEEN"
    );
    for h in hosts {
        let mut status = if h.revoked {
            "revoked"
        } else {
            match h.last_seen_at {
                None => "never seen",
                Some(t) if now_ms - t > offline_after_ms => "offline",
                Some(_) => "online",
            }
        }
        .to_owned();
        // Reports the agent's spool had to drop are lost data: never hide it.
        if h.spool_dropped_reports_total > 0 {
            status.push_str(&format!(
                ", {} reports dropped by spool",
                h.spool_dropped_reports_total
            ));
        }
        let _ = writeln!(
            out,
            "{:<9} {:<20} {:<26} {:>6} {:>6} {:>6}  {:<10} {}",
            &h.agent_id[..8.min(h.agent_id.len())],
            clip(&h.hostname, 20),
            clip(&h.os, 26),
            pct(h.cpu_usage_pct),
            pct(h.memory_used_pct),
            pct(h.disk_max_used_pct),
            h.last_seen_at
                .map(|t| ago(now_ms - t))
                .unwrap_or_else(|| "-".into()),
            status
        );
    }
    if hosts.is_empty() {
        out.push_str("(no agents enrolled yet: `xunjian token create`, then `xunjian-agent enroll` on the host)\n");
    }
    out
}

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "?".into())
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// "4s ago", "3m ago", "2h ago", "5d ago".
pub fn ago(ms: i64) -> String {
    let s = (ms / 1000).max(0);
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86_399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(last_seen: Option<i64>, revoked: bool) -> HostRow {
        HostRow {
            agent_id: "0123456789abcdef".into(),
            hostname: "web-1".into(),
            os: "Debian GNU/Linux 12".into(),
            kernel_version: "6.1".into(),
            arch: "x86_64".into(),
            agent_version: "0.1.0".into(),
            enrolled_at: 0,
            last_seen_at: last_seen,
            last_report_at: last_seen,
            last_sequence: 3,
            clock_skew_ms: Some(0),
            cpu_usage_pct: Some(3.25),
            memory_used_pct: None,
            disk_max_used_pct: Some(55.0),
            spool_pending_reports: 0,
            spool_dropped_reports_total: 0,
            revoked,
        }
    }

    #[test]
    fn table_shows_status_and_unknown_usage_as_question_mark() {
        let now = 1_000_000;
        let t = hosts_table(&[row(Some(now - 4_000), false)], now, 60_000);
        let line = t.lines().nth(1).unwrap();
        assert!(line.starts_with("01234567 "), "{line}");
        assert!(
            line.contains("3.2")
                && line.contains("?")
                && line.contains("4s ago")
                && line.ends_with("online"),
            "{line}"
        );
        assert!(hosts_table(&[row(Some(now - 120_000), false)], now, 60_000).contains("offline"));
        assert!(hosts_table(&[row(None, false)], now, 60_000).contains("never seen"));
        assert!(hosts_table(&[row(Some(now), true)], now, 60_000).contains("revoked"));
        let mut dropped = row(Some(now), false);
        dropped.spool_dropped_reports_total = 12;
        assert!(
            hosts_table(&[dropped], now, 60_000).contains("online, 12 reports dropped by spool")
        );
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(ago(4_000), "4s ago");
        assert_eq!(ago(180_000), "3m ago");
        assert_eq!(ago(7_200_000), "2h ago");
        assert_eq!(ago(-5), "0s ago");
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
