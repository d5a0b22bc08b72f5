//! Importing published 1999 dispatch records (`案件編號,派工項目,案件地址,立案日期,立案時間`,
//! CSV or `.csv.gz`), streamed: categories renamed to the current taxonomy, district and 里
//! read from the address, a row whose address spilled into the date column repaired when the
//! date is still there, and every skipped row counted by reason with its first line numbers.
//! Importing the same file twice adds nothing (the store keys rows by their content).

use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::path::Path;

use knowledge::taxonomy::Taxonomy;
use serde::Serialize;

use super::address;
use crate::store::{CaseRecord, Db};

/// Why a row was not imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    /// Not five fields, or not readable as CSV.
    BadRow,
    /// A 派工項目 that is neither a current nor a former dispatch item.
    UnknownCategory,
    /// No 立案日期 anywhere in the row.
    NoDate,
}

impl Skip {
    /// The reason as staff read it.
    pub fn label(self) -> &'static str {
        match self {
            Skip::BadRow => "欄位格式錯誤",
            Skip::UnknownCategory => "派工項目無法對應",
            Skip::NoDate => "缺少立案日期",
        }
    }
}

/// Skipped rows of one reason.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Skipped {
    pub count: u64,
    /// The first few line numbers (1 is the header).
    pub first_lines: Vec<u64>,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    /// Data rows read (the header not counted).
    pub rows: u64,
    pub added: u64,
    /// Rows already stored, or repeated in the file (same category, address, date and time).
    pub duplicates: u64,
    /// Rows whose address had spilled into the date column, imported with the date that
    /// followed and no time.
    pub repaired: u64,
    /// Rows under a former category name, imported under the current one.
    pub renamed: u64,
    pub skipped: BTreeMap<Skip, Skipped>,
}

impl ImportReport {
    /// One line for staff: 「新增 1,234 筆；重複 12 筆；修復 3 筆；略過：缺少立案日期 2 筆（第 5、9 行）」.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "讀取 {} 筆，新增 {} 筆，重複 {} 筆，修復欄位錯位 {} 筆，舊派工項目名稱改為現行名稱 {} 筆",
            self.rows, self.added, self.duplicates, self.repaired, self.renamed
        );
        if self.skipped.is_empty() {
            s.push_str("，沒有略過的資料。");
        } else {
            let parts: Vec<String> = self
                .skipped
                .iter()
                .map(|(k, v)| {
                    let lines: Vec<String> = v.first_lines.iter().map(|l| l.to_string()).collect();
                    format!(
                        "{} {} 筆（第 {} 行…）",
                        k.label(),
                        v.count,
                        lines.join("、")
                    )
                })
                .collect();
            s.push_str(&format!("；略過：{}。", parts.join("；")));
        }
        s
    }

    fn skip(&mut self, why: Skip, line: u64) {
        let e = self.skipped.entry(why).or_default();
        e.count += 1;
        if e.first_lines.len() < 5 {
            e.first_lines.push(line);
        }
    }
}

/// Counts the bytes read from the file (progress of a compressed file).
struct Counting<R> {
    inner: R,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// YYYYMMDD from a published date cell, when it is a real calendar date.
pub fn parse_day(cell: &str) -> Option<i64> {
    let c = cell.trim();
    if c.len() != 8 || !c.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i64 = c.parse().ok()?;
    let (y, m, d) = (v / 10_000, v / 100 % 100, v % 100);
    ((2000..=2100).contains(&y)
        && (1..=12).contains(&m)
        && d >= 1
        && d <= super::days_in_month(y, m))
    .then_some(v)
}

/// (HHMMSS, hour) from a published time cell (「000400」「000400.0」「1722」), or ("", -1).
pub fn parse_time(cell: &str) -> (String, i64) {
    let c = cell.trim();
    let c = c.strip_suffix(".0").unwrap_or(c);
    if (4..=6).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_digit()) {
        let padded = format!("{c:0<6}");
        let h: i64 = padded[..2].parse().unwrap_or(99);
        let m: i64 = padded[2..4].parse().unwrap_or(99);
        if h < 24 && m < 60 {
            return (padded, h);
        }
    }
    (String::new(), -1)
}

/// Reads one record from a row's cells; `None` with the reason to skip it.
fn record(
    cells: &[String],
    taxonomy: &Taxonomy,
    report: &mut ImportReport,
) -> Result<CaseRecord, Skip> {
    if cells.len() != 5 {
        return Err(Skip::BadRow);
    }
    let raw_category = cells[1].trim();
    let category = taxonomy
        .category(raw_category)
        .map(|c| c.name.clone())
        .ok_or(Skip::UnknownCategory)?;
    let (raw_address, day, (time, hour)) = match parse_day(&cells[3]) {
        Some(day) => (cells[2].clone(), day, parse_time(&cells[4])),
        // 「中正區捷運古亭站(2號出口),參考地址：…」 unquoted: the reference address took the
        // date's place and the date the time's; the time is lost.
        None => match parse_day(&cells[4]) {
            Some(day) => {
                report.repaired += 1;
                (
                    format!("{},{}", cells[2].trim(), cells[3].trim()),
                    day,
                    (String::new(), -1),
                )
            }
            None => return Err(Skip::NoDate),
        },
    };
    if category != raw_category {
        report.renamed += 1;
    }
    let a = address::parse(&raw_address, &taxonomy.city_names, &taxonomy.districts);
    Ok(CaseRecord {
        source: "import".into(),
        case_no: cells[0].trim().to_string(),
        category,
        block: address::block(&a.address),
        district: a.district,
        village: a.village,
        address: a.address,
        day,
        time,
        hour,
    })
}

/// Imports a CSV or `.csv.gz` file into the store. `progress(bytes_read, file_bytes)` is
/// called after each batch.
pub fn import_file(
    db: &Db,
    taxonomy: &Taxonomy,
    path: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<ImportReport> {
    use anyhow::Context;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut input = BufReader::new(Counting {
        inner: file,
        read: read.clone(),
    });
    // gzip by its magic bytes, whatever the file is called.
    let gz = {
        use std::io::BufRead;
        input.fill_buf()?.starts_with(&[0x1f, 0x8b])
    };
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(input))
    } else {
        Box::new(input)
    };
    import_reader(db, taxonomy, reader, &mut |_| {
        progress(read.load(std::sync::atomic::Ordering::Relaxed), total)
    })
    .with_context(|| format!("importing {}", path.display()))
}

/// Imports CSV text from a reader; `progress(rows_read)` after each batch.
pub fn import_reader(
    db: &Db,
    taxonomy: &Taxonomy,
    reader: impl Read,
    progress: &mut dyn FnMut(u64),
) -> anyhow::Result<ImportReport> {
    const BATCH: usize = 20_000;
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(reader);
    let header = csv.byte_headers()?.clone();
    let first = String::from_utf8_lossy(header.get(1).unwrap_or_default()).to_string();
    anyhow::ensure!(
        header.len() >= 5 && first.trim() == "派工項目",
        "not a 1999 dispatch file: the header must be 案件編號,派工項目,案件地址,立案日期,立案時間"
    );
    let mut report = ImportReport::default();
    let mut batch: Vec<CaseRecord> = Vec::with_capacity(BATCH);
    let mut row = csv::ByteRecord::new();
    let mut line = 1u64;
    loop {
        match csv.read_byte_record(&mut row) {
            Ok(false) => break,
            Ok(true) => {
                line = row.position().map(|p| p.line()).unwrap_or(line + 1);
                report.rows += 1;
                let cells: Vec<String> = row
                    .iter()
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect();
                match record(&cells, taxonomy, &mut report) {
                    Ok(r) => batch.push(r),
                    Err(why) => report.skip(why, line),
                }
            }
            Err(e) => {
                // A broken quote or bad bytes: that row only.
                line = e.position().map(|p| p.line()).unwrap_or(line + 1);
                report.rows += 1;
                report.skip(Skip::BadRow, line);
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    return Err(e.into());
                }
            }
        }
        if batch.len() >= BATCH {
            flush(db, &mut batch, &mut report)?;
            progress(report.rows);
        }
    }
    flush(db, &mut batch, &mut report)?;
    progress(report.rows);
    Ok(report)
}

fn flush(db: &Db, batch: &mut Vec<CaseRecord>, report: &mut ImportReport) -> anyhow::Result<()> {
    let added = db.add_case_records(batch)? as u64;
    report.added += added;
    report.duplicates += batch.len() as u64 - added;
    batch.clear();
    Ok(())
}
