//! Real processes for tests that kill things: the gateway binary (`run`, `example-sidecar`)
//! and the Python example sidecar. Each child's stderr goes to a file whose tail is shown
//! when something fails.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{OnceLock, mpsc},
    time::Duration,
};

pub fn gateway_bin() -> &'static str {
    env!("CARGO_BIN_EXE_projector-gateway")
}

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process that is killed when dropped.
pub struct Process {
    pub child: Child,
    pub stderr_path: PathBuf,
    /// For sidecars: `http://HOST:PORT` from their `listening on` line.
    pub address: Option<String>,
}

impl Process {
    /// Spawns `command`, sending stderr to `stderr_path`; when `wait_listening`, waits up to
    /// 60 s for the `listening on HOST:PORT` line on stdout.
    pub fn spawn(mut command: Command, stderr_path: PathBuf, wait_listening: bool) -> Self {
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        command.stdin(Stdio::null()).stderr(stderr).stdout(if wait_listening { Stdio::piped() } else { Stdio::null() });
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let address = wait_listening.then(|| {
            let stdout = child.stdout.take().unwrap();
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let mut lines = BufReader::new(stdout).lines();
                if let Some(Ok(line)) = lines.next() {
                    let _ = tx.send(line);
                }
                for _ in lines {} // keep draining so the child never blocks on stdout
            });
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => format!("http://{}", line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}"))),
                Err(_) => panic!("{command:?} did not print `listening on` within 60 s; stderr:\n{}", tail(&stderr_path)),
            }
        });
        Self { child, stderr_path, address }
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc_kill(self.child.id() as i32, signal) };
    }

    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the exit status, up to `within`.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "process did not exit within {within:?}; stderr:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        tail(&self.stderr_path)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

pub const SIGTERM: i32 = 15;
/// Pauses a process (Linux numbering), as a long GC pause or a frozen VM would.
pub const SIGSTOP: i32 = 19;
pub const SIGCONT: i32 = 18;

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The bundled Rust example reducer as its own process (`projector-gateway example-sidecar`),
/// with its default `sql` target whatever `REDUCER_TARGET` the developer's shell holds.
pub fn example_sidecar(address: &str, dir: &Path) -> Process {
    let mut command = Command::new(gateway_bin());
    command.args(["example-sidecar", "--address", address]).env_remove("REDUCER_TARGET");
    Process::spawn(command, dir.join(format!("sidecar-{}.log", address.replace(':', "_"))), true)
}

/// `projector-gateway run --config <config>`.
pub fn gateway_run(config: &Path, dir: &Path, name: &str) -> Process {
    let mut command = Command::new(gateway_bin());
    command.args(["run", "--config"]).arg(config).env("RUST_LOG", "info");
    Process::spawn(command, dir.join(format!("{name}.log")), false)
}

/// The Python interpreter of the example sidecar's venv, set up (once per test binary) by
/// `scripts/python-sidecar.sh`.
pub fn python_sidecar_python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/python-sidecar.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/python-sidecar.sh");
        assert!(out.status.success(), "scripts/python-sidecar.sh failed");
        String::from_utf8(out.stdout).unwrap().lines().last().expect("python path").trim().to_string()
    })
}

/// The Python example reducer as a process.
pub fn python_sidecar(address: &str, dir: &Path) -> Process {
    let mut command = Command::new(python_sidecar_python());
    command.arg(repo_root().join("sidecar-examples/python/reducer.py")).args(["--address", address]);
    Process::spawn(command, dir.join(format!("python-sidecar-{}.log", address.replace(':', "_"))), true)
}
