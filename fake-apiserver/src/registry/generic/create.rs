//! CREATE, top to bottom: the body's checks, the namespace (it must exist
//! and not be terminating) and the CRD (not terminating), `generateName`,
//! the schema and metadata checks, field ownership, system metadata, then
//! one atomic write; a new CRD is established, an Event mirrored.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use crate::{
    apimachinery::{
        errors::{ApiError, Cause, Subject},
        resource_key::ResourceKey,
    },
    registry::{
        generic::{is_crd, is_service, Api, Committed},
        resources::Kind,
        rest::{Reply, Target, APPLIED},
        semantics::{self, Endpoint},
        services,
    },
    storage::object::Change,
};

impl Api {
    /// CREATE (POST to the collection).
    pub fn create(&self, t: &Target, body: Value, dry_run: bool) -> Result<Reply, ApiError> {
        self.create_as(t, body, dry_run, None)
    }

    /// CREATE recording `manager` as the owner of every field it sets.
    pub fn create_as(
        &self,
        t: &Target,
        mut body: Value,
        dry_run: bool,
        manager: Option<&str>,
    ) -> Result<Reply, ApiError> {
        Self::default_body_kind(t, &mut body);
        self.check_body_kind(t, &body)?;
        if !body.get("metadata").is_some_and(Value::is_object) {
            body["metadata"] = json!({});
        }
        if t.kind.namespaced {
            match semantics::meta_str(&body, "namespace") {
                Some(ns) if !ns.is_empty() && ns != t.namespace => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                _ => {
                    body["metadata"]["namespace"] = Value::String(t.namespace.clone());
                }
            }
        }
        if semantics::meta_str(&body, "resourceVersion").is_some_and(|rv| !rv.is_empty()) {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let given = semantics::meta_str(&body, "name")
            .unwrap_or_default()
            .to_string();
        let generate = semantics::meta_str(&body, "generateName")
            .unwrap_or_default()
            .to_string();
        if given.is_empty() && generate.is_empty() {
            return Err(ApiError::invalid(
                t.kind.group(),
                &t.kind.kind,
                "",
                vec![Cause::required(
                    "metadata.name",
                    "name or generateName is required",
                )],
            ));
        }
        self.check_namespace_for_create(t, &given)?;
        self.check_crd_not_terminating(t)?;
        let _allocating = is_service(&t.kind).then(|| {
            self.service_allocation
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        });
        // generateName: retry a few times on a collision, as kube-apiserver does.
        let attempts = if given.is_empty() { 8 } else { 1 };
        let mut last_err = None;
        for _ in 0..attempts {
            let name = if given.is_empty() {
                format!("{generate}{}", self.store.random_suffix())
            } else {
                given.clone()
            };
            let mut obj = body.clone();
            obj["metadata"]["name"] = Value::String(name.clone());
            let unknown_fields = self.apply_schema(t, &mut obj)?;
            self.validate(t, &obj)?;
            if semantics::has_owners(&obj) {
                self.owned.store(true, Ordering::Relaxed);
            }
            let now = self.clock.rfc3339();
            if let Some(manager) = manager.filter(|m| *m != APPLIED) {
                self.record_manager(t, None, &mut obj, manager, Endpoint::Main);
            }
            semantics::prepare_create(
                &t.kind,
                &t.version,
                &mut obj,
                semantics::CreateInfo {
                    uid: self.store.new_uid(),
                    now: &now,
                },
            );
            obj["apiVersion"] = Value::String(t.kind.api_version(&t.kind.storage_version().name));
            if is_service(&t.kind) {
                let existing: Vec<Value> = self
                    .store
                    .list(&t.kind.key, None, None, None, 0, &|_| true)
                    .map(|page| page.items.iter().map(|o| o.value()).collect())
                    .unwrap_or_default();
                services::allocate(&mut obj, &existing)?;
            }
            let target = Target {
                name: name.clone(),
                ..t.clone()
            };
            let result = self.commit(&t.kind.key, &t.namespace, &name, dry_run, |cur| {
                if cur.is_some() {
                    return Err(ApiError::already_exists(
                        t.kind.group(),
                        t.kind.plural(),
                        &name,
                    ));
                }
                Ok(Change::Put(obj))
            });
            match result {
                Ok(Committed::Written(w)) => {
                    let stored = w
                        .object
                        .ok_or_else(|| ApiError::internal("create stored nothing"))?;
                    let reply = Reply {
                        code: 201,
                        body: self.render(&target, &stored),
                        unknown_fields,
                    };
                    if is_crd(&t.kind) {
                        self.establish_crd(&name);
                    }
                    self.after_write(&t.kind, &t.namespace, &name);
                    return Ok(reply);
                }
                Ok(Committed::Dry(preview)) => {
                    return Ok(Reply {
                        code: 201,
                        body: self.render_value(&target, preview.unwrap_or_default()),
                        unknown_fields,
                    })
                }
                Err(e) if e.reason == "AlreadyExists" && given.is_empty() => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| ApiError::internal("generateName failed")))
    }

    fn check_namespace_for_create(&self, t: &Target, name: &str) -> Result<(), ApiError> {
        if !t.kind.namespaced {
            return Ok(());
        }
        let ns_key = ResourceKey::new("", "namespaces");
        let Some(ns) = self.store.get(&ns_key, "", &t.namespace) else {
            return Err(ApiError::not_found("", "namespaces", &t.namespace));
        };
        if ns.deleting {
            let mut err = ApiError::new(
                403,
                "Forbidden",
                format!(
                    "{} {name:?} is forbidden: unable to create new content in namespace {} because it is being terminated",
                    qualified(&t.kind),
                    t.namespace
                ),
            );
            err.details = Some(Box::new(Subject {
                group: t.kind.group().into(),
                kind: t.kind.plural().into(),
                name: name.into(),
            }));
            err.causes = vec![Cause {
                reason: "NamespaceTerminating".into(),
                message: format!("namespace {} is being terminated", t.namespace),
                field: "metadata.namespace".into(),
            }];
            return Err(err);
        }
        Ok(())
    }

    fn check_crd_not_terminating(&self, t: &Target) -> Result<(), ApiError> {
        if !t.kind.custom {
            return Ok(());
        }
        let crd_key = ResourceKey::new("apiextensions.k8s.io", "customresourcedefinitions");
        let crd_name = t.kind.key.to_string();
        if let Some(crd) = self.store.get(&crd_key, "", &crd_name) {
            if crd.deleting {
                return Err(ApiError::new(
                    405,
                    "MethodNotAllowed",
                    "create not allowed while custom resource definition is terminating",
                ));
            }
        }
        Ok(())
    }
}

fn qualified(kind: &Kind) -> String {
    kind.key.to_string()
}
