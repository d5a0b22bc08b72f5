//! Facts for benefit suggestions from how residents describe themselves: ages said many ways
//! (「今年67歲」「快70了」「民國45年生」「80年次」), who lives together (「一個人住」
//! 「三個小孩，老大國中」), residence, household status, disability level, work, renting,
//! recent events (a breadwinner's death, an accident, a fire), caregiving and needs. Each fact
//! keeps the words it came from; when a person corrects themself (「58，喔不對，是68歲」)
//! the last value said wins. Facts not said stay unknown, and are asked, never guessed.

use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;

use super::{Fact, Facts};

/// A fact and the words it was read from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Said {
    pub fact: String,
    pub value: Fact,
    /// The words (normalised text) it came from.
    pub evidence: String,
}

/// The facts read from a self-description, in the order they were said.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Heard {
    pub said: Vec<Said>,
    /// Facts the person asked about rather than stated (「不知道我們算不算中低收入戶」): unknown,
    /// whatever another reader made of the words.
    pub asked: Vec<String>,
}

impl Heard {
    fn set(&mut self, fact: &str, value: Fact, evidence: &str) {
        // A later statement of the same fact corrects an earlier one.
        self.said.retain(|s| s.fact != fact);
        self.said.push(Said {
            fact: fact.to_string(),
            value,
            evidence: evidence.to_string(),
        });
    }

    fn has(&self, fact: &str) -> bool {
        self.said.iter().any(|s| s.fact == fact)
    }

    fn get(&self, fact: &str) -> Option<&Fact> {
        self.said.iter().find(|s| s.fact == fact).map(|s| &s.value)
    }

    /// As engine facts.
    pub fn facts(&self) -> Facts {
        let mut f = Facts::default();
        for s in &self.said {
            f.set(&s.fact, s.value.clone());
        }
        f
    }
}

fn re(p: &str) -> Regex {
    Regex::new(p).expect("speech patterns compile")
}

macro_rules! pattern {
    ($name:ident, $p:expr) => {
        fn $name() -> &'static Regex {
            static R: OnceLock<Regex> = OnceLock::new();
            R.get_or_init(|| re($p))
        }
    };
}

const NUM: &str = r"([0-9]{1,3}|[零一二兩三四五六七八九十百]{1,4})";

pattern!(
    self_age,
    &format!(r"我(?:今年|現在|目前|已經)?(?:快|將近|剛滿|滿|才|都)?{NUM}(?:歲|多歲)")
);
pattern!(
    together_age,
    &format!(
        r"(?:我們夫妻|我們兩個|我們|夫妻|兩個人|兩個都|我跟[^，。,]{{1,4}}?)(?:都|也)?(?:是)?(?:今年|現在|已經)?{NUM}(?:多|幾)?(?:歲|出頭)"
    )
);
pattern!(
    clause_age,
    &format!(r"^(?:今年|現在|目前)?(?:已經)?(?:剛滿|滿)?{NUM}(?:多)?歲")
);
pattern!(
    self_nearly,
    &format!(r"我?(?:今年|現在)?快要?{NUM}(?:歲|了)")
);
pattern!(
    roc_birth,
    r"(?:民國|民国)?([0-9]{2,3}|[一二三四五六七八九十]{2,4})年(?:次|生|出生)"
);
pattern!(
    relative_age,
    &format!(
        r"(爸媽|父母|爸爸|爸|父親|媽媽|媽|母親|阿公|阿嬤|爺爺|奶奶|外公|外婆|婆婆|公公|岳父|岳母|先生|老公|太太|老婆|丈夫|妻子|老伴|他|她)(?:是)?(?:今年|現在|已經|都|也|剛好|快|將近|剛滿|滿){{0,3}}{NUM}(?:多|幾)?歲"
    )
);
pattern!(
    child_age,
    &format!(
        r"(兒子|女兒|小孩|孩子|寶寶|老大|老二|老三|老么|老麼|小兒子|小女兒|大兒子|大女兒|孫子|孫女|嬰兒)(?:今年|現在|才|剛|快|滿|已經){{0,2}}{NUM}(歲半|歲|個月大|個月|個多月|週|周)"
    )
);
pattern!(
    expecting,
    r"(懷孕|懷了|有孕|預產期|(?:下個|下|這個|[一二兩三四五六七八九1-9])個?月(?:就要|要|會)?生|快生了|即將生產|懷胎)"
);
pattern!(
    newborn,
    r"(剛出生|剛生|剛生完|剛生產|新生兒|坐月子|生完小孩)"
);
pattern!(
    born_last_month,
    r"(上個月|上個禮拜|上禮拜|上週|前幾天|這個月|最近)(?:剛)?(?:生了|生下|出生|生完|剛出生)"
);
pattern!(
    born_in_month,
    r"(?:今年)([0-9]{1,2}|[一二三四五六七八九十]{1,2})月(?:出生|生的|生)"
);
pattern!(
    pregnant_months,
    r"懷孕([0-9]|[一二兩三四五六七八九])個(?:多)?月"
);
/// Words for a child, whose ages are children's ages in the clause that names them and the
/// clause right after (「兩個小孩，6歲和2歲」).
const CHILD_WORDS: &[&str] = &[
    "小孩", "孩子", "兒子", "女兒", "寶寶", "老大", "老二", "老三", "老麼", "孫子", "孫女", "嬰兒",
];
pattern!(any_age, &format!(r"{NUM}(歲半|歲|個月大|個月|個多月)"));
pattern!(
    child_count,
    r"([一二兩三四五六1-6])個(?:小孩|孩子|子女|兒女)"
);
pattern!(birth_order, r"第([一二三四五六1-6])(?:胎|個小孩|個孩子)");
pattern!(
    student,
    r"(國小|小學|國中|初中|高中|高職|五專|高級中等|大學|大專|科大|研究所|碩士班|博士班|大[一二三四]|國[一二三]|高[一二三]|小[一二三四五六])"
);
pattern!(
    disability,
    r"(極重度|重度|中度|輕度)(?:的)?[^，。,；]{0,6}?(?:障|殘|身心障礙)|(?:身障|身心障礙|殘障)(?:證明|手冊)?(?:上)?(?:是|為|寫)?(極重度|重度|中度|輕度)"
);
pattern!(certificate, r"(身障證明|身心障礙證明|身障手冊|殘障手冊)");
pattern!(
    care_need,
    r"(中風|臥床|失智|失能|癱瘓|坐輪椅|行動不便|需要人照顧|要人照顧|洗澡.{0,6}要人|包尿布|插管|鼻胃管|漸凍|走路[^，。,]{0,4}不穩|忘東忘西|腦性麻痺|不能動|發展遲緩|截肢)"
);
pattern!(
    caring,
    r"照顧(?:我|我的)?(爸|媽|父親|母親|公公|婆婆|先生|老公|太太|老婆|阿公|阿嬤|爺爺|奶奶|家人|兒子|女兒|他|她|中風|失智|臥床)|(?:我們|我)[^，。,]{0,8}在家照顧|都是我們[^，。,]{0,6}照顧|輪流照顧|也(?:會|要)?照顧"
);
pattern!(cms, r"(?:CMS|cms|長照)?\s*第?([2-8二三四五六七八])級");
pattern!(
    event_death,
    r"(先生|老公|丈夫|太太|老婆|爸爸|爸|父親|媽媽|媽|母親|兒子|女兒|家裡(?:唯一)?(?:賺錢|經濟支柱|負擔家計)的人?|負擔家計的人?)[^，。,；]{0,8}?(?:過世|去世|走了|往生|死了|過身|離世)"
);
pattern!(
    event_jobloss,
    r"(先生|老公|丈夫|太太|老婆|爸爸|爸|我)?[^，。,；]{0,6}?(?:被[^，。,]{0,4}(?:資遣|裁員|解僱|開除)|失業|沒工作了|公司[^，。,]{0,4}倒閉)"
);
pattern!(
    event_illness,
    r"(車禍|意外|重病|癌|白血病|化療|住院|開刀|加護病房|重傷|受傷|中風|洗腎|心肌梗塞|截肢|診斷出|檢查出)"
);
pattern!(event_disaster, r"(火災|失火|房子燒|燒掉|水災|淹水|地震)");
pattern!(
    recent,
    r"(上個月|上週|上禮拜|上個禮拜|上星期|昨天|前天|前幾天|這幾天|最近|剛剛|剛|這個月|本月|[一兩二三1-3]個月前|[1-9一二三四五六七八九十]+天前|[1-9一二兩三四五六七八九十]+個?(?:禮拜|星期|週)前|突然)"
);
pattern!(
    long_ago,
    r"(去年|前年|半年|好幾年|多年|好幾個月|一年多|[四五六七八九十4-9]個月(?:前|了)|年前|[兩三四五六七八九十2-9]年了)"
);
pattern!(
    hardship,
    r"(繳不出|付不出|沒錢|沒有錢|生活困難|撐不下去|沒收入|沒有收入|活不下去|籌不出|湊不出|快沒飯吃|經濟困難|好困難|很困難|入不敷出|連[^，。,]{0,10}錢都(?:沒|快沒|湊不|付不|拿不)|不知道怎麼辦|快用完|用完了|沒什麼錢|醫藥費很重|負擔很重|沒有任何收入|存款不到|只(?:有|靠)[^，。,]{0,8}(?:年金|津貼|存款)|錢都領不出來)"
);

const CITY_WORDS: &[&str] = &["本市", "這裡", "這邊", "市內", "這"];

fn number(s: &str) -> Option<f64> {
    knowledge::text::parse_number(s).map(|n| n as f64)
}

/// The char just before byte `at` of `t`.
fn char_before(t: &str, at: usize) -> Option<char> {
    t[..at].chars().next_back()
}

/// The clauses of a text (split at commas and full stops), with their byte offsets.
fn clauses(t: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in t.char_indices() {
        if matches!(
            c,
            '，' | '。' | ',' | '；' | ';' | '！' | '!' | '？' | '?' | '、'
        ) {
            if i > start {
                out.push((start, &t[start..i]));
            }
            start = i + c.len_utf8();
        }
    }
    if start < t.len() {
        out.push((start, &t[start..]));
    }
    out
}

/// Reads the facts of a self-description. `city_names` are this city's names (臺北市, 台北…);
/// `today` is the current (year, month) (for 民國年, 年次 and 「今年3月出生」).
pub fn hear(text: &str, city_names: &[String], today: (i32, u32)) -> Heard {
    let t = knowledge::text::fold_for_matching(text);
    let mut h = Heard::default();
    ages(&t, today.0, &mut h);
    children(&t, today.1, &mut h);
    household(&t, city_names, &mut h);
    situation(&t, &mut h);
    h
}

fn ages(t: &str, year: i32, h: &mut Heard) {
    // The writer's own age; the last one said wins (self-corrections).
    let mut own: Option<(f64, String)> = None;
    for c in self_age().captures_iter(t) {
        if let Some(n) = number(&c[1]) {
            own = Some((n, c[0].to_string()));
        }
    }
    if own.is_none() {
        for c in together_age().captures_iter(t) {
            if let Some(n) = number(&c[1]) {
                own = Some((n, c[0].to_string()));
            }
        }
    }
    for c in self_nearly().captures_iter(t) {
        if let Some(n) = number(&c[1]) {
            // 「快70了」: not yet 70.
            if own.is_none() {
                own = Some((n - 1.0, c[0].to_string()));
            }
        }
    }
    if own.is_none() {
        for c in roc_birth().captures_iter(t) {
            if let Some(n) = number(&c[1]) {
                let born = if n < 200.0 { n + 1911.0 } else { n };
                own = Some(((year as f64 - born).max(0.0), c[0].to_string()));
            }
        }
    }
    if own.is_none() {
        // An age opening a clause with no one named (「我是阿美族，今年58歲」「中低收入戶，43歲」)
        // is the writer's; children's ages said that way (「兩個小孩，6歲和2歲」) are young.
        for (_, clause) in clauses(t) {
            if let Some(c) = clause_age().captures(clause) {
                if let Some(n) = number(&c[1]).filter(|n| *n >= 16.0) {
                    own = Some((n, c[0].to_string()));
                    break;
                }
            }
        }
    }
    // A correction after an age: 「58，喔不對，是68歲」.
    let corrected = re(&format!(
        r"(?:不對|不是|講錯|說錯|我是說|應該是)[，,、\s]*(?:是)?{NUM}歲"
    ));
    for c in corrected.captures_iter(t) {
        if let Some(n) = number(&c[1]) {
            own = Some((n, c[0].to_string()));
        }
    }
    if let Some((age, ev)) = &own {
        h.set("applicant.age_years", Fact::Num(*age), ev);
        if *age >= 55.0 {
            h.set("elder.age_years", Fact::Num(*age), ev);
        }
    }
    // A parent's or partner's age: the senior a benefit may be for.
    let mut oldest: Option<(f64, String)> = None;
    for c in relative_age().captures_iter(t) {
        if let Some(n) = number(&c[2]) {
            if oldest.as_ref().is_none_or(|(o, _)| n > *o) {
                oldest = Some((n, c[0].to_string()));
            }
        }
    }
    if let Some((age, ev)) = oldest {
        let own_age = own.as_ref().map(|(a, _)| *a).unwrap_or(0.0);
        if age >= 55.0 && age > own_age {
            h.set("elder.age_years", Fact::Num(age), &ev);
        }
    }
    // The age of the one who needs care: the age said nearest the need
    // (「兒子40歲，是重度腦性麻痺」「我太太中風住院，她68歲，我66歲」).
    if let Some(need) = care_need().find(t) {
        let mut said: Vec<(f64, usize, String)> = Vec::new();
        for c in relative_age().captures_iter(t) {
            if let (Some(n), Some(m)) = (number(&c[2]), c.get(0)) {
                said.push((n, m.start(), m.as_str().to_string()));
            }
        }
        for c in child_age().captures_iter(t) {
            if let (Some(n), Some(m)) = (number(&c[2]), c.get(0)) {
                said.push((
                    months_of(n, &c[3]) / 12.0,
                    m.start(),
                    m.as_str().to_string(),
                ));
            }
        }
        if let Some((age, ev)) = &own {
            if let Some(at) = t.find(ev.as_str()) {
                said.push((*age, at, ev.clone()));
            }
        }
        if let Some((age, _, ev)) = said
            .into_iter()
            .min_by_key(|(_, at, _)| at.abs_diff(need.start()))
        {
            h.set("care.age_years", Fact::Num(age.floor()), &ev);
        }
    }
}

fn months_of(n: f64, unit: &str) -> f64 {
    match unit {
        "歲半" => n * 12.0 + 6.0,
        "歲" => n * 12.0,
        "週" | "周" => (n / 4.3).floor(),
        _ => n,
    }
}

fn children(t: &str, month: u32, h: &mut Heard) {
    // The youngest child's age.
    let mut youngest: Option<(f64, String)> = None;
    let mut preschooler: Option<String> = None;
    let mut consider = |m: f64, ev: &str| {
        if (24.0..72.0).contains(&m) {
            preschooler = Some(ev.to_string());
        }
        if youngest.as_ref().is_none_or(|(y, _)| m < *y) {
            youngest = Some((m, ev.to_string()));
        }
    };
    for c in child_age().captures_iter(t) {
        if let Some(n) = number(&c[2]) {
            consider(months_of(n, &c[3]), &c[0]);
        }
    }
    // Ages in a clause naming children, or right after one: 「小孩一個4歲一個7歲」.
    let parts = clauses(t);
    for (i, (_, clause)) in parts.iter().enumerate() {
        let names_child = |c: &str| CHILD_WORDS.iter().any(|w| c.contains(w));
        let previous_names_child = i > 0 && names_child(parts[i - 1].1) && !clause.contains('我');
        if !(names_child(clause) || previous_names_child) {
            continue;
        }
        for c in any_age().captures_iter(clause) {
            let at = c.get(0).map_or(0, |m| m.start());
            // Not the writer's or an adult relative's age in the same clause.
            let before = &clause[..at];
            if before.ends_with('我') || before.ends_with("我們") || before.ends_with('都') {
                continue;
            }
            if let Some(n) = number(&c[1]) {
                consider(months_of(n, &c[2]), &c[0]);
            }
        }
    }
    if let Some(m) = newborn().find(t) {
        youngest = Some((0.0, m.as_str().to_string()));
    }
    if let Some(c) = born_last_month().captures(t) {
        let m = if c[1].starts_with('上') && c[1].contains('月') {
            1.0
        } else {
            0.0
        };
        youngest = Some((m, c[0].to_string()));
    }
    if let Some(c) = born_in_month().captures(t) {
        if let Some(b) = number(&c[1]) {
            if b as u32 <= month {
                youngest = Some(((month as f64 - b).max(0.0), c[0].to_string()));
            }
        }
    }
    if let Some(m) = expecting().find(t) {
        let ahead = if let Some(c) = pregnant_months().captures(t) {
            // Nine-odd months in all: 「懷孕四個月」 is about five to go.
            number(&c[1]).map_or(3.0, |n| (9.0 - n).max(1.0))
        } else {
            re(r"([一二兩三四五六七八九1-9])個月(?:後|就要|要|會)?生")
                .captures(t)
                .and_then(|c| number(&c[1]))
                .unwrap_or(if m.as_str().contains("下") { 1.0 } else { 3.0 })
        };
        youngest = Some((-ahead, m.as_str().to_string()));
    }
    if let Some((m, ev)) = &youngest {
        h.set("child.age_months", Fact::Num(*m), ev);
    }
    // Any child of preschool age (2 to 6), not only the youngest: 「兒子3歲、女兒8個月」.
    if let Some(ev) = preschooler {
        h.set("child.has_preschooler", Fact::Bool(true), &ev);
    } else if let Some(m) =
        re(r"(讀幼兒園|上幼兒園|念幼兒園|幼兒園[大中小]班|讀大班|讀中班|讀小班)").find(t)
    {
        let b = &t[..m.start()];
        // 「大女兒6歲讀大班」: the age said decides.
        let aged = clauses(t)
            .iter()
            .any(|(at, c)| *at <= m.start() && m.start() < at + c.len() && any_age().is_match(c));
        if !(b.ends_with("沒") || b.ends_with("還沒") || b.ends_with("沒有") || aged) {
            h.set("child.has_preschooler", Fact::Bool(true), m.as_str());
        }
    }
    let count = child_count()
        .captures(t)
        .and_then(|c| number(&c[1]).map(|n| (n, c[0].to_string())));
    let order = birth_order()
        .captures(t)
        .and_then(|c| number(&c[1]).map(|n| (n, c[0].to_string())))
        .or(count);
    if let Some((n, ev)) = order {
        let group = match n as u32 {
            1 => "1",
            2 => "2",
            _ => "3+",
        };
        h.set("child.birth_order_group", Fact::Text(group.into()), &ev);
    } else if let Some(m) =
        re(r"(獨子|獨生女|獨生子|就一個(?:小孩|孩子)|就她一個|就他一個|第一個孩子|第一個小孩)")
            .find(t)
    {
        h.set(
            "child.birth_order_group",
            Fact::Text("1".into()),
            m.as_str(),
        );
    }
    let setting = [
        ("準公共", "準公共"),
        ("公共托育", "公共化"),
        ("公托", "公共化"),
        ("托嬰中心", "非準公共"),
        ("保母", "非準公共"),
        ("幼兒園", "幼兒園"),
        ("自己帶", "家中"),
        ("在家帶", "家中"),
        ("阿嬤帶", "家中"),
        ("奶奶帶", "家中"),
    ];
    // The most specific setting said (準公共 before 保母); 「還沒上幼兒園」 is at home.
    if let Some(m) = re(r"(還沒上|沒有上|沒上|還沒讀|沒讀)(?:幼兒園|托嬰|保母)").find(t)
    {
        h.set("child.care_setting", Fact::Text("家中".into()), m.as_str());
    } else if let Some((w, v)) = setting.iter().find(|(w, v)| {
        // A baby under 2 is not in kindergarten; that is an older sibling's.
        t.contains(w) && !(*v == "幼兒園" && youngest.as_ref().is_some_and(|(m, _)| *m < 24.0))
    }) {
        h.set("child.care_setting", Fact::Text(v.to_string()), w);
    }
    // The highest school level said (a tuition reduction starts at high school).
    let mut level: Option<(u8, &str, String)> = None;
    for m in student().find_iter(t) {
        let w = m.as_str();
        let (rank, name) = match w {
            "國小" | "小學" => (1, "國小"),
            "國中" | "初中" => (2, "國中"),
            "高中" | "高職" | "五專" | "高級中等" => (3, "高級中等學校"),
            _ if w.starts_with('小') => (1, "國小"),
            _ if w.starts_with('國') => (2, "國中"),
            _ if w.starts_with('高') => (3, "高級中等學校"),
            _ => (4, "大專校院"),
        };
        // 「高中畢業」 is no longer a student.
        if t[m.end()..].starts_with("畢業") {
            continue;
        }
        if level.as_ref().is_none_or(|(r, _, _)| rank > *r) {
            level = Some((rank, name, w.to_string()));
        }
    }
    if let Some((_, name, ev)) = level {
        h.set("student.level", Fact::Text(name.into()), &ev);
    }
    if let Some(m) = re(r"(沒有|沒|不是|沒在)(?:請|領)?(?:育嬰|留職停薪)").find(t) {
        h.set(
            "applicant.parental_leave_allowance",
            Fact::Bool(false),
            m.as_str(),
        );
    } else if let Some(m) = re(r"(育嬰留停|育嬰假|育嬰津貼|留職停薪)").find(t) {
        h.set(
            "applicant.parental_leave_allowance",
            Fact::Bool(true),
            m.as_str(),
        );
    }
}

fn household(t: &str, city_names: &[String], h: &mut Heard) {
    let folded: Vec<String> = city_names
        .iter()
        .map(|c| knowledge::text::fold_for_matching(c))
        .collect();
    let here_words: Vec<&str> = folded
        .iter()
        .map(String::as_str)
        .chain(CITY_WORDS.iter().copied())
        .collect();
    let is_here = |after: &str| {
        let after = after.trim_start_matches('在');
        here_words.iter().find(|w| after.starts_with(**w)).copied()
    };
    // Where the household registration is, said outright, wins over where one lives.
    let mut registered: Option<(bool, String)> = None;
    if let Some(m) =
        re(r"(還沒遷戶籍|沒有遷戶籍|戶籍(?:還)?沒(?:有)?遷|戶籍不在|還沒遷過來|戶籍還沒遷)").find(t)
    {
        registered = Some((false, m.as_str().to_string()));
    }
    if registered.is_none() {
        for m in re(r"(?:戶籍|設籍)(?:也還|都還|剛遷來|剛遷到|遷來|遷到|也|都|還)?(?:在|設在|是)?")
            .find_iter(t)
        {
            let after = &t[m.end()..];
            if after.is_empty() {
                continue;
            }
            if let Some(w) = is_here(after) {
                registered = Some((true, format!("{}{w}", m.as_str())));
            } else if re(r"^(?:外縣市|外地|鄉下|老家|台南|高雄|台中|桃園|新北|新竹|基隆|嘉義|屏東|宜蘭|花蓮|台東|南投|彰化|雲林|苗栗|澎湖|金門|連江|馬祖)").is_match(after) {
                registered = Some((false, m.as_str().to_string()));
            } else {
                continue;
            }
            break;
        }
    }
    if registered.is_none() {
        let lives = re(r"(住在|住|搬到|搬來)");
        for m in lives.find_iter(t) {
            if let Some(w) = is_here(&t[m.end()..]) {
                registered = Some((true, format!("{}{w}", m.as_str())));
                break;
            }
        }
    }
    if let Some((here, ev)) = registered {
        h.set("applicant.resident_here", Fact::Bool(here), &ev);
        h.set("elder.resident_here", Fact::Bool(here), &ev);
    }
    // Household status, negation-aware.
    let not_listed = re(r"(不是|沒有|非|沒)(?:低收|中低收|低收入戶|中低收入戶)");
    if let Some(m) = re(r"(中低收入戶|中低收|低收入戶|低收)").find(t) {
        let before = &t[..m.start()];
        let mut from = m.start().saturating_sub(9);
        while !t.is_char_boundary(from) {
            from -= 1;
        }
        let negated = not_listed.is_match(&t[from..m.end()])
            || before.ends_with("不是")
            || before.ends_with("沒有");
        // 「不知道我們算不算中低收入戶」「想申請低收入戶」 ask about a status, not state one.
        let asked = re(r"(算不算|是不是|是否|能不能|可不可以|可以|有沒有資格|想|要)(?:申請|辦|當|算|成為)?(?:為)?$")
            .is_match(&t[from..m.start()]);
        if asked && !negated {
            h.asked.push("household_status".into());
        } else if negated {
            h.set("household_status", Fact::Text("一般".into()), m.as_str());
        } else {
            let v = if m.as_str().starts_with('中') {
                "中低收入戶"
            } else {
                "低收入戶"
            };
            h.set("household_status", Fact::Text(v.into()), m.as_str());
        }
    } else if let Some(m) = re(r"(一般家庭|一般戶|一般收入)").find(t) {
        h.set("household_status", Fact::Text("一般".into()), m.as_str());
    }
    if let Some(m) = re(r"(稅率[^0-9]{0,4}(?:20|30|40)%|年薪[^，。]{0,4}(?:百萬|[1-9][0-9]{2}萬|[一二兩三四五六七八九]百(?:多)?萬)|月薪[^，。]{0,3}(?:十幾萬|十萬|[1-9][0-9]萬|[二三四五六七八九]十(?:多|幾)?萬)|收入(?:還|都)?(?:不錯|很好|很高)|高收入|雙薪.{0,4}(?:不錯|很高)|房子在出租|有房子(?:在)?出租|在收租)").find(t) {
        h.set("household.income_high", Fact::Bool(true), m.as_str());
        if !h.has("household_status") {
            // A well-off household is neither low nor middle-low income.
            h.set("household_status", Fact::Text("一般".into()), m.as_str());
        }
    }
    // A 12% or higher income-tax bracket is above the low and middle-low income lines.
    if !h.has("household_status") {
        if let Some(m) = re(r"稅率[^0-9]{0,4}(?:12|20|30|40)%").find(t) {
            h.set("household_status", Fact::Text("一般".into()), m.as_str());
        }
    }
    if let Some(m) = re(r"(一個人住|獨居|自己一個人住|自己住|一人獨居)").find(t)
    {
        h.set("elder.lives_alone", Fact::Bool(true), m.as_str());
    }
    // Renting (not 「出租」, letting one's own place).
    let renting =
        re(r"(房租|分租|跟房東|付租金|租約|租(?:房|屋|的|一間|了一間|套房|雅房|公寓|金))");
    if let Some(m) = renting
        .find_iter(t)
        .find(|m| char_before(t, m.start()) != Some('出'))
    {
        h.set("applicant.renting", Fact::Bool(true), m.as_str());
        h.set("household.owns_home", Fact::Bool(false), m.as_str());
    }
    let owns_none = re(r"(沒有(?:自己的)?(?:房子|房產|自有住宅)|無自有住宅|沒房子|名下都沒有房)");
    let owns =
        re(r"(自己的房子|自有住宅|有房子|買了房|房子是[^，。,]{0,4}自己的|名下有房|住在自己)");
    if let Some(m) = owns_none.find(t) {
        h.set("household.owns_home", Fact::Bool(false), m.as_str());
    } else if let Some(m) = owns.find_iter(t).find(|m| {
        let b = char_before(t, m.start());
        b != Some('沒') && b != Some('無') && !t[m.end()..].starts_with("出租")
    }) {
        h.set("household.owns_home", Fact::Bool(true), m.as_str());
    }
    if let Some(m) = re(r"(原住民|阿美族|泰雅族|排灣族|布農族|太魯閣族|卑南族|魯凱族|賽夏族|達悟族|鄒族|邵族|噶瑪蘭族|撒奇萊雅族|賽德克族|拉阿魯哇族|卡那卡那富族)").find(t) {
        // 「也沒有身障或原住民這些身分」「不是原住民」
        let mut from = m.start().saturating_sub(15);
        while !t.is_char_boundary(from) {
            from += 1;
        }
        let negated = re(r"(沒有|不是|非)[^，。,]{0,6}$").is_match(&t[from..m.start()]);
        h.set("applicant.indigenous", Fact::Bool(!negated), m.as_str());
        h.set("elder.indigenous", Fact::Bool(!negated), m.as_str());
    }
    // A written lease (a rent subsidy needs one) and social housing (no rent subsidy on top).
    if let Some(m) =
        re(r"(沒有簽約|沒簽約|沒有租約|沒有簽租約|不願意簽約|不肯簽約|不簽約|沒有合約)").find(t)
    {
        h.set("applicant.has_lease", Fact::Bool(false), m.as_str());
    } else if let Some(m) =
        re(r"(有租約|有簽約|簽租約|有正式租約|租賃契約|有簽合約|有簽租賃)").find(t)
    {
        h.set("applicant.has_lease", Fact::Bool(true), m.as_str());
    }
    if let Some(m) =
        re(r"(住在[^，。,]{0,6}社會住宅|住社宅|住在社宅|住在[^，。,]{0,6}社宅)").find(t)
    {
        h.set("applicant.in_social_housing", Fact::Bool(true), m.as_str());
        h.set("applicant.renting", Fact::Bool(true), m.as_str());
    }
    // Working or studying in the city (social housing takes those not registered here).
    if let Some(m) = re(
        r"(?:在本市|在這裡|在這邊|來本市|來這裡)[^，。,]{0,8}(?:上班|工作|就業|讀書|念書|就學|當)",
    )
    .find(t)
    {
        h.set(
            "applicant.works_or_studies_here",
            Fact::Bool(true),
            m.as_str(),
        );
    }
    // The car a disability parking permit would be for.
    if let Some(m) = re(r"(沒有車|沒車|沒有汽車|家裡沒有車|不會開車)").find(t) {
        h.set("household.has_car", Fact::Bool(false), m.as_str());
    } else if let Some(m) = re(r"(開車|有車|車子|汽車|改裝車|駕照)").find(t) {
        h.set("household.has_car", Fact::Bool(true), m.as_str());
    }
}

fn situation(t: &str, h: &mut Heard) {
    // 「沒有身障」「也沒有身障或原住民這些身分」: no certificate, so no disability level.
    let no_disability = re(r"(沒有|不是|非|無)(?:任何|什麼)?(身障|身心障礙|殘障)");
    if let Some(c) = disability().captures(t) {
        let level = c
            .get(1)
            .or(c.get(2))
            .map(|m| m.as_str())
            .unwrap_or_default();
        h.set(
            "disabled.disability_level",
            Fact::Text(level.to_string()),
            &c[0],
        );
    } else if let Some(m) = no_disability
        .find_iter(t)
        .find(|m| char_before(t, m.start()) != Some('有'))
    {
        h.set(
            "disabled.disability_level",
            Fact::Text("無".into()),
            m.as_str(),
        );
    } else if let Some(cert) = certificate().find(t) {
        // 「重度腦性麻痺，有身障證明」: a level said just before the certificate.
        let mut from = cert.start().saturating_sub(42);
        while !t.is_char_boundary(from) {
            from += 1;
        }
        if let Some(m) = re(r"(極重度|重度|中度|輕度)")
            .find_iter(&t[from..cert.start()])
            .last()
        {
            h.set(
                "disabled.disability_level",
                Fact::Text(m.as_str().to_string()),
                &t[from + m.start()..cert.end()],
            );
        }
    }
    if let Some(m) = care_need().find(t) {
        h.set("care.needs_care", Fact::Bool(true), m.as_str());
    }
    if let Some(m) = caring().find(t) {
        h.set("care.family_caregiver", Fact::Bool(true), m.as_str());
        h.set("care.needs_care", Fact::Bool(true), m.as_str());
    }
    // A hired carer (「家裡有請外籍看護」) is not a family caregiver; 「沒有請看護」 says nothing.
    if let Some(m) = re(r"(請[^，。,]{0,3}(?:外籍)?看護|外籍看護|外勞在照顧|看護在照顧)").find(t)
    {
        let b = &t[..m.start()];
        let family_too = re(r"(輪流照顧|也(?:會|要)?照顧)").is_match(t);
        if !(b.ends_with("沒有") || b.ends_with("沒") || b.ends_with("不") || family_too) {
            h.set("care.family_caregiver", Fact::Bool(false), m.as_str());
        }
    }
    if let Some(c) = cms().captures(t) {
        if t.contains("長照") || t.contains("cms") || t.contains("失能") {
            if let Some(n) = number(&c[1]) {
                h.set("care.cms_level", Fact::Num(n), &c[0]);
            }
        }
    }
    if let Some(m) = re(r"(政府全額補助|公費安置|公費收容|政府安置|政府出錢安置)").find(t)
    {
        h.set("elder.state_placed", Fact::Bool(true), m.as_str());
    }
    if let Some(m) = re(r"(假牙|牙齒掉|缺牙|沒牙|牙齒都沒|牙齒不好|咬不動)").find(t)
    {
        h.set("elder.needs_dentures", Fact::Bool(true), m.as_str());
    }
    if let Some(m) = re(r"(輪椅|助聽器|電動床|助行器|拐杖|氣墊床|輔具|便盆椅|移位機)").find(t)
    {
        h.set("need.assistive_device", Fact::Bool(true), m.as_str());
    }
    if let Some(m) = re(r"(扶手|無障礙|斜坡道|浴室改|門檻)").find(t) {
        h.set("need.home_accessibility", Fact::Bool(true), m.as_str());
    }
    // Work: the writer's own (「老婆在超市打工」 is someone else's).
    let jobless = re(
        r"(失業|被資遣|被裁員|沒工作|找不到工作|沒有工作|公司[^，。,]{0,4}倒閉|被解僱|被開除|待業|沒上班|沒在上班|沒有上班|辭職|工作還沒找到)",
    );
    let working = re(
        r"(在上班|要上班|有上班|有工作|正職|全職|上班族|公司上班|上班|打工|當[^，。,]{1,6}(?:師|員|服)|在[^，。,]{1,6}當|月薪)",
    );
    let someone_else = |at: usize| {
        let mut from = at.saturating_sub(12);
        while !t.is_char_boundary(from) {
            from += 1;
        }
        let before = &t[from..at];
        [
            "老婆", "太太", "先生", "老公", "爸", "媽", "兒子", "女兒", "他", "她",
        ]
        .iter()
        .any(|w| before.contains(w))
            && !before.contains('我')
    };
    if let Some(m) = jobless.find_iter(t).find(|m| !someone_else(m.start())) {
        h.set("applicant.unemployed", Fact::Bool(true), m.as_str());
    } else if let Some(m) = working.find_iter(t).find(|m| !someone_else(m.start())) {
        h.set("applicant.unemployed", Fact::Bool(false), m.as_str());
    }
    if let Some(m) = re(r"(不能工作|無法工作|沒辦法工作|不能上班|無法上班|沒辦法出去工作)").find(t)
    {
        h.set("applicant.able_to_work", Fact::Bool(false), m.as_str());
    } else if h.get("applicant.unemployed") == Some(&Fact::Bool(true)) {
        h.set("applicant.able_to_work", Fact::Bool(true), "失業");
    }
    if h.get("applicant.unemployed") == Some(&Fact::Bool(true))
        && !h.has("student.level")
        && !h.has("applicant.works_or_studies_here")
    {
        h.set(
            "applicant.works_or_studies_here",
            Fact::Bool(false),
            "沒有工作",
        );
    }
    // Who carried the household: 「他是家裡唯一賺錢的」「家裡就靠我」「我是家裡的經濟支柱」.
    let breadwinner_words = re(
        r"(家裡(?:唯一|主要)?(?:的)?(?:賺錢|收入|經濟支柱|支柱)|唯一的收入|主要的收入|負擔家計|賺錢的人|靠他|靠她|經濟支柱)",
    );
    let self_breadwinner =
        re(r"(家裡就?靠我|我是家裡的?(?:經濟支柱|支柱|唯一)|靠我一個人)").is_match(t);
    // Events: the most serious one said.
    let event = event_death()
        .find(t)
        .map(|m| {
            let partner = ["先生", "老公", "丈夫", "太太", "老婆"]
                .iter()
                .any(|w| m.as_str().contains(w));
            let breadwinner = partner
                || ["賺錢", "支柱", "家計"]
                    .iter()
                    .any(|w| m.as_str().contains(w))
                || breadwinner_words.is_match(t);
            (
                if breadwinner {
                    "家計者死亡"
                } else {
                    "戶內人口死亡"
                },
                m.as_str().to_string(),
            )
        })
        .or_else(|| {
            event_jobloss().captures(t).and_then(|c| {
                // 「我先生上個月被公司裁員」 is the husband's job.
                let other = ["先生", "老公", "丈夫", "太太", "老婆", "爸"]
                    .iter()
                    .any(|w| c[0].contains(w));
                (other || h.has("applicant.unemployed")).then(|| ("家計者失業", c[0].to_string()))
            })
        })
        .or_else(|| {
            re(r"(失聯|失蹤|下落不明|不見了|被抓去關|去關|服刑|坐牢|入獄|判了[^，。,]{0,3}年)")
                .find(t)
                .filter(|_| breadwinner_words.is_match(t))
                .map(|m| ("重大變故", m.as_str().to_string()))
        })
        .or_else(|| {
            event_illness().find(t).map(|m| {
                let e = if self_breadwinner {
                    "家計者重傷病"
                } else {
                    "戶內人口意外或重病"
                };
                (e, m.as_str().to_string())
            })
        })
        .or_else(|| {
            event_disaster()
                .find(t)
                .map(|m| ("重大變故", m.as_str().to_string()))
        });
    if let Some((e, ev)) = event {
        h.set("household.event", Fact::Text(e.into()), &ev);
        if let Some(m) = long_ago().find(t) {
            h.set("household.event_recent", Fact::Bool(false), m.as_str());
        } else if let Some(m) = recent().find(t) {
            h.set("household.event_recent", Fact::Bool(true), m.as_str());
        }
    }
    if let Some(m) = re(r"(還過得去|還算過得去|生活還可以|不愁吃穿|生活沒問題|經濟沒問題)").find(t)
    {
        h.set("household.in_hardship", Fact::Bool(false), m.as_str());
    } else if let Some(m) = hardship().find(t) {
        h.set("household.in_hardship", Fact::Bool(true), m.as_str());
    }
    // The circumstances of the special-circumstances family aid (not a plain divorce).
    let special = re(
        r"(家暴|被打|被[^，。,]{0,3}打|打我|受虐|保護令|庇護所|未婚懷孕|沒有結婚|未婚生子|失蹤|失聯|下落不明|不見了|男朋友跑了|服刑|坐牢|入獄|被抓去關|單親|獨自扶養|爸媽都不在|父母雙亡|父母都過世)",
    );
    // 「家裡沒有什麼特殊狀況」「也沒有身障或原住民這些身分」: none of the statuses a benefit
    // for a special group asks about (low income, disability, indigenous, special circumstances).
    let none_special = re(
        r"(沒有|沒|無|不具)[^，。,；]{0,3}特殊(?:狀況|情況|身分|身份|境遇)|沒有[^，。,；]{0,12}這些身(?:分|份)",
    );
    if let Some(m) = special.find(t) {
        h.set(
            "applicant.special_circumstance",
            Fact::Bool(true),
            m.as_str(),
        );
    } else if let Some(m) = none_special
        .find_iter(t)
        .find(|m| char_before(t, m.start()) != Some('有'))
    {
        let said = m.as_str();
        h.set("applicant.special_circumstance", Fact::Bool(false), said);
        for (fact, value) in [
            ("household_status", Fact::Text("一般".into())),
            ("disabled.disability_level", Fact::Text("無".into())),
            ("applicant.indigenous", Fact::Bool(false)),
        ] {
            if !h.has(fact) {
                h.set(fact, value, said);
            }
        }
    } else if let Some(m) = event_death().find(t) {
        if ["先生", "老公", "丈夫", "太太", "老婆"]
            .iter()
            .any(|w| m.as_str().contains(w))
        {
            h.set(
                "applicant.special_circumstance",
                Fact::Bool(true),
                m.as_str(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heard(text: &str) -> Facts {
        hear(
            text,
            &["臺北市".to_string(), "台北市".to_string()],
            (2026, 12),
        )
        .facts()
    }

    fn num(f: &Facts, k: &str) -> Option<f64> {
        match f.0.get(k) {
            Some(Fact::Num(n)) => Some(*n),
            _ => None,
        }
    }

    fn text(f: &Facts, k: &str) -> Option<String> {
        match f.0.get(k) {
            Some(Fact::Text(s)) => Some(s.clone()),
            _ => None,
        }
    }

    #[test]
    fn the_senior_living_alone_in_the_city() {
        let f = heard("我今年67歲，一個人住在臺北市，是中低收入戶，想知道可以申請什麼");
        assert_eq!(num(&f, "applicant.age_years"), Some(67.0));
        assert_eq!(num(&f, "elder.age_years"), Some(67.0));
        assert_eq!(f.0.get("elder.resident_here"), Some(&Fact::Bool(true)));
        assert_eq!(text(&f, "household_status").as_deref(), Some("中低收入戶"));
        assert_eq!(f.0.get("elder.lives_alone"), Some(&Fact::Bool(true)));
        assert_eq!(f.0.get("child.age_months"), None, "no child was mentioned");
    }

    #[test]
    fn ages_said_many_ways_and_corrected() {
        assert_eq!(num(&heard("我快70了"), "applicant.age_years"), Some(69.0));
        assert_eq!(
            num(&heard("我是民國45年生的"), "applicant.age_years"),
            Some(70.0)
        );
        assert_eq!(num(&heard("我80年次"), "applicant.age_years"), Some(35.0));
        assert_eq!(
            num(&heard("我今年58，喔不對，是68歲"), "applicant.age_years"),
            Some(68.0)
        );
        assert_eq!(
            num(&heard("我媽今年七十二歲"), "elder.age_years"),
            Some(72.0)
        );
    }

    #[test]
    fn children_students_and_negated_status() {
        let f = heard("三個小孩，老大國中，老么才8個月，我們不是低收入戶");
        assert_eq!(num(&f, "child.age_months"), Some(8.0));
        assert_eq!(text(&f, "child.birth_order_group").as_deref(), Some("3+"));
        assert_eq!(text(&f, "student.level").as_deref(), Some("國中"));
        assert_eq!(text(&f, "household_status").as_deref(), Some("一般"));
        let f = heard("我太太下個月生，第二胎");
        assert_eq!(num(&f, "child.age_months"), Some(-1.0));
        assert_eq!(text(&f, "child.birth_order_group").as_deref(), Some("2"));
    }

    #[test]
    fn hardship_events_and_care() {
        let f = heard("我先生上個月突然過世，他是家裡唯一賺錢的，現在房租都繳不出來");
        assert_eq!(text(&f, "household.event").as_deref(), Some("家計者死亡"));
        assert_eq!(f.0.get("household.event_recent"), Some(&Fact::Bool(true)));
        assert_eq!(f.0.get("household.in_hardship"), Some(&Fact::Bool(true)));
        assert_eq!(f.0.get("applicant.renting"), Some(&Fact::Bool(true)));
        let f = heard("我在照顧中風的爸爸，他82歲，有中度身障證明");
        assert_eq!(f.0.get("care.needs_care"), Some(&Fact::Bool(true)));
        assert_eq!(num(&f, "care.age_years"), Some(82.0));
        assert_eq!(
            text(&f, "disabled.disability_level").as_deref(),
            Some("中度")
        );
        let f = heard("剛從高雄搬來，戶籍還在高雄");
        assert_eq!(f.0.get("applicant.resident_here"), Some(&Fact::Bool(false)));
    }

    #[test]
    fn homes_leases_and_registration_read_with_their_negations() {
        let f = heard("我一個人在本市租房子，有簽租約，名下沒有房子，戶籍也還在台南");
        assert_eq!(f.0.get("household.owns_home"), Some(&Fact::Bool(false)));
        assert_eq!(f.0.get("applicant.has_lease"), Some(&Fact::Bool(true)));
        assert_eq!(f.0.get("applicant.resident_here"), Some(&Fact::Bool(false)));
        let f = heard("我們的房子在出租，自己住在本市，房東不願意簽約");
        assert_eq!(
            f.0.get("applicant.renting"),
            None,
            "letting a flat is not renting one"
        );
        assert_eq!(f.0.get("household.income_high"), Some(&Fact::Bool(true)));
        assert_eq!(text(&f, "household_status").as_deref(), Some("一般"));
        assert_eq!(f.0.get("applicant.has_lease"), Some(&Fact::Bool(false)));
        let f = heard("也沒有身障或原住民這些身分");
        assert_eq!(f.0.get("applicant.indigenous"), Some(&Fact::Bool(false)));
        assert_eq!(text(&f, "disabled.disability_level").as_deref(), Some("無"));
        assert_eq!(
            f.0.get("applicant.special_circumstance"),
            Some(&Fact::Bool(false)),
            "「這些身分」 closes the list of special statuses"
        );
        let f = heard("爸媽都有穩定工作，家裡沒有什麼特殊狀況");
        assert_eq!(text(&f, "household_status").as_deref(), Some("一般"));
        assert_eq!(text(&f, "disabled.disability_level").as_deref(), Some("無"));
        assert_eq!(f.0.get("applicant.indigenous"), Some(&Fact::Bool(false)));
        // A question about a status states nothing.
        let f = heard("不知道家裡有沒有特殊身分，孩子有沒有身障要怎麼認定");
        // Not applied for yet is not ruled out (a certificate can still be applied for).
        assert_eq!(
            heard("一直沒有去辦身障證明")
                .0
                .get("disabled.disability_level"),
            None
        );
        assert_eq!(f.0.get("applicant.special_circumstance"), None);
        assert_eq!(f.0.get("disabled.disability_level"), None);
        // A stated status wins over the blanket 「沒有特殊狀況」.
        let f = heard("我們是低收入戶，除此之外沒有什麼特殊狀況");
        assert_eq!(text(&f, "household_status").as_deref(), Some("低收入戶"));
    }

    #[test]
    fn whose_job_whose_age_and_which_children() {
        let f = heard(
            "我先生上個月被公司裁員，他是家裡唯一的收入，兩個小孩一個3歲一個1歲，房租快繳不出來了",
        );
        assert_eq!(text(&f, "household.event").as_deref(), Some("家計者失業"));
        assert_eq!(f.0.get("household.event_recent"), Some(&Fact::Bool(true)));
        assert_eq!(num(&f, "child.age_months"), Some(12.0));
        assert_eq!(f.0.get("child.has_preschooler"), Some(&Fact::Bool(true)));
        assert_eq!(
            f.0.get("applicant.unemployed"),
            None,
            "the husband lost the job"
        );
        let f = heard("我跟我先生都七十幾歲了，兒子40歲，是重度腦性麻痺，有身障證明");
        assert_eq!(num(&f, "elder.age_years"), Some(70.0));
        assert_eq!(
            num(&f, "care.age_years"),
            Some(40.0),
            "the son needs the care"
        );
        assert_eq!(
            text(&f, "disabled.disability_level").as_deref(),
            Some("重度")
        );
        let f = heard("我今年45歲，失業半年了，老婆在超市打工，生活還過得去");
        assert_eq!(f.0.get("applicant.unemployed"), Some(&Fact::Bool(true)));
        assert_eq!(f.0.get("household.event_recent"), Some(&Fact::Bool(false)));
        assert_eq!(f.0.get("household.in_hardship"), Some(&Fact::Bool(false)));
        let f = heard("我跟前夫和平協議離婚，自己帶女兒");
        assert_eq!(f.0.get("applicant.special_circumstance"), None);
    }

    #[test]
    fn a_status_asked_about_is_not_a_status_said() {
        let f = heard("不知道我們算不算中低收入戶");
        assert_eq!(f.0.get("household_status"), None);
        let f = heard("我想申請低收入戶");
        assert_eq!(f.0.get("household_status"), None);
        let f = heard("我們家是低收入戶");
        assert_eq!(text(&f, "household_status").as_deref(), Some("低收入戶"));
    }
}
