//! `decentd backup` and `decentd restore`: a running server backed up while it takes writes,
//! restored into a new directory, answering as before; offline backups; refusals.

use crate::common;

use common::{decentd, TestServer};
use serde_json::{json, Value};
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Runs `decentd` with `args`; (success, stdout, stderr).
fn run(args: &[&OsStr]) -> (bool, String, String) {
    let out = decentd().args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `decentd backup` or `export`: `data` written to the file `to`.
fn write_out(command: &str, data: &Path, to: &Path) -> (bool, String, String) {
    run(&[
        command.as_ref(),
        "--data".as_ref(),
        data.as_ref(),
        "--to".as_ref(),
        to.as_ref(),
    ])
}

/// `decentd restore` or `import`: the file `from` read into the directory `data`.
fn read_in(command: &str, from: &Path, data: &Path) -> (bool, String, String) {
    run(&[
        command.as_ref(),
        "--from".as_ref(),
        from.as_ref(),
        "--data".as_ref(),
        data.as_ref(),
    ])
}

fn backup(data: &Path, to: &Path) -> (bool, String, String) {
    write_out("backup", data, to)
}

fn restore(from: &Path, data: &Path) -> (bool, String, String) {
    read_in("restore", from, data)
}

/// A server with some of everything: users, a role, channels, messages with mentions and a
/// pin, a direct message, an emote with its image.
async fn populated(server: &TestServer) -> (String, String, String) {
    let (_, root) = server.user("root").await;
    let (bob_id, bob) = server.user("bob").await;
    let role = server
        .create_role(&root, json!({"sendMessages": true}))
        .await;
    server.give_role(&root, &bob_id, &role).await;
    let general = server.create_channel(&root, "general").await;
    let other = server.create_channel(&root, "other").await;
    for i in 0..30 {
        server
            .post_message(&root, &general, &format!("hello @<{bob_id}> number {i}"))
            .await;
    }
    let pinned = server.post_message(&bob, &other, "pin me").await;
    let (status, v) = server
        .post(
            &format!("/api/channels/{other}/pins"),
            Some(&root),
            json!({"messageID": pinned}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = server
        .post(
            &format!("/api/users/{bob_id}/messages"),
            Some(&root),
            json!({"text": "psst"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    // An emote with an uploaded image (a 1×1 PNG).
    let (status, upload) = server
        .upload(Some(&root), "e.png", "image/png", common::PNG)
        .await;
    assert_eq!(status, 200, "{upload}");
    let image = upload["path"].as_str().expect("an upload path").to_owned();
    let (status, v) = server
        .post(
            "/api/emotes",
            Some(&root),
            json!({"shortcode": "wave", "imageURL": image}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    (root, bob, general)
}

/// What a client sees of a server: the answers compared across a backup and restore.
async fn answers(server: &TestServer, root: &str, bob: &str) -> Value {
    let mut out = serde_json::Map::new();
    for path in [
        "/api/channels",
        "/api/users",
        "/api/roles",
        "/api/emotes",
        "/api/settings",
    ] {
        out.insert(path.into(), server.get(path, Some(root)).await.1);
    }
    let channels = out["/api/channels"]["channels"].as_array().unwrap().clone();
    for channel in channels {
        let id = channel["id"].as_str().unwrap();
        for path in [
            format!("/api/channels/{id}/messages?limit=50"),
            format!("/api/channels/{id}/pins"),
        ] {
            out.insert(path.clone(), server.get(&path, Some(root)).await.1);
        }
    }
    let (_, me) = server.get(&format!("/api/sessions/{bob}"), Some(bob)).await;
    let bob_id = me["user"]["id"].as_str().unwrap().to_owned();
    for path in [
        format!("/api/users/{bob_id}/mentions"),
        format!("/api/users/{bob_id}/messages"),
    ] {
        out.insert(path.clone(), server.get(&path, Some(bob)).await.1);
    }
    Value::Object(out)
}

#[tokio::test]
async fn a_quiet_server_restores_to_the_same_answers() {
    let server = TestServer::spawn_with(&["--admin", "root"]).await;
    let (root, bob, _) = populated(&server).await;
    let before = answers(&server, &root, &bob).await;
    let emote_image = {
        let url = before["/api/emotes"]["emotes"][0]["imageURL"]
            .as_str()
            .unwrap()
            .to_owned();
        server
            .client
            .get(server.url(&url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    };
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("backup.tar");
    let (ok, out, err) = backup(&server.data, &file);
    assert!(ok, "{out}{err}");
    assert!(out.contains("backed up"), "{out}");
    assert!(
        server
            .logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("backup made")),
        "made by the running server"
    );

    let restored_dir = tmp.path().join("restored");
    let (ok, out, err) = restore(&file, &restored_dir);
    assert!(ok, "{out}{err}");
    assert!(out.contains("restored"), "{out}");
    let restored = TestServer::spawn_on(&restored_dir, &["--admin", "root"]).await;
    // Sessions are data too: the same session IDs work on the restored server.
    let after = answers(&restored, &root, &bob).await;
    assert_eq!(before, after);
    let url = after["/api/emotes"]["emotes"][0]["imageURL"]
        .as_str()
        .unwrap()
        .to_owned();
    let image = restored
        .client
        .get(restored.url(&url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(image, emote_image);
    // The search index is rebuilt from the restored messages.
    let mut found = 0;
    for _ in 0..50 {
        let (_, v) = restored.get("/api/search?q=number", Some(&root)).await;
        found = v["messages"].as_array().map_or(0, Vec::len);
        if found > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(found > 0, "search finds restored messages");
}

#[tokio::test]
async fn a_backup_made_under_writes_is_one_consistent_moment() {
    let server = Arc::new(TestServer::spawn_with(&["--admin", "root"]).await);
    let (root, bob, general) = populated(&server).await;
    let (_, bob_me) = server
        .get(&format!("/api/sessions/{bob}"), Some(&bob))
        .await;
    let bob_id = bob_me["user"]["id"].as_str().unwrap().to_owned();
    // Writers keep creating channels with a mentioning message in each while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (server, root, stop, bob_id) =
                (server.clone(), root.clone(), stop.clone(), bob_id.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let channel = server.create_channel(&root, &format!("w{w}-{n}")).await;
                    server
                        .post_message(&root, &channel, &format!("first in w{w}-{n} @<{bob_id}>"))
                        .await;
                    n += 1;
                }
                n
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("busy.tar");
    let data = server.data.clone();
    let file_for_backup = file.clone();
    let (ok, out, err) = tokio::task::spawn_blocking(move || backup(&data, &file_for_backup))
        .await
        .unwrap();
    assert!(ok, "{out}{err}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut written = 0;
    for w in writers {
        written += w.await.unwrap();
    }
    assert!(written > 2, "the writers kept writing ({written})");

    let restored_dir = tmp.path().join("restored");
    let (ok, out, err) = restore(&file, &restored_dir);
    assert!(ok, "{out}{err}");
    let restored = TestServer::spawn_on(&restored_dir, &["--admin", "root"]).await;
    // Every mention's message exists, in a channel that exists.
    let (_, mentions) = restored
        .get(
            &format!("/api/users/{bob_id}/mentions?limit=50"),
            Some(&bob),
        )
        .await;
    let (_, channels) = restored.get("/api/channels", Some(&root)).await;
    let channel_ids: Vec<&str> = channels["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    for mention in mentions["mentions"].as_array().unwrap() {
        let id = mention["id"].as_str().unwrap();
        let (status, message) = restored
            .get(&format!("/api/messages/{id}"), Some(&root))
            .await;
        assert_eq!(status, 200, "a mention without its message: {mention}");
        let channel = message["message"]["channelID"].as_str().unwrap();
        assert!(
            channel_ids.contains(&channel),
            "a message without its channel"
        );
    }
    // The writers' channels in the backup each have their first message, except at most the
    // one being written at the moment of the copy... which the gate makes whole: none is empty
    // unless its message had not been posted yet.
    let mut empty = 0;
    for channel in channels["channels"].as_array().unwrap() {
        let name = channel["name"].as_str().unwrap();
        if name.starts_with('w') {
            let id = channel["id"].as_str().unwrap();
            if restored.history(&root, id).await.is_empty() {
                empty += 1;
            }
        }
    }
    assert!(
        empty <= 2,
        "{empty} channels without their message (at most one per writer in flight)"
    );
    // The original server kept everything written after the backup.
    assert!(server.history(&root, &general).await.len() >= 30);
}

#[tokio::test]
async fn offline_backups_and_refusals() {
    let mut server = TestServer::spawn_with(&["--admin", "root"]).await;
    let (root, _, general) = populated(&server).await;
    assert!(server.signal_and_wait("TERM").success());
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("offline.tar");
    let (ok, out, err) = backup(&server.data, &file);
    assert!(ok, "{out}{err}");

    // Into a directory that is not empty: refused, and the directory is untouched.
    let busy = tmp.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("keep"), "mine").unwrap();
    let (ok, _, err) = restore(&file, &busy);
    assert!(!ok);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read_to_string(busy.join("keep")).unwrap(), "mine");

    // A damaged backup: refused, and nothing is left behind.
    let damaged = tmp.path().join("damaged.tar");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    let target = tmp.path().join("from-damaged");
    let (ok, _, err) = restore(&damaged, &target);
    assert!(!ok);
    assert!(
        err.contains("damaged") || err.contains("not a decentd backup"),
        "{err}"
    );
    assert!(!target.exists(), "a failed restore leaves nothing behind");
    let (ok, _, err) = restore(&tmp.path().join("missing.tar"), &target);
    assert!(!ok && err.contains("cannot read"), "{err}");
    let (ok, _, err) = backup(&tmp.path().join("nothing"), Path::new("x.tar"));
    assert!(!ok && err.contains("holds no decentd data"), "{err}");

    // The offline backup restores.
    let target = tmp.path().join("restored");
    let (ok, out, err) = restore(&file, &target);
    assert!(ok, "{out}{err}");
    let restored = TestServer::spawn_on(&target, &["--admin", "root"]).await;
    assert_eq!(restored.history(&root, &general).await.len(), 30);
}

/// Unpacks the fixture written by the previous release (format 1: no recorded format) into
/// `dir`: alice (password1), an admin, with a channel "general" of three messages.
fn previous_format(dir: &Path) -> std::path::PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-1.tar");
    tar::Archive::new(std::fs::File::open(fixture).unwrap())
        .unpack(dir)
        .unwrap();
    dir.join("data")
}

#[tokio::test]
async fn a_directory_of_the_previous_format_is_backed_up_then_upgraded() {
    let tmp = tempfile::tempdir().unwrap();
    let data = previous_format(tmp.path());
    let server = TestServer::spawn_on(&data, &[]).await;
    assert!(server
        .logs
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("data directory upgraded")));
    // The old data answers as before.
    let session = server.login("alice", "password1").await;
    let (_, channels) = server.get("/api/channels", Some(&session)).await;
    let general = channels["channels"][0]["id"].as_str().unwrap().to_owned();
    let texts: Vec<Value> = server
        .history(&session, &general)
        .await
        .iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(texts.contains(&json!("written by the previous format 2")));
    drop(server);

    // The backup written before the upgrade restores the old directory.
    let backups: Vec<_> = std::fs::read_dir(data.join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert!(backups[0].to_string_lossy().contains("before-format-2-"));
    let old = tmp.path().join("old");
    let (ok, out, err) = restore(&backups[0], &old);
    assert!(ok, "{out}{err}");

    // A second start finds the current format: no second backup.
    let server = TestServer::spawn_on(&data, &[]).await;
    assert!(!server
        .logs
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("upgrading the data directory")));
    assert_eq!(std::fs::read_dir(data.join("backups")).unwrap().count(), 1);
}

#[tokio::test]
async fn a_directory_of_a_newer_format_is_refused_with_what_to_do() {
    let mut server = TestServer::spawn().await;
    server.user("alice").await;
    assert!(server.signal_and_wait("TERM").success());
    {
        let store = decentd::store::open(&server.data, 8 << 20, 0).unwrap();
        assert_eq!(
            store.data_format().unwrap(),
            Some(decentd::upgrade::DATA_FORMAT)
        );
        store
            .set_data_format(decentd::upgrade::DATA_FORMAT + 1)
            .unwrap();
    }
    let out = decentd()
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(&server.data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("written by a newer decentd"), "{err}");
    assert!(err.contains("decentd restore"), "{err}");
    let (ok, _, err) = run(&[
        "make-admin".as_ref(),
        "--data".as_ref(),
        server.data.as_ref(),
        "alice".as_ref(),
    ]);
    assert!(!ok && err.contains("newer decentd"), "{err}");
}

fn export(data: &Path, to: &Path) -> (bool, String, String) {
    write_out("export", data, to)
}

fn import(from: &Path, data: &Path) -> (bool, String, String) {
    read_in("import", from, data)
}

/// Every key space of a stopped server's data directory, as its records (from an offline
/// backup).
fn key_spaces(data: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("spaces.tar");
    let (ok, out, err) = backup(data, &file);
    assert!(ok, "{out}{err}");
    let mut archive = tar::Archive::new(std::fs::File::open(&file).unwrap());
    let mut spaces = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if let Some(name) = path.strip_prefix("store/") {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            let name = String::from_utf8(hex::decode(name.trim_end_matches(".kv")).unwrap());
            spaces.insert(name.unwrap(), bytes);
        }
    }
    spaces
}

/// The record lines of an export (without the header, which holds the time).
fn records_of(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines().skip(1).map(str::to_owned).collect()
}

#[tokio::test]
async fn an_export_imports_into_the_same_records_and_answers() {
    let mut server = TestServer::spawn_with(&["--admin", "root"]).await;
    let (root, bob, general) = populated(&server).await;
    // More kinds of records: licenses (one revoked: its key stays known), read marks, direct
    // message settings, a two-factor enrolment.
    server.license(&root, &["read"]).await;
    let revoked = server
        .post(
            "/api/licenses",
            Some(&root),
            json!({"capabilities": ["say"]}),
        )
        .await;
    let revoked = revoked.1["license"]["id"]
        .as_str()
        .or(revoked.1["id"].as_str())
        .unwrap()
        .to_owned();
    let (status, v) = server
        .delete(&format!("/api/licenses/{revoked}"), Some(&root))
        .await;
    assert_eq!(status, 200, "{v}");
    let (_, me) = server
        .get(&format!("/api/sessions/{bob}"), Some(&bob))
        .await;
    let bob_id = me["user"]["id"].as_str().unwrap().to_owned();
    let (status, v) = server
        .post(
            &format!("/api/channels/{general}/mark-read"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = server
        .patch(
            &format!("/api/users/{bob_id}/direct-message-settings"),
            Some(&bob),
            json!({"allowFrom": "shared-role"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = server
        .post(
            &format!("/api/users/{bob_id}/two-factor"),
            Some(&bob),
            json!({"password": "password1"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let before = answers(&server, &root, &bob).await;

    // From the running server (through a backup), then from the stopped one: the same records.
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live.jsonl");
    let (ok, out, err) = export(&server.data, &live);
    assert!(ok, "{out}{err}");
    assert!(out.contains("exported"), "{out}");
    // A running server is not migrated: writes during the copy would be left behind.
    let (ok, _, err) = migrate(&server.data, "postgres://nowhere/db", &tmp.path().join("u"));
    assert!(!ok && err.contains("stop it first"), "{err}");
    assert!(server.signal_and_wait("TERM").success());
    let file = tmp.path().join("export.jsonl");
    let (ok, out, err) = export(&server.data, &file);
    assert!(ok, "{out}{err}");
    assert_eq!(records_of(&live), records_of(&file));
    let text = std::fs::read_to_string(&file).unwrap();
    let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["format"], "decentd-export");
    assert_eq!(header["version"], 1);
    let kinds: std::collections::BTreeSet<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for kind in [
        "server",
        "role",
        "user",
        "session",
        "channel",
        "message",
        "read",
        "emote",
        "license",
        "license_key",
        "direct_message",
        "conversation",
        "direct_read",
        "dm_settings",
        "two_factor",
        "upload",
        "end",
    ] {
        assert!(kinds.contains(kind), "no {kind} line in {kinds:?}");
    }

    // Imported: every key space holds exactly the records of the original, derived indexes
    // (names, session links, mentions, pins, message and DM indexes) included.
    let imported = tmp.path().join("imported");
    let (ok, out, err) = import(&file, &imported);
    assert!(ok, "{out}{err}");
    assert!(out.contains("imported"), "{out}");
    let original = key_spaces(&server.data);
    let copy = key_spaces(&imported);
    assert_eq!(
        original.keys().collect::<Vec<_>>(),
        copy.keys().collect::<Vec<_>>()
    );
    for (name, records) in &original {
        assert!(
            &copy[name] == records,
            "key space {name} differs after import: {:?} became {:?}",
            String::from_utf8_lossy(records),
            String::from_utf8_lossy(&copy[name])
        );
    }
    let restarted = TestServer::spawn_on(&imported, &["--admin", "root"]).await;
    assert_eq!(answers(&restarted, &root, &bob).await, before);
    let image_url = before["/api/emotes"]["emotes"][0]["imageURL"]
        .as_str()
        .unwrap();
    let image = restarted
        .client
        .get(restarted.url(image_url))
        .send()
        .await
        .unwrap();
    assert_eq!(image.bytes().await.unwrap().as_ref(), common::PNG);

    // `decentd migrate` moves the same stopped directory into PostgreSQL, checks the round
    // trip, and a cluster node on that database answers the same, image included.
    let url = common::engines::postgres().database();
    let uploads = tmp.path().join("shared-uploads");
    let (ok, out, err) = migrate(&server.data, &url, &uploads);
    assert!(ok, "{out}{err}");
    assert!(out.contains("checked them all"), "{out}");
    let (ok, _, err) = migrate(&server.data, &url, &uploads);
    assert!(!ok && err.contains("already holds decentd data"), "{err}");
    let node = TestServer::spawn_with(&[
        "--store",
        &url,
        "--uploads",
        uploads.to_str().unwrap(),
        "--admin",
        "root",
    ])
    .await;
    assert_eq!(answers(&node, &root, &bob).await, before);
    let image = node.client.get(node.url(image_url)).send().await.unwrap();
    assert_eq!(image.bytes().await.unwrap().as_ref(), common::PNG);
}

/// `decentd migrate --from DATA --to URL --uploads DIR`.
fn migrate(data: &Path, url: &str, uploads: &Path) -> (bool, String, String) {
    run(&[
        "migrate".as_ref(),
        "--from".as_ref(),
        data.as_ref(),
        "--to".as_ref(),
        url.as_ref(),
        "--uploads".as_ref(),
        uploads.as_ref(),
    ])
}

#[tokio::test]
async fn damaged_exports_are_refused_and_leave_nothing() {
    let mut server = TestServer::spawn_with(&["--admin", "root"]).await;
    populated(&server).await;
    assert!(server.signal_and_wait("TERM").success());
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("export.jsonl");
    assert!(export(&server.data, &file).0);
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let write = |name: &str, lines: &[&str]| {
        let path = tmp.path().join(name);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    };
    let target = tmp.path().join("target");
    let mut newer: Value = serde_json::from_str(lines[0]).unwrap();
    newer["version"] = json!(99);
    let newer = newer.to_string();
    let mut broken = lines.clone();
    broken[3] = "{\"kind\": \"message\", \"id\": \"not a number\"}";
    let cases = [
        (write("cut.jsonl", &lines[..lines.len() - 1]), "cut short"),
        (
            write(
                "short.jsonl",
                &[&lines[..5], &lines[lines.len() - 1..]].concat(),
            ),
            "its end line counts",
        ),
        (
            write(
                "newer.jsonl",
                &[&[newer.as_str()][..], &lines[1..]].concat(),
            ),
            "newer decentd",
        ),
        (write("broken.jsonl", &broken), "line 4"),
        (write("plain.jsonl", &["{}"]), "not a decentd export"),
    ];
    for (path, expected) in cases {
        let (ok, out, err) = import(&path, &target);
        assert!(!ok, "{path:?} imported: {out}");
        assert!(err.contains(expected), "{path:?}: {err}");
        assert!(!target.exists(), "{path:?} left {target:?} behind");
    }
    // A directory with something in it is not imported into.
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("x"), "").unwrap();
    let (ok, _, err) = import(&file, &target);
    assert!(!ok);
    assert!(err.contains("is not empty"), "{err}");
}
