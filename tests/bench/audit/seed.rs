//! The objects the benchmark seeds, and what the audit must say of them.
//!
//! Services and StatefulSets are spread evenly over `bench-NN` namespaces.
//! In each namespace, StatefulSet `db-J` is, by `J % 25`:
//!
//! - 0: `serviceName: ""` — the mutating policy would fill it in, the
//!   verify step refuses it (fail, fail);
//! - 1, 2: paired with `db-J-headless`, which does not exist (warn, pass);
//! - 3, 4: paired with `db-J`, an ordinary ClusterIP Service (warn, pass);
//! - otherwise paired with `db-J-headless`, headless and selecting its pods
//!   (pass, pass).
//!
//! Services are those pairs, one `legacy-K-headless` with a cluster IP per
//! hundred Services (fail under headless-service and its verify step), and
//! ordinary `web-K` ClusterIP Services for the rest. Every object carries
//! the `last-applied-configuration` annotation `kubectl apply` leaves, so
//! the lists are as large as a cluster's managed that way.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// Verdict counts, as the audit's JSON has them (the audit's own type).
pub use wasmhook::audit::Summary;

/// What an audit of the seeded cluster must report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Distinct objects judged.
    pub objects: usize,
    /// Each audited policy's verdicts.
    pub policies: BTreeMap<String, Summary>,
}

impl Expected {
    /// Every verdict.
    pub fn summary(&self) -> Summary {
        let mut total = Summary::default();
        for each in self.policies.values() {
            total.pass += each.pass;
            total.warn += each.warn;
            total.fail += each.fail;
            total.error += each.error;
        }
        total
    }

    /// Only `policy`'s share.
    pub fn only(&self, policy: &str, objects: usize) -> Self {
        Self {
            objects,
            policies: self
                .policies
                .iter()
                .filter(|(name, _)| *name == policy)
                .map(|(name, summary)| (name.clone(), *summary))
                .collect(),
        }
    }
}

/// One object to create: its collection's path and its body.
pub struct Creation {
    /// `/api/v1/namespaces/NS/services`, …
    pub path: String,
    /// The object.
    pub object: Value,
}

/// The seeded cluster.
pub struct Seed {
    /// The namespaces, to create first.
    pub namespaces: Vec<Creation>,
    /// Services, then StatefulSets.
    pub objects: Vec<Creation>,
    /// Seeded Services.
    pub services: usize,
    /// Seeded StatefulSets.
    pub statefulsets: usize,
    /// Verdicts of the full policy set on the seeded objects alone.
    pub expected: Expected,
}

/// Plans `services` Services and `statefulsets` StatefulSets over
/// `namespaces` namespaces.
pub fn plan(services: usize, statefulsets: usize, namespaces: usize) -> Result<Seed, String> {
    let namespaces = namespaces.max(1);
    let share = |total: usize, index: usize| total / namespaces + usize::from(index < total % namespaces);
    let mut seed = Seed {
        namespaces: Vec::new(),
        objects: Vec::new(),
        services,
        statefulsets,
        expected: Expected {
            objects: services + statefulsets,
            policies: BTreeMap::new(),
        },
    };
    let (mut service_objects, mut statefulset_objects) = (Vec::new(), Vec::new());
    let (mut headless, mut statefulset, mut statefulset_verify) =
        (Summary::default(), Summary::default(), Summary::default());
    for index in 0..namespaces {
        let namespace = format!("bench-{index:02}");
        seed.namespaces.push(Creation {
            path: "/api/v1/namespaces".to_owned(),
            object: applied(json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": namespace, "labels": {"team": format!("team-{}", index % 4)}},
            })),
        });
        let services_path = format!("/api/v1/namespaces/{namespace}/services");
        let statefulsets_path = format!("/apis/apps/v1/namespaces/{namespace}/statefulsets");
        let mut paired = 0;
        for j in 0..share(statefulsets, index) {
            let name = format!("db-{j:03}");
            let service_name = match j % 25 {
                0 => {
                    statefulset.fail += 1;
                    statefulset_verify.fail += 1;
                    String::new()
                }
                1 | 2 => {
                    statefulset.warn += 1;
                    statefulset_verify.pass += 1;
                    format!("{name}-headless")
                }
                3 | 4 => {
                    statefulset.warn += 1;
                    statefulset_verify.pass += 1;
                    service_objects.push(Creation {
                        path: services_path.clone(),
                        object: service(&namespace, &name, &name, false),
                    });
                    paired += 1;
                    name.clone()
                }
                _ => {
                    statefulset.pass += 1;
                    statefulset_verify.pass += 1;
                    let service_name = format!("{name}-headless");
                    service_objects.push(Creation {
                        path: services_path.clone(),
                        object: service(&namespace, &service_name, &name, true),
                    });
                    paired += 1;
                    service_name
                }
            };
            statefulset_objects.push(Creation {
                path: statefulsets_path.clone(),
                object: stateful_set(&namespace, &name, &service_name),
            });
        }
        let here = share(services, index);
        let legacy = here / 100;
        let Some(web) = here.checked_sub(paired + legacy) else {
            return Err(format!(
                "namespace {namespace}: {here} Services cannot hold the {paired} its StatefulSets need: seed more \
                 Services or fewer StatefulSets"
            ));
        };
        for k in 0..legacy {
            let name = format!("legacy-{k:02}-headless");
            service_objects.push(Creation {
                path: services_path.clone(),
                object: service(&namespace, &name, &format!("legacy-{k:02}"), false),
            });
        }
        headless.fail += legacy;
        headless.pass += paired + web;
        for k in 0..web {
            let name = format!("web-{k:04}");
            service_objects.push(Creation {
                path: services_path.clone(),
                object: service(&namespace, &name, &name, false),
            });
        }
    }
    seed.objects = service_objects;
    seed.objects.extend(statefulset_objects);
    let policies = &mut seed.expected.policies;
    policies.insert("headless-service".to_owned(), headless);
    policies.insert("headless-service-verify".to_owned(), headless);
    policies.insert("statefulset-service-name".to_owned(), statefulset);
    policies.insert("statefulset-service-name-verify".to_owned(), statefulset_verify);
    Ok(seed)
}

/// A Service named `name` selecting `app`'s pods: headless, or with a
/// cluster IP.
fn service(namespace: &str, name: &str, app: &str, headless: bool) -> Value {
    let mut service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": app,
                "app.kubernetes.io/part-of": namespace,
                "app.kubernetes.io/managed-by": "kubectl",
            },
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": app},
            "ports": [
                {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"},
            ],
        },
    });
    if headless {
        service["spec"]["clusterIP"] = json!("None");
        service["spec"]["publishNotReadyAddresses"] = json!(true);
        service["spec"]["ports"] = json!([{"name": "peer", "port": 5432, "targetPort": 5432, "protocol": "TCP"}]);
    }
    applied(service)
}

/// A three-replica database StatefulSet with a volume claim template.
fn stateful_set(namespace: &str, name: &str, service_name: &str) -> Value {
    applied(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": namespace},
        },
        "spec": {
            "serviceName": service_name,
            "replicas": 3,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": namespace}},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "containers": [{
                        "name": "postgres",
                        "image": "postgres:16.4",
                        "ports": [{"name": "peer", "containerPort": 5432}],
                        "env": [{"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"}],
                        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
                        "readinessProbe": {"exec": {"command": ["pg_isready", "-U", "postgres"]}, "periodSeconds": 10},
                        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
                    }],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}},
            }],
        },
    }))
}

/// `object` with the annotation `kubectl apply` (client-side) leaves: the
/// applied object itself, as compact JSON.
fn applied(mut object: Value) -> Value {
    let text = object.to_string();
    let metadata = &mut object["metadata"];
    if metadata.get("annotations").is_none() {
        metadata["annotations"] = json!({});
    }
    metadata["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = json!(text + "\n");
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_seed_has_the_counts_the_benchmark_reports() {
        let seed = plan(10_000, 1_000, 20).expect("plans");
        let services = seed
            .objects
            .iter()
            .filter(|each| each.object["kind"] == "Service")
            .count();
        assert_eq!((services, seed.objects.len() - services), (10_000, 1_000));
        let summary = |name: &str| seed.expected.policies[name];
        let s = |pass, warn, fail| Summary {
            pass,
            warn,
            fail,
            error: 0,
        };
        assert_eq!(summary("headless-service"), s(9_900, 0, 100));
        assert_eq!(summary("statefulset-service-name"), s(800, 160, 40));
        assert_eq!(summary("statefulset-service-name-verify"), s(960, 0, 40));
        assert_eq!(seed.expected.summary().total(), 22_000);
    }
}
