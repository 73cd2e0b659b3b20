//! Direct messages against the real binary: sending, listing with the Resonite filters, read
//! marks and unread counts, edits and deletes, who may write to whom, and that events reach
//! only the two users' sockets.

use crate::common;

use common::{assert_error, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

async fn send(server: &TestServer, session: &str, to: &str, text: &str) -> String {
    let (status, body) = server
        .post(
            &format!("/api/users/{to}/messages"),
            Some(session),
            json!({ "text": text }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["messageID"].as_str().unwrap().to_owned()
}

fn texts(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn direct_messages_reach_only_the_two_users_and_list_newest_first() {
    let server = TestServer::spawn().await;
    let (alice_id, alice) = server.user("alice").await;
    let (bob_id, bob) = server.user("bob").await;
    let (carol_id, carol) = server.user("carol").await;
    let mut alice_ws = server.events(Some(&alice)).await;
    let mut bob_ws = server.events(Some(&bob)).await;
    let mut carol_ws = server.events(Some(&carol)).await;
    let mut guest_ws = server.events(None).await;

    let first = send(&server, &alice, &bob_id, "hi bob").await;
    for ws in [&mut alice_ws, &mut bob_ws] {
        let data = ws.expect("dm/new").await;
        assert_eq!(data["message"]["id"], first.as_str());
        assert_eq!(data["message"]["type"], "direct");
        assert_eq!(data["message"]["authorID"], alice_id.as_str());
        assert_eq!(data["message"]["recipientID"], bob_id.as_str());
        assert_eq!(data["message"]["text"], "hi bob");
    }
    send(&server, &bob, &alice_id, "hello alice").await;
    send(&server, &carol, &alice_id, "carol here").await;
    for ws in [&mut carol_ws, &mut guest_ws] {
        let seen: Vec<String> = ws
            .drain(Duration::from_millis(300))
            .await
            .into_iter()
            .filter(|(evt, data)| evt.starts_with("dm/") && data.to_string().contains("hi bob"))
            .map(|(evt, _)| evt)
            .collect();
        assert!(seen.is_empty(), "a third party saw {seen:?}");
    }

    // All of alice's conversations, newest first; one conversation by `user` or by path.
    let (_, body) = server
        .get(&format!("/api/users/{alice_id}/messages"), Some(&alice))
        .await;
    assert_eq!(texts(&body), ["carol here", "hello alice", "hi bob"]);
    let (_, body) = server
        .get(
            &format!("/api/users/{alice_id}/messages?user={bob_id}"),
            Some(&alice),
        )
        .await;
    assert_eq!(texts(&body), ["hello alice", "hi bob"]);
    let (_, body) = server
        .get(&format!("/api/users/{bob_id}/messages"), Some(&alice))
        .await;
    assert_eq!(texts(&body), ["hello alice", "hi bob"]);
    // Carol cannot read a conversation she is not in, nor one of its messages.
    let (_, body) = server
        .get(
            &format!("/api/users/{alice_id}/messages?user={bob_id}"),
            Some(&carol),
        )
        .await;
    assert_eq!(texts(&body), Vec::<String>::new());
    assert_error(
        &server
            .get(&format!("/api/direct-messages/{first}"), Some(&carol))
            .await,
        "NOT_FOUND",
    );
    assert_error(
        &server
            .get(&format!("/api/users/{alice_id}/messages"), None)
            .await,
        "NOT_ALLOWED",
    );

    // maxItems, paging with before, fromTime.
    let (_, body) = server
        .get(
            &format!("/api/users/{alice_id}/messages?maxItems=2"),
            Some(&alice),
        )
        .await;
    assert_eq!(texts(&body), ["carol here", "hello alice"]);
    let oldest_shown = body["messages"][1]["id"].as_str().unwrap().to_owned();
    let (_, body) = server
        .get(
            &format!("/api/users/{alice_id}/messages?maxItems=2&before={oldest_shown}"),
            Some(&alice),
        )
        .await;
    assert_eq!(texts(&body), ["hi bob"]);
    let (_, body) = server
        .get(
            &format!("/api/users/{alice_id}/messages?fromTime=2999-01-01T00:00:00Z"),
            Some(&alice),
        )
        .await;
    assert_eq!(texts(&body), Vec::<String>::new());
    let (_, body) = server
        .get(
            &format!("/api/users/{alice_id}/messages?fromTime=2020-01-01T00:00:00%2B02:00"),
            Some(&alice),
        )
        .await;
    assert_eq!(texts(&body).len(), 3);
    assert_error(
        &server
            .get(
                &format!("/api/users/{alice_id}/messages?fromTime=yesterday"),
                Some(&alice),
            )
            .await,
        "INVALID_PARAMETER_TYPE",
    );
    let _ = carol_id;
}

#[tokio::test]
async fn unread_counts_and_read_marks_per_conversation() {
    let server = TestServer::spawn().await;
    let (alice_id, alice) = server.user("alice").await;
    let (bob_id, bob) = server.user("bob").await;
    let (carol_id, carol) = server.user("carol").await;
    // Writing in a conversation marks it read for the writer, so alice writes first.
    send(&server, &alice, &bob_id, "my own").await;
    send(&server, &carol, &alice_id, "three").await;
    let one = send(&server, &bob, &alice_id, "one").await;
    send(&server, &bob, &alice_id, "two").await;

    let conversations = |body: &Value| -> Vec<(String, u64)> {
        body["conversations"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|c| {
                (
                    c["userID"].as_str().unwrap().to_owned(),
                    c["unreadCount"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let path = format!("/api/users/{alice_id}/conversations");
    let (_, body) = server.get(&path, Some(&alice)).await;
    assert_eq!(
        conversations(&body),
        [(bob_id.clone(), 2), (carol_id.clone(), 1)]
    );
    assert_eq!(body["conversations"][0]["lastMessage"]["text"], "two");
    assert_error(&server.get(&path, Some(&bob)).await, "NOT_YOURS");

    // Unread: only the other party's messages after the mark.
    let (_, body) = server
        .get(
            &format!("/api/users/{alice_id}/messages?unread=true"),
            Some(&alice),
        )
        .await;
    assert_eq!(texts(&body), ["two", "one", "three"]);

    let mut bob_ws = server.events(Some(&bob)).await;
    let (status, body) = server
        .post(
            &format!("/api/users/{bob_id}/messages/mark-read"),
            Some(&alice),
            json!({ "upTo": one }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let read = bob_ws.expect("dm/read").await;
    assert_eq!(read["userID"], alice_id.as_str());
    assert_eq!(read["upTo"], one.as_str());
    let (_, body) = server.get(&path, Some(&alice)).await;
    assert_eq!(
        conversations(&body),
        [(bob_id.clone(), 1), (carol_id.clone(), 1)]
    );
    // Without upTo, up to the newest; marks never move back.
    server
        .post(
            &format!("/api/users/{carol_id}/messages/mark-read"),
            Some(&alice),
            json!({}),
        )
        .await;
    server
        .post(
            &format!("/api/users/{bob_id}/messages/mark-read"),
            Some(&alice),
            json!({}),
        )
        .await;
    server
        .post(
            &format!("/api/users/{bob_id}/messages/mark-read"),
            Some(&alice),
            json!({ "upTo": one }),
        )
        .await;
    let (_, body) = server.get(&path, Some(&alice)).await;
    assert_eq!(conversations(&body), [(bob_id.clone(), 0), (carol_id, 0)]);
    let _ = carol;
}

#[tokio::test]
async fn only_the_author_edits_or_deletes_and_both_sides_hear_it() {
    let server = TestServer::spawn().await;
    let (_, alice) = server.user("alice").await;
    let (bob_id, bob) = server.user("bob").await;
    let id = send(&server, &alice, &bob_id, "tpyo").await;
    let mut bob_ws = server.events(Some(&bob)).await;
    let path = format!("/api/direct-messages/{id}");
    assert_error(
        &server
            .patch(&path, Some(&bob), json!({ "text": "mine now" }))
            .await,
        "NOT_YOURS",
    );
    assert_error(&server.delete(&path, Some(&bob)).await, "NOT_YOURS");
    let (status, body) = server
        .patch(&path, Some(&alice), json!({ "text": "typo" }))
        .await;
    assert_eq!(status, 200, "{body}");
    let edit = bob_ws.expect("dm/edit").await;
    assert_eq!(edit["message"]["text"], "typo");
    assert!(edit["message"]["dateEdited"].is_number());
    let (_, body) = server.get(&path, Some(&bob)).await;
    assert_eq!(body["message"]["text"], "typo");

    let (status, _) = server.delete(&path, Some(&alice)).await;
    assert_eq!(status, 200);
    let deleted = bob_ws.expect("dm/delete").await;
    assert_eq!(deleted["messageID"], id.as_str());
    assert_error(&server.get(&path, Some(&alice)).await, "NOT_FOUND");
    assert_error(
        &server
            .post(
                &format!("/api/users/{bob_id}/messages"),
                Some(&alice),
                json!({ "text": "   " }),
            )
            .await,
        "INVALID_PARAMETER_TYPE",
    );
}

#[tokio::test]
async fn recipients_choose_who_may_write_and_block_users() {
    let server = TestServer::spawn_with(&["--admin", "root"]).await;
    let (_, root) = server.user("root").await;
    let (alice_id, alice) = server.user("alice").await;
    let (bob_id, bob) = server.user("bob").await;
    let (carol_id, carol) = server.user("carol").await;
    let settings = format!("/api/users/{alice_id}/direct-message-settings");
    let (_, body) = server.get(&settings, Some(&alice)).await;
    assert_eq!(
        body["settings"],
        json!({ "allowFrom": "everyone", "blocked": [] })
    );
    assert_error(&server.get(&settings, Some(&bob)).await, "NOT_YOURS");
    let to_alice = format!("/api/users/{alice_id}/messages");

    // Nobody.
    server
        .patch(&settings, Some(&alice), json!({ "allowFrom": "nobody" }))
        .await;
    assert_error(
        &server
            .post(&to_alice, Some(&bob), json!({ "text": "hello?" }))
            .await,
        "NOT_ALLOWED",
    );

    // Users who share a role with her: bob after he gets alice's role, never carol.
    let (_, role) = server
        .post(
            "/api/roles",
            Some(&root),
            json!({ "name": "Crew", "permissions": {} }),
        )
        .await;
    let role = role["roleID"].as_str().unwrap().to_owned();
    server.give_role(&root, &alice_id, &role).await;
    server
        .patch(
            &settings,
            Some(&alice),
            json!({ "allowFrom": "shared-role" }),
        )
        .await;
    assert_error(
        &server
            .post(&to_alice, Some(&bob), json!({ "text": "hello?" }))
            .await,
        "NOT_ALLOWED",
    );
    server.give_role(&root, &bob_id, &role).await;
    assert_eq!(
        server
            .post(&to_alice, Some(&bob), json!({ "text": "crewmate" }))
            .await
            .0,
        200
    );
    assert_error(
        &server
            .post(&to_alice, Some(&carol), json!({ "text": "hi" }))
            .await,
        "NOT_ALLOWED",
    );

    // Blocking stops a user whatever else allows them; unblocking lets them back.
    let (_, body) = server
        .patch(
            &settings,
            Some(&alice),
            json!({ "allowFrom": "everyone", "block": [bob_id] }),
        )
        .await;
    assert_eq!(body["settings"]["blocked"], json!([bob_id]));
    assert_error(
        &server
            .post(&to_alice, Some(&bob), json!({ "text": "again" }))
            .await,
        "NOT_ALLOWED",
    );
    assert_eq!(
        server
            .post(&to_alice, Some(&carol), json!({ "text": "hi" }))
            .await
            .0,
        200
    );
    server
        .patch(&settings, Some(&alice), json!({ "unblock": [bob_id] }))
        .await;
    assert_eq!(
        server
            .post(&to_alice, Some(&bob), json!({ "text": "back" }))
            .await
            .0,
        200
    );
    assert_error(
        &server
            .patch(&settings, Some(&alice), json!({ "allowFrom": "friends" }))
            .await,
        "INVALID_PARAMETER_TYPE",
    );
    assert_error(
        &server
            .post(
                &format!("/api/users/{alice_id}/messages"),
                Some(&alice),
                json!({ "text": "me" }),
            )
            .await,
        "NO",
    );
    let _ = carol_id;
}

/// Marking a conversation read that does not exist (no message between the two) is NOT_FOUND,
/// and nobody hears a `dm/read` about it.
#[tokio::test]
async fn marking_a_conversation_that_does_not_exist_read_is_not_found() {
    let server = TestServer::spawn().await;
    let (alice_id, alice) = server.user("alice").await;
    let (bob_id, bob) = server.user("bob").await;
    let mut bobs = server.events(Some(&bob)).await;
    let mut alices = server.events(Some(&alice)).await;
    let mark = format!("/api/users/{bob_id}/messages/mark-read");
    assert_error(
        &server.post(&mark, Some(&alice), json!({})).await,
        "NOT_FOUND",
    );
    for socket in [&mut bobs, &mut alices] {
        let heard = socket.drain(Duration::from_millis(300)).await;
        assert!(heard.iter().all(|(evt, _)| evt != "dm/read"), "{heard:?}");
    }
    // With a conversation, it works.
    send(&server, &bob, &alice_id, "hi").await;
    let (status, body) = server.post(&mark, Some(&alice), json!({})).await;
    assert_eq!(status, 200, "{body}");
}
