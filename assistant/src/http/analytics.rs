//! Decision support endpoints (`/api/analytics/*`): counts, spikes, repeat locations and a
//! weekly digest over the case history, each also as CSV; the import of published dispatch
//! files. Agents (bureau staff) see counts under 5 suppressed and addresses without house
//! numbers; administrators see both. Every view is written to the audit log.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::auth::{Role, Session};
use super::{ApiError, ApiResult, AppState};
use crate::analytics::{self, By, Filter, History, MIN_PUBLIC_COUNT};

/// The largest dispatch file the import accepts (the whole 2015–2026 history is 30 MB
/// compressed, 200 MB as CSV).
pub const IMPORT_MAX_BYTES: usize = 256 << 20;

/// The query string of every analytics view.
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    from: Option<String>,
    to: Option<String>,
    category: Option<String>,
    district: Option<String>,
    by: Option<String>,
    date: Option<String>,
    min: Option<u64>,
    limit: Option<usize>,
    bureau: Option<String>,
    week: Option<String>,
    format: Option<String>,
}

fn day(v: &Option<String>, what: &str) -> ApiResult<Option<i64>> {
    match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => analytics::parse_iso(s)
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("{what}不是有效日期（YYYY-MM-DD）：{s}"))),
    }
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

impl Params {
    fn filter(&self) -> ApiResult<Filter> {
        let f = Filter {
            from: day(&self.from, "起始日")?,
            to: day(&self.to, "結束日")?,
            category: nonempty(&self.category),
            district: nonempty(&self.district),
            categories: None,
        };
        if let (Some(a), Some(b)) = (f.from, f.to) {
            if a > b {
                return Err(ApiError::bad_request("起始日晚於結束日。"));
            }
        }
        Ok(f)
    }

    fn csv(&self) -> bool {
        self.format.as_deref() == Some("csv")
    }
}

/// Brings the in-memory history up to date with the database and runs `f` on it (off the
/// async threads: the first load reads every record).
async fn with_history<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&History) -> anyhow::Result<T> + Send + 'static,
) -> ApiResult<T> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let stale = {
            let h = state.history.read().unwrap_or_else(|p| p.into_inner());
            state.db.last_case_record()? != h.last_id()
        };
        if stale {
            let mut h = state.history.write().unwrap_or_else(|p| p.into_inner());
            let n = h.refresh(&state.db)?;
            tracing::info!(records = n, total = h.len(), "case history loaded");
        }
        let h = state.history.read().unwrap_or_else(|p| p.into_inner());
        f(&h)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

/// Staff only; returns whether the viewer is an administrator (sees everything).
fn viewer(state: &AppState, s: &Session, view: &str, p: &Params) -> ApiResult<bool> {
    s.require(Role::Agent)?;
    let target = format!(
        "{view} from={} to={} category={} district={} by={} date={} bureau={} week={}",
        p.from.as_deref().unwrap_or("-"),
        p.to.as_deref().unwrap_or("-"),
        p.category.as_deref().unwrap_or("-"),
        p.district.as_deref().unwrap_or("-"),
        p.by.as_deref().unwrap_or("-"),
        p.date.as_deref().unwrap_or("-"),
        p.bureau.as_deref().unwrap_or("-"),
        p.week.as_deref().unwrap_or("-"),
    );
    state.db.audit(&s.actor(), "analytics.view", &target)?;
    Ok(s.role == Role::Admin)
}

/// A table as CSV (UTF-8 with a BOM so spreadsheet programs read the Chinese).
fn csv_response(name: &str, header: &[&str], rows: Vec<Vec<String>>) -> Response {
    let mut out = String::from("\u{feff}");
    let cell = |c: &str| {
        if c.contains([',', '"', '\n']) {
            format!("\"{}\"", c.replace('"', "\"\""))
        } else {
            c.to_string()
        }
    };
    out.push_str(&header.iter().map(|h| cell(h)).collect::<Vec<_>>().join(","));
    out.push('\n');
    for r in rows {
        out.push_str(&r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.csv\""),
            ),
        ],
        out,
    )
        .into_response()
}

/// `GET /api/analytics/summary`.
pub async fn summary(State(state): State<Arc<AppState>>, s: Session) -> ApiResult<Json<Value>> {
    let admin = viewer(&state, &s, "summary", &Params::default())?;
    with_history(&state, move |h| {
        let span = h.span();
        let categories: Vec<Value> = h
            .categories()
            .iter()
            .map(|c| json!({"name": c, "bureau": h.bureau_of(c)}))
            .collect();
        Ok(Json(json!({
            "rows": h.len(),
            "first_day": span.map(|s| analytics::iso(s.0)),
            "last_day": span.map(|s| analytics::iso(s.1)),
            "categories": categories,
            "districts": h.districts(),
            "bureaus": h.bureaus(),
            "admin": admin,
        })))
    })
    .await
}

#[derive(Serialize)]
struct Count {
    key: String,
    count: Option<u64>,
    suppressed: bool,
}

/// `GET /api/analytics/counts?by=…`.
pub async fn counts(
    State(state): State<Arc<AppState>>,
    s: Session,
    Query(p): Query<Params>,
) -> ApiResult<Response> {
    let admin = viewer(&state, &s, "counts", &p)?;
    let by_name = p.by.clone().unwrap_or_else(|| "month".into());
    let by = By::parse(&by_name).ok_or_else(|| {
        ApiError::bad_request(
            "by 須為 day、week、month、hour、weekday、weekday_hour、district、village 或 category。",
        )
    })?;
    let f = p.filter()?;
    let rows = with_history(&state, move |h| Ok(h.counts(&f, by))).await?;
    let rows: Vec<Count> = rows
        .into_iter()
        .map(|(key, n)| {
            let hide = !admin && n > 0 && n < MIN_PUBLIC_COUNT;
            Count {
                key,
                count: (!hide).then_some(n),
                suppressed: hide,
            }
        })
        .collect();
    if p.csv() {
        return Ok(csv_response(
            &format!("counts-{by_name}"),
            &["項目", "件數"],
            rows.into_iter()
                .map(|r| {
                    vec![
                        r.key,
                        r.count
                            .map(|n| n.to_string())
                            .unwrap_or_else(|| "<5".into()),
                    ]
                })
                .collect(),
        ));
    }
    Ok(Json(rows).into_response())
}

fn spike_rows(spikes: &[analytics::spikes::Spike]) -> Vec<Vec<String>> {
    spikes
        .iter()
        .map(|s| {
            vec![
                s.district.clone(),
                s.category.clone(),
                s.bureau.clone(),
                s.count.to_string(),
                format!("{:.1}", s.expected),
                format!("{:.1}", s.ratio),
                format!("{:.2e}", s.p_value),
            ]
        })
        .collect()
}

const SPIKE_HEADER: &[&str] = &[
    "行政區",
    "派工項目",
    "權責機關",
    "當日件數",
    "平常約",
    "倍數",
    "p值",
];

/// `GET /api/analytics/spikes?date=…` (default: the last day with records).
pub async fn spikes(
    State(state): State<Arc<AppState>>,
    s: Session,
    Query(p): Query<Params>,
) -> ApiResult<Response> {
    // Not audited: the console's banner asks every few minutes, and spikes name no place
    // below a district.
    s.require(Role::Agent)?;
    let date = day(&p.date, "日期")?;
    let (date, spikes) = with_history(&state, move |h| {
        let Some(d) = date.or(h.span().map(|s| s.1)) else {
            return Ok((None, Vec::new()));
        };
        Ok((Some(d), h.spikes(d, None)))
    })
    .await?;
    if p.csv() {
        return Ok(csv_response("spikes", SPIKE_HEADER, spike_rows(&spikes)));
    }
    Ok(Json(json!({"date": date.map(analytics::iso), "spikes": spikes})).into_response())
}

fn repeat_rows(repeats: &[analytics::Repeat]) -> Vec<Vec<String>> {
    repeats
        .iter()
        .map(|r| {
            vec![
                r.district.clone(),
                r.village.clone(),
                r.address.clone(),
                r.category.clone(),
                r.count.to_string(),
                r.first.clone(),
                r.last.clone(),
            ]
        })
        .collect()
}

const REPEAT_HEADER: &[&str] = &[
    "行政區",
    "里",
    "地點",
    "派工項目",
    "件數",
    "第一次",
    "最近一次",
];

/// `GET /api/analytics/repeats?min=3&limit=50&…`.
pub async fn repeats(
    State(state): State<Arc<AppState>>,
    s: Session,
    Query(p): Query<Params>,
) -> ApiResult<Response> {
    let admin = viewer(&state, &s, "repeats", &p)?;
    let f = p.filter()?;
    // Outside the administrators' view a place needs as many cases as any shown cell.
    let min = p
        .min
        .unwrap_or(3)
        .max(2)
        .max(if admin { 0 } else { MIN_PUBLIC_COUNT });
    let limit = p.limit.unwrap_or(50).clamp(1, 500);
    let st = state.clone();
    let rows = with_history(&state, move |h| h.repeats(&st.db, &f, min, limit, admin)).await?;
    if p.csv() {
        return Ok(csv_response("repeats", REPEAT_HEADER, repeat_rows(&rows)));
    }
    Ok(Json(rows).into_response())
}

/// `GET /api/analytics/digest?bureau=…&week=YYYY-MM-DD` (default: the last full week).
pub async fn digest(
    State(state): State<Arc<AppState>>,
    s: Session,
    Query(p): Query<Params>,
) -> ApiResult<Response> {
    let admin = viewer(&state, &s, "digest", &p)?;
    let week = day(&p.week, "週")?;
    let bureau =
        nonempty(&p.bureau).ok_or_else(|| ApiError::bad_request("請指定權責機關（bureau）。"))?;
    let st = state.clone();
    let min = if admin { 3 } else { MIN_PUBLIC_COUNT };
    let digest = with_history(&state, move |h| {
        if !h.bureaus().contains(&bureau) {
            return Ok(Err(()));
        }
        let week = match (week, h.span()) {
            (Some(w), _) => w,
            // The last full week: the week of the last day when that is a Sunday, else the
            // week before.
            (None, Some((_, last))) => {
                let monday = last - (analytics::weekday(last) - 1);
                if analytics::weekday(last) == 7 {
                    monday
                } else {
                    monday - 7
                }
            }
            (None, None) => return Ok(Ok(None)),
        };
        h.digest(&st.db, &bureau, week, admin, min)
            .map(|d| Ok(Some(d)))
    })
    .await?
    .map_err(|_| ApiError::bad_request("沒有這個權責機關。"))?;
    let Some(d) = digest else {
        return Ok(Json(json!(null)).into_response());
    };
    let hidden = |n: u64| !admin && n > 0 && n < MIN_PUBLIC_COUNT;
    let shown = |n: u64| {
        if hidden(n) {
            "<5".to_string()
        } else {
            n.to_string()
        }
    };
    if p.csv() {
        return Ok(csv_response(
            "digest",
            &["派工項目", "本週", "前一週", "變化"],
            d.categories
                .iter()
                .map(|c| {
                    vec![
                        c.category.clone(),
                        shown(c.count),
                        shown(c.previous),
                        if hidden(c.count) || hidden(c.previous) {
                            String::new()
                        } else {
                            c.change
                                .map(|x| format!("{:+.0}%", x * 100.0))
                                .unwrap_or_default()
                        },
                    ]
                })
                .collect(),
        ));
    }
    // Counts under 5 (this week's or the week before's) are null outside the administrators'
    // view, with the change they would reveal.
    let mut v = serde_json::to_value(&d).map_err(ApiError::internal)?;
    if let Some(rows) = v["categories"].as_array_mut() {
        for (row, c) in rows.iter_mut().zip(&d.categories) {
            let suppressed = hidden(c.count) || hidden(c.previous);
            if hidden(c.count) {
                row["count"] = Value::Null;
            }
            if hidden(c.previous) {
                row["previous"] = Value::Null;
            }
            if suppressed {
                row["change"] = Value::Null;
            }
            row["suppressed"] = json!(suppressed);
        }
    }
    Ok(Json(v).into_response())
}

/// `POST /api/analytics/import` (administrators): the body is a dispatch CSV or `.csv.gz`;
/// imported in the background (`GET /api/admin/jobs/{id}`).
pub async fn import(
    State(state): State<Arc<AppState>>,
    s: Session,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    s.require(Role::Admin)?;
    if body.is_empty() {
        return Err(ApiError::bad_request("請選擇要匯入的檔案。"));
    }
    let id = state.jobs.start("匯入中");
    // Kept on disk while it is read (the body may be tens of megabytes), removed after.
    let path = std::env::temp_dir().join(format!("hotline-import-{id}.csv"));
    std::fs::write(&path, &body).map_err(ApiError::internal)?;
    state.db.audit(
        &s.actor(),
        "analytics.import",
        &format!("{} bytes", body.len()),
    )?;
    drop(body);
    let (st, jid) = (state.clone(), id.clone());
    tokio::task::spawn_blocking(move || {
        let jobs = st.jobs.clone();
        let outcome = analytics::import::import_file(
            &st.db,
            st.extractor.taxonomy(),
            &path,
            &mut |done, total| {
                jobs.update(&jid, |j| {
                    j.done = done as usize;
                    j.total = total as usize;
                })
            },
        );
        let _ = std::fs::remove_file(&path);
        match outcome {
            Ok(r) => {
                tracing::info!(rows = r.rows, added = r.added, "dispatch records imported");
                st.jobs.update(&jid, |j| {
                    j.state = "done";
                    j.done = j.total;
                    j.message = format!("完成：{}", r.summary());
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "dispatch import failed");
                st.jobs.update(&jid, |j| {
                    j.state = "failed";
                    j.message = format!("匯入失敗：{e:#}");
                })
            }
        }
    });
    Ok((StatusCode::ACCEPTED, Json(json!({"job": id}))))
}

/// Records the gap an answer leaves (hand-off or weak answer), personal details removed; off
/// the request path.
pub(super) fn note_gap(state: &Arc<AppState>, question: &str, a: &crate::answer::Answer) {
    let Some(g) = analytics::gaps::gap_of(
        question,
        a,
        state.answer_config.strong_similarity,
        crate::store::now(),
    ) else {
        return;
    };
    let db = state.db.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = db.add_gap(&g) {
            tracing::warn!(error = %e, "could not record a knowledge gap");
        }
    });
}

#[derive(Debug, Deserialize)]
pub struct GapParams {
    days: Option<u32>,
}

/// `GET /api/admin/gaps?days=30` (administrators): questions handed off or answered weakly,
/// grouped by topic.
pub async fn gaps(
    State(state): State<Arc<AppState>>,
    s: Session,
    Query(p): Query<GapParams>,
) -> ApiResult<Json<Value>> {
    s.require(Role::Admin)?;
    let days = p.days.unwrap_or(30).clamp(1, 366);
    state
        .db
        .audit(&s.actor(), "gaps.view", &format!("days={days}"))?;
    let since = crate::store::now() - i64::from(days) * 86_400;
    let rows = state.db.call(move |db| db.gaps_since(since)).await?;
    let titles: std::collections::HashMap<String, String> = state
        .kb
        .read()
        .await
        .retriever
        .titles()
        .into_iter()
        .collect();
    let groups = analytics::gaps::group(&rows, |id| titles.get(id).cloned());
    Ok(Json(
        json!({"days": days, "questions": rows.len(), "groups": groups}),
    ))
}
