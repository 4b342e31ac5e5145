//! Colour themes: semantic colour slots read from TOML. Built-ins are embedded from themes/*.toml;
//! a user theme `<config dir>/themes/NAME.toml` overrides the built-in of the same name.
//!
//! Colours degrade to what the terminal can show: truecolor, 256 colours, 16 colours, or none
//! (NO_COLOR, `--color never`), where the UI still reads through bold/reverse video.

use crate::cli::ColorMode;
use ratatui::style::Color;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Built-in themes, in Ctrl-T order.
pub const BUILTIN: [(&str, &str); 4] = [
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
    ("mono", include_str!("../../themes/mono.toml")),
];

/// Colour slots, by meaning rather than by hue.
#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub name: String,
    pub fg: Color,
    pub bg: Color,
    pub dim: Color,
    pub border: Color,
    pub title: Color,
    pub accent: Color,
    pub user: Color,
    pub assistant: Color,
    pub good: Color,
    pub warn: Color,
    pub bad: Color,
    pub power: Color,
    pub speed: Color,
    pub temp: Color,
    pub header_fg: Color,
    pub header_bg: Color,
    pub footer_fg: Color,
    pub footer_bg: Color,
}

/// How many colours the terminal can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ColorDepth {
    None,
    Ansi16,
    Ansi256,
    TrueColor,
}

#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: cannot read theme: {}", .0.path().display(), .0.reason())]
    Read(crate::util::fs::ReadError),
    #[error(
        "unknown theme `{name}`: built-ins are dark, light, high-contrast, mono; or create {dir}/{name}.toml"
    )]
    Unknown { name: String, dir: String },
}

/// A colour as written in a theme file.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ColorSpec(Color);

impl<'de> Deserialize<'de> for ColorSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ColorSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a colour: \"#rrggbb\", a name like \"red\", \"reset\", or 0-255")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ColorSpec, E> {
                parse_color(s).map(ColorSpec).ok_or_else(|| {
                    E::custom(format!(
                        "`{s}` is not a colour; use \"#rrggbb\", a name like \"light_blue\", \"reset\", or 0-255"
                    ))
                })
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<ColorSpec, E> {
                u8::try_from(n)
                    .map(|i| ColorSpec(Color::Indexed(i)))
                    .map_err(|_| E::custom(format!("colour index {n} is not in 0-255")))
            }
        }
        d.deserialize_any(V)
    }
}

fn parse_color(s: &str) -> Option<Color> {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix('#') {
        if hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let v = u32::from_str_radix(hex, 16).ok()?;
        return Some(Color::Rgb((v >> 16) as u8, (v >> 8) as u8, v as u8));
    }
    Some(
        match s.to_ascii_lowercase().replace(['-', ' '], "_").as_str() {
            "reset" | "default" => Color::Reset,
            "black" => Color::Black,
            "red" => Color::Red,
            "green" => Color::Green,
            "yellow" => Color::Yellow,
            "blue" => Color::Blue,
            "magenta" => Color::Magenta,
            "cyan" => Color::Cyan,
            "gray" | "grey" => Color::Gray,
            "dark_gray" | "dark_grey" => Color::DarkGray,
            "light_red" => Color::LightRed,
            "light_green" => Color::LightGreen,
            "light_yellow" => Color::LightYellow,
            "light_blue" => Color::LightBlue,
            "light_magenta" => Color::LightMagenta,
            "light_cyan" => Color::LightCyan,
            "white" => Color::White,
            _ => return None,
        },
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    name: Option<String>,
    #[serde(default)]
    colors: ColorsFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColorsFile {
    fg: Option<ColorSpec>,
    bg: Option<ColorSpec>,
    dim: Option<ColorSpec>,
    border: Option<ColorSpec>,
    title: Option<ColorSpec>,
    accent: Option<ColorSpec>,
    user: Option<ColorSpec>,
    assistant: Option<ColorSpec>,
    good: Option<ColorSpec>,
    warn: Option<ColorSpec>,
    bad: Option<ColorSpec>,
    power: Option<ColorSpec>,
    speed: Option<ColorSpec>,
    temp: Option<ColorSpec>,
    header_fg: Option<ColorSpec>,
    header_bg: Option<ColorSpec>,
    footer_fg: Option<ColorSpec>,
    footer_bg: Option<ColorSpec>,
}

impl Theme {
    /// The default theme; also the base that partial user themes fill their gaps from.
    pub fn dark() -> Theme {
        // The built-in file is checked by a test, so this fallback is never used in practice.
        Theme::parse(BUILTIN[0].1, Path::new("themes/dark.toml"), None).unwrap_or_else(|_| Theme {
            name: "dark".into(),
            fg: Color::Reset,
            bg: Color::Reset,
            dim: Color::DarkGray,
            border: Color::DarkGray,
            title: Color::Cyan,
            accent: Color::Blue,
            user: Color::Yellow,
            assistant: Color::Green,
            good: Color::Green,
            warn: Color::Yellow,
            bad: Color::Red,
            power: Color::LightRed,
            speed: Color::Cyan,
            temp: Color::Red,
            header_fg: Color::White,
            header_bg: Color::DarkGray,
            footer_fg: Color::White,
            footer_bg: Color::DarkGray,
        })
    }

    /// Parse theme TOML. Slots missing from the file come from `base` (or are an error without
    /// one, as for built-ins). `path` is only used in messages.
    pub fn parse(text: &str, path: &Path, base: Option<&Theme>) -> Result<Theme, ThemeError> {
        let perr = |line: usize, message: String| ThemeError::Parse {
            path: path.to_path_buf(),
            line,
            message,
        };
        let file: ThemeFile = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(1);
            perr(line, e.message().trim().replace('\n', " "))
        })?;
        let name = file.name.unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let c = file.colors;
        let mut missing = Vec::new();
        let mut pick = |v: Option<ColorSpec>, slot: &'static str, from: Option<Color>| -> Color {
            match (v, from) {
                (Some(ColorSpec(c)), _) => c,
                (None, Some(b)) => b,
                (None, None) => {
                    missing.push(slot);
                    Color::Reset
                }
            }
        };
        let t = Theme {
            name,
            fg: pick(c.fg, "fg", base.map(|b| b.fg)),
            bg: pick(c.bg, "bg", base.map(|b| b.bg)),
            dim: pick(c.dim, "dim", base.map(|b| b.dim)),
            border: pick(c.border, "border", base.map(|b| b.border)),
            title: pick(c.title, "title", base.map(|b| b.title)),
            accent: pick(c.accent, "accent", base.map(|b| b.accent)),
            user: pick(c.user, "user", base.map(|b| b.user)),
            assistant: pick(c.assistant, "assistant", base.map(|b| b.assistant)),
            good: pick(c.good, "good", base.map(|b| b.good)),
            warn: pick(c.warn, "warn", base.map(|b| b.warn)),
            bad: pick(c.bad, "bad", base.map(|b| b.bad)),
            power: pick(c.power, "power", base.map(|b| b.power)),
            speed: pick(c.speed, "speed", base.map(|b| b.speed)),
            temp: pick(c.temp, "temp", base.map(|b| b.temp)),
            header_fg: pick(c.header_fg, "header_fg", base.map(|b| b.header_fg)),
            header_bg: pick(c.header_bg, "header_bg", base.map(|b| b.header_bg)),
            footer_fg: pick(c.footer_fg, "footer_fg", base.map(|b| b.footer_fg)),
            footer_bg: pick(c.footer_bg, "footer_bg", base.map(|b| b.footer_bg)),
        };
        if !missing.is_empty() {
            return Err(perr(1, format!("colors: missing {}", missing.join(", "))));
        }
        Ok(t)
    }

    /// Every colour converted to what `depth` can show.
    pub fn degrade(&self, depth: ColorDepth) -> Theme {
        let f = |c: Color| degrade_color(c, depth);
        Theme {
            name: self.name.clone(),
            fg: f(self.fg),
            bg: f(self.bg),
            dim: f(self.dim),
            border: f(self.border),
            title: f(self.title),
            accent: f(self.accent),
            user: f(self.user),
            assistant: f(self.assistant),
            good: f(self.good),
            warn: f(self.warn),
            bad: f(self.bad),
            power: f(self.power),
            speed: f(self.speed),
            temp: f(self.temp),
            header_fg: f(self.header_fg),
            header_bg: f(self.header_bg),
            footer_fg: f(self.footer_fg),
            footer_bg: f(self.footer_bg),
        }
    }

    /// True when the theme carries no colour at all (mono, NO_COLOR): the UI then marks
    /// the header and footer with reverse video instead of a background.
    pub fn is_colorless(&self) -> bool {
        self.header_bg == Color::Reset && self.footer_bg == Color::Reset
    }
}

/// The 16 ANSI colours with xterm's default RGB values, for nearest-colour search.
const ANSI16: [(Color, (u8, u8, u8)); 16] = [
    (Color::Black, (0, 0, 0)),
    (Color::Red, (205, 0, 0)),
    (Color::Green, (0, 205, 0)),
    (Color::Yellow, (205, 205, 0)),
    (Color::Blue, (0, 0, 238)),
    (Color::Magenta, (205, 0, 205)),
    (Color::Cyan, (0, 205, 205)),
    (Color::Gray, (229, 229, 229)),
    (Color::DarkGray, (127, 127, 127)),
    (Color::LightRed, (255, 0, 0)),
    (Color::LightGreen, (0, 255, 0)),
    (Color::LightYellow, (255, 255, 0)),
    (Color::LightBlue, (92, 92, 255)),
    (Color::LightMagenta, (255, 0, 255)),
    (Color::LightCyan, (0, 255, 255)),
    (Color::White, (255, 255, 255)),
];

const CUBE: [u8; 6] = [0, 95, 135, 175, 215, 255];

fn dist(a: (u8, u8, u8), b: (u8, u8, u8)) -> u32 {
    let d = |x: u8, y: u8| (i32::from(x) - i32::from(y)).unsigned_abs();
    // Weighted like the eye: green matters most, blue least.
    3 * d(a.0, b.0).pow(2) + 4 * d(a.1, b.1).pow(2) + 2 * d(a.2, b.2).pow(2)
}

/// RGB of an xterm 256-colour index.
fn indexed_rgb(i: u8) -> (u8, u8, u8) {
    match i {
        0..=15 => ANSI16[usize::from(i)].1,
        16..=231 => {
            let n = i - 16;
            (
                CUBE[usize::from(n / 36)],
                CUBE[usize::from((n / 6) % 6)],
                CUBE[usize::from(n % 6)],
            )
        }
        _ => {
            let v = 8 + 10 * (i - 232);
            (v, v, v)
        }
    }
}

/// Nearest xterm 256-colour index (cube or grey ramp) to an RGB colour.
pub fn rgb_to_256(r: u8, g: u8, b: u8) -> u8 {
    let nearest = |v: u8| {
        (0..6)
            .min_by_key(|&k| (i32::from(CUBE[k]) - i32::from(v)).abs())
            .unwrap_or(0)
    };
    let (ri, gi, bi) = (nearest(r), nearest(g), nearest(b));
    let cube = 16 + 36 * ri as u8 + 6 * gi as u8 + bi as u8;
    let avg = (u16::from(r) + u16::from(g) + u16::from(b)) / 3;
    let grey_i = (avg.saturating_sub(3) / 10).min(23) as u8;
    let grey = 232 + grey_i;
    if dist((r, g, b), indexed_rgb(grey)) < dist((r, g, b), indexed_rgb(cube)) {
        grey
    } else {
        cube
    }
}

/// The closest of the 16 ANSI colours by meaning: greys by lightness, others by hue, bright
/// when light. (Plain RGB distance to xterm's palette turns muted reds into grey.)
pub fn rgb_to_16((r, g, b): (u8, u8, u8)) -> Color {
    let (r, g, b) = (f64::from(r), f64::from(g), f64::from(b));
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let chroma = max - min;
    let light = (max + min) / 2.0;
    if chroma < 40.0 {
        return match light {
            l if l < 50.0 => Color::Black,
            l if l < 140.0 => Color::DarkGray,
            l if l < 210.0 => Color::Gray,
            _ => Color::White,
        };
    }
    let hue = if max == r {
        60.0 * ((g - b) / chroma).rem_euclid(6.0)
    } else if max == g {
        60.0 * ((b - r) / chroma + 2.0)
    } else {
        60.0 * ((r - g) / chroma + 4.0)
    };
    let bright = max >= 230.0 || light >= 150.0;
    let sector = ((hue + 30.0).rem_euclid(360.0) / 60.0) as u8;
    match (sector, bright) {
        (0, false) => Color::Red,
        (0, true) => Color::LightRed,
        (1, false) => Color::Yellow,
        (1, true) => Color::LightYellow,
        (2, false) => Color::Green,
        (2, true) => Color::LightGreen,
        (3, false) => Color::Cyan,
        (3, true) => Color::LightCyan,
        (4, false) => Color::Blue,
        (4, true) => Color::LightBlue,
        (_, false) => Color::Magenta,
        (_, true) => Color::LightMagenta,
    }
}

fn degrade_color(c: Color, depth: ColorDepth) -> Color {
    match (depth, c) {
        (_, Color::Reset) => Color::Reset,
        (ColorDepth::None, _) => Color::Reset,
        (ColorDepth::TrueColor, c) => c,
        (ColorDepth::Ansi256, Color::Rgb(r, g, b)) => Color::Indexed(rgb_to_256(r, g, b)),
        (ColorDepth::Ansi256, c) => c,
        (ColorDepth::Ansi16, Color::Rgb(r, g, b)) => rgb_to_16((r, g, b)),
        (ColorDepth::Ansi16, Color::Indexed(i)) => rgb_to_16(indexed_rgb(i)),
        (ColorDepth::Ansi16, c) => c,
    }
}

/// What the terminal can show, from `--color`, NO_COLOR, COLORTERM and TERM (read through
/// `env` so tests need not touch the process environment).
pub fn detect_depth(mode: ColorMode, env: impl Fn(&str) -> Option<String>) -> ColorDepth {
    let term_depth = || {
        let colorterm = env("COLORTERM").unwrap_or_default().to_ascii_lowercase();
        let term = env("TERM").unwrap_or_default().to_ascii_lowercase();
        if colorterm == "truecolor" || colorterm == "24bit" {
            ColorDepth::TrueColor
        } else if term.contains("256color") {
            ColorDepth::Ansi256
        } else {
            ColorDepth::Ansi16
        }
    };
    match mode {
        ColorMode::Never => ColorDepth::None,
        ColorMode::Always => term_depth(),
        ColorMode::Auto => {
            // no-color.org: set and not empty means no colour.
            let no_color = env("NO_COLOR").is_some_and(|v| !v.is_empty());
            if no_color || env("TERM").as_deref() == Some("dumb") {
                ColorDepth::None
            } else {
                term_depth()
            }
        }
    }
}

/// Theme names for Ctrl-T: built-ins first, then user themes found in `user_dir`.
pub fn available(user_dir: Option<&Path>) -> Vec<String> {
    let mut names: Vec<String> = BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
    if let Some(dir) = user_dir
        && let Ok(rd) = std::fs::read_dir(dir)
    {
        let mut user: Vec<String> = rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .filter(|n| !names.contains(n))
            .collect();
        user.sort();
        names.extend(user);
    }
    names
}

/// Load theme `name`: `user_dir/NAME.toml` if it exists (gaps filled from dark), else the
/// built-in of that name.
pub fn load(name: &str, user_dir: Option<&Path>) -> Result<Theme, ThemeError> {
    if let Some(dir) = user_dir {
        let path = dir.join(format!("{name}.toml"));
        // Anything at that name (a FIFO, a broken link) is the user's theme: refuse it by
        // name rather than fall back to the built-in without a word.
        if std::fs::symlink_metadata(&path).is_ok() {
            let text = crate::util::fs::read_capped(&path, crate::util::fs::limits::THEME)
                .map_err(ThemeError::Read)?;
            let mut t = Theme::parse(&text, &path, Some(&Theme::dark()))?;
            t.name = name.to_string();
            return Ok(t);
        }
    }
    match BUILTIN.iter().find(|(n, _)| *n == name) {
        Some((n, text)) => Theme::parse(text, &PathBuf::from(format!("themes/{n}.toml")), None),
        None => Err(ThemeError::Unknown {
            name: name.to_string(),
            dir: user_dir
                .map(|d| d.display().to_string())
                .unwrap_or_else(|| "~/.config/llmtop/themes".into()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_parses_completely() {
        for (name, text) in BUILTIN {
            let t =
                Theme::parse(text, Path::new(name), None).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(t.name, name);
        }
        assert_eq!(Theme::dark().user, Color::Rgb(0xeb, 0xcb, 0x8b));
    }

    #[test]
    fn every_file_in_themes_dir_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("themes");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).expect("themes dir") {
            let p = e.expect("entry").path();
            let text = std::fs::read_to_string(&p).expect("read");
            Theme::parse(&text, &p, None).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
        assert_eq!(n, BUILTIN.len(), "every theme file is embedded");
    }

    #[test]
    fn bad_theme_names_file_line_and_key() {
        let text = "name = \"x\"\n[colors]\nfg = \"#12345\"\n";
        let e = Theme::parse(text, Path::new("/t/x.toml"), None).expect_err("bad colour");
        let msg = e.to_string();
        assert!(msg.starts_with("/t/x.toml:3: "), "{msg}");
        assert!(msg.contains("`#12345` is not a colour"), "{msg}");

        let text = "[colors]\nfg = \"red\"\nbackground = \"blue\"\n";
        let msg = Theme::parse(text, Path::new("t.toml"), Some(&Theme::dark()))
            .expect_err("unknown slot")
            .to_string();
        assert!(
            msg.starts_with("t.toml:3: unknown field `background`"),
            "{msg}"
        );
    }

    #[test]
    fn partial_user_theme_fills_from_base_and_overrides_builtin() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("dark.toml"), "[colors]\nuser = \"red\"\n").expect("w");
        std::fs::write(dir.path().join("zebra.toml"), "[colors]\nfg = 250\n").expect("w");
        let t = load("dark", Some(dir.path())).expect("user dark");
        assert_eq!(t.user, Color::Red);
        assert_eq!(t.assistant, Theme::dark().assistant);
        assert_eq!(
            load("zebra", Some(dir.path())).expect("zebra").fg,
            Color::Indexed(250)
        );
        assert_eq!(
            available(Some(dir.path())),
            vec!["dark", "light", "high-contrast", "mono", "zebra"]
        );
        let e = load("nope", Some(dir.path())).expect_err("unknown");
        assert!(e.to_string().starts_with("unknown theme `nope`"));
    }

    #[test]
    fn colours_degrade_to_the_nearest_the_terminal_has() {
        // #d08770 (orange): cube levels 215,135,95 -> 16 + 36*4 + 6*2 + 1 = 173.
        assert_eq!(rgb_to_256(0xd0, 0x87, 0x70), 173);
        // A mid grey lands on the grey ramp: avg 128 -> 232 + 12 = 244 (value 128).
        assert_eq!(rgb_to_256(128, 128, 128), 244);
        assert_eq!(rgb_to_256(255, 0, 0), 196);
        assert_eq!(rgb_to_16((250, 10, 10)), Color::LightRed);
        assert_eq!(rgb_to_16((0, 0, 140)), Color::Blue);
        let d = Theme::dark();
        let t16 = d.degrade(ColorDepth::Ansi16);
        // Muted Nord colours keep their meaning: red stays red, green green, greys grey.
        assert_eq!(t16.bad, Color::Red); // #bf616a
        assert_eq!(t16.assistant, Color::LightGreen); // #a3be8c
        assert_eq!(t16.user, Color::LightYellow); // #ebcb8b
        assert_eq!(t16.dim, Color::DarkGray); // #6b7280
        assert_eq!(t16.fg, Color::Gray); // #c8ccd4
        assert_eq!(d.degrade(ColorDepth::Ansi256).fg, Color::Indexed(252));
        let none = d.degrade(ColorDepth::None);
        assert_eq!(none.accent, Color::Reset);
        assert!(none.is_colorless());
        assert_eq!(d.degrade(ColorDepth::TrueColor), d);
    }

    #[test]
    fn depth_follows_flag_no_color_and_term() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let truecolor = env(&[("COLORTERM", "truecolor"), ("TERM", "xterm-256color")]);
        assert_eq!(
            detect_depth(ColorMode::Auto, truecolor),
            ColorDepth::TrueColor
        );
        assert_eq!(detect_depth(ColorMode::Never, truecolor), ColorDepth::None);
        let nocolor = env(&[("NO_COLOR", "1"), ("TERM", "xterm-256color")]);
        assert_eq!(detect_depth(ColorMode::Auto, nocolor), ColorDepth::None);
        assert_eq!(
            detect_depth(ColorMode::Always, nocolor),
            ColorDepth::Ansi256
        );
        assert_eq!(
            detect_depth(ColorMode::Auto, env(&[("TERM", "screen")])),
            ColorDepth::Ansi16
        );
    }
}
