//! Attribution of a scripted ledger's energy to overlapping requests, against splits worked
//! out by hand, and a property: the splits of the requests add up to the energy of the time
//! they ran.

use llmtop::accounting::attribution::{Activity, Attributor, attribute, split_interval};
use llmtop::accounting::energy::{IdleBaseline, TotalBasis, Window};
use llmtop::accounting::ledger::Ledger;
use llmtop::accounting::pricing::Tariff;
use llmtop::sensors::{Covers, Method, Quantity, Reading, Sample, Source};
use proptest::prelude::*;

fn plug(j: f64) -> Reading {
    Reading {
        id: "plug:shelly:energy".into(),
        device: "shelly".into(),
        label: "wall".into(),
        quantity: Quantity::Energy,
        value: Some(j),
        limit: None,
        source: Source::Plug,
        covers: Covers::Wall,
        method: Method::Counter,
        rejected: None,
        via: None,
    }
}

/// A wall plug at `watts(t)` (constant over each second), read once a second for `secs`.
fn ledger_with(secs: u32, watts: impl Fn(u32) -> f64) -> Ledger {
    let mut l = Ledger::new();
    let mut j = 0.0;
    for s in 0..=secs {
        if s > 0 {
            j += watts(s - 1);
        }
        l.push(&Sample {
            t: f64::from(s),
            readings: vec![plug(j)],
        });
    }
    l
}

/// `n` generated tokens seen evenly over `(t0, t1]`.
fn ticks(t0: f64, t1: f64, n: u32) -> Vec<f64> {
    (1..=n)
        .map(|i| t0 + (t1 - t0) * f64::from(i) / f64::from(n))
        .collect()
}

fn decode_only(id: u64, t0: f64, t1: f64, per_s: u32) -> Activity {
    let n = ((t1 - t0) * f64::from(per_s)).round() as u32;
    Activity {
        id,
        t0,
        t1,
        prefill_tokens: 0.0,
        prefill: (t0, t0),
        token_times: ticks(t0, t1, n),
        generated_tokens: f64::from(n),
        prefill_weight: None,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6 * b.abs().max(1.0)
}

#[test]
fn a_request_alone_gets_all_the_energy_of_its_span() {
    let l = ledger_with(10, |_| 100.0);
    let a = Activity {
        id: 1,
        t0: 1.0,
        t1: 3.0,
        prefill_tokens: 10.0,
        prefill: (1.0, 1.5),
        token_times: ticks(1.5, 3.0, 20),
        generated_tokens: 20.0,
        prefill_weight: Some(0.25),
    };
    let s = attribute(&l, None, None, &[&a], &a);
    assert!(close(s.joules, 200.0), "{s:?}");
    assert_eq!(s.intervals, 2);
    assert_eq!(s.shared_s, 0.0);
    assert_eq!(s.idle_w, None);
    assert_eq!(s.basis, Some(TotalBasis::Wall));
    assert!(s.weight_measured);
    assert_eq!(s.prefill_weight, 0.25);
}

#[test]
fn overlapping_requests_split_each_second_by_tokens() {
    // A: 10 tok/s over [0, 4]; B: 30 tok/s over [2, 6]; 100 W throughout.
    // [0,2]: A alone, 200 J. [2,4]: A 10 of 40 tokens a second: 25 J/s to A, 75 to B.
    // [4,6]: B alone, 200 J. A = 250 J, B = 350 J, together the 600 J of [0, 6].
    let l = ledger_with(8, |_| 100.0);
    let a = decode_only(1, 0.0, 4.0, 10);
    let b = decode_only(2, 2.0, 6.0, 30);
    let all = [&a, &b];
    let sa = attribute(&l, None, None, &all, &a);
    let sb = attribute(&l, None, None, &all, &b);
    assert!(close(sa.joules, 250.0), "{sa:?}");
    assert!(close(sb.joules, 350.0), "{sb:?}");
    assert!(close(sa.shared_s, 2.0) && close(sb.shared_s, 2.0));
}

#[test]
fn prompt_tokens_weigh_their_measured_cost() {
    // [0,1] at 110 W: A computes 100 prompt tokens, B generates 10 tokens.
    let l = ledger_with(2, |_| 110.0);
    let mut a = Activity {
        id: 1,
        t0: 0.0,
        t1: 1.0,
        prefill_tokens: 100.0,
        prefill: (0.0, 1.0),
        token_times: vec![],
        generated_tokens: 0.0,
        prefill_weight: Some(0.1),
    };
    let b = decode_only(2, 0.0, 1.0, 10);
    // Weighted 0.1: 10 vs 10, half each.
    let s = attribute(&l, None, None, &[&a, &b], &a);
    assert!(close(s.joules, 55.0), "{s:?}");
    // No timings: a prompt token counts as one, 100 vs 10.
    a.prefill_weight = None;
    let s = attribute(&l, None, None, &[&a, &b], &a);
    assert!(close(s.joules, 100.0), "{s:?}");
    assert!(!s.weight_measured);
    assert_eq!(s.prefill_weight, 1.0);
}

#[test]
fn net_of_idle_when_a_baseline_is_on_the_ledgers_basis() {
    // 100 W, idle 40 W: each second gives 60 J. A basis that differs gives gross figures.
    let l = ledger_with(5, |_| 100.0);
    let a = decode_only(1, 1.0, 3.0, 10);
    let idle = IdleBaseline {
        watts: 40.0,
        basis: TotalBasis::Wall,
        window_s: 5.0,
        channels: Default::default(),
    };
    let s = attribute(&l, Some(&idle), None, &[&a], &a);
    assert!(close(s.joules, 120.0), "{s:?}");
    assert_eq!(s.idle_w, Some(40.0));
    let other = IdleBaseline {
        basis: TotalBasis::Components,
        ..idle
    };
    let s = attribute(&l, Some(&other), None, &[&a], &a);
    assert!(close(s.joules, 200.0), "{s:?}");
    assert_eq!(s.idle_w, None);
}

#[test]
fn a_second_with_no_tokens_is_shared_evenly_and_power_changes_are_followed() {
    // Second 0: 50 W, both waiting (no tokens): 25 J each. Second 1: 150 W, only B
    // generates: B takes it all.
    let l = ledger_with(3, |s| if s == 0 { 50.0 } else { 150.0 });
    let a = Activity {
        id: 1,
        t0: 0.0,
        t1: 2.0,
        prefill_tokens: 0.0,
        prefill: (0.0, 0.0),
        token_times: vec![],
        generated_tokens: 0.0,
        prefill_weight: None,
    };
    let b = Activity {
        token_times: ticks(1.0, 2.0, 5),
        generated_tokens: 5.0,
        id: 2,
        ..a.clone()
    };
    let sa = attribute(&l, None, None, &[&a, &b], &a);
    let sb = attribute(&l, None, None, &[&a, &b], &b);
    assert!(close(sa.joules, 25.0), "{sa:?}");
    assert!(close(sb.joules, 175.0), "{sb:?}");
}

#[test]
fn cost_and_co2_price_the_attributed_joules() {
    let tariff = Tariff::preset("DE").expect("DE");
    let origin = jiff::Timestamp::from_second(1_750_000_000).expect("ts");
    let mut l = Ledger::new().priced(tariff.clone(), origin);
    let mut j = 0.0;
    for s in 0..=4 {
        if s > 0 {
            j += 900.0; // 900 W: 0.25 Wh a second
        }
        l.push(&Sample {
            t: f64::from(s),
            readings: vec![plug(j)],
        });
    }
    let a = decode_only(1, 1.0, 2.0, 10);
    let s = attribute(&l, None, Some(&tariff), &[&a], &a);
    assert!(close(s.joules, 900.0));
    let price = tariff.price_in_hour(0);
    assert!(close(s.cost.expect("cost"), 0.00025 * price), "{s:?}");
    let g = tariff.co2_g_per_kwh.expect("DE has a grid intensity");
    assert!(close(s.co2_g.expect("co2"), 0.00025 * g));
}

#[test]
fn a_request_waits_for_the_ledger_and_for_a_prompt_count_beside_it() {
    let l = ledger_with(3, |_| 100.0);
    let mut at = Attributor::new();
    at.open(1, 0.0);
    at.open(2, 0.5);
    at.close(decode_only(1, 0.0, 1.0, 10));
    // B is still open, computing its prompt beside A: A waits for its count.
    assert!(at.settle(&l, None, None).is_empty());
    at.close(decode_only(2, 0.5, 1.5, 10));
    // The ledger reaches 3.0: A's end + 1 s is covered, B's end (2.5 with the margin) too.
    let done = at.settle(&l, None, None);
    assert_eq!(done.len(), 2);
    let total: f64 = done.iter().map(|(_, s)| s.joules).sum();
    assert!(close(total, 150.0), "{done:?}");
    assert_eq!(at.pending(), 0);
    // A request that ends after what the ledger covers waits.
    at.open(3, 2.0);
    at.close(decode_only(3, 2.0, 2.8, 10));
    assert!(at.settle(&l, None, None).is_empty());
    assert_eq!(at.pending(), 1);
}

fn activity() -> impl Strategy<Value = Activity> {
    (
        0.0..9.0f64,
        0.05..5.0f64,
        0u32..200,
        0.0..1.0f64,
        proptest::collection::vec(0.0..1.0f64, 0..40),
        proptest::option::of(0.01..3.0f64),
    )
        .prop_map(|(t0, len, prompt, pre_frac, ticks, w)| {
            let t1 = (t0 + len).min(10.0);
            let p1 = t0 + (t1 - t0) * pre_frac;
            let mut times: Vec<f64> = ticks.iter().map(|f| p1 + (t1 - p1) * f).collect();
            times.sort_by(f64::total_cmp);
            Activity {
                id: 0,
                t0,
                t1,
                prefill_tokens: f64::from(prompt),
                prefill: (t0, p1),
                generated_tokens: times.len() as f64,
                token_times: times,
                prefill_weight: w,
            }
        })
}

proptest! {
    #[test]
    fn splits_add_up_to_the_energy_of_every_interval(
        watts in proptest::collection::vec(0.0..500.0f64, 12),
        reqs in proptest::collection::vec(activity(), 1..6),
        a in 0.0..10.0f64, len in 0.01..3.0f64,
    ) {
        let reqs: Vec<Activity> = reqs.into_iter().enumerate()
            .map(|(i, mut r)| { r.id = i as u64; r }).collect();
        let refs: Vec<&Activity> = reqs.iter().collect();
        let e = 123.4;
        let b = a + len;
        let split = split_interval(e, a, b, &refs);
        let got: f64 = split.iter().map(|(_, j)| j).sum();
        let any = reqs.iter().any(|r| r.t0 < b && r.t1 > a);
        let ok = if any { close(got, e) } else { split.is_empty() };
        prop_assert!(ok, "split {:?} of {}", split, e);

        // Through the ledger: with one request spanning [0, 10], every joule of [0, 10] is
        // given to someone, and no more.
        let l = ledger_with(11, |s| watts[s as usize]);
        let mut all = reqs.clone();
        all.push(Activity { id: 99, t0: 0.0, t1: 10.0, ..decode_only(99, 0.0, 10.0, 3) });
        let refs: Vec<&Activity> = all.iter().collect();
        let sum: f64 = all.iter().map(|r| attribute(&l, None, None, &refs, r).joules).sum();
        let (want, _) = l.energy_between(0.0, 10.0).expect("energy");
        prop_assert!(close(sum, want), "{} vs {}", sum, want);

        // Net of an idle baseline the machine never drops below: every request's share is
        // then positive, and together they are the report's net of [0, 10] to the joule.
        let l = ledger_with(11, |s| 100.0 + watts[s as usize]);
        let idle = IdleBaseline {
            watts: 100.0,
            basis: TotalBasis::Wall,
            window_s: 10.0,
            channels: Default::default(),
        };
        let sum: f64 = all.iter().map(|r| attribute(&l, Some(&idle), None, &refs, r).joules).sum();
        let net = l
            .report(&Window { t0: 0.0, t1: 10.0, idle: Some(idle.clone()), ..Window::default() })
            .net_j
            .expect("net");
        prop_assert!(close(sum, net), "{} vs {}", sum, net);
    }
}

/// What happens to the books at a time: a request opens, shows tokens, or ends.
#[derive(Debug, Clone)]
enum Step {
    Open(u64, f64),
    Tokens(u64, f64),
    Close(Activity),
}

impl Step {
    fn at(&self) -> f64 {
        match self {
            Step::Open(_, t) | Step::Tokens(_, t) => *t,
            Step::Close(a) => a.t1,
        }
    }
}

/// The steps of `reqs`, in time order (an end after its own tokens).
fn steps_of(reqs: &[Activity]) -> Vec<Step> {
    let mut steps: Vec<(f64, u8, Step)> = Vec::new();
    for r in reqs {
        steps.push((r.t0, 0, Step::Open(r.id, r.t0)));
        for &t in &r.token_times {
            steps.push((t, 1, Step::Tokens(r.id, t)));
        }
        steps.push((r.t1, 2, Step::Close(r.clone())));
    }
    steps.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    steps.into_iter().map(|(_, _, s)| s).collect()
}

/// The books run as the proxy runs them: a wall plug at `watts(i)` over each sampling
/// interval of `dt`, sampled up to `end`; before each sample's settle, every step up to its
/// time is handed over. Returns each request's share and the sample time it was settled at.
fn run_books(
    reqs: &[Activity],
    dt: f64,
    end: f64,
    watts: impl Fn(usize) -> f64,
    idle: Option<&IdleBaseline>,
) -> (Ledger, Vec<(u64, f64, f64)>, Attributor) {
    let steps = steps_of(reqs);
    let mut next = 0;
    let mut l = Ledger::new();
    let mut at = Attributor::new();
    let mut j = 0.0;
    let mut out = Vec::new();
    let n = (end / dt).ceil() as usize;
    for i in 0..=n {
        let t = i as f64 * dt;
        if i > 0 {
            j += watts(i - 1) * dt;
        }
        l.push(&Sample {
            t,
            readings: vec![plug(j)],
        });
        while next < steps.len() && steps[next].at() <= t {
            match &steps[next] {
                Step::Open(id, t0) => at.open(*id, *t0),
                Step::Tokens(id, tt) => at.tokens(*id, *tt, 1),
                Step::Close(a) => at.close(a.clone()),
            }
            next += 1;
        }
        for (id, s) in at.settle(&l, idle, None) {
            out.push((id, s.joules, t));
        }
    }
    (l, out, at)
}

/// A long request decoding at 10 tok/s over [0, 60] beside 25 short ones (a prompt of 40
/// tokens for 0.2 s, then 12 tokens in 0.8 s), one every 2.3 s.
fn long_and_short() -> Vec<Activity> {
    let mut reqs = vec![decode_only(1000, 0.0, 60.0, 10)];
    for k in 0..25u64 {
        let t0 = 1.0 + k as f64 * 2.3;
        reqs.push(Activity {
            id: k,
            t0,
            t1: t0 + 1.0,
            prefill_tokens: 40.0,
            prefill: (t0, t0 + 0.2),
            token_times: ticks(t0 + 0.2, t0 + 1.0, 12),
            generated_tokens: 12.0,
            prefill_weight: Some(0.2),
        });
    }
    reqs
}

#[test]
fn a_long_request_holds_back_no_short_one_and_the_sum_holds() {
    let reqs = long_and_short();
    let dt = 0.5;
    let watts = |i: usize| 80.0 + 40.0 * ((i as f64) * 0.7).sin().abs();
    let (l, out, at) = run_books(&reqs, dt, 64.0, watts, None);
    assert_eq!(out.len(), reqs.len(), "every request settled once: {out:?}");
    assert_eq!(at.pending(), 0);
    let refs: Vec<&Activity> = reqs.iter().collect();
    for r in &reqs[1..] {
        let (_, j, when) = out.iter().find(|(id, ..)| *id == r.id).expect("settled");
        // Recorded at the first sample that lets the ledger cover its end (+ the margin), not
        // held for the long request still open beside it.
        let covered = r.t1 + llmtop::accounting::attribution::SETTLE_AFTER_S;
        assert!(
            *when >= covered && *when <= covered + dt + 1e-9,
            "request {} ended at {} settled at {when}",
            r.id,
            r.t1
        );
        // Its share is the one the whole picture gives, to 0.1 %.
        let whole = attribute(&l, None, None, &refs, r).joules;
        assert!((j - whole).abs() <= 1e-3 * whole, "{} vs {whole}", j);
        assert!(*j > 0.0);
    }
    let (_, long_j, long_when) = out.iter().find(|(id, ..)| *id == 1000).expect("long");
    assert!(*long_when >= 61.0, "{long_when}");
    let sum: f64 = out.iter().map(|(_, j, _)| j).sum();
    let (want, _) = l.energy_between(0.0, 60.0).expect("energy");
    assert!(
        (sum - want).abs() <= 1e-3 * want,
        "{sum} vs the ledger's {want}"
    );
    // The long one got what the short ones did not.
    let short: f64 = out
        .iter()
        .filter(|(id, ..)| *id != 1000)
        .map(|(_, j, _)| j)
        .sum();
    assert!((long_j + short - want).abs() <= 1e-3 * want);
}

#[test]
fn an_open_request_is_booked_in_parts() {
    let reqs = long_and_short();
    let (l, out, at) = run_books(&reqs, 0.5, 30.0, |_| 100.0, None);
    // At 30 s the long request is open: nothing recorded for it, its energy so far booked.
    assert!(out.iter().all(|(id, ..)| *id != 1000));
    let booked = at.booked_j(1000).expect("booked so far");
    let short: f64 = out.iter().map(|(_, j, _)| j).sum();
    let front = at.frontier().expect("frontier");
    assert!((28.5..=29.0).contains(&front), "{front}");
    let (want, _) = l.energy_between(0.0, front).expect("energy");
    // The frontier's time, less what went to short ones settled (and any still open).
    let open_short: f64 = reqs[1..].iter().filter_map(|r| at.booked_j(r.id)).sum();
    assert!(
        (booked + short + open_short - want).abs() <= 1e-6 * want,
        "{booked} + {short} + {open_short} vs {want}"
    );
    assert!(booked > 0.3 * want, "{booked} of {want}");
}

#[test]
fn a_request_queued_with_no_token_holds_its_neighbours_at_most_the_prefill_wait() {
    use llmtop::accounting::attribution::{PREFILL_WAIT_S, SETTLE_AFTER_S};
    // A request opens at 0 and shows nothing until it ends at 40 (queued, then one piece);
    // a short one over [2, 3] beside it waits for its prompt count at most PREFILL_WAIT_S.
    let queued = Activity {
        id: 1,
        t0: 0.0,
        t1: 40.0,
        prefill_tokens: 100.0,
        prefill: (0.0, 40.0),
        token_times: vec![],
        generated_tokens: 50.0,
        prefill_weight: None,
    };
    let short = decode_only(2, 2.0, 3.0, 10);
    let reqs = vec![queued, short];
    let (l, out, _) = run_books(&reqs, 0.5, 45.0, |_| 100.0, None);
    let (_, _, when) = out.iter().find(|(id, ..)| *id == 2).expect("short settled");
    assert!(
        *when <= 3.0 + SETTLE_AFTER_S + PREFILL_WAIT_S + 0.5,
        "held until {when}"
    );
    let sum: f64 = out.iter().map(|(_, j, _)| j).sum();
    let (want, _) = l.energy_between(0.0, 40.0).expect("energy");
    assert!((sum - want).abs() <= 1e-6 * want, "{sum} vs {want}");
}

proptest! {
    #[test]
    fn settled_as_they_go_the_splits_still_add_up(
        watts in proptest::collection::vec(0.0..500.0f64, 24),
        reqs in proptest::collection::vec(activity(), 1..8),
    ) {
        let mut reqs: Vec<Activity> = reqs.into_iter().enumerate()
            .map(|(i, mut r)| { r.id = i as u64; r }).collect();
        reqs.push(decode_only(99, 0.0, 10.0, 3));
        // Gross: every joule of [0, 10] to someone, once.
        let (l, out, at) = run_books(&reqs, 0.5, 12.0, |i| watts[i % 24], None);
        prop_assert_eq!(out.len(), reqs.len());
        prop_assert_eq!(at.pending(), 0);
        let sum: f64 = out.iter().map(|(_, j, _)| j).sum();
        let (want, _) = l.energy_between(0.0, 10.0).expect("energy");
        prop_assert!(close(sum, want), "{} vs {}", sum, want);
        // Net of an idle baseline the machine never drops below.
        let idle = IdleBaseline {
            watts: 100.0,
            basis: TotalBasis::Wall,
            window_s: 10.0,
            channels: Default::default(),
        };
        let (l, out, _) = run_books(&reqs, 0.5, 12.0, |i| 100.0 + watts[i % 24], Some(&idle));
        let sum: f64 = out.iter().map(|(_, j, _)| j).sum();
        let net = l
            .report(&Window { t0: 0.0, t1: 10.0, idle: Some(idle.clone()), ..Window::default() })
            .net_j
            .expect("net");
        prop_assert!(close(sum, net), "{} vs {}", sum, net);
    }
}
