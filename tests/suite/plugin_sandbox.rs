//! The plugin sandbox, proven with hand-written `.wat` modules loaded into a real server: the
//! pre-store hook's verdicts, capability refusals, and plugins that loop, trap, allocate
//! without end or hand host functions bad pointers. Each failure fails only its call; the
//! request proceeds (fail-open) or is rejected (fail-closed), and a plugin that keeps failing
//! is disabled.

use crate::common;

use common::{assert_error, decentd, PluginWorld as World};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// A module with a bump allocator whose `decentd_handle` answers nothing to `init` and runs
/// `body` (which leaves an i64) for every other call. `answer` is placed at offset 16.
fn wat(imports: &str, answer: &str, body: &str) -> String {
    let escaped: String = answer.bytes().map(|b| format!("\\{b:02x}")).collect();
    format!(
        r#"(module
  {imports}
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 4096))
  (data (i32.const 16) "{escaped}")
  (func (export "decentd_alloc") (param $len i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $len)))
    (if (i32.gt_u (global.get $next) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.add (i32.div_u (local.get $len) (i32.const 65536)) (i32.const 1))))))
    (local.get $p))
  (func (export "decentd_handle") (param $ptr i32) (param $len i32) (result i64)
    (global.set $next (i32.const 4096))
    ;; `{{"type":"init"...`: byte 9 is 'i'.
    (if (i32.eq (i32.load8_u (i32.add (local.get $ptr) (i32.const 9))) (i32.const 105))
      (then (return (i64.const 0))))
    {body}))"#
    )
}

/// `body` answering the JSON at offset 16.
fn answer_body(answer: &str) -> String {
    format!(
        "(i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const {}))",
        answer.len()
    )
}

fn install(plugins: &Path, name: &str, manifest_extra: &str, module: &str) {
    let dir = plugins.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("plugin.wat"), module).unwrap();
    std::fs::write(
        dir.join("plugin.toml"),
        format!(
            "name = \"{name}\"\nversion = \"1.0.0\"\nmodule = \"plugin.wat\"\n{manifest_extra}"
        ),
    )
    .unwrap();
}

const HOOK: &str = "hooks = [\"message/before-store\"]\n";

async fn world(setup: impl FnOnce(&Path)) -> World {
    World::spawn(setup).await
}

#[tokio::test]
async fn the_pre_store_hook_rejects_and_rewrites() {
    let reject = r#"{"actions":[{"type":"reject","reason":"no shouting"}]}"#;
    let rewrite = r#"{"actions":[{"type":"rewrite","text":"[filtered]"}]}"#;
    let w = world(|dir| {
        install(
            dir,
            "a-rejecter",
            &format!("{HOOK}capabilities = [\"read-messages\", \"moderate\"]"),
            &wat("", reject, &answer_body(reject)),
        );
    })
    .await;
    let mut socket = w.server.events(Some(&w.admin)).await;
    let response = w.post("HELLO").await;
    let error = assert_error(&response, "REJECTED_BY_PLUGIN");
    assert_eq!(response.0, 403);
    assert_eq!(error["plugin"], "a-rejecter");
    assert_eq!(error["reason"], "no shouting");
    assert!(w.texts().await.is_empty(), "nothing is stored");
    let events = socket.drain(Duration::from_millis(300)).await;
    assert!(
        events.iter().all(|(e, _)| e != "message/new"),
        "nothing is emitted: {events:?}"
    );

    // Swap in a rewriting plugin under the same name and reload it over HTTP.
    let dir = w.plugins.path().join("a-rejecter");
    std::fs::write(
        dir.join("plugin.wat"),
        wat("", rewrite, &answer_body(rewrite)),
    )
    .unwrap();
    w.reload("a-rejecter").await;
    let (status, v) = w.post("some bad words").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(w.texts().await, vec!["[filtered]"]);
    let event = socket.expect("message/new").await;
    assert_eq!(event["message"]["text"], "[filtered]");
}

#[tokio::test]
async fn actions_outside_the_capabilities_are_refused_and_logged() {
    let reject = r#"{"actions":[{"type":"reject","reason":"x"},{"type":"say","text":"hi"}]}"#;
    let w = world(|dir| {
        // A hook without the moderate (or say) capability.
        install(
            dir,
            "sneaky",
            &format!("{HOOK}capabilities = [\"read-messages\"]"),
            &wat("", reject, &answer_body(reject)),
        );
    })
    .await;
    let (status, v) = w.post("hello").await;
    assert_eq!(status, 200, "the refused reject is not performed: {v}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(w.texts().await, vec!["hello"], "nor is the say");
    let plugin = w.plugin("sneaky").await;
    assert_eq!(plugin["stats"]["refusedActions"], 2, "{plugin}");
    let logs = w.server.logs.lock().unwrap().join("\n");
    assert!(logs.contains("plugin action refused"), "{logs}");
    assert!(logs.contains("needs the moderate capability"), "{logs}");
}

async fn misbehaving(body: &str, imports: &str, extra: &str) -> World {
    let manifest = format!(
        "{HOOK}capabilities = [\"read-messages\", \"moderate\", \"kv\"]\n[limits]\nmax-failures = 3\n{extra}"
    );
    let module = wat(imports, "", body);
    world(move |dir| install(dir, "bad", &manifest, &module)).await
}

/// Posts go through while the plugin fails; the third failure in a row disables it.
async fn fails_open_then_disabled(w: &World, error_part: &str) {
    for i in 0..3 {
        let started = Instant::now();
        let (status, v) = w.post(&format!("message {i}")).await;
        assert_eq!(status, 200, "fail-open: the request proceeds: {v}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    assert_eq!(w.texts().await.len(), 3);
    let plugin = w.plugin("bad").await;
    assert_eq!(plugin["enabled"], false, "{plugin}");
    assert_eq!(plugin["stats"]["failures"], 3, "{plugin}");
    let reason = plugin["disabledReason"].as_str().unwrap();
    assert_eq!(
        plugin["lastError"]["call"], "message/before-store",
        "{plugin}"
    );
    assert!(
        plugin["lastError"]["error"]
            .as_str()
            .unwrap()
            .contains(error_part),
        "{plugin}"
    );
    assert!(reason.contains(error_part), "{reason}");
    // Disabled: no more calls.
    w.post("after").await;
    assert_eq!(w.plugin("bad").await["stats"]["calls"], 3);
    let logs = w.server.logs.lock().unwrap().join("\n");
    assert!(
        logs.contains("plugin call failed") && logs.contains("disabling plugin"),
        "{logs}"
    );
}

#[tokio::test]
async fn a_looping_plugin_hits_its_deadline() {
    let w = misbehaving("(loop $l (br $l)) (i64.const 0)", "", "").await;
    fails_open_then_disabled(&w, "deadline exceeded").await;
    let stats = &w.plugin("bad").await["stats"];
    assert_eq!(stats["deadlineHits"], 3, "{stats}");
    assert!(stats["maxOverrunUs"].as_u64().is_some(), "{stats}");
}

/// The hook runs off the HTTP workers: with one worker, a request that arrives while a post
/// waits for a hook spinning to its (longest) deadline is answered before that post.
#[tokio::test]
async fn a_spinning_hook_does_not_hold_up_other_requests() {
    let manifest = format!(
        "{HOOK}capabilities = [\"read-messages\", \"moderate\"]\n[limits]\nhook-ms = 1000\nmax-failures = 100\n"
    );
    let module = wat("", "", "(loop $l (br $l)) (i64.const 0)");
    let w = World::spawn_with(
        move |dir| install(dir, "spin", &manifest, &module),
        &["--workers", "1"],
    )
    .await;
    assert_eq!(w.plugin("spin").await["enabled"], true);
    let post = tokio::spawn({
        let (client, url, admin, channel) = (
            w.server.client.clone(),
            w.server.url("/api/messages"),
            w.admin.clone(),
            w.channel.clone(),
        );
        async move {
            client
                .post(url)
                .header("X-Session-ID", admin)
                .json(&json!({"channelID": channel, "text": "spin"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    // Let the post reach its hook, then ask something else of the one worker.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = Instant::now();
    let (status, _) = w.server.get("/api", None).await;
    assert_eq!(status, 200);
    // Blocked behind the hook, the answer would take the rest of its second.
    let waited = asked.elapsed();
    assert!(
        waited < Duration::from_millis(600),
        "GET /api waited {waited:?} for another request's hook"
    );
    // Fail-open: the post goes through once the hook hits its deadline.
    assert_eq!(post.await.unwrap(), 200);
    let stats = &w.plugin("spin").await["stats"];
    assert_eq!(stats["deadlineHits"], 1, "{stats}");
}

#[tokio::test]
async fn a_trapping_plugin_fails_only_its_call() {
    let w = misbehaving("unreachable", "", "").await;
    fails_open_then_disabled(&w, "unreachable").await;
    // One line per failed call; the wasm backtrace is for debug logs only.
    let logs = w.server.logs.lock().unwrap().clone();
    let failed: Vec<&String> = logs
        .iter()
        .filter(|l| l.contains("plugin call failed"))
        .collect();
    assert_eq!(failed.len(), 3, "{failed:?}");
    for line in failed {
        assert!(
            !line.contains("backtrace") && !line.contains("\\n"),
            "{line}"
        );
    }
}

#[tokio::test]
async fn a_plugin_that_allocates_without_end_hits_its_memory_cap() {
    let body =
        "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) (i64.const 0)";
    let w = misbehaving(body, "", "memory-mib = 2").await;
    fails_open_then_disabled(&w, "trap").await;
}

#[tokio::test]
async fn host_calls_with_bad_pointers_trap() {
    let imports =
        r#"(import "decentd" "kv_set" (func $kv_set (param i32 i32 i32 i32) (result i32)))"#;
    let body = "(drop (call $kv_set (i32.const -256) (i32.const 1000) (i32.const 0) (i32.const 1))) (i64.const 0)";
    let w = misbehaving(body, imports, "").await;
    fails_open_then_disabled(&w, "bad pointer").await;
}

#[tokio::test]
async fn a_fail_closed_plugin_rejects_when_it_fails_and_an_admin_controls_it() {
    let w = misbehaving("unreachable", "", "fail-closed = true").await;
    let response = w.post("hello").await;
    let error = assert_error(&response, "REJECTED_BY_PLUGIN");
    assert_eq!(error["plugin"], "bad");
    assert!(w.texts().await.is_empty());

    // Admin endpoints: disable, enable, errors.
    let (status, v) = w
        .server
        .post("/api/plugins/bad/disable", Some(&w.admin), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["plugin"]["enabled"], false);
    assert_eq!(v["plugin"]["disabledReason"], "disabled by an admin");
    assert_error(
        &w.server
            .post("/api/plugins/bad/disable", Some(&w.admin), json!({}))
            .await,
        "ALREADY_PERFORMED",
    );
    assert_eq!(w.post("now it passes").await.0, 200);
    let (status, _) = w
        .server
        .post("/api/plugins/bad/enable", Some(&w.admin), json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(w.post("rejected again").await.0, 403);
    assert_error(
        &w.server.get("/api/plugins/nope", Some(&w.admin)).await,
        "NOT_FOUND",
    );
    assert_error(
        &w.server
            .post("/api/plugins/nope/reload", Some(&w.admin), json!({}))
            .await,
        "NOT_FOUND",
    );

    w.server.register("pleb", "password1").await;
    let pleb = w.server.login("pleb", "password1").await;
    let refused = w.server.get("/api/plugins", Some(&pleb)).await;
    assert_error(&refused, "NOT_ALLOWED");
    assert_error(&w.server.get("/api/plugins", None).await, "NOT_ALLOWED");
    let (_, list) = w.server.get("/api/plugins", Some(&w.admin)).await;
    assert_eq!(list["plugins"][0]["name"], "bad");
    assert_eq!(
        list["plugins"][0]["capabilities"],
        json!(["read-messages", "moderate", "kv"])
    );

    // The bot user exists and is marked as a bot; nobody can log in as it.
    let bot = list["plugins"][0]["botUserID"].as_str().unwrap();
    let (_, user) = w.server.get(&format!("/api/users/{bot}"), None).await;
    assert_eq!(user["user"]["username"], "bad");
    assert_eq!(user["user"]["bot"], true);
    let (status, _) = w
        .server
        .post(
            "/api/sessions",
            None,
            json!({"username": "bad", "password": "!bot"}),
        )
        .await;
    assert_ne!(status, 200);
}

fn check(path: &Path) -> (bool, String) {
    let out = decentd()
        .args(["plugin", "check"])
        .arg(path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn plugin_check_explains_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let ok_answer = r#"{"actions":[]}"#;
    install(
        dir.path(),
        "good",
        &format!("{HOOK}capabilities = [\"read-messages\"]"),
        &wat("", ok_answer, &answer_body(ok_answer)),
    );
    let (ok, text) = check(&dir.path().join("good"));
    assert!(ok, "{text}");
    assert!(
        text.contains("plugin good 1.0.0: ok") && text.contains("message/before-store"),
        "{text}"
    );
    // A reader that stops early (`| head -1`, here one that reads nothing) is no panic.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} plugin check {} | true",
            env!("CARGO_BIN_EXE_decentd"),
            dir.path().join("good").display()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    // A module that was never put where `module =` points is "not found", not "not valid".
    std::fs::remove_file(dir.path().join("good").join("plugin.wat")).unwrap();
    let (ok, text) = check(&dir.path().join("good"));
    assert!(!ok, "{text}");
    assert!(text.contains("not found"), "{text}");

    let cases = [
        (
            "wasi",
            r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
            "",
            "does not provide",
        ),
        (
            "kvless",
            r#"(import "decentd" "kv_get" (func (param i32 i32) (result i64)))"#,
            "",
            "needs the \"kv\" capability",
        ),
    ];
    for (name, imports, extra, expected) in cases {
        install(dir.path(), name, extra, &wat(imports, "", "(i64.const 0)"));
        let (ok, text) = check(&dir.path().join(name));
        assert!(!ok && text.contains(expected), "{name}: {text}");
    }
    install(
        dir.path(),
        "noexport",
        "",
        "(module (memory (export \"memory\") 1))",
    );
    let (ok, text) = check(&dir.path().join("noexport"));
    assert!(
        !ok && text.contains("missing export decentd_alloc"),
        "{text}"
    );
    install(
        dir.path(),
        "badtoml",
        "capabilities = [\"network\"]",
        "(module)",
    );
    let (ok, text) = check(&dir.path().join("badtoml"));
    assert!(!ok && text.contains("unknown variant"), "{text}");
    let (ok, text) = check(&dir.path().join("missing"));
    assert!(!ok && text.contains("cannot read"), "{text}");
}

#[tokio::test]
async fn message_events_reach_subscribed_plugins_after_the_fact_but_not_their_own() {
    // Says "seen" in the message's channel for every message/new it receives.
    let seen = r#"{"actions":[{"type":"say","text":"seen"}]}"#;
    let w = world(|dir| {
        install(
            dir,
            "echo",
            "events = [\"message/new\"]\ncapabilities = [\"read-messages\", \"say\"]",
            &wat("", seen, &answer_body(seen)),
        );
    })
    .await;
    for text in ["one", "two", "three"] {
        let (status, v) = w.post(text).await;
        assert_eq!(status, 200, "{v}");
    }
    for _ in 0..50 {
        if w.texts().await.len() >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Time for a (wrong) answer to the plugin's own messages to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let history = w.texts().await;
    let seen_count = history.iter().filter(|t| *t == "seen").count();
    assert_eq!(
        seen_count, 3,
        "one answer per user message, none to its own: {history:?}"
    );
    let plugin = w.plugin("echo").await;
    assert_eq!(plugin["stats"]["calls"], 3, "{plugin}");
}

/// `tell` carries the sender name the plugin chose; `mode` codes are stripped.
#[tokio::test]
async fn a_tell_carries_its_name_and_its_mode_is_applied() {
    let answer = r#"{"actions":[{"type":"tell","user":"root","text":"&eyellow &lnews","name":"Whisper","mode":"format"}]}"#;
    let w = world(|dir| {
        install(
            dir,
            "whisper",
            "commands = [\"psst\"]\ncapabilities = [\"commands\", \"tell\"]",
            &wat("", answer, &answer_body(answer)),
        );
    })
    .await;
    let mut socket = w.server.events(Some(&w.admin)).await;
    let (status, v) = w.post("\\psst").await;
    assert_eq!(status, 200, "{v}");
    let told = socket.expect("plugin/tell").await;
    assert_eq!(told["plugin"], "whisper");
    assert_eq!(told["name"], "Whisper");
    assert_eq!(told["text"], "yellow news");
}
