//! UPDATE (PUT), PATCH (JSON, merge, strategic merge) and server-side
//! apply, all through [`Api::replace_with`]: the current object becomes the
//! client's intended one, then the update rules apply in one atomic write.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use crate::{
    apimachinery::{errors::ApiError, yaml},
    registry::{
        apply, defaults,
        generic::{has_spec_finalizers, is_crd, is_service, Api, Committed},
        patch::{self, PatchType},
        rest::{Reply, Target, APPLIED},
        semantics::{self, Endpoint},
        services,
    },
    storage::object::Change,
};

impl Api {
    /// UPDATE (PUT) the object or its status.
    pub fn update(
        &self,
        t: &Target,
        body: Value,
        endpoint: Endpoint,
        dry_run: bool,
    ) -> Result<Reply, ApiError> {
        self.update_as(t, body, endpoint, dry_run, None)
    }

    /// UPDATE recording `manager` as the owner of the fields it changes.
    pub fn update_as(
        &self,
        t: &Target,
        mut body: Value,
        endpoint: Endpoint,
        dry_run: bool,
        manager: Option<&str>,
    ) -> Result<Reply, ApiError> {
        Self::default_body_kind(t, &mut body);
        self.check_body_kind(t, &body)?;
        self.replace_with(t, endpoint, dry_run, manager, |_| Ok(body))
    }

    /// Records an ordinary write by `manager` in `new`'s managed fields.
    pub(super) fn record_manager(
        &self,
        t: &Target,
        old: Option<&Value>,
        new: &mut Value,
        manager: &str,
        endpoint: Endpoint,
    ) {
        let now = self.clock.rfc3339();
        let api_version = t.kind.api_version(&t.version);
        apply::record_update(
            old,
            new,
            &apply::Request {
                manager,
                force: false,
                api_version: &api_version,
                now: &now,
                subresource: (endpoint == Endpoint::Status).then_some("status"),
            },
            &self.lists(t),
        );
    }

    /// How server-side apply merges lists of this kind.
    fn lists<'a>(&self, t: &'a Target) -> apply::Lists<'a> {
        static NO_SCHEMA: Value = Value::Null;
        apply::Lists {
            schema: if t.kind.custom {
                Some(
                    t.kind
                        .versions
                        .iter()
                        .find(|v| v.name == t.version)
                        .and_then(|v| v.schema.as_ref())
                        .unwrap_or(&NO_SCHEMA),
                )
            } else {
                None
            },
        }
    }

    /// Server-side apply (`application/apply-patch+yaml`): merges the
    /// configuration as `manager`'s, creating the object if needed.
    ///
    /// # Errors
    /// 409 listing the fields other managers own (unless `force`), and the
    /// errors of create and update.
    #[allow(clippy::too_many_arguments)]
    pub fn apply_patch(
        &self,
        t: &Target,
        body: &[u8],
        manager: Option<&str>,
        force: bool,
        endpoint: Endpoint,
        dry_run: bool,
    ) -> Result<Reply, ApiError> {
        let Some(manager) = manager.filter(|m| !m.is_empty()) else {
            return Err(ApiError::bad_request(
                "PATCH requests with application/apply-patch+yaml must specify a fieldManager",
            ));
        };
        yaml::check_depth(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        let config: Value = serde_yaml::from_slice::<serde_yaml::Value>(body)
            .ok()
            .and_then(|y| serde_json::to_value(y).ok())
            .filter(Value::is_object)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "error decoding YAML: the apply configuration is not an object",
                )
            })?;
        self.check_body_kind(t, &config)?;
        if config.get("metadata").is_some_and(|m| !m.is_object()) {
            return Err(ApiError::bad_request(
                "the apply configuration's metadata is not an object",
            ));
        }
        if let Some(name) = semantics::meta_str(&config, "name").filter(|n| !n.is_empty()) {
            if name != t.name {
                return Err(ApiError::bad_request(
                    "the name of the object does not match the name on the URL",
                ));
            }
        }
        let now = self.clock.rfc3339();
        let api_version = t.kind.api_version(&t.version);
        let req = apply::Request {
            manager,
            force,
            api_version: &api_version,
            now: &now,
            subresource: (endpoint == Endpoint::Status).then_some("status"),
        };
        let lists = self.lists(t);
        if self.store.get(&t.kind.key, &t.namespace, &t.name).is_none() {
            let mut fresh = apply::apply(None, &config, &req, &lists)?;
            fresh["metadata"]["name"] = json!(t.name);
            fresh["apiVersion"] = json!(api_version);
            fresh["kind"] = json!(t.kind.kind);
            let collection = Target {
                name: String::new(),
                ..t.clone()
            };
            return self.create(&collection, fresh, dry_run);
        }
        self.replace_with(t, endpoint, dry_run, Some(APPLIED), |current| {
            apply::apply(Some(current), &config, &req, &lists)
        })
    }

    /// PATCH the object or its status.
    pub fn patch(
        &self,
        t: &Target,
        ptype: PatchType,
        patch_body: &[u8],
        endpoint: Endpoint,
        dry_run: bool,
    ) -> Result<Reply, ApiError> {
        self.patch_as(t, ptype, patch_body, endpoint, dry_run, None)
    }

    /// PATCH recording `manager` as the owner of the fields it changes (for
    /// an apply patch, the applier; see [`Api::apply_patch`]).
    pub fn patch_as(
        &self,
        t: &Target,
        ptype: PatchType,
        patch_body: &[u8],
        endpoint: Endpoint,
        dry_run: bool,
        manager: Option<&str>,
    ) -> Result<Reply, ApiError> {
        match ptype {
            PatchType::Strategic if t.kind.custom => {
                return Err(ApiError::unsupported_media_type(
                    "application/strategic-merge-patch+json",
                    patch::CUSTOM_PATCH_TYPES,
                ))
            }
            PatchType::Apply => {
                return self.apply_patch(t, patch_body, manager, false, endpoint, dry_run);
            }
            _ => {}
        }
        let api_version = t.kind.api_version(&t.version);
        self.replace_with(t, endpoint, dry_run, manager, |current| {
            let mut current = current.clone();
            current["apiVersion"] = Value::String(api_version.clone());
            let patched = match ptype {
                PatchType::Json => patch::apply_json_patch(&current, patch_body)?,
                PatchType::Merge => patch::apply_merge_patch(&current, patch_body)?,
                PatchType::Strategic => patch::apply_strategic_patch(&current, patch_body)?,
                PatchType::Apply => {
                    return Err(ApiError::internal("apply patches go through apply_patch"))
                }
            };
            if !patched.is_object() {
                return Err(ApiError::bad_request(
                    "the patch made the object something other than a JSON object",
                ));
            }
            Ok(patched)
        })
    }

    /// The shared path of update and patch: `make` turns the current object
    /// into the client's intended object, then the update rules apply.
    pub(super) fn replace_with(
        &self,
        t: &Target,
        endpoint: Endpoint,
        dry_run: bool,
        manager: Option<&str>,
        make: impl FnOnce(&Value) -> Result<Value, ApiError>,
    ) -> Result<Reply, ApiError> {
        if endpoint == Endpoint::Status && !t.kind.has_status(&t.version) {
            return Err(ApiError::no_route());
        }
        let storage_api_version = t.kind.api_version(&t.kind.storage_version().name);
        let mut removed = false;
        let mut unknown_fields = Vec::new();
        // A Service may need node ports or an IP now (a type changed): the
        // others' allocations are read first (not under the store's lock)
        // and held by the allocation lock until the write.
        let services = (is_service(&t.kind) && endpoint == Endpoint::Main).then(|| {
            let guard = self
                .service_allocation
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let others: Vec<Value> = self
                .store
                .list(&t.kind.key, None, None, None, 0, &|o| {
                    !(o.namespace() == t.namespace && o.name() == t.name)
                })
                .map(|page| page.items.iter().map(|o| o.value()).collect())
                .unwrap_or_default();
            (guard, others)
        });
        let result = self.commit(&t.kind.key, &t.namespace, &t.name, dry_run, |cur| {
            let cur = cur.ok_or_else(|| self.not_found(t))?;
            let old = cur.value();
            let mut new = make(&old)?;
            self.check_body_kind(t, &new)?;
            if t.kind.namespaced {
                if let Some(ns) = semantics::meta_str(&new, "namespace") {
                    if !ns.is_empty() && ns != t.namespace {
                        return Err(ApiError::bad_request(
                            "the namespace of the provided object does not match the namespace sent on the request",
                        ));
                    }
                }
            }
            // Pruned and defaulted first: a write that only adds unknown
            // fields changes nothing (no generation bump, no new version).
            unknown_fields = self.apply_schema(t, &mut new)?;
            semantics::prepare_update(&t.kind, &t.version, &old, &mut new, endpoint)?;
            defaults::apply(&t.kind, &mut new);
            if is_service(&t.kind) {
                services::keep_allocated(&old, &mut new);
                if let Some((_, others)) = &services {
                    services::allocate(&mut new, others)?;
                }
            }
            // Field ownership: by the request's manager, or kept up to date
            // once an object has it (server-side apply records its own).
            let tracked = semantics::meta(&old).is_some_and(|m| m.contains_key("managedFields"));
            if manager != Some(APPLIED) && (manager.is_some() || tracked) {
                self.record_manager(t, Some(&old), &mut new, manager.unwrap_or("unknown"), endpoint);
            }
            if endpoint == Endpoint::Main {
                self.validate(t, &new)?;
            }
            new["apiVersion"] = Value::String(storage_api_version.clone());
            if semantics::has_owners(&new) {
                self.owned.store(true, Ordering::Relaxed);
            }
            // Once nothing holds it and no grace period runs, it goes.
            let graceful = semantics::meta(&new)
                .and_then(|m| m.get("deletionGracePeriodSeconds"))
                .and_then(Value::as_i64)
                .unwrap_or(0)
                > 0;
            if semantics::is_deleting(&new) && !graceful && semantics::finalizers(&new).is_empty() && !has_spec_finalizers(&t.kind, &new) {
                removed = true;
                return Ok(Change::Delete);
            }
            Ok(Change::Update { new, old })
        })?;
        match result {
            Committed::Dry(preview) => Ok(Reply {
                unknown_fields,
                ..Reply::ok(self.render_value(t, preview.unwrap_or_default()))
            }),
            Committed::Written(w) => {
                let obj = w.object.ok_or_else(|| self.not_found(t))?;
                let body = self.render(t, &obj);
                if removed && w.event.is_some() {
                    self.on_removed(&t.kind, &t.namespace, &t.name, &obj.value());
                } else if is_crd(&t.kind) && w.event.is_some() {
                    self.establish_crd(&t.name);
                }
                if w.event.is_some() {
                    self.after_write(&t.kind, &t.namespace, &t.name);
                }
                Ok(Reply {
                    unknown_fields,
                    ..Reply::ok(body)
                })
            }
        }
    }
}
