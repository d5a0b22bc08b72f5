//! Test helpers: a deterministic bag-of-characters embedder (a stand-in for the real model,
//! which `assistant`'s tests run) and guide files written to a temp dir.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use knowledge::{load_path, LoadOptions};

use retrieval::{BoxError, Embedder, IngestReport, Retriever};

/// Hashes character unigrams and bigrams into `dim` buckets, then L2-normalises.
pub struct CharEmbedder {
    pub dim: usize,
    pub version: &'static str,
}

impl CharEmbedder {
    fn vec(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dim];
        let chars: Vec<char> = text.chars().filter(|c| c.is_alphanumeric()).collect();
        let mut add = |s: &str, w: f32| {
            let h = s.bytes().fold(1469598103934665603u64, |h, b| {
                (h ^ b as u64).wrapping_mul(1099511628211)
            });
            v[(h % self.dim as u64) as usize] += w;
        };
        for c in &chars {
            add(&c.to_string(), 0.5);
        }
        for w in chars.windows(2) {
            add(&w.iter().collect::<String>(), 1.0);
        }
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
        v.iter().map(|x| x / n).collect()
    }
}

impl Embedder for CharEmbedder {
    fn id(&self) -> String {
        format!("char-bigram-{}-{}", self.dim, self.version)
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn embed_passages(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BoxError> {
        Ok(texts.iter().map(|t| self.vec(t)).collect())
    }
    fn embed_query(&self, text: &str) -> Result<Vec<f32>, BoxError> {
        Ok(self.vec(text))
    }
}

pub fn guide(id: &str, title: &str, bureau: &str, body: &str) -> String {
    format!(
        "+++\nid = \"{id}\"\ntitle = \"{title}\"\nbureau = \"{bureau}\"\ncategory = \"測試\"\nlast_reviewed = \"2026-11-20\"\n+++\n\n{body}\n"
    )
}

pub fn write_corpus(dir: &Path) {
    std::fs::write(
        dir.join("senior-card.md"),
        guide("senior-card", "敬老卡申請", "社會局", "年滿65歲長者可申請敬老卡，搭公車有優惠。\n\n## 應備文件\n身分證與照片。\n\n## 辦理地點\n各區公所。"),
    )
    .unwrap();
    std::fs::write(
        dir.join("streetlight.md"),
        guide(
            "streetlight",
            "路燈故障報修",
            "工務局",
            "路燈不亮、閃爍時請撥1999報修，並提供路燈桿號。\n\n## 處理期限\n一般三日內修復。",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("bulky-waste.md"),
        guide(
            "bulky-waste",
            "大型廢棄物清運",
            "環境保護局",
            "舊沙發、床墊等大型家具請預約清運，不可隨意棄置。",
        ),
    )
    .unwrap();
}

/// Loads `dir` and ingests it, keeping what files with problems indexed before (as the CLI does).
pub async fn ingest_dir(r: &mut Retriever, dir: &Path) -> IngestReport {
    let loaded = load_path(dir, &LoadOptions::default()).unwrap();
    let keep: HashSet<PathBuf> = loaded.problems.iter().map(|p| p.path.clone()).collect();
    r.ingest(loaded.documents, &[dir.to_path_buf()], &keep, &|_, _| {})
        .await
        .unwrap()
}

/// Rewrites the streetlight guide (its body now mentions 金屬牌) and deletes the bulky-waste one.
pub fn edit_streetlight_and_delete_bulky_waste(dir: &Path) {
    std::fs::write(
        dir.join("streetlight.md"),
        guide(
            "streetlight",
            "路燈故障報修",
            "工務局",
            "路燈桿號在燈桿上的金屬牌。",
        ),
    )
    .unwrap();
    std::fs::remove_file(dir.join("bulky-waste.md")).unwrap();
}
