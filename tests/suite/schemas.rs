//! `schemas/` must describe exactly the Rust packet types: this test regenerates the schemas
//! from the types and fails on any difference. After changing the types on purpose, run it
//! with `DECENTD_BLESS=1` to rewrite the files, and review the diff.

use std::path::Path;

#[test]
fn schemas_match_the_rust_packet_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let bless = std::env::var_os("DECENTD_BLESS").is_some();
    for (file, schema) in decentd_protocol::schemas() {
        let path = dir.join(file);
        let generated = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        if bless {
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        let stored = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with DECENTD_BLESS=1)", path.display()));
        let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
        assert_eq!(
            stored,
            schema,
            "{} disagrees with the Rust types in protocol/src/lib.rs; if the change is \
             intended, rerun with DECENTD_BLESS=1 and review the diff",
            path.display()
        );
    }
}

#[test]
fn documented_examples_are_valid_packets() {
    // The examples of plugins/README.md parse as the Rust types.
    let input = r#"{"type":"command","command":"roll","args":["2d6"],"ownerOnly":false,
        "user":{"type":"ingame","name":"ann","displayName":"ann","uuid":"1","bot":false},
        "channelID":"2"}"#;
    let parsed: decentd_protocol::PluginInput = serde_json::from_str(input).unwrap();
    assert!(matches!(parsed, decentd_protocol::PluginInput::Command(_)));
    let output = r#"{"actions":[{"type":"say","text":"ann rolled 2d6: 3 + 4 = **7**"},
        {"type":"tell","user":"ann","text":"psst"},{"type":"reject","reason":"spam"},
        {"type":"rewrite","text":"****"},{"type":"delete","messageID":"3"},{"type":"accept"}]}"#;
    let parsed: decentd_protocol::PluginOutput = serde_json::from_str(output).unwrap();
    assert_eq!(parsed.actions.len(), 6);
}
