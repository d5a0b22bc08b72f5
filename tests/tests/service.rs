//! The real binary as a server: durability under `kill -9`, and the pages in a real browser.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e_tests::{events, repo_root, Browser, Client, Server};
use serde_json::json;

const CALLS: &[&str] = &[
    "大安區復興南路一段路口編號12345的路燈不亮，電話0912345678",
    "中山區民生東路三段的人孔蓋破了，很危險",
    "樓下KTV每天唱到三點，在信義區松仁路",
    "士林區中正路有一棵路樹倒在路中間",
];

#[test]
fn no_committed_case_or_log_row_is_lost_when_the_server_is_killed_during_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = Server::start(
        dir.path(),
        &[
            ("ASSISTANT__SERVER__RATE_PER_MINUTE", "100000"),
            ("ASSISTANT__SERVER__ADDRESS_RATE_PER_MINUTE", "100000"),
            ("ASSISTANT__SERVER__ADDRESS_RATE_BURST", "1000"),
        ],
    );
    srv.add_user("agent01", "agent-password-1", "agent");

    // Writers: cases (each also an audit row) and resident conversations flagged for hand-off.
    let acked_cases = Arc::new(Mutex::new(Vec::<String>::new()));
    let acked_handoffs = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2 {
        let (base, acked, stop) = (srv.base.clone(), acked_cases.clone(), stop.clone());
        writers.push(std::thread::spawn(move || {
            let mut c = Client::open(&base);
            assert_eq!(c.login("agent01", "agent-password-1").status, 200);
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    c.post("/api/cases", &json!({"text": CALLS[i % CALLS.len()]}))
                }));
                match r {
                    Ok(r) if r.status == 201 => acked
                        .lock()
                        .unwrap()
                        .push(r.json()["id"].as_str().unwrap().into()),
                    // The server died mid-request: the write was never acknowledged.
                    _ => break,
                }
                i += 2;
            }
        }));
    }
    {
        let (base, acked, stop) = (srv.base.clone(), acked_handoffs.clone(), stop.clone());
        writers.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let mut c = Client::open(&base);
                    let chat = c.post("/api/chat", &json!({"message": "敬老卡要帶什麼？"}));
                    let conv = events(&chat.body)
                        .first()
                        .and_then(|(_, v)| v["conversation_id"].as_str().map(String::from))?;
                    let h = c.post("/api/handoff", &json!({"conversation_id": conv}));
                    (h.status == 200).then_some(conv)
                }));
                match r {
                    Ok(Some(conv)) => acked.lock().unwrap().push(conv),
                    _ => break,
                }
            }
        }));
    }
    // Let writes run, then kill the server in the middle of them.
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while acked_cases.lock().unwrap().len() < 30 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    srv.kill_9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let cases = acked_cases.lock().unwrap().clone();
    let handoffs = acked_handoffs.lock().unwrap().clone();
    assert!(
        cases.len() >= 10,
        "too few writes before the kill: {}",
        cases.len()
    );

    // Restart on the same database: every acknowledged row is there.
    srv.restart();
    let mut agent = Client::open(&srv.base);
    assert_eq!(agent.login("agent01", "agent-password-1").status, 200);
    let listed = agent.get("/api/cases").json();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    for id in &cases {
        assert!(
            ids.contains(&id.as_str()),
            "case {id} was acknowledged but lost"
        );
    }
    let waiting = agent.get("/api/handoffs").json();
    let convs: Vec<&str> = waiting
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["conversation_id"].as_str().unwrap())
        .collect();
    for c in &handoffs {
        assert!(
            convs.contains(&c.as_str()),
            "hand-off {c} was acknowledged but lost"
        );
    }
    // The audit log has a creation row for every acknowledged case.
    let db = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    for id in &cases {
        let n: i64 = db
            .query_row(
                "SELECT COUNT(*) FROM audit_log WHERE action = 'case.create' AND target = ?1",
                [id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "audit row for {id}");
    }
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    eprintln!(
        "durability: {} cases and {} hand-offs acknowledged before SIGKILL, all present after restart",
        cases.len(),
        handoffs.len()
    );
}

#[test]
fn the_resident_page_and_the_agent_console_work_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &[]);
    srv.add_user("agent01", "agent-password-1", "agent");
    let shots = repo_root().join("target/e2e/screenshots");
    let b = Browser::start();

    // Resident: ask, see the streamed answer with citations, open a citation.
    b.goto(&format!("{}/", srv.base));
    b.type_into("#input", "我媽70歲要怎麼辦敬老卡？");
    b.click("#send");
    b.wait_for(".assistant .answer-text", 60);
    let answer = b.text(".assistant .answer-text");
    // The lead says how to apply (the guide's name is in the citation below).
    assert!(
        answer.contains("申請") || answer.contains("區公所"),
        "{answer}"
    );
    b.wait_for(".citation", 10);
    let citation = b.text(".citation");
    assert!(citation.contains("敬老卡"), "{citation}");
    b.screenshot(&shots.join("resident-answer.png"));
    b.click(".citation");
    b.wait_for("#guide-dialog[open]", 10);
    let guide = b.text("#guide-dialog");
    assert!(
        guide.contains("應備文件") || guide.contains("申請資格"),
        "{guide}"
    );
    b.screenshot(&shots.join("resident-citation.png"));
    b.click("#guide-close");
    // Closing the guide returns the keyboard focus to the citation that opened it.
    let focus = b.poll(
        "return document.querySelector('#guide-dialog').open ? '' : document.activeElement.className;",
        5,
        |_| true,
    );
    assert!(focus.contains("citation"), "focus on {focus:?}");
    // 放大字體 enlarges the page and says so to a screen reader.
    b.click("#large-text");
    let large = b.poll(
        "return document.documentElement.classList.contains('large') + ' ' + \
         document.querySelector('#large-text').getAttribute('aria-pressed');",
        5,
        |s| s == "true true",
    );
    assert_eq!(large, "true true");
    // The size is remembered on the next visit, before the page is drawn.
    b.goto(&format!("{}/", srv.base));
    let remembered = b.poll(
        "return document.readyState === 'complete' ? \
         String(document.documentElement.classList.contains('large')) : '';",
        10,
        |_| true,
    );
    assert_eq!(remembered, "true");
    b.click("#large-text");

    // A resident describing their situation is offered the benefits they may apply for.
    b.type_into(
        "#input",
        "我今年67歲，一個人住在臺北市，是中低收入戶，想知道可以申請什麼",
    );
    b.click("#send");
    b.wait_for(".benefits-box", 60);
    let offered = b.text(".benefits-box");
    assert!(offered.contains("您可能可以申請"), "{offered}");
    assert!(offered.contains("敬老卡"), "{offered}");
    assert!(!offered.contains("育兒"), "{offered}");
    b.poll(
        "document.querySelector('.benefits-box').scrollIntoView(); return 'shown';",
        5,
        |_| true,
    );
    b.screenshot(&shots.join("resident-benefits.png"));

    // Agent: sign in, analyse a call, create and dispatch the case.
    b.sign_in(&srv.base, "agent01", "agent-password-1", "/console");
    b.type_into("#call-text", CALLS[0]);
    b.click("#analyze");
    let category = b.poll(
        "const e = document.querySelector('#case-category'); return e ? e.value : '';",
        10,
        |_| true,
    );
    assert_eq!(category, "路燈不亮或損壞");
    let kind = b.text("#case-type");
    assert!(kind.contains("通報"), "{kind}");
    b.wait_for("#suggestion .citation, #suggestion button", 20);
    // The after-call note is drafted from the call; the agent adds a line before saving.
    let note = b.poll(
        "return document.querySelector('#call-note').value;",
        10,
        |n| n.contains("地點："),
    );
    assert!(note.contains("大安區 復興南路一段"), "{note}");
    assert!(note.contains("來電者：未留姓名（0912345678）"), "{note}");
    b.script(
        "const n = document.querySelector('#call-note'); n.value += '\\n專員補充：請修好後回電'; n.dispatchEvent(new Event('input')); n.scrollIntoView({block: 'center'}); return 'ok';",
        json!([]),
    );
    b.screenshot(&shots.join("agent-console-call-note.png"));
    b.click("#create-case");
    let case_status = "return document.querySelector('#case-status').innerText";
    b.poll(case_status, 10, |s| {
        s.contains("確認") || s.contains("confirmed")
    });
    b.click("#dispatch-case");
    let status = b.poll(case_status, 10, |s| {
        s.contains("派工") && !s.contains("確認")
    });
    b.screenshot(&shots.join("agent-console.png"));
    let mut agent = Client::open(&srv.base);
    assert_eq!(agent.login("agent01", "agent-password-1").status, 200);
    let cases = agent.get("/api/cases").json();
    assert_eq!(
        cases[0]["status"], "dispatched",
        "{cases}; page status {status}"
    );
    assert_eq!(cases[0]["bureau"], "工務局");
    let stored = cases[0]["fields"]["call_note"].as_str().unwrap_or_default();
    assert!(
        stored.contains("地點：") && stored.ends_with("專員補充：請修好後回電"),
        "{stored}"
    );

    // A second caller reports the same pole: the console names the first case before the
    // agent creates another one.
    b.type_into("#call-text", CALLS[0]);
    b.click("#analyze");
    let known = b.poll(
        "const e = document.querySelector('#case-known'); return e && !e.hidden ? e.innerText : '';",
        10,
        |s| s.contains("已有民眾通報"),
    );
    let first = format!("案件 {}", cases[0]["id"].as_str().unwrap_or_default());
    assert!(known.contains(&first), "{known} (expected {first})");
    // The agent links the call to that case instead of creating a duplicate.
    b.click("#case-known .link-report");
    let linked = b.poll(case_status, 10, |s| s.contains("已併入"));
    assert!(linked.contains("共 2 位民眾通報"), "{linked}");
    b.script(
        "document.querySelector('#case-known').scrollIntoView(); return 'shown';",
        json!([]),
    );
    b.screenshot(&shots.join("agent-console-known-case.png"));

    // A caller in distress: the red banner with the number to call comes first, and the agent
    // gets the cue list (what was heard, what to do).
    b.click("#clear-call");
    b.type_into(
        "#call-text",
        "我爸爸剛剛在浴室倒下去叫不醒，我一個人在家，快崩潰了，講了好幾次都沒人來",
    );
    b.click("#analyze");
    let banner = b.poll(
        "const e = document.querySelector('#suggestion .alert-banner'); return e ? e.innerText : '';",
        20,
        |s| !s.is_empty(),
    );
    assert!(banner.contains("請立即撥打 119"), "{banner}");
    let cues = b.poll(
        "const e = document.querySelector('#cues'); return e && !e.hidden ? e.innerText : '';",
        10,
        |s| !s.is_empty(),
    );
    assert!(
        cues.contains("情緒低落、無助") && cues.contains("「崩潰」") && cues.contains("1925"),
        "{cues}"
    );
    assert!(
        cues.contains("情緒激動、不滿") && cues.contains("「講了好幾次」"),
        "{cues}"
    );
    b.script(
        "document.querySelector('#cues').scrollIntoView({block: 'center'}); return 'shown';",
        json!([]),
    );
    b.screenshot(&shots.join("agent-console-alert.png"));

    // A question has no dispatch category; the console names the bureau that answers it.
    b.click("#clear-call");
    b.type_into("#call-text", "我媽媽今年七十歲，想問敬老卡要怎麼辦");
    b.click("#analyze");
    let routing = b.poll(
        "const e = document.querySelector('#case-routing'); return e && !e.hidden ? e.innerText : '';",
        20,
        |s| !s.is_empty(),
    );
    assert!(routing.starts_with("可能承辦機關：社會局"), "{routing}");
    // 登出 ends the session and returns to the sign-in page.
    b.click("#logout");
    let path = b.poll("return location.pathname;", 10, |p| p == "/login");
    assert_eq!(path, "/login");
}

#[test]
fn the_analytics_page_draws_trends_heatmap_hotspots_and_the_console_shows_a_spike() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &[]);
    srv.add_user("admin01", "admin-password-1", "admin");
    srv.add_user("agent01", "agent-password-1", "agent");
    let shots = repo_root().join("target/e2e/screenshots");

    // Dispatch records as the city publishes them (立案日期 YYYYMMDD, 立案時間 HHMMSS): 120 days
    // ending 2026-05-31 with 1–3 reports a day for each category and district, 15 more broken
    // streetlights in 內湖區 on the last day, and one address asking for bulky-waste pickup six
    // times.
    let categories = ["路燈不亮或損壞", "大型廢棄物清運聯繫", "市區道路坑洞處理"];
    let places = [
        ("內湖區", "瑞光里", "瑞光路"),
        ("內湖區", "西湖里", "內湖路一段"),
        ("大安區", "仁愛里", "仁愛路四段"),
        ("大安區", "龍安里", "新生南路三段"),
    ];
    let days: Vec<String> = [(2, 28), (3, 31), (4, 30), (5, 31)]
        .into_iter()
        .flat_map(|(m, n)| (1..=n).map(move |d| format!("2026{m:02}{d:02}")))
        .collect();
    assert_eq!(days.len(), 120);
    let mut csv = String::from("案件編號,派工項目,案件地址,立案日期,立案時間\n");
    let (mut total, mut in_may, mut n) = (0usize, 0usize, 0usize);
    for (i, day) in days.iter().enumerate() {
        let mut rows: Vec<(&str, String, usize)> = Vec::new();
        for (c, &category) in categories.iter().enumerate() {
            for d in 0..2 {
                for k in 0..1 + (i + c + 2 * d) % 3 {
                    let (district, village, road) = places[2 * d + k % 2];
                    n += 1;
                    // Each steady report in a lane of its own: only the planted address repeats.
                    let address = format!(
                        "{district}臺北市{district}{village}{:03}鄰{road}{}巷{}號",
                        1 + n % 20,
                        100 + n,
                        1 + n % 30
                    );
                    rows.push((category, address, 7 + n * 7 % 15));
                }
            }
        }
        if day.as_str() == "20260531" {
            for k in 0..15 {
                n += 1;
                let address = format!(
                    "內湖區臺北市內湖區瑞光里006鄰瑞光路{}巷{}號",
                    100 + n,
                    1 + k
                );
                rows.push(("路燈不亮或損壞", address, 18 + k % 5));
            }
        }
        if i % 20 == 10 {
            let address = "大安區臺北市大安區仁愛里010鄰仁愛路四段27巷5號".to_string();
            rows.push(("大型廢棄物清運聯繫", address, 10));
        }
        for (seq, (category, address, hour)) in rows.into_iter().enumerate() {
            let minute = seq * 13 % 60;
            csv.push_str(&format!(
                "{day}{:05},{category},{address},{day},{hour:02}{minute:02}00\n",
                seq + 1
            ));
            total += 1;
            if day.starts_with("202605") {
                in_may += 1;
            }
        }
    }
    let file = dir.path().join("dispatch.csv");
    std::fs::write(&file, csv.as_bytes()).unwrap();

    // An administrator uploads the file and follows the import job to its end.
    let mut admin = Client::open(&srv.base);
    assert_eq!(admin.login("admin01", "admin-password-1").status, 200);
    let started = admin.post_bytes(
        "/api/analytics/import",
        "application/octet-stream",
        &std::fs::read(&file).unwrap(),
    );
    assert_eq!(started.status, 202, "{}", started.body);
    let job = started.json()["job"]
        .as_str()
        .expect("a job id")
        .to_string();
    let until = std::time::Instant::now() + Duration::from_secs(120);
    let progress = loop {
        let j = admin.get(&format!("/api/admin/jobs/{job}")).json();
        if j["state"] != "running" || std::time::Instant::now() > until {
            break j;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(progress["state"], "done", "{progress}");
    let summary = admin.get("/api/analytics/summary").json();
    assert_eq!(summary["rows"], total as u64, "{summary}");
    assert_eq!(summary["last_day"], "2026-05-31", "{summary}");
    // The burst is the last day's most unusual cell; the planted address is a repeat.
    let spikes = admin.get("/api/analytics/spikes").json();
    assert_eq!(spikes["date"], "2026-05-31", "{spikes}");
    assert_eq!(spikes["spikes"][0]["district"], "內湖區", "{spikes}");
    assert_eq!(
        spikes["spikes"][0]["category"], "路燈不亮或損壞",
        "{spikes}"
    );
    let repeats = admin.get("/api/analytics/repeats?min=3").json();
    let planted = repeats.as_array().unwrap().iter().find(|r| {
        r["address"]
            .as_str()
            .is_some_and(|a| a.contains("仁愛路四段27巷"))
    });
    assert_eq!(
        planted.map(|r| r["count"].clone()),
        Some(json!(6)),
        "{repeats}"
    );

    // The page: trend, heatmap and hotspots drawn over the default period (the last 12 months,
    // clipped to the data).
    let b = Browser::start();
    b.sign_in(&srv.base, "admin01", "admin-password-1", "/analytics");
    for chart in ["#trend-chart", "#heatmap", "#district-chart"] {
        b.wait_for(&format!("{chart}[data-ready=\"1\"]"), 60);
    }
    let months = b.script(
        "return [...document.querySelectorAll('#trend-table tbody tr')].map(r => r.dataset.key).join(' ');",
        json!([]),
    );
    assert_eq!(months, "2026-02 2026-03 2026-04 2026-05");
    let may = b.script(
        "return document.querySelector('#trend-table tr[data-key=\"2026-05\"] td').textContent.replace(/\\D/g, '');",
        json!([]),
    );
    assert_eq!(may, in_may.to_string().as_str());
    assert_eq!(
        b.script(
            "return document.querySelectorAll('#trend-chart path.line').length;",
            json!([])
        ),
        1
    );
    assert_eq!(
        b.script(
            "return document.querySelectorAll('#heatmap rect.cell').length;",
            json!([])
        ),
        7 * 24
    );
    let villages = b.poll(
        "const t = document.querySelector('#village-table'); return t.dataset.ready === '1' ? t.innerText : '';",
        30,
        |_| true,
    );
    assert!(villages.contains("瑞光里"), "{villages}");
    let spotted = b.poll(
        "const s = document.querySelector('#spikes'); return s.dataset.ready === '1' ? s.innerText : '';",
        30,
        |_| true,
    );
    assert!(
        spotted.contains("內湖區") && spotted.contains("路燈不亮或損壞"),
        "{spotted}"
    );
    let repeated = b.poll(
        "const t = document.querySelector('#repeats-table'); return t.dataset.ready === '1' ? t.innerText : '';",
        30,
        |_| true,
    );
    assert!(repeated.contains("仁愛路四段27巷"), "{repeated}");
    // Only administrators get the import card.
    assert_eq!(
        b.script(
            "return document.querySelector('#import-card').hidden;",
            json!([])
        ),
        json!(false)
    );
    b.script(
        "document.querySelector('#trend-title').scrollIntoView(); return 'shown';",
        json!([]),
    );
    b.screenshot(&shots.join("analytics-trend.png"));
    b.script(
        "document.querySelector('#heatmap').scrollIntoView({block: 'center'}); return 'shown';",
        json!([]),
    );
    b.screenshot(&shots.join("analytics-heatmap.png"));
    b.script(
        "document.querySelector('#hotspots-title').scrollIntoView(); return 'shown';",
        json!([]),
    );
    b.screenshot(&shots.join("analytics-hotspots.png"));

    // The same file uploaded again from the page: the job finishes and adds nothing.
    b.type_into("#import-file", &file.display().to_string());
    b.click("#import-start");
    let done = b.poll(
        "return document.querySelector('#import-message').innerText;",
        60,
        |m| m.contains("完成") || m.contains("失敗"),
    );
    assert!(done.contains("新增 0 筆"), "{done}");

    // Questions the guides do not answer reach the administrators' page, grouped, without the
    // caller's name or number.
    let mut resident = Client::open(&srv.base);
    for q in [
        "我叫王小明，電話0912345678，想換新的身分證要帶什麼",
        "身分證掉了要去哪裡補辦",
        "明天台北會下雨嗎",
    ] {
        assert_eq!(
            resident.post("/api/ask", &json!({ "message": q })).status,
            200
        );
    }
    b.goto(&format!("{}/admin", srv.base));
    let gaps = b.poll(
        "const t = document.querySelector('#gap-table tbody'); return t ? t.innerText : '';",
        30,
        |t| t.contains("身分證"),
    );
    assert!(
        !gaps.contains("王小明") && !gaps.contains("0912345678"),
        "{gaps}"
    );
    b.script(
        "document.querySelector('#gaps-title').scrollIntoView(); return 'shown';",
        json!([]),
    );
    b.screenshot(&shots.join("admin-knowledge-gaps.png"));

    // An agent's console warns about the spike and links to the analysis.
    b.click("#logout");
    let path = b.poll("return location.pathname;", 10, |p| p == "/login");
    assert_eq!(path, "/login");
    b.sign_in(&srv.base, "agent01", "agent-password-1", "/console");
    let banner = b.poll(
        "const e = document.querySelector('#spike-banner'); \
         return e && !e.hidden && e.getClientRects().length ? e.innerText : '';",
        30,
        |s| s.contains("內湖區"),
    );
    assert!(
        banner.contains("內湖區") && banner.contains("路燈不亮或損壞"),
        "{banner}"
    );
    b.screenshot(&shots.join("console-spike-banner.png"));
}

#[test]
fn two_hundred_chat_clients_get_answers_or_503s_with_retry_after_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    // No per-session or per-address limit here (all 200 clients share 127.0.0.1): every client
    // hammers as fast as it can (the page's own pace is far slower); the in-flight cap and the
    // LLM queue are the defaults.
    let srv = Server::start(
        dir.path(),
        &[
            ("ASSISTANT__SERVER__RATE_PER_MINUTE", "100000"),
            ("ASSISTANT__SERVER__RATE_BURST", "1000"),
            ("ASSISTANT__SERVER__ADDRESS_RATE_PER_MINUTE", "100000"),
            ("ASSISTANT__SERVER__ADDRESS_RATE_BURST", "1000"),
        ],
    );
    let out = std::process::Command::new(e2e_tests::binary("eval"))
        .current_dir(repo_root())
        .args([
            "load",
            "--url",
            &srv.base,
            "--clients",
            "200",
            "--duration",
            "15",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    eprintln!("load: {summary}");
    assert!(summary["answers"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(summary["errors_other_than_503"], 0, "{summary}");
    assert_eq!(summary["shed_without_retry_after"], 0, "{summary}");
}
