//! Streaming UTF-8: a token can end in the middle of a character (emoji, CJK are several
//! bytes and often split across tokens). Hold the incomplete tail until the next piece.

#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Add bytes; returns the whole characters now complete, if any. Invalid bytes become U+FFFD.
    pub fn push(&mut self, bytes: &[u8]) -> Option<String> {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // Safe: the prefix up to `valid` was just checked.
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        // Incomplete character at the end: keep it for the next piece.
                        None => {
                            self.pending.drain(..valid);
                            break;
                        }
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// End of stream: whatever is left is an incomplete character.
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_bytewise(s: &str) -> (Vec<String>, String) {
        let mut u = Utf8Stream::default();
        let mut parts = Vec::new();
        for b in s.as_bytes() {
            if let Some(p) = u.push(&[*b]) {
                parts.push(p);
            }
        }
        (parts, u.finish())
    }

    #[test]
    fn emoji_and_cjk_split_at_every_byte_come_out_whole() {
        let text = "Hi 👋 世界!";
        let (parts, tail) = stream_bytewise(text);
        assert_eq!(tail, "");
        assert_eq!(parts.concat(), text);
        // Every emitted part is whole characters: "👋" (4 bytes) arrives as one part.
        assert!(parts.contains(&"👋".to_string()), "{parts:?}");
        assert!(parts.contains(&"世".to_string()), "{parts:?}");
    }

    #[test]
    fn invalid_bytes_become_replacement_and_stream_continues() {
        let mut u = Utf8Stream::default();
        assert_eq!(u.push(b"a\xffb").as_deref(), Some("a\u{FFFD}b"));
        assert_eq!(u.push(&[0xe4, 0xb8]), None);
        assert_eq!(u.push(&[0x96]).as_deref(), Some("世"));
    }

    #[test]
    fn truncated_character_at_end_is_reported_lossily() {
        let mut u = Utf8Stream::default();
        assert_eq!(u.push(&[0xf0, 0x9f]), None);
        assert_eq!(u.finish(), "\u{FFFD}");
    }
}
