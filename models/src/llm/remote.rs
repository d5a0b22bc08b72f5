//! An OpenAI-compatible chat backend (`POST {base}/chat/completions` with `stream: true`), so
//! a city can run a larger model on vLLM or llama.cpp's server and point the product at it.
//! Plain HTTP (an internal service, or a TLS-terminating proxy in front of it).

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ChatMessage, ChatModel, FinishReason, GenerationParams, GenerationStats};
use crate::error::{Error, Result};

/// Where the remote model is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// Base URL including the version path, e.g. `http://10.0.0.5:8000/v1`.
    pub base_url: String,
    /// The model name the server expects.
    pub model: String,
    /// Sent as `Authorization: Bearer …` when set.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Whole-request timeout in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
}

fn default_timeout() -> u64 {
    120
}

/// The remote backend.
pub struct RemoteLlm {
    config: RemoteConfig,
    agent: ureq::Agent,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: usize,
    #[serde(default)]
    completion_tokens: usize,
}

impl RemoteLlm {
    pub fn new(config: RemoteConfig) -> Result<RemoteLlm> {
        if !config.base_url.starts_with("http://") {
            return Err(Error::Remote {
                url: config.base_url.clone(),
                reason: "only http:// URLs are supported; put a TLS-terminating proxy in front \
                         of an https endpoint"
                    .into(),
            });
        }
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(config.timeout_s.max(1)))
            .build();
        Ok(RemoteLlm { config, agent })
    }

    fn url(&self) -> String {
        format!(
            "{}/chat/completions",
            self.config.base_url.trim_end_matches('/')
        )
    }

    fn err(&self, reason: impl Into<String>) -> Error {
        Error::Remote {
            url: self.url(),
            reason: reason.into(),
        }
    }
}

impl ChatModel for RemoteLlm {
    fn describe(&self) -> String {
        format!("remote {} ({})", self.config.base_url, self.config.model)
    }

    fn chat(
        &self,
        messages: &[ChatMessage],
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenerationStats> {
        let started = Instant::now();
        let mut body = json!({
            "model": self.config.model,
            "messages": messages,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "seed": params.seed,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if let Some(p) = params.top_p {
            body["top_p"] = json!(p);
        }
        if !params.stop.is_empty() {
            body["stop"] = json!(params.stop);
        }
        let mut req = self
            .agent
            .post(&self.url())
            .set("Content-Type", "application/json")
            .set("Accept", "text/event-stream");
        if let Some(key) = &self.config.api_key {
            req = req.set("Authorization", &format!("Bearer {key}"));
        }
        let resp = req.send_string(&body.to_string()).map_err(|e| match e {
            ureq::Error::Status(code, r) => {
                let text = r.into_string().unwrap_or_default();
                self.err(format!(
                    "HTTP {code}: {}",
                    text.chars().take(200).collect::<String>()
                ))
            }
            other => self.err(other.to_string()),
        })?;
        let mut stats = GenerationStats {
            prompt_tokens: 0,
            reused_prompt_tokens: 0,
            generated_tokens: 0,
            prefill_ms: 0.0,
            first_token_ms: 0.0,
            generation_ms: 0.0,
            finish: FinishReason::Length,
        };
        let mut first: Option<Instant> = None;
        let mut pieces = 0usize;
        // A stream that ends without `[DONE]` or a finish reason was cut off (the server died
        // or a proxy dropped it): an error, never a reply taken as whole.
        let mut complete = false;
        let reader = BufReader::new(resp.into_reader());
        for line in reader.lines() {
            let line = line.map_err(|e| self.err(format!("reading the stream: {e}")))?;
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                complete = true;
                break;
            }
            let chunk: Chunk = serde_json::from_str(data)
                .map_err(|e| self.err(format!("malformed stream event: {e}")))?;
            if let Some(u) = chunk.usage {
                stats.prompt_tokens = u.prompt_tokens;
                stats.generated_tokens = u.completion_tokens;
            }
            for c in chunk.choices {
                if let Some(text) = c.delta.and_then(|d| d.content) {
                    if !text.is_empty() {
                        pieces += 1;
                        let now = Instant::now();
                        if first.is_none() {
                            first = Some(now);
                            stats.first_token_ms = (now - started).as_secs_f64() * 1000.0;
                            stats.prefill_ms = stats.first_token_ms;
                        }
                        if !on_text(&text) {
                            stats.finish = FinishReason::Cancelled;
                            stats.generated_tokens = stats.generated_tokens.max(pieces);
                            return Ok(stats);
                        }
                    }
                }
                match c.finish_reason.as_deref() {
                    Some("stop") => stats.finish = FinishReason::Stop,
                    Some("length") => stats.finish = FinishReason::Length,
                    _ => {}
                }
                complete |= c.finish_reason.is_some();
            }
        }
        if !complete {
            return Err(self.err("the stream ended before the reply was complete"));
        }
        if let Some(f) = first {
            stats.generation_ms = f.elapsed().as_secs_f64() * 1000.0;
        }
        stats.generated_tokens = stats.generated_tokens.max(pieces);
        Ok(stats)
    }

    fn count_tokens(&self, text: &str) -> usize {
        // An estimate: CJK characters are about one token each, other text about four
        // characters per token.
        let (cjk, other) = text.chars().fold((0usize, 0usize), |(c, o), ch| {
            if ch as u32 >= 0x2E80 {
                (c + 1, o)
            } else {
                (c, o + 1)
            }
        });
        cjk + other.div_ceil(4)
    }
}
