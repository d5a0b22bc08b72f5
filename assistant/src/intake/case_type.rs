//! What kind of call it is: 諮詢 (a question to answer, no dispatch), 通報 (something at a
//! place to dispatch someone to) or 陳情 (a complaint about a person, business or official).
//! A call that asks a question and also reports a problem at a place is a report: what must
//! happen wins. Read from cue words (asking, requesting someone to come, the problem, a place,
//! who is complained about), with the dispatch category's own score as one more sign.

use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// The kind of call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CaseType {
    #[serde(rename = "諮詢")]
    Inquiry,
    #[serde(rename = "通報")]
    Report,
    #[serde(rename = "陳情")]
    Complaint,
}

impl CaseType {
    pub fn label(self) -> &'static str {
        match self {
            CaseType::Inquiry => "諮詢",
            CaseType::Report => "通報",
            CaseType::Complaint => "陳情",
        }
    }

    /// Whether the case goes to a bureau (a dispatch category applies).
    pub fn dispatched(self) -> bool {
        self != CaseType::Inquiry
    }
}

/// The call type with the cue scores behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Typed {
    pub case_type: CaseType,
    pub scores: [f32; 3],
}

fn patterns() -> &'static [(Regex, [f32; 3])] {
    static P: OnceLock<Vec<(Regex, [f32; 3])>> = OnceLock::new();
    P.get_or_init(|| {
        // (pattern, [inquiry, report, complaint])
        [
            // Asking.
            (r"(請問|想問|想請問|問一下|請教|想了解|想知道|不知道)", [1.2, 0.0, 0.0]),
            (r"(怎麼辦理|怎麼申請|如何申請|要怎麼|怎麼樣才|要去哪|去哪裡|在哪裡辦|哪裡可以|要帶什麼|要準備|需要什麼|資格|條件|多少錢|收費|費用|多久|幾天|能不能|可不可以|是不是|有沒有)", [1.0, 0.0, 0.0]),
            (r"(嗎[？?]?$|嗎[，,。]|呢[？?]|[？?])", [0.6, 0.0, 0.0]),
            (r"(申請|補助|津貼|證明|辦理|登記|預約方式|規定|流程)", [0.6, 0.0, 0.0]),
            // Asking someone to come and act at a place.
            (r"(派人|派車|派員|請人來|趕快來|快點來|過來處理|來處理|來收|來載|來拿|來修|來看|來測|來抓|來清|幫忙處理|麻煩處理|麻煩你們|麻煩幫|請你們|可以請|安排來)", [0.0, 2.0, 0.0]),
            // Something wrong at a place.
            (r"(壞了|壞掉|不亮|一閃一閃|閃爍|破了|破掉|斷了|倒了|倒在|塌|凹下去|坑|洞|漏水|沒水|淹水|積水|淹到|塞住|堵住|堵塞|掉下來|垂下來|歪了|傾斜|死了|受傷|卡在|流浪|咬人|蜂窩|蛇|油漬|散落|冒水|爆管|沒人來收|都沒人來)", [0.0, 1.4, 0.0]),
            (r"(路口|路上|巷口|巷子|門口|樓下|旁邊|對面|附近|公園|人行道|騎樓|馬路|路段|[一二三四五六七八九十0-9]+段|[0-9]+號|[0-9]+巷)", [0.0, 0.6, 0.3]),
            (r"(中正區|大同區|中山區|松山區|大安區|萬華區|信義區|士林區|北投區|內湖區|南港區|文山區)", [0.0, 0.5, 0.2]),
            // Complaining about someone.
            (r"(檢舉|投訴|陳情|申訴|抗議|反映|舉發)", [0.0, 0.0, 2.0]),
            (r"(很吵|好吵|太吵|吵到|吵死|擾民|噪音|聲音|大聲|放音樂|唱歌|音響|臭|異味|油煙|排煙|亂停|違停|亂丟|佔用|霸佔|態度|不理|不處理|都不管|推託|擺攤)", [0.0, 0.3, 1.3]),
            (r"(酒吧|KTV|卡拉|夜店|餐廳|熱炒|工廠|工地|建案|修理廠|宮廟|廟|健身房|店家|老闆|鄰居|樓上|房東|承辦人|公務員|業者|公司|商家|攤販)", [0.0, 0.0, 1.0]),
            (r"(每天|天天|整晚|半夜|凌晨|一直|好幾個月|好幾天|已經很久)", [0.0, 0.2, 0.5]),
        ]
        .iter()
        .map(|(p, w)| (Regex::new(p).expect("case-type patterns compile"), *w))
        .collect()
    })
}

/// The call type of `text`; `category_score` is the dispatch category classifier's best score
/// (how much the text reads like a dispatch item).
pub fn classify(text: &str, category_score: f32) -> Typed {
    let t = knowledge::text::fold_for_matching(text);
    let mut s = [0f32; 3];
    for (re, w) in patterns() {
        let hits = re.find_iter(&t).count().min(2) as f32;
        for i in 0..3 {
            s[i] += w[i] * hits;
        }
    }
    // A text close to a dispatch item's words reads as a report.
    s[1] += 0.8 * category_score.clamp(0.0, 2.0);
    // A question is asked; a statement about something wrong is a report (or a complaint
    // about someone): residents rarely say 「我要通報」.
    let case_type = if s[2] >= 1.8 && s[2] >= s[1] * 0.8 && s[2] > s[0] {
        CaseType::Complaint
    } else if s[0] >= 1.0 && s[0] > s[1] {
        CaseType::Inquiry
    } else if s[1] >= 1.0 || s[0] < 0.6 {
        if s[2] >= 1.3 && s[2] > s[1] {
            CaseType::Complaint
        } else {
            CaseType::Report
        }
    } else {
        CaseType::Inquiry
    };
    Typed {
        case_type,
        scores: s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_reports_and_complaints() {
        let q = |t: &str| classify(t, 0.3).case_type;
        assert_eq!(
            q("我媽媽住在信義區，她今年七十歲了，想問敬老卡要怎麼辦"),
            CaseType::Inquiry
        );
        assert_eq!(
            q("我想問一下育兒津貼，我小孩上個月出生，是第二胎"),
            CaseType::Inquiry
        );
        assert_eq!(
            classify("大安區復興南路一段路口的路燈不亮，麻煩派人來修", 1.2).case_type,
            CaseType::Report
        );
        assert_eq!(
            classify("我家樓下那間酒吧每天放音樂放到凌晨三點，我要檢舉", 0.8).case_type,
            CaseType::Complaint
        );
    }
}
