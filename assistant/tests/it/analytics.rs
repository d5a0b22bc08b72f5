//! Decision support: importing published 1999 dispatch rows as dirty as the real file (repeats,
//! truncated and scientific-notation ids, former category names, compatibility ideographs,
//! shifted columns, rows without a date), the history built from them, and what agents and
//! administrators see through the API.

use assistant::analytics::{import, By, Filter, History};
use assistant::http::Role;
use assistant::store::Db;
use serde_json::Value;

use crate::server::start_with;
use e2e_tests::Client as Browser;

/// The header and rows, one per case of what the published file does.
const DIRTY: &str = "\u{feff}案件編號,派工項目,案件地址,立案日期,立案時間
2026053000001,路燈不亮或損壞,內湖區臺北市內湖區瑞光里006鄰瑞光路２３５巷１６號,20260530,083000
2026053000001,路燈不亮或損壞,內湖區臺北市內湖區瑞光里006鄰瑞光路２３５巷１６號,20260530,083000
2.02605E+12,路燈不亮或損壞,內湖區臺北市內湖區瑞光里006鄰瑞光路２３５巷１６號,20260530,083000
2015070100002,路燈故障或設施損壞,大安區和平東路二段10號,20150701,003200
2026041810295,河濱公園自\u{fa08}\u{f902}道及堤外\u{f965}道破損、散\u{f918}物、油漬及樹倒,中正區螢橋國小,20260418,184200
202403311,鄰里無主垃圾清運,中正區捷運古亭站(2號出口),參考地址：羅斯福路二段１７２之１號,20240331
202403311,河濱公園自行車道及堤外便道破損、散落物、油漬及樹倒,內湖區內2,內溝,參考地址：五分街１００號
,5/12/2020 9:22,,nan,
202405221,鄰里無主垃圾清運,士林區
2020050100001,大型廢棄物清運聯繫,大安區臺北市大安區民輝里020鄰市民大道三段１２８巷８號,20200501,000400.0
\"2.02504E+12\",動物救援,\"大同區延平河濱公園,參考地址：環河北路一段臨１０９之１號\",20250430,214455
";

fn taxonomy() -> knowledge::Taxonomy {
    knowledge::Taxonomy::load(&crate::repo_root().join("corpus/cases")).unwrap()
}

pub(crate) fn import_flow(db: Db) {
    let t = taxonomy();
    let r = import::import_reader(&db, &t, DIRTY.as_bytes(), &mut |_| {}).unwrap();
    assert_eq!(r.rows, 11, "{r:?}");
    assert_eq!(r.added, 6, "{}", r.summary());
    assert_eq!(r.duplicates, 2, "a repeated row and one with a lost id");
    assert_eq!(r.repaired, 1, "the reference address in the date column");
    assert_eq!(
        r.renamed, 2,
        "路燈故障或設施損壞 and the compatibility ideographs"
    );
    let skipped = |k: import::Skip| r.skipped.get(&k).map(|s| (s.count, s.first_lines.clone()));
    assert_eq!(skipped(import::Skip::NoDate), Some((1, vec![8])));
    assert_eq!(skipped(import::Skip::UnknownCategory), Some((1, vec![9])));
    assert_eq!(skipped(import::Skip::BadRow), Some((1, vec![10])));
    assert!(
        r.summary().contains("缺少立案日期 1 筆（第 8 行"),
        "{}",
        r.summary()
    );

    // Importing again adds nothing.
    let again = import::import_reader(&db, &t, DIRTY.as_bytes(), &mut |_| {}).unwrap();
    assert_eq!((again.added, again.duplicates), (0, 8));

    let mut h = History::new(&t);
    assert_eq!(h.refresh(&db).unwrap(), 6);
    assert_eq!(h.refresh(&db).unwrap(), 0, "nothing new");
    let all = Filter::default();
    let by_category: Vec<(String, u64)> = h.counts(&all, By::Category);
    assert!(
        by_category.contains(&("路燈不亮或損壞".to_string(), 2)),
        "{by_category:?}"
    );
    assert!(by_category.contains(&(
        "河濱公園自行車道及堤外便道破損、散落物、油漬及樹倒".to_string(),
        1
    )));
    let villages = h.counts(&all, By::Village);
    assert!(
        villages.contains(&("內湖區 瑞光里".to_string(), 1)),
        "{villages:?}"
    );
    assert!(villages.contains(&("大安區 民輝里".to_string(), 1)));
    // 「000400.0」 is four past midnight; the repaired row has no hour.
    let hours = h.counts(&all, By::Hour);
    assert_eq!(hours.iter().map(|h| h.1).sum::<u64>(), 5);
    assert_eq!(hours[0], ("00".to_string(), 2));
    // Filters: a district, a period.
    let f = Filter {
        district: Some("中正區".into()),
        from: assistant::analytics::parse_iso("2024-01-01"),
        ..Filter::default()
    };
    assert_eq!(h.counts(&f, By::District), vec![("中正區".to_string(), 2)]);
    let months = h.counts(
        &Filter {
            from: assistant::analytics::parse_iso("2026-03-15"),
            to: assistant::analytics::parse_iso("2026-05-31"),
            ..Filter::default()
        },
        By::Month,
    );
    assert_eq!(
        months,
        vec![
            ("2026-03".to_string(), 0),
            ("2026-04".to_string(), 1),
            ("2026-05".to_string(), 1)
        ]
    );
}

#[test]
fn a_dirty_dispatch_file_imports_once_with_every_skip_counted() {
    import_flow(Db::memory().unwrap());
}

/// A steady street and a spike: 120 days of two lamp reports a day at one lane of 內湖區
/// 瑞光里, then 14 on the last day; and three reports at one house in 大安區.
fn history_csv() -> String {
    let mut s = String::from("案件編號,派工項目,案件地址,立案日期,立案時間\n");
    let last = assistant::analytics::parse_iso("2026-05-31").unwrap();
    for back in (0..120).rev() {
        let (y, m, d) = assistant::analytics::civil_from_days(last - back);
        let n = if back == 0 { 14 } else { 2 };
        for i in 0..n {
            s.push_str(&format!(
                ",路燈不亮或損壞,內湖區臺北市內湖區瑞光里006鄰瑞光路{}巷{}號,{y:04}{m:02}{d:02},{:02}3000\n",
                235,
                i + 1,
                8 + i % 12
            ));
        }
    }
    for day in ["20260502", "20260509", "20260516"] {
        s.push_str(&format!(
            ",場所與設施噪音舉發,大安區仁愛路四段300巷20弄15號1樓,{day},230000\n"
        ));
    }
    s
}

#[test]
fn agents_see_small_counts_suppressed_and_no_house_numbers_administrators_see_both() {
    let db = Db::memory().unwrap();
    import::import_reader(&db, &taxonomy(), history_csv().as_bytes(), &mut |_| {}).unwrap();
    let srv = start_with(|_| {}, None, None, db);
    assistant::http::auth::create_user(&srv.state.db, "agent01", "agent-password-1", Role::Agent)
        .unwrap();
    assistant::http::auth::create_user(&srv.state.db, "admin01", "admin-password-1", Role::Admin)
        .unwrap();
    let mut resident = Browser::open(&srv.base);
    assert_eq!(resident.get("/api/analytics/counts").status, 401);
    let mut agent = Browser::open(&srv.base);
    assert_eq!(agent.login("agent01", "agent-password-1").status, 200);
    let mut admin = Browser::open(&srv.base);
    assert_eq!(admin.login("admin01", "admin-password-1").status, 200);

    let summary = agent.get("/api/analytics/summary").json();
    assert_eq!(summary["last_day"], "2026-05-31");
    assert_eq!(summary["admin"], false);

    // The noise category has 3 cases: hidden from agents, shown to administrators.
    let q = "/api/analytics/counts?by=category";
    let cell = |v: &Value, key: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == key)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let a = agent.get(q).json();
    assert_eq!(cell(&a, "場所與設施噪音舉發")["count"], Value::Null);
    assert_eq!(cell(&a, "場所與設施噪音舉發")["suppressed"], true);
    assert_eq!(cell(&a, "路燈不亮或損壞")["count"], 252);
    let b = admin.get(q).json();
    assert_eq!(cell(&b, "場所與設施噪音舉發")["count"], 3);
    let csv = agent.get(&format!("{q}&format=csv")).body;
    assert!(csv.contains("場所與設施噪音舉發,<5"), "{csv}");

    // The spike of the last day, for the console's banner.
    let s = agent.get("/api/analytics/spikes").json();
    assert_eq!(s["date"], "2026-05-31");
    assert_eq!(s["spikes"][0]["district"], "內湖區", "{s}");
    assert_eq!(s["spikes"][0]["category"], "路燈不亮或損壞");
    assert_eq!(s["spikes"][0]["count"], 14);
    let quiet = agent.get("/api/analytics/spikes?date=2026-05-30").json();
    assert_eq!(quiet["spikes"].as_array().unwrap().len(), 0, "{quiet}");
    assert_eq!(
        agent.get("/api/analytics/spikes?date=2026-02-30").status,
        400
    );

    // Repeat locations: the house number only for administrators.
    let admin_repeats = admin.get("/api/analytics/repeats?min=3").json();
    let noise = admin_repeats
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["category"] == "場所與設施噪音舉發")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(
        noise["address"], "仁愛路四段300巷20弄15號1樓",
        "{admin_repeats}"
    );
    assert_eq!(noise["count"], 3);
    let agent_repeats = agent.get("/api/analytics/repeats?min=3").json();
    let text = agent_repeats.to_string();
    assert!(!text.contains("號"), "no house number for agents: {text}");
    assert!(text.contains("瑞光路235巷"), "{text}");
    assert!(
        !text.contains("仁愛路"),
        "3 cases is under the agents' minimum: {text}"
    );

    // The bureau's week.
    let d = agent
        .get("/api/analytics/digest?bureau=工務局&week=2026-05-25")
        .json();
    assert_eq!(d["week_start"], "2026-05-25");
    assert_eq!(d["total"], 26, "six days of 2 and the spike day's 14: {d}");
    assert_eq!(d["previous"], 14);
    assert_eq!(
        agent.get("/api/analytics/digest?bureau=不存在局").status,
        400
    );

    // Every view is audited.
    let audit = srv.state.db.audit_rows(100).unwrap();
    assert!(audit
        .iter()
        .any(|r| r.action == "analytics.view" && r.target.starts_with("repeats")));
}

#[test]
fn questions_the_guides_do_not_answer_reach_the_administrators_without_personal_details() {
    let srv = start_with(|_| {}, None, None, Db::memory().unwrap());
    assistant::http::auth::create_user(&srv.state.db, "admin01", "admin-password-1", Role::Admin)
        .unwrap();
    assistant::http::auth::create_user(&srv.state.db, "agent01", "agent-password-1", Role::Agent)
        .unwrap();
    let mut resident = Browser::open(&srv.base);
    for q in [
        "我叫王小明，電話0912345678，想換新的身分證要帶什麼",
        "身分證掉了要去哪裡補辦",
        "明天台北會下雨嗎",
        // Answered from a guide: not a gap (the test embedder's similarity is not e5's, so
        // only the hand-offs are asserted).
        "敬老卡要帶什麼證件？",
        // An emergency is answered with its number: not a gap.
        "瓦斯味很重好像外洩了",
    ] {
        let r = resident.post("/api/ask", &serde_json::json!({ "message": q }));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // The gap is written off the request path.
    let mut admin = Browser::open(&srv.base);
    assert_eq!(admin.login("admin01", "admin-password-1").status, 200);
    let mut gaps = Value::Null;
    for _ in 0..50 {
        gaps = admin.get("/api/admin/gaps").json();
        if gaps["groups"].as_array().is_some_and(|g| {
            g.iter()
                .map(|x| x["handoffs"].as_u64().unwrap_or(0))
                .sum::<u64>()
                >= 3
        }) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let groups = gaps["groups"].as_array().unwrap();
    assert_eq!(groups[0]["topic"], "身分證", "{gaps}");
    assert_eq!(groups[0]["handoffs"], 2);
    let text = gaps.to_string();
    assert!(
        !text.contains("王小明") && !text.contains("0912345678"),
        "{text}"
    );
    assert!(text.contains("想換新的身分證要帶什麼"), "{text}");
    assert!(!text.contains("瓦斯"), "emergencies are not gaps: {text}");
    let mut agent = Browser::open(&srv.base);
    assert_eq!(agent.login("agent01", "agent-password-1").status, 200);
    assert_eq!(agent.get("/api/admin/gaps").status, 403);
}
