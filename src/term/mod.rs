//! The terminal: taking it over and giving it back on every exit path (`guard`), noticing
//! when it goes away (`hangup`), the events every screen gets from it, the tick and the
//! terminating signals (`event`), and the one loop every screen runs on (`screen`). The
//! dashboard, the fleet view and `sensors --watch` differ only in their screen and feeds.

pub mod event;
pub mod guard;
pub mod hangup;
pub mod screen;
