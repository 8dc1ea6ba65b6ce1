//! Mutual TLS between cluster nodes.
//!
//! Every node holds a certificate issued by the cluster CA whose DNS subjectAltName is the node's
//! name. Both ends of every connection present their certificate and both verify the other's
//! against the cluster CA roots, so a process without a CA-issued certificate cannot join,
//! listen in, or impersonate a member.
//!
//! # What is verified where
//!
//! * **Accepting side**: a client certificate is mandatory and must chain to the cluster CA,
//!   be within its validity period and allow client authentication (rustls'
//!   `WebPkiClientVerifier`). TLS does not bind it to any name: the acceptor does not yet know
//!   who is calling.
//! * **Dialing side, peer known** ([`dial_server_name`] with `Some(node)`): the standard rustls
//!   web-PKI check, including that the certificate names `node`.
//! * **Dialing side, peer unknown** (dialing a seed by address, `dial_server_name(None)`): the
//!   chain, validity period and server-auth usage are still checked in full by webpki, using the
//!   certificate's own first DNS name as the name to match. Only the binding between that name
//!   and a node identity is deferred. A certificate without a DNS name is refused.
//!
//! TLS alone therefore proves "this peer holds *some* certificate of this cluster". The transport
//! completes the proof after its own handshake message: the node name the peer *claims* must be
//! one of [`peer_names`] of the certificate it presented, on both sides of the connection.
//! Without that check, any member could pose as any other.
//!
//! # Choices
//!
//! * Only the ring provider is used, passed explicitly to every builder; no process-wide default
//!   provider is installed, so several clusters (or the user's own rustls use) can coexist in one
//!   process.
//! * TLS 1.3 only: every node runs this crate, so there is no legacy peer to accommodate.
//! * No session resumption: connections are long-lived, and a resumed session would skip
//!   certificate verification, including the expiry check on a reconnect.
//! * In TLS 1.3 the client finishes its handshake before the server has judged the client
//!   certificate; a refused dialer learns it on its first read (an alert), not from `connect`.

use std::fmt;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::{self, PemObject as _};
use rustls_pki_types::{CertificateDer, DnsName, PrivateKeyDer, ServerName, UnixTime};

/// Why TLS material could not be loaded or turned into a working configuration.
///
/// All of these are configuration errors found before any connection is made; none of them is
/// worth retrying without changing the files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read (missing, unreadable). Nothing was loaded.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The cluster CA or node certificate input holds no `CERTIFICATE` block.
    ///
    /// `path` is the file read, or a label such as `<cluster ca pem>` for in-memory input.
    #[error("no certificate found in {}", path.display())]
    NoCertificate {
        /// The file (or in-memory input label) that held no certificate.
        path: PathBuf,
    },
    /// The key input holds no private key block (PKCS#8, SEC1 or PKCS#1).
    ///
    /// `path` is the file read, or `<node key pem>` for in-memory input.
    #[error("no private key found in {}", path.display())]
    NoPrivateKey {
        /// The file (or in-memory input label) that held no key.
        path: PathBuf,
    },
    /// A PEM block is malformed (bad base64, missing end marker, oversized section).
    #[error("invalid pem: {0}")]
    InvalidPem(String),
    /// rustls refused the material, for example a private key that does not match the node
    /// certificate or a CA certificate that cannot serve as a trust anchor.
    #[error("tls configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    /// A certificate cannot identify a node: it does not parse, carries no DNS name, is not
    /// accepted by the cluster CA roots, or (for a peer) was not presented at all.
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
}

/// Cluster mTLS material: the cluster CA's root certificate(s), this node's certificate chain and
/// private key.
///
/// Constructors check the material as far as possible without a peer: the PEM parses, the key
/// matches the certificate, the certificate names at least one DNS host and is accepted by the
/// cluster CA for both server and client use today. A mistake therefore surfaces when the
/// configuration is built, not as a handshake failure on every peer.
///
/// Cloning is cheap; the private key is shared, and `Debug` never prints it.
#[derive(Clone)]
pub struct TlsConfig {
    roots: Arc<[CertificateDer<'static>]>,
    /// Leaf first, then any intermediates, as sent to peers.
    chain: Arc<[CertificateDer<'static>]>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("roots", &self.roots.len())
            .field("chain", &self.chain.len())
            .field("names", &self.certificate_names().unwrap_or_default())
            .field("key", &"<elided>")
            .finish()
    }
}

const CA_PEM_LABEL: &str = "<cluster ca pem>";
const CERT_PEM_LABEL: &str = "<node certificate pem>";
const KEY_PEM_LABEL: &str = "<node key pem>";

impl TlsConfig {
    /// Loads the cluster CA certificate(s), this node's certificate chain (leaf first) and its
    /// private key from PEM files.
    ///
    /// # Errors
    ///
    /// [`TlsError::Io`] if a file cannot be read; otherwise as [`TlsConfig::from_pem`].
    pub fn from_pem_files(
        ca: impl AsRef<Path>,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let (ca, cert, key) = (ca.as_ref(), cert.as_ref(), key.as_ref());
        Self::parse((&read(ca)?, ca), (&read(cert)?, cert), (&read(key)?, key))
    }

    /// Like [`TlsConfig::from_pem_files`], with the PEM contents already in memory.
    ///
    /// # Errors
    ///
    /// [`TlsError::NoCertificate`] / [`TlsError::NoPrivateKey`] for an input without the
    /// expected block, [`TlsError::InvalidPem`] for a malformed one, [`TlsError::Rustls`] if the
    /// key does not match the certificate or a CA certificate is unusable, and
    /// [`TlsError::InvalidCertificate`] if the certificate names no DNS host or is not accepted
    /// by the cluster CA (another CA, expired, not yet valid, wrong key usage).
    pub fn from_pem(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        Self::parse(
            (ca_pem, Path::new(CA_PEM_LABEL)),
            (cert_pem, Path::new(CERT_PEM_LABEL)),
            (key_pem, Path::new(KEY_PEM_LABEL)),
        )
    }

    /// Loads a directory holding `ca.pem`, `node.pem` and `node.key`: the layout the `gen-certs`
    /// example writes, one directory per node.
    ///
    /// # Errors
    ///
    /// As [`TlsConfig::from_pem_files`].
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, TlsError> {
        let dir = dir.as_ref();
        Self::from_pem_files(
            dir.join("ca.pem"),
            dir.join("node.pem"),
            dir.join("node.key"),
        )
    }

    /// The DNS names (subjectAltName) of this node's own leaf certificate, lower-cased.
    ///
    /// The node's name must be among them, or peers will refuse it.
    ///
    /// # Errors
    ///
    /// [`TlsError::InvalidCertificate`] if the leaf does not parse or names no DNS host, which
    /// the constructors already rule out.
    pub fn certificate_names(&self) -> Result<Vec<String>, TlsError> {
        let leaf = self.chain.first().ok_or_else(|| {
            TlsError::InvalidCertificate("this node has no certificate".to_owned())
        })?;
        leaf_names(leaf)
    }

    /// Builds both rustls configurations, checking the material against itself first.
    ///
    /// Call once per node and share the result: building parses the key and the roots.
    pub(crate) fn build(&self) -> Result<TlsContext, TlsError> {
        let parts = self.verifiers()?;
        self.check_own_certificate(&parts)?;
        self.contexts(parts)
    }

    fn parse(
        (ca_pem, ca_path): (&[u8], &Path),
        (cert_pem, cert_path): (&[u8], &Path),
        (key_pem, key_path): (&[u8], &Path),
    ) -> Result<Self, TlsError> {
        let key = match PrivateKeyDer::from_pem_slice(key_pem) {
            Ok(key) => key,
            Err(pem::Error::NoItemsFound) => {
                return Err(TlsError::NoPrivateKey {
                    path: key_path.to_owned(),
                });
            }
            Err(e) => return Err(invalid_pem(key_path, &e)),
        };
        let config = Self {
            roots: certificates(ca_pem, ca_path)?.into(),
            chain: certificates(cert_pem, cert_path)?.into(),
            key: Arc::new(key),
        };
        // Names first: a nameless certificate gets a clearer error than the chain check's.
        config.certificate_names()?;
        config.build()?;
        Ok(config)
    }

    fn verifiers(&self) -> Result<Verifiers, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut store = RootCertStore::empty();
        for root in self.roots.iter() {
            store.add(root.clone())?;
        }
        let store = Arc::new(store);
        let client = WebPkiClientVerifier::builder_with_provider(store.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::InvalidCertificate(format!("cluster ca roots: {e}")))?;
        let server = WebPkiServerVerifier::builder_with_provider(store, provider.clone())
            .build()
            .map_err(|e| TlsError::InvalidCertificate(format!("cluster ca roots: {e}")))?;
        Ok(Verifiers {
            provider,
            client,
            server: Arc::new(ClusterServerVerifier { inner: server }),
        })
    }

    /// Runs this node's own certificate through the verifiers its peers will use, so that a
    /// certificate from another CA, an expired one, or one lacking server or client usage is
    /// reported here with its cause.
    fn check_own_certificate(&self, verifiers: &Verifiers) -> Result<(), TlsError> {
        let (leaf, intermediates) = self.chain.split_first().ok_or_else(|| {
            TlsError::InvalidCertificate("this node has no certificate".to_owned())
        })?;
        let now = UnixTime::now();
        let refused = |role: &str, e: rustls::Error| {
            TlsError::InvalidCertificate(format!(
                "this node's certificate is not accepted by the cluster ca as a tls {role}: {e}"
            ))
        };
        verifiers
            .server
            .verify_server_cert(leaf, intermediates, &dial_server_name(None), &[], now)
            .map_err(|e| refused("server", e))?;
        verifiers
            .client
            .verify_client_cert(leaf, intermediates, now)
            .map_err(|e| refused("client", e))?;
        Ok(())
    }

    fn contexts(&self, verifiers: Verifiers) -> Result<TlsContext, TlsError> {
        let Verifiers {
            provider,
            client,
            server,
        } = verifiers;

        let mut server_config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(client)
            .with_single_cert(self.chain.to_vec(), self.key.clone_key())?;
        server_config.session_storage = Arc::new(NoServerSessionStorage {});
        server_config.send_tls13_tickets = 0;

        let mut client_config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(server)
            .with_client_auth_cert(self.chain.to_vec(), self.key.clone_key())?;
        // A resumed session skips certificate verification, and every identity-deferred dial
        // shares one placeholder server name: a cached session must never be offered.
        client_config.resumption = rustls::client::Resumption::disabled();

        Ok(TlsContext {
            acceptor: Arc::new(server_config).into(),
            connector: Arc::new(client_config).into(),
        })
    }
}

struct Verifiers {
    provider: Arc<CryptoProvider>,
    client: Arc<dyn ClientCertVerifier>,
    server: Arc<ClusterServerVerifier>,
}

/// The rustls configurations of one node, built once by [`TlsConfig::build`]; cheap to clone.
#[derive(Clone)]
pub(crate) struct TlsContext {
    /// Accepts inbound connections; requires a cluster-CA client certificate.
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
    /// Dials peers; pass [`dial_server_name`] as the server name.
    pub(crate) connector: tokio_rustls::TlsConnector,
}

/// The DNS SAN names of the peer's leaf certificate after a completed handshake (either side),
/// lower-cased, for binding the node name the peer claims to the certificate it presented.
///
/// Wildcard names are left out: a node identity is one exact name, and the caller compares
/// exactly. Fails if there is no peer certificate or it names no DNS host.
pub(crate) fn peer_names(certs: Option<&[CertificateDer<'_>]>) -> Result<Vec<String>, TlsError> {
    let leaf = certs
        .and_then(<[_]>::first)
        .ok_or_else(|| TlsError::InvalidCertificate("peer presented no certificate".to_owned()))?;
    leaf_names(leaf)
}

/// Server name meaning "verify the chain, defer the identity to the transport". An IP address
/// because node names are DNS names: no node name can ever turn into it.
const DEFERRED_NAME: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
/// Server name meaning "refuse whatever the peer presents", for a node name that is not a valid
/// DNS name and so cannot be verified.
const UNVERIFIABLE_NAME: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

/// The server name to pass to `TlsConnector::connect`.
///
/// With `Some(node)` the peer's certificate must name `node`. With `None` (dialing a seed by
/// address, before knowing who answers) the returned placeholder makes the verifier check
/// everything but the name; the transport must then bind the claimed node name with
/// [`peer_names`]. The placeholder is the unspecified IP address, which no valid node name can
/// produce, and which rustls does not send as SNI.
pub(crate) fn dial_server_name(expected: Option<&str>) -> ServerName<'static> {
    let name = match expected {
        None => DEFERRED_NAME,
        Some(node) => match DnsName::try_from(node.to_ascii_lowercase()) {
            Ok(dns) => return ServerName::DnsName(dns),
            // Falling back to the deferred name would silently drop the check the caller asked
            // for; refusing is the only safe reading of an unverifiable expectation.
            Err(_) => UNVERIFIABLE_NAME,
        },
    };
    ServerName::IpAddress(name.into())
}

/// Dialer-side verifier: rustls' web-PKI verifier, except that the [`dial_server_name`]
/// placeholder defers the name binding.
#[derive(Debug)]
struct ClusterServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ClusterServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ServerName::IpAddress(ip) = server_name else {
            return self.inner.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            );
        };
        // Peers are never identified by address, so every IP name other than the deferred
        // placeholder (including the unverifiable one) is refused outright.
        if IpAddr::from(*ip) != DEFERRED_NAME {
            return Err(CertificateError::NotValidForName.into());
        }
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::from(CertificateError::BadEncoding))?;
        // Verifying against a name the certificate itself carries keeps every other webpki
        // check (chain, validity, key usage) intact; only the choice of name is the peer's.
        let own_name = cert
            .valid_dns_names()
            .filter(|name| !name.starts_with('*'))
            .find_map(|name| DnsName::try_from(name).ok())
            .ok_or(CertificateError::NotValidForName)?;
        self.inner.verify_server_cert(
            end_entity,
            intermediates,
            &ServerName::DnsName(own_name),
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

fn leaf_names(leaf: &CertificateDer<'_>) -> Result<Vec<String>, TlsError> {
    let cert = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| TlsError::InvalidCertificate(format!("cannot parse certificate: {e}")))?;
    let names: Vec<String> = cert
        .valid_dns_names()
        .filter(|name| !name.starts_with('*'))
        .map(str::to_ascii_lowercase)
        .collect();
    if names.is_empty() {
        return Err(TlsError::InvalidCertificate(
            "certificate carries no dns subjectaltname, so it cannot name a node".to_owned(),
        ));
    }
    Ok(names)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })
}

fn certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid_pem(path, &e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn invalid_pem(path: &Path, e: &pem::Error) -> TlsError {
    TlsError::InvalidPem(format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::time::Duration;

    use actix_cluster_testkit::{NodeCert, TestCa};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// Every handshake here completes or fails well within this; hitting it is a hang, a bug.
    const DEADLINE: Duration = Duration::from_secs(10);

    fn ca(cluster: &str) -> TestCa {
        TestCa::new(cluster).expect("test CA")
    }

    fn node(ca: &TestCa, name: &str) -> TlsConfig {
        let cert = ca.issue(name).expect("issue");
        TlsConfig::from_pem(
            ca.ca_pem().as_bytes(),
            cert.cert_pem.as_bytes(),
            cert.key_pem.as_bytes(),
        )
        .expect("valid node material")
    }

    /// Material the constructors would refuse, built anyway to prove that peers refuse it too.
    fn unchecked(roots: &TestCa, cert: &NodeCert) -> TlsContext {
        let config = TlsConfig {
            roots: certificates(roots.ca_pem().as_bytes(), Path::new("ca"))
                .expect("ca")
                .into(),
            chain: certificates(cert.cert_pem.as_bytes(), Path::new("cert"))
                .expect("cert")
                .into(),
            key: Arc::new(PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key")),
        };
        config
            .contexts(config.verifiers().expect("verifiers"))
            .expect("contexts")
    }

    fn build(config: &TlsConfig) -> TlsContext {
        config.build().expect("build")
    }

    /// Client and server outcome of one connection: the peer names each side saw, after one
    /// byte from server to client proves the session is usable.
    struct Outcome {
        client: io::Result<Vec<String>>,
        server: io::Result<Vec<String>>,
    }

    async fn handshake(
        connector: &tokio_rustls::TlsConnector,
        server_name: ServerName<'static>,
        acceptor: &tokio_rustls::TlsAcceptor,
    ) -> Outcome {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let client = async {
            let mut tls = connector.connect(server_name, client_io).await?;
            let names =
                peer_names(tls.get_ref().1.peer_certificates()).map_err(io::Error::other)?;
            // In TLS 1.3 the server judges the client certificate after the client is done;
            // only this read tells the client whether it was accepted.
            let mut byte = [0_u8; 1];
            tls.read_exact(&mut byte).await?;
            Ok(names)
        };
        let server = async {
            let mut tls = acceptor.accept(server_io).await?;
            let names =
                peer_names(tls.get_ref().1.peer_certificates()).map_err(io::Error::other)?;
            tls.write_all(b"!").await?;
            tls.flush().await?;
            Ok(names)
        };
        let (client, server) =
            tokio::time::timeout(DEADLINE, async { tokio::join!(client, server) })
                .await
                .expect("handshake hung");
        Outcome { client, server }
    }

    fn rustls_error(result: &io::Result<Vec<String>>) -> &rustls::Error {
        let err = result.as_ref().expect_err("handshake should have failed");
        err.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .unwrap_or_else(|| panic!("not a rustls verdict: {err:?}"))
    }

    fn is_name_mismatch(err: &rustls::Error) -> bool {
        matches!(
            err,
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            )
        )
    }

    #[tokio::test]
    async fn placeholder_dial_succeeds_within_cluster_and_both_sides_learn_peer_names() {
        let ca = ca("c1");
        let (n1, n2) = (build(&node(&ca, "node-1")), build(&node(&ca, "node-2")));

        let out = handshake(&n1.connector, dial_server_name(None), &n2.acceptor).await;

        assert_eq!(out.client.expect("client"), ["node-2"]);
        assert_eq!(out.server.expect("server"), ["node-1"]);
    }

    #[tokio::test]
    async fn dial_expecting_the_right_node_succeeds() {
        let ca = ca("c1");
        let (n1, n2) = (build(&node(&ca, "node-1")), build(&node(&ca, "node-2")));

        let out = handshake(
            &n1.connector,
            dial_server_name(Some("node-2")),
            &n2.acceptor,
        )
        .await;

        assert_eq!(out.client.expect("client"), ["node-2"]);
        assert_eq!(out.server.expect("server"), ["node-1"]);
    }

    #[tokio::test]
    async fn dial_expecting_another_node_fails_client_handshake() {
        let ca = ca("c1");
        let (n1, n2) = (build(&node(&ca, "node-1")), build(&node(&ca, "node-2")));

        let out = handshake(
            &n1.connector,
            dial_server_name(Some("node-3")),
            &n2.acceptor,
        )
        .await;

        let err = rustls_error(&out.client);
        assert!(is_name_mismatch(err), "{err:?}");
        assert!(out.server.is_err());
    }

    #[tokio::test]
    async fn unverifiable_expected_name_is_refused_rather_than_deferred() {
        let ca = ca("c1");
        let (n1, n2) = (build(&node(&ca, "node-1")), build(&node(&ca, "node-2")));
        let name = dial_server_name(Some("not a dns name"));
        assert_ne!(name, dial_server_name(None));

        let out = handshake(&n1.connector, name, &n2.acceptor).await;

        assert!(is_name_mismatch(rustls_error(&out.client)));
    }

    /// Foreign CAs with the verdict webpki gives for their certificates: an unrelated CA is
    /// unknown; an impostor CA copying the cluster CA's name is found as issuer by name, then
    /// fails on the signature.
    fn foreign_cas() -> [(TestCa, CertificateError); 2] {
        [
            (ca("other"), CertificateError::UnknownIssuer),
            (ca("c1"), CertificateError::BadSignature),
        ]
    }

    #[tokio::test]
    async fn server_certificate_from_another_ca_fails_client_handshake() {
        let client = build(&node(&ca("c1"), "node-1"));

        for (foreign, verdict) in foreign_cas() {
            let stranger = build(&node(&foreign, "node-2"));
            for name in [dial_server_name(None), dial_server_name(Some("node-2"))] {
                let out = handshake(&client.connector, name, &stranger.acceptor).await;

                assert_eq!(
                    *rustls_error(&out.client),
                    rustls::Error::InvalidCertificate(verdict.clone())
                );
            }
        }
    }

    #[tokio::test]
    async fn client_certificate_from_another_ca_fails_server_handshake() {
        let cluster = ca("c1");
        let server = build(&node(&cluster, "node-1"));

        for (foreign, verdict) in foreign_cas() {
            // Trusts the cluster CA, so it accepts the server, but holds a foreign certificate:
            // the refusal below can only be the server's own verdict.
            let stranger = unchecked(&cluster, &foreign.issue("node-2").expect("issue"));

            let out = handshake(
                &stranger.connector,
                dial_server_name(None),
                &server.acceptor,
            )
            .await;

            assert_eq!(
                *rustls_error(&out.server),
                rustls::Error::InvalidCertificate(verdict)
            );
            assert!(out.client.is_err(), "client must learn it was refused");
        }
    }

    #[tokio::test]
    async fn client_without_certificate_fails_server_handshake() {
        let ca = ca("c1");
        let server = build(&node(&ca, "node-1"));
        let verifiers = node(&ca, "node-2").verifiers().expect("verifiers");
        let anonymous = ClientConfig::builder_with_provider(verifiers.provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("tls13")
            .dangerous()
            .with_custom_certificate_verifier(verifiers.server)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(anonymous));

        let out = handshake(&connector, dial_server_name(None), &server.acceptor).await;

        assert_eq!(
            *rustls_error(&out.server),
            rustls::Error::NoCertificatesPresented
        );
        assert!(out.client.is_err());
    }

    #[tokio::test]
    async fn placeholder_dial_refuses_server_certificate_without_dns_name() {
        let ca = ca("c1");
        let client = build(&node(&ca, "node-1"));
        let nameless = unchecked(&ca, &ca.issue_with_names(&[]).expect("issue"));

        let out = handshake(
            &client.connector,
            dial_server_name(None),
            &nameless.acceptor,
        )
        .await;

        assert!(is_name_mismatch(rustls_error(&out.client)));
    }

    #[tokio::test]
    async fn wildcard_names_never_count_as_node_names() {
        let ca = ca("c1");
        let client = build(&node(&ca, "node-1"));
        let cert = ca
            .issue_with_names(&["*.cluster.test", "node-2"])
            .expect("issue");
        let config = TlsConfig::from_pem(
            ca.ca_pem().as_bytes(),
            cert.cert_pem.as_bytes(),
            cert.key_pem.as_bytes(),
        )
        .expect("valid");
        assert_eq!(config.certificate_names().expect("names"), ["node-2"]);

        let out = handshake(
            &client.connector,
            dial_server_name(None),
            &build(&config).acceptor,
        )
        .await;

        assert_eq!(out.client.expect("client"), ["node-2"]);
    }

    #[tokio::test]
    async fn peer_names_lists_every_dns_name_lower_cased() {
        let ca = ca("c1");
        let client = build(&node(&ca, "node-1"));
        let cert = ca
            .issue_with_names(&["node-2", "Node-2.Example.Test"])
            .expect("issue");
        let server = unchecked(&ca, &cert);

        let out = handshake(
            &client.connector,
            dial_server_name(Some("NODE-2")),
            &server.acceptor,
        )
        .await;

        assert_eq!(
            out.client.expect("client"),
            ["node-2", "node-2.example.test"]
        );
    }

    #[test]
    fn peer_names_without_a_certificate_is_an_error() {
        assert!(matches!(
            peer_names(None),
            Err(TlsError::InvalidCertificate(_))
        ));
        assert!(matches!(
            peer_names(Some(&[])),
            Err(TlsError::InvalidCertificate(_))
        ));
    }

    #[test]
    fn from_pem_refuses_certificate_without_dns_name() {
        let ca = ca("c1");
        let cert = ca.issue_with_names(&[]).expect("issue");

        let err = TlsConfig::from_pem(
            ca.ca_pem().as_bytes(),
            cert.cert_pem.as_bytes(),
            cert.key_pem.as_bytes(),
        )
        .expect_err("nameless certificate");

        assert!(matches!(err, TlsError::InvalidCertificate(_)), "{err}");
    }

    #[test]
    fn from_pem_refuses_node_certificate_of_another_ca() {
        let (ca1, ca2) = (ca("c1"), ca("c1"));
        let cert = ca2.issue("node-1").expect("issue");

        let err = TlsConfig::from_pem(
            ca1.ca_pem().as_bytes(),
            cert.cert_pem.as_bytes(),
            cert.key_pem.as_bytes(),
        )
        .expect_err("foreign certificate");

        assert!(matches!(err, TlsError::InvalidCertificate(_)), "{err}");
    }

    #[test]
    fn from_pem_refuses_key_of_another_certificate() {
        let ca = ca("c1");
        let (a, b) = (
            ca.issue("node-1").expect("a"),
            ca.issue("node-2").expect("b"),
        );

        let err = TlsConfig::from_pem(
            ca.ca_pem().as_bytes(),
            a.cert_pem.as_bytes(),
            b.key_pem.as_bytes(),
        )
        .expect_err("mismatched key");

        assert!(
            matches!(err, TlsError::Rustls(rustls::Error::InconsistentKeys(_))),
            "{err}"
        );
    }

    #[test]
    fn missing_pem_blocks_are_reported_by_kind() {
        let ca = ca("c1");
        let cert = ca.issue("node-1").expect("issue");
        let (ca_pem, cert_pem) = (ca.ca_pem(), cert.cert_pem);

        let no_ca = TlsConfig::from_pem(b"", cert_pem.as_bytes(), cert.key_pem.as_bytes());
        assert!(
            matches!(&no_ca, Err(TlsError::NoCertificate { path }) if path == Path::new(CA_PEM_LABEL)),
            "{no_ca:?}"
        );
        let no_key =
            TlsConfig::from_pem(ca_pem.as_bytes(), cert_pem.as_bytes(), cert_pem.as_bytes());
        assert!(
            matches!(&no_key, Err(TlsError::NoPrivateKey { .. })),
            "{no_key:?}"
        );
        let broken = "-----BEGIN CERTIFICATE-----\n%%%%\n-----END CERTIFICATE-----\n";
        let bad_pem = TlsConfig::from_pem(
            broken.as_bytes(),
            cert_pem.as_bytes(),
            cert.key_pem.as_bytes(),
        );
        assert!(
            matches!(&bad_pem, Err(TlsError::InvalidPem(_))),
            "{bad_pem:?}"
        );
    }

    #[test]
    fn from_dir_reads_the_layout_the_testkit_writes() {
        let dir = std::env::temp_dir().join(format!("actix-cluster-tls-{}", std::process::id()));
        let ca = ca("c1");
        ca.write_node_dirs(&dir, &["node-1", "node-2"])
            .expect("write dirs");

        let loaded = TlsConfig::from_dir(dir.join("node-2"));
        let missing = TlsConfig::from_dir(dir.join("node-3"));
        #[cfg(unix)]
        let key_mode = {
            use std::os::unix::fs::PermissionsExt as _;
            fs::metadata(dir.join("node-1").join("node.key"))
                .expect("key file")
                .permissions()
                .mode()
        };
        fs::remove_dir_all(&dir).expect("cleanup");

        let names = loaded.expect("load").certificate_names().expect("names");
        assert_eq!(names, ["node-2"]);
        assert!(matches!(missing, Err(TlsError::Io { .. })), "{missing:?}");
        #[cfg(unix)]
        assert_eq!(key_mode & 0o777, 0o600);
    }

    #[test]
    fn debug_output_never_contains_the_private_key() {
        let ca = ca("c1");
        let cert = ca.issue("node-1").expect("issue");
        let config = TlsConfig::from_pem(
            ca.ca_pem().as_bytes(),
            cert.cert_pem.as_bytes(),
            cert.key_pem.as_bytes(),
        )
        .expect("valid");
        let key_body: String = cert
            .key_pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();

        let debug = format!("{config:?}");

        assert!(debug.contains("node-1"), "{debug}");
        assert!(!debug.contains(&key_body[..16]), "{debug}");
        assert!(!format!("{cert:?}").contains(&key_body[..16]));
    }

    #[test]
    fn dial_server_name_is_the_dns_name_when_the_peer_is_known() {
        let expected = ServerName::try_from("node-2").expect("dns name");
        assert_eq!(dial_server_name(Some("node-2")), expected);
        assert_eq!(dial_server_name(Some("Node-2")), expected);
    }
}
