//! The four example plugins (built by `plugins/build.sh` into `plugins/dist/`) loaded into a real
//! server and exercised over HTTP and WebSocket.

use crate::common;

use common::{assert_error, install_example as install, sample, PluginWorld as World, TestServer};
use serde_json::json;
use std::time::Duration;

async fn world(examples: &[(&str, Option<&str>)]) -> World {
    World::spawn(|plugins| {
        for (name, config) in examples {
            install(plugins, name, *config);
        }
    })
    .await
}

#[tokio::test]
async fn the_word_filter_masks_or_rejects_listed_words() {
    let w = world(&[(
        "word-filter",
        Some("mode = \"rewrite\"\nwords = [\"darn\"]\n"),
    )])
    .await;
    let (status, v) = w.post_as(&w.admin, "Well DARN it").await;
    assert_eq!(status, 200, "{v}");
    // Whole words only: "darning" keeps its letters.
    let (status, v) = w.post_as(&w.admin, "darning socks").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(w.texts().await, vec!["Well **** it", "darning socks"]);

    install(
        w.plugins.path(),
        "word-filter",
        Some("mode = \"reject\"\nwords = [\"darn\"]\n"),
    );
    w.reload("word-filter").await;
    let response = w.post_as(&w.admin, "darn again").await;
    let error = assert_error(&response, "REJECTED_BY_PLUGIN");
    assert_eq!(error["plugin"], "word-filter");
    assert_eq!(error["reason"], "the message contains a blocked word");
    assert_eq!(w.post_as(&w.admin, "all clean").await.0, 200);
    assert_eq!(
        w.texts().await,
        vec!["Well **** it", "darning socks", "all clean"]
    );
}

#[tokio::test]
async fn dice_rolls_are_commands_answered_by_say_or_tell() {
    let w = world(&[("dice", None)]).await;
    w.server.register("ann", "password1").await;
    let ann = w.server.login("ann", "password1").await;
    let mut ann_socket = w.server.events(Some(&ann)).await;
    let mut root_socket = w.server.events(Some(&w.admin)).await;

    let (status, v) = w.post_as(&ann, "\\roll 3d6").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v, json!({"command": "roll", "plugin": "dice"}));
    let said = ann_socket.expect("message/new").await["message"].clone();
    assert_eq!(
        said["authorUsername"], "dice",
        "said by the bot user: {said}"
    );
    let text = said["text"].as_str().unwrap();
    assert!(text.starts_with("ann rolled 3d6: "), "{text}");
    let (dice, total) = text["ann rolled 3d6: ".len()..].split_once(" = ").unwrap();
    let rolls: Vec<u32> = dice.split(" + ").map(|d| d.parse().unwrap()).collect();
    assert_eq!(rolls.len(), 3);
    assert!(rolls.iter().all(|r| (1..=6).contains(r)));
    assert_eq!(total, format!("**{}**", rolls.iter().sum::<u32>()));
    let history = w.history().await;
    assert_eq!(
        history.len(),
        1,
        "the command itself is not stored: {history:?}"
    );
    let (_, bot) = w
        .server
        .get(
            &format!("/api/users/{}", said["authorID"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(bot["user"]["bot"], true);

    // Bad input: a private usage hint to the invoker only.
    w.post_as(&ann, "\\roll banana").await;
    let told = ann_socket.expect("plugin/tell").await;
    assert_eq!(told["plugin"], "dice");
    assert!(told["text"]
        .as_str()
        .unwrap()
        .starts_with("usage: \\roll NdM"));
    let root_events = root_socket.drain(Duration::from_millis(300)).await;
    assert!(
        root_events.iter().all(|(e, _)| e != "plugin/tell"),
        "tells are private: {root_events:?}"
    );

    // `^roll` is owner-only: refused without manageServer, private with it.
    assert_error(&w.post_as(&ann, "^roll 1d6").await, "NOT_ALLOWED");
    let (status, _) = w.post_as(&w.admin, "^roll 1d20").await;
    assert_eq!(status, 200);
    let told = root_socket.expect("plugin/tell").await;
    assert!(
        told["text"]
            .as_str()
            .unwrap()
            .starts_with("root rolled 1d20: "),
        "{told}"
    );

    // A backslash word that no plugin owns is an ordinary message.
    assert_eq!(w.post_as(&ann, "\\shrug whatever").await.0, 200);
    let texts = w.texts().await;
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert_eq!(texts[1], "\\shrug whatever");
}

#[tokio::test]
async fn welcome_greets_new_users_in_its_channel() {
    let w = world(&[("welcome", None)]).await;
    // Point it at the channel, then reload it.
    let config = format!(
        "channel = \"{}\"\ntext = \"Welcome aboard, {{name}}!\"\n",
        w.channel
    );
    install(w.plugins.path(), "welcome", Some(&config));
    w.reload("welcome").await;
    let mut socket = w.server.events(Some(&w.admin)).await;
    w.server.register("newbie", "password1").await;
    let said = socket.expect("message/new").await["message"].clone();
    assert_eq!(said["text"], "Welcome aboard, newbie!");
    assert_eq!(said["authorUsername"], "welcome");
    assert_eq!(said["channelID"], w.channel.as_str());
}

#[tokio::test]
async fn anti_spam_rejects_over_the_limit_and_tells_why_across_restarts() {
    let mut w = world(&[("anti-spam", Some("max = 3\nseconds = 600\n"))]).await;
    w.server.register("chatty", "password1").await;
    let chatty = w.server.login("chatty", "password1").await;
    let mut socket = w.server.events(Some(&chatty)).await;
    for i in 0..3 {
        let (status, v) = w.post_as(&chatty, &format!("message {i}")).await;
        assert_eq!(status, 200, "{v}");
    }
    let response = w.post_as(&chatty, "one too many").await;
    let error = assert_error(&response, "REJECTED_BY_PLUGIN");
    assert_eq!(error["plugin"], "anti-spam");
    let told = socket.expect("plugin/tell").await;
    assert_eq!(
        told["text"],
        "Slow down: at most 3 messages every 600 seconds."
    );
    // Others are not limited by chatty's window.
    assert_eq!(w.post_as(&w.admin, "hello").await.0, 200);

    // The window lives in the plugin's key-value space: it survives a restart.
    w.server.signal_and_wait("TERM");
    let dir = w.plugins.path().to_str().unwrap().to_owned();
    let data = w.server.data.clone();
    let restarted = TestServer::spawn_on(&data, &["--plugins", &dir, "--admin", "root"]).await;
    let chatty = restarted.login("chatty", "password1").await;
    let response = restarted
        .post(
            "/api/messages",
            Some(&chatty),
            json!({"channelID": w.channel, "text": "still?"}),
        )
        .await;
    assert_error(&response, "REJECTED_BY_PLUGIN");
    w.server = restarted;
}

#[tokio::test]
async fn chatbox_bots_hear_plugin_messages_as_chat_chatbox_but_not_plugin_commands() {
    let w = world(&[("dice", None)]).await;
    let key = w.server.license(&w.admin, &["read", "command"]).await;
    let (mut bot, _) = w.server.bot_ready(&key).await;
    let (status, v) = w.post("\\roll 2d6").await;
    assert_eq!(status, 200, "{v}");
    // The command belongs to the plugin, so the bot gets no `command` event; the plugin's
    // answer is a chatbox message by its bot user.
    let said = bot.expect("event").await;
    assert_eq!(said["event"], "chat_chatbox", "{said}");
    assert_eq!(said["name"], "dice");
    assert_eq!(said["user"]["name"], "dice");
    assert_eq!(said["user"]["bot"], true);
    assert!(said["rawText"]
        .as_str()
        .unwrap()
        .starts_with("root rolled 2d6: "));
    assert_eq!(said["channel"], w.channel.as_str());
}

#[tokio::test]
async fn pre_store_hooks_see_direct_messages_and_may_refuse_them() {
    let w = world(&[(
        "word-filter",
        Some("mode = \"reject\"\nwords = [\"darn\"]\n"),
    )])
    .await;
    let (bob, _) = w.server.user("bob").await;
    let path = format!("/api/users/{bob}/messages");
    let response = w
        .server
        .post(&path, Some(&w.admin), json!({ "text": "darn you" }))
        .await;
    let error = assert_error(&response, "REJECTED_BY_PLUGIN");
    assert_eq!(error["plugin"], "word-filter");
    let (status, body) = w
        .server
        .post(&path, Some(&w.admin), json!({ "text": "kind words" }))
        .await;
    assert_eq!(status, 200, "{body}");
    // Edits pass the hook too.
    let id = body["messageID"].as_str().unwrap();
    let response = w
        .server
        .patch(
            &format!("/api/direct-messages/{id}"),
            Some(&w.admin),
            json!({ "text": "darn edit" }),
        )
        .await;
    assert_error(&response, "REJECTED_BY_PLUGIN");

    install(
        w.plugins.path(),
        "word-filter",
        Some("mode = \"rewrite\"\nwords = [\"darn\"]\n"),
    );
    w.reload("word-filter").await;
    let (_, body) = w
        .server
        .post(&path, Some(&w.admin), json!({ "text": "well darn" }))
        .await;
    assert_eq!(body["message"]["text"], "well ****", "{body}");
}

#[tokio::test]
async fn commands_work_in_direct_messages_with_answers_to_the_sender_only() {
    let w = world(&[("dice", None)]).await;
    let (bob, bob_session) = w.server.user("bob").await;
    let mut root_socket = w.server.events(Some(&w.admin)).await;
    let mut bob_socket = w.server.events(Some(&bob_session)).await;
    let (status, v) = w
        .server
        .post(
            &format!("/api/users/{bob}/messages"),
            Some(&w.admin),
            json!({ "text": "\\roll 2d6" }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v, json!({"command": "roll", "plugin": "dice"}));
    let told = root_socket.expect("plugin/tell").await;
    assert_eq!(told["plugin"], "dice");
    assert!(
        told["text"]
            .as_str()
            .unwrap()
            .starts_with("root rolled 2d6: "),
        "{told}"
    );
    let bob_events = bob_socket.drain(Duration::from_millis(300)).await;
    assert!(
        bob_events
            .iter()
            .all(|(e, _)| e != "plugin/tell" && e != "dm/new" && e != "message/new"),
        "the answer is the sender's alone: {bob_events:?}"
    );
    // The command itself is not stored, and nothing went to a channel.
    let (_, body) = w
        .server
        .get(&format!("/api/users/{bob}/messages"), Some(&w.admin))
        .await;
    assert_eq!(body["messages"], json!([]));
    assert!(w.history().await.is_empty());
}

#[tokio::test]
async fn plugin_calls_show_in_the_metrics() {
    let w = World::spawn_with(
        |plugins| {
            install(
                plugins,
                "word-filter",
                Some("mode = \"reject\"\nwords = [\"darn\"]\n"),
            )
        },
        &["--metrics-listen", "127.0.0.1:0"],
    )
    .await;
    assert_eq!(w.post_as(&w.admin, "fine").await.0, 200);
    assert_error(&w.post_as(&w.admin, "darn").await, "REJECTED_BY_PLUGIN");
    let text = w.server.metrics().await;
    let calls = sample(
        &text,
        r#"decentd_plugin_calls_total{plugin="word-filter",call="hook"}"#,
    );
    assert_eq!(calls, Some(2.0), "{text}");
    let timed = sample(
        &text,
        r#"decentd_plugin_call_duration_seconds_count{plugin="word-filter",call="hook"}"#,
    );
    assert_eq!(timed, Some(2.0), "{text}");
}
