//! llama.cpp's OpenAI-compatible server (`../shared/tools/llama.cpp/llama-server`, or the build
//! for this CPU in `$LLAMA_CPP_BIN_DIR`) serving a GGUF file on a free loopback port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, http, log_tail, tool};

pub struct LlamaServer {
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
    _tmp: tempfile::TempDir,
}

impl LlamaServer {
    /// Serves `model` with `threads` threads and one slot; `None` when `../shared` is absent.
    pub fn start(model: &Path, threads: usize) -> Option<LlamaServer> {
        let bin = tool("llama.cpp/llama-server")?;
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("llama-server.log");
        let port = free_port();
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .current_dir(tmp.path())
            .arg("-m")
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["-t", &threads.to_string(), "-c", "4096", "-np", "1"])
            .args(["--metrics", "--slots", "--no-webui"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("starting llama-server");
        let mut s = LlamaServer {
            port,
            child: Some(child),
            log,
            _tmp: tmp,
        };
        s.wait_ready();
        Some(s)
    }

    /// `http://127.0.0.1:PORT/v1`, the base URL an OpenAI client is given.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn wait_ready(&mut self) {
        let t = Instant::now();
        loop {
            if let Some((200, _)) = http(self.port, "GET", "/health") {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                let hint = if std::os::unix::process::ExitStatusExt::signal(&status) == Some(4) {
                    " (an instruction this CPU lacks: run the tests with scripts/test, which \
                     builds llama.cpp for this CPU with scripts/llama-tools and sets \
                     LLAMA_CPP_BIN_DIR)"
                } else {
                    ""
                };
                panic!(
                    "llama-server exited with {status}{hint}: {}",
                    log_tail(&self.log)
                );
            }
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "llama-server did not become ready: {}",
                log_tail(&self.log)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the one slot is working on a request (`GET /slots`).
    pub fn busy(&self) -> bool {
        http(self.port, "GET", "/slots")
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .and_then(|v| {
                v.as_array()
                    .map(|a| a.iter().any(|s| s["is_processing"].as_bool() == Some(true)))
            })
            .unwrap_or(false)
    }

    /// Tokens generated since the start (`llamacpp:tokens_predicted_total` in `/metrics`).
    pub fn tokens_predicted(&self) -> u64 {
        http(self.port, "GET", "/metrics")
            .map(|(_, body)| {
                body.lines()
                    .find(|l| l.starts_with("llamacpp:tokens_predicted_total"))
                    .and_then(|l| l.split_whitespace().last())
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0) as u64
            })
            .unwrap_or(0)
    }

    /// SIGKILL, as a crashed or killed server.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// What the server logged, for failure messages.
    pub fn log(&self) -> String {
        log_tail(&self.log)
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        self.kill();
    }
}
