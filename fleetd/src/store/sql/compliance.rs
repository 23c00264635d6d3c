//! Compliance rows: each device's state and the per-group counters that
//! make a group's summary an O(1) read.
//!
//! Invariant: for every group G and state S, `group_compliance(G, S)` is
//! the number of devices whose `compliance` is S and whose
//! `compliance_groups` contains G. Every write below moves a device
//! between (state, groups) pairs and adjusts both sides in the same
//! transaction.

use std::collections::{BTreeSet, HashMap};

use super::db::{self, params, Connection, OptionalExtension};
use chrono::{DateTime, Utc};

use super::time;
use crate::domain::compliance::{self, Observation, State, Summary};
use crate::store::compliance::NonCompliantDevice;
use crate::store::device_api::{CheckinReport, ComplianceInput};
use crate::store::{ObjectKind, StoreError};

/// Adds `delta` devices in `state` to each of `groups`.
fn adjust(conn: &Connection, groups: &[String], state: &str, delta: i64) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO group_compliance (group_id, state, devices)
         VALUES (?1, ?2, CASE WHEN ?3 > 0 THEN ?3 ELSE 0 END)
         ON CONFLICT (group_id, state) DO UPDATE
            SET devices = CASE WHEN group_compliance.devices + ?3 > 0
                               THEN group_compliance.devices + ?3 ELSE 0 END",
    )?;
    for g in groups {
        // A group deleted since the device's last check-in has no row to
        // keep (its counters went with it).
        let exists: bool = conn
            .prepare_cached("SELECT 1 FROM device_groups WHERE id = ?1")?
            .query_row([g], |_| Ok(()))
            .optional()?
            .is_some();
        if exists {
            stmt.execute(params![g, state, delta])?;
        }
    }
    Ok(())
}

fn groups_of(text: Option<String>) -> Vec<String> {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// What a check-in's write needs of a device from before it: reported
/// firmware, applied config digest, and compliance state, reason and
/// groups (JSON).
struct Before {
    firmware: Option<String>,
    applied: Option<String>,
    state: Option<String>,
    reason: Option<String>,
    groups: Option<String>,
}

/// The devices of `ids_json` (a JSON array of distinct ids) as they are
/// now; the ones that do not exist are missing from the map.
fn read_before(conn: &Connection, ids_json: &str) -> Result<HashMap<String, Before>, StoreError> {
    let rows = conn
        .prepare_cached(&format!(
            "SELECT d.id, d.firmware_version, d.config_digest, d.compliance,
                    d.compliance_reason, d.compliance_groups
               FROM {} AS j CROSS JOIN devices d WHERE d.id = j.value",
            db::json_text_elements("?1")
        ))?
        .query_map([ids_json], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Before {
                    firmware: r.get(1)?,
                    applied: r.get(2)?,
                    state: r.get(3)?,
                    reason: r.get(4)?,
                    groups: r.get(5)?,
                },
            ))
        })?
        .collect::<db::Result<_>>()?;
    Ok(rows)
}

/// The version each device of `ids_json` got from its most recent
/// completed rollout (devices without one are missing from the map). A
/// device is in few rollouts: the newest is picked here rather than by
/// `ORDER BY … LIMIT 1`, which makes SQLite build a temporary B-tree.
fn desired_firmware(
    conn: &Connection,
    ids_json: &str,
) -> Result<HashMap<String, String>, StoreError> {
    let rows = conn
        .prepare_cached(&format!(
            "SELECT rd.device_id, f.release_version, r.updated_at, r.id
               FROM {} AS j CROSS JOIN rollout_devices rd
               JOIN rollouts r ON r.seq = rd.rollout
               JOIN firmware f ON f.id = r.firmware_id
              WHERE rd.device_id = j.value AND r.status = 'completed'",
            db::json_text_elements("?1")
        ))?
        .query_map([ids_json], |r| {
            Ok((
                r.get::<_, String>(0)?,
                (
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ),
            ))
        })?
        .collect::<db::Result<Vec<_>>>()?;
    let mut by_device: HashMap<String, Vec<(String, String, String)>> = HashMap::new();
    for (device, row) in rows {
        by_device.entry(device).or_default().push(row);
    }
    Ok(by_device
        .into_iter()
        .filter_map(|(device, rows)| newest_release(rows).map(|release| (device, release)))
        .collect())
}

/// The release of the row with the greatest (`updated_at`, rollout id).
fn newest_release(rows: Vec<(String, String, String)>) -> Option<String> {
    rows.into_iter()
        .max_by(|a, b| (&a.1, &a.2).cmp(&(&b.1, &b.2)))
        .map(|(release, _, _)| release)
}

/// Records a batch of check-ins, in order: each one's reported state,
/// then (when it carries what the fleet wants) the device's compliance
/// and counters. One `false` per device that does not exist.
///
/// What the writes depend on (the devices' rows, their desired firmware)
/// is read in two statements per [`CHECKIN_CHUNK`] check-ins; a device
/// that checks in twice in one batch sees its first check-in's result.
/// The store's write lock (SQLite's writer, PostgreSQL's advisory lock)
/// keeps the rows as read until the transaction ends.
pub(super) fn record_checkins(
    tx: &Connection,
    batch: &[(String, CheckinReport, DateTime<Utc>)],
) -> Result<Vec<bool>, StoreError> {
    let mut found = Vec::with_capacity(batch.len());
    for chunk in batch.chunks(CHECKIN_CHUNK) {
        record_chunk(tx, chunk, &mut found)?;
    }
    Ok(found)
}

/// Check-ins read together by [`record_checkins`]: few round trips on
/// PostgreSQL, and small enough that each chunk's maps stay in the
/// allocator's small size classes (a batch of thousands made large
/// allocations that the allocator returned to the system and faulted in
/// again, batch after batch). A later chunk reads what earlier ones wrote.
const CHECKIN_CHUNK: usize = 64;

/// [`record_checkins`] for one chunk; pushes one outcome per check-in
/// to `found`.
fn record_chunk(
    tx: &Connection,
    batch: &[(String, CheckinReport, DateTime<Utc>)],
    found: &mut Vec<bool>,
) -> Result<(), StoreError> {
    // Each device once. `CROSS JOIN` makes SQLite start from the list:
    // one primary-key lookup per device, not a scan of the table.
    let ids: BTreeSet<&str> = batch.iter().map(|(id, _, _)| id.as_str()).collect();
    let ids_json = serde_json::to_string(&ids).map_err(StoreError::backend)?;
    let mut before = read_before(tx, &ids_json)?;
    let wanted = if batch.iter().any(|(_, r, _)| r.compliance.is_some()) {
        desired_firmware(tx, &ids_json)?
    } else {
        HashMap::new()
    };
    let mut update = tx.prepare_cached(
        "UPDATE devices
            SET firmware_version = COALESCE(?2, firmware_version),
                health = COALESCE(?3, health),
                config_digest = COALESCE(?5, config_digest),
                last_seen = ?4,
                stale_at = ?6
          WHERE id = ?1",
    )?;
    for (device_id, report, at) in batch {
        let Some(row) = before.get_mut(device_id) else {
            found.push(false);
            continue;
        };
        let stale_at = report
            .compliance
            .as_ref()
            .and_then(|c| compliance::stale_at(*at, c.stale_after_secs.iter().copied()))
            .map(time::to_text);
        update.execute(params![
            device_id,
            report.firmware_version,
            report.health,
            time::to_text(*at),
            report.config_digest,
            stale_at,
        ])?;
        if let Some(v) = &report.firmware_version {
            row.firmware = Some(v.clone());
        }
        if let Some(d) = &report.config_digest {
            row.applied = Some(d.clone());
        }
        if let Some(input) = &report.compliance {
            record_compliance(tx, device_id, row, wanted.get(device_id), input)?;
        }
        found.push(true);
    }
    Ok(())
}

/// Evaluates a checked-in device's compliance and moves it (and the
/// counters) to the result; `row` is left as the device now is.
fn record_compliance(
    tx: &Connection,
    device_id: &str,
    row: &mut Before,
    want: Option<&String>,
    input: &ComplianceInput,
) -> Result<(), StoreError> {
    let (state, reason) = compliance::evaluate(&Observation {
        reported_firmware: row.firmware.as_deref(),
        applied_digest: row.applied.as_deref(),
        desired_firmware: want.map(String::as_str),
        desired_digest: &input.desired_digest,
    });
    let old_groups = groups_of(row.groups.clone());
    let state = state.as_str();
    if row.state.as_deref() != Some(state) || old_groups != input.groups {
        if let Some(old) = &row.state {
            adjust(tx, &old_groups, old, -1)?;
        }
        adjust(tx, &input.groups, state, 1)?;
    }
    let groups_text = serde_json::to_string(&input.groups).map_err(StoreError::backend)?;
    if row.state.as_deref() != Some(state)
        || row.reason != reason
        || row.groups.as_deref() != Some(groups_text.as_str())
    {
        tx.prepare_cached(
            "UPDATE devices SET compliance = ?2, compliance_reason = ?3, compliance_groups = ?4
              WHERE id = ?1",
        )?
        .execute(params![device_id, state, reason, groups_text])?;
    }
    row.state = Some(state.to_owned());
    row.reason = reason;
    row.groups = Some(groups_text);
    Ok(())
}

/// Takes a device out of every counter (before it is deleted).
pub(super) fn forget(tx: &Connection, device_id: &str) -> Result<(), StoreError> {
    let row: Option<(Option<String>, Option<String>)> = tx
        .prepare_cached("SELECT compliance, compliance_groups FROM devices WHERE id = ?1")?
        .query_row([device_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((Some(state), groups)) = row {
        adjust(tx, &groups_of(groups), &state, -1)?;
    }
    Ok(())
}

pub(super) fn sweep_stale(
    tx: &Connection,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<u64, StoreError> {
    type Row = (String, Option<String>, Option<String>, Option<String>);
    let due: Vec<Row> = tx
        .prepare_cached(
            "SELECT id, compliance, compliance_groups, last_seen FROM devices
              WHERE stale_at IS NOT NULL AND stale_at <= ?1
              ORDER BY stale_at LIMIT ?2",
        )?
        .query_map(params![time::to_text(now), i64::from(limit)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<db::Result<_>>()?;
    let mut update = tx.prepare_cached(
        "UPDATE devices SET compliance = 'stale', compliance_reason = ?2, stale_at = NULL
          WHERE id = ?1",
    )?;
    for (id, state, groups, last_seen) in &due {
        let groups = groups_of(groups.clone());
        if let Some(old) = state.as_deref().filter(|s| *s != "stale") {
            adjust(tx, &groups, old, -1)?;
            adjust(tx, &groups, State::Stale.as_str(), 1)?;
        }
        let seen = last_seen.as_deref().and_then(|t| time::parse(t).ok());
        update.execute(params![id, compliance::stale_reason(seen)])?;
    }
    Ok(due.len() as u64)
}

pub(super) fn summary(conn: &Connection, group_id: &str) -> Result<Summary, StoreError> {
    let mut s = Summary::default();
    let rows = conn
        .prepare_cached("SELECT state, devices FROM group_compliance WHERE group_id = ?1")?
        .query_map([group_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?
        .collect::<db::Result<Vec<_>>>()?;
    for (state, n) in rows {
        if let Some(st) = State::parse(&state) {
            s.add(st, n.max(0) as u64);
        }
    }
    Ok(s)
}

pub(super) fn group_summary(conn: &Connection, group_id: &str) -> Result<Summary, StoreError> {
    let exists = conn
        .prepare_cached("SELECT 1 FROM device_groups WHERE id = ?1")?
        .query_row([group_id], |_| Ok(()))
        .optional()?
        .is_some();
    if !exists {
        return Err(StoreError::NotFound {
            kind: ObjectKind::DeviceGroup,
            id: group_id.to_owned(),
        });
    }
    summary(conn, group_id)
}

pub(super) fn noncompliant(
    conn: &Connection,
    group_id: &str,
    state: Option<State>,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<NonCompliantDevice>, StoreError> {
    group_summary(conn, group_id)?;
    let limit = limit.min(crate::store::MAX_PAGE_SIZE + 1);
    let rows = conn
        .prepare_cached(&format!(
            "SELECT d.id, d.name, d.compliance, d.compliance_reason, d.last_seen
               FROM devices d
              WHERE d.compliance IS NOT NULL AND d.compliance <> 'in_sync'
                AND (?2 IS NULL OR d.compliance = ?2)
                AND (?3 IS NULL OR d.id > ?3)
                AND EXISTS (SELECT 1 FROM {} j WHERE j.value = ?1)
              ORDER BY d.id LIMIT ?4",
            db::json_text_elements("d.compliance_groups")
        ))?
        .query_map(
            params![group_id, state.map(State::as_str), after, i64::from(limit)],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                ))
            },
        )?
        .collect::<db::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(|(id, name, state, reason, seen)| {
            Ok(NonCompliantDevice {
                device_id: id,
                name,
                state: State::parse(&state).unwrap_or(State::Stale),
                reason: reason.unwrap_or_default(),
                last_seen: seen.as_deref().map(time::parse).transpose()?,
            })
        })
        .collect()
}

#[async_trait::async_trait]
impl crate::store::ComplianceStore for super::Backend {
    async fn sweep_stale(&self, now: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        self.call(move |conn| super::write(conn, |tx, _| sweep_stale(tx, now, limit)))
            .await
    }

    async fn group_compliance(&self, group_id: &str) -> Result<Summary, StoreError> {
        let group_id = group_id.to_owned();
        self.call_read(move |conn| group_summary(conn, &group_id))
            .await
    }

    async fn noncompliant_devices(
        &self,
        group_id: &str,
        state: Option<State>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<NonCompliantDevice>, StoreError> {
        let group_id = group_id.to_owned();
        let after = after.map(str::to_owned);
        self.call_read(move |conn| noncompliant(conn, &group_id, state, after.as_deref(), limit))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::newest_release;

    fn row(release: &str, updated_at: &str, id: &str) -> (String, String, String) {
        (release.into(), updated_at.into(), id.into())
    }

    #[test]
    fn the_newest_completed_rollout_names_the_desired_firmware() {
        assert_eq!(newest_release(vec![]), None);
        let rows = vec![
            row("1.0.0", "2026-01-01T00:00:00.000Z", "r-b"),
            row("3.0.0", "2026-03-01T00:00:00.000Z", "r-a"),
            row("2.0.0", "2026-02-01T00:00:00.000Z", "r-c"),
        ];
        assert_eq!(newest_release(rows).as_deref(), Some("3.0.0"));
        // Same time: the greater rollout id wins (as `ORDER BY updated_at
        // DESC, id DESC` would pick).
        let rows = vec![
            row("2.0.0", "2026-03-01T00:00:00.000Z", "r-b"),
            row("2.1.0", "2026-03-01T00:00:00.000Z", "r-c"),
            row("1.9.0", "2026-03-01T00:00:00.000Z", "r-a"),
        ];
        assert_eq!(newest_release(rows).as_deref(), Some("2.1.0"));
    }
}
