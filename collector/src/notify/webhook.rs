//! One webhook POST. Classifies the outcome so the caller knows whether a
//! retry can help.
//!
//! Errors never carry the URL: for robots the URL *is* the credential
//! (WeCom `key=`, DingTalk `access_token=`, Slack's path).

use reqwest::header::CONTENT_TYPE;

use super::config::TargetKind;
use super::deliver::SendError;

/// Enough of a response body to read a robot's `errcode`; a misbehaving
/// server cannot make us buffer more.
const MAX_RESPONSE_BYTES: usize = 8 * 1024;

/// Rate-limit codes: the message was fine, try again later.
/// WeCom 45009 ("api freq out of limit"), DingTalk 130101 ("send too fast").
const RATE_LIMITED: &[i64] = &[45009, 130101];

pub(super) async fn send(
    client: &reqwest::Client,
    kind: TargetKind,
    url: &reqwest::Url,
    body: String,
) -> Result<(), SendError> {
    let mut resp = client
        .post(url.clone())
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .map_err(|e| SendError::Retryable(e.without_url().to_string()))?;
    let status = resp.status();
    let mut buf = Vec::new();
    // A broken body after a success status still counts as sent: the
    // status is what matters except for the robots' errcode below.
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = MAX_RESPONSE_BYTES.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    if !status.is_success() {
        let msg = format!(
            "HTTP {status}: {}",
            text.chars().take(200).collect::<String>()
        );
        let retry = status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT;
        return Err(if retry {
            SendError::Retryable(msg)
        } else {
            SendError::Permanent(msg)
        });
    }
    // WeCom and DingTalk answer 200 even when they refuse the message.
    let code = match kind {
        TargetKind::Wecom | TargetKind::Dingtalk => {
            serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .map(|v| {
                    let code = v.get("errcode").and_then(|c| c.as_i64()).unwrap_or(0);
                    let msg: String = v
                        .get("errmsg")
                        .and_then(|m| m.as_str())
                        .unwrap_or("")
                        .chars()
                        .take(200)
                        .collect();
                    (code, msg)
                })
        }
        _ => None,
    };
    if let Some((code, errmsg)) = code
        && code != 0
    {
        let msg = format!("robot errcode {code}: {errmsg}");
        return Err(if RATE_LIMITED.contains(&code) {
            SendError::Retryable(msg)
        } else {
            SendError::Permanent(msg)
        });
    }
    Ok(())
}
