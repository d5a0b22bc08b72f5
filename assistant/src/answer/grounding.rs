//! Grounding check for generated answers: every factual token in an answer (number, amount,
//! date, phone number, URL, document name) must appear in a passage the answer cites (or in the
//! allowed context, e.g. the resident's own question), and every citation must point at a
//! passage that was given. Any violation makes the caller fall back to an extractive answer;
//! the eval counts answers with violations as `grounding_violations`.
//!
//! Both sides are normalised the same way before comparing: full-width digits and letters become
//! half-width, thousands separators are dropped, 臺 becomes 台, Chinese numerals become Arabic,
//! amounts become NT dollars, dates become `YYYY-MM-DD` (民國 year + 1911) and phone numbers
//! become digits.

use std::collections::HashSet;
use std::ops::Range;

use knowledge::text::{self, cn_digit, cn_multiplier as cn_mult, is_cn_numeral};
use serde::Serialize;

/// A numbered source passage given to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passage<'a> {
    /// The 1-based citation number the answer uses for this passage (`[1]`).
    pub number: usize,
    /// The passage text.
    pub text: &'a str,
}

/// What kind of factual token a [`Fact`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum FactKind {
    /// Arabic digits, or Chinese numerals followed by a unit (歲, 天, 份, …); a clock time
    /// such as `9:00` yields two numbers.
    Number,
    /// A sum of money (`5,000元`, `2萬元`, `NT$300`), normalised to NT dollars.
    Amount,
    /// A full date (`YYYY-MM-DD`) or a month and day (`MM-DD`).
    Date,
    /// A Taiwanese phone number, normalised to digits (`#` before an extension).
    Phone,
    /// A web address, normalised to lower case without scheme and trailing slash.
    Url,
    /// A quoted title (「…」, 《…》) or a document noun such as 身分證 or 診斷證明書.
    DocumentName,
}
use FactKind as K;

/// One factual token found in a text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fact {
    /// What kind of fact this is.
    pub kind: FactKind,
    /// The fact as written (equals `&text[start..end]`).
    pub text: String,
    /// The normalised value that is compared.
    pub normalized: String,
    /// Byte offset of the start of the fact in the scanned text.
    pub start: usize,
    /// Byte offset just past the end of the fact in the scanned text.
    pub end: usize,
}

/// One reason an answer is not grounded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Violation {
    /// A fact that appears in none of the cited passages nor in the allowed context.
    Unsupported(Fact),
    /// A citation number that matches no given passage.
    UnknownCitation(usize),
    /// The answer states facts (not all from the allowed context) but cites nothing.
    NoCitation,
}

/// The outcome of [`check`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct GroundingReport {
    /// Every citation number in the answer, sorted and deduplicated (unknown ones included).
    pub cited: Vec<usize>,
    /// Everything wrong with the answer; empty when it is grounded.
    pub violations: Vec<Violation>,
}

impl GroundingReport {
    /// True when there is no violation, i.e. the answer may be shown as written.
    pub fn is_grounded(&self) -> bool {
        self.violations.is_empty()
    }

    /// The unsupported facts, in answer order.
    pub fn unsupported(&self) -> impl Iterator<Item = &Fact> {
        self.violations.iter().filter_map(|v| match v {
            Violation::Unsupported(f) => Some(f),
            _ => None,
        })
    }
}

/// Stands in for citation-marker characters in a [`Scan`], so markers never form facts.
const MASK: char = '\u{FFFC}';
/// Units that make a Chinese numeral a fact (longest first); Arabic numbers need none.
const UNITS: &str = "個工作天 個工作日 工作天 工作日 個月 小時 分鐘 公斤 公里 公尺 公分 \
    歲 元 天 日 月 年 週 周 人 次 份 張 件 名 戶 位 個 % 成 坪 倍 時 點";
/// Units after which a lone 一 is an ordinary word (一個, 一點), not a claim.
const WEAK_UNITS: &str = "個 位 件 名 時 點 倍";
/// Currency prefixes that make the following number an amount.
const CURRENCY: &str = "新台幣 台幣 NT$ NTD NT $";
/// Document nouns recognised without quotes.
const DOC_NOUNS: &str = "證明書 證明 申請書 切結書 同意書 委託書 診斷書 存摺 戶口名簿 身分證 \
    印章 照片 手冊 謄本";
/// Characters that end the words collected before a document noun.
const DOC_BREAKS: &str = "的和與及或並以請需要帶攜準備附上提出檢具含包括等之在向至到於由為是有用\
    填寫交送繳示將把您你跟同效新最本人其原";

/// Maps one character to its normalised form (full-width ASCII → half-width except the
/// Chinese clause punctuation, dashes unified, 臺 → 台).
fn norm_char(c: char) -> char {
    match c {
        '，' | '；' | '！' | '？' => c,
        '‐' | '‑' | '–' | '﹣' => '-',
        '臺' => '台',
        _ => text::fold_width_char(c),
    }
}

/// A text as normalised characters, each mapped back to its byte offset in the original.
struct Scan<'t> {
    src: &'t str,
    cs: Vec<char>,
    offs: Vec<usize>,
}

impl<'t> Scan<'t> {
    /// The normalised text, citation markers included.
    fn raw(src: &'t str) -> Self {
        let (offs, cs) = src.char_indices().map(|(o, c)| (o, norm_char(c))).unzip();
        Scan { src, cs, offs }
    }
    /// The normalised text with citation markers masked.
    fn new(src: &'t str) -> Self {
        let mut s = Scan::raw(src);
        for (span, _) in markers(&s) {
            let a = s.offs.partition_point(|&o| o < span.start);
            let b = s.offs.partition_point(|&o| o < span.end);
            s.cs[a..b].fill(MASK);
        }
        s
    }
    /// The normalised character at `i` (`'\0'` past the end).
    fn at(&self, i: usize) -> char {
        self.cs.get(i).copied().unwrap_or('\0')
    }
    /// The byte offset of character `i` in the original (its length past the end).
    fn byte(&self, i: usize) -> usize {
        self.offs.get(i).copied().unwrap_or(self.src.len())
    }
    /// Whether `pat` (ASCII case-insensitive) occurs at `i`.
    fn has(&self, i: usize, pat: &str) -> bool {
        pat.chars()
            .enumerate()
            .all(|(k, p)| self.at(i + k).eq_ignore_ascii_case(&p))
    }
    /// The normalised characters `a..b`, clamped to the text.
    fn string(&self, a: usize, b: usize) -> String {
        let n = self.cs.len();
        self.cs[a.min(n)..b.min(n)].iter().collect()
    }
    /// The run of ASCII digits starting at `i` and the index past it.
    fn digits(&self, i: usize) -> (String, usize) {
        let mut j = i;
        while self.at(j).is_ascii_digit() {
            j += 1;
        }
        (self.string(i, j), j)
    }
    /// The first index at or after `i` that is not a space.
    fn skip_spaces(&self, mut i: usize) -> usize {
        while self.at(i) == ' ' {
            i += 1;
        }
        i
    }
    /// A fact over characters `a..b`, paired with `b` (where scanning resumes).
    fn fact(&self, kind: FactKind, a: usize, b: usize, normalized: String) -> (Fact, usize) {
        let (start, end) = (self.byte(a), self.byte(b));
        let text = self.src[start..end].to_string();
        (
            Fact {
                kind,
                text,
                normalized,
                start,
                end,
            },
            b,
        )
    }
}

/// Citation numbers, each with the byte span of its digits.
type Cited = Vec<(usize, Range<usize>)>;
/// A citation marker: its whole byte span and its numbers.
type Marker = (Range<usize>, Cited);

/// Citation markers: `[1]`, `[1, 2]`, `[1,2]`, `[1、2]`, `[1-3]`, `［1］`, `【1】`.
fn markers(s: &Scan) -> Vec<Marker> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.cs.len() {
        match marker_at(s, i) {
            Some((end, nums)) => {
                out.push((s.byte(i)..s.byte(end), nums));
                i = end;
            }
            None => i += 1,
        }
    }
    out
}

/// The citation marker opening at `i`: the index past it and its numbers.
fn marker_at(s: &Scan, i: usize) -> Option<(usize, Cited)> {
    let number = |k: usize| {
        let (d, e) = s.digits(k);
        let v: usize = d.parse().ok().filter(|_| d.len() <= 3)?;
        Some((v, e))
    };
    if !matches!(s.at(i), '[' | '【') {
        return None;
    }
    let (mut nums, mut j) = (Vec::new(), i + 1);
    loop {
        let k = s.skip_spaces(j);
        let (a, mut e) = number(k)?;
        let mut b = a;
        j = s.skip_spaces(e);
        if matches!(s.at(j), '-' | '~' | '～') {
            (b, e) = number(s.skip_spaces(j + 1)).filter(|&(v, _)| v >= a && v - a <= 20)?;
            j = s.skip_spaces(e);
        }
        nums.extend((a..=b).map(|n| (n, s.byte(k)..s.byte(e))));
        match s.at(j) {
            ']' | '】' => return Some((j + 1, nums)),
            ',' | '，' | '、' | ';' | '；' => j += 1,
            _ => return None,
        }
    }
}

/// Every citation number in `answer`, in order, with the byte span of its digits
/// (every number of a range such as `[1-3]` gets the span of the whole range).
pub fn citations(answer: &str) -> Vec<(usize, Range<usize>)> {
    markers(&Scan::raw(answer))
        .into_iter()
        .flat_map(|m| m.1)
        .collect()
}

/// `answer` without its citation markers (and without spaces directly before them).
pub fn strip_citations(answer: &str) -> String {
    let mut out = String::with_capacity(answer.len());
    let mut last = 0;
    for (span, _) in markers(&Scan::raw(answer)) {
        out.push_str(answer[last..span.start].trim_end_matches([' ', '\u{3000}']));
        last = span.end;
    }
    out + &answer[last..]
}

/// A parsed number: Arabic, Chinese or mixed (`1.5萬`, `三千五百`, `2萬5千`).
struct Numeral {
    end: usize,
    value: f64,
    /// Canonical digits of a lone Arabic literal (exact even for long digit runs).
    plain: Option<String>,
    /// Chinese digits were used (or no Arabic at all): a unit must follow.
    needs_unit: bool,
    /// 萬 or 億 was used.
    big: bool,
    /// The numeral is a single 一.
    lone_one: bool,
}

impl Numeral {
    /// The canonical value: exact digits, or the computed value without a needless fraction.
    fn normalized(&self) -> String {
        let v = self.value;
        let int = v.fract() == 0.0 && v < 9e15;
        self.plain.clone().unwrap_or_else(|| {
            if int {
                (v as u64).to_string()
            } else {
                v.to_string()
            }
        })
    }
    /// The value as an integer in `1..=max`.
    fn int(&self, max: u32) -> Option<u32> {
        let v = self.value;
        (v.fract() == 0.0 && v >= 1.0 && v <= max as f64).then_some(v as u32)
    }
}

/// An Arabic literal with thousands separators and decimals: value, canonical form, end.
fn parse_arabic(s: &Scan, i: usize) -> (f64, String, usize) {
    let (mut int, mut k) = s.digits(i);
    let group =
        |k: usize| (1..=3).all(|o| s.at(k + o).is_ascii_digit()) && !s.at(k + 4).is_ascii_digit();
    let grouped = int.len() <= 3;
    while grouped && matches!(s.at(k), ',' | '，') && group(k) {
        int += &s.string(k + 1, k + 4);
        k += 4;
    }
    let mut frac = String::new();
    if s.at(k) == '.' && s.at(k + 1).is_ascii_digit() {
        (frac, k) = s.digits(k + 1);
    }
    let int = Some(int.trim_start_matches('0'))
        .filter(|t| !t.is_empty())
        .unwrap_or("0");
    let frac = frac.trim_end_matches('0');
    let canon = if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    };
    (canon.parse().unwrap_or(0.0), canon, k)
}

/// An Arabic, Chinese or mixed numeral starting at `i`.
fn parse_numeral(s: &Scan, i: usize) -> Option<Numeral> {
    let (mut j, mut total, mut section, mut tokens) = (i, 0.0f64, 0.0f64, 0);
    let mut cur: Option<f64> = None;
    // `after`: the multiplier right before `cur` (兩萬五 = 25000); `single`: cur is one digit;
    // `seq`: cur is a run of Chinese digits (一一四 = 114).
    let (mut last_mult, mut after, mut single, mut seq) = (0u64, 0u64, false, false);
    let (mut has_cn, mut has_arabic, mut big, mut plain) = (false, false, false, None);
    loop {
        let c = s.at(j);
        if c.is_ascii_digit() {
            if cur.is_some() {
                break;
            }
            let (v, canon, e) = parse_arabic(s, j);
            plain = Some(canon);
            (cur, after, single, seq, has_arabic) = (Some(v), last_mult, e == j + 1, false, true);
            j = e;
        } else if let Some(d) = cn_digit(c) {
            match cur {
                Some(v) if seq => (cur, single) = (Some(v * 10.0 + d as f64), false),
                Some(_) => break,
                None if d == 0 && tokens > 0 => last_mult = 0,
                None => (cur, after, single, seq) = (Some(d as f64), last_mult, true, true),
            }
            has_cn = true;
            j += 1;
        } else if let Some(m) = cn_mult(c) {
            if tokens == 0 && m != 10 {
                break;
            }
            if m >= 10_000 {
                let group = section + cur.take().unwrap_or(0.0);
                if group == 0.0 {
                    break;
                }
                total = if m == 10_000 {
                    total + group * 1e4
                } else {
                    (total + group) * 1e8
                };
                (section, big) = (0.0, true);
            } else {
                section += cur.take().unwrap_or(1.0) * m as f64;
            }
            (last_mult, seq) = (m, false);
            j += 1;
        } else {
            break;
        }
        tokens += 1;
    }
    let tail = match cur {
        Some(d) if single && after >= 100 => d * (after / 10) as f64,
        Some(d) => d,
        None => 0.0,
    };
    (tokens > 0).then(|| Numeral {
        end: j,
        value: total + section + tail,
        plain: plain.filter(|_| tokens == 1),
        needs_unit: has_cn || !has_arabic,
        big,
        lone_one: tokens == 1 && s.at(i) == '一',
    })
}

/// `M月D日` (or `號`) at `k`: month, day and the index past it.
fn month_day(s: &Scan, k: usize) -> Option<(u32, u32, usize)> {
    let m = parse_numeral(s, k)?;
    let month = m.int(12).filter(|_| s.at(m.end) == '月')?;
    let d = parse_numeral(s, m.end + 1)?;
    let day = d.int(31).filter(|_| matches!(s.at(d.end), '日' | '號'))?;
    Some((month, day, d.end + 1))
}

/// Dates: `[民國]114年3月1日`, `2025年3月1日`, `114/3/1`, `114.3.1`, `2025-03-01`, `3月1日`.
/// `roc` is the start of a 民國 prefix; `i` is where the year starts.
fn date(s: &Scan, i: usize, roc: Option<usize>) -> Option<(Fact, usize)> {
    let start = roc.unwrap_or(i);
    // A year with `digits` Arabic digits (None: Chinese numerals) as a Western year.
    let year = |v: u32, digits: Option<usize>| {
        let roc_ok = roc.is_some() || matches!(digits, None | Some(2..=3));
        let west_ok = roc.is_none() && matches!(digits, None | Some(4));
        match v {
            _ if s.at(i) == '0' => None,
            1..=200 if roc_ok => Some(v + 1911),
            1900..=2100 if west_ok => Some(v),
            _ => None,
        }
    };
    let iso = |y: u32, m: u32, d: u32, end: usize| {
        let ok = (1..=12).contains(&m) && (1..=31).contains(&d);
        ok.then(|| s.fact(K::Date, start, end, format!("{y:04}-{m:02}-{d:02}")))
    };
    let (y, e) = s.digits(i);
    let sep = s.at(e);
    if matches!(sep, '/' | '.' | '-') {
        let (m, e2) = s.digits(e + 1);
        let (d, e3) = s.digits(e2 + 1);
        let short = |t: &str| (1..=2).contains(&t.len());
        let more = s.at(e3) == sep && s.at(e3 + 1).is_ascii_digit();
        if short(&m) && short(&d) && s.at(e2) == sep && !more {
            let num = |t: &str| t.parse::<u32>().unwrap_or(0);
            if let Some(f) = year(num(&y), Some(y.len())).and_then(|y| iso(y, num(&m), num(&d), e3))
            {
                return Some(f);
            }
        }
    }
    let y = parse_numeral(s, i)?;
    if s.at(y.end) == '年' {
        let west = year(y.int(2200)?, y.plain.as_ref().map(|_| s.digits(i).0.len()))?;
        let (m, d, end) = month_day(s, y.end + 1)?;
        return iso(west, m, d, end);
    }
    let (m, d, end) = month_day(s, i).filter(|_| roc.is_none())?;
    Some(s.fact(K::Date, start, end, format!("{m:02}-{d:02}")))
}

/// Taiwanese phone numbers with an optional extension (`#123`, `分機123`, `轉123`).
fn phone(s: &Scan, i: usize) -> Option<(Fact, usize)> {
    let (mut digits, mut j, mut groups) = (String::new(), i, Vec::new());
    let paren = s.at(i) == '(';
    if paren {
        let (area, e) = s.digits(i + 1);
        if !(2..=4).contains(&area.len()) || !area.starts_with('0') || s.at(e) != ')' {
            return None;
        }
        digits = area;
        j = e + 1 + usize::from(matches!(s.at(e + 1), ' ' | '-'));
    }
    loop {
        let (g, e) = s.digits(j);
        if g.is_empty() {
            return None;
        }
        groups.push(g.len());
        digits += &g;
        j = e;
        if s.at(j) != '-' || !s.at(j + 1).is_ascii_digit() {
            break;
        }
        j += 1;
    }
    let n = digits.len();
    // A local number without area code (2720-8889), but not a year range (2020-2025).
    let local = groups.len() == 2 && (3..=4).contains(&groups[0]) && groups[1] == 4;
    let local = local && !digits.starts_with('1') && !digits.starts_with("20");
    let zero = digits.starts_with('0');
    if !(paren && (8..=10).contains(&n) || !paren && (zero && (9..=10).contains(&n) || local)) {
        return None;
    }
    let k = if s.at(j) == ' ' { j + 1 } else { j };
    if let Some(p) = ["#", "分機", "轉", "ext."]
        .into_iter()
        .find(|p| s.has(k, p))
    {
        let (ext, e) = s.digits(s.skip_spaces(k + p.chars().count()));
        if (1..=6).contains(&ext.len()) {
            (digits, j) = (format!("{digits}#{ext}"), e);
        }
    }
    Some(s.fact(K::Phone, i, j, digits))
}

/// Numbers and amounts; `start` < `i` when a currency prefix (新台幣, NT$) precedes.
fn number(s: &Scan, start: usize, i: usize) -> Option<(Fact, usize)> {
    let num = parse_numeral(s, i)?;
    let prefixed = start < i;
    let gap = usize::from(!num.needs_unit && s.at(num.end) == ' ');
    let unit = UNITS
        .split(' ')
        .find(|u| !u.is_empty() && s.has(num.end + gap, u));
    if num.needs_unit && !prefixed {
        let weak = num.lone_one && WEAK_UNITS.split(' ').any(|w| Some(w) == unit);
        unit.filter(|_| !weak)?;
    }
    let end = unit.map_or(num.end, |u| num.end + gap + u.chars().count());
    let amount = prefixed || unit == Some("元") || (num.big && unit.is_none());
    Some(s.fact(
        if amount { K::Amount } else { K::Number },
        start,
        end,
        num.normalized(),
    ))
}

/// Web addresses starting with `http://`, `https://` or `www.`.
fn url(s: &Scan, i: usize) -> Option<(Fact, usize)> {
    let starts = ["http://", "https://", "www."].iter().any(|p| s.has(i, p));
    if !starts || (i > 0 && s.at(i - 1).is_ascii_alphanumeric()) {
        return None;
    }
    let len = s.cs[i..]
        .iter()
        .take_while(|c| c.is_ascii_graphic() && !"()[]<>\"'".contains(**c));
    let mut j = i + len.count();
    while j > i && ".,;:!?".contains(s.cs[j - 1]) {
        j -= 1;
    }
    let raw = s.string(i, j).to_ascii_lowercase();
    let bare = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"));
    let norm = bare.unwrap_or(&raw).trim_end_matches('/').to_string();
    (norm.len() > 4).then(|| s.fact(K::Url, i, j, norm))
}

/// A title in 「…」 or 《…》 of at most 20 characters.
fn quoted(s: &Scan, i: usize) -> Option<(Fact, usize)> {
    let close = if s.at(i) == '「' { '」' } else { '》' };
    let j = (i + 1..(i + 22).min(s.cs.len())).find(|&k| s.cs[k] == close || s.cs[k] == '\n')?;
    let content: String = s
        .string(i + 1, j)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let ok = s.cs[j] == close && !content.is_empty();
    ok.then(|| s.fact(K::DocumentName, i, j + 1, content))
}

/// A list enumerator such as `1.` or `2、` at the start of a line, or `(3)`: not a fact.
fn enumerator(s: &Scan, i: usize) -> Option<usize> {
    let (d, e) = s.digits(i);
    let line_start = s.cs[..i]
        .iter()
        .rev()
        .take_while(|c| **c != '\n')
        .all(|c| c.is_whitespace());
    let after = s.at(e);
    let listed = line_start
        && (matches!(after, '、' | ')') || after == '.' && !s.at(e + 1).is_ascii_digit());
    (d.len() <= 2 && (listed || i > 0 && s.at(i - 1) == '(' && after == ')')).then_some(e)
}

/// The fact starting at `i`, if any.
fn fact_at(s: &Scan, i: usize) -> Option<(Fact, usize)> {
    let (c, prev) = (s.at(i), if i > 0 { s.at(i - 1) } else { '\0' });
    if let Some(f) = url(s, i) {
        return Some(f);
    }
    if c == '「' || c == '《' {
        return quoted(s, i);
    }
    if let Some(p) = CURRENCY
        .split(' ')
        .find(|p| s.has(i, p) && !prev.is_ascii_alphanumeric())
    {
        if let Some(f) = number(s, i, s.skip_spaces(i + p.chars().count())) {
            return Some(f);
        }
    }
    if c == '(' {
        return phone(s, i);
    }
    if s.has(i, "民國") {
        return date(s, i + 2, Some(i));
    }
    if c.is_ascii_digit() {
        return date(s, i, None)
            .or_else(|| phone(s, i))
            .or_else(|| number(s, i, i));
    }
    if is_cn_numeral(c) && prev != '第' {
        return date(s, i, None).or_else(|| number(s, i, i));
    }
    None
}

/// Unquoted document nouns with up to 6 preceding CJK characters (stopping at break words).
fn document_nouns(s: &Scan, covered: &mut [bool]) -> Vec<Fact> {
    let nouns = || DOC_NOUNS.split(' ').filter(|w| !w.is_empty());
    let occ: Vec<(usize, usize)> = (0..s.cs.len())
        .filter_map(|p| {
            nouns()
                .filter(|w| s.has(p, w))
                .map(|w| (p, p + w.chars().count()))
                .max()
        })
        .collect();
    let mut out = Vec::new();
    for &(a, b) in &occ {
        // A noun continued by an overlapping one (身分證明) yields to the later noun.
        if occ.iter().any(|&(c, d)| c > a && c < b && d > b) || covered[a..b].contains(&true) {
            continue;
        }
        let mut st = a;
        while st > 0 && a - st < 6 && !covered[st - 1] {
            let c = s.cs[st - 1];
            if !('\u{4E00}'..='\u{9FFF}').contains(&c) || DOC_BREAKS.contains(c) {
                break;
            }
            st -= 1;
        }
        covered[st..b].fill(true);
        out.push(s.fact(K::DocumentName, st, b, s.string(st, b)).0);
    }
    out
}

/// Every fact in `s`, in text order.
fn scan_facts(s: &Scan) -> Vec<Fact> {
    let (mut facts, mut covered, mut i) = (Vec::new(), vec![false; s.cs.len()], 0);
    while i < s.cs.len() {
        if let Some(e) = s.at(i).is_ascii_digit().then(|| enumerator(s, i)).flatten() {
            i = e;
        } else if let Some((f, j)) = fact_at(s, i) {
            covered[i..j].fill(true);
            facts.push(f);
            i = j;
        } else if is_cn_numeral(s.at(i)) {
            while is_cn_numeral(s.at(i)) {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    facts.extend(document_nouns(s, &mut covered));
    facts.sort_by_key(|f| f.start);
    facts
}

/// Every fact in `text` (citation markers excluded), in text order, with byte spans into `text`.
pub fn extract_facts(text: &str) -> Vec<Fact> {
    scan_facts(&Scan::new(text))
}

/// The normalised facts and text that an answer may draw on.
#[derive(Default)]
struct Support {
    values: HashSet<String>,
    dates: Vec<String>,
    phones: Vec<String>,
    urls: Vec<String>,
    text: String,
    /// `text` without whitespace: a quoted title is compared without it (「一般 事務所」).
    bare: String,
}

impl Support {
    /// Adds the facts and normalised text of `text`.
    fn add(&mut self, text: &str) {
        let scan = Scan::new(text);
        self.text.extend(scan.cs.iter().chain(['\n'].iter()));
        self.bare.extend(
            scan.cs
                .iter()
                .filter(|c| !c.is_whitespace())
                .chain(['\n'].iter()),
        );
        for f in scan_facts(&scan) {
            let n = f.normalized;
            match f.kind {
                K::Number | K::Amount => {
                    // A year in one calendar also supports the same year in the other.
                    match n.parse::<u32>().ok().filter(|_| f.text.ends_with('年')) {
                        Some(y @ 1..=200) => self.values.insert((y + 1911).to_string()),
                        Some(y @ 1912..=2111) => self.values.insert((y - 1911).to_string()),
                        _ => false,
                    };
                    if f.text.chars().all(|c| c.is_ascii_digit() || c == '-') {
                        self.phones.push(f.text.replace('-', ""));
                    }
                    self.values.insert(n);
                }
                K::Date => {
                    // Year (both calendars), month and day also support plain numbers.
                    let parts: Vec<u32> = n.split('-').filter_map(|p| p.parse().ok()).collect();
                    if let Some(roc) = parts
                        .first()
                        .filter(|_| parts.len() == 3 && parts[0] > 1911)
                    {
                        self.values.insert((roc - 1911).to_string());
                    }
                    self.values.extend(parts.iter().map(u32::to_string));
                    self.dates.push(n);
                }
                K::Phone => {
                    if let Some((_, ext)) = n.split_once('#') {
                        self.values.insert(ext.to_string());
                    }
                    self.phones.push(n);
                }
                K::Url => self.urls.push(n),
                K::DocumentName => {}
            }
        }
    }

    /// Whether an answer fact is backed by what was added.
    fn supports(&self, f: &Fact) -> bool {
        let n = f.normalized.as_str();
        let base = |p: &'_ str| p.split('#').next().unwrap_or_default().to_string();
        match f.kind {
            K::Number | K::Amount => self.values.contains(n),
            // A month-day is supported by a full date with the same month and day.
            K::Date => self
                .dates
                .iter()
                .any(|d| d == n || n.len() == 5 && d.ends_with(n)),
            // Without an extension, an extension or area code left out is fine.
            K::Phone => self.phones.iter().any(|p| {
                let (pb, b) = (base(p), base(n));
                p == n || !n.contains('#') && (pb == b || b.len() >= 7 && pb.ends_with(&b))
            }),
            K::Url => self.urls.iter().any(|u| {
                u == n
                    || u.strip_prefix(n)
                        .is_some_and(|r| r.starts_with(['/', '?', '#']))
            }),
            K::DocumentName if f.text.starts_with(['「', '《']) => self.bare.contains(n),
            K::DocumentName => {
                // The run as written, or its noun with the two characters before it.
                let nouns = DOC_NOUNS.split(' ').filter(|w| n.ends_with(*w));
                let keep = nouns.map(|w| w.chars().count()).max().unwrap_or(0) + 2;
                let skip = n.chars().count().saturating_sub(keep);
                let tail: String = n.chars().skip(skip).collect();
                self.text.contains(n) || self.text.contains(&tail)
            }
        }
    }
}

/// Checks `answer` against the passages it cites plus `allowed_context` (e.g. the resident's
/// question). Reports unknown citation numbers first, then `NoCitation` (when the answer cites
/// nothing and some fact is not covered by `allowed_context`), then every unsupported fact in
/// answer order; facts are compared by normalised value (a Number may match an Amount or a
/// date's year, month or day; a month-day matches a full date with that month and day).
pub fn check(answer: &str, passages: &[Passage<'_>], allowed_context: &[&str]) -> GroundingReport {
    let found = markers(&Scan::raw(answer));
    let mut cited: Vec<usize> = found.iter().flat_map(|m| m.1.iter().map(|c| c.0)).collect();
    cited.sort_unstable();
    cited.dedup();
    let known = |c: &usize| passages.iter().any(|p| p.number == *c);
    let unknown = cited.iter().filter(|c| !known(c));
    let mut violations: Vec<Violation> = unknown.map(|&c| Violation::UnknownCitation(c)).collect();
    let mut support = Support::default();
    for p in passages.iter().filter(|p| cited.contains(&p.number)) {
        support.add(p.text);
    }
    allowed_context.iter().for_each(|c| support.add(c));
    let facts = extract_facts(answer);
    let unsupported: Vec<Fact> = facts.into_iter().filter(|f| !support.supports(f)).collect();
    if found.is_empty() && !unsupported.is_empty() {
        violations.push(Violation::NoCitation);
    }
    violations.extend(unsupported.into_iter().map(Violation::Unsupported));
    GroundingReport { cited, violations }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P1: &str = "中低收入老人生活津貼：年滿65歲，每月補助新臺幣5,000元。應備文件：身分證、\
        印章、「申請書」。洽詢電話：(02)2720-8889分機1234，網址 https://www.gov.taipei/News.aspx?n=1 。\
        申請期間自民國114年3月1日起。";
    const P2: &str = "市民熱線1999，24小時服務。急難救助金最高3萬元。";
    const PS: [Passage<'static>; 2] = [
        Passage {
            number: 1,
            text: P1,
        },
        Passage {
            number: 2,
            text: P2,
        },
    ];

    fn show<'a>(facts: impl Iterator<Item = &'a Fact>) -> String {
        let shown: Vec<String> = facts
            .map(|f| format!("{:?} {}", f.kind, f.normalized))
            .collect();
        shown.join(", ")
    }
    /// The facts of `text` as `Kind value, …`.
    fn facts(text: &str) -> String {
        show(extract_facts(text).iter())
    }
    /// The unsupported facts of `answer` against `passages` as `Kind value, …`.
    fn bad_in(answer: &str, passages: &[Passage<'_>]) -> String {
        show(check(answer, passages, &[]).unsupported())
    }
    fn bad(answer: &str) -> String {
        bad_in(answer, &PS)
    }
    fn ok(answer: &str) -> bool {
        check(answer, &PS, &[]).is_grounded()
    }
    /// Asserts that every space-separated answer in `answers` is grounded.
    fn all_ok(answers: &str) {
        answers
            .split_whitespace()
            .for_each(|a| assert!(ok(a), "{a}: {}", bad(a)));
    }

    #[test]
    fn grounded_answer_passes() {
        let a = "年滿65歲可申請，每月5000元[1]。請攜帶身分證、印章與「申請書」，\
            電話02-2720-8889[1]，亦可撥打1999[2]。";
        let r = check(a, &PS, &[]);
        assert!(r.is_grounded(), "{r:?}");
        assert_eq!(r.cited, vec![1, 2]);
    }

    #[test]
    fn invented_amount_fails() {
        let r = check("每月補助6000元[1]。", &PS, &[]);
        let f = extract_facts("每月補助6000元[1]。").remove(0);
        assert_eq!(
            (f.kind, f.text.as_str(), f.normalized.as_str()),
            (K::Amount, "6000元", "6000")
        );
        assert_eq!(r.violations, vec![Violation::Unsupported(f)]);
    }

    #[test]
    fn amount_spellings_match() {
        all_ok("5,000元[1] 5000元[1] 五千元[1] NT$5000[1] 新台幣５，０００元[1] 最高30,000元[2]");
        assert!(ok("5000 元[1]") && ok("最高三萬元[2]") && !ok("最高3萬元[1]"));
        let want = "Amount 20000, Amount 15000, Amount 3000, Amount 1500, Amount 28000";
        assert_eq!(
            facts("2萬元、1.5萬、3,000元、1500.0元、新臺幣2萬8,000元"),
            want
        );
    }

    #[test]
    fn chinese_numerals_convert() {
        let text = "十五天、六十五歲、一百二十人、兩萬元、三千五百元、一百零五份、兩萬五元";
        let want = "Number 15, Number 65, Number 120, Amount 20000, Amount 3500, Number 105";
        assert_eq!(facts(text), format!("{want}, Amount 25000"));
    }

    #[test]
    fn ages_match_across_numeral_systems() {
        assert!(ok("年滿六十五歲者[1]"));
        let p = [Passage {
            number: 1,
            text: "年滿六十五歲",
        }];
        assert_eq!(
            (bad_in("65歲以上[1]", &p), bad_in("70歲以上[1]", &p)),
            ("".into(), "Number 70".into())
        );
    }

    #[test]
    fn invented_phone_fails() {
        assert_eq!(bad("請電洽02-2720-9999[1]"), "Phone 0227209999");
        assert_eq!(bad("請電洽0912-345-678[1]"), "Phone 0912345678");
    }

    #[test]
    fn phone_separators_and_extensions() {
        all_ok("(02)2720-8889[1] 02-2720-8889[1] 0227208889[1] （０２）２７２０－８８８９[1]");
        all_ok("02-2720-8889#1234[1] 2720-8889[1] 分機1234[1] (02)2720-8889轉1234[1]");
        assert_eq!(bad("02-2720-8889#5678[1]"), "Phone 0227208889#5678");
        assert_eq!(
            facts("0800-080-123、0912345678"),
            "Phone 0800080123, Phone 0912345678"
        );
    }

    #[test]
    fn unknown_citation_reported() {
        let r = check("每月5000元[1][3]", &PS, &[]);
        assert_eq!(
            (r.cited, r.violations),
            (vec![1, 3], vec![Violation::UnknownCitation(3)])
        );
        let r = check("每月5000元[3]", &PS, &[]);
        assert_eq!(r.violations[0], Violation::UnknownCitation(3));
        assert_eq!(r.unsupported().count(), 1);
    }

    #[test]
    fn facts_without_citation() {
        let r = check("每月補助5000元。", &PS, &[]);
        assert_eq!(r.violations[0], Violation::NoCitation);
        assert_eq!(show(r.unsupported()), "Amount 5000");
        assert!(ok("您好，感謝您的來電，祝您順心。"));
    }

    #[test]
    fn uncited_passage_does_not_count() {
        assert_eq!(bad("急難救助金最高3萬元[1]"), "Amount 30000");
        assert!(ok("急難救助金最高3萬元[2]"));
    }

    #[test]
    fn allowed_context_supports_facts() {
        let q = ["我媽70歲，可以申請嗎？"];
        assert!(check("您母親70歲，已年滿65歲[1]。", &PS, &q).is_grounded());
        assert_eq!(bad("您母親70歲，已年滿65歲[1]。"), "Number 70");
        assert!(check("您母親七十歲。", &PS, &q).is_grounded());
    }

    #[test]
    fn roc_and_western_dates_match() {
        assert_eq!(
            facts("民國114年3月1日、二〇二五年三月一日"),
            "Date 2025-03-01, Date 2025-03-01"
        );
        all_ok("2025-03-01起[1] 114年3月1日起[1] 114/3/1起[1] 114.3.1起[1] 2025年3月1日[1]");
        all_ok("2025/3/1起[1] 3月1日起[1] 三月一日起[1] 3月起[1] 2025年起[1] 民國一百一十四年三月一日[1]");
        assert_eq!(bad("自114年3月2日起[1]"), "Date 2025-03-02");
        assert_eq!(bad("自9月9日起[1]"), "Date 09-09");
    }

    #[test]
    fn urls_checked() {
        all_ok("詳見https://www.gov.taipei/News.aspx?n=1。[1] 詳見www.gov.taipei[1] HTTP://WWW.GOV.TAIPEI/[1]");
        let r = check("詳見https://www.example.com/apply）[1]", &PS, &[]);
        let f = r.unsupported().next().unwrap();
        assert_eq!(
            (f.kind, f.text.as_str()),
            (K::Url, "https://www.example.com/apply")
        );
        assert_eq!(
            bad("詳見www.gov.taipei.evil.com[1]"),
            "Url www.gov.taipei.evil.com"
        );
    }

    #[test]
    fn quoted_document_names() {
        assert!(ok("請填寫「申請書」[1]") && ok("請洽《中低收入老人生活津貼》[1]"));
        assert_eq!(bad("請附「戶籍謄本」[1]"), "DocumentName 戶籍謄本");
        // A title the guide writes with a space inside is the same title.
        let p = [Passage {
            number: 1,
            text: "主要用途為「辦公室」、「一般 事務所」或「店舖」。",
        }];
        assert_eq!(
            bad_in("用途為「一般 事務所」[1]或「一般事務所」[1]", &p),
            ""
        );
        assert_eq!(
            bad_in("用途為「一般 住宅」[1]", &p),
            "DocumentName 一般住宅"
        );
    }

    #[test]
    fn unquoted_document_nouns() {
        let p = [Passage {
            number: 1,
            text: "應備文件：戶口名簿、身分證及醫院開立之診斷證明書。",
        }];
        let bad = |a: &str| bad_in(a, &p);
        assert_eq!(bad("請準備戶口名簿和身分證，以及診斷證明書[1]。"), "");
        assert_eq!(
            bad("需由醫院開立的診斷證明書[1]，醫師開立診斷證明書[1]"),
            ""
        );
        assert_eq!(bad("請準備戶籍謄本正本[1]"), "DocumentName 戶籍謄本");
        assert_eq!(bad("另需低收入戶證明[1]"), "DocumentName 低收入戶證明");
    }

    #[test]
    fn citation_markers_are_not_facts() {
        let a = "請洽詢[1][2]，或參考［1］、【2】與[1, 2]、[1,2]、[1、2]、[1-2]。";
        assert_eq!(facts(a), "");
        let nums: Vec<usize> = citations(a).into_iter().map(|c| c.0).collect();
        assert_eq!(nums, [1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2]);
        assert!(ok(a));
    }

    #[test]
    fn citation_spans_and_stripping() {
        let a = "補助5000元 [1]，詳見【２】。見[1、13]";
        let got: Vec<(usize, &str)> = citations(a).into_iter().map(|(n, r)| (n, &a[r])).collect();
        assert_eq!(got, [(1, "1"), (2, "２"), (1, "1"), (13, "13")]);
        assert_eq!(strip_citations(a), "補助5000元，詳見。見");
        assert_eq!(strip_citations("[註]不是引用[a]"), "[註]不是引用[a]");
    }

    #[test]
    fn ordinary_words_are_not_facts() {
        let text = "一般而言一定可以一起辦理，統一窗口；萬一不行也十分方便，第一次、第十五次申請，\
            一些人一個一個來，一點也不難，千萬別擔心，百分之百。";
        assert_eq!(facts(text), "");
        assert_eq!(facts("影本一份"), "Number 1");
    }

    #[test]
    fn list_enumerators_are_not_facts() {
        assert_eq!(facts("辦理方式：\n1. 臨櫃申請\n2、線上申請 (3) 郵寄"), "");
        assert_eq!(facts("1.5萬"), "Amount 15000");
    }

    #[test]
    fn hotline_1999() {
        assert_eq!(facts("請撥1999"), "Number 1999");
        assert!(ok("可撥打1999市民熱線[2]") && !ok("可撥打1999市民熱線[1]"));
    }

    #[test]
    fn fact_spans_slice_the_original() {
        let a = "自民國114年3月1日起，每月新臺幣５，０００元、六十五歲，請電(02)2720-8889，\
            見www.gov.taipei。請帶身分證。";
        let facts = extract_facts(a);
        let texts: Vec<&str> = facts.iter().map(|f| &a[f.start..f.end]).collect();
        let want =
            "民國114年3月1日 新臺幣５，０００元 六十五歲 (02)2720-8889 www.gov.taipei 身分證";
        assert_eq!(texts.join(" "), want);
        assert!(facts.iter().all(|f| a[f.start..f.end] == f.text));
        assert_eq!(facts[1].normalized, "5000");
    }

    #[test]
    fn width_and_tai_normalised() {
        let p = [Passage {
            number: 1,
            text: "臺北市政府　電話：１９９９",
        }];
        assert_eq!(
            bad_in("台北市政府電話1999[1]，請洽「台北市政府」[1]", &p),
            ""
        );
    }

    #[test]
    fn report_serializes() {
        let json = serde_json::to_string(&check("每月6000元", &PS, &[])).unwrap();
        assert!(
            json.contains("NoCitation") && json.contains("\"Amount\""),
            "{json}"
        );
    }
}
