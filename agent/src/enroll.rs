//! Enrollment and the agent's credentials: makes a key and CSR locally (the
//! key never leaves the host), trades them and a one-time token for a client
//! certificate, verifying the collector by the CA fingerprint in the token,
//! and stores the result in the data directory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use uuid::Uuid;
use xunjian_proto::{EnrollRequest, enrollment_client::EnrollmentClient, token};

use crate::config::{CollectorUrl, parse_collector_url};

/// Why enrollment failed, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("{0}")]
    Token(String),
    #[error("invalid collector address: {0}")]
    Url(String),
    #[error(
        "this agent is already enrolled as {agent_id} (credentials in {dir}); remove them to enroll again"
    )]
    AlreadyEnrolled { agent_id: Uuid, dir: PathBuf },
    #[error("cannot connect to the collector at {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("the collector refused enrollment: {0}")]
    Refused(String),
    #[error("the collector's answer is not usable: {0}")]
    BadAnswer(String),
    #[error("cannot create the key or CSR: {0}")]
    Key(rcgen::Error),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What `enroll` stores, and what `run` needs to stream.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub agent_id: Uuid,
    pub collector_url: String,
    pub key_pem: String,
    pub cert_pem: String,
    pub ca_pem: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    agent_id: Uuid,
    collector: String,
    enrolled_at: String,
}

const KEY_FILE: &str = "agent.key";
const CERT_FILE: &str = "agent.crt";
const CA_FILE: &str = "ca.crt";
const IDENTITY_FILE: &str = "identity.toml";

impl Credentials {
    /// Loads stored credentials; `Ok(None)` when this data directory has not
    /// been enrolled.
    pub fn load(data_dir: &Path) -> Result<Option<Self>, EnrollError> {
        let id_path = data_dir.join(IDENTITY_FILE);
        if !id_path.exists() {
            return Ok(None);
        }
        let id: IdentityFile = toml::from_str(&read(&id_path)?).map_err(|e| EnrollError::Io {
            what: "invalid",
            path: id_path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(Some(Self {
            agent_id: id.agent_id,
            collector_url: id.collector,
            key_pem: read(&data_dir.join(KEY_FILE))?,
            cert_pem: read(&data_dir.join(CERT_FILE))?,
            ca_pem: read(&data_dir.join(CA_FILE))?,
        }))
    }

    fn save(&self, data_dir: &Path) -> Result<(), EnrollError> {
        create_dir_private(data_dir)?;
        write_file(&data_dir.join(KEY_FILE), self.key_pem.as_bytes(), 0o600)?;
        write_file(&data_dir.join(CERT_FILE), self.cert_pem.as_bytes(), 0o644)?;
        write_file(&data_dir.join(CA_FILE), self.ca_pem.as_bytes(), 0o644)?;
        let id = IdentityFile {
            agent_id: self.agent_id,
            collector: self.collector_url.clone(),
            enrolled_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        let text = toml::to_string(&id).map_err(|e| EnrollError::BadAnswer(e.to_string()))?;
        // Written last: its presence means the enrollment is complete.
        write_file(&data_dir.join(IDENTITY_FILE), text.as_bytes(), 0o644)
    }
}

/// Enrolls this host with the collector at `collector_url` using a token from
/// `xunjian token create`, and stores the credentials in `data_dir`.
pub async fn enroll(
    data_dir: &Path,
    collector_url: &str,
    token_text: &str,
    server_name: Option<&str>,
) -> Result<Credentials, EnrollError> {
    let token = token::parse(token_text).map_err(EnrollError::Token)?;
    let url = parse_collector_url(collector_url).map_err(EnrollError::Url)?;
    if let Some(existing) = Credentials::load(data_dir)? {
        return Err(EnrollError::AlreadyEnrolled {
            agent_id: existing.agent_id,
            dir: data_dir.to_owned(),
        });
    }
    let hostname = sysinfo::System::host_name().unwrap_or_default();
    let key = KeyPair::generate().map_err(EnrollError::Key)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, hostname.clone());
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key).map_err(EnrollError::Key)?;

    let verifier = Arc::new(PinnedCa::new(&token.ca_sha256));
    let channel = pinned_channel(&url, server_name, verifier.clone()).await?;
    let response = EnrollmentClient::new(channel)
        .enroll(EnrollRequest {
            token: token.secret.clone(),
            csr_der: csr.der().to_vec(),
            hostname,
            agent_version: crate::VERSION.to_owned(),
        })
        .await
        .map_err(|s| EnrollError::Refused(format!("{:?}: {}", s.code(), s.message())))?
        .into_inner();

    let agent_id = Uuid::parse_str(&response.agent_id).map_err(|_| {
        EnrollError::BadAnswer(format!("agent id {:?} is not a UUID", response.agent_id))
    })?;
    // The CA we will trust from now on must be the one the token pinned.
    let ca_der = first_cert_der(&response.ca_chain_pem)
        .ok_or_else(|| EnrollError::BadAnswer("no CA certificate in the answer".into()))?;
    if hex::encode(Sha256::digest(&ca_der)) != token.ca_sha256 {
        return Err(EnrollError::BadAnswer(
            "the CA certificate sent does not match the token's fingerprint".into(),
        ));
    }
    if first_cert_der(&response.certificate_pem).is_none() {
        return Err(EnrollError::BadAnswer(
            "no client certificate in the answer".into(),
        ));
    }
    let creds = Credentials {
        agent_id,
        collector_url: url.url.clone(),
        key_pem: key.serialize_pem(),
        cert_pem: response.certificate_pem,
        ca_pem: response.ca_chain_pem,
    };
    creds.save(data_dir)?;
    tracing::info!(agent = %agent_id, collector = %url.url, "enrolled");
    Ok(creds)
}

/// A channel whose server certificate must chain to the pinned CA.
async fn pinned_channel(
    url: &CollectorUrl,
    server_name: Option<&str>,
    verifier: Arc<PinnedCa>,
) -> Result<Channel, EnrollError> {
    let connect_err = |detail: String| EnrollError::Connect {
        url: url.url.clone(),
        detail,
    };
    let tls = ClientTlsConfig::new().domain_name(server_name.unwrap_or(&url.host).to_owned());
    let endpoint = Endpoint::from_shared(url.url.clone())
        .map_err(|e| connect_err(e.to_string()))?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .tls_config_with_verifier(tls, verifier.clone())
        .map_err(|e| connect_err(e.to_string()))?;
    endpoint.connect().await.map_err(|e| {
        let detail = verifier
            .failure()
            .unwrap_or_else(|| crate::transport::error_chain(&e));
        connect_err(detail)
    })
}

/// Verifies the server certificate against the one CA whose SHA-256 the
/// token carries, taken from the chain the server presents.
#[derive(Debug)]
struct PinnedCa {
    pin: String,
    provider: Arc<CryptoProvider>,
    failure: Mutex<Option<String>>,
}

impl PinnedCa {
    fn new(pin: &str) -> Self {
        Self {
            pin: pin.to_owned(),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            failure: Mutex::new(None),
        }
    }

    fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    fn fail(&self, msg: String) -> rustls::Error {
        if let Ok(mut f) = self.failure.lock() {
            *f = Some(msg.clone());
        }
        rustls::Error::General(msg)
    }
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| hex::encode(Sha256::digest(c.as_ref())) == self.pin)
            .ok_or_else(|| {
                self.fail(
                    "the collector's CA does not match the fingerprint in the token (wrong collector, or a token from another one)"
                        .into(),
                )
            })?;
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| self.fail(format!("the pinned CA certificate is unusable: {e}")))?;
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| self.fail(e.to_string()))?;
        webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| {
                self.fail(format!(
                    "the collector's certificate is not valid for {server_name:?}: {e} (add the name to [server] names in collector.toml, or pass --server-name)"
                ))
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn first_cert_der(pem: &str) -> Option<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()?
        .ok()
        .map(|c| c.to_vec())
}

fn read(path: &Path) -> Result<String, EnrollError> {
    std::fs::read_to_string(path).map_err(|source| EnrollError::Io {
        what: "cannot read",
        path: path.to_owned(),
        source,
    })
}

fn create_dir_private(dir: &Path) -> Result<(), EnrollError> {
    crate::fsutil::create_dir_private(dir).map_err(|source| EnrollError::Io {
        what: "cannot create directory",
        path: dir.to_owned(),
        source,
    })
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), EnrollError> {
    crate::fsutil::write_atomic(path, bytes, mode).map_err(|source| EnrollError::Io {
        what: "cannot write",
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_credentials_are_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Credentials::load(dir.path()).unwrap().is_none());
    }

    #[test]
    fn saved_credentials_load_back_with_a_private_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let creds = Credentials {
            agent_id: Uuid::new_v4(),
            collector_url: "https://127.0.0.1:7443".into(),
            key_pem: "KEY".into(),
            cert_pem: "CERT".into(),
            ca_pem: "CA".into(),
        };
        creds.save(dir.path()).unwrap();
        let back = Credentials::load(dir.path()).unwrap().unwrap();
        assert_eq!(back.agent_id, creds.agent_id);
        assert_eq!(back.key_pem, "KEY");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[tokio::test]
    async fn bad_token_or_url_fails_before_any_connection() {
        let dir = tempfile::tempdir().unwrap();
        let err = enroll(dir.path(), "https://127.0.0.1:1", "nope", None)
            .await
            .unwrap_err();
        assert!(matches!(err, EnrollError::Token(_)), "{err}");
        let t = token::format(&"a".repeat(32), &"b".repeat(64));
        let err = enroll(dir.path(), "http://127.0.0.1:1", &t, None)
            .await
            .unwrap_err();
        assert!(matches!(err, EnrollError::Url(_)), "{err}");
        assert!(Credentials::load(dir.path()).unwrap().is_none());
    }
}
