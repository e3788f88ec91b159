//! The join crate's error outside a request: TLS material, the CA pin, signing, a token expiry.
//! A failed join is a [`crate::JoinError`] on the joining node and an HTTP answer on the server;
//! the token store has its own [`crate::store::StoreError`].

/// Why the join crate could not set up or do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A certificate, key or CA that TLS cannot use.
    #[error("{what}: {why}")]
    Tls { what: &'static str, why: String },
    /// The cluster CA certificate, which tokens pin, does not parse.
    #[error("cluster CA certificate: {0}")]
    CaPin(k0x_pki::PkiError),
    /// The CA could not sign a node's certificate.
    #[error("signing: {0}")]
    Signing(String),
    /// `k0x token create --expiry` is not a usable validity.
    #[error("--expiry {text:?} {why}")]
    Expiry { text: String, why: String },
}

impl Error {
    pub(crate) fn tls(what: &'static str) -> impl FnOnce(String) -> Self {
        move |why| Self::Tls { what, why }
    }
}
