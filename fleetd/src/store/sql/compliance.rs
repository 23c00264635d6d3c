//! Compliance rows: each device's state and the per-group counters that
//! make a group's summary an O(1) read.
//!
//! Invariant: for every group G and state S, `group_compliance(G, S)` is
//! the number of devices whose `compliance` is S and whose
//! `compliance_groups` contains G. Every write below moves a device
//! between (state, groups) pairs and adjusts both sides in the same
//! transaction.

use super::db::{self, params, Connection, OptionalExtension};
use chrono::{DateTime, Utc};

use super::time;
use crate::domain::compliance::{self, Observation, State, Summary};
use crate::store::compliance::NonCompliantDevice;
use crate::store::device_api::CheckinReport;
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

/// The version the device's most recent completed rollout installed.
/// A device is in few rollouts: the newest is picked here rather than by
/// `ORDER BY … LIMIT 1`, which makes SQLite build a temporary B-tree on
/// every check-in.
fn desired_firmware(conn: &Connection, device_id: &str) -> Result<Option<String>, StoreError> {
    let rows = conn
        .prepare_cached(
            "SELECT f.release_version, r.updated_at, r.id FROM rollout_devices rd
               JOIN rollouts r ON r.seq = rd.rollout
               JOIN firmware f ON f.id = r.firmware_id
              WHERE rd.device_id = ?1 AND r.status = 'completed'",
        )?
        .query_map([device_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?
        .collect::<db::Result<Vec<_>>>()?;
    Ok(newest_release(rows))
}

/// The release of the row with the greatest (`updated_at`, rollout id).
fn newest_release(rows: Vec<(String, String, String)>) -> Option<String> {
    rows.into_iter()
        .max_by(|a, b| (&a.1, &a.2).cmp(&(&b.1, &b.2)))
        .map(|(release, _, _)| release)
}

/// What a check-in's update leaves of a device: reported firmware,
/// applied config digest, and its compliance state, reason and groups
/// (JSON) from before.
type CheckinRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The update of a device's reported state (`?1` the device id); the
/// same text with and without `RETURNING`.
macro_rules! update_reported {
    () => {
        "UPDATE devices
            SET firmware_version = COALESCE(?2, firmware_version),
                health = COALESCE(?3, health),
                config_digest = COALESCE(?5, config_digest),
                last_seen = ?4,
                stale_at = ?6
          WHERE id = ?1"
    };
}

/// Writes a check-in's reported state and returns what it leaves of the
/// device: in one `UPDATE … RETURNING`, or where that costs more (see
/// [`db::READ_BEFORE_UPDATE`]) as a read of the row and a plain update.
fn update_reported(
    tx: &Connection,
    device_id: &str,
    report: &CheckinReport,
    at: DateTime<Utc>,
    stale_at: Option<String>,
) -> Result<Option<CheckinRow>, StoreError> {
    let at = time::to_text(at);
    let values = params![
        device_id,
        report.firmware_version,
        report.health,
        at,
        report.config_digest,
        stale_at,
    ];
    let row = |r: &db::Row<'_>| -> db::Result<CheckinRow> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    };
    if !db::READ_BEFORE_UPDATE {
        return Ok(tx
            .prepare_cached(concat!(
                update_reported!(),
                " RETURNING firmware_version, config_digest, compliance, compliance_reason,
                            compliance_groups"
            ))?
            .query_row(values, row)
            .optional()?);
    }
    let before: Option<CheckinRow> = tx
        .prepare_cached(
            "SELECT firmware_version, config_digest, compliance, compliance_reason,
                    compliance_groups
               FROM devices WHERE id = ?1",
        )?
        .query_row([device_id], row)
        .optional()?;
    let Some((firmware, applied, state, reason, groups)) = before else {
        return Ok(None);
    };
    tx.prepare_cached(update_reported!())?.execute(values)?;
    Ok(Some((
        report.firmware_version.clone().or(firmware),
        report.config_digest.clone().or(applied),
        state,
        reason,
        groups,
    )))
}

/// Records one check-in: the reported state, then (when the check-in
/// carries what the fleet wants) the device's compliance and counters.
/// `false` when the device does not exist.
pub(super) fn record_checkin(
    tx: &Connection,
    device_id: &str,
    report: &CheckinReport,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let stale_at = report
        .compliance
        .as_ref()
        .and_then(|c| compliance::stale_at(at, c.stale_after_secs.iter().copied()))
        .map(time::to_text);
    let row = update_reported(tx, device_id, report, at, stale_at)?;
    let Some((firmware, applied, old_state, old_reason, old_groups)) = row else {
        return Ok(false);
    };
    let Some(input) = &report.compliance else {
        return Ok(true);
    };
    let want = desired_firmware(tx, device_id)?;
    let (state, reason) = compliance::evaluate(&Observation {
        reported_firmware: firmware.as_deref(),
        applied_digest: applied.as_deref(),
        desired_firmware: want.as_deref(),
        desired_digest: &input.desired_digest,
    });
    let old_groups_text = old_groups.clone();
    let old_groups = groups_of(old_groups);
    let state = state.as_str();
    if old_state.as_deref() != Some(state) || old_groups != input.groups {
        if let Some(old) = &old_state {
            adjust(tx, &old_groups, old, -1)?;
        }
        adjust(tx, &input.groups, state, 1)?;
    }
    let groups_text = serde_json::to_string(&input.groups).map_err(StoreError::backend)?;
    if old_state.as_deref() != Some(state)
        || old_reason != reason
        || old_groups_text.as_deref() != Some(groups_text.as_str())
    {
        tx.prepare_cached(
            "UPDATE devices SET compliance = ?2, compliance_reason = ?3, compliance_groups = ?4
              WHERE id = ?1",
        )?
        .execute(params![device_id, state, reason, groups_text])?;
    }
    Ok(true)
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
