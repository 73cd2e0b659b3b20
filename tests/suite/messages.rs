//! Messages and mentions through real HTTP, the events every change emits (seen over a real
//! WebSocket), and durability of acknowledged posts across SIGKILL.

use crate::common;

use common::{assert_error, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

async fn with_admin() -> (TestServer, String, String) {
    let server = TestServer::spawn_with(&["--admin", "root"]).await;
    let (id, session) = server.user("root").await;
    (server, id, session)
}

/// Hides a channel from everyone but the Admin role (whose channel override lets it read).
async fn hide_channel(server: &TestServer, admin: &str, channel: &str) {
    let roles = server.get("/api/roles", None).await.1;
    let admin_role = roles["roles"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(roles["roles"][0]["name"], "Admin");
    let r = server
        .patch(
            &format!("/api/channels/{channel}/role-permissions"),
            Some(admin),
            json!({"rolePermissions": {
                "_everyone": {"readMessages": false},
                (admin_role.as_str()): {"readMessages": true}
            }}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
}

#[tokio::test]
async fn a_message_has_the_documented_shape() {
    let (server, admin_id, admin) = with_admin().await;
    let ch = server.create_channel(&admin, "general").await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let id = server.post_message(&admin, &ch, "Hello, world!").await;
    let (status, body) = server.get(&format!("/api/messages/{id}"), None).await;
    assert_eq!(status, 200);
    let m = &body["message"];
    let keys: Vec<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected = [
        "id",
        "channelID",
        "type",
        "text",
        "authorID",
        "authorUsername",
        "authorAvatarURL",
        "dateCreated",
        "dateEdited",
        "pinned",
        "mentionedUserIDs",
    ];
    expected.sort_unstable();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort_unstable();
    assert_eq!(keys_sorted, expected);
    assert_eq!(m["id"], id.as_str());
    assert_eq!(m["channelID"], ch.as_str());
    assert_eq!(m["type"], "user");
    assert_eq!(m["text"], "Hello, world!");
    assert_eq!(m["authorID"], admin_id.as_str());
    assert_eq!(m["authorUsername"], "root");
    assert!(m["authorAvatarURL"]
        .as_str()
        .unwrap()
        .starts_with("https://"));
    let created = m["dateCreated"].as_f64().unwrap();
    assert!((created - before).abs() < 60.0, "{created} vs {before}");
    assert_eq!(m["dateEdited"], Value::Null);
    assert_eq!(m["pinned"], false);
    assert_eq!(m["mentionedUserIDs"], json!([]));

    // System messages carry no author.
    let r = server
        .post(
            "/api/messages",
            Some(&admin),
            json!({"channelID": ch, "text": "server restarting", "type": "system"}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let sys = server
        .get(
            &format!("/api/messages/{}", r.1["messageID"].as_str().unwrap()),
            None,
        )
        .await
        .1;
    assert_eq!(sys["message"]["type"], "system");
    for key in ["authorID", "authorUsername", "authorAvatarURL"] {
        assert_eq!(sys["message"][key], Value::Null, "{key}");
    }
}

#[tokio::test]
async fn posting_refuses_bad_input_and_missing_permissions() {
    let (server, _, admin) = with_admin().await;
    let (_, user) = server.user("plain").await;
    let ch = server.create_channel(&admin, "general").await;
    let send = |session: Option<String>, body: Value| {
        let server = &server;
        async move { server.post("/api/messages", session.as_deref(), body).await }
    };
    let u = Some(user.clone());
    assert_error(
        &send(None, json!({"channelID": ch, "text": "hi"})).await,
        "NOT_ALLOWED",
    );
    assert_error(
        &send(u.clone(), json!({"text": "hi"})).await,
        "INCOMPLETE_PARAMETERS",
    );
    assert_error(
        &send(u.clone(), json!({"channelID": ch})).await,
        "INCOMPLETE_PARAMETERS",
    );
    assert_error(
        &send(u.clone(), json!({"channelID": ch, "text": 7})).await,
        "INVALID_PARAMETER_TYPE",
    );
    assert_error(
        &send(u.clone(), json!({"channelID": ch, "text": "  "})).await,
        "INVALID_PARAMETER_TYPE",
    );
    let long = "x".repeat(10_001);
    let err = assert_error(
        &send(u.clone(), json!({"channelID": ch, "text": long})).await,
        "INVALID_PARAMETER_TYPE",
    );
    assert_eq!(err["limit"], 10_000);
    assert_error(
        &send(
            u.clone(),
            json!({"channelID": ch, "text": "hi", "type": "shout"}),
        )
        .await,
        "INVALID_PARAMETER_TYPE",
    );
    assert_error(
        &send(u.clone(), json!({"channelID": "999", "text": "hi"})).await,
        "NOT_FOUND",
    );
    let err = assert_error(
        &send(
            u.clone(),
            json!({"channelID": ch, "text": "hi", "type": "system"}),
        )
        .await,
        "NOT_ALLOWED",
    );
    assert_eq!(err["missingPermission"], "sendSystemMessages");
    // A channel override can take sendMessages away.
    let r = server
        .patch(
            &format!("/api/channels/{ch}/role-permissions"),
            Some(&admin),
            json!({"rolePermissions": {"_user": {"sendMessages": false}}}),
        )
        .await;
    assert_eq!(r.0, 200);
    let err = assert_error(
        &send(u.clone(), json!({"channelID": ch, "text": "hi"})).await,
        "NOT_ALLOWED",
    );
    assert_eq!(err["missingPermission"], "sendMessages");
    // Nothing above was stored.
    let history = server
        .get(&format!("/api/channels/{ch}/messages"), None)
        .await
        .1;
    assert_eq!(history["messages"], json!([]));
}

#[tokio::test]
async fn only_authors_edit_and_authors_or_deleters_delete() {
    let (server, _, admin) = with_admin().await;
    let (_, alice) = server.user("alice").await;
    let (bob_id, bob) = server.user("bob").await;
    let ch = server.create_channel(&admin, "general").await;
    let id = server.post_message(&alice, &ch, "original").await;
    let path = format!("/api/messages/{id}");

    assert_error(
        &server
            .patch(&path, Some(&bob), json!({"text": "hacked"}))
            .await,
        "NOT_YOURS",
    );
    assert_error(
        &server
            .patch(&path, Some(&admin), json!({"text": "hacked"}))
            .await,
        "NOT_YOURS",
    );
    assert_error(
        &server.patch(&path, None, json!({"text": "hacked"})).await,
        "NOT_ALLOWED",
    );
    assert_error(
        &server.patch(&path, Some(&alice), json!({})).await,
        "INCOMPLETE_PARAMETERS",
    );
    assert_error(
        &server.patch(&path, Some(&alice), json!({"text": ""})).await,
        "INVALID_PARAMETER_TYPE",
    );
    assert_error(
        &server
            .patch("/api/messages/42", Some(&alice), json!({"text": "x"}))
            .await,
        "NOT_FOUND",
    );
    let r = server
        .patch(&path, Some(&alice), json!({"text": "edited"}))
        .await;
    assert_eq!(r, (StatusCode::OK, json!({})));
    let m = server.get(&path, None).await.1;
    assert_eq!(m["message"]["text"], "edited");
    assert!(
        m["message"]["dateEdited"].as_f64().unwrap()
            >= m["message"]["dateCreated"].as_f64().unwrap()
    );

    assert_error(&server.delete(&path, Some(&bob)).await, "NOT_YOURS");
    assert_error(&server.delete(&path, None).await, "NOT_ALLOWED");
    // deleteMessages (here granted by a role) lets bob delete others' messages.
    let deleters = server
        .create_role(&admin, json!({"deleteMessages": true}))
        .await;
    server.give_role(&admin, &bob_id, &deleters).await;
    assert_eq!(
        server.delete(&path, Some(&bob)).await,
        (StatusCode::OK, json!({}))
    );
    assert_error(&server.get(&path, None).await, "NOT_FOUND");
    assert_error(&server.delete(&path, Some(&bob)).await, "NOT_FOUND");
    // Authors delete their own.
    let own = server.post_message(&alice, &ch, "mine").await;
    assert_eq!(
        server
            .delete(&format!("/api/messages/{own}"), Some(&alice))
            .await
            .0,
        200
    );
    assert_eq!(
        server
            .get(&format!("/api/channels/{ch}/messages"), None)
            .await
            .1["messages"],
        json!([])
    );
}

#[tokio::test]
async fn mentions_are_derived_listed_and_follow_edits_and_deletes() {
    let (server, _, admin) = with_admin().await;
    let (alice_id, alice) = server.user("alice").await;
    let (bob_id, _) = server.user("bob").await;
    let ch = server.create_channel(&admin, "general").await;
    let secret = server.create_channel(&admin, "secret").await;
    let first = server
        .post_message(
            &admin,
            &ch,
            &format!("hey <@{alice_id}> and <@{bob_id}> and <@{alice_id}> and <@12345>"),
        )
        .await;
    let m = server.get(&format!("/api/messages/{first}"), None).await.1;
    assert_eq!(m["message"]["mentionedUserIDs"], json!([alice_id, bob_id]));
    let second = server
        .post_message(&admin, &ch, &format!("again <@{alice_id}>"))
        .await;
    let hidden = server
        .post_message(&admin, &secret, &format!("psst <@{alice_id}>"))
        .await;
    hide_channel(&server, &admin, &secret).await;

    let mentions = |q: &str| {
        let path = format!("/api/users/{alice_id}/mentions{q}");
        let server = &server;
        async move {
            server.get(&path, None).await.1["mentions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    // Newest first; the secret channel's mention is filtered out for a guest...
    assert_eq!(mentions("").await, [second.clone(), first.clone()]);
    assert_eq!(mentions("?limit=1").await, vec![second.clone()]);
    assert_eq!(mentions("?skip=1").await, vec![first.clone()]);
    assert_eq!(mentions("?skip=5").await, Vec::<String>::new());
    // ...and for the admin, who can read it, it is there.
    let as_admin = server
        .get(&format!("/api/users/{alice_id}/mentions"), Some(&admin))
        .await
        .1;
    assert_eq!(as_admin["mentions"][0]["id"], hidden.as_str());
    assert_error(
        &server.get("/api/users/12345/mentions", None).await,
        "NOT_FOUND",
    );
    assert_error(
        &server
            .get(&format!("/api/users/{alice_id}/mentions?limit=x"), None)
            .await,
        "INVALID_PARAMETER_TYPE",
    );

    // Editing away a mention removes it; deleting the message removes the rest.
    let r = server
        .patch(
            &format!("/api/messages/{second}"),
            Some(&admin),
            json!({"text": "never mind"}),
        )
        .await;
    assert_eq!(r.0, 200);
    assert_eq!(mentions("").await, vec![first.clone()]);
    server
        .delete(&format!("/api/messages/{first}"), Some(&admin))
        .await;
    assert_eq!(mentions("").await, Vec::<String>::new());
    let _ = alice;
}

#[tokio::test]
async fn every_change_emits_its_documented_event_to_who_may_see_it() {
    let (server, _, admin) = with_admin().await;
    let (alice_id, alice) = server.user("alice").await;
    let mut admin_ws = server.events(Some(&admin)).await;
    let mut alice_ws = server.events(Some(&alice)).await;
    let mut guest_ws = server.events(None).await;

    let ch = server.create_channel(&admin, "general").await;
    let data = admin_ws.expect("channel/new").await;
    assert_eq!(data, json!({"channel": {"id": ch, "name": "general"}}));
    server
        .patch(
            &format!("/api/channels/{ch}"),
            Some(&admin),
            json!({"name": "lobby"}),
        )
        .await;
    assert_eq!(
        admin_ws.expect("channel/update").await["channel"]["name"],
        "lobby"
    );

    let id = server
        .post_message(&admin, &ch, &format!("hi <@{alice_id}>"))
        .await;
    let new = admin_ws.expect("message/new").await;
    assert_eq!(new["message"]["id"], id.as_str());
    assert_eq!(
        guest_ws.expect("message/new").await["message"]["text"],
        format!("hi <@{alice_id}>")
    );
    let added = alice_ws.expect("user/mentions/add").await;
    assert_eq!(added["message"]["id"], id.as_str());

    server
        .patch(
            &format!("/api/messages/{id}"),
            Some(&admin),
            json!({"text": "bye"}),
        )
        .await;
    assert_eq!(
        admin_ws.expect("message/edit").await["message"]["text"],
        "bye"
    );
    assert_eq!(
        alice_ws.expect("user/mentions/remove").await,
        json!({"messageID": id})
    );

    server
        .post(
            &format!("/api/channels/{ch}/pins"),
            Some(&admin),
            json!({"messageID": id}),
        )
        .await;
    assert_eq!(
        admin_ws.expect("channel/pins/add").await["message"]["pinned"],
        true
    );
    server
        .delete(&format!("/api/channels/{ch}/pins/{id}"), Some(&admin))
        .await;
    assert_eq!(
        admin_ws.expect("channel/pins/remove").await,
        json!({"messageID": id})
    );

    // mark-read: channel/update with the unread data, to the reader's own sockets.
    server
        .post(
            &format!("/api/channels/{ch}/mark-read"),
            Some(&alice),
            json!({}),
        )
        .await;
    let update = alice_ws.expect("channel/update").await;
    assert_eq!(update["channel"]["unreadMessageCount"], 0);

    server
        .delete(&format!("/api/messages/{id}"), Some(&admin))
        .await;
    assert_eq!(
        admin_ws.expect("message/delete").await,
        json!({"messageID": id})
    );

    server
        .post(
            "/api/emotes",
            Some(&admin),
            json!({"shortcode": "party", "imageURL": "/party.png"}),
        )
        .await;
    assert_eq!(
        admin_ws.expect("emote/new").await,
        json!({"emote": {"shortcode": "party", "imageURL": "/party.png"}})
    );
    server.delete("/api/emotes/party", Some(&admin)).await;
    assert_eq!(
        admin_ws.expect("emote/delete").await,
        json!({"shortcode": "party"})
    );

    // A hidden channel's events reach nobody who cannot read it.
    hide_channel(&server, &admin, &ch).await;
    let _ = guest_ws.drain(Duration::from_millis(200)).await;
    let _ = alice_ws.drain(Duration::from_millis(200)).await;
    server
        .post_message(&admin, &ch, &format!("secret <@{alice_id}>"))
        .await;
    admin_ws.expect("message/new").await;
    for ws in [&mut guest_ws, &mut alice_ws] {
        let seen = ws.drain(Duration::from_millis(500)).await;
        assert!(
            seen.iter()
                .all(|(evt, _)| !evt.starts_with("message/") && !evt.starts_with("user/mentions")),
            "{seen:?}"
        );
    }

    server
        .delete(&format!("/api/channels/{ch}"), Some(&admin))
        .await;
    assert_eq!(
        admin_ws.expect("channel/delete").await,
        json!({"channelID": ch})
    );
}

/// Posts channel messages and direct messages from many concurrent clients, SIGKILLs the
/// server mid-flight, restarts it on the same data directory, and checks every acknowledged
/// message survived.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_posts_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let args = ["--admin", "root"];
    let server = TestServer::spawn_on(&data, &args).await;
    let (_, admin) = server.user("root").await;
    let (bob, _) = server.user("bob").await;
    let ch = server.create_channel(&admin, "general").await;
    drop(server);
    // (direct message?, id)
    let mut acknowledged: Vec<(bool, String)> = Vec::new();
    for round in 0..3 {
        let mut server = TestServer::spawn_on(&data, &args).await;
        let mut tasks = Vec::new();
        for client in 0..16 {
            let http = server.client.clone();
            // Every fourth client sends direct messages to bob.
            let direct = client % 4 == 3;
            let url = if direct {
                server.url(&format!("/api/users/{bob}/messages"))
            } else {
                server.url("/api/messages")
            };
            let (admin, ch) = (admin.clone(), ch.clone());
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0.. {
                    let text = format!("r{round} c{client} n{n}");
                    let r = http
                        .post(&url)
                        .header("X-Session-ID", &admin)
                        .json(&json!({"channelID": ch, "text": text}))
                        .send()
                        .await;
                    let Ok(r) = r else { break };
                    if r.status() != 200 {
                        break;
                    }
                    let Ok(body) = r.json::<Value>().await else {
                        break;
                    };
                    ids.push((direct, body["messageID"].as_str().unwrap().to_owned()));
                }
                ids
            }));
        }
        tokio::time::sleep(Duration::from_millis(700 + 300 * round as u64)).await;
        server.kill();
        for t in tasks {
            acknowledged.extend(t.await.unwrap());
        }
        let server = TestServer::spawn_on(&data, &args).await;
        for (direct, id) in &acknowledged {
            let path = if *direct {
                format!("/api/direct-messages/{id}")
            } else {
                format!("/api/messages/{id}")
            };
            let (status, body) = server.get(&path, Some(&admin)).await;
            assert_eq!(
                status, 200,
                "round {round}: acknowledged message {path} lost: {body}"
            );
        }
    }
    let direct = acknowledged.iter().filter(|(d, _)| *d).count();
    assert!(
        acknowledged.len() > 100 && direct > 10,
        "only {} posts ({direct} direct) acknowledged",
        acknowledged.len()
    );
    eprintln!(
        "{} acknowledged posts ({direct} direct messages) all survived 3 SIGKILLs",
        acknowledged.len()
    );
}
