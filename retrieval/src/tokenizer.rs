//! The jieba tokenizer for tantivy. Index and query text pass through the same [`normalize`]
//! and the same segmentation (jieba search mode with HMM, plus the government-terms user
//! dictionary), so they always agree. Offsets refer to the normalised text.

use std::sync::{Arc, OnceLock};

use jieba_rs::Jieba;
use sha2::{Digest, Sha256};
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

use crate::normalize::{normalize, NORMALIZER_VERSION};

/// Government terms (bureaus, benefits, places) kept whole by the segmenter.
pub const GOV_TERMS: &str = include_str!("../dict/gov_terms.txt");

/// Function words and question fillers that carry no topic.
const STOPWORDS: &[&str] = &[
    "的", "了", "是", "嗎", "呢", "吧", "啊", "喔", "哦", "之", "與", "及", "或", "和", "在", "有",
    "我", "你", "您", "請問", "請", "問", "想", "要", "怎麼", "如何", "什麼", "可以", "是否",
    "一下", "那", "這", "就", "也", "都", "把", "被", "讓", "給", "對", "為", "於", "並", "等",
    "其", "該", "a", "the",
];

fn jieba() -> &'static Arc<Jieba> {
    static JIEBA: OnceLock<Arc<Jieba>> = OnceLock::new();
    JIEBA.get_or_init(|| {
        let mut j = Jieba::new();
        let mut reader = std::io::BufReader::new(GOV_TERMS.as_bytes());
        j.load_dict(&mut reader)
            .expect("the bundled user dictionary is well-formed");
        Arc::new(j)
    })
}

/// Identifies the tokenizer (segmenter version, dictionary, normaliser) so an index built with a
/// different one is detected and rebuilt rather than silently mixed.
pub fn tokenizer_version() -> String {
    let dict = hex::encode(&Sha256::digest(GOV_TERMS.as_bytes())[..6]);
    format!("jieba-rs-0.11/search-hmm/dict-{dict}/norm-{NORMALIZER_VERSION}/stop-1")
}

fn is_stop(word: &str) -> bool {
    STOPWORDS.contains(&word)
}

fn is_content(word: &str) -> bool {
    word.chars().any(|c| c.is_alphanumeric())
}

/// Normalises and segments text: the one path both indexing and querying take.
fn tokens(text: &str) -> Vec<Token> {
    let norm = normalize(text);
    jieba()
        .cut_for_search(&norm, true)
        .into_iter()
        .filter(|t| is_content(t.word) && !is_stop(t.word))
        .enumerate()
        .map(|(position, t)| Token {
            offset_from: t.byte_start,
            offset_to: t.byte_end,
            position,
            text: t.word.trim().to_string(),
            position_length: 1,
        })
        .collect()
}

/// Segments text into normalised search terms (what the index stores).
pub fn terms(text: &str) -> Vec<String> {
    tokens(text).into_iter().map(|t| t.text).collect()
}

#[derive(Clone, Default)]
pub struct JiebaTokenizer;

pub struct JiebaTokenStream {
    tokens: Vec<Token>,
    index: usize,
}

impl Tokenizer for JiebaTokenizer {
    type TokenStream<'a> = JiebaTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> JiebaTokenStream {
        JiebaTokenStream {
            tokens: tokens(text),
            index: 0,
        }
    }
}

impl TokenStream for JiebaTokenStream {
    fn advance(&mut self) -> bool {
        if self.index < self.tokens.len() {
            self.index += 1;
            true
        } else {
            false
        }
    }

    fn token(&self) -> &Token {
        &self.tokens[self.index - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.index - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(text: &str) -> Vec<String> {
        let mut t = JiebaTokenizer;
        let mut s = t.token_stream(text);
        let mut out = Vec::new();
        while s.advance() {
            out.push(s.token().text.clone());
        }
        out
    }

    #[test]
    fn index_and_query_agree_across_scripts_and_widths() {
        assert_eq!(stream("臺北市敬老卡申請"), stream("台北市敬老卡申请"));
        assert_eq!(stream("ＭｙＤａｔａ"), vec!["mydata".to_string()]);
        assert_eq!(stream("臺北市敬老卡申請"), terms("臺北市敬老卡申請"));
    }

    #[test]
    fn user_dictionary_keeps_government_terms_whole() {
        let t = terms("我想申請中低收入戶");
        assert!(t.contains(&"中低收入戶".to_string()), "{t:?}");
        let t = terms("敬老愛心卡要去哪裡辦");
        assert!(t.contains(&"敬老愛心卡".to_string()), "{t:?}");
    }

    #[test]
    fn stopwords_and_punctuation_are_dropped() {
        let t = terms("請問，路燈不亮怎麼辦？");
        assert!(
            !t.iter().any(|w| w == "請問" || w == "，" || w == "？"),
            "{t:?}"
        );
        assert!(t.contains(&"路燈".to_string()), "{t:?}");
    }
}
