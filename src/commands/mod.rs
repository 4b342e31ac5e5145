//! One file per subcommand.

pub mod bench;
pub mod compare;
pub mod doctor;
pub mod models;
pub mod power_cap;
pub mod proxy;
pub mod sensors;
pub mod serve;
pub mod share;
pub mod watch;
