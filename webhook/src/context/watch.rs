//! Watches that keep the [`ContextStore`] current: one per declared kind,
//! shared by every policy that declares it, never an API call on the review
//! path.
//!
//! Each kind is resolved once by discovery (a kind the cluster does not
//! serve fails start-up, naming it), then followed with kube-runtime's
//! watcher: a paginated list, then a watch with bookmarks; a watch that
//! expires (410 Gone) is re-listed; errors back off exponentially (kube's
//! default back-off) and are retried forever. A re-list replaces the kind's
//! objects at once, so an object deleted while the watch was down
//! disappears.
//!
//! What operators see ([`KindStatus`]): objects held, when the kind last
//! synced, watch errors and the last one, and how long since the last event.
//! `/readyz` is not ready until every kind has synced once; after that a
//! broken watch is reported there, in the logs and in the metrics, but does
//! not make the server unready — that would take admission down cluster-wide
//! while the cache, a little stale, still serves.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::Serialize;
use tokio::sync::watch as signal;

use super::store::KindCache;
use super::{ContextProvider, ContextStore, Declaration, PolicyContext, ResourceKind};

/// Objects per page of a (re-)list: bounded requests on large clusters.
const PAGE_SIZE: u32 = 500;

/// Why a kind cannot be watched at all.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// No client could be configured.
    #[error("cannot configure a Kubernetes client for the context watches: {0}")]
    Client(String),
    /// Discovery failed: the kind is unknown, or the API server refused.
    #[error("cannot watch {kind} (declared in the context: of {policies}): {reason}")]
    Discovery {
        /// The kind.
        kind: ResourceKind,
        /// The policies that declare it.
        policies: String,
        /// What the API server said.
        reason: String,
    },
}

/// What is known of one kind's watch, for `/readyz` and the metrics.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KindStatus {
    /// The kind's resource (`services`, `statefulsets.apps`).
    pub resource: String,
    /// Objects held.
    pub objects: usize,
    /// Whether the first list has been stored.
    pub synced: bool,
    /// When the kind last finished a (re-)list, in seconds since the epoch.
    pub last_sync_unix_seconds: Option<f64>,
    /// Errors since start-up (failed lists and watches).
    pub watch_errors: u64,
    /// The last error, and when (seconds since the epoch).
    pub last_error: Option<String>,
    /// When the last error happened.
    pub last_error_unix_seconds: Option<f64>,
    /// Whether the watch is failing: an error in the last five minutes with
    /// no change delivered since.
    pub failing: bool,
    /// Seconds since the last event (an object, a bookmark, a sync).
    pub seconds_since_last_event: Option<f64>,
}

/// One kind being watched.
pub struct KindWatch {
    kind: ResourceKind,
    resource: String,
    cache: Arc<KindCache>,
    progress: Mutex<Progress>,
}

#[derive(Default)]
struct Progress {
    last_sync: Option<SystemTime>,
    last_event: Option<Instant>,
    /// The last change (Apply or Delete) the watch delivered.
    last_change: Option<Instant>,
    errors: u64,
    last_error: Option<(SystemTime, Instant, String)>,
}

/// How long an error keeps a watch reported as failing when nothing has
/// changed since (a quiet cluster delivers no changes to prove it healthy).
const ERROR_MEMORY: Duration = Duration::from_secs(300);

impl KindWatch {
    /// The kind.
    pub fn kind(&self) -> &ResourceKind {
        &self.kind
    }

    /// What is known of the watch now.
    pub fn status(&self) -> KindStatus {
        let progress = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
        KindStatus {
            resource: self.resource.clone(),
            objects: self.cache.len(),
            synced: self.cache.synced(),
            last_sync_unix_seconds: progress
                .last_sync
                .and_then(|time| time.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|since| since.as_secs_f64()),
            watch_errors: progress.errors,
            last_error: progress.last_error.as_ref().map(|(_, _, text)| text.clone()),
            last_error_unix_seconds: progress
                .last_error
                .as_ref()
                .and_then(|(time, _, _)| time.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|since| since.as_secs_f64()),
            failing: progress.last_error.as_ref().is_some_and(|(_, at, _)| {
                at.elapsed() < ERROR_MEMORY && progress.last_change.is_none_or(|change| change < *at)
            }),
            seconds_since_last_event: progress.last_event.map(|at| at.elapsed().as_secs_f64()),
        }
    }

    fn note(&self, update: impl FnOnce(&mut Progress)) {
        update(&mut self.progress.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// Every watch of the server, over one store. The Kubernetes client is made
/// at the first kind declared (a server whose policies declare no context
/// never connects).
pub struct ContextWatches {
    kubeconfig: Option<std::path::PathBuf>,
    timeout: Duration,
    client: tokio::sync::OnceCell<kube::Client>,
    store: Arc<ContextStore>,
    watches: Mutex<Vec<Arc<KindWatch>>>,
    stopping: signal::Receiver<bool>,
}

impl ContextWatches {
    /// Watches nothing yet. The client comes from `kubeconfig`, else the
    /// in-cluster service account, else `KUBECONFIG`/`~/.kube/config`;
    /// discovery is bounded by `timeout`; tasks end when `stopping` turns
    /// true.
    pub fn new(kubeconfig: Option<std::path::PathBuf>, timeout: Duration, stopping: signal::Receiver<bool>) -> Self {
        Self {
            kubeconfig,
            timeout,
            client: tokio::sync::OnceCell::new(),
            store: Arc::new(ContextStore::new("the cluster (watch caches)")),
            watches: Mutex::default(),
            stopping,
        }
    }

    async fn client(&self) -> Result<&kube::Client, WatchError> {
        self.client
            .get_or_try_init(|| async {
                let mut config = crate::kube_config::load(self.kubeconfig.as_deref())
                    .await
                    .map_err(WatchError::Client)?;
                config.connect_timeout = Some(self.timeout);
                kube::Client::try_from(config).map_err(|error| WatchError::Client(error.to_string()))
            })
            .await
    }

    /// The store the watches fill.
    pub fn store(&self) -> &Arc<ContextStore> {
        &self.store
    }

    /// Starts watching `kind` unless it is watched already (declared by
    /// `policies`, for messages). Discovery runs now, bounded by `timeout`.
    pub async fn ensure(&self, kind: &ResourceKind, policies: &str) -> Result<(), WatchError> {
        if self.store.kind(kind).is_some() {
            return Ok(());
        }
        let timeout = self.timeout;
        let client = self.client().await?.clone();
        let failed = |reason: String| WatchError::Discovery {
            kind: kind.clone(),
            policies: policies.to_owned(),
            reason,
        };
        let (group, version) = kind.group_version();
        let gvk = GroupVersionKind::gvk(group, version, &kind.kind);
        let (resource, _) = match tokio::time::timeout(timeout, kube::discovery::pinned_kind(&client, &gvk)).await {
            Ok(Ok(found)) => found,
            Ok(Err(error)) => return Err(failed(error.to_string())),
            Err(_) => return Err(failed(format!("no answer from the API server within {timeout:?}"))),
        };
        let (cache, added) = self.store.add_kind(kind.clone());
        if !added {
            return Ok(());
        }
        let watch = Arc::new(KindWatch {
            kind: kind.clone(),
            resource: if group.is_empty() {
                resource.plural.clone()
            } else {
                format!("{}.{group}", resource.plural)
            },
            cache,
            progress: Mutex::default(),
        });
        self.watches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(watch.clone());
        tokio::spawn(follow(client, resource, watch, self.stopping.clone()));
        Ok(())
    }

    /// Every watch, by kind.
    pub fn watches(&self) -> Vec<Arc<KindWatch>> {
        let mut watches = self.watches.lock().unwrap_or_else(PoisonError::into_inner).clone();
        watches.sort_by(|a, b| a.kind.cmp(&b.kind));
        watches
    }

    /// Every watched kind with its status, read once each (for `/readyz`
    /// and the metrics).
    pub fn statuses(&self) -> Vec<(ResourceKind, KindStatus)> {
        self.watches()
            .iter()
            .map(|watch| (watch.kind.clone(), watch.status()))
            .collect()
    }
}

impl ContextProvider for ContextWatches {
    /// Starts the watches `declarations` need (discovery, bounded by the
    /// timeout) from the policy loader's blocking thread.
    fn provide(&self, policy: &str, declarations: &[Declaration]) -> Result<PolicyContext, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "context watches need the server's runtime".to_owned())?;
        for declared in declarations {
            runtime
                .block_on(self.ensure(&declared.kind, policy))
                .map_err(|error| error.to_string())?;
        }
        Ok(PolicyContext::new(declarations.to_vec(), self.store.clone()))
    }
}

/// Follows one kind until `stopping`.
async fn follow(
    client: kube::Client,
    resource: ApiResource,
    watch: Arc<KindWatch>,
    mut stopping: signal::Receiver<bool>,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
    let config = watcher::Config::default().page_size(PAGE_SIZE);
    let type_meta = kube::api::TypeMeta {
        api_version: watch.kind.api_version.clone(),
        kind: watch.kind.kind.clone(),
    };
    // The API server leaves apiVersion and kind out of listed items: put
    // them back, as a policy reading the object expects them.
    let as_json = |mut object: DynamicObject| {
        object.types = Some(type_meta.clone());
        serde_json::to_value(object).expect("a DynamicObject serializes")
    };
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut listed = Vec::new();
    loop {
        let event = tokio::select! {
            _ = stopping.wait_for(|stop| *stop) => return,
            event = events.next() => event,
        };
        let Some(event) = event else { return };
        match event {
            Ok(event) => {
                watch.note(|progress| {
                    progress.last_event = Some(Instant::now());
                    if matches!(event, Event::Apply(_) | Event::Delete(_)) {
                        progress.last_change = progress.last_event;
                    }
                });
                match event {
                    Event::Init => listed.clear(),
                    Event::InitApply(object) => listed.push(as_json(object)),
                    Event::InitDone => {
                        let count = listed.len();
                        for failure in watch.cache.replace(std::mem::take(&mut listed)) {
                            tracing::warn!(kind = %watch.kind, %failure, "context object skipped");
                        }
                        watch.note(|progress| progress.last_sync = Some(SystemTime::now()));
                        tracing::info!(kind = %watch.kind, objects = count, "context cache synced");
                    }
                    Event::Apply(object) => {
                        if let Err(failure) = watch.cache.apply(as_json(object)) {
                            tracing::warn!(kind = %watch.kind, %failure, "context object skipped");
                        }
                    }
                    Event::Delete(object) => {
                        if let Err(failure) = watch.cache.delete(&as_json(object)) {
                            tracing::warn!(kind = %watch.kind, %failure, "context deletion skipped");
                        }
                    }
                }
            }
            Err(error) => {
                let message = crate::error_chain::error_chain(&error);
                tracing::warn!(kind = %watch.kind, error = %message, "context watch failed; retrying with back-off");
                watch.note(|progress| {
                    progress.errors += 1;
                    progress.last_error = Some((SystemTime::now(), Instant::now(), message));
                });
            }
        }
    }
}
