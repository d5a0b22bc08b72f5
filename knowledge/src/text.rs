//! The one home of the Chinese-text rules every other crate uses: full/half-width folding,
//! Chinese and spoken numerals, ROC (民國) dates, Taiwanese phone numbers, and
//! Simplified→Traditional conversion (Taiwan usage). Retrieval, answers, extraction, voice and
//! eval call these instead of writing their own.

use std::sync::OnceLock;

use ferrous_opencc::{config::BuiltinConfig, OpenCC};

// ---------------------------------------------------------------------------------------------
// Width

/// One character folded to half width: full-width ASCII (letters, digits, punctuation) and the
/// ideographic space.
pub fn fold_width_char(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        '\u{3000}' => ' ',
        _ => c,
    }
}

/// Full-width ASCII and the ideographic space folded to half width.
pub fn fold_width(text: &str) -> String {
    text.chars().map(fold_width_char).collect()
}

// ---------------------------------------------------------------------------------------------
// Numerals

/// The value of a written Chinese digit (零/〇 to 九, 兩).
pub fn cn_digit(c: char) -> Option<u32> {
    match c {
        '零' | '〇' => Some(0),
        '一' => Some(1),
        '二' | '兩' => Some(2),
        '三' => Some(3),
        '四' => Some(4),
        '五' => Some(5),
        '六' => Some(6),
        '七' => Some(7),
        '八' => Some(8),
        '九' => Some(9),
        _ => None,
    }
}

/// The value of a digit as people say or write it: Arabic (either width), written Chinese, or
/// the spoken forms used for phone and ID numbers (洞 0, 么/幺 1, 拐 7, 勾 9, ○).
pub fn spoken_digit(c: char) -> Option<u32> {
    match fold_width_char(c) {
        '洞' | '○' => Some(0),
        '么' | '幺' => Some(1),
        '拐' => Some(7),
        '勾' => Some(9),
        c if c.is_ascii_digit() => c.to_digit(10),
        c => cn_digit(c),
    }
}

/// The value of a Chinese multiplier (十 百 千 萬 億).
pub fn cn_multiplier(c: char) -> Option<u64> {
    match c {
        '十' => Some(10),
        '百' => Some(100),
        '千' => Some(1_000),
        '萬' => Some(10_000),
        '億' => Some(100_000_000),
        _ => None,
    }
}

/// Whether `c` is a written Chinese digit or multiplier.
pub fn is_cn_numeral(c: char) -> bool {
    cn_digit(c).is_some() || cn_multiplier(c).is_some()
}

/// The value of a whole numeral: Arabic (`114`), digit by digit (`一一四`, `洞么拐`), or with
/// multipliers (`五十`, `十二`, `一百零二`, `三千五百`, `兩萬五千`). `None` for anything else.
pub fn parse_number(text: &str) -> Option<u64> {
    let text = fold_width(text);
    if text.is_empty() {
        return None;
    }
    if text.chars().all(|c| c.is_ascii_digit()) {
        return text.parse().ok();
    }
    if !text.chars().any(|c| cn_multiplier(c).is_some()) {
        return text.chars().try_fold(0u64, |acc, c| {
            acc.checked_mul(10)?
                .checked_add(u64::from(spoken_digit(c)?))
        });
    }
    // Sections below 萬 accumulate in `section`; 萬 and 億 close a section.
    let (mut total, mut section, mut current) = (0u64, 0u64, None::<u64>);
    for c in text.chars() {
        if let Some(m) = cn_multiplier(c) {
            if m >= 10_000 {
                let s = section.checked_add(current.unwrap_or(0))?;
                total = total.checked_add(s.max(1).checked_mul(m)?)?;
                section = 0;
            } else {
                section = section.checked_add(current.unwrap_or(1).checked_mul(m)?)?;
            }
            current = None;
        } else {
            current = Some(u64::from(spoken_digit(c)?));
        }
    }
    total
        .checked_add(section)?
        .checked_add(current.unwrap_or(0))
}

const DIGITS: [char; 10] = ['零', '一', '二', '三', '四', '五', '六', '七', '八', '九'];

/// A quantity below 10,000 in Chinese numerals (15 → 十五, 205 → 二百零五, 1000 → 一千).
pub fn chinese_quantity(v: u32) -> String {
    if v == 0 {
        return "零".into();
    }
    let units = [(1000, '千'), (100, '百'), (10, '十')];
    let mut out = String::new();
    let mut rest = v % 10_000;
    let mut pending_zero = false;
    for (unit, name) in units {
        let d = rest / unit;
        rest %= unit;
        if d > 0 {
            if pending_zero {
                out.push('零');
                pending_zero = false;
            }
            // 10–19 read 十, 十一 … when the number starts there.
            if !(unit == 10 && d == 1 && out.is_empty()) {
                out.push(DIGITS[d as usize]);
            }
            out.push(name);
        } else if !out.is_empty() {
            pending_zero = true;
        }
    }
    if rest > 0 {
        if pending_zero {
            out.push('零');
        }
        out.push(DIGITS[rest as usize]);
    }
    out
}

/// Reads an Arabic number the way a Chinese transcript writes it: values below 10,000 as a
/// quantity (15 → 十五), anything longer or with a leading zero digit by digit (phone and pole
/// numbers, years: 0912 → 零九一二).
pub fn number_to_chinese(digits: &str) -> String {
    let value: Option<u32> = digits.parse().ok();
    match value {
        Some(v) if digits.len() <= 4 && !(digits.len() > 1 && digits.starts_with('0')) => {
            chinese_quantity(v)
        }
        _ => digits
            .chars()
            .filter_map(|c| c.to_digit(10).map(|d| DIGITS[d as usize]))
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Dates and phones

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

/// A date written as 民國 (`民國50年3月1日`, `50/3/1`, `五十年三月一日`) or Western
/// (`1961-03-01`, `1961年3月1日`) → ISO `YYYY-MM-DD`. Years of one to three digits are 民國
/// (民國 year + 1911). `None` when the text is not a complete, existing date.
pub fn date_iso(text: &str) -> Option<String> {
    let t: String = fold_width(text)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let t = t
        .trim_start_matches("民國")
        .trim_start_matches("中華民國")
        .trim_end_matches('號')
        .trim_end_matches('日');
    let parts: Vec<&str> = t
        .split(['年', '月', '/', '.', '-'])
        .filter(|p| !p.is_empty())
        .collect();
    let [y, m, d] = parts.as_slice() else {
        return None;
    };
    let num = |s: &str| parse_number(s).and_then(|v| u32::try_from(v).ok());
    let (y, m, d) = (num(y)?, num(m)?, num(d)?);
    let year = if y < 1000 { y + 1911 } else { y };
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(year, m) || year > 2200 {
        return None;
    }
    Some(format!("{year:04}-{m:02}-{d:02}"))
}

/// The short numbers residents are given (hotlines, emergency numbers).
pub const SHORT_NUMBERS: &[&str] = &["1999", "110", "119", "113", "1966", "1957"];

/// A Taiwanese phone number → digits only (`0912345678`, `0227208889`, `073368333`), from
/// separators, brackets, full-width or spoken digits (「零九一二…」, 「洞么拐」). `None` when the
/// digits are not a mobile (09 + 8 digits) or an area-coded landline (9–10 digits starting
/// 02–08), or one of the [`SHORT_NUMBERS`].
pub fn phone_digits(text: &str) -> Option<String> {
    let mut digits = String::new();
    for c in fold_width(text).chars() {
        match c {
            '(' | ')' | '（' | '）' | '.' | '、' | '－' | '-' => {}
            c if c.is_whitespace() => {}
            c => digits.push(char::from_digit(spoken_digit(c)?, 10)?),
        }
    }
    let mobile = digits.len() == 10 && digits.starts_with("09");
    let landline = (9..=10).contains(&digits.len())
        && digits.starts_with('0')
        && matches!(digits.as_bytes().get(1), Some(b'2'..=b'8'));
    let short = SHORT_NUMBERS.contains(&digits.as_str());
    (mobile || landline || short).then_some(digits)
}

// ---------------------------------------------------------------------------------------------
// Simplified → Traditional

/// Traditional→Simplified, character by character (OpenCC t2s): the form Chinese word
/// segmenters trained on Simplified text cut best.
pub fn t2s(text: &str) -> String {
    static CONV: OnceLock<Option<OpenCC>> = OnceLock::new();
    match CONV
        .get_or_init(|| OpenCC::from_config(BuiltinConfig::T2s).ok())
        .as_ref()
    {
        Some(c) => c.convert(text),
        None => text.to_string(),
    }
}

fn converters() -> Option<&'static (OpenCC, OpenCC)> {
    static CONV: OnceLock<Option<(OpenCC, OpenCC)>> = OnceLock::new();
    CONV.get_or_init(|| {
        let s2t = OpenCC::from_config(BuiltinConfig::S2t);
        let s2twp = OpenCC::from_config(BuiltinConfig::S2twp);
        match (s2t, s2twp) {
            (Ok(a), Ok(b)) => Some((a, b)),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "Simplified→Traditional conversion unavailable");
                None
            }
        }
    })
    .as_ref()
}

/// Character-level Simplified→Traditional (OpenCC s2t, no phrase rewrites): stable, for
/// search normalisation where indexed text and queries must fold the same way.
pub fn s2t(text: &str) -> String {
    match converters() {
        Some((s2t, _)) => s2t.convert(text),
        None => text.to_string(),
    }
}

/// Whether `text` contains Simplified characters (it changes under S→T conversion).
pub fn is_simplified(text: &str) -> bool {
    converters().is_some_and(|(s2t, _)| s2t.convert(text) != text)
}

/// Traditional Chinese with Taiwan phrasing, for text shown to people (model output,
/// transcripts). Text that is already Traditional is left alone: Taiwan phrase conversion on
/// Traditional input rewrites correct words (分區 → 分割槽).
pub fn to_traditional(text: &str) -> String {
    let Some((s2t, s2twp)) = converters() else {
        return text.to_string();
    };
    if s2t.convert(text) == text {
        return text.to_string();
    }
    // Taiwan's official form is 身分 (身分證, 身分證明), which OpenCC leaves as 身份; and the
    // village (里) of 里幹事 and 里辦公處 is not the 裡 of "inside", which OpenCC writes.
    s2twp
        .convert(text)
        .replace("身份", "身分")
        .replace("裡幹事", "里幹事")
        .replace("裡辦公處", "里辦公處")
}

/// The form text is compared in by search and by rule matching (safety triage, scope): width
/// folded, Simplified → Traditional character by character, 臺 → 台, ASCII lower-cased. The
/// character count is preserved except where OpenCC rewrites phrases.
pub fn fold_for_matching(text: &str) -> String {
    s2t(&fold_width(text))
        .chars()
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
    fn width_folds_ascii_and_the_ideographic_space() {
        assert_eq!(fold_width("ＡＢＣ１２３？（）　"), "ABC123?() ");
        assert_eq!(fold_width("臺北市"), "臺北市");
    }

    #[test]
    fn numerals_of_every_shape() {
        assert_eq!(parse_number("114"), Some(114));
        assert_eq!(parse_number("１１４"), Some(114));
        assert_eq!(parse_number("一一四"), Some(114));
        assert_eq!(parse_number("洞么拐"), Some(17));
        assert_eq!(parse_number("十"), Some(10));
        assert_eq!(parse_number("十二"), Some(12));
        assert_eq!(parse_number("五十"), Some(50));
        assert_eq!(parse_number("一百零二"), Some(102));
        assert_eq!(parse_number("三千五百"), Some(3500));
        assert_eq!(parse_number("兩萬五千"), Some(25_000));
        assert_eq!(parse_number("一億"), Some(100_000_000));
        assert_eq!(parse_number("三點"), None);
        assert_eq!(parse_number(""), None);
    }

    #[test]
    fn numbers_read_out_as_transcripts_write_them() {
        assert_eq!(number_to_chinese("15"), "十五");
        assert_eq!(number_to_chinese("205"), "二百零五");
        assert_eq!(number_to_chinese("1000"), "一千");
        assert_eq!(number_to_chinese("0912"), "零九一二");
        assert_eq!(number_to_chinese("20260101"), "二零二六零一零一");
        assert_eq!(chinese_quantity(4), "四");
        assert_eq!(chinese_quantity(19), "十九");
    }

    #[test]
    fn roc_and_western_dates() {
        assert_eq!(date_iso("民國50年3月1日").as_deref(), Some("1961-03-01"));
        assert_eq!(date_iso("五十年三月一日").as_deref(), Some("1961-03-01"));
        assert_eq!(date_iso("1961-03-01").as_deref(), Some("1961-03-01"));
        assert_eq!(date_iso("113/2/30"), None);
    }

    #[test]
    fn phones_from_spoken_digits() {
        assert_eq!(
            phone_digits("零九一二 三四五 六七八").as_deref(),
            Some("0912345678")
        );
        assert_eq!(phone_digits("(02)2720-8889").as_deref(), Some("0227208889"));
        assert_eq!(phone_digits("洞么拐"), None);
        assert_eq!(phone_digits("1999").as_deref(), Some("1999"));
    }

    #[test]
    fn simplified_becomes_taiwan_traditional_and_traditional_is_left_alone() {
        assert_eq!(to_traditional("软件和信息"), "軟體和資訊");
        assert_eq!(to_traditional("身份证"), "身分證");
        assert_eq!(to_traditional("分區"), "分區");
        // 里 the village stays 里; 裡 "inside" stays 裡.
        assert_eq!(
            to_traditional("请里长或里干事协助，到里办公处，邻里，里民大会，这里民众"),
            "請里長或里幹事協助，到里辦公處，鄰里，里民大會，這裡民眾"
        );
        assert_eq!(s2t("敬老卡怎么办理"), "敬老卡怎麼辦理");
        assert!(is_simplified("怎么办"));
        assert!(!is_simplified("怎麼辦"));
    }
}
