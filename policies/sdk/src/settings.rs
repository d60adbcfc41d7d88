//! Parsing a policy's settings from the JSON the server passes in.

use serde::de::DeserializeOwned;

use crate::PolicyError;

/// Parses settings JSON into `S`. `null`, an empty string and `{}` with all
/// fields defaulted give `S::default()`-like values; anything unreadable is an
/// [`PolicyError::InvalidSettings`] that quotes the deserializer's reason.
pub fn parse<S: DeserializeOwned + Default>(json: &str) -> Result<S, PolicyError> {
    let json = json.trim();
    if json.is_empty() || json == "null" {
        return Ok(S::default());
    }
    serde_json::from_str(json).map_err(|error| PolicyError::InvalidSettings(error.to_string()))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(default, deny_unknown_fields, rename_all = "camelCase")]
    struct Settings {
        name_suffix: String,
    }

    #[test]
    fn absent_settings_are_the_default() {
        assert_eq!(parse::<Settings>("null").unwrap(), Settings::default());
        assert_eq!(parse::<Settings>("  ").unwrap(), Settings::default());
    }

    #[test]
    fn unknown_fields_are_named() {
        let error = parse::<Settings>(r#"{"nameSufix": "-x"}"#).unwrap_err().to_string();
        assert!(error.contains("unknown field `nameSufix`"), "{error}");
        assert!(error.starts_with("invalid settings"), "{error}");
    }
}
