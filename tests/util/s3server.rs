//! A real S3 server for the integration tests: `s3s-fs` (installed by `make setup` into
//! .deps/s3s-fs), started on 127.0.0.1 with a temp root, one bucket and test credentials, and
//! killed when dropped. Included by the tests that need it (`#[path]`), so each uses a subset.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use episode_run::s3::{S3Options, Store};

pub const BUCKET: &str = "er-test";
pub const ACCESS_KEY: &str = "AKIAEPISODERUNTEST";
pub const SECRET: &str = "episode-run-s3-test-secret-7Qx9Zr2Lm4";

/// A running s3s-fs with one bucket; killed on drop.
pub struct Server {
    child: Child,
    pub root: tempfile::TempDir,
    pub endpoint: String,
}

impl Server {
    pub fn start() -> Self {
        let exe = Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/s3s-fs/bin/s3s-fs");
        assert!(exe.is_file(), "{} missing: `make setup` installs it", exe.display());
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let port = free_port();
        let child = Command::new(exe)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", ACCESS_KEY, "--secret-key", SECRET])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start listening on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child, root, endpoint: format!("http://127.0.0.1:{port}") }
    }

    pub fn flags(&self) -> Vec<String> {
        vec!["--s3-endpoint".into(), self.endpoint.clone(), "--s3-path-style".into()]
    }

    /// The library client, as the binary builds it, with the test credentials.
    pub fn store(&self) -> Store {
        test_env();
        Store::connect(S3Options { endpoint: Some(self.endpoint.clone()), path_style: true, ..S3Options::default() }).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The credentials every process of these tests uses, and nothing from the machine's own AWS
/// setup. Set once per test process, before any client reads them.
pub fn test_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for (k, v) in env_pairs(SECRET) {
            std::env::set_var(k, v);
        }
        for k in ["AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"] {
            std::env::remove_var(k);
        }
    });
}

pub fn env_pairs(secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", secret.into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_CONFIG_FILE", "/nonexistent/aws-config".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}
