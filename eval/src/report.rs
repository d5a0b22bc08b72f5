//! The HTML report: one self-contained page with a table and SVG bar charts.

use std::fmt::Write;
use std::path::Path;

use anyhow::Context;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `rows`: (label, [(metric, value in 0..=1)]); `extra`: (metric, text) lines under the table.
pub fn write_html(
    dir: &Path,
    suite: &str,
    rows: &[(String, Vec<(String, f64)>)],
    extra: &[(String, String)],
) -> anyhow::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"zh-Hant-TW\"><meta charset=\"utf-8\"><title>評測報告 {suite}</title>\
         <style>body{{font-family:sans-serif;margin:2rem}}table{{border-collapse:collapse}}td,th{{border:1px solid #999;padding:.3rem .6rem;text-align:right}}</style>\
         <h1>評測報告：{suite}</h1><table><tr><th>模式</th>"
    );
    if let Some((_, first)) = rows.first() {
        for (m, _) in first {
            let _ = write!(html, "<th>{}</th>", esc(m));
        }
    }
    html.push_str("</tr>");
    for (label, vals) in rows {
        let _ = write!(html, "<tr><th>{}</th>", esc(label));
        for (_, v) in vals {
            let _ = write!(html, "<td>{v:.4}</td>");
        }
        html.push_str("</tr>");
    }
    html.push_str("</table><ul>");
    for (k, v) in extra {
        let _ = write!(html, "<li>{}: {}</li>", esc(k), esc(v));
    }
    html.push_str("</ul>");
    // One bar chart per metric, one bar per row.
    if let Some((_, first)) = rows.first() {
        for (mi, (metric, _)) in first.iter().enumerate() {
            let h = 30 * rows.len() + 20;
            let _ = write!(
                html,
                "<h2>{}</h2><svg width=\"520\" height=\"{h}\" role=\"img\" aria-label=\"{}\">",
                esc(metric),
                esc(metric)
            );
            for (ri, (label, vals)) in rows.iter().enumerate() {
                let v = vals.get(mi).map(|x| x.1).unwrap_or(0.0).clamp(0.0, 1.0);
                let y = 10 + ri * 30;
                let _ = write!(
                    html,
                    "<text x=\"0\" y=\"{}\" font-size=\"13\">{}</text><rect x=\"80\" y=\"{y}\" width=\"{:.1}\" height=\"20\" fill=\"#3b7dd8\"/><text x=\"{:.1}\" y=\"{}\" font-size=\"12\">{v:.3}</text>",
                    y + 15,
                    esc(label),
                    v * 380.0,
                    85.0 + v * 380.0,
                    y + 15
                );
            }
            html.push_str("</svg>");
        }
    }
    html.push_str("</html>\n");
    let path = dir.join(format!("{suite}.html"));
    std::fs::write(&path, html).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
