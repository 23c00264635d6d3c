//! Who is in a group: static members (rows in `device_group_members`) plus
//! the devices a group's `query` selects.
//!
//! Dynamic membership is evaluated with the domain's query evaluator over
//! the devices table; there is no materialised membership. Where a query
//! implies a text equality (`hardware == "x"`, `attr.site in [...]`, see
//! `Query::narrowing`) the database filters on it first, so the evaluator
//! sees only the candidates; other queries scan every device, O(devices)
//! per group (measured in BENCHMARKS.md).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::db::{self, params, Connection};

use super::time;
use crate::domain::group;
use crate::domain::query::{DeviceFacts, Field, Query};
use crate::store::StoreError;

/// Guard for recursive walks (the hierarchy is at most 16 deep).
const MAX_DEPTH: i64 = 10_000;

/// Calls `f` with every device's facts and static group ids, in id order.
pub(super) fn for_each_device(
    conn: &Connection,
    mut f: impl FnMut(&DeviceFacts, &[String]),
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT d.id, d.name, d.hardware, d.attributes, d.firmware_version, d.health,
                d.last_seen,
                (SELECT {} FROM device_group_members m WHERE m.device_id = d.id)
           FROM devices d ORDER BY d.id",
        db::json_array_agg("m.group_id")
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let attributes: String = r.get(3)?;
        let last_seen: Option<String> = r.get(6)?;
        let groups: String = r.get(7)?;
        let facts = DeviceFacts {
            id: r.get(0)?,
            name: r.get(1)?,
            hardware: r.get(2)?,
            attributes: serde_json::from_str::<BTreeMap<String, String>>(&attributes)
                .map_err(StoreError::backend)?,
            firmware: r.get(4)?,
            health: r.get(5)?,
            last_seen: last_seen.as_deref().map(time::parse).transpose()?,
        };
        let groups: Vec<String> = serde_json::from_str(&groups).map_err(StoreError::backend)?;
        f(&facts, &groups);
    }
    Ok(())
}

/// The parsed query of a stored group. Queries are validated before they
/// are stored, so a failure here means a hand-edited database; such a
/// group is logged and treated as having no dynamic members.
pub(super) fn parse_stored_query(group_id: &str, query: Option<&str>) -> Option<Query> {
    let q = query?;
    match group::validate_query(q) {
        Ok(q) => Some(q),
        Err(e) => {
            tracing::warn!(group_id, error = %e, "ignoring an invalid stored group query");
            None
        }
    }
}

/// Static members plus query matches of one group, each counted once.
///
/// Static members are counted in their index. Query matches take one pass
/// over the devices that are not static members; when the query implies
/// a text equality ([`Query::narrowing`]) the database skips the devices
/// outside it before any row reaches the evaluator (an attribute is read
/// from the stored JSON by the database's JSON functions).
pub(super) fn device_count(
    conn: &Connection,
    group_id: &str,
    query: Option<&str>,
) -> Result<i64, StoreError> {
    let members: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM device_group_members WHERE group_id = ?1")?
        .query_row([group_id], |r| r.get(0))?;
    let Some(query) = parse_stored_query(group_id, query) else {
        return Ok(members);
    };
    let narrowing = query.narrowing().and_then(|n| {
        let values = serde_json::to_string(&n.values).ok()?;
        let (column, param) = match &n.field {
            Field::Id => ("d.id".to_owned(), None),
            Field::Name => ("d.name".to_owned(), None),
            Field::Hardware => ("d.hardware".to_owned(), None),
            Field::Health => ("d.health".to_owned(), None),
            Field::Attr(key) => (
                db::json_text_field("d.attributes", "?3"),
                Some(db::json_field_param(key)?),
            ),
            Field::Firmware | Field::LastSeen => return None,
        };
        Some((column, values, param))
    });
    let filter = match &narrowing {
        Some((column, _, _)) => format!(
            "{column} IN (SELECT value FROM {}) AND",
            db::json_text_elements("?2")
        ),
        None => String::new(),
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT d.id, d.name, d.hardware, d.attributes, d.firmware_version, d.health,
                d.last_seen
           FROM devices d
          WHERE {filter} NOT EXISTS (SELECT 1 FROM device_group_members m
                                       WHERE m.device_id = d.id AND m.group_id = ?1)"
    ))?;
    let mut rows = match &narrowing {
        Some((_, values, Some(param))) => stmt.query(params![group_id, values, param])?,
        Some((_, values, None)) => stmt.query(params![group_id, values])?,
        None => stmt.query([group_id])?,
    };
    let mut count = members;
    while let Some(r) = rows.next()? {
        let attributes: String = r.get(3)?;
        let last_seen: Option<String> = r.get(6)?;
        let facts = DeviceFacts {
            id: r.get(0)?,
            name: r.get(1)?,
            hardware: r.get(2)?,
            attributes: serde_json::from_str::<BTreeMap<String, String>>(&attributes)
                .map_err(StoreError::backend)?,
            firmware: r.get(4)?,
            health: r.get(5)?,
            last_seen: last_seen.as_deref().map(time::parse).transpose()?,
        };
        if query.matches(&facts) {
            count += 1;
        }
    }
    Ok(count)
}

/// Devices targeted by a rollout: members (static or dynamic) of any of
/// `group_ids` or of their subgroups, each counted once.
pub(super) fn targeted_count(conn: &Connection, group_ids: &[String]) -> Result<i64, StoreError> {
    let ids_json = serde_json::to_string(group_ids).map_err(StoreError::backend)?;
    let mut stmt = conn.prepare_cached(&format!(
        "WITH RECURSIVE sub (id, depth) AS (
             SELECT value, 0 FROM {}
             UNION
             SELECT g.id, s.depth + 1 FROM device_groups g JOIN sub s ON g.parent_id = s.id
              WHERE s.depth < ?2
         )
         SELECT DISTINCT g.id, g.query FROM sub JOIN device_groups g ON g.id = sub.id",
        db::json_text_elements("?1")
    ))?;
    let groups: Vec<(String, Option<String>)> = stmt
        .query_map(params![ids_json, MAX_DEPTH], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<db::Result<_>>()?;
    let static_ids: HashSet<&str> = groups.iter().map(|(id, _)| id.as_str()).collect();
    let queries: Vec<Query> = groups
        .iter()
        .filter_map(|(id, q)| parse_stored_query(id, q.as_deref()))
        .collect();
    if queries.is_empty() {
        let all: Vec<&str> = static_ids.into_iter().collect();
        let all_json = serde_json::to_string(&all).map_err(StoreError::backend)?;
        return Ok(conn
            .prepare_cached(&format!(
                "SELECT COUNT(DISTINCT device_id) FROM device_group_members
                  WHERE group_id IN (SELECT value FROM {})",
                db::json_text_elements("?1")
            ))?
            .query_row([all_json], |r| r.get(0))?);
    }
    let mut count = 0;
    for_each_device(conn, |facts, groups| {
        if groups.iter().any(|g| static_ids.contains(g.as_str()))
            || queries.iter().any(|q| q.matches(facts))
        {
            count += 1;
        }
    })?;
    Ok(count)
}

/// Device counts of many groups with one scan (for list pages).
pub(super) fn device_counts(
    conn: &Connection,
    groups: &[(String, Option<String>)],
) -> Result<HashMap<String, i64>, StoreError> {
    let queries: Vec<(&str, Query)> = groups
        .iter()
        .filter_map(|(id, q)| Some((id.as_str(), parse_stored_query(id, q.as_deref())?)))
        .collect();
    let mut counts: HashMap<String, i64> = HashMap::new();
    if queries.is_empty() {
        for (id, _) in groups {
            counts.insert(id.clone(), device_count(conn, id, None)?);
        }
        return Ok(counts);
    }
    let wanted: HashSet<&str> = groups.iter().map(|(id, _)| id.as_str()).collect();
    for (id, _) in groups {
        counts.insert(id.clone(), 0);
    }
    for_each_device(conn, |facts, member_of| {
        let mut hit: HashSet<&str> = member_of
            .iter()
            .map(String::as_str)
            .filter(|g| wanted.contains(g))
            .collect();
        for (id, q) in &queries {
            if !hit.contains(id) && q.matches(facts) {
                hit.insert(id);
            }
        }
        for id in hit {
            if let Some(c) = counts.get_mut(id) {
                *c += 1;
            }
        }
    })?;
    Ok(counts)
}
