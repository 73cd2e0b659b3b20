//! Message search against the real binary: only what the requester may read, words matched
//! after normalisation by prefix, filters and order, edits and deletes, direct messages, and an
//! index that survives restarts, a SIGKILL and `decentd reindex`.

use crate::common;

use common::{assert_error, decentd, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

fn texts(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

/// Searches until the answer's texts are `want` (the index commits once a second), or fails
/// with the last answer after 10 s.
async fn expect(server: &TestServer, session: Option<&str>, query: &str, want: &[&str]) {
    let mut last = Value::Null;
    for _ in 0..100 {
        let (_, body) = server.get(&format!("/api/search?{query}"), session).await;
        if body["messages"].is_array() && texts(&body) == want {
            return;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("search {query}: wanted {want:?}, got {last}");
}

#[tokio::test]
async fn search_finds_only_what_the_requester_may_read() {
    let server = TestServer::spawn_with(&["--admin", "root", "--read-access", "members"]).await;
    let (_, root) = server.user("root").await;
    let (alice_id, alice) = server.user("alice").await;
    let (bob_id, bob) = server.user("bob").await;
    let (_, carol) = server.user("carol").await;
    let general = server.create_channel(&root, "general").await;
    let secret = server.create_channel(&root, "secret").await;
    let (_, role) = server
        .post(
            "/api/roles",
            Some(&root),
            json!({ "name": "Insiders", "permissions": {} }),
        )
        .await;
    let insiders = role["roleID"].as_str().unwrap().to_owned();
    let (status, body) = server
        .patch(
            &format!("/api/channels/{secret}/role-permissions"),
            Some(&root),
            json!({"rolePermissions": {
                "_everyone": {"readMessages": false},
                "_user": {"readMessages": false},
                (insiders.as_str()): {"readMessages": true}
            }}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    server.give_role(&root, &alice_id, &insiders).await;

    server
        .post_message(&root, &general, "The launch plan is public")
        .await;
    server
        .post_message(&alice, &secret, "The launch plan is secret")
        .await;
    let (status, body) = server
        .post(
            &format!("/api/users/{bob_id}/messages"),
            Some(&alice),
            json!({ "text": "our launch plan, between us" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    expect(
        &server,
        Some(&alice),
        "q=launch+plan",
        &[
            "our launch plan, between us",
            "The launch plan is secret",
            "The launch plan is public",
        ],
    )
    .await;
    expect(
        &server,
        Some(&bob),
        "q=LAUN",
        &["our launch plan, between us", "The launch plan is public"],
    )
    .await;
    expect(
        &server,
        Some(&carol),
        "q=launch",
        &["The launch plan is public"],
    )
    .await;
    // Guests read nothing on a members-only server.
    expect(&server, None, "q=launch", &[]).await;
    // Naming a channel one may not read is NOT_FOUND, as elsewhere.
    assert_error(
        &server
            .get(
                &format!("/api/search?q=launch&channelID={secret}"),
                Some(&bob),
            )
            .await,
        "NOT_FOUND",
    );

    // Losing the role hides the channel at once, without reindexing.
    let (status, _) = server
        .delete(
            &format!("/api/users/{alice_id}/roles/{insiders}"),
            Some(&root),
        )
        .await;
    assert_eq!(status, 200);
    expect(
        &server,
        Some(&alice),
        "q=launch",
        &["our launch plan, between us", "The launch plan is public"],
    )
    .await;
    assert_error(
        &server.get("/api/search?q=%20", Some(&alice)).await,
        "INVALID_PARAMETER_TYPE",
    );
}

#[tokio::test]
async fn words_match_after_normalisation_with_filters_order_and_edits() {
    let server = TestServer::spawn_with(&["--admin", "root"]).await;
    let (root_id, root) = server.user("root").await;
    let (ann_id, ann) = server.user("ann").await;
    let one = server.create_channel(&root, "one").await;
    let two = server.create_channel(&root, "two").await;
    server.post_message(&root, &one, "Ｃａｆé au lait").await;
    server.post_message(&ann, &one, "a cafe nearby").await;
    let edited = server.post_message(&ann, &two, "meet at the library").await;
    let deleted = server.post_message(&root, &two, "library books due").await;

    // Fullwidth letters are their plain forms; case does not matter; words match by start.
    expect(
        &server,
        Some(&root),
        "q=CAF",
        &["a cafe nearby", "Ｃａｆé au lait"],
    )
    .await;
    expect(&server, Some(&root), "q=café", &["Ｃａｆé au lait"]).await;
    expect(
        &server,
        Some(&root),
        &format!("q=caf&authorID={ann_id}"),
        &["a cafe nearby"],
    )
    .await;
    expect(
        &server,
        Some(&root),
        &format!("q=lib&channelID={two}"),
        &["library books due", "meet at the library"],
    )
    .await;
    expect(
        &server,
        Some(&root),
        "q=lib&limit=1&skip=1",
        &["meet at the library"],
    )
    .await;
    expect(
        &server,
        Some(&root),
        "q=caf&before=2020-01-01T00:00:00Z",
        &[],
    )
    .await;
    expect(
        &server,
        Some(&root),
        "q=caf&after=2020-01-01T00:00:00Z",
        &["a cafe nearby", "Ｃａｆé au lait"],
    )
    .await;
    let (_, body) = server
        .get("/api/search?q=lib&sort=relevance", Some(&root))
        .await;
    assert_eq!(texts(&body).len(), 2, "{body}");
    assert_error(
        &server
            .get("/api/search?q=lib&sort=oldest", Some(&root))
            .await,
        "INVALID_PARAMETER_TYPE",
    );

    // An edit is found by its new words only; a deleted message is gone.
    let (status, _) = server
        .patch(
            &format!("/api/messages/{edited}"),
            Some(&ann),
            json!({ "text": "meet at the museum" }),
        )
        .await;
    assert_eq!(status, 200);
    server
        .delete(&format!("/api/messages/{deleted}"), Some(&root))
        .await;
    expect(&server, Some(&root), "q=library", &[]).await;
    expect(&server, Some(&root), "q=museum", &["meet at the museum"]).await;
    let _ = root_id;
}

#[tokio::test]
async fn the_index_survives_restarts_a_sigkill_and_reindex() {
    let mut server = TestServer::spawn_with(&["--admin", "root"]).await;
    let (_, root) = server.user("root").await;
    let general = server.create_channel(&root, "general").await;
    server
        .post_message(&root, &general, "before the restart")
        .await;
    expect(&server, Some(&root), "q=restart", &["before the restart"]).await;
    let data = server.data.clone();
    assert!(server.signal_and_wait("TERM").success());

    let mut server = TestServer::spawn_on(&data, &["--admin", "root"]).await;
    expect(&server, Some(&root), "q=restart", &["before the restart"]).await;
    // Killed right after the answer, before the index commits: the start catches up.
    server
        .post_message(&root, &general, "posted then killed")
        .await;
    server.kill();
    let mut server = TestServer::spawn_on(&data, &["--admin", "root"]).await;
    expect(&server, Some(&root), "q=killed", &["posted then killed"]).await;
    assert!(server.signal_and_wait("TERM").success());

    // A lost index is rebuilt offline.
    std::fs::remove_dir_all(data.join("search")).unwrap();
    let out = decentd()
        .arg("reindex")
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("indexed 2 messages"), "{printed}");
    let server = TestServer::spawn_on(&data, &["--admin", "root"]).await;
    expect(
        &server,
        Some(&root),
        "q=the",
        &["posted then killed", "before the restart"],
    )
    .await;
}
