//! One email over SMTP (lettre, rustls with ring; no OpenSSL).
//!
//! A new connection per message: at one message per host per group
//! interval, pooling would buy nothing and would hold idle connections that
//! servers drop anyway.

use std::time::Duration;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::config::{EmailSettings, SmtpSecurity};
use super::deliver::SendError;
use super::format::EmailText;

pub(super) async fn send(
    s: &EmailSettings,
    text: EmailText,
    timeout: Duration,
) -> Result<(), SendError> {
    let mut msg = Message::builder()
        .from(s.from.clone())
        .subject(text.subject)
        .header(ContentType::TEXT_PLAIN)
        // Base64 keeps the Chinese text 7-bit clean whatever the relay
        // advertises (no reliance on 8BITMIME).
        .header(ContentTransferEncoding::Base64);
    for to in &s.to {
        msg = msg.to(to.clone());
    }
    let msg = msg
        .body(text.body)
        .map_err(|e| SendError::Permanent(format!("building the message: {e}")))?;

    let tls = |host: &str| {
        TlsParameters::new(host.to_owned())
            .map_err(|e| SendError::Permanent(format!("TLS setup: {e}")))
    };
    // STARTTLS is required, not opportunistic: a stripped STARTTLS must not
    // silently send credentials in clear.
    let tls = match s.security {
        SmtpSecurity::Starttls => Tls::Required(tls(&s.host)?),
        SmtpSecurity::Tls => Tls::Wrapper(tls(&s.host)?),
        SmtpSecurity::None => Tls::None,
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.clone())
        .port(s.port)
        .tls(tls)
        .timeout(Some(timeout));
    if let Some((user, password)) = &s.credentials {
        transport = transport.credentials(Credentials::new(user.clone(), password.0.clone()));
    }
    match transport.build().send(msg).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
        Err(e) => Err(SendError::Retryable(e.to_string())),
    }
}
