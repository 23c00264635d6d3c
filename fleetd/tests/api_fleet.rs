//! Devices, policies, attachments, firmware, rollouts, group queries and
//! configs, and `/metrics`, over real HTTP against an in-process fleetd.

mod common;

use common::{assert_error, send, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn server() -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    (dir, server)
}

fn id(v: &Value) -> &str {
    v["id"].as_str().unwrap()
}

async fn created(s: &TestServer, path: &str, body: Value) -> Value {
    let (status, json) = send(s.post(path, &body)).await;
    assert_eq!(status, StatusCode::CREATED, "POST {path} {body}: {json}");
    json
}

async fn get_ok(s: &TestServer, path: &str) -> Value {
    let (status, json) = send(s.get(path)).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {json}");
    json
}

/// Expects `status` and the error shape; returns the message.
async fn refused(
    s: &TestServer,
    req: reqwest::RequestBuilder,
    status: StatusCode,
    kind: &str,
    field: Option<&str>,
) -> String {
    let (got, body) = send(req).await;
    assert_eq!(got, status, "{body}");
    let _ = s;
    assert_error(&body, kind, field)
}

const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn firmware_body(version: &str) -> Value {
    json!({
        "product": "meter-fw", "version": version, "hardware": ["m1", "m2"],
        "url": "https://fw.example.com/meter-fw.bin", "sha256": SHA, "size_bytes": 1024
    })
}

fn phases() -> Value {
    json!([{"percent": 10, "soak": "30m"}, {"percent": 50, "soak": "1h"}, {"percent": 100}])
}

// ------------------------------------------------------------------ devices

#[tokio::test]
async fn device_crud_round_trip() {
    let (_dir, s) = server().await;
    let a = s.create_group(json!({"name": "a"})).await;
    let b = s.create_group(json!({"name": "b"})).await;

    let resp = s
        .post(
            "/v1/devices",
            &json!({"name": "meter-1", "hardware": "m1", "attributes": {"region": "eu"},
                    "group_ids": [id(&b), id(&a), id(&b)]}),
        )
        .send()
        .await
        .unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let (status, d) = common::split(resp).await;
    assert_eq!(status, StatusCode::CREATED, "{d}");
    assert_eq!(location, format!("/v1/devices/{}", id(&d)));
    let mut sorted = vec![id(&a).to_owned(), id(&b).to_owned()];
    sorted.sort();
    assert_eq!(d["group_ids"], json!(sorted), "static groups: a sorted set");
    assert_eq!(d["attributes"], json!({"region": "eu"}));
    assert_eq!(d["version"], 1);
    for computed in ["firmware_version", "last_seen", "health"] {
        assert_eq!(d[computed], Value::Null, "{computed}");
    }
    assert_eq!(
        d.as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "id",
            "name",
            "hardware",
            "attributes",
            "group_ids",
            "firmware_version",
            "last_seen",
            "health",
            "created_at",
            "updated_at",
            "version"
        ]
    );
    assert_eq!(get_ok(&s, &location).await, d);

    let (status, u) = send(s.put(
        &location,
        &json!({"name": "meter-1b", "hardware": "m2", "group_ids": [id(&a)], "version": 1}),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{u}");
    assert_eq!(u["version"], 2);
    assert_eq!(u["name"], "meter-1b");
    assert_eq!(u["attributes"], json!({}));
    assert_eq!(u["group_ids"], json!([id(&a)]));
    assert_eq!(u["created_at"], d["created_at"]);

    let list = get_ok(&s, "/v1/devices").await;
    assert_eq!(list["items"], json!([u]));
    assert_eq!(list["next_page_token"], Value::Null);

    // The group counts its static member.
    assert_eq!(
        get_ok(&s, &format!("/v1/device-groups/{}", id(&a))).await["device_count"],
        1
    );

    let (status, _) = send(s.delete(&format!("{location}?version=2"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let msg = refused(
        &s,
        s.get(&location),
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    )
    .await;
    assert_eq!(msg, format!("device {} not found", id(&d)));
}

#[tokio::test]
async fn device_errors_name_the_field() {
    let (_dir, s) = server().await;
    let g = s.create_group(json!({"name": "g"})).await;

    let msg = refused(
        &s,
        s.post(
            "/v1/devices",
            &json!({"name": "d", "hardware": "m1", "group_ids": [id(&g), "nope"]}),
        ),
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("group_ids[1]"),
    )
    .await;
    assert_eq!(msg, r#"group_ids[1]: device group "nope" not found"#);

    let msg = refused(
        &s,
        s.post("/v1/devices", &json!({"name": "d", "hardware": "m 1"})),
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("hardware"),
    )
    .await;
    assert!(msg.starts_with("hardware: invalid character ' '"), "{msg}");

    let msg = refused(
        &s,
        s.post(
            "/v1/devices",
            &json!({"name": "d", "hardware": "m1", "attributes": {"": "x"}}),
        ),
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some(r#"attributes[""]"#),
    )
    .await;
    assert!(msg.contains("must not be empty"), "{msg}");

    let msg = refused(
        &s,
        s.post(
            "/v1/devices",
            &json!({"name": "d", "hardware": "m1", "firmware_version": "1"}),
        ),
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("firmware_version"),
    )
    .await;
    assert!(
        msg.starts_with(r#"unknown field "firmware_version""#),
        "{msg}"
    );

    let d = created(&s, "/v1/devices", json!({"name": "d", "hardware": "m1"})).await;
    let msg = refused(
        &s,
        s.post("/v1/devices", &json!({"name": "d", "hardware": "m2"})),
        StatusCode::CONFLICT,
        "conflict",
        Some("name"),
    )
    .await;
    assert!(
        msg.contains(r#"name "d" is already used by another device"#),
        "{msg}"
    );

    let path = format!("/v1/devices/{}", id(&d));
    let ok = send(s.put(&path, &json!({"name": "d", "hardware": "m2", "version": 1}))).await;
    assert_eq!(ok.0, StatusCode::OK);
    let (status, body) =
        send(s.put(&path, &json!({"name": "d", "hardware": "m3", "version": 1}))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "conflict", Some("version"));
    assert_eq!(
        (
            body["expected_version"].clone(),
            body["current_version"].clone()
        ),
        (json!(1), json!(2))
    );
    let (status, body) = send(s.delete(&format!("{path}?version=1"))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["current_version"], 2);
}

#[tokio::test]
async fn devices_filter_by_query() {
    let (_dir, s) = server().await;
    for (name, hw, region) in [("d1", "m1", "eu"), ("d2", "m1", "us"), ("d3", "m2", "eu")] {
        created(
            &s,
            "/v1/devices",
            json!({"name": name, "hardware": hw, "attributes": {"region": region}}),
        )
        .await;
    }
    let names = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let url = |q: &str| {
        format!(
            "/v1/devices?query={}",
            q.bytes()
                .map(|b| if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                })
                .collect::<String>()
        )
    };
    assert_eq!(
        names(&get_ok(&s, &url(r#"hardware == "m1""#)).await),
        ["d1", "d2"]
    );
    assert_eq!(
        names(&get_ok(&s, &url(r#"attr.region == "eu""#)).await),
        ["d1", "d3"]
    );
    assert_eq!(
        names(&get_ok(&s, &url(r#"hardware == "m1" and attr.region == "eu""#)).await),
        ["d1"]
    );
    assert_eq!(
        names(&get_ok(&s, &url(r#"name in ["zz"]"#)).await),
        Vec::<String>::new()
    );

    // Filtered pages continue where the last match was.
    let first = get_ok(&s, &format!("{}&limit=1", url(r#"attr.region == "eu""#))).await;
    assert_eq!(names(&first), ["d1"]);
    let token = first["next_page_token"].as_str().unwrap();
    let second = get_ok(
        &s,
        &format!(
            "{}&limit=1&page_token={token}",
            url(r#"attr.region == "eu""#)
        ),
    )
    .await;
    assert_eq!(names(&second), ["d3"]);
    assert_eq!(second["next_page_token"], Value::Null);

    let msg = refused(
        &s,
        s.get(&url(r#"hardware == "#)),
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("query"),
    )
    .await;
    assert!(msg.starts_with("query: line 1, col 13: "), "{msg}");
    refused(
        &s,
        s.get("/v1/devices?filter=x"),
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("filter"),
    )
    .await;
}

// ------------------------------------------------------------------ groups

#[tokio::test]
async fn group_queries_are_validated_with_their_position() {
    let (_dir, s) = server().await;
    let msg = refused(
        &s,
        s.post(
            "/v1/device-groups",
            &json!({"name": "g", "query": "hardware == \"m1\"\n  and attr.region =="}),
        ),
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("query"),
    )
    .await;
    assert!(msg.starts_with("query: line 2, col "), "{msg}");

    let msg = refused(
        &s,
        s.post(
            "/v1/device-groups",
            &json!({"name": "g", "query": "firmware < \"x\""}),
        ),
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("query"),
    )
    .await;
    assert!(msg.starts_with("query: line 1, col 12: "), "{msg}");

    let msg = refused(
        &s,
        s.post("/v1/device-groups", &json!({"name": "g", "config": [1]})),
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("config"),
    )
    .await;
    assert!(msg.contains("invalid type: sequence"), "{msg}");

    let g = s
        .create_group(json!({"name": "g", "query": "hardware == \"m1\""}))
        .await;
    assert_eq!(g["query"], "hardware == \"m1\"");
    assert_eq!(g["config"], json!({}));
    assert_eq!(g["effective_config"], json!({}));
    assert_eq!(g["device_count"], 0);
    // Updating to no query clears it.
    let (status, u) = send(s.put(
        &format!("/v1/device-groups/{}", id(&g)),
        &json!({"name": "g", "version": 1}),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{u}");
    assert_eq!(u["query"], Value::Null);
}

#[tokio::test]
async fn effective_config_merges_down_three_levels() {
    let (_dir, s) = server().await;
    let root = s
        .create_group(json!({"name": "prod", "config": {
            "interval": 60, "log": {"level": "warn", "sink": "cloud"}, "debug": true
        }}))
        .await;
    let mid = s
        .create_group(
            json!({"name": "meters", "parent_id": root["id"], "config": {
                "log": {"level": "info"}, "tz": "UTC"
            }}),
        )
        .await;
    let leaf = s
        .create_group(json!({"name": "eu", "parent_id": mid["id"], "config": {
            "debug": null, "interval": 30, "log": {"format": "json"}
        }}))
        .await;
    assert_eq!(
        leaf["effective_config"],
        json!({"interval": 30, "log": {"level": "info", "sink": "cloud", "format": "json"},
               "tz": "UTC"})
    );
    assert_eq!(
        leaf["config"]["debug"],
        Value::Null,
        "own config kept as written"
    );
    assert_eq!(
        mid["effective_config"],
        json!({"interval": 60, "log": {"level": "info", "sink": "cloud"}, "debug": true, "tz": "UTC"})
    );

    // Changing the root shows in the leaf on the next read.
    let (status, _) = send(s.put(
        &format!("/v1/device-groups/{}", id(&root)),
        &json!({"name": "prod", "config": {"interval": 60, "region": "eu"}, "version": 1}),
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    let leaf = get_ok(&s, &format!("/v1/device-groups/{}", id(&leaf))).await;
    assert_eq!(
        leaf["effective_config"],
        json!({"interval": 30, "region": "eu", "log": {"level": "info", "format": "json"}, "tz": "UTC"})
    );
    // The list computes the same thing.
    let list = get_ok(&s, "/v1/device-groups").await;
    let listed = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == leaf["id"])
        .unwrap();
    assert_eq!(listed, &leaf);
}

#[tokio::test]
async fn device_count_adds_static_members_and_query_matches() {
    let (_dir, s) = server().await;
    let g = s
        .create_group(json!({"name": "m1s", "query": "hardware == \"m1\""}))
        .await;
    let other = s.create_group(json!({"name": "other"})).await;
    let mut devices = Vec::new();
    for (name, hw, groups) in [
        ("d1", "m1", vec![id(&g)]),     // static and dynamic: counted once
        ("d2", "m1", vec![]),           // dynamic only
        ("d3", "m2", vec![id(&g)]),     // static only
        ("d4", "m2", vec![id(&other)]), // neither
    ] {
        devices.push(
            created(
                &s,
                "/v1/devices",
                json!({"name": name, "hardware": hw, "group_ids": groups}),
            )
            .await,
        );
    }
    let path = format!("/v1/device-groups/{}", id(&g));
    assert_eq!(get_ok(&s, &path).await["device_count"], 3);
    assert_eq!(
        get_ok(&s, &format!("/v1/device-groups/{}", id(&other))).await["device_count"],
        1
    );
    let list = get_ok(&s, "/v1/device-groups").await;
    let counts: Vec<i64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["device_count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, [3, 1]);

    // Deleting the group releases its static members (version bumped).
    let (status, _) = send(s.delete(&path)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let d3 = get_ok(&s, &format!("/v1/devices/{}", id(&devices[2]))).await;
    assert_eq!(d3["group_ids"], json!([]));
    assert_eq!(d3["version"], 2);
    let d4 = get_ok(&s, &format!("/v1/devices/{}", id(&devices[3]))).await;
    assert_eq!(d4["version"], 1);
}

#[tokio::test]
async fn groups_in_use_cannot_be_deleted() {
    let (_dir, s) = server().await;
    let g = s.create_group(json!({"name": "prod"})).await;
    let gpath = format!("/v1/device-groups/{}", id(&g));
    let p = created(&s, "/v1/policies", policy_body("base")).await;
    let att = created(
        &s,
        "/v1/policy-attachments",
        json!({"policy_id": p["id"], "group_id": g["id"]}),
    )
    .await;
    let msg = refused(&s, s.delete(&gpath), StatusCode::CONFLICT, "conflict", None).await;
    assert_eq!(
        msg,
        format!(
            "device group \"prod\" ({}) still has 1 policy attached (attachment \"{}\"); delete the attachments first",
            id(&g),
            id(&att)
        )
    );
    let (status, _) = send(s.delete(&format!("/v1/policy-attachments/{}", id(&att)))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let fw = created(&s, "/v1/firmware", firmware_body("1.0.0")).await;
    let r = created(
        &s,
        "/v1/rollouts",
        json!({"name": "r1", "firmware_id": fw["id"], "target_group_ids": [g["id"]], "phases": phases()}),
    )
    .await;
    let msg = refused(&s, s.delete(&gpath), StatusCode::CONFLICT, "conflict", None).await;
    assert!(
        msg.contains(
            "is targeted by 1 unfinished rollout: \"r1 (pending)\"; cancel or delete it first"
        ),
        "{msg}"
    );

    // A cancelled rollout no longer holds the group; it keeps the id as history.
    let mut body = rollout_update_body(&r);
    body["state"] = json!("cancelled");
    let (status, cancelled) = send(s.put(&format!("/v1/rollouts/{}", id(&r)), &body)).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    let (status, _) = send(s.delete(&gpath)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let r = get_ok(&s, &format!("/v1/rollouts/{}", id(&r))).await;
    assert_eq!(r["target_group_ids"], json!([g["id"]]));
}

// ------------------------------------------------------------------ policies

fn policy_body(name: &str) -> Value {
    json!({
        "name": name,
        "description": "devices read their own config",
        "statements": [
            {"effect": "allow", "actions": ["config:read", "device:checkin"],
             "resources": ["fleet:device/${device.id}"]},
            {"effect": "deny", "actions": ["firmware:*"], "resources": ["fleet:group/quarantine/*"]}
        ]
    })
}

#[tokio::test]
async fn policy_crud_and_version_history() {
    let (_dir, s) = server().await;
    let p = created(&s, "/v1/policies", policy_body("base")).await;
    assert_eq!(p["policy_version"], 1);
    assert_eq!(p["version"], 1);
    assert_eq!(p["statements"], policy_body("base")["statements"]);
    let path = format!("/v1/policies/{}", id(&p));
    assert_eq!(get_ok(&s, &path).await, p);

    // A description change is not a new policy version.
    let mut body = policy_body("base");
    body["description"] = json!("changed");
    body["version"] = json!(1);
    let (status, u) = send(s.put(&path, &body)).await;
    assert_eq!(status, StatusCode::OK, "{u}");
    assert_eq!(
        (u["version"].clone(), u["policy_version"].clone()),
        (json!(2), json!(1))
    );

    // Eleven statement changes: policy version 12, the last 10 kept.
    for i in 0..11 {
        let mut body = policy_body("base");
        body["statements"][0]["resources"] = json!([format!("fleet:device/d{i}")]);
        body["version"] = json!(2 + i);
        let (status, u) = send(s.put(&path, &body)).await;
        assert_eq!(status, StatusCode::OK, "{u}");
        assert_eq!(u["policy_version"], 2 + i);
    }
    let versions = get_ok(&s, &format!("{path}/versions")).await;
    let kept: Vec<i64> = versions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["policy_version"].as_i64().unwrap())
        .collect();
    assert_eq!(kept, (3..=12).rev().collect::<Vec<_>>());
    assert_eq!(
        versions["items"][0]["statements"][0]["resources"],
        json!(["fleet:device/d10"])
    );
    assert_eq!(versions["items"][0]["policy_id"], p["id"]);

    let list = get_ok(&s, "/v1/policies").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (status, _) = send(s.delete(&format!("{path}?version=13"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    refused(
        &s,
        s.get(&format!("{path}/versions")),
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    )
    .await;
}

#[tokio::test]
async fn policy_errors_name_the_statement() {
    let (_dir, s) = server().await;
    let mut body = policy_body("p");
    body["statements"][1]["actions"] = json!(["firmware:download", "firmware:donwload"]);
    let msg = refused(
        &s,
        s.post("/v1/policies", &body),
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("statements[1].actions[1]"),
    )
    .await;
    assert!(msg.starts_with("statements[1].actions[1]: "), "{msg}");

    let mut body = policy_body("p");
    body["statements"][0]["effect"] = json!("maybe");
    let msg = refused(
        &s,
        s.post("/v1/policies", &body),
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("statements[0].effect"),
    )
    .await;
    assert_eq!(
        msg,
        r#"statements[0].effect: unknown effect "maybe" (use allow or deny)"#
    );

    let msg = refused(
        &s,
        s.post("/v1/policies", &json!({"name": "p", "statements": []})),
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("statements"),
    )
    .await;
    assert_eq!(msg, "statements: a policy needs at least one statement");

    created(&s, "/v1/policies", policy_body("p")).await;
    let msg = refused(
        &s,
        s.post("/v1/policies", &policy_body("p")),
        StatusCode::CONFLICT,
        "conflict",
        Some("name"),
    )
    .await;
    assert!(
        msg.starts_with(r#"name "p" is already used by another policy"#),
        "{msg}"
    );
}

#[tokio::test]
async fn policy_attachments_target_exactly_one_object() {
    let (_dir, s) = server().await;
    let g = s.create_group(json!({"name": "g"})).await;
    let p = created(&s, "/v1/policies", policy_body("p")).await;

    let msg = refused(
        &s,
        s.post(
            "/v1/policy-attachments",
            &json!({"policy_id": p["id"], "group_id": g["id"], "certificate_id": "c"}),
        ),
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("certificate_id"),
    )
    .await;
    assert!(
        msg.contains("exactly one of group_id, certificate_id"),
        "{msg}"
    );
    let msg = refused(
        &s,
        s.post("/v1/policy-attachments", &json!({"policy_id": p["id"]})),
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("group_id"),
    )
    .await;
    assert_eq!(
        msg,
        "group_id: one of group_id or certificate_id is required"
    );
    let msg = refused(
        &s,
        s.post(
            "/v1/policy-attachments",
            &json!({"policy_id": "nope", "group_id": g["id"]}),
        ),
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("policy_id"),
    )
    .await;
    assert_eq!(msg, r#"policy_id: policy "nope" not found"#);
    let msg = refused(
        &s,
        s.post(
            "/v1/policy-attachments",
            &json!({"policy_id": p["id"], "group_id": "nope"}),
        ),
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("group_id"),
    )
    .await;
    assert_eq!(msg, r#"group_id: device group "nope" not found"#);
    let msg = refused(
        &s,
        s.post(
            "/v1/policy-attachments",
            &json!({"policy_id": p["id"], "certificate_id": "nope"}),
        ),
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("certificate_id"),
    )
    .await;
    assert_eq!(msg, r#"certificate_id: certificate "nope" not found"#);

    let a = created(
        &s,
        "/v1/policy-attachments",
        json!({"policy_id": p["id"], "group_id": g["id"]}),
    )
    .await;
    assert_eq!(a["certificate_id"], Value::Null);
    assert_eq!(a["version"], 1);
    let path = format!("/v1/policy-attachments/{}", id(&a));
    assert_eq!(get_ok(&s, &path).await, a);
    assert_eq!(
        get_ok(&s, "/v1/policy-attachments").await["items"],
        json!([a])
    );

    let msg = refused(
        &s,
        s.post(
            "/v1/policy-attachments",
            &json!({"policy_id": p["id"], "group_id": g["id"]}),
        ),
        StatusCode::CONFLICT,
        "conflict",
        Some("group_id"),
    )
    .await;
    assert!(
        msg.starts_with(r#"policy "p" is already attached to device group"#),
        "{msg}"
    );

    let msg = refused(
        &s,
        s.put(&path, &json!({"policy_id": p["id"], "group_id": g["id"]})),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        None,
    )
    .await;
    assert!(msg.starts_with("policy attachments are immutable"), "{msg}");

    // The policy cannot go while attached.
    let msg = refused(
        &s,
        s.delete(&format!("/v1/policies/{}", id(&p))),
        StatusCode::CONFLICT,
        "conflict",
        None,
    )
    .await;
    assert!(msg.contains("is still attached (1 attachment:"), "{msg}");
    let (status, _) = send(s.delete(&format!("{path}?version=1"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = send(s.delete(&format!("/v1/policies/{}", id(&p)))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

// ------------------------------------------------------------------ firmware

#[tokio::test]
async fn firmware_is_immutable() {
    let (_dir, s) = server().await;
    let f = created(&s, "/v1/firmware", firmware_body("1.4.2")).await;
    assert_eq!(f["version"], "1.4.2");
    assert_eq!(f["hardware"], json!(["m1", "m2"]));
    assert_eq!(f["signature"], Value::Null);
    assert_eq!(f["signature_verified"], false);
    assert_eq!(f["created_at"], f["updated_at"]);
    let path = format!("/v1/firmware/{}", id(&f));
    assert_eq!(get_ok(&s, &path).await, f);

    for req in [
        s.put(&path, &firmware_body("1.4.3")),
        s.http
            .patch(s.url(&path))
            .bearer_auth(&s.token)
            .json(&json!({})),
    ] {
        let msg = refused(
            &s,
            req,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            None,
        )
        .await;
        assert!(msg.starts_with("firmware releases are immutable"), "{msg}");
    }
    let msg = refused(
        &s,
        s.post("/v1/firmware", &firmware_body("1.4.2")),
        StatusCode::CONFLICT,
        "conflict",
        Some("version"),
    )
    .await;
    assert!(
        msg.starts_with("firmware meter-fw version 1.4.2 already exists"),
        "{msg}"
    );
    let msg = refused(
        &s,
        s.post("/v1/firmware", &firmware_body("1.4")),
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("version"),
    )
    .await;
    assert!(
        msg.starts_with(r#"version: invalid semantic version "1.4""#),
        "{msg}"
    );
    let mut body = firmware_body("2.0.0");
    body["sha256"] = json!("abc");
    refused(
        &s,
        s.post("/v1/firmware", &body),
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("sha256"),
    )
    .await;
    let mut body = firmware_body("2.0.0");
    body["hardware"] = json!(["m1", "m1"]);
    refused(
        &s,
        s.post("/v1/firmware", &body),
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("hardware[1]"),
    )
    .await;

    // Referenced by a rollout: cannot be deleted.
    let g = s.create_group(json!({"name": "g"})).await;
    let r = created(
        &s,
        "/v1/rollouts",
        json!({"name": "r", "firmware_id": f["id"], "target_group_ids": [g["id"]], "phases": phases()}),
    )
    .await;
    let msg = refused(&s, s.delete(&path), StatusCode::CONFLICT, "conflict", None).await;
    assert!(
        msg.contains(r#"is used by 1 rollout ("r"); delete the rollouts first"#),
        "{msg}"
    );
    let (status, _) = send(s.delete(&format!("/v1/rollouts/{}", id(&r)))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = send(s.delete(&path)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    refused(&s, s.get(&path), StatusCode::NOT_FOUND, "not_found", None).await;
}

#[tokio::test]
async fn firmware_signatures_are_verified_against_the_given_key() {
    use base64::Engine;
    use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePublicKey};
    use ed25519_dalek::Signer;

    let (_dir, s) = server().await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let digest = hex::decode(SHA).unwrap();
    let sig = base64::engine::general_purpose::STANDARD.encode(key.sign(&digest).to_bytes());

    let mut body = firmware_body("1.0.0");
    body["signature"] = json!(sig);
    body["signing_public_key"] = json!(pem);
    let f = created(&s, "/v1/firmware", body).await;
    assert_eq!(f["signature"], json!(sig));
    assert_eq!(f["signature_verified"], true);

    let other = ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]);
    let bad = base64::engine::general_purpose::STANDARD.encode(other.sign(&digest).to_bytes());
    let mut body = firmware_body("1.0.1");
    body["signature"] = json!(bad);
    body["signing_public_key"] = json!(pem);
    let msg = refused(
        &s,
        s.post("/v1/firmware", &body),
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("signature"),
    )
    .await;
    assert!(msg.starts_with("signature: does not verify"), "{msg}");

    let mut body = firmware_body("1.0.1");
    body["signing_public_key"] = json!(pem);
    refused(
        &s,
        s.post("/v1/firmware", &body),
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("signature"),
    )
    .await;
}

// ------------------------------------------------------------------ rollouts

fn rollout_update_body(r: &Value) -> Value {
    let mut body = r.clone();
    let obj = body.as_object_mut().unwrap();
    for computed in [
        "id",
        "status",
        "counts",
        "current_phase",
        "created_at",
        "updated_at",
    ] {
        obj.remove(computed);
    }
    body
}

async fn rollout_fixture(s: &TestServer) -> (Value, Value) {
    let fw = created(s, "/v1/firmware", firmware_body("1.0.0")).await;
    let g = s.create_group(json!({"name": "canary"})).await;
    (fw, g)
}

#[tokio::test]
async fn rollout_crud_defaults_and_state_changes() {
    let (_dir, s) = server().await;
    let (fw, g) = rollout_fixture(&s).await;
    let sub = s
        .create_group(json!({"name": "sub", "parent_id": g["id"]}))
        .await;
    created(
        &s,
        "/v1/devices",
        json!({"name": "d1", "hardware": "m1", "group_ids": [g["id"]]}),
    )
    .await;
    created(
        &s,
        "/v1/devices",
        json!({"name": "d2", "hardware": "m1", "group_ids": [sub["id"]]}),
    )
    .await;
    created(&s, "/v1/devices", json!({"name": "d3", "hardware": "m1"})).await;

    let r = created(
        &s,
        "/v1/rollouts",
        json!({"name": "wave", "firmware_id": fw["id"], "target_group_ids": [g["id"]], "phases": phases()}),
    )
    .await;
    assert_eq!(r["status"], "pending");
    assert_eq!(r["state"], "running");
    assert_eq!(
        r["failure_threshold"],
        json!({"percent": 5.0, "min_devices": 10, "action": "pause"})
    );
    assert_eq!(r["device_timeout"], "1h");
    assert_eq!(r["max_retries"], 2);
    assert_eq!(r["phases"][2], json!({"percent": 100.0, "soak": "0s"}));
    assert_eq!(r["rate"], Value::Null);
    assert_eq!(r["continuous"], false);
    assert_eq!(r["current_phase"], 0);
    assert_eq!(
        r["counts"],
        json!({"targeted": 2, "pending": 0, "in_progress": 0, "succeeded": 0, "failed": 0, "rolled_back": 0}),
        "d1 directly, d2 through the subgroup"
    );
    let path = format!("/v1/rollouts/{}", id(&r));
    assert_eq!(get_ok(&s, &path).await, r);
    assert_eq!(get_ok(&s, "/v1/rollouts").await["items"], json!([r]));

    // Pause, resume, cancel.
    let mut body = rollout_update_body(&r);
    body["state"] = json!("paused");
    body["maintenance_window"] =
        json!({"days": ["sat", "sun"], "start": "02:00", "duration": "4h"});
    let (status, p) = send(s.put(&path, &body)).await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(
        (
            p["state"].clone(),
            p["status"].clone(),
            p["version"].clone()
        ),
        (json!("paused"), json!("paused"), json!(2))
    );
    assert_eq!(p["maintenance_window"]["days"], json!(["sat", "sun"]));

    let mut body = rollout_update_body(&p);
    body["state"] = json!("running");
    let (_, p) = send(s.put(&path, &body)).await;
    assert_eq!(
        (p["state"].clone(), p["status"].clone()),
        (json!("running"), json!("pending"))
    );

    // Firmware is fixed.
    let other = created(&s, "/v1/firmware", firmware_body("1.0.1")).await;
    let mut body = rollout_update_body(&p);
    body["firmware_id"] = other["id"].clone();
    let msg = refused(
        &s,
        s.put(&path, &body),
        StatusCode::CONFLICT,
        "conflict",
        Some("firmware_id"),
    )
    .await;
    assert!(msg.contains("a rollout's firmware cannot change"), "{msg}");

    // Stale version.
    let mut body = rollout_update_body(&p);
    body["version"] = json!(1);
    let (status, err) = send(s.put(&path, &body)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        (
            err["expected_version"].clone(),
            err["current_version"].clone()
        ),
        (json!(1), json!(3))
    );

    let mut body = rollout_update_body(&p);
    body["state"] = json!("cancelled");
    let (_, c) = send(s.put(&path, &body)).await;
    assert_eq!(
        (c["state"].clone(), c["status"].clone()),
        (json!("cancelled"), json!("cancelled"))
    );
    let mut body = rollout_update_body(&c);
    body["state"] = json!("running");
    let msg = refused(
        &s,
        s.put(&path, &body),
        StatusCode::CONFLICT,
        "conflict",
        Some("state"),
    )
    .await;
    assert_eq!(
        msg,
        "state: a cancelled rollout cannot become running: cancelled is final, create a new rollout instead"
    );

    let (status, _) = send(s.delete(&format!("{path}?version=4"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    refused(&s, s.get(&path), StatusCode::NOT_FOUND, "not_found", None).await;
}

#[tokio::test]
async fn rollout_validation_names_the_field() {
    let (_dir, s) = server().await;
    let (fw, g) = rollout_fixture(&s).await;
    let base = json!({"name": "r", "firmware_id": fw["id"], "target_group_ids": [g["id"]], "phases": phases()});
    let with = |patch: Value| {
        let mut b = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                b.as_object_mut().unwrap().remove(k);
            } else {
                b[k] = v.clone();
            }
        }
        b
    };
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            with(json!({"phases": [{"percent": 50}, {"percent": 20}, {"percent": 100}]})),
            "phases[1].percent",
            "phases[1].percent: must be greater than the previous phase's percent (50), got 20",
        ),
        (
            with(json!({"phases": [{"percent": 10}, {"percent": 80}]})),
            "phases[1].percent",
            "phases[1].percent: the last phase must reach 100, got 80",
        ),
        (
            with(json!({"phases": [{"percent": 100, "soak": "soon"}]})),
            "phases[0].soak",
            "phases[0].soak: ",
        ),
        (
            with(json!({"phases": null})),
            "phases",
            "phases: a rollout needs phase blocks or a rate",
        ),
        (
            with(json!({"rate": {"per_minute": 10}})),
            "rate",
            "rate: conflicts with phase blocks",
        ),
        (
            with(json!({"phases": null, "rate": {"per_minute": 0}})),
            "rate.per_minute",
            "rate.per_minute: must be between 1 and 1000000, got 0",
        ),
        (
            with(
                json!({"failure_threshold": {"percent": 5, "min_devices": 10, "action": "panic"}}),
            ),
            "failure_threshold.action",
            "failure_threshold.action: unknown action \"panic\"",
        ),
        (
            with(
                json!({"maintenance_window": {"days": ["sat", "funday"], "start": "02:00", "duration": "4h"}}),
            ),
            "maintenance_window.days[1]",
            "maintenance_window.days[1]: unknown day \"funday\"",
        ),
        (
            with(json!({"device_timeout": "0s"})),
            "device_timeout",
            "device_timeout: ",
        ),
        (
            with(json!({"max_retries": 11})),
            "max_retries",
            "max_retries: must be between 0 and 10, got 11",
        ),
        (
            with(json!({"start_at": "tomorrow"})),
            "start_at",
            "start_at: invalid timestamp",
        ),
        (
            with(json!({"state": "go"})),
            "state",
            "state: unknown state \"go\"",
        ),
        (
            with(json!({"target_group_ids": []})),
            "target_group_ids",
            "target_group_ids: must list at least one group",
        ),
        (
            with(json!({"target_group_ids": [g["id"], "nope"]})),
            "target_group_ids[1]",
            "target_group_ids[1]: device group \"nope\" not found",
        ),
        (
            with(json!({"firmware_id": "nope"})),
            "firmware_id",
            "firmware_id: firmware \"nope\" not found",
        ),
        (
            with(json!({"name": "a b"})),
            "name",
            "name: invalid character",
        ),
        (
            with(json!({"phase": []})),
            "phase",
            "unknown field \"phase\"",
        ),
    ];
    for (body, field, message) in cases {
        let msg = refused(
            &s,
            s.post("/v1/rollouts", &body),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            Some(field),
        )
        .await;
        assert!(msg.starts_with(message), "{field}: {msg}");
    }

    // A rate-based rollout with every option.
    let r = created(
        &s,
        "/v1/rollouts",
        with(
            json!({"phases": null, "rate": {"per_minute": 5, "growth_factor": 2.0},
                    "failure_threshold": {"percent": 2.5, "min_devices": 3, "action": "rollback"},
                    "device_timeout": "30m", "max_retries": 0, "start_at": "2030-01-01T00:00:00Z",
                    "continuous": true, "state": "paused"}),
        ),
    )
    .await;
    assert_eq!(r["phases"], json!([]));
    assert_eq!(r["rate"], json!({"per_minute": 5, "growth_factor": 2.0}));
    assert_eq!(r["failure_threshold"]["action"], "rollback");
    assert_eq!(r["device_timeout"], "30m");
    assert_eq!(r["max_retries"], 0);
    assert_eq!(r["start_at"], "2030-01-01T00:00:00Z");
    assert_eq!(r["continuous"], true);
    assert_eq!(
        (r["state"].clone(), r["status"].clone()),
        (json!("paused"), json!("paused"))
    );
}

// ------------------------------------------------------------------ metrics, openapi, restart

#[tokio::test]
async fn metrics_count_requests_and_objects_behind_the_token() {
    let (_dir, s) = server().await;
    let (status, body) = send(s.http.get(s.url("/metrics"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "unauthorized", None);

    created(&s, "/v1/devices", json!({"name": "d", "hardware": "m1"})).await;
    get_ok(&s, "/v1/devices").await;
    get_ok(&s, "/v1/devices").await;
    send(s.get("/v1/devices/nope")).await;

    let resp = s.get("/metrics").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = resp.text().await.unwrap();
    for line in [
        "# TYPE fleetd_http_requests_total counter",
        r#"fleetd_http_requests_total{method="POST",route="/v1/devices",status="201"} 1"#,
        r#"fleetd_http_requests_total{method="GET",route="/v1/devices",status="200"} 2"#,
        r#"fleetd_http_requests_total{method="GET",route="/v1/devices/{id}",status="404"} 1"#,
        r#"fleetd_http_requests_total{method="GET",route="/metrics",status="401"} 1"#,
        "# TYPE fleetd_objects gauge",
        r#"fleetd_objects{kind="device"} 1"#,
        r#"fleetd_objects{kind="device_group"} 0"#,
        r#"fleetd_objects{kind="rollout"} 0"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
}

#[tokio::test]
async fn openapi_documents_the_fleet_routes() {
    let (_dir, s) = server().await;
    let doc = get_ok(&s, "/openapi.json").await;
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/v1/devices", &["get", "post"][..]),
        ("/v1/devices/{id}", &["get", "put", "delete"]),
        ("/v1/policies", &["get", "post"]),
        ("/v1/policies/{id}", &["get", "put", "delete"]),
        ("/v1/policies/{id}/versions", &["get"]),
        ("/v1/policy-attachments", &["get", "post"]),
        ("/v1/policy-attachments/{id}", &["get", "delete"]),
        ("/v1/firmware", &["get", "post"]),
        ("/v1/firmware/{id}", &["get", "delete"]),
        ("/v1/rollouts", &["get", "post"]),
        ("/v1/rollouts/{id}", &["get", "put", "delete"]),
        ("/metrics", &["get"]),
    ] {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} undocumented"));
        let mut documented: Vec<&str> = item
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        documented.sort();
        let mut expected = methods.to_vec();
        expected.sort();
        assert_eq!(documented, expected, "{path}");
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "Device",
        "DeviceCreate",
        "DeviceUpdate",
        "Policy",
        "PolicyCreate",
        "PolicyUpdate",
        "PolicyStatement",
        "PolicyVersion",
        "PolicyAttachment",
        "PolicyAttachmentCreate",
        "Firmware",
        "FirmwareCreate",
        "Rollout",
        "RolloutCreate",
        "RolloutUpdate",
        "RolloutPhase",
        "RolloutRate",
        "FailureThreshold",
        "MaintenanceWindow",
        "RolloutCounts",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    for name in [
        "DeviceCreate",
        "PolicyCreate",
        "FirmwareCreate",
        "RolloutCreate",
        "RolloutUpdate",
    ] {
        assert_eq!(schemas[name]["additionalProperties"], false, "{name}");
    }
    for field in ["query", "config", "effective_config", "device_count"] {
        assert!(
            schemas["DeviceGroup"]["properties"].get(field).is_some(),
            "{field}"
        );
    }
}

#[tokio::test]
async fn everything_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let g = s
        .create_group(
            json!({"name": "g", "query": "hardware == \"m1\"", "config": {"a": {"b": 1}}}),
        )
        .await;
    let d = created(
        &s,
        "/v1/devices",
        json!({"name": "d", "hardware": "m1", "group_ids": [g["id"]]}),
    )
    .await;
    let p = created(&s, "/v1/policies", policy_body("p")).await;
    let mut body = policy_body("p");
    body["statements"][0]["actions"] = json!(["*"]);
    body["version"] = json!(1);
    let (_, p) = send(s.put(&format!("/v1/policies/{}", id(&p)), &body)).await;
    let a = created(
        &s,
        "/v1/policy-attachments",
        json!({"policy_id": p["id"], "group_id": g["id"]}),
    )
    .await;
    let f = created(&s, "/v1/firmware", firmware_body("1.0.0")).await;
    let r = created(
        &s,
        "/v1/rollouts",
        json!({"name": "r", "firmware_id": f["id"], "target_group_ids": [g["id"]], "phases": phases(),
               "maintenance_window": {"days": ["mon"], "start": "01:30", "duration": "2h"}}),
    )
    .await;
    let g = get_ok(&s, &format!("/v1/device-groups/{}", id(&g))).await;
    let versions = get_ok(&s, &format!("/v1/policies/{}/versions", id(&p))).await;
    s.stop().await;

    let s = TestServer::start(dir.path()).await;
    assert_eq!(
        get_ok(&s, &format!("/v1/device-groups/{}", id(&g))).await,
        g
    );
    assert_eq!(g["device_count"], 1);
    assert_eq!(get_ok(&s, &format!("/v1/devices/{}", id(&d))).await, d);
    assert_eq!(get_ok(&s, &format!("/v1/policies/{}", id(&p))).await, p);
    assert_eq!(p["policy_version"], 2);
    assert_eq!(
        get_ok(&s, &format!("/v1/policies/{}/versions", id(&p))).await,
        versions
    );
    assert_eq!(
        get_ok(&s, &format!("/v1/policy-attachments/{}", id(&a))).await,
        a
    );
    assert_eq!(get_ok(&s, &format!("/v1/firmware/{}", id(&f))).await, f);
    assert_eq!(get_ok(&s, &format!("/v1/rollouts/{}", id(&r))).await, r);
    s.stop().await;
}

#[tokio::test]
async fn fleet_lists_paginate() {
    let (_dir, s) = server().await;
    for i in 0..3 {
        created(
            &s,
            "/v1/devices",
            json!({"name": format!("d{i}"), "hardware": "m1"}),
        )
        .await;
        created(&s, "/v1/policies", policy_body(&format!("p{i}"))).await;
        created(&s, "/v1/firmware", firmware_body(&format!("1.0.{i}"))).await;
    }
    for collection in ["/v1/devices", "/v1/policies", "/v1/firmware"] {
        let first = get_ok(&s, &format!("{collection}?limit=2")).await;
        assert_eq!(first["items"].as_array().unwrap().len(), 2, "{collection}");
        let token = first["next_page_token"].as_str().unwrap();
        let second = get_ok(&s, &format!("{collection}?limit=2&page_token={token}")).await;
        assert_eq!(second["items"].as_array().unwrap().len(), 1, "{collection}");
        assert_eq!(second["next_page_token"], Value::Null);
        let all = get_ok(&s, &format!("{collection}?limit=3")).await;
        assert_eq!(
            all["next_page_token"],
            Value::Null,
            "{collection}: exactly one full page"
        );
    }
}

#[tokio::test]
async fn policies_attach_to_certificates_and_enrollments_hold_their_group() {
    let (_dir, s) = server().await;
    let ca = created(&s, "/v1/certificate-authorities", json!({"name": "root"})).await;
    let cert = created(
        &s,
        "/v1/certificates",
        json!({"ca_id": ca["id"], "common_name": "bench-1"}),
    )
    .await;
    let p = created(&s, "/v1/policies", policy_body("p")).await;
    let a = created(
        &s,
        "/v1/policy-attachments",
        json!({"policy_id": p["id"], "certificate_id": cert["id"]}),
    )
    .await;
    assert_eq!(a["certificate_id"], cert["id"]);
    assert_eq!(a["group_id"], Value::Null);
    let msg = refused(
        &s,
        s.post(
            "/v1/policy-attachments",
            &json!({"policy_id": p["id"], "certificate_id": cert["id"]}),
        ),
        StatusCode::CONFLICT,
        "conflict",
        Some("certificate_id"),
    )
    .await;
    assert!(msg.contains("is already attached to certificate"), "{msg}");

    let g = s.create_group(json!({"name": "sensors"})).await;
    created(
        &s,
        "/v1/enrollments",
        json!({"name": "e", "ca_id": ca["id"], "group_id": g["id"]}),
    )
    .await;
    let msg = refused(
        &s,
        s.delete(&format!("/v1/device-groups/{}", id(&g))),
        StatusCode::CONFLICT,
        "conflict",
        None,
    )
    .await;
    assert_eq!(
        msg,
        format!(
            "device group \"sensors\" ({}) is the target of 1 enrollment (\"e\"); delete or retarget it first",
            id(&g)
        )
    );
}
