//! Firmware rollout *definitions*: validation, the maintenance-window
//! calendar and the allowed state changes. The engine that moves devices
//! through a rollout builds on the [`RolloutPlan`] produced here.
//!
//! A rollout advances either in explicit **phases** (`percent` of the
//! targeted devices, then a `soak` period before the next phase) or at an
//! exponential **rate** (`per_minute` devices, multiplied by
//! `growth_factor` every minute) — never both, because the two would
//! disagree about how many devices to update next.
//!
//! Phases must be strictly increasing and end at 100%: a rollout that
//! stops at 80% would leave a fleet split forever without anyone having
//! asked for it. A 0-second soak is allowed (for test fleets).
//!
//! Every error names its field path as written in HCL, e.g.
//! `phase[2].percent` or `maintenance_window.days[1]`.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveTime, Utc, Weekday};

use super::duration;
use super::{indexed, FieldError};

pub const MAX_PHASES: usize = 20;
pub const MAX_SOAK_SECS: u64 = 30 * 86_400;
pub const MAX_DEVICE_TIMEOUT_SECS: u64 = 7 * 86_400;
pub const MAX_WINDOW_SECS: u64 = 7 * 86_400;
pub const MAX_RETRIES: i64 = 10;
pub const MAX_PER_MINUTE: i64 = 1_000_000;

/// Defaults for omitted settings: conservative, so that an unconfigured
/// rollout pauses early instead of bricking a fleet.
pub const DEFAULT_FAILURE_PERCENT: f64 = 5.0;
pub const DEFAULT_FAILURE_MIN_DEVICES: u32 = 10;
pub const DEFAULT_DEVICE_TIMEOUT_SECS: u64 = 3_600;
pub const DEFAULT_MAX_RETRIES: u32 = 2;

// ---------------------------------------------------------------- input

/// A rollout as submitted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RolloutSpec {
    pub target_group_ids: Vec<String>,
    pub phases: Vec<PhaseSpec>,
    pub rate: Option<RateSpec>,
    pub failure_threshold: Option<FailureThresholdSpec>,
    pub device_timeout: Option<String>,
    pub max_retries: Option<i64>,
    /// RFC 3339.
    pub start_at: Option<String>,
    pub maintenance_window: Option<MaintenanceWindowSpec>,
    pub continuous: bool,
    pub state: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhaseSpec {
    pub percent: f64,
    /// Duration such as `"30m"`; `None` means no soak.
    pub soak: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateSpec {
    pub per_minute: i64,
    /// `None` means 1 (constant rate).
    pub growth_factor: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FailureThresholdSpec {
    pub percent: f64,
    pub min_devices: i64,
    pub action: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MaintenanceWindowSpec {
    /// `mon` … `sun`.
    pub days: Vec<String>,
    /// `"HH:MM"`, UTC.
    pub start: String,
    /// Duration such as `"4h"`.
    pub duration: String,
}

// ---------------------------------------------------------------- output

#[derive(Debug, Clone, PartialEq)]
pub struct RolloutPlan {
    pub target_group_ids: Vec<String>,
    pub strategy: Strategy,
    pub failure_threshold: FailureThreshold,
    pub device_timeout_secs: u64,
    pub max_retries: u32,
    pub start_at: Option<DateTime<Utc>>,
    pub maintenance_window: Option<MaintenanceWindow>,
    pub continuous: bool,
    pub state: RolloutState,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    Phased(Vec<Phase>),
    Rate { per_minute: u32, growth_factor: f64 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phase {
    pub percent: f64,
    pub soak_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailureThreshold {
    /// Failure rate (of finished devices) that triggers `action`.
    pub percent: f64,
    /// Devices that must have finished before the rate is judged, so that
    /// one early failure out of two does not read as 50%.
    pub min_devices: u32,
    pub action: FailureAction,
}

impl Default for FailureThreshold {
    fn default() -> Self {
        FailureThreshold {
            percent: DEFAULT_FAILURE_PERCENT,
            min_devices: DEFAULT_FAILURE_MIN_DEVICES,
            action: FailureAction::Pause,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureAction {
    Pause,
    Abort,
    Rollback,
}

impl FailureAction {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureAction::Pause => "pause",
            FailureAction::Abort => "abort",
            FailureAction::Rollback => "rollback",
        }
    }

    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        match value {
            "pause" => Ok(FailureAction::Pause),
            "abort" => Ok(FailureAction::Abort),
            "rollback" => Ok(FailureAction::Rollback),
            other => Err(FieldError::new(
                field,
                format!("unknown action {other:?} (use pause, abort or rollback)"),
            )),
        }
    }
}

/// A weekly window (UTC) in which devices may be updated: it opens on each
/// of `days` at `start` and stays open for `duration_secs` (possibly past
/// midnight, into the next day).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceWindow {
    pub days: BTreeSet<WeekdayKey>,
    pub start: NaiveTime,
    pub duration_secs: u64,
}

/// A `Weekday` that sorts Monday first, so windows list and compare stably.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WeekdayKey(u8);

impl WeekdayKey {
    pub fn weekday(self) -> Weekday {
        Weekday::try_from(self.0).unwrap_or(Weekday::Mon)
    }
}

impl From<Weekday> for WeekdayKey {
    fn from(w: Weekday) -> Self {
        WeekdayKey(w.num_days_from_monday() as u8)
    }
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl fmt::Display for WeekdayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(DAY_NAMES[usize::from(self.0 % 7)])
    }
}

impl MaintenanceWindow {
    /// Whether the window is open at `now`.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        self.opening_containing(now).is_some()
    }

    /// The start of the window occurrence that contains `now`, if any.
    fn opening_containing(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let len = Duration::seconds(self.duration_secs as i64);
        // A window is at most 7 days long, so only openings in the last
        // 7 days (and today) can still be open.
        (0..=7).find_map(|back| {
            let date = now.date_naive() - Duration::days(back);
            if !self.days.contains(&date.weekday().into()) {
                return None;
            }
            let opens = date.and_time(self.start).and_utc();
            (opens <= now && now < opens + len).then_some(opens)
        })
    }

    /// `now` if the window is open, else the next time it opens.
    pub fn next_open(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        if self.is_open(now) {
            return now;
        }
        (0..=7)
            .filter_map(|ahead| {
                let date = now.date_naive() + Duration::days(ahead);
                self.days
                    .contains(&date.weekday().into())
                    .then(|| date.and_time(self.start).and_utc())
            })
            .find(|opens| *opens > now)
            .unwrap_or(now)
    }
}

/// The operator-controlled state of a rollout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum RolloutState {
    #[default]
    Running,
    Paused,
    /// Terminal: a cancelled rollout never resumes; create a new one.
    Cancelled,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Running => "running",
            RolloutState::Paused => "paused",
            RolloutState::Cancelled => "cancelled",
        }
    }

    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        match value {
            "running" => Ok(RolloutState::Running),
            "paused" => Ok(RolloutState::Paused),
            "cancelled" => Ok(RolloutState::Cancelled),
            other => Err(FieldError::new(
                field,
                format!("unknown state {other:?} (use running, paused or cancelled)"),
            )),
        }
    }

    /// running ⇄ paused, either → cancelled, and staying put. Nothing
    /// leaves cancelled: devices may already have been rolled back or
    /// abandoned, and resuming would act on stale assumptions.
    pub fn can_transition_to(self, to: RolloutState) -> bool {
        self == to || self != RolloutState::Cancelled
    }

    /// Applies a requested change of `state`.
    pub fn transition(self, to: RolloutState) -> Result<RolloutState, FieldError> {
        if self.can_transition_to(to) {
            Ok(to)
        } else {
            Err(FieldError::new(
                "state",
                format!(
                    "a cancelled rollout cannot become {}: cancelled is final, create a new rollout instead",
                    to.as_str()
                ),
            ))
        }
    }
}

impl fmt::Display for RolloutState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------- status

/// Statuses after which a rollout does nothing more.
pub const TERMINAL_STATUSES: &[&str] = &["completed", "aborted", "rolled_back", "cancelled"];

/// Whether a rollout with this `status` is finished.
pub fn is_terminal_status(status: &str) -> bool {
    TERMINAL_STATUSES.contains(&status)
}

/// The observed `status` once the operator sets `state`, before the engine
/// acts: cancelling shows at once; pausing shows unless the rollout has
/// already finished; resuming a paused rollout makes it `pending` until the
/// engine picks it up again. Anything else keeps the engine's status.
pub fn status_after(status: &str, state: RolloutState) -> String {
    match state {
        RolloutState::Cancelled => "cancelled",
        _ if is_terminal_status(status) => status,
        RolloutState::Paused => "paused",
        RolloutState::Running if status == "paused" => "pending",
        RolloutState::Running => status,
    }
    .to_string()
}

// ---------------------------------------------------------------- validation

/// Validates a rollout definition into a plan.
pub fn validate(spec: &RolloutSpec) -> Result<RolloutPlan, FieldError> {
    let target_group_ids = validate_targets(&spec.target_group_ids)?;
    let strategy = match (spec.phases.is_empty(), &spec.rate) {
        (false, Some(_)) => {
            return Err(FieldError::new(
                "rate",
                "conflicts with phase blocks: a rollout advances either in phases or at a rate, not both",
            ))
        }
        (true, None) => {
            return Err(FieldError::new(
                "phase",
                "a rollout needs phase blocks or a rate",
            ))
        }
        (false, None) => Strategy::Phased(validate_phases(&spec.phases)?),
        (true, Some(rate)) => validate_rate(rate).map_err(|e| e.within("rate"))?,
    };
    let failure_threshold = match &spec.failure_threshold {
        None => FailureThreshold::default(),
        Some(ft) => validate_failure_threshold(ft).map_err(|e| e.within("failure_threshold"))?,
    };
    let device_timeout_secs = match &spec.device_timeout {
        None => DEFAULT_DEVICE_TIMEOUT_SECS,
        Some(t) => duration::parse_bounded("device_timeout", t, 1, MAX_DEVICE_TIMEOUT_SECS)?,
    };
    let max_retries = match spec.max_retries {
        None => DEFAULT_MAX_RETRIES,
        Some(n) if (0..=MAX_RETRIES).contains(&n) => n as u32,
        Some(n) => {
            return Err(FieldError::new(
                "max_retries",
                format!("must be between 0 and {MAX_RETRIES}, got {n}"),
            ))
        }
    };
    let start_at = match &spec.start_at {
        None => None,
        Some(s) => Some(
            DateTime::parse_from_rfc3339(s)
                .map_err(|e| {
                    FieldError::new(
                        "start_at",
                        format!("invalid timestamp {s:?}: {e} (expected RFC 3339, e.g. \"2025-07-01T02:00:00Z\")"),
                    )
                })?
                .with_timezone(&Utc),
        ),
    };
    let maintenance_window = match &spec.maintenance_window {
        None => None,
        Some(w) => Some(validate_window(w).map_err(|e| e.within("maintenance_window"))?),
    };
    let state = match &spec.state {
        None => RolloutState::Running,
        Some(s) => RolloutState::parse("state", s)?,
    };
    Ok(RolloutPlan {
        target_group_ids,
        strategy,
        failure_threshold,
        device_timeout_secs,
        max_retries,
        start_at,
        maintenance_window,
        continuous: spec.continuous,
        state,
    })
}

fn validate_targets(ids: &[String]) -> Result<Vec<String>, FieldError> {
    if ids.is_empty() {
        return Err(FieldError::new(
            "target_group_ids",
            "must list at least one group",
        ));
    }
    for (i, id) in ids.iter().enumerate() {
        let field = indexed("target_group_ids", i);
        if id.trim().is_empty() {
            return Err(FieldError::new(field, "must not be empty"));
        }
        if ids[..i].contains(id) {
            return Err(FieldError::new(field, format!("duplicate group {id:?}")));
        }
    }
    Ok(ids.to_vec())
}

fn validate_phases(phases: &[PhaseSpec]) -> Result<Vec<Phase>, FieldError> {
    if phases.len() > MAX_PHASES {
        return Err(FieldError::new(
            "phase",
            format!(
                "at most {MAX_PHASES} phases are allowed, got {}",
                phases.len()
            ),
        ));
    }
    let mut out: Vec<Phase> = Vec::with_capacity(phases.len());
    for (i, p) in phases.iter().enumerate() {
        let field = |name: &str| format!("{}.{name}", indexed("phase", i));
        let pct = p.percent;
        if !pct.is_finite() || pct <= 0.0 || pct > 100.0 {
            return Err(FieldError::new(
                field("percent"),
                format!("must be greater than 0 and at most 100, got {pct}"),
            ));
        }
        if let Some(prev) = out.last() {
            if pct <= prev.percent {
                return Err(FieldError::new(
                    field("percent"),
                    format!(
                        "must be greater than the previous phase's percent ({}), got {pct}",
                        prev.percent
                    ),
                ));
            }
        }
        let soak_secs = match &p.soak {
            None => 0,
            Some(s) => duration::parse_bounded(&field("soak"), s, 0, MAX_SOAK_SECS)?,
        };
        out.push(Phase {
            percent: pct,
            soak_secs,
        });
    }
    let last = out.last().expect("phases is non-empty");
    if last.percent != 100.0 {
        return Err(FieldError::new(
            format!("{}.percent", indexed("phase", out.len() - 1)),
            format!(
                "the last phase must reach 100, got {} (add a final phase {{ percent = 100 }})",
                last.percent
            ),
        ));
    }
    Ok(out)
}

fn validate_rate(rate: &RateSpec) -> Result<Strategy, FieldError> {
    if !(1..=MAX_PER_MINUTE).contains(&rate.per_minute) {
        return Err(FieldError::new(
            "per_minute",
            format!(
                "must be between 1 and {MAX_PER_MINUTE}, got {}",
                rate.per_minute
            ),
        ));
    }
    let growth_factor = rate.growth_factor.unwrap_or(1.0);
    if !growth_factor.is_finite() || growth_factor < 1.0 {
        return Err(FieldError::new(
            "growth_factor",
            format!("must be at least 1 (1 keeps the rate constant), got {growth_factor}"),
        ));
    }
    Ok(Strategy::Rate {
        per_minute: rate.per_minute as u32,
        growth_factor,
    })
}

fn validate_failure_threshold(ft: &FailureThresholdSpec) -> Result<FailureThreshold, FieldError> {
    if !ft.percent.is_finite() || !(0.0..=100.0).contains(&ft.percent) {
        return Err(FieldError::new(
            "percent",
            format!("must be between 0 and 100, got {}", ft.percent),
        ));
    }
    if ft.min_devices < 1 || ft.min_devices > i64::from(u32::MAX) {
        return Err(FieldError::new(
            "min_devices",
            format!("must be at least 1, got {}", ft.min_devices),
        ));
    }
    Ok(FailureThreshold {
        percent: ft.percent,
        min_devices: ft.min_devices as u32,
        action: FailureAction::parse("action", &ft.action)?,
    })
}

fn validate_window(w: &MaintenanceWindowSpec) -> Result<MaintenanceWindow, FieldError> {
    if w.days.is_empty() {
        return Err(FieldError::new("days", "must list at least one day"));
    }
    let mut days = BTreeSet::new();
    for (i, d) in w.days.iter().enumerate() {
        let field = indexed("days", i);
        let lower = d.to_ascii_lowercase();
        let Some(n) = DAY_NAMES.iter().position(|name| *name == lower) else {
            return Err(FieldError::new(
                field,
                format!("unknown day {d:?} (use {})", DAY_NAMES.join(", ")),
            ));
        };
        if !days.insert(WeekdayKey(n as u8)) {
            return Err(FieldError::new(field, format!("duplicate day {d:?}")));
        }
    }
    let start = parse_hh_mm(&w.start).ok_or_else(|| {
        FieldError::new(
            "start",
            format!(
                "invalid time {:?}: expected \"HH:MM\" in 24-hour UTC, e.g. \"02:30\"",
                w.start
            ),
        )
    })?;
    let duration_secs = duration::parse_bounded("duration", &w.duration, 60, MAX_WINDOW_SECS)?;
    Ok(MaintenanceWindow {
        days,
        start,
        duration_secs,
    })
}

fn parse_hh_mm(s: &str) -> Option<NaiveTime> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveTime::from_hms_opt(h.parse().ok()?, m.parse().ok()?, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(percent: f64, soak: &str) -> PhaseSpec {
        PhaseSpec {
            percent,
            soak: Some(soak.into()),
        }
    }

    fn spec() -> RolloutSpec {
        RolloutSpec {
            target_group_ids: vec!["g-canary".into(), "g-prod".into()],
            phases: vec![
                phase(1.0, "30m"),
                phase(10.0, "2h30m"),
                phase(50.0, "1h"),
                phase(100.0, "0s"),
            ],
            ..Default::default()
        }
    }

    fn err(s: RolloutSpec) -> String {
        validate(&s).unwrap_err().to_string()
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn valid_phased_rollout_with_defaults() {
        let plan = validate(&spec()).unwrap();
        assert_eq!(
            plan.strategy,
            Strategy::Phased(vec![
                Phase {
                    percent: 1.0,
                    soak_secs: 1800
                },
                Phase {
                    percent: 10.0,
                    soak_secs: 9000
                },
                Phase {
                    percent: 50.0,
                    soak_secs: 3600
                },
                Phase {
                    percent: 100.0,
                    soak_secs: 0
                },
            ])
        );
        assert_eq!(plan.failure_threshold, FailureThreshold::default());
        assert_eq!(plan.failure_threshold.action, FailureAction::Pause);
        assert_eq!(plan.device_timeout_secs, 3600);
        assert_eq!(plan.max_retries, 2);
        assert_eq!(plan.state, RolloutState::Running);
        assert_eq!(plan.start_at, None);
        assert!(plan.maintenance_window.is_none());
    }

    #[test]
    fn fractional_canary_and_single_phase() {
        let s = RolloutSpec {
            phases: vec![phase(0.1, "1h"), phase(100.0, "0s")],
            ..spec()
        };
        assert!(validate(&s).is_ok());
        let s = RolloutSpec {
            phases: vec![PhaseSpec {
                percent: 100.0,
                soak: None,
            }],
            ..spec()
        };
        assert!(validate(&s).is_ok());
    }

    #[test]
    fn phase_errors() {
        let with = |phases: Vec<PhaseSpec>| err(RolloutSpec { phases, ..spec() });
        assert_eq!(
            with(vec![
                phase(10.0, "0s"),
                phase(50.0, "0s"),
                phase(50.0, "0s"),
                phase(100.0, "0s")
            ]),
            "phase[2].percent: must be greater than the previous phase's percent (50), got 50"
        );
        assert_eq!(
            with(vec![phase(50.0, "0s"), phase(20.0, "0s")]),
            "phase[1].percent: must be greater than the previous phase's percent (50), got 20"
        );
        assert_eq!(
            with(vec![phase(0.0, "0s"), phase(100.0, "0s")]),
            "phase[0].percent: must be greater than 0 and at most 100, got 0"
        );
        assert_eq!(
            with(vec![phase(150.0, "0s")]),
            "phase[0].percent: must be greater than 0 and at most 100, got 150"
        );
        assert_eq!(
            with(vec![phase(f64::NAN, "0s")]),
            "phase[0].percent: must be greater than 0 and at most 100, got NaN"
        );
        assert_eq!(
            with(vec![phase(10.0, "0s"), phase(80.0, "0s")]),
            "phase[1].percent: the last phase must reach 100, got 80 (add a final phase { percent = 100 })"
        );
        assert_eq!(
            with(vec![phase(10.0, "1x"), phase(100.0, "0s")]),
            "phase[0].soak: invalid duration \"1x\": unknown unit 'x' (use d, h, m or s) (examples: \"30m\", \"1h\", \"2h30m\", \"0s\")"
        );
        assert_eq!(
            with(vec![phase(10.0, "31d"), phase(100.0, "0s")]),
            "phase[0].soak: must be at most 30d, got \"31d\""
        );
        let many = (1..=21)
            .map(|i| phase(i as f64 * 100.0 / 21.0, "0s"))
            .collect();
        assert!(with(many).starts_with("phase: at most 20 phases"));
    }

    #[test]
    fn phases_xor_rate() {
        assert_eq!(
            err(RolloutSpec { rate: Some(RateSpec { per_minute: 10, growth_factor: None }), ..spec() }),
            "rate: conflicts with phase blocks: a rollout advances either in phases or at a rate, not both"
        );
        assert_eq!(
            err(RolloutSpec {
                phases: vec![],
                ..spec()
            }),
            "phase: a rollout needs phase blocks or a rate"
        );
    }

    #[test]
    fn rate_strategy() {
        let rate = |per_minute, growth_factor| RolloutSpec {
            phases: vec![],
            rate: Some(RateSpec {
                per_minute,
                growth_factor,
            }),
            ..spec()
        };
        assert_eq!(
            validate(&rate(10, Some(1.5))).unwrap().strategy,
            Strategy::Rate {
                per_minute: 10,
                growth_factor: 1.5
            }
        );
        assert_eq!(
            validate(&rate(10, None)).unwrap().strategy,
            Strategy::Rate {
                per_minute: 10,
                growth_factor: 1.0
            }
        );
        assert_eq!(
            err(rate(0, None)),
            "rate.per_minute: must be between 1 and 1000000, got 0"
        );
        assert_eq!(
            err(rate(5, Some(0.5))),
            "rate.growth_factor: must be at least 1 (1 keeps the rate constant), got 0.5"
        );
        assert!(err(rate(5, Some(f64::INFINITY))).starts_with("rate.growth_factor"));
    }

    #[test]
    fn failure_threshold() {
        let ft = |percent, min_devices, action: &str| RolloutSpec {
            failure_threshold: Some(FailureThresholdSpec {
                percent,
                min_devices,
                action: action.into(),
            }),
            ..spec()
        };
        let plan = validate(&ft(0.0, 1, "rollback")).unwrap();
        assert_eq!(
            plan.failure_threshold,
            FailureThreshold {
                percent: 0.0,
                min_devices: 1,
                action: FailureAction::Rollback
            }
        );
        assert!(validate(&ft(100.0, 5, "abort")).is_ok());
        assert_eq!(
            err(ft(101.0, 5, "pause")),
            "failure_threshold.percent: must be between 0 and 100, got 101"
        );
        assert_eq!(
            err(ft(-1.0, 5, "pause")),
            "failure_threshold.percent: must be between 0 and 100, got -1"
        );
        assert_eq!(
            err(ft(5.0, 0, "pause")),
            "failure_threshold.min_devices: must be at least 1, got 0"
        );
        assert_eq!(
            err(ft(5.0, 5, "explode")),
            "failure_threshold.action: unknown action \"explode\" (use pause, abort or rollback)"
        );
        assert_eq!(FailureAction::Rollback.as_str(), "rollback");
    }

    #[test]
    fn timeouts_retries_start() {
        let plan = validate(&RolloutSpec {
            device_timeout: Some("15m".into()),
            max_retries: Some(0),
            start_at: Some("2025-07-01T04:00:00+02:00".into()),
            continuous: true,
            state: Some("paused".into()),
            ..spec()
        })
        .unwrap();
        assert_eq!(plan.device_timeout_secs, 900);
        assert_eq!(plan.max_retries, 0);
        assert_eq!(plan.start_at, Some(t("2025-07-01T02:00:00Z")));
        assert!(plan.continuous);
        assert_eq!(plan.state, RolloutState::Paused);

        assert_eq!(
            err(RolloutSpec {
                device_timeout: Some("0s".into()),
                ..spec()
            }),
            "device_timeout: must be at least 1s, got \"0s\""
        );
        assert_eq!(
            err(RolloutSpec {
                device_timeout: Some("8d".into()),
                ..spec()
            }),
            "device_timeout: must be at most 7d, got \"8d\""
        );
        assert_eq!(
            err(RolloutSpec {
                max_retries: Some(11),
                ..spec()
            }),
            "max_retries: must be between 0 and 10, got 11"
        );
        assert_eq!(
            err(RolloutSpec {
                max_retries: Some(-1),
                ..spec()
            }),
            "max_retries: must be between 0 and 10, got -1"
        );
        assert!(err(RolloutSpec {
            start_at: Some("tomorrow".into()),
            ..spec()
        })
        .starts_with("start_at: invalid timestamp \"tomorrow\""));
        assert_eq!(
            err(RolloutSpec {
                state: Some("done".into()),
                ..spec()
            }),
            "state: unknown state \"done\" (use running, paused or cancelled)"
        );
    }

    #[test]
    fn targets() {
        assert_eq!(
            err(RolloutSpec {
                target_group_ids: vec![],
                ..spec()
            }),
            "target_group_ids: must list at least one group"
        );
        assert_eq!(
            err(RolloutSpec {
                target_group_ids: vec!["a".into(), "a".into()],
                ..spec()
            }),
            "target_group_ids[1]: duplicate group \"a\""
        );
        assert_eq!(
            err(RolloutSpec {
                target_group_ids: vec!["".into()],
                ..spec()
            }),
            "target_group_ids[0]: must not be empty"
        );
    }

    fn window(days: &[&str], start: &str, duration: &str) -> RolloutSpec {
        RolloutSpec {
            maintenance_window: Some(MaintenanceWindowSpec {
                days: days.iter().map(|d| d.to_string()).collect(),
                start: start.into(),
                duration: duration.into(),
            }),
            ..spec()
        }
    }

    fn mw(days: &[&str], start: &str, duration: &str) -> MaintenanceWindow {
        validate(&window(days, start, duration))
            .unwrap()
            .maintenance_window
            .unwrap()
    }

    #[test]
    fn window_errors() {
        assert_eq!(
            err(window(&[], "02:00", "4h")),
            "maintenance_window.days: must list at least one day"
        );
        assert_eq!(
            err(window(&["mon", "funday"], "02:00", "4h")),
            "maintenance_window.days[1]: unknown day \"funday\" (use mon, tue, wed, thu, fri, sat, sun)"
        );
        assert_eq!(
            err(window(&["mon", "Mon"], "02:00", "4h")),
            "maintenance_window.days[1]: duplicate day \"Mon\""
        );
        for bad in ["2:00", "24:00", "12:60", "12-00", "ab:cd", "", "02:00:00"] {
            assert!(
                err(window(&["mon"], bad, "4h"))
                    .starts_with("maintenance_window.start: invalid time"),
                "{bad}"
            );
        }
        assert_eq!(
            err(window(&["mon"], "02:00", "30s")),
            "maintenance_window.duration: must be at least 1m, got \"30s\""
        );
        assert_eq!(
            err(window(&["mon"], "02:00", "8d")),
            "maintenance_window.duration: must be at most 7d, got \"8d\""
        );
        assert!(err(window(&["mon"], "02:00", "soon"))
            .starts_with("maintenance_window.duration: invalid duration"));
    }

    #[test]
    fn window_open_and_close() {
        // 2025-06-02 is a Monday.
        let w = mw(&["mon", "wed"], "02:00", "4h");
        assert!(!w.is_open(t("2025-06-02T01:59:59Z")));
        assert!(w.is_open(t("2025-06-02T02:00:00Z")));
        assert!(w.is_open(t("2025-06-02T05:59:59Z")));
        assert!(!w.is_open(t("2025-06-02T06:00:00Z")), "end is exclusive");
        assert!(
            !w.is_open(t("2025-06-03T03:00:00Z")),
            "tuesday is not in the window"
        );
        assert!(w.is_open(t("2025-06-04T03:00:00Z")), "wednesday");
        assert_eq!(
            w.days.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            ["mon", "wed"]
        );
        assert_eq!(w.days.iter().next().unwrap().weekday(), Weekday::Mon);
    }

    #[test]
    fn window_across_midnight_and_week_end() {
        // Sunday 22:00 for 4h: open until Monday 02:00.
        let w = mw(&["sun"], "22:00", "4h");
        assert!(w.is_open(t("2025-06-01T23:00:00Z")), "sunday night");
        assert!(w.is_open(t("2025-06-02T01:30:00Z")), "monday early morning");
        assert!(!w.is_open(t("2025-06-02T02:00:00Z")));
        // A full week window is always open.
        let always = mw(&["mon"], "00:00", "7d");
        for h in 0..(24 * 7) {
            assert!(always.is_open(t("2025-06-02T00:00:00Z") + Duration::hours(h)));
        }
    }

    #[test]
    fn next_opening() {
        let w = mw(&["sat"], "01:30", "2h");
        // Monday → the coming Saturday
        assert_eq!(
            w.next_open(t("2025-06-02T12:00:00Z")),
            t("2025-06-07T01:30:00Z")
        );
        // inside the window → now
        assert_eq!(
            w.next_open(t("2025-06-07T02:00:00Z")),
            t("2025-06-07T02:00:00Z")
        );
        // just after it closed → next week
        assert_eq!(
            w.next_open(t("2025-06-07T03:30:00Z")),
            t("2025-06-14T01:30:00Z")
        );
        // same day, before it opens
        assert_eq!(
            w.next_open(t("2025-06-07T00:00:00Z")),
            t("2025-06-07T01:30:00Z")
        );
    }

    #[test]
    fn state_transitions() {
        use RolloutState::*;
        assert_eq!(Running.transition(Paused), Ok(Paused));
        assert_eq!(Paused.transition(Running), Ok(Running));
        assert_eq!(Running.transition(Cancelled), Ok(Cancelled));
        assert_eq!(Paused.transition(Cancelled), Ok(Cancelled));
        assert_eq!(Running.transition(Running), Ok(Running));
        assert_eq!(Cancelled.transition(Cancelled), Ok(Cancelled));
        assert_eq!(
            Cancelled.transition(Running).unwrap_err().to_string(),
            "state: a cancelled rollout cannot become running: cancelled is final, create a new rollout instead"
        );
        assert!(!Cancelled.can_transition_to(Paused));
        assert_eq!(RolloutState::parse("state", "cancelled"), Ok(Cancelled));
        assert_eq!(Paused.to_string(), "paused");
    }

    #[test]
    fn status_follows_the_desired_state() {
        assert_eq!(status_after("pending", RolloutState::Running), "pending");
        assert_eq!(status_after("running", RolloutState::Paused), "paused");
        assert_eq!(status_after("paused", RolloutState::Running), "pending");
        assert_eq!(
            status_after("running", RolloutState::Cancelled),
            "cancelled"
        );
        assert_eq!(status_after("completed", RolloutState::Paused), "completed");
        assert_eq!(status_after("aborted", RolloutState::Running), "aborted");
        assert!(is_terminal_status("rolled_back") && !is_terminal_status("paused"));
    }
}
