//! Incremental detokenisation: byte-level BPE tokens can end in the middle of a UTF-8
//! character (one Chinese character is often two tokens), so text is released only once it
//! decodes cleanly.

use tokenizers::Tokenizer;

/// Turns a growing token sequence into text pieces.
pub struct TextStream {
    tokens: Vec<u32>,
    /// Start of the window decoded for context (keeps leading-space rules right).
    prev: usize,
    /// End of the text already released.
    current: usize,
}

impl Default for TextStream {
    fn default() -> Self {
        Self::new()
    }
}

impl TextStream {
    pub fn new() -> Self {
        TextStream {
            tokens: Vec::new(),
            prev: 0,
            current: 0,
        }
    }

    fn decode(tok: &Tokenizer, ids: &[u32]) -> crate::Result<String> {
        tok.decode(ids, true).map_err(|e| crate::Error::Tokenizer {
            reason: e.to_string(),
        })
    }

    /// Adds one token; returns the text it completes, if any.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> crate::Result<Option<String>> {
        let before = Self::decode(tok, &self.tokens[self.prev..self.current])?;
        self.tokens.push(id);
        let now = Self::decode(tok, &self.tokens[self.prev..])?;
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') {
            let piece = now
                .get(before.len()..)
                .map(str::to_string)
                .unwrap_or_default();
            self.prev = self.current;
            self.current = self.tokens.len();
            Ok(Some(piece))
        } else {
            Ok(None)
        }
    }

    /// Whatever is still held back (an incomplete character at the very end).
    pub fn finish(&mut self, tok: &Tokenizer) -> crate::Result<Option<String>> {
        let before = Self::decode(tok, &self.tokens[self.prev..self.current])?;
        let now = Self::decode(tok, &self.tokens[self.prev..])?;
        self.current = self.tokens.len();
        Ok(now
            .get(before.len()..)
            .filter(|s| !s.is_empty())
            .map(str::to_string))
    }
}
