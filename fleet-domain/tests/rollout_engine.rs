//! The rollout engine's pure decisions: every transition, the failure
//! threshold, timeouts and retries, maintenance windows, phases and the
//! exponential rate. A small in-memory model applies the actions the way
//! fleetd's store does, so whole rollouts can be played deterministically.

use chrono::{DateTime, Duration, Utc};
use fleet_domain::rollout::{
    self, FailureAction, FailureThresholdSpec, MaintenanceWindowSpec, PhaseSpec, RateSpec,
    RolloutPlan, RolloutSpec,
};
use fleet_domain::rollout_engine::*;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// 2025-06-02 is a Monday.
fn t0() -> DateTime<Utc> {
    t("2025-06-02T10:00:00Z")
}

fn phases(list: &[(f64, &str)]) -> RolloutSpec {
    RolloutSpec {
        target_group_ids: vec!["g".into()],
        phases: list
            .iter()
            .map(|(percent, soak)| PhaseSpec {
                percent: *percent,
                soak: Some(soak.to_string()),
            })
            .collect(),
        failure_threshold: Some(FailureThresholdSpec {
            percent: 10.0,
            min_devices: 10,
            action: "pause".into(),
        }),
        device_timeout: Some("10m".into()),
        max_retries: Some(1),
        ..Default::default()
    }
}

fn rate_spec(per_minute: i64, growth: f64) -> RolloutSpec {
    RolloutSpec {
        target_group_ids: vec!["g".into()],
        rate: Some(RateSpec {
            per_minute,
            growth_factor: Some(growth),
        }),
        device_timeout: Some("10m".into()),
        ..Default::default()
    }
}

fn plan(spec: RolloutSpec) -> RolloutPlan {
    rollout::validate(&spec).unwrap()
}

fn with_threshold(mut spec: RolloutSpec, percent: f64, min: i64, action: &str) -> RolloutSpec {
    spec.failure_threshold = Some(FailureThresholdSpec {
        percent,
        min_devices: min,
        action: action.into(),
    });
    spec
}

fn with_window(mut spec: RolloutSpec, days: &[&str], start: &str, duration: &str) -> RolloutSpec {
    spec.maintenance_window = Some(MaintenanceWindowSpec {
        days: days.iter().map(|d| d.to_string()).collect(),
        start: start.into(),
        duration: duration.into(),
    });
    spec
}

fn running(counts: Counts) -> Progress {
    Progress {
        started_at: Some(t0()),
        rate_anchor: Some(RateAnchor {
            at: t0(),
            assigned: 0,
        }),
        counts,
        ..Progress::new(Status::Running)
    }
}

fn counts(targeted: u64) -> Counts {
    Counts {
        targeted,
        pending: targeted,
        ..Counts::default()
    }
}

fn opts() -> Options {
    Options::default()
}

fn wait(reason: WaitReason, until: Option<DateTime<Utc>>) -> Action {
    Action::Wait { reason, until }
}

// ------------------------------------------------------------------ names and counters

#[test]
fn names_round_trip() {
    for s in Status::ALL {
        assert_eq!(Status::parse(s.as_str()), Some(s));
    }
    for s in DeviceState::ALL {
        assert_eq!(DeviceState::parse(s.as_str()), Some(s));
    }
    for s in [
        RollbackState::Pending,
        RollbackState::Delivered,
        RollbackState::Done,
        RollbackState::Failed,
    ] {
        assert_eq!(RollbackState::parse(s.as_str()), Some(s));
    }
    assert_eq!(Status::parse("done"), None);
    assert_eq!(Status::RolledBack.to_string(), "rolled_back");
    assert_eq!(DeviceState::InProgress.to_string(), "in_progress");
    let terminal: Vec<_> = Status::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .collect();
    assert_eq!(
        terminal,
        [
            Status::Completed,
            Status::Aborted,
            Status::RolledBack,
            Status::Cancelled
        ]
    );
    assert!(DeviceState::Cancelled.is_finished() && !DeviceState::InProgress.is_finished());
    assert_eq!(status_for(FailureAction::Pause), Status::Paused);
    assert_eq!(status_for(FailureAction::Abort), Status::Aborted);
    assert_eq!(status_for(FailureAction::Rollback), Status::RolledBack);
}

#[test]
fn deltas_keep_counts_consistent() {
    let mut d = CountsDelta::default();
    assert!(d.is_zero());
    d.targets_added(10);
    d.moved(DeviceState::Pending, DeviceState::InProgress, 4);
    d.moved(DeviceState::InProgress, DeviceState::Succeeded, 2);
    d.moved(DeviceState::InProgress, DeviceState::Failed, 1);
    d.moved(DeviceState::Succeeded, DeviceState::RolledBack, 1);
    d.moved(DeviceState::Pending, DeviceState::Cancelled, 3);
    d.moved(DeviceState::Failed, DeviceState::Failed, 5); // no-op
    d.moved(DeviceState::Pending, DeviceState::InProgress, 0); // no-op
    let c = Counts::default().with(&d);
    assert_eq!(
        c,
        Counts {
            targeted: 10,
            pending: 3,
            in_progress: 1,
            succeeded: 1,
            failed: 1,
            rolled_back: 1,
            cancelled: 3,
            assigned: 4,
        }
    );
    assert!(c.is_consistent());
    assert_eq!(c.finished(), 6);
    assert_eq!(c.of(DeviceState::Cancelled), 3);
    // A retry (in_progress → in_progress) is not a second assignment.
    let mut r = CountsDelta::default();
    r.moved(DeviceState::InProgress, DeviceState::InProgress, 1);
    assert!(r.is_zero());
    assert!(!Counts {
        targeted: 2,
        pending: 1,
        ..Counts::default()
    }
    .is_consistent());
}

#[test]
fn phase_targets_round_up() {
    assert_eq!(phase_target(1.0, 100), 1);
    assert_eq!(phase_target(1.0, 10), 1, "at least one device");
    assert_eq!(phase_target(10.0, 2_000), 200);
    assert_eq!(phase_target(33.3, 3), 1);
    assert_eq!(phase_target(50.0, 3), 2);
    assert_eq!(phase_target(7.0, 100), 7, "no float noise");
    assert_eq!(phase_target(100.0, 9_999), 9_999);
    assert_eq!(phase_target(100.0, 0), 0);
    assert_eq!(phase_target(0.0, 10), 0);
    assert_eq!(phase_target(f64::NAN, 10), 0);
}

#[test]
fn rate_grows_exponentially_per_minute() {
    let a = RateAnchor {
        at: t0(),
        assigned: 0,
    };
    // Constant rate: per_minute in each started minute.
    assert_eq!(rate_allowance(10, 1.0, &a, t0()), 10);
    assert_eq!(
        rate_allowance(10, 1.0, &a, t0() + Duration::seconds(59)),
        10
    );
    assert_eq!(
        rate_allowance(10, 1.0, &a, t0() + Duration::seconds(60)),
        20
    );
    assert_eq!(
        rate_allowance(10, 1.0, &a, t0() + Duration::minutes(9)),
        100
    );
    // Doubling: 10, 20, 40, 80 → 10, 30, 70, 150 cumulative.
    let d = |m| rate_allowance(10, 2.0, &a, t0() + Duration::minutes(m));
    assert_eq!([d(0), d(1), d(2), d(3)], [10, 30, 70, 150]);
    // 1.5: 10, 15, 22.5 → 10, 25, 47
    let h = |m| rate_allowance(10, 1.5, &a, t0() + Duration::minutes(m));
    assert_eq!([h(0), h(1), h(2)], [10, 25, 47]);
    // Relative to the anchor's assigned count; never negative time.
    let b = RateAnchor {
        at: t0(),
        assigned: 500,
    };
    assert_eq!(
        rate_allowance(10, 2.0, &b, t0() - Duration::minutes(5)),
        510
    );
    // Huge growth saturates instead of overflowing.
    assert!(rate_allowance(1_000_000, 10.0, &a, t0() + Duration::days(30)) >= 1_000_000_000);
}

#[test]
fn window_openings() {
    let w = plan(with_window(
        phases(&[(100.0, "0s")]),
        &["sun"],
        "22:00",
        "4h",
    ))
    .maintenance_window
    .unwrap();
    assert_eq!(
        window_opening(&w, t("2025-06-02T01:00:00Z")),
        Some(t("2025-06-01T22:00:00Z")),
        "across midnight"
    );
    assert_eq!(window_opening(&w, t("2025-06-02T02:00:00Z")), None);
    assert_eq!(
        window_opening(&w, t("2025-06-01T22:00:00Z")),
        Some(t("2025-06-01T22:00:00Z"))
    );
}

// ------------------------------------------------------------------ lifecycle

#[test]
fn finished_rollouts_clean_up_then_expire_then_rest() {
    let p = plan(phases(&[(100.0, "0s")]));
    for status in [
        Status::Completed,
        Status::Aborted,
        Status::RolledBack,
        Status::Cancelled,
    ] {
        let mut pr = Progress::new(status);
        assert_eq!(decide(&p, &pr, t0(), &opts()), Action::CleanUp, "{status}");
        pr.cleaned_up = true;
        pr.expired = 3;
        assert_eq!(
            decide(&p, &pr, t0(), &opts()),
            Action::ExpireTimeouts {
                mode: TimeoutMode::NoRetry,
                max_retries: 1,
                deadline: t0() + Duration::minutes(10)
            }
        );
        pr.expired = 0;
        assert_eq!(decide(&p, &pr, t0(), &opts()), wait(WaitReason::Done, None));
    }
}

#[test]
fn operator_state_wins() {
    let mut spec = phases(&[(100.0, "0s")]);
    spec.state = Some("cancelled".into());
    let cancelled = plan(spec.clone());
    for status in [Status::Pending, Status::Running, Status::Paused] {
        assert_eq!(
            decide(&cancelled, &running(counts(5)), t0(), &opts()),
            Action::SetStatus {
                to: Status::Cancelled,
                reason: "cancelled by the operator".into()
            },
            "{status}"
        );
    }
    spec.state = Some("paused".into());
    let paused = plan(spec);
    assert_eq!(
        decide(&paused, &running(counts(5)), t0(), &opts()),
        Action::SetStatus {
            to: Status::Paused,
            reason: "paused by the operator".into()
        }
    );
    let mut pr = running(counts(5));
    pr.status = Status::Paused;
    assert_eq!(
        decide(&paused, &pr, t0(), &opts()),
        wait(WaitReason::Paused, None)
    );
    // Paused by the engine (state still running): stays paused.
    let p = plan(phases(&[(100.0, "0s")]));
    assert_eq!(
        decide(&p, &pr, t0(), &opts()),
        wait(WaitReason::Paused, None)
    );
}

#[test]
fn start_honours_start_at_and_resume_follows_a_pause() {
    let mut spec = phases(&[(100.0, "0s")]);
    spec.start_at = Some("2025-06-02T12:00:00Z".into());
    let p = plan(spec);
    let pending = Progress::new(Status::Pending);
    assert_eq!(
        decide(&p, &pending, t0(), &opts()),
        wait(WaitReason::Scheduled, Some(t("2025-06-02T12:00:00Z")))
    );
    assert_eq!(
        decide(&p, &pending, t("2025-06-02T12:00:00Z"), &opts()),
        Action::Start
    );
    let resumed = Progress {
        started_at: Some(t0()),
        ..Progress::new(Status::Pending)
    };
    assert_eq!(
        decide(&p, &resumed, t("2025-06-02T13:00:00Z"), &opts()),
        Action::Resume
    );
    let no_start_at = plan(phases(&[(100.0, "0s")]));
    assert_eq!(decide(&no_start_at, &pending, t0(), &opts()), Action::Start);
}

// ------------------------------------------------------------------ phases

#[test]
fn phases_assign_up_to_their_share_then_soak_then_advance() {
    let p = plan(phases(&[(10.0, "30m"), (50.0, "1h"), (100.0, "0s")]));
    let deadline = t0() + Duration::minutes(10);
    let mut pr = running(counts(100));
    assert_eq!(
        decide(&p, &pr, t0(), &opts()),
        Action::Assign {
            count: 10,
            phase: 0,
            deadline
        }
    );
    pr.counts = Counts {
        targeted: 100,
        pending: 90,
        in_progress: 10,
        assigned: 10,
        ..Counts::default()
    };
    assert_eq!(
        decide(&p, &pr, t0(), &opts()),
        wait(WaitReason::InProgress, None)
    );
    // All ten succeeded: the phase completes, soak starts.
    pr.counts.in_progress = 0;
    pr.counts.succeeded = 10;
    assert_eq!(
        decide(&p, &pr, t0(), &opts()),
        Action::CompletePhase { phase: 0 }
    );
    pr.phase_completed_at = Some(t0());
    let soak_end = t0() + Duration::minutes(30);
    assert_eq!(
        decide(&p, &pr, t0() + Duration::minutes(29), &opts()),
        wait(WaitReason::Soaking, Some(soak_end))
    );
    assert_eq!(
        decide(&p, &pr, soak_end, &opts()),
        Action::AdvancePhase { to: 1 }
    );
    pr.current_phase = 1;
    pr.phase_completed_at = None;
    assert_eq!(
        decide(&p, &pr, soak_end, &opts()),
        Action::Assign {
            count: 40,
            phase: 1,
            deadline: soak_end + Duration::minutes(10)
        }
    );
    // Batches.
    let small = Options {
        batch_size: 7,
        ..opts()
    };
    assert_eq!(
        decide(&p, &pr, soak_end, &small),
        Action::Assign {
            count: 7,
            phase: 1,
            deadline: soak_end + Duration::minutes(10)
        }
    );
}

#[test]
fn last_phase_waits_then_completes() {
    let p = plan(phases(&[(50.0, "1h"), (100.0, "1h")]));
    let mut pr = running(Counts {
        targeted: 4,
        in_progress: 1,
        succeeded: 3,
        assigned: 4,
        ..Counts::default()
    });
    pr.current_phase = 1;
    assert_eq!(
        decide(&p, &pr, t0(), &opts()),
        wait(WaitReason::InProgress, None)
    );
    pr.counts.in_progress = 0;
    pr.counts.failed = 1;
    assert_eq!(
        decide(&p, &pr, t0(), &opts()),
        Action::SetStatus {
            to: Status::Completed,
            reason:
                "all 4 targeted devices finished: 3 succeeded, 1 failed, 0 rolled back, 0 cancelled"
                    .into()
        },
        "the last phase's soak does not delay completion"
    );
    // Nothing targeted at all: complete at once.
    assert!(matches!(
        decide(&p, &running(counts(0)), t0(), &opts()),
        Action::SetStatus {
            to: Status::Completed,
            ..
        }
    ));
}

#[test]
fn a_phase_that_misses_its_success_ratio_triggers_the_action() {
    // 10% threshold, min 10 devices: 1 failure out of 2 canaries is below
    // min_devices for the threshold, but the phase gate still refuses.
    let p = plan(with_threshold(
        phases(&[(2.0, "0s"), (100.0, "0s")]),
        10.0,
        10,
        "abort",
    ));
    let pr = running(Counts {
        targeted: 100,
        pending: 98,
        succeeded: 1,
        failed: 1,
        assigned: 2,
        ..Counts::default()
    });
    assert_eq!(
        decide(&p, &pr, t0(), &opts()),
        Action::FailureAction {
            action: FailureAction::Abort,
            reason: "phase 1 missed its success ratio: 1 of 2 devices failed (50% > 10%)".into()
        }
    );
    // After a resume the baseline forgives the old failure: the gate passes.
    let mut resumed = pr.clone();
    resumed.baseline = Baseline::of(&pr.counts);
    assert_eq!(
        decide(&p, &resumed, t0(), &opts()),
        Action::CompletePhase { phase: 0 }
    );
}

// ------------------------------------------------------------------ threshold

#[test]
fn failure_threshold_needs_min_devices_and_a_rate_above_percent() {
    let c = |succeeded, failed, rolled_back| Counts {
        targeted: 100,
        pending: 100 - succeeded - failed - rolled_back,
        succeeded,
        failed,
        rolled_back,
        assigned: succeeded + failed + rolled_back,
        ..Counts::default()
    };
    let ft = plan(with_threshold(phases(&[(100.0, "0s")]), 20.0, 10, "pause")).failure_threshold;
    let none = Baseline::default();
    assert_eq!(
        threshold_breach(&ft, &c(5, 4, 0), &none),
        None,
        "9 < min_devices"
    );
    assert_eq!(
        threshold_breach(&ft, &c(8, 2, 0), &none),
        None,
        "20% is not above 20%"
    );
    assert_eq!(
        threshold_breach(&ft, &c(7, 2, 1), &none).as_deref(),
        Some("failure threshold exceeded: 3 of 10 devices failed (30% > 20%)"),
        "device-reported rollbacks count as failures"
    );
    assert_eq!(
        threshold_breach(&ft, &c(20, 1, 0), &none),
        None,
        "4.76% is fine"
    );
    // Only results since the baseline count.
    let b = Baseline {
        succeeded: 7,
        failed: 3,
    };
    assert_eq!(
        threshold_breach(&ft, &c(9, 5, 0), &b),
        None,
        "4 new results"
    );
    assert_eq!(
        threshold_breach(&ft, &c(14, 8, 0), &b).as_deref(),
        Some("failure threshold exceeded: 5 of 12 devices failed (41.67% > 20%)")
    );
    assert_eq!(results_since(&c(14, 8, 0), &b), (12, 5));
    // 0% tolerates nothing (once min_devices results are in).
    let zero = plan(with_threshold(phases(&[(100.0, "0s")]), 0.0, 1, "pause")).failure_threshold;
    assert!(threshold_breach(&zero, &c(0, 1, 0), &none).is_some());
    assert!(threshold_breach(&zero, &c(1, 0, 0), &none).is_none());
    // 100% never triggers.
    let all = plan(with_threshold(phases(&[(100.0, "0s")]), 100.0, 1, "pause")).failure_threshold;
    assert!(threshold_breach(&all, &c(0, 50, 0), &none).is_none());
}

#[test]
fn threshold_action_comes_before_assignments_for_each_action() {
    for (action, expected) in [
        ("pause", FailureAction::Pause),
        ("abort", FailureAction::Abort),
        ("rollback", FailureAction::Rollback),
    ] {
        let p = plan(with_threshold(phases(&[(100.0, "0s")]), 10.0, 5, action));
        let pr = running(Counts {
            targeted: 100,
            pending: 90,
            succeeded: 8,
            failed: 2,
            assigned: 10,
            ..Counts::default()
        });
        match decide(&p, &pr, t0(), &opts()) {
            Action::FailureAction { action, reason } => {
                assert_eq!(action, expected);
                assert!(reason.contains("2 of 10"), "{reason}");
            }
            other => panic!("{action}: {other:?}"),
        }
    }
}

// ------------------------------------------------------------------ timeouts

#[test]
fn timeouts_retry_then_fail() {
    assert_eq!(
        on_timeout(1, 2, TimeoutMode::Retry),
        TimeoutOutcome::Retry { attempt: 2 }
    );
    assert_eq!(
        on_timeout(2, 2, TimeoutMode::Retry),
        TimeoutOutcome::Retry { attempt: 3 }
    );
    assert_eq!(
        on_timeout(3, 2, TimeoutMode::Retry),
        TimeoutOutcome::Fail {
            reason: "timed out after 3 attempts".into()
        }
    );
    assert_eq!(
        on_timeout(1, 0, TimeoutMode::Retry),
        TimeoutOutcome::Fail {
            reason: "timed out after 1 attempt".into()
        }
    );
    assert_eq!(
        on_timeout(1, 2, TimeoutMode::FinalOnly),
        TimeoutOutcome::Keep
    );
    assert!(matches!(
        on_timeout(3, 2, TimeoutMode::FinalOnly),
        TimeoutOutcome::Fail { .. }
    ));
    assert!(matches!(
        on_timeout(1, 2, TimeoutMode::NoRetry),
        TimeoutOutcome::Fail { .. }
    ));
}

#[test]
fn expired_devices_are_handled_before_anything_else_while_running() {
    let p = plan(with_window(
        phases(&[(100.0, "0s")]),
        &["mon"],
        "09:00",
        "2h",
    ));
    let mut pr = running(Counts {
        targeted: 10,
        pending: 5,
        in_progress: 5,
        assigned: 5,
        ..Counts::default()
    });
    pr.expired = 2;
    pr.expired_final = 1;
    let open = t0(); // Monday 10:00, inside 09:00–11:00
    assert_eq!(
        decide(&p, &pr, open, &opts()),
        Action::ExpireTimeouts {
            mode: TimeoutMode::Retry,
            max_retries: 1,
            deadline: open + Duration::minutes(10)
        }
    );
    let closed = t("2025-06-02T12:00:00Z");
    assert_eq!(
        decide(&p, &pr, closed, &opts()),
        Action::ExpireTimeouts {
            mode: TimeoutMode::FinalOnly,
            max_retries: 1,
            deadline: closed + Duration::minutes(10)
        }
    );
    // Only retryable ones while closed: they wait for the window.
    pr.expired_final = 0;
    assert_eq!(
        decide(&p, &pr, closed, &opts()),
        wait(WaitReason::WindowClosed, Some(t("2025-06-09T09:00:00Z")))
    );
}

// ------------------------------------------------------------------ windows

#[test]
fn a_closed_window_blocks_assignments_but_not_results() {
    let p = plan(with_window(
        with_threshold(phases(&[(100.0, "0s")]), 10.0, 2, "pause"),
        &["mon"],
        "09:00",
        "2h",
    ));
    let pr = running(counts(10));
    let closed = t("2025-06-02T08:59:59Z");
    assert_eq!(
        decide(&p, &pr, closed, &opts()),
        wait(WaitReason::WindowClosed, Some(t("2025-06-02T09:00:00Z")))
    );
    assert!(matches!(
        decide(&p, &pr, t("2025-06-02T09:00:00Z"), &opts()),
        Action::Assign { count: 10, .. }
    ));
    assert_eq!(
        decide(&p, &pr, t("2025-06-02T11:00:00Z"), &opts()),
        wait(WaitReason::WindowClosed, Some(t("2025-06-09T09:00:00Z")))
    );
    // The threshold still applies while the window is closed.
    let failing = running(Counts {
        targeted: 10,
        pending: 8,
        failed: 2,
        assigned: 2,
        ..Counts::default()
    });
    assert!(matches!(
        decide(&p, &failing, closed, &opts()),
        Action::FailureAction { .. }
    ));
}

// ------------------------------------------------------------------ continuous

#[test]
fn continuous_rollouts_rescan_and_never_complete() {
    let mut spec = phases(&[(100.0, "0s")]);
    spec.continuous = true;
    let p = plan(spec);
    let mut pr = running(Counts {
        targeted: 3,
        succeeded: 3,
        assigned: 3,
        ..Counts::default()
    });
    assert_eq!(decide(&p, &pr, t0(), &opts()), Action::RefreshTargets);
    pr.targets_refreshed_at = Some(t0());
    assert_eq!(
        decide(&p, &pr, t0() + Duration::seconds(29), &opts()),
        wait(WaitReason::NoPendingDevices, None)
    );
    assert_eq!(
        decide(&p, &pr, t0() + Duration::seconds(30), &opts()),
        Action::RefreshTargets
    );
    // A zero rescan interval still means at most one rescan per second.
    let eager = Options {
        rescan_interval_secs: 0,
        ..opts()
    };
    assert_eq!(
        decide(&p, &pr, t0(), &eager),
        wait(WaitReason::NoPendingDevices, None)
    );
    assert_eq!(
        decide(&p, &pr, t0() + Duration::seconds(1), &eager),
        Action::RefreshTargets
    );
    // A joiner was added: assigned at once (100% phase).
    pr.counts.targeted = 4;
    pr.counts.pending = 1;
    assert!(matches!(
        decide(&p, &pr, t0() + Duration::seconds(1), &opts()),
        Action::Assign {
            count: 1,
            phase: 0,
            ..
        }
    ));
}

// ------------------------------------------------------------------ rate

#[test]
fn rate_assigns_per_minute_and_restarts_with_each_window() {
    let p = plan(rate_spec(10, 2.0));
    let mut pr = running(counts(1_000));
    assert!(matches!(
        decide(&p, &pr, t0(), &opts()),
        Action::Assign {
            count: 10,
            phase: 0,
            ..
        }
    ));
    pr.counts.assigned = 10;
    pr.counts.pending = 990;
    pr.counts.in_progress = 10;
    assert_eq!(
        decide(&p, &pr, t0() + Duration::seconds(30), &opts()),
        wait(WaitReason::RateLimited, Some(t0() + Duration::minutes(1)))
    );
    assert!(matches!(
        decide(&p, &pr, t0() + Duration::minutes(1), &opts()),
        Action::Assign { count: 20, .. }
    ));
    assert!(matches!(
        decide(&p, &pr, t0() + Duration::minutes(3), &opts()),
        Action::Assign { count: 140, .. }
    ));

    // With a window: a new opening re-anchors the rate.
    let pw = plan(with_window(
        rate_spec(10, 2.0),
        &["mon", "tue"],
        "09:00",
        "2h",
    ));
    let tuesday = t("2025-06-03T09:00:30Z");
    assert_eq!(
        decide(&pw, &pr, tuesday, &opts()),
        Action::SetRateAnchor(RateAnchor {
            at: t("2025-06-03T09:00:00Z"),
            assigned: 10
        })
    );
    pr.rate_anchor = Some(RateAnchor {
        at: t("2025-06-03T09:00:00Z"),
        assigned: 10,
    });
    assert!(matches!(
        decide(&pw, &pr, tuesday, &opts()),
        Action::Assign { count: 10, .. }
    ));
    // Nothing pending: wait for results.
    pr.counts.pending = 0;
    pr.counts.in_progress = 1_000 - pr.counts.succeeded;
    assert_eq!(
        decide(&pw, &pr, tuesday, &opts()),
        wait(WaitReason::InProgress, None)
    );
}

// ------------------------------------------------------------------ results

fn rec(state: DeviceState, rollback: Option<RollbackState>) -> DeviceRecord {
    DeviceRecord {
        state,
        rollback,
        has_previous: true,
    }
}

#[test]
fn results_move_in_progress_devices() {
    use DeviceState as S;
    let fail = Outcome::Failed {
        reason: "flash error".into(),
    };
    let r = rec(S::InProgress, None);
    assert_eq!(
        apply_result(&r, &Outcome::Succeeded, Status::Running),
        Ok(ResultEffect::Transition {
            state: S::Succeeded,
            rollback: None,
            reason: None
        })
    );
    assert_eq!(
        apply_result(&r, &fail, Status::Paused),
        Ok(ResultEffect::Transition {
            state: S::Failed,
            rollback: None,
            reason: Some("flash error".into())
        })
    );
    assert_eq!(
        apply_result(&r, &Outcome::RolledBack, Status::Aborted),
        Ok(ResultEffect::Transition {
            state: S::RolledBack,
            rollback: None,
            reason: Some("rolled back by the device".into())
        })
    );
    // Success in a rolled-back rollout: straight to a rollback.
    assert!(matches!(
        apply_result(&r, &Outcome::Succeeded, Status::RolledBack),
        Ok(ResultEffect::Transition {
            state: S::RolledBack,
            rollback: Some(RollbackState::Pending),
            ..
        })
    ));
    let unknown_previous = DeviceRecord {
        has_previous: false,
        ..r.clone()
    };
    assert!(matches!(
        apply_result(&unknown_previous, &Outcome::Succeeded, Status::RolledBack),
        Ok(ResultEffect::Transition {
            state: S::Succeeded,
            ..
        })
    ));
}

#[test]
fn results_are_idempotent_and_contradictions_rejected() {
    use DeviceState as S;
    let fail = Outcome::Failed { reason: "x".into() };
    let ok = Outcome::Succeeded;
    let rb = Outcome::RolledBack;
    let st = Status::Running;
    assert_eq!(
        apply_result(&rec(S::Succeeded, None), &ok, st),
        Ok(ResultEffect::Unchanged)
    );
    assert_eq!(
        apply_result(&rec(S::Failed, None), &fail, st),
        Ok(ResultEffect::Unchanged)
    );
    assert_eq!(
        apply_result(&rec(S::RolledBack, None), &rb, st),
        Ok(ResultEffect::Unchanged)
    );
    assert_eq!(
        apply_result(&rec(S::Succeeded, None), &fail, st)
            .unwrap_err()
            .to_string(),
        "cannot record failed: the device already reported succeeded"
    );
    assert!(apply_result(&rec(S::Failed, None), &ok, st).is_err());
    assert!(apply_result(&rec(S::RolledBack, None), &ok, st).is_err());
    assert_eq!(
        apply_result(&rec(S::Pending, None), &ok, st)
            .unwrap_err()
            .to_string(),
        "cannot record succeeded: the device has no assignment in this rollout yet"
    );
    assert!(apply_result(&rec(S::Cancelled, None), &ok, st).is_err());
}

#[test]
fn rollback_assignments_finish_with_the_next_result() {
    use DeviceState as S;
    let st = Status::RolledBack;
    let pending = rec(S::RolledBack, Some(RollbackState::Pending));
    let delivered = rec(S::RolledBack, Some(RollbackState::Delivered));
    let fail = Outcome::Failed {
        reason: "no space".into(),
    };
    // Not fetched yet: a repeated original success changes nothing.
    assert_eq!(
        apply_result(&pending, &Outcome::Succeeded, st),
        Ok(ResultEffect::Unchanged)
    );
    assert_eq!(
        apply_result(&pending, &Outcome::RolledBack, st),
        Ok(ResultEffect::Rollback {
            rollback: RollbackState::Done,
            reason: None
        })
    );
    assert!(apply_result(&pending, &fail, st).is_err());
    for o in [Outcome::Succeeded, Outcome::RolledBack] {
        assert_eq!(
            apply_result(&delivered, &o, st),
            Ok(ResultEffect::Rollback {
                rollback: RollbackState::Done,
                reason: None
            })
        );
    }
    assert_eq!(
        apply_result(&delivered, &fail, st),
        Ok(ResultEffect::Rollback {
            rollback: RollbackState::Failed,
            reason: Some("rollback failed: no space".into())
        })
    );
    let done = rec(S::RolledBack, Some(RollbackState::Done));
    assert_eq!(
        apply_result(&done, &Outcome::Succeeded, st),
        Ok(ResultEffect::Unchanged)
    );
    assert!(apply_result(&done, &fail, st).is_err());
    let failed = rec(S::RolledBack, Some(RollbackState::Failed));
    assert_eq!(
        apply_result(&failed, &fail, st),
        Ok(ResultEffect::Unchanged)
    );
    assert!(apply_result(&failed, &Outcome::Succeeded, st).is_err());
}

// ------------------------------------------------------------------ whole rollouts

#[derive(Clone)]
struct Dev {
    state: DeviceState,
    attempt: u32,
    deadline: Option<DateTime<Utc>>,
}

/// The store's behaviour, in memory.
struct Model {
    plan: RolloutPlan,
    p: Progress,
    devs: Vec<Dev>,
    opts: Options,
    log: Vec<Action>,
}

impl Model {
    fn new(spec: RolloutSpec, n: usize) -> Model {
        Model {
            plan: plan(spec),
            p: Progress::new(Status::Pending),
            devs: vec![
                Dev {
                    state: DeviceState::Pending,
                    attempt: 0,
                    deadline: None,
                };
                n
            ],
            opts: Options {
                batch_size: 50,
                ..Options::default()
            },
            log: vec![],
        }
    }

    fn recount(&self) -> Counts {
        let mut c = Counts {
            targeted: self.devs.len() as u64,
            ..Counts::default()
        };
        for d in &self.devs {
            match d.state {
                DeviceState::Pending => c.pending += 1,
                DeviceState::InProgress => c.in_progress += 1,
                DeviceState::Succeeded => c.succeeded += 1,
                DeviceState::Failed => c.failed += 1,
                DeviceState::RolledBack => c.rolled_back += 1,
                DeviceState::Cancelled => c.cancelled += 1,
            }
            if d.attempt > 0 {
                c.assigned += 1;
            }
        }
        c
    }

    fn sync(&mut self, now: DateTime<Utc>) {
        let c = self.recount();
        assert!(c.is_consistent());
        self.p.counts = c;
        let max = self.plan.max_retries;
        let expired: Vec<_> = self
            .devs
            .iter()
            .filter(|d| d.state == DeviceState::InProgress && d.deadline.is_some_and(|x| x <= now))
            .collect();
        self.p.expired = expired.len() as u64;
        self.p.expired_final = expired.iter().filter(|d| d.attempt > max).count() as u64;
    }

    /// Ticks at `now` until the engine waits; returns the wait.
    fn tick(&mut self, now: DateTime<Utc>) -> Action {
        for _ in 0..10_000 {
            self.sync(now);
            let a = decide(&self.plan, &self.p, now, &self.opts);
            if a.is_wait() {
                return a;
            }
            self.log.push(a.clone());
            self.apply(&a, now);
        }
        panic!("the engine did not settle");
    }

    fn set_status(&mut self, to: Status) {
        self.p.status = to;
        if to.is_terminal() {
            self.clean_up();
        }
    }

    fn clean_up(&mut self) {
        for d in &mut self.devs {
            if d.state == DeviceState::Pending {
                d.state = DeviceState::Cancelled;
            }
            if self.p.status == Status::RolledBack && d.state == DeviceState::Succeeded {
                d.state = DeviceState::RolledBack;
            }
        }
        self.p.cleaned_up = true;
    }

    fn apply(&mut self, a: &Action, now: DateTime<Utc>) {
        match a {
            Action::Start => {
                self.p.started_at = Some(now);
                self.p.rate_anchor = Some(RateAnchor {
                    at: now,
                    assigned: 0,
                });
                self.p.targets_refreshed_at = Some(now);
                self.p.status = Status::Running;
            }
            Action::Resume => {
                self.p.baseline = Baseline::of(&self.p.counts);
                self.p.rate_anchor = Some(RateAnchor {
                    at: now,
                    assigned: self.p.counts.assigned,
                });
                self.p.status = Status::Running;
            }
            Action::SetStatus { to, .. } => self.set_status(*to),
            Action::FailureAction { action, .. } => self.set_status(status_for(*action)),
            Action::CleanUp => self.clean_up(),
            Action::RefreshTargets => self.p.targets_refreshed_at = Some(now),
            Action::ExpireTimeouts {
                mode,
                max_retries,
                deadline,
            } => {
                for d in &mut self.devs {
                    if d.state == DeviceState::InProgress && d.deadline.is_some_and(|x| x <= now) {
                        match on_timeout(d.attempt, *max_retries, *mode) {
                            TimeoutOutcome::Retry { attempt } => {
                                d.attempt = attempt;
                                d.deadline = Some(*deadline);
                            }
                            TimeoutOutcome::Fail { .. } => d.state = DeviceState::Failed,
                            TimeoutOutcome::Keep => {}
                        }
                    }
                }
            }
            Action::CompletePhase { .. } => self.p.phase_completed_at = Some(now),
            Action::AdvancePhase { to } => {
                self.p.current_phase = *to;
                self.p.phase_completed_at = None;
            }
            Action::SetRateAnchor(anchor) => self.p.rate_anchor = Some(*anchor),
            Action::Assign {
                count, deadline, ..
            } => {
                let mut left = *count;
                for d in &mut self.devs {
                    if left == 0 {
                        break;
                    }
                    if d.state == DeviceState::Pending {
                        d.state = DeviceState::InProgress;
                        d.attempt = 1;
                        d.deadline = Some(*deadline);
                        left -= 1;
                    }
                }
            }
            Action::Wait { .. } => {}
        }
    }

    /// Every in-progress device reports; `fails(i)` decides who fails.
    fn report_all(&mut self, fails: impl Fn(usize) -> bool) {
        for (i, d) in self.devs.iter_mut().enumerate() {
            if d.state == DeviceState::InProgress {
                d.state = if fails(i) {
                    DeviceState::Failed
                } else {
                    DeviceState::Succeeded
                };
            }
        }
    }

    fn count(&self, s: DeviceState) -> usize {
        self.devs.iter().filter(|d| d.state == s).count()
    }
}

#[test]
fn a_phased_rollout_runs_to_completion_soaking_between_phases() {
    let mut m = Model::new(
        phases(&[(1.0, "10m"), (10.0, "10m"), (50.0, "10m"), (100.0, "10m")]),
        1_000,
    );
    let mut now = t0();
    let expected_in_progress = [10, 90, 400, 500];
    for (phase, expected) in expected_in_progress.into_iter().enumerate() {
        assert_eq!(
            m.tick(now),
            wait(WaitReason::InProgress, None),
            "phase {phase}"
        );
        assert_eq!(m.count(DeviceState::InProgress), expected, "phase {phase}");
        assert_eq!(m.p.current_phase, phase);
        m.report_all(|_| false);
        if phase < 3 {
            assert_eq!(
                m.tick(now),
                wait(WaitReason::Soaking, Some(now + Duration::minutes(10)))
            );
            // One second early: still soaking, nothing assigned.
            assert!(m.tick(now + Duration::seconds(599)).is_wait());
            assert_eq!(m.count(DeviceState::InProgress), 0);
            now += Duration::minutes(10);
        }
    }
    assert_eq!(m.tick(now), wait(WaitReason::Done, None));
    assert_eq!(m.p.status, Status::Completed);
    assert_eq!(m.count(DeviceState::Succeeded), 1_000);
    let assigns = m
        .log
        .iter()
        .filter(|a| matches!(a, Action::Assign { .. }))
        .count();
    assert_eq!(assigns, 1 + 2 + 8 + 10, "batches of 50");
}

#[test]
fn failures_pause_then_resume_forgives_them() {
    // 10% after 10 results; half the canary phase fails.
    let mut m = Model::new(phases(&[(5.0, "0s"), (100.0, "0s")]), 400);
    let now = t0();
    m.tick(now);
    assert_eq!(m.count(DeviceState::InProgress), 20);
    m.report_all(|i| i % 2 == 0);
    assert_eq!(m.tick(now), wait(WaitReason::Paused, None));
    assert_eq!(m.p.status, Status::Paused);
    assert_eq!(m.count(DeviceState::Pending), 380, "nothing more assigned");
    // The operator resumes (status pending via the state change).
    m.p.status = Status::Pending;
    let later = now + Duration::hours(1);
    assert_eq!(m.tick(later), wait(WaitReason::InProgress, None));
    assert_eq!(m.p.status, Status::Running);
    assert_eq!(m.count(DeviceState::InProgress), 380);
    m.report_all(|_| false);
    m.tick(later);
    assert_eq!(m.p.status, Status::Completed);
    assert_eq!(
        (
            m.count(DeviceState::Succeeded),
            m.count(DeviceState::Failed)
        ),
        (390, 10)
    );
}

#[test]
fn abort_cancels_pending_and_rollback_reverts_successes() {
    for (action, status) in [("abort", Status::Aborted), ("rollback", Status::RolledBack)] {
        let mut m = Model::new(
            with_threshold(phases(&[(10.0, "0s"), (100.0, "0s")]), 20.0, 5, action),
            100,
        );
        m.tick(t0());
        m.report_all(|i| i < 3); // 3 of 10 fail
        assert_eq!(m.tick(t0()), wait(WaitReason::Done, None));
        assert_eq!(m.p.status, status);
        assert_eq!(m.count(DeviceState::Cancelled), 90);
        assert_eq!(m.count(DeviceState::Failed), 3);
        let (succeeded, rolled_back) = if status == Status::RolledBack {
            (0, 7)
        } else {
            (7, 0)
        };
        assert_eq!(m.count(DeviceState::Succeeded), succeeded);
        assert_eq!(m.count(DeviceState::RolledBack), rolled_back);
    }
}

#[test]
fn silent_devices_are_retried_then_failed() {
    let mut spec = with_threshold(phases(&[(100.0, "0s")]), 100.0, 1, "pause");
    spec.max_retries = Some(2);
    let mut m = Model::new(spec, 3);
    let mut now = t0();
    m.tick(now);
    assert!(m.devs.iter().all(|d| d.attempt == 1));
    for attempt in 2..=3 {
        now += Duration::minutes(10);
        m.tick(now);
        assert!(m
            .devs
            .iter()
            .all(|d| d.attempt == attempt && d.state == DeviceState::InProgress));
        assert_eq!(m.devs[0].deadline, Some(now + Duration::minutes(10)));
    }
    now += Duration::minutes(10);
    m.tick(now);
    assert_eq!(m.count(DeviceState::Failed), 3);
    assert_eq!(m.p.status, Status::Completed);
}

#[test]
fn a_rate_rollout_ramps_up() {
    let mut m = Model::new(rate_spec(5, 2.0), 100);
    let mut now = t0();
    let mut seen = vec![];
    for _ in 0..5 {
        m.tick(now);
        seen.push(m.recount().assigned);
        m.report_all(|_| false);
        now += Duration::minutes(1);
    }
    // 5, +10, +20, +40, then the remaining 25.
    assert_eq!(seen, [5, 15, 35, 75, 100]);
    m.tick(now);
    assert_eq!(m.p.status, Status::Completed);
}

#[test]
fn decisions_are_deterministic() {
    let run = || {
        let mut m = Model::new(phases(&[(3.0, "1m"), (40.0, "2m"), (100.0, "0s")]), 333);
        let mut now = t0();
        for step in 0..20 {
            m.tick(now);
            m.report_all(|i| (i + step) % 17 == 0);
            now += Duration::seconds(45);
        }
        (m.log.clone(), m.recount(), m.p.clone())
    };
    assert_eq!(run(), run());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn strategy_spec(kind: u8) -> RolloutSpec {
        match kind % 4 {
            0 => phases(&[(100.0, "0s")]),
            1 => phases(&[(1.0, "1m"), (25.0, "2m"), (100.0, "0s")]),
            2 => rate_spec(7, 1.5),
            _ => with_window(
                phases(&[(10.0, "30s"), (100.0, "0s")]),
                &["mon", "wed"],
                "10:00",
                "1h",
            ),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the devices answer and whenever the engine ticks, it
        /// settles after each tick, never assigns beyond the current
        /// phase's share, keeps the counters consistent and ends in a
        /// terminal status once time runs long enough.
        #[test]
        fn the_engine_always_settles_and_finishes(
            n in 0usize..200,
            kind in 0u8..4,
            action in 0u8..3,
            fail_mod in 2usize..50,
            silent_mod in 2usize..50,
            steps in proptest::collection::vec(1i64..600, 1..40),
        ) {
            let action = ["pause", "abort", "rollback"][action as usize];
            let spec = with_threshold(strategy_spec(kind), 20.0, 5, action);
            let mut m = Model::new(spec, n);
            let mut now = t0();
            for (k, step) in steps.iter().enumerate() {
                m.tick(now);
                if let rollout::Strategy::Phased(ph) = &m.plan.strategy {
                    let cap = phase_target(ph[m.p.current_phase].percent, n as u64);
                    prop_assert!(m.recount().assigned <= cap);
                }
                // Some devices answer (some fail), some stay silent.
                for (i, d) in m.devs.iter_mut().enumerate() {
                    if d.state == DeviceState::InProgress && (i + k) % silent_mod != 0 {
                        d.state = if (i * 7 + k) % fail_mod == 0 {
                            DeviceState::Failed
                        } else {
                            DeviceState::Succeeded
                        };
                    }
                }
                now += Duration::seconds(*step);
            }
            // Long enough for every timeout, soak and window: answer
            // everything, resuming whenever the threshold paused it.
            // Devices still flashing when the rollout ended time out.
            for _ in 0..200 {
                m.tick(now);
                if m.p.status.is_terminal() && m.recount().in_progress == 0 {
                    break;
                }
                if m.p.status == Status::Paused {
                    m.p.status = Status::Pending;
                }
                if !m.p.status.is_terminal() {
                    m.report_all(|_| false);
                }
                now += Duration::hours(1);
            }
            prop_assert!(m.p.status.is_terminal(), "{:?}", m.p);
            let c = m.recount();
            prop_assert!(c.is_consistent());
            prop_assert_eq!(c.pending + c.in_progress, 0);
        }
    }
}
