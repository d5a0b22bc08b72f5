//! Form-field extraction, case intake and routing on the bundled schemas and taxonomy (no
//! models: rules, gazetteers and the lexical classifier), plus the LLM step with a scripted
//! model standing in for constrained decoding.

use std::sync::{Arc, Mutex};

use assistant::intake::extract::llm_fill::LlmFiller;
use assistant::intake::extract::{Extraction, Extractor, Source};
use models::llm::{
    ChatMessage, ChatModel, FinishReason, GenerationParams, GenerationStats, Grammar,
};

fn extractor() -> Extractor {
    crate::bundled_extractor()
}

fn value(x: &Extraction, field: &str) -> serde_json::Value {
    x.fields
        .get(field)
        .map(|v| v.value.clone())
        .unwrap_or(serde_json::Value::Null)
}

#[test]
fn a_senior_card_request_is_split_between_applicant_and_elder() {
    let text = "我媽李美玉今年七十歲，身分證A223456781，民國四十五年三月二號生，住臺北市大安區信義路4段100巷2號3樓。\
                我是她兒子王大明，電話零九一二，三四五，六七八。";
    let x = extractor().extract("senior_card", text).unwrap();
    assert_eq!(value(&x, "elder.name"), "李美玉");
    assert_eq!(value(&x, "applicant.name"), "王大明");
    assert_eq!(value(&x, "elder.birth_date"), "1956-03-02");
    assert_eq!(value(&x, "applicant.phone"), "0912345678");
    assert_eq!(value(&x, "relationship"), "子女");
    assert_eq!(
        value(&x, "elder.address"),
        "臺北市大安區信義路四段100巷2號3樓"
    );
    // Every value points at the text it came from.
    let chars: Vec<char> = text.chars().collect();
    for (name, v) in &x.fields {
        if let (Some((s, e)), Some(ev)) = (v.span, &v.evidence) {
            assert_eq!(&chars[s..e].iter().collect::<String>(), ev, "{name}");
        }
    }
    // The applicant's ID was never given: asked for only if required (it is not), so no
    // follow-up for it; nothing required is missing here.
    assert!(x.follow_ups.is_empty(), "{:?}", x.follow_ups);
}

#[test]
fn an_invalid_id_is_reported_not_filled_and_missing_fields_are_asked() {
    let x = extractor()
        .extract("senior_card", "幫我爸辦敬老卡，他的身分證是A123456788。")
        .unwrap();
    assert!(!x.fields.contains_key("elder.id_number"));
    assert!(x
        .problems
        .iter()
        .any(|p| p.message.contains("檢查碼") && p.field.as_deref() == Some("elder.id_number")));
    let asked: Vec<&str> = x.follow_ups.iter().map(|f| f.field.as_str()).collect();
    for f in ["elder.name", "elder.birth_date", "applicant.phone"] {
        assert!(asked.contains(&f), "{f} not asked: {asked:?}");
    }
    assert!(x.follow_ups.iter().all(|f| f.question.ends_with('？')));
}

#[test]
fn spoken_self_corrections_keep_the_corrected_value() {
    let x = extractor()
        .extract(
            "childcare_allowance",
            "我叫陳怡君，手機0912-345-678，不對，是0921-345-678。寶寶陳小安一一四年五月一日出生，是老二，我們是中低收入戶。",
        )
        .unwrap();
    assert_eq!(value(&x, "applicant.phone"), "0921345678");
    assert_eq!(value(&x, "child.name"), "陳小安");
    assert_eq!(value(&x, "child.birth_date"), "2025-05-01");
    assert_eq!(value(&x, "child.birth_order"), 2);
    assert_eq!(value(&x, "household_status"), "中低收入戶");
    let x = extractor()
        .extract("childcare_allowance", "我們不是低收入戶，是中低收入戶")
        .unwrap();
    assert_eq!(value(&x, "household_status"), "中低收入戶");
}

#[test]
fn colloquial_reports_land_in_the_right_dispatch_category_with_the_bureau() {
    let e = extractor();
    let x = e
        .extract("case_report", "樓下KTV每天唱到三點，吵到睡不著。在大安區復興南路一段，我姓林，林志明，電話0933-123-456")
        .unwrap();
    assert_eq!(value(&x, "category"), "場所與設施噪音舉發");
    assert_eq!(x.bureau.as_deref(), Some("環境保護局"));
    assert_eq!(value(&x, "district"), "大安區");
    assert_eq!(value(&x, "road"), "復興南路一段");
    assert_eq!(value(&x, "caller.name"), "林志明");
    assert_eq!(value(&x, "hazard"), false);
    assert_eq!(x.fields["hazard"].source, Source::Default);

    let x = e
        .extract(
            "case_report",
            "中山區民生東路4段那邊路燈的電線垂下來快碰到地上，很危險",
        )
        .unwrap();
    assert_eq!(value(&x, "category"), "路燈不亮或損壞");
    assert_eq!(value(&x, "road"), "民生東路四段");
    assert_eq!(value(&x, "hazard"), true);
    assert!(x.alternatives.len() > 1);

    let x = e
        .extract("case_report", "家裡舊沙發跟床墊想丟掉，要怎麼請人來載")
        .unwrap();
    assert_eq!(value(&x, "category"), "大型廢棄物清運聯繫");
}

#[test]
fn streetlight_reports_keep_pole_numbers_and_skip_house_and_base_numbers() {
    let x = extractor()
        .extract(
            "streetlight_report",
            "信義路二段86巷\n與10巷口 編號0505364與0505365的路燈都不亮，底座編號12345，門牌86號",
        )
        .unwrap();
    assert_eq!(
        value(&x, "pole_numbers"),
        serde_json::json!(["0505364", "0505365"])
    );
    assert_eq!(value(&x, "fault"), "不亮");
    assert_eq!(value(&x, "road"), "信義路二段");
    assert_eq!(value(&x, "hazard"), false);
    let x = extractor()
        .extract(
            "streetlight_report",
            "光明路\n【緊急案件】路燈電線垂落距離地面約30公分",
        )
        .unwrap();
    assert_eq!(value(&x, "fault"), "電線外露");
    assert_eq!(value(&x, "hazard"), true);
}

#[test]
fn an_unknown_schema_names_the_available_ones() {
    let err = extractor()
        .extract("no_such_form", "x")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("senior_card") && err.contains("case_report"),
        "{err}"
    );
}

/// Replies with fixed JSON through `chat_constrained`, checking it against the grammar.
struct JsonModel {
    reply: String,
    prompts: Mutex<Vec<String>>,
}

impl ChatModel for JsonModel {
    fn describe(&self) -> String {
        "json stand-in".into()
    }
    fn chat(
        &self,
        _: &[ChatMessage],
        _: &GenerationParams,
        _: &mut dyn FnMut(&str) -> bool,
    ) -> models::Result<GenerationStats> {
        unreachable!("extraction only uses constrained decoding")
    }
    fn chat_constrained(
        &self,
        messages: &[ChatMessage],
        _: &GenerationParams,
        mut grammar: Box<dyn Grammar>,
    ) -> models::Result<(String, GenerationStats)> {
        self.prompts
            .lock()
            .unwrap()
            .push(messages[1].content.clone());
        // The reply must be one the grammar allows, byte by byte.
        for b in self.reply.as_bytes() {
            assert!(grammar.allows(&[*b]), "grammar refused {:?}", self.reply);
            grammar.advance(&[*b]);
        }
        assert!(grammar.is_complete());
        Ok((
            self.reply.clone(),
            GenerationStats {
                prompt_tokens: 0,
                reused_prompt_tokens: 0,
                generated_tokens: 0,
                prefill_ms: 0.0,
                first_token_ms: 0.0,
                generation_ms: 0.0,
                finish: FinishReason::Stop,
            },
        ))
    }
    fn count_tokens(&self, text: &str) -> usize {
        text.chars().count()
    }
}

#[test]
fn llm_values_are_kept_only_when_found_in_the_text_and_valid() {
    // The rules find no name (no cue word); the model offers one that is in the text, and a
    // birth date that is not: the first is kept with a lower confidence, the second dropped.
    let text = "敬老卡 林阿壽 聯絡0912345678 長輩住高雄市前鎮區中山二路2號";
    let reply = r#"{"applicant.name": "林阿壽", "elder.name": "林阿壽", "elder.id_number": null, "elder.birth_date": "民國30年1月1日", "relationship": "本人"}"#;
    let model = Arc::new(JsonModel {
        reply: reply.into(),
        prompts: Mutex::new(Vec::new()),
    });
    let x = extractor()
        .with_llm(LlmFiller::new(model.clone()))
        .extract("senior_card", text)
        .unwrap();
    let name = &x.fields["elder.name"];
    assert_eq!(name.value, "林阿壽");
    assert_eq!(name.source, Source::Llm);
    assert!(name.confidence < 0.9);
    assert_eq!(name.evidence.as_deref(), Some("林阿壽"));
    assert!(
        !x.fields.contains_key("elder.birth_date"),
        "a date not in the text was kept"
    );
    assert!(x.follow_ups.iter().any(|f| f.field == "elder.birth_date"));
    // Only the missing required fields were asked.
    let prompt = &model.prompts.lock().unwrap()[0];
    assert!(
        prompt.contains("elder.name") && !prompt.contains("applicant.phone"),
        "{prompt}"
    );
}
