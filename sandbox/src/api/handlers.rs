//! The resource verbs: get, list, create, update, patch, delete, deletecollection, and the
//! `status`/`scale` subresources. Each handler turns a parsed request into store calls and the
//! store's answer into the wire form (apiVersion of the request path, Table when asked).

use std::sync::Arc;

use base64::Engine;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use super::request::{Query, ResourceRequest, decode_body, flag};
use super::{Reply, convert, filter::Filter, scale, table};
use crate::error::ApiError;
use crate::patch::{
    PatchContext, PatchKind,
    apply::{Manager, record_update},
};
use crate::store::{
    DeleteOptions, GroupResource, Propagation, ResourceInfo, Store, Subresource, WriteOptions, meta,
};

/// Everything a verb handler needs.
pub struct Call<'a> {
    /// The store.
    pub store: &'a Arc<Store>,
    /// The resource being addressed.
    pub info: Arc<ResourceInfo>,
    /// The parsed path.
    pub req: &'a ResourceRequest,
    /// Query parameters.
    pub query: &'a Query,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Request body.
    pub body: &'a [u8],
}

impl Call<'_> {
    fn gr(&self) -> GroupResource {
        self.info.group_resource()
    }

    fn ns(&self) -> Option<&str> {
        if self.info.namespaced {
            self.req.namespace.as_deref()
        } else {
            None
        }
    }

    fn name(&self) -> &str {
        self.req.name.as_deref().unwrap_or_default()
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn content_type(&self) -> &str {
        self.header("content-type")
    }

    fn wants_table(&self) -> bool {
        self.header("accept")
            .split(',')
            .any(|a| a.contains("as=Table"))
    }

    fn wants_metadata(&self) -> bool {
        wants_metadata(self.header("accept"))
    }

    fn write_options(&self, subresource: Subresource) -> WriteOptions {
        WriteOptions {
            dry_run: self.query.contains_key("dryRun"),
            field_manager: Some(self.field_manager()),
            subresource,
            strict: self
                .query
                .get("fieldValidation")
                .is_some_and(|v| v == "Strict"),
        }
    }

    /// `?fieldManager=`, else the program name of the User-Agent, as kube-apiserver derives it.
    fn field_manager(&self) -> String {
        self.query.get("fieldManager").cloned().unwrap_or_else(|| {
            let ua = self.header("user-agent");
            let program = ua.split('/').next().unwrap_or_default();
            if program.is_empty() {
                "unknown".into()
            } else {
                program.to_owned()
            }
        })
    }

    /// The object as returned to the client: typed for the request's version.
    fn present(&self, mut obj: Value) -> Value {
        if convert::needed(&self.info, &self.req.version) {
            obj = convert::to_v1(&obj);
        }
        if let Some(map) = obj.as_object_mut() {
            map.insert("apiVersion".into(), json!(self.req.api_version()));
            map.insert("kind".into(), json!(self.info.kind));
        }
        obj
    }

    fn body_object(&self) -> Result<Value, ApiError> {
        let obj = decode_body(self.content_type(), self.body)?;
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        if let Some(kind) = obj.get("kind").and_then(Value::as_str)
            && kind != self.info.kind
            && !(self.req.subresource.as_deref() == Some("scale") && kind == "Scale")
        {
            return Err(ApiError::bad_request(format!(
                "the kind of the provided object ({kind}) does not match the kind of the request ({})",
                self.info.kind
            )));
        }
        if convert::needed(&self.info, &self.req.version)
            && self.req.subresource.as_deref() != Some("scale")
        {
            let stored = self
                .req
                .name
                .as_deref()
                .and_then(|n| self.store.get(&self.gr(), self.ns(), n).ok());
            return Ok(convert::to_v2(&obj, stored.as_ref()));
        }
        Ok(obj)
    }

    /// Puts the path's namespace into the body, refusing a different one.
    fn bind_namespace(&self, obj: &mut Value) -> Result<(), ApiError> {
        if !self.info.namespaced {
            return Ok(());
        }
        let path_ns = self.req.namespace.clone().unwrap_or_default();
        match meta::namespace(obj) {
            Some(ns) if ns != path_ns => Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            )),
            _ => {
                meta::metadata_mut(obj).insert("namespace".into(), json!(path_ns));
                Ok(())
            }
        }
    }

    fn manager<'m>(
        &'m self,
        name: &'m str,
        time: &'m str,
        subresource: Option<&'m str>,
    ) -> Manager<'m> {
        Manager {
            name,
            api_version: "",
            subresource,
            time,
        }
    }
}

/// Whether the client asked for `PartialObjectMetadata` (metadata-only lists and watches).
pub fn wants_metadata(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"))
}

/// The `meta.k8s.io/v1` `PartialObjectMetadata` of an object.
pub fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({}))})
}

/// Dispatches a resource request by method and subresource.
pub fn handle(call: &Call<'_>, method: &Method) -> Result<Reply, ApiError> {
    let sub = call.req.subresource.as_deref();
    match (method.as_str(), call.req.name.is_some(), sub) {
        ("GET", false, None) => list(call),
        ("GET", true, None | Some("status")) => get(call),
        ("GET", true, Some("scale")) => get_scale(call),
        ("POST", false, None) => create(call),
        ("PUT", true, None | Some("status") | Some("finalize")) => update(call, sub),
        ("PUT", true, Some("scale")) => update_scale(call),
        ("PATCH", true, None | Some("status")) => patch(call, sub),
        ("PATCH", true, Some("scale")) => patch_scale(call),
        ("DELETE", true, None) => delete(call),
        ("DELETE", false, None) => delete_collection(call),
        (_, _, Some(s)) if !matches!(s, "status" | "scale" | "finalize") => {
            Err(ApiError::no_route())
        }
        (m, _, _) => Err(ApiError::method_not_allowed(m)),
    }
}

fn get(call: &Call<'_>) -> Result<Reply, ApiError> {
    let obj = call.store.get(&call.gr(), call.ns(), call.name())?;
    if call.wants_table() {
        let rv = meta::resource_version(&obj).unwrap_or_default().to_owned();
        let t = table::render(
            &call.info,
            &call.req.version,
            &[call.present(obj)],
            &rv,
            call.query.get("includeObject").map(String::as_str),
            call.store.clock().now(),
        );
        return Ok(Reply::ok(t));
    }
    if call.wants_metadata() {
        return Ok(Reply::ok(partial(&obj)));
    }
    Ok(Reply::ok(call.present(obj)))
}

/// Continue tokens: the snapshot RV and the last key returned, base64-encoded JSON.
fn encode_continue(rv: u64, last: &Value) -> String {
    let token = json!({"rv": rv, "ns": meta::namespace(last).unwrap_or_default(), "name": meta::name(last)});
    base64::engine::general_purpose::STANDARD.encode(token.to_string())
}

fn decode_continue(store: &Store, token: &str) -> Result<(String, String), ApiError> {
    let bad = || ApiError::bad_request("continue key is not valid: illegal base64 data");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if v["rv"]
        .as_u64()
        .is_some_and(|rv| rv < store.oldest_watchable())
    {
        return Err(ApiError::expired(
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
        ));
    }
    Ok((
        v["ns"].as_str().unwrap_or_default().to_owned(),
        v["name"].as_str().unwrap_or_default().to_owned(),
    ))
}

fn list(call: &Call<'_>) -> Result<Reply, ApiError> {
    if flag(call.query, "watch") {
        return Err(ApiError::internal(
            "watch requests are served by the watch module",
        ));
    }
    let filter = Filter::parse(
        call.query.get("labelSelector").map(String::as_str),
        call.query.get("fieldSelector").map(String::as_str),
    )?;
    let after = match call.query.get("continue").filter(|t| !t.is_empty()) {
        Some(token) => Some(decode_continue(call.store, token)?),
        None => None,
    };
    let limit = call
        .query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let page = call
        .store
        .list_page(&call.gr(), call.ns(), after, limit, |o| filter.matches(o));
    let (items, rv) = (page.items, page.rv);
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if page.remaining > 0
        && let Some(last) = items.last()
    {
        metadata["continue"] = json!(encode_continue(rv, last));
        metadata["remainingItemCount"] = json!(page.remaining);
    }
    let items: Vec<Value> = items.into_iter().map(|o| call.present(o)).collect();
    if call.wants_table() {
        let t = table::render(
            &call.info,
            &call.req.version,
            &items,
            &rv.to_string(),
            call.query.get("includeObject").map(String::as_str),
            call.store.clock().now(),
        );
        return Ok(Reply::ok(t));
    }
    if call.wants_metadata() {
        let items: Vec<Value> = items.iter().map(partial).collect();
        let list = json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "items": items});
        return Ok(Reply::ok(list));
    }
    let kind = format!("{}List", call.info.kind);
    Ok(Reply::ok(
        json!({"kind": kind, "apiVersion": call.req.api_version(), "metadata": metadata, "items": items}),
    ))
}

fn create(call: &Call<'_>) -> Result<Reply, ApiError> {
    let mut obj = call.body_object()?;
    call.bind_namespace(&mut obj)?;
    let time = call.store.now_string();
    let manager = call.field_manager();
    let api_version = call.req.api_version();
    record_update(
        None,
        &mut obj,
        &Manager {
            api_version: &api_version,
            ..call.manager(&manager, &time, None)
        },
    );
    let created = call
        .store
        .create(&call.gr(), obj, &call.write_options(Subresource::Main))?;
    Ok(Reply::new(StatusCode::CREATED, call.present(created)))
}

fn update(call: &Call<'_>, sub: Option<&str>) -> Result<Reply, ApiError> {
    let mut obj = call.body_object()?;
    call.bind_namespace(&mut obj)?;
    let body_name = meta::name(&obj).to_owned();
    if !body_name.is_empty() && body_name != call.name() {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            call.name()
        )));
    }
    meta::metadata_mut(&mut obj).insert("name".into(), json!(call.name()));
    let subresource = if sub == Some("status") {
        Subresource::Status
    } else {
        Subresource::Main
    };
    if let Ok(old) = call.store.get(&call.gr(), call.ns(), call.name()) {
        let time = call.store.now_string();
        let manager = call.field_manager();
        let api_version = call.req.api_version();
        record_update(
            Some(&old),
            &mut obj,
            &Manager {
                api_version: &api_version,
                ..call.manager(&manager, &time, sub)
            },
        );
    }
    let updated = call
        .store
        .update(&call.gr(), obj, &call.write_options(subresource))?;
    Ok(Reply::ok(call.present(updated)))
}

fn patch_kind(call: &Call<'_>) -> Result<(PatchKind, Value), ApiError> {
    let mut kind = PatchKind::from_content_type(call.content_type())?;
    if let PatchKind::Apply { force } = &mut kind {
        *force = flag(call.query, "force");
        if !call.query.contains_key("fieldManager") {
            return Err(ApiError::bad_request(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
    } else if call.query.contains_key("force") {
        return Err(ApiError::bad_request(
            "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch",
        ));
    }
    let body_type = if matches!(kind, PatchKind::Apply { .. }) {
        "application/yaml"
    } else {
        "application/json"
    };
    let patch = decode_body(body_type, call.body)?;
    Ok((kind, patch))
}

fn patch(call: &Call<'_>, sub: Option<&str>) -> Result<Reply, ApiError> {
    let (kind, patch) = patch_kind(call)?;
    if convert::needed(&call.info, &call.req.version) {
        return patch_converted(call, kind, &patch, sub);
    }
    let subresource = if sub == Some("status") {
        Subresource::Status
    } else {
        Subresource::Main
    };
    let ctx = PatchContext {
        field_manager: Some(call.field_manager()),
        api_version: call.req.api_version(),
        subresource: sub.map(str::to_owned),
        options: call.write_options(subresource),
    };
    let existed = call.store.get(&call.gr(), call.ns(), call.name()).is_ok();
    let out = call
        .store
        .patch(&call.gr(), call.ns(), call.name(), kind, &patch, &ctx)?;
    let code = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(Reply::new(code, call.present(out)))
}

/// PATCH on a converted version: the patch applies to the converted representation.
fn patch_converted(
    call: &Call<'_>,
    kind: PatchKind,
    patch: &Value,
    sub: Option<&str>,
) -> Result<Reply, ApiError> {
    let kind = if matches!(kind, PatchKind::Apply { .. }) {
        PatchKind::Merge
    } else {
        kind
    };
    let subresource = if sub == Some("status") {
        Subresource::Status
    } else {
        Subresource::Main
    };
    let (time, manager, api_version) = (
        call.store.now_string(),
        call.field_manager(),
        call.req.api_version(),
    );
    for _ in 0..5 {
        let current = call.store.get(&call.gr(), call.ns(), call.name())?;
        let patched = crate::patch::apply_patch(kind, false, &convert::to_v1(&current), patch)?;
        let mut new = convert::to_v2(&patched, Some(&current));
        let precondition = crate::patch::precondition(kind, patch, &current, &new);
        let expected = precondition
            .as_deref()
            .or_else(|| meta::resource_version(&current))
            .unwrap_or_default()
            .to_owned();
        meta::metadata_mut(&mut new).insert("resourceVersion".into(), json!(expected));
        record_update(
            Some(&current),
            &mut new,
            &Manager {
                api_version: &api_version,
                ..call.manager(&manager, &time, sub)
            },
        );
        match call
            .store
            .update(&call.gr(), new, &call.write_options(subresource))
        {
            Err(e) if e.reason == "Conflict" && precondition.is_none() => continue,
            other => return other.map(|o| Reply::ok(call.present(o))),
        }
    }
    Err(ApiError::conflict(&call.gr(), call.name()))
}

fn get_scale(call: &Call<'_>) -> Result<Reply, ApiError> {
    let obj = call.store.get(&call.gr(), call.ns(), call.name())?;
    Ok(Reply::ok(scale::to_scale(&call.info, &obj)?))
}

fn update_scale(call: &Call<'_>) -> Result<Reply, ApiError> {
    let body = call.body_object()?;
    let obj = call.store.get(&call.gr(), call.ns(), call.name())?;
    let mut new = scale::apply_scale(&call.info, &obj, &body)?;
    scale_write(call, &obj, &mut new)
}

fn patch_scale(call: &Call<'_>) -> Result<Reply, ApiError> {
    let (kind, patch) = patch_kind(call)?;
    let obj = call.store.get(&call.gr(), call.ns(), call.name())?;
    let mut new = scale::patch_scale(&call.info, &obj, kind, &patch)?;
    scale_write(call, &obj, &mut new)
}

fn scale_write(call: &Call<'_>, old: &Value, new: &mut Value) -> Result<Reply, ApiError> {
    let time = call.store.now_string();
    let manager = call.field_manager();
    let api_version = call.req.api_version();
    record_update(
        Some(old),
        new,
        &Manager {
            api_version: &api_version,
            ..call.manager(&manager, &time, Some("scale"))
        },
    );
    let updated = call.store.update(
        &call.gr(),
        new.clone(),
        &call.write_options(Subresource::Main),
    )?;
    Ok(Reply::ok(scale::to_scale(&call.info, &updated)?))
}

fn delete_options(call: &Call<'_>) -> Result<DeleteOptions, ApiError> {
    let body = if call.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        decode_body(call.content_type(), call.body)?
    };
    let policy = call
        .query
        .get("propagationPolicy")
        .cloned()
        .or_else(|| body["propagationPolicy"].as_str().map(str::to_owned));
    let orphan =
        body["orphanDependents"].as_bool() == Some(true) || flag(call.query, "orphanDependents");
    let propagation = match policy.as_deref() {
        Some("Foreground") => Some(Propagation::Foreground),
        Some("Orphan") => Some(Propagation::Orphan),
        Some("Background") => Some(Propagation::Background),
        None if orphan => Some(Propagation::Orphan),
        None => None,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unsupported propagationPolicy: {other}"
            )));
        }
    };
    Ok(DeleteOptions {
        dry_run: call.query.contains_key("dryRun")
            || body.get("dryRun").is_some_and(|d| !d.is_null()),
        propagation,
        precondition_rv: body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_owned),
        precondition_uid: body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

fn delete(call: &Call<'_>) -> Result<Reply, ApiError> {
    let opts = delete_options(call)?;
    let out = call
        .store
        .delete(&call.gr(), call.ns(), call.name(), &opts)?;
    if meta::is_deleting(&out) {
        return Ok(Reply::ok(call.present(out)));
    }
    let details = json!({"name": call.name(), "group": call.info.group, "kind": call.info.plural, "uid": meta::uid(&out)});
    Ok(Reply::ok(
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
    ))
}

fn delete_collection(call: &Call<'_>) -> Result<Reply, ApiError> {
    let opts = delete_options(call)?;
    let filter = Filter::parse(
        call.query.get("labelSelector").map(String::as_str),
        call.query.get("fieldSelector").map(String::as_str),
    )?;
    let (items, rv) = call.store.list(&call.gr(), call.ns());
    let mut deleted = vec![];
    for item in items.iter().filter(|o| filter.matches(o)) {
        match call
            .store
            .delete(&call.gr(), meta::namespace(item), meta::name(item), &opts)
        {
            Ok(out) => deleted.push(call.present(out)),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Reply::ok(
        json!({"kind": format!("{}List", call.info.kind), "apiVersion": call.req.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": deleted}),
    ))
}
