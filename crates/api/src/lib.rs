//! api: the Kubernetes object model berth serves, with no HTTP and no storage.
//!
//! It owns the resource registry ([`resources`]), upstream defaulting ([`defaults`]), create/update
//! validation with upstream 422 causes ([`validation`]), unknown- and duplicate-field detection for
//! `fieldValidation` ([`fields`]), `kind: Status` errors ([`status`]), OpenAPI v3 documents
//! ([`openapi`]), discovery documents ([`discovery`]) and the `autoscaling/v1 Scale` view
//! ([`scale`]). Objects travel as `serde_json::Value`. Nothing here performs IO, reads a clock, or
//! knows how objects are stored or served.

pub mod defaults;
pub mod discovery;
pub mod fields;
pub mod openapi;
pub mod resources;
pub mod scale;
pub mod status;
pub mod validation;

pub use resources::ResourceInfo;
pub use status::Status;
pub use validation::{Invalid, validate_create, validate_update};
