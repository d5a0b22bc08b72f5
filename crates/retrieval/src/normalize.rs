//! Text normalisation applied identically to indexed text and to queries: full-width forms
//! folded to half-width, Simplified characters converted to Traditional, 臺 folded to 台, and
//! ASCII lower-cased. The character count is preserved except where OpenCC rewrites phrases.

use std::sync::OnceLock;

use ferrous_opencc::{config::BuiltinConfig, OpenCC};

/// Bumped when [`normalize`] changes; part of the tokenizer version recorded in an index.
pub const NORMALIZER_VERSION: u32 = 1;

fn s2t() -> Option<&'static OpenCC> {
    static CONV: OnceLock<Option<OpenCC>> = OnceLock::new();
    CONV.get_or_init(|| match OpenCC::from_config(BuiltinConfig::S2t) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "Simplified→Traditional conversion unavailable");
            None
        }
    })
    .as_ref()
}

/// Folds full-width ASCII and the ideographic space to their half-width forms.
pub fn fold_width(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{3000}' => ' ',
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// Converts Simplified Chinese to Traditional (OpenCC s2t).
pub fn to_traditional(text: &str) -> String {
    match s2t() {
        Some(c) => c.convert(text),
        None => text.to_string(),
    }
}

/// The full normalisation used for search.
pub fn normalize(text: &str) -> String {
    let t = to_traditional(&fold_width(text));
    t.chars()
        .map(|c| match c {
            '臺' => '台',
            c if c.is_ascii_uppercase() => c.to_ascii_lowercase(),
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_width_script_and_tai() {
        assert_eq!(normalize("臺北市ＡＢＣ１２３"), "台北市abc123");
        assert_eq!(normalize("台北市"), normalize("臺北市"));
        assert_eq!(normalize("敬老卡怎么办理"), "敬老卡怎麼辦理");
        assert_eq!(normalize("低收入户申请"), "低收入戶申請");
        assert_eq!(fold_width("？（）　"), "?() ");
    }
}
