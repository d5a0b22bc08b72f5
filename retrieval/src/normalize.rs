//! Text normalisation applied identically to indexed text and to queries: full-width forms
//! folded to half-width, Simplified characters converted to Traditional, 臺 folded to 台, and
//! ASCII lower-cased. The character count is preserved except where OpenCC rewrites phrases.

pub use knowledge::text::fold_width;

/// Bumped when [`normalize`] changes; part of the tokenizer version recorded in an index.
pub const NORMALIZER_VERSION: u32 = 1;

/// The full normalisation used for search (shared with rule matching).
pub fn normalize(text: &str) -> String {
    knowledge::text::fold_for_matching(text)
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
