//! The 1999 case taxonomy (`corpus/cases/categories.toml`: the Taipei dispatch items with their
//! bureau, description, colloquial keywords and examples) and the city's place gazetteer
//! (`corpus/cases/places.toml`: districts).

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// One dispatch item.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Category {
    /// Current official name (`路燈不亮或損壞`).
    pub name: String,
    /// Responsible bureau (`工務局`).
    pub bureau: String,
    /// The unit that handles it, where known.
    #[serde(default)]
    pub unit: Option<String>,
    pub description: String,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub examples: Vec<String>,
    #[serde(default)]
    pub hazard_keywords: Vec<String>,
    /// Earlier names of the same item in the dispatch data.
    #[serde(default)]
    pub former_names: Vec<String>,
}

/// The taxonomy and the gazetteer.
#[derive(Debug, Clone, Default)]
pub struct Taxonomy {
    pub categories: Vec<Category>,
    /// District names with their suffix (`大安區`).
    pub districts: Vec<String>,
    /// The city's names (`臺北市`, `台北市`).
    pub city_names: Vec<String>,
    /// Known road and street names without section (`民生東路`), from `roads.txt`.
    pub roads: Vec<String>,
}

#[derive(Deserialize)]
struct CategoriesFile {
    category: Vec<Category>,
}

#[derive(Deserialize)]
struct PlacesFile {
    city: Vec<String>,
    districts: Vec<String>,
}

/// Why the taxonomy could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("cannot load the case taxonomy from {path}: {message}")]
pub struct TaxonomyError {
    pub path: PathBuf,
    pub message: String,
}

impl Taxonomy {
    /// Reads `categories.toml` and `places.toml` from a directory.
    pub fn load(dir: &Path) -> Result<Taxonomy, TaxonomyError> {
        fn read<T: serde::de::DeserializeOwned>(path: PathBuf) -> Result<T, TaxonomyError> {
            let text = std::fs::read_to_string(&path).map_err(|e| TaxonomyError {
                path: path.clone(),
                message: e.to_string(),
            })?;
            toml::from_str(&text).map_err(|e| TaxonomyError {
                path,
                message: e.to_string(),
            })
        }
        let cats: CategoriesFile = read(dir.join("categories.toml"))?;
        let places: PlacesFile = read(dir.join("places.toml"))?;
        let roads_path = dir.join("roads.txt");
        let roads = match std::fs::read_to_string(&roads_path) {
            Ok(text) => text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(TaxonomyError {
                    path: roads_path,
                    message: e.to_string(),
                })
            }
        };
        let mut names = std::collections::BTreeSet::new();
        for c in &cats.category {
            if !names.insert(c.name.as_str()) {
                return Err(TaxonomyError {
                    path: dir.join("categories.toml"),
                    message: format!("category {} appears twice", c.name),
                });
            }
        }
        Ok(Taxonomy {
            categories: cats.category,
            districts: places.districts,
            city_names: places.city,
            roads,
        })
    }

    /// The category of a current or former name. Compatibility ideographs (「行」 U+FA08 for
    /// 「行」 U+884C, as some published records have them) read as the characters they stand
    /// for.
    pub fn category(&self, name: &str) -> Option<&Category> {
        let is = |c: &Category, n: &str| c.name == n || c.former_names.iter().any(|f| f == n);
        self.categories.iter().find(|c| is(c, name)).or_else(|| {
            use unicode_normalization::UnicodeNormalization;
            let n: String = name.nfkc().collect();
            self.categories.iter().find(|c| is(c, &n))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_taxonomy_loads_with_current_names() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/cases");
        let t = Taxonomy::load(&dir).unwrap();
        assert!(t.categories.len() >= 23, "{}", t.categories.len());
        assert_eq!(t.districts.len(), 12);
        let lamp = t.category("路燈故障或設施損壞").unwrap();
        assert_eq!(lamp.name, "路燈不亮或損壞");
        // As published in 2026, with four compatibility ideographs.
        let river = t
            .category("河濱公園自\u{fa08}\u{f902}道及堤外\u{f965}道破損、散\u{f918}物、油漬及樹倒")
            .unwrap();
        assert_eq!(
            river.name,
            "河濱公園自行車道及堤外便道破損、散落物、油漬及樹倒"
        );
        assert!(t.categories.iter().all(|c| !c.keywords.is_empty()));
    }
}
