//! rpcbind and ganesha.nfsd inside the namespaces: started, waited for until ready, killed
//! and restarted.

use super::process::{describe_status, kill_now, proc_start_time, terminate};
use super::tools::{log_contains_after, log_tail, setup_err};
use super::{io_err, Gateway, LaunchError, NamespaceMode, Proc, AUX_TIMEOUT, POLL, READY_MARKER};
use std::fs;
use std::process::Stdio;
use std::thread;
use std::time::Instant;

impl Gateway {
    /// Kills ganesha.nfsd with SIGKILL (a crash, for restart tests) and reaps it.
    pub fn kill_ganesha(&mut self) -> Result<(), LaunchError> {
        if let Some(mut p) = self.ganesha.take() {
            kill_now(&mut p)?;
        }
        Ok(())
    }

    /// Stops ganesha.nfsd if it runs (SIGTERM, bounded wait, SIGKILL), then starts it again
    /// with the same conf and waits until it is ready.
    pub fn restart_ganesha(&mut self) -> Result<(), LaunchError> {
        if let Some(p) = self.ganesha.take() {
            terminate(p)?;
        }
        self.start_ganesha()
    }

    pub(super) fn rpcbind_answers(&self) -> bool {
        self.command("rpcinfo")
            .args(["-p", "127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    pub(super) fn start_rpcbind(&mut self) -> Result<(), LaunchError> {
        if self.mode == NamespaceMode::Host && self.rpcbind_answers() {
            return Ok(());
        }
        let out = fs::File::create(self.work_dir.join("rpcbind.out"))
            .map_err(io_err("creating rpcbind.out"))?;
        let err = out.try_clone().map_err(io_err("cloning a file handle"))?;
        // -f: stay in the foreground. A daemonizing rpcbind would escape our PID bookkeeping.
        let child = self
            .command("rpcbind")
            .args(["-f", "-w"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io_err("starting rpcbind"))?;
        let pid = child.id();
        self.rpcbind = Some(Proc {
            name: "rpcbind",
            start_time: proc_start_time(pid).unwrap_or(0),
            child,
        });
        let deadline = Instant::now() + AUX_TIMEOUT;
        loop {
            if self.rpcbind_answers() {
                return Ok(());
            }
            let rb = self
                .rpcbind
                .as_mut()
                .ok_or_else(|| setup_err("rpcbind vanished"))?;
            if let Some(status) = rb.child.try_wait().map_err(io_err("waiting for rpcbind"))? {
                self.rpcbind = None;
                let text =
                    fs::read_to_string(self.work_dir.join("rpcbind.out")).unwrap_or_default();
                return Err(setup_err(format!(
                    "rpcbind exited ({status}): {} (is another rpcbind running here?)",
                    text.trim()
                )));
            }
            if Instant::now() > deadline {
                return Err(setup_err(
                    "rpcbind did not answer `rpcinfo -p 127.0.0.1` in time",
                ));
            }
            thread::sleep(POLL);
        }
    }

    pub(super) fn start_ganesha(&mut self) -> Result<(), LaunchError> {
        let log_start = fs::metadata(&self.log_path).map_or(0, |m| m.len());
        self.log_start = log_start;
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.out_path)
            .map_err(io_err(format!("opening {}", self.out_path.display())))?;
        let err = out.try_clone().map_err(io_err("cloning a file handle"))?;
        let child = self
            .command("ganesha.nfsd")
            .arg("-F")
            .arg("-f")
            .arg(&self.conf_path)
            .arg("-L")
            .arg(&self.log_path)
            .arg("-p")
            .arg(&self.pid_path)
            .args(["-N", "NIV_EVENT"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io_err("starting ganesha.nfsd"))?;
        let pid = child.id();
        self.ganesha = Some(Proc {
            name: "ganesha",
            start_time: proc_start_time(pid).unwrap_or(0),
            child,
        });
        let deadline = Instant::now() + self.ready_timeout;
        loop {
            if log_contains_after(&self.log_path, log_start, READY_MARKER) {
                return Ok(());
            }
            let g = self
                .ganesha
                .as_mut()
                .ok_or_else(|| setup_err("ganesha vanished"))?;
            if let Some(status) = g.child.try_wait().map_err(io_err("waiting for ganesha"))? {
                self.ganesha = None;
                return Err(LaunchError::EarlyExit {
                    status: describe_status(status),
                    log: self.log_path.clone(),
                    tail: self.startup_tail(),
                });
            }
            if Instant::now() > deadline {
                if let Some(p) = self.ganesha.take() {
                    let _ = terminate(p);
                }
                return Err(LaunchError::Timeout {
                    timeout: self.ready_timeout,
                    log: self.log_path.clone(),
                    tail: self.startup_tail(),
                });
            }
            thread::sleep(POLL);
        }
    }

    pub(super) fn startup_tail(&self) -> String {
        let mut tail = log_tail(&self.log_path);
        let out = log_tail(&self.out_path);
        if !out.trim().is_empty() {
            tail.push_str("\n--- ganesha.nfsd stdout/stderr ---\n");
            tail.push_str(&out);
        }
        tail
    }
}
