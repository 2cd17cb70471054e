//! Helpers for tests of the S3 backend: the S3 test server (SeaweedFS `weed mini`, installed
//! by `scripts/setup`) in a gateway's private namespace, a gateway whose backend is that
//! server, and running code inside the namespace to look at the bucket directly.

use std::future::Future;
use std::path::{Path, PathBuf};

use strata_backend::{CredentialsSource, S3Config, S3Store};
use strata_ganesha_conf::conf::GaneshaConf;
use strata_ganesha_conf::launcher::{Gateway, S3ServerOptions};

use crate::{in_ci, plugin_dir, require_tools, tempdir, TestGateway, GATEWAY_TOOLS};

/// The `weed` binary `scripts/setup` installs; None (a loud skip) if it is missing outside CI,
/// a panic under `CI=true`.
pub fn weed_bin() -> Option<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf();
    let weed = S3ServerOptions::setup_weed(&repo);
    if weed.is_file() {
        return Some(weed);
    }
    let msg = format!("{} is missing (run scripts/setup)", weed.display());
    if in_ci() {
        panic!("{msg}; CI=true, so this is a failure, not a skip");
    }
    eprintln!("SKIP: {msg}");
    None
}

/// Runs `f` on a thread that has entered `gw`'s network namespace, so its sockets reach the
/// gateway's private loopback (the S3 test server). Panics in host mode.
pub fn in_namespace<T: Send>(gw: &Gateway, f: impl FnOnce() -> T + Send) -> T {
    let ns = gw.net_namespace().expect("a private namespace");
    std::thread::scope(|s| {
        s.spawn(move || {
            let file = std::fs::File::open(&ns).expect("open the namespace");
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("setns into the gateway's network namespace");
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Runs the future `f` to completion on a runtime inside `gw`'s network namespace.
pub fn block_on_in_namespace<F: Future + Send>(gw: &Gateway, f: F) -> F::Output
where
    F::Output: Send,
{
    in_namespace(gw, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    })
}

/// An S3 configuration for the test server `o` with its keys, under `prefix`.
pub fn s3_config(o: &S3ServerOptions, prefix: &str, creds: &Path) -> S3Config {
    std::fs::write(
        creds,
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            o.access_key, o.secret_key
        ),
    )
    .expect("write the credentials file");
    let mut c = S3Config::new(
        o.endpoint(),
        o.bucket.clone(),
        CredentialsSource::File(creds.to_path_buf()),
    );
    c.prefix = prefix.to_string();
    c
}

/// A gateway with our FSAL whose backend is the S3 test server started in its namespace
/// (prefix `gw/`, keys from a credentials file), after `edit` had its say on the conf.
pub struct S3Gateway {
    /// The gateway.
    pub tg: TestGateway,
    /// The S3 server's options.
    pub s3: S3ServerOptions,
    /// The credentials file the gateway reads.
    pub creds: PathBuf,
}

impl S3Gateway {
    /// Starts it; None (a loud skip) when tools are missing outside CI.
    pub fn start(edit: impl FnOnce(&mut GaneshaConf)) -> Option<S3Gateway> {
        if !require_tools(GATEWAY_TOOLS) {
            return None;
        }
        let s3 = S3ServerOptions::for_tests(weed_bin()?);
        let dir = tempdir();
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).expect("create data dir");
        let creds = dir.path().join("s3-credentials");
        s3_config(&s3, "", &creds);
        let mut conf = GaneshaConf::strata_default(&data_dir);
        if let Some(pairs) = conf.strata.as_mut() {
            for (k, v) in [
                ("Backend", "S3".to_string()),
                ("S3_Endpoint", s3.endpoint()),
                ("S3_Bucket", s3.bucket.clone()),
                ("S3_Prefix", "gw/".to_string()),
                ("S3_Credentials_File", creds.display().to_string()),
            ] {
                pairs.push((k.to_string(), v));
            }
        }
        edit(&mut conf);
        let tg =
            TestGateway::launch_with(dir, data_dir, conf, Some(plugin_dir()), Some(s3.clone()))
                .unwrap_or_else(|e| panic!("{e}"));
        Some(S3Gateway { tg, s3, creds })
    }

    /// The configuration of a client of the gateway's bucket prefix `gw/`.
    pub fn config(&self) -> S3Config {
        s3_config(&self.s3, "gw/", &self.creds)
    }

    /// Every key under the gateway's prefix (read inside its namespace).
    pub fn keys(&self) -> Vec<String> {
        let config = self.config();
        block_on_in_namespace(self.tg.gw(), async move {
            let store = S3Store::connect(S3Config {
                unsafe_single_writer: true,
                ..config
            })
            .await
            .expect("connect");
            strata_backend::conformance::list_all(&store, "", 1000).await
        })
    }
}
