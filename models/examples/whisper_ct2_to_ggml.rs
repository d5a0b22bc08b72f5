//! Converts a faster-whisper (CTranslate2, float16) model directory into a ggml file for
//! whisper.cpp — the same converter `assistant setup` runs on the registry wheels, for a city
//! that has its own CTranslate2 model (for example a fine-tuned one).
//!
//! `cargo run --release -p models --example whisper_ct2_to_ggml -- MODEL_DIR OUT.bin`

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, out] = args.as_slice() else {
        eprintln!("usage: whisper_ct2_to_ggml MODEL_DIR (model.bin + vocabulary.json) OUT.bin");
        std::process::exit(2);
    };
    let dir = std::path::Path::new(dir);
    let read = |name: &str| {
        std::fs::read(dir.join(name)).unwrap_or_else(|e| {
            eprintln!("cannot read {}: {e}", dir.join(name).display());
            std::process::exit(1)
        })
    };
    let (model, vocab) = (read("model.bin"), read("vocabulary.json"));
    match models::convert::ct2_whisper_to_ggml(&model, &vocab) {
        Ok(c) => {
            if let Err(e) = std::fs::write(out, &c.bytes) {
                eprintln!("cannot write {out}: {e}");
                std::process::exit(1);
            }
            println!(
                "{out}: {} bytes, {} tensors, {} tokens, {:?}",
                c.bytes.len(),
                c.tensors,
                c.tokens,
                c.hparams
            );
        }
        Err(e) => {
            eprintln!("conversion failed: {e}");
            std::process::exit(1);
        }
    }
}
