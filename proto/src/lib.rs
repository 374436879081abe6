//! The Xunjian wire protocol: prost messages and tonic services generated from
//! `xunjian/v1/xunjian.proto` (package `xunjian.v1`).

/// Package `xunjian.v1`.
pub mod v1 {
    #![allow(clippy::doc_lazy_continuation, clippy::large_enum_variant)]
    tonic::include_proto!("xunjian.v1");
}

pub mod codec;

pub use v1::*;

/// Reports whose encoding is larger than this go by `Ingest.Submit`, not on
/// the stream: see the proto. 16 KiB holds a routine report (about 100
/// samples and 10 check results is 6 KiB) with room to spare.
pub const INLINE_REPORT_MAX_BYTES: usize = 16 * 1024;

/// Status metadata naming the one report whose content the collector will
/// never store (see the proto's `Ingest`): the agent quarantines it rather
/// than resend it forever ahead of everything after it.
pub const REJECTED_SEQUENCE_METADATA: &str = "xunjian-rejected-sequence";

/// Prefix of the URI SAN that carries an agent's identity in its client
/// certificate: `xunjian://agent/<uuid>`.
pub const AGENT_URI_PREFIX: &str = "xunjian://agent/";

/// The enrollment token as printed by `xunjian token create` and given to
/// `xunjian-agent enroll --token`: `xj1.<secret>.<ca-sha256>`. The secret
/// is what the collector checks (it stores only its hash); the CA
/// fingerprint lets the agent verify, on its very first connection, that it
/// is talking to the right collector.
pub mod token {
    const PREFIX: &str = "xj1";

    /// A parsed enrollment token.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct EnrollmentToken {
        /// 32 lower-case hex characters.
        pub secret: String,
        /// SHA-256 of the collector CA certificate (DER), 64 lower-case hex characters.
        pub ca_sha256: String,
    }

    /// Joins a secret and a CA fingerprint into the printed token.
    pub fn format(secret: &str, ca_sha256: &str) -> String {
        format!("{PREFIX}.{secret}.{ca_sha256}")
    }

    /// Splits and checks a printed token.
    pub fn parse(text: &str) -> Result<EnrollmentToken, String> {
        let mut parts = text.trim().split('.');
        let (Some(PREFIX), Some(secret), Some(ca), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("an enrollment token looks like xj1.<32 hex>.<64 hex>; copy it whole from `xunjian token create`".into());
        };
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(secret, 32) || !hex(ca, 64) {
            return Err("the enrollment token is damaged (wrong length or not hex); copy it whole from `xunjian token create`".into());
        }
        Ok(EnrollmentToken {
            secret: secret.to_ascii_lowercase(),
            ca_sha256: ca.to_ascii_lowercase(),
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn round_trip_and_damage() {
            let secret = "0123456789abcdef0123456789abcdef";
            let ca = "ab".repeat(32);
            let t = format(secret, &ca);
            assert_eq!(
                parse(&t).unwrap(),
                EnrollmentToken {
                    secret: secret.into(),
                    ca_sha256: ca.clone()
                }
            );
            assert!(parse(&t[..t.len() - 1]).is_err());
            assert!(parse(&format!("xj2.{secret}.{ca}")).is_err());
            assert!(parse(&format!("{t}.x")).is_err());
            assert!(parse("").is_err());
        }
    }
}
