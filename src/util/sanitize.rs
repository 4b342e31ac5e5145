//! The one owner of making foreign text (hostnames, model names, hwmon labels, device names,
//! model output: anything read from a file, a device or the network) safe to print.
//!
//! One rule for control characters: C0 (U+0000–U+001F), DEL (U+007F) and C1 (U+0080–U+009F)
//! become the visible escape `\xNN` (two lowercase hex digits, e.g. ESC is `\x1b`), except
//! the few a format needs (a newline in chat text). A terminal then never receives an escape
//! sequence from a run card, and a row of a table stays one line. Each output format adds its
//! own quoting on top. JSON needs none of this: serde escapes it exactly.

use std::borrow::Cow;

/// C0, DEL and C1: the characters a terminal may act on.
pub fn is_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// Unicode's explicit direction controls (embeddings, overrides, isolates, marks): in a
/// one-line label they can make a terminal show text in another order than it is stored
/// (a model named "x\u{202e}fdp.exe" shows as "xexe.pdf"), so a label shows them as `\u{NNNN}`.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

/// `s` with every character `escape` picks written visibly: controls as `\xNN`, direction
/// controls as `\u{NNNN}`.
fn escape_with(s: &str, escape: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(&escape) {
        return Cow::Borrowed(s);
    }
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !escape(c) {
            o.push(c);
        } else if is_control(c) {
            o.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            o.push_str(&format!("\\u{{{:04x}}}", c as u32));
        }
    }
    Cow::Owned(o)
}

/// One line of terminal output (a table cell, a label, a warning): every control character
/// escaped, newlines and tabs included, and the direction controls that could reorder it.
pub fn terminal(s: &str) -> Cow<'_, str> {
    escape_with(s, |c| is_control(c) || is_bidi_control(c))
}

/// Multi-line text for a terminal or a TUI pane (model output): newlines kept, a tab becomes
/// spaces (a TUI cell cannot hold one), every other control character escaped.
pub fn text(s: &str) -> Cow<'_, str> {
    // Direction controls stay: in prose they are how right-to-left text is written.
    let escaped = escape_with(s, |c| is_control(c) && c != '\n' && c != '\t');
    if escaped.contains('\t') {
        Cow::Owned(escaped.replace('\t', "    "))
    } else {
        escaped
    }
}

/// A Markdown table cell or inline text: controls escaped (a newline would end the row), and
/// `|` escaped so the cell count of a row stays right.
pub fn markdown(s: &str) -> String {
    terminal(s).replace('|', "\\|")
}

/// A CSV field: controls escaped (one record per line), quoted when it holds a comma or a
/// quote, and a leading `=`, `+`, `-` or `@` neutralised with `'` so a spreadsheet does not
/// run it as a formula.
pub fn csv_field(s: &str) -> String {
    let mut v = terminal(s).into_owned();
    if v.starts_with(['=', '+', '-', '@']) {
        v.insert(0, '\'');
    }
    if v.contains([',', '"']) || v.starts_with('\'') {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

/// XML (SVG) content and attribute values: markup escaped, control characters dropped (XML
/// 1.0 forbids most of them; an escape would be noise in a picture). Tab, newline and
/// carriage return are XML whitespace and kept.
pub fn xml(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\t' | '\n' | '\r' => o.push(ch),
            c if xml_forbidden(c) => {}
            c => o.push(c),
        }
    }
    o
}

/// Characters an SVG label drops: controls (XML 1.0 forbids most) and the two noncharacters.
fn xml_forbidden(c: char) -> bool {
    is_control(c) || c == '\u{FFFE}' || c == '\u{FFFF}'
}

/// One line of label text for an XML writer that escapes markup itself (the chart library
/// quotes `<`, `&` and quotes; escaping here too would show `&amp;lt;`): every control
/// character dropped, newlines and tabs included, so a label stays one line.
pub fn xml_label(s: &str) -> String {
    s.chars().filter(|&c| !xml_forbidden(c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_every_control_character_visibly() {
        assert_eq!(terminal("\x1b]0;pwned\x07"), "\\x1b]0;pwned\\x07");
        assert_eq!(terminal("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(terminal("two\nlines\r\t"), "two\\x0alines\\x0d\\x09");
        assert_eq!(terminal("\u{0}\u{7f}\u{85}\u{9b}"), "\\x00\\x7f\\x85\\x9b");
        // Printable text, Unicode included, passes untouched and unallocated.
        assert!(matches!(terminal("Ryzen 9 · 7950X ✓"), Cow::Borrowed(_)));
        // U+00A0 and above are not controls.
        assert_eq!(terminal("\u{a0}é"), "\u{a0}é");
    }

    #[test]
    fn a_label_shows_direction_controls_instead_of_obeying_them() {
        assert_eq!(terminal("x\u{202e}fdp.exe"), "x\\u{202e}fdp.exe");
        assert_eq!(
            terminal("\u{2066}a\u{2069}\u{200f}\u{61c}"),
            "\\u{2066}a\\u{2069}\\u{200f}\\u{061c}"
        );
        assert_eq!(markdown("m\u{202d}|"), "m\\u{202d}\\|");
        // Right-to-left letters themselves are text, not controls.
        assert!(matches!(terminal("שלום مرحبا"), Cow::Borrowed(_)));
        // Chat text keeps them: that is how mixed-direction prose is written.
        assert_eq!(text("a\u{202b}b"), "a\u{202b}b");
    }

    #[test]
    fn text_keeps_newlines_and_expands_tabs() {
        assert_eq!(text("a\nb\tc\x1b[31m"), "a\nb    c\\x1b[31m");
        assert_eq!(text("\r\n"), "\\x0d\n");
    }

    #[test]
    fn markdown_keeps_one_cell_per_cell() {
        let cell = markdown("a|b\nc\x1b");
        assert_eq!(cell, "a\\|b\\x0ac\\x1b");
        assert!(!cell.contains('\n'));
    }

    #[test]
    fn csv_quotes_and_neutralises() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("x\ny\x07"), "x\\x0ay\\x07");
        assert_eq!(csv_field("=HYPERLINK(1)"), "\"'=HYPERLINK(1)\"");
        assert_eq!(csv_field("-1+2"), "\"'-1+2\"");
    }

    #[test]
    fn xml_escapes_markup_and_drops_controls() {
        assert_eq!(
            xml("a<b>&\"c'\u{1}\x1b\u{9b}\u{7f}"),
            "a&lt;b&gt;&amp;&quot;c&apos;"
        );
        assert_eq!(xml("a\tb\n"), "a\tb\n");
    }

    #[test]
    fn xml_label_is_one_line_without_controls_and_leaves_markup_to_the_writer() {
        assert_eq!(xml_label("a<b>\n&c\x1b[1m\u{9b}\t"), "a<b>&c[1m");
    }
}
