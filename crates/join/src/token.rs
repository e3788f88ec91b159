//! The join token: everything a new node needs to find and trust the cluster, in one string.
//!
//! `k0x1.` + base64url (no padding) of compact JSON `{role, urls, ca, id, secret}`. The CA pin
//! (sha256 of the cluster CA certificate, DER) lets the node trust the controller it has never
//! seen; the id names the token in etcd and the secret proves possession. Parse errors are one
//! line each and say how to get a good token, since users paste tokens by hand.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Every token starts with this; a new format gets a new number.
pub const PREFIX: &str = "k0x1.";
/// Length of a generated token id.
const ID_LEN: usize = 8;
/// Random bytes in a generated secret.
const SECRET_BYTES: usize = 32;

/// What a token lets a node become.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenRole {
    Worker,
    Controller,
}

impl TokenRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Worker => "worker",
            Self::Controller => "controller",
        }
    }
}

impl fmt::Display for TokenRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for TokenRole {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, TokenError> {
        match s {
            "worker" => Ok(Self::Worker),
            "controller" => Ok(Self::Controller),
            other => Err(TokenError::UnknownRole(other.to_string())),
        }
    }
}

/// Why a token string is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the join token is empty: pass the token printed by `k0x token create`")]
    Empty,
    #[error(
        "the join token does not start with \"{PREFIX}\": it is not a k0x join token; create one with `k0x token create`"
    )]
    WrongPrefix,
    #[error(
        "the join token is truncated: copy the whole token printed by `k0x token create` (a token file avoids this)"
    )]
    Truncated,
    #[error("the join token is garbled ({0}): copy it again from `k0x token create`")]
    Garbled(String),
    #[error(
        "the join token has extra characters after its end: copy exactly the token printed by `k0x token create`, nothing after it"
    )]
    TrailingText,
    #[error(
        "{0} join tokens were given where one belongs: keep only the token this node should use"
    )]
    Several(usize),
    #[error("the join token has unknown role \"{0}\": expected worker or controller")]
    UnknownRole(String),
    #[error("the join token is invalid: {0}; create a new one with `k0x token create`")]
    Invalid(String),
}

/// A join token. The secret is never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub role: TokenRole,
    /// Join API URLs of the controllers (`https://addr:9443`).
    pub urls: Vec<String>,
    /// sha256 (lowercase hex) of the cluster CA certificate, DER.
    pub ca_sha256: String,
    pub id: String,
    secret: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("role", &self.role)
            .field("urls", &self.urls)
            .field("ca_sha256", &self.ca_sha256)
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct Wire {
    role: String,
    urls: Vec<String>,
    ca: String,
    id: String,
    secret: String,
}

impl Token {
    /// A new token with a random id and secret.
    pub fn generate(role: TokenRole, urls: Vec<String>, ca_sha256: String) -> Self {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::rng();
        let id = (0..ID_LEN)
            .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
            .collect();
        let secret = B64URL.encode(rng.random::<[u8; SECRET_BYTES]>());
        Self {
            role,
            urls,
            ca_sha256,
            id,
            secret,
        }
    }

    /// The secret (base64url); handle with care, never log it.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The HTTP credential: `<id>.<secret>`, sent as `Authorization: Bearer ...`.
    pub fn bearer(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    /// The token string (`k0x1.` + base64url of compact JSON).
    pub fn encode(&self) -> String {
        let wire = Wire {
            role: self.role.as_str().to_string(),
            urls: self.urls.clone(),
            ca: self.ca_sha256.clone(),
            id: self.id.clone(),
            secret: self.secret.clone(),
        };
        let json = serde_json::to_vec(&wire).expect("token JSON");
        format!("{PREFIX}{}", B64URL.encode(json))
    }

    /// Parses a token string; surrounding whitespace (a trailing newline in a file) is ignored.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(TokenError::Empty);
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        let tokens = words.iter().filter(|w| w.starts_with(PREFIX)).count();
        let body = words[0]
            .strip_prefix(PREFIX)
            .ok_or(TokenError::WrongPrefix)?;
        match (tokens, words.len()) {
            (1, 1) => Self::from_wire(decode(body)?),
            (1, _) => Err(TokenError::TrailingText),
            (n, _) => Err(TokenError::Several(n)),
        }
    }

    fn from_wire(wire: Wire) -> Result<Self, TokenError> {
        let role = wire.role.parse()?;
        if wire.urls.is_empty() {
            return Err(TokenError::Invalid("it names no controller URL".into()));
        }
        for url in &wire.urls {
            if let Some(problem) = k0x_pki::server_url_problem(url) {
                return Err(TokenError::Invalid(format!(
                    "controller URL {url:?} {problem}"
                )));
            }
        }
        if wire.ca.len() != 64 || !wire.ca.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::Invalid(
                "its CA pin is not a sha256 hex digest".into(),
            ));
        }
        if wire.id.len() < 6 || !wire.id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(TokenError::Invalid(format!(
                "token id {:?} is malformed",
                wire.id
            )));
        }
        if B64URL.decode(&wire.secret).map_or(true, |s| s.len() < 16) {
            return Err(TokenError::Invalid("its secret is malformed".into()));
        }
        Ok(Self {
            role,
            urls: wire.urls,
            ca_sha256: wire.ca.to_ascii_lowercase(),
            id: wire.id,
            secret: wire.secret,
        })
    }
}

/// The token's JSON from its base64url body, telling a cut-off token (truncated) from one with
/// something after its end (trailing text) and one that is damaged within (garbled).
///
/// The longest prefix of base64url characters is decoded leniently, so that whatever follows
/// the token's last character cannot hide its content; the JSON then either ends early
/// (truncated), ends before the input does (trailing text), or does not parse (garbled).
fn decode(body: &str) -> Result<Wire, TokenError> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone),
    );
    let is_b64url = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
    let valid = body.bytes().take_while(is_b64url).count();
    // A single character past a 4-character group carries no whole byte.
    let decodable = &body[..valid - usize::from(valid % 4 == 1)];
    let json = LENIENT
        .decode(decodable)
        .map_err(|err| TokenError::Garbled(format!("not base64url: {err}")))?;
    let mut values = serde_json::Deserializer::from_slice(&json).into_iter::<Wire>();
    let bad_char = || {
        let c = body[valid..].chars().next().unwrap_or_default();
        TokenError::Garbled(format!("{c:?} is not a base64url character"))
    };
    match values.next() {
        Some(Ok(_)) if values.byte_offset() < json.len() || decodable.len() < body.len() => {
            Err(TokenError::TrailingText)
        }
        Some(Ok(wire)) => Ok(wire),
        Some(Err(err)) if err.is_eof() && valid < body.len() => Err(bad_char()),
        None if valid < body.len() => Err(bad_char()),
        Some(Err(err)) if !err.is_eof() => Err(TokenError::Garbled(format!(
            "content is not a token: {err}"
        ))),
        _ => Err(TokenError::Truncated),
    }
}

/// Why no token could be read from the command line.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no join token: pass --token-file FILE (recommended) or the token as an argument")]
    Missing,
    #[error(
        "both a token argument and --token-file were given: use only --token-file (an argument is visible to every user in ps)"
    )]
    Both,
    #[error(
        "--token-file {path}: cannot read it ({cause}); save the output of `k0x token create` there, or point --token-file at that file"
    )]
    Unreadable {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("--token-file {path}: {cause}")]
    BadFile { path: PathBuf, cause: TokenError },
    #[error("token argument: {0}")]
    BadArgument(TokenError),
}

/// Reads the join token from `--token-file` (recommended) or from a command-line argument.
/// A token file readable by other users is accepted with a warning.
pub fn load(argument: Option<&str>, file: Option<&Path>) -> Result<Token, LoadError> {
    match (argument, file) {
        (Some(_), Some(_)) => Err(LoadError::Both),
        (None, None) => Err(LoadError::Missing),
        (Some(text), None) => Token::parse(text).map_err(LoadError::BadArgument),
        (None, Some(path)) => {
            let unreadable = |cause| LoadError::Unreadable {
                path: path.to_path_buf(),
                cause,
            };
            let text = std::fs::read_to_string(path).map_err(unreadable)?;
            let mode = std::fs::metadata(path)
                .map_err(unreadable)?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    "the token file is readable by other users: chmod 600 it, or delete it after the join"
                );
            }
            Token::parse(&text).map_err(|cause| LoadError::BadFile {
                path: path.to_path_buf(),
                cause,
            })
        }
    }
}

/// Splits an `Authorization: Bearer <id>.<secret>` credential into id and secret.
pub fn split_bearer(credential: &str) -> Option<(&str, &str)> {
    let (id, secret) = credential.split_once('.')?;
    (!id.is_empty() && !secret.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some((id, secret))
}

/// sha256 (lowercase hex) of the CA certificate's DER: the pin a token carries (the pki crate's rule).
pub fn ca_pin(ca_pem: &str) -> Result<String, crate::Error> {
    k0x_pki::ca_pin(ca_pem).map_err(crate::Error::CaPin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Token {
        Token::generate(
            TokenRole::Worker,
            vec!["https://10.0.0.1:9443".into()],
            "ab".repeat(32),
        )
    }

    #[test]
    fn round_trips() {
        let token = sample();
        let text = token.encode();
        assert!(text.starts_with("k0x1."));
        assert_eq!(Token::parse(&format!("{text}\n")).unwrap(), token);
        assert_eq!(token.id.len(), ID_LEN);
        assert_eq!(B64URL.decode(token.secret()).unwrap().len(), SECRET_BYTES);
    }

    #[test]
    fn tokens_are_random() {
        let (a, b) = (sample(), sample());
        assert_ne!(a.id, b.id);
        assert_ne!(a.secret(), b.secret());
    }

    #[test]
    fn debug_hides_the_secret() {
        let token = sample();
        assert!(!format!("{token:?}").contains(token.secret()));
    }

    #[test]
    fn bad_tokens_say_what_is_wrong() {
        let text = sample().encode();
        assert_eq!(Token::parse("  "), Err(TokenError::Empty));
        assert_eq!(Token::parse("k0s1.abc"), Err(TokenError::WrongPrefix));
        for cut in [6, text.len() / 2, text.len() - 3] {
            assert_eq!(
                Token::parse(&text[..cut]),
                Err(TokenError::Truncated),
                "cut at {cut}"
            );
        }
        let garbled = text.replacen('k', "!", 2).replacen("!", "k", 1);
        assert!(matches!(
            Token::parse(&garbled),
            Err(TokenError::Garbled(_))
        ));
        let not_json = format!("{PREFIX}{}", B64URL.encode("hello world"));
        assert!(matches!(
            Token::parse(&not_json),
            Err(TokenError::Garbled(_))
        ));
    }

    #[test]
    fn text_after_a_token_and_two_tokens_are_named_as_such() {
        let text = sample().encode();
        for junk in ["x", "xy", "xyz", "abcd", "!", "=="] {
            assert_eq!(
                Token::parse(&format!("{text}{junk}")),
                Err(TokenError::TrailingText),
                "{junk:?}"
            );
        }
        assert_eq!(
            Token::parse(&format!("{text} # worker token")),
            Err(TokenError::TrailingText)
        );
        let two = format!("{text}\n{}\n", sample().encode());
        assert_eq!(Token::parse(&two), Err(TokenError::Several(2)));
        assert!(TokenError::Several(2).to_string().contains("keep only"));
    }

    #[test]
    fn unknown_role_is_named() {
        let wire = serde_json::json!({"role": "admin", "urls": ["https://a:9443"],
            "ca": "ab".repeat(32), "id": "abcdef12", "secret": B64URL.encode([1u8; 32])});
        let text = format!("{PREFIX}{}", B64URL.encode(wire.to_string()));
        let err = Token::parse(&text).unwrap_err();
        assert_eq!(err, TokenError::UnknownRole("admin".into()));
        assert!(err.to_string().contains("expected worker or controller"));
    }

    #[test]
    fn a_controller_url_a_node_cannot_reach_is_refused() {
        for (url, problem) in [
            ("https://", "names no host"),
            ("https://a b:9443", "contains a space"),
            (
                "https://300.1.2.3:9443",
                "neither an IP address nor a DNS name",
            ),
            ("https://10.0.0.1:0", "not a number from 1 to 65535"),
            ("http://10.0.0.1:9443", "is not an https:// URL"),
        ] {
            let wire = serde_json::json!({"role": "worker", "urls": [url],
                "ca": "ab".repeat(32), "id": "abcdef12", "secret": B64URL.encode([1u8; 32])});
            let text = format!("{PREFIX}{}", B64URL.encode(wire.to_string()));
            let err = Token::parse(&text).unwrap_err().to_string();
            assert!(err.contains(problem), "{url}: {err}");
            assert!(err.contains(url), "{url}: {err}");
        }
    }

    #[test]
    fn tokens_load_from_a_file_or_an_argument() {
        let token = sample();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("worker.token");
        std::fs::write(&file, format!("{}\n", token.encode())).unwrap();
        assert_eq!(load(None, Some(&file)).unwrap(), token);
        assert_eq!(load(Some(&token.encode()), None).unwrap(), token);
        assert!(matches!(load(None, None), Err(LoadError::Missing)));
        assert!(matches!(load(Some("x"), Some(&file)), Err(LoadError::Both)));
        let missing = dir.path().join("nope");
        let err = load(None, Some(&missing)).unwrap_err();
        assert!(err.to_string().starts_with("--token-file "), "{err}");
        std::fs::write(&file, "k0x1.").unwrap();
        let err = load(None, Some(&file)).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn bearer_splits() {
        let token = sample();
        assert_eq!(
            split_bearer(&token.bearer()),
            Some((token.id.as_str(), token.secret()))
        );
        assert_eq!(split_bearer("nodot"), None);
        assert_eq!(split_bearer(".x"), None);
    }
}
