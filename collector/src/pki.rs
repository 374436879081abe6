//! The collector's private CA: creates and reuses the CA and server
//! certificate, signs agents' CSRs, and reads an agent's identity back out of
//! a verified client certificate.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use xunjian_proto::AGENT_URI_PREFIX;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Rcgen {
        what: &'static str,
        source: rcgen::Error,
    },
    #[error("the certificate signing request is not valid: {0}")]
    BadCsr(rcgen::Error),
}

/// Why a client certificate does not carry a usable agent identity.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("the client certificate cannot be parsed")]
    Unparsable,
    #[error("the client certificate has no `{AGENT_URI_PREFIX}<id>` URI SAN")]
    NoAgentUri,
    #[error("the client certificate has {0} URI SANs; exactly one is allowed")]
    SeveralUris(usize),
    #[error("the client certificate's agent id {0:?} is not a UUID")]
    BadId(String),
}

/// The CA and server identity, loaded from or created in the PKI directory.
pub struct Pki {
    dir: PathBuf,
    ca_pem: String,
    ca_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const SERVER_CERT: &str = "server.crt";
const SERVER_KEY: &str = "server.key";

/// Agent certificates are valid this long; renewal is not built yet, so it is
/// generous.
const AGENT_CERT_DAYS: i64 = 5 * 365;
const SERVER_CERT_DAYS: i64 = 5 * 365;
const CA_CERT_DAYS: i64 = 20 * 365;

impl Pki {
    /// Loads the CA from `dir`, creating it (keys written 0600) on first use.
    pub fn load_or_create(dir: &Path) -> Result<Self, PkiError> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        if !cert_path.exists() {
            create_dir_private(dir)?;
            let key = KeyPair::generate().map_err(rcgen_err("generating the CA key"))?;
            let mut params = CertificateParams::default();
            params.distinguished_name = dn(&format!(
                "Xunjian collector CA {}",
                &Uuid::new_v4().simple().to_string()[..8]
            ));
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let now = OffsetDateTime::now_utc();
            params.not_before = now - Duration::hours(1);
            params.not_after = now + Duration::days(CA_CERT_DAYS);
            params.serial_number = Some(random_serial());
            let cert = params
                .self_signed(&key)
                .map_err(rcgen_err("self-signing the CA certificate"))?;
            write_private(&key_path, key.serialize_pem().as_bytes())?;
            write_public(&cert_path, cert.pem().as_bytes())?;
            tracing::info!(path = %cert_path.display(), "created collector CA");
        }
        let ca_pem = read(&cert_path, "reading the CA certificate")?;
        let key_pem = read(&key_path, "reading the CA key")?;
        let key = KeyPair::from_pem(&key_pem).map_err(rcgen_err("parsing the CA key"))?;
        let ca_der = pem_to_der(&ca_pem).ok_or_else(|| PkiError::Io {
            what: "no certificate in",
            path: cert_path.clone(),
            source: std::io::Error::other("empty PEM"),
        })?;
        let issuer = Issuer::from_ca_cert_der(&ca_der.clone().into(), key)
            .map_err(rcgen_err("loading the CA certificate"))?;
        Ok(Self {
            dir: dir.to_owned(),
            ca_pem,
            ca_der,
            issuer,
        })
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// SHA-256 of the CA certificate's DER, lower-case hex: what enrollment
    /// tokens pin.
    pub fn ca_fingerprint(&self) -> String {
        hex::encode(Sha256::digest(&self.ca_der))
    }

    /// Returns the server certificate chain (server then CA) and key, PEM,
    /// reusing the stored one when it already covers `names`.
    pub fn server_identity(&self, names: &[String]) -> Result<(String, String), PkiError> {
        let mut wanted: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        if let Some(host) = sysinfo_hostname() {
            wanted.push(host);
        }
        for n in names {
            if !wanted.contains(n) {
                wanted.push(n.clone());
            }
        }
        let cert_path = self.dir.join(SERVER_CERT);
        let key_path = self.dir.join(SERVER_KEY);
        if cert_path.exists() && key_path.exists() {
            let pem = read(&cert_path, "reading the server certificate")?;
            let covered = pem_to_der(&pem)
                .map(|der| dns_and_ip_sans(&der))
                .is_some_and(|have| names.iter().all(|n| have.contains(n)));
            if covered {
                let key = read(&key_path, "reading the server key")?;
                return Ok((format!("{pem}{}", self.ca_pem), key));
            }
            tracing::info!(
                "server certificate does not cover the configured names; issuing a new one"
            );
        }
        let key = KeyPair::generate().map_err(rcgen_err("generating the server key"))?;
        let mut params = CertificateParams::new(wanted)
            .map_err(rcgen_err("building server certificate names"))?;
        params.distinguished_name = dn("xunjian collector");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(SERVER_CERT_DAYS);
        params.serial_number = Some(random_serial());
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(rcgen_err("signing the server certificate"))?;
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        write_public(&cert_path, cert.pem().as_bytes())?;
        Ok((
            format!("{}{}", cert.pem(), self.ca_pem),
            key.serialize_pem(),
        ))
    }

    /// Signs an agent's CSR. Everything the CSR asks for except its public
    /// key is ignored: the identity is ours to assign.
    pub fn sign_agent(&self, csr_der: &[u8], agent_id: Uuid) -> Result<SignedAgentCert, PkiError> {
        let csr = CertificateSigningRequestParams::from_der(&csr_der.to_vec().into())
            .map_err(PkiError::BadCsr)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&agent_id.to_string());
        let uri = format!("{AGENT_URI_PREFIX}{agent_id}");
        params.subject_alt_names = vec![SanType::URI(
            uri.try_into()
                .map_err(rcgen_err("building the agent URI SAN"))?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(AGENT_CERT_DAYS);
        let serial = random_serial();
        params.serial_number = Some(serial.clone());
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(rcgen_err("signing the agent certificate"))?;
        Ok(SignedAgentCert {
            pem: cert.pem(),
            serial_hex: hex::encode(serial.to_bytes()),
            sha256_hex: hex::encode(Sha256::digest(cert.der())),
        })
    }
}

/// A freshly signed agent certificate.
#[derive(Debug, Clone)]
pub struct SignedAgentCert {
    pub pem: String,
    pub serial_hex: String,
    pub sha256_hex: String,
}

/// The agent id in a (TLS-verified) client certificate: the one URI SAN of
/// the form `xunjian://agent/<uuid>`. Several URI SANs are refused, so a
/// certificate can never speak for two agents.
pub fn agent_identity(cert_der: &[u8]) -> Result<Uuid, IdentityError> {
    let (_, cert) = X509Certificate::from_der(cert_der).map_err(|_| IdentityError::Unparsable)?;
    let mut uris = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                uris.push(*uri);
            }
        }
    }
    match uris.as_slice() {
        [] => Err(IdentityError::NoAgentUri),
        [uri] => {
            let id = uri
                .strip_prefix(AGENT_URI_PREFIX)
                .ok_or(IdentityError::NoAgentUri)?;
            Uuid::parse_str(id).map_err(|_| IdentityError::BadId(id.to_owned()))
        }
        many => Err(IdentityError::SeveralUris(many.len())),
    }
}

/// SHA-256 of a DER certificate, lower-case hex.
pub fn cert_sha256(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn dns_and_ip_sans(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => out.push((*d).to_owned()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => out.push(
                        std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())
                            .to_string(),
                    ),
                    16 => out.push(
                        std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())
                            .to_string(),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    out
}

fn sysinfo_hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    // Only names that are valid DNS names can go into the certificate.
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    valid.then(|| name.to_owned())
}

/// The first PEM block's DER bytes.
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()?
        .ok()
        .map(|c| c.to_vec())
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Xunjian");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive INTEGER
    SerialNumber::from_slice(&bytes)
}

fn rcgen_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |source| PkiError::Rcgen { what, source }
}

fn read(path: &Path, what: &'static str) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        what,
        path: path.to_owned(),
        source,
    })
}

fn create_dir_private(dir: &Path) -> Result<(), PkiError> {
    xunjian_agent::fsutil::create_dir_private(dir).map_err(|source| PkiError::Io {
        what: "creating directory",
        path: dir.to_owned(),
        source,
    })
}

/// Writes a file readable by its owner only (private keys).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    write_mode(path, bytes, 0o600)
}

fn write_public(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    write_mode(path, bytes, 0o644)
}

fn write_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    xunjian_agent::fsutil::write_atomic(path, bytes, mode).map_err(|source| PkiError::Io {
        what: "writing",
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr() -> (KeyPair, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        // A hostile CSR asking for someone else's identity: must be ignored.
        params.subject_alt_names = vec![SanType::URI(
            format!("{AGENT_URI_PREFIX}{}", Uuid::nil())
                .try_into()
                .unwrap(),
        )];
        let der = params.serialize_request(&key).unwrap().der().to_vec();
        (key, der)
    }

    #[test]
    fn ca_is_created_once_with_private_key_mode() {
        let dir = tempfile::tempdir().unwrap();
        let a = Pki::load_or_create(dir.path()).unwrap();
        let b = Pki::load_or_create(dir.path()).unwrap();
        assert_eq!(a.ca_fingerprint(), b.ca_fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(CA_KEY))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn server_identity_is_reused_until_names_change() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        let (chain1, key1) = pki.server_identity(&[]).unwrap();
        let (chain2, key2) = pki.server_identity(&[]).unwrap();
        assert_eq!((chain1.clone(), key1.clone()), (chain2, key2));
        assert!(chain1.ends_with(pki.ca_pem()));
        let (_, key3) = pki
            .server_identity(&["collector.example.com".into()])
            .unwrap();
        assert_ne!(key1, key3);
    }

    #[test]
    fn signed_agent_cert_carries_only_the_assigned_identity() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        let (_key, der) = csr();
        let id = Uuid::new_v4();
        let signed = pki.sign_agent(&der, id).unwrap();
        let cert_der = pem_to_der(&signed.pem).unwrap();
        assert_eq!(agent_identity(&cert_der), Ok(id));
        assert_eq!(signed.sha256_hex, cert_sha256(&cert_der));
    }

    #[test]
    fn garbage_csr_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        assert!(matches!(
            pki.sign_agent(b"not a csr", Uuid::new_v4()),
            Err(PkiError::BadCsr(_))
        ));
    }

    #[test]
    fn several_uri_sans_are_refused() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![
            SanType::URI(
                format!("{AGENT_URI_PREFIX}{}", Uuid::new_v4())
                    .try_into()
                    .unwrap(),
            ),
            SanType::URI(
                format!("{AGENT_URI_PREFIX}{}", Uuid::new_v4())
                    .try_into()
                    .unwrap(),
            ),
        ];
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            agent_identity(cert.der()),
            Err(IdentityError::SeveralUris(2))
        );
        let plain = CertificateParams::new(vec!["example.com".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(agent_identity(plain.der()), Err(IdentityError::NoAgentUri));
        let mut bad = CertificateParams::default();
        bad.subject_alt_names = vec![SanType::URI(
            format!("{AGENT_URI_PREFIX}not-a-uuid").try_into().unwrap(),
        )];
        let cert = bad.self_signed(&key).unwrap();
        assert!(matches!(
            agent_identity(cert.der()),
            Err(IdentityError::BadId(_))
        ));
        assert_eq!(agent_identity(b"junk"), Err(IdentityError::Unparsable));
    }
}
