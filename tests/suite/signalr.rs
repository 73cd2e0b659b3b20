//! The SignalR hub at `/hub`, spoken raw: negotiate, the handshake, sessions, events, hub
//! methods, keep-alive and timeouts, limits and closing. (The official client's view is in
//! `tests/browser/signalr.test.mjs`.)

use crate::common;

use common::{TestServer, RS};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A server with an admin (alice), a member (bob), a channel, and members-only reading.
async fn world(args: &[&str]) -> (TestServer, String, String, String) {
    let mut all = vec!["--admin", "alice", "--read-access", "members"];
    all.extend_from_slice(args);
    let server = TestServer::spawn_with(&all).await;
    let (_, alice) = server.user("alice").await;
    let (_, bob) = server.user("bob").await;
    let channel = server.create_channel(&alice, "general").await;
    (server, alice, bob, channel)
}

async fn user_id(server: &TestServer, session: &str) -> String {
    let (_, v) = server
        .get(&format!("/api/sessions/{session}"), Some(session))
        .await;
    v["user"]["id"].as_str().unwrap().to_owned()
}

async fn negotiate(server: &TestServer, query: &str) -> (StatusCode, Value) {
    server
        .call(Method::POST, &format!("/hub/negotiate{query}"), None, None)
        .await
}

#[tokio::test]
async fn negotiate_speaks_both_versions_and_ids_are_good_once() {
    let (server, alice, _, _) = world(&[]).await;
    let (status, v0) = negotiate(&server, "").await;
    assert_eq!(status, 200, "{v0}");
    assert_eq!(v0["negotiateVersion"], 0);
    assert!(v0.get("connectionToken").is_none(), "{v0}");
    assert_eq!(
        v0["availableTransports"],
        json!([{"transport": "WebSockets", "transferFormats": ["Text", "Binary"]}])
    );
    let (_, v1) = negotiate(&server, "?negotiateVersion=1").await;
    assert_eq!(v1["negotiateVersion"], 1);
    let token = v1["connectionToken"].as_str().unwrap();
    assert_ne!(token, v1["connectionId"].as_str().unwrap());
    let (_, newer) = negotiate(&server, "?negotiateVersion=7").await;
    assert_eq!(newer["negotiateVersion"], 1, "the highest version spoken");
    let (status, bad) = negotiate(&server, "?negotiateVersion=one").await;
    assert_eq!(status, 400);
    assert!(bad["error"].as_str().unwrap().contains("negotiateVersion"));

    // Version 1 connects with its token, version 0 with its connection ID; each once.
    let mut hub = server
        .hub_socket(&format!("?id={token}&access_token={alice}"), &[])
        .await
        .unwrap();
    hub.handshake().await;
    let again = server
        .hub_socket(&format!("?id={token}&access_token={alice}"), &[])
        .await;
    assert_eq!(again.err(), Some(StatusCode::NOT_FOUND));
    let id = v0["connectionId"].as_str().unwrap();
    server
        .hub_socket(&format!("?id={id}"), &[])
        .await
        .unwrap()
        .handshake()
        .await;
    let unknown = server.hub_socket("?id=0123", &[]).await;
    assert_eq!(unknown.err(), Some(StatusCode::NOT_FOUND));

    // Other transports: a clear refusal.
    for method in [Method::GET, Method::POST, Method::DELETE] {
        let (status, v) = server.call(method, "/hub?id=abc", None, None).await;
        assert_eq!(status, 400, "{v}");
        assert!(v["error"].as_str().unwrap().contains("WebSockets"), "{v}");
    }
}

#[tokio::test]
async fn the_handshake_speaks_json_only_and_may_share_a_frame() {
    let (server, alice, _, channel) = world(&[]).await;
    let mut hub = server.hub_socket("", &[]).await.unwrap();
    hub.send(json!({"protocol": "messagepack", "version": 1}))
        .await;
    let refused = hub.next().await;
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("'messagepack' is not supported"),
        "{refused}"
    );
    assert!(hub.try_next().await.is_none(), "closed after a refusal");

    let mut hub = server.hub_socket("", &[]).await.unwrap();
    hub.send(json!({"type": 6})).await;
    assert!(hub.next().await["error"]
        .as_str()
        .unwrap()
        .contains("handshake"));

    // A handshake and an invocation in one binary frame.
    let mut hub = server
        .hub_socket(&format!("?access_token={alice}"), &[])
        .await
        .unwrap();
    let frame = format!(
        "{}{RS}{}{RS}",
        json!({"protocol": "json", "version": 2}),
        json!({"type": 1, "invocationId": "1", "target": "SendMessage",
               "arguments": [{"channelID": channel, "text": "early"}]})
    );
    hub.send_binary(frame.into_bytes()).await;
    assert_eq!(hub.next().await, json!({}));
    let done = loop {
        let record = hub.next().await;
        if record["type"] == 3 {
            break record;
        }
    };
    assert!(done["result"]["messageID"].is_string(), "{done}");
}

#[tokio::test]
async fn sessions_come_as_access_token_bearer_res_or_none() {
    let (server, alice, bob, _) = world(&[]).await;
    let alice_id = user_id(&server, &alice).await;
    let whoami = |v: Value| v["result"]["status"]["userID"].clone();

    let bearer = format!("Bearer {alice}");
    let res = format!("res {alice_id}:{alice}");
    for authorization in [&bearer, &res] {
        let mut hub = server
            .hub_socket("", &[("Authorization", authorization)])
            .await
            .unwrap();
        hub.handshake().await;
        assert_eq!(
            whoami(hub.invoke("1", "InitializeStatus", json!([])).await),
            alice_id,
            "{authorization}"
        );
    }
    let mut guest = server.hub(None).await;
    assert_eq!(
        guest.invoke("1", "InitializeStatus", json!([])).await["result"]["status"],
        Value::Null
    );

    // A session of another user under `res`, two sessions, or an unknown one: 401.
    let bob_id = user_id(&server, &bob).await;
    let wrong_owner = format!("res {bob_id}:{alice}");
    for (query, headers) in [
        (String::new(), vec![("Authorization", wrong_owner.as_str())]),
        (
            format!("?access_token={bob}"),
            vec![("Authorization", bearer.as_str())],
        ),
        ("?access_token=nope".to_owned(), vec![]),
    ] {
        let refused = server.hub_socket(&query, &headers).await;
        assert_eq!(refused.err(), Some(StatusCode::UNAUTHORIZED), "{query}");
    }
    let (status, v) = server
        .call(
            Method::POST,
            "/hub/negotiate?negotiateVersion=1&access_token=nope",
            None,
            None,
        )
        .await;
    assert_eq!(status, 401, "{v}");
    assert!(v["error"].as_str().unwrap().contains("INVALID_SESSION_ID"));
}

#[tokio::test]
async fn events_arrive_as_at_slash_with_the_same_filtering() {
    let (server, alice, bob, channel) = world(&[]).await;
    let (carol_id, _) = server.user("carol").await;
    let mut slash = server.events(Some(&alice)).await;
    let mut hub = server.hub(Some(&alice)).await;
    let mut guest = server.hub(None).await;

    server.post_message(&bob, &channel, "to members").await;
    let at_slash = slash.expect("message/new").await;
    assert_eq!(hub.expect_event("message/new").await, at_slash);

    // A direct message between bob and carol reaches neither alice nor the guest; one to
    // alice reaches her as ReceiveEvent and ReceiveMessage, in that order.
    server
        .post(
            &format!("/api/users/{carol_id}/messages"),
            Some(&bob),
            json!({"text": "not for alice"}),
        )
        .await;
    let alice_id = user_id(&server, &alice).await;
    server
        .post(
            &format!("/api/users/{alice_id}/messages"),
            Some(&bob),
            json!({"text": "for alice"}),
        )
        .await;
    let dm = hub.expect_event("dm/new").await;
    assert_eq!(dm["message"]["text"], "for alice");
    assert_eq!(
        hub.expect("ReceiveMessage").await[0]["content"],
        "for alice"
    );

    // The guest (members-only reading) got neither the channel messages nor the DMs: all
    // it received before the answer to a later request was presence.
    server.post_message(&bob, &channel, "still members").await;
    assert_eq!(
        hub.expect_event("message/new").await["message"]["text"],
        "still members"
    );
    let (before, _) = guest.invoke_collect("1", "RequestStatus", json!([])).await;
    for record in before {
        let name = record["arguments"][0]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            record["type"] == 6
                || name.starts_with("user/")
                || record["target"] == "ReceiveStatusUpdate",
            "a guest got {record}"
        );
    }
}

#[tokio::test]
async fn invocations_complete_or_fail_and_protocol_errors_close() {
    let (server, alice, bob, channel) = world(&[]).await;
    let mut hub = server.hub(Some(&alice)).await;

    // Without an invocation ID: carried out, no completion.
    hub.send(json!({"type": 1, "target": "SendMessage",
                    "arguments": [{"channelID": channel, "text": "quietly"}]}))
        .await;
    let status = hub.invoke("2", "InitializeStatus", json!([])).await;
    assert!(status["result"]["online"].is_array(), "{status}");
    let texts: Vec<Value> = server
        .history(&bob, &channel)
        .await
        .iter()
        .map(|m| m["text"].clone())
        .collect();
    assert!(texts.contains(&json!("quietly")), "{texts:?}");

    let unknown = hub.invoke("3", "Nope", json!([])).await;
    assert!(unknown["error"]
        .as_str()
        .unwrap()
        .starts_with("Unknown hub method 'Nope'"));
    let arity = hub.invoke("4", "SendMessage", json!([{}, {}])).await;
    assert!(
        arity["error"].as_str().unwrap().contains("expects 1"),
        "{arity}"
    );
    let missing = hub
        .invoke("5", "SendMessage", json!([{"channelID": channel}]))
        .await;
    assert!(missing["error"]
        .as_str()
        .unwrap()
        .starts_with("INCOMPLETE_PARAMETERS"));
    hub.send(json!({"type": 4, "invocationId": "6", "target": "SendMessage", "arguments": []}))
        .await;
    let streamed = hub.next().await;
    assert!(streamed["error"]
        .as_str()
        .unwrap()
        .contains("does not stream"));

    let mark = hub
        .invoke("7", "MarkMessagesRead", json!([{"channelID": channel}]))
        .await;
    assert_eq!(mark.get("error"), None, "{mark}");
    assert_eq!(mark.get("result"), None, "a method without a result");

    // A Completion from the client is a protocol error: Close with an error, then the end.
    hub.send(json!({"type": 3, "invocationId": "x"})).await;
    let close = hub.close_message().await.expect("a Close message");
    assert!(close["error"].as_str().unwrap().contains("protocol error"));
    assert_eq!(close["allowReconnect"], false);
}

#[tokio::test]
async fn the_hub_pings_and_closes_silent_clients() {
    let (server, alice, _, _) =
        world(&["--hub-keep-alive", "1", "--hub-client-timeout", "3"]).await;
    let mut hub = server.hub(Some(&alice)).await;
    let started = Instant::now();
    while hub.next().await != json!({"type": 6}) {}
    assert!(started.elapsed() < Duration::from_secs(3));

    // A client that pings stays past the timeout.
    let mut pinging = server.hub(Some(&alice)).await;
    for _ in 0..4 {
        pinging.send(json!({"type": 6})).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let alive = pinging.invoke("1", "InitializeStatus", json!([])).await;
    assert!(alive["result"].is_object());

    // The silent one was closed, with an error that allows reconnecting.
    let close = hub.close_message().await.expect("a Close message");
    assert!(
        close["error"].as_str().unwrap().contains("sent nothing"),
        "{close}"
    );
    assert_eq!(close["allowReconnect"], true);
}

/// The next `evt` at `/` about user `id` (others are skipped); its data.
async fn expect_about(slash: &mut common::EventSocket, evt: &str, id: &str) -> Value {
    loop {
        let data = slash.expect(evt).await;
        if data["userID"] == id {
            return data;
        }
    }
}

#[tokio::test]
async fn statuses_show_on_slash_and_in_user_objects() {
    let (server, alice, bob, _) = world(&[]).await;
    let alice_id = user_id(&server, &alice).await;
    let mut slash = server.events(Some(&bob)).await;
    let mut hub = server.hub(Some(&alice)).await;
    expect_about(&mut slash, "user/online", &alice_id).await;

    let away = hub.invoke("1", "BroadcastStatus", json!(["away"])).await;
    assert_eq!(away["result"]["shownAs"], "away");
    assert_eq!(
        expect_about(&mut slash, "user/status", &alice_id).await,
        json!({"userID": alice_id, "status": "away"})
    );
    let (_, user) = server
        .get(&format!("/api/users/{alice_id}"), Some(&bob))
        .await;
    assert_eq!(user["user"]["status"], "away");
    assert_eq!(user["user"]["online"], true);

    hub.invoke(
        "2",
        "BroadcastStatus",
        json!([{"onlineStatus": "Invisible"}]),
    )
    .await;
    expect_about(&mut slash, "user/offline", &alice_id).await;
    let (_, user) = server
        .get(&format!("/api/users/{alice_id}"), Some(&bob))
        .await;
    assert_eq!(user["user"]["online"], false);
    // Asking for the status of an invisible user shows offline, to anyone.
    let seen = hub
        .invoke("3", "RequestStatus", json!([alice_id.clone()]))
        .await;
    assert_eq!(seen["result"]["status"], "offline");

    hub.invoke("4", "BroadcastStatus", json!(["busy"])).await;
    expect_about(&mut slash, "user/online", &alice_id).await;
    assert_eq!(
        expect_about(&mut slash, "user/status", &alice_id).await["status"],
        "busy"
    );

    let odd = hub.invoke("5", "BroadcastStatus", json!(["sleepy"])).await;
    assert!(odd["error"]
        .as_str()
        .unwrap()
        .starts_with("INVALID_PARAMETER_TYPE"));
    let mut guest = server.hub(None).await;
    let refused = guest.invoke("1", "BroadcastStatus", json!(["away"])).await;
    assert!(refused["error"]
        .as_str()
        .unwrap()
        .starts_with("NOT_ALLOWED"));

    // Leaving ends the status: offline after the grace, and online (not busy) on return.
    drop(hub);
    expect_about(&mut slash, "user/offline", &alice_id).await;
    let _hub = server.hub(Some(&alice)).await;
    expect_about(&mut slash, "user/online", &alice_id).await;
    let (_, user) = server
        .get(&format!("/api/users/{alice_id}"), Some(&bob))
        .await;
    assert_eq!(user["user"]["status"], "online");
}

#[tokio::test]
async fn every_gateway_shares_one_connection_limit() {
    let (server, alice, _, _) = world(&["--max-websockets", "2"]).await;
    let _slash = server.events(None).await;
    let mut hub = server.hub(Some(&alice)).await;
    let refused = server.hub_socket("", &[]).await;
    assert_eq!(refused.err(), Some(StatusCode::SERVICE_UNAVAILABLE));
    let slash_refused = tokio_tungstenite::connect_async(server.ws_url()).await;
    assert!(slash_refused.is_err(), "the limit holds for / too");
    // A bot cannot connect either: its gateway counts against the same limit.
    let key = server.license(&alice, &["read"]).await;
    let mut bot = server.bot(&key).await;
    let first = bot.next().await;
    assert_ne!(first["type"], "hello", "{first}");

    hub.send(json!({"type": 7})).await;
    assert_eq!(hub.close_message().await, None, "the client closed");
    for _ in 0..50 {
        if let Ok(mut again) = server.hub_socket("", &[]).await {
            again.handshake().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("a closed hub connection's place was never freed");
}

#[tokio::test]
async fn a_session_that_ends_closes_its_connection_for_good() {
    let (server, alice, _, _) =
        world(&["--hub-keep-alive", "1", "--hub-client-timeout", "5"]).await;
    let mut hub = server.hub(Some(&alice)).await;
    let (status, v) = server
        .delete(&format!("/api/sessions/{alice}"), Some(&alice))
        .await;
    assert_eq!(status, 200, "{v}");
    let close = hub.close_message().await.expect("a Close message");
    assert!(close["error"].as_str().unwrap().contains("session ended"));
    assert_eq!(close["allowReconnect"], false);
}

#[tokio::test]
async fn stopping_the_server_closes_hub_connections_for_a_reconnect() {
    let (mut server, alice, _, _) = world(&[]).await;
    let mut hub = server.hub(Some(&alice)).await;
    assert!(server.signal_and_wait("TERM").success());
    let close = hub.close_message().await.expect("a Close message");
    assert_eq!(close["allowReconnect"], true, "{close}");
}

#[tokio::test]
async fn oversized_messages_and_floods_close_the_connection() {
    let (server, alice, _, _) = world(&[]).await;
    let mut hub = server.hub(Some(&alice)).await;
    hub.send_text(&"x".repeat(200 * 1024)).await;
    assert_eq!(
        hub.close_message().await,
        None,
        "closed by a close frame (1009)"
    );
    // A record growing past the limit over several frames.
    let mut hub = server.hub(Some(&alice)).await;
    for _ in 0..3 {
        hub.send_text(&"y".repeat(60 * 1024)).await;
    }
    let close = hub.close_message().await.expect("a Close message");
    assert!(close["error"].as_str().unwrap().contains("larger than"));

    // A flood of frames (past the 20-frame burst) is closed as at `/`.
    let mut hub = server.hub(Some(&alice)).await;
    for _ in 0..60 {
        hub.send(json!({"type": 6})).await;
    }
    assert_eq!(
        hub.close_message().await,
        None,
        "closed by a close frame (1008)"
    );
    // The log line is read from the server's stderr by a thread: it may trail the close.
    let logged = || {
        server
            .logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("sends too many frames"))
    };
    for _ in 0..100 {
        if logged() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(logged());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_client_that_stops_reading_is_closed_and_others_keep_receiving() {
    let (server, alice, bob, channel) =
        world(&["--ws-send-queue", "16", "--ws-write-timeout", "2"]).await;
    // A client that completes both handshakes with a tiny receive buffer and never reads.
    let stream = server.stalled_connection().await;
    let url = format!("ws://{}/hub?access_token={alice}", server.addr);
    let (mut stalled, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    {
        use futures_util::SinkExt;
        stalled
            .send(tokio_tungstenite::tungstenite::Message::text(format!(
                "{}{RS}",
                json!({"protocol": "json", "version": 1})
            )))
            .await
            .unwrap();
    }
    let mut healthy = server.hub(Some(&bob)).await;
    let filler = "x".repeat(9_000);
    let mut sent = 0;
    let reader = tokio::spawn(async move {
        let mut count = 0;
        loop {
            let data = healthy.expect_event("message/new").await;
            if data["message"]["text"] == "last" {
                return count;
            }
            count += 1;
        }
    });
    while !server.dropped_a_slow_socket() {
        assert!(sent < 3_000, "the stalled hub client was never dropped");
        server
            .post_message(&alice, &channel, &format!("{sent} {filler}"))
            .await;
        sent += 1;
    }
    server.post_message(&alice, &channel, "last").await;
    let count = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("the healthy client finished")
        .unwrap();
    assert_eq!(count, sent, "the healthy hub client lost messages");
}
