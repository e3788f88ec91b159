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

/// Checks a node name (a lowercase DNS subdomain, as Kubernetes requires for Node objects).
pub fn validate_node_name(name: &str) -> Result<()> {
    if !k0x_config::is_node_name(name) {
        return Err(PkiError::Input(format!(
            "node name {name:?} is invalid: use lowercase letters, digits, '-' and '.' \
             (a DNS subdomain of at most 253 characters)"
        )));
    }
    Ok(())
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

/// Parses `8760h`, `30d`, `90m`, `45s` or a sum such as `1d12h` into a positive duration.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let invalid = || {
        PkiError::Input(format!(
            "duration {text:?} is invalid: write a number with a unit d, h, m or s, \
             e.g. 8760h, 30d, 90m or 1d12h"
        ))
    };
    let mut total = Duration::ZERO;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let amount: i64 = digits.parse().map_err(|_| invalid())?;
        digits.clear();
        let unit = match c {
            'd' => Duration::days(1),
            'h' => Duration::hours(1),
            'm' => Duration::minutes(1),
            's' => Duration::seconds(1),
            _ => return Err(invalid()),
        };
        let part = unit.checked_mul(i32::try_from(amount).map_err(|_| invalid())?);
        total = part
            .and_then(|p| total.checked_add(p))
            .ok_or_else(invalid)?;
    }
    if !digits.is_empty() || total <= Duration::ZERO {
        return Err(invalid());
    }
    Ok(total)
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
        for bad in ["", "10", "h", "5y", "0h", "-1h", "1.5h", "99999999999h"] {
            let err = parse_duration(bad).unwrap_err().to_string();
            assert!(err.contains("8760h"), "{bad}: {err}");
        }
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

    #[test]
    fn node_names() {
        validate_node_name("worker-1.example").unwrap();
        for bad in ["", "Worker", "-a", "a_b", "a..b"] {
            assert!(validate_node_name(bad).is_err(), "{bad:?}");
        }
    }
}
