//! The generation code path on a tiny chat model written here (random weights, the real GGUF
//! layout, a byte-level BPE tokenizer): loading, prompt processing (chunked, dense and
//! quantised), the reused system-prompt cache, streaming, stops and cancellation, and the
//! OpenAI-compatible remote backend against a local stand-in server.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use candle_core::quantized::gguf_file;
use candle_core::Tensor;
use models::llm::{
    Arch, ChatMessage, ChatModel, ChatTemplate, Decoder, DecoderEngine, DecoderOptions,
    FinishReason, GenerationParams, KvCache, LocalLlm, LocalLlmConfig, PrefillWeights,
    RemoteConfig, RemoteLlm, TextStream,
};
use models::testing::tiny_llm;

fn load(dir: &std::path::Path, arch: &str, decoder: DecoderOptions) -> LocalLlm {
    let (model, tokenizer) = tiny_llm(dir, arch, 7).unwrap();
    LocalLlm::load(&LocalLlmConfig {
        model,
        tokenizer,
        template: None,
        threads: 1,
        decoder,
    })
    .unwrap()
}

fn decoder(dir: &std::path::Path, opts: DecoderOptions) -> Decoder {
    let (model, _) = tiny_llm(dir, "qwen2", 7).unwrap();
    let mut f = std::fs::File::open(model).unwrap();
    let ct = gguf_file::Content::read(&mut f).unwrap();
    Decoder::load(&ct, &mut f, Arch::Qwen2, opts).unwrap()
}

fn cosine(a: &Tensor, b: &Tensor) -> f32 {
    let a: Vec<f32> = a.to_vec1().unwrap();
    let b: Vec<f32> = b.to_vec1().unwrap();
    let dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn msgs(q: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage::system("只根據資料回答。"),
        ChatMessage::user(q),
    ]
}

#[test]
fn greedy_generation_is_deterministic_and_streams_the_whole_text() {
    let dir = tempfile::tempdir().unwrap();
    let llm = load(dir.path(), "qwen2", DecoderOptions::default());
    assert_eq!(llm.template(), ChatTemplate::ChatMl);
    let params = GenerationParams {
        max_tokens: 12,
        ..Default::default()
    };
    let mut s = llm.stream(&msgs("敬老卡怎麼辦？"), &params).unwrap();
    let mut pieces = String::new();
    for p in &mut s {
        pieces.push_str(&p.unwrap());
    }
    let first_tokens = s.tokens().to_vec();
    assert_eq!(pieces, s.text());
    let stats = s.stats();
    let prompt = llm
        .encode(&ChatTemplate::ChatMl.render(&msgs("敬老卡怎麼辦？")))
        .unwrap();
    assert_eq!(stats.prompt_tokens, prompt.len());
    assert!(stats.generated_tokens <= 12);

    let mut again = llm.stream(&msgs("敬老卡怎麼辦？"), &params).unwrap();
    for p in &mut again {
        p.unwrap();
    }
    assert_eq!(again.tokens(), first_tokens.as_slice());
}

#[test]
fn the_reused_system_prompt_cache_gives_the_same_tokens_as_a_fresh_model() {
    let dir = tempfile::tempdir().unwrap();
    let params = GenerationParams {
        max_tokens: 10,
        ignore_eos: true,
        ..Default::default()
    };
    let cached = load(dir.path(), "qwen2", DecoderOptions::default());
    cached.warm_prefix("只根據資料回答。").unwrap();
    let mut a = cached.stream(&msgs("低收入戶要帶什麼？"), &params).unwrap();
    for p in &mut a {
        p.unwrap();
    }
    let reused = a.stats().reused_prompt_tokens;
    let system_tokens = cached
        .encode(
            &ChatTemplate::ChatMl
                .system_prefix("只根據資料回答。")
                .unwrap(),
        )
        .unwrap()
        .len();
    assert_eq!(reused, system_tokens);

    let fresh = load(dir.path(), "qwen2", DecoderOptions::default());
    let mut b = fresh.stream(&msgs("低收入戶要帶什麼？"), &params).unwrap();
    for p in &mut b {
        p.unwrap();
    }
    assert_eq!(b.stats().reused_prompt_tokens, 0);
    assert_eq!(a.tokens(), b.tokens());
    assert_eq!(a.tokens().len(), 10);
    assert_eq!(a.stats().finish, FinishReason::Length);
}

#[test]
fn chunked_incremental_and_dense_prefill_agree_with_one_quantised_pass() {
    let dir = tempfile::tempdir().unwrap();
    let tokens: Vec<u32> = (0..40u32).map(|i| (i * 37 + 11) % 256).collect();
    let base = decoder(
        dir.path(),
        DecoderOptions {
            prefill: PrefillWeights::Quantized,
            ..Default::default()
        },
    );
    let mut c = KvCache::default();
    let whole = base.forward(&tokens, &mut c).unwrap();
    assert_eq!(c.len(), 40);

    // Incremental: 25 tokens, then 15 more on the same cache.
    let mut c2 = KvCache::default();
    base.forward(&tokens[..25], &mut c2).unwrap();
    let inc = base.forward(&tokens[25..], &mut c2).unwrap();
    assert!(cosine(&whole, &inc) > 0.999, "{}", cosine(&whole, &inc));

    // Truncating the cache and re-running the tail gives the same result.
    c2.truncate(25).unwrap();
    assert_eq!(c2.len(), 25);
    let again = base.forward(&tokens[25..], &mut c2).unwrap();
    assert!(cosine(&whole, &again) > 0.999);

    // Chunked prefill (4 tokens at a time).
    let chunked = decoder(
        dir.path(),
        DecoderOptions {
            prefill: PrefillWeights::Quantized,
            prefill_chunk: 4,
            ..Default::default()
        },
    );
    let mut c3 = KvCache::default();
    let ch = chunked.forward(&tokens, &mut c3).unwrap();
    assert!(cosine(&whole, &ch) > 0.999);

    // candle with dense f32 and f16 prompt processing (activations not quantised): close,
    // not identical.
    for prefill in [PrefillWeights::F32, PrefillWeights::F16] {
        let dense = decoder(
            dir.path(),
            DecoderOptions {
                engine: DecoderEngine::Candle,
                prefill,
                ..Default::default()
            },
        );
        let mut c4 = KvCache::default();
        let d = dense.forward(&tokens, &mut c4).unwrap();
        assert!(
            cosine(&whole, &d) > 0.98,
            "{prefill:?}: {}",
            cosine(&whole, &d)
        );
    }
}

#[test]
fn the_fast_engine_agrees_with_candle_token_by_token_and_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let tokens: Vec<u32> = (0..45u32).map(|i| (i * 53 + 5) % 256).collect();
    for arch in ["qwen2", "llama"] {
        let (model, _) = tiny_llm(dir.path(), arch, 9).unwrap();
        let load = |engine| {
            let mut f = std::fs::File::open(&model).unwrap();
            let ct = gguf_file::Content::read(&mut f).unwrap();
            let a = if arch == "qwen2" {
                Arch::Qwen2
            } else {
                Arch::Llama
            };
            let opts = DecoderOptions {
                engine,
                prefill: PrefillWeights::Quantized,
                requantize_q8: false,
                ..Default::default()
            };
            Decoder::load(&ct, &mut f, a, opts).unwrap()
        };
        let fast = load(DecoderEngine::Fast);
        assert_eq!(fast.engine(), DecoderEngine::Fast, "{arch}");
        let candle = load(DecoderEngine::Candle);
        // A prompt at once (the tiled product), then tokens one by one (the row product),
        // each step's logits compared.
        let (mut cf, mut cc) = (KvCache::default(), KvCache::default());
        let a = fast.forward(&tokens[..40], &mut cf).unwrap();
        let b = candle.forward(&tokens[..40], &mut cc).unwrap();
        assert!(cosine(&a, &b) > 0.995, "{arch} prompt: {}", cosine(&a, &b));
        for &t in &tokens[40..] {
            let a = fast.forward(&[t], &mut cf).unwrap();
            let b = candle.forward(&[t], &mut cc).unwrap();
            assert!(cosine(&a, &b) > 0.995, "{arch} step: {}", cosine(&a, &b));
        }
        assert_eq!(cf.len(), 45);
        // A cache cut back and re-run gives what the straight run gave.
        let whole = fast.forward(&tokens[..1], &mut KvCache::default()).unwrap();
        cf.truncate(0).unwrap();
        let again = fast.forward(&tokens[..1], &mut cf).unwrap();
        assert!(cosine(&whole, &again) > 0.9999);
    }
}

#[test]
fn the_llama_family_loads_and_generates() {
    let dir = tempfile::tempdir().unwrap();
    let llm = load(dir.path(), "llama", DecoderOptions::default());
    let params = GenerationParams {
        max_tokens: 6,
        ignore_eos: true,
        ..Default::default()
    };
    let mut out = Vec::new();
    let stats = llm
        .chat(&msgs("路燈不亮"), &params, &mut |p| {
            out.push(p.to_string());
            true
        })
        .unwrap();
    assert_eq!(stats.generated_tokens, 6);
    assert_eq!(stats.finish, FinishReason::Length);
}

#[test]
fn stop_strings_and_cancellation_end_generation() {
    let dir = tempfile::tempdir().unwrap();
    let llm = load(dir.path(), "qwen2", DecoderOptions::default());
    let long = GenerationParams {
        max_tokens: 30,
        ignore_eos: true,
        ..Default::default()
    };
    let mut s = llm.stream(&msgs("測試"), &long).unwrap();
    for p in &mut s {
        p.unwrap();
    }
    let full = s.text().to_string();
    // Stop at a piece of what the model will say: the reply ends right before it.
    let stop: String = full.chars().skip(3).take(2).collect();
    if !stop.is_empty() && !stop.contains('\u{FFFD}') {
        let mut st = llm
            .stream(
                &msgs("測試"),
                &GenerationParams {
                    stop: vec![stop.clone()],
                    ..long.clone()
                },
            )
            .unwrap();
        for p in &mut st {
            p.unwrap();
        }
        assert!(!st.text().contains(&stop));
        assert!(full.starts_with(st.text()));
        assert_eq!(st.stats().finish, FinishReason::Stop);
    }
    // The consumer cancels after the first piece.
    let mut n = 0;
    let stats = llm
        .chat(&msgs("測試"), &long, &mut |_| {
            n += 1;
            false
        })
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(stats.finish, FinishReason::Cancelled);
    assert!(stats.generated_tokens < 30);
}

#[test]
fn text_is_released_only_at_character_boundaries() {
    let tok = tokenizers::Tokenizer::from_bytes(models::testing::tiny_tokenizer_json().as_bytes())
        .unwrap();
    let ids = tok.encode("敬老卡", false).unwrap().get_ids().to_vec();
    assert_eq!(ids.len(), 9, "three bytes per character");
    let mut ts = TextStream::new();
    let mut out = Vec::new();
    for id in ids {
        out.push(ts.push(&tok, id).unwrap());
    }
    let released: Vec<String> = out.iter().flatten().cloned().collect();
    assert_eq!(released, vec!["敬", "老", "卡"]);
    assert_eq!(out.iter().filter(|p| p.is_none()).count(), 6);
    // Special tokens are single ids.
    let im = tok.encode("<|im_start|>user", false).unwrap();
    assert_eq!(im.get_ids()[0], 257);
}

#[test]
fn broken_files_are_reported_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let (model, tokenizer) = tiny_llm(dir.path(), "qwen2", 1).unwrap();
    let bad = dir.path().join("broken.gguf");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 3]).unwrap();
    let cfg = |m: std::path::PathBuf, t: std::path::PathBuf| LocalLlmConfig {
        model: m,
        tokenizer: t,
        template: None,
        threads: 1,
        decoder: DecoderOptions::default(),
    };
    let err = LocalLlm::load(&cfg(bad.clone(), tokenizer.clone()))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("broken.gguf"), "{err}");
    let err = LocalLlm::load(&cfg(model, dir.path().join("missing.json")))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("missing.json"), "{err}");
}

/// A one-shot HTTP server answering with an OpenAI-style event stream.
fn fake_server(events: Vec<String>) -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut head = String::new();
        let mut len = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0u8; len];
        std::io::Read::read_exact(&mut reader, &mut body).unwrap();
        let mut resp = String::from(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n",
        );
        for e in events {
            resp.push_str(&format!("data: {e}\n\n"));
        }
        resp.push_str("data: [DONE]\n\n");
        conn.write_all(resp.as_bytes()).unwrap();
        format!("{head}{}", String::from_utf8(body).unwrap())
    });
    (format!("http://{addr}/v1"), handle)
}

#[test]
fn the_remote_backend_streams_an_openai_compatible_reply() {
    let (url, server) = fake_server(vec![
        r#"{"choices":[{"delta":{"role":"assistant"}}]}"#.into(),
        r#"{"choices":[{"delta":{"content":"請帶"}}]}"#.into(),
        r#"{"choices":[{"delta":{"content":"身分證[1]"},"finish_reason":"stop"}]}"#.into(),
        r#"{"choices":[],"usage":{"prompt_tokens":42,"completion_tokens":5}}"#.into(),
    ]);
    let llm = RemoteLlm::new(RemoteConfig {
        base_url: url,
        model: "qwen2.5-7b".into(),
        api_key: Some("secret".into()),
        timeout_s: 10,
    })
    .unwrap();
    let mut text = String::new();
    let stats = llm
        .chat(
            &msgs("敬老卡要帶什麼？"),
            &GenerationParams::default(),
            &mut |p| {
                text.push_str(p);
                true
            },
        )
        .unwrap();
    assert_eq!(text, "請帶身分證[1]");
    assert_eq!(stats.prompt_tokens, 42);
    assert_eq!(stats.generated_tokens, 5);
    assert_eq!(stats.finish, FinishReason::Stop);
    let request = server.join().unwrap();
    assert!(
        request.starts_with("POST /v1/chat/completions"),
        "{request}"
    );
    assert!(request.contains("Bearer secret"));
    assert!(request.contains("\"stream\":true"));
    assert!(request.contains("敬老卡要帶什麼？"));
}

#[test]
fn the_remote_backend_reports_http_errors_and_refuses_https() {
    assert!(RemoteLlm::new(RemoteConfig {
        base_url: "https://example.invalid/v1".into(),
        model: "m".into(),
        api_key: None,
        timeout_s: 5,
    })
    .is_err());
    // Nothing listens on this port: a clear error naming the URL.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let llm = RemoteLlm::new(RemoteConfig {
        base_url: format!("http://127.0.0.1:{port}/v1"),
        model: "m".into(),
        api_key: None,
        timeout_s: 5,
    })
    .unwrap();
    let err = llm
        .chat(&msgs("x"), &GenerationParams::default(), &mut |_| true)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[test]
fn sampling_with_a_seed_is_reproducible_and_the_seed_matters() {
    let dir = tempfile::tempdir().unwrap();
    let llm = load(dir.path(), "qwen2", DecoderOptions::default());
    let run = |seed: u64| -> Vec<u32> {
        let params = GenerationParams {
            max_tokens: 16,
            temperature: 1.5,
            top_p: Some(0.95),
            seed,
            ignore_eos: true,
            ..Default::default()
        };
        let mut s = llm.stream(&msgs("隨機"), &params).unwrap();
        for p in &mut s {
            p.unwrap();
        }
        s.tokens().to_vec()
    };
    let a = run(1);
    assert_eq!(a, run(1), "same seed, same tokens");
    let others: Vec<Vec<u32>> = (2..6).map(run).collect();
    assert!(
        others.iter().any(|o| *o != a),
        "other seeds sample differently"
    );
}

#[test]
fn constrained_decoding_makes_even_a_random_model_emit_schema_valid_json() {
    use models::llm::{JsonObjectGrammar, ValueSpec};
    let dir = tempfile::tempdir().unwrap();
    let llm = load(dir.path(), "qwen2", DecoderOptions::default());
    let fields = vec![
        ("name".to_string(), ValueSpec::String { max_bytes: 9 }),
        ("order".to_string(), ValueSpec::Integer { max_digits: 2 }),
        (
            "status".to_string(),
            ValueSpec::Enum(vec!["一般".into(), "低收入戶".into(), "中低收入戶".into()]),
        ),
        ("hazard".to_string(), ValueSpec::Bool),
    ];
    for seed in [1u64, 2, 3] {
        let params = GenerationParams {
            max_tokens: 120,
            temperature: 1.0,
            seed,
            repeat_penalty: 1.0,
            ..GenerationParams::default()
        };
        let messages = [ChatMessage::user("填表")];
        let (text, stats) = llm
            .chat_constrained(
                &messages,
                &params,
                Box::new(JsonObjectGrammar::new(&fields)),
            )
            .unwrap();
        assert_eq!(stats.finish, FinishReason::Stop, "seed {seed}: {text}");
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("seed {seed}: not JSON ({e}): {text}"));
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 4, "{text}");
        assert!(obj["name"].is_null() || obj["name"].as_str().is_some_and(|s| s.len() <= 9));
        assert!(obj["order"].is_null() || obj["order"].as_u64().is_some_and(|n| n < 100));
        assert!(
            obj["status"].is_null()
                || ["一般", "低收入戶", "中低收入戶"]
                    .contains(&obj["status"].as_str().unwrap_or("x"))
        );
        assert!(obj["hazard"].is_null() || obj["hazard"].is_boolean());
    }
    // The remote backend says it cannot do this, instead of returning unconstrained text.
    let remote = RemoteLlm::new(RemoteConfig {
        base_url: "http://127.0.0.1:9/v1".into(),
        model: "m".into(),
        api_key: None,
        timeout_s: 1,
    })
    .unwrap();
    let err = remote
        .chat_constrained(
            &[ChatMessage::user("x")],
            &GenerationParams::default(),
            Box::new(JsonObjectGrammar::new(&fields)),
        )
        .unwrap_err();
    assert!(err.to_string().contains("schema-constrained"), "{err}");
}
