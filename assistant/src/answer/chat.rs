//! Multi-turn chat: follow-up questions resolved against the conversation's topic
//! (「那要帶什麼？」 after a question about 敬老卡), a clarifying question when a short question
//! fits several services equally, and guided walk-throughs.

use serde::{Deserialize, Serialize};

use crate::answer::walkthrough::{Session, Turn, Walkthrough};
use crate::answer::{Answer, AnswerEvent, AnswerKind, Answerer, AskContext, Citation};
use knowledge::SectionKind;

/// One exchange, as kept for context.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exchange {
    pub question: String,
    pub answer: String,
    pub doc_id: Option<String>,
}

/// What a conversation remembers between messages (serialisable, so a server can keep it per
/// session).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Conversation {
    pub exchanges: Vec<Exchange>,
    /// The service being talked about.
    pub topic: Option<Topic>,
    /// A walk-through in progress.
    pub walkthrough: Option<Session>,
    /// A walk-through the assistant offered in its last reply.
    pub offered: Option<String>,
    /// The services offered in a clarifying question, and the question it was about.
    pub clarifying: Option<(String, Vec<Topic>)>,
}

/// A service the conversation is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    pub doc_id: String,
    pub title: String,
}

/// Words that mark a message as leaning on what was said before.
const FOLLOW_UP_CUES: &[&str] = &[
    "那要",
    "那我",
    "那麼",
    "那如果",
    "那在",
    "那可以",
    "還有",
    "另外",
    "這個",
    "那個",
    "它",
    "這樣",
    "要帶什麼",
    "去哪",
    "多久",
    "多少錢",
    "費用",
    "哪裡辦",
    "怎麼辦理",
    "可以代辦",
];

const START_CUES: &[&str] = &["一步一步", "引導", "帶我", "幫我看看", "逐步"];
const YES: &[&str] = &["好", "要", "是", "可以", "OK", "ok", "開始"];

/// Chat over an [`Answerer`] and the walk-through definitions.
pub struct Chat<'a> {
    pub answerer: &'a Answerer,
    pub walkthroughs: &'a [Walkthrough],
}

/// Whether `text` names the service titled `title` (「敬老卡（敬老愛心卡）申請」 is named by
/// 敬老卡 or 敬老愛心卡).
fn mentions(text: &str, title: &str) -> bool {
    title
        .split(['（', '）', '(', ')', '／', '、', ' ', '，'])
        .map(|p| {
            ["資格申請", "申請", "申辦", "通報", "報修"]
                .iter()
                .fold(p.trim(), |p, suffix| p.strip_suffix(suffix).unwrap_or(p))
        })
        .filter(|p| p.chars().count() >= 2)
        .any(|p| {
            text.contains(p) || {
                // Long names are often shortened (敬老愛心卡 → 敬老卡): the first two and the
                // last character.
                let cs: Vec<char> = p.chars().collect();
                cs.len() >= 4 && {
                    let head: String = cs[..2].iter().collect();
                    text.contains(&head) && text.contains(cs[cs.len() - 1])
                }
            }
        })
}

impl Chat<'_> {
    fn titles(&self) -> Vec<Topic> {
        self.answerer
            .retriever()
            .titles()
            .into_iter()
            .map(|(doc_id, title)| Topic { doc_id, title })
            .collect()
    }

    /// Whether `message` names some service of the knowledge base.
    fn named_topic(&self, message: &str) -> Option<Topic> {
        self.titles()
            .into_iter()
            .filter(|t| mentions(message, &t.title))
            .max_by_key(|t| t.title.chars().count())
    }

    fn walkthrough(&self, id: &str) -> Option<&Walkthrough> {
        self.walkthroughs.iter().find(|w| w.id() == id)
    }

    fn walkthrough_answer(&self, wt: &Walkthrough, turn: Turn, conv: &mut Conversation) -> Answer {
        let title = self
            .answerer
            .retriever()
            .chunks_of(wt.doc_id())
            .first()
            .map(|c| c.doc_title.clone())
            .unwrap_or_else(|| wt.title().to_string());
        match turn {
            Turn::Ask {
                question, options, ..
            } => {
                let mut text = question;
                if !options.is_empty() {
                    text.push_str(&format!("（{}）", options.join("／")));
                }
                let mut a = Answer::plain(AnswerKind::Walkthrough, text);
                a.doc_id = Some(wt.doc_id().to_string());
                a
            }
            Turn::Done(outcome) => {
                conv.walkthrough = None;
                let mut a = Answer::plain(AnswerKind::Walkthrough, outcome.render(&title));
                a.doc_id = Some(wt.doc_id().to_string());
                a.citations = outcome
                    .items
                    .iter()
                    .map(|i| i.section.clone())
                    .fold(Vec::<String>::new(), |mut acc, s| {
                        if !acc.contains(&s) {
                            acc.push(s);
                        }
                        acc
                    })
                    .into_iter()
                    .enumerate()
                    .map(|(n, section)| Citation {
                        number: n + 1,
                        doc_id: wt.doc_id().to_string(),
                        chunk_id: String::new(),
                        title: title.clone(),
                        snippet: outcome
                            .items
                            .iter()
                            .find(|i| i.section == section)
                            .map(|i| i.text.chars().take(80).collect())
                            .unwrap_or_default(),
                        section,
                    })
                    .collect();
                a
            }
            Turn::Cancelled => {
                conv.walkthrough = None;
                Answer::plain(
                    AnswerKind::Walkthrough,
                    "好的，已結束引導。還有其他問題都可以直接問我。",
                )
            }
        }
    }

    fn start_walkthrough(&self, wt: &Walkthrough, conv: &mut Conversation) -> Answer {
        let mut session = wt.start();
        let turn = session.first(wt);
        conv.walkthrough = Some(session);
        conv.offered = None;
        let mut a = self.walkthrough_answer(wt, turn, conv);
        a.answer = format!("{}\n{}", wt.intro(), a.answer);
        a
    }

    /// Replies to one message of the conversation and updates it.
    pub async fn reply(
        &self,
        conv: &mut Conversation,
        message: &str,
        on_event: &mut (dyn FnMut(AnswerEvent<'_>) + Send),
    ) -> anyhow::Result<Answer> {
        let message = message.trim();
        // 1. A walk-through in progress takes the message.
        if let Some(mut session) = conv.walkthrough.take() {
            if let Some(wt) = self.walkthrough(&session.walkthrough_id) {
                let turn = session.reply(wt, message);
                conv.walkthrough = Some(session);
                let a = self.walkthrough_answer(wt, turn, conv);
                on_event(AnswerEvent::Draft(&a));
                return Ok(self.record(conv, message, a));
            }
        }
        // 2. Accepting an offered walk-through, or asking for one.
        if let Some(id) = conv.offered.take() {
            if YES.iter().any(|y| message.starts_with(y))
                || START_CUES.iter().any(|c| message.contains(c))
            {
                if let Some(wt) = self.walkthrough(&id) {
                    let a = self.start_walkthrough(wt, conv);
                    on_event(AnswerEvent::Draft(&a));
                    return Ok(self.record(conv, message, a));
                }
            }
        }
        if START_CUES.iter().any(|c| message.contains(c)) {
            if let Some(wt) = self.walkthroughs.iter().find(|w| {
                w.matches(message) || {
                    self.named_topic(message)
                        .is_some_and(|t| t.doc_id == w.doc_id())
                }
            }) {
                let a = self.start_walkthrough(wt, conv);
                on_event(AnswerEvent::Draft(&a));
                return Ok(self.record(conv, message, a));
            }
        }
        // 3. The answer to a clarifying question.
        let mut ctx = AskContext::default();
        let mut question = message.to_string();
        if let Some((original, options)) = conv.clarifying.take() {
            let pick = options.iter().enumerate().find(|(i, t)| {
                mentions(message, &t.title)
                    || message.contains(&(i + 1).to_string())
                    || message.contains(["第一", "第二", "第三"][(*i).min(2)])
            });
            if let Some((_, t)) = pick {
                ctx.prefer_doc = Some(t.doc_id.clone());
                ctx.query_prefix = Some(t.title.clone());
                question = original;
            }
        }
        // 4. A follow-up about the current topic.
        let named = self.named_topic(&question);
        if ctx.prefer_doc.is_none() {
            if let (Some(topic), None) = (&conv.topic, &named) {
                let short = question.chars().count() <= 12;
                if short || FOLLOW_UP_CUES.iter().any(|c| question.contains(c)) {
                    ctx.prefer_doc = Some(topic.doc_id.clone());
                    ctx.query_prefix = Some(topic.title.clone());
                }
            }
        }
        // 5. A short question that fits several services equally: ask which.
        if ctx.prefer_doc.is_none() && named.is_none() && question.chars().count() <= 12 {
            if let Some(options) = self.ambiguous(&question).await? {
                let list: Vec<String> = options
                    .iter()
                    .enumerate()
                    .map(|(i, t)| format!("{}. {}", i + 1, t.title))
                    .collect();
                let a = Answer::plain(
                    AnswerKind::Clarify,
                    format!(
                        "請問您想詢問的是哪一項服務？\n{}\n請回覆名稱或編號。",
                        list.join("\n")
                    ),
                );
                conv.clarifying = Some((question.clone(), options));
                on_event(AnswerEvent::Draft(&a));
                return Ok(self.record(conv, message, a));
            }
        }
        let mut a = self.answerer.answer(&question, &ctx, on_event).await?;
        if let Some(doc) = &a.doc_id {
            if let Some(wt) = self.walkthroughs.iter().find(|w| w.doc_id() == doc) {
                if !a.handoff {
                    a.answer.push_str(&format!(
                        "\n\n若想由我一步一步確認您的情況與要準備的文件，請回覆「好」開始{}。",
                        wt.title()
                    ));
                    conv.offered = Some(wt.id().to_string());
                }
            }
        }
        Ok(self.record(conv, message, a))
    }

    /// The candidate services when the best two are about equally likely and different.
    async fn ambiguous(&self, question: &str) -> anyhow::Result<Option<Vec<Topic>>> {
        let hits = self
            .answerer
            .retriever()
            .search(
                question,
                &retrieval::SearchOptions {
                    k: 10,
                    ..Default::default()
                },
            )
            .await?;
        let mut best: Vec<(String, String, f64)> = Vec::new();
        for h in &hits {
            if !best.iter().any(|(d, _, _)| *d == h.chunk.doc_id) {
                best.push((h.chunk.doc_id.clone(), h.chunk.doc_title.clone(), h.score));
            }
        }
        if best.len() < 2 {
            return Ok(None);
        }
        let top = best[0].2;
        let close: Vec<Topic> = best
            .iter()
            .take(3)
            .filter(|(_, _, s)| *s >= top * 0.9)
            .map(|(doc_id, title, _)| Topic {
                doc_id: doc_id.clone(),
                title: title.clone(),
            })
            .collect();
        Ok((close.len() >= 2).then_some(close))
    }

    fn record(&self, conv: &mut Conversation, message: &str, a: Answer) -> Answer {
        if let Some(doc) = &a.doc_id {
            if let Some((_, title)) = self
                .answerer
                .retriever()
                .titles()
                .into_iter()
                .find(|(d, _)| d == doc)
            {
                conv.topic = Some(Topic {
                    doc_id: doc.clone(),
                    title,
                });
            }
        }
        conv.exchanges.push(Exchange {
            question: message.to_string(),
            answer: a.answer.clone(),
            doc_id: a.doc_id.clone(),
        });
        a
    }
}

/// Follow-up questions the guide can answer and the reply did not cover.
pub fn follow_ups(retriever: &retrieval::Retriever, a: &Answer) -> Vec<String> {
    let Some(doc) = &a.doc_id else {
        return Vec::new();
    };
    if a.handoff || a.kind == AnswerKind::Walkthrough {
        return Vec::new();
    }
    let present: Vec<SectionKind> = retriever.chunks_of(doc).iter().map(|c| c.section).collect();
    let cited: Vec<&str> = a.citations.iter().map(|c| c.section.as_str()).collect();
    [
        (SectionKind::Documents, "要準備哪些文件？"),
        (SectionKind::HowToApply, "要怎麼申請？"),
        (SectionKind::Location, "要去哪裡辦？"),
        (SectionKind::Eligibility, "誰可以申請？"),
        (SectionKind::Fees, "需要費用嗎？"),
        (SectionKind::ProcessingTime, "要多久才會好？"),
    ]
    .iter()
    .filter(|(k, _)| present.contains(k) && !cited.contains(&k.label()))
    .map(|(_, q)| q.to_string())
    .take(3)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortened_titles_are_recognised() {
        assert!(mentions("我要辦敬老卡", "敬老愛心卡"));
        assert!(mentions(
            "我媽70歲要怎麼辦敬老卡？",
            "敬老卡（敬老愛心卡）申請"
        ));
        assert!(mentions("重陽敬老禮金何時發", "重陽敬老禮金"));
        assert!(mentions("低收入戶要怎麼申請", "低收入戶資格申請"));
        assert!(!mentions("那要帶什麼", "敬老卡（敬老愛心卡）申請"));
    }
}
