//! A service started from the real binary for a test, killed when dropped.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use shadowcast::service::client::{Clients, connect};

const BIN: &str = env!("CARGO_BIN_EXE_shadowcast");

/// A copy of the shipped model registry under `dir` (made once, kept
/// across restarts): tests promote and roll back models, which must not
/// write into the source tree.
pub fn models(dir: &Path) -> PathBuf {
    let copy = dir.join("models");
    if !copy.exists() {
        copy_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models"), &copy);
    }
    copy
}

pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

pub struct Service {
    pub child: Child,
    pub endpoint: String,
    pub address: String,
}

impl Service {
    pub fn start(dir: &Path, logs: &Path, extra: &[&str]) -> Service {
        Service::start_with(dir, logs, extra, Command::new(BIN))
    }

    /// Started with at most `open_files` descriptors (soft and hard limit).
    pub fn start_with_open_files(
        dir: &Path,
        logs: &Path,
        extra: &[&str],
        open_files: u64,
    ) -> Service {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(BIN);
        // SAFETY: setrlimit is async-signal-safe and touches no memory of
        // the parent.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: open_files,
                    rlim_max: open_files,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        Service::start_with(dir, logs, extra, command)
    }

    pub fn start_with(dir: &Path, logs: &Path, extra: &[&str], mut command: Command) -> Service {
        // Not following the logs unless the test says how often.
        let follow: &[&str] = if extra.contains(&"--follow-seconds") {
            &[]
        } else {
            &["--follow-seconds", "0"]
        };
        let listen: &[&str] = if extra.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut child = command
            .arg("serve")
            .args(listen)
            .args(follow)
            .arg("--models")
            .arg(models(dir))
            .arg("--logs")
            .arg(logs)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(address) = line.trim().strip_prefix("shadowcast listening on ") else {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            panic!("the service did not start: {line}\n{stderr}");
        };
        Service {
            endpoint: format!("http://{address}"),
            address: address.to_string(),
            child,
        }
    }

    pub async fn clients(&self, token: Option<&str>) -> Clients {
        connect(&self.endpoint, token, None).await.unwrap()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.child.wait().unwrap()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}
