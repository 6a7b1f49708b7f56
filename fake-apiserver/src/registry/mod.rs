//! The registry (kube's `registry`): which kinds exist, the rules of every
//! write, and the verbs that apply them.
//!
//! Inside, lowest first: `resources` (the kinds); the rules, as pure
//! functions (`semantics`, `crd`, `schema`, `patch`, `apply`, `events`);
//! `rest` (what a request is, and the narrow traits controllers use);
//! `generic` (the [`Api`](generic::Api): the verbs over the store).
//!
//! Uses `apimachinery` and `storage`; used by `controllers`, `admission`,
//! `testing`, `endpoints` and `server`.

pub mod apply;
pub mod crd;
mod events;
pub mod generic;
pub mod patch;
pub mod resources;
pub mod rest;
pub mod schema;
pub mod semantics;
