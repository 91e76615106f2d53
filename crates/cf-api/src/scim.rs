//! SCIM 2.0 endpoints under `/scim/v2` (IDM-3; RFC 7644): discovery (ServiceProviderConfig,
//! ResourceTypes, Schemas), Users and Groups (filter, sort, paginate, PUT, PATCH, DELETE, ETags),
//! `.search` and Bulk with `bulkId` references. Bodies are `application/scim+json` (or plain
//! JSON); errors use the SCIM error schema. Callers need the identity administration right.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query as QueryParams, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cf_platform::authz::{Action, Authorized};
use cf_platform::scim::{GROUP_SCHEMA, Kind, Query, ScimFailure, USER_SCHEMA};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Caller;

const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const MAX_BULK: usize = 1000;

fn scim_json(status: StatusCode, v: &Value) -> Response {
    let mut r = (status, v.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/scim+json"),
    );
    r
}

fn failure(f: ScimFailure) -> Response {
    let mut v =
        json!({"schemas": [ERROR_SCHEMA], "status": f.status.to_string(), "detail": f.detail});
    if let Some(t) = f.scim_type {
        v["scimType"] = t.into();
    }
    scim_json(
        StatusCode::from_u16(f.status).unwrap_or(StatusCode::BAD_REQUEST),
        &v,
    )
}

fn with_resource(status: StatusCode, r: &Value) -> Response {
    let mut resp = scim_json(status, r);
    if let Some(v) = r["meta"]["version"]
        .as_str()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        resp.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED
        && let Some(l) = r["meta"]["location"]
            .as_str()
            .and_then(|v| HeaderValue::from_str(v).ok())
    {
        resp.headers_mut().insert(header::LOCATION, l);
    }
    resp
}

async fn admin(s: &AppState, caller: &Caller) -> Result<Authorized, Response> {
    caller.authorize(s, Action::ManageUsers).await.map_err(|e| {
        failure(ScimFailure {
            status: if e.code == cf_core::ErrorCode::Forbidden {
                403
            } else {
                401
            },
            scim_type: None,
            detail: e.message,
        })
    })
}

/// The resource type a path names and the caller's right to provision.
async fn begin(s: &AppState, caller: &Caller, res: &str) -> Result<(Kind, Authorized), Response> {
    let kind = kind_of(res).ok_or_else(|| not_found(res))?;
    Ok((kind, admin(s, caller).await?))
}

fn body_json(b: &Bytes) -> Result<Value, ScimFailure> {
    serde_json::from_slice(b).map_err(|e| ScimFailure {
        status: 400,
        scim_type: Some("invalidSyntax"),
        detail: format!("the body is not JSON: {e}"),
    })
}

fn if_match(h: &HeaderMap) -> Option<String> {
    h.get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn kind_of(segment: &str) -> Option<Kind> {
    match segment {
        "Users" => Some(Kind::User),
        "Groups" => Some(Kind::Group),
        _ => None,
    }
}

fn list_query(p: &BTreeMap<String, Value>) -> Result<Query, ScimFailure> {
    let s = |k: &str| -> Option<String> {
        p.iter()
            .find(|(x, _)| x.eq_ignore_ascii_case(k))
            .and_then(|(_, v)| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Array(a) => Some(
                    a.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                _ => None,
            })
    };
    let num = |k: &str| -> Result<Option<usize>, ScimFailure> {
        match s(k) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(|n| Some(usize::try_from(n.max(0)).unwrap_or(0)))
                .map_err(|_| ScimFailure {
                    status: 400,
                    scim_type: Some("invalidValue"),
                    detail: format!("{k} must be a whole number"),
                }),
        }
    };
    let list = |k: &str| -> Vec<String> {
        s(k).map(|v| {
            v.split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect()
        })
        .unwrap_or_default()
    };
    Ok(Query {
        filter: s("filter"),
        sort_by: s("sortBy"),
        descending: s("sortOrder").is_some_and(|o| o.eq_ignore_ascii_case("descending")),
        start_index: num("startIndex")?,
        count: num("count")?,
        attributes: list("attributes"),
        excluded: list("excludedAttributes"),
    })
}

/// `GET /scim/v2/{Users|Groups}`
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Path(res): Path<String>,
    QueryParams(q): QueryParams<BTreeMap<String, String>>,
) -> Response {
    let (kind, auth) = match begin(&s, &caller, &res).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let q: BTreeMap<String, Value> = q.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
    match list_query(&q) {
        Ok(q) => match s.scim.list(&auth, Some(kind), &q).await {
            Ok(v) => scim_json(StatusCode::OK, &v),
            Err(f) => failure(f),
        },
        Err(f) => failure(f),
    }
}

/// `POST /scim/v2/{Users|Groups}/.search`
pub async fn search(
    State(s): State<AppState>,
    caller: Caller,
    Path(res): Path<String>,
    b: Bytes,
) -> Response {
    let Some(kind) = kind_of(&res) else {
        return not_found(&res);
    };
    search_in(s, caller, Some(kind), b).await
}

async fn search_in(s: AppState, caller: Caller, kind: Option<Kind>, b: Bytes) -> Response {
    let auth = match admin(&s, &caller).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let body = match body_json(&b) {
        Ok(Value::Object(o)) => o.into_iter().collect::<BTreeMap<_, _>>(),
        Ok(_) => {
            return failure(ScimFailure {
                status: 400,
                scim_type: Some("invalidSyntax"),
                detail: "a SearchRequest object is required".into(),
            });
        }
        Err(f) => return failure(f),
    };
    match list_query(&body) {
        Ok(q) => match s.scim.list(&auth, kind, &q).await {
            Ok(v) => scim_json(StatusCode::OK, &v),
            Err(f) => failure(f),
        },
        Err(f) => failure(f),
    }
}

/// `POST /scim/v2/{Users|Groups}` (and `POST /scim/v2/.search`, every resource type).
pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    Path(res): Path<String>,
    b: Bytes,
) -> Response {
    if res == ".search" {
        return search_in(s, caller, None, b).await;
    }
    let (kind, auth) = match begin(&s, &caller, &res).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let r = async {
        let body = body_json(&b)?;
        s.scim.create(&auth, &caller.ctx, kind, &body).await
    }
    .await;
    match r {
        Ok((v, _receipt)) => with_resource(StatusCode::CREATED, &v),
        Err(f) => failure(f),
    }
}

/// `GET /scim/v2/{Users|Groups}/{id}`
pub async fn get(
    State(s): State<AppState>,
    caller: Caller,
    Path((res, id)): Path<(String, String)>,
    QueryParams(q): QueryParams<BTreeMap<String, String>>,
) -> Response {
    let (kind, auth) = match begin(&s, &caller, &res).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let q: BTreeMap<String, Value> = q.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
    let q = match list_query(&q) {
        Ok(q) => q,
        Err(f) => return failure(f),
    };
    match s.scim.get(&auth, kind, &id).await {
        Ok(v) => with_resource(
            StatusCode::OK,
            &cf_identity::scim::project(&v, &q.attributes, &q.excluded),
        ),
        Err(f) => failure(f),
    }
}

/// `PUT /scim/v2/{Users|Groups}/{id}`
pub async fn replace(
    State(s): State<AppState>,
    caller: Caller,
    Path((res, id)): Path<(String, String)>,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    write(&s, &caller, &res, &id, &h, &b, false).await
}

/// `PATCH /scim/v2/{Users|Groups}/{id}`
pub async fn patch(
    State(s): State<AppState>,
    caller: Caller,
    Path((res, id)): Path<(String, String)>,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    write(&s, &caller, &res, &id, &h, &b, true).await
}

/// PUT and PATCH: the same checks and answer, a different change to the resource.
async fn write(
    s: &AppState,
    caller: &Caller,
    res: &str,
    id: &str,
    h: &HeaderMap,
    b: &Bytes,
    patch: bool,
) -> Response {
    let (kind, auth) = match begin(s, caller, res).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let r = async {
        let body = body_json(b)?;
        let tag = if_match(h);
        if patch {
            s.scim
                .patch(&auth, &caller.ctx, kind, id, &body, tag.as_deref())
                .await
        } else {
            s.scim
                .replace(&auth, &caller.ctx, kind, id, &body, tag.as_deref())
                .await
        }
    }
    .await;
    match r {
        Ok((v, _)) => with_resource(StatusCode::OK, &v),
        Err(f) => failure(f),
    }
}

/// `DELETE /scim/v2/{Users|Groups}/{id}`
pub async fn delete(
    State(s): State<AppState>,
    caller: Caller,
    Path((res, id)): Path<(String, String)>,
) -> Response {
    let (kind, auth) = match begin(&s, &caller, &res).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match s.scim.delete(&auth, &caller.ctx, kind, &id).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(f) => failure(f),
    }
}

fn not_found(what: &str) -> Response {
    failure(ScimFailure {
        status: 404,
        scim_type: None,
        detail: format!("no SCIM endpoint `{what}`"),
    })
}

fn substitute(v: &mut Value, ids: &BTreeMap<String, String>) {
    match v {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix("bulkId:").and_then(|b| ids.get(b)) {
                *s = id.clone();
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| substitute(x, ids)),
        Value::Object(o) => o.values_mut().for_each(|x| substitute(x, ids)),
        _ => {}
    }
}

/// `POST /scim/v2/Bulk` (RFC 7644 §3.7): operations in order, `bulkId:` references resolved,
/// `failOnErrors` honoured.
pub async fn bulk(State(s): State<AppState>, caller: Caller, b: Bytes) -> Response {
    let auth = match admin(&s, &caller).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let body = match body_json(&b) {
        Ok(v) => v,
        Err(f) => return failure(f),
    };
    let Some(ops) = body["Operations"].as_array() else {
        return failure(ScimFailure {
            status: 400,
            scim_type: Some("invalidSyntax"),
            detail: "a BulkRequest with Operations is required".into(),
        });
    };
    if ops.len() > MAX_BULK {
        return failure(ScimFailure {
            status: 413,
            scim_type: Some("tooMany"),
            detail: format!("at most {MAX_BULK} operations per request"),
        });
    }
    let fail_on = body["failOnErrors"].as_u64().map(|n| n.max(1) as usize);
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    let mut errors = 0;
    for op in ops {
        if fail_on.is_some_and(|n| errors >= n) {
            break;
        }
        let method = op["method"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let bulk_id = op["bulkId"].as_str().map(str::to_string);
        let path = op["path"].as_str().unwrap_or_default().to_string();
        let mut data = op["data"].clone();
        substitute(&mut data, &ids);
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let (res, id) = (
            parts.next().unwrap_or_default(),
            parts.next().map(str::to_string),
        );
        let id = id.map(|i| {
            i.strip_prefix("bulkId:")
                .and_then(|b| ids.get(b).cloned())
                .unwrap_or(i)
        });
        let version = op["version"].as_str();
        let result: Result<(u16, Option<Value>), ScimFailure> =
            match (kind_of(res), method.as_str(), id) {
                (Some(k), "POST", None) => s
                    .scim
                    .create(&auth, &caller.ctx, k, &data)
                    .await
                    .map(|(v, _)| (201, Some(v))),
                (Some(k), "PUT", Some(i)) => s
                    .scim
                    .replace(&auth, &caller.ctx, k, &i, &data, version)
                    .await
                    .map(|(v, _)| (200, Some(v))),
                (Some(k), "PATCH", Some(i)) => s
                    .scim
                    .patch(&auth, &caller.ctx, k, &i, &data, version)
                    .await
                    .map(|(v, _)| (200, Some(v))),
                (Some(k), "DELETE", Some(i)) => s
                    .scim
                    .delete(&auth, &caller.ctx, k, &i)
                    .await
                    .map(|_| (204, None)),
                _ => Err(ScimFailure {
                    status: 400,
                    scim_type: Some("invalidSyntax"),
                    detail: format!("`{method} {path}` is not a bulk operation"),
                }),
            };
        let mut entry = json!({"method": method});
        if let Some(b) = &bulk_id {
            entry["bulkId"] = b.clone().into();
        }
        match result {
            Ok((status, v)) => {
                if let Some(v) = v {
                    if let (Some(b), Some(i)) = (&bulk_id, v["id"].as_str()) {
                        ids.insert(b.clone(), i.to_string());
                    }
                    entry["location"] = v["meta"]["location"].clone();
                    entry["version"] = v["meta"]["version"].clone();
                }
                entry["status"] = status.to_string().into();
            }
            Err(f) => {
                errors += 1;
                entry["status"] = f.status.to_string().into();
                let mut e = json!({"schemas": [ERROR_SCHEMA], "status": f.status.to_string(), "detail": f.detail});
                if let Some(t) = f.scim_type {
                    e["scimType"] = t.into();
                }
                entry["response"] = e;
            }
        }
        out.push(entry);
    }
    scim_json(
        StatusCode::OK,
        &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkResponse"], "Operations": out}),
    )
}

fn base(s: &AppState) -> String {
    format!("{}/scim/v2", s.oidc.issuer())
}

/// `GET /scim/v2/ServiceProviderConfig`
pub async fn service_provider_config(State(s): State<AppState>, caller: Caller) -> Response {
    if let Err(r) = admin(&s, &caller).await {
        return r;
    }
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": "https://github.com/chengfang/chengfang/blob/main/docs/ARCHITECTURE.md",
            "patch": {"supported": true},
            "bulk": {"supported": true, "maxOperations": MAX_BULK, "maxPayloadSize": 1_048_576},
            "filter": {"supported": true, "maxResults": cf_platform::scim::MAX_RESULTS},
            "changePassword": {"supported": false},
            "sort": {"supported": true},
            "etag": {"supported": true},
            "authenticationSchemes": [{"type": "oauthbearertoken", "name": "OAuth Bearer Token", "description": "A Chengfang API token with identity administration rights", "primary": true}],
            "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{}/ServiceProviderConfig", base(&s))},
        }),
    )
}

fn resource_type(s: &AppState, kind: Kind) -> Value {
    let (schema, ext) = match kind {
        Kind::User => (
            USER_SCHEMA,
            json!([{"schema": cf_platform::scim::ENTERPRISE_SCHEMA, "required": false}]),
        ),
        Kind::Group => (GROUP_SCHEMA, json!([])),
    };
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": kind.name(), "name": kind.name(), "endpoint": format!("/{}", kind.endpoint()),
        "description": kind.name(), "schema": schema, "schemaExtensions": ext,
        "meta": {"resourceType": "ResourceType", "location": format!("{}/ResourceTypes/{}", base(s), kind.name())},
    })
}

/// `GET /scim/v2/ResourceTypes`
pub async fn resource_types(State(s): State<AppState>, caller: Caller) -> Response {
    if let Err(r) = admin(&s, &caller).await {
        return r;
    }
    let all = vec![
        resource_type(&s, Kind::User),
        resource_type(&s, Kind::Group),
    ];
    scim_json(
        StatusCode::OK,
        &json!({"schemas": [cf_platform::scim::LIST_SCHEMA], "totalResults": 2, "startIndex": 1, "itemsPerPage": 2, "Resources": all}),
    )
}

/// `GET /scim/v2/ResourceTypes/{name}`
pub async fn resource_type_one(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = admin(&s, &caller).await {
        return r;
    }
    match name.as_str() {
        "User" => scim_json(StatusCode::OK, &resource_type(&s, Kind::User)),
        "Group" => scim_json(StatusCode::OK, &resource_type(&s, Kind::Group)),
        _ => not_found(&name),
    }
}

fn attr(name: &str, ty: &str, multi: bool, required: bool, extra: Value) -> Value {
    let mut a = json!({
        "name": name, "type": ty, "multiValued": multi, "description": name, "required": required,
        "caseExact": false, "mutability": "readWrite", "returned": "default", "uniqueness": "none",
    });
    if let (Some(o), Some(e)) = (a.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    a
}

fn schema_docs(s: &AppState) -> Vec<Value> {
    let b = base(s);
    let multi = |name: &str| {
        attr(
            name,
            "complex",
            true,
            false,
            json!({"subAttributes": [attr("value", "string", false, false, json!({})), attr("type", "string", false, false, json!({})), attr("primary", "boolean", false, false, json!({}))]}),
        )
    };
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": USER_SCHEMA, "name": "User", "description": "User Account",
        "attributes": [
            attr("userName", "string", false, true, json!({"uniqueness": "server"})),
            attr("name", "complex", false, false, json!({"subAttributes": [attr("formatted", "string", false, false, json!({})), attr("familyName", "string", false, false, json!({})), attr("givenName", "string", false, false, json!({}))]})),
            attr("displayName", "string", false, false, json!({})),
            attr("title", "string", false, false, json!({})),
            attr("active", "boolean", false, false, json!({})),
            multi("emails"),
            multi("phoneNumbers"),
        ],
        "meta": {"resourceType": "Schema", "location": format!("{b}/Schemas/{USER_SCHEMA}")},
    });
    let group = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": GROUP_SCHEMA, "name": "Group", "description": "Group",
        "attributes": [
            attr("displayName", "string", false, true, json!({"uniqueness": "server"})),
            attr("members", "complex", true, false, json!({"subAttributes": [
                attr("value", "string", false, false, json!({"mutability": "immutable"})),
                attr("display", "string", false, false, json!({"mutability": "immutable"})),
                attr("type", "string", false, false, json!({"mutability": "immutable", "canonicalValues": ["User", "Group"]})),
            ]})),
        ],
        "meta": {"resourceType": "Schema", "location": format!("{b}/Schemas/{GROUP_SCHEMA}")},
    });
    let enterprise = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": cf_platform::scim::ENTERPRISE_SCHEMA, "name": "EnterpriseUser", "description": "Enterprise User",
        "attributes": [
            attr("employeeNumber", "string", false, false, json!({})),
            attr("organization", "string", false, false, json!({})),
            attr("department", "string", false, false, json!({})),
        ],
        "meta": {"resourceType": "Schema", "location": format!("{b}/Schemas/{}", cf_platform::scim::ENTERPRISE_SCHEMA)},
    });
    vec![user, group, enterprise]
}

/// `GET /scim/v2/Schemas`
pub async fn schemas(State(s): State<AppState>, caller: Caller) -> Response {
    if let Err(r) = admin(&s, &caller).await {
        return r;
    }
    let all = schema_docs(&s);
    scim_json(
        StatusCode::OK,
        &json!({"schemas": [cf_platform::scim::LIST_SCHEMA], "totalResults": all.len(), "startIndex": 1, "itemsPerPage": all.len(), "Resources": all}),
    )
}

/// `GET /scim/v2/Schemas/{id}`
pub async fn schema_one(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = admin(&s, &caller).await {
        return r;
    }
    match schema_docs(&s).into_iter().find(|d| d["id"] == id.as_str()) {
        Some(d) => scim_json(StatusCode::OK, &d),
        None => not_found(&id),
    }
}
