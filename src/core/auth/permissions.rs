//! Permissions: strings `<plug>.<module>.<action>`, declared with a description by the module
//! that checks them, and the built-in role templates of SPEC section 4.

/// One declared permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    pub name: &'static str,
    pub description: &'static str,
}

/// The permissions core declares. Plugs add theirs through the module registry.
pub const CORE: &[Permission] = &[
    Permission {
        name: "administration.users.read",
        description: "List and view users",
    },
    Permission {
        name: "administration.users.manage",
        description: "Create, edit, disable, unlock users and reset passwords",
    },
    Permission {
        name: "administration.users.contact_read",
        description: "See users' contact details (email, phone)",
    },
    Permission {
        name: "administration.users.contact_write",
        description: "Set users' contact details (email, phone)",
    },
    Permission {
        name: "administration.roles.read",
        description: "List roles and their permissions",
    },
    Permission {
        name: "administration.roles.manage",
        description: "Create roles, change their permissions, assign roles",
    },
    Permission {
        name: "administration.security_events.read",
        description: "Read security events",
    },
    Permission {
        name: "administration.audit.read",
        description: "Query the audit log",
    },
    Permission {
        name: "administration.audit.export",
        description: "Export the audit log (CSV, PDF)",
    },
    Permission {
        name: "administration.audit.verify",
        description: "Verify the audit chain and checkpoints",
    },
    Permission {
        name: "administration.modules.manage",
        description: "Enable and disable modules",
    },
    Permission {
        name: "administration.sessions.read",
        description: "See sessions, including IP addresses",
    },
    Permission {
        name: "administration.jobs.read",
        description: "See jobs and schedules, and follow the jobs topic",
    },
    Permission {
        name: "administration.jobs.manage",
        description: "Retry dead jobs",
    },
    Permission {
        name: "administration.backups.read",
        description: "List backups and their verification status",
    },
    Permission {
        name: "administration.backups.manage",
        description: "Take and verify backups",
    },
    Permission {
        name: "administration.backups.restore",
        description: "Restore a backup (super admins only)",
    },
    Permission {
        name: "administration.settings.read",
        description: "See the business settings",
    },
    Permission {
        name: "administration.settings.manage",
        description: "Change the business settings (some settings also need their own permission)",
    },
    Permission {
        name: "administration.system.read",
        description: "See the server's readiness in detail (paths, processes, database errors)",
    },
    Permission {
        name: "administration.diagnostics.export",
        description: "Download the support bundle (redacted configuration, logs and checks)",
    },
    Permission {
        name: "administration.devices.read",
        description: "List enrolled tills (devices)",
    },
    Permission {
        name: "administration.devices.manage",
        description: "Enrol tills and revoke them",
    },
    Permission {
        name: "administration.devices.offline_use",
        description: "Work on an enrolled till while it is offline (the change feed ships the user, with their PIN's offline verifier, to tills)",
    },
    Permission {
        name: "administration.devices.conflicts",
        description: "See the offline conflict log (what tills did offline that the server would have refused) and resolve its entries",
    },
    Permission {
        name: "administration.integrations.read",
        description: "List API keys (never the keys themselves)",
    },
    Permission {
        name: "administration.integrations.manage",
        description: "Create and revoke API keys for other systems (each with at most your own permissions)",
    },
];

/// A permission a module declares, and the built-in roles that start with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModulePermission {
    pub name: &'static str,
    pub description: &'static str,
    /// Built-in roles granted this permission at setup (super_admin always is).
    pub roles: &'static [&'static str],
}

/// Permissions declared by the registered modules (set when the registry is built).
static MODULE_PERMISSIONS: std::sync::RwLock<Vec<ModulePermission>> =
    std::sync::RwLock::new(Vec::new());

/// Makes the modules' permissions known (called by the module registry; repeated calls are harmless).
pub fn register_module_permissions(list: &[ModulePermission]) {
    let mut known = MODULE_PERMISSIONS
        .write()
        .unwrap_or_else(|e| e.into_inner());
    for permission in list {
        if !known.iter().any(|k| k.name == permission.name) {
            known.push(*permission);
        }
    }
}

fn module_permissions() -> Vec<ModulePermission> {
    MODULE_PERMISSIONS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Every permission known to this build: core's and the registered modules'.
pub fn all() -> Vec<Permission> {
    let mut out = CORE.to_vec();
    out.extend(module_permissions().iter().map(|p| Permission {
        name: p.name,
        description: p.description,
    }));
    out
}

/// Is `name` a declared permission?
pub fn exists(name: &str) -> bool {
    CORE.iter().any(|p| p.name == name) || module_permissions().iter().any(|p| p.name == name)
}

/// The permissions a built-in role starts with (roles are editable afterwards).
pub fn builtin_template(role: &str) -> Vec<&'static str> {
    let mut granted = core_template(role);
    granted.extend(
        module_permissions()
            .iter()
            .filter(|p| role == "super_admin" || p.roles.contains(&role))
            .map(|p| p.name),
    );
    granted
}

fn core_template(role: &str) -> Vec<&'static str> {
    match role {
        "super_admin" => CORE.iter().map(|p| p.name).collect(),
        "manager" => vec![
            "administration.users.read",
            "administration.settings.read",
            "administration.devices.read",
            "administration.devices.offline_use",
            "administration.devices.conflicts",
        ],
        "cashier" => vec!["administration.devices.offline_use"],
        "accountant" => vec![
            "administration.security_events.read",
            "administration.audit.read",
            "administration.audit.export",
            "administration.audit.verify",
            "administration.settings.read",
        ],
        "auditor" => vec![
            "administration.settings.read",
            "administration.audit.read",
            "administration.audit.export",
            "administration.audit.verify",
            "administration.security_events.read",
            "administration.roles.read",
            "administration.users.read",
        ],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_well_formed_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for p in CORE {
            assert_eq!(p.name.split('.').count(), 3, "{}", p.name);
            assert!(
                p.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_'),
                "{}",
                p.name
            );
            assert!(seen.insert(p.name), "duplicate {}", p.name);
        }
        for role in ["cashier", "manager", "accountant", "auditor", "super_admin"] {
            assert!(builtin_template(role).iter().all(|p| exists(p)), "{role}");
        }
    }
}
