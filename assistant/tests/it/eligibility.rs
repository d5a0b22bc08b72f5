//! Eligibility suggestions and simple-case review for each synthetic resident of the MyData
//! sandbox (records pre-filled through the forms, plus what the resident declares), and the
//! period tables of the childcare allowance.

use assistant::eligibility::{assess, facts_from_records, review, suggest, Fact, Facts, Status};
use assistant::mydata::prefill;
use knowledge::benefits::{Benefit, Rulebook};
use knowledge::{load_forms, FormSchema, Taxonomy};

const TODAY: &str = "2026-11-24";

/// A virtual resident of the MyData sandbox (`corpus/mydata/synthetic_residents.toml`).
#[derive(Debug, Clone, serde::Deserialize)]
struct SyntheticResident {
    id_number: String,
    #[serde(default)]
    datasets: assistant::mydata::Records,
    /// What the resident states themself (facts MyData does not hold).
    #[serde(default)]
    declared: serde_json::Map<String, serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct ResidentsFile {
    resident: Vec<SyntheticResident>,
}

/// Reads `synthetic_residents.toml`.
fn load_residents(path: &std::path::Path) -> anyhow::Result<Vec<SyntheticResident>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let file: ResidentsFile =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    for r in &file.resident {
        knowledge::validate::taiwan_id(&r.id_number)
            .map_err(|e| anyhow::anyhow!("resident {}: {e}", r.id_number))?;
    }
    Ok(file.resident)
}

struct World {
    forms: Vec<FormSchema>,
    book: Rulebook,
    cities: Vec<String>,
    residents: Vec<SyntheticResident>,
}

fn world() -> World {
    World {
        forms: load_forms(&crate::repo_root().join("corpus/forms")).unwrap(),
        book: Rulebook::load(&crate::repo_root().join("corpus/benefits")).unwrap(),
        cities: Taxonomy::load(&crate::repo_root().join("corpus/cases"))
            .unwrap()
            .city_names,
        residents: load_residents(
            &crate::repo_root().join("corpus/mydata/synthetic_residents.toml"),
        )
        .unwrap(),
    }
}

impl World {
    fn benefit(&self, id: &str) -> &Benefit {
        self.book.benefits.iter().find(|b| b.id == id).unwrap()
    }
    fn resident(&self, id: &str) -> &SyntheticResident {
        self.residents.iter().find(|r| r.id_number == id).unwrap()
    }
    fn facts(&self, id: &str) -> Facts {
        let r = self.resident(id);
        facts_from_records(&self.forms, &r.datasets, &r.declared, TODAY, &self.cities)
    }
    fn suggested(&self, id: &str) -> Vec<(String, Status, Option<u32>)> {
        suggest(&self.book, &self.facts(id), TODAY)
            .into_iter()
            .map(|a| (a.benefit, a.status, a.amount))
            .collect()
    }
}

#[test]
fn a_general_household_with_a_third_child_under_two_gets_7000_a_month() {
    let w = world();
    let s = w.suggested("A123451006");
    assert!(
        s.contains(&(
            "childcare-allowance-under-2".into(),
            Status::Eligible,
            Some(7000)
        )),
        "{s:?}"
    );
    assert!(!s.iter().any(|(b, _, _)| b.starts_with("senior")), "{s:?}");
    let r = review(
        &w.book,
        "childcare_allowance",
        &w.facts("A123451006"),
        TODAY,
    );
    assert_eq!(r.decision, "pass");
}

#[test]
fn a_low_income_mother_qualifies_through_her_status_without_a_tax_declaration() {
    let w = world();
    let s = w.suggested("A223451044");
    assert!(
        s.contains(&(
            "childcare-allowance-under-2".into(),
            Status::Eligible,
            Some(5000)
        )),
        "{s:?}"
    );
    // The household status also brings the health-insurance premium subsidy.
    assert!(
        s.iter().any(|(b, st, _)| b == "low-income-health-insurance-subsidy"
            && *st == Status::Eligible),
        "{s:?}"
    );
}

#[test]
fn elders_get_the_senior_card_by_age_or_as_indigenous_residents() {
    let w = world();
    let s = w.suggested("A223451071");
    assert!(
        s.contains(&("senior-card".into(), Status::Eligible, None)),
        "{s:?}"
    );
    assert!(s
        .iter()
        .any(|(b, st, _)| b == "double-ninth-senior-gift" && *st == Status::Eligible));
    // 57 and indigenous: the card and the festival gift (both relax the age to 55 for
    // indigenous elders); the same 57-year-old without indigenous status gets neither.
    let s = w.suggested("E223451057");
    assert!(
        s.contains(&("senior-card".into(), Status::Eligible, None)),
        "{s:?}"
    );
    assert!(
        s.iter()
            .any(|(b, st, _)| b == "double-ninth-senior-gift" && *st == Status::Eligible),
        "{s:?}"
    );
    let gift = w.benefit("double-ninth-senior-gift");
    let mut f = w.facts("E223451057");
    f.set("elder.indigenous", Fact::Bool(false));
    let a = assess(&w.book, gift, &f, TODAY);
    assert_eq!(a.status, Status::NotEligible);
    assert!(
        a.checks.iter().any(|c| c.reason.starts_with("未滿65歲")),
        "{a:?}"
    );
    let card = w.benefit("senior-card");
    assert_eq!(assess(&w.book, card, &f, TODAY).status, Status::NotEligible);
}

#[test]
fn a_middle_low_income_high_school_student_gets_the_tuition_reduction_and_nothing_for_elders() {
    let w = world();
    let s = w.suggested("A123451088");
    assert!(
        s.iter()
            .any(|(b, st, _)| b == "tuition-fee-reduction" && *st == Status::Eligible),
        "{s:?}"
    );
    assert!(!s.iter().any(|(b, _, _)| b.starts_with("senior")), "{s:?}");
    let card = w.benefit("senior-card");
    let mut f = w.facts("A123451088");
    f.set("elder.age_years", Fact::Num(70.0));
    f.set("elder.resident_here", Fact::Bool(false));
    let a = assess(&w.book, card, &f, TODAY);
    assert_eq!(a.status, Status::NotEligible);
    assert!(
        a.checks.iter().any(|c| c.reason.contains("未設籍本市")),
        "{:?}",
        a.checks
    );
}

#[test]
fn the_assessment_date_picks_the_period_of_the_amount_table() {
    let w = world();
    let rule = w.benefit("childcare-allowance-under-2");
    // A family in Taipei that meets every condition but age, status and order.
    let facts = |birth: &str, status: &str, order: u64, address: &str, on: &str| {
        let mut v = serde_json::Map::new();
        v.insert("child.birth_date".into(), birth.into());
        v.insert("child.birth_order".into(), order.into());
        v.insert("household_status".into(), status.into());
        v.insert("household.income_high".into(), false.into());
        v.insert("applicant.address".into(), address.into());
        v.insert("applicant.parental_leave_allowance".into(), false.into());
        v.insert("child.care_setting".into(), "家中".into());
        Facts::from_values(&v, on, &w.cities)
    };
    // 現制 (2019-08..2021-07), 第一階段 (2021-08..2022-07): the status matters in both.
    let cases = [
        ("一般", 1, "2020-06-01", 2500),
        ("一般", 3, "2020-06-01", 3500),
        ("中低收入戶", 2, "2020-06-01", 4000),
        ("低收入戶", 3, "2020-06-01", 6000),
    ];
    for (status, order, on, want) in cases {
        let f = facts(
            "2020-01-15",
            status,
            order,
            "臺北市中山區民生東路一段1號",
            on,
        );
        let a = assess(&w.book, rule, &f, on);
        assert_eq!(
            (a.status, a.amount),
            (Status::Eligible, Some(want)),
            "{status} {order} {on}"
        );
    }
    // A child born 2021-09-01 is under two during 第一階段.
    let f = facts(
        "2021-09-01",
        "一般",
        2,
        "台北市信義區松仁路100號",
        "2022-03-01",
    );
    let a = assess(&w.book, rule, &f, "2022-03-01");
    assert_eq!(
        (a.amount, a.period.as_deref()),
        (Some(4000), Some("第一階段（110年8月至111年7月）"))
    );
}

#[test]
fn a_missing_fact_means_needs_info_and_review_not_a_guess() {
    let w = world();
    let mut r = w.resident("A123451006").clone();
    r.declared.remove("household.income_high");
    let f = facts_from_records(&w.forms, &r.datasets, &r.declared, TODAY, &w.cities);
    let rule = w.benefit("childcare-allowance-under-2");
    let a = assess(&w.book, rule, &f, TODAY);
    assert_eq!(a.status, Status::NeedsInfo);
    assert!(
        a.missing.iter().any(|m| m.contains("稅率")),
        "{:?}",
        a.missing
    );
    let rv = review(&w.book, "childcare_allowance", &f, TODAY);
    assert_eq!(rv.decision, "needs_review");
    assert!(
        rv.reasons.iter().any(|r| r.contains("稅率")),
        "{:?}",
        rv.reasons
    );
}

#[test]
fn prefill_keeps_only_the_form_fields_with_their_provenance() {
    let w = world();
    let form = w
        .forms
        .iter()
        .find(|f| f.name == "childcare_allowance")
        .unwrap();
    let p = prefill(form, &w.resident("A123451006").datasets);
    assert_eq!(p["applicant.name"].value, "王大明");
    assert_eq!(p["child.birth_date"].value, "2025-06-01");
    assert_eq!(p["household_status"].value, "一般");
    assert_eq!(
        p["applicant.name"].provenance,
        "資料來源：MyData 現戶全戶戶籍資料"
    );
    // Nothing the form does not ask for (household size, the child's ID) is kept.
    assert!(p.values().all(|v| v.value != 5 && v.value != "A223451017"));
    let senior = w.forms.iter().find(|f| f.name == "senior_card").unwrap();
    let p = prefill(senior, &w.resident("A223451071").datasets);
    assert_eq!(p["elder.birth_date"].value, "1950-03-02");
    assert_eq!(p["elder.address"].value, "臺北市士林區中正路200號5樓");
}

#[test]
fn a_senior_living_alone_on_low_income_is_offered_the_senior_benefits_and_nothing_for_children() {
    let w = world();
    let extractor = crate::bundled_extractor();
    let text = "我今年67歲，一個人住在臺北市，是中低收入戶，想知道可以申請什麼";
    let (facts, heard) = assistant::eligibility::facts_from_text(text, &extractor, TODAY);
    let found = suggest(&w.book, &facts, TODAY);
    let status = |id: &str| found.iter().find(|a| a.benefit == id).map(|a| a.status);
    for id in [
        "senior-card",
        "double-ninth-senior-gift",
        "senior-living-allowance",
        "low-income-health-insurance-subsidy",
        "senior-health-checkup",
    ] {
        assert_eq!(status(id), Some(Status::Eligible), "{id}: {found:#?}");
    }
    let allowance = found
        .iter()
        .find(|a| a.benefit == "senior-living-allowance")
        .unwrap();
    assert!(allowance.amount.is_some_and(|n| n > 0), "{allowance:?}");
    assert!(
        !found.iter().any(|a| a.benefit.contains("child")
            || a.benefit.contains("student")
            || a.benefit.contains("tuition")
            || a.benefit.contains("birth")
            || a.benefit.contains("preschool")),
        "{found:#?}"
    );
    // Facts the resident gave are never asked again.
    for a in &found {
        assert!(
            !a.missing
                .iter()
                .any(|m| m.contains("設籍") || m.contains("年齡") || m.contains("經濟身分")),
            "{a:?}"
        );
    }
    // Offered in the chat (a self-description with an ask), at most five, eligible first.
    let offered =
        assistant::eligibility::offer(&w.book, extractor.forms(), &facts, &heard, text, TODAY);
    assert!(!offered.is_empty() && offered.len() <= 5, "{offered:?}");
    assert_eq!(offered[0].status, Status::Eligible);
    // A plain question about a service offers nothing.
    let q = "敬老卡要帶什麼證件？";
    let (facts, heard) = assistant::eligibility::facts_from_text(q, &extractor, TODAY);
    assert!(
        assistant::eligibility::offer(&w.book, extractor.forms(), &facts, &heard, q, TODAY)
            .is_empty()
    );
}

#[test]
fn every_benefit_guide_has_a_rule_and_every_rule_its_guide() {
    let root = crate::repo_root();
    let book = Rulebook::load(&root.join("corpus/benefits")).unwrap();
    let loaded = knowledge::load_path(
        &root.join("corpus/guides"),
        &knowledge::LoadOptions::default(),
    )
    .unwrap();
    // The guides' categories of benefits one applies for (not reports or general services).
    const BENEFIT_CATEGORIES: &[&str] = &[
        "老人福利",
        "兒童及少年福利",
        "身心障礙福利",
        "社會救助",
        "長期照顧",
        "教育",
        "衛生保健",
        "住宅",
    ];
    let without_rule: Vec<&str> = loaded
        .documents
        .iter()
        .map(|d| &d.document)
        .filter(|d| {
            d.category
                .as_deref()
                .is_some_and(|c| BENEFIT_CATEGORIES.contains(&c))
        })
        .filter(|d| !book.benefits.iter().any(|b| b.id == d.id))
        .map(|d| d.id.as_str())
        .collect();
    assert!(
        without_rule.is_empty(),
        "guides without a rule: {without_rule:?}"
    );
    let ids: Vec<String> = loaded
        .documents
        .iter()
        .map(|d| d.document.id.clone())
        .collect();
    book.check_guides(&ids).unwrap();
    assert!(book.benefits.len() >= 27, "{}", book.benefits.len());
    // A rule naming no guide is refused with the fix.
    let err = book.check_guides(&ids[..1]).unwrap_err();
    assert!(err.contains("corpus/guides/"), "{err}");
}
