//! Property tests of the loaders that read files a user or another machine hands llmtop: the
//! GGUF header reader, run cards and the lifetime tally. Mutated real inputs (bytes flipped,
//! cut, spliced) and plain noise must give a value or one clean error, never a panic, a hang or
//! an out-of-range figure. Bounded: a fixed number of cases each, about a second in all.

use llmtop::accounting::tally::TallyStore;
use llmtop::engine::gguf;
use llmtop::report::runcard::RunCard;
use proptest::prelude::*;
use std::path::Path;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A small valid GGUF v3: a header, metadata of several types, one tensor (no data).
fn tiny_gguf() -> Vec<u8> {
    fn s(v: &mut Vec<u8>, text: &str) {
        v.extend_from_slice(&(text.len() as u64).to_le_bytes());
        v.extend_from_slice(text.as_bytes());
    }
    let mut v = Vec::new();
    v.extend_from_slice(b"GGUF");
    v.extend_from_slice(&3u32.to_le_bytes());
    v.extend_from_slice(&1u64.to_le_bytes()); // tensors
    v.extend_from_slice(&5u64.to_le_bytes()); // metadata keys
    s(&mut v, "general.architecture");
    v.extend_from_slice(&8u32.to_le_bytes()); // string
    s(&mut v, "llama");
    s(&mut v, "general.name");
    v.extend_from_slice(&8u32.to_le_bytes());
    s(&mut v, "tiny");
    s(&mut v, "llama.block_count");
    v.extend_from_slice(&4u32.to_le_bytes()); // u32
    v.extend_from_slice(&2u32.to_le_bytes());
    s(&mut v, "llama.context_length");
    v.extend_from_slice(&4u32.to_le_bytes());
    v.extend_from_slice(&256u32.to_le_bytes());
    s(&mut v, "tokenizer.ggml.scores");
    v.extend_from_slice(&9u32.to_le_bytes()); // array
    v.extend_from_slice(&6u32.to_le_bytes()); // of f32
    v.extend_from_slice(&2u64.to_le_bytes());
    v.extend_from_slice(&0.5f32.to_le_bytes());
    v.extend_from_slice(&(-1.0f32).to_le_bytes());
    // One tensor: name, 1 dim of 4, type f32, offset 0.
    s(&mut v, "w");
    v.extend_from_slice(&1u32.to_le_bytes());
    v.extend_from_slice(&4u64.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&0u64.to_le_bytes());
    while v.len() % 32 != 0 {
        v.push(0);
    }
    v.extend_from_slice(&[0u8; 16]);
    v
}

/// Ways to break a file: flip bytes, cut it, splice noise in.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Cut(usize),
    Splice(usize, Vec<u8>),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Cut),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Splice(i, b)),
    ];
    prop::collection::vec(one, 1..6)
}

fn apply(mut v: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        if v.is_empty() {
            break;
        }
        match m {
            Mutation::Flip(i, b) => {
                let n = v.len();
                v[i % n] ^= b | 1;
            }
            Mutation::Cut(i) => {
                let n = v.len();
                v.truncate(i % n);
            }
            Mutation::Splice(i, bytes) => {
                let at = i % (v.len() + 1);
                v.splice(at..at, bytes.iter().copied());
            }
        }
    }
    v
}

#[test]
fn the_gguf_reader_refuses_or_reads_sane_values_never_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m.gguf");
    let base = tiny_gguf();
    std::fs::write(&path, &base).expect("write");
    let info = gguf::read(&path).expect("the unmutated file reads");
    assert_eq!(info.architecture(), Some("llama"));
    proptest!(config(), |(ms in mutations())| {
        let bytes = apply(base.clone(), &ms);
        std::fs::write(&path, &bytes).expect("write");
        if let Ok(info) = gguf::read(&path) {
            // Whatever passes must be in the ranges llama.cpp can take.
            if let Some(n) = info.context_length() {
                prop_assert!((1..=64 << 20).contains(&n), "context_length {n} passed");
            }
            // llama.cpp reads the layer count under the architecture the file declares (a
            // flipped name is an unknown architecture, which it refuses before any layer).
            let key = format!("{}.block_count", info.architecture().unwrap_or_default());
            if let Some(blocks) = info.metadata.get(&key).and_then(gguf::Value::as_u64) {
                prop_assert!((1..=512).contains(&blocks), "block_count {blocks} passed");
            }
        }
    });
    // Plain noise, with and without the magic.
    proptest!(config(), |(noise in prop::collection::vec(any::<u8>(), 0..4096), magic: bool)| {
        let mut bytes = noise;
        if magic {
            bytes.splice(0..0, b"GGUF\x03\0\0\0".iter().copied());
        }
        std::fs::write(&path, &bytes).expect("write");
        if let Err(e) = gguf::read(&path) {
            let text = e.to_string();
            prop_assert!(!text.contains('\n'), "one line: {text}");
        }
    });
}

#[test]
fn run_cards_load_or_say_why_and_what_loads_round_trips() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runcards");
    let base = std::fs::read(fixtures.join("nuc.json")).expect("fixture");
    let path = Path::new("card.json");
    proptest!(config(), |(ms in mutations())| {
        let bytes = apply(base.clone(), &ms);
        let text = String::from_utf8_lossy(&bytes);
        match RunCard::from_json(&text, path) {
            Ok(card) => {
                let again = RunCard::from_json(&card.to_json(), path);
                prop_assert!(again.is_ok(), "a loaded card must load again: {again:?}");
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(!msg.contains('\n'), "one line: {msg}");
                prop_assert!(msg.starts_with("card.json"), "names the file: {msg}");
            }
        }
    });
}

#[test]
fn a_tally_file_never_becomes_a_worse_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = r#"{"schema":"llmtop.tally/1","energy_j":7200.0,"generated_tokens":100,"prompt_tokens":50,"replies":3,"cost":{"EUR":0.00076},"co2_g":0.76,"since":"2025-06-01T10:00:00Z","updated":"2025-06-01T11:00:00Z"}"#;
    let now: jiff::Timestamp = "2025-06-02T10:00:00Z".parse().expect("time");
    let n = std::sync::atomic::AtomicU32::new(0);
    proptest!(config(), |(ms in mutations())| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let case = dir.path().join(format!("c{i}"));
        std::fs::create_dir_all(&case).expect("mkdir");
        let path = case.join("tally.json");
        let bytes = apply(good.as_bytes().to_vec(), &ms);
        std::fs::write(&path, &bytes).expect("write");
        match TallyStore::open(&path, now) {
            Ok((store, _note)) => {
                let t = store.tally();
                for v in [t.totals.energy_j, t.totals.co2_g].into_iter().chain(t.totals.cost.values().copied()) {
                    prop_assert!(v.is_finite() && v >= 0.0, "loaded a bad figure: {t:?}");
                }
                // What was there is still there: loaded as it was, or kept aside.
                let kept: Vec<Vec<u8>> = std::fs::read_dir(&case)
                    .expect("ls")
                    .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
                    .collect();
                prop_assert!(kept.contains(&bytes), "the original bytes are gone");
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(!msg.contains('\n'), "one line: {msg}");
                // Refused: the file is left as it was.
                prop_assert_eq!(std::fs::read(&path).expect("still there"), bytes);
            }
        }
    });
}
