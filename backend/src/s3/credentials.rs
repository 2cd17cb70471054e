//! Where the S3 store's keys come from: a credentials file (`S3_Credentials_File`) or the
//! standard AWS environment variables. The secret is never printed: not by `Debug`, not in an
//! error, not in a log line.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{error::CredentialsError, future, ProvideCredentials};
use aws_credential_types::Credentials;

use crate::{Error, Result};

/// How long the credentials handed to the SDK are good for before it asks for them again: a
/// credentials file rewritten by a refresher of temporary credentials (or by hand, after a
/// rotation) is picked up within this, without a restart.
pub(crate) const RELOAD_EVERY: Duration = Duration::from_secs(60);

/// The SDK's credentials provider: the source is read again each time the SDK's identity cache
/// asks (the credentials it hands out expire after [`RELOAD_EVERY`]). Should a reload fail (a
/// file caught half-rewritten, or removed for a moment), the last good credentials are handed
/// out again, with a warning that names the source and never the secret.
#[derive(Debug)]
pub(crate) struct Reloading {
    source: CredentialsSource,
    last: Mutex<S3Credentials>,
}

impl Reloading {
    /// A provider starting from `first` (already loaded from `source`).
    pub(crate) fn new(source: CredentialsSource, first: S3Credentials) -> Reloading {
        Reloading {
            source,
            last: Mutex::new(first),
        }
    }

    fn current(&self) -> S3Credentials {
        // A panic elsewhere cannot leave these half-written: take them as they are.
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match self.source.load() {
            Ok(c) => *last = c,
            Err(e) => {
                tracing::warn!(error = %e, "S3 credentials could not be read again; the last ones stay in use");
            }
        }
        last.clone()
    }
}

impl ProvideCredentials for Reloading {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let c = self.current();
        let expiry = SystemTime::now().checked_add(RELOAD_EVERY);
        future::ProvideCredentials::ready(Ok::<_, CredentialsError>(Credentials::new(
            c.access_key,
            c.secret_key,
            c.session_token,
            expiry,
            "strata",
        )))
    }
}

/// Where to read the access key and secret from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialsSource {
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN` if set).
    Environment,
    /// A file in the AWS shared-credentials format: the `[default]` section (or the only
    /// section, or keys before any section) with `aws_access_key_id`, `aws_secret_access_key`
    /// and optionally `aws_session_token`; `#` and `;` start comments.
    File(PathBuf),
}

/// An access key and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// The access key id (not secret: it names the key in errors).
    pub access_key: String,
    /// The secret key.
    pub secret_key: String,
    /// A session token, for temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl CredentialsSource {
    /// Reads the credentials; a missing variable, an unreadable file or a file without both
    /// keys is an error that says which (and never quotes the file's content).
    pub fn load(&self) -> Result<S3Credentials> {
        match self {
            CredentialsSource::Environment => from_env(|name| std::env::var(name).ok()),
            CredentialsSource::File(path) => from_file(path),
        }
    }
}

fn bad(what: impl Into<String>) -> Error {
    Error::Credentials {
        reason: what.into(),
    }
}

fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<S3Credentials> {
    let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
        (Some(access_key), Some(secret_key)) => Ok(S3Credentials {
            access_key: access_key.trim().to_string(),
            secret_key: secret_key.trim().to_string(),
            session_token: get("AWS_SESSION_TOKEN").map(|t| t.trim().to_string()),
        }),
        _ => Err(bad(
            "no S3 credentials: set S3_Credentials_File, or AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY in the gateway's environment",
        )),
    }
}

fn from_file(path: &Path) -> Result<S3Credentials> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        bad(format!(
            "cannot read S3_Credentials_File {}: {e}",
            path.display()
        ))
    })?;
    parse(&text).map_err(|why| bad(format!("S3_Credentials_File {}: {why}", path.display())))
}

/// Parses a shared-credentials file: the `[default]` section, or else the only section, or
/// keys outside any section.
fn parse(text: &str) -> std::result::Result<S3Credentials, String> {
    let mut sections: Vec<(String, Vec<(String, String)>)> = vec![(String::new(), Vec::new())];
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name
                .trim()
                .trim_start_matches("profile ")
                .trim()
                .to_string();
            sections.push((name, Vec::new()));
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!("line {}: expected `name = value`", n + 1));
        };
        if let Some((_, keys)) = sections.last_mut() {
            keys.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let named: Vec<_> = sections.iter().filter(|(n, _)| !n.is_empty()).collect();
    let keys = match sections.iter().find(|(n, _)| n == "default") {
        Some((_, keys)) => keys,
        None if named.len() == 1 && sections[0].1.is_empty() => &named[0].1,
        None if named.is_empty() => &sections[0].1,
        None => return Err("several sections and no [default]".into()),
    };
    let get = |name: &str| {
        keys.iter()
            .rev()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(access_key), Some(secret_key)) => Ok(S3Credentials {
            access_key,
            secret_key,
            session_token: get("aws_session_token"),
        }),
        _ => Err("needs aws_access_key_id and aws_secret_access_key".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_in_the_shared_format_parse() {
        let c = parse("# mine\n[default]\naws_access_key_id = AK\naws_secret_access_key=SEC\n")
            .expect("default");
        assert_eq!(
            (c.access_key.as_str(), c.secret_key.as_str()),
            ("AK", "SEC")
        );
        assert_eq!(c.session_token, None);
        let c =
            parse("[other]\naws_access_key_id=X\naws_secret_access_key=Y\naws_session_token=T\n")
                .expect("only section");
        assert_eq!(c.session_token.as_deref(), Some("T"));
        let c = parse("aws_access_key_id=X\naws_secret_access_key=Y\n").expect("no section");
        assert_eq!(c.access_key, "X");
        let c = parse("[a]\naws_access_key_id=1\naws_secret_access_key=1\n[default]\naws_access_key_id=2\naws_secret_access_key=2\n")
            .expect("default among several");
        assert_eq!(c.access_key, "2");
        assert!(parse("[a]\naws_access_key_id=1\n[b]\naws_access_key_id=2\n").is_err());
        assert!(
            parse("[default]\naws_access_key_id=1\n").is_err(),
            "no secret"
        );
        assert!(parse("[default]\njunk\n").is_err());
    }

    #[test]
    fn the_secret_never_shows() {
        let secret = "super-secret-value";
        let c = parse(&format!(
            "[default]\naws_access_key_id=AK\naws_secret_access_key={secret}\naws_session_token={secret}\n"
        ))
        .expect("parse");
        assert!(!format!("{c:?}").contains(secret));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("creds");
        std::fs::write(
            &path,
            format!("[default]\naws_secret_access_key={secret}\n"),
        )
        .expect("write");
        let err = CredentialsSource::File(path)
            .load()
            .expect_err("no access key");
        assert!(!err.to_string().contains(secret), "{err}");
        assert!(err.to_string().contains("aws_access_key_id"), "{err}");
        let err = from_env(|_| None).expect_err("no env");
        assert!(err.to_string().contains("AWS_ACCESS_KEY_ID"), "{err}");
        let c = from_env(|n| Some(format!("{n}-v"))).expect("env");
        assert_eq!(c.session_token.as_deref(), Some("AWS_SESSION_TOKEN-v"));
    }

    /// What the SDK is handed, now.
    fn provided(p: &Reloading) -> Credentials {
        let f = p.provide_credentials();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
            .expect("credentials")
    }

    /// Temporary credentials rotated in the file reach the SDK without a restart; a file
    /// caught missing mid-rotation keeps the last good ones.
    #[test]
    fn a_rewritten_credentials_file_is_picked_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("creds");
        let write = |ak: &str, token: &str| {
            let text = format!(
                "[default]\naws_access_key_id={ak}\naws_secret_access_key=S-{ak}\naws_session_token={token}\n"
            );
            std::fs::write(&path, text).expect("write");
        };
        write("AK1", "T1");
        let source = CredentialsSource::File(path.clone());
        let p = Reloading::new(source.clone(), source.load().expect("load"));
        let c = provided(&p);
        assert_eq!((c.access_key_id(), c.session_token()), ("AK1", Some("T1")));
        let expiry = c.expiry().expect("the SDK asks again");
        assert!(expiry <= SystemTime::now() + RELOAD_EVERY, "{expiry:?}");
        write("AK2", "T2");
        let c = provided(&p);
        assert_eq!(
            (c.access_key_id(), c.secret_access_key(), c.session_token()),
            ("AK2", "S-AK2", Some("T2"))
        );
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(provided(&p).access_key_id(), "AK2", "the last good ones");
    }
}
