//! Generated text on its way out of the engine thread, a few tokens at a time.
//!
//! Sending each token as it is decoded wakes the receiving thread once per token. When llama.cpp
//! uses every core, each of those wake-ups preempts one of its workers, and the others wait for
//! it at the next barrier. Text is sent at most once per interval instead; the first token of a
//! reply goes at once, so the time to the first token on screen is not delayed.

use crate::engine::EngineEvent;
use std::time::{Duration, Instant};

/// How often text leaves the engine while it generates, unless its user asks otherwise: a
/// 60 Hz frame's worth.
pub const SEND_EVERY: Duration = Duration::from_millis(16);

#[derive(Debug)]
pub struct TokenBatch {
    text: String,
    count: u32,
    sent_at: Option<Instant>,
    every: Duration,
}

impl TokenBatch {
    pub fn new(every: Duration) -> Self {
        Self {
            text: String::new(),
            count: 0,
            sent_at: None,
            every,
        }
    }

    /// One more generated token and the text it completed (empty when it ended inside a
    /// character). Returns the event to send now, if one is due.
    pub fn push(&mut self, text: &str, now: Instant) -> Option<EngineEvent> {
        self.push_counted(text, 1, now)
    }

    /// [`TokenBatch::push`] for a piece of `count` tokens (a server's chunk may carry several,
    /// or text that belongs to a token already counted: 0).
    pub fn push_counted(&mut self, text: &str, count: u32, now: Instant) -> Option<EngineEvent> {
        self.text.push_str(text);
        self.count += count;
        let due = self
            .sent_at
            .is_none_or(|at| now.saturating_duration_since(at) >= self.every);
        if due && !self.text.is_empty() && self.count > 0 {
            self.sent_at = Some(now);
            return self.take();
        }
        None
    }

    /// The end of the reply: what is held back, with the last bytes of an unfinished
    /// character (`tail`, already made printable), if any.
    pub fn finish(&mut self, tail: &str) -> Option<EngineEvent> {
        self.text.push_str(tail);
        self.sent_at = None;
        if self.count == 0 && self.text.is_empty() {
            return None;
        }
        self.take()
    }

    fn take(&mut self) -> Option<EngineEvent> {
        Some(EngineEvent::Tokens {
            text: std::mem::take(&mut self.text),
            count: std::mem::take(&mut self.count),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(ev: Option<EngineEvent>) -> Option<(String, u32)> {
        match ev {
            Some(EngineEvent::Tokens { text, count }) => Some((text, count)),
            _ => None,
        }
    }

    #[test]
    fn first_token_goes_at_once_then_one_event_per_interval() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut b = TokenBatch::new(Duration::from_millis(16));
        assert_eq!(parts(b.push("Once", ms(0))), Some(("Once".into(), 1)));
        assert_eq!(parts(b.push(" upon", ms(5))), None);
        assert_eq!(parts(b.push(" a", ms(10))), None);
        assert_eq!(
            parts(b.push(" time", ms(16))),
            Some((" upon a time".into(), 3))
        );
        assert_eq!(parts(b.push(",", ms(20))), None);
        assert_eq!(parts(b.finish("")), Some((",".into(), 1)));
        assert_eq!(parts(b.finish("")), None);
    }

    #[test]
    fn tokens_without_text_are_counted_with_the_text_that_completes_them() {
        let t0 = Instant::now();
        let mut b = TokenBatch::new(Duration::ZERO);
        // A 4-byte emoji split over three tokens: nothing to show until the last one.
        assert_eq!(parts(b.push("", t0)), None);
        assert_eq!(parts(b.push("", t0)), None);
        assert_eq!(parts(b.push("😀", t0)), Some(("😀".into(), 3)));
        // A reply that stops inside a character still reports the token and its replacement.
        assert_eq!(parts(b.push("", t0)), None);
        assert_eq!(parts(b.finish("\u{fffd}")), Some(("\u{fffd}".into(), 1)));
    }
}
