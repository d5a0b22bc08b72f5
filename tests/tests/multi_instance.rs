//! Beyond one machine: three `assistant serve` processes on one PostgreSQL database and a
//! three-node Qdrant cluster (two copies of each shard), reached round-robin as behind a load
//! balancer. A guide uploaded through instance 1 is answered by instances 2 and 3 (the lag is
//! measured); a staff session opened on one instance works on the others; `kill -9` of one
//! instance during writes loses no acknowledged case, hand-off or audit row; requests per
//! second through one instance and through all three are printed for the notes
//! (`cargo test -p e2e-tests --test multi_instance -- --nocapture`).
//!
//! Needs `../shared/tools/qdrant` (skipped with a message without `../shared`) and PostgreSQL
//! (`TEST_DATABASE_URL`, set by scripts/test).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e_tests::{events, Client, Server};
use serde_json::{json, Value};
use testkit::qdrant::Cluster;

const GUIDE: &str = "+++\nid = \"rooftop-garden\"\ntitle = \"屋頂綠化補助\"\nbureau = \"都市發展局\"\n\
category = \"補助\"\nscope = \"city\"\n+++\n\n補助市民在自家屋頂種植花草。\n\n## 申請資格\n\n\
設籍本市且屋齡十年以上的建物所有權人。\n\n## 應備文件\n\n申請書、建物權狀影本、屋頂現況照片三張。\n";

const CALLS: [&str; 4] = [
    "我家門口的路燈不亮了，在中山路二段12號前面",
    "民生東路三段的人行道破了一個大洞",
    "公園旁邊的垃圾好幾天沒人收",
    "信義路四段路口的號誌壞了一直閃黃燈",
];

/// Whether `base` answers the new guide's question from it.
fn answers_from_the_new_guide(base: &str) -> bool {
    let mut c = Client::open(base);
    let a = c
        .post(
            "/api/ask",
            &json!({"message": "屋頂綠化補助要準備什麼文件？"}),
        )
        .json();
    a["citations"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["doc_id"] == "rooftop-garden"))
}

/// Questions per second answered by `bases` (round-robin) from `clients` threads for `secs`.
fn throughput(bases: &[String], clients: usize, secs: u64) -> (f64, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let questions = [
        "敬老卡要帶什麼？",
        "路燈不亮要怎麼報修？",
        "育兒津貼怎麼申請",
        "大型家具要怎麼丟",
    ];
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|t| {
            let (bases, stop, done, failed) =
                (bases.to_vec(), stop.clone(), done.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut c = Client::open(&bases[0]);
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    c.set_base(&bases[i % bases.len()]);
                    match c.try_post("/api/ask", &json!({"message": questions[i % 4]})) {
                        Ok(r) if r.status == 200 => done.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let n = done.load(Ordering::Relaxed);
    (
        n as f64 / start.elapsed().as_secs_f64(),
        failed.load(Ordering::Relaxed),
    )
}

#[test]
fn three_instances_on_postgresql_and_a_qdrant_cluster_act_as_one_service() {
    let Some(cluster) = Cluster::start(3) else {
        return;
    };
    let db_url = e2e_tests::scratch_postgres();
    let dir = tempfile::tempdir().unwrap();
    // Every instance signs sessions with the same key (a secret file on each machine).
    let key = dir.path().join("server.key");
    std::fs::write(
        &key,
        (0..64).map(|i| (i * 37 + 11) as u8).collect::<Vec<u8>>(),
    )
    .unwrap();
    let key = key.display().to_string();
    let nodes: Vec<String> = cluster.nodes.iter().map(|n| n.url()).collect();
    let mut instances: Vec<Server> = Vec::new();
    let started = Instant::now();
    for i in 0..3 {
        let peers: Vec<String> = (1..3)
            .map(|k| format!("\"{}\"", nodes[(i + k) % 3]))
            .collect();
        let peers = format!("[{}]", peers.join(", "));
        let env = [
            ("ASSISTANT__SERVER__DATABASE_URL", db_url.as_str()),
            ("ASSISTANT__SERVER__KEY_PATH", key.as_str()),
            ("ASSISTANT__SERVER__GUIDE_SYNC_SECS", "1"),
            ("ASSISTANT__RETRIEVAL__VECTORS__BACKEND", "qdrant"),
            ("ASSISTANT__RETRIEVAL__VECTORS__URL", nodes[i].as_str()),
            ("ASSISTANT__RETRIEVAL__VECTORS__PEERS", peers.as_str()),
            ("ASSISTANT__RETRIEVAL__VECTORS__COLLECTION", "guides"),
            ("ASSISTANT__RETRIEVAL__VECTORS__REPLICATION_FACTOR", "2"),
            ("ASSISTANT__RETRIEVAL__VECTORS__SHARD_NUMBER", "3"),
            // Every client here is 127.0.0.1: the per-address budget would be the bottleneck.
            ("ASSISTANT__SERVER__ADDRESS_RATE_PER_MINUTE", "100000"),
            ("ASSISTANT__SERVER__ADDRESS_RATE_BURST", "10000"),
            ("ASSISTANT__SERVER__RATE_PER_MINUTE", "100000"),
            ("ASSISTANT__SERVER__RATE_BURST", "10000"),
        ];
        instances.push(Server::start(&dir.path().join(format!("i{i}")), &env));
    }
    eprintln!(
        "[multi] 3 instances ready in {:.1} s (each moved its index's vectors to the cluster)",
        started.elapsed().as_secs_f64()
    );
    let bases: Vec<String> = instances.iter().map(|s| s.base.clone()).collect();
    // Every instance sees the whole collection (its readiness asks the cluster).
    for base in &bases {
        let ready = Client::new(base).get("/readyz").json();
        assert!(
            ready["vectors"].as_u64().unwrap_or(0) >= 500,
            "{base}: {ready}"
        );
    }
    instances[0].add_user("boss", "admin-password-1", "admin");
    instances[0].add_user("agent01", "agent-password-1", "agent");

    // A staff session opened on instance 1 works on 2 and 3; signing out on 3 ends it on all.
    let mut admin = Client::open(&bases[0]);
    assert_eq!(admin.login("boss", "admin-password-1").status, 200);
    for base in &bases {
        admin.set_base(base);
        assert_eq!(admin.get("/api/admin/guides").status, 200, "{base}");
    }

    // A guide uploaded through instance 1 is answered by the others within the stated lag.
    for base in &bases[1..] {
        assert!(!answers_from_the_new_guide(base));
    }
    admin.set_base(&bases[0]);
    let uploaded = Instant::now();
    let r = admin.post(
        "/api/admin/guides",
        &json!({"filename": "rooftop-garden.md", "content": GUIDE}),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let mut lags = Vec::new();
    for base in &bases {
        while !answers_from_the_new_guide(base) {
            assert!(
                uploaded.elapsed() < Duration::from_secs(60),
                "{base} never answered from the uploaded guide"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        lags.push(uploaded.elapsed());
    }
    eprintln!("[multi] uploaded guide answered by instances 1, 2, 3 after {lags:?}");

    // Writes round-robin over the three; instance 2 is killed in the middle of them.
    let mut agent = Client::open(&bases[0]);
    assert_eq!(agent.login("agent01", "agent-password-1").status, 200);
    let cases = Arc::new(Mutex::new(Vec::<String>::new()));
    let handoffs = Arc::new(Mutex::new(Vec::<String>::new()));
    let lost_requests = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (bases, cases, lost, stop) = (
            bases.clone(),
            cases.clone(),
            lost_requests.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                agent.set_base(&bases[i % 3]);
                match agent.try_post("/api/cases", &json!({"text": CALLS[i % CALLS.len()]})) {
                    Ok(r) if r.status == 201 => cases
                        .lock()
                        .unwrap()
                        .push(r.json()["id"].as_str().unwrap().to_string()),
                    // Not acknowledged: a load balancer would send it elsewhere.
                    _ => {
                        lost.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 1;
            }
        })
    };
    let handoff_writer = {
        let (bases, handoffs, stop) = (bases.clone(), handoffs.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let base = &bases[i % 3];
                i += 1;
                // Only what the service acknowledged counts; the dead instance refuses.
                let acked = (|| {
                    let mut c = Client::try_open(base).ok()?;
                    let chat = c
                        .try_post("/api/chat", &json!({"message": "敬老卡要帶什麼？"}))
                        .ok()?;
                    let conv = events(&chat.body)
                        .first()
                        .and_then(|(_, v)| v["conversation_id"].as_str().map(String::from))?;
                    let h = c
                        .try_post("/api/handoff", &json!({"conversation_id": conv}))
                        .ok()?;
                    (h.status == 200).then_some(conv)
                })();
                if let Some(conv) = acked {
                    handoffs.lock().unwrap().push(conv);
                }
            }
        })
    };
    let until = Instant::now() + Duration::from_secs(60);
    while cases.lock().unwrap().len() < 15 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    instances[1].kill_9();
    let at_kill = cases.lock().unwrap().len();
    while cases.lock().unwrap().len() < at_kill + 15 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    handoff_writer.join().unwrap();
    let cases = cases.lock().unwrap().clone();
    let handoffs = handoffs.lock().unwrap().clone();
    eprintln!(
        "[multi] instance 2 killed after {at_kill} acknowledged cases; {} cases and {} hand-offs \
         acknowledged in all, {} requests not acknowledged (sent to the dead instance)",
        cases.len(),
        handoffs.len(),
        lost_requests.load(Ordering::Relaxed)
    );
    assert!(cases.len() >= at_kill + 10, "writes went on after the kill");

    // Everything acknowledged is there, seen from instance 3.
    let mut check = Client::open(&bases[2]);
    assert_eq!(check.login("agent01", "agent-password-1").status, 200);
    let listed: Vec<String> = check
        .get("/api/cases")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    for id in &cases {
        assert!(listed.contains(id), "case {id} was acknowledged but lost");
    }
    let waiting: Vec<String> = check
        .get("/api/handoffs")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["conversation_id"].as_str().unwrap().to_string())
        .collect();
    for c in &handoffs {
        assert!(
            waiting.contains(c),
            "hand-off {c} was acknowledged but lost"
        );
    }
    admin.set_base(&bases[2]);
    let audit: Vec<Value> = admin
        .get("/api/admin/audit")
        .json()
        .as_array()
        .unwrap()
        .clone();
    for id in &cases {
        assert!(
            audit
                .iter()
                .any(|r| r["action"] == "case.create" && r["target"] == id.as_str()),
            "no audit row for case {id}"
        );
    }

    // Instance 2 comes back and follows what happened meanwhile (the guide is still there).
    instances[1].restart();
    assert!(answers_from_the_new_guide(&bases[1]));

    // Throughput: one instance against all three (extractive answers, 4 clients, 2 cores).
    let (one, f1) = throughput(&bases[..1], 4, 10);
    let (three, f3) = throughput(&bases, 4, 10);
    eprintln!(
        "[multi] /api/ask with 4 clients: {one:.1}/s through one instance, {three:.1}/s \
         round-robin over three ({:.2}×); failures {f1} and {f3}",
        three / one.max(1e-9)
    );
    assert_eq!(f1 + f3, 0);
}
