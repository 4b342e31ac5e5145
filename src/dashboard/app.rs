//! The dashboard's update: events in, state changed, effects out. No I/O, no clock reads.

use super::history::{Record, part_keys};
use super::state::*;
use crate::accounting::session::{CostLine, SessionEnergy};
use crate::config::keys::{Action, KeyMap};
use crate::dashboard::event::Event;
use crate::engine::{Command, EngineEvent, Phase, StopReason};
use crate::sensors::Sample;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
impl App {
    /// The live generation rate while a reply is being produced; `None` when idle.
    pub fn live_tok_s(&self) -> Option<f64> {
        self.live.tok_s().filter(|_| self.engine.busy())
    }

    /// The memory ceiling the loaded model is judged against.
    pub fn ceiling(&self) -> Option<crate::accounting::roofline::Ceiling> {
        use crate::accounting::roofline::{ceiling_for, placement};
        let m = self.model.as_ref()?;
        ceiling_for(&self.memory, placement(m, self.backend.as_ref()))
    }

    /// The roofline of the reply being generated: the live rate at the depth it has reached.
    pub fn live_roofline(&self) -> Option<crate::accounting::roofline::Roofline> {
        let traffic = self.model.as_ref()?.traffic.as_ref()?;
        // An engine that does not say (a server) left the context where its last reply ended.
        let start = self.depth.or_else(|| {
            self.last_stats
                .as_ref()
                .map(|s| s.conversation_tokens + s.generated_tokens)
        })?;
        let depth = f64::from(start) + f64::from(self.live.tokens) / 2.0;
        crate::accounting::roofline::figure(
            traffic,
            depth,
            self.live_tok_s()?,
            self.ceiling().as_ref(),
        )
    }

    /// A finished reply's roofline, as every surface computes it.
    pub fn reply_roofline(
        &self,
        stats: &crate::engine::ReplyStats,
    ) -> Option<crate::accounting::roofline::Roofline> {
        let traffic = self.model.as_ref()?.traffic.as_ref()?;
        crate::accounting::roofline::for_reply(traffic, stats, self.ceiling().as_ref())
    }

    pub fn new(keys: KeyMap, theme_names: Vec<String>, theme: usize, model_label: String) -> App {
        App {
            keys,
            theme: theme.min(theme_names.len().saturating_sub(1)),
            theme_names,
            model_label,
            model: None,
            backend: None,
            picker: None,
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
            latest: std::collections::BTreeMap::new(),
            hist: Histories::default(),
            live: LiveRate::default(),
            last_stats: None,
            replies_done: 0,
            energy: SessionEnergy::default(),
            cost: CostLine::default(),
            throttle: None,
            contention: None,
            memory: Default::default(),
            depth: None,
            server_share: None,
            status: None,
            startup_notes: Vec::new(),
            width: 80,
            height: 24,
            now: 0.0,
            dirty: true,
            quitting: false,
            requests: None,
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
            Event::Power(view) => {
                let (total, parts) = power_items(&view);
                let boards = crate::dashboard::state::board_lines(&view);
                let accuracy = crate::dashboard::state::accuracy_lines(&view);
                if self.gauges.total != total
                    || self.gauges.parts != parts
                    || self.gauges.boards != boards
                    || self.gauges.accuracy != accuracy
                {
                    self.gauges.total = total;
                    self.gauges.parts = parts;
                    self.gauges.boards = boards;
                    self.gauges.accuracy = accuracy;
                    self.dirty = true;
                }
            }
            Event::Footer { energy, cost } => {
                if self.energy != energy || self.cost != cost {
                    if energy.last_change != self.energy.last_change
                        && let Some(c) = &energy.last_change
                    {
                        self.set_status(basis_change_text(c));
                    }
                    self.energy = energy;
                    self.cost = cost;
                    self.dirty = true;
                }
            }
            Event::ServerShare(share) => {
                self.server_share = Some(share);
                self.dirty = true;
            }
            Event::Throttle(episode) => {
                // Repaint when the mark comes or goes, not for every new low of the rate.
                if episode.is_some() != self.throttle.is_some() {
                    self.dirty = true;
                }
                self.throttle = episode;
            }
            Event::Contention(c) => {
                if c.is_some() != self.contention.is_some() || c.is_some() {
                    self.dirty = true;
                }
                // The reply being generated keeps the worst it saw.
                if let Some(c) = &c
                    && self.engine.busy()
                    && let Some(m) = self.messages.last_mut()
                    && m.role == Role::Assistant
                {
                    let worse = m
                        .contention
                        .as_ref()
                        .is_none_or(|old| c.others_max >= old.others_max);
                    if worse {
                        m.contention = Some(c.clone());
                    }
                }
                self.contention = c;
            }
            Event::ReplyFigures(f) => {
                // A reply of a conversation cleared since (Ctrl-N) has no message left.
                if let Some(m) = self
                    .messages
                    .iter_mut()
                    .rev()
                    .find(|m| m.reply_seq == Some(f.seq))
                {
                    m.figures = Some(f);
                    self.dirty = true;
                }
            }
            Event::Status(text) => {
                self.dirty = true;
                self.set_status(text);
            }
            Event::Requests { records, pending } => {
                if let Some(t) = self.requests.as_mut()
                    && (!records.is_empty() || t.pending != pending)
                {
                    t.total += records.len() as u64;
                    for r in records {
                        t.rows.push_front(r);
                    }
                    t.rows.truncate(super::state::MAX_REQUEST_ROWS);
                    t.pending = pending;
                    self.dirty = true;
                }
            }
            Event::UpstreamHealth(down) => {
                if let Some(t) = self.requests.as_mut() {
                    t.upstream_down = down;
                    self.dirty = true;
                }
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
        if self.picker.is_some() && self.on_picker_key(&k, fx) {
            return;
        }
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
            Action::PickModel => self.open_picker(),
        }
    }

    /// Open the model picker on the current model, or say why there is none.
    fn open_picker(&mut self) {
        if self.picker.is_some() {
            self.picker = None;
            return;
        }
        match &self.backend {
            Some(b) if !b.models.is_empty() => {
                self.show_help = false;
                self.picker = Some(b.models.iter().position(|m| *m == b.current).unwrap_or(0));
            }
            Some(_) => self.set_status("the server lists no models to pick from"),
            None => self.set_status(
                "one model runs here: start llmtop with --attach URL to pick from a server's models",
            ),
        }
    }

    /// Keys while the picker is open: Up/Down move, Enter picks, Esc closes. Others (quit)
    /// fall through: `false`.
    fn on_picker_key(&mut self, k: &KeyEvent, fx: &mut Vec<Effect>) -> bool {
        let (Some(sel), Some(b)) = (self.picker, &self.backend) else {
            return false;
        };
        let n = b.models.len();
        match k.code {
            KeyCode::Up => self.picker = Some(sel.checked_sub(1).unwrap_or(n.saturating_sub(1))),
            KeyCode::Down => self.picker = Some(if sel + 1 >= n { 0 } else { sel + 1 }),
            KeyCode::Esc => self.picker = None,
            KeyCode::Enter => {
                self.picker = None;
                if let Some(name) = b.models.get(sel).cloned() {
                    if self.engine.busy() {
                        self.set_status("still replying: pick the model when the reply is done");
                    } else if name != b.current {
                        self.set_status(format!("next message goes to {name}"));
                        fx.push(Effect::Engine(Command::UseModel(name)));
                    }
                }
            }
            _ => return false,
        }
        true
    }

    fn quit(&mut self, fx: &mut Vec<Effect>) {
        self.quitting = true;
        fx.push(Effect::Quit);
    }

    /// One page: the visible scrollback less one line of overlap.
    fn page(&self) -> usize {
        let (_, h) = super::layout::messages_size(self);
        usize::from(h.saturating_sub(1)).max(1)
    }

    fn max_scroll(&self) -> usize {
        let (w, h) = super::layout::messages_size(self);
        super::layout::rows(self, w)
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
        self.messages.push(Message::new(Role::User, text.clone()));
        if matches!(self.engine, EngineState::Loading(_)) {
            self.pending = Some(text);
            self.set_status("sent when the model has loaded");
        } else {
            self.start_reply(text, fx);
        }
    }

    fn start_reply(&mut self, text: String, fx: &mut Vec<Effect>) {
        self.messages.push(Message::new(Role::Assistant, ""));
        self.live = LiveRate::default();
        self.depth = None;
        self.engine = EngineState::Prefill;
        fx.push(Effect::Engine(Command::Send(text)));
    }

    fn notice(&mut self, text: String) {
        self.messages.push(Message::new(Role::Notice, text));
    }

    fn on_engine(&mut self, event: EngineEvent, now: f64, fx: &mut Vec<Effect>) {
        match event {
            EngineEvent::LoadProgress(p) => self.engine = EngineState::Loading(p.clamp(0.0, 1.0)),
            EngineEvent::Loaded(info) => {
                match &info.backend {
                    Some(b) => self.set_status(format!("attached to {b}: {}", info.name)),
                    None => self.set_status(format!("model loaded in {:.0} ms", info.load_ms)),
                }
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
            EngineEvent::ContextDepth(tokens) => self.depth = Some(tokens),
            EngineEvent::ContextTrimmed { dropped_messages } => self.notice(format!(
                "context full: the {dropped_messages} oldest messages were dropped from the model's memory"
            )),
            EngineEvent::Tokens { text: piece, count } => {
                if self.messages.last().map(|m| m.role) != Some(Role::Assistant) {
                    self.messages.push(Message::new(Role::Assistant, ""));
                }
                if let Some(m) = self.messages.last_mut() {
                    m.text.push_str(&piece);
                }
                if !matches!(self.engine, EngineState::Generating) {
                    self.engine = EngineState::Generating;
                }
                self.live.tokens += count;
                self.live.first_at.get_or_insert(now);
                self.live.last_at = Some(now);
            }
            EngineEvent::ReplyDone(stats) => {
                // Numbered as the session's accounting numbers them, so the reply's energy
                // and money find their message when the ledger settles them.
                let seq = self.replies_done;
                self.replies_done += 1;
                if let Some(m) = self
                    .messages
                    .iter_mut()
                    .rev()
                    .find(|m| m.role == Role::Assistant)
                {
                    m.stats = Some(stats.clone());
                    m.reply_seq = Some(seq);
                }
                self.engine = if stats.stop == StopReason::Cancelled {
                    self.set_status("reply cancelled");
                    EngineState::Cancelled
                } else {
                    EngineState::Idle
                };
                self.last_stats = Some(stats);
            }
            EngineEvent::Backend(status) => {
                if let Some(sel) = self.picker {
                    let n = status.models.len();
                    self.picker = (n > 0).then(|| sel.min(n - 1));
                }
                self.backend = Some(*status);
            }
            EngineEvent::Failed(msg) => {
                // The first cause is the one to show: the channel closing after a failed
                // load says nothing new.
                if matches!(self.engine, EngineState::Failed(_)) {
                    return;
                }
                // A load that failed, or an engine that is gone: nothing more can be sent,
                // and a message waiting for the model never will be.
                if self.model.is_none() || msg == crate::dashboard::event::ENGINE_GONE {
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
        for r in &s.readings {
            self.latest.insert(r.id.clone(), r.clone());
        }
        let (total, parts, boards, accuracy) = (
            self.gauges.total.take(),
            std::mem::take(&mut self.gauges.parts),
            std::mem::take(&mut self.gauges.boards),
            std::mem::take(&mut self.gauges.accuracy),
        );
        self.gauges = GaugeSummary {
            total,
            parts,
            boards,
            accuracy,
            ..summarize(self.latest.values())
        };
        self.record_history(s.t);
    }

    /// One point a second for each chart, at the sample's own time.
    fn record_history(&mut self, t: f64) {
        let g = &self.gauges;
        let keys = part_keys(g.parts.iter().map(|p| p.label.as_str()));
        let record = Record {
            total_w: g.total.as_ref().map(|p| p.watts),
            parts_w: keys
                .into_iter()
                .zip(g.parts.iter().map(|p| p.watts))
                .collect(),
            cpu_temp: g.cpu_temp.as_ref().map(|t| t.celsius),
            gpu_temp: g.gpu_temp.as_ref().map(|t| t.celsius),
            tok_s: self.live_tok_s().unwrap_or(0.0),
        };
        self.hist.record(t, record);
    }
}

/// "power now from sum of parts (was wall plug): plug:shelly silent 3.2 s".
pub fn basis_change_text(c: &crate::accounting::energy::BasisChange) -> String {
    let name =
        |b: Option<crate::accounting::energy::TotalBasis>| b.map_or("no source", |b| b.describe());
    format!(
        "power now from {} (was {}): {}",
        name(c.to),
        name(c.from),
        c.reason
    )
}
