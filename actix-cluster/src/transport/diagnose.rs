//! Why a dial failed, when the cause is a configuration mistake the operator must fix, and the
//! one WARN line per address and cause that says so on the dialling side.
//!
//! The node that refuses a connection logs why, but the operator usually watches the node that
//! is trying to join; without this, that node only reports "not connected yet" at DEBUG.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::HandshakeError;

/// A configuration mistake recognised from a failed dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Misconfig {
    /// This node runs plaintext and the peer answered in TLS.
    PeerSpeaksTls,
    /// This node runs TLS and the peer answered in plaintext.
    PeerSpeaksPlaintext,
    /// The peer's certificate does not chain to this node's CA.
    PeerCertificateFromAnotherCa,
    /// The peer's certificate was refused for another reason (expired, wrong name, ...).
    PeerCertificateRefused(String),
    /// The peer ended the TLS handshake with a fatal alert: it refused this node's certificate.
    OwnCertificateRefused(String),
    /// The peer belongs to another cluster.
    WrongCluster { ours: String, theirs: String },
    /// The peer refused the hello for another reason (version, name, certificate name).
    Refused(String),
}

impl Misconfig {
    /// The configuration mistake behind `error`, if it is one. `tls` says whether this node
    /// runs TLS. Transient failures (refused connect, timeout, reset) give `None`.
    pub(crate) fn classify(error: &HandshakeError, tls: bool) -> Option<Self> {
        match error {
            HandshakeError::TlsPeer => Some(Self::PeerSpeaksTls),
            HandshakeError::WrongCluster { ours, theirs } => Some(Self::WrongCluster {
                ours: ours.clone(),
                theirs: theirs.clone(),
            }),
            HandshakeError::Version { .. } | HandshakeError::DuplicateName(_) => {
                Some(Self::Refused(error.to_string()))
            }
            HandshakeError::Rejected(reason) => Some(Self::Refused(reason.clone())),
            // With TLS 1.3 the acceptor checks the dialer's certificate after the dialer's side
            // of the TLS handshake completed, so its alert arrives on the first read.
            HandshakeError::Tls(io) | HandshakeError::Io(io) if tls => {
                classify_rustls(rustls_error(io)?)
            }
            _ => None,
        }
    }

    /// The WARN line: what is wrong, and what to do about it.
    pub(crate) fn advice(&self, addr: SocketAddr) -> String {
        match self {
            Self::PeerSpeaksTls => format!(
                "the node at {addr} speaks TLS; this node runs insecure plaintext: give this \
                 node the cluster's certificates (ClusterConfig::tls; --tls-dir for the example \
                 node) or run that node in plaintext too"
            ),
            Self::PeerSpeaksPlaintext => format!(
                "the node at {addr} runs insecure plaintext; this node speaks TLS: give that \
                 node the cluster's certificates or run this one in plaintext too"
            ),
            Self::PeerCertificateFromAnotherCa => format!(
                "the certificate of the node at {addr} is not signed by this node's CA: give \
                 both nodes certificates issued by the same cluster CA (and that CA as ca.pem)"
            ),
            Self::PeerCertificateRefused(why) => format!(
                "the certificate of the node at {addr} is refused ({why}): issue it a valid \
                 certificate from the cluster CA"
            ),
            Self::OwnCertificateRefused(alert) => format!(
                "the node at {addr} refused this node's certificate (TLS alert {alert}): it is \
                 probably not signed by the CA that node trusts; issue this node's certificate \
                 from the cluster CA"
            ),
            Self::WrongCluster { ours, theirs } => format!(
                "the node at {addr} belongs to cluster {theirs:?}, this node to {ours:?}: start \
                 this node with cluster name {theirs:?} or give it seeds of its own cluster"
            ),
            Self::Refused(reason) => {
                // Quoted: the text comes from the peer.
                format!("the node at {addr} refused this node's handshake: {reason:?}")
            }
        }
    }
}

fn rustls_error(io: &std::io::Error) -> Option<&rustls::Error> {
    io.get_ref()?.downcast_ref::<rustls::Error>()
}

fn classify_rustls(error: &rustls::Error) -> Option<Misconfig> {
    use rustls::{CertificateError, InvalidMessage};
    match error {
        // The first bytes of a plaintext refusal read as a record of no known content type.
        rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType) => {
            Some(Misconfig::PeerSpeaksPlaintext)
        }
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => Some(Misconfig::PeerCertificateFromAnotherCa),
        rustls::Error::InvalidCertificate(other) => {
            Some(Misconfig::PeerCertificateRefused(format!("{other:?}")))
        }
        rustls::Error::AlertReceived(alert) => {
            Some(Misconfig::OwnCertificateRefused(format!("{alert:?}")))
        }
        _ => None,
    }
}

/// The misconfiguration last reported per address, so that a node retrying every few seconds
/// logs each cause once, and again only after it changed or a connection succeeded.
#[derive(Debug, Default)]
pub(crate) struct Reported {
    by_addr: HashMap<SocketAddr, Misconfig>,
}

impl Reported {
    /// Records a failed dial; returns the line to log if this cause is new for `addr`.
    pub(crate) fn failed(&mut self, addr: SocketAddr, cause: Misconfig) -> Option<String> {
        if self.by_addr.get(&addr) == Some(&cause) {
            return None;
        }
        let line = cause.advice(addr);
        self.by_addr.insert(addr, cause);
        Some(line)
    }

    /// Records a successful connection: a later misconfiguration is reported again.
    pub(crate) fn connected(&mut self, addr: SocketAddr) {
        self.by_addr.remove(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], 7000))
    }

    fn tls_io(e: rustls::Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn each_cause_is_reported_once_until_it_changes_or_a_connection_succeeds() {
        let mut r = Reported::default();
        assert!(r.failed(addr(), Misconfig::PeerSpeaksTls).is_some());
        assert!(r.failed(addr(), Misconfig::PeerSpeaksTls).is_none());
        assert!(r.failed(addr(), Misconfig::PeerSpeaksPlaintext).is_some());
        assert!(r.failed(addr(), Misconfig::PeerSpeaksTls).is_some());
        r.connected(addr());
        assert!(r.failed(addr(), Misconfig::PeerSpeaksTls).is_some());
    }

    #[test]
    fn tls_errors_are_classified_only_on_a_tls_node() {
        let e = HandshakeError::Tls(tls_io(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType,
        )));
        assert_eq!(
            Misconfig::classify(&e, true),
            Some(Misconfig::PeerSpeaksPlaintext)
        );
        assert_eq!(Misconfig::classify(&e, false), None);
        let e = HandshakeError::Tls(tls_io(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        )));
        assert_eq!(
            Misconfig::classify(&e, true),
            Some(Misconfig::PeerCertificateFromAnotherCa)
        );
        let e = HandshakeError::Io(tls_io(rustls::Error::AlertReceived(
            rustls::AlertDescription::UnknownCA,
        )));
        assert_eq!(
            Misconfig::classify(&e, true),
            Some(Misconfig::OwnCertificateRefused("UnknownCA".into()))
        );
    }

    #[test]
    fn transient_failures_are_not_misconfigurations() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            Misconfig::classify(&HandshakeError::Connect(refused), true),
            None
        );
        assert_eq!(Misconfig::classify(&HandshakeError::Timeout, false), None);
        assert_eq!(Misconfig::classify(&HandshakeError::Closed, true), None);
    }

    #[test]
    fn advice_names_the_address_and_the_fix() {
        let line = Misconfig::WrongCluster {
            ours: "b".into(),
            theirs: "a".into(),
        }
        .advice(addr());
        assert!(line.contains("10.0.0.1:7000"), "{line}");
        assert!(line.contains("belongs to cluster \"a\""), "{line}");
    }
}
