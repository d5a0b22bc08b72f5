//! Configuration: `config/base.toml` → `config/{APP_ENV}.toml` → `ASSISTANT__SECTION__KEY`
//! environment variables (later layers win). Every field has a default, so the product runs
//! with no file at all; unknown keys are rejected so a typo never passes silently.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub paths: Paths,
    pub embedder: EmbedderSettings,
    pub retrieval: retrieval::RetrieverConfig,
    pub answer: crate::answer::AnswerConfig,
    pub llm: crate::llm::LlmSettings,
    pub server: ServerSettings,
    pub mydata: MyDataSettings,
    pub voice: crate::voice::VoiceSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Paths {
    /// Model cache (outside the clone); empty means `~/.cache/hotline-assistant` or
    /// `$ASSISTANT_CACHE_DIR`.
    pub cache_dir: Option<PathBuf>,
    /// Where the search index lives.
    pub index_dir: PathBuf,
    /// The bundled service guides.
    pub corpus: PathBuf,
    /// Guided walk-through definitions.
    pub walkthroughs: PathBuf,
    /// Form schemas (`*.toml`).
    pub forms: PathBuf,
    /// The 1999 case taxonomy and the city's gazetteer.
    pub cases: PathBuf,
    /// Benefit eligibility rules.
    pub benefits: PathBuf,
    /// The MyData dataset catalogue and the sandbox's synthetic residents.
    pub mydata: PathBuf,
    /// Safety triage rules.
    pub safety: PathBuf,
    /// The bureau routing lexicon (`bureaus.toml`: each agency's duties and residents' words).
    pub routing: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            cache_dir: None,
            index_dir: PathBuf::from("var/index"),
            corpus: PathBuf::from("corpus/guides"),
            walkthroughs: PathBuf::from("corpus/walkthroughs"),
            forms: PathBuf::from("corpus/forms"),
            cases: PathBuf::from("corpus/cases"),
            benefits: PathBuf::from("corpus/benefits"),
            mydata: PathBuf::from("corpus/mydata"),
            safety: PathBuf::from("corpus/safety"),
            routing: PathBuf::from("corpus/routing"),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct EmbedderSettings {
    /// A converted e5 GGUF to use instead of the cached asset.
    pub path: Option<PathBuf>,
    /// Upper bound on the tokens of one forward pass (padded ones too on the candle engine).
    pub max_batch_tokens: Option<usize>,
    /// `packed` (default: no padding, integer kernels) or `candle` (the earlier path).
    pub engine: Option<models::EmbedEngine>,
}

impl EmbedderSettings {
    /// The embedder these settings configure (`path`, else the cached asset).
    pub fn load(
        &self,
        cache_root: &Path,
    ) -> anyhow::Result<std::sync::Arc<dyn retrieval::Embedder>> {
        crate::embedding::load_embedder(cache_root, self.path.as_deref(), self.model_config())
    }

    pub fn model_config(&self) -> models::EmbedderConfig {
        let mut c = models::EmbedderConfig::default();
        if let Some(n) = self.max_batch_tokens {
            c.max_batch_tokens = n.max(1);
        }
        if let Some(e) = self.engine {
            c.engine = e;
        }
        c
    }
}

/// `[server]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub addr: String,
    /// The address residents' browsers use (for the MyData callback URL).
    pub public_url: Option<String>,
    /// The SQLite database (when `database_url` is not set).
    pub db_path: PathBuf,
    /// `postgres://user:password@host/db` to keep state in PostgreSQL instead (several
    /// instances behind a load balancer). Better given as `ASSISTANT__SERVER__DATABASE_URL`.
    pub database_url: Option<String>,
    /// The server's secret (cookie CSRF tokens, the transfer log's keyed hash); created at
    /// first start with mode 0600.
    pub key_path: PathBuf,
    /// Guides uploaded by administrators (indexed with the bundled corpus).
    /// This instance's copy of the uploaded guides (they live in the database).
    pub uploads_dir: PathBuf,
    /// Seconds between checks for guides uploaded or removed through another instance
    /// (0: only at start and on this instance's own uploads).
    pub guide_sync_secs: u64,
    /// Eval reports shown on the admin page.
    pub eval_reports: PathBuf,
    pub max_body_bytes: usize,
    /// Longest chat message (characters).
    pub max_message_chars: usize,
    /// Longest text for extraction and case intake (characters).
    pub max_text_chars: usize,
    /// Sustained requests per minute per session, and the burst above it.
    pub rate_per_minute: f64,
    pub rate_burst: f64,
    /// The same per client address (several residents may share one address behind a NAT,
    /// so it is wider; a client that drops its cookies still meets it).
    pub address_rate_per_minute: f64,
    pub address_rate_burst: f64,
    /// Reverse proxies (IP addresses) whose `X-Forwarded-For` names the client; from anyone
    /// else the header is ignored.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Failed logins (per account, and per client address) within `login_lock_minutes` that
    /// lock it for `login_lock_minutes`.
    pub login_max_failures: u32,
    pub login_lock_minutes: u32,
    /// Requests being answered at once; more get 503 + Retry-After.
    pub max_inflight: usize,
    /// LLM jobs admitted at once (running + waiting for the model).
    pub llm_queue: usize,
    /// Use the LLM to rephrase chat answers (when one is configured). Off by default: the
    /// verbatim lead measured as correct and never misquotes (see config/base.toml).
    pub chat_llm: bool,
    /// Set the `Secure` flag on cookies (behind TLS).
    pub secure_cookies: bool,
    /// Bearer keys for `/v1/*`; empty means the endpoint is open (intranet deployments).
    pub api_keys: Vec<String>,
    /// Days a conversation is kept after its last message.
    pub conversation_days: u32,
    /// Days transfer-log rows are kept (at least 366: the rules ask for a year).
    pub transfer_log_days: u32,
    /// Hours an idle staff session stays valid.
    pub session_hours: u32,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            addr: "127.0.0.1:8080".into(),
            public_url: None,
            db_path: PathBuf::from("var/state.db"),
            database_url: None,
            key_path: PathBuf::from("var/server.key"),
            uploads_dir: PathBuf::from("var/guides"),
            guide_sync_secs: 5,
            eval_reports: PathBuf::from("target/eval-report"),
            max_body_bytes: 256 * 1024,
            max_message_chars: 500,
            max_text_chars: 4000,
            rate_per_minute: 30.0,
            rate_burst: 10.0,
            address_rate_per_minute: 120.0,
            address_rate_burst: 30.0,
            trusted_proxies: Vec::new(),
            login_max_failures: 5,
            login_lock_minutes: 15,
            max_inflight: 16,
            llm_queue: 2,
            chat_llm: false,
            secure_cookies: false,
            api_keys: Vec::new(),
            conversation_days: 30,
            transfer_log_days: 400,
            session_hours: 12,
        }
    }
}

/// Which MyData platform the pre-fill talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MyDataPlatform {
    /// The bundled sandbox of the platform's test environment (synthetic residents), run inside
    /// the server on a loopback port; the pages say it is a test sandbox.
    Sandbox,
    /// The real platform at `base_url`.
    Platform,
    /// No MyData pre-fill.
    Off,
}

/// `[mydata]` settings: where the platform (or the sandbox) is and who we are to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MyDataSettings {
    pub platform: MyDataPlatform,
    /// The platform's address (`platform = "platform"`).
    pub base_url: String,
    pub client_id: String,
    /// Better given as `ASSISTANT__MYDATA__CLIENT_SECRET` (the sandbox makes its own).
    pub client_secret: String,
    /// How long the callback waits for slow providers (the platform's Retry-After).
    pub max_wait_s: u64,
    /// Where the sandbox listens (port 0: any free port).
    pub sandbox_addr: String,
    /// The sandbox's provider delays relative to the platform's (tax data takes an hour there).
    pub sandbox_delay_scale: f64,
}

impl Default for MyDataSettings {
    fn default() -> Self {
        MyDataSettings {
            platform: MyDataPlatform::Sandbox,
            base_url: String::new(),
            client_id: "hotline-assistant".into(),
            client_secret: String::new(),
            max_wait_s: 60,
            sandbox_addr: "127.0.0.1:0".into(),
            sandbox_delay_scale: 0.002,
        }
    }
}

impl Settings {
    pub fn cache_root(&self) -> PathBuf {
        self.paths
            .cache_dir
            .clone()
            .unwrap_or_else(models::assets::default_cache_root)
    }

    /// Loads the layers from `dir` (normally `config/`) and the process environment.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(dir, std::env::var("APP_ENV").ok().as_deref(), &env)
    }

    pub fn load_from(
        dir: &Path,
        app_env: Option<&str>,
        env: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let mut table = toml::Table::new();
        let mut files = vec![dir.join("base.toml")];
        if let Some(e) = app_env.filter(|e| !e.is_empty()) {
            files.push(dir.join(format!("{e}.toml")));
        }
        for f in files {
            if f.exists() {
                let text = std::fs::read_to_string(&f)
                    .with_context(|| format!("reading {}", f.display()))?;
                let layer: toml::Table =
                    toml::from_str(&text).with_context(|| format!("parsing {}", f.display()))?;
                merge(&mut table, layer);
            }
        }
        for (key, value) in env {
            let Some(path) = key.strip_prefix("ASSISTANT__") else {
                continue;
            };
            let parts: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
            set_path(&mut table, &parts, parse_scalar(value));
        }
        Settings::deserialize(toml::Value::Table(table)).context("invalid configuration")
    }
}

fn merge(base: &mut toml::Table, layer: toml::Table) {
    for (k, v) in layer {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(l)) => merge(b, l),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn set_path(table: &mut toml::Table, parts: &[String], value: toml::Value) {
    match parts {
        [] => {}
        [last] => {
            table.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(t) = entry {
                set_path(t, rest, value);
            }
        }
    }
}

fn parse_scalar(s: &str) -> toml::Value {
    // A list in TOML syntax: `ASSISTANT__RETRIEVAL__VECTORS__PEERS='["http://q2:6334"]'`; a
    // quoted value is a string even when it looks like a number (`…__API_KEY='"123456"'`).
    if s.trim_start().starts_with(['[', '"']) {
        if let Ok(mut t) = toml::from_str::<toml::Table>(&format!("v = {s}")) {
            if let Some(v) = t.remove("v") {
                return v;
            }
        }
    }
    if let Ok(i) = s.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(f) = s.parse::<f64>() {
        return toml::Value::Float(f);
    }
    match s {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order_and_env_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("base.toml"),
            "[retrieval]\nrrf_k = 30.0\ncandidates = 40\n[paths]\nindex_dir = \"a\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("prod.toml"), "[paths]\nindex_dir = \"b\"\n").unwrap();
        let env = vec![
            (
                "ASSISTANT__RETRIEVAL__CANDIDATES".to_string(),
                "70".to_string(),
            ),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let s = Settings::load_from(dir.path(), Some("prod"), &env).unwrap();
        assert_eq!(s.paths.index_dir, PathBuf::from("b"));
        assert_eq!(s.retrieval.rrf_k, 30.0);
        assert_eq!(s.retrieval.candidates, 70);
        let s = Settings::load_from(dir.path(), None, &[]).unwrap();
        assert_eq!(s.paths.index_dir, PathBuf::from("a"));
    }

    #[test]
    fn a_qdrant_cluster_is_configured_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("base.toml"),
            "[retrieval.vectors]\nbackend = \"flat\"\n",
        )
        .unwrap();
        let env: Vec<(String, String)> = [
            ("ASSISTANT__RETRIEVAL__VECTORS__BACKEND", "qdrant"),
            ("ASSISTANT__RETRIEVAL__VECTORS__URL", "http://q1:6334"),
            (
                "ASSISTANT__RETRIEVAL__VECTORS__PEERS",
                r#"["http://q2:6334", "http://q3:6334"]"#,
            ),
            ("ASSISTANT__RETRIEVAL__VECTORS__COLLECTION", "guides"),
            ("ASSISTANT__RETRIEVAL__VECTORS__REPLICATION_FACTOR", "2"),
            ("ASSISTANT__SERVER__TRUSTED_PROXIES", r#"["10.0.0.1"]"#),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let s = Settings::load_from(dir.path(), None, &env).unwrap();
        let retrieval::VectorBackend::Qdrant(q) = &s.retrieval.vectors else {
            panic!("{:?}", s.retrieval.vectors);
        };
        assert_eq!(q.url, "http://q1:6334");
        assert_eq!(q.peers, ["http://q2:6334", "http://q3:6334"]);
        assert_eq!((q.replication_factor, q.shard_number), (2, 1));
        assert_eq!(
            s.server.trusted_proxies,
            ["10.0.0.1".parse::<std::net::IpAddr>().unwrap()]
        );
        // A quoted value stays a string, even all digits.
        let env = [(
            "ASSISTANT__MYDATA__CLIENT_SECRET".to_string(),
            r#""123456""#.to_string(),
        )];
        let s = Settings::load_from(dir.path(), None, &env).unwrap();
        assert_eq!(s.mydata.client_secret, "123456");
        // A balancer given by name or range would be dropped silently and every client would
        // share its address (and its login lock): refused at start instead.
        for bad in [r#"["lb.internal"]"#, r#"["10.0.0.0/8"]"#] {
            let env = [(
                "ASSISTANT__SERVER__TRUSTED_PROXIES".to_string(),
                bad.to_string(),
            )];
            let err = Settings::load_from(dir.path(), None, &env).unwrap_err();
            assert!(format!("{err:#}").contains("invalid IP address"), "{err:#}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("base.toml"), "[retrieval]\nrrf = 3\n").unwrap();
        let err = Settings::load_from(dir.path(), None, &[]).unwrap_err();
        assert!(format!("{err:#}").contains("rrf"), "{err:#}");
    }
}
