//! wire: Kubernetes wire formats for berth's API server. It owns request decoding
//! (JSON, YAML, protobuf), response encoding and content negotiation, server-side `Table`
//! rendering, JSON merge / JSON / strategic merge patch, server-side apply with field ownership
//! (`metadata.managedFields`), and label/field selectors. It must never do HTTP, storage or validation: callers pass
//! `serde_json::Value` objects in and get values or typed errors back.

pub mod apply;
pub mod codec;
pub mod duration;
pub mod managed;
pub mod patch;
pub mod protobuf;
pub mod selectors;
pub mod table;
