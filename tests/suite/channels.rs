//! Channels through real HTTP: CRUD, visibility, role overrides, read state, history, pins,
//! and that deleting a channel leaves nothing behind in storage.

use crate::common;

use common::{assert_error, TestServer};
use serde_json::{json, Value};
use std::collections::HashMap;

/// A server with an admin (every permission) and their session.
async fn with_admin() -> (TestServer, String) {
    let server = TestServer::spawn_with(&["--admin", "root"]).await;
    let (_, session) = server.user("root").await;
    (server, session)
}

fn texts(body: &Value, key: &str) -> Vec<String> {
    body[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn channels_are_created_listed_renamed_and_deleted_with_every_refusal() {
    let (server, admin) = with_admin().await;
    let (user_id, user) = server.user("plain").await;

    assert_error(
        &server
            .post("/api/channels", Some(&user), json!({"name": "x"}))
            .await,
        "NOT_ALLOWED",
    );
    assert_error(
        &server
            .post("/api/channels", None, json!({"name": "x"}))
            .await,
        "NOT_ALLOWED",
    );
    assert_error(
        &server.post("/api/channels", Some(&admin), json!({})).await,
        "INCOMPLETE_PARAMETERS",
    );
    assert_error(
        &server
            .post("/api/channels", Some(&admin), json!({"name": "bad name #"}))
            .await,
        "INVALID_NAME",
    );
    assert_error(
        &server
            .post("/api/channels", Some(&admin), json!({"name": 5}))
            .await,
        "INVALID_PARAMETER_TYPE",
    );

    let general = server.create_channel(&admin, "general").await;
    let (_, list) = server.get("/api/channels", None).await;
    assert_eq!(
        list,
        json!({"channels": [{"id": general, "name": "general"}]})
    );
    let (_, one) = server.get(&format!("/api/channels/{general}"), None).await;
    assert_eq!(one, json!({"channel": {"id": general, "name": "general"}}));

    // Names are unique ignoring case, for everyone (allowNonUnique included: the admin
    // holds every permission).
    let limited = server
        .create_role(
            &admin,
            json!({"manageChannels": true, "allowNonUnique": false}),
        )
        .await;
    server.give_role(&admin, &user_id, &limited).await;
    assert_error(
        &server
            .post("/api/channels", Some(&user), json!({"name": "GENERAL"}))
            .await,
        "NAME_ALREADY_TAKEN",
    );
    assert_error(
        &server
            .post("/api/channels", Some(&admin), json!({"name": "General"}))
            .await,
        "NAME_ALREADY_TAKEN",
    );
    let twin = server.create_channel(&admin, "twin").await;
    assert_ne!(twin, general);
    assert_error(
        &server
            .patch(
                &format!("/api/channels/{twin}"),
                Some(&admin),
                json!({"name": "GENERAL"}),
            )
            .await,
        "NAME_ALREADY_TAKEN",
    );
    // Renaming a channel to its own name in another case is not a clash.
    let r = server
        .patch(
            &format!("/api/channels/{twin}"),
            Some(&admin),
            json!({"name": "Twin"}),
        )
        .await;
    assert_eq!(r, (reqwest::StatusCode::OK, json!({})));

    // Rename.
    assert_error(
        &server
            .patch(
                &format!("/api/channels/{general}"),
                Some(&admin),
                json!({"name": "no spaces"}),
            )
            .await,
        "INVALID_NAME",
    );
    let r = server
        .patch(
            &format!("/api/channels/{general}"),
            Some(&admin),
            json!({"name": "lobby"}),
        )
        .await;
    assert_eq!(r, (reqwest::StatusCode::OK, json!({})));
    assert_eq!(
        server
            .get(&format!("/api/channels/{general}"), None)
            .await
            .1["channel"]["name"],
        "lobby"
    );
    let plain_role_user = server.user("nobody").await.1;
    assert_error(
        &server
            .patch(
                &format!("/api/channels/{general}"),
                Some(&plain_role_user),
                json!({"name": "mine"}),
            )
            .await,
        "NOT_ALLOWED",
    );

    // Delete.
    assert_error(
        &server
            .delete(&format!("/api/channels/{twin}"), Some(&plain_role_user))
            .await,
        "NOT_ALLOWED",
    );
    let r = server
        .delete(&format!("/api/channels/{twin}"), Some(&admin))
        .await;
    assert_eq!(r, (reqwest::StatusCode::OK, json!({})));
    assert_error(
        &server
            .delete(&format!("/api/channels/{twin}"), Some(&admin))
            .await,
        "NOT_FOUND",
    );
    assert_error(
        &server.get(&format!("/api/channels/{twin}"), None).await,
        "NOT_FOUND",
    );
    assert_error(
        &server.get("/api/channels/not-an-id", None).await,
        "NOT_FOUND",
    );
    assert_eq!(
        server.get("/api/channels", None).await.1["channels"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn unreadable_channels_are_listed_for_nobody_and_refused_with_not_allowed() {
    let (server, admin) = with_admin().await;
    let (reader_id, reader) = server.user("reader").await;
    let (other_id, other) = server.user("other").await;
    let secret = server.create_channel(&admin, "secret").await;
    let msg = server.post_message(&admin, &secret, "hidden text").await;
    let readers = server.create_role(&admin, json!({})).await;
    server.give_role(&admin, &reader_id, &readers).await;
    let r = server
        .patch(
            &format!("/api/channels/{secret}/role-permissions"),
            Some(&admin),
            json!({"rolePermissions": {
                "_everyone": {"readMessages": false},
                (readers.as_str()): {"readMessages": true}
            }}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);

    // Spec 2.4: a request lacking a permission is NOT_ALLOWED, readMessages included; the list
    // leaves the channel out.
    let not_allowed = |r: &(reqwest::StatusCode, Value)| {
        assert_eq!(
            assert_error(r, "NOT_ALLOWED")["missingPermission"],
            "readMessages"
        );
    };
    for session in [None, Some(other.as_str())] {
        assert_eq!(
            server.get("/api/channels", session).await.1["channels"],
            json!([])
        );
        for path in [
            format!("/api/channels/{secret}"),
            format!("/api/channels/{secret}/messages"),
            format!("/api/channels/{secret}/pins"),
            format!("/api/messages/{msg}"),
        ] {
            not_allowed(&server.get(&path, session).await);
        }
        // The overrides are documented as needing no permission.
        let r = server
            .get(&format!("/api/channels/{secret}/role-permissions"), session)
            .await;
        assert_eq!(r.0, 200, "{}", r.1);
        assert_eq!(r.1["rolePermissions"]["_everyone"]["readMessages"], false);
    }
    not_allowed(
        &server
            .post(
                "/api/messages",
                Some(&other),
                json!({"channelID": secret, "text": "hi"}),
            )
            .await,
    );
    not_allowed(
        &server
            .post(
                &format!("/api/channels/{secret}/mark-read"),
                Some(&other),
                json!({}),
            )
            .await,
    );
    // A channel that does not exist is still NOT_FOUND.
    assert_error(
        &server
            .get("/api/channels/12345/messages", Some(&other))
            .await,
        "NOT_FOUND",
    );

    // The role holder sees it; the per-channel permission endpoint agrees.
    let list = server.get("/api/channels", Some(&reader)).await.1;
    assert_eq!(list["channels"][0]["id"], secret.as_str());
    assert_eq!(
        texts(
            &server
                .get(&format!("/api/channels/{secret}/messages"), Some(&reader))
                .await
                .1,
            "messages"
        ),
        ["hidden text"]
    );
    let perms = server
        .get(
            &format!("/api/users/{reader_id}/channel-permissions/{secret}"),
            Some(&reader),
        )
        .await
        .1;
    assert_eq!(perms["permissions"]["readMessages"], true);
    assert_eq!(perms["permissions"]["sendMessages"], true);
    assert_eq!(perms["permissions"].as_object().unwrap().len(), 13);
    let perms = server
        .get(
            &format!("/api/users/{other_id}/channel-permissions/{secret}"),
            Some(&reader),
        )
        .await
        .1;
    assert_eq!(perms["permissions"]["readMessages"], false);
    // A requester who cannot see the channel cannot ask about it.
    assert_error(
        &server
            .get(
                &format!("/api/users/{reader_id}/channel-permissions/{secret}"),
                Some(&other),
            )
            .await,
        "NOT_ALLOWED",
    );
    assert_error(
        &server
            .get(
                &format!("/api/users/{reader_id}/channel-permissions/123"),
                None,
            )
            .await,
        "NOT_FOUND",
    );
    assert_error(
        &server
            .get(
                &format!("/api/users/42/channel-permissions/{secret}"),
                Some(&admin),
            )
            .await,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn role_permission_overrides_follow_the_documented_limits() {
    let (server, admin) = with_admin().await;
    let ch = server.create_channel(&admin, "general").await;
    let path = format!("/api/channels/{ch}/role-permissions");
    let role = server.create_role(&admin, json!({})).await;
    assert_eq!(
        server.get(&path, None).await.1,
        json!({"rolePermissions": {}})
    );

    let refusals = [
        (json!({"_everyone": {"sendMessages": false}}), "NOT_ALLOWED"),
        (json!({"_user": {"manageRoles": true}}), "NOT_ALLOWED"),
        (json!({"_user": {"fly": true}}), "INVALID_PARAMETER_TYPE"),
        (
            json!({"_user": {"sendMessages": "yes"}}),
            "INVALID_PARAMETER_TYPE",
        ),
        (json!({"_user": true}), "INVALID_PARAMETER_TYPE"),
        (json!({"12345": {"sendMessages": true}}), "NOT_FOUND"),
        (json!({"nonsense": {"sendMessages": true}}), "NOT_FOUND"),
    ];
    for (body, code) in refusals {
        // Each refused request changes nothing, even with a valid entry alongside.
        let mut map = body.as_object().unwrap().clone();
        map.insert(role.clone(), json!({"sendMessages": false}));
        let r = server
            .patch(&path, Some(&admin), json!({"rolePermissions": map}))
            .await;
        assert_error(&r, code);
        assert_eq!(
            server.get(&path, None).await.1,
            json!({"rolePermissions": {}}),
            "{body}"
        );
    }
    assert_error(
        &server.patch(&path, Some(&admin), json!({})).await,
        "INCOMPLETE_PARAMETERS",
    );

    let r = server
        .patch(
            &path,
            Some(&admin),
            json!({"rolePermissions": {
                "_everyone": {"readMessages": true},
                "_user": {"sendMessages": false, "deleteMessages": null},
                (role.as_str()): {"sendMessages": true, "manageChannels": true}
            }}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(
        server.get(&path, None).await.1,
        json!({"rolePermissions": {
            "_everyone": {"readMessages": true},
            "_user": {"sendMessages": false},
            (role.as_str()): {"manageChannels": true, "sendMessages": true}
        }})
    );
    // Unnamed roles keep their entries; `{}` removes one.
    let r = server
        .patch(
            &path,
            Some(&admin),
            json!({"rolePermissions": {"_user": {}}}),
        )
        .await;
    assert_eq!(r.0, 200);
    assert_eq!(
        server.get(&path, None).await.1["rolePermissions"],
        json!({"_everyone": {"readMessages": true}, (role.as_str()): {"manageChannels": true, "sendMessages": true}})
    );

    // manageChannels in the channel is required; a channel override of it is enough, and
    // one may only set permissions one holds there.
    let (uid, user) = server.user("mod").await;
    let body = json!({"rolePermissions": {"_user": {"sendMessages": false}}});
    assert_error(
        &server.patch(&path, Some(&user), body.clone()).await,
        "NOT_ALLOWED",
    );
    server.give_role(&admin, &uid, &role).await;
    let r = server.patch(&path, Some(&user), body).await;
    assert_eq!(r.0, 200, "{}", r.1);
    let err = assert_error(
        &server
            .patch(
                &path,
                Some(&user),
                json!({"rolePermissions": {"_user": {"deleteMessages": true}}}),
            )
            .await,
        "NOT_ALLOWED",
    );
    assert_eq!(err["missingPermission"], "deleteMessages");
    // Deleting the role removes its override entry as well.
    assert_eq!(
        server
            .delete(&format!("/api/roles/{role}"), Some(&admin))
            .await
            .0,
        200
    );
    assert_eq!(
        server.get(&path, None).await.1["rolePermissions"],
        json!({"_everyone": {"readMessages": true}, "_user": {"sendMessages": false}})
    );
}

#[tokio::test]
async fn unread_counts_mark_read_and_the_cap() {
    let (server, admin) = with_admin().await;
    let (_, reader) = server.user("reader").await;
    let ch = server.create_channel(&admin, "general").await;
    let path = format!("/api/channels/{ch}");
    let unread = |body: Value| {
        (
            body["channel"]["unreadMessageCount"].clone(),
            body["channel"]["oldestUnreadMessageID"].clone(),
        )
    };
    assert_eq!(
        unread(server.get(&path, Some(&reader)).await.1),
        (json!(0), Value::Null)
    );
    // Guests get no extra data.
    assert!(server.get(&path, None).await.1["channel"]
        .get("unreadMessageCount")
        .is_none());

    let first = server.post_message(&admin, &ch, "one").await;
    server.post_message(&admin, &ch, "two").await;
    assert_eq!(
        unread(server.get(&path, Some(&reader)).await.1),
        (json!(2), json!(first))
    );
    // Posting marks the channel read for the author.
    assert_eq!(
        unread(server.get(&path, Some(&admin)).await.1),
        (json!(0), Value::Null)
    );
    let list = server.get("/api/channels", Some(&reader)).await.1;
    assert_eq!(list["channels"][0]["unreadMessageCount"], 2);

    assert_error(
        &server
            .post(&format!("{path}/mark-read"), None, json!({}))
            .await,
        "NOT_ALLOWED",
    );
    let r = server
        .post(&format!("{path}/mark-read"), Some(&reader), json!({}))
        .await;
    assert_eq!(r, (reqwest::StatusCode::OK, json!({})));
    assert_eq!(
        unread(server.get(&path, Some(&reader)).await.1),
        (json!(0), Value::Null)
    );

    for i in 0..205 {
        server.post_message(&admin, &ch, &format!("m{i}")).await;
    }
    assert_eq!(
        server.get(&path, Some(&reader)).await.1["channel"]["unreadMessageCount"],
        200
    );
}

#[tokio::test]
async fn history_pages_with_before_after_and_limit() {
    let (server, admin) = with_admin().await;
    let ch = server.create_channel(&admin, "general").await;
    let other = server.create_channel(&admin, "other").await;
    let mut ids = Vec::new();
    for text in ["first", "second", "third", "fourth"] {
        ids.push(server.post_message(&admin, &ch, text).await);
    }
    server.post_message(&admin, &other, "elsewhere").await;
    let get = |q: String| {
        let server = &server;
        let ch = ch.clone();
        async move {
            texts(
                &server
                    .get(&format!("/api/channels/{ch}/messages{q}"), None)
                    .await
                    .1,
                "messages",
            )
        }
    };
    assert_eq!(
        get(String::new()).await,
        ["first", "second", "third", "fourth"]
    );
    assert_eq!(get("?limit=2".into()).await, ["third", "fourth"]);
    assert_eq!(
        get(format!("?before={}", ids[2])).await,
        ["first", "second"]
    );
    assert_eq!(
        get(format!("?after={}", ids[0])).await,
        ["second", "third", "fourth"]
    );
    assert_eq!(
        get(format!("?before={}&after={}", ids[3], ids[0])).await,
        ["second", "third"]
    );
    assert_eq!(
        get(format!("?before={}&limit=2", ids[3])).await,
        ["second", "third"]
    );
    // With `after`, the page is the messages right after it: paging forward misses nothing.
    assert_eq!(get(format!("?after={}&limit=1", ids[0])).await, ["second"]);
    assert_eq!(
        get(format!("?after={}&limit=2", ids[1])).await,
        ["third", "fourth"]
    );
    assert_eq!(
        get(format!("?before={}", ids[0])).await,
        Vec::<String>::new()
    );
    assert_eq!(
        get(format!("?after={}", ids[3])).await,
        Vec::<String>::new()
    );
    // Out-of-range limits are clamped to 1..=50, as the reference server does.
    assert_eq!(get("?limit=0".into()).await, ["fourth"]);
    // An anchor that is not a message of this channel is NOT_FOUND.
    let elsewhere = server.post_message(&admin, &other, "also elsewhere").await;
    for q in [
        format!("?before={elsewhere}"),
        format!("?after={elsewhere}"),
        "?after=12345".to_owned(),
    ] {
        assert_error(
            &server
                .get(&format!("/api/channels/{ch}/messages{q}"), None)
                .await,
            "NOT_FOUND",
        );
    }
    for q in ["?limit=-1", "?limit=abc", "?before=abc", "?after=1.5"] {
        assert_error(
            &server
                .get(&format!("/api/channels/{ch}/messages{q}"), None)
                .await,
            "INVALID_PARAMETER_TYPE",
        );
    }
    assert_error(
        &server
            .get(
                &format!("/api/channels/{ch}/messages?limit=1&limit=2"),
                None,
            )
            .await,
        "REPEATED_PARAMETERS",
    );

    let big = server.create_channel(&admin, "big").await;
    for i in 0..55 {
        server.post_message(&admin, &big, &format!("m{i}")).await;
    }
    let page = texts(
        &server
            .get(&format!("/api/channels/{big}/messages?limit=55"), None)
            .await
            .1,
        "messages",
    );
    assert_eq!(page.len(), 50);
    assert_eq!(page[0], "m5");
    assert_eq!(page[49], "m54");
}

#[tokio::test]
async fn pins_are_added_listed_and_removed() {
    let (server, admin) = with_admin().await;
    let (_, user) = server.user("plain").await;
    let ch = server.create_channel(&admin, "general").await;
    let other = server.create_channel(&admin, "other").await;
    let hello = server.post_message(&admin, &ch, "Hello!").await;
    let bye = server.post_message(&admin, &ch, "Goodbye!").await;
    let elsewhere = server.post_message(&admin, &other, "elsewhere").await;
    let pins = format!("/api/channels/{ch}/pins");

    assert_eq!(server.get(&pins, None).await.1, json!({"pins": []}));
    assert_error(
        &server
            .post(&pins, Some(&user), json!({"messageID": hello}))
            .await,
        "NOT_ALLOWED",
    );
    assert_error(
        &server.post(&pins, Some(&admin), json!({})).await,
        "INCOMPLETE_PARAMETERS",
    );
    for id in [&hello, &bye] {
        let r = server
            .post(&pins, Some(&admin), json!({"messageID": id}))
            .await;
        assert_eq!(r, (reqwest::StatusCode::OK, json!({})));
    }
    assert_error(
        &server
            .post(&pins, Some(&admin), json!({"messageID": hello}))
            .await,
        "ALREADY_PERFORMED",
    );
    assert_error(
        &server
            .post(&pins, Some(&admin), json!({"messageID": elsewhere}))
            .await,
        "NOT_FOUND",
    );
    assert_error(
        &server
            .post(&pins, Some(&admin), json!({"messageID": "123"}))
            .await,
        "NOT_FOUND",
    );

    let listed = server.get(&pins, None).await.1;
    assert_eq!(texts(&listed, "pins"), ["Hello!", "Goodbye!"]);
    assert_eq!(listed["pins"][0]["pinned"], true);
    assert_eq!(
        server.get(&format!("/api/messages/{hello}"), None).await.1["message"]["pinned"],
        true
    );

    assert_error(
        &server.delete(&format!("{pins}/{bye}"), Some(&user)).await,
        "NOT_ALLOWED",
    );
    let r = server.delete(&format!("{pins}/{bye}"), Some(&admin)).await;
    assert_eq!(r, (reqwest::StatusCode::OK, json!({})));
    assert_error(
        &server.delete(&format!("{pins}/{bye}"), Some(&admin)).await,
        "NOT_FOUND",
    );
    assert_error(
        &server
            .delete(&format!("{pins}/{elsewhere}"), Some(&admin))
            .await,
        "NOT_FOUND",
    );
    assert_eq!(
        server.get(&format!("/api/messages/{bye}"), None).await.1["message"]["pinned"],
        false
    );

    // Deleting a pinned message unpins it.
    assert_eq!(
        server
            .delete(&format!("/api/messages/{hello}"), Some(&admin))
            .await
            .0,
        200
    );
    assert_eq!(server.get(&pins, None).await.1, json!({"pins": []}));
}

#[tokio::test]
async fn deleting_a_channel_leaves_nothing_in_storage() {
    let (mut server, admin) = with_admin().await;
    let (uid, reader) = server.user("reader").await;
    let keep = server.create_channel(&admin, "keep").await;
    let doomed = server.create_channel(&admin, "doomed").await;
    server.post_message(&admin, &keep, "stays").await;
    let mut pinned = String::new();
    for i in 0..30 {
        pinned = server
            .post_message(&admin, &doomed, &format!("hey <@{uid}> {i}"))
            .await;
    }
    server
        .post(
            &format!("/api/channels/{doomed}/pins"),
            Some(&admin),
            json!({"messageID": pinned}),
        )
        .await;
    server
        .post(
            &format!("/api/channels/{doomed}/mark-read"),
            Some(&reader),
            json!({}),
        )
        .await;
    assert_eq!(
        server
            .get(&format!("/api/users/{uid}/mentions"), None)
            .await
            .1["mentions"]
            .as_array()
            .unwrap()
            .len(),
        30
    );

    assert_eq!(
        server
            .delete(&format!("/api/channels/{doomed}"), Some(&admin))
            .await
            .0,
        200
    );
    assert_error(
        &server.get(&format!("/api/messages/{pinned}"), None).await,
        "NOT_FOUND",
    );
    assert_eq!(
        server
            .get(&format!("/api/users/{uid}/mentions"), None)
            .await
            .1["mentions"],
        json!([])
    );

    // Stop cleanly (the purge runs right after the response) and inspect the key spaces.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(server.signal_and_wait("TERM").success());
    let store = decentd::store::Store::open(&server.data, 1 << 20).unwrap();
    let counts: HashMap<&str, usize> = store.key_counts().into_iter().collect();
    assert_eq!(counts["channels"], 1);
    assert_eq!(counts["messages"], 1);
    assert_eq!(counts["message_channels"], 1);
    assert_eq!(counts["mentions"], 0);
    assert_eq!(counts["pins"], 0);
    // The admin's read state of `keep` (set by posting) is all that is left.
    assert_eq!(counts["read_state"], 1);
    assert!(store.pending_purges().unwrap().is_empty());
}
