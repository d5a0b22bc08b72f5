//! The normalised service-guide document every loader produces.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The typed sections of a service guide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum SectionKind {
    /// Overview: what the service is and who it is for (text before the first heading).
    Overview,
    Eligibility,
    Documents,
    HowToApply,
    Location,
    Fees,
    ProcessingTime,
    Agency,
    LegalBasis,
    Faq,
    /// An answer from an FAQ corpus (one question, one answer).
    Answer,
    Other,
}

impl SectionKind {
    pub const ALL: [SectionKind; 12] = [
        SectionKind::Overview,
        SectionKind::Eligibility,
        SectionKind::Documents,
        SectionKind::HowToApply,
        SectionKind::Location,
        SectionKind::Fees,
        SectionKind::ProcessingTime,
        SectionKind::Agency,
        SectionKind::LegalBasis,
        SectionKind::Faq,
        SectionKind::Answer,
        SectionKind::Other,
    ];

    /// The zh-TW label shown to residents and agents.
    pub fn label(self) -> &'static str {
        match self {
            SectionKind::Overview => "概要",
            SectionKind::Eligibility => "申請資格",
            SectionKind::Documents => "應備文件",
            SectionKind::HowToApply => "辦理方式",
            SectionKind::Location => "辦理地點",
            SectionKind::Fees => "費用",
            SectionKind::ProcessingTime => "處理期限",
            SectionKind::Agency => "承辦單位",
            SectionKind::LegalBasis => "法令依據",
            SectionKind::Faq => "常見問題",
            SectionKind::Answer => "答覆",
            SectionKind::Other => "其他",
        }
    }

    /// Recognises a heading (with common variants) as a section kind.
    pub fn from_heading(heading: &str) -> SectionKind {
        let h: String = heading
            .chars()
            .filter(|c| !c.is_whitespace() && !matches!(c, '：' | ':' | '#'))
            .collect();
        let has = |words: &[&str]| words.iter().any(|w| h.contains(w));
        if has(&["概要", "服務說明", "簡介", "說明"]) && !has(&["申請", "文件"]) {
            SectionKind::Overview
        } else if has(&["資格", "對象", "條件"]) {
            SectionKind::Eligibility
        } else if has(&["文件", "證件", "應備", "應附"]) {
            SectionKind::Documents
        } else if has(&["辦理方式", "申請方式", "申請流程", "流程", "方式", "步驟"])
        {
            SectionKind::HowToApply
        } else if has(&["地點", "地址", "窗口", "據點"]) {
            SectionKind::Location
        } else if has(&["費用", "規費", "金額", "補助標準", "收費"]) {
            SectionKind::Fees
        } else if has(&["期限", "時間", "天數", "時程"]) {
            SectionKind::ProcessingTime
        } else if has(&["承辦", "單位", "機關", "聯絡"]) {
            SectionKind::Agency
        } else if has(&["法令", "法規", "依據"]) {
            SectionKind::LegalBasis
        } else if has(&["常見問題", "問答", "FAQ", "Q&A"]) {
            SectionKind::Faq
        } else {
            SectionKind::Other
        }
    }
}

/// One section of a guide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    pub kind: SectionKind,
    /// The heading as written (for `Other` sections and FAQ questions).
    pub heading: String,
    pub text: String,
}

/// Where a document came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    /// The project's own Markdown guides.
    Guide,
    /// A question/answer entry of an FAQ corpus (Kaohsiung format).
    Faq,
    /// A web page (Keelung pages format).
    WebPage,
}

/// Whether a guide's facts hold everywhere or vary by city.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    National,
    #[default]
    City,
}

/// A normalised knowledge document: a service guide, an FAQ entry or a web page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// Stable identifier (guide id, FAQ url, page url).
    pub id: String,
    pub title: String,
    /// Whether the title is searchable text. An FAQ question is not, unless asked for: the
    /// retrieval eval scores questions against answers only.
    pub title_indexed: bool,
    pub aliases: Vec<String>,
    /// Responsible bureau, when known.
    pub bureau: Option<String>,
    pub category: Option<String>,
    pub scope: Scope,
    /// Section labels whose facts are the template city's values.
    pub city_specific: Vec<String>,
    pub sources: Vec<String>,
    pub last_reviewed: Option<String>,
    pub url: Option<String>,
    pub mydata_datasets: Vec<String>,
    pub format: SourceFormat,
    pub sections: Vec<Section>,
}

impl Document {
    /// SHA-256 over everything that affects indexing and display; re-ingesting a document with
    /// the same hash does nothing.
    pub fn content_hash(&self) -> String {
        let json = serde_json::to_vec(self).expect("documents serialise");
        hex::encode(Sha256::digest(json))
    }

    pub fn section(&self, kind: SectionKind) -> Option<&Section> {
        self.sections.iter().find(|s| s.kind == kind)
    }

    /// True when a section's facts are marked as city-specific.
    pub fn is_city_specific(&self, section: &Section) -> bool {
        self.city_specific
            .iter()
            .any(|label| label == section.kind.label() || label == &section.heading)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_map_to_kinds() {
        assert_eq!(
            SectionKind::from_heading("申請資格"),
            SectionKind::Eligibility
        );
        assert_eq!(
            SectionKind::from_heading("應備文件："),
            SectionKind::Documents
        );
        assert_eq!(
            SectionKind::from_heading("申請方式"),
            SectionKind::HowToApply
        );
        assert_eq!(SectionKind::from_heading("辦理地點"), SectionKind::Location);
        assert_eq!(SectionKind::from_heading("補助金額"), SectionKind::Fees);
        assert_eq!(
            SectionKind::from_heading("處理期限"),
            SectionKind::ProcessingTime
        );
        assert_eq!(SectionKind::from_heading("承辦單位"), SectionKind::Agency);
        assert_eq!(
            SectionKind::from_heading("法令依據"),
            SectionKind::LegalBasis
        );
        assert_eq!(SectionKind::from_heading("常見問題"), SectionKind::Faq);
        assert_eq!(SectionKind::from_heading("備註"), SectionKind::Other);
        for k in SectionKind::ALL {
            if !matches!(k, SectionKind::Answer | SectionKind::Other) {
                assert_eq!(SectionKind::from_heading(k.label()), k, "{}", k.label());
            }
        }
    }
}
