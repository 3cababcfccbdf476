//! Domain modules (operations, management, administration).
//!
//! The plugs arrive with the module registry; until then the foundation serves only core routes
//! (health, metrics, setup, OpenAPI). Plugs may depend on `core` and `shared`, never the reverse.
