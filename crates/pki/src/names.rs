//! Validation of the names that end up in certificates, and the duration syntax of `--expiry`.
//!
//! Kubernetes itself accepts almost any string as a user or group, but these names travel
//! through shells, kubeconfig contexts and RBAC manifests, so k0x accepts a conservative set:
//! letters, digits and `. _ - @ :`, starting with a letter or digit, at most 253 characters.
//! User names starting with `system:` are refused: that prefix belongs to Kubernetes components
//! (`system:kube-scheduler`, `system:node:<name>`) and a person holding such a certificate would
//! act as that component.

use time::Duration;

use crate::error::{PkiError, Result};

const MAX_NAME_LEN: usize = 253;

/// The group whose members bypass RBAC entirely.
pub const CLUSTER_ADMIN_GROUP: &str = "system:masters";

/// Checks a user name for `k0x user create`.
pub fn validate_user_name(name: &str) -> Result<()> {
    check_charset(name, "user name")?;
    if name.starts_with("system:") {
        return Err(PkiError::Input(format!(
            "user name {name:?} is reserved: names starting with system: belong to Kubernetes \
             components; choose another name"
        )));
    }
    Ok(())
}

/// Checks one group of `--groups`.
pub fn validate_group(group: &str) -> Result<()> {
    check_charset(group, "group")
}

fn check_charset(value: &str, what: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | ':');
    let starts_well = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if value.is_empty() || value.len() > MAX_NAME_LEN || !starts_well || !value.chars().all(allowed)
    {
        return Err(PkiError::Input(format!(
            "{what} {value:?} is invalid: use letters, digits and . _ - @ : (starting with a \
             letter or digit, at most {MAX_NAME_LEN} characters)"
        )));
    }
    Ok(())
}

/// How to write a duration, for messages about one.
pub const DURATION_HINT: &str =
    "write a number with a unit d, h, m or s, e.g. 8760h, 30d, 90m or 1d12h";

/// Parses `8760h`, `30d`, `90m`, `45s` or a sum such as `1d12h`: the one way k0x reads a
/// lifetime (certificates, tokens). `None` when `text` is no such duration; zero (`0h`) parses,
/// and each caller says what zero means to it.
pub fn parse_duration_sum(text: &str) -> Option<std::time::Duration> {
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        let amount: u64 = digits.parse().ok()?;
        digits.clear();
        total = amount.checked_mul(unit)?.checked_add(total)?;
    }
    digits
        .is_empty()
        .then_some(total)
        .filter(|_| !text.trim().is_empty())
        .map(std::time::Duration::from_secs)
}

/// A certificate's validity: a positive [`parse_duration_sum`].
pub fn parse_duration(text: &str) -> Result<Duration> {
    let seconds = parse_duration_sum(text)
        .ok_or_else(|| PkiError::Input(format!("duration {text:?} is invalid: {DURATION_HINT}")))?;
    let validity = Duration::try_from(seconds)
        .ok()
        .filter(|validity| *validity < Duration::days(365 * 1000))
        .ok_or_else(|| {
            PkiError::Input(format!(
                "duration {text:?} is longer than any certificate can live; use e.g. 8760h"
            ))
        })?;
    if validity.is_zero() {
        return Err(PkiError::Input(format!(
            "duration {text:?} is zero: a certificate must be valid for some time, e.g. 8760h \
             or 30d"
        )));
    }
    Ok(validity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("8760h").unwrap(), Duration::days(365));
        assert_eq!(parse_duration("30d").unwrap(), Duration::days(30));
        assert_eq!(parse_duration("90m").unwrap(), Duration::minutes(90));
        assert_eq!(parse_duration("1d12h").unwrap(), Duration::hours(36));
        for bad in ["", "10", "h", "5y", "-1h", "1.5h", "99999999999h", "0h"] {
            let err = parse_duration(bad).unwrap_err().to_string();
            assert!(err.contains("8760h"), "{bad}: {err}");
        }
        let err = parse_duration("0h").unwrap_err().to_string();
        assert!(err.contains("is zero"), "{err}");
        assert_eq!(
            parse_duration_sum("0h"),
            Some(std::time::Duration::ZERO),
            "zero is a duration; callers decide what it means"
        );
    }

    #[test]
    fn user_names_and_groups() {
        for ok in ["demo", "jane.doe@example.com", "ci_bot-2", "oidc:alice"] {
            validate_user_name(ok).unwrap();
        }
        for bad in ["", "-x", "a b", "a/b", "système", &"x".repeat(254)] {
            assert!(validate_user_name(bad).is_err(), "{bad:?}");
        }
        let err = validate_user_name("system:kube-scheduler")
            .unwrap_err()
            .to_string();
        assert!(err.contains("reserved"), "{err}");
        validate_group("system:masters").unwrap();
        validate_group("dev").unwrap();
        assert!(validate_group("dev,ops").is_err());
    }
}
