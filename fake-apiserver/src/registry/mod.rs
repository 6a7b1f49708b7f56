//! The registry (kube's `registry`): which kinds exist, the rules of every
//! write, and the verbs that apply them.
//!
//! Inside, lowest first: `builtins` (the table of built-in kinds) and
//! `resources` (the kinds); the rules, as pure
//! functions (`semantics`, `defaults`, `crd`, `schema`, `patch`, `apply`,
//! `events`, `webhooks`, `scale`);
//! `rest` (what a request is, and the narrow traits controllers use);
//! `generic` (the [`Api`](generic::Api): the verbs over the store).
//!
//! Uses `apimachinery` and `storage`; used by `controllers`, `admission`,
//! `testing`, `endpoints` and `server`.

pub mod apply;
mod builtins;
pub mod crd;
pub mod defaults;
mod events;
pub mod generic;
mod managed;
pub mod patch;
pub mod resources;
pub mod rest;
pub mod scale;
pub mod schema;
pub mod semantics;
mod services;
pub mod webhooks;
