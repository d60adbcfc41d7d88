//! The ready file (`wasmhook serve --ready-file`): the addresses the server
//! actually bound, written once it serves.
//!
//! Whoever starts a server for a test, a soak or a benchmark lets it bind
//! port 0 and reads the ports back from here. Picking a "free" port and
//! passing it to the server is a race: another program on the machine can
//! take it between the probe and the bind (it happened to `make test`, under
//! a build and a load generator). The file is written to a temporary name in
//! the same directory and renamed into place, so a reader sees the whole
//! file or none of it; it is removed when the server shuts down.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The contents of the ready file, as JSON:
/// `{"listen":"127.0.0.1:40211","healthListen":"127.0.0.1:40213","pid":4242}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadyFile {
    /// The admission (HTTPS) address bound.
    pub listen: SocketAddr,
    /// The health and metrics (plain HTTP) address bound.
    pub health_listen: SocketAddr,
    /// The server's process id.
    pub pid: u32,
}

/// Why the ready file could not be written or read; names the file.
#[derive(Debug, thiserror::Error)]
pub enum ReadyFileError {
    /// Writing, renaming or reading failed.
    #[error("ready file {path}: {source}")]
    Io {
        /// The ready file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not a ready file.
    #[error("ready file {path} is not a wasmhook ready file: {source}")]
    Malformed {
        /// The ready file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

impl ReadyFile {
    /// Writes `self` to `path` atomically (a temporary file beside it,
    /// renamed into place).
    pub fn write(&self, path: &Path) -> Result<(), ReadyFileError> {
        let io = |source| ReadyFileError::Io {
            path: path.to_owned(),
            source,
        };
        let mut text = serde_json::to_string(self).expect("a ReadyFile serializes");
        text.push('\n');
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(format!(".{}.tmp", self.pid));
        let temporary = PathBuf::from(temporary);
        std::fs::write(&temporary, text).map_err(io)?;
        std::fs::rename(&temporary, path).map_err(|error| {
            let _ = std::fs::remove_file(&temporary);
            io(error)
        })
    }

    /// Reads the ready file at `path`: `None` while it does not exist yet.
    pub fn read(path: &Path) -> Result<Option<Self>, ReadyFileError> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ReadyFileError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|source| ReadyFileError::Malformed {
                path: path.to_owned(),
                source,
            })
    }

    /// Waits until the server `child` (started with `--ready-file path`)
    /// has written its ready file, and returns it. Fails, saying why, when
    /// the child exits first or `timeout` passes.
    pub fn wait(path: &Path, child: &mut std::process::Child, timeout: std::time::Duration) -> Result<Self, String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(ready) = Self::read(path).map_err(|error| error.to_string())? {
                return Ok(ready);
            }
            if let Some(status) = child.try_wait().map_err(|error| error.to_string())? {
                return Err(format!(
                    "the server exited ({status}) before it wrote {}",
                    path.display()
                ));
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "the server did not write {} within {timeout:?}",
                    path.display()
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Removes the ready file at `path`, if it exists.
    pub fn remove(path: &Path) -> Result<(), ReadyFileError> {
        match std::fs::remove_file(path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(ReadyFileError::Io {
                path: path.to_owned(),
                source: error,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ReadyFile {
        ReadyFile {
            listen: "127.0.0.1:40211".parse().unwrap(),
            health_listen: "[::1]:40213".parse().unwrap(),
            pid: 4242,
        }
    }

    #[test]
    fn what_is_written_reads_back_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ready.json");
        assert_eq!(ReadyFile::read(&path).unwrap(), None, "absent until written");
        sample().write(&path).unwrap();
        assert_eq!(ReadyFile::read(&path).unwrap(), Some(sample()));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["ready.json"]);
        ReadyFile::remove(&path).unwrap();
        assert_eq!(ReadyFile::read(&path).unwrap(), None);
        ReadyFile::remove(&path).expect("removing an absent file is not an error");
    }

    #[test]
    fn the_format_is_camel_case_json() {
        let text = serde_json::to_string(&sample()).unwrap();
        assert_eq!(
            text,
            r#"{"listen":"127.0.0.1:40211","healthListen":"[::1]:40213","pid":4242}"#
        );
    }

    #[test]
    fn errors_name_the_file_and_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ready.json");
        std::fs::write(&path, "{\"listen\": 1}").unwrap();
        let error = ReadyFile::read(&path).unwrap_err().to_string();
        assert!(error.contains("ready.json"), "{error}");
        assert!(error.contains("not a wasmhook ready file"), "{error}");

        let missing_dir = dir.path().join("no-such-dir").join("ready.json");
        let error = sample().write(&missing_dir).unwrap_err().to_string();
        assert!(error.contains("no-such-dir"), "{error}");
    }
}
