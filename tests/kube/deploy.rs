//! `deploy/` on the oldest supported Kubernetes: every object accepted by the
//! API server's strict field validation, and no install — complete, failed
//! halfway, or with pods that never become ready — blocking a write.

use super::{create_service, render, start_api, webhook_configurations};

#[test]
fn the_base_installs_and_blocks_no_write_while_no_pod_is_ready() {
    let api = start_api();
    let applied = api
        .kubectl_ok(&["apply", "-k", super::deploy_dir().join("base").to_str().unwrap()])
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(applied.contains("deployment.apps/wasmhook created"), "{applied}");
    // No kubelet here: the pods never run, as when an image cannot be pulled.
    // Nothing registered, so nothing refuses the cluster's writes.
    for resource in ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"] {
        assert!(
            !webhook_configurations(&api, resource).contains(&"wasmhook".to_owned()),
            "{resource}: nothing may be registered before a pod is ready"
        );
    }
    create_service(&api, "web-headless").expect("a Service write goes through");

    let deleted = api
        .kubectl_ok(&[
            "delete",
            "-k",
            super::deploy_dir().join("base").to_str().unwrap(),
            "--wait=false",
        ])
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(
        deleted.contains("clusterrole.rbac.authorization.k8s.io \"wasmhook-register\" deleted"),
        "{deleted}"
    );
}

#[test]
fn an_install_that_fails_halfway_blocks_no_write() {
    // The failure reported in issue #25: the Deployment refused by a 1.28 API
    // server (a preStop `sleep` handler, unknown before 1.29), everything else
    // created. It once left fail-closed webhooks with no server behind them.
    let api = start_api();
    let rendered = render("base");
    let anchor = "        imagePullPolicy: IfNotPresent\n";
    assert!(
        rendered.contains(anchor),
        "the rendered Deployment changed: update this test"
    );
    let broken = rendered.replace(
        anchor,
        &format!("{anchor}        lifecycle:\n          preStop:\n            sleep:\n              seconds: 5\n"),
    );
    let output = api
        .kubectl_with_input(&["apply", "-f", "-"], &broken)
        .expect("kubectl runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the broken Deployment must be refused");
    assert!(
        stderr.contains("unknown field \"spec.template.spec.containers[0].lifecycle.preStop.sleep\""),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("service/wasmhook created"),
        "the rest was applied: {stdout}"
    );
    create_service(&api, "db-headless").expect("a Service write goes through");
}

#[test]
fn every_rendering_passes_a_server_side_dry_run() {
    let api = start_api();
    // Namespaced objects need their namespace to exist for a dry run.
    api.kubectl_ok(&["create", "namespace", "wasmhook-system"])
        .unwrap_or_else(|error| panic!("{error}"));
    for dir in ["base", "overlays/cert-manager", "overlays/dev", "overlays/registry"] {
        // cert-manager's kinds need its CRDs, which this API server does not
        // have; they are checked offline (tests/integration/deploy).
        let rendered = render(dir);
        let documents: Vec<&str> = rendered
            .split("\n---\n")
            .filter(|document| !document.contains("apiVersion: cert-manager.io/"))
            .filter(|document| !document.contains("kind: Namespace\n"))
            .collect();
        let output = api
            .kubectl_with_input(&["apply", "--dry-run=server", "-f", "-"], &documents.join("\n---\n"))
            .expect("kubectl runs");
        assert!(
            output.status.success(),
            "deploy/{dir}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("(server dry run)"), "deploy/{dir}: {stdout}");
    }
}
