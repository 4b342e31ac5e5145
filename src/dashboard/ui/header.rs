//! The header row: model, quantisation and size, device, engine state.

use crate::dashboard::state::{App, EngineState};
use crate::dashboard::theme::Theme;
use crate::engine::{BackendStatus, ModelInfo};
use crate::util::sanitize;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

/// Where the model runs, from the engine's report: "CPU 4 threads", "GPU 33 layers · CPU 8 thr";
/// for a server, where it holds the model and the server: "62 % on GPU · Ollama 0.5.7 at
/// 127.0.0.1:11434".
pub fn device_text(info: &ModelInfo, backend: Option<&BackendStatus>) -> String {
    if let Some(b) = &info.backend {
        let placement = backend
            .and_then(|s| s.loaded.iter().find(|l| l.name == s.current))
            .and_then(|l| l.placement());
        return match placement {
            // Where the model sits first: on a narrow terminal the server's address is cut.
            Some(p) => format!("{p} · {b}"),
            None => b.clone(),
        };
    }
    let e = &info.in_effect;
    if e.gpu_layers > 0 {
        format!("GPU {} layers · CPU {} thr", e.gpu_layers, e.threads)
    } else {
        format!("CPU {} threads", e.threads)
    }
}

/// "98 MB", "4.1 GB".
pub fn size_text(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else {
        format!("{:.0} MB", b / 1e6)
    }
}

/// "▼ throttled −35%": the mark, with how much slower the reply runs than it did.
pub fn throttle_text(e: &crate::accounting::throttle::Episode) -> String {
    format!("▼ throttled −{:.0}%", e.slowdown_pct())
}

pub fn draw(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let mut bar = Style::default().fg(theme.header_fg).bg(theme.header_bg);
    if theme.is_colorless() {
        bar = bar.add_modifier(Modifier::REVERSED);
    }
    // The model's name and quantisation come from the GGUF file.
    let model = match &app.model {
        // A server may not say the quantisation or the size.
        Some(m) => {
            let size = (m.file_size > 0).then(|| size_text(m.file_size));
            [Some(m.name.clone()), Some(m.quantization.clone()), size]
                .into_iter()
                .flatten()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        }
        None => app.model_label.clone(),
    };
    let model = sanitize::terminal(&model).into_owned();
    let state_color = match &app.engine {
        EngineState::Generating | EngineState::Prefill => theme.good,
        EngineState::Loading(_) => theme.warn,
        EngineState::Cancelled => theme.warn,
        EngineState::Failed(_) => theme.bad,
        EngineState::Idle => theme.header_fg,
    };
    let state = match &app.engine {
        EngineState::Loading(p) => format!("● loading {:.0}%", p * 100.0),
        s => format!("● {}", s.label()),
    };
    // Throttling that costs speed, kept in view like the state (the evidence is in the card).
    let throttle = app.throttle.as_ref().map(throttle_text);
    // Other programs on the CPUs llama.cpp needs, and how much it costs.
    let contention = app.contention.as_ref().map(|c| c.text());
    // While generating: the memory bandwidth used, and its share of the ceiling.
    let roofline = app
        .live_roofline()
        .map(|r| crate::accounting::roofline::short_text(&r));
    let width = |t: &Option<String>| t.as_ref().map_or(0, |t| t.chars().count() + 1);
    let right_w =
        state.chars().count() + 1 + width(&throttle) + width(&contention) + width(&roofline);
    let mut left = vec![
        Span::styled(" llmtop ", bar.add_modifier(Modifier::BOLD)),
        Span::styled("│ ", bar),
        Span::styled(model, bar),
    ];
    // Once loaded, the engine's report; before, whatever the app was told (nothing resolved).
    let device = app
        .model
        .as_ref()
        .map(|m| device_text(m, app.backend.as_ref()))
        .unwrap_or_else(|| app.device.clone());
    if !device.is_empty() {
        let device = sanitize::terminal(&device);
        left.push(Span::styled(format!(" │ {device}"), bar));
    }
    let left_w: usize = left.iter().map(|s| s.width()).sum();
    let avail = usize::from(area.width);
    // Truncate the left part so the state always stays visible.
    let mut line = if left_w + right_w > avail {
        let keep = avail.saturating_sub(right_w + 1);
        let text: String = left.iter().map(|s| s.content.as_ref()).collect();
        let cut: String = text.chars().take(keep).collect();
        vec![Span::styled(format!("{cut}…"), bar)]
    } else {
        left
    };
    let used: usize = line.iter().map(|s| s.width()).sum();
    line.push(Span::styled(
        " ".repeat(avail.saturating_sub(used + right_w)),
        bar,
    ));
    for t in [contention, throttle].into_iter().flatten() {
        line.push(Span::styled(
            t,
            bar.fg(theme.bad).add_modifier(Modifier::BOLD),
        ));
        line.push(Span::styled(" ", bar));
    }
    if let Some(r) = roofline {
        line.push(Span::styled(r, bar));
        line.push(Span::styled(" ", bar));
    }
    line.push(Span::styled(
        state,
        bar.fg(state_color).add_modifier(Modifier::BOLD),
    ));
    line.push(Span::styled(" ", bar));
    frame.render_widget(Paragraph::new(Line::from(line)).style(bar), area);
}

#[cfg(test)]
mod tests {
    #[test]
    fn device_comes_from_the_engines_report() {
        let mut info = crate::engine::scripted::ScriptedEngine::model_info();
        info.in_effect.threads = 6;
        assert_eq!(super::device_text(&info, None), "CPU 6 threads");
        info.in_effect.gpu_layers = 31;
        assert_eq!(super::device_text(&info, None), "GPU 31 layers · CPU 6 thr");
        // Attached: the server, and where it holds the model.
        info.name = "llama3.2:latest".into();
        info.backend = Some("Ollama 0.5.7 at 127.0.0.1:11434".into());
        assert_eq!(
            super::device_text(&info, None),
            "Ollama 0.5.7 at 127.0.0.1:11434"
        );
        let status = crate::engine::BackendStatus {
            current: "llama3.2:latest".into(),
            loaded: vec![crate::engine::LoadedModel {
                name: "llama3.2:latest".into(),
                size: Some(1000),
                size_vram: Some(620),
                context_length: None,
                expires_at: None,
            }],
            ..Default::default()
        };
        assert_eq!(
            super::device_text(&info, Some(&status)),
            "62 % on GPU · Ollama 0.5.7 at 127.0.0.1:11434"
        );
    }

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(super::size_text(98_362_432), "98 MB");
        assert_eq!(super::size_text(4_100_000_000), "4.1 GB");
    }
}
