//! `extract`, `route` and `transcribe`: case intake from text or audio.

use std::path::Path;
use std::process::ExitCode;

use crate::app::App;

/// `assistant extract`.
pub(super) fn extract_cmd(
    app: &App,
    schema: &str,
    text: Option<String>,
    json: bool,
    llm: bool,
    no_models: bool,
    list: bool,
) -> anyhow::Result<ExitCode> {
    use crate::intake::extract::Source;
    let mut extractor = app.extractor(false)?;
    if list {
        for f in extractor.forms() {
            println!("{:<24} {}（{} 個欄位）", f.name, f.title, f.fields.len());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let form = extractor.form(schema)?.clone();
    let text = match text {
        Some(t) => t,
        None => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            s
        }
    };
    if text.trim().is_empty() {
        anyhow::bail!("請提供要解析的描述文字（參數或標準輸入）");
    }
    if text.chars().count() > 4000 {
        anyhow::bail!("描述太長（{} 字），上限 4000 字", text.chars().count());
    }
    let needs_category = form
        .fields
        .iter()
        .any(|f| f.kind == knowledge::FieldKind::Category);
    if needs_category && !no_models {
        extractor = extractor.with_embedder(app.embedder()?)?;
    }
    if llm {
        match app.llm()? {
            Some(model) => {
                extractor =
                    extractor.with_llm(crate::intake::extract::llm_fill::LlmFiller::new(model))
            }
            None => anyhow::bail!("--llm needs an LLM backend ([llm] backend = local|remote)"),
        }
    }
    let out = extractor.extract(schema, &text)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("表單：{}（{}）", form.title, form.name);
    for f in &form.fields {
        match out.fields.get(&f.name) {
            Some(v) => {
                let source = match v.source {
                    Source::Text => "原文",
                    Source::Llm => "模型",
                    Source::Default => "預設",
                    Source::Derived => "推得",
                };
                let span = v
                    .span
                    .map(|(s, e)| {
                        format!(" [{s}..{e}]「{}」", v.evidence.clone().unwrap_or_default())
                    })
                    .unwrap_or_default();
                println!(
                    "  {}：{}  （{source}，信心 {:.2}）{span}",
                    f.label, v.value, v.confidence
                );
            }
            None => println!("  {}：—", f.label),
        }
    }
    if let Some(b) = &out.bureau {
        println!("權責機關：{b}");
    }
    for p in &out.problems {
        println!("⚠ {}", p.message);
    }
    for q in &out.follow_ups {
        println!("？ {}", q.question);
    }
    Ok(ExitCode::SUCCESS)
}

/// `assistant transcribe FILE [--then-intake]`.
pub(super) fn transcribe_cmd(
    app: &App,
    file: &Path,
    then_intake: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let settings = &app.settings;
    let audio = voice::decode_file(file, settings.voice.max_file_secs)
        .map_err(|e| anyhow::anyhow!("無法讀取音檔 {}：{e}", file.display()))?;
    let transcriber = settings.voice.load(&settings.cache_root())?;
    let t = transcriber.transcribe(&audio.samples)?;
    if json {
        let mut out = serde_json::json!({
            "file": file.display().to_string(),
            "duration_secs": audio.duration_secs(),
            "warnings": audio.warnings,
            "segments": t.segments,
            "text": t.text,
            "converted_from_simplified": t.converted,
        });
        if then_intake && !t.text.is_empty() {
            let extractor = app.extractor(true)?;
            out["intake"] = serde_json::to_value(extractor.extract("case_report", &t.text)?)?;
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    for w in &audio.warnings {
        eprintln!("⚠ {w}");
    }
    if t.segments.is_empty() {
        println!("（沒有辨識到語音）");
        return Ok(ExitCode::SUCCESS);
    }
    let stamp = |ms: u64| format!("{:02}:{:02}.{:03}", ms / 60_000, ms / 1000 % 60, ms % 1000);
    for s in &t.segments {
        println!("[{} → {}] {}", stamp(s.start_ms), stamp(s.end_ms), s.text);
    }
    if then_intake {
        println!();
        return extract_cmd(app, "case_report", Some(t.text), false, false, false, false);
    }
    Ok(ExitCode::SUCCESS)
}

/// `assistant route`: which bureau handles a question or complaint.
pub(super) fn route(app: &App, text: &str, dense: bool) -> anyhow::Result<ExitCode> {
    let router = app.router(dense)?;
    for r in router.route(text)?.iter().take(3) {
        println!("{:<24} {:.2}", r.bureau, r.probability);
    }
    Ok(ExitCode::SUCCESS)
}
