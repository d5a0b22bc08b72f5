//! Property tests (fuzzing) of the extractor and its scanners: any text, for every bundled
//! schema, extracts without a panic, every span lies inside the text and quotes it exactly, and
//! every identity number returned passes its checksum. `PROPTEST_CASES=20000` for a long run.

use std::sync::OnceLock;

use assistant::intake::extract::scan::{self, Text};
use assistant::intake::extract::Extractor;
use knowledge::validate::taiwan_id;
use proptest::prelude::*;

fn extractor() -> &'static Extractor {
    static E: OnceLock<Extractor> = OnceLock::new();
    E.get_or_init(crate::bundled_extractor)
}

/// Text made of the pieces the scanners react to, in random order.
fn hotline_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("我叫".to_string()),
        Just("我媽".to_string()),
        Just("電話".to_string()),
        Just("不對，是".to_string()),
        Just("民國".to_string()),
        Just("路燈編號".to_string()),
        Just("底座".to_string()),
        Just("信義路".to_string()),
        Just("段".to_string()),
        Just("號".to_string()),
        Just("巷".to_string()),
        Just("樓之".to_string()),
        Just("大安區".to_string()),
        Just("（".to_string()),
        Just("姓".to_string()),
        Just("\n民眾：".to_string()),
        "[0-9]{1,10}",
        "[０-９]{1,4}",
        "[零一二三四五六七八九十百兩么洞拐]{1,6}",
        "[A-Za-z]{1,2}",
        "[陳林王李張劉黃吳歐陽何]{1,4}",
        "[年月日/.\\-，、 ()：:]{1,2}",
        "\\PC{1,3}",
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn extraction_never_panics_and_spans_quote_the_text(text in hotline_text()) {
        let e = extractor();
        let chars: Vec<char> = text.chars().collect();
        for form in e.forms() {
            let x = e.extract(&form.name, &text).unwrap();
            for (name, v) in &x.fields {
                if let Some((s, end)) = v.span {
                    prop_assert!(s <= end && end <= chars.len(), "{name}: {s}..{end} of {}", chars.len());
                    prop_assert_eq!(v.evidence.clone().unwrap(), chars[s..end].iter().collect::<String>());
                }
                if name.ends_with("id_number") {
                    let id = v.value.as_str().unwrap();
                    prop_assert!(taiwan_id(id).is_ok(), "{name} = {id} fails its checksum");
                }
            }
            for p in &x.problems {
                if let Some((s, end)) = p.span {
                    prop_assert!(s <= end && end <= chars.len());
                }
            }
        }
    }

    #[test]
    fn scanners_never_panic_on_any_text(text in "\\PC{0,60}") {
        let t = Text::new(&text);
        for f in scan::ids(&t).into_iter()
            .chain(scan::phones(&t))
            .chain(scan::dates(&t))
            .chain(scan::names(&t, &["我媽"]))
            .chain(scan::addresses(&t))
            .chain(scan::roads(&t, &[]))
            .chain(scan::pole_numbers(&t))
            .chain(scan::amounts(&t))
            .chain(scan::emails(&t))
        {
            prop_assert!(f.start <= f.end && f.end <= t.len());
        }
        let _ = extractor().extract("case_report", &text).unwrap();
    }
}
