//! The cost of a loaded model at rest: the watts and money while a model sits loaded with no
//! request in progress ("waiting"), beside the replies ("answering"), and, where the
//! machine's idle without the model was measured (an Ollama model past its `keep_alive`,
//! unloaded), what unloading would save.
//!
//! The spans come from the session (when the model was loaded, when replies ran, when a
//! server said it unloaded); every joule and every cent comes from the ledger over them
//! ([`Ledger::energy_between`], [`Ledger::cost_between`]): the waiting cost shown is the
//! ledger's energy for those spans priced by the tariff.

use super::ledger::Ledger;
use super::pricing::Tariff;

/// The machine's idle without the model counts once it was seen this long.
pub const MIN_UNLOADED_S: f64 = 10.0;

/// A stretch of sampler time.
pub type Span = (f64, f64);

/// `spans` less `cut`: the pieces of each span outside every cut span.
pub fn subtract(spans: &[Span], cut: &[Span]) -> Vec<Span> {
    let mut out = Vec::new();
    for &(a, b) in spans {
        let mut pieces = vec![(a, b)];
        for &(c0, c1) in cut {
            pieces = pieces
                .into_iter()
                .flat_map(|(p0, p1)| {
                    if c1 <= p0 || c0 >= p1 {
                        vec![(p0, p1)]
                    } else {
                        [(p0, c0.max(p0)), (c1.min(p1), p1)]
                            .into_iter()
                            .filter(|(x, y)| y > x)
                            .collect()
                    }
                })
                .collect();
        }
        out.extend(pieces);
    }
    out
}

/// `spans` within `within`.
pub fn intersect(spans: &[Span], within: &[Span]) -> Vec<Span> {
    let mut out = Vec::new();
    for &(a, b) in spans {
        for &(c, d) in within {
            let (x, y) = (a.max(c), b.min(d));
            if y > x {
                out.push((x, y));
            }
        }
    }
    out
}

/// Energy, seconds covered and cost over some spans, from the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Stretch {
    pub seconds: f64,
    pub energy_j: f64,
    /// In the tariff's currency; `None` without a tariff or a wall clock.
    pub cost: Option<f64>,
}

impl Stretch {
    pub fn over(ledger: &Ledger, tariff: Option<&Tariff>, spans: &[Span]) -> Self {
        let mut s = Stretch {
            cost: tariff.map(|_| 0.0),
            ..Stretch::default()
        };
        for &(a, b) in spans {
            let Some((j, covered)) = ledger.energy_between(a, b) else {
                continue;
            };
            s.seconds += covered;
            s.energy_j += j;
            s.cost = match (s.cost, tariff) {
                (Some(c), Some(t)) => ledger.cost_between(t, a, b).map(|x| c + x),
                _ => None,
            };
        }
        s
    }

    pub fn watts(&self) -> Option<f64> {
        (self.seconds > 0.0).then(|| self.energy_j / self.seconds)
    }

    /// Money an hour at this stretch's average.
    pub fn cost_per_hour(&self) -> Option<f64> {
        let c = self.cost?;
        (self.seconds > 0.0).then(|| c / self.seconds * 3600.0)
    }
}

/// The session's at-rest figures.
#[derive(Debug, Clone, PartialEq)]
pub struct AtRest {
    /// Loaded, no request in progress.
    pub waiting: Stretch,
    /// Loaded, a reply in progress.
    pub answering: Stretch,
    /// The machine with the model unloaded and nothing running, when seen long enough.
    pub unloaded: Option<Stretch>,
    /// Sampler time the server will unload the model (Ollama's `expires_at`), if it said.
    pub unloads_at: Option<f64>,
}

impl AtRest {
    /// From the spans: `loaded` (the model in memory), `busy` (replies), `unloaded` (known
    /// not loaded, no reply). Open spans end where the ledger has settled.
    pub fn measure(
        ledger: &Ledger,
        tariff: Option<&Tariff>,
        loaded: &[Span],
        busy: &[Span],
        unloaded: &[Span],
    ) -> Self {
        let waiting = subtract(loaded, busy);
        let answering = intersect(busy, loaded);
        let idle_without = subtract(unloaded, busy);
        let unloaded = Some(Stretch::over(ledger, tariff, &idle_without))
            .filter(|s| s.seconds >= MIN_UNLOADED_S);
        Self {
            waiting: Stretch::over(ledger, tariff, &waiting),
            answering: Stretch::over(ledger, tariff, &answering),
            unloaded,
            unloads_at: None,
        }
    }

    /// What unloading would save a month, around the clock: the waiting draw less the
    /// machine's idle without the model, at the price paid while waiting. `None` until the
    /// idle without the model was measured.
    pub fn saving_per_month(&self) -> Option<f64> {
        let (w, u) = (self.waiting.watts()?, self.unloaded?.watts()?);
        let per_j = self.waiting.cost? / self.waiting.energy_j;
        let saved_w = (w - u).max(0.0);
        Some(saved_w * per_j * 3600.0 * super::pricing::HOURS_PER_MONTH).filter(|x| x.is_finite())
    }

    /// The footer's projection split: of the session's pace (`per_month`, over `total_cost`
    /// so far), the waiting part.
    pub fn waiting_share(&self, total_cost: f64) -> Option<f64> {
        let c = self.waiting.cost?;
        (total_cost > 0.0).then(|| (c / total_cost).clamp(0.0, 1.0))
    }
}

/// What F1 and the footer show, formatted by the tariff.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AtRestLine {
    pub waiting_w: Option<f64>,
    pub waiting_s: f64,
    /// The waiting stretch's cost so far: "$0.0012".
    pub waiting_cost: Option<String>,
    /// "$0.0074" an hour.
    pub per_hour: Option<String>,
    pub answering_s: f64,
    pub answering_cost: Option<String>,
    /// The machine's idle without the model, W, when measured.
    pub unloaded_w: Option<f64>,
    /// "$3.20" a month.
    pub saving_per_month: Option<String>,
    /// Local time the server unloads the model: "14:05:09".
    pub unloads_at: Option<String>,
}

impl AtRestLine {
    pub fn of(a: &AtRest, tariff: &Tariff, ledger: &Ledger) -> Self {
        Self {
            waiting_w: a.waiting.watts(),
            waiting_s: a.waiting.seconds,
            waiting_cost: a.waiting.cost.map(|c| tariff.format(c)),
            per_hour: a.waiting.cost_per_hour().map(|c| tariff.format(c)),
            answering_s: a.answering.seconds,
            answering_cost: a.answering.cost.map(|c| tariff.format(c)),
            unloaded_w: a.unloaded.and_then(|u| u.watts()),
            saving_per_month: a.saving_per_month().map(|c| tariff.format(c)),
            unloads_at: a.unloads_at.and_then(|t| ledger.wall_at(t)).map(|ts| {
                jiff::tz::TimeZone::system()
                    .to_datetime(ts)
                    .strftime("%H:%M:%S")
                    .to_string()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_subtract_and_intersect() {
        let loaded = [(10.0, 100.0)];
        let busy = [(20.0, 30.0), (50.0, 60.0), (95.0, 120.0)];
        assert_eq!(
            subtract(&loaded, &busy),
            [(10.0, 20.0), (30.0, 50.0), (60.0, 95.0)]
        );
        assert_eq!(
            intersect(&busy, &loaded),
            [(20.0, 30.0), (50.0, 60.0), (95.0, 100.0)]
        );
        assert_eq!(subtract(&loaded, &[]), loaded);
    }
}
