//! Chat templates per model family, as the models were trained on them.

use serde::{Deserialize, Serialize};

use super::{ChatMessage, Role};

/// The prompt format of a model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatTemplate {
    /// `<|im_start|>role\n…<|im_end|>` (Qwen, many others).
    ChatMl,
    /// Llama 3 headers (`<|start_header_id|>role<|end_header_id|>`), e.g. TAIDE Llama-3 models.
    Llama3,
    /// `[INST] … [/INST]` with `<<SYS>>` (Llama 2, Mistral, Breeze, older TAIDE).
    Llama2,
    /// `<start_of_turn>user … <end_of_turn>` (Gemma; no system role: it is folded into the
    /// first user turn).
    Gemma,
}

impl ChatTemplate {
    /// Guesses the template from the GGUF's `tokenizer.chat_template` and architecture.
    pub fn detect(jinja: Option<&str>, arch: &str) -> ChatTemplate {
        if let Some(t) = jinja {
            if t.contains("<|im_start|>") {
                return ChatTemplate::ChatMl;
            }
            if t.contains("<|start_header_id|>") {
                return ChatTemplate::Llama3;
            }
            if t.contains("<start_of_turn>") {
                return ChatTemplate::Gemma;
            }
            if t.contains("[INST]") {
                return ChatTemplate::Llama2;
            }
        }
        match arch {
            "qwen2" | "qwen3" => ChatTemplate::ChatMl,
            "gemma3" | "gemma2" | "gemma" => ChatTemplate::Gemma,
            _ => ChatTemplate::Llama2,
        }
    }

    /// Token strings that end the assistant's turn.
    pub fn stop_tokens(self) -> &'static [&'static str] {
        match self {
            ChatTemplate::ChatMl => &["<|im_end|>", "<|endoftext|>"],
            ChatTemplate::Llama3 => &["<|eot_id|>", "<|end_of_text|>"],
            ChatTemplate::Llama2 => &["</s>"],
            ChatTemplate::Gemma => &["<end_of_turn>", "<eos>"],
        }
    }

    /// Renders the conversation, ending where the assistant's reply begins.
    pub fn render(self, messages: &[ChatMessage]) -> String {
        let mut out = String::new();
        match self {
            ChatTemplate::ChatMl => {
                for m in messages {
                    out.push_str("<|im_start|>");
                    out.push_str(role_name(m.role));
                    out.push('\n');
                    out.push_str(&m.content);
                    out.push_str("<|im_end|>\n");
                }
                out.push_str("<|im_start|>assistant\n");
            }
            ChatTemplate::Llama3 => {
                out.push_str("<|begin_of_text|>");
                for m in messages {
                    out.push_str("<|start_header_id|>");
                    out.push_str(role_name(m.role));
                    out.push_str("<|end_header_id|>\n\n");
                    out.push_str(m.content.trim());
                    out.push_str("<|eot_id|>");
                }
                out.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
            }
            ChatTemplate::Llama2 => {
                let mut system: Option<&str> = None;
                let mut first = true;
                for m in messages {
                    match m.role {
                        Role::System => system = Some(m.content.trim()),
                        Role::User => {
                            out.push_str("<s>[INST] ");
                            if let (true, Some(s)) = (first, system) {
                                out.push_str("<<SYS>>\n");
                                out.push_str(s);
                                out.push_str("\n<</SYS>>\n\n");
                            }
                            first = false;
                            out.push_str(m.content.trim());
                            out.push_str(" [/INST]");
                        }
                        Role::Assistant => {
                            out.push(' ');
                            out.push_str(m.content.trim());
                            out.push_str(" </s>");
                        }
                    }
                }
            }
            ChatTemplate::Gemma => {
                out.push_str("<bos>");
                let mut system: Option<&str> = None;
                for m in messages {
                    match m.role {
                        Role::System => system = Some(m.content.trim()),
                        Role::User => {
                            out.push_str("<start_of_turn>user\n");
                            if let Some(s) = system.take() {
                                out.push_str(s);
                                out.push_str("\n\n");
                            }
                            out.push_str(m.content.trim());
                            out.push_str("<end_of_turn>\n");
                        }
                        Role::Assistant => {
                            out.push_str("<start_of_turn>model\n");
                            out.push_str(m.content.trim());
                            out.push_str("<end_of_turn>\n");
                        }
                    }
                }
                out.push_str("<start_of_turn>model\n");
            }
        }
        out
    }

    /// The rendered text of a conversation's fixed beginning (its system message), which
    /// every prompt with that system message starts with; `None` where the template mixes the
    /// system text into the first user turn.
    pub fn system_prefix(self, system: &str) -> Option<String> {
        match self {
            ChatTemplate::ChatMl => Some(format!("<|im_start|>system\n{system}<|im_end|>\n")),
            ChatTemplate::Llama3 => Some(format!(
                "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{}<|eot_id|>",
                system.trim()
            )),
            ChatTemplate::Llama2 => Some(format!(
                "<s>[INST] <<SYS>>\n{}\n<</SYS>>\n\n",
                system.trim()
            )),
            ChatTemplate::Gemma => Some(format!("<bos><start_of_turn>user\n{}\n\n", system.trim())),
        }
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv() -> Vec<ChatMessage> {
        vec![
            ChatMessage::system("只根據資料回答。"),
            ChatMessage::user("敬老卡怎麼辦？"),
            ChatMessage::assistant("到區公所辦理。[1]"),
            ChatMessage::user("那要帶什麼？"),
        ]
    }

    #[test]
    fn chatml_renders_turns_and_opens_the_reply() {
        let p = ChatTemplate::ChatMl.render(&conv());
        assert!(p.starts_with("<|im_start|>system\n只根據資料回答。<|im_end|>\n"));
        assert!(p.contains("<|im_start|>assistant\n到區公所辦理。[1]<|im_end|>\n"));
        assert!(p.ends_with("<|im_start|>user\n那要帶什麼？<|im_end|>\n<|im_start|>assistant\n"));
    }

    #[test]
    fn every_template_starts_with_its_system_prefix() {
        for t in [
            ChatTemplate::ChatMl,
            ChatTemplate::Llama3,
            ChatTemplate::Llama2,
            ChatTemplate::Gemma,
        ] {
            let full = t.render(&conv());
            let prefix = t.system_prefix("只根據資料回答。").unwrap();
            assert!(full.starts_with(&prefix), "{t:?}: {full}");
        }
    }

    #[test]
    fn llama2_puts_the_system_text_in_the_first_turn_only() {
        let p = ChatTemplate::Llama2.render(&conv());
        assert_eq!(p.matches("<<SYS>>").count(), 1);
        assert!(p.ends_with("<s>[INST] 那要帶什麼？ [/INST]"));
        assert!(p.contains(" 到區公所辦理。[1] </s>"));
    }

    #[test]
    fn detection_prefers_the_embedded_template() {
        assert_eq!(
            ChatTemplate::detect(Some("{% for m in messages %}<|im_start|>"), "llama"),
            ChatTemplate::ChatMl
        );
        assert_eq!(
            ChatTemplate::detect(Some("<|start_header_id|>"), "llama"),
            ChatTemplate::Llama3
        );
        assert_eq!(ChatTemplate::detect(None, "qwen2"), ChatTemplate::ChatMl);
        assert_eq!(ChatTemplate::detect(None, "gemma3"), ChatTemplate::Gemma);
        assert_eq!(ChatTemplate::detect(None, "llama"), ChatTemplate::Llama2);
    }
}
