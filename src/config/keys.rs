//! Key bindings: dashboard actions and the keys that trigger them, overridable in config `[keys]`
//! as `action = "ctrl-s"` (several keys: `"ctrl-q, f10"`).
//!
//! Letters without a modifier always go to the input line, so a binding must not steal one.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::BTreeMap;
use std::fmt;

/// Something the user can ask of the dashboard with one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Send,
    Newline,
    Cancel,
    Snapshot,
    NewChat,
    CycleTheme,
    ScrollUp,
    ScrollDown,
    Help,
    /// Choose the server's model for the next message (when attached).
    PickModel,
    /// Cancel the generation in progress, or quit when idle (Ctrl-C).
    Interrupt,
    Quit,
}

impl Action {
    pub const ALL: [Action; 12] = [
        Action::Send,
        Action::Newline,
        Action::Cancel,
        Action::Snapshot,
        Action::NewChat,
        Action::CycleTheme,
        Action::ScrollUp,
        Action::ScrollDown,
        Action::Help,
        Action::PickModel,
        Action::Interrupt,
        Action::Quit,
    ];

    /// The name used in config `[keys]`.
    pub fn name(self) -> &'static str {
        match self {
            Action::Send => "send",
            Action::Newline => "newline",
            Action::Cancel => "cancel",
            Action::Snapshot => "snapshot",
            Action::NewChat => "new_chat",
            Action::CycleTheme => "cycle_theme",
            Action::ScrollUp => "scroll_up",
            Action::ScrollDown => "scroll_down",
            Action::Help => "help",
            Action::PickModel => "pick_model",
            Action::Interrupt => "interrupt",
            Action::Quit => "quit",
        }
    }

    /// One line for the help overlay.
    pub fn describe(self) -> &'static str {
        match self {
            Action::Send => "send the message",
            Action::Newline => "new line in the message",
            Action::Cancel => "cancel the reply / close help",
            Action::Snapshot => "snapshot: write the run card",
            Action::NewChat => "new conversation",
            Action::CycleTheme => "next colour theme",
            Action::ScrollUp => "scroll the chat up",
            Action::ScrollDown => "scroll the chat down",
            Action::Help => "toggle this help",
            Action::PickModel => "pick the server's model (--attach)",
            Action::Interrupt => "cancel the reply, or quit when idle",
            Action::Quit => "quit",
        }
    }

    fn default_keys(self) -> &'static str {
        match self {
            Action::Send => "enter",
            Action::Newline => "alt-enter, shift-enter",
            Action::Cancel => "esc",
            Action::Snapshot => "ctrl-s",
            Action::NewChat => "ctrl-l",
            Action::CycleTheme => "ctrl-t",
            Action::ScrollUp => "pageup",
            Action::ScrollDown => "pagedown",
            Action::Help => "f1",
            Action::PickModel => "f2",
            Action::Interrupt => "ctrl-c",
            Action::Quit => "ctrl-q",
        }
    }

    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// A key with modifiers, as written in config: `ctrl-s`, `alt-enter`, `f1`, `pageup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyBinding {
    pub code: KeyCode,
    pub modifiers: KeyModifiers,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "unknown action `{0}`; known: send, newline, cancel, snapshot, new_chat, cycle_theme, scroll_up, scroll_down, help, pick_model, interrupt, quit"
    )]
    UnknownAction(String),
    #[error("`{0}` is not a key; write e.g. \"ctrl-s\", \"alt-enter\", \"f2\", \"pageup\"")]
    BadKey(String),
    #[error("`{0}` would steal a letter from the input line; add a modifier, e.g. \"ctrl-{0}\"")]
    StealsLetter(String),
    #[error("`{key}` is bound to both {first} and {second}")]
    Conflict {
        key: String,
        first: &'static str,
        second: &'static str,
    },
}

impl KeyBinding {
    pub fn parse(text: &str) -> Result<KeyBinding, KeyError> {
        let t = text.trim().to_ascii_lowercase();
        let bad = || KeyError::BadKey(text.trim().to_string());
        let mut modifiers = KeyModifiers::NONE;
        let mut rest = t.as_str();
        loop {
            let (m, r) = if let Some(r) = rest.strip_prefix("ctrl-") {
                (KeyModifiers::CONTROL, r)
            } else if let Some(r) = rest.strip_prefix("alt-") {
                (KeyModifiers::ALT, r)
            } else if let Some(r) = rest.strip_prefix("shift-") {
                (KeyModifiers::SHIFT, r)
            } else {
                break;
            };
            modifiers |= m;
            rest = r;
        }
        let code = match rest {
            "enter" | "return" => KeyCode::Enter,
            "esc" | "escape" => KeyCode::Esc,
            "tab" => KeyCode::Tab,
            "backspace" => KeyCode::Backspace,
            "delete" | "del" => KeyCode::Delete,
            "insert" => KeyCode::Insert,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "pageup" | "pgup" => KeyCode::PageUp,
            "pagedown" | "pgdn" => KeyCode::PageDown,
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "space" => KeyCode::Char(' '),
            f if f.starts_with('f') && f.len() > 1 => {
                let n: u8 = f[1..].parse().map_err(|_| bad())?;
                if !(1..=24).contains(&n) {
                    return Err(bad());
                }
                KeyCode::F(n)
            }
            c if c.chars().count() == 1 => {
                let ch = c.chars().next().ok_or_else(bad)?;
                if modifiers.difference(KeyModifiers::SHIFT).is_empty() {
                    return Err(KeyError::StealsLetter(c.to_string()));
                }
                KeyCode::Char(ch)
            }
            _ => return Err(bad()),
        };
        Ok(KeyBinding { code, modifiers })
    }

    /// Does a key event from the terminal match this binding?
    pub fn matches(&self, key: &KeyEvent) -> bool {
        let code = match key.code {
            KeyCode::Char(c) => KeyCode::Char(c.to_ascii_lowercase()),
            c => c,
        };
        // Terminals report Shift on upper-case letters and sometimes on symbols: ignore it
        // for letters so that ctrl-s and ctrl-S both match.
        let mods = if matches!(code, KeyCode::Char(_)) {
            key.modifiers.difference(KeyModifiers::SHIFT)
        } else {
            key.modifiers
        };
        let want = if matches!(self.code, KeyCode::Char(_)) {
            self.modifiers.difference(KeyModifiers::SHIFT)
        } else {
            self.modifiers
        };
        code == self.code && mods == want
    }
}

impl fmt::Display for KeyBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.modifiers.contains(KeyModifiers::CONTROL) {
            f.write_str("Ctrl-")?;
        }
        if self.modifiers.contains(KeyModifiers::ALT) {
            f.write_str("Alt-")?;
        }
        if self.modifiers.contains(KeyModifiers::SHIFT) {
            f.write_str("Shift-")?;
        }
        match self.code {
            KeyCode::Enter => f.write_str("Enter"),
            KeyCode::Esc => f.write_str("Esc"),
            KeyCode::Tab => f.write_str("Tab"),
            KeyCode::Backspace => f.write_str("Backspace"),
            KeyCode::Delete => f.write_str("Delete"),
            KeyCode::Insert => f.write_str("Insert"),
            KeyCode::Home => f.write_str("Home"),
            KeyCode::End => f.write_str("End"),
            KeyCode::PageUp => f.write_str("PgUp"),
            KeyCode::PageDown => f.write_str("PgDn"),
            KeyCode::Up => f.write_str("Up"),
            KeyCode::Down => f.write_str("Down"),
            KeyCode::Left => f.write_str("Left"),
            KeyCode::Right => f.write_str("Right"),
            KeyCode::F(n) => write!(f, "F{n}"),
            KeyCode::Char(' ') => f.write_str("Space"),
            KeyCode::Char(c) => write!(f, "{}", c.to_ascii_uppercase()),
            _ => f.write_str("?"),
        }
    }
}

/// Which keys trigger which actions.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyMap {
    bindings: BTreeMap<Action, Vec<KeyBinding>>,
}

impl Default for KeyMap {
    fn default() -> Self {
        let mut bindings = BTreeMap::new();
        for a in Action::ALL {
            let keys = parse_list(a.default_keys()).unwrap_or_default();
            bindings.insert(a, keys);
        }
        KeyMap { bindings }
    }
}

fn parse_list(text: &str) -> Result<Vec<KeyBinding>, KeyError> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(KeyBinding::parse)
        .collect()
}

impl KeyMap {
    /// The defaults with config `[keys]` applied; an override replaces all default keys of
    /// its action. Errors name the offending `action` key.
    pub fn from_config(keys: &BTreeMap<String, String>) -> Result<KeyMap, (String, KeyError)> {
        let mut map = KeyMap::default();
        for (name, value) in keys {
            let action = Action::from_name(name)
                .ok_or_else(|| (name.clone(), KeyError::UnknownAction(name.clone())))?;
            let list = parse_list(value).map_err(|e| (name.clone(), e))?;
            if list.is_empty() {
                return Err((name.clone(), KeyError::BadKey(value.clone())));
            }
            map.bindings.insert(action, list);
        }
        // Two actions on one key would make one of them unreachable.
        let mut seen: Vec<(KeyBinding, Action)> = Vec::new();
        for (&action, list) in &map.bindings {
            for b in list {
                if let Some((_, first)) = seen.iter().find(|(k, _)| k == b) {
                    let culprit = if keys.contains_key(action.name()) {
                        action
                    } else {
                        *first
                    };
                    return Err((
                        culprit.name().to_string(),
                        KeyError::Conflict {
                            key: b.to_string(),
                            first: first.name(),
                            second: action.name(),
                        },
                    ));
                }
                seen.push((*b, action));
            }
        }
        Ok(map)
    }

    /// The action bound to this key, if any.
    pub fn action(&self, key: &KeyEvent) -> Option<Action> {
        self.bindings
            .iter()
            .find(|(_, list)| list.iter().any(|b| b.matches(key)))
            .map(|(a, _)| *a)
    }

    /// The keys of an action, joined for display: "Ctrl-Q".
    pub fn keys_for(&self, action: Action) -> String {
        self.bindings
            .get(&action)
            .map(|l| {
                l.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" / ")
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, m: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, m)
    }

    #[test]
    fn defaults_map_the_documented_keys() {
        let m = KeyMap::default();
        let ctrl = KeyModifiers::CONTROL;
        assert_eq!(
            m.action(&key(KeyCode::Char('s'), ctrl)),
            Some(Action::Snapshot)
        );
        assert_eq!(
            m.action(&key(KeyCode::Char('S'), ctrl | KeyModifiers::SHIFT)),
            Some(Action::Snapshot)
        );
        assert_eq!(
            m.action(&key(KeyCode::Enter, KeyModifiers::ALT)),
            Some(Action::Newline)
        );
        assert_eq!(
            m.action(&key(KeyCode::Enter, KeyModifiers::NONE)),
            Some(Action::Send)
        );
        assert_eq!(
            m.action(&key(KeyCode::F(1), KeyModifiers::NONE)),
            Some(Action::Help)
        );
        assert_eq!(m.action(&key(KeyCode::Char('s'), KeyModifiers::NONE)), None);
        assert_eq!(m.keys_for(Action::Newline), "Alt-Enter / Shift-Enter");
    }

    #[test]
    fn config_overrides_replace_defaults() {
        let cfg = BTreeMap::from([("snapshot".to_string(), "ctrl-p, f5".to_string())]);
        let m = KeyMap::from_config(&cfg).expect("valid");
        let ctrl = KeyModifiers::CONTROL;
        assert_eq!(m.action(&key(KeyCode::Char('s'), ctrl)), None);
        assert_eq!(
            m.action(&key(KeyCode::Char('p'), ctrl)),
            Some(Action::Snapshot)
        );
        assert_eq!(
            m.action(&key(KeyCode::F(5), KeyModifiers::NONE)),
            Some(Action::Snapshot)
        );
    }

    #[test]
    fn bad_bindings_are_named() {
        let bad = |k: &str, v: &str| {
            KeyMap::from_config(&BTreeMap::from([(k.to_string(), v.to_string())]))
                .expect_err("must fail")
        };
        assert_eq!(
            bad("snapshot", "s"),
            ("snapshot".into(), KeyError::StealsLetter("s".into()))
        );
        assert_eq!(
            bad("snapshott", "ctrl-s"),
            (
                "snapshott".into(),
                KeyError::UnknownAction("snapshott".into())
            )
        );
        assert_eq!(
            bad("help", "ctrl-banana"),
            ("help".into(), KeyError::BadKey("ctrl-banana".into()))
        );
        let (k, e) = bad("help", "ctrl-s");
        assert_eq!(k, "help");
        assert!(matches!(e, KeyError::Conflict { .. }), "{e}");
    }
}
