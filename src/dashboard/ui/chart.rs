//! A history chart in the manner of btop's: a filled area of braille dots (half blocks where the
//! theme has no colours to tell dots apart), the scale's maximum written in its top-left corner,
//! a limit drawn as a dashed line, and a time axis under it ("last 2 min … now") measured from
//! the samples' timestamps.

use crate::dashboard::history::History;
use crate::dashboard::theme::Theme;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::widgets::canvas::{Canvas, Painter, Shape};

/// Chart windows, in seconds: the shortest that holds the history is used.
const WINDOWS: [f64; 6] = [30.0, 60.0, 120.0, 180.0, 300.0, 600.0];

/// Rows a chart needs at least: two of plot and the time axis.
pub const MIN_ROWS: u16 = 3;

/// The window a chart shows for `span` seconds of history: the shortest of
/// 30 s, 1, 2, 3, 5 and 10 min that holds it all.
pub fn window_for(span: f64) -> f64 {
    WINDOWS
        .iter()
        .copied()
        .find(|w| span <= *w)
        .unwrap_or(History::SPAN)
}

/// "last 30 s", "last 2 min".
pub fn window_label(window: f64) -> String {
    if window < 60.0 {
        format!("last {window:.0} s")
    } else {
        format!("last {:.0} min", window / 60.0)
    }
}

/// The smallest round number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten) at or
/// above `v`: a scale that only moves when the data crosses one.
pub fn nice_max(v: f64) -> f64 {
    if !v.is_finite() || v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v * (1.0 - 1e-12))
        .unwrap_or(10.0 * p)
}

/// "200 W", "1.5 tok/s", "100°C".
pub fn scale_label(max: f64, unit: &str) -> String {
    let n = if max.fract().abs() < 1e-9 {
        format!("{max:.0}")
    } else {
        format!("{max:.1}")
    };
    if unit.starts_with('°') {
        format!("{n}{unit}")
    } else {
        format!("{n} {unit}")
    }
}

/// The time every chart of the pane shares: the newest sample is "now" at the right edge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeFrame {
    pub now: f64,
    pub window: f64,
}

impl TimeFrame {
    /// The frame for a history that spans `span` seconds up to `now`.
    pub fn new(now: f64, span: f64) -> TimeFrame {
        TimeFrame {
            now,
            window: window_for(span),
        }
    }

    pub fn from(&self) -> f64 {
        self.now - self.window
    }
}

/// What one chart draws.
#[derive(Debug, Clone, Copy)]
pub struct ChartSpec<'a> {
    pub hist: &'a History,
    /// "W", "tok/s", "°C".
    pub unit: &'static str,
    /// The scale never shrinks below this (an idle 0 tok/s still has an axis).
    pub min_scale: f64,
    pub color: Color,
    /// A limit (a temperature's): the scale reaches it, it is drawn as a dashed line, and the
    /// fill turns to warning and bad colours as it nears it.
    pub limit: Option<f64>,
}

impl ChartSpec<'_> {
    /// The top of the scale: the window's peak rounded up, with a limit kept below the top
    /// (a line on the chart's edge would not be seen).
    pub fn scale_max(&self, frame: TimeFrame) -> f64 {
        let peak = self
            .hist
            .max_between(frame.from(), frame.now)
            .unwrap_or(0.0);
        let limit = self.limit.map_or(0.0, |l| l / 0.9);
        nice_max(peak.max(limit).max(self.min_scale))
    }
}

/// Braille reads as a line only when it has a colour of its own; the mono theme and NO_COLOR
/// draw in the terminal's foreground, where solid blocks read better.
pub fn marker(theme: &Theme) -> Marker {
    if theme.power == Color::Reset {
        Marker::HalfBlock
    } else {
        Marker::Braille
    }
}

/// The filled area, painted pixel by pixel on the canvas grid.
struct Area {
    columns: Vec<Option<f64>>,
    px_h: usize,
    max: f64,
    color: Color,
    /// (limit, warning colour, bad colour).
    limit: Option<(f64, Color, Color)>,
    dash: usize,
}

impl Area {
    /// Pixels filled for a value: at least one for anything above zero.
    fn height(&self, v: f64) -> usize {
        let h = (v / self.max * self.px_h as f64).round();
        let h = if h.is_finite() {
            h.max(0.0) as usize
        } else {
            0
        };
        if v > 0.0 { h.max(1) } else { h }.min(self.px_h)
    }

    fn color_at(&self, level: f64) -> Color {
        match self.limit {
            Some((l, _, bad)) if level >= 0.9 * l => bad,
            Some((l, warn, _)) if level >= 0.75 * l => warn,
            _ => self.color,
        }
    }
}

impl Shape for Area {
    fn draw(&self, painter: &mut Painter) {
        let px_h = self.px_h;
        for (x, v) in self.columns.iter().enumerate() {
            let Some(v) = v else { continue };
            for k in 0..self.height(*v) {
                // Bottom up, so a cell takes the colour of its highest dot.
                let level = (k + 1) as f64 / px_h as f64 * self.max;
                painter.paint(x, px_h - 1 - k, self.color_at(level));
            }
        }
        if let Some((l, _, bad)) = self.limit {
            let from_top = px_h as f64 - (l / self.max * px_h as f64).round();
            let y = (from_top.max(0.0) as usize).min(px_h.saturating_sub(1));
            for x in (0..self.columns.len()).filter(|x| (x / self.dash).is_multiple_of(2)) {
                painter.paint(x, y, bad);
            }
        }
    }
}

/// "last 2 min ──────── now", as wide as the chart.
pub fn axis_text(frame: TimeFrame, width: u16) -> String {
    let label = window_label(frame.window);
    let w = usize::from(width);
    let fixed = label.chars().count() + " now".len() + 1;
    if w < fixed + 1 {
        return label.chars().take(w).collect();
    }
    format!("{label} {} now", "─".repeat(w - fixed))
}

/// Draw `spec` into `area`: plot rows on top, the time axis on the last row.
pub fn draw(spec: &ChartSpec, frame: TimeFrame, theme: &Theme, f: &mut Frame, area: Rect) {
    if area.width == 0 || area.height < 2 {
        return;
    }
    let plot = Rect::new(area.x, area.y, area.width, area.height - 1);
    let axis = Rect::new(area.x, area.bottom() - 1, area.width, 1);
    let marker = marker(theme);
    let (mx, my) = match marker {
        Marker::Braille => (2, 4),
        _ => (1, 2),
    };
    let (px_w, px_h) = (usize::from(plot.width) * mx, usize::from(plot.height) * my);
    let max = spec.scale_max(frame);
    // Points further apart than a few steps are a stall: left as a gap, not bridged.
    let max_gap = spec.hist.typical_step().map_or(5.0, |s| (3.0 * s).max(5.0));
    let area_shape = Area {
        columns: spec.hist.columns(frame.from(), frame.now, px_w, max_gap),
        px_h,
        max,
        color: spec.color,
        limit: spec.limit.map(|l| (l, theme.warn, theme.bad)),
        dash: mx,
    };
    f.render_widget(
        Canvas::default()
            .marker(marker)
            .background_color(theme.bg)
            .x_bounds([0.0, px_w as f64])
            .y_bounds([0.0, px_h as f64])
            .paint(|ctx| ctx.draw(&area_shape)),
        plot,
    );
    let dim = Style::default().fg(theme.dim);
    let label = scale_label(max, spec.unit);
    let lw = (label.chars().count() as u16).min(plot.width);
    f.render_widget(
        Paragraph::new(Line::from(Span::styled(label, dim))),
        Rect::new(plot.x, plot.y, lw, 1),
    );
    f.render_widget(
        Paragraph::new(Line::styled(axis_text(frame, axis.width), dim)),
        axis,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_labels() {
        assert_eq!(window_label(window_for(0.0)), "last 30 s");
        assert_eq!(window_label(window_for(45.0)), "last 1 min");
        assert_eq!(window_label(window_for(60.0)), "last 1 min");
        assert_eq!(window_label(window_for(61.0)), "last 2 min");
        assert_eq!(window_label(window_for(290.0)), "last 5 min");
        assert_eq!(window_label(window_for(5000.0)), "last 10 min");
    }

    #[test]
    fn nice_maxima() {
        assert_eq!(nice_max(182.8), 200.0);
        assert_eq!(nice_max(52.5), 60.0);
        assert_eq!(nice_max(111.1), 120.0);
        assert_eq!(nice_max(100.0), 100.0);
        assert_eq!(nice_max(0.42), 0.5);
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(f64::NAN), 1.0);
        assert_eq!(scale_label(200.0, "W"), "200 W");
        assert_eq!(scale_label(1.5, "tok/s"), "1.5 tok/s");
        assert_eq!(scale_label(100.0, "°C"), "100°C");
    }

    fn spec(hist: &History, limit: Option<f64>) -> ChartSpec<'_> {
        ChartSpec {
            hist,
            unit: "W",
            min_scale: 1.0,
            color: Color::Red,
            limit,
        }
    }

    #[test]
    fn the_scale_follows_the_peak_in_the_window() {
        let mut h = History::default();
        for s in 0..=700 {
            let t = f64::from(s);
            h.push(t, if s == 50 { 480.0 } else { 90.0 });
            if s == 300 {
                let f = TimeFrame::new(t, t);
                assert_eq!(f.window, 300.0);
                assert_eq!(spec(&h, None).scale_max(f), 500.0, "the 480 W peak");
            }
        }
        // Ten minutes on, the peak has left the history: the scale comes down to the data.
        let f = TimeFrame::new(700.0, 700.0);
        assert_eq!(window_label(f.window), "last 10 min");
        assert_eq!(spec(&h, None).scale_max(f), 100.0);
        // A limit sets the top with room above it (90 / 0.9 = 100, 100 / 0.9 -> 120); data
        // above it lifts the top further.
        assert_eq!(spec(&h, Some(90.0)).scale_max(f), 100.0);
        assert_eq!(spec(&h, Some(100.0)).scale_max(f), 120.0);
        assert_eq!(spec(&h, Some(50.0)).scale_max(f), 100.0);
        // Nothing but zeros still has a scale.
        let mut z = History::default();
        z.push(0.0, 0.0);
        assert_eq!(spec(&z, None).scale_max(TimeFrame::new(0.0, 0.0)), 1.0);
    }

    #[test]
    fn axis_fills_the_width() {
        let f = TimeFrame::new(100.0, 100.0);
        let t = axis_text(f, 20);
        assert_eq!(t, "last 2 min ───── now");
        assert_eq!(t.chars().count(), 20);
        assert_eq!(axis_text(f, 4), "last");
    }
}
