//! Cluster mode: several real decentd nodes on one real PostgreSQL and one real NATS server
//! (both started by `common::engines`).

use crate::common;

use common::engines::{postgres, Nats, Postgres};
use common::{install_example, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

/// The engines of one cluster and the directory its nodes share for uploads.
struct Cluster {
    store: String,
    nats: Nats,
    uploads: tempfile::TempDir,
}

impl Cluster {
    /// A fresh database on the shared PostgreSQL, and a NATS server of its own.
    fn new() -> Self {
        Self::on(postgres())
    }

    fn on(pg: &Postgres) -> Self {
        Self {
            store: pg.database(),
            nats: Nats::start(),
            uploads: tempfile::tempdir().unwrap(),
        }
    }

    /// A node with its own data directory (search index), an administrator named root.
    async fn node(&self, extra: &[&str]) -> TestServer {
        let nats = self.nats.url();
        let uploads = self.uploads.path().to_str().unwrap().to_owned();
        let mut args = vec![
            "--store",
            &self.store,
            "--bus",
            &nats,
            "--uploads",
            &uploads,
            "--admin",
            "root",
        ];
        args.extend_from_slice(extra);
        TestServer::spawn_with(&args).await
    }
}

/// Every message id of a channel, oldest first, read through `server` (paging back).
async fn history(server: &TestServer, session: &str, channel: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let path = match &before {
            Some(b) => format!("/api/channels/{channel}/messages?before={b}&limit=50"),
            None => format!("/api/channels/{channel}/messages?limit=50"),
        };
        let (status, v) = server.get(&path, Some(session)).await;
        assert_eq!(status, 200, "{v}");
        let page: Vec<String> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        let Some(oldest) = page.first().cloned() else {
            ids.reverse();
            return ids;
        };
        before = Some(oldest);
        ids.extend(page.into_iter().rev());
    }
}

#[tokio::test]
async fn a_message_posted_on_one_node_reaches_sockets_bots_and_history_on_another() {
    let cluster = Cluster::new();
    let a = cluster.node(&[]).await;
    let b = cluster.node(&[]).await;
    let (_, root) = a.user("root").await;
    let channel = a.create_channel(&root, "general").await;
    // The session made on A is good on B: sessions live in the shared database.
    let mut socket = b.events(Some(&root)).await;
    let key = a.license(&root, &["read", "say"]).await;
    let (mut bot, _) = b.bot_ready(&key).await;

    let id = a.post_message(&root, &channel, "hello from A").await;
    let event = socket.expect("message/new").await;
    assert_eq!(event["message"]["id"], id.as_str());
    assert_eq!(event["message"]["text"], "hello from A");
    let chat = bot.expect("chat_ingame").await;
    assert_eq!(chat["text"], "hello from A", "{chat}");
    assert_eq!(history(&b, &root, &channel).await, vec![id.clone()]);

    // And back: a message posted on B reaches a socket on A, each event once.
    let mut on_a = a.events(Some(&root)).await;
    let back = b.post_message(&root, &channel, "hello from B").await;
    assert_eq!(
        on_a.expect("message/new").await["message"]["id"],
        back.as_str()
    );
    let rest: Vec<String> = on_a
        .drain(Duration::from_millis(500))
        .await
        .into_iter()
        .filter(|(evt, _)| evt == "message/new")
        .map(|(_, data)| data["message"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(rest.is_empty(), "delivered twice: {rest:?}");

    // Both nodes are ready and say the bus is connected.
    for node in [&a, &b] {
        let (status, v) = node.get("/readyz", None).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["checks"]["bus"], "ok");
    }
}

#[tokio::test]
async fn a_role_change_on_one_node_applies_to_the_next_request_and_event_on_another() {
    let cluster = Cluster::new();
    let a = cluster.node(&[]).await;
    let b = cluster.node(&[]).await;
    let (root_id, root) = a.user("root").await;
    let (reader_id, reader) = a.user("reader").await;
    let secret = a.create_channel(&root, "secret").await;
    let readers = a.create_role(&root, json!({})).await;
    let staff = a.create_role(&root, json!({})).await;
    a.give_role(&root, &root_id, &staff).await;
    let overrides = |readable: bool| {
        json!({"rolePermissions": {
            "_everyone": {"readMessages": false},
            (readers.as_str()): {"readMessages": readable},
            (staff.as_str()): {"readMessages": true}
        }})
    };
    let r = a
        .patch(
            &format!("/api/channels/{secret}/role-permissions"),
            Some(&root),
            overrides(true),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let mut socket = b.events(Some(&reader)).await;
    let messages = format!("/api/channels/{secret}/messages");
    assert_eq!(b.get(&messages, Some(&reader)).await.0, 403);

    // Granted on A: B's very next request and next event see it.
    a.give_role(&root, &reader_id, &readers).await;
    let (status, v) = b.get(&messages, Some(&reader)).await;
    assert_eq!(status, 200, "{v}");
    let id = a.post_message(&root, &secret, "for readers").await;
    assert_eq!(
        socket.expect("message/new").await["message"]["id"],
        id.as_str()
    );

    // Taken away on A: the next message in the channel is not delivered on B.
    let r = a
        .patch(
            &format!("/api/channels/{secret}/role-permissions"),
            Some(&root),
            overrides(false),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    a.post_message(&root, &secret, "not for readers any more")
        .await;
    let public = a.create_channel(&root, "public").await;
    let marker = a.post_message(&root, &public, "marker").await;
    let seen = socket.drain(Duration::from_secs(1)).await;
    let texts: Vec<&Value> = seen
        .iter()
        .filter(|(evt, _)| evt == "message/new")
        .map(|(_, data)| &data["message"]["text"])
        .collect();
    assert_eq!(texts, vec!["marker"], "{seen:?}");
    assert!(seen
        .iter()
        .any(|(_, d)| d["message"]["id"] == marker.as_str()));
    assert_eq!(b.get(&messages, Some(&reader)).await.0, 403);
}

#[tokio::test]
async fn a_node_killed_under_write_load_loses_nothing_acknowledged() {
    let cluster = Cluster::new();
    let mut a = cluster.node(&[]).await;
    let b = cluster.node(&[]).await;
    let (_, root) = a.user("root").await;
    let channel = a.create_channel(&root, "busy").await;
    let mut on_a = a.events(Some(&root)).await;

    // Four writers post to A as fast as it answers; A is killed mid-stream.
    let (url, client) = (format!("http://{}/api/messages", a.addr), a.client.clone());
    let mut writers = Vec::new();
    for w in 0..4 {
        let (url, client, root, channel) =
            (url.clone(), client.clone(), root.clone(), channel.clone());
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0.. {
                let sent = client
                    .post(&url)
                    .header("X-Session-ID", &root)
                    .json(&json!({"channelID": channel, "text": format!("{w}-{i}")}))
                    .send()
                    .await;
                let Ok(response) = sent else { break };
                let Ok(v) = response.json::<Value>().await else {
                    break;
                };
                match v["messageID"].as_str() {
                    Some(id) => acknowledged.push(id.to_owned()),
                    None => break,
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.signal_and_wait("KILL");
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    assert!(acknowledged.len() > 20, "only {} posts", acknowledged.len());

    let stored = history(&b, &root, &channel).await;
    let stored: std::collections::HashSet<_> = stored.into_iter().collect();
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");

    // A's client finds its socket closed and carries on at B.
    let ended = tokio::time::timeout(Duration::from_secs(5), on_a.next_ended()).await;
    assert!(ended.is_ok(), "the socket to the killed node did not end");
    let mut on_b = b.events(Some(&root)).await;
    let id = b.post_message(&root, &channel, "after the crash").await;
    assert_eq!(
        on_b.expect("message/new").await["message"]["id"],
        id.as_str()
    );
}

#[tokio::test]
async fn each_plugin_event_is_handled_once_in_the_cluster() {
    let cluster = Cluster::new();
    let plugins = tempfile::tempdir().unwrap();
    let dir = plugins.path().to_str().unwrap().to_owned();
    // The channel first (the greeting's configuration names it), then two nodes with the
    // welcome plugin.
    let channel = {
        let first = cluster.node(&[]).await;
        let (_, root) = first.user("root").await;
        first.create_channel(&root, "lobby").await
    };
    install_example(
        plugins.path(),
        "welcome",
        Some(&format!(
            "channel = \"{channel}\"\ntext = \"Welcome, {{name}}!\"\n"
        )),
    );
    let a = cluster.node(&["--plugins", &dir]).await;
    let b = cluster.node(&["--plugins", &dir]).await;
    let root = a.login("root", "password1").await;
    let mut socket = a.events(Some(&root)).await;
    b.register("newbie", "password1").await;
    a.register("second", "password1").await;
    let mut greetings = Vec::new();
    for (evt, data) in socket.drain(Duration::from_secs(3)).await {
        if evt == "message/new" {
            greetings.push(data["message"]["text"].as_str().unwrap().to_owned());
        }
    }
    greetings.sort();
    assert_eq!(greetings, vec!["Welcome, newbie!", "Welcome, second!"]);
    let texts = history(&b, &root, &channel).await;
    assert_eq!(texts.len(), 2, "each greeting stored once");
}

#[tokio::test]
async fn a_nats_restart_is_survived() {
    let cluster = Cluster::new();
    let a = cluster.node(&[]).await;
    let b = cluster.node(&[]).await;
    let (_, root) = a.user("root").await;
    let channel = a.create_channel(&root, "general").await;
    let mut socket = b.events(Some(&root)).await;

    cluster.nats.stop();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, v) = a.get("/readyz", None).await;
        if status == 503 {
            assert_ne!(v["checks"]["bus"], "ok", "{v}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Writes still work while the bus is down: storage is what acknowledges them.
    let offline = a
        .post_message(&root, &channel, "posted while NATS was down")
        .await;

    cluster.nats.resume();
    for node in [&a, &b] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while node.get("/readyz", None).await.0 != 200 {
            assert!(tokio::time::Instant::now() < deadline, "no reconnection");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let id = a.post_message(&root, &channel, "after the restart").await;
    loop {
        let event = socket.expect("message/new").await;
        if event["message"]["id"] == id.as_str() {
            break;
        }
    }
    // B's search catches up with what was posted while it heard nothing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, found) = b.get("/api/search?q=posted", Some(&root)).await;
        if found["messages"][0]["id"] == offline.as_str() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{found}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn writes_fail_clearly_while_postgresql_is_down_and_recover() {
    let pg = Postgres::start();
    let cluster = Cluster::on(&pg);
    let a = cluster.node(&[]).await;
    let (_, root) = a.user("root").await;
    let channel = a.create_channel(&root, "general").await;

    pg.stop();
    let (status, v) = a
        .post(
            "/api/messages",
            Some(&root),
            json!({"channelID": channel, "text": "lost?"}),
        )
        .await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "FAILED");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("database is unavailable"),
        "{v}"
    );
    let (status, v) = a.get("/readyz", None).await;
    assert_eq!(status, 503, "{v}");
    assert_ne!(v["checks"]["storage"], "ok", "{v}");

    pg.resume();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while a.get("/readyz", None).await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let id = a.post_message(&root, &channel, "back").await;
    assert_eq!(history(&a, &root, &channel).await, vec![id]);
}

#[tokio::test]
async fn presence_is_cluster_wide() {
    let cluster = Cluster::new();
    let a = cluster.node(&[]).await;
    let b = cluster.node(&[]).await;
    let (_, root) = a.user("root").await;
    let (bob_id, bob) = a.user("bob").await;
    let mut watcher = a.events(Some(&root)).await;
    watcher.drain(Duration::from_millis(300)).await;

    // Bob comes online on B: A's sockets hear it and A's answers show it.
    let on_b = b.events(Some(&bob)).await;
    assert_eq!(
        watcher.expect("user/online").await["userID"],
        bob_id.as_str()
    );
    let user = format!("/api/users/{bob_id}");
    let (_, v) = a.get(&user, None).await;
    assert_eq!(v["user"]["online"], true, "{v}");

    // A second socket on A is no news; leaving B while still on A is not going offline.
    let on_a = a.events(Some(&bob)).await;
    drop(on_b);
    let heard: Vec<String> = watcher
        .drain(Duration::from_secs(3))
        .await
        .into_iter()
        .map(|(evt, _)| evt)
        .filter(|evt| evt.starts_with("user/o"))
        .collect();
    assert!(heard.is_empty(), "{heard:?}");
    assert_eq!(b.get(&user, None).await.1["user"]["online"], true);

    // Gone from both: offline everywhere, once.
    drop(on_a);
    assert_eq!(
        watcher.expect("user/offline").await["userID"],
        bob_id.as_str()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while b.get(&user, None).await.1["user"]["online"] != false {
        assert!(
            tokio::time::Instant::now() < deadline,
            "B still shows bob online"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_licenses_chatbox_rate_limit_holds_across_nodes() {
    let cluster = Cluster::new();
    let a = cluster.node(&[]).await;
    let b = cluster.node(&[]).await;
    let (_, root) = a.user("root").await;
    a.create_channel(&root, "general").await;
    let key = a.license(&root, &["say"]).await;
    let (mut on_a, _) = a.bot_ready(&key).await;
    let (mut on_b, _) = b.bot_ready(&key).await;
    // Seven messages within one interval, four through A and three through B: one goes now,
    // five wait, one is refused, as if a single bot had sent them.
    let mut first = std::collections::BTreeMap::new();
    for (bot, ids) in [(&mut on_a, 1..=4), (&mut on_b, 5..=7)] {
        for id in ids {
            bot.send(json!({"type": "say", "text": format!("m{id}"), "id": id}))
                .await;
            loop {
                let p = bot.next().await;
                if p["type"] == "success" || p["type"] == "error" {
                    let what = p.get("reason").or(p.get("error")).unwrap().clone();
                    first.insert(p["id"].as_i64().unwrap(), what);
                    break;
                }
            }
        }
    }
    let count = |what: &str| first.values().filter(|v| *v == what).count();
    assert_eq!(
        (
            count("message_sent"),
            count("message_queued"),
            count("rate_limited")
        ),
        (1, 5, 1),
        "{first:?}"
    );
    assert_eq!(first[&7], "rate_limited");
}

#[tokio::test]
async fn search_on_one_node_finds_messages_posted_on_another() {
    let cluster = Cluster::new();
    let a = cluster.node(&[]).await;
    let b = cluster.node(&[]).await;
    let (_, root) = a.user("root").await;
    let channel = a.create_channel(&root, "general").await;
    let id = a.post_message(&root, &channel, "the zebra launch").await;
    let mut last = Value::Null;
    for _ in 0..100 {
        let (_, body) = b.get("/api/search?q=zebra", Some(&root)).await;
        if body["messages"][0]["id"] == id.as_str() {
            return;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let on_a = a.get("/api/search?q=zebra", Some(&root)).await.1;
    panic!("B's search did not find A's message: {last}; A finds: {on_a}");
}

/// Requests that make hundreds of storage calls on PostgreSQL (the channel list with a
/// session, the role list, on a server with 200 of each) are answered; the workers that
/// answered them still serve, and SIGTERM still stops the node. Unread counts come back per
/// channel, in order.
#[tokio::test]
async fn a_node_on_postgresql_answers_for_200_channels_and_200_roles_and_still_stops() {
    let store = postgres().database();
    let mut server = TestServer::spawn_with(&["--store", &store, "--admin", "root"]).await;
    let (_, root) = server.user("root").await;
    let (_, reader) = server.user("reader").await;
    let mut channels = Vec::new();
    for i in 0..200 {
        channels.push(server.create_channel(&root, &format!("room-{i}")).await);
    }
    let mut roles = Vec::new();
    for _ in 0..200 {
        roles.push(server.create_role(&root, json!({})).await);
    }
    let unread = server.post_message(&root, &channels[137], "news").await;

    let answered = async |path: &str, session: &str| {
        let call = server.get(path, Some(session));
        let (status, v) = tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .unwrap_or_else(|_| panic!("no answer to GET {path} in 30 s"));
        assert_eq!(status, 200, "{v}");
        v
    };
    // More rounds than the node has HTTP workers: every worker answers at least once more.
    for _ in 0..12 {
        let listed = answered("/api/channels", &reader).await;
        let listed = listed["channels"].as_array().unwrap();
        let ids: Vec<&str> = listed.iter().map(|c| c["id"].as_str().unwrap()).collect();
        assert_eq!(ids, channels, "every channel, in order");
        for (channel, object) in channels.iter().zip(listed) {
            let (count, oldest) = if *channel == channels[137] {
                (json!(1), json!(unread))
            } else {
                (json!(0), Value::Null)
            };
            assert_eq!(object["unreadMessageCount"], count, "{object}");
            assert_eq!(object["oldestUnreadMessageID"], oldest, "{object}");
        }
        let listed = answered("/api/roles", &root).await;
        let ids: Vec<&str> = listed["roles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        // The Admin role, the 200 new ones, _user and _everyone.
        assert_eq!(ids.len(), 203, "{ids:?}");
        assert!(roles.iter().all(|r| ids.contains(&r.as_str())));
    }
    let status = server.signal_and_wait("TERM");
    assert!(status.success(), "SIGTERM: {status:?}");
}
