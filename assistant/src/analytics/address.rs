//! Reading a published 1999 case address: the district, the 里 and the address itself.
//!
//! The dispatch records put the district first, then often the whole postal address again
//! (「內湖區臺北市內湖區瑞光里006鄰瑞光路２３５巷１６號」, 「內湖區114台灣台北市內湖區康寧路…」), a
//! landmark with a reference address (「大同區延平河濱公園,參考地址：環河北路一段…」), a crossing,
//! or only the district. House numbers are personal data outside the administrators' view:
//! [`block`] cuts an address back to its street, lane or alley.

use std::sync::OnceLock;

use regex::Regex;

/// A parsed case address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Address {
    /// 「內湖區」, or empty when the record names none of the city's districts.
    pub district: String,
    /// 「瑞光里」, or empty when the address does not say.
    pub village: String,
    /// The address after the district (width folded, city, postal code and repeated district
    /// dropped; 里 and 鄰 dropped once read): 「瑞光路235巷16號」.
    pub address: String,
}

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("valid pattern"))
}

/// Parses a record's address with the city's names and districts.
pub fn parse(raw: &str, city_names: &[String], districts: &[String]) -> Address {
    static VILLAGE: OnceLock<Regex> = OnceLock::new();
    static PREFIX: OnceLock<Regex> = OnceLock::new();
    let mut s: String = knowledge::text::fold_width(raw)
        .chars()
        .filter(|c| !c.is_whitespace() || *c == ' ')
        .collect();
    s = s.trim().to_string();
    let mut district = String::new();
    if let Some(d) = districts.iter().find(|d| s.starts_with(d.as_str())) {
        district = d.clone();
        s = s[d.len()..].to_string();
    }
    // 「114台灣台北市內湖區」: postal code, country, city and the district again.
    let prefix = re(&PREFIX, r"^(?:\d{3,6})?(?:台灣|臺灣)?");
    loop {
        let before = s.len();
        if let Some(m) = prefix.find(&s) {
            s = s[m.end()..].to_string();
        }
        for name in city_names.iter().filter(|n| n.chars().count() >= 3) {
            if let Some(rest) = s.strip_prefix(name.as_str()) {
                s = rest.to_string();
            }
        }
        if !district.is_empty() {
            if let Some(rest) = s.strip_prefix(district.as_str()) {
                s = rest.to_string();
            }
        } else if let Some(d) = districts.iter().find(|d| s.starts_with(d.as_str())) {
            district = d.clone();
            s = s[d.len()..].to_string();
        }
        if s.len() == before {
            break;
        }
    }
    // 「瑞光里006鄰」「仁勇里大東路117號」: the village is read only where its neighbourhood
    // number or a road follows (a name ending in 里 elsewhere may be a road or a place).
    let village_re = re(
        &VILLAGE,
        r"^(\p{Han}{1,3}里)(?:(\d{1,3})鄰|(\p{Han}{1,5}(?:路|街|大道)))",
    );
    let mut village = String::new();
    if let Some(c) = village_re.captures(&s) {
        village = c[1].to_string();
        let cut = match c.get(2) {
            Some(n) => n.end() + "鄰".len(),
            None => c.get(1).map(|m| m.end()).unwrap_or(0),
        };
        s = s[cut..].to_string();
    }
    Address {
        district,
        village,
        address: s.trim().to_string(),
    }
}

/// The address without house-level detail (the number and anything after it, floors, an
/// English house number): 「瑞光路235巷16號」 → 「瑞光路235巷」. A landmark with a reference
/// address keeps the landmark.
pub fn block(address: &str) -> String {
    static NUMBER: OnceLock<Regex> = OnceLock::new();
    static ENGLISH: OnceLock<Regex> = OnceLock::new();
    static REFERENCE: OnceLock<Regex> = OnceLock::new();
    let reference = re(&REFERENCE, r"[,，]?參考地址[:：].*$");
    let s = reference.replace(address, "");
    let number = re(&NUMBER, r"(?:臨)?\d+(?:[-之]\d+)?(?:號|F|樓).*$");
    let s = number.replace(&s, "");
    let english = re(&ENGLISH, r"(?i)\b(?:\d+F,?\s*)?No\.?\s*\d+(?:-\d+)?,?\s*");
    let s = english.replace_all(&s, "");
    s.trim_matches(|c: char| c == ',' || c == '，' || c.is_whitespace())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn city() -> (Vec<String>, Vec<String>) {
        (
            vec!["臺北市".into(), "台北市".into(), "北市".into()],
            [
                "中正區",
                "大同區",
                "中山區",
                "松山區",
                "大安區",
                "萬華區",
                "信義區",
                "士林區",
                "北投區",
                "內湖區",
                "南港區",
                "文山區",
            ]
            .iter()
            .map(|d| d.to_string())
            .collect(),
        )
    }

    fn parsed(raw: &str) -> Address {
        let (c, d) = city();
        parse(raw, &c, &d)
    }

    #[test]
    fn district_village_and_address_come_from_every_published_form() {
        let a = parsed("內湖區臺北市內湖區瑞光里006鄰瑞光路２３５巷１６號");
        assert_eq!(a.district, "內湖區");
        assert_eq!(a.village, "瑞光里");
        assert_eq!(a.address, "瑞光路235巷16號");
        let a = parsed("內湖區114台灣台北市內湖區康寧路三段189巷163弄15號");
        assert_eq!(a.district, "內湖區");
        assert_eq!(a.village, "");
        assert_eq!(a.address, "康寧路三段189巷163弄15號");
        let a = parsed("松山區臺北市松山區精忠里008鄰民生東路四段９７巷６弄２２號1樓");
        assert_eq!(
            (a.district.as_str(), a.village.as_str()),
            ("松山區", "精忠里")
        );
        assert_eq!(a.address, "民生東路四段97巷6弄22號1樓");
        let a = parsed("北投區");
        assert_eq!((a.district.as_str(), a.address.as_str()), ("北投區", ""));
        let a = parsed("文山區木柵公園傳出");
        assert_eq!(a.address, "木柵公園傳出");
        // 「萬里」 is no village without its 鄰 or a road after it.
        let a = parsed("中正區萬里街口");
        assert_eq!(a.village, "");
        let a = parsed("士林區仁勇里大東路117號");
        assert_eq!(
            (a.village.as_str(), a.address.as_str()),
            ("仁勇里", "大東路117號")
        );
        // No district of the city.
        let a = parsed("新北市板橋區文化路一段");
        assert_eq!(a.district, "");
    }

    #[test]
    fn the_block_drops_house_numbers_floors_and_reference_addresses() {
        assert_eq!(block("瑞光路235巷16號"), "瑞光路235巷");
        assert_eq!(block("民生東路四段97巷6弄22號1樓"), "民生東路四段97巷6弄");
        assert_eq!(block("福德街251巷33之1號"), "福德街251巷");
        assert_eq!(
            block("延平河濱公園,參考地址：環河北路一段臨109之1號"),
            "延平河濱公園"
        );
        assert_eq!(
            block("No. 16,Nanjing E Rd Sec 5 Ln 147,Dongguang"),
            "Nanjing E Rd Sec 5 Ln 147,Dongguang"
        );
        assert_eq!(block("木柵公園傳出"), "木柵公園傳出");
        assert_eq!(
            block("承德路七段-承德路七段344巷"),
            "承德路七段-承德路七段344巷"
        );
    }
}
