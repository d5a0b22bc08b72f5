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
    pub server: crate::server::ServerSettings,
    pub mydata: crate::server::MyDataSettings,
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
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct EmbedderSettings {
    /// A converted e5 GGUF to use instead of the cached asset.
    pub path: Option<PathBuf>,
    /// Upper bound on `batch × padded length` tokens per forward pass.
    pub max_batch_tokens: Option<usize>,
}

impl EmbedderSettings {
    pub fn model_config(&self) -> models::EmbedderConfig {
        let mut c = models::EmbedderConfig::default();
        if let Some(n) = self.max_batch_tokens {
            c.max_batch_tokens = n.max(1);
        }
        c
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
    fn unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("base.toml"), "[retrieval]\nrrf = 3\n").unwrap();
        let err = Settings::load_from(dir.path(), None, &[]).unwrap_err();
        assert!(format!("{err:#}").contains("rrf"), "{err:#}");
    }
}
