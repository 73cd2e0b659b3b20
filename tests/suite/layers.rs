//! The layering rule of ARCHITECTURE.md, checked over every `crate::...` path in `src/`:
//! the doors (`api`, `ws`, `chatbox`, `plugins`, `web`) never name each other; the core
//! (`chat`) names no door; the base (`store`, `perms`, `events`, `domain`, `ids`, `error`,
//! `auth`, `config`) names neither the core nor a door. Only `startup` and `main` compose.

use std::collections::BTreeSet;
use std::path::Path;

const DOORS: &[&str] = &["api", "ws", "chatbox", "plugins", "web"];
const CORE: &str = "chat";
const BASE: &[&str] = &[
    "store", "perms", "events", "domain", "ids", "error", "auth", "config", "mail", "search",
    "metrics",
];

/// Every top-level module named by a `crate::` path in a file (`crate::a::b`, `crate::{a, b}`).
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        let group = rest
            .strip_prefix('{')
            .map(|g| &g[..g.find('}').unwrap_or(g.len())]);
        let parts: Vec<&str> = match group {
            Some(g) => g.split(',').collect(),
            None => vec![rest],
        };
        for part in parts {
            let name: String = part
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn crate_paths_follow_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut broken = Vec::new();
    for path in all {
        let rel = path.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        for name in named_modules(&text) {
            if name == top {
                continue;
            }
            let door = DOORS.contains(&top.as_str());
            let wrong = (door && DOORS.contains(&name.as_str()))
                || (top == CORE && DOORS.contains(&name.as_str()))
                || (BASE.contains(&top.as_str())
                    && (name == CORE || DOORS.contains(&name.as_str())));
            if wrong {
                broken.push(format!("{} names crate::{name}", rel.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "layering broken (ARCHITECTURE.md \"Layers\"):\n{}",
        broken.join("\n")
    );
}

#[test]
fn paths_in_groups_and_nested_paths_are_seen() {
    let names = named_modules("use crate::{api::x, chat};\nlet a = crate::ws::hub::Hub::new();");
    assert_eq!(
        names,
        ["api", "chat", "ws"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}
