//! Pure message formatters, one per channel. Each takes a `Batch` (one host,
//! one target) and returns the exact body to send.
//!
//! JSON bodies are built from typed structs rather than `json!` so the key
//! order is the declaration order whatever serde_json features the workspace
//! enables (golden tests compare strings).
//!
//! Text from rules and agents goes into chat markdown: control characters
//! are flattened to spaces (one line per incident, no forged lines) and each
//! body is cut to the channel's size limit on a character boundary.

use chrono::SecondsFormat;
use serde::Serialize;

use super::config::TargetKind;
use super::group::Batch;
use super::{Notification, NotificationKind};

/// WeCom rejects markdown content over 4096 bytes.
const WECOM_MAX_BYTES: usize = 4000;
/// DingTalk's documented limit is about 20000 bytes.
const DINGTALK_MAX_BYTES: usize = 18000;
/// Slack truncates `text` past 40000 characters; stay well below.
const SLACK_MAX_BYTES: usize = 30000;

/// Subject and plain-text body of an email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailText {
    pub subject: String,
    pub body: String,
}

/// The JSON body for a webhook-kind target (`None` for email).
pub fn webhook_body(kind: TargetKind, b: &Batch) -> Option<String> {
    Some(match kind {
        TargetKind::Webhook => generic_json(b),
        TargetKind::Wecom => wecom(b),
        TargetKind::Dingtalk => dingtalk(b),
        TargetKind::Slack => slack(b),
        TargetKind::Email => return None,
    })
}

pub fn kind_label(k: NotificationKind) -> &'static str {
    match k {
        NotificationKind::Opened => "告警 Opened",
        NotificationKind::Updated => "更新 Updated",
        NotificationKind::PreBreach => "即将超时 Pre-breach",
        NotificationKind::Breach => "已超时 Breach",
        NotificationKind::Resolved => "恢复 Resolved",
    }
}

/// Most urgent first: decides the subject/title of a mixed batch.
fn urgency(k: NotificationKind) -> u8 {
    match k {
        NotificationKind::Breach => 4,
        NotificationKind::PreBreach => 3,
        NotificationKind::Opened => 2,
        NotificationKind::Updated => 1,
        NotificationKind::Resolved => 0,
    }
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    const MORE: &str = "\n…";
    let mut cut = max.saturating_sub(MORE.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str(MORE);
    s
}

fn time(n: &Notification) -> String {
    n.at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `[已超时 Breach] #42 I Disk full: 97% (threshold 90%) 2025-01-02 03:04:05 UTC`
fn line(n: &Notification, esc: fn(&str) -> String) -> String {
    format!(
        "[{}] #{} {} {}: {} (threshold {}) {}",
        kind_label(n.kind),
        n.incident_id,
        esc(&n.severity),
        esc(&n.title),
        esc(&n.value),
        esc(&n.threshold),
        time(n)
    )
}

fn headline(b: &Batch) -> String {
    let total = b.notifications.len() + b.omitted;
    let top = b
        .notifications
        .iter()
        .map(|n| n.kind)
        .max_by_key(|k| urgency(*k));
    match top {
        Some(k) => format!(
            "巡检 Xunjian · {} · {} ({} incident{})",
            one_line(&b.host),
            kind_label(k),
            total,
            if total == 1 { "" } else { "s" }
        ),
        None => format!("巡检 Xunjian · {}", one_line(&b.host)),
    }
}

fn lines(b: &Batch, esc: fn(&str) -> String, bullet: &str) -> String {
    let mut out = String::new();
    for n in &b.notifications {
        out.push_str(bullet);
        out.push_str(&line(n, esc));
        out.push('\n');
    }
    if b.omitted > 0 {
        out.push_str(&format!(
            "{bullet}… +{} more / 另有 {} 条\n",
            b.omitted, b.omitted
        ));
    }
    out
}

/// Generic webhook body:
///
/// ```json
/// {"source":"xunjian","version":1,"host":"web-1","omitted":0,
///  "notifications":[{"kind":"opened","incident_id":42,"severity":"II",
///    "host":"web-1","title":"Disk usage high","value":"95%",
///    "threshold":"90%","at":"2025-01-02T03:04:05.000Z"}]}
/// ```
///
/// `kind` is one of `opened`, `updated`, `pre_breach`, `breach`,
/// `resolved`; `at` is RFC 3339 UTC with milliseconds; `omitted` counts
/// incidents left out of a full batch. Fields may be added, never renamed,
/// without bumping `version`. Text is passed through unchanged (JSON
/// escaping only).
pub fn generic_json(b: &Batch) -> String {
    #[derive(Serialize)]
    struct Body<'a> {
        source: &'static str,
        version: u32,
        host: &'a str,
        omitted: usize,
        notifications: Vec<Item<'a>>,
    }
    #[derive(Serialize)]
    struct Item<'a> {
        kind: NotificationKind,
        incident_id: i64,
        severity: &'a str,
        host: &'a str,
        title: &'a str,
        value: &'a str,
        threshold: &'a str,
        at: String,
    }
    let body = Body {
        source: "xunjian",
        version: 1,
        host: &b.host,
        omitted: b.omitted,
        notifications: b
            .notifications
            .iter()
            .map(|n| Item {
                kind: n.kind,
                incident_id: n.incident_id,
                severity: &n.severity,
                host: &n.host,
                title: &n.title,
                value: &n.value,
                threshold: &n.threshold,
                at: n.at.to_rfc3339_opts(SecondsFormat::Millis, true),
            })
            .collect(),
    };
    to_json(&body)
}

/// Serialising these structs cannot fail (string keys, no maps, no floats);
/// an empty object keeps the function total anyway.
fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".to_owned())
}

/// WeCom group robot: `{"msgtype":"markdown","markdown":{"content":...}}`.
pub fn wecom(b: &Batch) -> String {
    #[derive(Serialize)]
    struct Body {
        msgtype: &'static str,
        markdown: Md,
    }
    #[derive(Serialize)]
    struct Md {
        content: String,
    }
    let content = truncate(
        format!("**{}**\n{}", headline(b), lines(b, one_line, "> ")),
        WECOM_MAX_BYTES,
    );
    to_json(&Body {
        msgtype: "markdown",
        markdown: Md { content },
    })
}

/// DingTalk group robot:
/// `{"msgtype":"markdown","markdown":{"title":...,"text":...}}`; the title
/// is what the phone notification shows.
pub fn dingtalk(b: &Batch) -> String {
    #[derive(Serialize)]
    struct Body {
        msgtype: &'static str,
        markdown: Md,
    }
    #[derive(Serialize)]
    struct Md {
        title: String,
        text: String,
    }
    let title = headline(b);
    // DingTalk markdown needs a blank line between paragraphs.
    let text = truncate(
        format!("### {title}\n\n{}", lines(b, one_line, "- ")),
        DINGTALK_MAX_BYTES,
    );
    to_json(&Body {
        msgtype: "markdown",
        markdown: Md { title, text },
    })
}

/// Slack mrkdwn treats `&`, `<` and `>` as control characters.
fn slack_escape(s: &str) -> String {
    one_line(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Slack incoming webhook: `{"text": ...}` (no blocks: text renders
/// everywhere, including notifications).
pub fn slack(b: &Batch) -> String {
    #[derive(Serialize)]
    struct Body {
        text: String,
    }
    let text = truncate(
        format!(
            "*{}*\n{}",
            slack_escape(&headline(b)),
            lines(b, slack_escape, "• ")
        ),
        SLACK_MAX_BYTES,
    );
    to_json(&Body { text })
}

/// Email: short subject for the inbox list, one line per incident.
pub fn email(b: &Batch) -> EmailText {
    let subject = headline(b);
    let body = format!(
        "{subject}\n\n{}\n--\nXunjian collector",
        lines(b, one_line, "- ")
    );
    EmailText { subject, body }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn batch() -> Batch {
        let at = Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap();
        Batch {
            target: "ops".into(),
            host: "web-1".into(),
            notifications: vec![
                Notification {
                    kind: NotificationKind::Opened,
                    incident_id: 42,
                    severity: "II".into(),
                    host: "web-1".into(),
                    title: "磁盘使用率 Disk usage /var".into(),
                    value: "95%".into(),
                    threshold: "90%".into(),
                    at,
                },
                Notification {
                    kind: NotificationKind::Breach,
                    incident_id: 7,
                    severity: "I".into(),
                    host: "web-1".into(),
                    title: "a<b> & \"c\"\nforged line".into(),
                    value: "down".into(),
                    threshold: "up".into(),
                    at,
                },
            ],
            omitted: 0,
        }
    }

    #[test]
    fn generic_json_golden() {
        assert_eq!(
            generic_json(&batch()),
            r#"{"source":"xunjian","version":1,"host":"web-1","omitted":0,"notifications":[{"kind":"opened","incident_id":42,"severity":"II","host":"web-1","title":"磁盘使用率 Disk usage /var","value":"95%","threshold":"90%","at":"2025-01-02T03:04:05.000Z"},{"kind":"breach","incident_id":7,"severity":"I","host":"web-1","title":"a<b> & \"c\"\nforged line","value":"down","threshold":"up","at":"2025-01-02T03:04:05.000Z"}]}"#
        );
    }

    #[test]
    fn wecom_golden() {
        assert_eq!(
            wecom(&batch()),
            r#"{"msgtype":"markdown","markdown":{"content":"**巡检 Xunjian · web-1 · 已超时 Breach (2 incidents)**\n> [告警 Opened] #42 II 磁盘使用率 Disk usage /var: 95% (threshold 90%) 2025-01-02 03:04:05 UTC\n> [已超时 Breach] #7 I a<b> & \"c\" forged line: down (threshold up) 2025-01-02 03:04:05 UTC\n"}}"#
        );
    }

    #[test]
    fn dingtalk_golden() {
        assert_eq!(
            dingtalk(&batch()),
            r####"{"msgtype":"markdown","markdown":{"title":"巡检 Xunjian · web-1 · 已超时 Breach (2 incidents)","text":"### 巡检 Xunjian · web-1 · 已超时 Breach (2 incidents)\n\n- [告警 Opened] #42 II 磁盘使用率 Disk usage /var: 95% (threshold 90%) 2025-01-02 03:04:05 UTC\n- [已超时 Breach] #7 I a<b> & \"c\" forged line: down (threshold up) 2025-01-02 03:04:05 UTC\n"}}"####
        );
    }

    #[test]
    fn slack_golden() {
        assert_eq!(
            slack(&batch()),
            r#"{"text":"*巡检 Xunjian · web-1 · 已超时 Breach (2 incidents)*\n• [告警 Opened] #42 II 磁盘使用率 Disk usage /var: 95% (threshold 90%) 2025-01-02 03:04:05 UTC\n• [已超时 Breach] #7 I a&lt;b&gt; &amp; \"c\" forged line: down (threshold up) 2025-01-02 03:04:05 UTC\n"}"#
        );
    }

    #[test]
    fn email_golden() {
        let e = email(&batch());
        assert_eq!(
            e.subject,
            "巡检 Xunjian · web-1 · 已超时 Breach (2 incidents)"
        );
        assert_eq!(
            e.body,
            "巡检 Xunjian · web-1 · 已超时 Breach (2 incidents)\n\n\
             - [告警 Opened] #42 II 磁盘使用率 Disk usage /var: 95% (threshold 90%) 2025-01-02 03:04:05 UTC\n\
             - [已超时 Breach] #7 I a<b> & \"c\" forged line: down (threshold up) 2025-01-02 03:04:05 UTC\n\
             \n--\nXunjian collector"
        );
    }

    #[test]
    fn omitted_incidents_are_mentioned_and_long_bodies_are_cut_on_a_char_boundary() {
        let mut b = batch();
        b.omitted = 3;
        assert!(email(&b).body.contains("+3 more / 另有 3 条"));
        assert!(email(&b).subject.contains("(5 incidents)"));
        b.notifications[0].title = "盘".repeat(5000);
        let body = wecom(&b);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let content = v["markdown"]["content"].as_str().unwrap();
        assert!(content.len() <= WECOM_MAX_BYTES, "{}", content.len());
        assert!(content.ends_with('…'));
    }

    #[test]
    fn an_empty_batch_still_formats() {
        let b = Batch {
            target: "t".into(),
            host: "h".into(),
            notifications: vec![],
            omitted: 0,
        };
        assert_eq!(email(&b).subject, "巡检 Xunjian · h");
        assert!(webhook_body(TargetKind::Email, &b).is_none());
        assert!(webhook_body(TargetKind::Slack, &b).is_some());
    }
}
