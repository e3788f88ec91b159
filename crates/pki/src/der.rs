//! Just enough DER to give a certificate several Organization attributes.
//!
//! Kubernetes maps every `O` attribute of a client certificate to a group, so a user in groups
//! `dev` and `ops` needs two of them. rcgen's `DistinguishedName` keeps one value per attribute
//! type, so for such subjects the certificate is built by rcgen, its subject replaced by the one
//! encoded here, and the to-be-signed part signed again with the CA key.

use rcgen::SigningKey;

use crate::error::{PkiError, Result};

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const BIT_STRING: u8 = 0x03;
const OID_COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];
const OID_ORGANIZATION: [u8; 3] = [0x55, 0x04, 0x0a];
/// Position of `subject` among the TBSCertificate fields (version, serial, signature, issuer,
/// validity, subject).
const SUBJECT_INDEX: usize = 5;

/// The DER of a Name with one RDN per organization followed by the common name, the order
/// Go's crypto/x509 and openssl print (`O = dev, O = ops, CN = demo`).
pub fn subject(common_name: &str, organizations: &[String]) -> Vec<u8> {
    let attribute = |oid: &[u8], value: &str| {
        let pair = [tlv(OID, oid), tlv(UTF8_STRING, value.as_bytes())].concat();
        tlv(SET, &tlv(SEQUENCE, &pair))
    };
    let rdns: Vec<u8> = organizations
        .iter()
        .map(|org| attribute(&OID_ORGANIZATION, org))
        .chain([attribute(&OID_COMMON_NAME, common_name)])
        .flatten()
        .collect();
    tlv(SEQUENCE, &rdns)
}

/// Returns `cert` with its subject replaced by `subject`, re-signed by `signer` (the key that
/// signed `cert`, so the signature algorithm field stays right).
pub fn replace_subject(cert: &[u8], subject: &[u8], signer: &impl SigningKey) -> Result<Vec<u8>> {
    let malformed = || PkiError::crypto("rewriting a certificate subject", &"malformed DER");
    let outer = elements(content(cert, SEQUENCE).ok_or_else(malformed)?).ok_or_else(malformed)?;
    let [tbs, algorithm, _signature] = outer.as_slice() else {
        return Err(malformed());
    };
    let mut fields =
        elements(content(tbs, SEQUENCE).ok_or_else(malformed)?).ok_or_else(malformed)?;
    if fields.len() <= SUBJECT_INDEX || fields[0].first() != Some(&0xa0) {
        return Err(malformed());
    }
    fields[SUBJECT_INDEX] = subject;
    let new_tbs = tlv(SEQUENCE, &fields.concat());
    let signature = signer
        .sign(&new_tbs)
        .map_err(|err| PkiError::crypto("signing a certificate", &err))?;
    let bits = [&[0u8][..], &signature].concat();
    Ok(tlv(
        SEQUENCE,
        &[new_tbs.as_slice(), algorithm, &tlv(BIT_STRING, &bits)].concat(),
    ))
}

fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(value);
    out
}

/// The content of the single TLV `der` if its tag is `tag`.
fn content(der: &[u8], tag: u8) -> Option<&[u8]> {
    let (element, rest) = split_first(der)?;
    if !rest.is_empty() || element.first() != Some(&tag) {
        return None;
    }
    element.get(header_len(element)?..)
}

/// Splits concatenated TLVs into whole elements (header included).
fn elements(mut der: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !der.is_empty() {
        let (element, rest) = split_first(der)?;
        out.push(element);
        der = rest;
    }
    Some(out)
}

fn split_first(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let header = header_len(der)?;
    let first = *der.get(1)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        der.get(2..header)?.iter().try_fold(0usize, |acc, b| {
            acc.checked_mul(256)?.checked_add(usize::from(*b))
        })?
    };
    let end = header.checked_add(len)?;
    (end <= der.len()).then(|| der.split_at(end))
}

fn header_len(der: &[u8]) -> Option<usize> {
    let first = *der.get(1)?;
    match first {
        0..=0x7f => Some(2),
        0x81..=0x84 => Some(2 + usize::from(first & 0x7f)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lengths_round_trip() {
        let value = vec![7u8; 300];
        let encoded = tlv(SEQUENCE, &value);
        assert_eq!(&encoded[..4], &[0x30, 0x82, 0x01, 0x2c]);
        assert_eq!(content(&encoded, SEQUENCE), Some(value.as_slice()));
        assert_eq!(content(&encoded, SET), None);
        assert!(content(&encoded[..encoded.len() - 1], SEQUENCE).is_none());
    }

    #[test]
    fn subject_lists_every_organization_then_the_name() {
        let der = subject("demo", &["dev".into(), "ops".into()]);
        let (rest, name) = <x509_parser::x509::X509Name as x509_parser::prelude::FromDer<
            '_,
            x509_parser::error::X509Error,
        >>::from_der(&der)
        .unwrap();
        assert!(rest.is_empty());
        assert_eq!(name.to_string(), "O=dev, O=ops, CN=demo");
    }
}
