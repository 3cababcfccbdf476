//! The console's screens. Each one reads what it shows from the API as the signed-in user (so
//! it shows only what their permissions let the API answer, field permissions included) and
//! draws forms that send the API's own requests through `/admin/act`. A screen's text is in its
//! own function, so translations can be added there.

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde_json::Value;
use std::collections::HashMap;

use super::api::{Ui, pretty, query, urlencoding};
use super::pages::{Extras, Field, Form, Kind, at, form, outcome, page_at, screens, table, text};

type Params = Query<HashMap<String, String>>;

/// The items of a list answer.
fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

fn screen(ui: &Ui, title: &str, current: &str, body: Markup) -> Response {
    page_at(title, Some(&ui.console), current, body, Extras::default()).into_response()
}

/// Pages of a list: a link to the next one when there is one.
fn more(list: &Value, path: &str, params: &HashMap<String, String>) -> Markup {
    let mut kept: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "cursor" | "flash" | "verify"))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    kept.sort();
    html! {
        @if let Some(cursor) = list["next_cursor"].as_str() {
            @let pairs: Vec<(&str, &str)> = kept.iter().copied().chain([("cursor", cursor)]).collect();
            p { a href=(format!("{path}{}", query(&pairs))) { "More entries →" } }
        }
    }
}

// ---------------------------------------------------------------- home

/// The start page: the first-run checklist (until it is done) and the screens the user may open.
/// Stays whole: one screen, read from its requests to its markup as the page shows it.
pub async fn home(ui: Ui) -> Response {
    let mine: Vec<_> = screens(&ui.console).collect();
    if mine.is_empty() {
        return super::pages::refused_for(
            Some(&ui.console),
            StatusCode::FORBIDDEN,
            "Your account has no console screens. Cashiers work at the till.",
        );
    }
    let count = |list: &Option<Value>| list.as_ref().map(|l| items(l).len());
    let registers = ui
        .read_if("administration.places.read", "/api/v1/registers?limit=100")
        .await;
    let taxes = ui
        .read_if("management.catalog.read", "/api/v1/tax-classes?limit=100")
        .await;
    let products = ui
        .read_if("management.catalog.read", "/api/v1/products?limit=1")
        .await;
    let backups = ui
        .read_if(crate::core::backup::http::READ, "/api/v1/backups?limit=50")
        .await;
    let users = ui
        .read_if("administration.users.read", "/api/v1/users?limit=200")
        .await;
    let valid_backup = backups
        .as_ref()
        .map(|b| items(b).iter().any(|b| b["status"] == "valid"));
    let checklist: Vec<(&str, Option<bool>, &str, &str)> = vec![
        (
            "A register to sell from",
            count(&registers).map(|n| n > 0),
            "/admin/devices",
            "Setup made one; add one per till on the Devices screen.",
        ),
        (
            "Tax classes",
            count(&taxes).map(|n| n > 0),
            "/admin/settings#tax-classes",
            "Add them under Settings (name and rate).",
        ),
        (
            "First products",
            count(&products).map(|n| n > 0),
            "/admin#first-product",
            "Add the first one below; the rest from the desktop client's catalog.",
        ),
        (
            "A cashier account",
            count(&users).map(|n| n > 1),
            "/admin/users",
            "Create one on the Users screen.",
        ),
        (
            "A first valid backup",
            valid_backup,
            "/admin/backups",
            "Press \"Back up now\" on the Backups screen.",
        ),
    ];
    let pending = checklist.iter().any(|(_, done, _, _)| *done == Some(false));
    let tax_options: Vec<(String, String)> = taxes
        .as_ref()
        .map(items)
        .unwrap_or_default()
        .iter()
        .map(|t| {
            (
                text(&t["id"]),
                format!("{} ({})", text(&t["name"]), text(&t["rate"])),
            )
        })
        .collect();
    screen(
        &ui,
        "Home",
        "/admin",
        html! {
            h1 { "Welcome, " (ui.console.caller.display_name) }
            @if pending {
                section.card aria-labelledby="checklist" {
                    h2 #checklist { "Getting the shop ready" }
                    ul.checklist {
                        @for (what, done, link, how) in &checklist {
                            @if let Some(done) = done {
                                li class=(if *done { "done" } else { "todo" }) {
                                    span.mark aria-hidden="true" { (if *done { "✓" } else { "○" }) }
                                    " " (what) ": "
                                    @if *done { "done." } @else { a href=(link) { (how) } }
                                }
                            }
                        }
                    }
                }
            }
            @if count(&products) == Some(0) && ui.may("management.catalog.write") && !tax_options.is_empty() {
                section.card #first-product aria-labelledby="product-heading" {
                    h2 #product-heading { "Add a first product" }
                    (form(&ui, &Form::new("product", "POST", "/api/v1/products", "/admin", "Add product").done("The product was added: it is on the tills now.").idempotent(), &[
                        Field::new("sku", "Article number (SKU)", Kind::Text).required(),
                        Field::new("name", "Name", Kind::Text).required(),
                        Field::new("price", "Price (as printed on the shelf)", Kind::Text).required(),
                        Field::new("tax_class_id", "Tax class", Kind::Select(tax_options.clone())).required(),
                        Field::new("barcodes:lines", "Barcodes (one per line, optional)", Kind::Area),
                    ]))
                }
            }
            section.card aria-labelledby="screens" {
                h2 #screens { "Screens" }
                ul {
                    @for screen in &mine {
                        li { a href=(screen.path) { (screen.title) } }
                    }
                }
            }
        },
    )
}

// ---------------------------------------------------------------- account

/// One's own account: the password, and the second factor. An account that must change its
/// password or set up its second factor is sent here first.
pub async fn account(ui: Ui) -> Response {
    let caller = &ui.console.caller;
    let me = ui
        .read_if("", "/api/v1/auth/me")
        .await
        .unwrap_or(Value::Null);
    let back = "/admin/account";
    screen(
        &ui,
        "Your account",
        back,
        html! {
            h1 { "Your account" }
            @if caller.password_change_required {
                p.error role="alert" { "Choose a new password before you use the console." }
            } @else if caller.mfa_enrollment_required {
                p.error role="alert" { "Your role needs a second factor: set it up before you use the console." }
            }
            section.card aria-labelledby="password" {
                h2 #password { "Change your password" }
                p { "Every session of yours ends (the tills' too); sign in again with the new password." }
                (form(&ui, &Form::new("password", "POST", "/api/v1/auth/password", back, "Change password").then("/admin/login?changed=1"), &[
                    Field::new("current_password", "Current password", Kind::Password).required(),
                    Field::new("new_password", "New password (at least 10 characters, not a common one, not your username)", Kind::Password).required(),
                ]))
            }
            @if me["mfa_enabled"] != true {
                section.card aria-labelledby="mfa" {
                    h2 #mfa { "Second factor (authenticator app)" }
                    p { "1. Get a key for your authenticator app (any TOTP app)." }
                    (form(&ui, &Form::new("mfa-enroll", "POST", "/api/v1/auth/mfa/enroll", back, "Get a key").done("Add this key to your authenticator app: {secret} (or open {otpauth_uri}). Then enter the code it shows below."), &[]))
                    p { "2. Enter the code the app shows." }
                    (form(&ui, &Form::new("mfa-verify", "POST", "/api/v1/auth/mfa/verify", back, "Confirm").done("Your second factor is set up. Keep these recovery codes somewhere safe; each works once if you lose the app: {recovery_codes}"), &[
                        Field::new("code", "Code from the app", Kind::Text).required(),
                    ]))
                }
            }
        },
    )
}

// ---------------------------------------------------------------- dashboard

/// The dashboard: today's KPIs and sales per hour, kept current by `live.js` over the
/// WebSocket (`/admin/ws`, topic `dashboard`).
pub async fn dashboard(ui: Ui) -> Response {
    if let Err(refused) = ui.require("management.reports.dashboard").await {
        return refused;
    }
    let live = match live_part(&ui).await {
        Ok(live) => live,
        Err(refused) => return refused,
    };
    page_at(
        "Dashboard",
        Some(&ui.console),
        "/admin/dashboard",
        html! {
            h1 { "Dashboard" }
            p.muted #live-state role="status" { "Today's figures; they update as sales are made." }
            div #live data-source="/admin/dashboard/live" { (live) }
        },
        Extras {
            live: true,
            refresh: None,
        },
    )
    .into_response()
}

/// The dashboard's figures alone (what `live.js` fetches again after each push).
pub async fn dashboard_live(ui: Ui) -> Response {
    if let Err(refused) = ui.require("management.reports.dashboard").await {
        return refused;
    }
    match live_part(&ui).await {
        Ok(live) => live.into_response(),
        Err(refused) => refused,
    }
}

async fn live_part(ui: &Ui) -> Result<Markup, Response> {
    let board = ui.get("/api/v1/dashboard").await?;
    let kpis = board["kpis"].as_array().cloned().unwrap_or_default();
    let simple: Vec<&Value> = kpis.iter().filter(|k| !k["value"].is_array()).collect();
    let per_hour = kpis.iter().find(|k| k["id"] == "sales.per_hour");
    let top = kpis.iter().find(|k| k["id"] == "sales.top_products_today");
    Ok(html! {
        div.kpis {
            @for kpi in &simple {
                div.kpi data-kpi=(kpi["id"].as_str().unwrap_or_default()) {
                    span.kpi-title { (text(&kpi["title"])) }
                    span.kpi-value { (text(&kpi["value"])) @if kpi["unit"] == "percent" && !kpi["value"].is_null() { " %" } }
                }
            }
        }
        @if let Some(per_hour) = per_hour {
            section.card aria-labelledby="per-hour" {
                h2 #per-hour { (text(&per_hour["title"])) }
                (bars(
                    &per_hour["value"].as_array().cloned().unwrap_or_default(),
                    "hour",
                    "value",
                    Some("compare"),
                ))
                p.muted { "Dark bars: today. Light bars: the same weekday last week." }
                details {
                    summary { "The figures" }
                    (table(per_hour["value"].as_array().map(Vec::as_slice).unwrap_or_default(), &[("Hour", "hour"), ("Today", "value"), ("Same weekday last week", "compare")], None))
                }
            }
        }
        @if let Some(top) = top {
            section.card aria-labelledby="top" {
                h2 #top { (text(&top["title"])) }
                (table(top["value"].as_array().map(Vec::as_slice).unwrap_or_default(), &[("Product", "name"), ("Quantity", "quantity"), ("Value", "value")], None))
            }
        }
    })
}

/// A bar chart (SVG, no script) of `rows`: `label` under each bar, `value` its height, and
/// `compare` a lighter bar beside it. The numbers are in the table the chart comes with.
fn bars(rows: &[Value], label: &str, value: &str, compare: Option<&str>) -> Markup {
    let number = |v: &Value| match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    };
    let top = rows
        .iter()
        .flat_map(|r| {
            [
                number(at(r, value)),
                compare.map_or(0.0, |c| number(at(r, c))),
            ]
        })
        .fold(0.0_f64, f64::max);
    let n = rows.len().max(1) as f64;
    let (width, height, base) = (960.0, 240.0, 210.0);
    let slot = width / n;
    let scale = if top > 0.0 { (base - 20.0) / top } else { 0.0 };
    html! {
        svg.chart viewBox=(format!("0 0 {width} {height}")) role="img" aria-label=(format!("Bar chart; highest {top}")) {
            line x1="0" y1=(base) x2=(width) y2=(base) class="axis" {}
            @for (i, row) in rows.iter().enumerate() {
                @let x = i as f64 * slot;
                @let h = number(at(row, value)) * scale;
                @if let Some(compare) = compare {
                    @let c = number(at(row, compare)) * scale;
                    rect class="bar-compare" x=(format!("{:.1}", x + slot * 0.5)) y=(format!("{:.1}", base - c)) width=(format!("{:.1}", slot * 0.35)) height=(format!("{:.1}", c)) {}
                }
                rect class="bar" x=(format!("{:.1}", x + slot * 0.12)) y=(format!("{:.1}", base - h)) width=(format!("{:.1}", slot * if compare.is_some() { 0.38 } else { 0.76 })) height=(format!("{:.1}", h)) {
                    title { (text(at(row, label))) ": " (text(at(row, value))) }
                }
                @if h > 0.0 && rows.len() <= 31 {
                    text x=(format!("{:.1}", x + slot / 2.0)) y=(format!("{:.1}", base - h - 4.0)) text-anchor="middle" class="value" { (text(at(row, value))) }
                }
                @if rows.len() <= 24 || i % (rows.len() / 24 + 1) == 0 {
                    text x=(format!("{:.1}", x + slot / 2.0)) y=(base + 18.0) text-anchor="middle" class="tick" { (short(&text(at(row, label)))) }
                }
            }
        }
    }
}

fn short(label: &str) -> String {
    let mut s: String = label.chars().take(10).collect();
    if label.chars().count() > 10 {
        s.push('…');
    }
    s
}

// ---------------------------------------------------------------- users

pub async fn users(ui: Ui) -> Response {
    if let Err(refused) = ui.require("administration.users.read").await {
        return refused;
    }
    let list = match ui.get("/api/v1/users?limit=200").await {
        Ok(list) => list,
        Err(refused) => return refused,
    };
    let roles = ui
        .read_if("administration.roles.read", "/api/v1/roles?limit=200")
        .await;
    let role_names: Vec<String> = roles
        .as_ref()
        .map(items)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_owned))
        .collect();
    let manage = ui.may("administration.users.manage");
    let back = "/admin/users";
    let new_user_fields = new_user_fields(&ui, &role_names);
    let manage_roles = ui.may("administration.roles.manage");
    let all_permissions = match manage_roles {
        true => permission_names(&ui).await,
        false => Vec::new(),
    };
    let role_actions = |role: &Value| {
        let id = role["id"].as_str().unwrap_or_default();
        html! {
            @if manage_roles {
                a href=(format!("/admin/roles/{id}")) aria-label=(format!("Permissions of {}", text(&role["name"]))) { "Permissions" }
            }
        }
    };
    let actions = |user: &Value| {
        let id = user["id"].as_str().unwrap_or_default();
        let name = user["username"].as_str().unwrap_or_default();
        html! {
            @if manage {
                @if user["disabled"] == true {
                    (form(&ui, &Form::new(&format!("row-enable-{id}"), "POST", format!("/api/v1/users/{id}/enable"), back, "Enable").done("Enabled.").inline().aria(format!("Enable {name}")), &[]))
                } @else {
                    (form(&ui, &Form::new(&format!("row-disable-{id}"), "POST", format!("/api/v1/users/{id}/disable"), back, "Disable").done("Disabled; their sessions ended.").inline().aria(format!("Disable {name}")), &[]))
                }
                (form(&ui, &Form::new(&format!("row-unlock-{id}"), "POST", format!("/api/v1/users/{id}/unlock"), back, "Unlock").done("Unlocked.").inline().aria(format!("Unlock {name}")), &[]))
                a href=(format!("/admin/users/{id}")) aria-label=(format!("Edit {name}")) { "Edit" }
            }
        }
    };
    screen(
        &ui,
        "Users",
        back,
        html! {
            h1 { "Users" }
            (outcome(&ui, "row-", &[]))
            (table(&items(&list), &[("Username", "username"), ("Name", "display_name"), ("Roles", "roles"), ("Second factor", "mfa_enabled"), ("Disabled", "disabled"), ("Must change password", "password_change_required")], Some(&actions)))
            @if manage {
                section.card aria-labelledby="new-user" {
                    h2 #new-user { "New user" }
                    (form(&ui, &Form::new("create-user", "POST", "/api/v1/users", back, "Create user").done("The user was created: give them their password; they change it when they first sign in.").idempotent(), &new_user_fields))
                }
            }
            @if let Some(roles) = &roles {
                section.card aria-labelledby="roles" {
                    h2 #roles { "Roles" }
                    (table(&items(roles), &[("Role", "name"), ("What it is for", "description"), ("Built in", "builtin")], Some(&role_actions)))
                    @if manage_roles {
                        h3 { "New role" }
                        (form(&ui, &Form::new("create-role", "POST", "/api/v1/roles", back, "Create role").done("The role was created.").idempotent(), &role_fields(&all_permissions, &[], true)))
                    }
                }
            }
        },
    )
}

pub async fn user(ui: Ui, Path(id): Path<uuid::Uuid>) -> Response {
    if let Err(refused) = ui.require("administration.users.manage").await {
        return refused;
    }
    let user = match ui.get(&format!("/api/v1/users/{id}")).await {
        Ok(user) => user,
        Err(refused) => return refused,
    };
    let roles = ui
        .read_if("administration.roles.read", "/api/v1/roles?limit=200")
        .await;
    let held: Vec<&str> = user["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let options: Vec<(String, String, bool)> = roles
        .as_ref()
        .map(items)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .map(|r| (r.to_owned(), r.replace('_', " "), held.contains(&r)))
        .collect();
    let mut edit_fields =
        vec![Field::new("display_name", "Name", Kind::Text).value(text(&user["display_name"]))];
    // Without a ticked box the list is sent empty (all roles taken away), not left out.
    if ui.may("administration.roles.manage") {
        edit_fields.push(Field::new("roles:list", "", Kind::Hidden));
        edit_fields.push(Field::new("roles:list", "Roles", Kind::Checks(options)));
    }
    let back = format!("/admin/users/{id}");
    let back = back.as_str();
    screen(
        &ui,
        "User",
        "/admin/users",
        html! {
            h1 { "User " (text(&user["username"])) }
            p { a href="/admin/users" { "← All users" } }
            section.card aria-labelledby="details" {
                h2 #details { "Name and roles" }
                (form(&ui, &Form::new("edit-user", "PATCH", format!("/api/v1/users/{id}"), back, "Save").done("Saved."), &edit_fields))
            }
            section.card aria-labelledby="reset" {
                h2 #reset { "Reset the password" }
                p { "Their sessions end, and they must choose a new password when they next sign in." }
                (form(&ui, &Form::new("reset-password", "POST", format!("/api/v1/users/{id}/reset-password"), back, "Reset password").done("The password was reset."), &[
                    Field::new("password", "New password (at least 10 characters)", Kind::Password).required(),
                ]))
            }
        },
    )
}

/// The new-user form's fields: roles only for those who may give them (the API refuses the
/// others), `cashier` ticked.
fn new_user_fields(ui: &Ui, role_names: &[String]) -> Vec<Field> {
    let mut fields = vec![
        Field::new("username", "Username", Kind::Text).required(),
        Field::new(
            "display_name:opt",
            "Name shown on receipts and screens",
            Kind::Text,
        ),
        Field::new(
            "password",
            "First password (at least 10 characters)",
            Kind::Password,
        )
        .required(),
    ];
    if ui.may("administration.roles.manage") {
        fields.push(Field::new("roles:list", "", Kind::Hidden));
        fields.push(Field::new(
            "roles:list",
            "Roles",
            Kind::Checks(
                role_names
                    .iter()
                    .map(|r| (r.clone(), r.replace('_', " "), r == "cashier"))
                    .collect(),
            ),
        ));
    }
    fields
}

/// Every permission's name, from the API.
async fn permission_names(ui: &Ui) -> Vec<String> {
    ui.read_if("", "/api/v1/permissions?limit=500")
        .await
        .as_ref()
        .map(items)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect()
}

/// A role's form fields: name and purpose (for a `new` role) and its permissions, grouped by
/// their area (the part before the first dot), `held` ticked.
fn role_fields(all: &[String], held: &[&str], new: bool) -> Vec<Field> {
    let mut fields = Vec::new();
    if new {
        fields.push(Field::new("name", "Name (lowercase, like shift_lead)", Kind::Text).required());
        fields.push(Field::new("description", "What it is for", Kind::Text).required());
    }
    // Without a ticked box the list is sent empty, not left out.
    fields.push(Field::new("permissions:list", "", Kind::Hidden));
    let mut areas: Vec<&str> = all.iter().filter_map(|p| p.split('.').next()).collect();
    areas.dedup();
    for area in areas {
        let options = all
            .iter()
            .filter(|p| p.split('.').next() == Some(area))
            .map(|p| (p.clone(), p.clone(), held.contains(&p.as_str())))
            .collect();
        fields.push(Field::new(
            "permissions:list",
            heading(area),
            Kind::Checks(options),
        ));
    }
    fields
}

/// One role's permissions, to change (the API refuses granting what the caller lacks, and
/// leaving nobody able to administer).
pub async fn role(ui: Ui, Path(id): Path<uuid::Uuid>) -> Response {
    if let Err(refused) = ui.require("administration.roles.manage").await {
        return refused;
    }
    let roles = match ui.get("/api/v1/roles?limit=200").await {
        Ok(list) => list,
        Err(refused) => return refused,
    };
    let Some(role) = items(&roles)
        .into_iter()
        .find(|r| r["id"] == id.to_string().as_str())
    else {
        return super::pages::refused_for(
            Some(&ui.console),
            StatusCode::NOT_FOUND,
            "There is no such role.",
        );
    };
    let held: Vec<&str> = role["permissions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let all = permission_names(&ui).await;
    let back = format!("/admin/roles/{id}");
    screen(
        &ui,
        "Role",
        "/admin/users",
        html! {
            h1 { "Role " (text(&role["name"])) }
            p { a href="/admin/users#roles" { "← Users and roles" } " · " (text(&role["description"])) }
            section.card {
                (form(&ui, &Form::new("role-permissions", "PUT", format!("/api/v1/roles/{id}/permissions"), &back, "Save permissions").done("Saved: the role's users have these permissions from their next request."), &role_fields(&all, &held, false)))
            }
        },
    )
}

// ---------------------------------------------------------------- devices and registers

/// Stays whole: one screen, read from its request to its markup as the page shows it.
pub async fn devices(ui: Ui) -> Response {
    if let Err(refused) = ui.require("administration.devices.read").await {
        return refused;
    }
    let list = match ui.get("/api/v1/devices?limit=200").await {
        Ok(list) => list,
        Err(refused) => return refused,
    };
    let registers = ui
        .read_if("administration.places.read", "/api/v1/registers?limit=200")
        .await;
    let locations = ui
        .read_if("administration.places.read", "/api/v1/locations?limit=200")
        .await;
    let conflicts = ui
        .read_if(
            "administration.devices.conflicts",
            "/api/v1/sync/conflicts?status=open&limit=100",
        )
        .await;
    let manage = ui.may("administration.devices.manage");
    let back = "/admin/devices";
    // Ids are shown by the names they stand for.
    let register_names = names(registers.as_ref());
    let location_names = names(locations.as_ref());
    let tills = named(items(&list), "register_id", "register", &register_names);
    let device_names = names(Some(&list));
    let register_rows = named(
        registers.as_ref().map(items).unwrap_or_default(),
        "location_id",
        "location",
        &location_names,
    );
    let conflict_rows = named(
        conflicts.as_ref().map(items).unwrap_or_default(),
        "device_id",
        "device",
        &device_names,
    );
    let register_options: Vec<(String, String)> = registers
        .as_ref()
        .map(items)
        .unwrap_or_default()
        .iter()
        .map(|r| (text(&r["id"]), text(&r["name"])))
        .collect();
    let actions = |device: &Value| {
        let id = device["id"].as_str().unwrap_or_default();
        html! {
            @if manage && device["status"] != "revoked" {
                (form(&ui, &Form::new(&format!("row-code-{id}"), "POST", format!("/api/v1/devices/{id}/enrolment-code"), back, "New enrolment code").done(ENROLMENT).inline().aria(format!("New enrolment code for {}", text(&device["name"]))), &[]))
                (form(&ui, &Form::new(&format!("row-revoke-{id}"), "POST", format!("/api/v1/devices/{id}/revoke"), back, "Revoke").done("Revoked: the till can no longer connect.").inline().aria(format!("Revoke {}", text(&device["name"]))), &[]))
            }
        }
    };
    let resolve = |conflict: &Value| {
        let id = conflict["id"].as_str().unwrap_or_default();
        html! {
            @if ui.may("administration.devices.conflicts") {
                (form(&ui, &Form::new(&format!("row-resolve-{id}"), "POST", format!("/api/v1/sync/conflicts/{id}/resolve"), back, "Mark resolved").done("Resolved.").inline(), &[
                    Field::new("note", "Note", Kind::Text).required(),
                ]))
            }
        }
    };
    screen(
        &ui,
        "Devices",
        back,
        html! {
            h1 { "Devices and registers" }
            (outcome(&ui, "row-", &[]))
            section.card aria-labelledby="tills" {
                h2 #tills { "Enrolled tills" }
                (table(&tills, &[("Name", "name"), ("Status", "status"), ("Register", "register"), ("Enrolled", "enrolled_at"), ("Last seen", "last_seen_at"), ("Version", "app_version")], Some(&actions)))
                @if manage {
                    h3 { "Add a till" }
                    p { "You get a one-time code to type on the till, which enrols it." }
                    (form(&ui, &Form::new("create-device", "POST", "/api/v1/devices", back, "Add till").idempotent().done(ENROLMENT), &[
                        Field::new("name", "Name", Kind::Text).required(),
                        Field::new("register_id", "Register", Kind::Select(register_options.clone())).required(),
                    ]))
                }
            }
            @if registers.is_some() {
                section.card aria-labelledby="registers" {
                    h2 #registers { "Registers" }
                    (table(&register_rows, &[("Name", "name"), ("Code", "code"), ("Sells from", "location")], None))
                    @if ui.may("administration.places.manage") {
                        h3 { "Add a register" }
                        (form(&ui, &Form::new("create-register", "POST", "/api/v1/registers", back, "Add register").done("The register was added.").idempotent(), &[
                            Field::new("name", "Name", Kind::Text).required(),
                            Field::new("code:opt", "Code (printed in receipt numbers)", Kind::Text),
                            Field::new("location_id:opt", "Sells from", Kind::Select(std::iter::once((String::new(), "The branch's first location".to_owned())).chain(locations.as_ref().map(items).unwrap_or_default().iter().map(|l| (text(&l["id"]), text(&l["name"])))).collect())),
                        ]))
                    }
                }
            }
            @if conflicts.is_some() {
                section.card aria-labelledby="conflicts" {
                    h2 #conflicts { "Open conflicts from offline tills" }
                    (table(&conflict_rows, &[("When", "created_at"), ("Kind", "kind"), ("Document", "document_type"), ("Till", "device"), ("Detail", "detail")], Some(&resolve)))
                }
            }
        },
    )
}

/// The notice after a till was added or given a new code (the code is shown once).
const ENROLMENT: &str = "Type this one-time enrolment code on the till: {enrolment_code} (valid until {code_expires_at}).";

/// Names by id, from a list answer.
fn names(list: Option<&Value>) -> HashMap<String, String> {
    list.map(items)
        .unwrap_or_default()
        .iter()
        .map(|item| (text(&item["id"]), text(&item["name"])))
        .collect()
}

/// `rows` with `to` set to the name `from`'s id stands for (the id itself when unknown).
fn named(
    mut rows: Vec<Value>,
    from: &str,
    to: &str,
    names: &HashMap<String, String>,
) -> Vec<Value> {
    for row in &mut rows {
        let id = text(&row[from]);
        let name = names.get(&id).cloned().unwrap_or(id);
        row[to] = Value::String(name);
    }
    rows
}

// ---------------------------------------------------------------- backups

pub async fn backups(ui: Ui) -> Response {
    if let Err(refused) = ui.require(crate::core::backup::http::READ).await {
        return refused;
    }
    let list = match ui.get("/api/v1/backups?limit=50").await {
        Ok(list) => list,
        Err(refused) => return refused,
    };
    let manage = ui.may(crate::core::backup::http::MANAGE);
    // The API restores for super admins holding the permission (both are checked there).
    let restore = ui.may(crate::core::backup::http::RESTORE_PERMISSION)
        && ui.console.caller.roles.iter().any(|r| r == "super_admin");
    let back = "/admin/backups";
    let rows = items(&list);
    // The backup jobs queued or running, with their progress; while there are any (or a backup
    // is still being checked) the page reloads itself every 5 s.
    let working: Vec<Value> = ui
        .read_if("administration.jobs.read", "/api/v1/jobs?limit=50")
        .await
        .as_ref()
        .map(items)
        .unwrap_or_default()
        .into_iter()
        .filter(|j| {
            j["kind"].as_str().is_some_and(|k| k.starts_with("backup."))
                && matches!(j["status"].as_str(), Some("queued" | "running" | "failed"))
        })
        .collect();
    let busy = !working.is_empty() || rows.iter().any(|b| b["status"] == "pending");
    page_at(
        "Backups",
        Some(&ui.console),
        back,
        html! {
            h1 { "Backups" }
            (outcome(&ui, "row-", &[]))
            (outcome(&ui, "restore", &[]))
            @if !working.is_empty() {
                section.card aria-labelledby="working" {
                    h2 #working { "In progress" }
                    ul {
                        @for job in &working {
                            li { (job_line(job)) }
                        }
                    }
                    p.muted { "This page reloads itself every 5 seconds until the work is done." }
                }
            }
            @if manage {
                section.card {
                    p { "A backup is encrypted, then restored into a scratch database and checked before it counts as valid." }
                    (form(&ui, &Form::new("back-up", "POST", "/api/v1/backups", back, "Back up now").done("A backup was queued: it appears below, and turns valid once it was restored and checked."), &[]))
                }
            }
            @if rows.is_empty() {
                p { "No backup yet." }
            } @else {
                div.table-wrap tabindex="0" {
                    table {
                        thead { tr { th scope="col" { "Taken" } th scope="col" { "Status" } th scope="col" { "Size" } th scope="col" { "Version" } th scope="col" { "Actions" } } }
                        tbody {
                            @for b in &rows {
                                @let id = b["id"].as_str().unwrap_or_default();
                                @let (label, class) = status(&b["status"]);
                                tr {
                                    td { (text(&b["created_at"])) }
                                    td class=(class) {
                                        (label)
                                        @if let Some(e) = b["error"]["message"].as_str() { " (" (e) ")" }
                                    }
                                    td { (size(b["size_bytes"].as_u64().unwrap_or(0))) }
                                    td { (text(&b["app_version"])) }
                                    td.actions {
                                        @if b["status"] == "valid" || b["status"] == "invalid" {
                                            @if manage {
                                                a href=(format!("/admin/file/api/v1/backups/{id}/file")) download { "Download" }
                                                (form(&ui, &Form::new(&format!("row-verify-{id}"), "POST", format!("/api/v1/backups/{id}/verify"), back, "Verify again").done("A verification was queued.").inline().aria(format!("Verify the backup of {} again", text(&b["created_at"]))), &[]))
                                            }
                                        }
                                        @if restore && b["status"] == "valid" {
                                            a href=(format!("/admin/backups/{id}/restore")) { "Restore…" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
        Extras {
            live: false,
            refresh: busy.then_some(5),
        },
    )
    .into_response()
}

/// Asks for the business's name before a restore, and says what a restore does.
pub async fn restore(ui: Ui, Path(id): Path<uuid::Uuid>) -> Response {
    if let Err(refused) = ui
        .require(crate::core::backup::http::RESTORE_PERMISSION)
        .await
    {
        return refused;
    }
    let backup = match ui.get(&format!("/api/v1/backups/{id}")).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let back = format!("/admin/backups/{id}/restore");
    screen(
        &ui,
        "Restore",
        "/admin/backups",
        html! {
            h1 { "Restore the backup of " (text(&backup["created_at"])) }
            section.card {
                p.error { "Everything recorded after this backup was taken is replaced by the backup's contents." }
                p { "The server takes a backup of the database as it is now first, then switches to the restored one. The tills and this console are closed for the minute this takes." }
                (form(&ui, &Form::new("restore", "POST", format!("/api/v1/backups/{id}/restore"), &back, "Restore this backup").done("The restore is running; the console is closed until it ends.").then("/admin/backups"), &[
                    Field::new("confirm", "Type the business's name to confirm", Kind::Text).required(),
                ]))
            }
        },
    )
}

/// A backup job as a line: what it does, and how far it got.
fn job_line(job: &Value) -> String {
    let what = match job["kind"].as_str().unwrap_or_default() {
        "backup.create" => "Taking a backup",
        "backup.verify" => "Checking a backup (restoring it into a scratch database)",
        "backup.restore" => "Restoring a backup",
        "backup.copy" => "Copying a backup to a backup target",
        other => other,
    };
    let mut line = what.to_owned();
    match job["status"].as_str() {
        Some("queued") => line.push_str(": waiting to start"),
        Some("failed") => line.push_str(&format!(
            ": failed, will try again ({})",
            text(&job["last_error"])
        )),
        _ => {
            let progress = &job["progress"];
            if let Some(step) = progress["step"].as_str() {
                line.push_str(&format!(": {}", step.replace('_', " ")));
            }
            if let Some(bytes) = progress["dumped_bytes"].as_u64() {
                line.push_str(&format!(", {} so far", size(bytes)));
            }
        }
    }
    line
}

fn status(status: &Value) -> (&'static str, &'static str) {
    match status.as_str() {
        Some("pending") => ("Checking…", "status-pending"),
        Some("valid") => ("Valid: restorable", "status-valid"),
        Some("invalid") => ("Invalid: not restorable", "status-failed"),
        _ => ("Failed", "status-failed"),
    }
}

/// A file size as people read it.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000 => format!("{:.1} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b => format!("{} kB", b.div_ceil(1000)),
    }
}

// ---------------------------------------------------------------- audit

/// Stays whole: one screen, read from its request to its markup as the page shows it.
pub async fn audit(ui: Ui, Query(params): Params) -> Response {
    if let Err(refused) = ui.require("administration.audit.read").await {
        return refused;
    }
    let keys = [
        "from",
        "to",
        "module",
        "entity",
        "action",
        "entity_id",
        "user_id",
    ];
    let param = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    // Dates are entered as days; the API takes instants.
    let day_start = |d: &str| match d.is_empty() {
        true => String::new(),
        false => format!("{d}T00:00:00Z"),
    };
    let filters: Vec<(&str, String)> = keys
        .iter()
        .map(|k| {
            let v = match *k {
                "from" => day_start(param("from")),
                "to" => day_start(param("to")),
                _ => param(k).to_owned(),
            };
            (*k, v)
        })
        .collect();
    let mut pairs: Vec<(&str, &str)> = filters.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let filter_query = query(&pairs);
    pairs.push(("cursor", param("cursor")));
    pairs.push(("limit", "100"));
    let list = match ui.get(&format!("/api/v1/audit{}", query(&pairs))).await {
        Ok(list) => list,
        Err(refused) => return refused,
    };
    let verify = match params.contains_key("verify") {
        true => Some(
            ui.call(axum::http::Method::GET, "/api/v1/audit/verify", None)
                .await,
        ),
        false => None,
    };
    let checkpoints = ui
        .read_if(
            "administration.audit.read",
            "/api/v1/audit/checkpoints?limit=500",
        )
        .await;
    let back = "/admin/audit";
    let export = |format: &str| {
        let sep = if filter_query.is_empty() { "?" } else { "&" };
        format!("/admin/file/api/v1/audit/export{filter_query}{sep}format={format}")
    };
    screen(
        &ui,
        "Audit",
        back,
        html! {
            h1 { "Audit log" }
            form.card.filters method="get" action="/admin/audit" {
                @for (k, label) in [("from", "From (day)"), ("to", "Before (day)")] {
                    div { label for=(k) { (label) } input #(k) type="date" name=(k) value=(param(k)); }
                }
                @for (k, label) in [("module", "Module"), ("entity", "Entity"), ("action", "Action"), ("entity_id", "Entity id"), ("user_id", "User id")] {
                    div { label for=(k) { (label) } input #(k) type="text" name=(k) value=(param(k)); }
                }
                button type="submit" { "Search" }
            }
            p.links {
                @if ui.may("administration.audit.export") {
                    a href=(export("csv")) { "Export CSV" } " · " a href=(export("pdf")) { "Export PDF" } " · "
                }
                @if ui.may("administration.audit.verify") {
                    a href="/admin/audit?verify=1" { "Verify the chain" }
                }
            }
            @if let Some(verify) = &verify {
                @let result = verify.json();
                section.card aria-labelledby="verified" {
                    h2 #verified { "Verification" }
                    @if verify.status.is_success() && result["ok"] == true {
                        p.notice role="status" { "The chain is intact: " (text(&result["verified"])) " records verified; " (text(&result["checkpoints_checked"])) " signed checkpoints compared." }
                    } @else if verify.status.is_success() {
                        p.error role="alert" { "The chain is broken at record " (text(&result["first_bad_seq"])) ": " (text(&result["reason"])) }
                    } @else {
                        p.error role="alert" { (text(&result["detail"])) }
                    }
                    pre { (pretty(&result)) }
                }
            }
            (table(&items(&list), &[("#", "seq"), ("When", "at"), ("Who", "actor.username"), ("Module", "module"), ("Entity", "entity"), ("Id", "entity_id"), ("Action", "action"), ("Reason", "reason_code")], None))
            (more(&list, back, &params))
            @if let Some(checkpoints) = &checkpoints {
                section.card aria-labelledby="checkpoints" {
                    h2 #checkpoints { "Signed checkpoints" }
                    @if ui.may("administration.audit.verify") {
                        (form(&ui, &Form::new("checkpoint", "POST", "/api/v1/audit/checkpoints", back, "Take and download a checkpoint").download("audit-checkpoint.json"), &[]))
                    }
                    @let rows: Vec<Value> = items(checkpoints).into_iter().rev().collect();
                    (table(&rows, &[("#", "seq"), ("Made", "created_at"), ("Up to record", "last_seq"), ("Hash", "last_hash")], None))
                }
            }
        },
    )
}

// ---------------------------------------------------------------- closings

pub async fn closings(ui: Ui, Query(params): Params) -> Response {
    if let Err(refused) = ui.require("administration.closings.read").await {
        return refused;
    }
    let list = match ui.get("/api/v1/closings?limit=100").await {
        Ok(list) => list,
        Err(refused) => return refused,
    };
    let verify = match params.contains_key("verify") {
        true => Some(
            ui.call(axum::http::Method::GET, "/api/v1/closings/verify", None)
                .await,
        ),
        false => None,
    };
    let back = "/admin/closings";
    let pdf = |closing: &Value| {
        let id = closing["id"].as_str().unwrap_or_default();
        html! { a href=(format!("/admin/file/api/v1/closings/{id}/report?format=pdf")) { "Z report (PDF)" } }
    };
    screen(
        &ui,
        "Closings",
        back,
        html! {
            h1 { "Closings" }
            @if ui.may("administration.closings.create") {
                section.card aria-labelledby="close" {
                    h2 #close { "Close a period" }
                    p { "A closing is final: nothing can be recorded inside its period afterwards. Close every cash session of the day first." }
                    (form(&ui, &Form::new("close", "POST", "/api/v1/closings", back, "Close").done("Closed: its Z report is in the list below.").idempotent(), &[
                        Field::new("kind", "What to close", Kind::Select(vec![("day".into(), "The business day".into()), ("month".into(), "A month".into()), ("year".into(), "A year".into())])),
                        Field::new("business_date:opt", "Business day (empty: today; for a month or a year, any day of it)", Kind::Date),
                    ]))
                }
            }
            p { a href="/admin/closings?verify=1" { "Verify every closing (signatures, chain, figures)" } }
            @if let Some(answer) = &verify {
                @let found = answer.json();
                section.card aria-labelledby="verified" {
                    h2 #verified { "Verification" }
                    @if !answer.status.is_success() {
                        p.error role="alert" { (text(&found["detail"])) }
                    } @else if found["ok"] == true {
                        p.notice role="status" { "Every closing verifies: " (text(&found["checked"])) " checked (hash, signature, chain, figures against the documents)." }
                    } @else {
                        p.error role="alert" { "Problems were found in " (text(&found["checked"])) " closings checked:" }
                        ul { @for problem in found["problems"].as_array().into_iter().flatten() { li { (text(problem)) } } }
                        p { "Report it with a support bundle; do not correct anything by hand." }
                    }
                }
            }
            (table(&items(&list), &[("#", "seq"), ("Kind", "kind"), ("Business date", "business_date"), ("Made", "created_at"), ("Sales", "report.figures.totals.sales.total"), ("Net of corrections", "report.figures.totals.net.total"), ("Hash", "hash")], Some(&pdf)))
        },
    )
}

// ---------------------------------------------------------------- reports

pub async fn reports(ui: Ui) -> Response {
    if let Err(refused) = ui.require("management.reports.read").await {
        return refused;
    }
    let list = match ui.get("/api/v1/reports?limit=100").await {
        Ok(list) => list,
        Err(refused) => return refused,
    };
    screen(
        &ui,
        "Reports",
        "/admin/reports",
        html! {
            h1 { "Reports" }
            ul.report-list {
                @for report in items(&list) {
                    li {
                        a href=(format!("/admin/reports/{}", text(&report["id"]))) { (text(&report["title"])) }
                        br;
                        span.muted { (text(&report["description"])) }
                    }
                }
            }
        },
    )
}

/// Stays whole: one screen, read from its request to its markup as the page shows it.
pub async fn report(ui: Ui, Path(id): Path<String>, Query(params): Params) -> Response {
    if let Err(refused) = ui.require("management.reports.read").await {
        return refused;
    }
    let list = match ui.get("/api/v1/reports?limit=100").await {
        Ok(list) => list,
        Err(refused) => return refused,
    };
    let Some(described) = items(&list).into_iter().find(|r| r["id"] == id.as_str()) else {
        return super::pages::refused_for(
            Some(&ui.console),
            StatusCode::NOT_FOUND,
            "There is no such report, or your account may not run it.",
        );
    };
    let names: Vec<String> = described["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect();
    let pairs: Vec<(&str, &str)> = names
        .iter()
        .filter_map(|n| params.get(n).map(|v| (n.as_str(), v.as_str())))
        .collect();
    let q = query(&pairs);
    let ran = ui
        .call(
            axum::http::Method::GET,
            &format!("/api/v1/reports/{}{q}", urlencoding(&id)),
            None,
        )
        .await;
    let result = ran.json();
    let columns: Vec<(String, String)> = result["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let name = text(&c["name"]);
            // A column naming something comes as `x_id` and `x`: show the name.
            let key = name.strip_suffix("_id").map_or(name.clone(), str::to_owned);
            (text(&c["title"]), key)
        })
        .collect();
    let mut deduped: Vec<(String, String)> = Vec::new();
    for c in columns {
        if !deduped.iter().any(|d| d.1 == c.1) {
            deduped.push(c);
        }
    }
    let cols: Vec<(&str, &str)> = deduped
        .iter()
        .map(|(t, k)| (t.as_str(), k.as_str()))
        .collect();
    let rows = result["rows"].as_array().cloned().unwrap_or_default();
    let chart = &described["chart"];
    let sep = if q.is_empty() { "?" } else { "&" };
    let file = |format: &str| {
        format!(
            "/admin/file/api/v1/reports/{}{q}{sep}format={format}",
            urlencoding(&id)
        )
    };
    let choices = parameter_choices(&ui, &names).await;
    let applied = &result["parameters"];
    let value = |n: &str| {
        params
            .get(n)
            .cloned()
            .unwrap_or_else(|| applied[n].as_str().map(str::to_owned).unwrap_or_default())
    };
    screen(
        &ui,
        "Report",
        "/admin/reports",
        html! {
            h1 { (text(&described["title"])) }
            p { a href="/admin/reports" { "← All reports" } " · " span.muted { (text(&described["description"])) } }
            form.card.filters method="get" action=(format!("/admin/reports/{id}")) {
                @for name in &names {
                    div {
                        label for=(name) { (parameter_label(name)) }
                        @let current = value(name);
                        @if let Some(options) = choices.get(name.as_str()) {
                            select #(name) name=(name) {
                                option value="" { "All" }
                                @for (option, label) in options {
                                    option value=(option) selected[*option == current] { (label) }
                                }
                            }
                        } @else {
                            @let kind = if name == "from" || name == "to" { "date" } else { "text" };
                            input #(name) type=(kind) name=(name) value=(current);
                        }
                    }
                }
                button type="submit" { "Run" }
            }
            @if !ran.status.is_success() {
                p.error role="alert" { (text(&result["detail"])) }
                @for e in result["errors"].as_array().into_iter().flatten() {
                    p.field-error { (text(&e["field"])) ": " (text(&e["message"])) }
                }
            } @else {
                p.links {
                    a href=(file("csv")) { "Download CSV" } " · " a href=(file("pdf")) { "Download PDF" }
                }
                @if chart.is_object() && !rows.is_empty() {
                    @let label = text(&chart["label"]);
                    @let label = label.strip_suffix("_id").map_or(label.clone(), str::to_owned);
                    section.card { (bars(&rows, &label, chart["value"].as_str().unwrap_or_default(), None)) }
                }
                (table(&with_totals(&rows, &result["totals"], &cols), &cols, None))
            }
        },
    )
}

/// A report's rows with its totals as a last row (`Total` in the first column; columns that
/// are not summed left empty).
fn with_totals(rows: &[Value], totals: &Value, columns: &[(&str, &str)]) -> Vec<Value> {
    let mut all = rows.to_vec();
    if let (Some(sums), Some((_, first))) = (
        totals.as_object().filter(|t| !t.is_empty()),
        columns.first(),
    ) {
        let mut total = serde_json::Map::new();
        for (_, key) in columns {
            total.insert(
                (*key).to_owned(),
                sums.get(*key)
                    .cloned()
                    .unwrap_or(Value::String(String::new())),
            );
        }
        total.insert((*first).to_owned(), Value::String("Total".to_owned()));
        all.push(Value::Object(total));
    }
    all
}

/// What a report's parameter is called on its form.
fn parameter_label(name: &str) -> String {
    match name {
        "from" => "From (day)".to_owned(),
        "to" => "To (day, included)".to_owned(),
        "branch_id" => "Branch".to_owned(),
        "register_id" => "Register".to_owned(),
        "cashier_id" => "Cashier".to_owned(),
        "location_id" => "Location".to_owned(),
        "category_id" => "Category".to_owned(),
        "product_id" => "Product id".to_owned(),
        "customer_id" => "Customer id".to_owned(),
        "method" => "Payment method".to_owned(),
        "limit" => "Rows (1 to 1000)".to_owned(),
        other => other.replace('_', " "),
    }
}

/// The choices of the report parameters that name something the user may list (branches,
/// registers, cashiers, ...): picked by name rather than typed as ids.
async fn parameter_choices(
    ui: &Ui,
    names: &[String],
) -> HashMap<&'static str, Vec<(String, String)>> {
    let lists: [(&'static str, &str, &str, &str); 5] = [
        (
            "branch_id",
            "administration.places.read",
            "/api/v1/branches?limit=200",
            "name",
        ),
        (
            "register_id",
            "administration.places.read",
            "/api/v1/registers?limit=200",
            "name",
        ),
        (
            "location_id",
            "administration.places.read",
            "/api/v1/locations?limit=200",
            "name",
        ),
        (
            "cashier_id",
            "administration.users.read",
            "/api/v1/users?limit=200",
            "username",
        ),
        (
            "category_id",
            "management.catalog.read",
            "/api/v1/categories?limit=200",
            "name",
        ),
    ];
    let mut choices = HashMap::new();
    for (name, permission, path, label) in lists {
        if !names.iter().any(|n| n == name) {
            continue;
        }
        if let Some(list) = ui.read_if(permission, path).await {
            let options = items(&list)
                .iter()
                .map(|item| (text(&item["id"]), text(&item[label])))
                .collect();
            choices.insert(name, options);
        }
    }
    if names.iter().any(|n| n == "method") {
        let methods = ["cash", "card", "voucher", "other"];
        choices.insert(
            "method",
            methods
                .iter()
                .map(|m| ((*m).to_owned(), (*m).to_owned()))
                .collect(),
        );
    }
    choices
}

// ---------------------------------------------------------------- security

pub async fn security(ui: Ui, Query(params): Params) -> Response {
    if let Err(refused) = ui.require("administration.security_events.read").await {
        return refused;
    }
    let cursor = params.get("cursor").map(String::as_str).unwrap_or_default();
    let kind = params.get("kind").map(String::as_str).unwrap_or_default();
    let events = match ui
        .get(&format!(
            "/api/v1/security-events{}",
            query(&[("kind", kind), ("cursor", cursor), ("limit", "100")])
        ))
        .await
    {
        Ok(list) => list,
        Err(refused) => return refused,
    };
    let flags = ui
        .read_if("administration.incidents.read", "/api/v1/flags?limit=100")
        .await;
    let users = ui
        .read_if("administration.users.read", "/api/v1/users?limit=200")
        .await;
    let usernames: HashMap<String, String> = users
        .as_ref()
        .map(items)
        .unwrap_or_default()
        .iter()
        .map(|u| (text(&u["id"]), text(&u["username"])))
        .collect();
    let flag_rows = named(
        flags.as_ref().map(items).unwrap_or_default(),
        "user_id",
        "cashier",
        &usernames,
    );
    let notes = ui
        .read_if(
            "administration.incidents.read",
            "/api/v1/incidents?limit=100",
        )
        .await;
    let back = "/admin/security";
    screen(
        &ui,
        "Security",
        back,
        html! {
            h1 { "Security" }
            @if flags.is_some() {
                section.card aria-labelledby="flags" {
                    h2 #flags { "Flags raised by the rules" }
                    (table(&flag_rows, &[("Raised", "created_at"), ("Rule", "rule"), ("Cashier", "cashier"), ("Business day", "business_date"), ("Details", "details"), ("Id", "id")], None))
                }
            }
            @if let Some(notes) = &notes {
                section.card aria-labelledby="notes" {
                    h2 #notes { "Incident notes" }
                    (table(&items(notes), &[("Written", "created_at"), ("Title", "title"), ("Note", "body"), ("Amends", "amends")], None))
                    @if ui.may("administration.incidents.write") {
                        h3 { "Write a note" }
                        p { "Notes cannot be changed afterwards; a later note can amend one." }
                        (form(&ui, &Form::new("note", "POST", "/api/v1/incidents", back, "Add note").done("The note was added.").idempotent(), &[
                            Field::new("title", "Title", Kind::Text).required(),
                            Field::new("body", "What happened and what was done", Kind::Area).required(),
                            Field::new("flag_ids:lines", "Flags it is about (their ids, one per line)", Kind::Area),
                        ]))
                    }
                }
            }
            section.card aria-labelledby="events" {
                h2 #events { "Security events" }
                form.filters method="get" action=(back) {
                    div { label for="kind" { "Kind" } input #kind type="text" name="kind" value=(kind); }
                    button type="submit" { "Filter" }
                }
                (table(&items(&events), &[("When", "occurred_at"), ("Kind", "kind"), ("User", "username"), ("Address", "ip"), ("Till", "workstation_id"), ("Details", "details")], None))
                (more(&events, back, &params))
            }
        },
    )
}

// ---------------------------------------------------------------- support

pub async fn support(ui: Ui, Query(params): Params) -> Response {
    if let Err(refused) = ui.require("administration.diagnostics.export").await {
        return refused;
    }
    // The checks take a few seconds (the audit chain, each module's): run when asked.
    let checks = match params.contains_key("checks") {
        true => match ui.get("/api/v1/doctor").await {
            Ok(d) => Some(d["checks"].as_array().cloned().unwrap_or_default()),
            Err(refused) => return refused,
        },
        false => None,
    };
    let version = ui.read_if("", "/api/v1/version").await;
    screen(
        &ui,
        "Support",
        "/admin/support",
        html! {
            h1 { "Support" }
            @if let Some(version) = &version {
                p { "Version " strong { (text(&version["version"])) } ", database schema " (text(&version["schema_version"])) "." }
            }
            section.card aria-labelledby="bundle" {
                h2 #bundle { "Support bundle" }
                p { "One file for support staff: version, configuration, logs, checks, backups, jobs and the audit state. Secrets and personal data are left out; making it is recorded." }
                (form(&ui, &Form::new("bundle", "POST", "/api/v1/support-bundle", "/admin/support", "Download the support bundle"), &[]))
            }
            section.card aria-labelledby="checks" {
                h2 #checks { "Checks (plugpos doctor)" }
                @if let Some(checks) = &checks {
                    div.table-wrap tabindex="0" {
                        table {
                            thead { tr { th scope="col" { "Check" } th scope="col" { "Result" } th scope="col" { "Detail" } th scope="col" { "What to do" } } }
                            tbody {
                                @for check in checks {
                                    @let level = check["level"].as_str().unwrap_or_default();
                                    tr {
                                        td { (text(&check["name"])) }
                                        td class=(match level { "ok" => "status-valid", "warn" => "status-pending", _ => "status-failed" }) {
                                            (match level { "ok" => "OK", "warn" => "Warning", _ => "Failed" })
                                        }
                                        td { (text(&check["detail"])) }
                                        td { @if let Some(r) = check["remedy"].as_str() { (r) } }
                                    }
                                }
                            }
                        }
                    }
                } @else {
                    p { "The checks of the data directory, disk, database, migrations, audit chain, clock, each module's records and the backups take a few seconds." }
                    p { a href="/admin/support?checks=1" { "Run the checks" } }
                }
            }
        },
    )
}

// ---------------------------------------------------------------- settings

/// Stays whole: one screen, read from its request to its markup as the page shows it.
pub async fn settings(ui: Ui) -> Response {
    if let Err(refused) = ui.require("administration.settings.read").await {
        return refused;
    }
    let document = match ui.get("/api/v1/settings").await {
        Ok(d) => d,
        Err(refused) => return refused,
    };
    let all = document["settings"].as_array().cloned().unwrap_or_default();
    let mut fields =
        vec![Field::new("version:int", "", Kind::Hidden).value(text(&document["version"]))];
    let mut read_only = Vec::new();
    let mut group = "";
    for setting in &all {
        let key = setting["key"].as_str().unwrap_or_default();
        if setting["writable"] != true {
            read_only.push(setting.clone());
            continue;
        }
        // Settings come by key: a heading for each first part (business, numbering, ...).
        let first = key.split('.').next().unwrap_or_default();
        if first != group {
            group = first;
            fields.push(Field::new("", heading(first), Kind::Heading));
        }
        let value = &setting["value"];
        let (suffix, kind, shown) = match setting["type"].as_str().unwrap_or_default() {
            "bool" => (
                "bool",
                Kind::Select(vec![
                    ("true".into(), "On".into()),
                    ("false".into(), "Off".into()),
                ]),
                text_raw(value),
            ),
            "integer" => ("int", Kind::Number, text_raw(value)),
            "names" | "lines" => (
                "lines",
                Kind::Area,
                value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(text_raw)
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            "objects" => ("json", Kind::Area, pretty(value)),
            _ if setting["default"].is_null() => ("null", Kind::Text, text_raw(value)),
            _ => ("", Kind::Text, text_raw(value)),
        };
        let name = match suffix {
            "" => format!("values[{key}]"),
            s => format!("values[{key}]:{s}"),
        };
        fields.push(
            Field::new(name, key, kind)
                .value(shown)
                .hint(setting["description"].as_str().unwrap_or_default()),
        );
    }
    let writable = fields.len() > 1;
    let taxes = ui
        .read_if("management.catalog.read", "/api/v1/tax-classes?limit=200")
        .await;
    let business = ui
        .read_if("administration.settings.read", "/api/v1/business")
        .await;
    fields.push(Field::new(
        "reason:opt",
        "Why (needed for some settings; kept in the audit log)",
        Kind::Text,
    ));
    screen(
        &ui,
        "Settings",
        "/admin/settings",
        html! {
            h1 { "Settings" }
            @if let Some(business) = &business {
                section.card aria-labelledby="business" {
                    h2 #business { "Business" }
                    p { "Currency " strong { (text(&business["currency"])) } " and time zone " strong { (text(&business["timezone"])) } " were fixed at setup: money and business days are counted in them." }
                    @if ui.may("administration.settings.manage") {
                        (form(&ui, &Form::new("business", "PATCH", "/api/v1/business", "/admin/settings", "Rename").done("Renamed: receipts and reports print the new name from now on."), &[
                            Field::new("version:int", "", Kind::Hidden).value(text(&business["version"])),
                            Field::new("name", "Business name (printed on receipts; a restore asks for it)", Kind::Text).value(text(&business["name"])).required(),
                        ]))
                    } @else {
                        p { "Name: " strong { (text(&business["name"])) } }
                    }
                }
            }
            @if writable {
                section.card.settings {
                    (form(&ui, &Form::new("settings", "PATCH", "/api/v1/settings", "/admin/settings", "Save settings").done("Saved: in force from the next request."), &fields))
                }
            }
            @if let Some(taxes) = &taxes {
                section.card #tax-classes aria-labelledby="tax-heading" {
                    h2 #tax-heading { "Tax classes" }
                    (table(&items(taxes), &[("Name", "name"), ("Rate", "rate")], None))
                    @if ui.may("management.catalog.write") {
                        h3 { "Add a tax class" }
                        (form(&ui, &Form::new("tax-class", "POST", "/api/v1/tax-classes", "/admin/settings", "Add tax class").done("The tax class was added.").idempotent(), &[
                            Field::new("name", "Name", Kind::Text).required(),
                            Field::new("rate", "Rate, as a fraction (0.19 is 19 %)", Kind::Text).required(),
                        ]))
                    }
                }
            }
            @if !read_only.is_empty() {
                section.card aria-labelledby="fixed" {
                    h2 #fixed { "Settings you may not change here" }
                    (table(&read_only, &[("Setting", "key"), ("Value", "value"), ("What", "description")], None))
                }
            }
        },
    )
}

/// The heading over a group of settings.
fn heading(group: &str) -> String {
    let mut title = group.replace('_', " ");
    if let Some(first) = title.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    title
}

/// A value as a form field holds it (no "yes"/"no", no `—` for null).
fn text_raw(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
