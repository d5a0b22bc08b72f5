//! Guided walk-throughs: the assistant asks a resident about their situation one question at a
//! time and ends with what to bring and where to go for one service, every item copied from the
//! city's guide and cited by guide section. Definitions are TOML files under
//! `corpus/walkthroughs/` (format in that folder's README). This module is pure logic: it reads
//! no configuration, calls no model and never logs what a resident typed.

use std::cmp::Ordering::{Equal, Less};
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use knowledge::text;
use serde::{Deserialize, Serialize};

/// What went wrong while loading or validating walk-through definitions.
#[derive(Debug)]
#[non_exhaustive]
pub enum WalkthroughError {
    /// A definition file or the folder could not be read.
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A definition file is not valid TOML for the walk-through format.
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    /// A definition parsed but is inconsistent; `message` names the step or outcome.
    Invalid { file: String, message: String },
}

impl fmt::Display for WalkthroughError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, .. } => write!(f, "reading walk-through {}", path.display()),
            Self::Parse { path, .. } => write!(f, "parsing walk-through {}", path.display()),
            Self::Invalid { file, message } => write!(f, "invalid walk-through {file}: {message}"),
        }
    }
}

impl std::error::Error for WalkthroughError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read { source, .. } => Some(source),
            Self::Parse { source, .. } => Some(source),
            Self::Invalid { .. } => None,
        }
    }
}

/// A parsed walk-through definition for one service.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Walkthrough {
    id: String,
    doc_id: String,
    title: String,
    intro: String,
    #[serde(default)]
    names: Vec<String>,
    steps: Vec<Step>,
    outcomes: Vec<OutcomeDef>,
    /// Where the definition came from, for error messages.
    #[serde(skip)]
    source: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    id: String,
    question: String,
    kind: StepKind,
    min: Option<i64>,
    max: Option<i64>,
    #[serde(default)]
    unit: Unit,
    #[serde(default)]
    options: Vec<ChoiceOption>,
    when: Option<String>,
    hint: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StepKind {
    Number,
    Choice,
    YesNo,
}

/// How a number answer is read: as said, or converted to months (「1歲半」→18).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Unit {
    #[default]
    Plain,
    Months,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChoiceOption {
    value: String,
    label: String,
    #[serde(default)]
    synonyms: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomeDef {
    id: String,
    when: Option<String>,
    #[serde(default)]
    early: bool,
    summary: String,
    items: Vec<ItemDef>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemDef {
    section: String,
    text: String,
    when: Option<String>,
}

/// Loads and validates every `*.toml` walk-through in `dir`, sorted by file name.
pub fn load_dir(dir: &Path) -> Result<Vec<Walkthrough>, WalkthroughError> {
    let read_err = |path: &Path, source| WalkthroughError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| read_err(dir, e))? {
        let path = entry.map_err(|e| read_err(dir, e))?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            paths.push(path);
        }
    }
    paths.sort();
    let mut out: Vec<Walkthrough> = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|e| read_err(&path, e))?;
        let wt = Walkthrough::from_toml(&text, &path.display().to_string())?;
        if let Some(other) = out.iter().find(|o| o.id == wt.id) {
            return Err(wt.invalid(format!("id `{}` is also used by {}", wt.id, other.source)));
        }
        out.push(wt);
    }
    tracing::debug!(count = out.len(), dir = %dir.display(), "loaded walk-throughs");
    Ok(out)
}

/// Words that, next to a service name, ask to be guided step by step.
const GUIDANCE_CUES: &str =
    "一步一步 引導 帶我 我該準備什麼 要準備什麼 該準備什麼 要帶什麼 該帶什麼 \
    要怎麼辦 該怎麼辦 怎麼申請 如何申請 怎麼辦理 如何辦理 幫我看看";

impl Walkthrough {
    /// Parses and validates one definition; `source` names it in error messages.
    pub fn from_toml(text: &str, source: &str) -> Result<Self, WalkthroughError> {
        let mut wt: Walkthrough = toml::from_str(text).map_err(|e| WalkthroughError::Parse {
            path: PathBuf::from(source),
            source: e,
        })?;
        wt.source = source.to_string();
        wt.validate()?;
        Ok(wt)
    }

    /// The walk-through's id (unique among loaded walk-throughs).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The id of the guide every outcome item is taken from.
    pub fn doc_id(&self) -> &str {
        &self.doc_id
    }

    /// The walk-through's title, shown to the resident.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The sentence to show before the first question.
    pub fn intro(&self) -> &str {
        &self.intro
    }

    /// A new session at the start of this walk-through; call [`Session::first`] for the first question.
    pub fn start(&self) -> Session {
        Session {
            walkthrough_id: self.id.clone(),
            answers: BTreeMap::new(),
            current: None,
            finished: false,
            cancelled: false,
        }
    }

    /// Whether a resident's message asks to be guided through this service: it names the service
    /// (one of `names`) and contains a guidance cue such as 「一步一步」「我該準備什麼」「要怎麼辦」.
    pub fn matches(&self, text: &str) -> bool {
        let t = normalize(text);
        self.names.iter().any(|n| t.contains(&normalize(n)))
            && GUIDANCE_CUES.split_whitespace().any(|c| t.contains(c))
    }

    /// Checks the definition: ids, step kinds and options, conditions (syntax, known and earlier
    /// step ids, value types) and that every outcome can be reached and the last always matches.
    pub fn validate(&self) -> Result<(), WalkthroughError> {
        for (field, value) in [
            ("id", &self.id),
            ("doc_id", &self.doc_id),
            ("title", &self.title),
        ] {
            if value.trim().is_empty() {
                return Err(self.invalid(format!("`{field}` is empty")));
            }
        }
        if self.steps.is_empty() {
            return Err(self.invalid("it has no steps".into()));
        }
        let mut earlier: Vec<&Step> = Vec::new();
        for step in &self.steps {
            let bad = |m: String| self.invalid(format!("step `{}`: {m}", step.id));
            if step.id.trim().is_empty() || step.question.trim().is_empty() {
                return Err(bad("id and question must not be empty".into()));
            }
            if earlier.iter().any(|s| s.id == step.id) {
                return Err(bad("duplicate step id".into()));
            }
            match step.kind {
                StepKind::Choice if step.options.is_empty() => {
                    return Err(bad("a choice step needs options".into()))
                }
                StepKind::Choice => {
                    for (i, o) in step.options.iter().enumerate() {
                        if o.value.trim().is_empty() || o.label.trim().is_empty() {
                            return Err(bad("an option has an empty value or label".into()));
                        }
                        if step.options[..i].iter().any(|p| p.value == o.value) {
                            return Err(bad(format!("duplicate option value `{}`", o.value)));
                        }
                    }
                }
                _ if !step.options.is_empty() => {
                    return Err(bad("only choice steps take options".into()))
                }
                _ => {}
            }
            let number = step.kind == StepKind::Number;
            if !number && (step.min.is_some() || step.max.is_some() || step.unit != Unit::Plain) {
                return Err(bad("only number steps take min, max or unit".into()));
            }
            match (step.min, step.max) {
                (Some(lo), Some(hi)) if lo > hi => {
                    return Err(bad(format!("min {lo} is greater than max {hi}")))
                }
                (None, _) | (_, None) if number => {
                    return Err(bad("a number step needs min and max".into()))
                }
                _ => {}
            }
            if let Some(w) = &step.when {
                check_condition(w, &earlier).map_err(|m| {
                    bad(format!(
                        "condition `{w}`: {m} (a step may only use earlier steps)"
                    ))
                })?;
            }
            earlier.push(step);
        }
        let Some(last) = self.outcomes.last() else {
            return Err(self.invalid("it has no outcomes".into()));
        };
        if last.when.is_some() {
            return Err(self.invalid(format!(
                "the last outcome `{}` must have no condition, so every walk-through ends somewhere",
                last.id
            )));
        }
        for (i, outcome) in self.outcomes.iter().enumerate() {
            let bad = |m: String| self.invalid(format!("outcome `{}`: {m}", outcome.id));
            if self.outcomes[..i].iter().any(|o| o.id == outcome.id) {
                return Err(bad("duplicate outcome id".into()));
            }
            match &outcome.when {
                None if i + 1 < self.outcomes.len() => {
                    return Err(bad(
                        "has no condition, so the outcomes after it are unreachable".into(),
                    ))
                }
                None if outcome.early => {
                    return Err(bad("an early outcome needs a condition".into()))
                }
                None => {}
                Some(w) => check_condition(w, &earlier)
                    .map_err(|m| bad(format!("condition `{w}`: {m}")))?,
            }
            if outcome.summary.trim().is_empty() || outcome.items.is_empty() {
                return Err(bad("needs a summary and at least one item".into()));
            }
            for item in &outcome.items {
                if item.section.trim().is_empty() || item.text.trim().is_empty() {
                    return Err(bad("an item has an empty section or text".into()));
                }
                if let Some(w) = &item.when {
                    check_condition(w, &earlier)
                        .map_err(|m| bad(format!("item condition `{w}`: {m}")))?;
                }
            }
        }
        Ok(())
    }

    fn invalid(&self, message: String) -> WalkthroughError {
        let file = if self.source.is_empty() {
            format!("`{}`", self.id)
        } else {
            self.source.clone()
        };
        WalkthroughError::Invalid { file, message }
    }

    fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    fn outcome(&self, def: &OutcomeDef, answers: &BTreeMap<String, Value>) -> Outcome {
        Outcome {
            id: def.id.clone(),
            summary: def.summary.clone(),
            items: def
                .items
                .iter()
                .filter(|i| holds(i.when.as_deref(), answers))
                .map(|i| OutcomeItem {
                    section: i.section.clone(),
                    text: i.text.clone(),
                })
                .collect(),
        }
    }
}

/// A recorded answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A yes/no answer.
    Bool(bool),
    /// A number answer (months for steps with `unit = "months"`).
    Number(i64),
    /// The `value` of the chosen option.
    Choice(String),
}

/// One resident's progress through a walk-through; serialisable so a server can keep it per
/// conversation between requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// The walk-through this session belongs to.
    pub walkthrough_id: String,
    /// Answers so far, by step id.
    pub answers: BTreeMap<String, Value>,
    /// The step whose question is waiting for an answer.
    pub current: Option<String>,
    /// Whether the walk-through has ended (with an outcome or cancelled).
    pub finished: bool,
    /// Whether the resident left before the end.
    #[serde(default)]
    pub cancelled: bool,
}

/// What the assistant says next.
#[derive(Clone, Debug, PartialEq)]
pub enum Turn {
    /// Ask a question. `options` are the choice labels (empty for number and yes/no steps);
    /// `reprompt` is true when the last reply was not understood, and `question` then starts with a hint.
    Ask {
        step_id: String,
        question: String,
        options: Vec<String>,
        reprompt: bool,
    },
    /// The walk-through is over.
    Done(Outcome),
    /// The resident left the walk-through.
    Cancelled,
}

/// The end of a walk-through: a summary and the guide items that apply.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    /// The outcome's id in the definition (for logs and tests).
    pub id: String,
    /// One or two sentences on the resident's situation.
    pub summary: String,
    /// What to bring, where to go, fees and times, each copied from a guide section.
    pub items: Vec<OutcomeItem>,
}

/// One item of an outcome, with the guide section it comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutcomeItem {
    /// The guide section heading, e.g. 「應備文件」.
    pub section: String,
    /// The guide's text.
    pub text: String,
}

impl Outcome {
    /// zh-TW text for the resident: the summary, then one bullet per item ending with its
    /// citation, e.g. `・本人國民身分證正本（出處：敬老卡・應備文件）`.
    pub fn render(&self, doc_title: &str) -> String {
        let mut out = self.summary.trim().to_string();
        for item in &self.items {
            let text = item.text.trim().trim_end_matches(['。', '，', '；', '：']);
            let _ = write!(out, "\n・{text}（出處：{doc_title}・{}）", item.section);
        }
        out
    }
}

/// Replies that end the walk-through.
const CANCEL_WORDS: &[&str] = &["結束", "取消", "不用了", "不辦了"];

impl Session {
    /// The question waiting for an answer (asking the first one on a new session), or the
    /// outcome when the walk-through has already ended.
    pub fn first(&mut self, wt: &Walkthrough) -> Turn {
        if let Some(turn) = self.ended(wt) {
            return turn;
        }
        match self.current.as_deref().and_then(|id| wt.step(id)) {
            Some(step) if !self.answers.contains_key(&step.id) => ask(step, None),
            _ => self.advance(wt),
        }
    }

    /// Takes the resident's reply to the current question and says what comes next: the next
    /// question, the same one again with a hint when the reply was not understood, the outcome,
    /// or `Cancelled` for 「結束」「取消」「不用了」.
    pub fn reply(&mut self, wt: &Walkthrough, text: &str) -> Turn {
        if let Some(turn) = self.ended(wt) {
            return turn;
        }
        let normalized = normalize(text);
        if CANCEL_WORDS.iter().any(|w| normalized.contains(w)) {
            tracing::debug!(walkthrough = %wt.id, "walk-through cancelled");
            self.cancelled = true;
            self.finished = true;
            self.current = None;
            return Turn::Cancelled;
        }
        let Some(step) = self.current.as_deref().and_then(|id| wt.step(id)) else {
            return self.first(wt);
        };
        match step.parse(&normalized) {
            Err(hint) => {
                tracing::debug!(walkthrough = %wt.id, step = %step.id, len = text.len(), "reply not understood");
                ask(step, Some(hint))
            }
            Ok(value) => {
                self.answers.insert(step.id.clone(), value);
                let early = wt
                    .outcomes
                    .iter()
                    .find(|o| o.early && holds(o.when.as_deref(), &self.answers));
                match early {
                    Some(def) => self.finish(wt, def),
                    None => self.advance(wt),
                }
            }
        }
    }

    /// `Some` when the session is over or belongs to another walk-through.
    fn ended(&mut self, wt: &Walkthrough) -> Option<Turn> {
        if self.walkthrough_id != wt.id {
            tracing::warn!(session = %self.walkthrough_id, walkthrough = %wt.id, "session used with another walk-through");
            self.cancelled = true;
            self.finished = true;
        }
        if self.cancelled {
            return Some(Turn::Cancelled);
        }
        self.finished.then(|| self.final_turn(wt))
    }

    /// Moves to the first unanswered step whose condition holds, or ends with the first
    /// matching outcome when none is left.
    fn advance(&mut self, wt: &Walkthrough) -> Turn {
        let next = wt
            .steps
            .iter()
            .find(|s| !self.answers.contains_key(&s.id) && holds(s.when.as_deref(), &self.answers));
        match next {
            Some(step) => {
                self.current = Some(step.id.clone());
                ask(step, None)
            }
            None => self.final_turn(wt),
        }
    }

    fn final_turn(&mut self, wt: &Walkthrough) -> Turn {
        match wt
            .outcomes
            .iter()
            .find(|o| holds(o.when.as_deref(), &self.answers))
        {
            Some(def) => self.finish(wt, def),
            None => {
                // Unreachable for a validated definition: its last outcome has no condition.
                self.cancelled = true;
                self.finished = true;
                Turn::Cancelled
            }
        }
    }

    fn finish(&mut self, wt: &Walkthrough, def: &OutcomeDef) -> Turn {
        tracing::debug!(walkthrough = %wt.id, outcome = %def.id, answers = self.answers.len(), "walk-through done");
        self.current = None;
        self.finished = true;
        Turn::Done(wt.outcome(def, &self.answers))
    }
}

fn ask(step: &Step, hint: Option<String>) -> Turn {
    Turn::Ask {
        step_id: step.id.clone(),
        question: match &hint {
            Some(h) => format!("{h}\n{}", step.question),
            None => step.question.clone(),
        },
        options: step.options.iter().map(|o| o.label.clone()).collect(),
        reprompt: hint.is_some(),
    }
}

impl Step {
    /// Reads a normalised reply; `Err` carries the hint to show when re-asking.
    fn parse(&self, t: &str) -> Result<Value, String> {
        let not_understood =
            |default: String| format!("抱歉，我沒聽懂。{}", self.hint.clone().unwrap_or(default));
        match self.kind {
            StepKind::Number => {
                let n = match self.unit {
                    Unit::Plain => numbers(t).first().map(|&(v, _)| v),
                    Unit::Months => months(t),
                };
                let Some(n) = n.map(|v| v.floor() as i64) else {
                    return Err(not_understood("請用數字回答。".into()));
                };
                let (lo, hi) = (self.min.unwrap_or(0), self.max.unwrap_or(i64::MAX));
                if n < lo || n > hi {
                    return Err(format!("您回答的 {n} 不在 {lo}～{hi} 之間，請再確認一次。"));
                }
                Ok(Value::Number(n))
            }
            StepKind::YesNo => yes_no(t)
                .map(Value::Bool)
                .ok_or_else(|| not_understood("請回答「是」或「不是」。".into())),
            StepKind::Choice => self
                .choose(t)
                .map(|o| Value::Choice(o.value.clone()))
                .ok_or_else(|| {
                    let list: Vec<String> = self
                        .options
                        .iter()
                        .enumerate()
                        .map(|(i, o)| format!("{}. {}", i + 1, o.label))
                        .collect();
                    not_understood(format!(
                        "請回答其中一項（也可以回答編號）：{}。",
                        list.join("、")
                    ))
                }),
        }
    }

    /// The option whose label, value or synonym is the longest match in the reply (a tie between
    /// two options is no answer), else the option picked by index (「2」「第二個」).
    fn choose(&self, t: &str) -> Option<&ChoiceOption> {
        let mut best: Option<(usize, &ChoiceOption)> = None;
        let mut tied = false;
        for o in &self.options {
            let terms = std::iter::once(&o.label)
                .chain(std::iter::once(&o.value))
                .chain(&o.synonyms);
            let len = terms
                .map(|s| normalize(s))
                .filter(|s| !s.is_empty() && t.contains(s.as_str()))
                .map(|s| s.chars().count())
                .max();
            match (len, best) {
                (Some(l), Some((b, _))) if l == b => tied = true,
                (Some(l), Some((b, _))) if l < b => {}
                (Some(l), _) => (best, tied) = (Some((l, o)), false),
                (None, _) => {}
            }
        }
        if let (Some((_, o)), false) = (best, tied) {
            return Some(o);
        }
        let rest: String = t
            .chars()
            .filter(|c| {
                !"我選要第個項種號就是吧喔啦".contains(*c)
                    && !c.is_whitespace()
                    && !c.is_ascii_punctuation()
                    && !"。，！？、".contains(*c)
            })
            .collect();
        let all_number = !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_digit() || cn_digit(c).is_some() || cn_unit(c).is_some());
        let index = all_number
            .then(|| numbers(&rest).first().map(|&(v, _)| v as usize))
            .flatten()?;
        self.options.get(index.checked_sub(1)?)
    }
}

/// Full-width ASCII to half-width, lower-case, trimmed.
fn normalize(s: &str) -> String {
    text::fold_width(s.trim())
        .chars()
        .flat_map(char::to_lowercase)
        .collect()
}

fn cn_digit(c: char) -> Option<f64> {
    text::cn_digit(c).map(f64::from)
}

/// 十 百 千 (larger multipliers end a number here: ages, months and options are small).
fn cn_unit(c: char) -> Option<f64> {
    text::cn_multiplier(c)
        .filter(|&m| m < 10_000)
        .map(|m| m as f64)
}

/// Every number in a normalised text (Arabic with an optional decimal part, or Chinese
/// numerals such as 「七十二」「一百零二」), with the byte offset where it ends.
fn numbers(t: &str) -> Vec<(f64, usize)> {
    let chars: Vec<(usize, char)> = t.char_indices().collect();
    let end_of = |i: usize| chars.get(i).map_or(t.len(), |&(b, _)| b);
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        let c = chars[i].1;
        if c.is_ascii_digit() {
            while chars.get(i).is_some_and(|c| c.1.is_ascii_digit()) {
                i += 1;
            }
            if chars.get(i).is_some_and(|c| c.1 == '.')
                && chars.get(i + 1).is_some_and(|c| c.1.is_ascii_digit())
            {
                i += 1;
                while chars.get(i).is_some_and(|c| c.1.is_ascii_digit()) {
                    i += 1;
                }
            }
            if let Ok(v) = t[end_of(start)..end_of(i)].parse::<f64>() {
                out.push((v, end_of(i)));
            }
        } else if cn_digit(c).is_some() || cn_unit(c).is_some() {
            let (mut total, mut cur, mut has_unit) = (0.0, None::<f64>, false);
            while let Some(&(_, c)) = chars.get(i) {
                if let Some(d) = cn_digit(c) {
                    // Bare digits read digit by digit (「一二」→12); after a unit a digit starts afresh.
                    cur = Some(match cur {
                        Some(p) if !has_unit => p * 10.0 + d,
                        _ => d,
                    });
                } else if let Some(u) = cn_unit(c) {
                    total += cur.unwrap_or(1.0) * u;
                    (cur, has_unit) = (None, true);
                } else {
                    break;
                }
                i += 1;
            }
            out.push((total + cur.unwrap_or(0.0), end_of(i)));
        } else {
            i += 1;
        }
    }
    out
}

/// An age in months from 「8個月」「1歲半」「一歲三個月」「三週」「剛出生」; a bare number is months.
fn months(t: &str) -> Option<f64> {
    let nums = numbers(t);
    let Some(&(first, end)) = nums.first() else {
        return ["剛出生", "剛生", "新生"]
            .iter()
            .any(|w| t.contains(w))
            .then_some(0.0);
    };
    let rest = t[end..].trim_start();
    let starts = |words: &[&str]| words.iter().any(|w| rest.starts_with(w));
    if starts(&["歲半", "年半"]) {
        return Some(first * 12.0 + 6.0);
    }
    if starts(&["歲", "年"]) {
        // 「1歲3個月」: add a month count that follows directly.
        let extra = nums
            .get(1)
            .filter(|&&(_, e)| t[e..].trim_start().starts_with(['個', '月']))
            .map_or(0.0, |&(v, _)| v);
        return Some(first * 12.0 + extra);
    }
    if starts(&["週", "周", "星期", "禮拜", "個星期", "個禮拜"]) {
        return Some(first * 7.0 / 30.0);
    }
    if starts(&["天", "日"]) {
        return Some(first / 30.0);
    }
    Some(first)
}

/// 是/有/對/要/沒錯/好 → yes; 不是/沒有/否/不要/沒 → no; 「不知道」 and anything else → not understood.
fn yes_no(t: &str) -> Option<bool> {
    const UNSURE: &[&str] = &["不知道", "不確定", "不清楚", "不曉得"];
    const YES_DESPITE_NEGATION: &[&str] = &["沒錯", "沒問題", "不錯"];
    const NO: &[&str] = &["不是", "沒有", "不要", "不對", "否", "沒", "不", "無"];
    const YES: &[&str] = &["是", "有", "對", "要", "好", "嗯", "恩", "ok", "yes"];
    let any = |words: &[&str]| words.iter().any(|w| t.contains(w));
    if any(UNSURE) {
        None
    } else if any(YES_DESPITE_NEGATION) || t == "y" {
        Some(true)
    } else if any(NO) || t == "n" || t == "no" {
        Some(false)
    } else if any(YES) {
        Some(true)
    } else {
        None
    }
}

const OPS: [&str; 6] = ["==", "!=", "<", "<=", ">", ">="];

/// One `id OP value` clause of a condition.
struct Clause {
    id: String,
    op: &'static str,
    value: String,
}

/// Parses `id OP value [and id OP value ...]` (tokens separated by spaces).
fn parse_condition(cond: &str) -> Result<Vec<Clause>, String> {
    cond.split(" and ")
        .map(|part| {
            let tokens: Vec<&str> = part.split_whitespace().collect();
            let [id, op, value] = tokens[..] else {
                return Err(format!("expected `step OP value`, got `{}`", part.trim()));
            };
            let op = OPS
                .into_iter()
                .find(|o| *o == op)
                .ok_or_else(|| format!("unknown operator `{op}`"))?;
            Ok(Clause {
                id: id.to_string(),
                op,
                value: value.to_string(),
            })
        })
        .collect()
}

/// Checks a condition against the steps it may use: known ids and values of the right kind.
fn check_condition(cond: &str, steps: &[&Step]) -> Result<(), String> {
    for c in parse_condition(cond)? {
        let step = steps
            .iter()
            .find(|s| s.id == c.id)
            .ok_or_else(|| format!("unknown step id `{}`", c.id))?;
        let equality = matches!(c.op, "==" | "!=");
        match step.kind {
            StepKind::Number if c.value.parse::<i64>().is_err() => {
                return Err(format!(
                    "step `{}` is a number; compare it with a whole number",
                    c.id
                ))
            }
            StepKind::YesNo if !equality || !["true", "false"].contains(&c.value.as_str()) => {
                return Err(format!(
                    "step `{}` is yes/no; use == or != with true or false",
                    c.id
                ))
            }
            StepKind::Choice if !equality || !step.options.iter().any(|o| o.value == c.value) => {
                return Err(format!(
                    "step `{}` is a choice; use == or != with one of its option values, not `{}`",
                    c.id, c.value
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether a condition holds; no condition always holds, and a clause on an unanswered
/// (skipped) step is false whatever its operator.
fn holds(cond: Option<&str>, answers: &BTreeMap<String, Value>) -> bool {
    let Some(cond) = cond else { return true };
    let Ok(clauses) = parse_condition(cond) else {
        return false;
    };
    clauses.iter().all(|c| {
        let text = |eq: bool| matches!(c.op, "==" | "!=").then_some(if eq { Equal } else { Less });
        let ordering = match answers.get(&c.id) {
            None => None,
            Some(Value::Number(n)) => c.value.parse::<i64>().ok().map(|v| n.cmp(&v)),
            Some(Value::Bool(b)) => text(b.to_string() == c.value),
            Some(Value::Choice(s)) => text(*s == c.value),
        };
        ordering.is_some_and(|o| match c.op {
            "==" => o.is_eq(),
            "!=" => o.is_ne(),
            "<" => o.is_lt(),
            "<=" => o.is_le(),
            ">" => o.is_gt(),
            _ => o.is_ge(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus")
    }

    fn shipped(id: &str) -> Walkthrough {
        let all = load_dir(&corpus().join("walkthroughs")).expect("shipped walk-throughs load");
        all.into_iter()
            .find(|w| w.id() == id)
            .expect("walk-through present")
    }

    /// Runs the replies and returns every turn, the first question included.
    fn run(wt: &Walkthrough, replies: &[&str]) -> (Session, Vec<Turn>) {
        let mut s = wt.start();
        let mut turns = vec![s.first(wt)];
        for r in replies {
            turns.push(s.reply(wt, r));
        }
        (s, turns)
    }

    fn asked(turns: &[Turn]) -> Vec<&str> {
        turns
            .iter()
            .filter_map(|t| match t {
                Turn::Ask { step_id, .. } => Some(step_id.as_str()),
                _ => None,
            })
            .collect()
    }

    fn done(turn: &Turn) -> &Outcome {
        match turn {
            Turn::Done(o) => o,
            other => panic!("expected an outcome, got {other:?}"),
        }
    }

    fn has(o: &Outcome, text: &str) -> bool {
        o.items.iter().any(|i| i.text == text)
    }

    /// The guide's sections (概要 for the text before the first heading), list markers removed.
    fn guide_sections(doc_id: &str) -> BTreeMap<String, String> {
        let text =
            std::fs::read_to_string(corpus().join("guides").join(format!("{doc_id}.md"))).unwrap();
        let body = text.splitn(3, "+++").nth(2).expect("front matter");
        let (mut sections, mut name, mut buf) =
            (BTreeMap::new(), "概要".to_string(), String::new());
        for line in body.lines() {
            if let Some(h) = line.strip_prefix("## ") {
                sections.insert(
                    std::mem::replace(&mut name, h.trim().to_string()),
                    std::mem::take(&mut buf),
                );
                continue;
            }
            let line = line.trim_start();
            let digits = line.chars().take_while(char::is_ascii_digit).count();
            let line = line
                .strip_prefix("- ")
                .or_else(|| {
                    (digits > 0)
                        .then(|| line[digits..].strip_prefix(". "))
                        .flatten()
                })
                .unwrap_or(line);
            buf.push_str(line);
            buf.push('\n');
        }
        sections.insert(name, buf);
        sections
    }

    #[test]
    fn shipped_definitions_load_and_validate() {
        let all = load_dir(&corpus().join("walkthroughs")).unwrap();
        let ids: Vec<&str> = all.iter().map(|w| w.id()).collect();
        assert_eq!(ids, ["childcare-allowance-under-2", "senior-card"]);
        for wt in &all {
            assert!(
                corpus()
                    .join("guides")
                    .join(format!("{}.md", wt.doc_id()))
                    .is_file(),
                "{}",
                wt.doc_id()
            );
            assert!(!wt.title().is_empty() && !wt.intro().is_empty());
        }
    }

    #[test]
    fn every_outcome_item_is_verbatim_text_of_its_guide_section() {
        for wt in load_dir(&corpus().join("walkthroughs")).unwrap() {
            let sections = guide_sections(wt.doc_id());
            let mut checked = 0;
            for outcome in &wt.outcomes {
                for item in &outcome.items {
                    let section = sections.get(&item.section).unwrap_or_else(|| {
                        panic!("{}: no section {} in the guide", wt.id(), item.section)
                    });
                    let text = item.text.trim_end_matches(['。', '，', '；', '：']);
                    assert!(
                        section.contains(text),
                        "{} / {}: not in 「{}」: {text}",
                        wt.id(),
                        outcome.id,
                        item.section
                    );
                    checked += 1;
                }
            }
            assert!(checked >= 10, "{}: only {checked} items", wt.id());
        }
    }

    #[test]
    fn senior_card_proxy_at_the_counter_skips_the_indigenous_question() {
        let wt = shipped("senior-card");
        let (s, turns) = run(
            &wt,
            &[
                "第一次申請",
                "我媽今年七十二歲",
                "有，設在本市",
                "我幫我媽辦",
                "去區公所",
            ],
        );
        assert_eq!(
            asked(&turns),
            ["request", "age", "resident", "applicant", "channel"]
        );
        assert_eq!(s.answers["age"], Value::Number(72));
        let o = done(turns.last().unwrap());
        assert_eq!(o.id, "first-application");
        assert!(has(
            o,
            "代辦：代理人身分證、委託書，以及長者的身分證或戶口名簿。"
        ));
        assert!(has(
            o,
            "臨櫃申請：攜帶證件與照片到受理地點填申請表，收件後由票證公司製卡。"
        ));
        assert!(has(o, "行動不便的長者可請里長或里幹事協助代辦。"));
        assert!(!has(o, "本人國民身分證正本。"));
        assert!(!has(o, "線上申請從審核到寄達約2至4週。"));
        assert!(s.finished && s.current.is_none());
    }

    #[test]
    fn senior_card_indigenous_elder_of_sixty_is_asked_and_eligible_online() {
        let wt = shipped("senior-card");
        let (_, turns) = run(&wt, &["第一次", "六十歲", "是", "對", "我自己", "上網"]);
        assert_eq!(
            asked(&turns),
            [
                "request",
                "age",
                "indigenous",
                "resident",
                "applicant",
                "channel"
            ]
        );
        let o = done(turns.last().unwrap());
        assert_eq!(o.id, "first-application");
        assert!(has(o, "原住民長者多放寬到55歲起申請。"));
        assert!(has(o, "本人國民身分證正本。"));
        assert!(has(
            o,
            "線上申辦時，可用 MyData 同意系統帶入個人戶籍資料，免附戶籍證明。"
        ));
        assert!(!has(o, "臨櫃申請約2至4週製卡完成，有些城市可以當場製卡。"));
    }

    #[test]
    fn senior_card_under_age_ends_right_after_the_age() {
        let wt = shipped("senior-card");
        let (s, turns) = run(&wt, &["第一次", "快五十了"]);
        assert_eq!(asked(&turns), ["request", "age"]);
        let o = done(&turns[2]);
        assert_eq!(o.id, "too-young");
        assert!(has(
            o,
            "設籍本市、年滿65歲的長者。原住民長者多放寬到55歲起申請。"
        ));
        assert_eq!(s.answers.len(), 2);

        let (_, turns) = run(&wt, &["第一次", "62", "不是"]);
        assert_eq!(done(&turns[3]).id, "too-young-not-indigenous");
        let (_, turns) = run(&wt, &["第一次", "70", "沒有，戶籍在台南"]);
        assert_eq!(done(&turns[3]).id, "not-resident");
    }

    #[test]
    fn lost_card_skips_every_first_application_step() {
        let wt = shipped("senior-card");
        let (s, turns) = run(&wt, &["卡片掉了"]);
        let o = done(&turns[1]);
        assert_eq!(o.id, "replacement");
        assert!(has(
            o,
            "請盡快打1999或到區公所掛失，避免被人冒用，再申請補發（要付工本費）。"
        ));
        assert_eq!(s.answers.keys().collect::<Vec<_>>(), ["request"]);
        let (_, turns) = run(&wt, &["卡壞了刷不過"]);
        let o = done(&turns[1]);
        assert_eq!(o.id, "replacement");
        assert!(!has(
            o,
            "請盡快打1999或到區公所掛失，避免被人冒用，再申請補發（要付工本費）。"
        ));
        assert!(has(
            o,
            "卡片遺失、損壞要補發時，需自付工本費，金額依本市與票證公司規定。"
        ));
    }

    #[test]
    fn childcare_second_child_low_income_online() {
        let wt = shipped("childcare-allowance-under-2");
        let replies = [
            "八個月",
            "是",
            "我是媽媽",
            "沒有，都不到",
            "我們自己在家帶",
            "沒有",
            "第二胎",
            "低收入戶",
            "上網申請",
        ];
        let (s, turns) = run(&wt, &replies);
        assert_eq!(asked(&turns).len(), 9);
        assert_eq!(s.answers["age"], Value::Number(8));
        assert_eq!(s.answers["tax"], Value::Choice("below".into()));
        assert_eq!(s.answers["care"], Value::Choice("home".into()));
        let o = done(turns.last().unwrap());
        assert_eq!(o.id, "eligible");
        assert!(has(o, "第二胎6,000元"));
        assert!(!has(o, "第一胎每月5,000元"));
        assert!(has(o, "低收入戶另有其他兒童生活補助可以申請。"));
        assert!(has(o, "本市指定的線上申辦平台"));
        assert!(!has(o, "孩子出生後60天內提出申請的，可以追溯到出生當月。"));
    }

    #[test]
    fn childcare_newborn_first_child_at_the_counter() {
        let wt = shipped("childcare-allowance-under-2");
        let (s, turns) = run(
            &wt,
            &[
                "剛出生",
                "是",
                "爸爸",
                "不確定",
                "1",
                "否",
                "1",
                "一般家庭",
                "臨櫃",
            ],
        );
        assert_eq!(s.answers["age"], Value::Number(0));
        assert_eq!(s.answers["care"], Value::Choice("home".into()));
        let o = done(turns.last().unwrap());
        assert_eq!(o.id, "eligible");
        assert!(has(o, "第一胎每月5,000元"));
        assert!(has(o, "孩子出生後60天內提出申請的，可以追溯到出生當月。"));
        assert!(has(o, "兒童戶籍地區公所社會課"));
        assert!(o.items.iter().any(|i| i.text.contains("稅率未達20%")));
        assert!(!o.items.iter().any(|i| i.text.contains("中低收入戶")));
    }

    #[test]
    fn childcare_early_exits() {
        let wt = shipped("childcare-allowance-under-2");
        let (s, turns) = run(
            &wt,
            &["1歲半", "是", "媽媽", "沒有", "送準公共化的托嬰中心"],
        );
        assert_eq!(s.answers["age"], Value::Number(18));
        assert_eq!(done(&turns[5]).id, "public-childcare");
        let (_, turns) = run(&wt, &["兩歲三個月"]);
        assert_eq!(done(&turns[1]).id, "too-old");
        let (_, turns) = run(&wt, &["5個月", "是", "阿嬤"]);
        assert_eq!(done(&turns[3]).id, "not-parent");
        let (_, turns) = run(&wt, &["5個月", "是", "媽媽", "有，我老公是20%"]);
        assert_eq!(done(&turns[4]).id, "tax-rate");
    }

    #[test]
    fn nonsense_and_out_of_range_replies_re_ask_the_same_question() {
        let wt = shipped("senior-card");
        let mut s = wt.start();
        s.first(&wt);
        let Turn::Ask {
            step_id,
            question,
            options,
            reprompt,
        } = s.reply(&wt, "嗯嗯")
        else {
            panic!()
        };
        assert_eq!((step_id.as_str(), reprompt), ("request", true));
        assert!(
            question.contains("1. 第一次申請") && question.ends_with("還是卡片遺失或損壞要補發？")
        );
        assert_eq!(options.len(), 3);
        s.reply(&wt, "第一次");
        let Turn::Ask {
            step_id,
            question,
            reprompt,
            ..
        } = s.reply(&wt, "我不記得耶")
        else {
            panic!()
        };
        assert_eq!((step_id.as_str(), reprompt), ("age", true));
        assert!(question.contains("請回答數字，例如 70"));
        let Turn::Ask {
            step_id,
            question,
            reprompt,
            ..
        } = s.reply(&wt, "150")
        else {
            panic!()
        };
        assert_eq!((step_id.as_str(), reprompt), ("age", true));
        assert!(question.contains("150"));
        assert_eq!(s.answers.len(), 1);
        let Turn::Ask {
            step_id, reprompt, ..
        } = s.reply(&wt, "８０")
        else {
            panic!()
        };
        assert_eq!((step_id.as_str(), reprompt), ("resident", false));
    }

    #[test]
    fn cancel_words_end_the_session_for_good() {
        let wt = shipped("senior-card");
        let (s, turns) = run(&wt, &["第一次", "不用了，謝謝"]);
        assert_eq!(turns[2], Turn::Cancelled);
        assert!(s.finished && s.cancelled);
        let mut s = s;
        assert_eq!(s.reply(&wt, "70"), Turn::Cancelled);
        assert_eq!(s.answers.len(), 1);
    }

    #[test]
    fn a_session_survives_a_json_round_trip() {
        let wt = shipped("senior-card");
        let (s, _) = run(&wt, &["第一次", "70"]);
        let json = serde_json::to_string(&s).unwrap();
        let mut back: Session = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.answers["age"], Value::Number(70));
        assert!(
            matches!(back.first(&wt), Turn::Ask { ref step_id, reprompt: false, .. } if step_id == "resident")
        );
        back.reply(&wt, "是");
        back.reply(&wt, "本人");
        assert_eq!(done(&back.reply(&wt, "臨櫃")).id, "first-application");
        // A session of another walk-through is not driven by this one.
        let mut other = shipped("childcare-allowance-under-2").start();
        assert_eq!(other.reply(&wt, "是"), Turn::Cancelled);
    }

    const BROKEN: &str = r#"
        id = "t"
        doc_id = "t"
        title = "t"
        intro = "t"
        [[steps]]
        id = "age"
        question = "幾歲？"
        kind = "number"
        min = 0
        max = 130
        [[outcomes]]
        id = "young"
        when = "agee < 65"
        summary = "s"
        items = [{ section = "申請資格", text = "x" }]
        [[outcomes]]
        id = "ok"
        summary = "s"
        items = [{ section = "費用", text = "y" }]
    "#;

    #[test]
    fn validation_names_the_file_and_the_unknown_step() {
        let err = Walkthrough::from_toml(BROKEN, "broken.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("broken.toml")
                && err.contains("`young`")
                && err.contains("unknown step id `agee`"),
            "{err}"
        );
        let later = BROKEN
            .replace("kind = \"number\"", "kind = \"number\"\nwhen = \"age > 3\"")
            .replace("agee", "age");
        let err = Walkthrough::from_toml(&later, "later.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("step `age`") && err.contains("earlier steps"),
            "{err}"
        );
        assert!(Walkthrough::from_toml(&BROKEN.replace("agee", "age"), "fixed.toml").is_ok());
    }

    #[test]
    fn validation_rejects_inconsistent_definitions() {
        let fixed = BROKEN.replace("agee", "age");
        let extra_step =
            "[[steps]]\nid = \"age\"\nquestion = \"q\"\nkind = \"yes_no\"\n[[outcomes]]\nid = \"young\"";
        // (text to replace, replacement, expected part of the error)
        let cases = [
            (
                "kind = \"number\"",
                "kind = \"choice\"",
                "a choice step needs options",
            ),
            ("max = 130", "", "a number step needs min and max"),
            (
                "[[outcomes]]\n        id = \"young\"",
                extra_step,
                "duplicate step id",
            ),
            ("id = \"ok\"", "id = \"young\"", "duplicate outcome id"),
            (
                "when = \"age < 65\"",
                "",
                "the outcomes after it are unreachable",
            ),
            (
                "id = \"ok\"",
                "id = \"ok\"\nwhen = \"age > 1\"",
                "must have no condition",
            ),
            ("age < 65", "age == old", "compare it with a whole number"),
            ("age < 65", "age <> 65", "unknown operator `<>`"),
        ];
        for (from, to, want) in cases {
            assert!(fixed.contains(from), "{from}");
            let err = Walkthrough::from_toml(&fixed.replacen(from, to, 1), "case.toml")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("case.toml") && err.contains(want),
                "want {want:?}, got {err}"
            );
        }
    }

    #[test]
    fn numbers_in_arabic_full_width_and_chinese() {
        let first = |t: &str| numbers(&normalize(t)).first().map(|&(v, _)| v as i64);
        assert_eq!(first("七十二歲"), Some(72));
        assert_eq!(first("快七十了"), Some(70));
        assert_eq!(first("７２"), Some(72));
        assert_eq!(first("她一百零二歲"), Some(102));
        assert_eq!(first("十五"), Some(15));
        assert_eq!(first("兩個"), Some(2));
        assert_eq!(first("大概 68 吧，明年 69"), Some(68));
        assert_eq!(first("不知道"), None);
        let m = |t: &str| months(&normalize(t)).map(|v| v as i64);
        assert_eq!(m("1歲半"), Some(18));
        assert_eq!(m("一歲三個月"), Some(15));
        assert_eq!(m("八個月"), Some(8));
        assert_eq!(m("三週"), Some(0));
        assert_eq!(m("剛出生"), Some(0));
        assert_eq!(m("1.5歲"), Some(18));
    }

    #[test]
    fn yes_no_and_choices_by_label_synonym_or_index() {
        for (t, want) in [
            ("是", Some(true)),
            ("有喔", Some(true)),
            ("沒錯", Some(true)),
            ("不是", Some(false)),
            ("沒有", Some(false)),
            ("否", Some(false)),
            ("不知道", None),
            ("台北", None),
        ] {
            assert_eq!(yes_no(t), want, "{t}");
        }
        let wt = shipped("childcare-allowance-under-2");
        let household = wt.step("household").unwrap();
        let pick = |t: &str| household.choose(&normalize(t)).map(|o| o.value.as_str());
        assert_eq!(pick("中低收入戶"), Some("middle_low"));
        assert_eq!(pick("我們是低收入戶"), Some("low"));
        assert_eq!(pick("第二個"), Some("middle_low"));
        assert_eq!(pick("3"), Some("low"));
        assert_eq!(pick("４"), None);
        assert_eq!(pick("一般"), Some("general"));
        assert_eq!(pick("不知道"), None);
    }

    #[test]
    fn render_cites_each_item_by_guide_section() {
        let o = Outcome {
            id: "x".into(),
            summary: "要準備：".into(),
            items: vec![OutcomeItem {
                section: "應備文件".into(),
                text: "本人國民身分證正本。".into(),
            }],
        };
        assert_eq!(
            o.render("敬老卡"),
            "要準備：\n・本人國民身分證正本（出處：敬老卡・應備文件）"
        );
    }

    #[test]
    fn matches_needs_the_service_and_a_guidance_cue() {
        let senior = shipped("senior-card");
        let child = shipped("childcare-allowance-under-2");
        assert!(senior.matches("可以一步一步帶我辦敬老卡嗎"));
        assert!(senior.matches("我媽要辦老人卡，我該準備什麼？"));
        assert!(!senior.matches("敬老卡每個月有幾點？"));
        assert!(!senior.matches("育兒津貼要怎麼辦"));
        assert!(child.matches("育兒津貼要怎麼辦"));
    }
}
