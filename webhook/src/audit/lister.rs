//! Paginated lists: every list an audit makes is a series of bounded pages
//! (`limit` and `continue`), never one unbounded request — a large cluster's
//! Services would otherwise arrive as one response held in memory at once on
//! both sides. Pages go through a bounded channel, so the next page is being
//! fetched while this one is evaluated, and at most a few are held.
//!
//! A page that fails for a reason worth retrying (a dropped connection, a
//! timeout, 429, 5xx) is asked for again with back-off; a refusal (403,
//! 404) is not. A continue token the API server has expired (410) ends the
//! list with an error: starting over would judge objects twice.

use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use serde_json::Value;
use tokio::sync::mpsc;

/// The back-off between attempts at one page.
const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// One page of objects, each as JSON with `apiVersion` and `kind` set.
#[derive(Debug)]
pub struct Page {
    /// The objects.
    pub objects: Vec<Value>,
    /// The API server's estimate of the objects still to come, when it
    /// gives one.
    pub remaining: Option<u64>,
}

/// Lists every object of `resource` (in `namespace`, or everywhere) that
/// `base` selects (its label selector), `page_size` at a time, sending each
/// page to `pages`; a failure is the channel's last item. Returns when the
/// list ends, fails, or the receiver is dropped.
pub async fn list_pages(
    client: kube::Client,
    resource: ApiResource,
    namespace: Option<String>,
    base: ListParams,
    page_size: u32,
    pages: mpsc::Sender<Result<Page, String>>,
) {
    let api: Api<DynamicObject> = match &namespace {
        Some(namespace) => Api::namespaced_with(client, namespace, &resource),
        None => Api::all_with(client, &resource),
    };
    let mut continue_token: Option<String> = None;
    loop {
        let mut params = base.clone().limit(page_size);
        if let Some(token) = &continue_token {
            params = params.continue_token(token);
        }
        let list = match list_with_retries(&api, &params).await {
            Ok(list) => list,
            Err(reason) => {
                let _ = pages.send(Err(reason)).await;
                return;
            }
        };
        let remaining = list
            .metadata
            .remaining_item_count
            .and_then(|count| u64::try_from(count).ok());
        continue_token = list.metadata.continue_.filter(|token| !token.is_empty());
        let objects = list
            .items
            .into_iter()
            .map(|object| with_type(object, &resource))
            .collect();
        if pages.send(Ok(Page { objects, remaining })).await.is_err() || continue_token.is_none() {
            return;
        }
    }
}

/// Every object of `resource` that `base` selects, all pages collected (the
/// namespaces, the context snapshot, existing reports: each needed whole).
pub async fn list_all(
    client: kube::Client,
    resource: ApiResource,
    base: ListParams,
    page_size: u32,
) -> Result<Vec<Value>, String> {
    let (sender, mut receiver) = mpsc::channel(2);
    let lister = tokio::spawn(list_pages(client, resource, None, base, page_size, sender));
    let mut objects = Vec::new();
    while let Some(page) = receiver.recv().await {
        objects.extend(page?.objects);
    }
    lister.await.map_err(|error| format!("the list task failed: {error}"))?;
    Ok(objects)
}

async fn list_with_retries(
    api: &Api<DynamicObject>,
    params: &ListParams,
) -> Result<kube::core::ObjectList<DynamicObject>, String> {
    let mut delays = RETRY_DELAYS.iter();
    loop {
        match api.list(params).await {
            Ok(list) => return Ok(list),
            Err(error) => match (retryable(&error), delays.next()) {
                (true, Some(delay)) => {
                    tracing::warn!(error = %crate::error_chain::error_chain(&error), ?delay, "list failed; retrying");
                    tokio::time::sleep(*delay).await;
                }
                _ => return Err(explain(&error)),
            },
        }
    }
}

/// Whether asking again may succeed.
fn retryable(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// The error, with what to do for the refusals an operator can fix.
fn explain(error: &kube::Error) -> String {
    let chain = crate::error_chain::error_chain(error);
    match error {
        kube::Error::Api(status) if status.code == 403 => format!(
            "{chain} (the audit's account needs get and list on it: `wasmhook manifests --audit-rbac` prints \
             the ClusterRole)"
        ),
        kube::Error::Api(status) if status.code == 410 => format!(
            "{chain} (the list took longer than the API server keeps a continue token; run the audit again, or \
             with a smaller --page-size)"
        ),
        _ => chain,
    }
}

/// The API server leaves `apiVersion` and `kind` out of listed items: put
/// them back, as a policy reading the object expects them.
fn with_type(mut object: DynamicObject, resource: &ApiResource) -> Value {
    object.types = Some(kube::api::TypeMeta {
        api_version: resource.api_version.clone(),
        kind: resource.kind.clone(),
    });
    serde_json::to_value(object).expect("a DynamicObject serializes")
}
