//! `ask` and `chat`: answers in the terminal, streamed, with their sources and verdict.

use std::io::{BufRead, Write};

use crate::answer::chat::{Chat, Conversation};
use crate::answer::{Answer, AnswerEvent, Answerer, AskContext};
use crate::app::App;

fn print_sources(a: &Answer) {
    if a.citations.is_empty() {
        return;
    }
    println!("\n出處：");
    for c in &a.citations {
        println!(
            "  [{}] {}｜{}（{}）",
            c.number, c.title, c.section, c.doc_id
        );
    }
}

/// Prints the draft answer at once, then the LLM's text as it streams, then the verdict.
fn streaming_printer() -> impl FnMut(AnswerEvent<'_>) + Send {
    let mut started_llm = false;
    move |event| match event {
        AnswerEvent::Draft(a) => {
            println!("{}", a.answer);
        }
        AnswerEvent::Token(piece) => {
            if !started_llm {
                started_llm = true;
                print!("\n── AI 整理（查核中）──\n");
            }
            print!("{piece}");
            let _ = std::io::stdout().flush();
        }
    }
}

fn print_verdict(a: &Answer) {
    if let Some(llm) = &a.llm {
        if llm.accepted {
            println!("\n（AI 整理已通過出處查核）");
        } else {
            println!("\n（AI 整理未通過出處查核，請以上方摘錄的說明為準）");
        }
    }
    print_sources(a);
}

pub(super) async fn ask(answerer: &Answerer, question: &str, json: bool) -> anyhow::Result<()> {
    if json {
        let a = answerer
            .answer(question, &AskContext::default(), &mut |_| {})
            .await?;
        println!("{}", serde_json::to_string_pretty(&a)?);
        return Ok(());
    }
    let mut printer = streaming_printer();
    let a = answerer
        .answer(question, &AskContext::default(), &mut printer)
        .await?;
    print_verdict(&a);
    Ok(())
}

pub(super) async fn chat(app: &App, answerer: &Answerer) -> anyhow::Result<()> {
    let walkthroughs = app.walkthroughs()?;
    let chat = Chat {
        answerer,
        walkthroughs: &walkthroughs,
    };
    answerer.warm_up()?;
    println!(
        "已載入 {} 份服務說明。請輸入問題（可以接著追問；輸入「一步一步引導我辦敬老卡」可開始引導），空白行結束。",
        answerer.retriever().num_documents()
    );
    let mut conv = Conversation::default();
    let stdin = std::io::stdin();
    loop {
        print!("\n您> ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        let mut printer = streaming_printer();
        let a = chat.reply(&mut conv, line.trim(), &mut printer).await?;
        print_verdict(&a);
    }
    Ok(())
}
