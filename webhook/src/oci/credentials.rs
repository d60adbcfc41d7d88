//! Registry credentials from a Docker `config.json` — the file a
//! `kubernetes.io/dockerconfigjson` Secret mounts, and `docker login` or
//! `podman login` write: `{"auths": {"registry": {"auth": base64("user:password")}}}`
//! (or `username` and `password`; `identitytoken` for token registries).
//! Credential helpers (`credHelpers`, `credsStore`) run programs and are
//! not supported: a Secret carries the credentials themselves.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use super::OciError;

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// The credentials `path` (if any) holds for `registry`, read now — a
/// rotated Secret is picked up by the next pull. `Anonymous` when the file
/// has no entry for the registry.
pub fn for_registry(path: Option<&Path>, registry: &str) -> Result<RegistryAuth, OciError> {
    let Some(path) = path else {
        return Ok(RegistryAuth::Anonymous);
    };
    let invalid = |reason: String| OciError::Credentials {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|error| invalid(error.to_string()))?;
    let config: DockerConfig =
        serde_json::from_str(&text).map_err(|error| invalid(format!("not a Docker config.json: {error}")))?;
    let Some((key, entry)) = config.auths.iter().find(|(key, _)| same_registry(key, registry)) else {
        return Ok(RegistryAuth::Anonymous);
    };
    let invalid_entry = |reason: &str| invalid(format!("auths[{key:?}]: {reason}"));
    if let Some(token) = &entry.identitytoken {
        return Ok(RegistryAuth::Bearer(token.clone()));
    }
    if let (Some(user), Some(password)) = (&entry.username, &entry.password) {
        return Ok(RegistryAuth::Basic(user.clone(), password.clone()));
    }
    let auth = entry
        .auth
        .as_deref()
        .ok_or_else(|| invalid_entry("has neither auth nor username and password"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|error| invalid_entry(&format!("auth is not base64: {error}")))?;
    let decoded = String::from_utf8(decoded).map_err(|_| invalid_entry("auth is not UTF-8 once decoded"))?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or_else(|| invalid_entry("auth must be base64 of user:password"))?;
    Ok(RegistryAuth::Basic(user.to_owned(), password.to_owned()))
}

/// Whether a config key names `registry`. Keys are written as the host
/// (`ghcr.io`, `127.0.0.1:5000`) or, by older tools, as a URL
/// (`https://index.docker.io/v1/`).
fn same_registry(key: &str, registry: &str) -> bool {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    host == registry || (registry == "docker.io" && host == "index.docker.io")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    fn basic(auth: RegistryAuth) -> (String, String) {
        match auth {
            RegistryAuth::Basic(user, password) => (user, password),
            other => panic!("expected basic auth, got {other:?}"),
        }
    }

    #[test]
    fn auth_username_password_and_url_keys_are_read() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et");
        let file = config(&format!(
            r#"{{"auths": {{
                "127.0.0.1:5000": {{"auth": "{encoded}"}},
                "https://ghcr.io/v2/": {{"username": "bob", "password": "pw"}},
                "token.example": {{"identitytoken": "tok"}}
            }}}}"#
        ));
        let read = |registry| for_registry(Some(file.path()), registry).unwrap();
        assert_eq!(basic(read("127.0.0.1:5000")), ("alice".into(), "s3cr:et".into()));
        assert_eq!(basic(read("ghcr.io")), ("bob".into(), "pw".into()));
        assert!(matches!(read("token.example"), RegistryAuth::Bearer(token) if token == "tok"));
        assert!(matches!(read("127.0.0.1:5001"), RegistryAuth::Anonymous));
        assert!(matches!(
            for_registry(None, "ghcr.io").unwrap(),
            RegistryAuth::Anonymous
        ));
    }

    #[test]
    fn bad_files_and_entries_say_what_is_wrong_and_where() {
        let error = for_registry(Some(Path::new("/no/such/config.json")), "x.io").unwrap_err();
        assert!(error.to_string().contains("/no/such/config.json"), "{error}");

        let file = config("{not json");
        let error = for_registry(Some(file.path()), "x.io").unwrap_err().to_string();
        assert!(error.contains("not a Docker config.json"), "{error}");

        let file = config(r#"{"auths": {"x.io": {"auth": "%%%"}, "y.io": {"auth": "bm9jb2xvbg=="}, "z.io": {}}}"#);
        let error = |registry| for_registry(Some(file.path()), registry).unwrap_err().to_string();
        assert!(
            error("x.io").contains(r#"auths["x.io"]: auth is not base64"#),
            "{}",
            error("x.io")
        );
        assert!(error("y.io").contains("base64 of user:password"), "{}", error("y.io"));
        assert!(error("z.io").contains("neither auth nor username"), "{}", error("z.io"));
    }
}
