//! Emotes and image upload through real HTTP.

use crate::common;

use common::{assert_error, TestServer, PNG};
use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use serde_json::{json, Value};

const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";
const JPEG: &[u8] = &[
    0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0xFF, 0xD9,
];

async fn with_admin(extra: &[&str]) -> (TestServer, String) {
    let mut args = vec!["--admin", "root"];
    args.extend_from_slice(extra);
    let server = TestServer::spawn_with(&args).await;
    let (_, session) = server.user("root").await;
    (server, session)
}

#[tokio::test]
async fn emotes_are_added_listed_redirected_and_deleted() {
    let (server, admin) = with_admin(&[]).await;
    let (_, user) = server.user("plain").await;
    assert_eq!(
        server.get("/api/emotes", None).await.1,
        json!({"emotes": []})
    );

    let add = |session: Option<String>, body: Value| {
        let server = &server;
        async move { server.post("/api/emotes", session.as_deref(), body).await }
    };
    let a = Some(admin.clone());
    assert_error(
        &add(
            Some(user.clone()),
            json!({"shortcode": "x", "imageURL": "/x.png"}),
        )
        .await,
        "NOT_ALLOWED",
    );
    assert_error(
        &add(None, json!({"shortcode": "x", "imageURL": "/x.png"})).await,
        "NOT_ALLOWED",
    );
    assert_error(
        &add(a.clone(), json!({"imageURL": "/x.png"})).await,
        "INCOMPLETE_PARAMETERS",
    );
    assert_error(
        &add(a.clone(), json!({"shortcode": "x"})).await,
        "INCOMPLETE_PARAMETERS",
    );
    for bad in ["has space", "co:lon", "", "sl/ash", ".", ".."] {
        assert_error(
            &add(a.clone(), json!({"shortcode": bad, "imageURL": "/x.png"})).await,
            "INVALID_NAME",
        );
    }
    for bad in ["javascript:alert(1)", "//evil.example/x.png", "not a url"] {
        assert_error(
            &add(a.clone(), json!({"shortcode": "x", "imageURL": bad})).await,
            "INVALID_PARAMETER_TYPE",
        );
    }
    let r = add(
        a.clone(),
        json!({"shortcode": "shipit", "imageURL": "https://example.com/shipit.png"}),
    )
    .await;
    assert_eq!(r, (StatusCode::OK, json!({})));
    add(
        a.clone(),
        json!({"shortcode": "+1", "imageURL": "/uploads/plus.png"}),
    )
    .await;
    // Unique even for someone with allowNonUnique (the admin has every permission).
    assert_error(
        &add(
            a.clone(),
            json!({"shortcode": "shipit", "imageURL": "/other.png"}),
        )
        .await,
        "NAME_ALREADY_TAKEN",
    );
    assert_eq!(
        server.get("/api/emotes", None).await.1,
        json!({"emotes": [
            {"shortcode": "+1", "imageURL": "/uploads/plus.png"},
            {"shortcode": "shipit", "imageURL": "https://example.com/shipit.png"}
        ]})
    );

    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = no_redirect
        .get(server.url("/api/emotes/shipit"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    assert_eq!(res.headers()["location"], "https://example.com/shipit.png");
    assert_error(&server.get("/api/emotes/missing", None).await, "NOT_FOUND");
    assert_eq!(
        server.get("/api/emotes/missing", None).await.0,
        StatusCode::NOT_FOUND
    );

    assert_error(
        &server.delete("/api/emotes/shipit", Some(&user)).await,
        "NOT_ALLOWED",
    );
    assert_eq!(
        server.delete("/api/emotes/shipit", Some(&admin)).await,
        (StatusCode::OK, json!({}))
    );
    assert_error(
        &server.delete("/api/emotes/shipit", Some(&admin)).await,
        "NOT_FOUND",
    );
    assert_error(&server.get("/api/emotes/shipit", None).await, "NOT_FOUND");
}

#[tokio::test]
async fn images_are_recognised_by_content_stored_and_served_back() {
    let (server, admin) = with_admin(&["--upload-limit", "4096"]).await;
    let (_, user) = server.user("plain").await;

    for (bytes, content_type, ext) in [
        (PNG, "image/png", "png"),
        (GIF, "image/gif", "gif"),
        (JPEG, "image/jpeg", "jpg"),
    ] {
        // The declared name and type are ignored: the content decides.
        let (status, body) = server
            .upload(Some(&admin), "../../etc/passwd", "text/plain", bytes)
            .await;
        assert_eq!(status, 200, "{body}");
        let path = body["path"].as_str().unwrap();
        assert!(
            path.starts_with("/uploads/") && path.ends_with(&format!(".{ext}")),
            "{path}"
        );
        assert!(!path.contains("passwd") && !path.contains(".."));
        let res = server.client.get(server.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], content_type);
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
        assert_eq!(res.bytes().await.unwrap().as_ref(), bytes);
    }

    let err = assert_error(
        &server
            .upload(
                Some(&admin),
                "evil.png",
                "image/png",
                b"<svg onload=alert(1)>",
            )
            .await,
        "NO",
    );
    assert!(err["message"].as_str().unwrap().contains("png"));
    let big = [PNG, &vec![0u8; 5000]].concat();
    let r = server
        .upload(Some(&admin), "big.png", "image/png", &big)
        .await;
    assert_eq!(r.0, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(assert_error(&r, "FAILED")["limit"], 4096);
    assert_error(
        &server.upload(None, "a.png", "image/png", PNG).await,
        "NOT_ALLOWED",
    );
    let err = assert_error(
        &server.upload(Some(&user), "a.png", "image/png", PNG).await,
        "NOT_ALLOWED",
    );
    assert_eq!(err["missingPermission"], "uploadImages");
    assert_error(
        &server
            .upload(Some("bogus"), "a.png", "image/png", PNG)
            .await,
        "INVALID_SESSION_ID",
    );

    // A session as a form field before the image works; a missing image is reported.
    let form = Form::new()
        .text("sessionID", admin.clone())
        .part("image", Part::bytes(PNG.to_vec()).file_name("a.png"));
    let res = server
        .client
        .post(server.url("/api/upload-image"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let form = Form::new().text("note", "no image here");
    let res = server
        .client
        .post(server.url("/api/upload-image"))
        .header("X-Session-ID", &admin)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "INCOMPLETE_PARAMETERS");
    // Not multipart at all.
    let r = server
        .post("/api/upload-image", Some(&admin), json!({"image": "x"}))
        .await;
    assert_error(&r, "FAILED");

    // Only names the server could have chosen are served; nothing else under the data dir.
    for path in [
        "/uploads/..%2Fdb",
        "/uploads/../db/conf",
        "/uploads/nothing.png",
        "/uploads/",
    ] {
        let res = server.client.get(server.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
    }
    // Refused uploads leave no files behind.
    let files: Vec<_> = std::fs::read_dir(server.data.join("uploads"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files.len(), 4, "{files:?}");
    assert!(files.iter().all(|f| !f.starts_with('.')), "{files:?}");
}
