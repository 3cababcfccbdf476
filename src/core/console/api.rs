//! How the console makes its requests: each one goes through the API's own router (the same
//! route guards, handlers, validation, idempotency and audit records as a client's request),
//! as the signed-in user. Nothing here reads or writes a table.
//!
//! **Forms** post to `/admin/act` with the API request they stand for (`_method`, `_path`),
//! where to go back to (`_back`), an `Idempotency-Key` made when the page was drawn (`_idem`: a
//! form sent twice is answered once) and their fields, turned into the JSON body by their names:
//! `a.b` nests, and a suffix says the type (`name:int`, `:bool`, `:list` for repeated values,
//! `:lines` one per line, `:json`, `:opt` left out when empty, `:null` null when empty). The
//! answer comes back as a notice, or, for a refusal, as the problem's message and its field errors
//! next to the fields, on the page the form came from (kept for that session only, for a few
//! minutes, under a random key in the address).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Map, Value};
use tower::ServiceExt;

use super::{Console, Forbidden, api_caller, failed_page};
use crate::core::db::changes::KeepsCaches;
use crate::core::state::AppState;
use crate::shared::secret;

/// The API's router, as the console calls it (attached to the console's routes).
#[derive(Clone)]
pub struct ApiRouter(pub Router);

/// The largest API answer the console reads into memory to draw a page (files pass through).
const MAX_ANSWER: usize = 32 << 20;

/// A signed-in console user with what a screen needs: the state, the API and the page's flash.
pub struct Ui {
    pub state: AppState,
    pub console: Console,
    api: Router,
    peer: Option<ConnectInfo<SocketAddr>>,
    user_agent: Option<HeaderValue>,
    /// What the last form sent from this page came to, if the address names it.
    pub flash: Option<Flash>,
}

impl FromRequestParts<AppState> for Ui {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let console = Console::from_request_parts(parts, state).await?;
        // An account that must change its password or set up its second factor does that first
        // (on its account page; the API refuses it everything else anyway).
        let path = parts.uri.path();
        if api_caller(&console).is_err() && path != "/admin/account" && path != "/admin/act" {
            return Err(Redirect::to("/admin/account").into_response());
        }
        let Some(ApiRouter(api)) = parts.extensions.get::<ApiRouter>().cloned() else {
            return Err(failed_page(StatusCode::INTERNAL_SERVER_ERROR));
        };
        let flash = parts
            .uri
            .query()
            .and_then(|q| {
                q.split('&')
                    .find_map(|pair| pair.strip_prefix("flash="))
                    .map(str::to_owned)
            })
            .and_then(|key| take_flash(&key, &console.secret_hash));
        Ok(Ui {
            state: state.clone(),
            api,
            peer: parts.extensions.get::<ConnectInfo<SocketAddr>>().cloned(),
            user_agent: parts.headers.get(header::USER_AGENT).cloned(),
            console,
            flash,
        })
    }
}

/// An API answer, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON (`null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Whether the body is a file to hand to the browser rather than JSON to draw.
    fn is_file(&self) -> bool {
        let kind = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        self.headers.contains_key(header::CONTENT_DISPOSITION)
            || !(kind.starts_with("application/json") || kind.is_empty())
    }
}

impl Ui {
    /// The API request `method path` with `body` as this user; the answer as the API gave it.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        extra: &[(&'static str, String)],
    ) -> Response {
        let mut request = axum::http::Request::builder().method(method).uri(path);
        if let Some(id) = crate::core::http::request_id::current() {
            request = request.header("x-request-id", id);
        }
        if let Some(agent) = &self.user_agent {
            request = request.header(header::USER_AGENT, agent);
        }
        for (name, value) in extra {
            request = request.header(*name, value);
        }
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let Ok(mut request) = request.body(body) else {
            return failed_page(StatusCode::BAD_REQUEST);
        };
        // Who is asking: the route guards take the console's caller as already authenticated.
        request.extensions_mut().insert(self.console.caller.clone());
        if let Some(peer) = &self.peer {
            request.extensions_mut().insert(*peer);
        }
        request.extensions_mut().insert(self.state.clone());
        match self.api.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// [`Ui::send`], read whole.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Answer {
        let response = self.send(method, path, body, &[]).await;
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, MAX_ANSWER)
            .await
            .unwrap_or_default();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// `GET path` as JSON, or the page saying why not.
    pub async fn get(&self, path: &str) -> Result<Value, Response> {
        let answer = self.call(Method::GET, path, None).await;
        match answer.status.is_success() {
            true => Ok(answer.json()),
            false => Err(self.refusal(&answer)),
        }
    }

    /// `GET path` as JSON when the user holds `permission` (so a screen that shows a part
    /// only to some users does not record a denial for the others), `None` otherwise or when
    /// it failed.
    pub async fn read_if(&self, permission: &str, path: &str) -> Option<Value> {
        if !permission.is_empty() && !self.may(permission) {
            return None;
        }
        let answer = self.call(Method::GET, path, None).await;
        answer.status.is_success().then(|| answer.json())
    }

    /// A refused or failed API answer as a page.
    pub fn refusal(&self, answer: &Answer) -> Response {
        let problem = answer.json();
        let why = problem["detail"]
            .as_str()
            .filter(|_| !answer.status.is_server_error())
            .unwrap_or("Something went wrong on the server; its log has the details. Try again in a moment.");
        super::pages::refused_for(Some(&self.console), answer.status, why)
    }

    /// Whether the user holds `permission`.
    pub fn may(&self, permission: &str) -> bool {
        self.console.caller.permissions.contains(permission)
    }

    /// Refuses a screen that needs `permission` the user lacks (403, recorded as a denial, as
    /// the API's route guard does).
    pub async fn require(&self, permission: &str) -> Result<(), Response> {
        super::require(&self.state, &self.console, permission)
            .await
            .map_err(IntoResponse::into_response)
    }

    /// The session's CSRF token, for forms.
    pub fn csrf(&self) -> &str {
        &self.console.csrf
    }
}

/// What a form came to, shown once on the page it came from.
#[derive(Debug, Clone, Default)]
pub struct Flash {
    /// The form it answers (`_form`).
    pub form: String,
    pub notice: Option<String>,
    pub error: Option<String>,
    /// Field errors by field name (as the API names them).
    pub fields: HashMap<String, String>,
    /// What was sent (never passwords), to fill the form again.
    pub values: HashMap<String, String>,
}

/// Flashes waiting to be shown: key -> (made, session, flash).
type Store = HashMap<String, (Instant, [u8; 32], Flash)>;
static FLASHES: LazyLock<Mutex<Store>> = LazyLock::new(|| Mutex::new(HashMap::new()));
const FLASH_LIFETIME: Duration = Duration::from_secs(300);
/// Flashes kept per session and in all (the oldest go first), and the longest value kept to
/// fill a form again: a flood of forms costs bounded memory.
const FLASHES_PER_SESSION: usize = 16;
const FLASHES_IN_ALL: usize = 4096;
const FLASH_VALUE_CHARS: usize = 4000;

fn put_flash(session: [u8; 32], mut flash: Flash) -> String {
    let (key, _) = secret::new("");
    flash
        .values
        .retain(|_, v| v.chars().count() <= FLASH_VALUE_CHARS);
    let mut store = FLASHES.lock().unwrap_or_else(|e| e.into_inner());
    store.retain(|_, (made, _, _)| made.elapsed() < FLASH_LIFETIME);
    let oldest = |store: &Store, mine: bool| {
        store
            .iter()
            .filter(|(_, (_, owner, _))| !mine || *owner == session)
            .min_by_key(|(_, (made, _, _))| *made)
            .map(|(k, _)| k.clone())
    };
    while store
        .values()
        .filter(|(_, owner, _)| *owner == session)
        .count()
        >= FLASHES_PER_SESSION
    {
        let Some(k) = oldest(&store, true) else { break };
        store.remove(&k);
    }
    while store.len() >= FLASHES_IN_ALL {
        let Some(k) = oldest(&store, false) else {
            break;
        };
        store.remove(&k);
    }
    store.insert(key.clone(), (Instant::now(), session, flash));
    key
}

fn take_flash(key: &str, session: &[u8; 32]) -> Option<Flash> {
    let mut store = FLASHES.lock().unwrap_or_else(|e| e.into_inner());
    match store.get(key) {
        Some((made, owner, _)) if owner == session && made.elapsed() < FLASH_LIFETIME => {
            store.remove(key).map(|(_, _, flash)| flash)
        }
        _ => None,
    }
}

/// `path` with `?flash=key` (or `&flash=key`) added.
fn with_flash(path: &str, key: &str) -> String {
    let (path, fragment) = match path.split_once('#') {
        Some((p, f)) => (p, format!("#{f}")),
        None => (path, String::new()),
    };
    let base: String = match path.split_once('?') {
        Some((p, q)) => {
            let kept: Vec<&str> = q.split('&').filter(|p| !p.starts_with("flash=")).collect();
            match kept.is_empty() {
                true => p.to_owned(),
                false => format!("{p}?{}", kept.join("&")),
            }
        }
        None => path.to_owned(),
    };
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}flash={key}{fragment}")
}

/// A console address to go back to: only `/admin...` on this server.
fn local(path: &str) -> Option<&str> {
    (path.starts_with("/admin") && !path.contains("//") && !path.contains('\\')).then_some(path)
}

/// An API path a form may name: `/api/v1/...`, no way out of it.
fn api_path(path: &str) -> Option<&str> {
    let clean = !path.contains("..")
        && !path.contains("//")
        && !path.to_ascii_lowercase().contains("%00")
        && !path.chars().any(char::is_control);
    (path.starts_with("/api/v1/") && clean).then_some(path)
}

/// The JSON body a form's fields stand for (see the module's documentation), and an error
/// naming a field whose value is not of its type.
pub fn body_of(fields: &[(String, String)]) -> Result<Value, (String, String)> {
    let mut root = Map::new();
    let mut lists: HashMap<String, Vec<Value>> = HashMap::new();
    for (name, value) in fields {
        if name.starts_with('_') || name == "csrf" {
            continue;
        }
        let (path, kind) = name.split_once(':').unwrap_or((name.as_str(), ""));
        let value = match kind {
            "" => Some(Value::String(value.clone())),
            "opt" => (!value.trim().is_empty()).then(|| Value::String(value.trim().to_owned())),
            "null" => Some(match value.trim().is_empty() {
                true => Value::Null,
                false => Value::String(value.trim().to_owned()),
            }),
            "int" => match value.trim() {
                "" => None,
                v => Some(Value::from(v.parse::<i64>().map_err(|_| {
                    (api_name(path), "must be a whole number".to_owned())
                })?)),
            },
            "bool" => Some(Value::Bool(matches!(value.as_str(), "true" | "on" | "1"))),
            "lines" => Some(Value::Array(
                value
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(|l| Value::String(l.to_owned()))
                    .collect(),
            )),
            "json" => match value.trim() {
                "" => None,
                v => Some(
                    serde_json::from_str(v)
                        .map_err(|e| (api_name(path), format!("is not JSON: {e}")))?,
                ),
            },
            "list" => {
                lists
                    .entry(path.to_owned())
                    .or_default()
                    .extend((!value.is_empty()).then(|| Value::String(value.clone())));
                continue;
            }
            other => return Err((api_name(path), format!("unknown field type `{other}`"))),
        };
        if let Some(value) = value {
            set(&mut root, path, value);
        }
    }
    for (path, values) in lists {
        set(&mut root, &path, Value::Array(values));
    }
    Ok(Value::Object(root))
}

/// The name the API gives a form's field in its errors: no type suffix, `a[b.c]` as `a.b.c`.
pub fn api_name(name: &str) -> String {
    let path = name.split(':').next().unwrap_or(name);
    path.replace('[', ".").replace(']', "")
}

/// The keys a field's path goes through: split at dots, except inside brackets (`values[a.b]`
/// is `values`, then the key `a.b`: setting names hold dots).
fn segments(path: &str) -> Vec<&str> {
    match path.split_once('[') {
        Some((head, rest)) => {
            let mut out: Vec<&str> = head.split('.').filter(|s| !s.is_empty()).collect();
            out.push(rest.trim_end_matches(']'));
            out
        }
        None => path.split('.').collect(),
    }
}

fn set(root: &mut Map<String, Value>, path: &str, value: Value) {
    let mut parts = segments(path).into_iter().peekable();
    let mut node = root;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            node.insert(part.to_owned(), value);
            return;
        }
        let child = node
            .entry(part.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !child.is_object() {
            *child = Value::Object(Map::new());
        }
        let Value::Object(next) = child else { return };
        node = next;
    }
}

/// `POST /admin/act`: a form standing for an API request (see the module's documentation).
pub async fn act(ui: Ui, axum::Form(fields): axum::Form<Vec<(String, String)>>) -> Response {
    let field = |name: &str| {
        fields
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    if let Err(refused) = ui.console.check(field("csrf")) {
        return refused.into_response();
    }
    let (Some(path), Some(back)) = (api_path(field("_path")), local(field("_back"))) else {
        return Forbidden("This form names no request the console makes.").into_response();
    };
    let method = match field("_method") {
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "DELETE" => Method::DELETE,
        _ => Method::POST,
    };
    let form = field("_form").to_owned();
    let values: HashMap<String, String> = fields
        .iter()
        .filter(|(k, _)| !k.starts_with('_') && k != "csrf" && !k.contains("password"))
        .map(|(k, v)| (api_name(k), v.clone()))
        .collect();
    // A refusal changed nothing: the caches the tills read stay (the layer that forgets them
    // after a write would otherwise see a redirect and empty them).
    let again = |flash: Flash| {
        let key = put_flash(ui.console.secret_hash, flash);
        let mut response = Redirect::to(&with_flash(back, &key)).into_response();
        response.extensions_mut().insert(KeepsCaches);
        response
    };
    let body = match body_of(&fields) {
        Ok(body) => body,
        Err((name, why)) => {
            return again(Flash {
                form,
                error: Some("A field is not right; see below.".to_owned()),
                fields: HashMap::from([(name, why)]),
                values,
                ..Flash::default()
            });
        }
    };
    let mut extra = Vec::new();
    let idem = field("_idem");
    if !idem.is_empty() {
        extra.push(("idempotency-key", idem.to_owned()));
    }
    let send_body = (method != Method::DELETE || body.as_object().is_some_and(|b| !b.is_empty()))
        .then_some(&body);
    let response = ui.send(method, path, send_body, &extra).await;
    let status = response.status();
    let (parts, stream) = response.into_parts();
    if status.is_success() && (parts.headers.contains_key(header::CONTENT_DISPOSITION)) {
        // A file (the support bundle, an export): handed to the browser as it comes.
        return Response::from_parts(parts, stream);
    }
    let Ok(body) = axum::body::to_bytes(stream, MAX_ANSWER).await else {
        return failed_page(StatusCode::BAD_GATEWAY);
    };
    let answer = Answer {
        status,
        headers: parts.headers,
        body,
    };
    if status.is_success() {
        return succeeded(&ui, answer, field, form, back);
    }
    if status.is_server_error() {
        return ui.refusal(&answer);
    }
    let problem = answer.json();
    let fields = field_errors(&problem);
    again(Flash {
        form,
        error: Some(
            problem["detail"]
                .as_str()
                .unwrap_or("The server refused this.")
                .to_owned(),
        ),
        fields,
        values,
        ..Flash::default()
    })
}

/// A problem document's field errors, by field.
pub fn field_errors(problem: &Value) -> HashMap<String, String> {
    problem["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["field"].as_str()?.to_owned(),
                e["message"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// `template` with each `{field}` replaced by that field of the answer (a text or number at its
/// top level; instants as the console shows them).
fn filled(template: &str, answer: &Value) -> String {
    let mut out = template.to_owned();
    if let Some(fields) = answer.as_object() {
        for (key, value) in fields {
            let needle = format!("{{{key}}}");
            if out.contains(&needle) {
                out = out.replace(&needle, &super::pages::text(value));
            }
        }
    }
    out
}

/// A form's request succeeded: a file goes to the browser (or the JSON answer as the file the
/// form names with `_download`); otherwise the form's notice (`_done`, `{field}`s filled from the
/// answer) is shown on `_then` or the page it came from.
fn succeeded<'a>(
    ui: &Ui,
    answer: Answer,
    field: impl Fn(&str) -> &'a str,
    form: String,
    back: &str,
) -> Response {
    let download = field("_download");
    if answer.is_file() {
        return file_response(answer, "download");
    }
    let json = answer.json();
    if !download.is_empty() {
        return file_response(
            Answer {
                headers: HeaderMap::from_iter([(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )]),
                body: Bytes::from(serde_json::to_vec_pretty(&json).unwrap_or_default()),
                ..answer
            },
            download,
        );
    }
    let notice = field("_done");
    let notice = match (notice.is_empty(), json.get("job_id")) {
        (true, Some(_)) => "Started; it runs in the background.".to_owned(),
        (true, None) => "Done.".to_owned(),
        (false, _) => filled(notice, &json),
    };
    let then = local(field("_then")).unwrap_or(back);
    let then = match json.get("id").and_then(Value::as_str) {
        Some(id) => then.replace("{id}", id),
        None if then.contains("{id}") => back.to_owned(),
        None => then.to_owned(),
    };
    let key = put_flash(
        ui.console.secret_hash,
        Flash {
            form,
            notice: Some(notice),
            ..Flash::default()
        },
    );
    Redirect::to(&with_flash(&then, &key)).into_response()
}

/// A file answer for the browser, named `name` unless the API named it.
fn file_response(answer: Answer, name: &str) -> Response {
    let mut response = (answer.status, answer.body).into_response();
    let headers = response.headers_mut();
    for key in [header::CONTENT_TYPE, header::CONTENT_DISPOSITION] {
        if let Some(value) = answer.headers.get(&key) {
            headers.insert(key, value.clone());
        }
    }
    if !headers.contains_key(header::CONTENT_DISPOSITION)
        && let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
    {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// `GET /admin/file/api/v1/...`: a file the API serves (a PDF report, a CSV export, a backup),
/// passed to the browser as it comes; a refusal as a page.
pub async fn file(ui: Ui, uri: axum::http::Uri) -> Response {
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or_default()
        .trim_start_matches("/admin/file");
    let Some(path) = api_path(path) else {
        return Forbidden("This address names no file the console serves.").into_response();
    };
    let response = ui.send(Method::GET, path, None, &[]).await;
    if response.status().is_success() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, MAX_ANSWER)
        .await
        .unwrap_or_default();
    ui.refusal(&Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// A fresh idempotency key for a form that creates something.
pub fn idempotency_key() -> String {
    secret::new("").0
}

/// A query string from `pairs`, leaving out empty values.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let kept: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{}={}", urlencoding(k), urlencoding(v)))
        .collect();
    match kept.is_empty() {
        true => String::new(),
        false => format!("?{}", kept.join("&")),
    }
}

/// Percent-encodes a query value.
pub fn urlencoding(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Pretty JSON of `value`, for showing a whole answer (a verification, a check).
pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn form_fields_become_the_json_the_api_takes() {
        let body = body_of(&f(&[
            ("csrf", "x"),
            ("_path", "/api/v1/users"),
            ("username", "carla"),
            ("business.name", "Shop"),
            ("limit:int", "5"),
            ("blank:int", ""),
            ("enabled:bool", "true"),
            ("roles:list", "cashier"),
            ("roles:list", "manager"),
            ("lines:lines", "a\n\n b \n"),
            ("nick:opt", " "),
            ("tax:null", ""),
            ("raw:json", "[1,2]"),
            ("values[numbering.digits]:int", "6"),
        ]))
        .unwrap();
        assert_eq!(
            body,
            json!({"username": "carla", "business": {"name": "Shop"}, "limit": 5, "enabled": true,
                   "roles": ["cashier", "manager"], "lines": ["a", "b"], "tax": null, "raw": [1, 2],
                   "values": {"numbering.digits": 6}})
        );
        assert_eq!(
            api_name("values[numbering.digits]:int"),
            "values.numbering.digits"
        );
        assert_eq!(
            body_of(&f(&[("limit:int", "five")])).unwrap_err(),
            ("limit".to_owned(), "must be a whole number".to_owned())
        );
    }

    #[test]
    fn forms_go_back_only_to_the_console_and_name_only_the_api() {
        assert_eq!(local("/admin/users"), Some("/admin/users"));
        assert_eq!(local("//evil.example/admin"), None);
        assert_eq!(local("https://evil.example"), None);
        assert_eq!(api_path("/api/v1/users/../../admin"), None);
        assert_eq!(api_path("/health/ready"), None);
        assert_eq!(api_path("/api/v1/products?q=%00"), None);
        assert_eq!(with_flash("/admin/s#tax", "k"), "/admin/s?flash=k#tax");
        assert_eq!(
            with_flash("/admin/x?a=1&flash=old", "k"),
            "/admin/x?a=1&flash=k"
        );
        assert_eq!(with_flash("/admin/x", "k"), "/admin/x?flash=k");
    }
}
