//! Built-in controllers, run at once after the verbs' writes instead of
//! eventually (kube-controller-manager's): the garbage collector.
//!
//! Each implements `registry::rest::Controller` over `registry::rest::Objects`
//! and never names `registry::generic`; `server` registers them with the
//! `Api`.

pub mod gc;
