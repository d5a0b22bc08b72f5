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
        // The terms in both scripts: text is segmented in its Simplified form (below).
        let both = format!("{GOV_TERMS}\n{}", knowledge::text::t2s(GOV_TERMS));
        let mut reader = std::io::BufReader::new(both.as_bytes());
        j.load_dict(&mut reader)
            .expect("the bundled user dictionary is well-formed");
        Arc::new(j)
    })
}

/// Identifies the tokenizer (segmenter version, dictionary, normaliser) so an index built with a
/// different one is detected and rebuilt rather than silently mixed.
pub fn tokenizer_version() -> String {
    let dict = hex::encode(&Sha256::digest(GOV_TERMS.as_bytes())[..6]);
    format!("jieba-rs-0.11/search-hmm/dict-{dict}/norm-{NORMALIZER_VERSION}/stop-1/seg-t2s")
}

fn is_stop(word: &str) -> bool {
    STOPWORDS.contains(&word)
}

fn is_content(word: &str) -> bool {
    word.chars().any(|c| c.is_alphanumeric())
}

/// Normalises and segments text: the one path both indexing and querying take. jieba's
/// dictionary is Simplified, and on Traditional text it cuts words apart (「舊沙發」 became
/// 「舊沙｜發要」), so the text is segmented in its Simplified form and each word is taken back
/// from the normalised (Traditional) text at the same characters; where the conversion changes
/// the length (rare phrase rewrites), the Traditional text is segmented as it is.
fn tokens(text: &str) -> Vec<Token> {
    let norm = normalize(text);
    let simplified = knowledge::text::t2s(&norm);
    let starts: Vec<usize> = norm
        .char_indices()
        .map(|(b, _)| b)
        .chain(std::iter::once(norm.len()))
        .collect();
    let aligned = simplified.chars().count() + 1 == starts.len();
    let source = if aligned { &simplified } else { &norm };
    // Byte offset in `source` → character index.
    let src_char: std::collections::HashMap<usize, usize> = source
        .char_indices()
        .enumerate()
        .map(|(i, (b, _))| (b, i))
        .chain(std::iter::once((source.len(), starts.len() - 1)))
        .collect();
    jieba()
        .cut_for_search(source, true)
        .into_iter()
        .filter(|t| is_content(t.word) && !is_stop(t.word))
        .filter_map(|t| {
            let (from, to) = if aligned {
                (
                    starts[*src_char.get(&t.byte_start)?],
                    starts[*src_char.get(&t.byte_end)?],
                )
            } else {
                (t.byte_start, t.byte_end)
            };
            let word = norm[from..to].trim().to_string();
            (!is_stop(&word) && is_content(&word)).then_some((from, to, word))
        })
        .enumerate()
        .map(|(position, (from, to, word))| Token {
            offset_from: from,
            offset_to: to,
            position,
            text: word,
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
