//! `ingest` and `search`: building the index and looking into it.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use knowledge::LoadOptions;
use retrieval::{Retriever, SearchOptions};

pub(super) async fn ingest(
    r: &mut Retriever,
    paths: &[PathBuf],
    index_questions: bool,
) -> anyhow::Result<()> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("  embedding {bar:30} {pos}/{len} sections ({eta})")
            .expect("progress template"),
    );
    let progress = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let opts = LoadOptions { index_questions };
    let out = crate::kb::ingest(r, paths, &opts, &progress).await?;
    bar.finish_and_clear();
    for p in &out.problems {
        eprintln!("  ⚠ {p}");
    }
    let rep = &out.report;
    println!(
        "ingested {} files: {} added, {} updated, {} unchanged, {} removed ({} sections embedded, {} problems, {} empty entries skipped)",
        out.files,
        rep.added,
        rep.updated,
        rep.unchanged,
        rep.removed,
        rep.chunks_embedded,
        out.problems.len(),
        out.empty
    );
    Ok(())
}

fn snippet(text: &str, n: usize) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut s: String = one_line.chars().take(n).collect();
    if one_line.chars().count() > n {
        s.push('…');
    }
    s
}

pub(super) async fn search_once(
    r: &Retriever,
    query: &str,
    opts: &SearchOptions,
    explain: bool,
    json: bool,
) -> anyhow::Result<()> {
    let hits = r.search(query, opts).await.context("searching")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&hits)?);
        return Ok(());
    }
    if hits.is_empty() {
        println!("（找不到相關的服務說明，建議撥打1999由專人為您服務）");
    }
    for (i, h) in hits.iter().enumerate() {
        let c = &h.chunk;
        println!(
            "{}. [{:.4}] {}｜{}  ({}{})",
            i + 1,
            h.score,
            c.doc_title,
            if c.heading.is_empty() {
                c.section.label()
            } else {
                &c.heading
            },
            c.doc_id,
            c.bureau
                .as_deref()
                .map(|b| format!(", {b}"))
                .unwrap_or_default()
        );
        println!("   {}", snippet(&c.text, 90));
        if explain {
            for part in &h.contributions {
                println!(
                    "     {:<5} rank {:>3}  raw {:>8.4}  rrf {:.5}",
                    part.source, part.rank, part.raw_score, part.rrf
                );
            }
            if h.contributions.len() == 1 {
                println!("     (found by one retriever only)");
            }
        }
    }
    Ok(())
}

pub(super) async fn interactive(
    r: &Retriever,
    opts: &SearchOptions,
    explain: bool,
) -> anyhow::Result<()> {
    println!(
        "已載入 {} 份服務說明（{} 個段落）。請輸入問題，空白行結束。",
        r.num_documents(),
        r.num_chunks()
    );
    let stdin = std::io::stdin();
    loop {
        print!("問題> ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        search_once(r, line.trim(), opts, explain, false).await?;
    }
    Ok(())
}
