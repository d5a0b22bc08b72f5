//! Decision support from the city's 1999 case history: volumes by period, hour × weekday,
//! hotspots by district and 里, repeat locations (the 「每月一題」 candidates), spikes per
//! category × district against a seasonal baseline, and a weekly digest per bureau.
//!
//! The records live in the database (`case_records`, imported by [`import`] or added when the
//! product dispatches a case). Queries run on [`History`], a compact in-memory copy (about 32
//! bytes a record: 1.6 M records in ~50 MB) that follows the table by id, so every instance
//! answers from the same store and a query over the whole history is one linear scan
//! (milliseconds) instead of a GROUP BY over the table (measured: `eval analytics`).

pub mod address;
pub mod gaps;
pub mod import;
pub mod spikes;

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use knowledge::taxonomy::Taxonomy;
use serde::Serialize;

use crate::store::Db;

/// Days since 1970-01-01 of a civil date.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// 1 (Monday) … 7 (Sunday).
pub fn weekday(day: i64) -> i64 {
    (day + 3).rem_euclid(7) + 1
}

pub fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// YYYYMMDD → day number.
pub fn day_of_ymd(v: i64) -> i64 {
    days_from_civil(v / 10_000, v / 100 % 100, v % 100)
}

/// `YYYY-MM-DD` → day number.
pub fn parse_iso(s: &str) -> Option<i64> {
    let v: i64 = s.trim().replace('-', "").parse().ok()?;
    import::parse_day(&v.to_string()).map(day_of_ymd)
}

/// Day number → `YYYY-MM-DD`.
pub fn iso(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Counts below this are not shown outside the administrators' view.
pub const MIN_PUBLIC_COUNT: u64 = 5;

const NONE8: u8 = u8::MAX;
const NONE16: u16 = u16::MAX;

#[derive(Debug, Clone, Copy)]
struct Rec {
    id: i64,
    day: i32,
    hour: i8,
    category: u8,
    district: u8,
    village: u16,
    /// Hashes of the address and of its block (no house number); 0 when there is none.
    address: u64,
    block: u64,
}

fn hash(s: &str) -> u64 {
    if s.is_empty() {
        return 0;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish().max(1)
}

/// What a query is restricted to.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub category: Option<String>,
    pub district: Option<String>,
    /// Only these categories (a bureau's).
    pub categories: Option<Vec<String>>,
}

/// How counts are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Day,
    Week,
    Month,
    Hour,
    Weekday,
    WeekdayHour,
    District,
    Village,
    Category,
}

impl By {
    pub fn parse(s: &str) -> Option<By> {
        Some(match s {
            "day" => By::Day,
            "week" => By::Week,
            "month" => By::Month,
            "hour" => By::Hour,
            "weekday" => By::Weekday,
            "weekday_hour" => By::WeekdayHour,
            "district" => By::District,
            "village" => By::Village,
            "category" => By::Category,
            _ => return None,
        })
    }
}

/// One repeat location: the same address (or block) and category again and again.
#[derive(Debug, Clone, Serialize)]
pub struct Repeat {
    pub address: String,
    pub district: String,
    pub village: String,
    pub category: String,
    pub count: u64,
    pub first: String,
    pub last: String,
}

/// The case history in memory, following `case_records` by id.
#[derive(Default)]
pub struct History {
    categories: Vec<String>,
    bureaus: Vec<String>,
    districts: Vec<String>,
    villages: Vec<(u8, String)>,
    village_ids: HashMap<(u8, String), u16>,
    recs: Vec<Rec>,
    last_id: i64,
}

impl History {
    pub fn new(taxonomy: &Taxonomy) -> History {
        History {
            categories: taxonomy.categories.iter().map(|c| c.name.clone()).collect(),
            bureaus: taxonomy
                .categories
                .iter()
                .map(|c| c.bureau.clone())
                .collect(),
            districts: taxonomy.districts.clone(),
            ..History::default()
        }
    }

    /// Reads the records added since the last refresh; returns how many.
    pub fn refresh(&mut self, db: &Db) -> anyhow::Result<usize> {
        if db.last_case_record()? == self.last_id {
            return Ok(0);
        }
        let before = self.recs.len();
        let mut err = None;
        db.scan_case_records(self.last_id, |id, r| {
            let category = r.text(1);
            let Some(c) = self.categories.iter().position(|x| *x == category) else {
                if err.is_none() {
                    err = Some(category);
                }
                return;
            };
            let district = r.text(2);
            let d = self
                .districts
                .iter()
                .position(|x| *x == district)
                .map(|i| i as u8)
                .unwrap_or(NONE8);
            let village = r.text(3);
            let v = if village.is_empty() || d == NONE8 {
                NONE16
            } else {
                let next = self.villages.len() as u16;
                *self
                    .village_ids
                    .entry((d, village.clone()))
                    .or_insert_with(|| {
                        self.villages.push((d, village));
                        next
                    })
            };
            self.recs.push(Rec {
                id,
                day: day_of_ymd(r.int(6)) as i32,
                hour: r.int(7) as i8,
                category: c as u8,
                district: d,
                village: v,
                block: hash(&r.text(4)),
                address: hash(&r.text(5)),
            });
            self.last_id = id;
        })?;
        if let Some(c) = err {
            tracing::warn!(category = %c, "case records under a category the taxonomy no longer has were left out of analytics");
        }
        Ok(self.recs.len() - before)
    }

    pub fn len(&self) -> usize {
        self.recs.len()
    }

    /// The id of the last record read.
    pub fn last_id(&self) -> i64 {
        self.last_id
    }

    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    /// The first and last day with records.
    pub fn span(&self) -> Option<(i64, i64)> {
        let min = self.recs.iter().map(|r| r.day).min()?;
        let max = self.recs.iter().map(|r| r.day).max()?;
        Some((min as i64, max as i64))
    }

    pub fn categories(&self) -> &[String] {
        &self.categories
    }

    pub fn bureau_of(&self, category: &str) -> Option<&str> {
        self.categories
            .iter()
            .position(|c| c == category)
            .map(|i| self.bureaus[i].as_str())
    }

    /// The bureaus, each once, in taxonomy order.
    pub fn bureaus(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for b in &self.bureaus {
            if !out.contains(b) {
                out.push(b.clone());
            }
        }
        out
    }

    pub fn districts(&self) -> &[String] {
        &self.districts
    }

    /// The filter as a predicate over records; `None` when it can match nothing (an unknown
    /// category or district).
    fn predicate(&self, f: &Filter) -> Option<impl Fn(&Rec) -> bool> {
        let cat = match &f.category {
            Some(c) if !c.is_empty() => Some(self.categories.iter().position(|x| x == c)? as u8),
            _ => None,
        };
        let district = match &f.district {
            Some(d) if !d.is_empty() => Some(self.districts.iter().position(|x| x == d)? as u8),
            _ => None,
        };
        let allowed: Option<Vec<u8>> = f.categories.as_ref().map(|cs| {
            cs.iter()
                .filter_map(|c| self.categories.iter().position(|x| x == c))
                .map(|i| i as u8)
                .collect()
        });
        let (from, to) = (
            f.from.map(|d| d as i32).unwrap_or(i32::MIN),
            f.to.map(|d| d as i32).unwrap_or(i32::MAX),
        );
        Some(move |r: &Rec| {
            r.day >= from
                && r.day <= to
                && cat.is_none_or(|c| r.category == c)
                && district.is_none_or(|d| r.district == d)
                && allowed.as_ref().is_none_or(|a| a.contains(&r.category))
        })
    }

    /// Counts grouped by `by`. Periods and hours come in order with empty ones as 0; places
    /// and categories by count, largest first.
    pub fn counts(&self, f: &Filter, by: By) -> Vec<(String, u64)> {
        let Some(keep) = self.predicate(f) else {
            return Vec::new();
        };
        let mut groups: HashMap<i64, u64> = HashMap::new();
        for r in self.recs.iter().filter(|r| keep(r)) {
            let key = match by {
                By::Day => r.day as i64,
                By::Week => r.day as i64 - (weekday(r.day as i64) - 1),
                By::Month => {
                    let (y, m, _) = civil_from_days(r.day as i64);
                    y * 100 + m
                }
                By::Hour if r.hour < 0 => continue,
                By::Hour => r.hour as i64,
                By::Weekday => weekday(r.day as i64),
                By::WeekdayHour if r.hour < 0 => continue,
                By::WeekdayHour => weekday(r.day as i64) * 100 + r.hour as i64,
                By::District if r.district == NONE8 => continue,
                By::District => r.district as i64,
                By::Village if r.village == NONE16 => continue,
                By::Village => r.village as i64,
                By::Category => r.category as i64,
            };
            *groups.entry(key).or_default() += 1;
        }
        let span = self.span();
        let (lo, hi) = match (f.from, f.to, span) {
            (from, to, Some((a, b))) => (from.unwrap_or(a).max(a), to.unwrap_or(b).min(b)),
            (Some(a), Some(b), None) => (a, b),
            _ => (0, -1),
        };
        let get = |k: i64| groups.get(&k).copied().unwrap_or(0);
        match by {
            By::Day => (lo..=hi).map(|d| (iso(d), get(d))).collect(),
            By::Week => {
                let first = lo - (weekday(lo) - 1);
                (first..=hi).step_by(7).map(|d| (iso(d), get(d))).collect()
            }
            By::Month => {
                let mut out = Vec::new();
                if lo <= hi {
                    let (mut y, mut m, _) = civil_from_days(lo);
                    let (y2, m2, _) = civil_from_days(hi);
                    while (y, m) <= (y2, m2) {
                        out.push((format!("{y:04}-{m:02}"), get(y * 100 + m)));
                        (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                    }
                }
                out
            }
            By::Hour => (0..24).map(|h| (format!("{h:02}"), get(h))).collect(),
            By::Weekday => (1..=7).map(|w| (w.to_string(), get(w))).collect(),
            By::WeekdayHour => (1..=7)
                .flat_map(|w| (0..24).map(move |h| (w, h)))
                .map(|(w, h)| (format!("{w}-{h:02}"), get(w * 100 + h)))
                .collect(),
            By::District | By::Village | By::Category => {
                let mut out: Vec<(String, u64)> = groups
                    .into_iter()
                    .map(|(k, n)| {
                        let name = match by {
                            By::District => self.districts[k as usize].clone(),
                            By::Village => {
                                let (d, v) = &self.villages[k as usize];
                                format!("{} {v}", self.districts[*d as usize])
                            }
                            _ => self.categories[k as usize].clone(),
                        };
                        (name, n)
                    })
                    .collect();
                out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                out
            }
        }
    }

    /// Daily counts per (category, district) for the `days` days ending on `day` (oldest
    /// first; the last is `day` itself).
    pub fn daily_cells(&self, day: i64, days: usize) -> HashMap<(u8, u8), Vec<u32>> {
        let first = day - days as i64 + 1;
        let mut out: HashMap<(u8, u8), Vec<u32>> = HashMap::new();
        for r in &self.recs {
            let d = r.day as i64;
            if d < first || d > day || r.district == NONE8 {
                continue;
            }
            out.entry((r.category, r.district))
                .or_insert_with(|| vec![0; days])[(d - first) as usize] += 1;
        }
        out
    }

    /// The category and district names of a cell.
    pub fn cell_names(&self, cell: (u8, u8)) -> (String, String, String) {
        (
            self.categories[cell.0 as usize].clone(),
            self.districts[cell.1 as usize].clone(),
            self.bureaus[cell.0 as usize].clone(),
        )
    }

    /// The spikes of `day`: categories × districts whose count that day runs far above their
    /// seasonal baseline, most unusual first.
    pub fn spikes(&self, day: i64, only: Option<&[String]>) -> Vec<spikes::Spike> {
        let cells = self.daily_cells(day, spikes::HISTORY_DAYS + 1);
        let mut out: Vec<spikes::Spike> = cells
            .into_iter()
            .filter_map(|(cell, series)| {
                let (category, district, bureau) = self.cell_names(cell);
                if only.is_some_and(|o| !o.contains(&category)) {
                    return None;
                }
                let (history, today) = series.split_at(spikes::HISTORY_DAYS);
                spikes::assess(today[0], history).map(|a| spikes::Spike {
                    category,
                    district,
                    bureau,
                    count: today[0],
                    expected: a.expected,
                    ratio: a.ratio,
                    p_value: a.p_value,
                })
            })
            .collect();
        out.sort_by(|a, b| {
            a.p_value
                .total_cmp(&b.p_value)
                .then(b.ratio.total_cmp(&a.ratio))
        });
        out
    }

    /// Places reported `min` times or more for the same category, most first. `exact`: by
    /// the whole address (administrators); otherwise by block, with no house number.
    pub fn repeats(
        &self,
        db: &Db,
        f: &Filter,
        min: u64,
        limit: usize,
        exact: bool,
    ) -> anyhow::Result<Vec<Repeat>> {
        let Some(keep) = self.predicate(f) else {
            return Ok(Vec::new());
        };
        // (category, place) → (count, first, last, example id, district, village)
        type Group = (u64, i32, i32, i64, u8, u16);
        let mut groups: HashMap<(u8, u64), Group> = HashMap::new();
        for r in self.recs.iter().filter(|r| keep(r)) {
            let place = if exact { r.address } else { r.block };
            if place == 0 {
                continue;
            }
            let g = groups
                .entry((r.category, place))
                .or_insert((0, r.day, r.day, r.id, r.district, r.village));
            g.0 += 1;
            g.1 = g.1.min(r.day);
            g.2 = g.2.max(r.day);
        }
        let mut top: Vec<_> = groups.into_iter().filter(|(_, g)| g.0 >= min).collect();
        top.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.1 .3.cmp(&b.1 .3)));
        top.truncate(limit);
        let ids: Vec<i64> = top.iter().map(|(_, g)| g.3).collect();
        let places: HashMap<i64, (String, String)> = db
            .case_record_addresses(&ids)?
            .into_iter()
            .map(|(id, a, b)| (id, (a, b)))
            .collect();
        Ok(top
            .into_iter()
            .map(|((c, _), g)| {
                let (a, b) = places.get(&g.3).cloned().unwrap_or_default();
                Repeat {
                    address: if exact { a } else { b },
                    district: self
                        .districts
                        .get(g.4 as usize)
                        .cloned()
                        .unwrap_or_default(),
                    village: self
                        .villages
                        .get(g.5 as usize)
                        .map(|v| v.1.clone())
                        .unwrap_or_default(),
                    category: self.categories[c as usize].clone(),
                    count: g.0,
                    first: iso(g.1 as i64),
                    last: iso(g.2 as i64),
                }
            })
            .collect())
    }

    /// A bureau's week (Monday `week` to Sunday) against the week before, with the week's
    /// spikes and the repeat locations of the eight weeks ending with it.
    pub fn digest(
        &self,
        db: &Db,
        bureau: &str,
        week: i64,
        exact: bool,
        min_repeats: u64,
    ) -> anyhow::Result<Digest> {
        let week = week - (weekday(week) - 1);
        let categories: Vec<String> = self
            .categories
            .iter()
            .zip(&self.bureaus)
            .filter(|(_, b)| *b == bureau)
            .map(|(c, _)| c.clone())
            .collect();
        let period = |from: i64| Filter {
            from: Some(from),
            to: Some(from + 6),
            categories: Some(categories.clone()),
            ..Filter::default()
        };
        let now: BTreeMap<String, u64> = self
            .counts(&period(week), By::Category)
            .into_iter()
            .collect();
        let before: BTreeMap<String, u64> = self
            .counts(&period(week - 7), By::Category)
            .into_iter()
            .collect();
        let total: u64 = now.values().sum();
        let previous: u64 = before.values().sum();
        let mut rows: Vec<DigestRow> = categories
            .iter()
            .map(|c| {
                let n = now.get(c).copied().unwrap_or(0);
                let p = before.get(c).copied().unwrap_or(0);
                DigestRow {
                    category: c.clone(),
                    count: n,
                    previous: p,
                    change: change(n, p),
                }
            })
            .filter(|r| r.count > 0 || r.previous > 0)
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.count));
        let spikes: Vec<spikes::Spike> = (week..week + 7)
            .flat_map(|d| {
                self.spikes(d, Some(&categories))
                    .into_iter()
                    .map(move |s| (d, s))
            })
            .map(|(d, mut s)| {
                s.category = format!("{}（{}）", s.category, iso(d));
                s
            })
            .collect();
        let repeats = self.repeats(
            db,
            &Filter {
                from: Some(week - 49),
                to: Some(week + 6),
                categories: Some(categories.clone()),
                ..Filter::default()
            },
            min_repeats,
            10,
            exact,
        )?;
        Ok(Digest {
            bureau: bureau.to_string(),
            week_start: iso(week),
            week_end: iso(week + 6),
            total,
            previous,
            change: change(total, previous),
            categories: rows,
            spikes,
            repeats,
        })
    }
}

/// Taiwan's offset from UTC (no daylight saving): case days and hours are local.
const LOCAL_OFFSET_SECONDS: i64 = 8 * 3600;

/// The record of a case this product dispatched (it joins the imported history), or `None`
/// without a category of the taxonomy.
pub fn record_of_case(
    case: &crate::intake::case::Case,
    taxonomy: &Taxonomy,
) -> Option<crate::store::CaseRecord> {
    let category = taxonomy.category(case.category.as_deref()?)?.name.clone();
    let field = |k: &str| {
        case.fields
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let raw = format!("{}{}", field("district"), field("road"));
    let mut a = address::parse(&raw, &taxonomy.city_names, &taxonomy.districts);
    if a.district.is_empty() {
        // 「大安」 said without 「區」.
        let d = field("district");
        if let Some(full) = taxonomy
            .districts
            .iter()
            .find(|x| !d.is_empty() && x.starts_with(&d))
        {
            a.district = full.clone();
        }
    }
    let local = case.created + LOCAL_OFFSET_SECONDS;
    let day = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(day);
    Some(crate::store::CaseRecord {
        source: "product".into(),
        case_no: case.id.clone(),
        category,
        district: a.district,
        village: a.village,
        block: address::block(&a.address),
        address: a.address,
        day: y * 10_000 + m * 100 + d,
        time: format!("{:02}{:02}{:02}", secs / 3600, secs / 60 % 60, secs % 60),
        hour: secs / 3600,
    })
}

fn change(now: u64, before: u64) -> Option<f64> {
    (before > 0).then(|| (now as f64 - before as f64) / before as f64)
}

/// A bureau's week.
#[derive(Debug, Clone, Serialize)]
pub struct Digest {
    pub bureau: String,
    pub week_start: String,
    pub week_end: String,
    pub total: u64,
    pub previous: u64,
    pub change: Option<f64>,
    pub categories: Vec<DigestRow>,
    pub spikes: Vec<spikes::Spike>,
    pub repeats: Vec<Repeat>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DigestRow {
    pub category: String,
    pub count: u64,
    pub previous: u64,
    pub change: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_arithmetic_round_trips() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(weekday(0), 4, "1970-01-01 was a Thursday");
        let d = days_from_civil(2026, 5, 31);
        assert_eq!(civil_from_days(d), (2026, 5, 31));
        assert_eq!(weekday(d), 7, "2026-05-31 is a Sunday");
        assert_eq!(iso(days_from_civil(2024, 2, 29)), "2024-02-29");
        assert_eq!(parse_iso("2024-02-30"), None);
        assert_eq!(parse_iso("2026-05-31"), Some(d));
        for z in [-1000, 0, 10_000, 20_604, 30_000] {
            let (y, m, dd) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, dd), z);
        }
    }
}
