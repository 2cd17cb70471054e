//! The gateway's private network and mount namespaces (an unshared helper process that holds
//! them) and running commands inside them.

use super::process::proc_start_time;
use super::tools::{resolve, setup_err};
use super::{io_err, Gateway, LaunchError, Proc, AUX_TIMEOUT, POLL};
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Instant;

impl Gateway {
    pub(super) fn start_namespace(&mut self) -> Result<(), LaunchError> {
        let child = Command::new(resolve(OsStr::new("unshare")))
            .args(["--net", "--mount", "--propagation", "private", "--"])
            .args(["sleep", "infinity"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io_err("starting unshare"))?;
        let pid = child.id();
        self.holder = Some(Proc {
            name: "holder",
            start_time: 0,
            child,
        });
        // unshare(2) happens after fork: poll until the holder really is in new namespaces,
        // or an nsenter would land in the host's.
        let deadline = Instant::now() + AUX_TIMEOUT;
        let own_net = fs::read_link("/proc/self/ns/net").ok();
        let own_mnt = fs::read_link("/proc/self/ns/mnt").ok();
        loop {
            let holder = self
                .holder
                .as_mut()
                .ok_or_else(|| setup_err("holder vanished"))?;
            if let Some(status) = holder
                .child
                .try_wait()
                .map_err(io_err("waiting for unshare"))?
            {
                let mut msg = String::new();
                if let Some(mut e) = holder.child.stderr.take() {
                    let _ = e.read_to_string(&mut msg);
                }
                return Err(setup_err(format!(
                    "unshare --net --mount exited ({status}): {} (root needed)",
                    msg.trim()
                )));
            }
            let net = fs::read_link(format!("/proc/{pid}/ns/net")).ok();
            let mnt = fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if net.is_some() && net != own_net && mnt != own_mnt && comm.trim() == "sleep" {
                break;
            }
            if Instant::now() > deadline {
                return Err(setup_err(
                    "the namespace holder did not enter new namespaces",
                ));
            }
            thread::sleep(POLL);
        }
        if let Some(h) = self.holder.as_mut() {
            h.start_time = proc_start_time(pid).unwrap_or(0);
        }
        self.run_in_ns(&["ip", "link", "set", "lo", "up"])?;
        // A private /run keeps rpcbind's socket and lock away from the host's.
        self.run_in_ns(&["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run"])?;
        Ok(())
    }

    pub(super) fn run_in_ns(&self, argv: &[&str]) -> Result<(), LaunchError> {
        let out = self
            .command(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .output()
            .map_err(io_err(format!("running {}", argv.join(" "))))?;
        if !out.status.success() {
            return Err(setup_err(format!(
                "`{}` in the gateway namespace failed ({}): {}",
                argv.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }
}

pub(super) fn nsenter_command(target: u32, program: &OsStr) -> Command {
    let mut c = Command::new(resolve(OsStr::new("nsenter")));
    c.arg("--target")
        .arg(target.to_string())
        .args(["--net", "--mount", "--"])
        .arg(program);
    c
}
