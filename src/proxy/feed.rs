//! The proxy's books as a subscriber of the metering runtime: the taps' events are taken in on
//! every sample, requests settle as the ledger covers them, and each record goes to the log
//! (the books write it), the metrics endpoint and the mode's screen.

use super::books::{ProxyBooks, metrics};
use super::record::RequestRecord;
use super::tap::ProxyEvent;
use crate::accounting::ledger::Ledger;
use crate::accounting::subscriber::Subscriber;
use crate::export::feed::MetricsFeed;
use crate::sensors::Sample;
use tokio::sync::mpsc::UnboundedReceiver;

/// What is done with each record besides the log and the metrics (`llmtop proxy --print`).
pub type OnRecord = Box<dyn FnMut(&RequestRecord)>;
/// What is done with the books' lines about the log (records not written, written again):
/// `llmtop proxy` prints them on stderr; the dashboard shows [`ProxyBooks::log_status`].
pub type OnNotice = Box<dyn FnMut(&str)>;

pub struct ProxyFeed {
    pub books: ProxyBooks,
    events: UnboundedReceiver<ProxyEvent>,
    metrics: Option<MetricsFeed>,
    on_record: Option<OnRecord>,
    on_notice: Option<OnNotice>,
    /// The books' lines about the log, for [`ProxyFeed::take_notices`] (no `on_notice`).
    notices: Vec<String>,
    /// Records kept for [`ProxyFeed::take_records`] (the dashboard's table), when asked to.
    kept: Option<Vec<RequestRecord>>,
    recorded: u64,
    /// Done after this many records (`--exit-after`).
    limit: Option<u64>,
}

impl ProxyFeed {
    pub fn new(
        books: ProxyBooks,
        events: UnboundedReceiver<ProxyEvent>,
        metrics: Option<MetricsFeed>,
    ) -> Self {
        Self {
            books,
            events,
            metrics,
            on_record: None,
            on_notice: None,
            notices: Vec::new(),
            kept: None,
            recorded: 0,
            limit: None,
        }
    }

    pub fn on_record(mut self, f: OnRecord) -> Self {
        self.on_record = Some(f);
        self
    }

    pub fn on_notice(mut self, f: OnNotice) -> Self {
        self.on_notice = Some(f);
        self
    }

    /// Keep the records for [`ProxyFeed::take_records`].
    pub fn keeping_records(mut self) -> Self {
        self.kept = Some(Vec::new());
        self
    }

    /// Done once `n` requests are recorded.
    pub fn exit_after(mut self, n: Option<u32>) -> Self {
        self.limit = n.map(u64::from);
        self
    }

    /// Records settled since the last call, oldest first.
    pub fn take_records(&mut self) -> Vec<RequestRecord> {
        self.kept.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The books' lines about the log since the last call (the dashboard's status line).
    pub fn take_notices(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notices)
    }

    /// Requests in flight or waiting for the ledger.
    pub fn pending(&self) -> usize {
        self.books.pending()
    }

    /// Requests recorded so far.
    pub fn recorded(&self) -> u64 {
        self.recorded
    }

    fn pull(&mut self) {
        while let Ok(e) = self.events.try_recv() {
            self.books.event(e);
        }
    }

    fn emit(&mut self, records: Vec<RequestRecord>) {
        for line in self.books.take_notices() {
            match self.on_notice.as_mut() {
                Some(f) => f(&line),
                None => self.notices.push(line),
            }
        }
        for r in &records {
            if let Some(m) = &self.metrics {
                m.with(|m| m.record_request(&metrics(r)));
            }
            if let Some(f) = self.on_record.as_mut() {
                f(r);
            }
        }
        self.recorded += records.len() as u64;
        if let Some(kept) = self.kept.as_mut() {
            kept.extend(records);
        }
    }
}

impl Subscriber for ProxyFeed {
    fn sample(&mut self, s: &Sample, ledger: &Ledger) {
        self.pull();
        let records = self.books.settle(ledger, s.t);
        self.emit(records);
    }

    fn holds(&mut self, _ledger: &Ledger) -> bool {
        self.pull();
        self.books.pending() > 0
    }

    fn done(&self) -> bool {
        self.limit.is_some_and(|n| self.recorded >= n)
    }

    /// Requests the ledger never covered are written without energy.
    fn flush(&mut self, ledger: &Ledger) -> Result<(), String> {
        self.pull();
        let records = self.books.flush(ledger);
        self.emit(records);
        match &self.books.log_error {
            Some(e) => Err(format!(
                "{e}; {} records could not be written{}",
                self.books.queued(),
                if self.books.dropped > 0 {
                    format!(
                        " ({} more dropped while it could not be)",
                        self.books.dropped
                    )
                } else {
                    String::new()
                }
            )),
            None => Ok(()),
        }
    }
}
