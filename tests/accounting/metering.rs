//! The metering runtime itself, once for every mode: the drain at the end of a run (it waits
//! until the ledger covers what a subscriber holds, no longer than its limit, and a signal cuts
//! it short) on a live synthetic machine read by the real sensors and sampler, with the real
//! proxy books as the subscriber; and the signal policy (every terminating signal ends a run
//! the same way; a second cuts the drain short; a third ends the process) in a child process.

use crate::live::{LiveMachine, Profile, assert_within};
use llmtop::config::SensorsSection;
use llmtop::metering::signals::{self, Signals};
use llmtop::metering::{Deadline, Drained, Ended, Headless, Metering};
use llmtop::proxy::books::ProxyBooks;
use llmtop::proxy::feed::ProxyFeed;
use llmtop::proxy::record::{RequestLog, RequestRecord};
use llmtop::proxy::tap::{Exchange, Outcome, ProxyEvent};
use llmtop::sensors::sysfs::Sysfs;
use llmtop::sensors::{DiscoverOptions, Meter, Sensor, discover_with};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

/// The machine's RAPL package and GPU hwmon, sampled at 4 Hz by the real sampler.
fn meter(root: &Path) -> Meter {
    let section = SensorsSection {
        sysfs_root: root.to_path_buf(),
        rate_hz: 4.0,
        ..SensorsSection::default()
    };
    let opts = DiscoverOptions {
        sysfs: Sysfs::new(root),
        nvml: false,
        system: false,
        probe_plugs: false,
        proc_stat: "/proc/stat".into(),
    };
    Meter::discovered(discover_with(&section, &opts), section.rate_hz)
}

/// A machine whose one sensor is a CPU temperature (a real hwmon reader on a tree written
/// here), sampled at 20 Hz: samples come, but the ledger never has a total to cover anything
/// with.
fn no_total_meter(root: &Path) -> Meter {
    let hw = root.join("class/hwmon/hwmon0");
    std::fs::create_dir_all(&hw).expect("mkdir hwmon");
    std::fs::write(hw.join("name"), "coretemp\n").expect("name");
    std::fs::write(hw.join("temp1_input"), "45000\n").expect("temp");
    std::fs::write(hw.join("temp1_label"), "Package id 0\n").expect("label");
    let (found, _) = llmtop::sensors::hwmon::discover(&Sysfs::new(root));
    assert_eq!(found.len(), 1, "the temperature sensor");
    let sensors = found
        .into_iter()
        .map(|s| Box::new(s) as Box<dyn Sensor>)
        .collect();
    Meter::with_sensors(sensors, Vec::new(), 20.0)
}

/// A request that ran over `[t0, t1]` on the sampler clock, as the proxy reports it.
fn request(tx: &UnboundedSender<ProxyEvent>, id: u64, t0: f64, t1: f64) {
    let ex = Exchange {
        id,
        client: "127.0.0.1:9".parse().expect("addr"),
        method: "POST".into(),
        endpoint: "/api/chat".into(),
        status: 200,
        outcome: Outcome::Complete,
        t0,
        t1,
        requested_model: Some("llama3".into()),
        first_byte: Some(t0),
        token_times: vec![t0, t1],
        tokens_seen: 2,
        figures: None,
        wire_errors: Vec::new(),
        bytes_in: 10,
        bytes_out: 20,
    };
    tx.send(ProxyEvent::Started { id, t0 }).expect("send");
    tx.send(ProxyEvent::Finished(Box::new(ex))).expect("send");
}

fn records(log: &Path) -> Vec<RequestRecord> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("record JSON"))
        .collect()
}

/// Run `f` on the one runtime llmtop uses.
fn block_on<F: Future>(f: F) -> F::Output {
    llmtop::util::runtime::current_thread()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn the_drain_waits_until_the_ledger_covers_a_request_that_just_ended() {
    // 30 W package + 50 W GPU, flat: the components' total is 80 W.
    let m = LiveMachine::start(Profile::flat(30.0, 50.0, 20.0));
    let meter = meter(&m.root);
    let clock = meter.handle.start();
    let mut metering = Metering::for_meter(
        &meter,
        llmtop::accounting::pricing::Tariff::preset("US").expect("US"),
    );
    let (sampler, samples) = meter.into_parts();
    let dir = tempfile::tempdir().expect("dir");
    let log_path = dir.path().join("requests.jsonl");
    let log = RequestLog::open(&log_path, 1 << 20, 1).expect("log");
    let (tx, events) = unbounded_channel();
    let mut books = ProxyFeed::new(ProxyBooks::new(0.0, Some(log)), events, None);
    let mut feed = Headless {
        samples,
        signals: Signals::none(),
    };
    let (drained, flushed, waited, ended_at) = block_on(async {
        // A second of samples, then a request that ends this instant: the ledger has not
        // covered its end yet.
        let mut second = Deadline::at(1.0);
        let ended = metering
            .run(&mut feed, &mut [&mut books, &mut second])
            .await;
        assert_eq!(ended, Ended::Done);
        let t1 = clock.elapsed().as_secs_f64();
        request(&tx, 1, t1 - 0.6, t1);
        assert!(
            metering.ledger().settled_until().is_some_and(|s| s < t1),
            "the ledger covers the request already: the drain would have nothing to wait for"
        );
        let began = Instant::now();
        let (drained, flushed) = metering.finish(&mut feed, &mut [&mut books]).await;
        (drained, flushed, began.elapsed(), t1)
    });
    sampler.stop();
    flushed.expect("flush");
    assert_eq!(drained, Drained::Covered);
    // Covered within a sample or two (4 Hz), not at the limit.
    assert!(
        waited < Duration::from_millis(1500),
        "the drain took {waited:?}"
    );
    assert!(
        metering
            .ledger()
            .settled_until()
            .is_some_and(|s| s >= ended_at),
        "the drain ended before the ledger covered the request"
    );
    let got = records(&log_path);
    assert_eq!(got.len(), 1, "{got:?}");
    let energy = got[0].energy.as_ref().expect("the record has its energy");
    // Alone on the machine, the request is the machine's 80 W over its 0.6 s.
    assert_within("request energy", energy.joules, 80.0 * 0.6, 0.02);
}

#[test]
fn the_drain_gives_up_at_its_limit_and_writes_what_it_holds_without_energy() {
    let tree = tempfile::tempdir().expect("tree");
    let meter = no_total_meter(tree.path());
    let clock = meter.handle.start();
    let mut metering = Metering::for_meter(
        &meter,
        llmtop::accounting::pricing::Tariff::preset("US").expect("US"),
    );
    let (sampler, samples) = meter.into_parts();
    let dir = tempfile::tempdir().expect("dir");
    let log_path = dir.path().join("requests.jsonl");
    let log = RequestLog::open(&log_path, 1 << 20, 1).expect("log");
    let (tx, events) = unbounded_channel();
    let mut books = ProxyFeed::new(ProxyBooks::new(0.0, Some(log)), events, None);
    let mut feed = Headless {
        samples,
        signals: Signals::none(),
    };
    let t1 = clock.elapsed().as_secs_f64();
    request(&tx, 1, t1 - 0.2, t1);
    let limit = Duration::from_millis(600);
    let began = Instant::now();
    let drained = block_on(metering.drain(&mut feed, &mut [&mut books], limit));
    let waited = began.elapsed();
    assert_eq!(drained, Drained::TimedOut);
    assert!(waited >= limit, "gave up early: {waited:?}");
    assert!(
        waited < limit + Duration::from_millis(400),
        "gave up late: {waited:?}"
    );
    assert!(
        records(&log_path).is_empty(),
        "nothing written before the flush"
    );
    metering.flush(&mut [&mut books]).expect("flush");
    sampler.stop();
    let got = records(&log_path);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].energy.is_none(), "{:?}", got[0].energy);
    assert_eq!(books.recorded(), 1);
}

/// The child's end of [`every_terminating_signal_ends_a_run_and_the_third_ends_the_process`]:
/// one run per signal the parent sends, then a run whose drain never ends by itself.
#[test]
#[ignore = "the child process of every_terminating_signal_ends_a_run_and_the_third_ends_the_process, which runs it"]
fn signal_child() {
    let all = signals::all();
    let tree = tempfile::tempdir().expect("tree");
    let meter = no_total_meter(tree.path());
    let clock = meter.handle.start();
    let mut metering = Metering::new(llmtop::accounting::ledger::Ledger::new());
    let (_sampler, mut samples) = meter.into_parts();
    block_on(async {
        for _ in &all {
            let signals = Signals::listen().expect("listen");
            let mut feed = Headless { samples, signals };
            println!("READY");
            let mut never = Deadline::at(f64::INFINITY);
            let ended = metering.run(&mut feed, &mut [&mut never]).await;
            match ended {
                Ended::Signal(name) => println!("ENDED {name}"),
                other => println!("ENDED otherwise: {other:?}"),
            }
            samples = feed.samples;
        }
        // A request the ledger (no power sensor) never covers: the drain waits for it.
        let (tx, events) = unbounded_channel();
        let mut books = ProxyFeed::new(ProxyBooks::new(0.0, None), events, None);
        let t = clock.elapsed().as_secs_f64();
        request(&tx, 1, t - 0.1, t);
        let signals = Signals::listen().expect("listen");
        let mut feed = Headless { samples, signals };
        println!("READY");
        let mut never = Deadline::at(f64::INFINITY);
        let ended = metering.run(&mut feed, &mut [&mut never, &mut books]).await;
        println!("ENDED {ended:?}");
        let drained = metering
            .drain(&mut feed, &mut [&mut books], Duration::from_secs(60))
            .await;
        println!("DRAINED {drained:?}");
        // The third signal must end the process: nothing catches it any more.
        println!("WAITING");
        tokio::time::sleep(Duration::from_secs(60)).await;
        println!("STILL HERE");
    });
}

#[test]
fn every_terminating_signal_ends_a_run_and_the_third_ends_the_process() {
    use std::os::unix::process::ExitStatusExt;
    // Killed by its PID if this test fails half-way (it catches every other signal).
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "metering::signal_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .args(["--test-threads", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child");
    let mut child = Reap(child);
    let pid = child.0.id() as i32;
    let mut lines = BufReader::new(child.0.stdout.take().expect("stdout")).lines();
    let mut next = |want: &str| -> String {
        loop {
            let l = lines
                .next()
                .expect("the child ended early")
                .expect("read the child");
            // libtest's "test ... " may precede the first marker on its line.
            if let Some(i) = l.find(want) {
                return l[i..].to_string();
            }
        }
    };
    let kill = |sig: i32| {
        // SAFETY: signalling the child this test started, by its PID.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    };
    let all = signals::all();
    assert!(
        all.len() >= 14 + 8,
        "the set and the real-time signals: {all:?}"
    );
    for (sig, name) in &all {
        next("READY");
        kill(*sig);
        assert_eq!(next("ENDED"), format!("ENDED {name}"), "signal {sig}");
    }
    // The run ends on the first; the drain (holding a request forever) on the second.
    next("READY");
    let began = Instant::now();
    kill(libc::SIGTERM);
    assert_eq!(next("ENDED"), "ENDED Signal(\"SIGTERM\")");
    kill(libc::SIGHUP);
    assert_eq!(next("DRAINED"), "DRAINED Cut(\"SIGHUP\")");
    assert!(began.elapsed() < Duration::from_secs(5));
    // The third ends the process by the signal's default action.
    next("WAITING");
    kill(libc::SIGINT);
    let status = child.0.wait().expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
}
