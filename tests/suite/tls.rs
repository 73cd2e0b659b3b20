//! HTTPS: `--tls-cert` / `--tls-key`, the API and every WebSocket gateway over TLS, and the
//! certificate swapped on SIGHUP without dropping connections.

use crate::common;

use common::{decentd, self_signed, tls_client, TestServer};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

/// A server on HTTPS with a fresh self-signed certificate in `dir` (`server.crt`/`.key`).
async fn https_server(dir: &std::path::Path) -> TestServer {
    let (cert, key) = self_signed(dir, "server");
    TestServer::spawn_with(&[
        "--admin",
        "alice",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
    .await
}

#[tokio::test]
async fn the_api_and_every_gateway_speak_https() {
    let tmp = tempfile::tempdir().unwrap();
    let server = https_server(tmp.path()).await;
    assert!(server.url("/").starts_with("https://"));

    let (status, api) = server.get("/api", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api["useSecureProtocol"], true, "TLS makes it secure: {api}");
    assert!(server.logged("\"scheme\":\"https\"") > 0);

    // Plain HTTP on the HTTPS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/api", server.addr))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");

    // Chat over wss:// at `/`.
    let (_, session) = server.user("alice").await;
    let channel = server.create_channel(&session, "general").await;
    let mut events = server.events(Some(&session)).await;
    server.post_message(&session, &channel, "over TLS").await;
    let message = events.expect("message/new").await;
    assert_eq!(message["message"]["text"], "over TLS");

    // A bot at `/v2` and a SignalR client at `/hub`.
    let key = server.license(&session, &["read", "say"]).await;
    let (_bot, hello) = server.bot_ready(&key).await;
    assert_eq!(hello["type"], "hello");
    let mut hub = server.hub(Some(&session)).await;
    server.post_message(&session, &channel, "to the hub").await;
    let event = hub.expect_event("message/new").await;
    assert_eq!(event["message"]["text"], "to the hub");
}

/// A socket that does not read while a few hundred kilobytes of events are sent (more than the
/// kernel buffers hold) gets them all, in order, once it reads: the frames and the TLS records
/// the kernel could not take wait in the server and go out as the client reads.
#[tokio::test]
async fn a_socket_that_falls_behind_gets_every_event_over_tls() {
    use futures_util::StreamExt;
    let tmp = tempfile::tempdir().unwrap();
    let server = https_server(tmp.path()).await;
    let (_, session) = server.user("alice").await;
    let channel = server.create_channel(&session, "general").await;
    // A guest (the channel is public) with a small receive buffer.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(server.tls.clone().unwrap())
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(server.ws_url(), tls)
        .await
        .unwrap();
    let text = "x".repeat(1500);
    for i in 0..200 {
        server
            .post_message(&session, &channel, &format!("{i} {text}"))
            .await;
    }
    let mut next = 0;
    while next < 200 {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the events keep coming")
            .unwrap()
            .unwrap();
        let event: serde_json::Value = match frame.into_text() {
            Ok(text) => serde_json::from_str(&text).unwrap(),
            Err(_) => continue,
        };
        if event["evt"] == "message/new" {
            let got = event["data"]["message"]["text"].as_str().unwrap();
            assert!(
                got.starts_with(&format!("{next} ")),
                "message {next}: {got:.20}"
            );
            next += 1;
        }
    }
    assert_eq!(server.logged("too slow"), 0);
}

/// The leaf certificate a fresh TLS connection to the server is shown.
async fn presented_certificate(server: &TestServer, trusting: &[u8]) -> Result<Vec<u8>, String> {
    let connector = tokio_rustls::TlsConnector::from(tls_client(trusting));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, session) = tls.get_ref();
    Ok(session.peer_certificates().unwrap()[0].to_vec())
}

#[tokio::test]
async fn sighup_swaps_the_certificate_and_keeps_open_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let server = https_server(tmp.path()).await;
    let first = std::fs::read(tmp.path().join("server.crt")).unwrap();
    let (_, session) = server.user("alice").await;
    let channel = server.create_channel(&session, "general").await;
    let mut events = server.events(Some(&session)).await;
    assert!(presented_certificate(&server, &first).await.is_ok());

    // A new certificate and key in place of the old ones, then SIGHUP.
    let staged = tmp.path().join("staged");
    std::fs::create_dir(&staged).unwrap();
    let (cert, key) = self_signed(&staged, "next");
    let second = std::fs::read(&cert).unwrap();
    std::fs::copy(&cert, tmp.path().join("server.crt")).unwrap();
    std::fs::copy(&key, tmp.path().join("server.key")).unwrap();
    server.signal("HUP");
    server.until_logged("TLS certificate reloaded", 1).await;

    // New handshakes present the new certificate; a client that trusts only the old one
    // refuses it.
    let shown = presented_certificate(&server, &second).await.unwrap();
    let second_der = rustls::pki_types::pem::PemObject::from_pem_slice(&second)
        .map(|c: rustls::pki_types::CertificateDer| c.to_vec())
        .unwrap();
    assert_eq!(shown, second_der);
    assert!(presented_certificate(&server, &first).await.is_err());

    // The socket opened before the reload still gets events.
    let after = common::tls_client(&second);
    let client = reqwest::Client::builder()
        .use_preconfigured_tls((*after).clone())
        .build()
        .unwrap();
    let answer = client
        .post(server.url("/api/messages"))
        .header("X-Session-ID", &session)
        .json(&json!({"channelID": channel, "text": "after the reload"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let message = events.expect("message/new").await;
    assert_eq!(message["message"]["text"], "after the reload");

    // A broken file on the next reload: an error in the log, and the certificate in use stays.
    std::fs::write(tmp.path().join("server.crt"), "not a certificate").unwrap();
    server.signal("HUP");
    server.until_logged("the one in use stays", 1).await;
    assert_eq!(
        presented_certificate(&server, &second).await.unwrap(),
        second_der
    );
}

#[test]
fn bad_tls_settings_stop_the_start_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(tmp.path(), "a");
    let (other_cert, _) = self_signed(tmp.path(), "b");
    let cases: [(&[&str], &str); 3] = [
        (
            &["--tls-cert", cert.to_str().unwrap()],
            "--tls-cert needs --tls-key",
        ),
        (
            &[
                "--tls-cert",
                "/nonexistent.crt",
                "--tls-key",
                key.to_str().unwrap(),
            ],
            "--tls-cert /nonexistent.crt",
        ),
        (
            &[
                "--tls-cert",
                other_cert.to_str().unwrap(),
                "--tls-key",
                key.to_str().unwrap(),
            ],
            "is not the key of the certificate",
        ),
    ];
    for (args, expected) in cases {
        let out = decentd()
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data"])
            .arg(tmp.path().join("data"))
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
