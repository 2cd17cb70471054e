//! Tests of the built `strata` binary: `conf check/render/params`, the refusals of `up`,
//! `down`/`status` without a gateway, and the management commands (`status`, `sync`,
//! `volume info`) against the engine's management server on a real filesystem.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn strata(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .expect("run strata")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn profiles_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ganesha-conf/profiles")
}

fn ci() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
}

#[test]
fn conf_check_accepts_every_shipped_profile() {
    for name in ["default", "esxi", "kvm"] {
        let f = profiles_dir().join(format!("{name}.conf"));
        let out = strata(&["conf", "check", f.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{name}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains(": OK ("),
            "{}",
            text(&out.stdout)
        );
    }
}

#[test]
fn conf_check_prints_file_line_reason_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.conf");
    std::fs::write(
        &f,
        "# line 1\n\
         STRATA {\n\
         \x20   Data_Dir = \"/var/lib/strata\";\n\
         \x20   SCO_Size = \"5000\";\n\
         \x20   Write_Buffer_Size = \"lots\";\n\
         \x20   Colour = blue;\n\
         }\n\
         EXPORT { Export_Id = 1; Path = \"/\"; Pseudo = \"/strata\"; FSAL { Name = STRATA; } }\n",
    )
    .unwrap();
    let out = strata(&["conf", "check", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let file = f.display().to_string();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with(&format!("{file}:4: SCO_Size")),
        "{stdout}"
    );
    assert!(lines[0].contains("out of range"), "{stdout}");
    assert!(
        lines[1].starts_with(&format!("{file}:5: Write_Buffer_Size")),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with(&format!("{file}:6: unknown parameter Colour")),
        "{stdout}"
    );
    assert!(
        text(&out.stderr).contains("3 error(s)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn conf_check_reports_syntax_errors_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("syntax.conf");
    std::fs::write(&f, "STRATA {\n  Data_Dir = \"/x\"\n}\n").unwrap();
    let out = strata(&["conf", "check", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).starts_with(&format!("{}:2: Data_Dir: missing `;`", f.display())),
        "{}",
        text(&out.stdout)
    );
    let out = strata(&["conf", "check", "/nonexistent/strata.conf"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("cannot read"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn conf_render_reproduces_the_profile_files() {
    for name in ["default", "esxi", "kvm"] {
        let out = strata(&["conf", "render", "--profile", name]);
        assert!(out.status.success());
        let file = std::fs::read_to_string(profiles_dir().join(format!("{name}.conf"))).unwrap();
        assert_eq!(text(&out.stdout), file, "{name}");
    }
    let out = strata(&["conf", "render", "--data-dir", "/srv/s"]);
    assert!(text(&out.stdout).contains("Data_Dir = \"/srv/s\";"));
    let out = strata(&["conf", "render", "--profile", "vmware"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap refuses an unknown profile"
    );
}

#[test]
fn conf_params_prints_the_table() {
    let out = strata(&["conf", "params"]);
    assert!(out.status.success());
    let t = text(&out.stdout);
    assert!(t.starts_with("| Parameter |"), "{t}");
    assert!(t.contains("| `SCO_Size` |"), "{t}");
}

#[test]
fn status_and_down_without_a_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = strata(&["status", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("not running"));
    let out = strata(&["down", "--data-dir", d]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("nothing to stop"));
}

/// A real engine in a temp data directory with its management server at
/// `<data>/mgmt.sock` (what the FSAL runs inside Ganesha), holding `/vm1/disk-flat.vmdk` with
/// 1 MiB + 5 bytes written and committed.
struct Engine {
    _dir: tempfile::TempDir,
    data: PathBuf,
    fs: std::sync::Arc<strata_engine::Filesystem>,
    server: Option<strata_engine::mgmt::MgmtServer>,
}

fn engine_with_a_volume() -> Engine {
    use strata_engine::{CreateMode, Cred, EngineConfig, Filesystem};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fs = std::sync::Arc::new(Filesystem::open(EngineConfig::new(&data)).expect("open"));
    let vm1 = fs
        .mkdir(fs.root(), b"vm1", 0o755, Cred::default())
        .expect("mkdir");
    let disk = fs
        .create(
            vm1.handle,
            b"disk-flat.vmdk",
            0o644,
            Cred::default(),
            CreateMode::Guarded,
        )
        .expect("create")
        .attr;
    fs.write(disk.handle, 0, &vec![7u8; (1 << 20) + 5], false)
        .expect("write");
    fs.commit(disk.handle).expect("commit");
    let server = strata_engine::mgmt::MgmtServer::start(data.join("mgmt.sock"), fs.clone())
        .expect("start management server");
    Engine {
        _dir: dir,
        data,
        fs,
        server: Some(server),
    }
}

#[test]
fn management_commands_talk_to_the_engine() {
    let e = engine_with_a_volume();
    let d = e.data.to_str().unwrap();

    let out = strata(&["status", "--data-dir", d]);
    let st = text(&out.stdout);
    assert!(out.status.success(), "{st}{}", text(&out.stderr));
    assert!(st.contains("not started by `strata up`"), "{st}");
    let sock = e.data.join("mgmt.sock");
    assert!(
        st.contains(&format!("engine: answering on {}", sock.display())),
        "{st}"
    );
    assert!(st.contains(&format!("data dir  {d}\n")), "{st}");
    assert!(st.contains(&format!("pid {}", std::process::id())), "{st}");

    let out = strata(&["sync", "--wait", "--data-dir", d]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("synced: everything committed is on the backend"),
        "{}",
        text(&out.stdout)
    );
    let out = strata(&["sync", "--socket", sock.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("sync started"));

    let out = strata(&["volume", "info", "/vm1/disk-flat.vmdk", "--data-dir", d]);
    let v = text(&out.stdout);
    assert!(out.status.success(), "{v}{}", text(&out.stderr));
    assert!(v.contains("volume            /vm1/disk-flat.vmdk\n"), "{v}");
    assert!(v.contains("size              1048581 (1.0 MiB)\n"), "{v}");
    assert!(v.contains("not on backend    0 (0 B)\n"), "{v}");

    // --json: the engine's answer, as the protocol carries it.
    let out = strata(&[
        "volume",
        "info",
        "/vm1/disk-flat.vmdk",
        "--socket",
        sock.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["size"], 1048581);
    assert_eq!(j["pending_backend_bytes"], 0);
    let root = e.fs.lookup_path("/vm1/disk-flat.vmdk").expect("lookup");
    assert_eq!(j["ino"], root.handle.ino);
    let out = strata(&["status", "--data-dir", d, "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["running"], true);
    assert_eq!(j["engine"]["fsid"], e.fs.fsid());

    // Not a volume, not there: exit 1 and a clear message.
    for (path, needle) in [
        ("/vm1", "/vm1 is not a volume: it is a directory"),
        ("/vm1/nope-flat.vmdk", "/vm1/nope-flat.vmdk: not found"),
    ] {
        let out = strata(&["volume", "info", path, "--data-dir", d]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
        assert!(text(&out.stderr).contains(needle), "{}", text(&out.stderr));
    }
}

#[test]
fn management_commands_without_a_gateway_exit_3() {
    let mut e = engine_with_a_volume();
    let d = e.data.to_str().unwrap().to_string();
    // The server stops (as at Ganesha's shutdown): the socket goes, the commands say so.
    e.server.take().expect("server").stop();
    assert!(!e.data.join("mgmt.sock").exists());
    for args in [
        vec!["sync", "--wait", "--data-dir", &d],
        vec!["volume", "info", "/vm1/disk-flat.vmdk", "--data-dir", &d],
    ] {
        let out = strata(&args);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{args:?}: {}",
            text(&out.stdout)
        );
        let err = text(&out.stderr);
        assert!(err.contains("no gateway answers on"), "{err}");
        assert!(err.contains("mgmt.sock"), "{err}");
    }
    let out = strata(&["status", "--data-dir", &d]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stdout).contains("engine: not answering"));
    // A socket file nobody listens on (a gateway killed with SIGKILL) is "not running" too.
    let stale = e.data.join("mgmt.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    let out = strata(&["sync", "--wait", "--data-dir", &d]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}

/// `up` checks for Ganesha first; where it is missing that is the refusal we see instead.
fn expect_up_refusal(args: &[&str], needle: &str) {
    let out = strata(args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    let has_ganesha = Path::new("/usr/bin/ganesha.nfsd").exists();
    if !has_ganesha {
        assert!(!ci(), "CI=true but ganesha.nfsd is missing");
        assert!(err.contains("run scripts/setup"), "{err}");
        return;
    }
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in {err}"
    );
}

#[test]
fn up_refuses_an_unwritable_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let data = file.join("data");
    expect_up_refusal(
        &["up", "--data-dir", data.to_str().unwrap()],
        "cannot create the data directory",
    );
}

#[test]
fn up_refuses_without_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("plugins");
    std::fs::create_dir(&empty).unwrap();
    let data = dir.path().join("data");
    expect_up_refusal(
        &[
            "up",
            "--data-dir",
            data.to_str().unwrap(),
            "--plugin-dir",
            empty.to_str().unwrap(),
        ],
        "libfsalstrata.so not found",
    );
}

#[test]
fn up_refuses_a_port_in_use() {
    let dir = tempfile::tempdir().unwrap();
    // A stand-in plugin file: the port check comes before anything is started.
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::write(plugins.join("libfsalstrata.so"), b"").unwrap();
    let busy = std::net::TcpListener::bind(("0.0.0.0", 0)).unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let data = dir.path().join("data");
    expect_up_refusal(
        &[
            "up",
            "--data-dir",
            data.to_str().unwrap(),
            "--plugin-dir",
            plugins.to_str().unwrap(),
            "--nfs-port",
            &port,
        ],
        &format!("NFS port {port} is not available"),
    );
}

#[test]
fn up_refuses_bad_option_values() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::write(plugins.join("libfsalstrata.so"), b"").unwrap();
    let data = dir.path().join("data");
    expect_up_refusal(
        &[
            "up",
            "--data-dir",
            data.to_str().unwrap(),
            "--plugin-dir",
            plugins.to_str().unwrap(),
            "--s3-endpoint",
            "localhost:9000",
            "--s3-bucket",
            "b",
        ],
        "invalid options",
    );
}

/// The directory holding libfsalstrata.so: `$STRATA_PLUGIN_DIR`, else the directory of the
/// `strata` binary (cargo builds both into target/<profile>).
fn plugin_dir() -> PathBuf {
    let dir = match std::env::var_os("STRATA_PLUGIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_BIN_EXE_strata"))
            .parent()
            .expect("binary dir")
            .to_path_buf(),
    };
    assert!(
        dir.join("libfsalstrata.so").is_file(),
        "{} has no libfsalstrata.so: build the workspace first (cargo build --workspace, or scripts/test)",
        dir.display()
    );
    dir
}

/// Stops the gateway of a data dir even when the test fails half-way.
struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = strata(&["down", "--data-dir", self.0.to_str().unwrap_or("")]);
    }
}

#[test]
fn up_serves_nfs_in_a_private_namespace_and_down_stops_it() {
    let tools = [
        "ganesha.nfsd",
        "rpcbind",
        "nfs-ls",
        "nfs-cp",
        "nfs-cat",
        "unshare",
        "nsenter",
    ];
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| strata_ganesha_conf::launcher::find_in_path(t).is_none())
        .collect();
    if !missing.is_empty() {
        assert!(!ci(), "CI=true but {missing:?} missing (run scripts/setup)");
        eprintln!("SKIPPED: {missing:?} not installed (run scripts/setup)");
        return;
    }
    let plugins = plugin_dir();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let _down = Down(data.clone());

    let out = strata(&[
        "up",
        "--private-namespace",
        "--data-dir",
        d,
        "--plugin-dir",
        plugins.to_str().unwrap(),
        "--timeout",
        "60",
    ]);
    let up_text = text(&out.stdout);
    assert!(
        out.status.success(),
        "up failed: {}{}",
        up_text,
        text(&out.stderr)
    );
    assert!(
        up_text.contains("export    /strata (NFS v3 + v4, FSAL STRATA)"),
        "{up_text}"
    );
    assert!(up_text.contains("esxcli storage nfs41 add"), "{up_text}");

    let out = strata(&["status", "--data-dir", d]);
    let st = text(&out.stdout);
    assert!(out.status.success(), "{st}");
    let holder = st
        .lines()
        .find_map(|l| l.trim().strip_prefix("holder"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .expect("holder pid in status")
        .to_string();
    let ganesha = st
        .lines()
        .find_map(|l| l.trim().strip_prefix("ganesha"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .expect("ganesha pid in status")
        .to_string();
    // The engine inside that Ganesha answers on its management socket.
    assert!(st.contains("engine: answering on "), "{st}");
    assert!(st.contains(&format!(", pid {ganesha}, up ")), "{st}");

    // A second `up` on the same data dir is refused while the first runs.
    let again = strata(&[
        "up",
        "--private-namespace",
        "--data-dir",
        d,
        "--plugin-dir",
        plugins.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("already runs"),
        "{}",
        text(&again.stderr)
    );

    let in_ns = |args: &[&str]| -> Output {
        Command::new("nsenter")
            .args(["-t", &holder, "-n", "-m"])
            .args(args)
            .output()
            .expect("nsenter")
    };
    let v3 = "?version=3&nfsport=2049&mountport=20048";
    let local = dir.path().join("hello.txt");
    std::fs::write(&local, b"hello from strata up\n").unwrap();
    let out = in_ns(&[
        "nfs-cp",
        local.to_str().unwrap(),
        &format!("nfs://127.0.0.1/strata/hello.txt{v3}"),
    ]);
    assert!(
        out.status.success(),
        "nfs-cp: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = in_ns(&["nfs-ls", &format!("nfs://127.0.0.1/strata/{v3}")]);
    assert!(
        text(&out.stdout).contains("hello.txt"),
        "nfs-ls v3: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = in_ns(&["nfs-ls", "nfs://127.0.0.1/strata/?version=4&nfsport=2049"]);
    assert!(
        text(&out.stdout).contains("hello.txt"),
        "nfs-ls v4: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = in_ns(&["nfs-cat", &format!("nfs://127.0.0.1/strata/hello.txt{v3}")]);
    assert_eq!(
        text(&out.stdout),
        "hello from strata up\n",
        "{}",
        text(&out.stderr)
    );

    let out = strata(&["down", "--data-dir", d]);
    assert!(out.status.success(), "down: {}", text(&out.stderr));
    let out = strata(&["status", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    for pid in [&ganesha, &holder] {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for init to reap it.
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "pid {pid} still runs: {stat}"
        );
    }
}

/// `strata up` on an S3 endpoint nobody answers on: Ganesha refuses the export, `up` stops it
/// again and says why, naming the endpoint (and never the secret).
#[test]
fn up_on_an_unreachable_s3_endpoint_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let creds = dir.path().join("s3-creds");
    std::fs::write(
        &creds,
        "[default]\naws_access_key_id = AKID\naws_secret_access_key = SECRET-never-shown\n",
    )
    .unwrap();
    let _down = Down(data.clone());
    let plugins = if ci() || Path::new("/usr/bin/ganesha.nfsd").exists() {
        plugin_dir()
    } else {
        dir.path().to_path_buf()
    };
    let args = [
        "up",
        "--private-namespace",
        "--data-dir",
        data.to_str().unwrap(),
        "--plugin-dir",
        plugins.to_str().unwrap(),
        "--s3-endpoint",
        "http://127.0.0.1:1",
        "--s3-bucket",
        "vms",
        "--s3-credentials-file",
        creds.to_str().unwrap(),
    ];
    expect_up_refusal(&args, "cannot reach http://127.0.0.1:1");
    let err = text(&strata(&["status", "--data-dir", data.to_str().unwrap()]).stderr);
    assert!(!err.contains("SECRET"), "{err}");
}
