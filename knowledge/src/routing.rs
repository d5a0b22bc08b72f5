//! The bureau routing lexicon (`corpus/routing/bureaus.toml`): for each agency the router can
//! choose, its short name, a plain description of its duties and the words residents use when
//! they call about what it handles. The team's own words; a city replaces the file with its own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One agency.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BureauEntry {
    /// Exact agency name (`高雄市政府環境保護局`): the router's class label.
    pub label: String,
    /// What residents call it (`環保局`).
    pub short: String,
    /// What it handles, and which confusable matters go elsewhere.
    pub duties: String,
    /// Words and short phrases residents say about its matters.
    pub keywords: Vec<String>,
}

/// The lexicon, checked: labels unique, no keyword under two agencies.
#[derive(Debug, Clone, Default)]
pub struct BureauLexicon {
    pub bureaus: Vec<BureauEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LexiconFile {
    bureau: Vec<BureauEntry>,
}

/// Why the lexicon could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("cannot load the routing lexicon from {path}: {message}")]
pub struct LexiconError {
    pub path: PathBuf,
    pub message: String,
}

impl BureauLexicon {
    pub fn load(path: &Path) -> Result<BureauLexicon, LexiconError> {
        let err = |message: String| LexiconError {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        BureauLexicon::parse(&text).map_err(err)
    }

    pub fn parse(text: &str) -> Result<BureauLexicon, String> {
        let file: LexiconFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut labels = HashMap::new();
        let mut owner: HashMap<&str, &str> = HashMap::new();
        for b in &file.bureau {
            if b.label.trim().is_empty() || b.short.trim().is_empty() {
                return Err("an entry has an empty label or short name".into());
            }
            if labels.insert(b.label.as_str(), ()).is_some() {
                return Err(format!("{} is listed twice", b.label));
            }
            for k in &b.keywords {
                if k.trim().is_empty() {
                    return Err(format!("{} has an empty keyword", b.label));
                }
                if let Some(other) = owner.insert(k.as_str(), b.label.as_str()) {
                    if other != b.label {
                        return Err(format!(
                            "the keyword 「{k}」 is listed under both {other} and {}; keep it under the one it points to most strongly",
                            b.label
                        ));
                    }
                }
            }
        }
        Ok(BureauLexicon {
            bureaus: file.bureau,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_lexicon_loads() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/routing/bureaus.toml");
        let l = BureauLexicon::load(&p).unwrap();
        assert!(l.bureaus.len() >= 30);
        let env = l.bureaus.iter().find(|b| b.short == "環保局").unwrap();
        assert!(
            env.keywords.iter().any(|k| k == "噪音"),
            "{:?}",
            env.keywords
        );
    }

    #[test]
    fn a_keyword_under_two_agencies_is_refused_with_both_names() {
        let text = r#"
[[bureau]]
label = "甲局"
short = "甲"
duties = "x"
keywords = ["路燈", "坑洞"]
[[bureau]]
label = "乙局"
short = "乙"
duties = "y"
keywords = ["路燈"]
"#;
        let e = BureauLexicon::parse(text).unwrap_err();
        assert!(
            e.contains("路燈") && e.contains("甲局") && e.contains("乙局"),
            "{e}"
        );
        assert!(BureauLexicon::parse("[[bureau]]\nlabel = \"甲\"\n").is_err());
    }
}
