//! Tests of the definition checks: the mock implements a definition; a missing precheck,
//! unresolved state fields, unfillable rollback params and a case that does not fit are
//! each reported.

use agentsafe_core::executor::async_trait;
use agentsafe_core::{ActionContext, ActionSupport, Cancel, Credentials, ExecutionReport};
use agentsafe_registry::Registry;
use serde_json::json;

use super::*;
use crate::MockExecutor;

const SCALE: &str = r#"
name = "scale-deployment"
version = "1.0.0"
description = "Set the replica count of a Deployment"
risk = "medium"
target_types = ["k8s-deployment"]
reversible = true
rollback_action = "scale-deployment"

[[params]]
name = "namespace"
type = "string"

[[params]]
name = "name"
type = "string"

[[params]]
name = "replicas"
type = "integer"
constraints = { min = 0, max = 500 }

[[params]]
name = "reason"
type = "string"
default = "conformance"

[rollback_params]
namespace = "params.namespace"
name = "params.name"
replicas = "state.replicas"

[[state_fields]]
name = "replicas"
path = "spec.replicas"

[[state_fields]]
name = "image"
path = "spec.template.spec.containers[name={{ params.name }}].image"

[[prechecks]]
name = "deployment_exists"
description = "The Deployment exists"

[[prechecks]]
name = "disruption_budget_allows"
description = "The PodDisruptionBudget allows the change"
advisory = true
"#;

fn registry() -> Registry {
    Registry::from_sources(&[("scale-deployment.toml", SCALE)]).unwrap()
}

/// The Deployment `api` as the API server would return it.
fn deployment() -> Value {
    json!({
        "metadata": {"namespace": "shop", "name": "api"},
        "spec": {
            "replicas": 2,
            "template": {"spec": {"containers": [{"name": "api", "image": "shop/api:1"}]}}
        }
    })
}

fn case(def: &ActionDef) -> ConformanceCase {
    ConformanceCase::from_definition(
        def,
        "shop/api",
        json!({"namespace": "shop", "name": "api", "replicas": 5}),
    )
}

#[test]
fn a_case_from_a_definition_declares_what_the_definition_does() {
    let registry = registry();
    let def = registry.get("scale-deployment").unwrap();
    let case = case(def);
    assert_eq!(case.ctx.action, "scale-deployment");
    assert_eq!(case.ctx.target, "shop/api");
    assert_eq!(case.ctx.target_type.as_deref(), Some("k8s-deployment"));
    assert_eq!(case.ctx.params["reason"], "conformance", "the default");
    assert_eq!(
        case.prechecks,
        ["deployment_exists", "disruption_budget_allows"]
    );
}

#[test]
fn the_mock_implements_the_definition() {
    let registry = registry();
    let def = registry.get("scale-deployment").unwrap();
    let mock = MockExecutor::new().with_object("shop/api", deployment());
    assert_definition_conformance(&mock, def, &case(def));
    assert_eq!(mock.object("shop/api")["replicas"], 5, "executed once");
}

#[test]
fn an_unimplemented_advisory_precheck_is_not_reported() {
    let registry = registry();
    let def = registry.get("scale-deployment").unwrap();
    let mock = MockExecutor::new()
        .with_object("shop/api", deployment())
        .unsupported_precheck("disruption_budget_allows");
    let problems = run_blocking(check_definition(&mock, def, &case(def)));
    assert!(problems.is_empty(), "{problems:?}");
}

/// An executor that forgot its prechecks: it knows none of them.
#[derive(Debug)]
struct NoPrechecks(MockExecutor);

#[async_trait]
impl Executor for NoPrechecks {
    fn name(&self) -> &str {
        "no-prechecks"
    }

    fn supported_actions(&self) -> ActionSupport {
        self.0.supported_actions()
    }

    async fn precheck(
        &self,
        _ctx: &ActionContext,
        _check: &str,
        _credentials: &Credentials,
    ) -> Result<PrecheckResult, CoreError> {
        Ok(PrecheckResult::Unsupported)
    }

    async fn capture_state(
        &self,
        ctx: &ActionContext,
        credentials: &Credentials,
    ) -> Result<Value, CoreError> {
        self.0.capture_state(ctx, credentials).await
    }

    async fn dry_run(
        &self,
        ctx: &ActionContext,
        credentials: &Credentials,
    ) -> Result<Option<Value>, CoreError> {
        Executor::dry_run(&self.0, ctx, credentials).await
    }

    async fn execute(
        &self,
        ctx: &ActionContext,
        credentials: &Credentials,
        cancel: &Cancel,
    ) -> Result<ExecutionReport, CoreError> {
        self.0.execute(ctx, credentials, cancel).await
    }
}

#[test]
fn a_missing_precheck_is_reported() {
    let registry = registry();
    let def = registry.get("scale-deployment").unwrap();
    let broken = NoPrechecks(MockExecutor::new().with_object("shop/api", deployment()));
    let problems = run_blocking(check_definition(&broken, def, &case(def)));
    assert_eq!(
        problems,
        ["declared precheck `deployment_exists` is not implemented (`Unsupported`)"]
    );
}

#[test]
#[should_panic(expected = "executor `no-prechecks` does not conform to `scale-deployment`")]
fn assert_definition_conformance_fails_a_missing_precheck() {
    let registry = registry();
    let def = registry.get("scale-deployment").unwrap();
    let broken = NoPrechecks(MockExecutor::new().with_object("shop/api", deployment()));
    assert_definition_conformance(&broken, def, &case(def));
}

#[test]
fn state_the_definition_reads_must_be_captured() {
    let registry = registry();
    let def = registry.get("scale-deployment").unwrap();
    // The executor returns an object without the declared fields.
    let mock = MockExecutor::new().with_object("shop/api", json!({"metadata": {}}));
    let problems = run_blocking(check_definition(&mock, def, &case(def)));
    assert_eq!(
        problems,
        [
            "state field `replicas` (`spec.replicas`) does not resolve in the captured state",
            "state field `image` (`spec.template.spec.containers[name={{ params.name }}].image`) \
             does not resolve in the captured state",
            "rollback param `replicas` comes from `state.replicas`, which the params and the \
             captured state do not fill",
        ]
    );
    // A failing capture is reported once, without guessing at the fields.
    let mock = MockExecutor::new().missing_is_not_found();
    let problems = run_blocking(check_definition(&mock, def, &case(def)));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("capture_state failed"),
        "{problems:?}"
    );
}

#[test]
fn a_case_that_does_not_fit_the_definition_is_reported() {
    let registry = registry();
    let def = registry.get("scale-deployment").unwrap();
    let mock = MockExecutor::new().with_object("shop/api", deployment());
    let case = ConformanceCase::from_definition(
        def,
        "shop/api",
        json!({"namespace": "shop", "name": "api"}),
    );
    let problems = run_blocking(check_definition(&mock, def, &case));
    assert_eq!(
        problems,
        ["the case's params do not fit `scale-deployment`: `replicas`: missing required param"]
    );
    let other = ConformanceCase::new("restart-deployment", "shop/api");
    let problems = run_blocking(check_definition(&mock, def, &other));
    assert_eq!(
        problems,
        ["the case is for action `restart-deployment`, the definition for `scale-deployment`"]
    );
}
