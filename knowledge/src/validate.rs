//! Validators and normalisers for the values residents give in forms and calls: the 身分證統一編號
//! (and the resident-certificate numbers of foreign residents), dates in 民國 or Western form,
//! and Taiwanese phone numbers written with separators, full-width or spoken digits.

use std::fmt;

/// Why an identity number is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdError {
    /// Not a letter followed by nine digits (or two letters and eight digits).
    Format,
    /// The check digit does not match.
    Checksum,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::Format => write!(f, "身分證統一編號格式應為1個英文字母加9個數字"),
            IdError::Checksum => write!(f, "身分證統一編號檢查碼不正確"),
        }
    }
}

impl std::error::Error for IdError {}

/// What kind of identity number it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// 國民身分證 (second character 1 or 2).
    National,
    /// 新式居留證 (second character 8 or 9, issued since 2021).
    ResidentNew,
    /// 舊式居留證 (two letters and eight digits).
    ResidentOld,
}

/// The two-digit code of the region letter.
fn letter_code(c: char) -> Option<u32> {
    const CODES: [u32; 26] = [
        10, 11, 12, 13, 14, 15, 16, 17, 34, 18, 19, 20, 21, 22, 35, 23, 24, 25, 26, 27, 28, 29, 32,
        30, 31, 33,
    ];
    c.is_ascii_uppercase()
        .then(|| CODES[(c as u8 - b'A') as usize])
}

/// Full-width ASCII (letters, digits, punctuation) to half width, upper-cased.
fn width(text: &str) -> String {
    crate::text::fold_width(text).to_ascii_uppercase()
}

/// [`width`], with spaces and dashes dropped.
fn fold(text: &str) -> String {
    width(text)
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect()
}

/// Checks a 身分證統一編號 or resident-certificate number; returns it normalised (upper case,
/// half width) with its kind.
pub fn taiwan_id(text: &str) -> Result<(String, IdKind), IdError> {
    let id = fold(text);
    let cs: Vec<char> = id.chars().collect();
    if cs.len() != 10 || !cs[2..].iter().all(|c| c.is_ascii_digit()) {
        return Err(IdError::Format);
    }
    let region = letter_code(cs[0]).ok_or(IdError::Format)?;
    let (kind, second) = match cs[1] {
        '1' | '2' => (IdKind::National, cs[1].to_digit(10).unwrap_or(0)),
        '8' | '9' => (IdKind::ResidentNew, cs[1].to_digit(10).unwrap_or(0)),
        'A'..='D' => (
            IdKind::ResidentOld,
            letter_code(cs[1]).ok_or(IdError::Format)? % 10,
        ),
        _ => return Err(IdError::Format),
    };
    let digits: Vec<u32> = cs[2..].iter().filter_map(|c| c.to_digit(10)).collect();
    let mut sum = region / 10 + (region % 10) * 9 + second * 8;
    for (d, w) in digits[..7].iter().zip([7, 6, 5, 4, 3, 2, 1]) {
        sum += d * w;
    }
    sum += digits[7];
    if sum % 10 == 0 {
        Ok((id, kind))
    } else {
        Err(IdError::Checksum)
    }
}

pub use crate::text::{date_iso, phone_digits};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_ids_pass_the_checksum_in_any_width_or_case() {
        assert_eq!(
            taiwan_id("A123456789"),
            Ok(("A123456789".into(), IdKind::National))
        );
        assert_eq!(
            taiwan_id("ａ１２３４５６７８９"),
            Ok(("A123456789".into(), IdKind::National))
        );
        assert_eq!(taiwan_id("F131104093").map(|x| x.1), Ok(IdKind::National));
    }

    #[test]
    fn a_wrong_check_digit_or_format_is_reported() {
        assert_eq!(taiwan_id("A123456788"), Err(IdError::Checksum));
        assert_eq!(taiwan_id("A12345678"), Err(IdError::Format));
        assert_eq!(taiwan_id("A323456789"), Err(IdError::Format));
        assert_eq!(taiwan_id("1123456789"), Err(IdError::Format));
        assert!(IdError::Checksum.to_string().contains("檢查碼"));
    }

    #[test]
    fn resident_certificates_old_and_new_are_checked() {
        // New format: same weights as the national ID.
        assert_eq!(
            taiwan_id("A800000014").map(|x| x.1),
            Ok(IdKind::ResidentNew)
        );
        assert_eq!(taiwan_id("A800000015"), Err(IdError::Checksum));
        // Old format: the second letter's code contributes its last digit.
        assert_eq!(
            taiwan_id("AC01234567").map(|x| x.1),
            Ok(IdKind::ResidentOld)
        );
        assert_eq!(taiwan_id("AC01234568"), Err(IdError::Checksum));
    }

    #[test]
    fn roc_and_western_dates_become_iso() {
        assert_eq!(date_iso("民國50年3月1日").as_deref(), Some("1961-03-01"));
        assert_eq!(date_iso("50/3/1").as_deref(), Some("1961-03-01"));
        assert_eq!(date_iso("114.12.31").as_deref(), Some("2025-12-31"));
        assert_eq!(date_iso("五十年三月一日").as_deref(), Some("1961-03-01"));
        assert_eq!(
            date_iso("民國一一四年十二月二十五日").as_deref(),
            Some("2025-12-25")
        );
        assert_eq!(date_iso("1961-03-01").as_deref(), Some("1961-03-01"));
        assert_eq!(
            date_iso("２０２４年２月２９日").as_deref(),
            Some("2024-02-29")
        );
    }

    #[test]
    fn impossible_or_incomplete_dates_are_refused() {
        assert_eq!(date_iso("2023年2月29日"), None);
        assert_eq!(date_iso("民國50年13月1日"), None);
        assert_eq!(date_iso("民國50年"), None);
        assert_eq!(date_iso("昨天"), None);
    }

    #[test]
    fn phones_are_normalised_to_digits() {
        assert_eq!(phone_digits("0912-345-678").as_deref(), Some("0912345678"));
        assert_eq!(phone_digits("(07)336-8333").as_deref(), Some("073368333"));
        assert_eq!(phone_digits("02 2720 8889").as_deref(), Some("0227208889"));
        assert_eq!(
            phone_digits("０９１２３４５６７８").as_deref(),
            Some("0912345678")
        );
        assert_eq!(
            phone_digits("零九一二三四五六七八").as_deref(),
            Some("0912345678")
        );
        assert_eq!(
            phone_digits("洞九么兩三四五六拐八").as_deref(),
            Some("0912345678")
        );
        assert_eq!(phone_digits("1999").as_deref(), Some("1999"));
    }

    #[test]
    fn numbers_that_are_not_phones_are_refused() {
        assert_eq!(phone_digits("091234567"), None);
        assert_eq!(phone_digits("12345678"), None);
        assert_eq!(phone_digits("0912-abc-678"), None);
        assert_eq!(phone_digits("0112345678"), None);
    }
}

/// Property tests (fuzzing): any input is handled without a panic, valid numbers always pass,
/// and a changed check digit always fails. `PROPTEST_CASES=100000` for a long run.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const LETTERS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

    fn with_check_digit(letter: char, body: &[u32]) -> String {
        let code = letter_code(letter).unwrap();
        let weights = [8, 7, 6, 5, 4, 3, 2, 1];
        let mut sum = code / 10 + (code % 10) * 9;
        for (d, w) in body.iter().zip(weights) {
            sum += d * w;
        }
        let check = (10 - sum % 10) % 10;
        format!(
            "{letter}{}{check}",
            body.iter().map(|d| d.to_string()).collect::<String>()
        )
    }

    proptest! {
        #[test]
        fn validators_never_panic_on_any_text(s in "\\PC{0,40}") {
            let _ = taiwan_id(&s);
            let _ = date_iso(&s);
            let _ = phone_digits(&s);
        }

        #[test]
        fn validators_never_panic_on_digit_soup(s in "[0-9０-９零一二三四五六七八九十百兩么洞拐年月日號/.\\- 民國A-Za-z()]{0,30}") {
            let _ = taiwan_id(&s);
            if let Some(d) = date_iso(&s) {
                prop_assert_eq!(d.len(), 10);
                prop_assert_eq!(date_iso(&d), Some(d.clone()));
            }
            if let Some(p) = phone_digits(&s) {
                prop_assert!(p.chars().all(|c| c.is_ascii_digit()));
            }
        }

        #[test]
        fn every_valid_id_passes_and_any_other_check_digit_fails(
            l in 0usize..26,
            sex in 1u32..=2,
            rest in proptest::collection::vec(0u32..10, 7),
            bump in 1u32..10,
        ) {
            let letter = LETTERS.chars().nth(l).unwrap();
            let mut body = vec![sex];
            body.extend(rest);
            let id = with_check_digit(letter, &body);
            prop_assert_eq!(taiwan_id(&id).map(|x| x.0), Ok(id.clone()));
            prop_assert_eq!(taiwan_id(&id.to_lowercase()).map(|x| x.0), Ok(id.clone()));
            let last = id.chars().last().unwrap().to_digit(10).unwrap();
            let wrong = format!("{}{}", &id[..9], (last + bump) % 10);
            prop_assert_eq!(taiwan_id(&wrong), Err(IdError::Checksum));
        }

        #[test]
        fn roc_dates_round_trip(y in 1u32..=150, m in 1u32..=12, d in 1u32..=28) {
            let iso = format!("{:04}-{m:02}-{d:02}", y + 1911);
            prop_assert_eq!(date_iso(&format!("民國{y}年{m}月{d}日")), Some(iso.clone()));
            prop_assert_eq!(date_iso(&format!("{y}/{m}/{d}")), Some(iso));
        }
    }
}

/// An address in the household-registration style: half width, 臺 for 台, the section in
/// Chinese numerals (4段 → 四段) and lane, alley, number, floor and 鄰 in Arabic numerals
/// (一百巷 → 100巷). Wording is otherwise kept.
pub fn address(text: &str) -> String {
    let chars: Vec<char> = width(text)
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| if c == '台' { '臺' } else { c })
        .collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        while i < chars.len()
            && (chars[i].is_ascii_digit() || "零〇一二三四五六七八九十百".contains(chars[i]))
        {
            i += 1;
        }
        if i == start {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let run: String = chars[start..i].iter().collect();
        let value = crate::text::parse_number(&run);
        match (chars.get(i), value) {
            (Some('段'), Some(n)) if (1..=19).contains(&n) => {
                out.push_str(&crate::text::chinese_quantity(n as u32))
            }
            (Some('巷' | '弄' | '號' | '樓' | '鄰' | 'F'), Some(n)) => {
                out.push_str(&n.to_string())
            }
            _ => out.push_str(&run),
        }
    }
    out
}

#[cfg(test)]
mod address_tests {
    use super::address;

    #[test]
    fn addresses_take_the_registration_style() {
        assert_eq!(
            address("台北市大安區信義路4段１００巷二號三樓"),
            "臺北市大安區信義路四段100巷2號3樓"
        );
        assert_eq!(
            address("臺北市中山區民生東路十二段5號"),
            "臺北市中山區民生東路十二段5號"
        );
        assert_eq!(address("長安里008鄰光明路129號"), "長安里8鄰光明路129號");
        // A run that is not an address number stays as written.
        assert_eq!(address("八德路"), "八德路");
    }
}
