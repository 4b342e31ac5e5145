//! The real engine: llama.cpp through `llama-cpp-2`, on one OS thread.
// (being written: placeholder so the crate compiles while the skeleton lands)

use super::{Command, Engine, EngineEvent, EngineSettings};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

pub struct LlamaEngine {
    pub settings: EngineSettings,
}

impl Engine for LlamaEngine {
    fn run(
        self: Box<Self>,
        mut commands: UnboundedReceiver<Command>,
        events: UnboundedSender<EngineEvent>,
    ) {
        while let Some(cmd) = commands.blocking_recv() {
            if cmd == Command::Shutdown {
                break;
            }
            let _ = events.send(EngineEvent::Failed("llama engine not built yet".into()));
        }
    }
}
