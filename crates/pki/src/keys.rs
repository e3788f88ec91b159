//! Private keys: ECDSA P-256 from ring (through rcgen), RSA 2048 from the RustCrypto `rsa` crate
//! because ring can sign with RSA keys but cannot generate them. Either way the key ends up as a
//! PKCS#8 `PRIVATE KEY` PEM that rcgen signs with and Go's crypto/tls reads.

use std::path::Path;

use k0x_config::schema::KeyType;
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256};
use rsa::pkcs8::EncodePrivateKey;

use crate::error::{PkiError, Result};

const RSA_BITS: usize = 2048;

/// A fresh private key of `key_type`.
pub fn generate(key_type: KeyType) -> Result<KeyPair> {
    match key_type {
        KeyType::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|err| PkiError::crypto("generating an ECDSA P-256 key", &err)),
        KeyType::Rsa2048 => generate_rsa(),
    }
}

fn generate_rsa() -> Result<KeyPair> {
    let key = rsa::PrivateKey::new(&mut getrandom::SysRng, RSA_BITS)
        .map_err(|err| PkiError::crypto("generating an RSA 2048 key", &err))?;
    let pkcs8 = key
        .to_pkcs8_der()
        .map_err(|err| PkiError::crypto("encoding an RSA key as PKCS#8", &err))?;
    KeyPair::try_from(pkcs8.as_bytes())
        .map_err(|err| PkiError::crypto("loading a generated RSA key", &err))
}

/// Parses a PKCS#8 PEM private key read from `path`.
pub fn parse(path: &Path, pem: &str) -> Result<KeyPair> {
    KeyPair::from_pem(pem).map_err(|err| {
        PkiError::material(
            path,
            format!("is not a usable PKCS#8 private key PEM ({err})"),
            "restore it from a backup, or remove it and its certificate so both are re-issued",
        )
    })
}

/// The key type of `key`, if it is one k0x issues.
pub fn key_type_of(key: &KeyPair) -> Option<KeyType> {
    let alg = key.algorithm();
    if alg == &PKCS_ECDSA_P256_SHA256 {
        Some(KeyType::EcdsaP256)
    } else if alg == &PKCS_RSA_SHA256 {
        Some(KeyType::Rsa2048)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_key_types_round_trip_through_pem() {
        for key_type in [KeyType::EcdsaP256, KeyType::Rsa2048] {
            let key = generate(key_type).unwrap();
            let pem = key.serialize_pem();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
            let again = parse(Path::new("k.key"), &pem).unwrap();
            assert_eq!(key_type_of(&again), Some(key_type));
            assert_eq!(again.public_key_raw(), key.public_key_raw());
        }
    }

    #[test]
    fn garbage_names_the_file() {
        let err = parse(Path::new("pki/x.key"), "nope")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("pki/x.key: is not a usable"), "{err}");
    }
}
