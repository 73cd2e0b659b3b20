//! The chatbox bot gateway through real WebSocket clients: licenses, closing packets, hello,
//! players, chat/command/join/leave events, say/tell with every error, the rate limit, and
//! restarts.

use crate::common;

use common::{assert_error, BotSocket, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// A server with an admin (root), a channel "general", and users ann and bob.
struct World {
    server: TestServer,
    admin: String,
    general: String,
    ann: (String, String),
    bob: (String, String),
}

impl World {
    async fn spawn(args: &[&str]) -> Self {
        let mut all = vec!["--admin", "root", "--ping-interval", "1"];
        all.extend_from_slice(args);
        let server = TestServer::spawn_with(&all).await;
        server.register("root", "password1").await;
        let admin = server.login("root", "password1").await;
        let general = server.create_channel(&admin, "general").await;
        let ann = server.user("ann").await;
        let bob = server.user("bob").await;
        Self {
            server,
            admin,
            general,
            ann,
            bob,
        }
    }

    /// A bot of ann's with every capability, past hello and players.
    async fn ann_bot(&self) -> BotSocket {
        let key = self
            .server
            .license(&self.ann.1, &["read", "command", "say", "tell"])
            .await;
        self.server.bot_ready(&key).await.0
    }
}

/// The closing packet and close code a bot at `path` gets at once.
async fn refused(server: &TestServer, path: &str) -> (String, u16) {
    let mut bot = server.bot(path).await;
    let (closing, code) = bot.closed().await;
    let closing = closing.expect("a closing packet");
    assert_eq!(closing["ok"], false, "{closing}");
    assert!(closing["reason"].as_str().is_some_and(|r| !r.is_empty()));
    (
        closing["closeReason"].as_str().unwrap().to_owned(),
        code.expect("a close code"),
    )
}

#[tokio::test]
async fn licenses_are_created_listed_revoked_and_disabled_over_http() {
    let w = World::spawn(&[]).await;
    let s = &w.server;
    // Created with every capability ann may give; the key is shown in this answer only.
    let (status, created) = s
        .post(
            "/api/licenses",
            Some(&w.ann.1),
            json!({"label": "dice bot"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    assert_eq!(key.len(), 64);
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    let license = &created["license"];
    assert_eq!(license["label"], "dice bot");
    assert_eq!(license["ownerID"], w.ann.0.as_str());
    assert_eq!(
        license["capabilities"],
        json!(["read", "command", "say", "tell"])
    );
    let id = license["id"].as_str().unwrap().to_owned();
    let (_, list) = s.get("/api/licenses", Some(&w.ann.1)).await;
    assert_eq!(list["licenses"].as_array().unwrap().len(), 1);
    assert_eq!(list["licenses"][0]["id"], id.as_str());
    assert!(
        !list.to_string().contains(&key),
        "the key is never shown again"
    );
    let (_, bobs) = s.get("/api/licenses", Some(&w.bob.1)).await;
    assert_eq!(bobs["licenses"], json!([]));
    assert_error(
        &s.get(&format!("/api/licenses?userID={}", w.ann.0), Some(&w.bob.1))
            .await,
        "NOT_ALLOWED",
    );
    let (_, by_admin) = s
        .get(&format!("/api/licenses?userID={}", w.ann.0), Some(&w.admin))
        .await;
    assert_eq!(by_admin["licenses"][0]["id"], id.as_str());

    // Capabilities never exceed what the user may do.
    assert_error(
        &s.post(
            "/api/licenses",
            Some(&w.ann.1),
            json!({"capabilities": ["fly"]}),
        )
        .await,
        "INVALID_PARAMETER_TYPE",
    );
    assert_error(
        &s.post("/api/licenses", None, json!({})).await,
        "NOT_ALLOWED",
    );
    let mute = s
        .create_role(&w.admin, json!({"sendMessages": false}))
        .await;
    s.give_role(&w.admin, &w.bob.0, &mute).await;
    let err = assert_error(
        &s.post(
            "/api/licenses",
            Some(&w.bob.1),
            json!({"capabilities": ["read", "say"]}),
        )
        .await,
        "NOT_ALLOWED",
    );
    assert_eq!(err["parameter"], "capabilities");
    let (_, muted) = s.post("/api/licenses", Some(&w.bob.1), json!({})).await;
    assert_eq!(muted["license"]["capabilities"], json!(["read", "command"]));

    // A connected bot; others cannot revoke or disable ann's license.
    let (mut bot, hello) = s.bot_ready(&key).await;
    assert_eq!(hello["licenseOwner"], "ann");
    let (_, list) = s.get("/api/licenses", Some(&w.ann.1)).await;
    assert_eq!(list["licenses"][0]["connections"], 1);
    assert_error(
        &s.delete(&format!("/api/licenses/{id}"), Some(&w.bob.1))
            .await,
        "NOT_FOUND",
    );
    assert_error(
        &s.post(
            &format!("/api/licenses/{id}/disable"),
            Some(&w.ann.1),
            json!({}),
        )
        .await,
        "NOT_ALLOWED",
    );

    // Disabled by staff: the bot is closed, and reconnecting is refused.
    let (status, v) = s
        .post(
            &format!("/api/licenses/{id}/disable"),
            Some(&w.admin),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["license"]["disabled"], true);
    let (closing, code) = bot.closed().await;
    assert_eq!(closing.unwrap()["closeReason"], "disabled_license");
    assert_eq!(code, Some(4004));
    assert_eq!(refused(s, &key).await, ("disabled_license".into(), 4004));
    assert_error(
        &s.post(
            &format!("/api/licenses/{id}/disable"),
            Some(&w.admin),
            json!({}),
        )
        .await,
        "ALREADY_PERFORMED",
    );
    let (status, _) = s
        .post(
            &format!("/api/licenses/{id}/enable"),
            Some(&w.admin),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Revoked by its owner: the bot is told the key changed, and so is anyone using it later.
    let (mut bot, _) = s.bot_ready(&key).await;
    let (status, _) = s
        .delete(&format!("/api/licenses/{id}"), Some(&w.ann.1))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (closing, code) = bot.closed().await;
    assert_eq!(closing.unwrap()["closeReason"], "changed_license_key");
    assert_eq!(code, Some(4005));
    assert_eq!(refused(s, &key).await, ("changed_license_key".into(), 4005));
    assert_error(
        &s.delete(&format!("/api/licenses/{id}"), Some(&w.ann.1))
            .await,
        "NOT_FOUND",
    );

    // Only the key's hash is stored.
    let key2 = s.license(&w.ann.1, &["read"]).await;
    let mut server = w.server;
    assert!(server.signal_and_wait("TERM").success());
    for entry in walk(&server.data) {
        let bytes = std::fs::read(&entry).unwrap();
        for k in [&key, &key2] {
            assert!(
                !bytes.windows(k.len()).any(|w| w == k.as_bytes()),
                "{} holds a license key",
                entry.display()
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn refused_connections_get_the_documented_closing_packets() {
    let w = World::spawn(&[]).await;
    let s = &w.server;
    let unknown = "0".repeat(64);
    assert_eq!(
        refused(s, &unknown).await,
        ("unknown_license_key".into(), 4002)
    );
    assert_eq!(
        refused(s, "not-a-key").await,
        ("invalid_license_key".into(), 4003)
    );
    assert_eq!(
        refused(s, "guest").await,
        ("external_guests_not_allowed".into(), 4001)
    );
    assert_eq!(
        refused(s, "a/b").await,
        ("unsupported_endpoint".into(), 4007)
    );
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v2", s.addr))
        .await
        .unwrap();
    let _ = ws; // `/v2` itself upgrades too and is closed the same way
    let mut bot = s.bot("").await;
    let (closing, code) = bot.closed().await;
    assert_eq!(closing.unwrap()["closeReason"], "unsupported_endpoint");
    assert_eq!(code, Some(4007));
    // A plain request to a /v2 path is an ordinary 404.
    let (status, _) = s.get("/v2/x/y", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn guests_read_when_the_switch_is_on() {
    let w = World::spawn(&["--chatbox-guests"]).await;
    let s = &w.server;
    let mut guest = s.bot("guest").await;
    let hello = guest.next().await;
    assert_eq!(
        hello,
        json!({"ok": true, "type": "hello", "guest": true, "licenseOwner": null,
               "licenseOwnerUser": null, "capabilities": ["read"]})
    );
    assert_eq!(guest.next().await["type"], "players");
    s.post_message(&w.ann.1, &w.general, "hello guests").await;
    let chat = guest.expect("chat_ingame").await;
    assert_eq!(chat["text"], "hello guests");
    let answer = guest.ask(json!({"type": "say", "text": "hi"})).await;
    assert_eq!(answer["error"], "missing_capability");
}

#[tokio::test]
async fn hello_players_join_and_leave() {
    let w = World::spawn(&[]).await;
    let s = &w.server;
    let key = s.license(&w.ann.1, &["read", "say"]).await;
    let mut bot = s.bot(&key).await;
    let hello = bot.next().await;
    assert_eq!(hello["ok"], true);
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["guest"], false);
    assert_eq!(hello["licenseOwner"], "ann");
    let owner = &hello["licenseOwnerUser"];
    assert_eq!(owner["type"], "ingame");
    assert_eq!(owner["name"], "ann");
    assert_eq!(owner["displayName"], "ann");
    // A hyphenated UUID derived from the Decent ID, which travels as `userID`.
    let uuid = owner["uuid"].as_str().unwrap();
    assert_eq!(uuid.len(), 36, "{uuid}");
    assert_eq!(uuid.matches('-').count(), 4, "{uuid}");
    assert_eq!(
        decentd_protocol::user_id_from_uuid(uuid).map(|id| id.to_string()),
        Some(w.ann.0.clone())
    );
    assert_eq!(owner["userID"], w.ann.0.as_str());
    assert_eq!(owner["group"], "default");
    assert_eq!(owner["bot"], false);
    assert_eq!(hello["capabilities"], json!(["read", "say"]));
    let players = bot.next().await;
    assert_eq!(players["type"], "players");
    assert_eq!(players["ok"], true);
    assert!(players["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(players["players"], json!([]));

    // bob comes online: join, then the new player list.
    let socket = s.events(Some(&w.bob.1)).await;
    let join = bot.expect("join").await;
    assert_eq!(join["user"]["name"], "bob");
    assert_eq!(join["id"], -1);
    let players = bot.expect("players").await;
    assert_eq!(players["players"].as_array().unwrap().len(), 1);
    assert_eq!(players["players"][0]["name"], "bob");
    assert_eq!(
        players["players"][0]["uuid"],
        decentd_protocol::user_uuid(w.bob.0.parse().unwrap())
    );
    // The admin's group is "admin".
    let admin_socket = s.events(Some(&w.admin)).await;
    let join = bot.expect("join").await;
    assert_eq!(join["user"]["name"], "root");
    assert_eq!(join["user"]["group"], "admin");
    drop(admin_socket);
    let leave = bot.expect("leave").await;
    assert_eq!(leave["user"]["name"], "root");
    let players = bot.expect("players").await;
    assert_eq!(players["players"].as_array().unwrap().len(), 1);
    drop(socket);
    assert_eq!(bot.expect("leave").await["user"]["name"], "bob");
    assert_eq!(bot.expect("players").await["players"], json!([]));

    // Without `read`: hello only, no players, no events.
    let key = s.license(&w.ann.1, &["say"]).await;
    let mut quiet = s.bot(&key).await;
    assert_eq!(quiet.next().await["capabilities"], json!(["say"]));
    let _bob_again = s.events(Some(&w.bob.1)).await;
    s.post_message(&w.bob.1, &w.general, "anyone?").await;
    let answer = quiet
        .ask(json!({"type": "say", "text": "me", "id": 1}))
        .await;
    assert_eq!(answer["reason"], "message_sent", "{answer}");
    assert!(quiet.drain(Duration::from_millis(300)).await.is_empty());
}

#[tokio::test]
async fn chat_events_follow_what_the_license_owner_may_read() {
    let w = World::spawn(&[]).await;
    let s = &w.server;
    let secret = s.create_channel(&w.admin, "secret").await;
    let (_, roles) = s.get("/api/roles", None).await;
    let admin_role = roles["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "Admin")
        .expect("the Admin role")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, v) = s
        .patch(
            &format!("/api/channels/{secret}/role-permissions"),
            Some(&w.admin),
            json!({"rolePermissions": {
                "_everyone": {"readMessages": false},
                admin_role.as_str(): {"readMessages": true},
            }}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let mut ann_bot = w.ann_bot().await;
    let admin_key = s.license(&w.admin, &["read", "say"]).await;
    let (mut admin_bot, _) = s.bot_ready(&admin_key).await;

    // A user's message: chat_ingame with the documented fields and Decent's extras.
    s.post_message(&w.admin, &secret, "staff only").await;
    let id = s
        .post_message(&w.bob.1, &w.general, "Hello **world**")
        .await;
    let chat = ann_bot.expect("chat_ingame").await;
    assert_eq!(chat["ok"], true);
    assert_eq!(chat["type"], "event");
    assert_eq!(chat["text"], "Hello world");
    assert_eq!(chat["rawText"], "Hello **world**");
    assert_eq!(
        chat["renderedText"],
        json!({"text": "Hello **world**", "extra": []})
    );
    assert_eq!(chat["user"]["name"], "bob");
    assert_eq!(chat["user"]["type"], "ingame");
    assert_eq!(chat["edited"], false);
    assert_eq!(chat["channel"], w.general.as_str());
    assert_eq!(chat["messageID"], id.as_str());
    assert!(chat["time"].as_str().unwrap().contains('T'));
    // The admin's bot saw the secret message first; ann's never did.
    assert_eq!(admin_bot.expect("chat_ingame").await["text"], "staff only");
    assert_eq!(
        admin_bot.expect("chat_ingame").await["rawText"],
        "Hello **world**"
    );

    // An edit.
    let (status, _) = s
        .patch(
            &format!("/api/messages/{id}"),
            Some(&w.bob.1),
            json!({"text": "Hello again"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let edit = ann_bot.expect("chat_ingame").await;
    assert_eq!(
        (edit["text"].as_str(), edit["edited"].as_bool()),
        (Some("Hello again"), Some(true))
    );

    // Another bot's say: chat_chatbox with the chatbox name and its owner; not echoed to the
    // bot that said it.
    let answer = admin_bot
        .ask(json!({"type": "say", "text": "Server news", "name": "Herald", "channel": "general"}))
        .await;
    assert_eq!(answer["type"], "success", "{answer}");
    let said = ann_bot.expect("chat_chatbox").await;
    assert_eq!(said["name"], "Herald");
    assert_eq!(said["rawName"], "Herald");
    assert_eq!(said["text"], "Server news");
    assert_eq!(said["user"]["name"], "root");
    assert_eq!(said["channel"], w.general.as_str());
    // The bot that said it does not hear its own say.
    s.post_message(&w.bob.1, &w.general, "marker").await;
    loop {
        let next = admin_bot.expect("event").await;
        assert_ne!(next["event"], "chat_chatbox", "{next}");
        if next["text"] == "marker" {
            break;
        }
    }
    while ann_bot.expect("chat_ingame").await["text"] != "marker" {}

    // Losing access to a channel stops its events at once.
    let hidden = s.create_role(&w.admin, json!({})).await;
    let (status, v) = s
        .patch(
            &format!("/api/channels/{}/role-permissions", w.general),
            Some(&w.admin),
            json!({"rolePermissions": {hidden.as_str(): {"readMessages": false}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    s.give_role(&w.admin, &w.ann.0, &hidden).await;
    s.post_message(&w.admin, &w.general, "now hidden").await;
    s.post_message(&w.admin, &secret, "still hidden").await;
    let seen: Vec<Value> = ann_bot.drain(Duration::from_millis(500)).await;
    assert!(
        seen.iter()
            .all(|p| p["type"] != "event" || !p["event"].as_str().unwrap().starts_with("chat_")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn commands_reach_bots_with_the_command_capability() {
    let w = World::spawn(&[]).await;
    let s = &w.server;
    let mut ann_bot = w.ann_bot().await;
    let bob_key = s.license(&w.bob.1, &["read", "command"]).await;
    let (mut bob_bot, _) = s.bot_ready(&bob_key).await;
    let reader_key = s.license(&w.bob.1, &["read"]).await;
    let (mut reader, _) = s.bot_ready(&reader_key).await;

    // A public command: every bot with `command` gets it; it is also an ordinary message.
    let (status, v) = s
        .try_post_message(&w.ann.1, &w.general, "\\weather paris tomorrow")
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    for bot in [&mut ann_bot, &mut bob_bot] {
        let cmd = bot.expect("command").await;
        assert_eq!(cmd["command"], "weather");
        assert_eq!(cmd["args"], json!(["paris", "tomorrow"]));
        assert_eq!(cmd["ownerOnly"], false);
        assert_eq!(cmd["user"]["name"], "ann");
        assert_eq!(cmd["channel"], w.general.as_str());
    }
    let history = s.history(&w.ann.1, &w.general).await;
    assert_eq!(history.last().unwrap()["text"], "\\weather paris tomorrow");

    // An owner-only command goes to the invoker's own bots only and is not stored.
    let (status, v) = s
        .try_post_message(&w.bob.1, &w.general, "^config set 1")
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"command": "config", "bots": 1}));
    let cmd = bob_bot.expect("command").await;
    assert_eq!(
        (cmd["command"].as_str(), cmd["ownerOnly"].as_bool()),
        (Some("config"), Some(true))
    );
    assert_eq!(cmd["args"], json!(["set", "1"]));
    assert_eq!(s.history(&w.bob.1, &w.general).await.len(), history.len());

    // The reader-only bot and ann's bot saw neither the owner-only command nor the command
    // as chat.
    s.post_message(&w.ann.1, &w.general, "marker").await;
    let next = ann_bot.expect("event").await;
    assert_eq!(next["text"], "marker", "{next}");
    loop {
        let p = reader.expect("event").await;
        assert_ne!(p["event"], "command", "{p}");
        assert_ne!(p["rawText"], "\\weather paris tomorrow", "{p}");
        if p["text"] == "marker" {
            break;
        }
    }
}

#[tokio::test]
async fn say_and_tell_with_every_error() {
    let w = World::spawn(&["--max-message-length", "40"]).await;
    let s = &w.server;
    let mut bot = w.ann_bot().await;

    // say: default channel (the oldest the owner may post in), by name, converted modes.
    let answer = bot
        .ask(json!({"type": "say", "text": "Hello, world!", "id": 1}))
        .await;
    assert_eq!(
        answer,
        json!({"ok": true, "type": "success", "id": 1, "reason": "message_sent"})
    );
    let last = s.history(&w.ann.1, &w.general).await.pop().unwrap();
    assert_eq!(last["text"], "Hello, world!");
    assert_eq!(last["authorUsername"], "ann");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let answer = bot
        .ask(json!({"type": "say", "text": "&eYellow &lbold", "mode": "format", "channel": "GENERAL", "id": 2}))
        .await;
    assert_eq!(answer["reason"], "message_sent", "{answer}");
    assert_eq!(
        s.history(&w.ann.1, &w.general).await.pop().unwrap()["text"],
        "Yellow bold"
    );

    // tell: to an online user by name or ID; the user's sockets get chatbox/tell.
    let mut bob_socket = s.events(Some(&w.bob.1)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let answer = bot
        .ask(json!({"type": "tell", "user": "bob", "text": "<b>psst</b>", "mode": "minimessage", "name": "Whisper", "id": 3}))
        .await;
    assert_eq!(answer["reason"], "message_sent", "{answer}");
    let tell = bob_socket.expect("chatbox/tell").await;
    assert_eq!(tell["text"], "psst");
    assert_eq!(tell["name"], "Whisper");
    assert_eq!(tell["ownerUsername"], "ann");
    let errors = [
        (
            json!({"type": "tell", "user": "root", "text": "x", "id": 4}),
            "unknown_user",
        ),
        (
            json!({"type": "tell", "user": "nobody", "text": "x"}),
            "unknown_user",
        ),
        (json!({"type": "tell", "text": "x"}), "missing_user"),
        (json!({"type": "say"}), "missing_text"),
        (
            json!({"type": "say", "text": "x".repeat(41)}),
            "text_too_large",
        ),
        (
            json!({"type": "say", "text": "x", "name": "n".repeat(65)}),
            "name_too_large",
        ),
        (json!({"text": "x"}), "missing_type"),
        (json!({"type": "shout", "text": "x"}), "unknown_type"),
        (
            json!({"type": "say", "text": "x", "channel": "nowhere"}),
            "unknown_channel",
        ),
    ];
    for (packet, error) in errors {
        let answer = bot.ask(packet.clone()).await;
        assert_eq!(answer["ok"], false, "{packet} → {answer}");
        assert_eq!(answer["type"], "error");
        assert_eq!(answer["error"], error, "{packet} → {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(
        bot.ask(json!({"type": "tell", "user": "root", "text": "x", "id": 4}))
            .await["id"],
        4
    );
    bot.send_text("{not json").await;
    let answer = bot.next().await;
    assert_eq!(answer["error"], "invalid_json", "{answer}");

    // Capabilities: a read-only license may not say or tell.
    let key = s.license(&w.ann.1, &["read"]).await;
    let (mut reader, _) = s.bot_ready(&key).await;
    for kind in ["say", "tell"] {
        let answer = reader
            .ask(json!({"type": kind, "text": "x", "user": "bob"}))
            .await;
        assert_eq!(answer["error"], "missing_capability");
    }
    drop(bob_socket);
}

#[tokio::test]
async fn frames_sent_before_hello_are_not_connected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = World::spawn(&[]).await;
    let key = w.server.license(&w.ann.1, &["say"]).await;
    // The upgrade request and a say in one write: the say was sent before the bot could have
    // seen hello.
    let payload = br#"{"type":"say","text":"too early"}"#;
    let mut frame = vec![0x81, 0x80 | payload.len() as u8, 1, 2, 3, 4];
    frame.extend(
        payload
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]),
    );
    let request = format!(
        "GET /v2/{key} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let mut tcp = tokio::net::TcpStream::connect(w.server.addr).await.unwrap();
    let mut bytes = request.into_bytes();
    bytes.extend(frame);
    tcp.write_all(&bytes).await.unwrap();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\"hello\"") {
        let n = tokio::time::timeout_at(deadline, tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    let not_connected = text.find("not_connected").expect("a not_connected error");
    assert!(not_connected < text.find("\"hello\"").unwrap(), "{text}");
    assert!(
        w.server.history(&w.ann.1, &w.general).await.is_empty(),
        "nothing was said"
    );
}

#[tokio::test]
async fn the_rate_limit_sends_one_now_queues_five_and_refuses_the_rest() {
    let w = World::spawn(&[]).await;
    let s = &w.server;
    let mut bot = w.ann_bot().await;
    for id in 1..=7 {
        bot.send(json!({"type": "say", "text": format!("m{id}"), "id": id}))
            .await;
    }
    let mut answers = Vec::new();
    while answers.len() < 7 {
        let p = bot.next().await;
        if p["type"] == "success" || p["type"] == "error" {
            answers.push(p);
        }
    }
    let reasons: Vec<(i64, String)> = answers
        .iter()
        .map(|a| {
            let what = a.get("reason").or(a.get("error")).unwrap();
            (a["id"].as_i64().unwrap(), what.as_str().unwrap().to_owned())
        })
        .collect();
    let mut expected = vec![(1, "message_sent".to_owned())];
    expected.extend((2..=6).map(|id| (id, "message_queued".to_owned())));
    expected.push((7, "rate_limited".to_owned()));
    assert_eq!(reasons, expected);
    // Each queued message is answered again with `message_sent` and its id once stored (v2
    // client libraries resolve a `say` only then), in order.
    let mut sent = Vec::new();
    while sent.len() < 5 {
        let p = bot.next().await;
        if p["type"] == "success" {
            assert_eq!(p["reason"], "message_sent", "{p}");
            sent.push(p["id"].as_i64().unwrap());
        }
    }
    assert_eq!(sent, [2, 3, 4, 5, 6]);
    // The queued messages are sent in order, each at least half a second after the last
    // (server-stamped creation times).
    let history = s.history(&w.ann.1, &w.general).await;
    let texts: Vec<&str> = history
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["m1", "m2", "m3", "m4", "m5", "m6"]);
    for pair in history.windows(2) {
        let gap =
            pair[1]["dateCreated"].as_f64().unwrap() - pair[0]["dateCreated"].as_f64().unwrap();
        assert!(gap >= 0.49, "messages {} apart: {history:?}", gap);
    }
    // Once the queue has drained (and half a second has passed), the next message goes out
    // at once.
    bot.listen(Duration::from_millis(600)).await;
    let answer = bot.ask(json!({"type": "say", "text": "m8", "id": 8})).await;
    assert_eq!(answer["reason"], "message_sent", "{answer}");
}

#[tokio::test]
async fn chat_registration_is_private_and_replaces_the_previous_key() {
    let w = World::spawn(&[]).await;
    let s = &w.server;
    let mut ann_socket = s.events(Some(&w.ann.1)).await;
    let mut bob_socket = s.events(Some(&w.bob.1)).await;
    let before = s.history(&w.ann.1, &w.general).await.len();
    let (status, v) = s
        .try_post_message(&w.ann.1, &w.general, "\\chatbox license register")
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["command"], "chatbox");
    let reply = v["reply"].as_str().unwrap();
    let key = reply
        .split_whitespace()
        .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .expect("the key in the reply")
        .to_owned();
    let tell = ann_socket.expect("plugin/tell").await;
    assert_eq!(tell["plugin"], "chatbox");
    assert_eq!(tell["text"], reply);
    // Private: not stored, and bob's socket heard nothing of it.
    assert_eq!(s.history(&w.ann.1, &w.general).await.len(), before);
    assert!(bob_socket
        .drain(Duration::from_millis(300))
        .await
        .iter()
        .all(|(evt, data)| evt != "plugin/tell" && !data.to_string().contains(&key)));
    let (mut bot, hello) = s.bot_ready(&key).await;
    assert_eq!(
        hello["capabilities"],
        json!(["read", "command", "say", "tell"])
    );

    // Registering again replaces the key.
    let (_, again) = s
        .try_post_message(&w.ann.1, &w.general, "\\chatbox license register")
        .await;
    assert!(!again["reply"].as_str().unwrap().contains(&key));
    let (closing, code) = bot.closed().await;
    assert_eq!(closing.unwrap()["closeReason"], "changed_license_key");
    assert_eq!(code, Some(4005));
    // Other words get the usage, privately.
    let (_, usage) = s.try_post_message(&w.ann.1, &w.general, "\\chatbox").await;
    assert!(usage["reply"].as_str().unwrap().starts_with("Usage"));
    let (_, list) = s.get("/api/licenses", Some(&w.ann.1)).await;
    assert_eq!(list["licenses"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn restarts_are_announced_cancelled_and_carried_out() {
    let w = World::spawn(&[]).await;
    let mut bot = w.ann_bot().await;
    let s = &w.server;
    assert_error(
        &s.post("/api/restart", Some(&w.ann.1), json!({"seconds": 60}))
            .await,
        "NOT_ALLOWED",
    );
    let (status, v) = s
        .post("/api/restart", Some(&w.admin), json!({"seconds": 60}))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let scheduled = bot.expect("server_restart_scheduled").await;
    assert_eq!(scheduled["restartType"], "manual");
    assert_eq!(scheduled["restartSeconds"], 60);
    assert!(scheduled["restartAt"].as_str().unwrap() > scheduled["time"].as_str().unwrap());
    // A bot that connects now hears of it right after hello (and players).
    let key = s.license(&w.bob.1, &["read"]).await;
    let (mut late, _) = s.bot_ready(&key).await;
    assert_eq!(late.next().await["event"], "server_restart_scheduled");
    let (_, pending) = s.get("/api/restart", Some(&w.admin)).await;
    assert_eq!(pending["restart"]["restartSeconds"], 60);
    assert_error(
        &s.post("/api/restart", Some(&w.admin), json!({"seconds": 5}))
            .await,
        "ALREADY_PERFORMED",
    );

    let (status, _) = s.delete("/api/restart", Some(&w.admin)).await;
    assert_eq!(status, StatusCode::OK);
    let cancelled = bot.expect("server_restart_cancelled").await;
    assert_eq!(cancelled["restartType"], "manual");
    assert_eq!(
        late.expect("server_restart_cancelled").await["restartType"],
        "manual"
    );
    assert_error(&s.delete("/api/restart", Some(&w.admin)).await, "NOT_FOUND");

    // Carried out: bots are told the server is stopping, and it exits cleanly.
    let (status, _) = s
        .post("/api/restart", Some(&w.admin), json!({"seconds": 1}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        bot.expect("server_restart_scheduled").await["restartSeconds"],
        1
    );
    let (closing, code) = bot.closed().await;
    assert_eq!(closing.unwrap()["closeReason"], "server_stopping");
    assert_eq!(code, Some(4000));
    let status = tokio::task::spawn_blocking(move || {
        let mut w = w;
        w.server.wait_exit()
    })
    .await
    .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn a_stop_signal_with_a_grace_period_is_announced_first() {
    let mut w = World::spawn(&["--restart-grace", "2"]).await;
    let mut bot = w.ann_bot().await;
    let pid = w.server.pid();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let scheduled = bot.expect("server_restart_scheduled").await;
    assert_eq!(scheduled["restartType"], "automatic");
    assert_eq!(scheduled["restartSeconds"], 2);
    // Still serving during the grace period.
    let answer = bot.ask(json!({"type": "say", "text": "last words"})).await;
    assert_eq!(answer["reason"], "message_sent", "{answer}");
    let (closing, code) = bot.closed().await;
    assert_eq!(closing.unwrap()["closeReason"], "server_stopping");
    assert_eq!(code, Some(4000));
    assert!(w.server.wait_exit().success());
}

#[tokio::test]
async fn deleting_a_user_revokes_their_licenses() {
    let w = World::spawn(&[]).await;
    let s = &w.server;
    let key = s.license(&w.ann.1, &["read"]).await;
    let (mut bot, _) = s.bot_ready(&key).await;
    let (status, v) = s
        .delete(&format!("/api/users/{}", w.ann.0), Some(&w.admin))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (closing, code) = bot.closed().await;
    assert_eq!(closing.unwrap()["closeReason"], "changed_license_key");
    assert_eq!(code, Some(4005));
    assert_eq!(refused(s, &key).await, ("changed_license_key".into(), 4005));
}

#[tokio::test]
async fn say_defaults_to_the_configured_channel_and_tell_takes_user_ids() {
    let w = World::spawn(&["--chatbox-channel", "news"]).await;
    let s = &w.server;
    let news = s.create_channel(&w.admin, "news").await;
    let mut bot = w.ann_bot().await;
    let answer = bot
        .ask(json!({"type": "say", "text": "extra!", "id": 1}))
        .await;
    assert_eq!(answer["reason"], "message_sent", "{answer}");
    assert_eq!(s.history(&w.ann.1, &news).await[0]["text"], "extra!");
    assert!(s.history(&w.ann.1, &w.general).await.is_empty());
    let mut bob_socket = s.events(Some(&w.bob.1)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let answer = bot
        .ask(json!({"type": "tell", "user": w.bob.0, "text": "by id", "id": 2}))
        .await;
    assert_eq!(answer["reason"], "message_sent", "{answer}");
    let tell = bob_socket.expect("chatbox/tell").await;
    assert_eq!(
        (tell["text"].as_str(), tell["name"].as_str()),
        (Some("by id"), Some("ann"))
    );
    // The UUID of bob's user object names him too.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let uuid = decentd_protocol::user_uuid(w.bob.0.parse().unwrap());
    let answer = bot
        .ask(json!({"type": "tell", "user": uuid, "text": "by uuid", "id": 3}))
        .await;
    assert_eq!(answer["reason"], "message_sent", "{answer}");
    assert_eq!(bob_socket.expect("chatbox/tell").await["text"], "by uuid");
}

#[tokio::test]
async fn a_revoked_license_sends_nothing_it_had_queued() {
    let w = World::spawn(&[]).await;
    let s = &w.server;
    let (_, created) = s.post("/api/licenses", Some(&w.ann.1), json!({})).await;
    let key = created["key"].as_str().unwrap();
    let id = created["license"]["id"].as_str().unwrap();
    let (mut bot, _) = s.bot_ready(key).await;
    for n in 1..=4 {
        bot.send(json!({"type": "say", "text": format!("q{n}"), "id": n}))
            .await;
    }
    for _ in 1..=4 {
        bot.expect("success").await;
    }
    let (status, _) = s
        .delete(&format!("/api/licenses/{id}"), Some(&w.ann.1))
        .await;
    assert_eq!(status, StatusCode::OK);
    // q4's slot is 1.5 s after q1; wait past it.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let texts: Vec<Value> = s
        .history(&w.ann.1, &w.general)
        .await
        .iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(texts.first(), Some(&json!("q1")));
    assert!(!texts.contains(&json!("q4")), "{texts:?}");
}

/// A bot's `tell` follows the recipient's direct-message rules, as HTTP and the hub do: to a
/// user who blocked the bot's owner, or who accepts messages from nobody, it is refused with
/// `unknown_user`, and nothing reaches the user.
#[tokio::test]
async fn a_tell_to_a_user_who_does_not_accept_the_owner_is_refused() {
    let w = World::spawn(&[]).await;
    let s = &w.server;
    let mut bot = w.ann_bot().await;
    let mut bob_socket = s.events(Some(&w.bob.1)).await;
    let settings = format!("/api/users/{}/direct-message-settings", w.bob.0);
    let rules = [
        json!({"allowFrom": "everyone", "block": [w.ann.0]}),
        json!({"allowFrom": "nobody", "unblock": [w.ann.0]}),
    ];
    for rule in rules {
        let (status, body) = s.patch(&settings, Some(&w.bob.1), rule.clone()).await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(600)).await;
        let answer = bot
            .ask(json!({"type": "tell", "user": "bob", "text": "psst", "id": 7}))
            .await;
        assert_eq!(answer["ok"], false, "{rule} → {answer}");
        assert_eq!(answer["error"], "unknown_user", "{rule} → {answer}");
        let heard = bob_socket.drain(Duration::from_millis(300)).await;
        assert!(
            heard.iter().all(|(evt, _)| evt != "chatbox/tell"),
            "{heard:?}"
        );
    }
    // Accepting everyone again, the tell arrives.
    s.patch(&settings, Some(&w.bob.1), json!({"allowFrom": "everyone"}))
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let answer = bot
        .ask(json!({"type": "tell", "user": "bob", "text": "psst", "id": 8}))
        .await;
    assert_eq!(answer["reason"], "message_sent", "{answer}");
    assert_eq!(bob_socket.expect("chatbox/tell").await["text"], "psst");
}
