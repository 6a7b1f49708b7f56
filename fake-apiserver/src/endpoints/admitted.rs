//! A write through the admission webhooks: the object as it would be
//! stored (a trial dry run), then the mutating and validating webhooks,
//! then the final write of what they let through (with the precondition of
//! the version they saw); a patch is tried again on a conflict, as
//! kube-apiserver does.

use bytes::Bytes;
use http::{header, Method};
use serde_json::Value;

use crate::{
    admission::webhooks::Attributes,
    apimachinery::errors::ApiError,
    auth::UserInfo,
    endpoints::{
        decode::{decode_object, delete_options},
        handlers::{patch_type, strict, warned},
        response::{header_of, Answer},
        route::Query,
        ApiService,
    },
    registry::{
        patch::PatchType,
        rest::{Reply, Target, APPLIED},
        semantics::Endpoint,
    },
};

impl ApiService {
    /// A write through the admission webhooks: the object as it would be
    /// stored (a dry run), then the webhooks, then the write of what they
    /// let through (with the precondition of the version they saw).
    pub(super) async fn admitted(
        &self,
        parts: &http::request::Parts,
        q: &Query,
        body: Bytes,
        t: &Target,
        sub: Option<&str>,
        user: &UserInfo,
    ) -> Result<Answer, ApiError> {
        // A patch names no version: when the object changed while the
        // webhooks were asked, kube-apiserver tries again, and so does this.
        let mut attempts = if parts.method == Method::PATCH { 5 } else { 1 };
        loop {
            attempts -= 1;
            match self
                .admitted_once(parts, q, body.clone(), t, sub, user)
                .await
            {
                Err(e) if e.code == 409 && e.reason == "Conflict" && attempts > 0 => continue,
                other => return other,
            }
        }
    }

    async fn admitted_once(
        &self,
        parts: &http::request::Parts,
        q: &Query,
        body: Bytes,
        t: &Target,
        sub: Option<&str>,
        user: &UserInfo,
    ) -> Result<Answer, ApiError> {
        let api = &self.shared.api;
        let endpoint = if sub == Some("status") {
            Endpoint::Status
        } else {
            Endpoint::Main
        };
        let content_type = header_of(parts, header::CONTENT_TYPE);
        let parse = |r: &Reply| serde_json::from_slice::<Value>(&r.body).ok();
        let (operation, trial, old) = match parts.method {
            Method::POST => {
                let obj = decode_object(&body, &content_type)?;
                (
                    "CREATE",
                    Some(api.create_as(t, obj, true, q.field_manager.as_deref())?),
                    None,
                )
            }
            Method::PUT => {
                let old = parse(&api.get(t)?);
                let obj = decode_object(&body, &content_type)?;
                (
                    "UPDATE",
                    Some(api.update_as(t, obj, endpoint, true, q.field_manager.as_deref())?),
                    old,
                )
            }
            Method::PATCH => {
                let ptype = patch_type(t, &content_type)?;
                // Server-side apply creates what is missing.
                let old = match api.get(t) {
                    Ok(r) => parse(&r),
                    Err(e) if ptype == PatchType::Apply && e.code == 404 => None,
                    Err(e) => return Err(e),
                };
                (
                    if old.is_none() { "CREATE" } else { "UPDATE" },
                    Some(if ptype == PatchType::Apply {
                        api.apply_patch(
                            t,
                            &body,
                            q.field_manager.as_deref(),
                            q.force,
                            endpoint,
                            true,
                        )?
                    } else {
                        api.patch_as(t, ptype, &body, endpoint, true, q.field_manager.as_deref())?
                    }),
                    old,
                )
            }
            Method::DELETE => ("DELETE", None, parse(&api.get(t)?)),
            _ => return Err(ApiError::method_not_allowed()),
        };
        let code = trial.as_ref().map_or(200, |r| r.code);
        // The trial recorded field ownership already (an apply's, or the
        // manager's update): the final write keeps it as it is.
        let manager = Some(APPLIED);
        if let Some(trial) = trial.as_ref().filter(|_| q.strict) {
            strict(trial)?;
        }
        let admitted = self
            .shared
            .admission
            .admit(
                &api.store,
                Attributes {
                    operation,
                    target: t,
                    subresource: sub,
                    object: trial.as_ref().and_then(parse),
                    old_object: old.clone(),
                    dry_run: q.dry_run,
                    user,
                },
            )
            .await?;
        let reply = match (operation, admitted.object) {
            ("DELETE", _) => api.delete(t, &delete_options(&body, q)?)?,
            (_, Some(obj)) if q.dry_run => Reply {
                code,
                body: Bytes::from(obj.to_string()),
                unknown_fields: trial
                    .as_ref()
                    .map(|r| r.unknown_fields.clone())
                    .unwrap_or_default(),
            },
            ("CREATE", Some(mut obj)) => {
                if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                    for generated in ["uid", "resourceVersion", "creationTimestamp"] {
                        meta.remove(generated);
                    }
                }
                api.create_as(t, obj, false, manager)?
            }
            (_, Some(mut obj)) => {
                // The version the webhooks saw, or a conflict.
                if let Some(rv) = old
                    .as_ref()
                    .and_then(|o| o.pointer("/metadata/resourceVersion"))
                {
                    obj["metadata"]["resourceVersion"] = rv.clone();
                }
                api.update_as(t, obj, endpoint, false, manager)?
            }
            (_, None) => return Err(ApiError::internal("admission lost the object")),
        };
        Ok(warned(reply, q, admitted.warnings))
    }
}
