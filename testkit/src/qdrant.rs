//! Real Qdrant servers: the binary in `../shared/tools/qdrant`, started on free loopback ports
//! with its own storage under a temporary directory, one node or a cluster.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, http, log_tail, tool};

/// The Qdrant binary, or `None` (with the reason printed) when `../shared` is absent.
pub fn binary() -> Option<PathBuf> {
    tool("qdrant/qdrant")
}

/// One running (or stopped) Qdrant process.
pub struct Node {
    bin: PathBuf,
    pub dir: PathBuf,
    pub grpc: u16,
    pub http: u16,
    pub p2p: Option<u16>,
    args: Vec<String>,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

impl Node {
    /// A single node, ready; `None` when the binary is not available (see [`binary`]).
    pub fn start() -> Option<Node> {
        let bin = binary()?;
        let tmp = tempfile::tempdir().unwrap();
        let mut n = Node::new(bin, tmp.path().to_path_buf(), None, Vec::new());
        n._tmp = Some(tmp);
        n.run();
        n.wait_ready();
        Some(n)
    }

    fn new(bin: PathBuf, dir: PathBuf, p2p: Option<u16>, args: Vec<String>) -> Node {
        std::fs::create_dir_all(&dir).unwrap();
        Node {
            bin,
            dir,
            grpc: free_port(),
            http: free_port(),
            p2p,
            args,
            child: None,
            _tmp: None,
        }
    }

    /// The gRPC URL the store connects to.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc)
    }

    fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("qdrant.log"))
            .unwrap();
        let mut cmd = Command::new(&self.bin);
        cmd.current_dir(&self.dir)
            .env("QDRANT__SERVICE__HOST", "127.0.0.1")
            .env("QDRANT__SERVICE__GRPC_PORT", self.grpc.to_string())
            .env("QDRANT__SERVICE__HTTP_PORT", self.http.to_string())
            .env("QDRANT__STORAGE__STORAGE_PATH", self.dir.join("storage"))
            .env(
                "QDRANT__STORAGE__SNAPSHOTS_PATH",
                self.dir.join("snapshots"),
            )
            .env("QDRANT__TELEMETRY_DISABLED", "true")
            .env("QDRANT__LOG_LEVEL", "WARN")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(p2p) = self.p2p {
            cmd.env("QDRANT__CLUSTER__ENABLED", "true")
                .env("QDRANT__CLUSTER__P2P__PORT", p2p.to_string());
        }
        self.child = Some(cmd.spawn().expect("starting qdrant"));
    }

    /// Waits until the node answers `/readyz`.
    pub fn wait_ready(&mut self) {
        let t = Instant::now();
        loop {
            if let Some((200, _)) = http(self.http, "GET", "/readyz") {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "qdrant exited with {status}: {}",
                    log_tail(&self.dir.join("qdrant.log"))
                );
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "qdrant did not become ready: {}",
                log_tail(&self.dir.join("qdrant.log"))
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: nothing is flushed or handed over.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same ports and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.run();
        self.wait_ready();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three (or `n`) nodes in one cluster on loopback ports, all ready and joined.
pub struct Cluster {
    pub nodes: Vec<Node>,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    pub fn start(n: usize) -> Option<Cluster> {
        let bin = binary()?;
        let tmp = tempfile::tempdir().unwrap();
        let p2p: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut nodes = Vec::new();
        for (i, port) in p2p.iter().enumerate() {
            let own = format!("http://127.0.0.1:{port}");
            let args = if i == 0 {
                vec!["--uri".to_string(), own]
            } else {
                vec![
                    "--bootstrap".to_string(),
                    format!("http://127.0.0.1:{}", p2p[0]),
                    "--uri".to_string(),
                    own,
                ]
            };
            let mut node = Node::new(
                bin.clone(),
                tmp.path().join(format!("node{i}")),
                Some(*port),
                args,
            );
            node.run();
            node.wait_ready();
            nodes.push(node);
        }
        let c = Cluster { nodes, _tmp: tmp };
        c.wait_for(|c| c.peers_seen(0) == n, "every peer to join");
        Some(c)
    }

    /// How many peers node `i` knows.
    pub fn peers_seen(&self, i: usize) -> usize {
        http(self.nodes[i].http, "GET", "/cluster")
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .and_then(|v| v["result"]["peers"].as_object().map(|p| p.len()))
            .unwrap_or(0)
    }

    /// Node `i`'s peer id.
    pub fn peer_id(&self, i: usize) -> u64 {
        http(self.nodes[i].http, "GET", "/cluster")
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .and_then(|v| v["result"]["peer_id"].as_u64())
            .expect("peer id")
    }

    /// Every replica of `collection`, as the running nodes see them: (shard, peer, state).
    pub fn replicas(&self, collection: &str) -> Vec<(u64, u64, String)> {
        let mut out = Vec::new();
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            let Some((200, body)) =
                http(n.http, "GET", &format!("/collections/{collection}/cluster"))
            else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let r = &v["result"];
            let me = r["peer_id"].as_u64().unwrap_or(0);
            for s in r["local_shards"].as_array().into_iter().flatten() {
                out.push((
                    s["shard_id"].as_u64().unwrap_or(0),
                    me,
                    s["state"].as_str().unwrap_or("").to_string(),
                ));
            }
            for s in r["remote_shards"].as_array().into_iter().flatten() {
                out.push((
                    s["shard_id"].as_u64().unwrap_or(0),
                    s["peer_id"].as_u64().unwrap_or(0),
                    s["state"].as_str().unwrap_or("").to_string(),
                ));
            }
        }
        out
    }

    /// Polls `ok` for up to two minutes.
    pub fn wait_for(&self, ok: impl Fn(&Cluster) -> bool, what: &str) -> Duration {
        let t = Instant::now();
        while !ok(self) {
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        t.elapsed()
    }
}
