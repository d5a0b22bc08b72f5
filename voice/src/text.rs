//! Text handling for transcripts: Traditional Chinese (Taiwan) output, and the normalisation
//! and character error rate used to score recognition.

pub use knowledge::text::{is_simplified, number_to_chinese, to_traditional};

/// Removes whisper's failure modes from one segment's text: a decoding loop (the same piece
/// repeated over and over is cut to one occurrence), a broken trailing character (U+FFFD from a
/// token cut mid-character), and an echo of the initial prompt (returns `None`).
pub fn clean_segment(text: &str, prompt: &str) -> Option<String> {
    let mut chars: Vec<char> = text.chars().filter(|&c| c != '\u{fffd}').collect();
    // Loops: a piece of 1–16 characters repeated consecutively at least 4 times and over at
    // least 20 characters is kept once, and whatever follows the loop is dropped. People do
    // repeat themselves (一直做夢一直做夢一直做夢 is a reference transcript), not that much.
    'outer: for start in 0..chars.len() {
        for len in 1..=16usize {
            let needed = 4.max(20usize.div_ceil(len));
            if start + len * needed > chars.len() {
                continue;
            }
            let piece = &chars[start..start + len];
            let mut reps = 1;
            while start + (reps + 1) * len <= chars.len()
                && &chars[start + reps * len..start + (reps + 1) * len] == piece
            {
                reps += 1;
            }
            if reps >= needed {
                chars.truncate(start + len);
                break 'outer;
            }
        }
    }
    let text: String = chars.into_iter().collect::<String>().trim().to_string();
    let core: Vec<char> = text.chars().filter(|c| c.is_alphanumeric()).collect();
    if core.is_empty() {
        return None;
    }
    // whisper writes sounds it heard but no words as a bracketed caption ((音樂), [笑聲]).
    let mut depth = 0i32;
    let outside_brackets = text.chars().any(|c| {
        match c {
            '(' | '（' | '[' | '【' | '［' => depth += 1,
            ')' | '）' | ']' | '】' | '］' => depth -= 1,
            _ => return depth <= 0 && c.is_alphanumeric(),
        }
        false
    });
    if !outside_brackets {
        return None;
    }
    // A prompt echo: most of the text is one stretch of the prompt.
    let prompt: Vec<char> = prompt.chars().collect();
    let mut longest = 0;
    for i in 0..core.len() {
        for j in 0..prompt.len() {
            let mut k = 0;
            while i + k < core.len() && j + k < prompt.len() && core[i + k] == prompt[j + k] {
                k += 1;
            }
            longest = longest.max(k);
        }
    }
    if longest >= 5 && longest * 2 >= core.len() {
        return None;
    }
    Some(text)
}

/// The form both sides are compared in: Traditional script, Arabic numbers read out in Chinese,
/// ASCII letters lower-cased, punctuation and spaces removed.
pub fn normalize_for_cer(text: &str) -> Vec<char> {
    let text = to_traditional(text);
    let mut out = Vec::new();
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut Vec<char>| {
        if !digits.is_empty() {
            out.extend(number_to_chinese(digits).chars());
            digits.clear();
        }
    };
    for c in text.chars() {
        let c = match c {
            '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32).unwrap_or(c),
            '〇' => '零',
            _ => c,
        };
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        flush(&mut digits, &mut out);
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        }
    }
    flush(&mut digits, &mut out);
    out
}

/// Character edit distance (substitutions, insertions, deletions) between two sequences.
pub fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simplified_output_becomes_taiwan_traditional() {
        assert!(is_simplified("路灯不亮了"));
        assert_eq!(to_traditional("路灯不亮了"), "路燈不亮了");
        assert_eq!(to_traditional("软件和信息"), "軟體和資訊");
        assert!(!is_simplified("路燈不亮"));
        assert_eq!(to_traditional("分區"), "分區");
    }

    #[test]
    fn decoding_loops_broken_characters_and_prompt_echoes_are_cleaned() {
        let prompt = "以下是臺灣市民撥打1999市民熱線的通話內容。";
        let looped = "天氣的「喲」(1999) 天氣的「喲」(1999) 天氣的「喲」(1999) 天氣的「喲」(1999) 天氣\u{fffd}";
        let c = clean_segment(looped, prompt).unwrap();
        assert_eq!(c, "天氣的「喲」(1999)");
        assert_eq!(clean_segment(&"好".repeat(24), prompt).unwrap(), "好");
        // Ordinary repetition in speech stays.
        let dream = "一直做夢一直做夢一直做夢";
        assert_eq!(clean_segment(dream, prompt).unwrap(), dream);
        assert_eq!(clean_segment("謝謝謝謝", prompt).unwrap(), "謝謝謝謝");
        assert_eq!(clean_segment("而這次的通話內容。", prompt), None);
        assert_eq!(clean_segment("。", prompt), None);
        assert_eq!(clean_segment("(煮菜)", prompt), None);
        assert_eq!(clean_segment("【音樂】 [笑聲]", prompt), None);
        assert_eq!(
            clean_segment("路燈(桿號12345)壞了", prompt).unwrap(),
            "路燈(桿號12345)壞了"
        );
        assert_eq!(
            clean_segment("我要報修路燈", prompt).unwrap(),
            "我要報修路燈"
        );
    }

    #[test]
    fn numbers_read_as_a_reference_transcript_writes_them() {
        assert_eq!(number_to_chinese("4"), "四");
        assert_eq!(number_to_chinese("15"), "十五");
        assert_eq!(number_to_chinese("205"), "二百零五");
        assert_eq!(number_to_chinese("1010"), "一千零一十");
        assert_eq!(number_to_chinese("3000"), "三千");
        assert_eq!(number_to_chinese("0912"), "零九一二");
        assert_eq!(number_to_chinese("0505364"), "零五零五三六四");
    }

    #[test]
    fn cer_normalisation_and_distance() {
        let r = normalize_for_cer("我們只差1天！");
        assert_eq!(r.iter().collect::<String>(), "我們只差一天");
        let h = normalize_for_cer("我们只差 一 天。");
        assert_eq!(edit_distance(&r, &h), 0);
        let a: Vec<char> = "路燈不亮".chars().collect();
        let b: Vec<char> = "路燈亮了嗎".chars().collect();
        assert_eq!(edit_distance(&a, &b), 3);
        assert_eq!(edit_distance(&a, &[]), 4);
    }
}
