//! MyData end to end over real HTTP: the product (SP side) against the sandbox — consent,
//! identity check, download with the platform's status codes, signature and encryption checks,
//! pre-fill of `childcare_allowance` and `senior_card`, the transfer log — and every refusal.

use std::collections::BTreeMap;
use std::time::Duration;

use assistant::mydata::client::{ConsentScreen, MyDataClient, MyDataError};
use assistant::mydata::log::{TransferLog, TransferRecord};
use assistant::mydata::{prefill, Records};
use knowledge::{load_forms, FormSchema};
use mydata_sandbox::{Client, Config, Sandbox};

pub(crate) const SECRET: &str = "s3cret-for-tests";

fn forms() -> Vec<FormSchema> {
    load_forms(&crate::repo_root().join("corpus/forms")).unwrap()
}

fn form(name: &str) -> FormSchema {
    forms().into_iter().find(|f| f.name == name).unwrap()
}

/// Starts a sandbox on a free port; returns its base URL.
pub(crate) fn sandbox(tweak: impl FnOnce(&mut Config)) -> (String, mydata_sandbox::Shared) {
    let mut cfg = Config::from_files(
        &crate::repo_root().join("corpus/mydata/datasets.toml"),
        &crate::repo_root().join("corpus/mydata/synthetic_residents.toml"),
    )
    .unwrap();
    cfg.delay_scale = 0.0;
    cfg.clients.push(Client {
        client_id: "hotline".into(),
        client_secret: SECRET.into(),
        name: "1999 市民服務助理".into(),
        purpose: "預先填寫申請表".into(),
        return_url_prefix: "http://127.0.0.1/cb".into(),
        allowed_ips: vec!["127.0.0.1".into()],
    });
    tweak(&mut cfg);
    let state = Sandbox::new(cfg);
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let s2 = state.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(std_listener).unwrap();
            mydata_sandbox::serve_on(s2, l).await.unwrap();
        });
    });
    (format!("http://{addr}"), state)
}

pub(crate) fn client(base: &str) -> MyDataClient {
    let mut c = MyDataClient::new(base, "hotline", SECRET);
    c.load_provider_keys().unwrap();
    c.max_wait = Duration::from_secs(20);
    c
}

/// The resident's browser: identity check with `method`/`secret`, then consent or refusal.
/// Returns the callback's query parameters.
pub(crate) fn browser(
    url: &str,
    id_number: &str,
    secret: &str,
    agree: bool,
) -> Result<BTreeMap<String, String>, (u16, String)> {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let status_body = |r: Result<ureq::Response, ureq::Error>| match r {
        Ok(r) => (
            r.status(),
            r.header("location").map(String::from),
            r.into_string().unwrap_or_default(),
        ),
        Err(ureq::Error::Status(c, r)) => (c, None, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{e}"),
    };
    let (code, _, body) = status_body(agent.get(url).call());
    if code != 200 {
        return Err((code, body));
    }
    let base = url.split("/service/").next().unwrap();
    let tx = url.split('/').nth(6).unwrap().split('?').next().unwrap();
    let (code, _, body) = status_body(
        agent
            .post(&format!("{base}/service/{tx}/verify"))
            .send_form(&[
                ("method", "自然人憑證"),
                ("id_number", id_number),
                ("secret", secret),
            ]),
    );
    if code != 200 {
        return Err((code, body));
    }
    assert!(
        body.contains("同意傳送") && body.contains("預先填寫申請表"),
        "{body}"
    );
    let (code, location, body) = status_body(
        agent
            .post(&format!("{base}/service/{tx}/consent"))
            .send_form(&[("agree", if agree { "yes" } else { "no" })]),
    );
    let location = location.ok_or((code, body))?;
    Ok(location
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect())
}

fn log_row(
    log: &TransferLog,
    id: &str,
    tx: &str,
    screen: &ConsentScreen,
    result: &Result<Records, MyDataError>,
) {
    let row = TransferRecord {
        time: 1_764_000_000,
        kind: "transfer".into(),
        counterpart: "MyData 平臺".into(),
        subject: String::new(),
        form: screen.form.clone(),
        tx_id: tx.into(),
        datasets: screen.dataset_names(),
        success: result.is_ok(),
        reason: result.as_ref().err().map(|e| format!("{e:?}")),
    };
    log.append(row, id).unwrap();
}

#[test]
fn consented_transfers_prefill_the_drafts_and_are_logged() {
    let (base, _sb) = sandbox(|_| {});
    let c = client(&base);
    let dir = tempfile::tempdir().unwrap();
    let log = TransferLog::open(&dir.path().join("transfers.db"), b"log-key").unwrap();

    // 育兒津貼 for 王大明.
    let screen = ConsentScreen::for_form(&form("childcare_allowance")).unwrap();
    assert_eq!(
        screen.dataset_names(),
        ["現戶全戶戶籍資料", "低收及中低收列冊資料"]
    );
    let url = c
        .authorize_url(&screen, "tx-cc-1", "http://127.0.0.1/cb?draft=1")
        .unwrap();
    let cb = browser(&url, "A123451006", "123456", true).unwrap();
    assert_eq!(cb["code"], "200");
    let records = c.fetch(
        &cb["tx_id"],
        &cb["permission_ticket"],
        &screen.dataset_names(),
    );
    log_row(&log, "A123451006", "tx-cc-1", &screen, &records);
    let records = records.unwrap();
    let draft = prefill(&form("childcare_allowance"), &records);
    drop(records); // the raw payload is not kept
    assert_eq!(draft["applicant.name"].value, "王大明");
    assert_eq!(draft["applicant.id_number"].value, "A123451006");
    assert_eq!(draft["child.birth_date"].value, "2025-06-01");
    assert_eq!(draft["household_status"].value, "一般");
    assert_eq!(
        draft["applicant.address"].provenance,
        "資料來源：MyData 現戶全戶戶籍資料"
    );

    // A second download of the same transfer: 201, files already deleted.
    assert_eq!(
        c.fetch(
            &cb["tx_id"],
            &cb["permission_ticket"],
            &screen.dataset_names()
        ),
        Err(MyDataError::AlreadyDownloaded)
    );

    // 敬老卡 for 林阿嬌.
    let screen = ConsentScreen::for_form(&form("senior_card")).unwrap();
    let url = c
        .authorize_url(&screen, "tx-sc-1", "http://127.0.0.1/cb")
        .unwrap();
    let cb = browser(&url, "A223451071", "123456", true).unwrap();
    let records = c.fetch(
        &cb["tx_id"],
        &cb["permission_ticket"],
        &screen.dataset_names(),
    );
    log_row(&log, "A223451071", "tx-sc-1", &screen, &records);
    let draft = prefill(&form("senior_card"), &records.unwrap());
    assert_eq!(draft["elder.name"].value, "林阿嬌");
    assert_eq!(draft["elder.birth_date"].value, "1950-03-02");
    assert_eq!(draft["elder.address"].value, "臺北市士林區中正路200號5樓");

    // Each resident sees exactly their own transfers; the log holds no ID number.
    let mine = log.for_subject("A123451006").unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].tx_id, "tx-cc-1");
    assert!(mine[0].success);
    assert_eq!(log.for_subject("A223451071").unwrap().len(), 1);
    assert!(log.for_subject("A123451088").unwrap().is_empty());
    // Neither the database nor its write-ahead log holds the ID number or the name.
    for file in ["transfers.db", "transfers.db-wal"] {
        let raw = std::fs::read(dir.path().join(file)).unwrap_or_default();
        let has = |needle: &str| raw.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(!has("A123451006") && !has("王大明"), "{file}");
    }
    // Rows older than a year are purged; newer ones stay.
    assert_eq!(
        log.purge_older_than(1_764_000_000 + 366 * 86_400, 365 * 86_400)
            .unwrap(),
        2
    );
    assert!(log.for_subject("A123451006").unwrap().is_empty());
}

#[test]
fn a_slow_provider_is_waited_for_with_retry_after() {
    // 個人所得資料: 60 minutes on the platform, 2 seconds here.
    let (base, _sb) = sandbox(|c| c.delay_scale = 2.0 / 3600.0);
    let c = client(&base);
    let screen = ConsentScreen::for_form(&form("low_income_application")).unwrap();
    assert!(screen.dataset_names().contains(&"個人所得資料".to_string()));
    let url = c
        .authorize_url(&screen, "tx-slow", "http://127.0.0.1/cb")
        .unwrap();
    let cb = browser(&url, "A223451044", "123456", true).unwrap();
    let t0 = std::time::Instant::now();
    let records = c
        .fetch(
            &cb["tx_id"],
            &cb["permission_ticket"],
            &screen.dataset_names(),
        )
        .unwrap();
    assert!(t0.elapsed() >= Duration::from_secs(1), "no wait happened");
    assert!(records.contains_key("現戶全戶戶籍資料"));
}

#[test]
fn every_refusal_is_clear_and_stores_nothing() {
    let (base, sb) = sandbox(|_| {});
    let c = client(&base);
    let screen = ConsentScreen::for_form(&form("senior_card")).unwrap();

    // No consent.
    let url = c
        .authorize_url(&screen, "tx-no", "http://127.0.0.1/cb")
        .unwrap();
    let cb = browser(&url, "A223451071", "123456", false).unwrap();
    assert_eq!(cb["code"], "403");
    assert!(!cb.contains_key("permission_ticket"));
    let e = c
        .fetch("tx-no", "guess", &screen.dataset_names())
        .unwrap_err();
    assert!(matches!(e, MyDataError::Refused(_)), "{e:?}");

    // A wrong credential is refused by the platform (401), and counted towards the lockout.
    let url = c
        .authorize_url(&screen, "tx-badpin", "http://127.0.0.1/cb")
        .unwrap();
    assert_eq!(
        browser(&url, "A223451071", "000000", true).unwrap_err().0,
        401
    );

    // A replayed transaction id.
    let url = c
        .authorize_url(&screen, "tx-no", "http://127.0.0.1/cb")
        .unwrap();
    assert_eq!(
        browser(&url, "A223451071", "123456", true).unwrap_err().0,
        409
    );

    // More than five datasets: refused by the product before any redirect, and by the platform.
    let mut big = form("social_housing");
    big.mydata.push("車籍資料".into());
    big.fields[0].mydata = Some(knowledge::forms::MyDataSource {
        dataset: "車籍資料".into(),
        field: "plates".into(),
    });
    assert_eq!(
        ConsentScreen::for_form(&big).unwrap_err(),
        MyDataError::TooManyDatasets(6)
    );
    use base64::Engine;
    let six = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        "個人戶籍資料:現戶全戶戶籍資料:親屬關係資料:低收及中低收列冊資料:身心障礙資格:車籍資料",
    );
    let r = ureq::get(&format!(
        "{base}/service/hotline/{six}/tx-six?returnUrl=http://127.0.0.1/cb"
    ))
    .call();
    assert!(matches!(r, Err(ureq::Error::Status(400, _))));

    // Consent for other datasets than the ones the product expects: refused on arrival.
    let url = c
        .authorize_url(&screen, "tx-other", "http://127.0.0.1/cb")
        .unwrap();
    let cb = browser(&url, "A223451071", "123456", true).unwrap();
    let e = c.fetch(
        &cb["tx_id"],
        &cb["permission_ticket"],
        &["低收及中低收列冊資料".to_string()],
    );
    assert_eq!(e, Err(MyDataError::Unexpected("個人戶籍資料".into())));

    // A tampered signature (keys of another platform), and a wrong decryption key.
    let url = c
        .authorize_url(&screen, "tx-sig", "http://127.0.0.1/cb")
        .unwrap();
    let cb = browser(&url, "A223451071", "123456", true).unwrap();
    let mut forged = MyDataClient::new(&base, "hotline", SECRET);
    let other = Sandbox::new(Config {
        signing_seed: "someone-else".into(),
        ..sb_config()
    });
    let keys: BTreeMap<String, String> = [("內政部戶政司".to_string(), {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(
            other
                .provider_key("內政部戶政司")
                .verifying_key()
                .to_bytes(),
        )
    })]
    .into();
    forged.trust_providers(&keys).unwrap();
    assert_eq!(
        forged.fetch(
            &cb["tx_id"],
            &cb["permission_ticket"],
            &screen.dataset_names()
        ),
        Err(MyDataError::BadSignature("個人戶籍資料".into()))
    );
    let url = c
        .authorize_url(&screen, "tx-key", "http://127.0.0.1/cb")
        .unwrap();
    let cb = browser(&url, "A223451071", "123456", true).unwrap();
    let mut wrong = MyDataClient::new(&base, "hotline", "not-the-secret");
    wrong.load_provider_keys().unwrap();
    assert_eq!(
        wrong.fetch(
            &cb["tx_id"],
            &cb["permission_ticket"],
            &screen.dataset_names()
        ),
        Err(MyDataError::Decrypt)
    );

    // The platform logged every refusal.
    let events: Vec<String> = sb.events().into_iter().map(|e| e.what).collect();
    assert!(events.iter().any(|e| e.contains("consent refused")));
    assert!(events.iter().any(|e| e.contains("identity check failed")));
    assert!(events.iter().any(|e| e.contains("transaction id reused")));
    assert!(events.iter().any(|e| e.contains("6 datasets")));
}

fn sb_config() -> Config {
    Config::from_files(
        &crate::repo_root().join("corpus/mydata/datasets.toml"),
        &crate::repo_root().join("corpus/mydata/synthetic_residents.toml"),
    )
    .unwrap()
}

#[test]
fn an_address_off_the_allow_list_and_an_expired_file_are_refused() {
    let (base, _sb) = sandbox(|c| c.clients[0].allowed_ips = vec!["10.9.9.9".into()]);
    let c = client(&base);
    let screen = ConsentScreen::for_form(&form("senior_card")).unwrap();
    let url = c
        .authorize_url(&screen, "tx-ip", "http://127.0.0.1/cb")
        .unwrap();
    let cb = browser(&url, "A223451071", "123456", true).unwrap();
    assert_eq!(
        c.fetch(
            &cb["tx_id"],
            &cb["permission_ticket"],
            &screen.dataset_names()
        ),
        Err(MyDataError::NotAllowed)
    );

    let (base, _sb) = sandbox(|c| c.retention = Duration::from_millis(1));
    let c = client(&base);
    let url = c
        .authorize_url(&screen, "tx-old", "http://127.0.0.1/cb")
        .unwrap();
    let cb = browser(&url, "A223451071", "123456", true).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let e = c
        .fetch(
            &cb["tx_id"],
            &cb["permission_ticket"],
            &screen.dataset_names(),
        )
        .unwrap_err();
    assert!(
        matches!(&e, MyDataError::Refused(m) if m.contains("保存期限")),
        "{e:?}"
    );
}

#[test]
fn the_prefill_service_records_consent_and_transfer_and_purges_on_submit() {
    use assistant::mydata::service::{DraftStatus, DraftStore, PrefillService};
    let (base, _sb) = sandbox(|_| {});
    let dir = tempfile::tempdir().unwrap();
    let svc = PrefillService {
        client: client(&base),
        log: TransferLog::open(&dir.path().join("log.db"), b"k").unwrap(),
        drafts: DraftStore::open(&dir.path().join("drafts")).unwrap(),
    };
    let cc = form("childcare_allowance");
    let now = 1_764_000_000;

    let (screen, url) = svc.begin(&cc, "tx-svc", "http://127.0.0.1/cb").unwrap();
    assert!(screen
        .datasets
        .iter()
        .any(|(d, fields)| d == "低收及中低收列冊資料" && fields == &["家庭經濟身分"]));
    let cb = browser(&url, "A223451044", "123456", true).unwrap();
    let draft = svc.complete(&cc, None, &cb, now, "d-1").unwrap().draft;
    assert_eq!(draft.values["household_status"].value, "低收入戶");
    assert_eq!(draft.values["household_status"].source, "mydata");
    assert_eq!(draft.status, DraftStatus::Open);

    // The resident corrects the phone (not from MyData) and submits.
    svc.drafts
        .correct("d-1", "applicant.phone", "0912345678".into())
        .unwrap();
    let sent = svc.drafts.submit("d-1").unwrap().unwrap();
    assert_eq!(sent.values["applicant.phone"].source, "resident");
    assert_eq!(sent.values["child.birth_date"].value, "2026-03-10");
    let stored = svc.drafts.get("d-1").unwrap().unwrap();
    assert_eq!(stored.status, DraftStatus::Submitted);
    assert!(stored.values.is_empty(), "values kept after submission");

    // Consent and transfer were both recorded for this resident only.
    let rows = svc.log.for_subject("A223451044").unwrap();
    let kinds: Vec<(&str, bool)> = rows.iter().map(|r| (r.kind.as_str(), r.success)).collect();
    assert_eq!(kinds, [("consent", true), ("transfer", true)]);

    // Refused consent: logged as such, no draft.
    let (_, url) = svc.begin(&cc, "tx-svc-2", "http://127.0.0.1/cb").unwrap();
    let cb = browser(&url, "A123451006", "123456", false).unwrap();
    assert!(svc
        .complete(&cc, Some("A123451006"), &cb, now, "d-2")
        .is_err());
    assert!(svc.drafts.get("d-2").unwrap().is_none());
    let rows = svc.log.for_subject("A123451006").unwrap();
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].success && rows[0].kind == "consent");

    // An abandoned-in-place draft: after its window, MyData values go, corrections stay.
    let (_, url) = svc.begin(&cc, "tx-svc-3", "http://127.0.0.1/cb").unwrap();
    let cb = browser(&url, "A123451006", "123456", true).unwrap();
    let d = svc
        .complete(&cc, Some("A123451006"), &cb, now, "d-3")
        .unwrap()
        .draft;
    svc.drafts
        .correct("d-3", "applicant.phone", "0922333444".into())
        .unwrap();
    assert_eq!(svc.drafts.purge_expired(d.expires - 1).unwrap(), 0);
    assert_eq!(svc.drafts.purge_expired(d.expires).unwrap(), 1);
    let left = svc.drafts.get("d-3").unwrap().unwrap();
    assert_eq!(left.status, DraftStatus::Expired);
    assert_eq!(left.values.keys().collect::<Vec<_>>(), ["applicant.phone"]);
    // Abandoning deletes everything.
    let gone = svc.drafts.abandon("d-3").unwrap().unwrap();
    assert!(gone.values.is_empty() && gone.status == DraftStatus::Abandoned);
}
