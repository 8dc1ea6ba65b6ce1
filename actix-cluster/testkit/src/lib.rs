//! Throwaway certificates for actix-cluster's tests, examples and benches.
//!
//! A cluster authenticates its nodes with mutual TLS: every node holds a certificate issued by
//! the cluster CA whose DNS subjectAltName is the node's name. [`TestCa`] creates such a CA in
//! memory and issues node certificates from it, so a test can stand up a realistic secure
//! cluster without openssl or files checked into the repository.
//!
//! These keys are generated on the fly and never meant to protect anything; do not use this
//! crate to provision a production cluster.
//!
//! ```
//! use actix_cluster_testkit::TestCa;
//!
//! let ca = TestCa::new("demo")?;
//! let node = ca.issue("node-1")?;
//! assert!(ca.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
//! assert!(node.key_pem.contains("PRIVATE KEY"));
//! # Ok::<(), actix_cluster_testkit::CertError>(())
//! ```

mod node;
mod redis;
pub use node::{TEST_DEADLINE, TestNode, TestNodeError, plaintext, with_tls};
pub use redis::RedisServer;

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// Leaves live a year, as promised by [`TestCa::issue`].
const LEAF_LIFETIME: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// The CA outlives every leaf it issues, so a leaf never fails for its issuer's sake.
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// Why a certificate could not be created or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// rcgen refused the parameters (for example a name that is not a valid IA5 string) or key
    /// generation failed. Nothing was written.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// Creating a directory or writing a PEM file failed, or a node name would escape the target
    /// directory. Files written before the failure are left in place.
    #[error("writing certificate files failed: {0}")]
    Io(#[from] io::Error),
}

/// A cluster certificate authority that lives only in memory.
///
/// Its certificate is self-signed (ECDSA P-256) with the common name
/// `actix-cluster test CA <cluster>`; every certificate it issues chains directly to it.
pub struct TestCa {
    cluster: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl fmt::Debug for TestCa {
    // The signing key stays out of logs even for a test CA: a habit worth keeping everywhere.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCa")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

/// A node's certificate and private key, both PEM encoded.
#[derive(Clone)]
pub struct NodeCert {
    /// The leaf certificate (a single `CERTIFICATE` block; the CA is not appended).
    pub cert_pem: String,
    /// The leaf's PKCS#8 private key (`PRIVATE KEY` block).
    pub key_pem: String,
}

impl fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<elided>")
            .finish()
    }
}

impl TestCa {
    /// Creates a fresh CA for the cluster named `cluster`.
    ///
    /// Two CAs created with the same name are still unrelated (different keys), which is what
    /// tests use to prove that a foreign certificate is refused.
    pub fn new(cluster: &str) -> Result<Self, CertError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            format!("actix-cluster test CA {cluster}"),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_LIFETIME);

        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let issuer = CertifiedIssuer::self_signed(params, key)?;
        Ok(Self {
            cluster: cluster.to_owned(),
            issuer,
        })
    }

    /// The CA certificate in PEM: the trust root every node is configured with.
    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Issues a leaf for `node` whose only subjectAltName is the DNS name `node`.
    ///
    /// The leaf is usable as both TLS server and client (extended key usages serverAuth and
    /// clientAuth), because every cluster connection is mutually authenticated and either node
    /// may dial. It is valid from one day ago (tolerating clock skew between test machines) for
    /// one year.
    pub fn issue(&self, node: &str) -> Result<NodeCert, CertError> {
        self.issue_with_names(&[node])
    }

    /// Issues a leaf carrying each of `names` as a DNS subjectAltName, in order.
    ///
    /// The common name is the first name. An empty slice yields a certificate without any DNS
    /// name, which tests use to prove that such a peer is refused.
    pub fn issue_with_names(&self, names: &[&str]) -> Result<NodeCert, CertError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        if let Some(first) = names.first() {
            dn.push(DnType::CommonName, *first);
        }
        params.distinguished_name = dn;
        // Always DNS names, even for strings that parse as IP addresses: the cluster binds a
        // node's identity to a DNS name, never to an address.
        params.subject_alt_names = names
            .iter()
            .map(|name| Ok(SanType::DnsName((*name).try_into()?)))
            .collect::<Result<_, rcgen::Error>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, LEAF_LIFETIME);

        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(NodeCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Writes `dir/<node>/{ca.pem,node.pem,node.key}` for each node, creating directories.
    ///
    /// This is the layout `TlsConfig::from_dir` reads. On unix `node.key` is created with mode
    /// 0600 (and tightened to it if it already existed), so the key is never readable by other
    /// users, not even briefly. A node name that is empty, `.`/`..` or contains a path separator
    /// is refused with [`CertError::Io`] because it would write outside `dir`.
    pub fn write_node_dirs(&self, dir: &Path, nodes: &[&str]) -> Result<(), CertError> {
        // All names are checked before anything is written, so a typo leaves no partial tree.
        if let Some(node) = nodes.iter().find(|node| {
            node.is_empty() || **node == "." || **node == ".." || node.contains(['/', '\\'])
        }) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("node name {node:?} is not usable as a directory name"),
            )
            .into());
        }
        let ca_pem = self.ca_pem();
        for node in nodes {
            let cert = self.issue(node)?;
            let node_dir = dir.join(node);
            fs::create_dir_all(&node_dir)?;
            fs::write(node_dir.join("ca.pem"), &ca_pem)?;
            fs::write(node_dir.join("node.pem"), &cert.cert_pem)?;
            write_private(&node_dir.join("node.key"), cert.key_pem.as_bytes())?;
        }
        Ok(())
    }
}

/// Valid from one day ago for `lifetime`.
///
/// The dates are built as offsets from the epoch so that this crate needs no date library of its
/// own; rcgen's date type adds a `std::time::Duration` directly.
fn set_validity(params: &mut CertificateParams, lifetime: Duration) {
    // A clock before 1970 is a broken test machine; the epoch is as good a start as any.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let start = now.saturating_sub(DAY);
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + start;
    params.not_after = epoch + start + lifetime;
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};

    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // `mode` only applies when the file is created; a leftover key file keeps its old mode.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_that_would_escape_the_directory_are_refused() {
        let ca = TestCa::new("c1").expect("ca");
        let dir =
            std::env::temp_dir().join(format!("actix-cluster-testkit-{}", std::process::id()));

        for bad in ["", ".", "..", "../x", "a/b", "a\\b"] {
            let err = ca.write_node_dirs(&dir, &["node-1", bad]).expect_err(bad);
            assert!(matches!(err, CertError::Io(ref e) if e.kind() == io::ErrorKind::InvalidInput));
        }
        assert!(!dir.exists(), "nothing may be written for a refused name");
    }

    #[test]
    fn every_issued_certificate_has_its_own_key() {
        let ca = TestCa::new("c1").expect("ca");
        let (a, b) = (
            ca.issue("node-1").expect("a"),
            ca.issue("node-1").expect("b"),
        );
        assert_ne!(a.key_pem, b.key_pem);
        assert_ne!(a.cert_pem, b.cert_pem);
    }
}
