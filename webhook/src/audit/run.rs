//! The whole audit: discover what the policies select, read the namespaces
//! and the cluster-aware policies' context, then list each resource page by
//! page and evaluate every page in parallel while the next one is fetched.
//!
//! Memory stays bounded by pages, not by the cluster: at most a few pages of
//! objects are held at once (the channel's and the one being evaluated),
//! plus the findings and — for cluster-aware policies — the context
//! snapshot, each object stripped as it arrives, as the server's watch
//! caches strip them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{ApiResource, GroupVersionKind, ListParams};
use kube::discovery::{Discovery, Scope, verbs};
use serde_json::Value;
use tokio::sync::mpsc;

use super::judge::{Candidate, judge};
use super::lister::{self, Page};
use super::progress::Progress;
use super::selectors::{NamespaceLabels, Selection};
use super::targets::{self, Interest, ServedResource, Target};
use super::{AuditError, AuditReport, Finding, PolicyAudit, Summary, Verdict};
use crate::config::PolicyConfig;
use crate::context::{ContextStore, PolicyContext, ResourceKind};
use crate::engine::CompiledPolicy;

/// A policy of the set, loaded and ready to judge.
pub struct AuditedPolicy {
    /// Its entry in the policy set.
    pub config: PolicyConfig,
    /// Its compiled component (without context yet: the audit gives it a
    /// snapshot of the cluster).
    pub compiled: CompiledPolicy,
}

/// How an audit runs.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// The kubeconfig; `None`: in-cluster, then `KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Only these namespaces (cluster-scoped objects are then left out);
    /// empty: everything.
    pub namespaces: Vec<String>,
    /// The namespace wasmhook runs in, excluded as registration excludes it.
    pub webhook_namespace: String,
    /// Objects per list page.
    pub page_size: u32,
    /// Evaluations in flight at once.
    pub workers: usize,
    /// Bound on connecting to the API server.
    pub connect_timeout: Duration,
}

/// A client for `options`.
pub async fn connect(options: &AuditOptions) -> Result<kube::Client, AuditError> {
    let mut config = crate::kube_config::load(options.kubeconfig.as_deref())
        .await
        .map_err(AuditError::Client)?;
    config.connect_timeout = Some(options.connect_timeout);
    kube::Client::try_from(config).map_err(|error| AuditError::Client(error.to_string()))
}

/// Audits the cluster behind `client` with `policies`.
pub async fn audit(
    client: &kube::Client,
    policies: Vec<AuditedPolicy>,
    options: &AuditOptions,
    progress: &Progress,
) -> Result<AuditReport, AuditError> {
    let served = discover(client, &policies).await?;
    let rules: Vec<&[_]> = policies.iter().map(|policy| policy.config.rules.as_slice()).collect();
    let plan = targets::plan(&rules, &served);
    let namespaces = Arc::new(namespace_labels(client, options).await?);
    let selections = policies
        .iter()
        .map(|policy| Selection::of(&policy.config, &options.webhook_namespace))
        .collect::<Result<Vec<_>, _>>()
        .map_err(AuditError::Selector)?;
    let policies = with_context(client, policies, options.page_size).await?;
    let shared = Arc::new(Shared {
        names: policies
            .iter()
            .map(|policy| Arc::from(policy.config.name.as_str()))
            .collect(),
        policies,
        selections,
        namespaces,
    });

    let mut findings = Vec::new();
    let mut objects = 0;
    for target in &plan.targets {
        let scopes: Vec<Option<String>> = match (options.namespaces.is_empty(), target.resource.namespaced) {
            (true, _) => vec![None],
            (false, true) => options.namespaces.iter().cloned().map(Some).collect(),
            // Cluster-scoped objects are outside the namespaces asked for.
            (false, false) => continue,
        };
        for scope in scopes {
            let (judged, found) = audit_target(client, &shared, target, scope, options, progress).await?;
            objects += judged;
            findings.extend(found);
        }
    }

    let order: HashMap<&str, usize> = shared
        .names
        .iter()
        .enumerate()
        .map(|(index, name)| (&**name, index))
        .collect();
    findings.sort_by(|a, b| (order[&*a.policy], &a.object).cmp(&(order[&*b.policy], &b.object)));
    let mut summaries: BTreeMap<&str, Summary> = BTreeMap::new();
    for finding in &findings {
        summaries.entry(&finding.policy).or_default().add(finding.result);
    }
    let reports = shared
        .policies
        .iter()
        .enumerate()
        .map(|(index, policy)| PolicyAudit {
            name: shared.names[index].clone(),
            mode: policy.config.enforcement.mode,
            resources: plan
                .targets
                .iter()
                .filter(|target| target.interests.iter().any(|interest| interest.policy == index))
                .map(|target| target.resource.qualified_name())
                .collect(),
            notes: plan.notes.get(&index).cloned().unwrap_or_default(),
            conditions_not_evaluated: !policy.config.match_conditions.is_empty(),
            summary: summaries.get(&*shared.names[index]).copied().unwrap_or_default(),
        })
        .collect();
    Ok(AuditReport {
        objects,
        summary: Summary::of(&findings),
        policies: reports,
        results: findings,
    })
}

/// What every evaluation task reads.
struct Shared {
    names: Vec<Arc<str>>,
    policies: Vec<AuditedPolicy>,
    selections: Vec<Selection>,
    namespaces: Arc<NamespaceLabels>,
}

/// Lists `target` (in `namespace`, or everywhere) and judges each object by
/// the policies interested in it. Returns how many objects at least one
/// policy judged, and the findings.
async fn audit_target(
    client: &kube::Client,
    shared: &Arc<Shared>,
    target: &Target,
    namespace: Option<String>,
    options: &AuditOptions,
    progress: &Progress,
) -> Result<(usize, Vec<Finding>), AuditError> {
    let resource = &target.resource;
    progress.listing(&resource.qualified_name());
    let (sender, mut pages) = mpsc::channel(2);
    let lister = tokio::spawn(lister::list_pages(
        client.clone(),
        api_resource(resource),
        namespace,
        ListParams::default(),
        options.page_size,
        sender,
    ));
    let interests: Arc<[Interest]> = target.interests.clone().into();
    let resource = Arc::new(resource.clone());
    let (mut seen, mut announced) = (0u64, 0u64);
    let (mut judged, mut findings) = (0, Vec::new());
    while let Some(page) = pages.recv().await {
        let Page { objects, remaining } = page.map_err(|reason| AuditError::List {
            resource: resource.qualified_name(),
            reason,
        })?;
        seen += objects.len() as u64;
        let known = seen + remaining.unwrap_or(0);
        if known > announced {
            progress.found(known - announced);
            announced = known;
        }
        let count = objects.len() as u64;
        let (page_judged, page_findings) = judge_page(shared, &resource, &interests, objects, options.workers).await;
        judged += page_judged;
        findings.extend(page_findings);
        progress.judged(count);
    }
    lister.await.map_err(|error| AuditError::List {
        resource: resource.qualified_name(),
        reason: format!("the list task failed: {error}"),
    })?;
    Ok((judged, findings))
}

/// Judges one page, split over `workers` tasks.
async fn judge_page(
    shared: &Arc<Shared>,
    resource: &Arc<ServedResource>,
    interests: &Arc<[Interest]>,
    objects: Vec<Value>,
    workers: usize,
) -> (usize, Vec<Finding>) {
    let chunk_size = objects.len().div_ceil(workers.max(1)).max(1);
    let mut objects = objects.into_iter();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let chunk: Vec<Value> = objects.by_ref().take(chunk_size).collect();
        if chunk.is_empty() {
            break;
        }
        let (shared, resource, interests) = (shared.clone(), resource.clone(), interests.clone());
        tasks.spawn(async move {
            let mut judged = 0;
            let mut findings = Vec::new();
            for object in chunk {
                let before = findings.len();
                judge_object(&shared, &resource, &interests, object, &mut findings).await;
                judged += usize::from(findings.len() > before);
            }
            (judged, findings)
        });
    }
    let mut judged = 0;
    let mut findings = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((count, found)) => {
                judged += count;
                findings.extend(found);
            }
            // A panic here is a bug in wasmhook, not in a policy (those are
            // trapped by the engine): surface it.
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
    (judged, findings)
}

/// Judges `object` by every interested policy whose selectors admit it.
async fn judge_object(
    shared: &Shared,
    resource: &ServedResource,
    interests: &[Interest],
    object: Value,
    findings: &mut Vec<Finding>,
) {
    let labels: BTreeMap<String, String> = object
        .pointer("/metadata/labels")
        .and_then(|labels| serde_json::from_value(labels.clone()).ok())
        .unwrap_or_default();
    let namespace = object.pointer("/metadata/namespace").and_then(Value::as_str);
    let is_namespace = resource.group.is_empty() && resource.kind == "Namespace";
    let admitted: Vec<&Interest> = interests
        .iter()
        .filter(|interest| {
            shared.selections[interest.policy]
                .admits(namespace, is_namespace, &labels, &shared.namespaces)
                .is_ok()
        })
        .collect();
    if admitted.is_empty() {
        return;
    }
    let candidate = match Candidate::new(object, resource) {
        Ok(candidate) => candidate,
        Err(unreadable) => {
            let (object, reason) = *unreadable;
            for interest in admitted {
                findings.push(Finding {
                    policy: shared.names[interest.policy].clone(),
                    object: object.clone(),
                    result: Verdict::Error,
                    message: format!("the object cannot be evaluated: {reason}"),
                    patch: None,
                });
            }
            return;
        }
    };
    for interest in admitted {
        let policy = &shared.policies[interest.policy];
        findings.push(
            judge(
                &policy.compiled,
                &shared.names[interest.policy],
                policy.config.enforcement.mode,
                interest.on_update,
                &candidate,
            )
            .await,
        );
    }
}

/// What the cluster serves in the groups the policies' rules name (every
/// group when a rule says `*`).
async fn discover(client: &kube::Client, policies: &[AuditedPolicy]) -> Result<Vec<ServedResource>, AuditError> {
    let groups: BTreeSet<&str> = policies
        .iter()
        .flat_map(|policy| &policy.config.rules)
        .flat_map(|rule| rule.api_groups.iter().flatten())
        .map(String::as_str)
        .collect();
    let discovery = Discovery::new(client.clone());
    let discovery = if groups.contains("*") {
        discovery
    } else {
        discovery.filter(&groups.into_iter().collect::<Vec<_>>())
    };
    let discovery = discovery
        .run()
        .await
        .map_err(|error| AuditError::Discovery(crate::error_chain::error_chain(&error)))?;
    let mut served = Vec::new();
    for group in discovery.groups() {
        let preferred = group.preferred_version_or_latest().to_owned();
        for version in group.versions() {
            for (resource, capabilities) in group.versioned_resources(version) {
                served.push(ServedResource {
                    group: resource.group.clone(),
                    version: resource.version.clone(),
                    preferred: version == preferred,
                    plural: resource.plural.clone(),
                    kind: resource.kind.clone(),
                    namespaced: capabilities.scope == Scope::Namespaced,
                    listable: capabilities.supports_operation(verbs::LIST),
                });
            }
        }
    }
    Ok(served)
}

/// The labels of every namespace; checks that each `--namespace` exists.
async fn namespace_labels(client: &kube::Client, options: &AuditOptions) -> Result<NamespaceLabels, AuditError> {
    let resource = ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&());
    let listed = lister::list_all(client.clone(), resource, ListParams::default(), options.page_size)
        .await
        .map_err(|reason| AuditError::List {
            resource: "namespaces".to_owned(),
            reason,
        })?;
    let labels: NamespaceLabels = listed
        .into_iter()
        .filter_map(|namespace| {
            let name = namespace.pointer("/metadata/name")?.as_str()?.to_owned();
            let labels = namespace
                .pointer("/metadata/labels")
                .and_then(|labels| serde_json::from_value(labels.clone()).ok())
                .unwrap_or_default();
            Some((name, labels))
        })
        .collect();
    if let Some(missing) = options.namespaces.iter().find(|asked| !labels.contains_key(*asked)) {
        return Err(AuditError::NoSuchNamespace(missing.clone()));
    }
    Ok(labels)
}

/// Gives every policy that declares `context:` a snapshot of the kinds it
/// reads, listed once each, complete before any evaluation.
async fn with_context(
    client: &kube::Client,
    policies: Vec<AuditedPolicy>,
    page_size: u32,
) -> Result<Vec<AuditedPolicy>, AuditError> {
    let mut declared: BTreeMap<ResourceKind, Vec<&str>> = BTreeMap::new();
    for policy in &policies {
        for declaration in &policy.config.context {
            declared
                .entry(declaration.kind.clone())
                .or_default()
                .push(&policy.config.name);
        }
    }
    if declared.is_empty() {
        return Ok(policies);
    }
    let store = Arc::new(ContextStore::new("the cluster (an audit's snapshot)"));
    for (kind, names) in declared {
        let failed = |reason: String| AuditError::Context {
            kind: kind.clone(),
            policies: names.join(", "),
            reason,
        };
        let (group, version) = kind.group_version();
        let gvk = GroupVersionKind::gvk(group, version, &kind.kind);
        let (resource, _) = kube::discovery::pinned_kind(client, &gvk)
            .await
            .map_err(|error| failed(crate::error_chain::error_chain(&error)))?;
        // Page by page into the cache, each object stripped as it arrives:
        // the whole unstripped list is never held (measured: 190 → ~105 MiB
        // peak for 10,000 Services).
        let (cache, _) = store.add_kind(kind.clone());
        let (sender, mut pages) = mpsc::channel(2);
        let lister = tokio::spawn(lister::list_pages(
            client.clone(),
            resource,
            None,
            ListParams::default(),
            page_size,
            sender,
        ));
        while let Some(page) = pages.recv().await {
            for object in page.map_err(&failed)?.objects {
                if let Err(failure) = cache.apply(object) {
                    tracing::warn!(%kind, %failure, "context object skipped");
                }
            }
        }
        lister
            .await
            .map_err(|error| failed(format!("the list task failed: {error}")))?;
        cache.mark_synced();
    }
    Ok(policies
        .into_iter()
        .map(|policy| {
            if policy.config.context.is_empty() {
                return policy;
            }
            let context = PolicyContext::new(policy.config.context.clone(), store.clone());
            AuditedPolicy {
                compiled: policy.compiled.with_context(Some(context)),
                config: policy.config,
            }
        })
        .collect())
}

fn api_resource(resource: &ServedResource) -> ApiResource {
    ApiResource {
        group: resource.group.clone(),
        version: resource.version.clone(),
        api_version: resource.api_version(),
        kind: resource.kind.clone(),
        plural: resource.plural.clone(),
    }
}
