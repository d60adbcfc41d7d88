//! Validation of Kubernetes names, with the API server's own wording, so a
//! policy can reject a bad name before the API server does it cryptically.

/// Checks an RFC 1035 label (Service names, StatefulSet `serviceName`):
/// at most 63 characters, lowercase alphanumerics or '-', starting with a
/// letter and ending with an alphanumeric.
pub fn dns1035_label(value: &str) -> Result<(), String> {
    label(
        value,
        |first| first.is_ascii_lowercase(),
        "start with an alphabetic character",
    )
}

/// Checks an RFC 1123 label (namespace names, most object names' segments):
/// at most 63 characters, lowercase alphanumerics or '-', starting and ending
/// with an alphanumeric.
pub fn dns1123_label(value: &str) -> Result<(), String> {
    label(
        value,
        |first| first.is_ascii_lowercase() || first.is_ascii_digit(),
        "start with an alphanumeric character",
    )
}

/// Checks a label key (a qualified name): an optional DNS-subdomain prefix of
/// at most 253 characters and a `/`, then a name of at most 63 alphanumerics,
/// '-', '_' or '.', alphanumeric at both ends.
pub fn label_key(key: &str) -> Result<(), String> {
    const MAX_NAME: usize = 63;
    const MAX_PREFIX: usize = 253;
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.len() > MAX_PREFIX {
            return Err(format!(
                "prefix must be no more than {MAX_PREFIX} characters (it has {})",
                prefix.len()
            ));
        }
        for part in prefix.split('.') {
            dns1123_label(part).map_err(|error| format!("prefix {prefix:?} is not a DNS subdomain: {error}"))?;
        }
    }
    if name.is_empty() {
        return Err("name part must not be empty".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "name part must be no more than {MAX_NAME} characters (it has {})",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "name part must consist of alphanumeric characters, '-', '_' or '.' (found {bad:?})"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) || !name.ends_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("name part must start and end with an alphanumeric character".into());
    }
    Ok(())
}

fn label(value: &str, valid_first: impl Fn(char) -> bool, first_rule: &str) -> Result<(), String> {
    const MAX: usize = 63;
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > MAX {
        return Err(format!(
            "must be no more than {MAX} characters (it has {})",
            value.len()
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "must consist of lower case alphanumeric characters or '-' (found {bad:?})"
        ));
    }
    if !value.starts_with(&valid_first) {
        return Err(format!("must {first_rule}"));
    }
    if value.ends_with('-') {
        return Err("must end with an alphanumeric character".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns1035_rules() {
        assert!(dns1035_label("web-headless").is_ok());
        assert!(dns1035_label(&"a".repeat(63)).is_ok());
        assert!(dns1035_label("").unwrap_err().contains("empty"));
        assert!(dns1035_label("1web").unwrap_err().contains("alphabetic"));
        assert!(dns1035_label("Web").unwrap_err().contains("'W'"));
        assert!(dns1035_label("web.svc").unwrap_err().contains("'.'"));
        assert!(dns1035_label("web-").unwrap_err().contains("end with"));
        assert!(dns1035_label(&"a".repeat(64)).unwrap_err().contains("it has 64"));
    }

    #[test]
    fn label_key_rules() {
        for good in ["team", "app.kubernetes.io/name", "Team_Name.v2", "a", "example.com/x"] {
            assert!(label_key(good).is_ok(), "{good}");
        }
        assert!(label_key("").unwrap_err().contains("empty"));
        assert!(label_key("example.com/").unwrap_err().contains("empty"));
        assert!(label_key("team name").unwrap_err().contains("' '"));
        assert!(label_key("-team").unwrap_err().contains("start and end"));
        assert!(label_key("Example.com/team").unwrap_err().contains("DNS subdomain"));
        assert!(label_key(&"a".repeat(64)).unwrap_err().contains("it has 64"));
        let long_prefix = format!("{}/x", vec!["a".repeat(63); 5].join("."));
        assert!(label_key(&long_prefix).unwrap_err().contains("253"));
    }

    #[test]
    fn dns1123_allows_a_leading_digit() {
        assert!(dns1123_label("1web").is_ok());
        assert!(dns1123_label("-web").is_err());
    }
}
