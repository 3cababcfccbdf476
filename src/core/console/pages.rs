//! The console's pages (maud: every value is HTML-escaped unless marked otherwise). Each screen's
//! text sits in its own function, so it can be translated later in one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use serde_json::Value;

use super::Console;
use super::api::Ui;

/// A screen of the console, and who may open it.
pub struct Screen {
    pub path: &'static str,
    pub title: &'static str,
    pub permission: &'static str,
}

/// Every screen, in the order of the menu.
pub const SCREENS: &[Screen] = &[
    Screen {
        path: "/admin/dashboard",
        title: "Dashboard",
        permission: "management.reports.dashboard",
    },
    Screen {
        path: "/admin/users",
        title: "Users",
        permission: "administration.users.read",
    },
    Screen {
        path: "/admin/devices",
        title: "Devices",
        permission: "administration.devices.read",
    },
    Screen {
        path: "/admin/backups",
        title: "Backups",
        permission: crate::core::backup::http::READ,
    },
    Screen {
        path: "/admin/audit",
        title: "Audit",
        permission: "administration.audit.read",
    },
    Screen {
        path: "/admin/closings",
        title: "Closings",
        permission: "administration.closings.read",
    },
    Screen {
        path: "/admin/reports",
        title: "Reports",
        permission: "management.reports.read",
    },
    Screen {
        path: "/admin/security",
        title: "Security",
        permission: "administration.security_events.read",
    },
    Screen {
        path: "/admin/support",
        title: "Support",
        permission: "administration.diagnostics.export",
    },
    Screen {
        path: "/admin/settings",
        title: "Settings",
        permission: "administration.settings.read",
    },
];

/// The screens `console`'s user may open.
pub fn screens(console: &Console) -> impl Iterator<Item = &'static Screen> + '_ {
    SCREENS
        .iter()
        .filter(|s| console.caller.permissions.contains(s.permission))
}

/// A whole page: the header with the screens the user may open and "Sign out", then `body`.
pub fn page(title: &str, console: Option<&Console>, body: Markup) -> Markup {
    page_at(title, console, "", body, Extras::default())
}

/// What a page may have besides its body.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extras {
    /// The dashboard's script.
    pub live: bool,
    /// Reload the page every this many seconds (work in progress, maintenance).
    pub refresh: Option<u32>,
}

/// [`page`], with the menu marking `current`, and `extras`.
pub fn page_at(
    title: &str,
    console: Option<&Console>,
    current: &str,
    body: Markup,
    extras: Extras,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · 3PlugPOS" }
                link rel="stylesheet" href="/admin/static/admin.css";
                @if extras.live {
                    script src="/admin/static/live.js" defer {}
                }
                @if let Some(secs) = extras.refresh {
                    meta http-equiv="refresh" content=(secs);
                }
            }
            body {
                header {
                    span.brand { "3PlugPOS console" }
                    @if let Some(console) = console {
                        nav aria-label="Screens" {
                            a href="/admin" { "Home" }
                            @for screen in screens(console) {
                                a href=(screen.path) aria-current=[(current == screen.path).then_some("page")] { (screen.title) }
                            }
                        }
                        span { "Signed in as " a href="/admin/account" { strong { (console.caller.username) } } }
                        form method="post" action="/admin/logout" {
                            input type="hidden" name="csrf" value=(console.csrf);
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The sign-in form, with `error` above it.
pub fn login(csrf: &str, error: Option<&str>, notice: Option<&str>) -> Markup {
    page(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            div.card {
                @if let Some(error) = error {
                    p.error role="alert" { (error) }
                }
                @if let Some(notice) = notice {
                    p.notice role="status" { (notice) }
                }
                form method="post" action="/admin/login" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="username" { "Username" }
                    input #username type="text" name="username" autocomplete="username" required autofocus;
                    label for="password" { "Password" }
                    input #password type="password" name="password" autocomplete="current-password" required;
                    label for="code" { "Authenticator or recovery code (if your account uses one)" }
                    input #code type="text" name="code" autocomplete="one-time-code" inputmode="numeric";
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

/// A page that refuses, with `status` and a sentence saying why.
pub fn refused(status: StatusCode, why: &str) -> Response {
    refused_for(None, status, why)
}

/// [`refused`], with the header of a signed-in user (so they can sign out).
pub fn refused_for(console: Option<&Console>, status: StatusCode, why: &str) -> Response {
    let title = match status.as_u16() {
        401 | 403 => "Not allowed",
        404 => "Not found",
        409 | 422 => "Refused",
        429 => "Too many attempts",
        s if s >= 500 => "Something went wrong",
        _ => "Refused",
    };
    let body = page(
        title,
        console,
        html! {
            h1 { (title) }
            div.card {
                p.error { (why) }
                p { a href="/admin" { "Back to the console" } }
            }
        },
    );
    let mut response = (status, body).into_response();
    response.extensions_mut().insert(super::ConsolePage);
    response
}

/// A value as a cell shows it: text as it is, instants in UTC to the minute, lists joined.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => "—".to_owned(),
        Value::Bool(true) => "yes".to_owned(),
        Value::Bool(false) => "no".to_owned(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if is_instant(s) => format!("{} {} UTC", &s[..10], &s[11..16]),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        Value::Object(_) => value.to_string(),
    }
}

fn is_instant(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && s.ends_with('Z')
}

/// `key` of `item`: a dotted path into objects.
pub fn at<'a>(item: &'a Value, key: &str) -> &'a Value {
    key.split('.').fold(item, |node, part| &node[part])
}

/// A table of `items` with `columns` (heading, key), and a last column from `actions` when
/// given; scrolls sideways on a narrow screen rather than breaking the page.
pub fn table(
    items: &[Value],
    columns: &[(&str, &str)],
    actions: Option<&dyn Fn(&Value) -> Markup>,
) -> Markup {
    html! {
        @if items.is_empty() {
            p.muted { "Nothing here yet." }
        } @else {
            div.table-wrap role="region" aria-label="Table (scrolls sideways)" tabindex="0" {
                table {
                    thead { tr {
                        @for (heading, _) in columns { th scope="col" { (heading) } }
                        @if actions.is_some() { th scope="col" { "Actions" } }
                    } }
                    tbody {
                        @for item in items {
                            tr {
                                @for (_, key) in columns { td { (text(at(item, key))) } }
                                @if let Some(actions) = actions { td.actions { (actions(item)) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What a form stands for: an API request, and where the answer is shown.
pub struct Form<'a> {
    /// Names the form among the page's (its errors are shown on it only).
    pub id: &'a str,
    pub method: &'a str,
    pub path: String,
    /// The page the form is on (the answer is shown there).
    pub back: &'a str,
    pub submit: &'a str,
    /// The notice on success.
    pub done: &'a str,
    /// Where to go on success (`{id}` is the created thing's id), instead of `back`.
    pub then: Option<&'a str>,
    /// Sends a fresh `Idempotency-Key` (a create).
    pub idempotent: bool,
    /// Hands the JSON answer to the browser as this file.
    pub download: Option<&'a str>,
    /// Drawn small, in a table row.
    pub inline: bool,
    /// What the button does, for a screen reader, when its text alone does not say (a row's
    /// "Disable": whom).
    pub aria: Option<String>,
}

impl<'a> Form<'a> {
    pub fn new(
        id: &'a str,
        method: &'a str,
        path: impl Into<String>,
        back: &'a str,
        submit: &'a str,
    ) -> Form<'a> {
        Form {
            id,
            method,
            path: path.into(),
            back,
            submit,
            done: "",
            then: None,
            idempotent: false,
            download: None,
            inline: false,
            aria: None,
        }
    }
    pub fn done(mut self, done: &'a str) -> Self {
        self.done = done;
        self
    }
    pub fn then(mut self, then: &'a str) -> Self {
        self.then = Some(then);
        self
    }
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }
    pub fn download(mut self, name: &'a str) -> Self {
        self.download = Some(name);
        self
    }
    pub fn inline(mut self) -> Self {
        self.inline = true;
        self
    }
    pub fn aria(mut self, label: impl Into<String>) -> Self {
        self.aria = Some(label.into());
        self
    }
}

/// How a field is entered.
pub enum Kind {
    Text,
    Password,
    Number,
    Date,
    Area,
    Hidden,
    /// One of (value, label).
    Select(Vec<(String, String)>),
    /// Not a field: a heading over the fields that follow.
    Heading,
    /// Several checkboxes (value, label, checked), sent as a list.
    Checks(Vec<(String, String, bool)>),
}

/// One field of a form: `name` carries its type suffix (see `console::api`).
pub struct Field {
    pub name: String,
    pub label: String,
    pub kind: Kind,
    pub value: String,
    pub hint: Option<String>,
    pub required: bool,
}

impl Field {
    pub fn new(name: impl Into<String>, label: impl Into<String>, kind: Kind) -> Field {
        Field {
            name: name.into(),
            label: label.into(),
            kind,
            value: String::new(),
            hint: None,
            required: false,
        }
    }
    pub fn value(mut self, value: impl Into<String>) -> Self {
        self.value = value.into();
        self
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
    /// The name the API gives the field in its errors.
    pub fn base(&self) -> String {
        super::api::api_name(&self.name)
    }
}

/// The notice or error the last sending of a form whose id starts with `form` came to, with
/// the field errors that no field of `shown` displays.
pub fn outcome(ui: &Ui, form: &str, shown: &[String]) -> Markup {
    html! {
        @if let Some(flash) = ui.flash.as_ref().filter(|f| f.form.starts_with(form)) {
            @if let Some(notice) = &flash.notice { p.notice role="status" { (notice) } }
            @if let Some(error) = &flash.error {
                div.error role="alert" {
                    p { (error) }
                    @let others: Vec<_> = flash.fields.iter().filter(|(k, _)| !shown.contains(k)).collect();
                    @if !others.is_empty() {
                        ul { @for (field, message) in others { li { (field) ": " (message) } } }
                    }
                }
            }
        }
    }
}

/// A form: its fields with labels, each field's error next to it, and the submit button.
pub fn form(ui: &Ui, form: &Form, fields: &[Field]) -> Markup {
    let flash = ui.flash.as_ref().filter(|f| f.form == form.id);
    html! {
        form.inline[form.inline] method="post" action="/admin/act" data-form=(form.id) {
            input type="hidden" name="csrf" value=(ui.csrf());
            input type="hidden" name="_form" value=(form.id);
            input type="hidden" name="_method" value=(form.method);
            input type="hidden" name="_path" value=(form.path);
            input type="hidden" name="_back" value=(form.back);
            @if !form.done.is_empty() { input type="hidden" name="_done" value=(form.done); }
            @if let Some(then) = form.then { input type="hidden" name="_then" value=(then); }
            @if form.idempotent { input type="hidden" name="_idem" value=(super::api::idempotency_key()); }
            @if let Some(name) = form.download { input type="hidden" name="_download" value=(name); }
            @if !form.inline { (outcome(ui, form.id, &fields.iter().map(Field::base).collect::<Vec<_>>())) }
            @for field in fields {
                @let base = field.base();
                @let id = format!("{}-{}", form.id, base.replace('.', "-"));
                @let error = flash.and_then(|f| f.fields.get(&base));
                @let value = flash.and_then(|f| f.values.get(&base)).map_or(field.value.as_str(), String::as_str);
                @let described = match (error.is_some(), field.hint.is_some()) {
                    (true, true) => Some(format!("{id}-hint {id}-error")),
                    (true, false) => Some(format!("{id}-error")),
                    (false, true) => Some(format!("{id}-hint")),
                    (false, false) => None,
                };
                @match &field.kind {
                    Kind::Hidden => { input type="hidden" name=(field.name) value=(field.value); }
                    Kind::Heading => { h2.group { (field.label) } }
                    Kind::Checks(options) => {
                        fieldset {
                            legend { (field.label) }
                            @for (option, label, checked) in options {
                                @let oid = format!("{id}-{option}");
                                label.check for=(oid) {
                                    input #(oid) type="checkbox" name=(field.name) value=(option) checked[*checked];
                                    " " (label)
                                }
                            }
                        }
                    }
                    kind => {
                        label for=(id) { (field.label) }
                        @match kind {
                            Kind::Area => { textarea #(id) name=(field.name) rows="4" required[field.required] aria-describedby=[described.as_deref()] { (value) } }
                            Kind::Select(options) => {
                                select #(id) name=(field.name) required[field.required] aria-describedby=[described.as_deref()] {
                                    @for (option, label) in options {
                                        option value=(option) selected[option == value] { (label) }
                                    }
                                }
                            }
                            _ => {
                                @let kind = match kind { Kind::Password => "password", Kind::Number => "number", Kind::Date => "date", _ => "text" };
                                @let value = if kind == "password" { "" } else { value };
                                input #(id) type=(kind) name=(field.name) value=(value) required[field.required]
                                    autocomplete=[(kind == "password").then_some("new-password")]
                                    aria-describedby=[described.as_deref()];
                            }
                        }
                    }
                }
                @if let Some(hint) = &field.hint { p.hint id=(format!("{id}-hint")) { (hint) } }
                @if let Some(error) = error { p.field-error id=(format!("{id}-error")) { (error) } }
            }
            button type="submit" aria-label=[form.aria.as_deref()] { (form.submit) }
        }
    }
}
