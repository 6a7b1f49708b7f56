//! GET, PUT and PATCH of `/scale`: the Scale read from the object, and the
//! replicas of a Scale written back through the update rules (so the
//! object's resourceVersion is the Scale's precondition, as in
//! kube-apiserver).

use serde_json::Value;

use crate::{
    apimachinery::errors::ApiError,
    registry::{
        generic::Api,
        patch::{self, PatchType},
        resources::ScalePaths,
        rest::{Reply, Target},
        scale,
        semantics::Endpoint,
    },
};

impl Api {
    fn scale_paths(&self, t: &Target) -> Result<(ScalePaths, i64), ApiError> {
        let paths = t
            .kind
            .version(&t.version)
            .and_then(|v| v.scale.clone())
            .ok_or_else(ApiError::no_route)?;
        Ok((paths, if t.kind.custom { 0 } else { 1 }))
    }

    fn scale_of(&self, t: &Target, body: &[u8]) -> Result<Value, ApiError> {
        let (paths, default) = self.scale_paths(t)?;
        let obj: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::internal(format!("a stored object is not JSON: {e}")))?;
        Ok(scale::render(&obj, &paths, default))
    }

    /// GET the object's Scale.
    pub fn get_scale(&self, t: &Target) -> Result<Reply, ApiError> {
        let reply = self.get(t)?;
        let scale = self.scale_of(t, &reply.body)?;
        Ok(Reply::ok(scale.to_string().into()))
    }

    /// PUT a Scale: its `spec.replicas` goes to the object, with the
    /// Scale's resourceVersion, if any, as the precondition.
    pub fn update_scale(
        &self,
        t: &Target,
        scale: &Value,
        dry_run: bool,
    ) -> Result<Reply, ApiError> {
        let (paths, _) = self.scale_paths(t)?;
        if scale
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k != "Scale")
        {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({}) does not match the expected kind (Scale)",
                scale["kind"].as_str().unwrap_or_default()
            )));
        }
        let causes = scale::validate(scale);
        if !causes.is_empty() {
            return Err(ApiError::invalid("autoscaling", "Scale", &t.name, causes));
        }
        let replicas = scale
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let precondition = scale
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|rv| !rv.is_empty())
            .map(String::from);
        let reply = self.replace_with(t, Endpoint::Main, dry_run, None, |old| {
            let mut new = old.clone();
            scale::set_replicas(&mut new, &paths, replicas);
            match &precondition {
                Some(rv) => new["metadata"]["resourceVersion"] = Value::String(rv.clone()),
                None => {
                    if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                        meta.remove("resourceVersion");
                    }
                }
            }
            Ok(new)
        })?;
        let scale = self.scale_of(t, &reply.body)?;
        Ok(Reply::ok(scale.to_string().into()))
    }

    /// PATCH the object's Scale (merge, JSON or strategic merge patch),
    /// then write it as a PUT would.
    pub fn patch_scale(
        &self,
        t: &Target,
        ptype: PatchType,
        patch_body: &[u8],
        dry_run: bool,
    ) -> Result<Reply, ApiError> {
        let current: Value = serde_json::from_slice(&self.get_scale(t)?.body)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let patched = match ptype {
            PatchType::Json => patch::apply_json_patch(&current, patch_body)?,
            PatchType::Merge | PatchType::Strategic => {
                patch::apply_merge_patch(&current, patch_body)?
            }
            PatchType::Apply => {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json",
                ))
            }
        };
        self.update_scale(t, &patched, dry_run)
    }
}
