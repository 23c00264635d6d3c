//! The admin API over real HTTP against an in-process fleetd.

mod common;

use common::{assert_error, send, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn server() -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    (dir, server)
}

fn group_path(id: &Value) -> String {
    format!("/v1/device-groups/{}", id.as_str().unwrap())
}

#[tokio::test]
async fn healthz_needs_no_token() {
    let (_dir, s) = server().await;
    let (status, body) = send(s.http.get(s.url("/healthz"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ok"}));
}

#[tokio::test]
async fn everything_else_needs_the_token() {
    let (_dir, s) = server().await;

    let resp = s.http.get(s.url("/v1/device-groups")).send().await.unwrap();
    assert_eq!(
        resp.headers()["www-authenticate"],
        r#"Bearer realm="fleetd""#
    );
    let (status, body) = common::split(resp).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let msg = assert_error(&body, "unauthorized", None);
    assert!(msg.starts_with("missing bearer token"), "{msg}");

    let (status, body) = send(s.http.get(s.url("/v1/device-groups")).bearer_auth("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        assert_error(&body, "unauthorized", None),
        "invalid bearer token"
    );

    let (status, body) = send(
        s.http
            .post(s.url("/v1/device-groups"))
            .json(&json!({"name": "x"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "unauthorized", None);

    // Unknown routes do not reveal themselves to anonymous callers...
    let (status, body) = send(s.http.get(s.url("/nope"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "unauthorized", None);
    let (status, body) = send(s.http.get(s.url("/openapi.json"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "unauthorized", None);

    // ...and nothing was created.
    let (status, body) = send(s.get("/v1/device-groups")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"items": [], "next_page_token": null}));
}

#[tokio::test]
async fn crud_round_trip() {
    let (_dir, s) = server().await;

    // Create a top-level group.
    let resp = s
        .post(
            "/v1/device-groups",
            &json!({"name": "prod", "description": "Production", "tags": {"env": "prod", "a": "1"}}),
        )
        .send()
        .await
        .unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let (status, prod) = common::split(resp).await;
    assert_eq!(status, StatusCode::CREATED, "{prod}");
    assert_eq!(location, group_path(&prod["id"]));
    assert_eq!(prod["name"], "prod");
    assert_eq!(prod["description"], "Production");
    assert_eq!(prod["parent_id"], Value::Null);
    assert_eq!(prod["tags"], json!({"a": "1", "env": "prod"}));
    assert_eq!(prod["path"], "prod");
    assert_eq!(prod["version"], 1);
    assert_eq!(prod["created_at"], prod["updated_at"]);
    let created_at = prod["created_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(created_at).is_ok(),
        "{created_at}"
    );
    assert_eq!(
        prod.as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "id",
            "name",
            "description",
            "parent_id",
            "tags",
            "path",
            "query",
            "config",
            "effective_config",
            "device_count",
            "stale_after",
            "compliance",
            "created_at",
            "updated_at",
            "version"
        ]
    );

    // Read it back.
    let (status, body) = send(s.get(&location)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, prod);

    // A child: defaults for omitted optional fields, computed path.
    let meters = s
        .create_group(json!({"name": "meters", "parent_id": prod["id"]}))
        .await;
    assert_eq!(meters["path"], "prod/meters");
    assert_eq!(meters["parent_id"], prod["id"]);
    assert_eq!(meters["description"], "");
    assert_eq!(meters["tags"], json!({}));
    assert_eq!(meters["version"], 1);

    // Full replacement: version 1 -> 2, created_at kept.
    let (status, updated) = send(s.put(
        &group_path(&meters["id"]),
        &json!({"name": "meters", "parent_id": prod["id"], "description": "Smart meters",
                "tags": {"line": "m2"}, "version": 1}),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["description"], "Smart meters");
    assert_eq!(updated["tags"], json!({"line": "m2"}));
    assert_eq!(updated["created_at"], meters["created_at"]);
    assert!(updated["updated_at"].as_str().unwrap() >= meters["updated_at"].as_str().unwrap());

    // Omitted optional fields are cleared: it is a replacement, not a patch.
    let (status, updated) = send(s.put(
        &group_path(&meters["id"]),
        &json!({"name": "meters", "parent_id": prod["id"], "version": 2}),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["version"], 3);
    assert_eq!(updated["description"], "");
    assert_eq!(updated["tags"], json!({}));

    // Renaming the parent changes the child's path, not its version.
    let (status, renamed) = send(s.put(
        &group_path(&prod["id"]),
        &json!({"name": "production", "description": "Production",
                "tags": {"env": "prod", "a": "1"}, "version": 1}),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["version"], 2);
    assert_eq!(renamed["path"], "production");
    let (status, child) = send(s.get(&group_path(&meters["id"]))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(child["path"], "production/meters");
    assert_eq!(child["version"], 3);

    // Move the child to the top level.
    let (status, moved) = send(s.put(
        &group_path(&meters["id"]),
        &json!({"name": "meters", "parent_id": null, "version": 3}),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(moved["path"], "meters");
    assert_eq!(moved["parent_id"], Value::Null);
    assert_eq!(moved["version"], 4);

    // Delete with the right version, then unconditionally.
    let (status, body) = send(s.delete(&format!("{}?version=4", group_path(&meters["id"])))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(body, Value::Null);
    let (status, body) = send(s.delete(&group_path(&prod["id"]))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(body, Value::Null);

    let (status, body) = send(s.get(&group_path(&meters["id"]))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let msg = assert_error(&body, "not_found", None);
    assert_eq!(
        msg,
        format!("device group {} not found", meters["id"].as_str().unwrap())
    );
    let (status, body) = send(s.get("/v1/device-groups")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"items": [], "next_page_token": null}));
}

#[tokio::test]
async fn stale_versions_conflict() {
    let (_dir, s) = server().await;
    let g = s.create_group(json!({"name": "edge"})).await;
    let path = group_path(&g["id"]);
    let id = g["id"].as_str().unwrap();

    let (status, v2) = send(s.put(
        &path,
        &json!({"name": "edge", "description": "v2", "version": 1}),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{v2}");
    assert_eq!(v2["version"], 2);

    // A writer that still holds version 1.
    let (status, body) = send(s.put(
        &path,
        &json!({"name": "edge", "description": "lost", "version": 1}),
    ))
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let msg = assert_error(&body, "conflict", Some("version"));
    assert_eq!(
        msg,
        format!("version: device group {id} is at version 2, but the request expected version 1; read it again and retry")
    );
    assert_eq!(body["expected_version"], 1);
    assert_eq!(body["current_version"], 2);

    let (status, body) = send(s.delete(&format!("{path}?version=1"))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let msg = assert_error(&body, "conflict", Some("version"));
    assert!(
        msg.contains("at version 2") && msg.contains("expected version 1"),
        "{msg}"
    );
    assert_eq!(body["expected_version"], 1);
    assert_eq!(body["current_version"], 2);

    // Nothing changed.
    let (status, body) = send(s.get(&path)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, v2);

    let (status, body) = send(s.delete(&format!("{path}?version=abc"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        assert_error(&body, "invalid_argument", Some("version")),
        r#"version must be an integer, got "abc""#
    );
}

#[tokio::test]
async fn unknown_fields_are_refused_by_name() {
    let (_dir, s) = server().await;
    let (status, body) =
        send(s.post("/v1/device-groups", &json!({"name": "a", "colour": "red"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        assert_error(&body, "invalid_argument", Some("colour")),
        r#"unknown field "colour", expected one of "name", "description", "parent_id", "tags", "query", "config", "stale_after""#
    );

    let g = s.create_group(json!({"name": "a"})).await;
    let (status, body) = send(s.put(
        &group_path(&g["id"]),
        &json!({"name": "a", "version": 1, "path": "x"}),
    ))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let msg = assert_error(&body, "invalid_argument", Some("path"));
    assert!(msg.starts_with(r#"unknown field "path""#), "{msg}");

    // Missing required fields and wrong types name the field too.
    let (status, body) = send(s.put(&group_path(&g["id"]), &json!({"name": "a"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        assert_error(&body, "invalid_argument", Some("version")),
        r#"missing field "version""#
    );
    let (status, body) = send(s.post(
        "/v1/device-groups",
        &json!({"name": "a", "tags": {"env": 1}}),
    ))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let msg = assert_error(&body, "invalid_argument", Some("tags.env"));
    assert!(msg.starts_with("tags.env: invalid type: integer"), "{msg}");

    // Malformed JSON and the wrong content type are JSON errors as well.
    let (status, body) = send(
        s.http
            .post(s.url("/v1/device-groups"))
            .bearer_auth(&s.token)
            .header("content-type", "application/json")
            .body("{\"name\":"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let msg = assert_error(&body, "invalid_argument", None);
    assert!(
        msg.starts_with("the request body is not valid JSON"),
        "{msg}"
    );
    let (status, body) = send(
        s.http
            .post(s.url("/v1/device-groups"))
            .bearer_auth(&s.token)
            .header("content-type", "text/plain")
            .body("{\"name\":\"a\"}"),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let msg = assert_error(&body, "unsupported_media_type", None);
    assert!(msg.contains("Content-Type: application/json"), "{msg}");
}

#[tokio::test]
async fn invalid_values_name_the_field() {
    let (_dir, s) = server().await;
    // The rules' wording belongs to the domain module; what the API
    // guarantees is the kind, the field, and a message that starts with it.
    let cases = [
        (json!({"name": "bad name"}), "name", "invalid character ' '"),
        (
            json!({"name": "-lead"}),
            "name",
            "must start with a letter or digit",
        ),
        (json!({"name": ""}), "name", "must not be empty"),
        (
            json!({"name": "a".repeat(129)}),
            "name",
            "at most 128 characters",
        ),
        (
            json!({"name": "a", "description": "d".repeat(1025)}),
            "description",
            "at most 1024 characters",
        ),
        (
            json!({"name": "a", "tags": {"env": "v".repeat(257)}}),
            "tags[\"env\"]",
            "at most 256 characters",
        ),
        (
            json!({"name": "a", "parent_id": ""}),
            "parent_id",
            "omit it or use null for a top-level group",
        ),
    ];
    for (body, field, needle) in cases {
        let (status, resp) = send(s.post("/v1/device-groups", &body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {resp}");
        let message = assert_error(&resp, "invalid_argument", Some(field));
        assert!(message.starts_with(&format!("{field}: ")), "{message}");
        assert!(message.contains(needle), "{message}");
    }
    let (status, resp) = send(s.post("/v1/device-groups", &json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        assert_error(&resp, "invalid_argument", Some("name")),
        "missing field \"name\""
    );
    // A 128-character name is fine.
    let g = s.create_group(json!({"name": "a".repeat(128)})).await;
    assert_eq!(g["name"].as_str().unwrap().len(), 128);

    // Validation applies to updates too.
    let (status, resp) =
        send(s.put(&group_path(&g["id"]), &json!({"name": "a/b", "version": 1}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&resp, "invalid_argument", Some("name"));
}

#[tokio::test]
async fn sibling_names_are_unique() {
    let (_dir, s) = server().await;
    let prod = s.create_group(json!({"name": "prod"})).await;
    let (status, body) = send(s.post("/v1/device-groups", &json!({"name": "prod"}))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let msg = assert_error(&body, "conflict", Some("name"));
    assert_eq!(
        msg,
        format!(
            "name \"prod\" is already used by another device group ({}) at the top level",
            prod["id"].as_str().unwrap()
        )
    );

    // The same name under different parents is fine.
    let staging = s.create_group(json!({"name": "staging"})).await;
    let a = s
        .create_group(json!({"name": "meters", "parent_id": prod["id"]}))
        .await;
    s.create_group(json!({"name": "meters", "parent_id": staging["id"]}))
        .await;
    let (status, body) = send(s.post(
        "/v1/device-groups",
        &json!({"name": "meters", "parent_id": prod["id"]}),
    ))
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let msg = assert_error(&body, "conflict", Some("name"));
    assert!(msg.ends_with("under \"prod\""), "{msg}");

    // Moving into a parent that already has that name is refused.
    let (status, body) = send(s.put(
        &group_path(&a["id"]),
        &json!({"name": "meters", "parent_id": staging["id"], "version": 1}),
    ))
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "conflict", Some("name"));
}

#[tokio::test]
async fn parents_must_exist_and_cycles_are_refused() {
    let (_dir, s) = server().await;
    let (status, body) = send(s.post(
        "/v1/device-groups",
        &json!({"name": "x", "parent_id": "no-such-id"}),
    ))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let msg = assert_error(&body, "invalid_argument", Some("parent_id"));
    assert!(msg.starts_with("parent_id: "), "{msg}");
    assert!(msg.contains("\"no-such-id\" does not exist"), "{msg}");

    let a = s.create_group(json!({"name": "a"})).await;
    let b = s
        .create_group(json!({"name": "b", "parent_id": a["id"]}))
        .await;
    let c = s
        .create_group(json!({"name": "c", "parent_id": b["id"]}))
        .await;
    assert_eq!(c["path"], "a/b/c");

    let (status, body) = send(s.put(
        &group_path(&a["id"]),
        &json!({"name": "a", "parent_id": c["id"], "version": 1}),
    ))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let msg = assert_error(&body, "invalid_argument", Some("parent_id"));
    assert!(msg.starts_with("parent_id: "), "{msg}");
    assert!(msg.contains("cycle"), "{msg}");

    let (status, body) = send(s.put(
        &group_path(&a["id"]),
        &json!({"name": "a", "parent_id": a["id"], "version": 1}),
    ))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let msg = assert_error(&body, "invalid_argument", Some("parent_id"));
    assert!(msg.starts_with("parent_id: "), "{msg}");
    assert!(msg.contains("own parent"), "{msg}");

    // Nothing moved.
    let (status, body) = send(s.get(&group_path(&a["id"]))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, a);

    // Groups nest at most MAX_HIERARCHY_DEPTH levels.
    let max = fleetd::domain::group::MAX_HIERARCHY_DEPTH;
    let mut parent = c;
    for depth in 4..=max {
        parent = s
            .create_group(json!({"name": format!("l{depth}"), "parent_id": parent["id"]}))
            .await;
    }
    assert_eq!(parent["path"].as_str().unwrap().split('/').count(), max);
    let (status, body) = send(s.post(
        "/v1/device-groups",
        &json!({"name": "too-deep", "parent_id": parent["id"]}),
    ))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let msg = assert_error(&body, "invalid_argument", Some("parent_id"));
    assert!(msg.contains(&format!("at most {max} levels")), "{msg}");
}

#[tokio::test]
async fn groups_with_children_cannot_be_deleted() {
    let (_dir, s) = server().await;
    let a = s.create_group(json!({"name": "a"})).await;
    let b = s
        .create_group(json!({"name": "b", "parent_id": a["id"]}))
        .await;
    s.create_group(json!({"name": "b2", "parent_id": a["id"]}))
        .await;

    let (status, body) = send(s.delete(&group_path(&a["id"]))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        assert_error(&body, "conflict", None),
        format!(
            "device group \"a\" ({}) still has 2 child groups; delete or move them first",
            a["id"].as_str().unwrap()
        )
    );
    let (status, _) = send(s.get(&group_path(&a["id"]))).await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = send(s.delete(&group_path(&b["id"]))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = send(s.delete(&group_path(&a["id"]))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(assert_error(&body, "conflict", None).contains("still has 1 child group;"));
}

#[tokio::test]
async fn missing_objects_and_routes_are_404() {
    let (_dir, s) = server().await;
    let missing = "/v1/device-groups/00000000-0000-0000-0000-000000000000";
    let expected = "device group 00000000-0000-0000-0000-000000000000 not found";

    let (status, body) = send(s.get(missing)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(assert_error(&body, "not_found", None), expected);
    let (status, body) = send(s.put(missing, &json!({"name": "a", "version": 1}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(assert_error(&body, "not_found", None), expected);
    let (status, body) = send(s.delete(missing)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(assert_error(&body, "not_found", None), expected);

    let (status, body) = send(s.get("/v1/widgets")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        assert_error(&body, "not_found", None),
        "no route for GET /v1/widgets"
    );

    let (status, body) = send(s.http.patch(s.url(missing)).bearer_auth(&s.token)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        assert_error(&body, "method_not_allowed", None),
        format!("{missing} does not support PATCH")
    );
}

#[tokio::test]
async fn lists_paginate() {
    let (_dir, s) = server().await;
    let mut created = Vec::new();
    for i in 0..7 {
        let g = s.create_group(json!({"name": format!("g{i}")})).await;
        created.push(g);
    }

    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let path = match &token {
            None => "/v1/device-groups?limit=3".to_owned(),
            Some(t) => format!("/v1/device-groups?limit=3&page_token={t}"),
        };
        let (status, body) = send(s.get(&path)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let items = body["items"].as_array().unwrap();
        pages.push(items.len());
        seen.extend(items.iter().cloned());
        match body["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => {
                assert!(body["next_page_token"].is_null(), "{body}");
                break;
            }
        }
    }
    assert_eq!(pages, [3, 3, 1]);
    // Every group once, in creation order, exactly as created.
    assert_eq!(seen, created);

    // An exact multiple of the page size ends without an empty page.
    let (_, body) = send(s.get("/v1/device-groups?limit=7")).await;
    assert_eq!(body["items"].as_array().unwrap().len(), 7);
    assert!(body["next_page_token"].is_null());
    // The default page size covers them all.
    let (_, body) = send(s.get("/v1/device-groups")).await;
    assert_eq!(body["items"], Value::Array(created));

    for (query, field, message) in [
        (
            "limit=0",
            "limit",
            "limit must be between 1 and 1000, got 0",
        ),
        (
            "limit=1001",
            "limit",
            "limit must be between 1 and 1000, got 1001",
        ),
        (
            "limit=ten",
            "limit",
            "limit must be an integer, got \"ten\"",
        ),
        (
            "page_token=bogus",
            "page_token",
            "page_token is not a token returned as next_page_token by this API",
        ),
        (
            "offset=3",
            "offset",
            "unknown query parameter \"offset\"; expected one of: limit, page_token",
        ),
        (
            "limit=1&limit=2",
            "limit",
            "query parameter \"limit\" is given more than once",
        ),
    ] {
        let (status, body) = send(s.get(&format!("/v1/device-groups?{query}"))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(
            assert_error(&body, "invalid_argument", Some(field)),
            message,
            "{query}"
        );
    }
}

#[tokio::test]
async fn serves_an_openapi_document_covering_every_route() {
    let (_dir, s) = server().await;
    let (status, doc) = send(s.get("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );

    let mut routes = Vec::new();
    let mut operation_ids = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            routes.push(format!("{} {path}", method.to_uppercase()));
            assert!(operation_ids.insert(op["operationId"].as_str().unwrap().to_owned()));
        }
    }
    routes.sort();
    // Each area's test file checks its own routes; these are the core ones.
    for route in [
        "DELETE /v1/device-groups/{id}",
        "GET /healthz",
        "GET /openapi.json",
        "GET /v1/device-groups",
        "GET /v1/device-groups/{id}",
        "POST /v1/device-groups",
        "PUT /v1/device-groups/{id}",
    ] {
        assert!(
            routes.iter().any(|r| r == route),
            "{route} undocumented: {routes:?}"
        );
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "DeviceGroup",
        "DeviceGroupCreate",
        "DeviceGroupUpdate",
        "ApiError",
        "ErrorKind",
        "Health",
    ] {
        assert!(
            schemas.contains_key(name),
            "schema {name} missing: {:?}",
            schemas.keys()
        );
    }
    assert_eq!(schemas["DeviceGroupCreate"]["additionalProperties"], false);
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer"})
    );
    // /healthz is documented as public.
    assert_eq!(doc["paths"]["/healthz"]["get"]["security"], json!([{}]));
}

#[tokio::test]
async fn state_and_token_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestServer::start(dir.path()).await;
    let addr_file = dir.path().join("admin.addr");
    assert_eq!(
        std::fs::read_to_string(&addr_file).unwrap().trim(),
        first.addr.to_string()
    );

    let token_file = std::fs::read_to_string(dir.path().join("admin-token")).unwrap();
    assert_eq!(token_file.trim(), first.token);
    assert_eq!(first.token.len(), 64);

    let parent = first
        .create_group(json!({"name": "prod", "tags": {"env": "prod"}}))
        .await;
    let child = first
        .create_group(json!({"name": "meters", "parent_id": parent["id"]}))
        .await;
    let (status, child) = send(first.put(
        &group_path(&child["id"]),
        &json!({"name": "meters", "parent_id": parent["id"], "version": 1}),
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    let token = first.token.clone();
    first.stop().await;
    assert!(!addr_file.exists(), "admin.addr is removed on shutdown");

    let second = TestServer::start(dir.path()).await;
    assert_eq!(second.token, token, "the generated token is reused");
    assert_eq!(
        std::fs::read_to_string(&addr_file).unwrap().trim(),
        second.addr.to_string()
    );
    let (status, body) = send(second.get(&group_path(&parent["id"]))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, parent);
    let (status, body) = send(second.get(&group_path(&child["id"]))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, child);
    assert_eq!(body["version"], 2);
    let (status, body) = send(second.get("/v1/device-groups")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"items": [parent, child], "next_page_token": null})
    );
    second.stop().await;
}

#[tokio::test]
async fn a_configured_token_replaces_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fleetd::config::Config::new(dir.path());
    config.listen = "127.0.0.1:0".into();
    config.admin_token = Some("configured-token".into());
    let s = TestServer::start_with(config).await;
    assert_eq!(s.token, "configured-token");
    assert!(!dir.path().join("admin-token").exists());
    let (status, body) = send(s.get("/v1/device-groups")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"items": [], "next_page_token": null}));
    s.stop().await;
}

#[tokio::test]
async fn concurrent_writers_with_the_same_version_have_one_winner() {
    let (_dir, s) = server().await;
    let g = s.create_group(json!({"name": "race"})).await;
    let path = group_path(&g["id"]);
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..8 {
        writers.spawn(send(s.put(
            &path,
            &json!({"name": "race", "description": format!("writer {i}"), "version": 1}),
        )));
    }
    let results = writers.join_all().await;
    let winners: Vec<_> = results
        .iter()
        .filter(|(st, _)| *st == StatusCode::OK)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (status, body) in results.iter().filter(|(st, _)| *st != StatusCode::OK) {
        assert_eq!(*status, StatusCode::CONFLICT);
        assert_error(body, "conflict", Some("version"));
        assert_eq!(body["current_version"], 2);
    }
    let (status, body) = send(s.get(&path)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, winners[0].1);
}
