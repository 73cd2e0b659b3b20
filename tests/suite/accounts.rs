//! Account security extensions against the real binary: two-factor login (TOTP and recovery
//! codes, the guess limit), user search by any part of a name, and lost passwords, by mail to
//! a real SMTP sink and by `decentd reset-password`.

use crate::common;

use common::{assert_error, decentd, TestServer};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use totp_rs::{Builder, Secret, Totp};

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Waits until at least `needed` seconds are left of the current 30 s step, so that codes of
/// neighbouring steps computed now are still within the server's one step of skew when sent.
async fn fresh_step(needed: u64) {
    let left = 30 - now_secs() % 30;
    if left < needed {
        tokio::time::sleep(Duration::from_secs(left + 1)).await;
    }
}

fn authenticator(secret_base32: &str) -> Totp {
    let secret = Secret::try_from_base32(secret_base32).expect("a base32 secret");
    Builder::new().with_secret(secret).build().unwrap()
}

/// The code of the step `offset` steps from now.
fn code(t: &Totp, offset: i64) -> String {
    t.generate((now_secs() as i64 + offset * 30) as u64)
        .to_string()
}

async fn login(server: &TestServer, username: &str, password: &str, totp: Option<&str>) -> Value {
    let mut body = json!({"username": username, "password": password});
    if let Some(code) = totp {
        body["totp"] = json!(code);
    }
    server.post("/api/sessions", None, body).await.1
}

/// Enrolls and confirms two-factor login: the authenticator and the recovery codes.
async fn enable_two_factor(server: &TestServer, id: &str, session: &str) -> (Totp, Vec<String>) {
    let path = format!("/api/users/{id}/two-factor");
    let (status, body) = server
        .post(&path, Some(session), json!({"password": "password1"}))
        .await;
    assert!(status.is_success(), "{body}");
    let enrollment = &body["enrollment"];
    let t = authenticator(enrollment["secret"].as_str().unwrap());
    let (_, body) = server
        .post(
            &format!("{path}/confirm"),
            Some(session),
            json!({"code": code(&t, -1)}),
        )
        .await;
    let codes: Vec<String> = body["recoveryCodes"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (t, codes)
}

#[tokio::test]
async fn two_factor_login_from_enrolment_to_disabling() {
    let server = TestServer::spawn().await;
    let (id, session) = server.user("joe").await;
    let (_, other) = server.user("eve").await;
    let path = format!("/api/users/{id}/two-factor");

    let (_, body) = server.get(&path, Some(&session)).await;
    assert_eq!(
        body["twoFactor"],
        json!({"enabled": false, "pending": false, "recoveryCodesLeft": 0})
    );
    // One's own only; enrolling needs the password.
    assert_error(&server.get(&path, Some(&other)).await, "NOT_YOURS");
    assert_error(&server.get(&path, None).await, "NOT_ALLOWED");
    assert_error(
        &server
            .post(&path, Some(&session), json!({"password": "wrong!"}))
            .await,
        "INCORRECT_PASSWORD",
    );

    fresh_step(8).await;
    let (_, body) = server
        .post(&path, Some(&session), json!({"password": "password1"}))
        .await;
    let enrollment = &body["enrollment"];
    let uri = enrollment["uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains("joe") && uri.contains("secret="), "{uri}");
    let svg = enrollment["qrSVG"].as_str().unwrap();
    assert!(svg.contains("<svg") && svg.contains("</svg>"), "{svg}");
    let t = authenticator(enrollment["secret"].as_str().unwrap());
    // Pending: login does not ask for a code yet.
    assert!(login(&server, "joe", "password1", None).await["sessionID"].is_string());
    let (_, body) = server.get(&path, Some(&session)).await;
    assert_eq!(body["twoFactor"]["pending"], true);

    // A wrong first code is refused; a right one turns it on and gives ten recovery codes.
    let confirm = format!("{path}/confirm");
    let r = server
        .post(&confirm, Some(&session), json!({"code": "000000"}))
        .await;
    let error = assert_error(&r, "INCORRECT_PASSWORD");
    assert_eq!(error["totp"], "incorrect");
    let (_, body) = server
        .post(&confirm, Some(&session), json!({"code": code(&t, -1)}))
        .await;
    let recovery: Vec<String> = body["recoveryCodes"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);
    let (_, body) = server.get(&path, Some(&session)).await;
    assert_eq!(
        body["twoFactor"],
        json!({"enabled": true, "pending": false, "recoveryCodesLeft": 10})
    );

    // Login now needs the code, checked after the password.
    let error = assert_error(
        &server
            .post(
                "/api/sessions",
                None,
                json!({"username": "joe", "password": "wrong!", "totp": code(&t, 0)}),
            )
            .await,
        "INCORRECT_PASSWORD",
    );
    assert!(error.get("totp").is_none(), "{error}");
    let r = server
        .post(
            "/api/sessions",
            None,
            json!({"username": "joe", "password": "password1"}),
        )
        .await;
    assert_eq!(r.0, 401);
    assert_eq!(assert_error(&r, "INCORRECT_PASSWORD")["totp"], "required");
    let body = login(&server, "joe", "password1", Some("123456")).await;
    assert_eq!(body["error"]["totp"], "incorrect", "{body}");
    // The code in the TOTP header works too; it is accepted once.
    let now_code = code(&t, 0);
    let res = server
        .client
        .post(server.url("/api/sessions"))
        .header("TOTP", now_code.as_str())
        .json(&json!({"username": "joe", "password": "password1"}))
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert!(body["sessionID"].is_string(), "{body}");
    let body = login(&server, "joe", "password1", Some(&now_code)).await;
    assert_eq!(
        body["error"]["totp"], "incorrect",
        "a code is accepted once: {body}"
    );
    // Header and field together are a repeated parameter.
    let res = server
        .client
        .post(server.url("/api/sessions"))
        .header("TOTP", code(&t, 1))
        .json(&json!({"username": "joe", "password": "password1", "totp": code(&t, 1)}))
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "REPEATED_PARAMETERS", "{body}");

    // A recovery code logs in once, typed in any case.
    let first = recovery[0].to_uppercase();
    assert!(login(&server, "joe", "password1", Some(&first)).await["sessionID"].is_string());
    let body = login(&server, "joe", "password1", Some(&recovery[0])).await;
    assert_eq!(body["error"]["totp"], "incorrect");
    let (_, body) = server.get(&path, Some(&session)).await;
    assert_eq!(body["twoFactor"]["recoveryCodesLeft"], 9);

    // New recovery codes replace the old ones.
    let (_, body) = server
        .post(
            &format!("{path}/recovery-codes"),
            Some(&session),
            json!({"password": "password1", "code": recovery[1]}),
        )
        .await;
    let fresh: Vec<String> = serde_json::from_value(body["recoveryCodes"].clone()).unwrap();
    assert_eq!(fresh.len(), 10);
    let body = login(&server, "joe", "password1", Some(&recovery[2])).await;
    assert_eq!(body["error"]["totp"], "incorrect");

    // Disabling needs the password and a code; afterwards login needs neither code nor field.
    let disable = format!("{path}/disable");
    assert_error(
        &server
            .post(&disable, Some(&session), json!({"password": "password1"}))
            .await,
        "INCOMPLETE_PARAMETERS",
    );
    assert_error(
        &server
            .post(
                &disable,
                Some(&session),
                json!({"password": "nope!!", "code": fresh[0]}),
            )
            .await,
        "INCORRECT_PASSWORD",
    );
    let (status, body) = server
        .post(
            &disable,
            Some(&session),
            json!({"password": "password1", "code": fresh[0]}),
        )
        .await;
    assert!(status.is_success(), "{body}");
    assert!(login(&server, "joe", "password1", None).await["sessionID"].is_string());
}

#[tokio::test]
async fn wrong_codes_are_limited_per_account_and_survive_a_restart() {
    let mut server = TestServer::spawn().await;
    let (id, session) = server.user("kim").await;
    fresh_step(6).await;
    let (t, _) = enable_two_factor(&server, &id, &session).await;
    for _ in 0..5 {
        let body = login(&server, "kim", "password1", Some("111111")).await;
        assert_eq!(body["error"]["totp"], "incorrect", "{body}");
    }
    // Locked: even the right code is refused, with how long to wait.
    let r = server
        .post(
            "/api/sessions",
            None,
            json!({"username": "kim", "password": "password1", "totp": code(&t, 0)}),
        )
        .await;
    assert_eq!(r.0, 429);
    let error = assert_error(&r, "INCORRECT_PASSWORD");
    assert_eq!(error["totp"], "locked");
    let wait = error["retryAfter"].as_u64().unwrap();
    assert!((800..=900).contains(&wait), "{wait}");
    // A wrong password never reaches the code, so it does not unlock or count.
    let body = login(&server, "kim", "nope!!", Some("111111")).await;
    assert!(body["error"].get("totp").is_none(), "{body}");

    let data = server.data.clone();
    assert!(server.signal_and_wait("TERM").success());
    let server = TestServer::spawn_on(&data, &[]).await;
    let body = login(&server, "kim", "password1", Some(&code(&t, 0))).await;
    assert_eq!(body["error"]["totp"], "locked", "{body}");
}

#[tokio::test]
async fn users_are_found_by_any_part_of_their_name_prefix_matches_first() {
    let server = TestServer::spawn_with(&["--admin", "admin"]).await;
    for name in ["Alice", "alan", "Malice", "bob", "xaliCE", "calico"] {
        server.register(name, "password1").await;
    }
    let names = |body: &Value| -> Vec<String> {
        body["users"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|u| u["username"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, body) = server.get("/api/users?name=ALI", None).await;
    assert_eq!(names(&body), ["Alice", "calico", "Malice", "xaliCE"]);
    let (_, body) = server.get("/api/users?name=ali&limit=2&skip=1", None).await;
    assert_eq!(names(&body), ["calico", "Malice"]);
    let (_, body) = server.get("/api/users?name=lice", None).await;
    assert_eq!(names(&body), ["Alice", "Malice", "xaliCE"]);
    // Two characters match by prefix only.
    let (_, body) = server.get("/api/users?name=li", None).await;
    assert_eq!(names(&body), Vec::<String>::new());
    // A deleted user is not found; a new one is.
    let (_, admin) = server.user("admin").await;
    let (_, body) = server.get("/api/users?name=xali", None).await;
    let xalice = body["users"][0]["id"].as_str().unwrap().to_owned();
    let (status, body) = server
        .delete(&format!("/api/users/{xalice}"), Some(&admin))
        .await;
    assert!(status.is_success(), "{body}");
    server.register("palice", "password1").await;
    let (_, body) = server.get("/api/users?name=lice", None).await;
    assert_eq!(names(&body), ["Alice", "Malice", "palice"]);
}

/// A local SMTP server that keeps every mail it receives.
#[derive(Clone, Default)]
struct Sink {
    mails: Arc<Mutex<Vec<String>>>,
    current: Arc<Mutex<Vec<u8>>>,
}

impl mailin_embedded::Handler for Sink {
    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.lock().unwrap().extend_from_slice(buf);
        Ok(())
    }
    fn data_end(&mut self) -> mailin_embedded::Response {
        let mail = std::mem::take(&mut *self.current.lock().unwrap());
        self.mails
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&mail).into_owned());
        mailin_embedded::response::OK
    }
}

impl Sink {
    /// Starts the sink on a free loopback port: its `smtp://` URL.
    fn start(&self) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut server = mailin_embedded::Server::new(self.clone());
        server
            .with_name("sink.test")
            .with_ssl(mailin_embedded::SslConfig::None)
            .unwrap()
            .with_tcp_listener(listener);
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        format!("smtp://127.0.0.1:{port}")
    }

    async fn wait_for(&self, count: usize) -> Vec<String> {
        for _ in 0..200 {
            let mails = self.mails.lock().unwrap().clone();
            if mails.len() >= count {
                return mails;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "expected {count} mails, got {:?}",
            self.mails.lock().unwrap()
        );
    }
}

/// A received mail's body, decoded as a mail client would (lettre may send quoted-printable).
fn body_of(mail: &str) -> String {
    let body = &mail[mail.find("\r\n\r\n").expect("headers end") + 4..];
    if mail.contains("Content-Transfer-Encoding: quoted-printable") {
        let decoded = quoted_printable::decode(body, quoted_printable::ParseMode::Robust).unwrap();
        String::from_utf8(decoded).unwrap()
    } else {
        body.to_owned()
    }
}

/// The token of the reset link in a text.
fn token_in(text: &str) -> String {
    let start = text.find("#reset=").expect("a reset link") + "#reset=".len();
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

#[tokio::test]
async fn a_lost_password_is_reset_through_a_mailed_link_once() {
    let sink = Sink::default();
    let smtp = sink.start();
    let server = TestServer::spawn_with(&[
        "--smtp-url",
        &smtp,
        "--public-url",
        "https://chat.example.com/",
        "--mail-from",
        "Chat <noreply@chat.example.com>",
    ])
    .await;
    let (id, session) = server.user("lost").await;
    let (status, _) = server
        .patch(
            &format!("/api/users/{id}"),
            Some(&session),
            json!({"email": "Lost@Example.com"}),
        )
        .await;
    assert!(status.is_success());

    // Unknown and known addresses answer the same.
    let unknown = server
        .post(
            "/api/users/request-lost-password",
            None,
            json!({"email": "nobody@example.com"}),
        )
        .await;
    let known = server
        .post(
            "/api/users/request-lost-password",
            None,
            json!({"email": "lost@example.com"}),
        )
        .await;
    assert_eq!(unknown, known);
    assert_eq!(known.1, json!({}));
    assert_error(
        &server
            .post(
                "/api/users/request-lost-password",
                None,
                json!({"email": "not an address"}),
            )
            .await,
        "INVALID_PARAMETER_TYPE",
    );

    let mails = sink.wait_for(1).await;
    let mail = &mails[0];
    assert!(mail.contains("noreply@chat.example.com"), "{mail}");
    // To the address as the user stored it, not as it was asked for.
    assert!(mail.contains("To: Lost@Example.com"), "{mail}");
    let body = body_of(mail);
    assert!(body.contains("lost"), "{body}");
    assert!(body.contains("https://chat.example.com/#reset="), "{body}");
    let token = token_in(&body);
    assert_eq!(token.len(), 43, "{token}");

    // Too short a password changes nothing; a right one ends every session, once.
    assert_error(
        &server
            .post(
                "/api/users/reset-password",
                None,
                json!({"token": token, "password": "abc"}),
            )
            .await,
        "SHORT_PASSWORD",
    );
    let (status, body) = server
        .post(
            "/api/users/reset-password",
            None,
            json!({"token": token, "password": "brand-new"}),
        )
        .await;
    assert!(status.is_success(), "{body}");
    assert_error(
        &server.get("/api/sessions", Some(&session)).await,
        "INVALID_SESSION_ID",
    );
    assert_error(
        &server
            .post(
                "/api/sessions",
                None,
                json!({"username": "lost", "password": "password1"}),
            )
            .await,
        "INCORRECT_PASSWORD",
    );
    assert!(login(&server, "lost", "brand-new", None).await["sessionID"].is_string());
    assert_error(
        &server
            .post(
                "/api/users/reset-password",
                None,
                json!({"token": token, "password": "another1"}),
            )
            .await,
        "NOT_FOUND",
    );
    assert_error(
        &server
            .post(
                "/api/users/reset-password",
                None,
                json!({"token": "made-up", "password": "another1"}),
            )
            .await,
        "NOT_FOUND",
    );
    // A mail that was not asked for is never sent: only the one above arrived.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.mails.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn without_smtp_lost_password_requests_answer_no() {
    let server = TestServer::spawn().await;
    assert_error(
        &server
            .post(
                "/api/users/request-lost-password",
                None,
                json!({"email": "a@example.com"}),
            )
            .await,
        "NO",
    );
}

#[tokio::test]
async fn the_operator_prints_a_one_time_reset_link_offline() {
    let mut server = TestServer::spawn().await;
    let (_, session) = server.user("forgetful").await;
    let data = server.data.clone();
    assert!(server.signal_and_wait("TERM").success());

    let run = |user: &str| {
        decentd()
            .args(["reset-password", "--public-url", "http://chat.test:8080"])
            .arg("--data")
            .arg(&data)
            .arg(user)
            .output()
            .unwrap()
    };
    let out = run("nobody");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user named nobody"));
    let out = run("forgetful");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        printed.contains("http://chat.test:8080/#reset="),
        "{printed}"
    );
    let token = token_in(&printed);

    let server = TestServer::spawn_on(&data, &[]).await;
    let (status, body) = server
        .post(
            "/api/users/reset-password",
            None,
            json!({"token": token, "password": "remembered"}),
        )
        .await;
    assert!(status.is_success(), "{body}");
    assert_error(
        &server.get("/api/sessions", Some(&session)).await,
        "INVALID_SESSION_ID",
    );
    assert!(login(&server, "forgetful", "remembered", None).await["sessionID"].is_string());
}

/// Addresses compare with ASCII case folding only: a request for `\u{212A}im@example.test`
/// (a Kelvin sign, which Unicode lowercases to `k`) mails nobody; `KIM@example.test` mails the
/// stored address.
#[tokio::test]
async fn lost_password_lookups_cannot_be_tricked_by_unicode_case_folding() {
    let sink = Sink::default();
    let smtp = sink.start();
    let server = TestServer::spawn_with(&["--smtp-url", &smtp]).await;
    let (id, session) = server.user("kim").await;
    let (status, _) = server
        .patch(
            &format!("/api/users/{id}"),
            Some(&session),
            json!({"email": "kim@example.test"}),
        )
        .await;
    assert!(status.is_success());
    let ask = async |email: &str| {
        let (status, body) = server
            .post(
                "/api/users/request-lost-password",
                None,
                json!({ "email": email }),
            )
            .await;
        assert!(status.is_success(), "{body}");
    };
    ask("\u{212A}im@example.test").await;
    ask("KIM@example.test").await;
    let mails = sink.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mails_after = sink.mails.lock().unwrap().clone();
    assert_eq!(mails_after.len(), 1, "{mails_after:?}");
    assert!(mails[0].contains("To: kim@example.test"), "{}", mails[0]);
}
