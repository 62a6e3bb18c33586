//! Checks of the shipped catalogue `actions/*.toml`: names, risks, name and id patterns,
//! rollbacks, target bindings, and that dangerous values are refused.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

use std::collections::BTreeMap;
use std::path::Path;

use agentsafe_registry::{ActionDef, ParamType, Registry, Risk, RollbackSource};
use serde_json::{Value, json};

const DNS_LABEL: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS_SUBDOMAIN: &str = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const K8S_KEY: &str = r"[a-zA-Z0-9_][-._a-zA-Z0-9]*|\.[-_a-zA-Z0-9][-._a-zA-Z0-9]*";
const REGION: &str = "[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]";
const ECS_NAME: &str = "[A-Za-z0-9_-]{1,255}";

const KUBERNETES: [&str; 20] = [
    "apply-network-policy",
    "cordon-node",
    "create-namespace",
    "delete-namespace",
    "delete-pod",
    "drain-node",
    "exec-pod",
    "get-configmap",
    "get-pod-logs",
    "get-secret",
    "port-forward",
    "restart-deployment",
    "rollout-status",
    "rollout-undo",
    "scale-deployment",
    "scale-hpa",
    "uncordon-node",
    "update-configmap",
    "update-hpa-limits",
    "update-image",
];

const AWS: [&str; 13] = [
    "ec2-stop-instance",
    "ec2-start-instance",
    "ec2-reboot-instance",
    "ec2-terminate-instance",
    "ecs-update-service",
    "ecs-stop-task",
    "ecs-scale-service",
    "lambda-update-function-config",
    "lambda-invoke-function",
    "s3-delete-object",
    "s3-put-bucket-policy",
    "iam-attach-role-policy",
    "iam-detach-role-policy",
];

fn catalogue() -> Registry {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../actions");
    Registry::load(&dir).unwrap_or_else(|e| panic!("the shipped catalogue must load:\n{e}"))
}

fn is_kubernetes(action: &ActionDef) -> bool {
    KUBERNETES.contains(&action.name())
}

/// The attributes of each inventory target type.
fn target_attributes() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        ("k8s-cluster", &["cluster"][..]),
        ("k8s-namespace", &["cluster", "namespace"][..]),
        ("k8s-deployment", &["cluster", "namespace", "name"][..]),
        ("k8s-hpa", &["cluster", "namespace", "name"][..]),
        ("k8s-node", &["cluster", "node"][..]),
        (
            "aws-ec2-instance",
            &["account", "region", "instance_id"][..],
        ),
        (
            "aws-ecs-service",
            &["account", "region", "cluster", "service"][..],
        ),
        ("aws-ecs-cluster", &["account", "region", "cluster"][..]),
        (
            "aws-lambda-function",
            &["account", "region", "function_name"][..],
        ),
        ("aws-s3-bucket", &["account", "region", "bucket"][..]),
        ("aws-iam-role", &["account", "region", "role_name"][..]),
    ])
}

#[test]
fn exactly_the_33_actions() {
    let registry = catalogue();
    let mut expected: Vec<&str> = KUBERNETES.iter().chain(AWS.iter()).copied().collect();
    expected.sort_unstable();
    let names: Vec<&str> = registry.actions().map(ActionDef::name).collect();
    assert_eq!(names, expected);
    assert_eq!(registry.len(), 33);
}

#[test]
fn risks_are_as_specified() {
    let low = [
        "get-configmap",
        "get-pod-logs",
        "rollout-status",
        "lambda-invoke-function",
    ];
    let critical = [
        "delete-namespace",
        "drain-node",
        "ec2-terminate-instance",
        "iam-attach-role-policy",
        "iam-detach-role-policy",
        "s3-put-bucket-policy",
    ];
    let high = [
        "apply-network-policy",
        "cordon-node",
        "exec-pod",
        "get-secret",
        "rollout-undo",
        "update-image",
        "ec2-reboot-instance",
        "ec2-stop-instance",
        "s3-delete-object",
    ];
    for action in catalogue().actions() {
        let name = action.name();
        let expected = if low.contains(&name) {
            Risk::Low
        } else if critical.contains(&name) {
            Risk::Critical
        } else if high.contains(&name) {
            Risk::High
        } else {
            Risk::Medium
        };
        assert_eq!(action.risk(), expected, "{name}");
    }
}

#[test]
fn kubernetes_names_have_dns_1123_patterns() {
    let registry = catalogue();
    let mut checked = 0;
    for action in registry.actions().filter(|a| is_kubernetes(a)) {
        for param in action.params() {
            let expected = match param.name() {
                "namespace" | "container" => Some((DNS_LABEL, 63)),
                "cluster" | "name" | "pod" | "configmap" | "secret" | "node" => {
                    Some((DNS_SUBDOMAIN, 253))
                }
                "key" => Some((K8S_KEY, 253)),
                _ => None,
            };
            let Some((pattern, max)) = expected else {
                continue;
            };
            let c = param.constraints();
            assert_eq!(
                c.pattern(),
                Some(pattern),
                "{}.{}",
                action.name(),
                param.name()
            );
            assert_eq!(
                c.max_length(),
                Some(max),
                "{}.{}",
                action.name(),
                param.name()
            );
            checked += 1;
        }
    }
    assert!(checked >= 60, "only {checked} name params checked");
}

#[test]
fn aws_ids_have_their_patterns() {
    let registry = catalogue();
    let expected: BTreeMap<&str, &str> = BTreeMap::from([
        ("account", "[0-9]{12}"),
        ("region", REGION),
        ("instance_id", "i-[0-9a-f]{8}([0-9a-f]{9})?"),
        ("cluster", ECS_NAME),
        ("service", ECS_NAME),
        ("task_id", "[0-9a-f]{32}"),
        ("function_name", "[A-Za-z0-9_-]{1,64}"),
        ("bucket", "[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"),
        (
            "key",
            "[A-Za-z0-9_()'!-][A-Za-z0-9_.()'!-]*(/[A-Za-z0-9_()'!-][A-Za-z0-9_.()'!-]*)*",
        ),
        ("role_name", "[A-Za-z0-9+=,.@_-]{1,64}"),
        (
            "policy_arn",
            "arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/([A-Za-z0-9+=,.@_-]+/)*[A-Za-z0-9+=,.@_-]+",
        ),
    ]);
    for name in AWS {
        let action = registry.get(name).unwrap();
        let region = action
            .param("region")
            .unwrap_or_else(|| panic!("{name}: no region"));
        assert_eq!(region.target_attr(), Some("region"), "{name}");
        for param in action.params() {
            if let Some(pattern) = expected.get(param.name()) {
                assert_eq!(
                    param.constraints().pattern(),
                    Some(*pattern),
                    "{name}.{}",
                    param.name()
                );
            }
        }
    }
}

#[test]
fn aws_actions_bind_their_resource_to_the_target() {
    let registry = catalogue();
    for name in AWS {
        let action = registry.get(name).unwrap();
        for target_type in action.target_types() {
            let resource_attr = match target_type.as_str() {
                "aws-ec2-instance" => "instance_id",
                "aws-ecs-service" => "service",
                "aws-ecs-cluster" => "cluster",
                "aws-lambda-function" => "function_name",
                "aws-s3-bucket" => "bucket",
                "aws-iam-role" => "role_name",
                other => panic!("{name}: unexpected target type {other}"),
            };
            // ecs-stop-task also runs on service targets, where the task's cluster is bound.
            let bound = action
                .target_bindings()
                .any(|(_, attr)| attr == resource_attr)
                || (name == "ecs-stop-task" && resource_attr == "service");
            assert!(
                bound,
                "{name}: `{resource_attr}` is not bound for {target_type}"
            );
        }
    }
}

#[test]
fn target_attrs_exist_on_every_target_type() {
    let attrs = target_attributes();
    for action in catalogue().actions() {
        assert!(!action.target_types().is_empty());
        for target_type in action.target_types() {
            let known = attrs
                .get(target_type.as_str())
                .unwrap_or_else(|| panic!("{}: unknown target type {target_type}", action.name()));
            for (param, attr) in action.target_bindings() {
                assert!(
                    known.contains(&attr),
                    "{}: param `{param}` binds `{attr}`, which {target_type} lacks",
                    action.name()
                );
            }
        }
    }
}

/// Every attribute that locates a target (its cluster; its account and region) is bound
/// into the params, so a ticket says where it acts and the executor can refuse another
/// place; the credentials are scoped to it and a rollback acts in the same place.
#[test]
fn every_action_binds_where_it_acts() {
    let attrs = target_attributes();
    for action in catalogue().actions() {
        let name = action.name();
        let location: &[&str] = if is_kubernetes(action) {
            &["cluster"]
        } else {
            &["account", "region"]
        };
        for target_type in action.target_types() {
            let known = attrs[target_type.as_str()];
            for attr in location {
                assert!(known.contains(attr), "{target_type} lacks `{attr}`");
            }
        }
        for attr in location {
            let param = action
                .param(attr)
                .unwrap_or_else(|| panic!("{name}: no `{attr}` param"));
            assert_eq!(param.target_attr(), Some(*attr), "{name}.{attr}");
            assert!(
                param.required() && param.default().is_none(),
                "{name}.{attr}"
            );
            assert_eq!(param.param_type(), ParamType::String, "{name}.{attr}");
            let credentials = action.credentials().unwrap();
            let expected = format!("{{{{ params.{attr} }}}}");
            assert_eq!(
                credentials.fields().get(*attr).map(|t| t.source()),
                Some(expected.as_str()),
                "{name}: credentials not scoped to `{attr}`"
            );
            if action.reversible() {
                assert!(
                    action.rollback_params().iter().any(|p| p.name() == *attr
                        && p.source() == &RollbackSource::Param((*attr).to_owned())),
                    "{name}: the rollback does not keep `{attr}`"
                );
            }
        }
        if let Some(cluster) = action.param("cluster").filter(|_| is_kubernetes(action)) {
            let c = cluster.constraints();
            assert_eq!(
                (c.pattern(), c.max_length()),
                (Some(DNS_SUBDOMAIN), Some(253)),
                "{name}"
            );
        }
        if let Some(account) = action.param("account") {
            assert_eq!(account.constraints().pattern(), Some("[0-9]{12}"), "{name}");
            let mut params = agentsafe_registry::Params::new();
            for bad in ["12345678901", "1234567890123", "12345678901a", "*"] {
                params.insert("account".into(), json!(bad));
                let errors = action.validate_params(&params).unwrap_err();
                assert!(
                    errors.iter().any(|e| e.param == "account"),
                    "{name} accepted account {bad:?}"
                );
            }
        }
        // No wildcard account in a credential's resource ARN.
        if let Some(resource) = action.credentials().unwrap().fields().get("resource") {
            assert!(
                !resource.source().contains(":*:"),
                "{name}: {}",
                resource.source()
            );
        }
    }
}

#[test]
fn rollbacks_resolve_and_are_as_specified() {
    let registry = catalogue();
    let expected: BTreeMap<&str, &str> = BTreeMap::from([
        ("scale-deployment", "scale-deployment"),
        ("scale-hpa", "scale-hpa"),
        ("update-hpa-limits", "update-hpa-limits"),
        ("update-image", "update-image"),
        ("cordon-node", "uncordon-node"),
        ("uncordon-node", "cordon-node"),
        ("drain-node", "uncordon-node"),
        ("update-configmap", "update-configmap"),
        ("create-namespace", "delete-namespace"),
        ("ec2-stop-instance", "ec2-start-instance"),
        ("ec2-start-instance", "ec2-stop-instance"),
        ("ecs-scale-service", "ecs-scale-service"),
        ("ecs-update-service", "ecs-update-service"),
        (
            "lambda-update-function-config",
            "lambda-update-function-config",
        ),
        ("s3-put-bucket-policy", "s3-put-bucket-policy"),
        ("iam-attach-role-policy", "iam-detach-role-policy"),
        ("iam-detach-role-policy", "iam-attach-role-policy"),
    ]);
    for action in registry.actions() {
        let name = action.name();
        assert_eq!(
            action.rollback_action(),
            expected.get(name).copied(),
            "{name}"
        );
        assert_eq!(
            action.reversible(),
            action.rollback_action().is_some(),
            "{name}"
        );
        let Some(rollback) = action.rollback_action() else {
            assert!(action.rollback_params().is_empty(), "{name}");
            continue;
        };
        let target = registry.get(rollback).unwrap();
        for p in action.rollback_params() {
            let target_param = target
                .param(p.name())
                .unwrap_or_else(|| panic!("{name}: {}", p.name()));
            match p.source() {
                RollbackSource::Param(own) => {
                    let own = action.param(own).unwrap();
                    assert_eq!(
                        own.param_type(),
                        target_param.param_type(),
                        "{name}.{}",
                        p.name()
                    );
                }
                source @ RollbackSource::State(_) => {
                    let field = source.state_field().unwrap();
                    assert!(
                        action.state_fields().iter().any(|f| f.name() == field),
                        "{name}: {field}"
                    );
                }
            }
        }
        for required in target
            .params()
            .iter()
            .filter(|p| p.required() && p.default().is_none())
        {
            assert!(
                action
                    .rollback_params()
                    .iter()
                    .any(|p| p.name() == required.name()),
                "{name}: rollback param `{}` unfilled",
                required.name()
            );
        }
    }
}

#[test]
fn every_action_is_fully_described() {
    for action in catalogue().actions() {
        let name = action.name();
        assert_eq!(action.version(), "1.0.0", "{name}");
        assert!(!action.description().is_empty(), "{name}");
        assert!(!action.required_privileges().is_empty(), "{name}");
        assert!(!action.prechecks().is_empty(), "{name}");
        assert!(!action.state_fields().is_empty(), "{name}");
        let credentials = action
            .credentials()
            .unwrap_or_else(|| panic!("{name}: no credentials"));
        assert!(
            credentials.ttl().as_secs() > 0 && credentials.ttl().as_secs() <= 3600,
            "{name}"
        );
        let provider = if is_kubernetes(action) {
            "kubernetes"
        } else {
            "aws"
        };
        assert_eq!(credentials.kind(), provider, "{name}");
        assert!(action.tags().iter().any(|t| t == provider), "{name}");
        if action.tags().iter().any(|t| t == "read-only") {
            assert!(!action.reversible(), "{name}");
        }
        for param in action.params() {
            assert!(param.description().is_some(), "{name}.{}", param.name());
        }
        // Namespaced objects: the credentials are scoped to their namespace. (The namespace
        // actions act on the cluster-scoped Namespace object itself.)
        let namespace_object = ["create-namespace", "delete-namespace"].contains(&name);
        if is_kubernetes(action) && action.param("namespace").is_some() && !namespace_object {
            assert_eq!(
                credentials.fields().get("namespace").map(|t| t.source()),
                Some("{{ params.namespace }}"),
                "{name}"
            );
        }
    }
}

#[test]
fn specific_params_are_as_specified() {
    let registry = catalogue();
    let exec = registry.get("exec-pod").unwrap();
    let command = exec.param("command").unwrap();
    assert_eq!(
        command.param_type(),
        ParamType::Array(agentsafe_registry::ItemType::String)
    );
    assert_eq!(command.constraints().min_length(), Some(1));

    let secret = registry.get("get-secret").unwrap();
    let reveal = secret.param("reveal_values").unwrap();
    assert_eq!(
        (reveal.param_type(), reveal.default()),
        (ParamType::Boolean, Some(&json!(false)))
    );

    let configmap = registry.get("update-configmap").unwrap();
    let value = configmap.param("value").unwrap();
    assert!(!value.sensitive());
    assert_eq!(value.constraints().max_length(), Some(1024 * 1024));

    let policy = registry
        .get("s3-put-bucket-policy")
        .unwrap()
        .param("policy")
        .unwrap();
    assert_eq!(
        (policy.param_type(), policy.constraints().max_length()),
        (ParamType::String, Some(20480))
    );

    let invoke = registry.get("lambda-invoke-function").unwrap();
    let payload = invoke.param("payload").unwrap();
    assert_eq!(
        (payload.param_type(), payload.default()),
        (ParamType::Object, Some(&json!({})))
    );
    let invocation = invoke.param("invocation_type").unwrap();
    assert_eq!(
        invocation.constraints().enum_values(),
        Some(&[json!("RequestResponse"), json!("Event"), json!("DryRun")][..])
    );

    let netpol = registry.get("apply-network-policy").unwrap();
    let names: Vec<&str> = netpol.params().iter().map(|p| p.name()).collect();
    assert_eq!(
        names,
        [
            "cluster",
            "namespace",
            "name",
            "pod_selector",
            "policy_types",
            "allow_from_namespaces",
            "allow_from_pod_labels",
            "ports"
        ]
    );
    assert_eq!(
        netpol.param("namespace").unwrap().target_attr(),
        Some("namespace")
    );
    let ports = netpol.param("ports").unwrap();
    assert_eq!(
        ports.param_type(),
        ParamType::Array(agentsafe_registry::ItemType::Integer)
    );
}

/// Values that must never reach a backend through any string param.
const DANGEROUS: [&str; 12] = [
    "x --all",
    "*",
    "kube-system; rm",
    "a b",
    "$(id)",
    "`id`",
    "a|b",
    "a>b",
    "a&b",
    "a\nb",
    "a\tb",
    "",
];

#[test]
fn dangerous_values_are_refused_by_every_string_param() {
    let registry = catalogue();
    // Free text that never reaches a command line: checked by prechecks, not patterns.
    let free_text = [
        ("update-configmap", "value"),
        ("s3-put-bucket-policy", "policy"),
    ];
    // Arguments of a program run without a shell: flags and paths are their point.
    let argv = [("exec-pod", "command")];
    let mut checked = 0;
    for action in registry.actions() {
        for param in action.params() {
            let pair = (action.name(), param.name());
            if free_text.contains(&pair) {
                continue;
            }
            let strings = match param.param_type() {
                ParamType::String => false,
                ParamType::Array(agentsafe_registry::ItemType::String) => true,
                _ => continue,
            };
            let mut bad: Vec<&str> = DANGEROUS.to_vec();
            if !argv.contains(&pair) {
                // No path traversal or absolute path, not even in S3 keys.
                bad.extend(["../etc", "/etc/passwd", "a/../b", "a//b"]);
                if is_kubernetes(action) {
                    bad.extend(["-n", "--all-namespaces", ".."]);
                }
            }
            for value in bad {
                let v = if strings {
                    json!([value])
                } else {
                    json!(value)
                };
                let mut params = agentsafe_registry::Params::new();
                params.insert(param.name().to_owned(), v);
                let errors = action.validate_params(&params).unwrap_err();
                assert!(
                    errors.iter().any(|e| e.param.starts_with(param.name())),
                    "{}.{} accepted {value:?}",
                    action.name(),
                    param.name()
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 500, "only {checked} checks");
}

#[test]
fn realistic_requests_validate() {
    let registry = catalogue();
    let ok = |action: &str, params: Value| {
        let params = params.as_object().unwrap().clone();
        registry
            .get(action)
            .unwrap()
            .validate_params(&params)
            .unwrap_or_else(|e| panic!("{action}: {e:?}"))
    };
    ok(
        "scale-deployment",
        json!({"cluster": "staging-eu-1", "namespace": "shop", "name": "web.v2", "replicas": 3}),
    );
    ok(
        "update-image",
        json!({"cluster": "staging-eu-1", "namespace": "shop", "name": "web", "container": "app",
               "image": "registry.example.com:5000/team/web:v1.2.3"}),
    );
    ok(
        "update-image",
        json!({"cluster": "staging-eu-1", "namespace": "shop", "name": "web", "container": "app",
               "image": format!("nginx@sha256:{}", "a".repeat(64))}),
    );
    ok(
        "exec-pod",
        json!({"cluster": "staging-eu-1", "namespace": "shop", "pod": "web-1", "command": ["ls", "-la", "/tmp"]}),
    );
    ok(
        "update-configmap",
        json!({"cluster": "staging-eu-1", "namespace": "shop", "configmap": "cfg", "key": "app.properties", "value": "a = b\n"}),
    );
    ok(
        "ec2-stop-instance",
        json!({"account": "123456789012", "region": "us-gov-west-1", "instance_id": "i-0123456789abcdef0"}),
    );
    ok(
        "s3-delete-object",
        json!({"account": "123456789012", "region": "eu-west-1", "bucket": "my.bucket", "key": "logs/2024/app(1).log"}),
    );
    ok(
        "ecs-update-service",
        json!({"account": "123456789012", "region": "eu-west-1", "cluster": "prod", "service": "api", "desired_count": 2,
               "task_definition": "arn:aws:ecs:eu-west-1:123456789012:task-definition/api:42"}),
    );
    ok(
        "iam-attach-role-policy",
        json!({"account": "123456789012", "region": "us-east-1", "role_name": "app-role",
               "policy_arn": "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"}),
    );
    ok(
        "apply-network-policy",
        json!({"cluster": "staging-eu-1", "namespace": "shop", "name": "allow-web", "pod_selector": {"app": "web"},
               "policy_types": ["Ingress"], "allow_from_namespaces": ["ingress"], "ports": [80, 443]}),
    );
    let out = ok(
        "lambda-invoke-function",
        json!({"account": "123456789012", "region": "eu-west-1", "function_name": "fn_1"}),
    );
    assert_eq!(out.get("payload"), Some(&json!({})));
    assert_eq!(out.get("invocation_type"), Some(&json!("RequestResponse")));

    let bad_image = registry.get("update-image").unwrap().validate_params(
        json!({"cluster": "staging-eu-1", "namespace": "shop", "name": "web", "container": "app", "image": "nginx"})
            .as_object()
            .unwrap(),
    );
    assert!(
        bad_image.is_err(),
        "an image without tag or digest must be refused"
    );
}

#[test]
fn content_hash_is_stable_and_sensitive_to_content() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../actions");
    let mut sources: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    let hash = catalogue().content_hash();
    assert_eq!(hash.len(), 64);
    assert!(
        hash.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );

    // Other file names and order, same content: same hash.
    sources.reverse();
    let renamed: Vec<(String, String)> = sources
        .iter()
        .enumerate()
        .map(|(i, (_, text))| (format!("{i:02}.toml"), text.clone()))
        .collect();
    assert_eq!(
        Registry::from_sources(&renamed).unwrap().content_hash(),
        hash
    );

    // One changed bound: another hash.
    let changed: Vec<(String, String)> = sources
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.replace(
                    "constraints = { min = 0, max = 500 }",
                    "constraints = { min = 0, max = 501 }",
                ),
            )
        })
        .collect();
    assert_ne!(
        Registry::from_sources(&changed).unwrap().content_hash(),
        hash
    );
}

#[test]
fn json_uses_the_file_field_names() {
    let registry = catalogue();
    let json = registry.get("scale-deployment").unwrap().to_json();
    assert_eq!(json["name"], "scale-deployment");
    assert_eq!(json["risk"], "medium");
    assert_eq!(json["rollback_params"]["replicas"], "state.replicas");
    assert_eq!(json["params"][0]["name"], "cluster");
    assert_eq!(json["params"][3]["type"], "integer");
    assert_eq!(
        json["params"][3]["constraints"],
        json!({"min": 0, "max": 500})
    );
    assert_eq!(
        json["state_fields"][0],
        json!({"name": "replicas", "path": "spec.replicas"})
    );
    assert_eq!(json["credentials"]["type"], "kubernetes");
    assert_eq!(json["credentials"]["ttl"], "15m");
    assert_eq!(
        json["credentials"]["fields"]["namespace"],
        "{{ params.namespace }}"
    );
    let exec = registry.get("exec-pod").unwrap().to_json();
    assert_eq!(exec["params"][4]["type"], "array");
    assert_eq!(exec["params"][4]["items"], "string");
}
