//! Real engines for the tests, built from their public sources and kept in `../shared/tools`
//! (see its README): Qdrant (single node and cluster) and llama.cpp's OpenAI-compatible server.
//! Each is started on free loopback ports with its files under a temporary directory and killed
//! when dropped. When `../shared` is absent (a user's own machine) the tests that need an
//! engine print why and pass without running; a `../shared` without the engine is a failure.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod llama;
pub mod qdrant;

/// `../shared` next to the repository, or `$SHARED_DIR`.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    dir.is_dir().then_some(dir)
}

/// `../shared/tools/<rel>`, or `None` with a skip message when `../shared` is absent.
/// llama.cpp's binaries come from `$LLAMA_CPP_BIN_DIR` when it is set: `scripts/test` sets it
/// to what `scripts/llama-tools` gives, a build for this CPU where the shared one cannot run.
pub fn tool(rel: &str) -> Option<PathBuf> {
    if let (Some(name), Some(dir)) = (
        rel.strip_prefix("llama.cpp/"),
        std::env::var_os("LLAMA_CPP_BIN_DIR").filter(|d| !d.is_empty()),
    ) {
        let bin = PathBuf::from(dir).join(name);
        assert!(
            bin.exists(),
            "{} is missing ($LLAMA_CPP_BIN_DIR; scripts/llama-tools builds it)",
            bin.display()
        );
        return Some(bin);
    }
    let Some(shared) = shared_dir() else {
        eprintln!(
            "SKIPPED: no ../shared (or $SHARED_DIR) with tools/{rel}; this test runs against \
             the real engine"
        );
        return None;
    };
    let bin = shared.join("tools").join(rel);
    assert!(bin.exists(), "{} is missing", bin.display());
    Some(bin)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A plain HTTP/1.0 request on loopback: (status, body).
pub fn http(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// The end of a log file, for failure messages.
pub(crate) fn log_tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let start = s.len().saturating_sub(4000);
    let start = (start..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    s[start..].to_string()
}
