//! `benefits`: what a resident appears eligible for, from how they describe themselves.

use std::process::ExitCode;

use crate::app::App;

/// `assistant benefits`.
pub(super) fn benefits_cmd(
    app: &App,
    text: &str,
    on: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use crate::eligibility::{facts_from_text, suggest, Status};
    let on = on.unwrap_or_else(crate::eligibility::today);
    let extractor = app.extractor(false)?;
    let book = app.benefit_rules()?;
    let (facts, _) = facts_from_text(text, &extractor, &on);
    let found = suggest(&book, &facts, &on);
    if json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(ExitCode::SUCCESS);
    }
    if found.is_empty() {
        println!("從描述中找不到可判斷的福利項目，請提供更多資訊（例如年齡、孩子的出生日期、家庭經濟身分）。");
    }
    for a in &found {
        let status = match a.status {
            Status::Eligible => "看起來符合",
            Status::NeedsInfo => "可能符合，還需要確認",
            Status::NotEligible => "不符合",
        };
        let amount = a
            .amount
            .map(|n| format!("，{}{n}", a.unit.clone().unwrap_or_default()))
            .unwrap_or_default();
        println!("● {}（{}）：{status}{amount}", a.name, a.bureau);
        for c in &a.checks {
            println!("    - {}", c.reason);
        }
        if a.amount.is_none() {
            if let Some(t) = &a.amount_text {
                println!("    金額：{t}");
            }
        }
        if !a.documents.is_empty() {
            println!("    應備文件：{}", a.documents.join("、"));
        }
        if a.verify {
            println!("    ※ 條件與金額以本市公告為準");
        }
    }
    Ok(ExitCode::SUCCESS)
}
