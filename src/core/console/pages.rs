//! The console's pages (maud: every value is HTML-escaped unless marked otherwise). Each screen's
//! text sits in its own function, so it can be translated later in one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::Console;
use crate::core::backup::{BackupView, Status};

/// A screen of the console, and who may open it.
struct Screen {
    path: &'static str,
    title: &'static str,
    permission: &'static str,
}

const SCREENS: &[Screen] = &[Screen {
    path: "/admin/backups",
    title: "Backups",
    permission: crate::core::backup::http::READ,
}];

/// The screens `console`'s user may open.
fn screens(console: &Console) -> impl Iterator<Item = &'static Screen> + '_ {
    SCREENS
        .iter()
        .filter(|s| console.caller.permissions.contains(s.permission))
}

/// A whole page: the header with the screens the user may open and "Sign out", then `body`.
fn page(title: &str, console: Option<&Console>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · 3PlugPOS" }
                link rel="stylesheet" href="/admin/static/admin.css";
            }
            body {
                header {
                    span.brand { "3PlugPOS console" }
                    @if let Some(console) = console {
                        nav aria-label="Screens" {
                            a href="/admin" { "Home" }
                            @for screen in screens(console) {
                                a href=(screen.path) { (screen.title) }
                            }
                        }
                        span { "Signed in as " strong { (console.caller.username) } }
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
pub fn login(csrf: &str, error: Option<&str>) -> Markup {
    page(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            div.card {
                @if let Some(error) = error {
                    p.error role="alert" { (error) }
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

/// The start page: the screens the user may open, or why there are none.
pub fn home(console: &Console) -> Response {
    let mine: Vec<&Screen> = screens(console).collect();
    if mine.is_empty() {
        return refused_for(
            Some(console),
            StatusCode::FORBIDDEN,
            "Your account has no console screens. Cashiers work at the till.",
        );
    }
    page(
        "Home",
        Some(console),
        html! {
            h1 { "Welcome, " (console.caller.display_name) }
            div.card {
                ul {
                    @for screen in &mine {
                        li { a href=(screen.path) { (screen.title) } }
                    }
                }
            }
        },
    )
    .into_response()
}

/// A file size as people read it.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000 => format!("{:.1} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b => format!("{} kB", b.div_ceil(1000)),
    }
}

fn status(status: Status) -> (&'static str, &'static str) {
    match status {
        Status::Pending => ("Checking…", "status-pending"),
        Status::Valid => ("Valid: restorable", "status-valid"),
        Status::Invalid => ("Invalid: not restorable", "status-failed"),
        Status::Failed => ("Failed", "status-failed"),
    }
}

/// The backups, newest first, and "Back up now" for those who may.
pub fn backups(console: &Console, items: &[BackupView], notice: Option<&str>) -> Markup {
    let may_take = console
        .caller
        .permissions
        .contains(crate::core::backup::http::MANAGE);
    page(
        "Backups",
        Some(console),
        html! {
            h1 { "Backups" }
            @if let Some(notice) = notice {
                p.notice role="status" { (notice) }
            }
            @if may_take {
                form.card method="post" action="/admin/backups" {
                    input type="hidden" name="csrf" value=(console.csrf);
                    p { "A backup is encrypted, then restored into a scratch database and checked before it counts as valid." }
                    button type="submit" { "Back up now" }
                }
            }
            @if items.is_empty() {
                p { "No backup yet." }
            } @else {
                table {
                    thead { tr { th { "Taken" } th { "Status" } th { "Size" } th { "Version" } } }
                    tbody {
                        @for b in items {
                            @let (label, class) = status(b.status);
                            tr {
                                td { (b.created_at.format("%Y-%m-%d %H:%M UTC")) }
                                td class=(class) {
                                    (label)
                                    @if let Some(e) = &b.error { " (" (e.message) ")" }
                                }
                                td { (size(b.size_bytes)) }
                                td { (b.app_version) }
                            }
                        }
                    }
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
    let body = page(
        "Not allowed",
        console,
        html! {
            h1 { "Not allowed" }
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
