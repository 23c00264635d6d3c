//! A dynamic group's `device_count` (static members plus query matches,
//! each once) equals an independent count: every device fetched through
//! the store, its static groups and the domain's query evaluator. Guards
//! the one-pass count in `store/*/membership.rs`, on both backends.

mod store_common;

use store_common::TestDb;

use std::collections::BTreeMap;

use fleetd::domain::group::validate_query;
use fleetd::store::{Actor, DeviceGroupSpec, DeviceSpec};

async fn dynamic_group_count_is_static_members_plus_matches_once(db: TestDb) {
    let store = db.open().await;
    let actor = Actor::admin();
    let group = |name: &str, query: Option<&str>| DeviceGroupSpec {
        name: name.into(),
        query: query.map(str::to_owned),
        ..Default::default()
    };
    let other = store
        .create_device_group(&actor, group("other", None))
        .await
        .unwrap();
    let queries = [
        "attr.region == \"eu\"",
        "hardware == \"m2\" and attr.region != \"eu\"",
        "name == \"d007\" or attr.tier == \"gold\"",
        // Narrowed by the database before the evaluator sees a row.
        "attr[\"site name\"] in [\"Main St\", \"Dock 4\"] and hardware == \"m1\"",
        "attr.beta == true or attr.beta in [\"x\"]",
        "attr[\"odd \\\"key\"] == \"q\"",
        "hardware in [\"m2\"] and not attr.region == \"us\"",
    ];
    let mut dynamic = Vec::new();
    for (i, q) in queries.iter().enumerate() {
        dynamic.push(
            store
                .create_device_group(&actor, group(&format!("dyn{i}"), Some(q)))
                .await
                .unwrap(),
        );
    }
    for i in 0..60 {
        let mut attributes = BTreeMap::new();
        attributes.insert("region".to_owned(), ["eu", "us", "apac"][i % 3].to_owned());
        if i % 7 == 0 {
            attributes.insert("tier".to_owned(), "gold".to_owned());
        }
        let site = ["Main St", "Dock 4", "Yard"][i % 3];
        attributes.insert("site name".to_owned(), site.to_owned());
        attributes.insert("beta".to_owned(), (i % 6 == 1).to_string());
        if i % 5 == 2 {
            attributes.insert("odd \"key".to_owned(), "q".to_owned());
        }
        // Static members of a dynamic group, some of which also match its
        // query, and members of an unrelated group.
        let mut group_ids = Vec::new();
        if i % 4 == 0 {
            group_ids.push(dynamic[i % dynamic.len()].id.clone());
        }
        if i % 5 == 0 {
            group_ids.push(other.id.clone());
        }
        store
            .create_device(
                &actor,
                DeviceSpec {
                    name: format!("d{i:03}"),
                    hardware: if i % 2 == 0 { "m1" } else { "m2" }.into(),
                    attributes,
                    group_ids,
                },
            )
            .await
            .unwrap();
    }
    let devices = store.list_devices(None, 1000, None).await.unwrap();
    assert_eq!(devices.len(), 60);
    for (g, q) in dynamic.iter().zip(queries) {
        let query = validate_query(q).unwrap();
        let expected = devices
            .iter()
            .filter(|d| d.group_ids.contains(&g.id) || query.matches(&d.facts()))
            .count() as i64;
        let got = store.get_device_group(&g.id).await.unwrap().device_count;
        assert_eq!(got, expected, "{q}");
        assert!(got > 0, "{q}");
    }
    // A group without a query counts its static members.
    assert_eq!(
        store
            .get_device_group(&other.id)
            .await
            .unwrap()
            .device_count,
        12
    );
}

store_tests!(dynamic_group_count_is_static_members_plus_matches_once);
