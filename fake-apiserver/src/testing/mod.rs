//! What tests need beyond a real API server: watch injection, fault rules
//! and the request journal.
//!
//! Uses the registry (injected real writes go through the verbs) and
//! `storage` (injected events travel the watch fan-out); used only by
//! `endpoints` (fault rules on every request, the journal, the control API)
//! and `server`, and by tests through the server's `injector()` and `journal()`.

pub mod faults;
pub mod inject;
pub mod journal;
