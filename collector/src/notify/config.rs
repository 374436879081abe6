//! The `[notify]` section: where incident notifications go.
//!
//! Parsing is plain serde with `deny_unknown_fields` (a misspelt key is an
//! error, not a silently ignored setting). One flat struct per target keeps
//! the TOML simple and the unknown-field check working (serde cannot deny
//! unknown fields through internally tagged enums); `validate` then checks
//! that each kind has exactly the fields it needs, and `resolve` turns the
//! file into typed targets, reading SMTP passwords from the environment.
//! Every error names the field, e.g. `notify.targets[1].url: ...`.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

/// The whole `[notify]` table. `Default` is "no targets": notifications off.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// How long the first notification for a host waits for others to join
    /// it (one report often trips several rules at once).
    #[serde(default = "default_group_wait", with = "humantime_serde")]
    pub group_wait: Duration,
    /// At most one message per (target, host) per interval.
    #[serde(default = "default_group_interval", with = "humantime_serde")]
    pub group_interval: Duration,
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            group_wait: default_group_wait(),
            group_interval: default_group_interval(),
            targets: Vec::new(),
        }
    }
}

fn default_group_wait() -> Duration {
    Duration::from_secs(5)
}

fn default_group_interval() -> Duration {
    Duration::from_secs(30)
}

/// The channel a target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// Generic JSON POST (shape documented in `format::generic_json`).
    Webhook,
    /// WeCom (企业微信) group robot.
    Wecom,
    /// DingTalk (钉钉) group robot.
    Dingtalk,
    /// Slack incoming webhook.
    Slack,
    Email,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (required, not opportunistic).
    #[default]
    Starttls,
    /// Implicit TLS from the first byte (usually port 465).
    Tls,
    /// No TLS. Only accepted for a relay on the loopback interface, so that
    /// neither mail nor credentials cross the network in clear.
    None,
}

impl SmtpSecurity {
    fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        }
    }
}

/// One `[[notify.targets]]` entry as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub name: String,
    pub kind: TargetKind,
    /// Webhook kinds only.
    pub url: Option<String>,
    /// Email only.
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    #[serde(default)]
    pub security: Option<SmtpSecurity>,
    pub username: Option<String>,
    /// Name of the environment variable holding the SMTP password; the
    /// password itself never lives in the file.
    pub password_env: Option<String>,
    pub from: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
    /// Breach notifications also go to this target.
    pub escalation_to: Option<String>,
    /// This target only receives breaches escalated to it.
    #[serde(default)]
    pub escalation_only: bool,
}

/// A configuration problem, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// A value that must not reach logs (webhook URLs carry access keys,
/// passwords are passwords).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(pub T);

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A validated target, ready for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub name: String,
    pub escalation_to: Option<String>,
    pub escalation_only: bool,
    pub channel: Channel,
}

/// Where and how a target delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum Channel {
    Webhook {
        /// Webhook, Wecom, Dingtalk or Slack.
        kind: TargetKind,
        url: Secret<reqwest::Url>,
    },
    Email(EmailSettings),
}

/// SMTP settings of an email target.
#[derive(Debug, Clone, PartialEq)]
pub struct EmailSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// Username and password, both or neither.
    pub credentials: Option<(String, Secret<String>)>,
    pub from: lettre::message::Mailbox,
    pub to: Vec<lettre::message::Mailbox>,
}

impl Channel {
    pub fn kind(&self) -> TargetKind {
        match self {
            Channel::Webhook { kind, .. } => *kind,
            Channel::Email(_) => TargetKind::Email,
        }
    }
}

impl NotifyConfig {
    /// Checks everything that does not depend on the environment.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.resolve_with(|_| Some(String::new()), false)
            .map(|_| ())
    }

    /// Validates and builds the targets, reading passwords through `env`
    /// (normally `|name| std::env::var(name).ok()`; injected so tests need
    /// not touch the process environment).
    pub fn resolve(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<Target>, ConfigError> {
        self.resolve_with(env, true)
    }

    fn resolve_with(
        &self,
        env: impl Fn(&str) -> Option<String>,
        need_env: bool,
    ) -> Result<Vec<Target>, ConfigError> {
        if self.group_interval.is_zero() {
            return Err(err("notify.group_interval", "must be more than 0s"));
        }
        if self.group_interval > Duration::from_secs(24 * 3600) {
            return Err(err("notify.group_interval", "must be at most 24h"));
        }
        if self.group_wait > self.group_interval {
            return Err(err(
                "notify.group_wait",
                "must not be longer than group_interval",
            ));
        }
        let mut names = BTreeSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let field = format!("notify.targets[{i}].name");
            let name = t.name.trim();
            if name.is_empty() {
                return Err(err(field, "must not be empty"));
            }
            if name != t.name || t.name.chars().any(char::is_control) {
                return Err(err(
                    field,
                    "must not have surrounding spaces or control characters",
                ));
            }
            if !names.insert(t.name.as_str()) {
                return Err(err(field, format!("duplicate target name {:?}", t.name)));
            }
        }
        let mut out = Vec::with_capacity(self.targets.len());
        for (i, t) in self.targets.iter().enumerate() {
            let p = format!("notify.targets[{i}]");
            if let Some(esc) = &t.escalation_to {
                if !names.contains(esc.as_str()) {
                    return Err(err(
                        format!("{p}.escalation_to"),
                        format!("no target is named {esc:?}"),
                    ));
                }
                if *esc == t.name {
                    return Err(err(
                        format!("{p}.escalation_to"),
                        "a target cannot escalate to itself",
                    ));
                }
            }
            let channel = match t.kind {
                TargetKind::Email => Channel::Email(email(&p, t, &env, need_env)?),
                kind => Channel::Webhook {
                    kind,
                    url: Secret(webhook(&p, t)?),
                },
            };
            out.push(Target {
                name: t.name.clone(),
                escalation_to: t.escalation_to.clone(),
                escalation_only: t.escalation_only,
                channel,
            });
        }
        Ok(out)
    }
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Fields that belong to the other kind are errors rather than ignored:
/// a `url` on an email target is almost certainly a mistake.
fn reject(p: &str, field: &str, present: bool, kind: &str) -> Result<(), ConfigError> {
    if present {
        return Err(err(
            format!("{p}.{field}"),
            format!("not used by {kind} targets"),
        ));
    }
    Ok(())
}

fn webhook(p: &str, t: &TargetConfig) -> Result<reqwest::Url, ConfigError> {
    let kind = "webhook";
    reject(p, "smtp_host", t.smtp_host.is_some(), kind)?;
    reject(p, "smtp_port", t.smtp_port.is_some(), kind)?;
    reject(p, "security", t.security.is_some(), kind)?;
    reject(p, "username", t.username.is_some(), kind)?;
    reject(p, "password_env", t.password_env.is_some(), kind)?;
    reject(p, "from", t.from.is_some(), kind)?;
    reject(p, "to", !t.to.is_empty(), kind)?;
    let field = format!("{p}.url");
    let raw = t.url.as_deref().ok_or_else(|| err(&field, "is required"))?;
    // The message must not echo the URL: it usually carries the robot's key.
    let url =
        reqwest::Url::parse(raw).map_err(|e| err(&field, format!("not a valid URL ({e})")))?;
    let host = url.host_str().unwrap_or_default().to_owned();
    if host.is_empty() {
        return Err(err(&field, "has no host"));
    }
    match url.scheme() {
        "https" => {}
        // Robots of public services are always https; plain http is for an
        // in-house receiver (generic webhook) or a local test receiver.
        "http" if t.kind == TargetKind::Webhook || is_loopback(&host) => {}
        "http" => return Err(err(&field, "must use https")),
        other => return Err(err(&field, format!("unsupported scheme {other:?}"))),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(err(&field, "must not contain credentials"));
    }
    Ok(url)
}

fn email(
    p: &str,
    t: &TargetConfig,
    env: &impl Fn(&str) -> Option<String>,
    need_env: bool,
) -> Result<EmailSettings, ConfigError> {
    reject(p, "url", t.url.is_some(), "email")?;
    let host = t
        .smtp_host
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or_else(|| err(format!("{p}.smtp_host"), "is required"))?
        .to_owned();
    let security = t.security.unwrap_or_default();
    if security == SmtpSecurity::None && !is_loopback(&host) {
        return Err(err(
            format!("{p}.security"),
            "\"none\" is only allowed for a relay on localhost; use \"starttls\" or \"tls\"",
        ));
    }
    let port = t.smtp_port.unwrap_or(security.default_port());
    if port == 0 {
        return Err(err(format!("{p}.smtp_port"), "must not be 0"));
    }
    let credentials = match (&t.username, &t.password_env) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(err(
                format!("{p}.password_env"),
                "is required with username",
            ));
        }
        (None, Some(_)) => {
            return Err(err(
                format!("{p}.username"),
                "is required with password_env",
            ));
        }
        (Some(user), Some(var)) => {
            if var.is_empty() {
                return Err(err(
                    format!("{p}.password_env"),
                    "must name an environment variable",
                ));
            }
            let password = match env(var) {
                Some(pw) if !pw.is_empty() => pw,
                _ if !need_env => String::new(),
                _ => {
                    return Err(err(
                        format!("{p}.password_env"),
                        format!("environment variable {var} is not set or empty"),
                    ));
                }
            };
            Some((user.clone(), Secret(password)))
        }
    };
    let from = t
        .from
        .as_deref()
        .ok_or_else(|| err(format!("{p}.from"), "is required"))?
        .parse()
        .map_err(|e| err(format!("{p}.from"), format!("not a valid address ({e})")))?;
    if t.to.is_empty() {
        return Err(err(format!("{p}.to"), "needs at least one address"));
    }
    let mut to = Vec::with_capacity(t.to.len());
    for (j, a) in t.to.iter().enumerate() {
        to.push(
            a.parse()
                .map_err(|e| err(format!("{p}.to[{j}]"), format!("not a valid address ({e})")))?,
        );
    }
    Ok(EmailSettings {
        host,
        port,
        security,
        credentials,
        from,
        to,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<NotifyConfig, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            notify: NotifyConfig,
        }
        toml::from_str::<File>(s)
            .map(|f| f.notify)
            .map_err(|e| e.to_string())
    }

    fn resolve_err(s: &str) -> String {
        parse(s)
            .expect("parses")
            .resolve(|_| Some("pw".into()))
            .expect_err("must fail")
            .to_string()
    }

    const GOOD: &str = r#"
[notify]
group_interval = "1m"

[[notify.targets]]
name = "ops-wecom"
kind = "wecom"
url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc"
escalation_to = "duty-mail"

[[notify.targets]]
name = "duty-mail"
kind = "email"
smtp_host = "smtp.example.com"
security = "tls"
username = "xunjian@example.com"
password_env = "XJ_SMTP_PASSWORD"
from = "Xunjian <xunjian@example.com>"
to = ["oncall@example.com", "Lead <lead@example.com>"]
escalation_only = true
"#;

    #[test]
    fn a_full_config_resolves_with_defaults_and_the_password_from_the_environment() {
        let cfg = parse(GOOD).unwrap();
        assert_eq!(cfg.group_interval, Duration::from_secs(60));
        assert_eq!(cfg.group_wait, Duration::from_secs(5));
        let targets = cfg
            .resolve(|v| (v == "XJ_SMTP_PASSWORD").then(|| "s3cret".to_owned()))
            .unwrap();
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[0].channel.kind(), TargetKind::Wecom);
        let Channel::Email(e) = &targets[1].channel else {
            panic!("email expected")
        };
        assert_eq!(e.port, 465);
        assert_eq!(e.to.len(), 2);
        assert_eq!(e.credentials.as_ref().unwrap().1.0, "s3cret");
        // Secrets stay out of Debug output (and hence out of logs).
        let dbg = format!("{targets:?}");
        assert!(!dbg.contains("s3cret") && !dbg.contains("key=abc"), "{dbg}");
    }

    #[test]
    fn no_notify_section_means_no_targets() {
        let cfg = parse("[notify]\n").unwrap();
        assert_eq!(cfg, NotifyConfig::default());
        assert!(cfg.resolve(|_| None).unwrap().is_empty());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e =
            parse("[notify]\n[[notify.targets]]\nname='a'\nkind='slack'\nurll='x'\n").unwrap_err();
        assert!(e.contains("urll"), "{e}");
        let e = parse("[notify]\ngroup_intervall='1s'\n").unwrap_err();
        assert!(e.contains("group_intervall"), "{e}");
        let e =
            parse("[notify]\n[[notify.targets]]\nname='a'\nkind='teams'\nurl='x'\n").unwrap_err();
        assert!(e.contains("teams"), "{e}");
    }

    #[test]
    fn bad_configs_name_the_field() {
        let t = |body: &str| format!("[notify]\n[[notify.targets]]\nname='a'\n{body}\n");
        let cases: &[(String, &str)] = &[
            (t("kind='slack'"), "notify.targets[0].url: is required"),
            (
                t("kind='slack'\nurl='not a url'"),
                "notify.targets[0].url: not a valid URL",
            ),
            (
                t("kind='slack'\nurl='http://hooks.slack.com/x'"),
                "notify.targets[0].url: must use https",
            ),
            (
                t("kind='webhook'\nurl='ftp://h/x'"),
                "notify.targets[0].url: unsupported scheme",
            ),
            (
                t("kind='webhook'\nurl='https://h/x'\nto=['a@b.c']"),
                "notify.targets[0].to: not used by webhook",
            ),
            (
                t("kind='email'\nsmtp_host='h'\nfrom='a@b.c'\nto=['x@y.z']\nurl='https://h'"),
                "notify.targets[0].url: not used by email",
            ),
            (
                t("kind='email'\nfrom='a@b.c'\nto=['x@y.z']"),
                "notify.targets[0].smtp_host: is required",
            ),
            (
                t("kind='email'\nsmtp_host='h'\nto=['x@y.z']"),
                "notify.targets[0].from: is required",
            ),
            (
                t("kind='email'\nsmtp_host='h'\nfrom='nope'\nto=['x@y.z']"),
                "notify.targets[0].from: not a valid address",
            ),
            (
                t("kind='email'\nsmtp_host='h'\nfrom='a@b.c'"),
                "notify.targets[0].to: needs at least one",
            ),
            (
                t("kind='email'\nsmtp_host='h'\nfrom='a@b.c'\nto=['x@y.z','bad']"),
                "notify.targets[0].to[1]: not a valid address",
            ),
            (
                t("kind='email'\nsmtp_host='h'\nfrom='a@b.c'\nto=['x@y.z']\nusername='u'"),
                "notify.targets[0].password_env: is required with username",
            ),
            (
                t(
                    "kind='email'\nsmtp_host='mail.example.com'\nsecurity='none'\nfrom='a@b.c'\nto=['x@y.z']",
                ),
                "notify.targets[0].security: \"none\" is only allowed",
            ),
            (
                t("kind='slack'\nurl='https://h/x'\nescalation_to='b'"),
                "notify.targets[0].escalation_to: no target is named \"b\"",
            ),
            (
                t("kind='slack'\nurl='https://h/x'\nescalation_to='a'"),
                "notify.targets[0].escalation_to: a target cannot escalate to itself",
            ),
            (
                format!(
                    "{}[[notify.targets]]\nname='a'\nkind='slack'\nurl='https://h/y'\n",
                    t("kind='slack'\nurl='https://h/x'")
                ),
                "notify.targets[1].name: duplicate target name",
            ),
            (
                t("kind='slack'\nurl='https://h/x'").replace("name='a'", "name=' '"),
                "notify.targets[0].name: must not be empty",
            ),
            (
                "[notify]\ngroup_interval='0s'\n".into(),
                "notify.group_interval: must be more than 0s",
            ),
            (
                "[notify]\ngroup_interval='10s'\ngroup_wait='20s'\n".into(),
                "notify.group_wait: must not be longer",
            ),
        ];
        for (toml, want) in cases {
            let got = resolve_err(toml);
            assert!(
                got.starts_with(want),
                "config:\n{toml}\nwant: {want}\ngot:  {got}"
            );
        }
    }

    #[test]
    fn url_errors_do_not_echo_the_url() {
        let got = resolve_err(
            "[notify]\n[[notify.targets]]\nname='a'\nkind='slack'\nurl='http://hooks.example.com/T0/secretkey'\n",
        );
        assert!(!got.contains("secretkey"), "{got}");
    }

    #[test]
    fn a_missing_password_variable_fails_resolve_but_not_validate() {
        let cfg = parse(GOOD).unwrap();
        cfg.validate().unwrap();
        let e = cfg.resolve(|_| None).unwrap_err();
        assert_eq!(e.field, "notify.targets[1].password_env");
        assert!(e.message.contains("XJ_SMTP_PASSWORD"), "{e}");
    }

    #[test]
    fn plain_smtp_is_allowed_on_loopback_only() {
        let cfg = parse(
            "[notify]\n[[notify.targets]]\nname='m'\nkind='email'\nsmtp_host='127.0.0.1'\nsecurity='none'\nfrom='a@b.c'\nto=['x@y.z']\n",
        )
        .unwrap();
        let t = cfg.resolve(|_| None).unwrap();
        let Channel::Email(e) = &t[0].channel else {
            panic!("email expected")
        };
        assert_eq!((e.port, e.security), (25, SmtpSecurity::None));
    }
}
