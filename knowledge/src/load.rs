//! Loaders: the project's Markdown guides, the Kaohsiung FAQ JSON and the Keelung pages JSON,
//! detected by shape. A malformed file or entry is reported with its path and line and skipped;
//! everything else still loads.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::document::{Document, Scope, Section, SectionKind, SourceFormat};
use crate::error::{Error, Result};
use crate::html::{html_to_text, tidy};

/// A problem with one file or one entry of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadProblem {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for LoadProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.path.display(), l, self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

/// A loaded document with the file it came from.
#[derive(Debug, Clone)]
pub struct LoadedDocument {
    pub document: Document,
    pub source: PathBuf,
}

#[derive(Debug, Default)]
pub struct Loaded {
    pub documents: Vec<LoadedDocument>,
    pub problems: Vec<LoadProblem>,
    /// Files read (including ones with problems).
    pub files: usize,
    /// Entries skipped because they had no content (not errors).
    pub empty: usize,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadOptions {
    /// Index an FAQ entry's question together with its answer (off: answers only).
    pub index_questions: bool,
}

/// Loads every corpus file under `path` (a directory is walked recursively; `.md` and `.json`).
pub fn load_path(path: &Path, opts: &LoadOptions) -> Result<Loaded> {
    let mut loaded = Loaded::default();
    let meta = std::fs::metadata(path).map_err(|e| Error::Io {
        op: "reading",
        path: path.to_path_buf(),
        source: e,
    })?;
    if meta.is_dir() {
        let mut files = Vec::new();
        walk(path, &mut files).map_err(|e| Error::Io {
            op: "listing",
            path: path.to_path_buf(),
            source: e,
        })?;
        files.sort();
        for f in files {
            load_file(&f, opts, &mut loaded);
        }
    } else {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext != "md" && ext != "json" {
            return Err(Error::UnknownFormat {
                path: path.to_path_buf(),
            });
        }
        load_file(path, opts, &mut loaded);
    }
    Ok(loaded)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("md" | "json"))
            && p.file_name().and_then(|n| n.to_str()) != Some("FORMAT.md")
            && p.file_name().and_then(|n| n.to_str()) != Some("README.md")
        {
            out.push(p);
        }
    }
    Ok(())
}

fn load_file(path: &Path, opts: &LoadOptions, loaded: &mut Loaded) {
    loaded.files += 1;
    let problem = |line: Option<usize>, message: String| LoadProblem {
        path: path.to_path_buf(),
        line,
        message,
    };
    let text = match std::fs::read(path) {
        Err(e) => {
            loaded
                .problems
                .push(problem(None, format!("cannot read: {e}")));
            return;
        }
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let offset = e.utf8_error().valid_up_to();
                let line = e.as_bytes()[..offset]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1;
                loaded
                    .problems
                    .push(problem(Some(line), "not valid UTF-8 text".into()));
                return;
            }
        },
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if path.extension().and_then(|e| e.to_str()) == Some("md") {
        match parse_guide(path, text) {
            Ok(doc) => loaded.documents.push(LoadedDocument {
                document: doc,
                source: path.to_path_buf(),
            }),
            Err(p) => loaded.problems.push(p),
        }
    } else {
        load_json(path, text, opts, loaded);
    }
}

fn line_of(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GuideMeta {
    id: String,
    title: String,
    #[serde(default)]
    aliases: Vec<String>,
    bureau: Option<String>,
    category: Option<String>,
    #[serde(default)]
    scope: Scope,
    #[serde(default)]
    city_specific: Vec<String>,
    #[serde(default)]
    sources: Vec<String>,
    last_reviewed: Option<String>,
    url: Option<String>,
    #[serde(default)]
    mydata_datasets: Vec<String>,
}

fn valid_iso_date(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 3
        && parts[0].len() == 4
        && parts[1].len() == 2
        && parts[2].len() == 2
        && parts.iter().all(|p| p.chars().all(|c| c.is_ascii_digit()))
        && (1..=12).contains(&parts[1].parse::<u32>().unwrap_or(0))
        && (1..=31).contains(&parts[2].parse::<u32>().unwrap_or(0))
}

/// Parses one Markdown guide (TOML front matter between `+++` lines, `##` sections).
pub fn parse_guide(path: &Path, text: &str) -> std::result::Result<Document, LoadProblem> {
    let problem = |line: usize, message: String| LoadProblem {
        path: path.to_path_buf(),
        line: Some(line),
        message,
    };
    let lines: Vec<&str> = text.lines().collect();
    if lines.first().map(|l| l.trim()) != Some("+++") {
        return Err(problem(
            1,
            "a guide must start with a `+++` front-matter line".into(),
        ));
    }
    let close = lines
        .iter()
        .skip(1)
        .position(|l| l.trim() == "+++")
        .map(|i| i + 1)
        .ok_or_else(|| problem(1, "front matter is not closed with `+++`".into()))?;
    let front = lines[1..close].join("\n");
    let meta: GuideMeta = toml::from_str(&front).map_err(|e| {
        let line = e.span().map(|s| line_of(&front, s.start) + 1).unwrap_or(2);
        problem(line, format!("front matter: {}", e.message()))
    })?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if meta.id != stem {
        return Err(problem(
            2,
            format!("id `{}` differs from the file name `{stem}`", meta.id),
        ));
    }
    if meta.title.trim().is_empty() {
        return Err(problem(2, "title is empty".into()));
    }
    if let Some(d) = &meta.last_reviewed {
        if !valid_iso_date(d) {
            return Err(problem(
                2,
                format!("last_reviewed `{d}` is not a YYYY-MM-DD date"),
            ));
        }
    }

    let mut sections = Vec::new();
    let mut kind = SectionKind::Overview;
    let mut heading = String::from(SectionKind::Overview.label());
    let mut in_faq = false;
    let mut buf: Vec<&str> = Vec::new();
    let mut flush = |kind: SectionKind, heading: &str, buf: &mut Vec<&str>| {
        let body = tidy(&buf.join("\n"));
        buf.clear();
        if !body.is_empty() {
            sections.push(Section {
                kind,
                heading: heading.to_string(),
                text: body,
            });
        }
    };
    for line in &lines[close + 1..] {
        if let Some(h) = line.strip_prefix("## ") {
            flush(kind, &heading, &mut buf);
            kind = SectionKind::from_heading(h);
            heading = h.trim().to_string();
            in_faq = kind == SectionKind::Faq;
        } else if let (true, Some(q)) = (in_faq, line.strip_prefix("### ")) {
            flush(kind, &heading, &mut buf);
            kind = SectionKind::Faq;
            heading = q.trim().to_string();
        } else {
            buf.push(line);
        }
    }
    flush(kind, &heading, &mut buf);
    if sections.is_empty() {
        return Err(problem(close + 2, "the guide has no text".into()));
    }
    for label in &meta.city_specific {
        if !sections
            .iter()
            .any(|s| s.kind.label() == label || &s.heading == label)
        {
            return Err(problem(
                2,
                format!("city_specific names `{label}`, which is not a section of this guide"),
            ));
        }
    }
    Ok(Document {
        id: meta.id,
        title: meta.title,
        title_indexed: true,
        aliases: meta.aliases,
        bureau: meta.bureau,
        category: meta.category,
        scope: meta.scope,
        city_specific: meta.city_specific,
        sources: meta.sources,
        last_reviewed: meta.last_reviewed,
        url: meta.url,
        mydata_datasets: meta.mydata_datasets,
        format: SourceFormat::Guide,
        sections,
    })
}

#[derive(Deserialize)]
struct FaqEntry {
    text: String,
    title: String,
    url: String,
    html: String,
}

#[derive(Deserialize)]
struct PageEntry {
    #[serde(default)]
    city: Option<String>,
    url: String,
    title: String,
    #[serde(default)]
    date: Option<String>,
    content: String,
}

fn load_json(path: &Path, text: &str, opts: &LoadOptions, loaded: &mut Loaded) {
    let problem = |line: Option<usize>, message: String| LoadProblem {
        path: path.to_path_buf(),
        line,
        message,
    };
    let entries: Vec<&RawValue> = match serde_json::from_str(text) {
        Ok(e) => e,
        Err(e) => {
            loaded.problems.push(problem(
                Some(e.line()),
                format!("not a JSON array of entries: {e}"),
            ));
            return;
        }
    };
    // Detect the shape from the first object entry's keys.
    let shape = entries.iter().find_map(|raw| {
        let v: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
        let o = v.as_object()?;
        if o.contains_key("html") && o.contains_key("text") {
            Some(SourceFormat::Faq)
        } else if o.contains_key("content") && o.contains_key("url") {
            Some(SourceFormat::WebPage)
        } else {
            None
        }
    });
    let Some(shape) = shape else {
        loaded.problems.push(problem(
            Some(1),
            "unrecognised JSON shape (expected FAQ entries {text,title,url,html} or pages {url,title,content})".into(),
        ));
        return;
    };
    let mut seen = std::collections::HashSet::new();
    for raw in entries {
        let offset = raw.get().as_ptr() as usize - text.as_ptr() as usize;
        let line = Some(line_of(text, offset));
        let doc = match shape {
            SourceFormat::Faq => match serde_json::from_str::<FaqEntry>(raw.get()) {
                Ok(e) => faq_document(e, opts),
                Err(err) => {
                    loaded
                        .problems
                        .push(problem(line, format!("FAQ entry skipped: {err}")));
                    continue;
                }
            },
            _ => match serde_json::from_str::<PageEntry>(raw.get()) {
                Ok(e) => page_document(e),
                Err(err) => {
                    loaded
                        .problems
                        .push(problem(line, format!("page entry skipped: {err}")));
                    continue;
                }
            },
        };
        let Some(doc) = doc else {
            loaded.empty += 1;
            continue;
        };
        if !seen.insert(doc.id.clone()) {
            loaded
                .problems
                .push(problem(line, format!("duplicate id `{}` skipped", doc.id)));
            continue;
        }
        loaded.documents.push(LoadedDocument {
            document: doc,
            source: path.to_path_buf(),
        });
    }
}

fn faq_document(e: FaqEntry, opts: &LoadOptions) -> Option<Document> {
    let mut answer = html_to_text(&e.html);
    for prefix in ["答覆內容：", "答覆內容:", "答："] {
        if let Some(rest) = answer.strip_prefix(prefix) {
            answer = rest.trim_start().to_string();
        }
    }
    let question = tidy(&e.text);
    if answer.is_empty() || e.url.trim().is_empty() {
        return None;
    }
    Some(Document {
        id: e.url.trim().to_string(),
        title: question,
        title_indexed: opts.index_questions,
        aliases: Vec::new(),
        bureau: Some(e.title.trim().to_string()).filter(|b| !b.is_empty()),
        category: None,
        scope: Scope::City,
        city_specific: Vec::new(),
        sources: Vec::new(),
        last_reviewed: None,
        url: Some(e.url.trim().to_string()),
        mydata_datasets: Vec::new(),
        format: SourceFormat::Faq,
        sections: vec![Section {
            kind: SectionKind::Answer,
            heading: SectionKind::Answer.label().into(),
            text: answer,
        }],
    })
}

/// Headings that introduce a section inside a page's flattened text (`申請資格：…`).
const PAGE_HEADINGS: &[&str] = &[
    "申請資格",
    "申請對象",
    "補助對象",
    "服務對象",
    "應備文件",
    "申請文件",
    "應備證件",
    "申請方式",
    "辦理方式",
    "申請流程",
    "申請地點",
    "辦理地點",
    "受理地點",
    "補助金額",
    "補助標準",
    "補助內容",
    "費用",
    "承辦單位",
    "聯絡電話",
    "洽詢電話",
    "法令依據",
    "相關法規",
    "處理期限",
];

fn page_document(e: PageEntry) -> Option<Document> {
    let content = tidy(&html_to_text(&e.content));
    if content.chars().count() < 20 || e.url.trim().is_empty() {
        return None;
    }
    // Split at known headings followed by a colon.
    let mut cuts: Vec<(usize, &str)> = Vec::new();
    for h in PAGE_HEADINGS {
        for (i, _) in content.match_indices(h) {
            let after = &content[i + h.len()..];
            if after.starts_with('：') || after.starts_with(':') {
                cuts.push((i, h));
            }
        }
    }
    cuts.sort();
    cuts.dedup_by_key(|c| c.0);
    let mut sections = Vec::new();
    let first = cuts.first().map(|c| c.0).unwrap_or(content.len());
    let head = content[..first].trim();
    if !head.is_empty() {
        sections.push(Section {
            kind: SectionKind::Overview,
            heading: SectionKind::Overview.label().into(),
            text: head.to_string(),
        });
    }
    for (n, (start, h)) in cuts.iter().enumerate() {
        let end = cuts.get(n + 1).map(|c| c.0).unwrap_or(content.len());
        let body = content[start + h.len()..end]
            .trim_start_matches(['：', ':'])
            .trim();
        if !body.is_empty() {
            sections.push(Section {
                kind: SectionKind::from_heading(h),
                heading: h.to_string(),
                text: body.to_string(),
            });
        }
    }
    Some(Document {
        id: e.url.trim().to_string(),
        title: tidy(&e.title),
        title_indexed: true,
        aliases: Vec::new(),
        bureau: e.city.map(|c| format!("{c}政府")),
        category: None,
        scope: Scope::City,
        city_specific: Vec::new(),
        sources: Vec::new(),
        last_reviewed: e.date,
        url: Some(e.url.trim().to_string()),
        mydata_datasets: Vec::new(),
        format: SourceFormat::WebPage,
        sections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUIDE: &str = "+++\nid = \"senior-card\"\ntitle = \"敬老卡申請\"\nbureau = \"社會局\"\ncity_specific = [\"申請資格\"]\nlast_reviewed = \"2026-11-20\"\n+++\n\n敬老卡讓長者搭車有優惠。\n\n## 申請資格\n年滿65歲。\n\n## 應備文件\n身分證。\n\n## 常見問題\n### 要多久？\n當場製卡。\n### 可以代辦嗎？\n可以。\n";

    #[test]
    fn guide_sections_and_faq_pairs() {
        let d = parse_guide(Path::new("senior-card.md"), GUIDE).unwrap();
        let kinds: Vec<_> = d
            .sections
            .iter()
            .map(|s| (s.kind, s.heading.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (SectionKind::Overview, "概要"),
                (SectionKind::Eligibility, "申請資格"),
                (SectionKind::Documents, "應備文件"),
                (SectionKind::Faq, "要多久？"),
                (SectionKind::Faq, "可以代辦嗎？"),
            ]
        );
        assert_eq!(d.sections[3].text, "當場製卡。");
        assert!(d.is_city_specific(&d.sections[1]));
        assert!(!d.is_city_specific(&d.sections[2]));
    }

    #[test]
    fn guide_errors_carry_lines() {
        let bad = GUIDE.replace("bureau = \"社會局\"", "bureau = 社會局");
        let p = parse_guide(Path::new("senior-card.md"), &bad).unwrap_err();
        assert_eq!(p.line, Some(4), "{p}");
        let p = parse_guide(Path::new("other.md"), GUIDE).unwrap_err();
        assert!(p.message.contains("file name"), "{p}");
        let p = parse_guide(
            Path::new("senior-card.md"),
            &GUIDE.replace("2026-11-20", "2026/11/20"),
        )
        .unwrap_err();
        assert!(p.message.contains("last_reviewed"));
    }

    #[test]
    fn json_entries_with_problems_are_skipped_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("faq.json");
        std::fs::write(
            &f,
            "[\n{\"text\":\"問1\",\"title\":\"社會局\",\"url\":\"u1\",\"html\":\"答覆內容：<br>甲\"},\n{\"text\":\"問2\",\"title\":\"社會局\"},\n{\"text\":\"問3\",\"title\":\"工務局\",\"url\":\"u3\",\"html\":\"乙\"}\n]",
        )
        .unwrap();
        let l = load_path(&f, &LoadOptions::default()).unwrap();
        assert_eq!(l.documents.len(), 2);
        assert_eq!(l.problems.len(), 1);
        assert_eq!(l.problems[0].line, Some(3));
        let d = &l.documents[0].document;
        assert_eq!(d.sections[0].text, "甲");
        assert!(!d.title_indexed);
        assert_eq!(d.bureau.as_deref(), Some("社會局"));
    }

    #[test]
    fn broken_json_reports_line_and_keeps_other_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.json"), "[\n{\"text\": \n").unwrap();
        std::fs::write(dir.path().join("senior-card.md"), GUIDE).unwrap();
        let l = load_path(dir.path(), &LoadOptions::default()).unwrap();
        assert_eq!(l.documents.len(), 1);
        assert_eq!(l.problems.len(), 1);
        assert!(l.problems[0].line.is_some());
        assert_eq!(l.files, 2);
    }

    #[test]
    fn pages_split_at_inline_headings() {
        let d = page_document(PageEntry {
            city: Some("基隆市".into()),
            url: "p1".into(),
            title: "敬老卡".into(),
            date: None,
            content: "本市長者福利說明。申請資格：年滿65歲設籍本市。應備文件：身分證、照片。"
                .into(),
        })
        .unwrap();
        let kinds: Vec<_> = d.sections.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            vec![
                SectionKind::Overview,
                SectionKind::Eligibility,
                SectionKind::Documents
            ]
        );
        assert_eq!(d.sections[1].text, "年滿65歲設籍本市。");
    }
}
