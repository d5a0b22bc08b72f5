//! Finders for typed values in free text: identity numbers, phones, dates, names, addresses,
//! districts, roads, pole numbers, amounts and e-mails. They work on a width-folded copy of the
//! text whose characters line up one to one with the original, so every value keeps its span.

use knowledge::text::{self, spoken_digit};
use knowledge::validate::{date_iso, phone_digits, taiwan_id, IdError};

/// The text, width-folded (full-width ASCII → half width), as characters.
pub struct Text {
    pub chars: Vec<char>,
}

impl Text {
    pub fn new(text: &str) -> Text {
        let chars = text.chars().map(text::fold_width_char).collect();
        Text { chars }
    }

    pub fn len(&self) -> usize {
        self.chars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    pub fn slice(&self, start: usize, end: usize) -> String {
        self.chars[start.min(self.len())..end.min(self.len())]
            .iter()
            .collect()
    }

    /// Whether `word` occurs at `pos`.
    pub fn at(&self, pos: usize, word: &str) -> bool {
        (pos..)
            .zip(word.chars())
            .all(|(i, c)| self.chars.get(i) == Some(&c))
    }

    /// Whether `word` ends right before `pos`.
    pub fn ends_at(&self, pos: usize, word: &str) -> bool {
        let n = word.chars().count();
        pos >= n && self.at(pos - n, word)
    }

    /// Every position where `word` occurs.
    pub fn find_all(&self, word: &str) -> Vec<usize> {
        if word.is_empty() {
            return Vec::new();
        }
        (0..self.len()).filter(|&i| self.at(i, word)).collect()
    }

    /// Whether any of `words` occurs in `start..end`.
    pub fn contains_in(&self, start: usize, end: usize, words: &[&str]) -> bool {
        let end = end.min(self.len());
        (start..end).any(|i| {
            words
                .iter()
                .any(|w| self.at(i, w) && i + w.chars().count() <= end)
        })
    }
}

/// A value found in the text, with its character span.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub start: usize,
    pub end: usize,
    /// The normalised value; `None` when the text is recognisably this kind of value but is
    /// invalid (the problem says why).
    pub value: Option<String>,
    pub problem: Option<String>,
}

fn is_cjk(c: char) -> bool {
    ('\u{4E00}'..='\u{9FFF}').contains(&c) || ('\u{3400}'..='\u{4DBF}').contains(&c)
}

/// Words that take back what was just said (「不對，是…」).
pub const CORRECTIONS: &[&str] = &[
    "不對",
    "不是",
    "講錯",
    "說錯",
    "打錯",
    "更正",
    "我是說",
    "應該是",
    "抱歉",
    "修正",
    "改成",
    "搞錯",
    "記錯",
    "那是",
];

/// Identity numbers: a letter (or two) followed by digits. Valid ones carry the normalised
/// number; a number with a wrong checksum or length is reported.
pub fn ids(t: &Text) -> Vec<Found> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let c = t.chars[i];
        let prev_alnum = i > 0 && t.chars[i - 1].is_ascii_alphanumeric();
        if !c.is_ascii_alphabetic() || prev_alnum {
            i += 1;
            continue;
        }
        let start = i;
        let mut raw = String::from(c);
        let mut j = i + 1;
        if t.chars.get(j).is_some_and(|c| c.is_ascii_alphabetic()) {
            raw.push(t.chars[j]);
            j += 1;
        }
        let mut digits = 0;
        let mut end = j;
        // Read out: 「F，兩九八、四么六、兩兩九」.
        let spoken = t
            .chars
            .get(j)
            .is_some_and(|&c| matches!(c, '，' | ',' | '、' | ' '))
            && t.chars
                .get(j + 1)
                .is_some_and(|&c| !c.is_ascii_digit() && spoken_digit(c).is_some());
        while j < t.len() && digits < 10 {
            let c = t.chars[j];
            let d = if spoken {
                spoken_digit(c)
            } else {
                c.to_digit(10)
            };
            if let Some(d) = d {
                raw.push(char::from_digit(d, 10).unwrap_or('0'));
                digits += 1;
                j += 1;
                end = j;
            } else if (c == ' ' || c == '-' || (spoken && matches!(c, '，' | ',' | '、')))
                && (digits > 0 || spoken)
            {
                j += 1;
            } else {
                break;
            }
        }
        let letters = raw.chars().take_while(|c| c.is_ascii_alphabetic()).count();
        let next_alnum = t.chars.get(end).is_some_and(|c| c.is_ascii_alphanumeric());
        if digits >= 7 && !next_alnum && letters + digits >= 9 {
            let found = match taiwan_id(&raw) {
                Ok((id, _)) => Found {
                    start,
                    end,
                    value: Some(id),
                    problem: None,
                },
                Err(e) => Found {
                    start,
                    end,
                    value: None,
                    problem: Some(match e {
                        IdError::Checksum => {
                            format!("身分證統一編號「{raw}」檢查碼不正確，請再確認")
                        }
                        IdError::Format => {
                            format!("「{raw}」不是有效的身分證統一編號格式（1個英文字母加9個數字）")
                        }
                    }),
                },
            };
            out.push(found);
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// Phone numbers: runs of digits (Arabic, full-width or spoken) with separators.
pub fn phones(t: &Text) -> Vec<Found> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let c = t.chars[i];
        let prev = i.checked_sub(1).map(|p| t.chars[p]);
        let starts = matches!(c, '0' | '零' | '〇' | '洞' | '○')
            || (c == '(' && t.chars.get(i + 1) == Some(&'0'));
        if !starts || prev.is_some_and(|p| p.is_ascii_alphanumeric() || spoken_digit(p).is_some()) {
            i += 1;
            continue;
        }
        let spoken = !c.is_ascii_digit() && c != '(';
        let mut j = i;
        let mut digits = 0;
        let mut end = i;
        while j < t.len() && digits < 10 {
            let c = t.chars[j];
            let d = if spoken {
                spoken_digit(c)
            } else {
                c.to_digit(10)
            };
            if d.is_some() {
                digits += 1;
                j += 1;
                end = j;
            } else if matches!(c, '-' | ' ' | '(' | ')' | '（' | '）' | '－' | '‐' | '—')
                || (matches!(c, '，' | ',' | '、' | '.' | '…') && spoken)
            {
                j += 1;
            } else {
                break;
            }
        }
        // A longer digit run glued to the end is not a phone.
        let glued = t.chars.get(end).is_some_and(|c| c.is_ascii_digit());
        let raw: String = t.chars[i..end]
            .iter()
            .map(|&c| {
                if spoken {
                    spoken_digit(c)
                        .and_then(|d| char::from_digit(d, 10))
                        .unwrap_or(' ')
                } else {
                    c
                }
            })
            .filter(|c| c.is_ascii_digit())
            .collect();
        if digits >= 8 && !glued {
            if let Some(p) = phone_digits(&raw) {
                out.push(Found {
                    start: i,
                    end,
                    value: Some(p),
                    problem: None,
                });
                i = end;
                continue;
            } else if digits >= 9 && raw.starts_with("09") {
                out.push(Found {
                    start: i,
                    end,
                    value: None,
                    problem: Some(format!(
                        "電話號碼「{raw}」位數不對（手機應為10碼），請再確認"
                    )),
                });
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out
}

fn numeral(c: char) -> bool {
    c.is_ascii_digit() || "零〇一二三四五六七八九十百兩".contains(c)
}

/// Dates in 民國 or Western form, in digits or Chinese numerals.
pub fn dates(t: &Text) -> Vec<Found> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let start = i;
        let mut j = i;
        for prefix in ["中華民國", "民國", "西元"] {
            if t.at(j, prefix) {
                j += prefix.chars().count();
                break;
            }
        }
        let prev_num = start > 0 && numeral(t.chars[start - 1]);
        if prev_num || !t.chars.get(j).is_some_and(|&c| numeral(c)) {
            i += 1;
            continue;
        }
        // number sep number sep number [日|號]
        let mut parts = 0;
        let mut k = j;
        let mut seps = Vec::new();
        while parts < 3 {
            let n0 = k;
            while k < t.len() && numeral(t.chars[k]) {
                k += 1;
            }
            if k == n0 || k - n0 > 6 {
                break;
            }
            parts += 1;
            if parts == 3 {
                break;
            }
            match t.chars.get(k) {
                Some(&c) if matches!(c, '年' | '月' | '/' | '.' | '-') => {
                    seps.push(c);
                    k += 1;
                }
                _ => break,
            }
        }
        let chinese_style = seps.first() == Some(&'年');
        if parts == 3 && (chinese_style || seps.iter().all(|&s| s == seps[0])) {
            let mut end = k;
            if matches!(t.chars.get(end), Some('日' | '號')) {
                end += 1;
            }
            if let Some(iso) = date_iso(&t.slice(start, end)) {
                out.push(Found {
                    start,
                    end,
                    value: Some(iso),
                    problem: None,
                });
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// Common Taiwanese surnames (two-character ones first).
const SURNAMES2: &[&str] = &[
    "歐陽", "司馬", "諸葛", "上官", "張簡", "范姜", "端木", "皇甫",
];
const SURNAMES: &str = "陳林黃張李王吳劉蔡楊許鄭謝洪郭邱曾廖賴徐周葉蘇莊呂江何蕭羅高潘簡朱鍾游彭詹胡施沈余盧梁趙顏柯翁魏孫戴范方宋鄧杜傅侯曹薛丁卓阮馬董温温唐藍蔣石古紀姚連馮歐程湯黃田康姜白汪鄒尤巫鐘涂龔嚴韓袁金童陸夏柳邵錢伍倪溫于譚駱熊任甘秦顧毛章史官萬俞雷粟饒張崔凃欒易麥武樊殷齊";

/// Characters that cannot be the third character of a name (they start the next word).
const AFTER_NAME: &str = "的今身電住生出是要想在先太和跟與今手地戶聯申現已有也都目，。、；：,.;: 　!！?？（(0123456789歲年日女男妹弟哥姐媽爸老住幫辦打請我他她您你們啦喔啊呀嗎吧呢囉欸耶";

/// Words that introduce a name.
const NAME_CUES: &[&str] = &[
    "我叫做",
    "我叫",
    "叫做",
    "名字是",
    "名字叫",
    "名字",
    "姓名是",
    "姓名為",
    "姓名:",
    "姓名",
    "申請人是",
    "申請人為",
    "申請人",
    "聯絡人是",
    "聯絡人",
    "我是",
    "本人是",
    "本人",
    "本名",
    "全名",
    "叫",
    "是",
    ":",
    "民眾:",
    "女兒",
    "兒子",
    "孫子",
    "孫女",
    "先生",
    "太太",
    "老公",
    "老婆",
    "弟弟",
    "妹妹",
    "哥哥",
    "姊姊",
    "姐姐",
    "媳婦",
    "女婿",
    "姪子",
    "姪女",
    "外甥",
    "丈夫",
    "妻子",
    "配偶",
    "父親",
    "母親",
    "幼兒",
    "小孩",
    "孩子",
    "寶寶",
];

fn surname_len(t: &Text, i: usize) -> usize {
    if SURNAMES2.iter().any(|s| t.at(i, s)) {
        2
    } else if t.chars.get(i).is_some_and(|&c| SURNAMES.contains(c)) {
        1
    } else {
        0
    }
}

/// A name starting at `i` (surname + one or two characters), if one does.
pub fn name_at(t: &Text, i: usize) -> Option<(usize, usize)> {
    let s = surname_len(t, i);
    if s == 0 {
        return None;
    }
    let given: Vec<char> = t.chars[i + s..]
        .iter()
        .take(2)
        .copied()
        .take_while(|&c| is_cjk(c))
        .collect();
    if given.is_empty() || AFTER_NAME.contains(given[0]) {
        return None;
    }
    // 先生/小姐/太太 after a surname: a title, not a name.
    let rest = t.slice(i + s, i + s + 2);
    if [
        "先生", "小姐", "太太", "媽媽", "爸爸", "阿姨", "伯伯", "奶奶", "爺爺", "老師", "同學",
    ]
    .contains(&rest.as_str())
    {
        return None;
    }
    let n = if given.len() == 2 && !AFTER_NAME.contains(given[1]) {
        2
    } else {
        1
    };
    // 高雄市, 中山區: a place, not a person.
    if t.chars
        .get(i + s + n)
        .is_some_and(|&c| "市縣區鄉鎮路街里".contains(c))
        || (n == 2 && "市縣區鄉鎮路街里".contains(given[1]))
    {
        return None;
    }
    // 冠夫姓: 何林秀枝 (surname + surname + two characters, then a boundary).
    if s == 1 && n == 2 && SURNAMES.contains(t.chars[i + 1]) {
        let g2: Vec<char> = t.chars[i + 2..].iter().take(3).copied().collect();
        let boundary = |c: Option<&char>| c.is_none_or(|&c| !is_cjk(c) || AFTER_NAME.contains(c));
        if g2.len() >= 2
            && g2[..2]
                .iter()
                .all(|&c| is_cjk(c) && !AFTER_NAME.contains(c))
            && boundary(g2.get(2))
        {
            return Some((i, i + 4));
        }
    }
    Some((i, i + s + n))
}

/// Names introduced by a cue word, a relation word, or a 「我姓王，王小明」 pattern. `extra_cues`
/// are the form's role cues (a name right after 我媽 is the mother's).
pub fn names(t: &Text, extra_cues: &[&str]) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    let mut cues: Vec<&str> = NAME_CUES.to_vec();
    cues.extend_from_slice(extra_cues);
    cues.sort_by_key(|c| std::cmp::Reverse(c.chars().count()));
    let mut i = 0;
    while i < t.len() {
        let Some(cue) = cues.iter().find(|c| t.at(i, c)) else {
            i += 1;
            continue;
        };
        let mut j = i + cue.chars().count();
        // 申請人（父）：莊凱翔
        if matches!(t.chars.get(j), Some('(' | '（')) {
            if let Some(close) =
                (j + 1..(j + 6).min(t.len())).find(|&k| matches!(t.chars[k], ')' | '）'))
            {
                j = close + 1;
            }
        }
        while matches!(t.chars.get(j), Some(' ' | ':' | '：' | '「')) {
            j += 1;
        }
        // 我姓王，王小明 / 我姓王叫王小明
        if t.at(j, "姓") {
            j += 1;
        }
        // 「我是孫子陳柏翰」: a relation word comes first; the name follows it.
        if j > i && cues.iter().any(|c| c.chars().count() >= 2 && t.at(j, c)) {
            i = j;
            continue;
        }
        if let Some((s, e)) = name_at(t, j) {
            if !out.iter().any(|f| f.start == s) {
                out.push(Found {
                    start: s,
                    end: e,
                    value: Some(t.slice(s, e)),
                    problem: None,
                });
            }
            i = e;
            continue;
        }
        i += 1;
    }
    // A line that starts with a name and an application: 「吳振宇申請育兒津貼」.
    for s0 in (0..t.len()).filter(|&i| i == 0 || t.chars[i - 1] == '\n') {
        if let Some((s, e)) = name_at(t, s0) {
            if (t.at(e, "申請") || t.at(e, "要申請") || t.at(e, "想申請"))
                && !out.iter().any(|f| f.start == s)
            {
                out.push(Found {
                    start: s,
                    end: e,
                    value: Some(t.slice(s, e)),
                    problem: None,
                });
            }
        }
    }
    // 「我姓王，王小明」: the full name repeats the surname.
    for p in t.find_all("姓") {
        if let Some(c) = t.chars.get(p + 1).copied() {
            let mut k = p + 2;
            while matches!(t.chars.get(k), Some('，' | ',' | ' ' | '、')) {
                k += 1;
            }
            for skip in ["叫", "名叫", "全名", "全名是"] {
                if t.at(k, skip) {
                    k += skip.chars().count();
                }
            }
            if t.chars.get(k) == Some(&c) {
                if let Some((s, e)) = name_at(t, k) {
                    if e - s >= 2 && !out.iter().any(|f| f.start == s) {
                        out.push(Found {
                            start: s,
                            end: e,
                            value: Some(t.slice(s, e)),
                            problem: None,
                        });
                    }
                }
            }
        }
    }
    out.sort_by_key(|f| f.start);
    out
}

/// Characters that end an address or a road name when walking back from it.
fn address_stop(c: char) -> bool {
    !(is_cjk(c) || c.is_ascii_digit() || c == '-')
        || "在是住址於到從跟與往近靠為的：:說要想請這那寫".contains(c)
}

/// Street addresses ending in 號 (with floor and 之 parts), walking back to where they start.
pub fn addresses(t: &Text) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    for p in t.find_all("號") {
        if p == 0 || !numeral(t.chars[p - 1]) {
            continue;
        }
        // Must contain a road, street or lane.
        let mut s = p;
        while s > 0 && !address_stop(t.chars[s - 1]) && p - s < 40 {
            s -= 1;
        }
        // Leading city-level words like 我家 are not part of it; a postcode is dropped.
        while s < p && t.chars[s].is_ascii_digit() {
            s += 1;
        }
        let body = t.slice(s, p);
        if !(body.contains('路')
            || body.contains('街')
            || body.contains("大道")
            || body.contains('巷'))
        {
            continue;
        }
        let mut e = p + 1;
        // 之1, 3樓, 3樓之2, 5F
        loop {
            let mut k = e;
            if t.at(k, "之") {
                k += 1;
            }
            let d0 = k;
            while k < t.len() && numeral(t.chars[k]) {
                k += 1;
            }
            if k == d0 {
                break;
            }
            if t.at(k, "樓") || t.at(k, "F") || t.at(k, "f") {
                k += 1;
            } else if !t.at(e, "之") {
                break;
            }
            e = k;
        }
        if out.iter().any(|f| f.start <= s && f.end >= e) {
            continue;
        }
        out.push(Found {
            start: s,
            end: e,
            value: Some(t.slice(s, e)),
            problem: None,
        });
    }
    out
}

/// District names from the gazetteer (with their 區 suffix).
pub fn districts(t: &Text, names: &[String]) -> Vec<Found> {
    let mut out = Vec::new();
    for name in names {
        for p in t.find_all(name) {
            out.push(Found {
                start: p,
                end: p + name.chars().count(),
                value: Some(name.clone()),
                problem: None,
            });
        }
    }
    out.sort_by_key(|f| f.start);
    out
}

/// Characters that cannot be part of a road name.
const NOT_ROAD: &str = "這那條邊的馬走過上下在大小裡內外旁前後口段巷弄號樓區市里鄰縣鄉鎮村是有到從跟和與往近靠為住我你他她們個一兩整該此附燈面盞支座部分多些";

/// Roads and streets with their section (`民生東路四段`; Arabic sections become Chinese). A
/// known road name (gazetteer) wins; otherwise up to four characters before 路/街/大道 that
/// cannot be anything else.
pub fn roads(t: &Text, gazetteer: &[String]) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let end_word = if t.at(i, "大道") {
            2
        } else if matches!(t.chars[i], '路' | '街') {
            1
        } else {
            i += 1;
            continue;
        };
        let end = i + end_word;
        // 路燈 is a streetlight, not the end of a road name.
        if end_word == 1 && t.chars[i] == '路' && t.chars.get(end) == Some(&'燈') {
            i += 1;
            continue;
        }
        // Longest gazetteer name ending here.
        let known = gazetteer
            .iter()
            .filter(|g| t.ends_at(end, g))
            .map(|g| g.chars().count())
            .max();
        let start = match known {
            Some(n) => Some(end - n),
            None => {
                let mut s = i;
                while s > 0 && i - s < 4 {
                    let c = t.chars[s - 1];
                    if !is_cjk(c) || NOT_ROAD.contains(c) {
                        break;
                    }
                    s -= 1;
                }
                // A road name needs at least two characters (中山路, not 路).
                (i - s >= 2).then_some(s)
            }
        };
        let Some(start) = start else {
            i += 1;
            continue;
        };
        let mut name = t.slice(start, end);
        let mut e = end;
        // Section: 四段 / 4段
        let d0 = e;
        while e < t.len()
            && (t.chars[e].is_ascii_digit() || "一二三四五六七八九十".contains(t.chars[e]))
        {
            e += 1;
        }
        if e > d0 && t.at(e, "段") {
            let num = t.slice(d0, e);
            let num = match num.parse::<u32>() {
                Ok(n) => text::chinese_quantity(n),
                Err(_) => num,
            };
            name.push_str(&num);
            name.push('段');
            e += 1;
        } else {
            e = end;
        }
        out.push(Found {
            start,
            end: e,
            value: Some(name),
            problem: None,
        });
        i = e;
    }
    out
}

/// Words before a number that make it a pole number.
const POLE_CUES: &[&str] = &[
    "路燈編號",
    "燈桿編號",
    "燈柱編號",
    "燈號",
    "桿號",
    "編號",
    "燈柱號碼",
    "桿編",
    "號碼",
    "No.",
    "NO.",
    "no.",
    "#",
];

/// Streetlight pole numbers: 5–8 digit codes, or shorter ones right after a pole cue; not
/// base numbers (底座), case numbers, dates, phones or coordinates.
pub fn pole_numbers(t: &Text) -> Vec<Found> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        if !t.chars[i].is_ascii_digit() || (i > 0 && t.chars[i - 1].is_ascii_digit()) {
            i += 1;
            continue;
        }
        let mut e = i;
        while e < t.len() && t.chars[e].is_ascii_digit() {
            e += 1;
        }
        let n = e - i;
        let digits = t.slice(i, e);
        let before = t.slice(i.saturating_sub(8), i);
        // Cue directly before (allowing a colon, spaces and up to two CJK characters such as 華中).
        let mut k = i;
        while k > 0 && matches!(t.chars[k - 1], ' ' | ':' | '：' | '為' | '是') {
            k -= 1;
        }
        let mut prefix_start = k;
        while prefix_start > 0 && k - prefix_start < 2 && is_cjk(t.chars[prefix_start - 1]) {
            prefix_start -= 1;
        }
        let prefix = t.slice(prefix_start, k);
        let mut cue_end = prefix_start;
        while cue_end > 0 && matches!(t.chars[cue_end - 1], ' ' | ':' | '：') {
            cue_end -= 1;
        }
        let function_word = [
            "分別", "為", "是", "有", "約", "號", "至", "到", "及", "和", "與", "或", "丶", "上",
            "下", "前", "後", "方", "面", "旁",
        ]
        .iter()
        .any(|w| prefix.contains(w));
        let cue_direct = POLE_CUES.iter().any(|c| t.ends_at(k, c))
            || (k - prefix_start == 2
                && ["分別", "依序"].contains(&prefix.as_str())
                && POLE_CUES.iter().any(|c| t.ends_at(prefix_start, c)));
        // A lettered pole number (華中328) right after a cue, or right after another one.
        let chained = out
            .last()
            .is_some_and(|f: &Found| f.end == prefix_start && prefix_start < k);
        let cue_after_prefix = prefix_start < k
            && !function_word
            && (POLE_CUES.iter().any(|c| t.ends_at(cue_end, c)) || chained);
        // A list after a cue: 編號114、116、201.
        let listed = out.last().is_some_and(|f: &Found| {
            f.end <= i
                && i - f.end <= 2
                && t.slice(f.end, i)
                    .chars()
                    .all(|c| "、,，及和與 /".contains(c))
        });
        let base = before.contains("底座") && !before.contains("燈");
        let case_no = ["案號", "案件編號", "序號", "陳情編號", "查報"]
            .iter()
            .any(|c| before.contains(c));
        let decimal = (i > 0 && t.chars[i - 1] == '.') || t.at(e, ".");
        let date_like = n == 8 && (digits.starts_with("19") || digits.starts_with("20"));
        let phone_like = digits.starts_with("09") && n >= 9;
        // 12-3 is an address part; 0702863-0702866 is a range of pole numbers.
        let dashed = n < 5
            && ((i > 1 && t.chars[i - 1] == '-' && t.chars[i - 2].is_ascii_digit())
                || (t.at(e, "-") && t.chars.get(e + 1).is_some_and(|c| c.is_ascii_digit())));
        let followed = t.slice(e, e + 2);
        let house =
            followed.starts_with('號') && !followed.starts_with("號路燈") && !cue_direct && n < 5
                || followed.starts_with('巷')
                || followed.starts_with('弄')
                || followed.starts_with('樓')
                || followed.starts_with('公')
                || followed.starts_with('米')
                || followed.starts_with('盞')
                || followed.starts_with('支')
                || followed.starts_with('根')
                || followed.starts_with('W')
                || followed.starts_with('瓦')
                || followed.starts_with('年');
        let accept = !base
            && !case_no
            && !decimal
            && !date_like
            && !phone_like
            && !house
            && !dashed
            && ((5..=8).contains(&n)
                || (n >= 3 && (cue_after_prefix || listed))
                || (n >= 2 && cue_direct))
            && n <= 8;
        if accept {
            let (s, value) = if cue_after_prefix && !cue_direct {
                (
                    prefix_start,
                    format!("{}{}", t.slice(prefix_start, k), digits),
                )
            } else {
                (i, digits)
            };
            out.push(Found {
                start: s,
                end: e,
                value: Some(value),
                problem: None,
            });
        }
        i = e;
    }
    out
}

/// Amounts of money (`3000元`, `1萬5千元`, `新臺幣2,500元`) in NT$.
pub fn amounts(t: &Text) -> Vec<Found> {
    let mut out = Vec::new();
    for p in t.find_all("元") {
        let mut s = p;
        while s > 0
            && (t.chars[s - 1].is_ascii_digit() || matches!(t.chars[s - 1], ',' | '萬' | '千'))
        {
            s -= 1;
        }
        if s == p {
            continue;
        }
        let raw = t.slice(s, p);
        if let Some(v) = parse_amount(&raw) {
            out.push(Found {
                start: s,
                end: p + 1,
                value: Some(v.to_string()),
                problem: None,
            });
        }
    }
    out
}

/// `1萬5千` → 15000, `2,500` → 2500.
pub fn parse_amount(raw: &str) -> Option<u64> {
    let raw: String = raw.chars().filter(|&c| c != ',').collect();
    let mut total = 0u64;
    let mut cur = String::new();
    for c in raw.chars() {
        match c {
            '萬' => {
                total = total.checked_add(cur.parse::<u64>().ok()?.checked_mul(10_000)?)?;
                cur.clear();
            }
            '千' => {
                total = total.checked_add(cur.parse::<u64>().ok()?.checked_mul(1_000)?)?;
                cur.clear();
            }
            c if c.is_ascii_digit() => cur.push(c),
            _ => return None,
        }
    }
    if !cur.is_empty() {
        total = total.checked_add(cur.parse::<u64>().ok()?)?;
    }
    (total > 0 || raw == "0").then_some(total)
}

/// E-mail addresses.
pub fn emails(t: &Text) -> Vec<Found> {
    let mut out = Vec::new();
    for p in t.find_all("@") {
        let ok = |c: char| c.is_ascii_alphanumeric() || "._-+".contains(c);
        let mut s = p;
        while s > 0 && ok(t.chars[s - 1]) {
            s -= 1;
        }
        let mut e = p + 1;
        while e < t.len() && ok(t.chars[e]) {
            e += 1;
        }
        while e > p + 1 && t.chars[e - 1] == '.' {
            e -= 1;
        }
        let domain = t.slice(p + 1, e);
        if s < p && domain.contains('.') {
            out.push(Found {
                start: s,
                end: e,
                value: Some(t.slice(s, e).to_lowercase()),
                problem: None,
            });
        }
    }
    out
}

/// Drops values that the speaker took back: a value followed, within a short stretch, by a
/// correction word and then another value of the same kind.
pub fn apply_corrections(t: &Text, found: Vec<Found>) -> Vec<Found> {
    let mut keep = Vec::with_capacity(found.len());
    for (k, f) in found.iter().enumerate() {
        let corrected = found.get(k + 1).is_some_and(|next| {
            next.start >= f.end
                && next.start - f.end <= 20
                && t.contains_in(f.end, next.start, CORRECTIONS)
        });
        if !corrected {
            keep.push(f.clone());
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(f: Vec<Found>) -> Vec<String> {
        f.into_iter().filter_map(|f| f.value).collect()
    }

    #[test]
    fn ids_are_found_normalised_and_bad_ones_reported() {
        let t = Text::new("我的身分證是 a123456789，我媽的是Ａ１２３４５６７８８");
        let f = ids(&t);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].value.as_deref(), Some("A123456789"));
        assert!(f[1].value.is_none());
        assert!(f[1].problem.as_deref().unwrap().contains("檢查碼"));
    }

    #[test]
    fn phones_in_every_form_and_corrections() {
        let t = Text::new("電話0912-345-678，不對，是0921345678，家裡(02)2720-8889");
        let f = apply_corrections(&t, phones(&t));
        assert_eq!(values(f), ["0921345678", "0227208889"]);
        let t = Text::new("手機零九一二，三四五，六七八");
        assert_eq!(values(phones(&t)), ["0912345678"]);
        let t = Text::new("洞九么兩三四五六拐八");
        assert_eq!(values(phones(&t)), ["0912345678"]);
        // Pole numbers and house numbers are not phones.
        let t = Text::new("編號0505364的路燈，信義路二段86號");
        assert!(phones(&t).is_empty());
    }

    #[test]
    fn dates_roc_western_and_spoken() {
        let t = Text::new("生日民國50年3月2日，孩子1961/3/2出生，五十年三月二號");
        assert_eq!(
            values(dates(&t)),
            ["1961-03-02", "1961-03-02", "1961-03-02"]
        );
        let t = Text::new("生日是民國40年，喔不是，41年5月3日");
        assert_eq!(values(apply_corrections(&t, dates(&t))), ["1952-05-03"]);
    }

    #[test]
    fn names_after_cues_and_relations() {
        let t = Text::new("我叫王大明，我媽李美玉今年70歲");
        assert_eq!(values(names(&t, &["我媽"])), ["王大明", "李美玉"]);
        let t = Text::new("我姓陳，陳小安，我是陳先生");
        assert_eq!(values(names(&t, &[])), ["陳小安"]);
    }

    #[test]
    fn addresses_roads_and_sections() {
        let t = Text::new("我媽住在台北市大安區信義路4段100巷2號3樓之1，謝謝");
        assert_eq!(
            values(addresses(&t)),
            ["台北市大安區信義路4段100巷2號3樓之1"]
        );
        let r = roads(&t, &[]);
        assert_eq!(values(r), ["信義路四段"]);
        let t = Text::new("這條路燈不亮，在民生東路四段56號前");
        assert_eq!(values(roads(&t, &[])), ["民生東路四段"]);
        let t = Text::new("臺北市北投區長安里008鄰光明路129號");
        assert_eq!(values(roads(&t, &["光明路".into()])), ["光明路"]);
    }

    #[test]
    fn pole_numbers_not_houses_or_bases() {
        let t = Text::new("信義路二段86巷 編號0505364與0505365的路燈都不亮，底座編號12345");
        assert_eq!(values(pole_numbers(&t)), ["0505364", "0505365"]);
        let t = Text::new("路燈編號164不亮，電話0912345678");
        assert_eq!(values(pole_numbers(&t)), ["164"]);
        let t = Text::new("燈柱號碼華中328");
        assert_eq!(values(pole_numbers(&t)), ["華中328"]);
    }

    #[test]
    fn amounts_and_emails() {
        let t = Text::new("每月5,000元，一次1萬5千元，信箱 Ab.c@example.com.");
        assert_eq!(values(amounts(&t)), ["5000", "15000"]);
        assert_eq!(values(emails(&t)), ["ab.c@example.com"]);
    }
}
