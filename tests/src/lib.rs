//! End-to-end tests across crates: the real `assistant` binary spawned as a server (real e5
//! embedder, the bundled corpus, SQLite on disk), driven over HTTP and in a real browser
//! (Debian's Chromium through chromedriver's WebDriver protocol), and killed with SIGKILL to
//! check durability. Helpers shared by the tests live here.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `TEST_DATABASE_URL` (set by scripts/test, which starts Debian's PostgreSQL) with an empty
/// `public` schema: the database is scratch, owned by the test role.
pub fn scratch_postgres() -> String {
    let url = std::env::var("TEST_DATABASE_URL").expect(
        "TEST_DATABASE_URL is not set: run scripts/test, which starts PostgreSQL \
         (scripts/postgres-test-db), or point it at a scratch database",
    );
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.batch_execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        .unwrap();
    url
}

/// A built binary of the workspace (`scripts/test` builds them all before testing).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace` (scripts/test does) first",
        p.display()
    );
    p
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The index of the bundled guides, built with the real embedder once per corpus version and
/// cached outside the clone (embedding the 580 sections takes minutes on two cores), keyed by
/// the SHA-256 of the guides. Each server gets a copy.
pub fn prepared_index() -> PathBuf {
    static INDEX: OnceLock<PathBuf> = OnceLock::new();
    INDEX
        .get_or_init(|| {
            use sha2::{Digest, Sha256};
            let guides = repo_root().join("corpus/guides");
            let mut files: Vec<PathBuf> = std::fs::read_dir(&guides)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            let mut h = Sha256::new();
            for f in &files {
                h.update(f.file_name().unwrap().to_string_lossy().as_bytes());
                h.update(std::fs::read(f).unwrap_or_default());
            }
            let key = hex::encode(h.finalize());
            let cache = std::env::var_os("ASSISTANT_CACHE_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache/hotline-assistant")
                })
                .join("e2e-index");
            let dir = cache.join(&key[..16]);
            if dir.join("done").exists() {
                return dir;
            }
            let tmp = cache.join(format!("{}.part-{}", &key[..16], std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            let out = Command::new(binary("assistant"))
                .current_dir(repo_root())
                .args(["--index"])
                .arg(&tmp)
                .args(["ingest", "corpus/guides"])
                .output()
                .expect("running assistant ingest");
            assert!(
                out.status.success(),
                "ingest failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::write(tmp.join("done"), &key).unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::rename(&tmp, &dir).unwrap();
            dir
        })
        .clone()
}

/// Copies an index directory (without tantivy's writer lock).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_name() != ".tantivy-writer.lock" && e.file_name() != "done" {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// A spawned `assistant serve`.
pub struct Server {
    pub base: String,
    pub dir: PathBuf,
    child: Child,
    env: Vec<(String, String)>,
    port: u16,
}

impl Server {
    /// Starts a server with its own index copy, database and uploads under `dir`.
    pub fn start(dir: &Path, extra_env: &[(&str, &str)]) -> Server {
        let index = dir.join("index");
        if !index.exists() {
            copy_dir(&prepared_index(), &index);
        }
        let mut env: Vec<(String, String)> = vec![
            (
                "ASSISTANT__SERVER__DB_PATH".into(),
                dir.join("state.db").display().to_string(),
            ),
            (
                "ASSISTANT__SERVER__KEY_PATH".into(),
                dir.join("server.key").display().to_string(),
            ),
            (
                "ASSISTANT__SERVER__UPLOADS_DIR".into(),
                dir.join("uploads").display().to_string(),
            ),
            ("ASSISTANT__SERVER__CHAT_LLM".into(), "false".into()),
            ("RUST_LOG".into(), "warn".into()),
        ];
        for (k, v) in extra_env {
            env.push((k.to_string(), v.to_string()));
        }
        let port = free_port();
        let mut s = Server {
            base: format!("http://127.0.0.1:{port}"),
            dir: dir.to_path_buf(),
            child: spawn(dir, &env, port),
            env,
            port,
        };
        s.wait_ready();
        s
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Ok(r) = ureq::get(&format!("{}/readyz", self.base))
                .timeout(Duration::from_secs(2))
                .call()
            {
                if r.status() == 200 {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the server exited with {status}: {}",
                    std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "the server did not become ready"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill_9(&mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }

    /// Starts again on the same port, database and index.
    pub fn restart(&mut self) {
        self.child = spawn(&self.dir, &self.env, self.port);
        self.wait_ready();
    }

    /// Creates a staff account through the CLI (password on standard input).
    pub fn add_user(&self, name: &str, password: &str, role: &str) {
        let mut c = Command::new(binary("assistant"))
            .current_dir(repo_root())
            .envs(self.env.iter().cloned())
            .args(["user", name, "--role", role])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(c.stdin.take().unwrap(), "{password}").unwrap();
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn spawn(dir: &Path, env: &[(String, String)], port: u16) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .unwrap();
    Command::new(binary("assistant"))
        .current_dir(repo_root())
        .envs(env.iter().cloned())
        .arg("--index")
        .arg(dir.join("index"))
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawning assistant serve")
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client that keeps the session cookie and sends the CSRF token, like the pages (also
/// used by `assistant`'s in-process server tests).
pub struct Client {
    base: String,
    agent: ureq::Agent,
    cookie: Option<String>,
    pub csrf: Option<String>,
}

pub struct Reply {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

impl Client {
    /// A client with no session yet.
    pub fn new(base: &str) -> Client {
        Client {
            base: base.to_string(),
            // A new connection per request: a POST on a pooled keep-alive connection that the
            // server has just closed fails with "Unexpected EOF" and ureq retries only idempotent
            // methods (a CI run lost the MyData flow test to it); browsers retry such requests.
            agent: ureq::AgentBuilder::new()
                .redirects(0)
                .timeout(Duration::from_secs(60))
                .max_idle_connections(0)
                .build(),
            cookie: None,
            csrf: None,
        }
    }

    /// Sends the next requests to another instance (the session cookie goes along, as behind a
    /// load balancer).
    pub fn set_base(&mut self, base: &str) {
        self.base = base.to_string();
    }

    /// A POST whose connection may fail (an instance being killed): the reply, or the
    /// transport error.
    pub fn try_post(&mut self, path: &str, body: &Value) -> Result<Reply, String> {
        let r = self
            .req("POST", path)
            .set("Content-Type", "application/json")
            .send_string(&body.to_string());
        match r {
            Ok(_) | Err(ureq::Error::Status(..)) => Ok(self.finish(r)),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Opens the session like [`Client::open`], or says why it could not (an instance down).
    pub fn try_open(base: &str) -> Result<Client, String> {
        let mut c = Client::new(base);
        let r = c.req("GET", "/api/session").call();
        if let Err(ureq::Error::Transport(e)) = &r {
            return Err(e.to_string());
        }
        let s = c.finish(r);
        if s.status != 200 {
            return Err(format!("{}: {}", s.status, s.body));
        }
        c.csrf = s.json()["csrf"].as_str().map(String::from);
        Ok(c)
    }

    /// Opens the session like the pages do.
    pub fn open(base: &str) -> Client {
        let mut c = Client::new(base);
        let s = c.get("/api/session");
        assert_eq!(s.status, 200, "{}", s.body);
        c.csrf = s.json()["csrf"].as_str().map(String::from);
        c
    }

    fn finish(&mut self, r: Result<ureq::Response, ureq::Error>) -> Reply {
        let r = match r {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("transport: {e}"),
        };
        let mut headers = BTreeMap::new();
        for name in r.headers_names() {
            if let Some(v) = r.header(&name) {
                headers.insert(name.to_ascii_lowercase(), v.to_string());
            }
        }
        if let Some(c) = r.header("set-cookie") {
            self.cookie = Some(c.split(';').next().unwrap_or_default().to_string());
        }
        Reply {
            status: r.status(),
            headers,
            body: r.into_string().unwrap_or_default(),
        }
    }

    fn req(&self, method: &str, path: &str) -> ureq::Request {
        let mut r = self.agent.request(method, &format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            r = r.set("Cookie", c);
        }
        if let Some(t) = &self.csrf {
            r = r.set("X-CSRF-Token", t);
        }
        r
    }

    pub fn get(&mut self, path: &str) -> Reply {
        let r = self.req("GET", path).call();
        self.finish(r)
    }

    pub fn post(&mut self, path: &str, body: &Value) -> Reply {
        self.post_raw(path, "application/json", &body.to_string())
    }

    pub fn post_raw(&mut self, path: &str, content_type: &str, body: &str) -> Reply {
        let r = self
            .req("POST", path)
            .set("Content-Type", content_type)
            .send_string(body);
        self.finish(r)
    }

    /// POSTs a file's bytes as they are (an upload such as a `.csv.gz`).
    pub fn post_bytes(&mut self, path: &str, content_type: &str, body: &[u8]) -> Reply {
        let r = self
            .req("POST", path)
            .set("Content-Type", content_type)
            .send_bytes(body);
        self.finish(r)
    }

    /// Signs in; on success the session's new CSRF token is used from then on.
    pub fn login(&mut self, user: &str, password: &str) -> Reply {
        let r = self.post(
            "/api/login",
            &json!({"username": user, "password": password}),
        );
        if r.status == 200 {
            self.csrf = r.json()["csrf"].as_str().map(String::from);
        }
        r
    }
}

/// Server-Sent Events as (event, data) pairs; data is parsed as JSON where it is JSON.
pub fn events(body: &str) -> Vec<(String, Value)> {
    body.replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|block| {
            let mut name = "message".to_string();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if data.is_empty() {
                return None;
            }
            let v = serde_json::from_str(&data).unwrap_or(Value::String(data));
            Some((name, v))
        })
        .collect()
}

/// A WebDriver session on headless Chromium (chromedriver from Debian's `chromium-driver`).
pub struct Browser {
    driver: Child,
    url: String,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub fn start() -> Browser {
        Browser::start_with(&[])
    }

    /// Chromium with extra command-line switches, e.g. a fake microphone playing a WAV file
    /// (`--use-fake-device-for-media-stream`, `--use-file-for-fake-audio-capture=…`).
    pub fn start_with(extra_args: &[String]) -> Browser {
        let driver_bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect(
                "chromedriver not found: install Debian's chromium and chromium-driver \
                 (apt-get install chromium chromium-driver; .ci/run does)",
            );
        let port = free_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(120))
            .build();
        let started = Instant::now();
        while agent.get(&format!("{base}/status")).call().is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=420,900",
            "--lang=zh-TW",
        ]
        .map(String::from)
        .to_vec();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.extend_from_slice(extra_args);
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
        }}});
        let r: Value = post_json(&agent, &format!("{base}/session"), &caps);
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_string();
        Browser {
            driver,
            url: format!("{base}/session/{id}"),
            agent,
            _profile: profile,
        }
    }

    fn cmd(&self, path: &str, body: Value) -> Value {
        post_json(&self.agent, &format!("{}{path}", self.url), &body)["value"].clone()
    }

    fn query(&self, path: &str) -> Value {
        let r = self
            .agent
            .get(&format!("{}{path}", self.url))
            .call()
            .map(|r| r.into_string().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str::<Value>(&r).unwrap()["value"].clone()
    }

    pub fn goto(&self, url: &str) {
        self.cmd("/url", json!({"url": url}));
    }

    pub fn current_url(&self) -> String {
        self.query("/url").as_str().unwrap_or_default().to_string()
    }

    /// Signs in on the login page and waits to land on `next` (e.g. `/console`).
    pub fn sign_in(&self, base: &str, user: &str, password: &str, next: &str) {
        self.goto(&format!("{base}/login?next={next}"));
        self.type_into("#username", user);
        self.type_into("#password", password);
        self.click("#login");
        for _ in 0..100 {
            if self.current_url().ends_with(next) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(self.current_url().ends_with(next), "{}", self.current_url());
    }

    /// Polls a script until it returns a non-empty string that `done` accepts, for up to
    /// `secs`; returns the last value either way.
    pub fn poll(&self, js: &str, secs: u64, done: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let v = self.script(js, json!([]));
            let v = v.as_str().unwrap_or_default().to_string();
            if (!v.is_empty() && done(&v)) || started.elapsed() > Duration::from_secs(secs) {
                return v;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The first element matching a CSS selector, waiting up to `secs`.
    pub fn wait_for(&self, css: &str, secs: u64) -> String {
        let started = Instant::now();
        loop {
            let v = self.cmd("/elements", json!({"using": "css selector", "value": css}));
            if let Some(e) = v.as_array().and_then(|a| a.first()) {
                if let Some(id) = e.as_object().and_then(|o| o.values().next()) {
                    return id.as_str().unwrap().to_string();
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(secs),
                "no element {css} after {secs} s; page text: {}",
                self.script("return document.body.innerText", json!([]))
            );
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.wait_for(css, 20);
        self.cmd(&format!("/element/{id}/clear"), json!({}));
        self.cmd(&format!("/element/{id}/value"), json!({"text": text}));
    }

    pub fn click(&self, css: &str) {
        let id = self.wait_for(css, 20);
        let r = self.cmd(&format!("/element/{id}/click"), json!({}));
        assert!(r.get("error").is_none(), "clicking {css}: {r}");
    }

    pub fn text(&self, css: &str) -> String {
        let id = self.wait_for(css, 20);
        self.query(&format!("/element/{id}/text"))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn script(&self, js: &str, args: Value) -> Value {
        self.cmd("/execute/sync", json!({"script": js, "args": args}))
    }

    /// Saves a PNG screenshot.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let b64 = self.query("/screenshot");
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .unwrap();
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.agent.delete(&self.url).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn post_json(agent: &ureq::Agent, url: &str, body: &Value) -> Value {
    let r = agent
        .post(url)
        .set("Content-Type", "application/json")
        .send_string(&body.to_string());
    let text = match r {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r.into_string().unwrap_or_default(),
        Err(e) => panic!("{url}: {e}"),
    };
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"))
}

/// A live call over `GET /api/calls/stream` (a WebSocket), as a PBX or the console sends it.
pub struct CallStream {
    ws: tungstenite::WebSocket<std::net::TcpStream>,
    /// Every event received, in order.
    pub events: Vec<Value>,
}

impl Client {
    /// Opens a call stream with this client's session (`query`: `format=…&rate=…`). A refused
    /// upgrade comes back as its status and body.
    pub fn call_stream(
        &self,
        query: &str,
        bearer: Option<&str>,
    ) -> Result<CallStream, (u16, String)> {
        use tungstenite::client::IntoClientRequest;
        let host = self.base.trim_start_matches("http://").to_string();
        let url = format!("ws://{host}/api/calls/stream?{query}");
        let mut req = url.into_client_request().expect("request");
        if let Some(c) = &self.cookie {
            req.headers_mut()
                .insert("Cookie", c.parse().expect("cookie"));
        }
        if let Some(k) = bearer {
            req.headers_mut()
                .insert("Authorization", format!("Bearer {k}").parse().expect("key"));
        }
        let stream = std::net::TcpStream::connect(&host).expect("connect");
        match tungstenite::client(req, stream) {
            Ok((ws, _)) => {
                ws.get_ref()
                    .set_read_timeout(Some(Duration::from_millis(5)))
                    .expect("timeout");
                Ok(CallStream {
                    ws,
                    events: Vec::new(),
                })
            }
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
                let body = r
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err((r.status().as_u16(), body))
            }
            Err(e) => panic!("websocket handshake: {e}"),
        }
    }
}

impl CallStream {
    /// Reads whatever events have arrived (waits at most a few milliseconds). Returns false
    /// once the server has closed the stream.
    pub fn poll(&mut self) -> bool {
        loop {
            match self.ws.read() {
                Ok(tungstenite::Message::Text(t)) => {
                    self.events
                        .push(serde_json::from_str(t.as_str()).unwrap_or(Value::Null));
                }
                Ok(tungstenite::Message::Close(_)) => return false,
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return true
                }
                Err(_) => return false,
            }
        }
    }

    pub fn send_audio(&mut self, bytes: &[u8]) {
        self.ws
            .send(tungstenite::Message::Binary(bytes.to_vec().into()))
            .expect("sending audio");
    }

    pub fn send_text(&mut self, text: &str) {
        self.ws
            .send(tungstenite::Message::Text(text.into()))
            .expect("sending text");
    }

    /// Sends `audio` in frames of `frame_ms` at `speed` × real time, reading events as they come.
    pub fn play(&mut self, audio: &[u8], bytes_per_sec: usize, frame_ms: usize, speed: f64) {
        let frame = (bytes_per_sec * frame_ms / 1000).max(1);
        let started = std::time::Instant::now();
        for (i, chunk) in audio.chunks(frame).enumerate() {
            self.send_audio(chunk);
            self.poll();
            let due = Duration::from_secs_f64((i + 1) as f64 * frame_ms as f64 / 1000.0 / speed);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }

    /// Ends the call and reads events until the server closes the stream.
    pub fn end(&mut self, timeout: Duration) {
        self.send_text(r#"{"type":"end"}"#);
        let until = std::time::Instant::now() + timeout;
        while self.poll() {
            assert!(
                std::time::Instant::now() < until,
                "no end of call after {timeout:?}: {:?}",
                self.events
            );
        }
    }

    /// Drops the connection without a goodbye (a network failure mid-call).
    pub fn drop_connection(self) {
        let stream = self.ws.into_inner();
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }

    /// The events of one type.
    pub fn of(&self, kind: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["type"] == kind).collect()
    }
}

/// Speaks `text` with Debian's espeak-ng (Mandarin, `cmn-latn-pinyin`) and returns its sample
/// rate (22,050 Hz) and the speech as mono 16-bit little-endian PCM bytes, with `pad_ms` of
/// silence on both sides. Resampling is left to the product (the stream takes any rate).
pub fn espeak_pcm16(text: &str, pad_ms: usize) -> (u32, Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = dir.path().join("speech.wav");
    let status = std::process::Command::new("espeak-ng")
        .args(["-v", "cmn-latn-pinyin", "-s", "120", "-g", "4", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("espeak-ng is installed (apt-get install espeak-ng; .ci/run does)");
    assert!(status.success());
    let bytes = std::fs::read(&wav).expect("espeak output");
    let (rate, samples) = read_wav_pcm16(&bytes);
    let pad = vec![0i16; rate as usize * pad_ms / 1000];
    let pcm = pad
        .iter()
        .chain(&samples)
        .chain(&pad)
        .flat_map(|s| s.to_le_bytes())
        .collect();
    (rate, pcm)
}

/// A mono 16-bit PCM WAV's rate and samples (the test's own minimal reader).
pub fn read_wav_pcm16(bytes: &[u8]) -> (u32, Vec<i16>) {
    let rate = u32::from_le_bytes(bytes[24..28].try_into().expect("rate"));
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().expect("len")) as usize;
        if id == b"data" {
            let end = (pos + 8 + len).min(bytes.len());
            let samples = bytes[pos + 8..end]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return (rate, samples);
        }
        pos += 8 + len + (len & 1);
    }
    panic!("no data chunk");
}
