//! Dashboard state: the conversation, the input line, the gauges and the status, as plain data.
//! `app.rs` changes it (`App::update`), `ui/` draws it, `layout.rs` says where each part goes.

pub use super::history::{Histories, History};
use crate::accounting::energy::TotalBasis;
use crate::accounting::ledger::PowerView;
use crate::accounting::session::{CostLine, ReplyFigures, SessionEnergy};
use crate::config::keys::KeyMap;
use crate::engine::{BackendStatus, Command, ModelInfo, ReplyStats};
use crate::sensors::{Covers, Method, Quantity, Reading, Source};

/// What the shell must do after an update.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Engine(Command),
    /// Write the run card (and whatever else the snapshot module captures).
    Snapshot,
    Quit,
}

/// The engine as the header shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineState {
    Loading(f32),
    Idle,
    Prefill,
    Generating,
    /// Idle, and the last reply was cancelled.
    Cancelled,
    /// The model could not be loaded; nothing can be sent.
    Failed(String),
}

impl EngineState {
    pub fn label(&self) -> &'static str {
        match self {
            EngineState::Loading(_) => "loading",
            EngineState::Idle => "idle",
            EngineState::Prefill => "prefill",
            EngineState::Generating => "generating",
            EngineState::Cancelled => "cancelled",
            EngineState::Failed(_) => "failed",
        }
    }

    pub fn busy(&self) -> bool {
        matches!(self, EngineState::Prefill | EngineState::Generating)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
    /// A line from llmtop itself (errors, context trimmed).
    Notice,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub text: String,
    pub stats: Option<ReplyStats>,
    /// The reply's energy and money, once the ledger has settled past its end.
    pub figures: Option<ReplyFigures>,
    /// Which of the session's replies this is (0: the first), to match its figures.
    pub reply_seq: Option<usize>,
    /// Other programs contended the CPUs while this reply was generated (the most seen).
    pub contention: Option<crate::accounting::contention::Contention>,
}

impl Message {
    pub fn new(role: Role, text: impl Into<String>) -> Self {
        Self {
            role,
            text: text.into(),
            stats: None,
            figures: None,
            reply_seq: None,
            contention: None,
        }
    }
}

/// The input line: text with a cursor at a char boundary (byte index).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Input {
    pub text: String,
    pub cursor: usize,
}

impl Input {
    pub fn insert(&mut self, s: &str) {
        self.text.insert_str(self.cursor, s);
        self.cursor += s.len();
    }
    fn prev_boundary(&self) -> usize {
        self.text[..self.cursor]
            .char_indices()
            .next_back()
            .map_or(0, |(i, _)| i)
    }
    fn next_boundary(&self) -> usize {
        self.text[self.cursor..]
            .chars()
            .next()
            .map_or(self.cursor, |c| self.cursor + c.len_utf8())
    }
    pub fn left(&mut self) {
        self.cursor = self.prev_boundary();
    }
    pub fn right(&mut self) {
        self.cursor = self.next_boundary();
    }
    pub fn backspace(&mut self) {
        let p = self.prev_boundary();
        self.text.replace_range(p..self.cursor, "");
        self.cursor = p;
    }
    pub fn delete(&mut self) {
        let n = self.next_boundary();
        self.text.replace_range(self.cursor..n, "");
    }
    fn line_start(&self) -> usize {
        self.text[..self.cursor].rfind('\n').map_or(0, |i| i + 1)
    }
    fn line_end(&self) -> usize {
        self.text[self.cursor..]
            .find('\n')
            .map_or(self.text.len(), |i| self.cursor + i)
    }
    pub fn home(&mut self) {
        self.cursor = self.line_start();
    }
    pub fn end(&mut self) {
        self.cursor = self.line_end();
    }
    /// Delete the word before the cursor and the spaces after it (Ctrl-W).
    pub fn delete_word(&mut self) {
        let before = &self.text[..self.cursor];
        let trimmed = before.trim_end_matches([' ', '\t']);
        let start = trimmed
            .char_indices()
            .rev()
            .find(|(_, c)| c.is_whitespace())
            .map_or(0, |(i, c)| i + c.len_utf8());
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }
    /// Move to the same column of the previous line; false when already on the first line.
    pub fn up(&mut self) -> bool {
        let start = self.line_start();
        if start == 0 {
            return false;
        }
        let col = self.text[start..self.cursor].chars().count();
        let prev_start = self.text[..start - 1].rfind('\n').map_or(0, |i| i + 1);
        self.cursor = advance(&self.text, prev_start, start - 1, col);
        true
    }
    /// Move to the same column of the next line; false when already on the last line.
    pub fn down(&mut self) -> bool {
        let end = self.line_end();
        if end == self.text.len() {
            return false;
        }
        let col = self.text[self.line_start()..self.cursor].chars().count();
        let next_start = end + 1;
        let next_end = self.text[next_start..]
            .find('\n')
            .map_or(self.text.len(), |i| next_start + i);
        self.cursor = advance(&self.text, next_start, next_end, col);
        true
    }
    pub fn set(&mut self, text: String) {
        self.cursor = text.len();
        self.text = text;
    }
}

/// Byte index `col` chars after `from`, not past `limit`.
fn advance(text: &str, from: usize, limit: usize, col: usize) -> usize {
    text[from..limit]
        .char_indices()
        .nth(col)
        .map_or(limit, |(i, _)| from + i)
}

/// A power figure with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerItem {
    pub label: String,
    pub watts: f64,
    pub source: Source,
    pub estimated: bool,
}

/// A temperature against its limit.
#[derive(Debug, Clone, PartialEq)]
pub struct TempItem {
    pub label: String,
    pub celsius: f64,
    pub limit: Option<f64>,
}

/// What the gauges pane shows, boiled down from the latest sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GaugeSummary {
    /// Total draw on the ledger's basis: wall, battery, platform or the sum of components.
    pub total: Option<PowerItem>,
    /// Components (GPU board, CPU package, DRAM, platform).
    pub parts: Vec<PowerItem>,
    pub cpu_temp: Option<TempItem>,
    pub gpu_temp: Option<TempItem>,
    pub fan_rpm: Option<f64>,
    pub cpu_util: Option<f64>,
    pub gpu_util: Option<f64>,
    pub vram: Option<(f64, f64)>,
    /// Every GPU board's energy channel, for F1: how it is read and what it says now.
    pub boards: Vec<BoardLine>,
    /// Every energy channel of the total, for F1: how it is read and the band its method
    /// allows ([`accuracy_lines`]).
    pub accuracy: Vec<String>,
}

/// A GPU board in F1: how its energy and watts are read (per board, as NVML boards differ).
#[derive(Debug, Clone, PartialEq)]
pub struct BoardLine {
    /// Energy channel id, e.g. "nvml:1:energy" (a reply's [`BoardShare`] names the same).
    ///
    /// [`BoardShare`]: crate::accounting::session::BoardShare
    pub id: String,
    /// "GPU1", as the gauge's part.
    pub label: String,
    pub device: String,
    /// "counter (nvmlDeviceGetTotalEnergyConsumption)", "integrated ...".
    pub energy: String,
    /// "NVML_FI_DEV_POWER_INSTANT (instant)", "nvmlDeviceGetPowerUsage (1 s average)".
    pub watts: Option<String>,
    /// No reading now, and why where the device said: "GPU lost (NVML_ERROR_GPU_IS_LOST)".
    pub silent: Option<String>,
}

fn value(r: &Reading) -> Option<f64> {
    r.value.filter(|v| v.is_finite())
}

/// The power gauges from the ledger's view: the total on its basis, and the components
/// (GPU boards, CPU packages, DRAM, platform) with their own watts.
pub fn power_items(view: &PowerView) -> (Option<PowerItem>, Vec<PowerItem>) {
    let total = view.total.as_ref().map(|t| PowerItem {
        label: match t.basis {
            TotalBasis::Wall => "Wall",
            TotalBasis::Battery => "Battery",
            TotalBasis::Platform => "Platform",
            TotalBasis::Components => "Sum",
        }
        .into(),
        watts: t.watts,
        source: t.source.unwrap_or(Source::System),
        estimated: t.estimated,
    });
    // psys already contains the packages and DRAM: list it instead of them.
    let platform = view.channels.iter().any(|c| c.covers == Covers::Platform);
    let gpu_labels = gpu_labels(view);
    let mut parts: Vec<(usize, PowerItem)> = view
        .channels
        .iter()
        .filter(|c| !(platform && matches!(c.covers, Covers::CpuPackage | Covers::Dram)))
        .filter_map(|c| {
            let (order, label) = match c.covers {
                Covers::GpuBoard => (0, gpu_labels.get(&c.id)?.as_str()),
                Covers::CpuPackage => (1, "CPU"),
                Covers::Dram => (2, "DRAM"),
                Covers::Platform => (3, "Platform"),
                _ => return None,
            };
            let item = PowerItem {
                label: label.into(),
                watts: c.watts?,
                source: c.source,
                estimated: c.method == Method::Estimated,
            };
            Some((order, item))
        })
        .collect();
    parts.sort_by_key(|(order, _)| *order);
    let parts = parts.into_iter().map(|(_, p)| p).collect();
    (total, parts)
}

/// Each GPU board's gauge label: "GPU" for one board, "GPU0", "GPU1", ... (NVML's index) for
/// several, each on its own row.
fn gpu_labels(view: &PowerView) -> std::collections::BTreeMap<String, String> {
    let gpus: Vec<&str> = view
        .channels
        .iter()
        .filter(|c| c.covers == Covers::GpuBoard)
        .map(|c| c.id.as_str())
        .collect();
    gpus.iter()
        .enumerate()
        .map(|(k, id)| {
            let label = if gpus.len() == 1 {
                "GPU".to_string()
            } else {
                let index = id
                    .strip_prefix("nvml:")
                    .and_then(|r| r.split(':').next())
                    .map_or_else(|| k.to_string(), str::to_string);
                format!("GPU{index}")
            };
            (id.to_string(), label)
        })
        .collect()
}

/// Every GPU board's line for F1, in the order of NVML's index.
pub fn board_lines(view: &PowerView) -> Vec<BoardLine> {
    let labels = gpu_labels(view);
    let mut out: Vec<BoardLine> = view
        .channels
        .iter()
        .filter(|c| c.covers == Covers::GpuBoard)
        .map(|c| BoardLine {
            id: c.id.clone(),
            label: labels.get(&c.id).cloned().unwrap_or_else(|| "GPU".into()),
            device: c.device.clone(),
            energy: c.energy_method(),
            watts: c.watts_via.clone(),
            silent: c
                .watts
                .is_none()
                .then(|| c.note.clone().unwrap_or_else(|| "no reading".into())),
        })
        .collect();
    out.sort_by_key(|b| {
        let n: Option<u32> = b.label.strip_prefix("GPU").and_then(|n| n.parse().ok());
        (n, b.id.clone())
    });
    out
}

/// For F1, one line per energy channel of the total: "package-0 (rapl): counter (energy_uj)
/// ±5 %"; a band wider than ±25 % in words ("could be −67 %…+163 %"). The band is the
/// method's own; a short window of a sampled channel adds to it (the reply line says how much).
pub fn accuracy_lines(view: &PowerView) -> Vec<String> {
    view.channels
        .iter()
        .filter(|c| c.in_total)
        .map(|c| {
            let band = c.method_band.gain;
            let how = match band.words() {
                Some(w) => w,
                None => band.text(),
            };
            let name = format!("{} {}", c.device, c.label);
            format!(
                "{} ({}): {} {how}",
                crate::util::sanitize::terminal(name.trim()),
                c.source.name(),
                crate::util::sanitize::terminal(&c.energy_method()),
            )
        })
        .collect()
}

/// Temperatures, fans, utilisation and VRAM from the latest reading of every channel. Pure;
/// tested on hand-made readings. (Power comes from the ledger: [`power_items`].)
pub fn summarize<'a>(readings: impl Iterator<Item = &'a Reading> + Clone) -> GaugeSummary {
    let hottest = |covers: Covers| {
        readings
            .clone()
            .filter(|r| r.quantity == Quantity::Temperature && r.covers == covers)
            .filter_map(|r| {
                value(r).map(|c| TempItem {
                    label: r.label.clone(),
                    celsius: c,
                    limit: r.limit,
                })
            })
            .max_by(|a, b| a.celsius.total_cmp(&b.celsius))
    };
    let of = |q: Quantity, covers: Covers| {
        readings
            .clone()
            .filter(|r| r.quantity == q && r.covers == covers)
            .filter_map(value)
            .max_by(f64::total_cmp)
    };
    let vram = match (
        readings
            .clone()
            .filter(|r| r.quantity == Quantity::MemoryUsed && r.covers == Covers::GpuBoard)
            .filter_map(value)
            .reduce(|a, b| a + b),
        readings
            .clone()
            .filter(|r| r.quantity == Quantity::MemoryTotal && r.covers == Covers::GpuBoard)
            .filter_map(value)
            .reduce(|a, b| a + b),
    ) {
        (Some(u), Some(t)) => Some((u, t)),
        _ => None,
    };
    GaugeSummary {
        total: None,
        parts: Vec::new(),
        cpu_temp: hottest(Covers::CpuPackage),
        gpu_temp: hottest(Covers::GpuBoard),
        fan_rpm: readings
            .clone()
            .filter(|r| r.quantity == Quantity::FanRpm)
            .filter_map(value)
            .max_by(f64::total_cmp),
        cpu_util: of(Quantity::Utilization, Covers::CpuPackage),
        gpu_util: of(Quantity::Utilization, Covers::GpuBoard),
        vram,
        boards: Vec::new(),
        accuracy: Vec::new(),
    }
}

/// Live generation rate of the reply being streamed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveRate {
    pub tokens: u32,
    pub first_at: Option<f64>,
    pub last_at: Option<f64>,
}

impl LiveRate {
    /// Tokens per second between the first and the latest token.
    pub fn tok_s(&self) -> Option<f64> {
        match (self.first_at, self.last_at) {
            (Some(a), Some(b)) if b > a && self.tokens >= 2 => {
                Some(f64::from(self.tokens - 1) / (b - a))
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub text: String,
    pub until: f64,
}

pub(super) const STATUS_SECONDS: f64 = 6.0;

pub struct App {
    pub keys: KeyMap,
    pub theme_names: Vec<String>,
    pub theme: usize,
    /// Shown until the model reports itself: the file name.
    pub model_label: String,
    pub model: Option<ModelInfo>,
    /// The server's report when the engine is a client of one (`--attach`): its models and
    /// what it has loaded where.
    pub backend: Option<BackendStatus>,
    /// The model picker, open: the highlighted entry of `backend.models`.
    pub picker: Option<usize>,
    /// Device text shown until the model loads; after that the header shows the engine's
    /// report (threads and GPU layers in effect) instead.
    pub device: String,
    pub engine: EngineState,
    pub messages: Vec<Message>,
    /// A message typed while the model loads; sent when it is ready.
    pub pending: Option<String>,
    pub input: Input,
    pub history: Vec<String>,
    pub(super) history_pos: Option<usize>,
    pub(super) draft: String,
    /// Lines scrolled up from the bottom of the chat.
    pub scroll: usize,
    pub show_help: bool,
    pub gauges: GaugeSummary,
    /// The latest reading of every channel: a plug's sample carries only the plug.
    pub(super) latest: std::collections::BTreeMap<String, Reading>,
    /// What the charts draw: a second-by-second history of power, temperatures and speed.
    pub hist: Histories,
    pub live: LiveRate,
    pub last_stats: Option<ReplyStats>,
    /// Replies finished this session (`ReplyDone` events), the next reply's sequence number.
    pub(super) replies_done: usize,
    pub energy: SessionEnergy,
    pub cost: CostLine,
    /// Throttling in progress (the header's mark), with its evidence.
    pub throttle: Option<crate::accounting::throttle::Episode>,
    /// CPU contention in progress (the header's mark).
    pub contention: Option<crate::accounting::contention::Contention>,
    /// The memory bandwidth of this machine: the decode roofline's ceiling.
    pub memory: crate::sensors::bandwidth::Ceilings,
    /// Tokens in the context when the reply being generated started to generate.
    pub depth: Option<u32>,
    /// Attached to a server on this machine: its attributed share of the machine's energy.
    pub server_share: Option<crate::accounting::share::ServerShare>,
    pub status: Option<Status>,
    /// What start-up found wrong (sensor sources not found or unreadable, a tally moved
    /// aside), one line each, listed in the F1 help for as long as the dashboard runs.
    pub startup_notes: Vec<String>,
    pub width: u16,
    pub height: u16,
    pub now: f64,
    /// Something visible changed since the last frame.
    pub dirty: bool,
    pub quitting: bool,
    /// `llmtop --proxy`: the proxy's requests, shown instead of the chat.
    pub requests: Option<RequestTable>,
}

/// Rows the request table keeps (newest first).
pub const MAX_REQUEST_ROWS: usize = 200;

/// `llmtop --proxy`: the requests through the proxy, newest first, like top for requests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestTable {
    /// Where clients connect, and where requests go.
    pub listen: String,
    pub upstream: String,
    /// Settled records, newest first, at most [`MAX_REQUEST_ROWS`].
    pub rows: std::collections::VecDeque<crate::proxy::record::RequestRecord>,
    /// Requests in flight or waiting for the ledger to settle their energy.
    pub pending: usize,
    /// Records since start.
    pub total: u64,
    /// Why the upstream does not answer, while it does not (the proxy's health probe).
    pub upstream_down: Option<String>,
}
