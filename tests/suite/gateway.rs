//! The WebSocket gateway with real clients: event shapes, permission filtering (also after
//! losing access), online/offline including a socket that stops ponging, a stalled client
//! dropped while others keep receiving, flood and connection limits, refused upgrades and
//! fragmented client messages.

use crate::common;

use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

async fn admin_server(args: &[&str]) -> (TestServer, String, String) {
    let mut all = vec!["--admin", "root"];
    all.extend_from_slice(args);
    let server = TestServer::spawn_with(&all).await;
    let (id, session) = server.user("root").await;
    (server, id, session)
}

#[tokio::test]
async fn user_settings_and_role_events_arrive_with_their_shapes() {
    let (server, _, admin) = admin_server(&[]).await;
    let mut ws = server.events(None).await;

    let r = server
        .patch(
            "/api/settings",
            Some(&admin),
            json!({"name": "Test server"}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let settings = ws.expect("server-settings/update").await;
    assert_eq!(settings["settings"]["name"], "Test server");

    let user = server.register("newbie", "password1").await;
    let id = user["id"].as_str().unwrap().to_owned();
    let new = ws.expect("user/new").await;
    assert_eq!(new["user"]["id"], id.as_str());
    assert_eq!(new["user"]["username"], "newbie");
    assert!(new["user"].get("email").is_none(), "no email to others");

    let r = server
        .post(
            "/api/roles",
            Some(&admin),
            json!({"name": "mods", "permissions": {"managePins": true}}),
        )
        .await;
    let role = r.1["roleID"].as_str().unwrap().to_owned();
    let new_role = ws.expect("role/new").await;
    assert_eq!(
        new_role,
        json!({"role": {"id": role, "name": "mods", "permissions": {"managePins": true}}})
    );
    server
        .patch(
            &format!("/api/roles/{role}"),
            Some(&admin),
            json!({"name": "moderators"}),
        )
        .await;
    assert_eq!(ws.expect("role/update").await["role"]["name"], "moderators");
    server
        .post(
            &format!("/api/users/{id}/roles"),
            Some(&admin),
            json!({"roleID": role}),
        )
        .await;
    let updated = ws.expect("user/update").await;
    assert_eq!(updated["user"]["roleIDs"], json!([role]));
    server
        .delete(&format!("/api/roles/{role}"), Some(&admin))
        .await;
    assert_eq!(ws.expect("role/delete").await, json!({"roleID": role}));
    server
        .delete(&format!("/api/users/{id}"), Some(&admin))
        .await;
    assert_eq!(ws.expect("user/delete").await, json!({"userID": id}));
}

#[tokio::test]
async fn a_user_who_loses_read_access_stops_receiving_at_once() {
    let (server, _, admin) = admin_server(&[]).await;
    let (alice_id, alice) = server.user("alice").await;
    let ch = server.create_channel(&admin, "staff").await;
    let roles = server.get("/api/roles", None).await.1;
    let admin_role = roles["roles"][0]["id"].as_str().unwrap().to_owned();
    let r = server
        .post(
            "/api/roles",
            Some(&admin),
            json!({"name": "staff", "permissions": {}}),
        )
        .await;
    let staff = r.1["roleID"].as_str().unwrap().to_owned();
    let r = server
        .patch(
            &format!("/api/channels/{ch}/role-permissions"),
            Some(&admin),
            json!({"rolePermissions": {
                "_everyone": {"readMessages": false},
                (admin_role.as_str()): {"readMessages": true},
                (staff.as_str()): {"readMessages": true}
            }}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    server
        .post(
            &format!("/api/users/{alice_id}/roles"),
            Some(&admin),
            json!({"roleID": staff}),
        )
        .await;

    let mut alice_ws = server.events(Some(&alice)).await;
    let mut guest_ws = server.events(None).await;
    server.post_message(&admin, &ch, "for staff").await;
    assert_eq!(
        alice_ws.expect("message/new").await["message"]["text"],
        "for staff"
    );

    let r = server
        .delete(
            &format!("/api/users/{alice_id}/roles/{staff}"),
            Some(&admin),
        )
        .await;
    assert_eq!(r.0, 200);
    alice_ws.expect("user/update").await;
    server
        .post_message(&admin, &ch, "after losing access")
        .await;
    for ws in [&mut alice_ws, &mut guest_ws] {
        let seen = ws.drain(Duration::from_millis(500)).await;
        assert!(seen.iter().all(|(evt, _)| evt != "message/new"), "{seen:?}");
    }
}

#[tokio::test]
async fn a_socket_that_stops_ponging_takes_its_user_offline() {
    let (server, _, _) = admin_server(&["--ping-interval", "1"]).await;
    let (bob_id, bob) = server.user("bob").await;
    let mut watcher = server.events(None).await;
    // `events` answers the first pingdata only; the later ones go unanswered.
    let _bob_ws = server.events(Some(&bob)).await;
    assert_eq!(
        watcher.expect("user/online").await,
        json!({"userID": bob_id})
    );
    assert_eq!(
        server.get(&format!("/api/users/{bob_id}"), None).await.1["user"]["online"],
        true
    );
    let offline = tokio::time::timeout(Duration::from_secs(8), watcher.expect("user/offline"))
        .await
        .expect("user/offline within 8 s of the last pong");
    assert_eq!(offline, json!({"userID": bob_id}));
    assert_eq!(
        server.get(&format!("/api/users/{bob_id}"), None).await.1["user"]["online"],
        false
    );
}

#[tokio::test]
async fn a_flooding_client_is_closed_and_others_are_not() {
    let (server, _, admin) = admin_server(&[]).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .unwrap();
    let mut bystander = server.events(None).await;
    for _ in 0..200 {
        if ws.send(Message::text("{not json")).await.is_err() {
            break;
        }
    }
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| f.code),
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, Some(CloseCode::Policy));
    server.create_channel(&admin, "still-working").await;
    assert_eq!(
        bystander.expect("channel/new").await["channel"]["name"],
        "still-working"
    );
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_with_503() {
    let server = TestServer::spawn_with(&["--max-websockets", "2"]).await;
    let _a = server.events(None).await;
    let _b = server.events(None).await;
    match tokio_tungstenite::connect_async(server.ws_url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("expected 503, got {:?}", other.map(|(_, r)| r.status())),
    }
    drop(_a);
    // The slot frees when a socket closes.
    for _ in 0..50 {
        if tokio_tungstenite::connect_async(server.ws_url())
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("a closed socket's slot was never freed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_is_dropped_while_others_keep_receiving() {
    let (server, _, admin) =
        admin_server(&["--ws-send-queue", "16", "--ws-write-timeout", "2"]).await;
    let ch = server.create_channel(&admin, "firehose").await;

    // A client that completes the handshake with a tiny receive buffer and never reads.
    let stream = server.stalled_connection().await;
    let (_stalled, _) = tokio_tungstenite::client_async(server.ws_url(), stream)
        .await
        .unwrap();

    // A healthy client that reads everything.
    let mut healthy = server.events(None).await;
    let reader = tokio::spawn(async move {
        let mut texts = Vec::new();
        loop {
            let data = healthy.expect("message/new").await;
            let text = data["message"]["text"].as_str().unwrap().to_owned();
            if text.starts_with("last") {
                return texts;
            }
            texts.push(text);
        }
    });

    let filler = "x".repeat(9_000);
    let mut sent = 0;
    while !server.dropped_a_slow_socket() {
        assert!(sent < 3_000, "the stalled socket was never dropped");
        server
            .post_message(&admin, &ch, &format!("{sent} {filler}"))
            .await;
        sent += 1;
    }
    // Delivery to the healthy socket continues after the drop.
    for i in 0..20 {
        server
            .post_message(&admin, &ch, &format!("{} after", sent + i))
            .await;
    }
    server.post_message(&admin, &ch, "last").await;
    let texts = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("healthy client finished")
        .unwrap();
    assert_eq!(texts.len(), sent + 20, "the healthy client lost messages");
    for (i, text) in texts.iter().enumerate() {
        assert!(text.starts_with(&format!("{i} ")), "out of order at {i}");
    }
    eprintln!("stalled socket dropped after {sent} posts of 9 KB");
}

#[tokio::test]
async fn upgrades_elsewhere_or_without_a_key_get_clear_http_errors() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::spawn_with(&[]).await;
    match tokio_tungstenite::connect_async(format!("ws://{}/nowhere", server.addr)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 404)
        }
        other => panic!("expected 404, got {:?}", other.map(|(_, r)| r.status())),
    }
    // A WebSocket request without its key: 400, and the connection ends.
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer))
        .await
        .expect("the server ends the connection")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // Plain requests to `/` still get the index page.
    let index = reqwest::get(format!("http://{}/", server.addr))
        .await
        .unwrap();
    assert_eq!(index.status(), 200);
}

#[tokio::test]
async fn a_pongdata_sent_in_fragments_brings_its_user_online() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let (server, _, _) = admin_server(&[]).await;
    let (bob_id, bob) = server.user("bob").await;
    let mut watcher = server.events(None).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .unwrap();
    let pong = json!({"evt": "pongdata", "data": {"sessionID": bob}}).to_string();
    let (head, tail) = pong.as_bytes().split_at(10);
    let first = Frame::message(head.to_vec(), OpCode::Data(Data::Text), false);
    let last = Frame::message(tail.to_vec(), OpCode::Data(Data::Continue), true);
    ws.send(Message::Frame(first)).await.unwrap();
    ws.send(Message::Frame(last)).await.unwrap();
    assert_eq!(
        watcher.expect("user/online").await,
        json!({"userID": bob_id})
    );
}

/// A frame header that declares 2^40 bytes of payload, masked.
fn huge_frame_header() -> Vec<u8> {
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    header
}

/// The paths of both gateways for a server with an admin: `/` and a bot's `/v2/<key>`.
async fn gateway_paths(server: &TestServer, admin: &str) -> [String; 2] {
    let key = server.license(admin, &["read", "say"]).await;
    ["/".to_owned(), format!("/v2/{key}")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_declaring_more_than_the_limit_is_refused_before_it_is_buffered() {
    let (server, _, admin) = admin_server(&[]).await;
    for path in gateway_paths(&server, &admin).await {
        let before = common::rss_bytes(server.pid());
        let mut ws = server.raw_ws(&path).await;
        // The header, then 64 MiB of the promised payload while the server answers.
        let mut bytes = huge_frame_header();
        bytes.resize(bytes.len() + (64 << 20), 0);
        let writer = ws.write_in_background(bytes);
        assert_eq!(ws.close_code().await, Some(1009), "{path}: close code");
        let grown = common::rss_bytes(server.pid()).saturating_sub(before);
        let sent = writer.await.unwrap();
        assert!(
            grown < 8 << 20,
            "{path}: RSS grew by {grown} bytes after {sent} bytes of an oversized frame"
        );
    }
}

#[tokio::test]
async fn empty_continuation_frames_count_toward_the_frame_rate_limit() {
    let (server, _, admin) = admin_server(&[]).await;
    let [root, bot] = gateway_paths(&server, &admin).await;
    for (path, code) in [(root, 1008), (bot, 4006)] {
        let mut ws = server.raw_ws(&path).await;
        // An unfinished text message, then empty continuations that never finish it.
        let mut bytes = common::raw_frame(0x01, b"x");
        for _ in 0..5_000 {
            bytes.extend(common::raw_frame(0x00, b""));
        }
        let writer = ws.write_in_background(bytes);
        assert_eq!(ws.close_code().await, Some(code), "{path}: close code");
        writer.abort();
    }
    // Control frames count too: a burst of pings is a flood like any other.
    let mut ws = server.raw_ws("/").await;
    let pings: Vec<u8> = (0..200)
        .flat_map(|_| common::raw_frame(0x89, b"p"))
        .collect();
    let writer = ws.write_in_background(pings);
    assert_eq!(ws.close_code().await, Some(1008), "pings: close code");
    writer.abort();
}

#[tokio::test]
async fn a_session_toggled_on_and_off_does_not_flood_everyone_with_presence() {
    let (server, _, _) = admin_server(&[]).await;
    let (bob_id, bob) = server.user("bob").await;
    let mut watcher = server.events(None).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .unwrap();
    let on = json!({"evt": "pongdata", "data": {"sessionID": bob}}).to_string();
    let off = json!({"evt": "pongdata", "data": {"sessionID": null}}).to_string();
    for _ in 0..8 {
        ws.send(Message::text(on.clone())).await.unwrap();
        ws.send(Message::text(off.clone())).await.unwrap();
    }
    let events = watcher.drain(Duration::from_secs(4)).await;
    let presence: Vec<&(String, serde_json::Value)> = events
        .iter()
        .filter(|(evt, _)| evt.starts_with("user/o"))
        .collect();
    // One arrival, then one departure once the grace has passed: not eight of each.
    assert_eq!(
        presence
            .iter()
            .map(|(evt, data)| (evt.as_str(), data["userID"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        [
            ("user/online", bob_id.as_str()),
            ("user/offline", bob_id.as_str())
        ]
    );
}

/// The ids in every `channel/new` (`channel.id`) or `channel/delete` (`channelID`) heard.
fn channel_events(heard: &[(String, serde_json::Value)], evt: &str) -> Vec<String> {
    let mut ids: Vec<String> = heard
        .iter()
        .filter(|(e, _)| e == evt)
        .map(|(_, d)| {
            d["channel"]["id"]
                .as_str()
                .or(d["channelID"].as_str())
                .unwrap()
                .to_owned()
        })
        .collect();
    ids.sort();
    ids
}

/// What a socket may see follows its session and permissions at once, as events: on a
/// `members` server, logging in brings `channel/new` for each channel; an override that hides
/// a channel brings `channel/delete` and then nothing from it; lifting it brings `channel/new`
/// again; a deleted channel's `channel/delete` reaches only those that could read it; logging
/// out takes every channel away.
#[tokio::test]
async fn channels_come_and_go_with_the_session_and_permissions() {
    let server = TestServer::spawn_with_defaults(&["--admin", "root"]).await;
    let (_, root) = server.user("root").await;
    let (_, alice) = server.user("alice").await;
    let general = server.create_channel(&root, "general").await;
    let secret = server.create_channel(&root, "secret").await;
    let mut both = vec![general.clone(), secret.clone()];
    both.sort();

    let mut guest = server.events(None).await;
    let mut socket = server.events(Some(&alice)).await;
    let heard = socket.drain(Duration::from_millis(300)).await;
    assert_eq!(channel_events(&heard, "channel/new"), both, "{heard:?}");
    // A hub connection of hers hears the same, framed for SignalR.
    let mut hub = server.hub(Some(&alice)).await;

    // Hidden from users (not from the Admin role) by an override: gone, and nothing more
    // from it.
    let (_, roles) = server.get("/api/roles", None).await;
    let admin_role = roles["roles"][0]["id"].as_str().unwrap().to_owned();
    let overrides = format!("/api/channels/{secret}/role-permissions");
    let hide = json!({"rolePermissions": {
        "_user": {"readMessages": false},
        (admin_role.as_str()): {"readMessages": true}
    }});
    let (status, body) = server.patch(&overrides, Some(&root), hide).await;
    assert_eq!(status, 200, "{body}");
    let heard = socket.drain(Duration::from_millis(300)).await;
    assert_eq!(
        channel_events(&heard, "channel/delete"),
        vec![secret.clone()]
    );
    assert_eq!(
        hub.expect_event("channel/delete").await["channelID"],
        secret.as_str()
    );
    server.post_message(&root, &secret, "psst").await;
    let heard = socket.drain(Duration::from_millis(300)).await;
    assert!(heard.iter().all(|(e, _)| e != "message/new"), "{heard:?}");

    // Shown again.
    let show = json!({"rolePermissions": {"_user": {}}});
    let (status, body) = server.patch(&overrides, Some(&root), show).await;
    assert_eq!(status, 200, "{body}");
    let heard = socket.drain(Duration::from_millis(300)).await;
    assert_eq!(channel_events(&heard, "channel/new"), vec![secret.clone()]);

    // A deleted channel: to alice, who could read it; not to the guest, who could not.
    let (status, body) = server
        .delete(&format!("/api/channels/{general}"), Some(&root))
        .await;
    assert_eq!(status, 200, "{body}");
    let heard = socket.drain(Duration::from_millis(300)).await;
    assert_eq!(
        channel_events(&heard, "channel/delete"),
        vec![general.clone()]
    );
    let heard = guest.drain(Duration::from_millis(100)).await;
    assert!(
        heard.iter().all(|(e, _)| !e.starts_with("channel/")),
        "{heard:?}"
    );

    // Logged out: a guest's socket, which may read nothing here.
    let (status, body) = server
        .delete(&format!("/api/sessions/{alice}"), Some(&alice))
        .await;
    assert_eq!(status, 200, "{body}");
    let heard = socket.drain(Duration::from_millis(300)).await;
    assert_eq!(
        channel_events(&heard, "channel/delete"),
        vec![secret.clone()]
    );
}
