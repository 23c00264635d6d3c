//! The rollout engine's decisions, as pure functions.
//!
//! fleetd's engine task ticks, reads a rollout's [`Progress`] (status,
//! counters, phase bookkeeping: everything it needs is stored, so a
//! restarted fleetd picks up exactly where it stopped), asks [`decide`]
//! what to do next and applies that one [`Action`] in one transaction.
//! It repeats until [`decide`] answers [`Action::Wait`]. Taking one step at
//! a time keeps every decision small and testable here, and makes the
//! order of concerns explicit:
//!
//! 1. a finished rollout cleans up (pending devices cancelled, rollback
//!    assignments made) and lets in-flight devices time out;
//! 2. the operator's desired state (paused, cancelled) wins over anything
//!    the engine would do;
//! 3. a pending rollout starts (its targets are materialised) once
//!    `start_at` has passed, or resumes after a pause;
//! 4. a running rollout, in this order: adds late joiners (`continuous`),
//!    times out devices (retry or fail), applies the failure threshold,
//!    completes, and only then assigns more devices, phase by phase or at
//!    the exponential rate, while the maintenance window is open.
//!
//! The per-device rules (what a timeout or a reported result does to one
//! device) are here too: [`on_timeout`] and [`apply_result`].
//!
//! Nothing here reads a clock: `now` is always an argument.

use std::fmt;

use chrono::{DateTime, Datelike, Duration, Utc};

use crate::rollout::{FailureAction, FailureThreshold, MaintenanceWindow, RolloutPlan, Strategy};
use crate::rollout::{Phase, RolloutState};

/// Devices assigned (or timed out) per step, i.e. per store transaction.
pub const DEFAULT_BATCH_SIZE: u64 = 2_000;
/// How often a `continuous` rollout looks for devices that joined its
/// target groups.
pub const DEFAULT_RESCAN_SECS: u64 = 30;

// ------------------------------------------------------------------ states

/// A rollout's observed status (the `status` field of the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Not started yet (before `start_at`), or resumed and about to run.
    Pending,
    Running,
    /// By the operator (`state = "paused"`) or by the failure threshold.
    Paused,
    Completed,
    Aborted,
    RolledBack,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Pending,
        Status::Running,
        Status::Paused,
        Status::Completed,
        Status::Aborted,
        Status::RolledBack,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Completed => "completed",
            Status::Aborted => "aborted",
            Status::RolledBack => "rolled_back",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// After these the engine assigns nothing more (see
    /// [`crate::rollout::TERMINAL_STATUSES`]).
    pub fn is_terminal(self) -> bool {
        crate::rollout::is_terminal_status(self.as_str())
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one targeted device is in a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceState {
    /// Targeted, not assigned yet.
    Pending,
    /// Assigned; waiting for the device's result (or its deadline).
    InProgress,
    Succeeded,
    Failed,
    /// The device reverted by itself, or the rollout's rollback action
    /// assigned it its previous firmware.
    RolledBack,
    /// Never updated: the rollout ended before the device's turn.
    Cancelled,
}

impl DeviceState {
    pub const ALL: [DeviceState; 6] = [
        DeviceState::Pending,
        DeviceState::InProgress,
        DeviceState::Succeeded,
        DeviceState::Failed,
        DeviceState::RolledBack,
        DeviceState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Pending => "pending",
            DeviceState::InProgress => "in_progress",
            DeviceState::Succeeded => "succeeded",
            DeviceState::Failed => "failed",
            DeviceState::RolledBack => "rolled_back",
            DeviceState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<DeviceState> {
        DeviceState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the device is done with this rollout.
    pub fn is_finished(self) -> bool {
        !matches!(self, DeviceState::Pending | DeviceState::InProgress)
    }
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Progress of a rollback assignment (previous firmware handed back to a
/// device after the rollout's `rollback` action).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RollbackState {
    /// Assigned, not yet fetched by the device.
    Pending,
    /// Fetched by the device; waiting for its result.
    Delivered,
    Done,
    Failed,
}

impl RollbackState {
    pub fn as_str(self) -> &'static str {
        match self {
            RollbackState::Pending => "pending",
            RollbackState::Delivered => "delivered",
            RollbackState::Done => "done",
            RollbackState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<RollbackState> {
        [
            RollbackState::Pending,
            RollbackState::Delivered,
            RollbackState::Done,
            RollbackState::Failed,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

// ------------------------------------------------------------------ counters

/// A rollout's device counters. Invariant (see [`Counts::is_consistent`]):
/// every targeted device is in exactly one state, so `targeted` is the
/// sum of the six state counters. `assigned` counts devices that ever
/// left `pending` through an assignment (phase budgets are measured in
/// it; a retry does not count twice).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub targeted: u64,
    pub pending: u64,
    pub in_progress: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub rolled_back: u64,
    pub cancelled: u64,
    pub assigned: u64,
}

impl Counts {
    pub fn finished(&self) -> u64 {
        self.succeeded + self.failed + self.rolled_back + self.cancelled
    }

    pub fn is_consistent(&self) -> bool {
        self.targeted == self.pending + self.in_progress + self.finished()
    }

    /// The counter of one state.
    pub fn of(&self, state: DeviceState) -> u64 {
        match state {
            DeviceState::Pending => self.pending,
            DeviceState::InProgress => self.in_progress,
            DeviceState::Succeeded => self.succeeded,
            DeviceState::Failed => self.failed,
            DeviceState::RolledBack => self.rolled_back,
            DeviceState::Cancelled => self.cancelled,
        }
    }

    /// These counters with `delta` applied (saturating at 0, which a
    /// consistent store never reaches).
    pub fn with(&self, delta: &CountsDelta) -> Counts {
        let add = |v: u64, d: i64| v.saturating_add_signed(d);
        Counts {
            targeted: add(self.targeted, delta.targeted),
            pending: add(self.pending, delta.pending),
            in_progress: add(self.in_progress, delta.in_progress),
            succeeded: add(self.succeeded, delta.succeeded),
            failed: add(self.failed, delta.failed),
            rolled_back: add(self.rolled_back, delta.rolled_back),
            cancelled: add(self.cancelled, delta.cancelled),
            assigned: add(self.assigned, delta.assigned),
        }
    }
}

/// Changes to [`Counts`] accumulated over one transaction and written
/// with a single `UPDATE … SET count = count + delta`: counters are
/// maintained incrementally, never recomputed by scanning devices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountsDelta {
    pub targeted: i64,
    pub pending: i64,
    pub in_progress: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub rolled_back: i64,
    pub cancelled: i64,
    pub assigned: i64,
}

impl CountsDelta {
    fn slot(&mut self, state: DeviceState) -> &mut i64 {
        match state {
            DeviceState::Pending => &mut self.pending,
            DeviceState::InProgress => &mut self.in_progress,
            DeviceState::Succeeded => &mut self.succeeded,
            DeviceState::Failed => &mut self.failed,
            DeviceState::RolledBack => &mut self.rolled_back,
            DeviceState::Cancelled => &mut self.cancelled,
        }
    }

    /// `n` new targets, all pending.
    pub fn targets_added(&mut self, n: u64) {
        self.targeted += n as i64;
        self.pending += n as i64;
    }

    /// `n` devices moved from `from` to `to`. Leaving `pending` for
    /// `in_progress` counts as an assignment.
    pub fn moved(&mut self, from: DeviceState, to: DeviceState, n: u64) {
        if from == to || n == 0 {
            return;
        }
        *self.slot(from) -= n as i64;
        *self.slot(to) += n as i64;
        if from == DeviceState::Pending && to == DeviceState::InProgress {
            self.assigned += n as i64;
        }
    }

    /// Adds `other`'s moves to these.
    pub fn add(&mut self, other: &CountsDelta) {
        self.targeted += other.targeted;
        self.pending += other.pending;
        self.in_progress += other.in_progress;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.rolled_back += other.rolled_back;
        self.cancelled += other.cancelled;
        self.assigned += other.assigned;
    }

    pub fn is_zero(&self) -> bool {
        *self == CountsDelta::default()
    }
}

// ------------------------------------------------------------------ progress

/// Results already judged when the rollout was last (re)started: a
/// resumed rollout applies its failure threshold to new results only, or
/// the failures that paused it would pause it again at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Baseline {
    pub succeeded: u64,
    /// Failed plus rolled back.
    pub failed: u64,
}

impl Baseline {
    /// The baseline that ignores every result so far.
    pub fn of(counts: &Counts) -> Baseline {
        Baseline {
            succeeded: counts.succeeded,
            failed: counts.failed + counts.rolled_back,
        }
    }
}

/// Where an exponential rate counts from: the rate restarts (at
/// `per_minute`) when the rollout starts or resumes and when a new
/// maintenance window opens, so a long pause never turns into a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateAnchor {
    pub at: DateTime<Utc>,
    /// `Counts::assigned` at that moment.
    pub assigned: u64,
}

/// Everything the engine knows about a rollout besides its definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub status: Status,
    pub counts: Counts,
    /// When the targets were materialised; `None` until the rollout starts.
    pub started_at: Option<DateTime<Utc>>,
    /// Terminal clean-up (cancelling, rollback assignments) done.
    pub cleaned_up: bool,
    /// 0-based index of the phase being assigned.
    pub current_phase: usize,
    /// When every device of `current_phase` had finished (soak start).
    pub phase_completed_at: Option<DateTime<Utc>>,
    pub rate_anchor: Option<RateAnchor>,
    pub baseline: Baseline,
    /// Last look for late joiners (`continuous`).
    pub targets_refreshed_at: Option<DateTime<Utc>>,
    /// In-progress devices past their deadline at `now`.
    pub expired: u64,
    /// Of those, the ones without retries left (`attempt > max_retries`).
    pub expired_final: u64,
}

impl Progress {
    /// A rollout that was just created.
    pub fn new(status: Status) -> Progress {
        Progress {
            status,
            counts: Counts::default(),
            started_at: None,
            cleaned_up: false,
            current_phase: 0,
            phase_completed_at: None,
            rate_anchor: None,
            baseline: Baseline::default(),
            targets_refreshed_at: None,
            expired: 0,
            expired_final: 0,
        }
    }
}

/// Tuning that is not part of a rollout's definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Most devices one [`Action::Assign`] or [`Action::ExpireTimeouts`]
    /// touches.
    pub batch_size: u64,
    pub rescan_interval_secs: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            batch_size: DEFAULT_BATCH_SIZE,
            rescan_interval_secs: DEFAULT_RESCAN_SECS,
        }
    }
}

// ------------------------------------------------------------------ decisions

/// How expired in-progress devices are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutMode {
    /// Retry devices with retries left, fail the others.
    Retry,
    /// The maintenance window is closed: fail devices without retries
    /// left, keep the others until it opens (a retry is a new delivery).
    FinalOnly,
    /// The rollout is over: fail every expired device.
    NoRetry,
}

/// Why the engine has nothing to do for a rollout right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    /// Terminal and cleaned up, nothing in flight.
    Done,
    /// `start_at` is in the future.
    Scheduled,
    /// Paused by the operator or the failure threshold.
    Paused,
    /// Devices are assigned to budget; waiting for their results.
    InProgress,
    /// Every device of the phase finished; soaking.
    Soaking,
    /// The maintenance window is closed.
    WindowClosed,
    /// The rate allows no more devices this minute.
    RateLimited,
    /// `continuous`: every targeted device is done; waiting for joiners.
    NoPendingDevices,
}

/// The single next step for a rollout.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Materialise the targets (all pending), status `running`, baseline
    /// and rate anchor at `now`.
    Start,
    /// Back to `running` after a pause: new baseline and rate anchor.
    Resume,
    /// A status change without other effects than the terminal clean-up
    /// when `to` is terminal.
    SetStatus {
        to: Status,
        reason: String,
    },
    /// The status is terminal (set by the operator or the engine) but the
    /// clean-up has not run: cancel pending and undelivered devices; for
    /// `rolled_back`, assign the previous firmware to devices that updated.
    CleanUp,
    /// `continuous`: add devices that joined the target groups.
    RefreshTargets,
    /// Handle in-progress devices past their deadline with
    /// [`on_timeout`]; retried devices get `deadline`.
    ExpireTimeouts {
        mode: TimeoutMode,
        max_retries: u32,
        deadline: DateTime<Utc>,
    },
    /// The failure threshold (or a phase's success ratio) was missed.
    FailureAction {
        action: FailureAction,
        reason: String,
    },
    /// Every device of `phase` finished and its success ratio is met; the
    /// soak starts now.
    CompletePhase {
        phase: usize,
    },
    AdvancePhase {
        to: usize,
    },
    SetRateAnchor(RateAnchor),
    /// Assign up to `count` pending devices (`phase` recorded on each),
    /// results due by `deadline`.
    Assign {
        count: u64,
        phase: usize,
        deadline: DateTime<Utc>,
    },
    /// Nothing to do before `until` (if known) or before something else
    /// changes (a result, an operator's edit).
    Wait {
        reason: WaitReason,
        until: Option<DateTime<Utc>>,
    },
}

impl Action {
    fn wait(reason: WaitReason, until: Option<DateTime<Utc>>) -> Action {
        Action::Wait { reason, until }
    }

    pub fn is_wait(&self) -> bool {
        matches!(self, Action::Wait { .. })
    }
}

/// The status a failure action leads to.
pub fn status_for(action: FailureAction) -> Status {
    match action {
        FailureAction::Pause => Status::Paused,
        FailureAction::Abort => Status::Aborted,
        FailureAction::Rollback => Status::RolledBack,
    }
}

/// The next step for a rollout with definition `plan` and progress `p`.
pub fn decide(plan: &RolloutPlan, p: &Progress, now: DateTime<Utc>, opts: &Options) -> Action {
    if p.status.is_terminal() {
        if !p.cleaned_up {
            return Action::CleanUp;
        }
        if p.expired > 0 {
            return expire(plan, TimeoutMode::NoRetry, now);
        }
        return Action::wait(WaitReason::Done, None);
    }
    match plan.state {
        RolloutState::Cancelled => {
            return Action::SetStatus {
                to: Status::Cancelled,
                reason: "cancelled by the operator".into(),
            }
        }
        RolloutState::Paused if p.status != Status::Paused => {
            return Action::SetStatus {
                to: Status::Paused,
                reason: "paused by the operator".into(),
            }
        }
        RolloutState::Paused => return Action::wait(WaitReason::Paused, None),
        RolloutState::Running => {}
    }
    match p.status {
        Status::Pending => match plan.start_at {
            Some(at) if now < at => Action::wait(WaitReason::Scheduled, Some(at)),
            _ if p.started_at.is_none() => Action::Start,
            _ => Action::Resume,
        },
        // The operator's state is `running`, so the failure threshold
        // paused it; an operator resumes it by setting the state again.
        Status::Paused => Action::wait(WaitReason::Paused, None),
        Status::Running => running(plan, p, now, opts),
        // Terminal statuses returned above.
        _ => Action::wait(WaitReason::Done, None),
    }
}

fn deadline(plan: &RolloutPlan, now: DateTime<Utc>) -> DateTime<Utc> {
    let secs = plan
        .device_timeout_secs
        .min(crate::rollout::MAX_DEVICE_TIMEOUT_SECS);
    now + Duration::seconds(secs as i64)
}

fn expire(plan: &RolloutPlan, mode: TimeoutMode, now: DateTime<Utc>) -> Action {
    Action::ExpireTimeouts {
        mode,
        max_retries: plan.max_retries,
        deadline: deadline(plan, now),
    }
}

fn running(plan: &RolloutPlan, p: &Progress, now: DateTime<Utc>, opts: &Options) -> Action {
    let window = plan.maintenance_window.as_ref();
    let window_open = window.is_none_or(|w| w.is_open(now));

    if plan.continuous {
        let due = p.targets_refreshed_at.is_none_or(|t| {
            // At least a second apart, or a rescan at `now` would repeat.
            let every = opts.rescan_interval_secs.clamp(1, 365 * 86_400);
            now >= t + Duration::seconds(every as i64)
        });
        if due {
            return Action::RefreshTargets;
        }
    }
    if window_open && p.expired > 0 {
        return expire(plan, TimeoutMode::Retry, now);
    }
    if !window_open && p.expired_final > 0 {
        return expire(plan, TimeoutMode::FinalOnly, now);
    }
    if let Some(reason) = threshold_breach(&plan.failure_threshold, &p.counts, &p.baseline) {
        return Action::FailureAction {
            action: plan.failure_threshold.action,
            reason,
        };
    }
    let c = &p.counts;
    if !plan.continuous && c.pending == 0 && c.in_progress == 0 {
        return Action::SetStatus {
            to: Status::Completed,
            reason: format!(
                "all {} targeted devices finished: {} succeeded, {} failed, {} rolled back, {} cancelled",
                c.targeted, c.succeeded, c.failed, c.rolled_back, c.cancelled
            ),
        };
    }
    match &plan.strategy {
        Strategy::Phased(phases) => phased(plan, phases, p, now, window, opts),
        Strategy::Rate {
            per_minute,
            growth_factor,
        } => rate(plan, *per_minute, *growth_factor, p, now, window, opts),
    }
}

fn closed(window: Option<&MaintenanceWindow>, now: DateTime<Utc>) -> Option<Action> {
    let w = window?;
    (!w.is_open(now)).then(|| Action::wait(WaitReason::WindowClosed, Some(w.next_open(now))))
}

fn phased(
    plan: &RolloutPlan,
    phases: &[Phase],
    p: &Progress,
    now: DateTime<Utc>,
    window: Option<&MaintenanceWindow>,
    opts: &Options,
) -> Action {
    let c = &p.counts;
    let Some(last) = phases.len().checked_sub(1) else {
        // A validated plan always has phases; nothing sensible to do.
        return Action::wait(WaitReason::InProgress, None);
    };
    let k = p.current_phase.min(last);
    let cap = phase_target(phases[k].percent, c.targeted);
    if c.pending > 0 && c.assigned < cap {
        if let Some(wait) = closed(window, now) {
            return wait;
        }
        return Action::Assign {
            count: (cap - c.assigned)
                .min(c.pending)
                .min(opts.batch_size.max(1)),
            phase: k,
            deadline: deadline(plan, now),
        };
    }
    if k == last {
        let reason = if c.pending == 0 && c.in_progress == 0 {
            WaitReason::NoPendingDevices
        } else {
            WaitReason::InProgress
        };
        return Action::wait(reason, None);
    }
    if c.in_progress > 0 || c.targeted == 0 {
        return Action::wait(WaitReason::InProgress, None);
    }
    match p.phase_completed_at {
        None => match gate_breach(&plan.failure_threshold, c, &p.baseline, k) {
            Some(reason) => Action::FailureAction {
                action: plan.failure_threshold.action,
                reason,
            },
            None => Action::CompletePhase { phase: k },
        },
        Some(done) => {
            let until = done + Duration::seconds(phases[k].soak_secs as i64);
            if now >= until {
                Action::AdvancePhase { to: k + 1 }
            } else {
                Action::wait(WaitReason::Soaking, Some(until))
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn rate(
    plan: &RolloutPlan,
    per_minute: u32,
    growth_factor: f64,
    p: &Progress,
    now: DateTime<Utc>,
    window: Option<&MaintenanceWindow>,
    opts: &Options,
) -> Action {
    let c = &p.counts;
    if c.pending == 0 {
        return Action::wait(WaitReason::InProgress, None);
    }
    if let Some(wait) = closed(window, now) {
        return wait;
    }
    let anchor = p.rate_anchor.unwrap_or(RateAnchor {
        at: p.started_at.unwrap_or(now),
        assigned: 0,
    });
    if let Some(opened) = window.and_then(|w| window_opening(w, now)) {
        if opened > anchor.at {
            return Action::SetRateAnchor(RateAnchor {
                at: opened,
                assigned: c.assigned,
            });
        }
    }
    let allowed = rate_allowance(per_minute, growth_factor, &anchor, now);
    if c.assigned < allowed {
        return Action::Assign {
            count: (allowed - c.assigned)
                .min(c.pending)
                .min(opts.batch_size.max(1)),
            phase: 0,
            deadline: deadline(plan, now),
        };
    }
    let minute = minutes_since(anchor.at, now);
    Action::wait(
        WaitReason::RateLimited,
        Some(anchor.at + Duration::minutes(minute as i64 + 1)),
    )
}

// ------------------------------------------------------------------ arithmetic

/// Devices phase `percent` covers (cumulatively) out of `targeted`:
/// `ceil(percent × targeted / 100)`, so any non-empty fleet gets at least
/// one device in the first phase.
pub fn phase_target(percent: f64, targeted: u64) -> u64 {
    if targeted == 0 || !percent.is_finite() || percent <= 0.0 {
        return 0;
    }
    // The epsilon absorbs binary noise (e.g. 7 × 100 / 100 = 7.000…01).
    let raw = (percent * targeted as f64 / 100.0 - 1e-9).ceil();
    (raw.max(0.0) as u64).min(targeted)
}

fn minutes_since(anchor: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    ((now - anchor).num_seconds().max(0) / 60) as u64
}

/// Cumulative devices an exponential rate allows by `now`: minute `i`
/// after the anchor (0-based, the anchor's own minute included) adds
/// `per_minute × growth_factor^i`.
pub fn rate_allowance(
    per_minute: u32,
    growth_factor: f64,
    anchor: &RateAnchor,
    now: DateTime<Utc>,
) -> u64 {
    const CAP: f64 = 1e15;
    let minutes = minutes_since(anchor.at, now) as f64 + 1.0;
    let per_minute = f64::from(per_minute);
    let total = if growth_factor <= 1.0 {
        per_minute * minutes
    } else {
        per_minute * (growth_factor.powf(minutes) - 1.0) / (growth_factor - 1.0)
    };
    let total = if total.is_finite() {
        (total + 1e-6).floor().min(CAP)
    } else {
        CAP
    };
    anchor.assigned.saturating_add(total as u64)
}

/// The start of the maintenance window occurrence containing `now`.
pub fn window_opening(w: &MaintenanceWindow, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let len = Duration::seconds(w.duration_secs as i64);
    (0..=7).find_map(|back| {
        let date = now.date_naive() - Duration::days(back);
        if !w.days.contains(&date.weekday().into()) {
            return None;
        }
        let opens = date.and_time(w.start).and_utc();
        (opens <= now && now < opens + len).then_some(opens)
    })
}

/// Results and failures (failed + rolled back) since `baseline`.
pub fn results_since(counts: &Counts, baseline: &Baseline) -> (u64, u64) {
    let succeeded = counts.succeeded.saturating_sub(baseline.succeeded);
    let failed = (counts.failed + counts.rolled_back).saturating_sub(baseline.failed);
    (succeeded + failed, failed)
}

fn over(percent: f64, results: u64, failed: u64) -> bool {
    results > 0 && failed as f64 * 100.0 > percent * results as f64
}

fn pct(failed: u64, results: u64) -> String {
    let v = failed as f64 * 100.0 / results.max(1) as f64;
    format!("{}", (v * 100.0).round() / 100.0)
}

/// Why the failure threshold is exceeded, if it is: at least
/// `min_devices` results since the baseline and a failure rate above
/// `percent`.
pub fn threshold_breach(
    ft: &FailureThreshold,
    counts: &Counts,
    baseline: &Baseline,
) -> Option<String> {
    let (results, failed) = results_since(counts, baseline);
    (results >= u64::from(ft.min_devices) && over(ft.percent, results, failed)).then(|| {
        format!(
            "failure threshold exceeded: {failed} of {results} devices failed ({}% > {}%)",
            pct(failed, results),
            ft.percent
        )
    })
}

/// Why phase `phase` (0-based) misses its success ratio, if it does: at a
/// phase boundary the failure rate must not exceed the threshold's
/// `percent`, however few results there are (a canary of two devices with
/// one failure must not promote).
fn gate_breach(
    ft: &FailureThreshold,
    counts: &Counts,
    baseline: &Baseline,
    phase: usize,
) -> Option<String> {
    let (results, failed) = results_since(counts, baseline);
    over(ft.percent, results, failed).then(|| {
        format!(
            "phase {} missed its success ratio: {failed} of {results} devices failed ({}% > {}%)",
            phase + 1,
            pct(failed, results),
            ft.percent
        )
    })
}

// ------------------------------------------------------------------ devices

/// What happens to one expired in-progress device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeoutOutcome {
    /// Deliver again as attempt `attempt`, with a new deadline.
    Retry {
        attempt: u32,
    },
    Fail {
        reason: String,
    },
    /// Leave it for now.
    Keep,
}

/// The fate of an expired device on attempt `attempt` (1-based): retried
/// while `attempt <= max_retries` (so `max_retries = 2` gives three
/// attempts), failed after that.
pub fn on_timeout(attempt: u32, max_retries: u32, mode: TimeoutMode) -> TimeoutOutcome {
    let retries_left = attempt <= max_retries;
    let fail = || TimeoutOutcome::Fail {
        reason: format!(
            "timed out after {attempt} attempt{}",
            if attempt == 1 { "" } else { "s" }
        ),
    };
    match mode {
        TimeoutMode::Retry if retries_left => TimeoutOutcome::Retry {
            attempt: attempt + 1,
        },
        TimeoutMode::FinalOnly if retries_left => TimeoutOutcome::Keep,
        TimeoutMode::NoRetry => TimeoutOutcome::Fail {
            reason: format!("timed out after {attempt} attempt(s); the rollout has ended"),
        },
        _ => fail(),
    }
}

/// A result a device reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed { reason: String },
    RolledBack,
}

/// One device's row, as far as results are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub state: DeviceState,
    pub rollback: Option<RollbackState>,
    /// A previous firmware is known (a rollback can be assigned).
    pub has_previous: bool,
}

/// What a reported result does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultEffect {
    /// A repeat of a result already recorded: nothing changes.
    Unchanged,
    /// The device moves to `state` (counters follow), with `rollback` and
    /// `reason` stored.
    Transition {
        state: DeviceState,
        rollback: Option<RollbackState>,
        reason: Option<String>,
    },
    /// The rollback assignment finished; the device stays `rolled_back`.
    Rollback {
        rollback: RollbackState,
        reason: Option<String>,
    },
}

/// A result that contradicts what is recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ResultRejected(pub String);

fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Succeeded => "succeeded",
        Outcome::Failed { .. } => "failed",
        Outcome::RolledBack => "rolled_back",
    }
}

/// The effect of `outcome` reported for a device in `record`, in a
/// rollout whose status is `status`. Reporting the same result twice is
/// harmless ([`ResultEffect::Unchanged`]); a different result for a
/// finished device is rejected.
pub fn apply_result(
    record: &DeviceRecord,
    outcome: &Outcome,
    status: Status,
) -> Result<ResultEffect, ResultRejected> {
    use DeviceState as S;
    let reject = |what: &str| {
        Err(ResultRejected(format!(
            "cannot record {}: {what}",
            outcome_name(outcome)
        )))
    };
    match (record.state, outcome) {
        (S::Pending, _) => reject("the device has no assignment in this rollout yet"),
        (S::Cancelled, _) => reject("the device's assignment was cancelled"),
        (S::InProgress, Outcome::Succeeded)
            if status == Status::RolledBack && record.has_previous =>
        {
            Ok(ResultEffect::Transition {
                state: S::RolledBack,
                rollback: Some(RollbackState::Pending),
                reason: Some(
                    "updated after the rollout was rolled back; previous firmware reassigned"
                        .into(),
                ),
            })
        }
        (S::InProgress, Outcome::Succeeded) => Ok(ResultEffect::Transition {
            state: S::Succeeded,
            rollback: None,
            reason: None,
        }),
        (S::InProgress, Outcome::Failed { reason }) => Ok(ResultEffect::Transition {
            state: S::Failed,
            rollback: None,
            reason: Some(reason.clone()),
        }),
        (S::InProgress, Outcome::RolledBack) => Ok(ResultEffect::Transition {
            state: S::RolledBack,
            rollback: None,
            reason: Some("rolled back by the device".into()),
        }),
        (S::Succeeded, Outcome::Succeeded) | (S::Failed, Outcome::Failed { .. }) => {
            Ok(ResultEffect::Unchanged)
        }
        (S::Succeeded, _) => reject("the device already reported succeeded"),
        (S::Failed, _) => reject("the device already counts as failed"),
        (S::RolledBack, _) => match (record.rollback, outcome) {
            // Rolled back by the device itself.
            (None, Outcome::RolledBack) => Ok(ResultEffect::Unchanged),
            (None, _) => reject("the device already reported rolled_back"),
            // The previous firmware is not fetched yet: a repeat of the
            // original success, or the device reverting on its own.
            (Some(RollbackState::Pending), Outcome::Succeeded) => Ok(ResultEffect::Unchanged),
            (Some(RollbackState::Pending), Outcome::RolledBack) => Ok(ResultEffect::Rollback {
                rollback: RollbackState::Done,
                reason: None,
            }),
            (Some(RollbackState::Pending), Outcome::Failed { .. }) => {
                reject("the device is being rolled back to its previous firmware")
            }
            (Some(RollbackState::Delivered), Outcome::Failed { reason }) => {
                Ok(ResultEffect::Rollback {
                    rollback: RollbackState::Failed,
                    reason: Some(format!("rollback failed: {reason}")),
                })
            }
            (Some(RollbackState::Delivered), _) => Ok(ResultEffect::Rollback {
                rollback: RollbackState::Done,
                reason: None,
            }),
            (Some(RollbackState::Done), Outcome::Failed { .. })
            | (Some(RollbackState::Failed), Outcome::Succeeded)
            | (Some(RollbackState::Failed), Outcome::RolledBack) => {
                reject("the rollback's result is already recorded")
            }
            (Some(RollbackState::Done | RollbackState::Failed), _) => Ok(ResultEffect::Unchanged),
        },
    }
}
