//! coordination.k8s.io/v1 rules of upstream `pkg/apis/coordination/validation`: a Lease's duration must be
//! positive, its transition count non-negative, and `preferredHolder` needs a `strategy`. Leases are what node
//! heartbeats and controller leader election write many times a minute, so the rules stay exactly upstream's
//! and never reject what a real kube-apiserver accepts.

use serde_json::Value;

use super::{BadValue, EMPTY, FieldError, IS_NEGATIVE_ERROR_MSG, Path, str_at};

/// Strategies upstream accepts for `spec.strategy` (coordinated leader election).
const STRATEGIES: &[&str] = &["OldestEmulationVersion"];

pub(super) fn validate_lease(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = obj.get("spec").and_then(Value::as_object).unwrap_or(&EMPTY);
    let path = Path::new("spec");
    if let Some(d) = spec.get("leaseDurationSeconds").and_then(Value::as_i64)
        && d <= 0
    {
        errs.push(FieldError::invalid(
            &path.child("leaseDurationSeconds"),
            BadValue::Int(d),
            "must be greater than 0",
        ));
    }
    if let Some(t) = spec.get("leaseTransitions").and_then(Value::as_i64)
        && t < 0
    {
        errs.push(FieldError::invalid(
            &path.child("leaseTransitions"),
            BadValue::Int(t),
            IS_NEGATIVE_ERROR_MSG,
        ));
    }
    let strategy = str_at(spec, "strategy");
    if !strategy.is_empty() && !STRATEGIES.contains(&strategy) {
        errs.push(FieldError::not_supported(
            &path.child("strategy"),
            strategy,
            STRATEGIES,
        ));
    }
    if !str_at(spec, "preferredHolder").is_empty() && strategy.is_empty() {
        errs.push(FieldError::forbidden(
            &path.child("preferredHolder"),
            "may only be specified if `strategy` is defined",
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::resources::by_kind_name;
    use crate::validation::validate_create;
    use serde_json::json;

    fn errors(spec: serde_json::Value) -> Vec<String> {
        let obj = json!({"apiVersion":"coordination.k8s.io/v1","kind":"Lease",
            "metadata":{"name":"node-1","namespace":"kube-node-lease"},"spec":spec});
        validate_create(by_kind_name("Lease").unwrap(), &obj)
            .err()
            .map(|e| e.errors().iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_node_heartbeat_lease_is_valid() {
        let spec = json!({"holderIdentity":"node-1","leaseDurationSeconds":40,
            "renewTime":"2026-01-01T00:00:00.000000Z","leaseTransitions":0});
        assert_eq!(errors(spec), Vec::<String>::new());
    }

    #[test]
    fn durations_transitions_and_preferred_holder_follow_upstream() {
        assert_eq!(
            errors(json!({"leaseDurationSeconds":0,"leaseTransitions":-1,"preferredHolder":"a"})),
            [
                "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
                "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
                "spec.preferredHolder: Forbidden: may only be specified if `strategy` is defined",
            ]
        );
        assert_eq!(
            errors(json!({"strategy":"Newest"})),
            [
                "spec.strategy: Unsupported value: \"Newest\": supported values: \"OldestEmulationVersion\""
            ]
        );
    }
}
