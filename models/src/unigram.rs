//! SentencePiece-unigram tokenisation, faithful to the e5 engine: a per-codepoint normalisation
//! map, collapsing of repeated spaces, the `▁` metaspace with a prepended marker, then a Viterbi
//! search for the highest-scoring segmentation with single-character `<unk>` fallback.

use std::collections::HashMap;

use crate::e5s::{NormMap, Vocab};

const META: char = '\u{2581}';

#[derive(Debug, Clone)]
pub struct UnigramTokenizer {
    vocab: Vocab,
    lookup: HashMap<String, u32>,
    norm: HashMap<u32, Vec<u32>>,
    unk_score: f32,
    max_piece_bytes: usize,
}

impl UnigramTokenizer {
    pub fn new(vocab: Vocab, normalizer: NormMap) -> Self {
        let mut lookup = HashMap::with_capacity(vocab.pieces.len());
        for (i, p) in vocab.pieces.iter().enumerate() {
            if !p.is_empty() {
                // The first piece with a given spelling wins, as in the engine's hash table.
                lookup.entry(p.clone()).or_insert(i as u32);
            }
        }
        let min_score = vocab.scores.iter().copied().fold(f32::INFINITY, f32::min);
        let max_piece_bytes = vocab.pieces.iter().map(|p| p.len()).max().unwrap_or(1);
        UnigramTokenizer {
            unk_score: min_score - 10.0,
            max_piece_bytes: max_piece_bytes.max(1),
            lookup,
            norm: normalizer.into_iter().collect(),
            vocab,
        }
    }

    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// Normalised text in the form the Viterbi search sees (spaces as `▁`, marker prepended).
    pub fn normalize(&self, text: &str) -> String {
        let mut cps: Vec<char> = Vec::with_capacity(text.len());
        for ch in text.chars() {
            match self.norm.get(&(ch as u32)) {
                None => cps.push(ch),
                Some(outs) => cps.extend(outs.iter().filter_map(|&c| char::from_u32(c))),
            }
        }
        let mut out = String::with_capacity(text.len() + 3);
        if cps.first() != Some(&' ') {
            out.push(META);
        }
        let mut prev_space = false;
        for ch in cps {
            if ch == ' ' {
                if prev_space {
                    continue;
                }
                prev_space = true;
                out.push(META);
            } else {
                prev_space = false;
                out.push(ch);
            }
        }
        out
    }

    /// Content token ids (no `<s>`/`</s>`).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let norm = self.normalize(text);
        let starts: Vec<usize> = norm
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(norm.len()))
            .collect();
        let n = starts.len() - 1;
        let mut best = vec![f32::NEG_INFINITY; n + 1];
        let mut back: Vec<(usize, Option<u32>)> = vec![(0, None); n + 1];
        best[0] = 0.0;
        for i in 0..n {
            if best[i] == f32::NEG_INFINITY {
                continue;
            }
            let begin = starts[i];
            for e in i + 1..=n {
                let len = starts[e] - begin;
                if len > self.max_piece_bytes {
                    break;
                }
                if let Some(&id) = self.lookup.get(&norm[begin..starts[e]]) {
                    if id == self.vocab.unk {
                        continue;
                    }
                    let score = best[i] + self.vocab.scores[id as usize];
                    if score > best[e] {
                        best[e] = score;
                        back[e] = (i, Some(id));
                    }
                }
            }
            let unk = best[i] + self.unk_score;
            if unk > best[i + 1] {
                best[i + 1] = unk;
                back[i + 1] = (i, None);
            }
        }
        let mut ids = Vec::new();
        let mut i = n;
        while i > 0 {
            let (from, id) = back[i];
            ids.push(id.unwrap_or(self.vocab.unk));
            i = from;
        }
        ids.reverse();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok() -> UnigramTokenizer {
        let pieces = [
            "<s>", "<pad>", "</s>", "<unk>", "▁", "敬老", "卡", "敬", "老", "▁ab", "a", "b",
        ];
        let scores = [
            0.0, 0.0, 0.0, 0.0, -2.0, -3.0, -3.0, -4.0, -4.0, -1.0, -5.0, -5.0,
        ];
        UnigramTokenizer::new(
            Vocab {
                pieces: pieces.iter().map(|s| s.to_string()).collect(),
                scores: scores.to_vec(),
                bos: 0,
                eos: 2,
                pad: 1,
                unk: 3,
            },
            // Full-width Ａ folds to a; a soft hyphen is deleted.
            vec![(0xFF21, vec!['a' as u32]), (0xAD, vec![])],
        )
    }

    #[test]
    fn viterbi_prefers_the_best_scoring_split() {
        let t = tok();
        // ▁ + 敬老 (-3) beats ▁ + 敬 + 老 (-8); 卡 single piece.
        assert_eq!(t.encode("敬老卡"), vec![4, 5, 6]);
        // "▁ab" as one piece (-1) beats ▁ a b.
        assert_eq!(t.encode("ab"), vec![9]);
    }

    #[test]
    fn unknown_characters_become_unk_one_per_char() {
        assert_eq!(tok().encode("敬X老"), vec![4, 7, 3, 8]);
    }

    #[test]
    fn normalisation_map_and_space_collapsing_apply() {
        let t = tok();
        assert_eq!(t.normalize("Ａ\u{AD}b   卡"), "▁ab▁卡");
        assert_eq!(t.encode("Ａb"), vec![9]);
        assert_eq!(t.normalize(" x"), "▁x");
    }
}
