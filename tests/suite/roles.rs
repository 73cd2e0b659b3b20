//! Roles and the permission cascade through real HTTP: every rule of the API doc's Roles part,
//! including the refusals.

use crate::common;

use common::{assert_error, TestServer};
use serde_json::{json, Value};

/// A server with an admin (Admin role, every permission) and a logged-in admin session.
async fn with_admin() -> (TestServer, String, String) {
    let server = TestServer::spawn_with(&["--admin", "root"]).await;
    let (id, session) = server.user("root").await;
    (server, id, session)
}

async fn create_role(server: &TestServer, session: &str, name: &str, permissions: Value) -> String {
    let r = server
        .post(
            "/api/roles",
            Some(session),
            json!({"name": name, "permissions": permissions}),
        )
        .await;
    assert_eq!(r.0, 200, "{:?}", r.1);
    r.1["roleID"].as_str().unwrap().to_owned()
}

async fn order(server: &TestServer) -> Vec<String> {
    let (_, body) = server.get("/api/roles/order", None).await;
    body["roleIDs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

async fn give(
    server: &TestServer,
    session: &str,
    user: &str,
    role: &str,
) -> (reqwest::StatusCode, Value) {
    server
        .post(
            &format!("/api/users/{user}/roles"),
            Some(session),
            json!({"roleID": role}),
        )
        .await
}

#[tokio::test]
async fn internal_roles_are_listed_last_and_cannot_be_changed() {
    let (server, _, admin) = with_admin().await;
    let (_, body) = server.get("/api/roles", None).await;
    let roles = body["roles"].as_array().unwrap();
    let ids: Vec<&str> = roles.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(&ids[ids.len() - 2..], ["_user", "_everyone"]);
    assert_eq!(roles[0]["name"], "Admin");
    let (_, user_role) = server.get("/api/roles/_user", None).await;
    assert_eq!(
        user_role["role"]["permissions"],
        json!({"sendMessages": true})
    );
    let (_, everyone) = server.get("/api/roles/_everyone", None).await;
    assert_eq!(everyone["role"]["permissions"]["manageServer"], false);
    assert!(!order(&server).await.iter().any(|id| id.starts_with('_')));
    for id in ["_user", "_everyone"] {
        assert_error(
            &server
                .patch(
                    &format!("/api/roles/{id}"),
                    Some(&admin),
                    json!({"name": "x"}),
                )
                .await,
            "NOT_ALLOWED",
        );
        assert_error(
            &server
                .delete(&format!("/api/roles/{id}"), Some(&admin))
                .await,
            "NOT_ALLOWED",
        );
    }
    assert_error(&server.get("/api/roles/123", None).await, "NOT_FOUND");
}

#[tokio::test]
async fn creating_roles_needs_manage_roles_and_only_held_permissions() {
    let (server, _, admin) = with_admin().await;
    let (member_id, member) = server.user("member").await;
    let r = server
        .post(
            "/api/roles",
            Some(&member),
            json!({"name": "x", "permissions": {}}),
        )
        .await;
    assert_eq!(
        assert_error(&r, "NOT_ALLOWED")["missingPermission"],
        "manageRoles"
    );
    assert_error(
        &server
            .post("/api/roles", None, json!({"name": "x", "permissions": {}}))
            .await,
        "NOT_ALLOWED",
    );
    let r = server
        .post("/api/roles", Some(&admin), json!({"name": "x"}))
        .await;
    assert_eq!(
        assert_error(&r, "INCOMPLETE_PARAMETERS")["missing"],
        "permissions"
    );
    let r = server
        .post(
            "/api/roles",
            Some(&admin),
            json!({"name": "x", "permissions": {"fly": true}}),
        )
        .await;
    assert_error(&r, "INVALID_PARAMETER_TYPE");
    let r = server
        .post(
            "/api/roles",
            Some(&admin),
            json!({"name": "x", "permissions": {"readMessages": 1}}),
        )
        .await;
    assert_error(&r, "INVALID_PARAMETER_TYPE");
    let r = server
        .post(
            "/api/roles",
            Some(&admin),
            json!({"name": "x".repeat(33), "permissions": {}}),
        )
        .await;
    assert_error(&r, "INVALID_NAME");

    // A role manager who lacks manageServer cannot create a role mentioning it, even as false.
    let manager = create_role(
        &server,
        &admin,
        "Manager",
        json!({"manageRoles": true, "grantRoles": true}),
    )
    .await;
    assert_eq!(give(&server, &admin, &member_id, &manager).await.0, 200);
    for value in [true, false] {
        let r = server
            .post(
                "/api/roles",
                Some(&member),
                json!({"name": "y", "permissions": {"manageServer": value}}),
            )
            .await;
        assert_eq!(
            assert_error(&r, "NOT_ALLOWED")["missingPermission"],
            "manageServer"
        );
    }
    let before = order(&server).await;
    let helper = create_role(&server, &member, "Helper", json!({"grantRoles": false})).await;
    let (_, role) = server.get(&format!("/api/roles/{helper}"), None).await;
    assert_eq!(
        role["role"],
        json!({"id": helper, "name": "Helper", "permissions": {"grantRoles": false}})
    );
    // Placed right under the creator's most prioritized role.
    let after = order(&server).await;
    let manager_at = after.iter().position(|r| *r == manager).unwrap();
    assert_eq!(after[manager_at + 1], helper);
    assert_eq!(after.len(), before.len() + 1);
}

#[tokio::test]
async fn roles_above_you_cannot_be_changed_deleted_or_granted() {
    let (server, _, admin) = with_admin().await;
    let (member_id, member) = server.user("member").await;
    let (other_id, _) = server.user("other").await;
    let manager = create_role(
        &server,
        &admin,
        "Manager",
        json!({"manageRoles": true, "grantRoles": true}),
    )
    .await;
    let peer = create_role(&server, &admin, "Peer", json!({})).await;
    give(&server, &admin, &member_id, &manager).await;
    // Admin ranks above Manager; Peer was placed under Admin too, above Manager.
    let o = order(&server).await;
    assert!(o.iter().position(|r| *r == peer) < o.iter().position(|r| *r == manager));
    assert_error(
        &server
            .patch(
                &format!("/api/roles/{peer}"),
                Some(&member),
                json!({"name": "z"}),
            )
            .await,
        "NOT_ALLOWED",
    );
    assert_error(
        &server
            .delete(&format!("/api/roles/{peer}"), Some(&member))
            .await,
        "NOT_ALLOWED",
    );
    assert_error(
        &give(&server, &member, &other_id, &peer).await,
        "NOT_ALLOWED",
    );
    assert_error(
        &server
            .patch(
                &format!("/api/roles/{manager}"),
                Some(&member),
                json!({"name": "z"}),
            )
            .await,
        "NOT_ALLOWED",
    );
    // A role the member created sits below them and is theirs to manage.
    let below = create_role(&server, &member, "Below", json!({"sendMessages": true})).await;
    assert_eq!(
        server
            .patch(
                &format!("/api/roles/{below}"),
                Some(&member),
                json!({"name": "Renamed"})
            )
            .await
            .0,
        200
    );
    let r = server
        .patch(
            &format!("/api/roles/{below}"),
            Some(&member),
            json!({"permissions": {"manageUsers": true}}),
        )
        .await;
    assert_eq!(
        assert_error(&r, "NOT_ALLOWED")["missingPermission"],
        "manageUsers"
    );
    assert_eq!(
        server.get(&format!("/api/roles/{below}"), None).await.1["role"]["name"],
        "Renamed"
    );
    assert_eq!(give(&server, &member, &other_id, &below).await.0, 200);
    assert_eq!(
        server
            .delete(&format!("/api/roles/{below}"), Some(&member))
            .await
            .0,
        200
    );
    assert_error(
        &server.get(&format!("/api/roles/{below}"), None).await,
        "NOT_FOUND",
    );
    assert!(!order(&server).await.contains(&below));
    assert_eq!(
        server
            .get(&format!("/api/users/{other_id}/roles"), None)
            .await
            .1["roleIDs"],
        json!([])
    );
}

#[tokio::test]
async fn granting_and_taking_roles() {
    let (server, _, admin) = with_admin().await;
    let (user_id, user) = server.user("user").await;
    let mods = create_role(
        &server,
        &admin,
        "Mods",
        json!({"manageUsers": true, "uploadImages": false}),
    )
    .await;
    assert_error(&give(&server, &user, &user_id, &mods).await, "NOT_ALLOWED");
    assert_error(
        &give(&server, &admin, &user_id, "_user").await,
        "NOT_ALLOWED",
    );
    assert_error(&give(&server, &admin, &user_id, "999").await, "NOT_FOUND");
    assert_error(&give(&server, &admin, "999", &mods).await, "NOT_FOUND");
    let r = server
        .post(
            &format!("/api/users/{user_id}/roles"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(
        assert_error(&r, "INCOMPLETE_PARAMETERS")["missing"],
        "roleID"
    );
    assert_eq!(give(&server, &admin, &user_id, &mods).await.0, 200);
    assert_error(
        &give(&server, &admin, &user_id, &mods).await,
        "ALREADY_PERFORMED",
    );
    let (_, roles) = server
        .get(&format!("/api/users/{user_id}/roles"), None)
        .await;
    assert_eq!(roles["roleIDs"], json!([mods]));
    let (_, perms) = server
        .get(&format!("/api/users/{user_id}/permissions"), None)
        .await;
    assert_eq!(perms["permissions"]["manageUsers"], true);
    assert_eq!(perms["permissions"]["uploadImages"], false);
    assert_eq!(perms["permissions"]["sendMessages"], true);
    assert_eq!(perms["permissions"]["readMessages"], true);
    assert_eq!(perms["permissions"].as_object().unwrap().len(), 13);
    // The permission is live at once: the user can now patch other users.
    let (other_id, _) = server.user("other").await;
    assert_eq!(
        server
            .patch(
                &format!("/api/users/{other_id}"),
                Some(&user),
                json!({"flair": "x"})
            )
            .await
            .0,
        200
    );
    let path = format!("/api/users/{user_id}/roles/{mods}");
    assert_error(&server.delete(&path, Some(&user)).await, "NOT_ALLOWED");
    assert_eq!(server.delete(&path, Some(&admin)).await.0, 200);
    assert_error(
        &server.delete(&path, Some(&admin)).await,
        "ALREADY_PERFORMED",
    );
    let (_, perms) = server
        .get(&format!("/api/users/{user_id}/permissions"), None)
        .await;
    assert_eq!(perms["permissions"]["manageUsers"], false);
    assert_error(
        &server.get("/api/users/999/permissions", None).await,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn the_order_of_a_users_role_list_has_no_effect_only_the_role_order_does() {
    let (server, _, admin) = with_admin().await;
    let (a_id, _) = server.user("a").await;
    let (b_id, _) = server.user("b").await;
    let allow = create_role(&server, &admin, "Allow", json!({"manageEmotes": true})).await;
    let deny = create_role(&server, &admin, "Deny", json!({"manageEmotes": false})).await;
    // a gets allow then deny, b gets deny then allow.
    give(&server, &admin, &a_id, &allow).await;
    give(&server, &admin, &a_id, &deny).await;
    give(&server, &admin, &b_id, &deny).await;
    give(&server, &admin, &b_id, &allow).await;
    let emotes = |v: Value| v["permissions"]["manageEmotes"].clone();
    // "Deny" was created last, right under Admin, so it ranks above "Allow".
    assert_eq!(
        emotes(
            server
                .get(&format!("/api/users/{a_id}/permissions"), None)
                .await
                .1
        ),
        false
    );
    assert_eq!(
        emotes(
            server
                .get(&format!("/api/users/{b_id}/permissions"), None)
                .await
                .1
        ),
        false
    );
    let mut o = order(&server).await;
    let (i, j) = (
        o.iter().position(|r| *r == allow).unwrap(),
        o.iter().position(|r| *r == deny).unwrap(),
    );
    o.swap(i, j);
    assert_eq!(
        server
            .patch("/api/roles/order", Some(&admin), json!({"roleIDs": o}))
            .await
            .0,
        200
    );
    assert_eq!(order(&server).await, o);
    assert_eq!(
        emotes(
            server
                .get(&format!("/api/users/{a_id}/permissions"), None)
                .await
                .1
        ),
        true
    );
    assert_eq!(
        emotes(
            server
                .get(&format!("/api/users/{b_id}/permissions"), None)
                .await
                .1
        ),
        true
    );
}

#[tokio::test]
async fn reordering_rules() {
    let (server, _, admin) = with_admin().await;
    let (member_id, member) = server.user("member").await;
    let manager = create_role(&server, &admin, "Manager", json!({"manageRoles": true})).await;
    give(&server, &admin, &member_id, &manager).await;
    let low1 = create_role(&server, &member, "Low1", json!({})).await;
    let low2 = create_role(&server, &member, "Low2", json!({})).await;
    let current = order(&server).await;
    // Not a permutation.
    let r = server
        .patch(
            "/api/roles/order",
            Some(&admin),
            json!({"roleIDs": current[1..]}),
        )
        .await;
    assert_error(&r, "INVALID_PARAMETER_TYPE");
    let mut doubled = current.clone();
    doubled.push(current[0].clone());
    assert_error(
        &server
            .patch(
                "/api/roles/order",
                Some(&admin),
                json!({"roleIDs": doubled}),
            )
            .await,
        "INVALID_PARAMETER_TYPE",
    );
    assert_error(
        &server
            .patch("/api/roles/order", Some(&admin), json!({"roleIDs": "nope"}))
            .await,
        "INVALID_PARAMETER_TYPE",
    );
    assert_error(
        &server
            .patch("/api/roles/order", Some(&member), json!({}))
            .await,
        "INCOMPLETE_PARAMETERS",
    );
    let (_, nobody) = server.user("nobody").await;
    assert_eq!(
        assert_error(
            &server
                .patch(
                    "/api/roles/order",
                    Some(&nobody),
                    json!({"roleIDs": current})
                )
                .await,
            "NOT_ALLOWED"
        )["missingPermission"],
        "manageRoles"
    );
    // The member may swap the two roles below them...
    let mut swapped = current.clone();
    let (i, j) = (
        current.iter().position(|r| *r == low1).unwrap(),
        current.iter().position(|r| *r == low2).unwrap(),
    );
    swapped.swap(i, j);
    assert_eq!(
        server
            .patch(
                "/api/roles/order",
                Some(&member),
                json!({"roleIDs": swapped})
            )
            .await
            .0,
        200
    );
    // ...but not move their own role or anything above it.
    let mut lifted = swapped.clone();
    let m = lifted.iter().position(|r| *r == manager).unwrap();
    lifted.swap(0, m);
    assert_error(
        &server
            .patch(
                "/api/roles/order",
                Some(&member),
                json!({"roleIDs": lifted}),
            )
            .await,
        "NOT_ALLOWED",
    );
    assert_eq!(order(&server).await, swapped);
}

#[tokio::test]
async fn reordering_may_not_cost_the_requester_manage_roles() {
    let (server, _, admin) = with_admin().await;
    let (member_id, member) = server.user("member").await;
    let manager = create_role(&server, &admin, "Manager", json!({"manageRoles": true})).await;
    let cosmetic = create_role(&server, &admin, "Cosmetic", json!({})).await;
    let blocker = create_role(&server, &admin, "Blocker", json!({"manageRoles": false})).await;
    let admin_role = order(&server).await[0].clone();
    let arranged = vec![
        admin_role.clone(),
        cosmetic.clone(),
        manager.clone(),
        blocker.clone(),
    ];
    assert_eq!(
        server
            .patch(
                "/api/roles/order",
                Some(&admin),
                json!({"roleIDs": arranged.clone()})
            )
            .await
            .0,
        200
    );
    for role in [&cosmetic, &manager, &blocker] {
        assert_eq!(give(&server, &admin, &member_id, role).await.0, 200);
    }
    // Cosmetic is the member's top role and says nothing about manageRoles; moving Blocker
    // above Manager would take manageRoles away from the member, so it is refused.
    let locked_out = vec![admin_role, cosmetic, blocker, manager];
    let r = server
        .patch(
            "/api/roles/order",
            Some(&member),
            json!({"roleIDs": locked_out}),
        )
        .await;
    assert_eq!(
        assert_error(&r, "NOT_ALLOWED")["missingPermission"],
        "manageRoles"
    );
    assert_eq!(order(&server).await, arranged);
}

#[tokio::test]
async fn guests_get_only_what_everyone_gives() {
    let (mut first, _, admin) = with_admin().await;
    let server = &first;
    let r = server
        .patch("/api/settings", None, json!({"name": "x"}))
        .await;
    assert_eq!(
        assert_error(&r, "NOT_ALLOWED")["missingPermission"],
        "manageServer"
    );
    // Roles survive a restart: the index is rebuilt from storage.
    let role = create_role(server, &admin, "Persisted", json!({"managePins": true})).await;
    let data = server.data.clone();
    // SIGKILL, and restart on the same data directory (kept alive by `first`).
    first.kill();
    let server = TestServer::spawn_on(&data, &["--admin", "root"]).await;
    assert!(order(&server).await.contains(&role));
}

#[tokio::test]
async fn a_role_holding_permissions_you_lack_cannot_be_renamed_emptied_moved_or_deleted() {
    let (server, _, admin) = with_admin().await;
    let (mod_id, moderator) = server.user("moderator").await;
    let mods = create_role(
        &server,
        &admin,
        "Mods",
        json!({"manageRoles": true, "grantRoles": true}),
    )
    .await;
    let owners = create_role(&server, &admin, "Owners", json!({"manageServer": true})).await;
    let plain = create_role(&server, &admin, "Plain", json!({"sendMessages": true})).await;
    // Admin, then Mods above Owners and Plain: the moderator outranks both.
    let mut o = order(&server).await;
    o.retain(|r| *r != mods);
    o.insert(1, mods.clone());
    let r = server
        .patch("/api/roles/order", Some(&admin), json!({"roleIDs": o}))
        .await;
    assert_eq!(r.0, 200, "{:?}", r.1);
    give(&server, &admin, &mod_id, &mods).await;

    let refusals = [
        server
            .patch(
                &format!("/api/roles/{owners}"),
                Some(&moderator),
                json!({"name": "Nobody"}),
            )
            .await,
        server
            .patch(
                &format!("/api/roles/{owners}"),
                Some(&moderator),
                json!({"permissions": {}}),
            )
            .await,
        server
            .delete(&format!("/api/roles/{owners}"), Some(&moderator))
            .await,
    ];
    for r in &refusals {
        assert_eq!(
            assert_error(r, "NOT_ALLOWED")["missingPermission"],
            "manageServer"
        );
    }
    // Moving Owners below Plain is managing it too.
    let mut swapped = order(&server).await;
    let (a, b) = (
        swapped.iter().position(|r| *r == owners).unwrap(),
        swapped.iter().position(|r| *r == plain).unwrap(),
    );
    swapped.swap(a, b);
    assert_error(
        &server
            .patch(
                "/api/roles/order",
                Some(&moderator),
                json!({"roleIDs": swapped}),
            )
            .await,
        "NOT_ALLOWED",
    );
    let (_, role) = server.get(&format!("/api/roles/{owners}"), None).await;
    assert_eq!(role["role"]["name"], "Owners");
    assert_eq!(role["role"]["permissions"]["manageServer"], true);
    // Roles the moderator may manage still work.
    let r = server
        .patch(
            &format!("/api/roles/{plain}"),
            Some(&moderator),
            json!({"name": "Renamed"}),
        )
        .await;
    assert_eq!(r.0, 200, "{:?}", r.1);
    assert_eq!(
        server
            .delete(&format!("/api/roles/{plain}"), Some(&moderator))
            .await
            .0,
        200
    );
}

/// What `GET /api/roles/:id` says an internal role allows, as `readMessages`.
async fn internal_reads(server: &TestServer, role: &str) -> Value {
    let (status, body) = server.get(&format!("/api/roles/{role}"), None).await;
    assert_eq!(status, 200, "{body}");
    body["role"]["permissions"]["readMessages"].clone()
}

/// Whether `session` (None: a guest) may read the channel's history.
async fn can_read(server: &TestServer, session: Option<&str>, channel: &str) -> bool {
    let r = server
        .get(&format!("/api/channels/{channel}/messages"), session)
        .await;
    match r.0.as_u16() {
        200 => true,
        _ => {
            assert_eq!(r.1["error"]["code"], "NOT_ALLOWED", "{}", r.1);
            false
        }
    }
}

#[tokio::test]
async fn read_access_presets_a_new_server_starts_as_members_and_manage_server_switches() {
    let mut server = TestServer::spawn_with_defaults(&["--admin", "root"]).await;
    let (_, admin) = server.user("root").await;
    let (_, member) = server.user("member").await;
    let channel = server.create_channel(&admin, "general").await;

    // A new server: logged-in users read, guests do not.
    let (_, settings) = server.get("/api/settings", None).await;
    assert_eq!(settings["settings"]["readAccess"], "members");
    assert_eq!(internal_reads(&server, "_user").await, true);
    assert_eq!(internal_reads(&server, "_everyone").await, false);
    assert!(can_read(&server, Some(&member), &channel).await);
    assert!(!can_read(&server, None, &channel).await);
    let (_, list) = server.get("/api/channels", None).await;
    assert_eq!(list["channels"], json!([]));

    // Only manageServer changes it, only to a known preset; a refusal changes nothing.
    assert_error(
        &server
            .patch(
                "/api/settings",
                Some(&member),
                json!({"readAccess": "public"}),
            )
            .await,
        "NOT_ALLOWED",
    );
    let bad = assert_error(
        &server
            .patch(
                "/api/settings",
                Some(&admin),
                json!({"readAccess": "open", "name": "X"}),
            )
            .await,
        "INVALID_PARAMETER_TYPE",
    );
    assert_eq!(bad["parameter"], "readAccess");
    let (_, settings) = server.get("/api/settings", None).await;
    assert_eq!(settings["settings"]["readAccess"], "members");
    assert_ne!(settings["settings"]["name"], "X");

    // `spec`: exactly the spec's table; connected clients hear of it.
    let mut socket = server.events(Some(&member)).await;
    let r = server
        .patch("/api/settings", Some(&admin), json!({"readAccess": "spec"}))
        .await;
    assert_eq!(r, (reqwest::StatusCode::OK, json!({})));
    let update = socket.expect("server-settings/update").await;
    assert_eq!(update["settings"]["readAccess"], "spec");
    let role = socket.expect("role/update").await;
    assert_eq!(role["role"]["id"], "_user");
    assert_eq!(role["role"]["permissions"], json!({"sendMessages": true}));
    assert_eq!(internal_reads(&server, "_user").await, Value::Null);
    assert_eq!(internal_reads(&server, "_everyone").await, false);
    assert!(!can_read(&server, Some(&member), &channel).await);
    assert!(!can_read(&server, None, &channel).await);

    // Channel overrides work the same under every preset.
    let r = server
        .patch(
            &format!("/api/channels/{channel}/role-permissions"),
            Some(&admin),
            json!({"rolePermissions": {"_user": {"readMessages": true}}}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert!(can_read(&server, Some(&member), &channel).await);
    assert!(!can_read(&server, None, &channel).await);

    // `public`: guests read too.
    let r = server
        .patch(
            "/api/settings",
            Some(&admin),
            json!({"readAccess": "public"}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(internal_reads(&server, "_everyone").await, true);
    assert!(can_read(&server, None, &channel).await);

    // The setting survives a restart; the first-start flag no longer changes it.
    let data = server.data.clone();
    assert!(server.signal_and_wait("TERM").success());
    let server = TestServer::spawn_on(&data, &["--read-access", "spec"]).await;
    let (_, settings) = server.get("/api/settings", None).await;
    assert_eq!(settings["settings"]["readAccess"], "public");
    assert!(can_read(&server, None, &channel).await);
    let logs = server.logs.lock().unwrap().join("\n");
    assert!(
        logs.contains("only applies at a data directory's first start"),
        "{logs}"
    );
}

#[tokio::test]
async fn the_first_start_flag_chooses_the_preset() {
    let server = TestServer::spawn_with(&["--read-access", "spec", "--admin", "root"]).await;
    let (_, admin) = server.user("root").await;
    let channel = server.create_channel(&admin, "general").await;
    let (_, plain) = server.user("plain").await;
    let (_, settings) = server.get("/api/settings", None).await;
    assert_eq!(settings["settings"]["readAccess"], "spec");
    assert!(!can_read(&server, Some(&plain), &channel).await);
    // Holders of a role that allows reading still read.
    assert!(can_read(&server, Some(&admin), &channel).await);
}

/// A moderator with manageUsers and manageChannels, as an attacker: he cannot take the
/// administrator's account (email, flair, deletion) nor lock the Admin role out of a channel;
/// after each refusal nothing changed. Over users ranked below him, he keeps his powers.
#[tokio::test]
async fn a_moderator_has_no_power_over_those_ranked_above_him() {
    let (server, admin_id, admin) = with_admin().await;
    let (mod_id, moderator) = server.user("moderator").await;
    let (member_id, _) = server.user("member").await;
    let moderators = create_role(
        &server,
        &admin,
        "Moderators",
        json!({"manageUsers": true, "manageChannels": true, "manageRoles": true, "readMessages": true}),
    )
    .await;
    give(&server, &admin, &mod_id, &moderators).await;
    // Created after Moderators, Senior ranks above them (under Admin).
    let senior = create_role(&server, &admin, "Senior", json!({})).await;
    let helpers = create_role(&server, &moderator, "Helpers", json!({})).await;
    give(&server, &admin, &member_id, &helpers).await;
    let channel = server.create_channel(&admin, "staff").await;
    let (_, roles) = server.get("/api/roles", None).await;
    let admin_role = roles["roles"][0]["id"].as_str().unwrap().to_owned();
    let admin_path = format!("/api/users/{admin_id}");
    let admin_before = server.get(&admin_path, None).await.1;

    // (a) The administrator's email (where lost-password links go), flair and account.
    let path = format!("/api/users/{admin_id}");
    assert_error(
        &server
            .patch(
                &path,
                Some(&moderator),
                json!({"email": "mallory@evil.test"}),
            )
            .await,
        "NOT_YOURS",
    );
    assert_error(
        &server
            .patch(&path, Some(&moderator), json!({"flair": "pwned"}))
            .await,
        "NOT_ALLOWED",
    );
    assert_error(&server.delete(&path, Some(&moderator)).await, "NOT_ALLOWED");
    assert_eq!(server.get(&admin_path, None).await.1, admin_before);
    let (status, _) = server.get(&format!("/api/sessions/{admin}"), None).await;
    assert_eq!(status, 200, "the administrator is still logged in");
    // Nobody sets another user's email, not even the administrator.
    assert_error(
        &server
            .patch(
                &format!("/api/users/{member_id}"),
                Some(&admin),
                json!({"email": "x@example.test"}),
            )
            .await,
        "NOT_YOURS",
    );

    // (b) Channel overrides on the Admin role and on any role above his own are refused; the
    // administrator still reads the channel.
    let overrides = format!("/api/channels/{channel}/role-permissions");
    for role in [&admin_role, &senior] {
        assert_error(
            &server
                .patch(
                    &overrides,
                    Some(&moderator),
                    json!({"rolePermissions": { (role.as_str()): {"readMessages": false, "manageChannels": false} }}),
                )
                .await,
            "NOT_ALLOWED",
        );
    }
    let (_, set) = server.get(&overrides, None).await;
    assert!(set["rolePermissions"].get(&admin_role).is_none(), "{set}");
    assert!(set["rolePermissions"].get(&senior).is_none(), "{set}");
    let (status, _) = server
        .get(&format!("/api/channels/{channel}/messages"), Some(&admin))
        .await;
    assert_eq!(status, 200);

    // Below him, he moderates: a flair, an override, a deletion.
    let member_path = format!("/api/users/{member_id}");
    let (status, body) = server
        .patch(&member_path, Some(&moderator), json!({"flair": "new"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .patch(
            &overrides,
            Some(&moderator),
            json!({"rolePermissions": {
                (helpers.as_str()): {"readMessages": false},
                (moderators.as_str()): {"readMessages": true}
            }}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.delete(&member_path, Some(&moderator)).await;
    assert_eq!(status, 200, "{body}");
}
