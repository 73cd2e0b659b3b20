//! Users and sessions endpoints through real HTTP, with every documented error.

use crate::common;

use common::{assert_error, TestServer};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn registering_returns_the_user_object() {
    let server = TestServer::spawn().await;
    let user = server.register("joe", "secret").await;
    assert_eq!(user["username"], "joe");
    assert!(user["id"].is_string());
    assert_eq!(user["flair"], json!(null));
    assert_eq!(user["online"], false);
    assert_eq!(user["roleIDs"], json!([]));
    assert!(user["avatarURL"].as_str().unwrap().starts_with("https://"));
    let (_, list) = server.get("/api/users", None).await;
    assert_eq!(list["users"].as_array().unwrap().len(), 1);
    assert_eq!(list["users"][0]["id"], user["id"]);
}

#[tokio::test]
async fn names_must_follow_the_name_rule_and_be_unique() {
    let server = TestServer::spawn().await;
    for bad in ["has space", "", "emoji😀", "dot.dot", &"x".repeat(33)] {
        let r = server
            .post(
                "/api/users",
                None,
                json!({"username": bad, "password": "secret1"}),
            )
            .await;
        assert_error(&r, "INVALID_NAME");
        if !bad.is_empty() && !bad.contains(' ') && bad.is_ascii() {
            let r = server
                .get(&format!("/api/username-available/{bad}"), None)
                .await;
            assert_error(&r, "INVALID_NAME");
        }
    }
    server.register("Taken_1", "secret1").await;
    for dup in ["Taken_1", "taken_1"] {
        let r = server
            .post(
                "/api/users",
                None,
                json!({"username": dup, "password": "secret1"}),
            )
            .await;
        assert_error(&r, "NAME_ALREADY_TAKEN");
    }
    assert_eq!(
        server.get("/api/username-available/taken_1", None).await.1["available"],
        false
    );
    assert_eq!(
        server.get("/api/username-available/free-1", None).await.1["available"],
        true
    );
    assert_eq!(
        server.get("/api/users", None).await.1["users"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn passwords_shorter_than_six_are_refused() {
    let server = TestServer::spawn().await;
    let r = server
        .post(
            "/api/users",
            None,
            json!({"username": "shorty", "password": "12345"}),
        )
        .await;
    assert_error(&r, "SHORT_PASSWORD");
    assert_eq!(
        server.get("/api/username-available/shorty", None).await.1["available"],
        true
    );
}

#[tokio::test]
async fn getting_users_by_id() {
    let server = TestServer::spawn().await;
    let (id, _) = server.user("findme").await;
    let (status, body) = server.get(&format!("/api/users/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["user"]["username"], "findme");
    assert_error(&server.get("/api/users/12345", None).await, "NOT_FOUND");
    assert_error(&server.get("/api/users/not-an-id", None).await, "NOT_FOUND");
}

#[tokio::test]
async fn email_is_private_and_drives_the_avatar() {
    let server = TestServer::spawn().await;
    let (id, session) = server.user("mailer").await;
    let (_, other) = server.user("other").await;
    let before = server.get(&format!("/api/users/{id}"), None).await.1["user"]["avatarURL"].clone();
    let r = server
        .patch(
            &format!("/api/users/{id}"),
            Some(&session),
            json!({"email": "Mailer@Example.com"}),
        )
        .await;
    assert_eq!(r.0, 200, "{:?}", r.1);
    let mine = server
        .get(&format!("/api/users/{id}"), Some(&session))
        .await
        .1;
    assert_eq!(mine["user"]["email"], "Mailer@Example.com");
    let theirs = server
        .get(&format!("/api/users/{id}"), Some(&other))
        .await
        .1;
    assert!(theirs["user"].get("email").is_none());
    let list = server.get("/api/users", Some(&other)).await.1;
    assert!(list["users"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["id"] == id && u.get("email").is_none() || u["id"] != id));
    let after = theirs["user"]["avatarURL"].clone();
    assert_ne!(before, after);
    assert!(after
        .as_str()
        .unwrap()
        .contains(&md5_hex("mailer@example.com")));
    let r = server
        .patch(
            &format!("/api/users/{id}"),
            Some(&session),
            json!({"email": "not an email"}),
        )
        .await;
    assert_error(&r, "INVALID_PARAMETER_TYPE");
    // null removes it.
    server
        .patch(
            &format!("/api/users/{id}"),
            Some(&session),
            json!({"email": null}),
        )
        .await;
    let mine = server
        .get(&format!("/api/users/{id}"), Some(&session))
        .await
        .1;
    assert_eq!(mine["user"]["email"], json!(null));
    assert_eq!(mine["user"]["avatarURL"], before);
}

fn md5_hex(s: &str) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(s.as_bytes()))
}

#[tokio::test]
async fn flair_is_limited_to_fifty_characters_and_null_removes_it() {
    let server = TestServer::spawn().await;
    let (id, session) = server.user("flairy").await;
    let path = format!("/api/users/{id}");
    let r = server
        .patch(&path, Some(&session), json!({"flair": "x".repeat(51)}))
        .await;
    assert_error(&r, "INVALID_PARAMETER_TYPE");
    assert_eq!(
        server.get(&path, None).await.1["user"]["flair"],
        json!(null)
    );
    server
        .patch(&path, Some(&session), json!({"flair": "y".repeat(50)}))
        .await;
    assert_eq!(
        server.get(&path, None).await.1["user"]["flair"],
        "y".repeat(50)
    );
    server
        .patch(&path, Some(&session), json!({"flair": null}))
        .await;
    assert_eq!(
        server.get(&path, None).await.1["user"]["flair"],
        json!(null)
    );
}

#[tokio::test]
async fn patching_users_needs_a_session_and_manage_users_for_others() {
    let server = TestServer::spawn_with(&["--admin", "mod"]).await;
    let (id, _) = server.user("target").await;
    let (_, stranger) = server.user("stranger").await;
    let (_, moderator) = server.user("mod").await;
    let path = format!("/api/users/{id}");
    assert_error(
        &server.patch(&path, None, json!({"flair": "a"})).await,
        "NOT_ALLOWED",
    );
    let r = server
        .patch(&path, Some(&stranger), json!({"flair": "a"}))
        .await;
    assert_eq!(
        assert_error(&r, "NOT_ALLOWED")["missingPermission"],
        "manageUsers"
    );
    let r = server
        .patch(&path, Some(&moderator), json!({"flair": "set by mod"}))
        .await;
    assert_eq!(r.0, 200);
    assert_eq!(
        server.get(&path, None).await.1["user"]["flair"],
        "set by mod"
    );
    // Nobody but the user changes their password, not even a moderator.
    let r = server
        .patch(
            &path,
            Some(&moderator),
            json!({"password": {"old": "password1", "new": "hijacked"}}),
        )
        .await;
    assert_error(&r, "NOT_YOURS");
    assert_error(
        &server
            .patch("/api/users/999", Some(&moderator), json!({"flair": "a"}))
            .await,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn changing_a_password_checks_the_old_one() {
    let server = TestServer::spawn().await;
    let (id, session) = server.user("pat").await;
    let other_session = server.login("pat", "password1").await;
    let path = format!("/api/users/{id}");
    let r = server
        .patch(
            &path,
            Some(&session),
            json!({"password": {"old": "wrong-one", "new": "newpass1"}}),
        )
        .await;
    assert_error(&r, "INCORRECT_PASSWORD");
    let r = server
        .patch(
            &path,
            Some(&session),
            json!({"password": {"old": "password1", "new": "short"}}),
        )
        .await;
    assert_error(&r, "SHORT_PASSWORD");
    let r = server
        .patch(
            &path,
            Some(&session),
            json!({"password": {"old": "password1"}}),
        )
        .await;
    assert_eq!(
        assert_error(&r, "INCOMPLETE_PARAMETERS")["missing"],
        "password.new"
    );
    let r = server
        .patch(&path, Some(&session), json!({"password": "newpass1"}))
        .await;
    assert_error(&r, "INVALID_PARAMETER_TYPE");
    // Still the old password after all those failures.
    server.login("pat", "password1").await;
    let r = server
        .patch(
            &path,
            Some(&session),
            json!({"password": {"old": "password1", "new": "newpass1"}}),
        )
        .await;
    assert_eq!(r.0, 200, "{:?}", r.1);
    assert_error(
        &server
            .post(
                "/api/sessions",
                None,
                json!({"username": "pat", "password": "password1"}),
            )
            .await,
        "INCORRECT_PASSWORD",
    );
    server.login("pat", "newpass1").await;
    // The session that changed it stays; the others end.
    assert_eq!(server.get("/api/sessions", Some(&session)).await.0, 200);
    assert_error(
        &server.get("/api/sessions", Some(&other_session)).await,
        "INVALID_SESSION_ID",
    );
}

#[tokio::test]
async fn deleting_a_user_needs_manage_users_and_ends_their_sessions() {
    let server = TestServer::spawn_with(&["--admin", "root"]).await;
    let (id, victim_session) = server.user("victim").await;
    let (_, stranger) = server.user("stranger").await;
    let (_, root) = server.user("root").await;
    let path = format!("/api/users/{id}");
    assert_error(&server.delete(&path, None).await, "NOT_ALLOWED");
    let r = server.delete(&path, Some(&stranger)).await;
    assert_eq!(
        assert_error(&r, "NOT_ALLOWED")["missingPermission"],
        "manageUsers"
    );
    assert_error(
        &server.delete(&path, Some(&victim_session)).await,
        "NOT_ALLOWED",
    );
    assert_eq!(server.delete(&path, Some(&root)).await.0, 200);
    assert_error(&server.get(&path, None).await, "NOT_FOUND");
    assert_error(
        &server.get("/api/sessions", Some(&victim_session)).await,
        "INVALID_SESSION_ID",
    );
    assert_error(
        &server
            .get(&format!("/api/sessions/{victim_session}"), None)
            .await,
        "INVALID_SESSION_ID",
    );
    assert_error(&server.delete(&path, Some(&root)).await, "NOT_FOUND");
    // The name is free again.
    assert_eq!(
        server.get("/api/username-available/victim", None).await.1["available"],
        true
    );
}

#[tokio::test]
async fn login_errors_for_unknown_users_and_wrong_passwords() {
    let server = TestServer::spawn().await;
    server.register("known", "password1").await;
    let r = server
        .post(
            "/api/sessions",
            None,
            json!({"username": "unknown", "password": "password1"}),
        )
        .await;
    assert_error(&r, "NOT_FOUND");
    let r = server
        .post(
            "/api/sessions",
            None,
            json!({"username": "known", "password": "password2"}),
        )
        .await;
    assert_error(&r, "INCORRECT_PASSWORD");
    let r = server
        .post("/api/sessions", None, json!({"username": "known"}))
        .await;
    assert_eq!(
        assert_error(&r, "INCOMPLETE_PARAMETERS")["missing"],
        "password"
    );
    let session = server.login("KNOWN", "password1").await;
    assert!(session.len() >= 22, "session IDs carry at least 128 bits");
}

#[tokio::test]
async fn sessions_can_be_listed_inspected_and_ended() {
    let server = TestServer::spawn().await;
    let (id, first) = server.user("sam").await;
    let second = server.login("sam", "password1").await;
    assert_ne!(first, second);

    assert_error(&server.get("/api/sessions", None).await, "NOT_ALLOWED");
    let (status, body) = server.get("/api/sessions", Some(&first)).await;
    assert_eq!(status, 200);
    let sessions = body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let current: Vec<_> = sessions
        .iter()
        .filter(|s| s["id"] == first.as_str())
        .collect();
    assert_eq!(current.len(), 1);
    assert!(current[0]["dateCreated"].as_f64().unwrap() > 1.6e9);
    // The other session is listed by its handle, never by its secret ID.
    let other = sessions.iter().find(|s| s["id"] != first.as_str()).unwrap();
    assert_ne!(other["id"], second.as_str());
    // Extension: the device a session logged in from (its user agent), null when unsaid.
    assert_eq!(other["device"], serde_json::Value::Null);
    let phone: serde_json::Value = server
        .client
        .post(server.url("/api/sessions"))
        .header("User-Agent", "  TestPhone/1.0 (Pocket)  ")
        .json(&serde_json::json!({"username": "sam", "password": "password1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let phone = phone["sessionID"].as_str().unwrap();
    let (_, body) = server.get("/api/sessions", Some(phone)).await;
    let mine = body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()
        .clone();
    assert_eq!(mine["device"], "TestPhone/1.0 (Pocket)");
    server
        .delete(&format!("/api/sessions/{phone}"), Some(phone))
        .await;

    let (status, body) = server.get(&format!("/api/sessions/{second}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["session"]["id"], second.as_str());
    assert_eq!(body["user"]["id"], id.as_str());
    assert!(body["user"].get("email").is_some());

    // A handle works together with a session of the same user, and is NOT_FOUND otherwise.
    let handle = other["id"].as_str().unwrap();
    let (_, stranger) = server.user("stranger").await;
    assert_error(
        &server
            .get(&format!("/api/sessions/{handle}"), Some(&stranger))
            .await,
        "NOT_FOUND",
    );
    assert_eq!(
        server
            .get(&format!("/api/sessions/{handle}"), Some(&first))
            .await
            .0,
        200
    );
    assert_eq!(
        server
            .delete(&format!("/api/sessions/{handle}"), Some(&first))
            .await
            .0,
        200
    );
    assert_error(
        &server.get("/api/users", Some(&second)).await,
        "INVALID_SESSION_ID",
    );

    // Logging out with the ID in the URL.
    let (status, body) = server.delete(&format!("/api/sessions/{first}"), None).await;
    assert_eq!((status.as_u16(), body), (200, json!({})));
    assert_error(
        &server.get("/api/sessions", Some(&first)).await,
        "INVALID_SESSION_ID",
    );
    assert_error(
        &server.delete(&format!("/api/sessions/{first}"), None).await,
        "INVALID_SESSION_ID",
    );
    assert_error(
        &server.get("/api/sessions/unknown-session", None).await,
        "INVALID_SESSION_ID",
    );
}

#[tokio::test]
async fn sessions_expire_after_their_ttl() {
    let server = TestServer::spawn_with(&["--session-ttl", "2"]).await;
    let (_, session) = server.user("ttl").await;
    assert_eq!(server.get("/api/sessions", Some(&session)).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_error(
        &server.get("/api/sessions", Some(&session)).await,
        "INVALID_SESSION_ID",
    );
    assert_error(
        &server.get(&format!("/api/sessions/{session}"), None).await,
        "INVALID_SESSION_ID",
    );
}

/// `GET /api/sessions` with the given headers: the status and body.
async fn sessions_with(
    server: &TestServer,
    headers: &[(&str, String)],
) -> (u16, serde_json::Value) {
    let mut req = server.client.get(server.url("/api/sessions"));
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

#[tokio::test]
async fn authorization_headers_carry_the_session_in_both_forms() {
    let server = TestServer::spawn().await;
    let (joe, session) = server.user("joe").await;
    let (ann, _) = server.user("ann").await;

    let (status, body) =
        sessions_with(&server, &[("Authorization", format!("Bearer {session}"))]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sessions"][0]["current"], true);
    let res = [("Authorization", format!("res {joe}:{session}"))];
    let (status, body) = sessions_with(&server, &res).await;
    assert_eq!(status, 200, "{body}");
    // The scheme is case-insensitive.
    let (status, _) =
        sessions_with(&server, &[("Authorization", format!("bearer {session}"))]).await;
    assert_eq!(status, 200);

    // The Resonite form names the user: another user's ID is no session.
    let (_, body) = sessions_with(
        &server,
        &[("Authorization", format!("res {ann}:{session}"))],
    )
    .await;
    assert_eq!(body["error"]["code"], "INVALID_SESSION_ID");
    for malformed in ["Bearer ", "res nocolon", &format!("res :{session}")] {
        let (_, body) = sessions_with(&server, &[("Authorization", malformed.to_owned())]).await;
        assert_eq!(body["error"]["code"], "INVALID_SESSION_ID", "{malformed:?}");
    }

    // Every source counts toward REPEATED_PARAMETERS.
    let both = [
        ("Authorization", format!("Bearer {session}")),
        ("X-Session-ID", session.clone()),
    ];
    let (_, body) = sessions_with(&server, &both).await;
    assert_eq!(body["error"]["code"], "REPEATED_PARAMETERS");
    let res = server
        .client
        .get(server.url(&format!("/api/sessions?sessionID={session}")))
        .header("Authorization", format!("res {joe}:{session}"))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "REPEATED_PARAMETERS");

    // Other schemes carry no session: the request is a guest's.
    let (_, body) = sessions_with(
        &server,
        &[("Authorization", "Basic am9lOnNlY3JldA==".into())],
    )
    .await;
    assert_eq!(body["error"]["code"], "NOT_ALLOWED");
}

/// Logs in with extra body fields and headers: the session ID.
async fn login_with(
    server: &TestServer,
    fields: serde_json::Value,
    headers: &[(&str, &str)],
) -> serde_json::Value {
    let mut body = json!({"username": "joe", "password": "secret"});
    body.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    let mut req = server.client.post(server.url("/api/sessions")).json(&body);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.unwrap().json().await.unwrap()
}

fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test]
async fn remember_me_chooses_the_lifetime_and_sessions_show_their_device() {
    let server = TestServer::spawn().await;
    server.register("joe", "secret").await;
    let remembered = login_with(&server, json!({"rememberMe": true}), &[("UID", "phone-1")]).await;
    let remembered = remembered["sessionID"].as_str().unwrap().to_owned();
    let short = login_with(
        &server,
        json!({"rememberMe": false, "secretMachineId": "m"}),
        &[],
    )
    .await;
    let short = short["sessionID"].as_str().unwrap().to_owned();
    let plain = login_with(&server, json!({}), &[]).await;
    assert!(plain["sessionID"].is_string());

    let (_, list) = server.get("/api/sessions", Some(&remembered)).await;
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3);
    let now = now_seconds();
    let days = |s: &serde_json::Value| (s["expires"].as_f64().unwrap() - now) / 86_400.0;
    let mine = sessions.iter().find(|s| s["current"] == true).unwrap();
    assert!((days(mine) - 30.0).abs() < 0.01, "{mine}");
    assert_eq!(mine["sliding"], false);
    assert!((mine["lastUsed"].as_f64().unwrap() - now).abs() < 60.0);
    let device = mine["deviceID"].as_str().unwrap();
    assert_eq!(device.len(), 32, "a digest, never the identity itself");
    assert_ne!(device, "phone-1");
    let short_view = sessions.iter().find(|s| s["sliding"] == true).unwrap();
    assert!((days(short_view) - 1.0).abs() < 0.01, "{short_view}");
    assert!(short_view["deviceID"].is_string());
    // Without rememberMe the server's default (30 days) stands.
    assert_eq!(
        sessions.iter().filter(|s| s["deviceID"].is_null()).count(),
        1
    );

    // Both device identities at once is one too many; a non-boolean rememberMe is refused.
    let both = login_with(&server, json!({"secretMachineId": "m"}), &[("UID", "u")]).await;
    assert_eq!(both["error"]["code"], "REPEATED_PARAMETERS");
    let bad = login_with(&server, json!({"rememberMe": "yes"}), &[]).await;
    assert_eq!(bad["error"]["code"], "INVALID_PARAMETER_TYPE");
    assert!(server
        .get("/api/sessions", Some(&short))
        .await
        .0
        .is_success());
}

#[tokio::test]
async fn short_sessions_last_while_used_and_patch_extends_a_session() {
    let server = TestServer::spawn_with(&["--short-session-ttl", "2", "--session-ttl", "3"]).await;
    server.register("joe", "secret").await;
    let login = login_with(&server, json!({"rememberMe": false}), &[]).await;
    let sliding = login["sessionID"].as_str().unwrap().to_owned();
    let login = login_with(&server, json!({}), &[]).await;
    let fixed = login["sessionID"].as_str().unwrap().to_owned();
    let login = login_with(&server, json!({}), &[]).await;
    let extended = login["sessionID"].as_str().unwrap().to_owned();

    // Used every 0.6 s for 3.6 s, the sliding session outlives its 2 s lifetime; the fixed one
    // (3 s) does not; PATCH (at 1.8 s) pushed the third one's end out to 4.8 s.
    for round in 0..6 {
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        let (status, body) = server.get("/api/sessions", Some(&sliding)).await;
        assert!(status.is_success(), "{body}");
        if round == 2 {
            let path = format!("/api/sessions/{extended}");
            let (status, body) = server.call(reqwest::Method::PATCH, &path, None, None).await;
            assert!(status.is_success(), "{body}");
            assert!(body["session"]["expires"].as_f64().unwrap() > now_seconds() + 2.5);
        }
    }
    let (_, body) = server.get("/api/sessions", Some(&fixed)).await;
    assert_eq!(body["error"]["code"], "INVALID_SESSION_ID");
    // Extended at 1.8 s for 3 s: alive at 3.6 s.
    assert!(server
        .get("/api/sessions", Some(&extended))
        .await
        .0
        .is_success());

    // Unused for longer than its lifetime, the sliding session ends too.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let (_, body) = server.get("/api/sessions", Some(&sliding)).await;
    assert_eq!(body["error"]["code"], "INVALID_SESSION_ID");
}

#[tokio::test]
async fn users_are_found_by_username_and_by_the_start_of_their_name() {
    let server = TestServer::spawn().await;
    for name in ["Alice", "alan", "bob", "albert", "Malice"] {
        server.register(name, "secret").await;
    }
    let names = |body: &serde_json::Value| -> Vec<String> {
        body["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["username"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, body) = server.get("/api/users?name=AL", None).await;
    assert_eq!(names(&body), ["alan", "albert", "Alice"]);
    let (_, body) = server.get("/api/users?name=al&limit=2", None).await;
    assert_eq!(names(&body), ["alan", "albert"]);
    let (_, body) = server.get("/api/users?name=al&limit=2&skip=2", None).await;
    assert_eq!(names(&body), ["Alice"]);
    let (_, body) = server.get("/api/users?name=zz", None).await;
    assert_eq!(names(&body), Vec::<String>::new());
    assert_error(
        &server.get("/api/users?name=", None).await,
        "INVALID_PARAMETER_TYPE",
    );

    let (_, body) = server.get("/api/users/aLiCe?byUsername=true", None).await;
    assert_eq!(body["user"]["username"], "Alice", "{body}");
    assert_error(
        &server.get("/api/users/nobody?byUsername=true", None).await,
        "NOT_FOUND",
    );
    // Without the flag, the path is an ID as the spec says.
    assert_error(&server.get("/api/users/Alice", None).await, "NOT_FOUND");
}

/// A `/` socket and a `/hub` connection bound to a session, each shown to receive the user's
/// direct messages first.
async fn bound_connections(
    server: &TestServer,
    session: &str,
    user: &str,
    sender: &str,
) -> (common::EventSocket, common::HubSocket) {
    let mut socket = server.events(Some(session)).await;
    let mut hub = server.hub(Some(session)).await;
    let to = format!("/api/users/{user}/messages");
    let (status, body) = server
        .post(&to, Some(sender), json!({"text": "before"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(socket.expect("dm/new").await["message"]["text"], "before");
    assert_eq!(
        hub.expect_event("dm/new").await["message"]["text"],
        "before"
    );
    (socket, hub)
}

/// Once the answer to what ended a session is in, nothing private reaches a connection bound
/// to it: the `/` socket hears no more of its user's direct messages (it is a guest's) and the
/// hub connection is closed, saying why. For a logout, for a new password set from another
/// session, and for a deleted user.
#[tokio::test]
async fn a_session_that_ends_ends_on_every_connection_before_the_answer() {
    let server = TestServer::spawn_with(&["--admin", "root"]).await;
    let (_, root) = server.user("root").await;
    let (alice_id, _) = server.user("alice").await;
    let (_, bob) = server.user("bob").await;
    let to_alice = format!("/api/users/{alice_id}/messages");

    let ends: [&str; 3] = ["logout", "new password", "deletion"];
    for end in ends {
        let alice = server.login("alice", "password1").await;
        let (mut socket, mut hub) = bound_connections(&server, &alice, &alice_id, &bob).await;
        let (status, body) = match end {
            "logout" => {
                server
                    .delete(&format!("/api/sessions/{alice}"), Some(&alice))
                    .await
            }
            "new password" => {
                let other = server.login("alice", "password1").await;
                let answer = server
                    .patch(
                        &format!("/api/users/{alice_id}"),
                        Some(&other),
                        json!({"password": {"old": "password1", "new": "password2"}}),
                    )
                    .await;
                // Back to the old password for the next round (this session stays).
                server
                    .patch(
                        &format!("/api/users/{alice_id}"),
                        Some(&other),
                        json!({"password": {"old": "password2", "new": "password1"}}),
                    )
                    .await;
                answer
            }
            _ => {
                server
                    .delete(&format!("/api/users/{alice_id}"), Some(&root))
                    .await
            }
        };
        assert_eq!(status, 200, "{end}: {body}");
        // Right after the answer: a message for her, which only a still-bound one would hear.
        let _ = server
            .post(&to_alice, Some(&bob), json!({"text": "after"}))
            .await;
        let heard = socket.drain(Duration::from_millis(500)).await;
        assert!(
            heard.iter().all(|(evt, _)| !evt.starts_with("dm/")),
            "{end}: {heard:?}"
        );
        let close = hub.close_message().await.expect("a Close message");
        assert!(
            close["error"]
                .as_str()
                .is_some_and(|e| e.contains("session ended")),
            "{end}: {close}"
        );
    }
}
