//! How llmtop starts a tokio runtime: one function for every mode and server thread, so each
//! gets the same drivers (I/O, timers, signals) on one thread of its own.

/// A current-thread runtime with I/O and timers enabled (signals ride on the I/O driver).
/// Every loop in llmtop is one task that `select!`s over channels and sockets; a worker pool
/// would only add threads on a CPU that llama.cpp needs.
pub fn current_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
