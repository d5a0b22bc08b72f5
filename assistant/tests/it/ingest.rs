//! The `assistant` binary with the real embedder (installed by the README's test command) on a
//! few bundled guides: ingest is idempotent, search finds the right guide, and missing models
//! produce an error naming the command that fixes them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const GUIDES: &[&str] = &[
    "senior-card",
    "streetlight-repair",
    "bulky-waste-pickup",
    "mydata-overview",
];

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_assistant"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("run assistant");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (out, stdout, stderr)
}

fn small_corpus(dir: &Path) {
    for g in GUIDES {
        let src = repo().join("corpus/guides").join(format!("{g}.md"));
        std::fs::copy(&src, dir.join(format!("{g}.md")))
            .unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    }
}

#[test]
fn ingest_twice_reports_everything_unchanged_and_search_finds_the_guide() {
    let corpus = tempfile::tempdir().unwrap();
    let index = tempfile::tempdir().unwrap();
    small_corpus(corpus.path());
    let ingest = || {
        run(bin()
            .arg("--index")
            .arg(index.path())
            .arg("ingest")
            .arg(corpus.path()))
    };
    let (out, stdout, stderr) = ingest();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("4 added, 0 updated, 0 unchanged, 0 removed"),
        "{stdout}"
    );
    let (out, stdout, stderr) = ingest();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("0 added, 0 updated, 4 unchanged, 0 removed (0 sections embedded"),
        "{stdout}"
    );

    let (out, stdout, stderr) = run(bin().arg("--index").arg(index.path()).args([
        "search",
        "我媽70歲要怎麼辦敬老卡？",
        "--json",
        "--k",
        "3",
    ]));
    assert!(out.status.success(), "{stderr}");
    let hits: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(hits[0]["chunk"]["doc_id"], "senior-card", "{stdout}");
    let (_, stdout, _) = run(bin().arg("--index").arg(index.path()).args([
        "search",
        "家門口路燈一直閃",
        "--explain",
    ]));
    assert!(stdout.starts_with("1. ["), "{stdout}");
    assert!(
        stdout
            .lines()
            .next()
            .unwrap()
            .contains("streetlight-repair"),
        "{stdout}"
    );
    assert!(stdout.contains("bm25  rank"), "{stdout}");

    // A guide edited on disk is updated; a deleted one is removed.
    let f = corpus.path().join("senior-card.md");
    let text = std::fs::read_to_string(&f)
        .unwrap()
        .replace("敬老卡", "敬老愛心卡");
    std::fs::write(&f, text).unwrap();
    std::fs::remove_file(corpus.path().join("mydata-overview.md")).unwrap();
    let (_, stdout, _) = ingest();
    assert!(
        stdout.contains("0 added, 1 updated, 2 unchanged, 1 removed"),
        "{stdout}"
    );
}

#[test]
fn missing_model_names_the_setup_command() {
    let cache = tempfile::tempdir().unwrap();
    let index = tempfile::tempdir().unwrap();
    let (out, stdout, _) = run(bin()
        .env("ASSISTANT_CACHE_DIR", cache.path())
        .arg("--index")
        .arg(index.path())
        .arg("doctor"));
    assert!(!out.status.success());
    assert!(
        stdout.contains("missing") && stdout.contains("fix: assistant setup"),
        "{stdout}"
    );
    let (out, _, stderr) = run(bin()
        .env("ASSISTANT_CACHE_DIR", cache.path())
        .arg("--index")
        .arg(index.path())
        .args(["search", "敬老卡"]));
    assert!(!out.status.success());
    assert!(stderr.contains("assistant setup"), "{stderr}");
}

#[test]
fn malformed_config_is_a_clear_error() {
    let conf = tempfile::tempdir().unwrap();
    std::fs::write(conf.path().join("base.toml"), "[retrieval]\nrrf = 1\n").unwrap();
    let (out, _, stderr) = run(bin().arg("--config").arg(conf.path()).arg("doctor"));
    assert!(!out.status.success());
    assert!(
        stderr.contains("unknown field") && stderr.contains("rrf"),
        "{stderr}"
    );
}

/// Uploaded guides live in the database; each instance's folder follows it.
#[test]
fn every_instance_s_uploads_folder_follows_the_database() {
    use assistant::kb::{sync_uploads, UploadSync};
    use assistant::store::Db;
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("state.db")).unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    // Instance A has a file from before guides were kept in the database: stored there.
    std::fs::create_dir_all(&a).unwrap();
    std::fs::write(a.join("old.md"), "# 舊的說明\n").unwrap();
    std::fs::write(a.join("notes.txt"), "not a guide").unwrap();
    let first = sync_uploads(&db, &a).unwrap();
    assert_eq!(
        first,
        UploadSync {
            imported: 1,
            written: 0,
            removed: 0
        }
    );
    // Instance B starts empty and gets it.
    assert_eq!(sync_uploads(&db, &b).unwrap().written, 1);
    assert_eq!(
        std::fs::read_to_string(b.join("old.md")).unwrap(),
        "# 舊的說明\n"
    );
    // Nothing changed: nothing to do.
    assert!(!sync_uploads(&db, &a).unwrap().changed());
    assert!(!sync_uploads(&db, &b).unwrap().changed());
    // A replaces it through the database, B follows; then it is removed everywhere.
    db.put_guide("old.md", "# 新的說明\n", "admin").unwrap();
    db.put_guide("new.md", "# 另一份\n", "admin").unwrap();
    let s = sync_uploads(&db, &b).unwrap();
    assert_eq!((s.written, s.removed), (2, 0));
    assert_eq!(
        std::fs::read_to_string(b.join("old.md")).unwrap(),
        "# 新的說明\n"
    );
    assert!(db.delete_guide("old.md").unwrap());
    for d in [&a, &b] {
        sync_uploads(&db, d).unwrap();
        assert!(!d.join("old.md").exists());
        assert!(d.join("new.md").exists());
    }
    // A file that appears in a synced folder is not imported (the database decides).
    std::fs::write(b.join("stray.md"), "# 不明\n").unwrap();
    assert_eq!(sync_uploads(&db, &b).unwrap().removed, 1);
    assert!(db.guide_content("stray.md").unwrap().is_none());
    // Other files are left alone.
    assert!(a.join("notes.txt").exists());
}
