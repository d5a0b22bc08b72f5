//! `eval extract`: field-level precision, recall and F1 of the form extractor on a JSONL set
//! `{"id", "text", "expected": {field: value}}` (EVAL.md). Cases may omit `text` and be looked up
//! by id in a reports CSV (`--texts`): the project keeps its streetlight labels without the
//! city's text, which stays in `../shared/data`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use assistant::app::App;
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct ExtractArgs {
    /// Form schema name (`streetlight_report`, `senior_card`, …).
    #[arg(long)]
    pub schema: String,
    /// JSONL cases.
    #[arg(long)]
    pub cases: PathBuf,
    /// CSV of reports (id column first) supplying the text of cases that have none: the text
    /// is the location column, a newline, then the description column.
    #[arg(long)]
    pub texts: Option<PathBuf>,
    /// Use the e5 embedder in the category classifier (`on`) or keywords and bigrams only.
    #[arg(long, default_value = "on")]
    pub dense: String,
    /// Let the LLM fill required fields the rules missed (`on`) — slow on CPU.
    #[arg(long, default_value = "off")]
    pub llm: String,
    /// Print every wrong field.
    #[arg(long)]
    pub errors: bool,
}

/// A minimal RFC 4180 reader (quoted fields with commas, quotes and newlines).
pub fn read_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.trim_start_matches('\u{feff}').chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' => quoted = false,
                c => field.push(c),
            }
        } else {
            match c {
                '"' => quoted = true,
                ',' => row.push(std::mem::take(&mut field)),
                '\n' => {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                '\r' => {}
                c => field.push(c),
            }
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// Normalises a string for comparison: width, whitespace, 臺/台, Chinese numerals → Arabic.
pub fn normalise(s: &str) -> String {
    let folded: String = s
        .chars()
        .map(|c| match knowledge::text::fold_width_char(c) {
            '臺' => '台',
            c => c,
        })
        .filter(|c| !c.is_whitespace())
        .collect();
    // Chinese numerals (up to 99) → Arabic.
    let digit = |c: char| "零一二三四五六七八九".chars().position(|x| x == c);
    let cs: Vec<char> = folded.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < cs.len() {
        let start = i;
        while i < cs.len() && (digit(cs[i]).is_some() || cs[i] == '十') {
            i += 1;
        }
        if i == start {
            out.push(cs[i]);
            i += 1;
            continue;
        }
        let run = &cs[start..i];
        let value = (run.contains(&'十') && run.len() <= 3)
            .then(|| knowledge::text::parse_number(&run.iter().collect::<String>()))
            .flatten();
        match value {
            Some(v) => out.push_str(&v.to_string()),
            None => {
                if run.iter().all(|c| digit(*c).is_some()) && run.len() == 1 {
                    out.push_str(&digit(run[0]).unwrap_or(0).to_string());
                } else {
                    out.extend(run.iter());
                }
            }
        }
    }
    out
}

fn as_set(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => {
            let mut s: Vec<String> = a.iter().map(scalar).collect();
            s.sort();
            s.dedup();
            s
        }
        Value::Null => Vec::new(),
        v => vec![scalar(v)],
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => normalise(s),
        Value::Null => String::new(),
        v => v.to_string(),
    }
}

#[derive(Default, Clone, Copy)]
struct Counts {
    tp: f64,
    fp: f64,
    fn_: f64,
}

impl Counts {
    fn prf(&self) -> (f64, f64, f64) {
        let p = if self.tp + self.fp > 0.0 {
            self.tp / (self.tp + self.fp)
        } else {
            1.0
        };
        let r = if self.tp + self.fn_ > 0.0 {
            self.tp / (self.tp + self.fn_)
        } else {
            1.0
        };
        let f = if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        };
        (p, r, f)
    }
}

/// Scores one field; returns whether it was right.
fn score(expected: &Value, got: Option<&Value>, c: &mut Counts) -> bool {
    let got = got.unwrap_or(&Value::Null);
    if expected.is_array() || got.is_array() {
        let (e, g) = (as_set(expected), as_set(got));
        let tp = e.iter().filter(|x| g.contains(x)).count() as f64;
        c.tp += tp;
        c.fp += g.len() as f64 - tp;
        c.fn_ += e.len() as f64 - tp;
        return e == g;
    }
    match (expected.is_null(), got.is_null()) {
        (true, true) => true,
        (true, false) => {
            c.fp += 1.0;
            false
        }
        (false, true) => {
            c.fn_ += 1.0;
            false
        }
        (false, false) => {
            if scalar(expected) == scalar(got) {
                c.tp += 1.0;
                true
            } else {
                c.fp += 1.0;
                c.fn_ += 1.0;
                false
            }
        }
    }
}

fn read_texts(path: &Path) -> anyhow::Result<HashMap<String, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let rows = read_csv(&text);
    Ok(rows
        .into_iter()
        .skip(1)
        .filter(|r| r.len() >= 4)
        .map(|r| {
            (
                r[0].trim().to_string(),
                format!("{}\n{}", r[2].trim(), r[3].trim()),
            )
        })
        .collect())
}

pub async fn run(app: &App, a: &ExtractArgs) -> anyhow::Result<Value> {
    let mut extractor = app.extractor(false)?;
    extractor.form(&a.schema)?;
    if a.dense == "on"
        && extractor
            .form(&a.schema)?
            .fields
            .iter()
            .any(|f| f.kind == knowledge::FieldKind::Category)
    {
        extractor = extractor.with_embedder(app.embedder()?)?;
    }
    if a.llm == "on" {
        let llm = app
            .llm()?
            .context("--llm on needs an LLM backend configured ([llm] backend = local|remote)")?;
        extractor = extractor.with_llm(assistant::intake::extract::llm_fill::LlmFiller::new(llm));
    }
    let texts = a.texts.as_deref().map(read_texts).transpose()?;
    let raw = std::fs::read_to_string(&a.cases)
        .with_context(|| format!("reading {}", a.cases.display()))?;
    let mut per_field: BTreeMap<String, Counts> = BTreeMap::new();
    let (mut n, mut exact) = (0usize, 0usize);
    let mut times = Vec::new();
    for (line_no, line) in raw.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let case: Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a case object", a.cases.display(), line_no + 1))?;
        let id = case["id"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| case["id"].to_string());
        let text = match case.get("text").and_then(Value::as_str) {
            Some(t) => t.to_string(),
            None => match texts.as_ref().and_then(|m| m.get(&id)) {
                Some(t) => t.clone(),
                None => bail!("case {id} has no text (give --texts with the reports CSV)"),
            },
        };
        let Some(expected) = case.get("expected").and_then(Value::as_object) else {
            bail!("case {id} has no `expected` object");
        };
        let t0 = std::time::Instant::now();
        let got = extractor.extract(&a.schema, &text)?.values();
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        let mut all = true;
        for (field, want) in expected {
            let c = per_field.entry(field.clone()).or_default();
            let ok = score(want, got.get(field), c);
            if !ok && a.errors {
                eprintln!(
                    "✗ {id} {field}: expected {want}, got {}",
                    got.get(field).unwrap_or(&Value::Null)
                );
            }
            all &= ok;
        }
        n += 1;
        exact += all as usize;
    }
    if n == 0 {
        bail!("no cases in {}", a.cases.display());
    }
    println!("{:<24} {:>6} {:>6} {:>6}", "field", "P", "R", "F1");
    let mut total = Counts::default();
    let mut per = serde_json::Map::new();
    let mut f1s = Vec::new();
    for (field, c) in &per_field {
        let (p, r, f) = c.prf();
        println!("{field:<24} {p:>6.3} {r:>6.3} {f:>6.3}");
        per.insert(field.clone(), json!({"p": p, "r": r, "f1": f}));
        f1s.push(f);
        total.tp += c.tp;
        total.fp += c.fp;
        total.fn_ += c.fn_;
    }
    let (_, _, micro) = total.prf();
    let macro_f1 = f1s.iter().sum::<f64>() / f1s.len().max(1) as f64;
    let p50 = eval::metrics::percentile(&times, 50.0);
    println!(
        "{n} cases, micro F1 {micro:.3}, macro F1 {macro_f1:.3}, exact {:.3}, p50 {p50:.1} ms",
        exact as f64 / n as f64
    );
    Ok(json!({
        "n": n,
        "micro_f1": micro,
        "macro_f1": macro_f1,
        "exact_match": exact as f64 / n as f64,
        "per_field": per,
        "p50_ms": p50,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_commas_and_newlines() {
        let rows = read_csv("\u{feff}a,b,c\n1,\"x, \"\"y\"\"\nz\",3\n");
        assert_eq!(rows[1], vec!["1", "x, \"y\"\nz", "3"]);
    }

    #[test]
    fn normalisation_and_scoring() {
        assert_eq!(
            normalise("臺北市信義路四段１０號"),
            normalise("台北市信義路4段10號")
        );
        assert_ne!(normalise("信義路四段"), normalise("信義路三段"));
        let mut c = Counts::default();
        assert!(score(&json!(["1", "2"]), Some(&json!(["2", "1"])), &mut c));
        assert!(!score(&json!(null), Some(&json!("x")), &mut c));
        assert!(!score(&json!("a"), None, &mut c));
        assert_eq!((c.tp, c.fp, c.fn_), (2.0, 1.0, 1.0));
    }
}
