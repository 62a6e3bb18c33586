//! Benchmark of `ActionDef::validate_params` on the shipped catalogue (the hot path of
//! every decision) and of loading the catalogue. Run with
//! `cargo bench -p agentsafe-registry`; it prints nanoseconds per call.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use agentsafe_registry::{Params, Registry};
use serde_json::json;

/// Runs `f` repeatedly for about `budget` and returns the mean time per call.
fn measure(budget: Duration, mut f: impl FnMut()) -> Duration {
    // Warm up caches and branch predictors.
    for _ in 0..1_000 {
        f();
    }
    let mut iterations: u32 = 0;
    let start = Instant::now();
    while start.elapsed() < budget {
        for _ in 0..1_000 {
            f();
        }
        iterations += 1_000;
    }
    start.elapsed() / iterations.max(1)
}

#[expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
fn report(name: &str, per_call: Duration) {
    println!("{name:<48} {:>8} ns/call", per_call.as_nanos());
}

fn params(value: serde_json::Value) -> Params {
    match value {
        serde_json::Value::Object(map) => map,
        _ => Params::new(),
    }
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../actions");
    let Ok(registry) = Registry::load(&dir) else {
        report("catalogue failed to load", Duration::ZERO);
        return;
    };
    let budget = Duration::from_millis(500);

    let cases = [
        (
            "scale-deployment (3 params, valid)",
            "scale-deployment",
            params(json!({"namespace": "shop", "name": "web", "replicas": 3})),
        ),
        (
            "update-image (4 params, long image regex)",
            "update-image",
            params(
                json!({"namespace": "shop", "name": "web", "container": "app",
                          "image": "registry.example.com:5000/shop/web:1.2.3"}),
            ),
        ),
        (
            "drain-node (1 param + 4 defaults)",
            "drain-node",
            params(json!({"node": "node-1.example.com"})),
        ),
        (
            "apply-network-policy (arrays and objects)",
            "apply-network-policy",
            params(
                json!({"namespace": "shop", "name": "allow-web", "pod_selector": {"app": "web"},
                          "policy_types": ["Ingress"], "allow_from_namespaces": ["ingress"],
                          "ports": [80, 443]}),
            ),
        ),
        (
            "ec2-stop-instance (valid)",
            "ec2-stop-instance",
            params(json!({"region": "eu-west-1", "instance_id": "i-0123456789abcdef0"})),
        ),
        (
            "scale-deployment (3 errors)",
            "scale-deployment",
            params(json!({"namespace": "kube-system; rm", "replicas": 900, "force": true})),
        ),
    ];
    for (label, action, input) in &cases {
        let Some(action) = registry.get(action) else {
            continue;
        };
        let per_call = measure(budget, || {
            let _ = black_box(action.validate_params(black_box(input)));
        });
        report(label, per_call);
    }

    let per_call = measure(budget, || {
        let _ = black_box(registry.get(black_box("scale-deployment")));
    });
    report("Registry::get", per_call);

    let start = Instant::now();
    let mut loads: u32 = 0;
    while start.elapsed() < Duration::from_secs(1) {
        let _ = black_box(Registry::load(&dir));
        loads += 1;
    }
    report("Registry::load (33 files)", start.elapsed() / loads.max(1));
}
