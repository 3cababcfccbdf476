//! Validating the module graph, recording versions, and routing to enabled modules only.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;

use crate::core::http::ApiError;
use crate::core::modules::{Module, ModulePermission};
use crate::core::state::AppState;

/// Why the registered modules cannot run together (a startup error).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("module {0} is registered twice")]
    Duplicate(String),
    #[error("module {module} has an invalid version {version:?}")]
    BadVersion { module: String, version: String },
    #[error("module {module} needs module {dependency}, which is not registered")]
    Missing { module: String, dependency: String },
    #[error("module {module} needs {dependency} {requirement}, but {dependency} is {found}")]
    Version {
        module: String,
        dependency: String,
        requirement: String,
        found: String,
    },
    #[error("modules depend on each other in a cycle: {0}")]
    Cycle(String),
    #[error(
        "module {module} declares permission {permission}, which is not <plug>.<module>.<action> of its own"
    )]
    BadPermission { module: String, permission: String },
}

/// The registered modules, validated.
pub struct Registry {
    modules: Vec<Arc<dyn Module>>,
}

impl Registry {
    /// Validates `modules`: unique ids, valid versions, present and compatible dependencies, no
    /// cycle, and permissions named after the module.
    pub fn new(modules: Vec<Arc<dyn Module>>) -> Result<Registry, RegistryError> {
        let mut versions = BTreeMap::new();
        for module in &modules {
            let version = semver::Version::parse(module.version()).map_err(|_| {
                RegistryError::BadVersion {
                    module: module.id().to_owned(),
                    version: module.version().to_owned(),
                }
            })?;
            if versions.insert(module.id(), version).is_some() {
                return Err(RegistryError::Duplicate(module.id().to_owned()));
            }
            for permission in module.permissions() {
                let prefix = format!("{}.", module.id());
                let action = permission.name.strip_prefix(&prefix).unwrap_or("");
                if action.is_empty()
                    || !action
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.')
                {
                    return Err(RegistryError::BadPermission {
                        module: module.id().to_owned(),
                        permission: permission.name.to_owned(),
                    });
                }
            }
        }
        for module in &modules {
            for dependency in module.dependencies() {
                let found = versions
                    .get(dependency.id)
                    .ok_or_else(|| RegistryError::Missing {
                        module: module.id().to_owned(),
                        dependency: dependency.id.to_owned(),
                    })?;
                let requirement =
                    semver::VersionReq::parse(dependency.requirement).map_err(|_| {
                        RegistryError::BadVersion {
                            module: module.id().to_owned(),
                            version: dependency.requirement.to_owned(),
                        }
                    })?;
                if !requirement.matches(found) {
                    return Err(RegistryError::Version {
                        module: module.id().to_owned(),
                        dependency: dependency.id.to_owned(),
                        requirement: dependency.requirement.to_owned(),
                        found: found.to_string(),
                    });
                }
            }
        }
        let mut topics = BTreeMap::new();
        for module in &modules {
            for topic in module.topics() {
                if !module
                    .permissions()
                    .iter()
                    .any(|p| p.name == topic.permission)
                {
                    return Err(RegistryError::BadPermission {
                        module: module.id().to_owned(),
                        permission: topic.permission.to_owned(),
                    });
                }
                if let Some(other) = topics.insert(topic.name, module.id()) {
                    return Err(RegistryError::Duplicate(format!(
                        "topic {} (in {other} and {})",
                        topic.name,
                        module.id()
                    )));
                }
            }
        }
        let registry = Registry { modules };
        registry.check_cycles()?;
        crate::core::auth::permissions::register_module_permissions(&registry.permissions());
        Ok(registry)
    }

    fn check_cycles(&self) -> Result<(), RegistryError> {
        // Depth-first search; `path` is the current chain of modules being visited.
        fn visit<'a>(
            registry: &'a Registry,
            id: &'a str,
            path: &mut Vec<&'a str>,
            done: &mut Vec<&'a str>,
        ) -> Result<(), RegistryError> {
            if done.contains(&id) {
                return Ok(());
            }
            if let Some(start) = path.iter().position(|p| *p == id) {
                let mut cycle: Vec<&str> = path[start..].to_vec();
                cycle.push(id);
                return Err(RegistryError::Cycle(cycle.join(" -> ")));
            }
            path.push(id);
            if let Some(module) = registry.get(id) {
                for dependency in module.dependencies() {
                    visit(registry, dependency.id, path, done)?;
                }
            }
            path.pop();
            done.push(id);
            Ok(())
        }
        let mut done = Vec::new();
        for module in &self.modules {
            visit(self, module.id(), &mut Vec::new(), &mut done)?;
        }
        Ok(())
    }

    /// Every registered module, in registration order.
    /// Every module's consistency checks for `plugpos doctor`.
    pub fn doctor_checks(&self) -> Vec<super::Verifier> {
        self.modules()
            .iter()
            .flat_map(|m| m.doctor_checks().iter().copied())
            .collect()
    }

    pub fn modules(&self) -> &[Arc<dyn Module>] {
        &self.modules
    }

    /// The module `id`.
    pub fn get(&self, id: &str) -> Option<&Arc<dyn Module>> {
        self.modules.iter().find(|m| m.id() == id)
    }

    /// Modules that depend on `id`.
    pub fn dependents(&self, id: &str) -> Vec<&'static str> {
        self.modules
            .iter()
            .filter(|m| m.dependencies().iter().any(|d| d.id == id))
            .map(|m| m.id())
            .collect()
    }

    /// Every permission the modules declare.
    pub fn permissions(&self) -> Vec<ModulePermission> {
        self.modules
            .iter()
            .flat_map(|m| m.permissions().iter().copied())
            .collect()
    }

    /// The modules' routes; each answers 404 `module.disabled` while its module is disabled.
    pub fn router(&self) -> OpenApiRouter<AppState> {
        let mut router = OpenApiRouter::new();
        for module in &self.modules {
            let id = module.id();
            let routes = module.routes().route_layer(axum::middleware::from_fn(
                move |req: Request, next: Next| require_enabled(id, req, next),
            ));
            router = router.merge(routes);
        }
        router
    }

    /// Records each module's version and returns which modules are enabled (new ones start enabled).
    pub async fn sync(&self, pool: &PgPool) -> Result<HashMap<String, bool>, sqlx::Error> {
        for module in &self.modules {
            sqlx::query(
                "INSERT INTO modules (id, version) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, updated_at = now() \
                 WHERE modules.version <> EXCLUDED.version",
            )
            .bind(module.id())
            .bind(module.version())
            .execute(pool)
            .await?;
        }
        let rows: Vec<(String, bool)> = sqlx::query_as("SELECT id, enabled FROM modules")
            .fetch_all(pool)
            .await?;
        Ok(rows
            .into_iter()
            .filter(|(id, _)| self.get(id).is_some())
            .collect())
    }
}

/// Which modules are enabled, shared by every request.
#[derive(Debug, Default)]
pub struct ModuleStates {
    enabled: RwLock<HashMap<String, bool>>,
}

impl ModuleStates {
    /// States as read from the database.
    pub fn new(states: HashMap<String, bool>) -> ModuleStates {
        ModuleStates {
            enabled: RwLock::new(states),
        }
    }

    /// Is module `id` enabled? (Unknown modules count as enabled: they are new.)
    pub fn is_enabled(&self, id: &str) -> bool {
        // A poisoned lock only means a writer panicked mid-update; the map is still usable.
        let map = self.enabled.read().unwrap_or_else(|e| e.into_inner());
        map.get(id).copied().unwrap_or(true)
    }

    /// Records a module's new state.
    pub fn set(&self, id: &str, enabled: bool) {
        let mut map = self.enabled.write().unwrap_or_else(|e| e.into_inner());
        map.insert(id.to_owned(), enabled);
    }
}

async fn require_enabled(id: &'static str, req: Request, next: Next) -> Response {
    let enabled = req
        .extensions()
        .get::<AppState>()
        .is_none_or(|state| state.modules().is_enabled(id));
    if !enabled {
        return ApiError::NotFound {
            code: "module.disabled",
            detail: format!(
                "The module {id} is disabled for this business; an administrator can enable it."
            ),
        }
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::modules::Dependency;

    struct Fake {
        id: &'static str,
        version: &'static str,
        dependencies: &'static [Dependency],
        permissions: &'static [ModulePermission],
    }

    impl Module for Fake {
        fn id(&self) -> &'static str {
            self.id
        }
        fn version(&self) -> &'static str {
            self.version
        }
        fn description(&self) -> &'static str {
            "test"
        }
        fn dependencies(&self) -> &'static [Dependency] {
            self.dependencies
        }
        fn permissions(&self) -> &'static [ModulePermission] {
            self.permissions
        }
        fn routes(&self) -> OpenApiRouter<AppState> {
            OpenApiRouter::new()
        }
    }

    fn fake(
        id: &'static str,
        version: &'static str,
        dependencies: &'static [Dependency],
    ) -> Arc<dyn Module> {
        Arc::new(Fake {
            id,
            version,
            dependencies,
            permissions: &[],
        })
    }

    fn error(modules: Vec<Arc<dyn Module>>) -> String {
        Registry::new(modules)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn a_valid_graph_is_accepted_and_knows_dependents() {
        let registry = Registry::new(vec![
            fake("management.catalog", "1.2.0", &[]),
            fake(
                "operations.sales",
                "1.0.0",
                &[Dependency {
                    id: "management.catalog",
                    requirement: "^1.1",
                }],
            ),
        ])
        .unwrap();
        assert_eq!(
            registry.dependents("management.catalog"),
            vec!["operations.sales"]
        );
    }

    #[test]
    fn broken_graphs_are_named() {
        let needs = &[Dependency {
            id: "management.catalog",
            requirement: "^2",
        }];
        assert_eq!(
            error(vec![fake("operations.sales", "1.0.0", needs)]),
            "module operations.sales needs module management.catalog, which is not registered"
        );
        assert_eq!(
            error(vec![
                fake("management.catalog", "1.2.0", &[]),
                fake("operations.sales", "1.0.0", needs)
            ]),
            "module operations.sales needs management.catalog ^2, but management.catalog is 1.2.0"
        );
        let a = &[Dependency {
            id: "b.b",
            requirement: "*",
        }];
        let b = &[Dependency {
            id: "a.a",
            requirement: "*",
        }];
        assert_eq!(
            error(vec![fake("a.a", "1.0.0", a), fake("b.b", "1.0.0", b)]),
            "modules depend on each other in a cycle: a.a -> b.b -> a.a"
        );
        assert_eq!(
            error(vec![fake("a.a", "1.0.0", &[]), fake("a.a", "1.0.0", &[])]),
            "module a.a is registered twice"
        );
        assert!(error(vec![fake("a.a", "one", &[])]).contains("invalid version"));
        let foreign = &[ModulePermission {
            name: "other.module.read",
            description: "x",
            roles: &[],
        }];
        let module: Arc<dyn Module> = Arc::new(Fake {
            id: "a.a",
            version: "1.0.0",
            dependencies: &[],
            permissions: foreign,
        });
        assert!(error(vec![module]).contains("declares permission other.module.read"));
    }
}
