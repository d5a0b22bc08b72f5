//! The same problem reported again: a new report matches an earlier one when both name the same
//! pole, or when both are in the same district, at the same place (the address normalised:
//! width, city, district, 里 and 鄰 dropped) and say much the same thing (character bigrams),
//! within a few days. Measured by `eval duplicates` on a year of Taipei streetlight reports, with
//! the pole numbers the residents quoted as truth and hidden from the matcher.

use std::collections::HashSet;

/// Reports this close in time (minutes) can be the same open problem.
pub const WINDOW_MINUTES: i64 = 3 * 24 * 60;

/// Description similarity (character-bigram Jaccard) two reports at one place need.
pub const MIN_DESCRIPTION_SIMILARITY: f32 = 0.1;

/// What the matcher reads of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub district: String,
    /// The place as said (an address, a crossing, a landmark).
    pub place: String,
    pub description: String,
    /// Minutes since 1970-01-01 (see [`minutes`]).
    pub at: i64,
    /// Pole or lamp numbers quoted (seven digits).
    pub poles: Vec<String>,
}

/// Seven-digit pole numbers in `text` (full-width digits folded).
pub fn pole_numbers(text: &str) -> Vec<String> {
    let t = knowledge::text::fold_width(text);
    let cs: Vec<char> = t.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        if cs[i].is_ascii_digit() {
            let start = i;
            while i < cs.len() && cs[i].is_ascii_digit() {
                i += 1;
            }
            if i - start == 7 {
                let p: String = cs[start..i].iter().collect();
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        } else {
            i += 1;
        }
    }
    out
}

/// `text` with every pole number replaced by 「#」 (what the matcher may read when the numbers
/// are the truth it is scored against).
pub fn without_poles(text: &str) -> String {
    let mut t = knowledge::text::fold_width(text);
    for p in pole_numbers(&t) {
        t = t.replace(&p, "#");
    }
    t
}

/// The place as a key: width folded, whitespace, the city, a leading district, 里 and 鄰
/// dropped, 臺 as 台 (「  臺北市北投區長安里008鄰光明路１２９號」 → 「光明路129號」).
pub fn place_key(place: &str) -> String {
    let mut t: String = knowledge::text::fold_width(place)
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| if c == '臺' { '台' } else { c })
        .collect();
    t = t.replace("台北市", "");
    let strip_unit = |t: &str, unit: char, max: usize| -> Option<String> {
        let pos = t.char_indices().take(max + 1).find(|(_, c)| *c == unit)?.0;
        let head = &t[..pos];
        (!head.is_empty() && head.chars().all(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)))
            .then(|| t[pos + unit.len_utf8()..].to_string())
    };
    if let Some(rest) = strip_unit(&t, '區', 3) {
        t = rest;
    }
    if let Some(rest) = strip_unit(&t, '里', 4) {
        t = rest;
    }
    // 「008鄰」
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 && t[digits..].starts_with('鄰') {
        t = t[digits + '鄰'.len_utf8()..].to_string();
    }
    t
}

fn bigrams(s: &str) -> HashSet<(char, char)> {
    let cs: Vec<char> = s.chars().filter(|c| c.is_alphanumeric()).collect();
    cs.windows(2).map(|w| (w[0], w[1])).collect()
}

/// Character-bigram Jaccard of two descriptions.
pub fn description_similarity(a: &str, b: &str) -> f32 {
    let (a, b) = (bigrams(a), bigrams(b));
    let union = a.union(&b).count();
    if union == 0 {
        return 0.0;
    }
    a.intersection(&b).count() as f32 / union as f32
}

/// Whether `b` reports the same problem as `a`. `use_poles`: a shared pole number decides
/// (the product); off when the pole numbers are the truth being scored against.
pub fn same_problem(a: &Report, b: &Report, use_poles: bool) -> bool {
    if use_poles && a.poles.iter().any(|p| b.poles.contains(p)) {
        return true;
    }
    let key = place_key(&a.place);
    (a.at - b.at).abs() <= WINDOW_MINUTES
        && a.district == b.district
        && !key.is_empty()
        && key == place_key(&b.place)
        && description_similarity(&a.description, &b.description) >= MIN_DESCRIPTION_SIMILARITY
}

/// Cases older than this (minutes) are not matched even by pole number.
pub const POLE_WINDOW_MINUTES: i64 = 30 * 24 * 60;

/// A case as the matcher reads it (district and road fields, the call text, pole numbers).
pub fn report_of_case(c: &super::case::Case) -> Report {
    let field = |k: &str| {
        c.fields
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let poles = match c.fields.get("pole_numbers") {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        Some(serde_json::Value::String(s)) => pole_numbers(s),
        _ => pole_numbers(&c.summary),
    };
    Report {
        district: field("district"),
        place: field("road"),
        description: without_poles(&c.summary),
        at: c.created / 60,
        poles,
    }
}

/// The earlier cases (newest first) that report the same problem as `new`: the same pole
/// within [`POLE_WINDOW_MINUTES`], or the same category (when both have one), district and road
/// with a similar description within [`WINDOW_MINUTES`].
pub fn earlier_cases<'a>(
    new: &Report,
    category: Option<&str>,
    cases: &'a [super::case::Case],
) -> Vec<&'a super::case::Case> {
    cases
        .iter()
        .filter(|c| {
            let old = report_of_case(c);
            let age = new.at - old.at;
            if !(0..=POLE_WINDOW_MINUTES).contains(&age) {
                return false;
            }
            let same_category = match (category, c.category.as_deref()) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
            new.poles.iter().any(|p| old.poles.contains(p))
                || (same_category && same_problem(new, &old, false))
        })
        .collect()
}

/// Minutes since 1970-01-01 of an ISO local time 「2024-01-01T05:58:00」 (or a date alone).
pub fn minutes(iso: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| iso.get(r).and_then(|s| s.parse::<i64>().ok());
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm) = (num(11..13).unwrap_or(0), num(14..16).unwrap_or(0));
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 1440 + hh * 60 + mm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(place: &str, description: &str, at: &str) -> Report {
        Report {
            district: "大安".into(),
            place: place.into(),
            description: without_poles(description),
            at: minutes(at).unwrap(),
            poles: pole_numbers(description),
        }
    }

    #[test]
    fn places_fold_to_one_key() {
        assert_eq!(
            place_key("  臺北市北投區長安里008鄰光明路１２９號"),
            "光明路129號"
        );
        assert_eq!(place_key("大安區 信義路二段86巷"), "信義路二段86巷");
        assert_eq!(place_key("信義路二段86巷"), "信義路二段86巷");
    }

    #[test]
    fn a_report_again_at_the_same_place_within_days_is_the_same_problem() {
        let a = report(
            "信義路二段86巷",
            "編號0505364的路燈不亮，請單位前往處理",
            "2024-01-01T11:01:00",
        );
        let b = report(
            "臺北市大安區信義路二段86巷",
            "路燈不亮好幾天了，編號0505364，麻煩處理",
            "2024-01-02T20:00:00",
        );
        assert_eq!(a.poles, ["0505364"]);
        assert!(!a.description.contains("0505364"));
        assert!(same_problem(&a, &b, false));
        // A week later it is a new report; elsewhere it is another problem.
        let later = Report {
            at: a.at + 7 * 1440,
            ..b.clone()
        };
        assert!(!same_problem(&a, &later, false));
        assert!(same_problem(&a, &later, true), "the same pole decides");
        let elsewhere = report("信義路二段10巷", "路燈不亮", "2024-01-01T12:00:00");
        assert!(!same_problem(&a, &elsewhere, false));
    }

    #[test]
    fn minutes_count_from_the_epoch() {
        assert_eq!(minutes("1970-01-01T00:00:00"), Some(0));
        assert_eq!(minutes("1970-01-02"), Some(1440));
        assert_eq!(
            minutes("2024-03-01T00:00:00").unwrap() - minutes("2024-02-28T00:00:00").unwrap(),
            2 * 1440,
            "2024 is a leap year"
        );
    }
}
