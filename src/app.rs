//! Dashboard state and the one function that changes it: `App::update(Event) -> Vec<Effect>`.
//!
//! No I/O, no clock reads, no terminal: time arrives inside events, and whatever must happen
//! outside (talk to the engine, write a snapshot, quit) is returned as an [`Effect`] for the
//! shell to carry out. Tests drive it with plain values.

use crate::engine::{Command, EngineEvent, ModelInfo, Phase, ReplyStats, StopReason};
use crate::event::Event;
use crate::keys::{Action, KeyMap};
use crate::sensors::{Covers, Method, Quantity, Reading, Sample, Source};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::VecDeque;

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
    /// Total draw: wall if measured, else battery, else the sum of the components.
    pub total: Option<PowerItem>,
    /// Components (GPU board, CPU package, DRAM, platform).
    pub parts: Vec<PowerItem>,
    pub cpu_temp: Option<TempItem>,
    pub gpu_temp: Option<TempItem>,
    pub fan_rpm: Option<f64>,
    pub cpu_util: Option<f64>,
    pub gpu_util: Option<f64>,
    pub vram: Option<(f64, f64)>,
}

fn value(r: &Reading) -> Option<f64> {
    r.value.filter(|v| v.is_finite())
}

/// Reduce one sample to the figures the gauges show. Pure; tested on hand-made readings.
pub fn summarize(readings: &[Reading]) -> GaugeSummary {
    let power = |covers: Covers| {
        readings
            .iter()
            .filter(move |r| r.quantity == Quantity::Power && r.covers == covers)
            .filter_map(move |r| {
                value(r).map(|w| PowerItem {
                    label: match covers {
                        Covers::GpuBoard => "GPU".into(),
                        Covers::CpuPackage => "CPU".into(),
                        Covers::Dram => "DRAM".into(),
                        Covers::Platform => "Platform".into(),
                        Covers::Wall => "Wall".into(),
                        Covers::Battery => "Battery".into(),
                        Covers::Other => r.label.clone(),
                    },
                    watts: w,
                    source: r.source,
                    estimated: r.method == Method::Estimated,
                })
            })
    };
    let gpu: Vec<PowerItem> = power(Covers::GpuBoard).collect();
    let platform: Vec<PowerItem> = power(Covers::Platform).collect();
    // psys already contains package and DRAM: never add them on top of it.
    let cpu: Vec<PowerItem> = if platform.is_empty() {
        power(Covers::CpuPackage)
            .chain(power(Covers::Dram))
            .collect()
    } else {
        platform.clone()
    };
    let mut parts = gpu;
    parts.extend(cpu);
    // The total follows the energy accounting's order (energy::select_total): psys is the
    // whole platform, so the watts shown agree with the Wh and cost in the footer.
    let components = if platform.is_empty() {
        &parts
    } else {
        &platform
    };
    let sum = |items: &[PowerItem], label: &str| -> Option<PowerItem> {
        if items.is_empty() {
            return None;
        }
        let estimated = items.iter().any(|p| p.estimated);
        let first = items[0].source;
        Some(PowerItem {
            label: label.into(),
            watts: items.iter().map(|p| p.watts).sum(),
            source: if items.iter().all(|p| p.source == first) {
                first
            } else {
                Source::System
            },
            estimated,
        })
    };
    let wall: Vec<PowerItem> = power(Covers::Wall).collect();
    let battery: Vec<PowerItem> = power(Covers::Battery).collect();
    let total = sum(&wall, "Wall")
        .or_else(|| sum(&battery, "Battery"))
        .or_else(|| sum(components, "Sum"));

    let hottest = |covers: Covers| {
        readings
            .iter()
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
            .iter()
            .filter(|r| r.quantity == q && r.covers == covers)
            .filter_map(value)
            .max_by(f64::total_cmp)
    };
    let vram = match (
        readings
            .iter()
            .filter(|r| r.quantity == Quantity::MemoryUsed && r.covers == Covers::GpuBoard)
            .filter_map(value)
            .reduce(|a, b| a + b),
        readings
            .iter()
            .filter(|r| r.quantity == Quantity::MemoryTotal && r.covers == Covers::GpuBoard)
            .filter_map(value)
            .reduce(|a, b| a + b),
    ) {
        (Some(u), Some(t)) => Some((u, t)),
        _ => None,
    };
    GaugeSummary {
        total,
        parts,
        cpu_temp: hottest(Covers::CpuPackage),
        gpu_temp: hottest(Covers::GpuBoard),
        fan_rpm: readings
            .iter()
            .filter(|r| r.quantity == Quantity::FanRpm)
            .filter_map(value)
            .max_by(f64::total_cmp),
        cpu_util: of(Quantity::Utilization, Covers::CpuPackage),
        gpu_util: of(Quantity::Utilization, Covers::GpuBoard),
        vram,
    }
}

/// One value per second over the last minutes, for sparklines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub points: VecDeque<f64>,
}

impl History {
    pub const CAPACITY: usize = 600;
    pub fn push(&mut self, v: f64) {
        if self.points.len() == Self::CAPACITY {
            self.points.pop_front();
        }
        self.points.push_back(v);
    }
}

/// Energy of this session as the footer shows it; the shell's energy accounting
/// (`session::SessionRecorder`: counters first, trapezoid only without a counter) fills it in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionEnergy {
    pub wh: f64,
    /// Some part of the total is an estimate (utilisation x TDP), not a measurement.
    pub estimated: bool,
}

/// The footer's money line, formatted by the pricing module.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CostLine {
    /// Session cost with its currency, e.g. "$0.0012".
    pub session: Option<String>,
    /// Region code of the tariff, e.g. "US", or "own".
    pub region: Option<String>,
    /// Session CO2, e.g. "0.41 g CO2e", when the grid intensity is known.
    pub co2: Option<String>,
    /// Joules per generated token of the last reply.
    pub j_per_token: Option<f64>,
    /// Energy over all sessions on this machine, Wh.
    pub lifetime_wh: Option<f64>,
    /// Money over all sessions in the tariff's currency, e.g. "$1.20".
    pub lifetime_cost: Option<String>,
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

const STATUS_SECONDS: f64 = 6.0;

pub struct App {
    pub keys: KeyMap,
    pub theme_names: Vec<String>,
    pub theme: usize,
    /// Shown until the model reports itself: the file name.
    pub model_label: String,
    pub model: Option<ModelInfo>,
    /// "CPU 4 threads", "GPU 33 layers".
    pub device: String,
    pub engine: EngineState,
    pub messages: Vec<Message>,
    /// A message typed while the model loads; sent when it is ready.
    pub pending: Option<String>,
    pub input: Input,
    pub history: Vec<String>,
    history_pos: Option<usize>,
    draft: String,
    /// Lines scrolled up from the bottom of the chat.
    pub scroll: usize,
    pub show_help: bool,
    pub gauges: GaugeSummary,
    pub power_hist: History,
    pub speed_hist: History,
    pub temp_hist: History,
    last_hist_second: Option<i64>,
    pub live: LiveRate,
    pub last_stats: Option<ReplyStats>,
    pub energy: SessionEnergy,
    pub cost: CostLine,
    pub status: Option<Status>,
    pub width: u16,
    pub height: u16,
    pub now: f64,
    /// Something visible changed since the last frame.
    pub dirty: bool,
    pub quitting: bool,
}

impl App {
    /// The live generation rate while a reply is being produced; `None` when idle.
    pub fn live_tok_s(&self) -> Option<f64> {
        self.live.tok_s().filter(|_| self.engine.busy())
    }

    pub fn new(keys: KeyMap, theme_names: Vec<String>, theme: usize, model_label: String) -> App {
        App {
            keys,
            theme: theme.min(theme_names.len().saturating_sub(1)),
            theme_names,
            model_label,
            model: None,
            device: String::new(),
            engine: EngineState::Loading(0.0),
            messages: Vec::new(),
            pending: None,
            input: Input::default(),
            history: Vec::new(),
            history_pos: None,
            draft: String::new(),
            scroll: 0,
            show_help: false,
            gauges: GaugeSummary::default(),
            power_hist: History::default(),
            speed_hist: History::default(),
            temp_hist: History::default(),
            last_hist_second: None,
            live: LiveRate::default(),
            last_stats: None,
            energy: SessionEnergy::default(),
            cost: CostLine::default(),
            status: None,
            width: 80,
            height: 24,
            now: 0.0,
            dirty: true,
            quitting: false,
        }
    }

    pub fn theme_name(&self) -> &str {
        self.theme_names
            .get(self.theme)
            .map_or("dark", String::as_str)
    }

    fn set_status(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            until: self.now + STATUS_SECONDS,
        });
    }

    pub fn update(&mut self, event: Event) -> Vec<Effect> {
        let mut fx = Vec::new();
        match event {
            Event::Key(k) => {
                self.dirty = true;
                self.on_key(k, &mut fx);
            }
            Event::Paste(text) => {
                self.dirty = true;
                // Terminals send CR for newlines inside pastes.
                let text = text.replace("\r\n", "\n").replace('\r', "\n");
                self.input.insert(&text);
            }
            Event::Resize { width, height } => {
                self.width = width;
                self.height = height;
                self.scroll = self.scroll.min(self.max_scroll());
                self.dirty = true;
            }
            Event::Tick { now } => {
                self.now = now;
                if self.status.as_ref().is_some_and(|s| s.until <= now) {
                    self.status = None;
                    self.dirty = true;
                }
            }
            Event::Engine { event, now } => {
                self.now = now;
                self.dirty = true;
                self.on_engine(event, now, &mut fx);
            }
            Event::Sample(s) => {
                self.dirty = true;
                self.on_sample(&s);
            }
            Event::Footer { energy, cost } => {
                if self.energy != energy || self.cost != cost {
                    self.energy = energy;
                    self.cost = cost;
                    self.dirty = true;
                }
            }
            Event::Status(text) => {
                self.dirty = true;
                self.set_status(text);
            }
            Event::Terminate(signal) => {
                // The terminal may already be gone (SSH drop): quit without asking.
                self.set_status(format!("{signal}: quitting"));
                self.quit(&mut fx);
            }
            Event::SnapshotWritten(r) => {
                self.dirty = true;
                match r {
                    Ok(path) => self.set_status(format!("snapshot: {path}")),
                    Err(e) => self.set_status(format!("snapshot failed: {e}")),
                }
            }
        }
        fx
    }

    fn on_key(&mut self, k: KeyEvent, fx: &mut Vec<Effect>) {
        if let Some(action) = self.keys.action(&k) {
            self.on_action(action, fx);
            return;
        }
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        let alt = k.modifiers.contains(KeyModifiers::ALT);
        match k.code {
            KeyCode::Char('w') if ctrl => self.input.delete_word(),
            KeyCode::Backspace if ctrl || alt => self.input.delete_word(),
            KeyCode::Char('a') if ctrl => self.input.home(),
            KeyCode::Char('e') if ctrl => self.input.end(),
            KeyCode::Char('u') if ctrl => self.input.set(String::new()),
            KeyCode::Char(c) if !ctrl && !alt => {
                let mut b = [0u8; 4];
                self.input.insert(c.encode_utf8(&mut b));
            }
            KeyCode::Tab => self.input.insert("    "),
            KeyCode::Backspace => self.input.backspace(),
            KeyCode::Delete => self.input.delete(),
            KeyCode::Left => self.input.left(),
            KeyCode::Right => self.input.right(),
            KeyCode::Home => self.input.home(),
            KeyCode::End => self.input.end(),
            // Up/Down move between the lines of a multi-line message first, then through history.
            KeyCode::Up if !self.input.up() => self.history_prev(),
            KeyCode::Down if !self.input.down() => self.history_next(),
            _ => {}
        }
    }

    fn history_prev(&mut self) {
        if self.history.is_empty() {
            return;
        }
        let pos = match self.history_pos {
            None => {
                self.draft = self.input.text.clone();
                self.history.len() - 1
            }
            Some(p) => p.saturating_sub(1),
        };
        self.history_pos = Some(pos);
        self.input.set(self.history[pos].clone());
    }

    fn history_next(&mut self) {
        let Some(p) = self.history_pos else { return };
        if p + 1 < self.history.len() {
            self.history_pos = Some(p + 1);
            self.input.set(self.history[p + 1].clone());
        } else {
            self.history_pos = None;
            self.input.set(std::mem::take(&mut self.draft));
        }
    }

    fn on_action(&mut self, action: Action, fx: &mut Vec<Effect>) {
        match action {
            Action::Send => self.send(fx),
            Action::Newline => self.input.insert("\n"),
            Action::Cancel => {
                if self.show_help {
                    self.show_help = false;
                } else if self.engine.busy() {
                    fx.push(Effect::Engine(Command::Cancel));
                    self.set_status("cancelling");
                }
            }
            Action::Interrupt => {
                if self.engine.busy() {
                    fx.push(Effect::Engine(Command::Cancel));
                    self.set_status("cancelling (Ctrl-C again to quit)");
                } else {
                    self.quit(fx);
                }
            }
            Action::Quit => self.quit(fx),
            Action::Snapshot => {
                fx.push(Effect::Snapshot);
                self.set_status("writing snapshot");
            }
            Action::NewChat => {
                if self.engine.busy() {
                    fx.push(Effect::Engine(Command::Cancel));
                }
                fx.push(Effect::Engine(Command::Reset));
                self.messages.clear();
                self.pending = None;
                self.scroll = 0;
                self.live = LiveRate::default();
                self.set_status("new conversation");
            }
            Action::CycleTheme => {
                if !self.theme_names.is_empty() {
                    self.theme = (self.theme + 1) % self.theme_names.len();
                }
                self.set_status(format!("theme: {}", self.theme_name()));
            }
            Action::ScrollUp => {
                self.scroll = (self.scroll + self.page()).min(self.max_scroll());
            }
            Action::ScrollDown => self.scroll = self.scroll.saturating_sub(self.page()),
            Action::Help => self.show_help = !self.show_help,
        }
    }

    fn quit(&mut self, fx: &mut Vec<Effect>) {
        self.quitting = true;
        fx.push(Effect::Quit);
    }

    /// One page: the visible scrollback less one line of overlap.
    fn page(&self) -> usize {
        let (_, h) = crate::ui::messages_size(self);
        usize::from(h.saturating_sub(1)).max(1)
    }

    fn max_scroll(&self) -> usize {
        let (w, h) = crate::ui::messages_size(self);
        crate::ui::chat::rows(self, w)
            .len()
            .saturating_sub(usize::from(h))
    }

    fn send(&mut self, fx: &mut Vec<Effect>) {
        let text = self.input.text.trim().to_string();
        if text.is_empty() {
            return;
        }
        match &self.engine {
            EngineState::Failed(e) => {
                self.set_status(format!("cannot send: the model failed to load ({e})"));
                return;
            }
            s if s.busy() => {
                self.set_status("still replying: Esc cancels");
                return;
            }
            EngineState::Loading(_) if self.pending.is_some() => {
                self.set_status("one message is already waiting for the model");
                return;
            }
            _ => {}
        }
        self.history.push(text.clone());
        self.history_pos = None;
        self.draft.clear();
        self.input.set(String::new());
        self.scroll = 0;
        self.messages.push(Message {
            role: Role::User,
            text: text.clone(),
            stats: None,
        });
        if matches!(self.engine, EngineState::Loading(_)) {
            self.pending = Some(text);
            self.set_status("sent when the model has loaded");
        } else {
            self.start_reply(text, fx);
        }
    }

    fn start_reply(&mut self, text: String, fx: &mut Vec<Effect>) {
        self.messages.push(Message {
            role: Role::Assistant,
            text: String::new(),
            stats: None,
        });
        self.live = LiveRate::default();
        self.engine = EngineState::Prefill;
        fx.push(Effect::Engine(Command::Send(text)));
    }

    fn notice(&mut self, text: String) {
        self.messages.push(Message {
            role: Role::Notice,
            text,
            stats: None,
        });
    }

    fn on_engine(&mut self, event: EngineEvent, now: f64, fx: &mut Vec<Effect>) {
        match event {
            EngineEvent::LoadProgress(p) => self.engine = EngineState::Loading(p.clamp(0.0, 1.0)),
            EngineEvent::Loaded(info) => {
                self.set_status(format!("model loaded in {:.0} ms", info.load_ms));
                self.model = Some(info);
                self.engine = EngineState::Idle;
                if let Some(text) = self.pending.take() {
                    self.start_reply(text, fx);
                }
            }
            EngineEvent::Phase(p) => {
                self.engine = match (p, &self.engine) {
                    (Phase::Loading, _) => EngineState::Loading(0.0),
                    (Phase::Idle, EngineState::Cancelled) => EngineState::Cancelled,
                    (Phase::Idle, EngineState::Loading(_)) if self.model.is_none() => {
                        self.engine.clone()
                    }
                    (Phase::Idle, _) => EngineState::Idle,
                    (Phase::Prefill, _) => EngineState::Prefill,
                    (Phase::Generating, _) => EngineState::Generating,
                };
            }
            EngineEvent::ContextTrimmed { dropped_messages } => self.notice(format!(
                "context full: the {dropped_messages} oldest messages were dropped from the model's memory"
            )),
            EngineEvent::Token(piece) => {
                if self.messages.last().map(|m| m.role) != Some(Role::Assistant) {
                    self.messages.push(Message {
                        role: Role::Assistant,
                        text: String::new(),
                        stats: None,
                    });
                }
                if let Some(m) = self.messages.last_mut() {
                    m.text.push_str(&piece);
                }
                if !matches!(self.engine, EngineState::Generating) {
                    self.engine = EngineState::Generating;
                }
                self.live.tokens += 1;
                self.live.first_at.get_or_insert(now);
                self.live.last_at = Some(now);
            }
            EngineEvent::ReplyDone(stats) => {
                if let Some(m) = self
                    .messages
                    .iter_mut()
                    .rev()
                    .find(|m| m.role == Role::Assistant)
                {
                    m.stats = Some(stats.clone());
                }
                self.engine = if stats.stop == StopReason::Cancelled {
                    self.set_status("reply cancelled");
                    EngineState::Cancelled
                } else {
                    EngineState::Idle
                };
                self.last_stats = Some(stats);
            }
            EngineEvent::Failed(msg) => {
                if self.model.is_none() {
                    self.engine = EngineState::Failed(msg.clone());
                    self.pending = None;
                } else if self.engine.busy() {
                    self.engine = EngineState::Idle;
                }
                self.notice(format!("error: {msg}"));
            }
        }
    }

    fn on_sample(&mut self, s: &Sample) {
        self.gauges = summarize(&s.readings);
        let total = self.gauges.total.as_ref();
        let second = s.t.floor() as i64;
        if self.last_hist_second != Some(second) {
            self.last_hist_second = Some(second);
            self.power_hist.push(total.map_or(0.0, |p| p.watts));
            self.speed_hist.push(self.live_tok_s().unwrap_or(0.0));
            let hottest = [&self.gauges.cpu_temp, &self.gauges.gpu_temp]
                .into_iter()
                .flatten()
                .map(|t| t.celsius)
                .max_by(f64::total_cmp);
            self.temp_hist.push(hottest.unwrap_or(0.0));
        }
    }
}
