//! The `serve` binary as a user runs it: started by [`Serve::builder`] (free ports,
//! `--no-cluster` or a kubeconfig), signalled with `kill`, probed on its admin port, killed on
//! drop.

use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{eventually, localhost_pki, write_pair};

pub const BIN: &str = env!("CARGO_BIN_EXE_storage-policy-webhook");
pub const POLICY_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/server/policy.yaml"
);

pub fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A running `serve`; killed on drop if the test did not stop it.
pub struct Serve {
    child: Option<Child>,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    log: PathBuf,
    ca: Option<String>,
}

/// How every test starts `serve`: free ports, `--no-cluster` unless given a kubeconfig, the log
/// in `dir/serve.log`; then the certificate, policy, flags and environment the test asks for.
pub struct ServeBuilder {
    dir: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    kubeconfig: Option<PathBuf>,
    ca: Option<String>,
    bin_var: &'static str,
}

impl Serve {
    /// Starts `serve` with its log in `dir` (made if missing).
    pub fn builder(dir: &Path) -> ServeBuilder {
        ServeBuilder {
            dir: dir.to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            kubeconfig: None,
            ca: None,
            // SPW_TEST_BIN runs another build (the release binary, for RELIABILITY.md's figures).
            bin_var: "SPW_TEST_BIN",
        }
    }

    /// [`Serve::builder`] with what most tests serve: a fresh localhost certificate
    /// ([`ServeBuilder::tls`]) and the server fixtures' policy ([`POLICY_FILE`]).
    pub fn localhost(dir: &Path) -> ServeBuilder {
        Serve::builder(dir).tls().policy(POLICY_FILE)
    }

    /// The CA PEM of the certificate [`ServeBuilder::tls`] made.
    pub fn ca(&self) -> &str {
        self.ca.as_deref().expect("started with ServeBuilder::tls")
    }
}

impl ServeBuilder {
    /// A fresh localhost CA and serving pair written into the directory
    /// (`--tls-cert`/`--tls-key`); the CA is [`Serve::ca`].
    pub fn tls(mut self) -> Self {
        std::fs::create_dir_all(&self.dir).unwrap();
        let (ca, cert, key) = pki_files(&self.dir);
        self.ca = Some(ca);
        self.tls_files(cert, key)
    }

    /// A given serving pair (replicas sharing one certificate).
    pub fn tls_files(self, cert: impl AsRef<OsStr>, key: impl AsRef<OsStr>) -> Self {
        self.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key)
    }

    /// `--config`.
    pub fn policy(self, file: impl AsRef<OsStr>) -> Self {
        self.arg("--config").arg(file)
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I: IntoIterator<Item = A>, A: AsRef<OsStr>>(self, args: I) -> Self {
        args.into_iter().fold(self, |b, a| b.arg(a))
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Watches the cluster behind `kubeconfig` instead of `--no-cluster`.
    pub fn kubeconfig(mut self, kubeconfig: &Path) -> Self {
        self.kubeconfig = Some(kubeconfig.to_owned());
        self
    }

    /// The variable that names another build to run instead of this one's.
    pub fn bin_var(mut self, var: &'static str) -> Self {
        self.bin_var = var;
        self
    }

    /// [`ServeBuilder::start`], then [`Serve::wait_ready`].
    pub async fn ready(self) -> Serve {
        let serve = self.start();
        serve.wait_ready().await;
        serve
    }

    pub fn start(self) -> Serve {
        let (https, admin) = (free_port(), free_port());
        std::fs::create_dir_all(&self.dir).unwrap();
        let log = self.dir.join("serve.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = self
            .command(https, admin)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start the binary");
        Serve {
            child: Some(child),
            https,
            admin,
            log,
            ca: self.ca,
        }
    }

    /// Runs it to its exit, as a plain command: (exit code, stdout, stderr). For the refusals at
    /// start-up, whose stderr is read apart from stdout.
    pub fn output(self) -> (Option<i32>, String, String) {
        let out = self.command(free_port(), free_port()).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn command(&self, https: SocketAddr, admin: SocketAddr) -> Command {
        let bin = std::env::var(self.bin_var).unwrap_or_else(|_| BIN.to_owned());
        let mut cmd = Command::new(bin);
        cmd.args([
            "serve",
            "--listen",
            &https.to_string(),
            "--admin-listen",
            &admin.to_string(),
        ]);
        match &self.kubeconfig {
            Some(k) => cmd.arg("--kubeconfig").arg(k),
            None => cmd.arg("--no-cluster"),
        };
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("RUST_LOG");
        cmd
    }
}

impl Serve {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (up to 10 s) until the log contains `needle`: a running server writes its log lines
    /// on a short interval (`server::log_buffer`), not the moment they happen.
    pub async fn wait_log(&self, needle: &str) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !self.log().contains(needle) {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        true
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let st = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill");
        assert!(st.success());
    }

    pub async fn wait_ready(&self) {
        self.wait_ready_within(Duration::from_secs(30)).await
    }

    pub async fn wait_ready_within(&self, within: Duration) {
        let ready = eventually(within, || async {
            (admin_get(self.admin, "/readyz").await.map(|(s, _)| s) == Some(200)).then_some(())
        })
        .await;
        assert!(ready.is_some(), "not ready in time; log:\n{}", self.log());
    }

    /// Waits until `/readyz` answers 503; how long that took, `None` if not within `within`.
    pub async fn wait_not_ready(&self, within: Duration) -> Option<Duration> {
        let t = std::time::Instant::now();
        eventually(within, || async {
            (admin_get(self.admin, "/readyz").await.map(|(s, _)| s) == Some(503)).then_some(())
        })
        .await
        .map(|()| t.elapsed())
    }

    /// [`Serve::wait_not_ready`], failing the test with `what` and the log if it is not.
    pub async fn assert_not_ready_within(&self, within: Duration, what: &str) {
        let not_ready = self.wait_not_ready(within).await;
        assert!(not_ready.is_some(), "{what}; log:\n{}", self.log());
    }

    /// Waits for the process to exit; `None` if it is still running at the end.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut().unwrap();
        let status = eventually(within, || {
            let r = child.try_wait().unwrap();
            async move { r }
        })
        .await;
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// [`Serve::wait_exit`]'s exit code; `None` if still running or killed by a signal.
    pub async fn exit_code_within(&mut self, within: Duration) -> Option<i32> {
        self.wait_exit(within).await.and_then(|s| s.code())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A plain-HTTP GET on the admin port: (status, body).
pub async fn admin_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    admin_request(addr, "GET", path).await
}

pub fn pki_files(dir: &Path) -> (String, String, String) {
    let pki = localhost_pki();
    let (cert, key) = write_pair(dir, &pki);
    (
        pki.ca_pem,
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    )
}

impl Serve {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Whether the process still runs (reaps it if it exited).
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// Resident memory of the process in KiB (`VmRSS` in /proc/<pid>/status).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

/// Any request on the admin port (plain HTTP/1.0): (status, body).
pub async fn admin_request(addr: SocketAddr, method: &str, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(
        format!("{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
            .as_bytes(),
    )
    .await
    .ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// The soft limit of open files of this process (children inherit it).
pub fn open_files_limit() -> Option<u64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}
