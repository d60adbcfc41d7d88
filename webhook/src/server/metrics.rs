//! Prometheus metrics of the admission server: what operators alert on.
//!
//! Reviews by policy, mode and result; latency and CPU time per policy; policy failures by
//! kind; evaluations that grew a policy's memory; reviews in flight; malformed requests by
//! reason; policy (re)loads and certificate reloads; the context caches (objects, syncs,
//! watch errors, staleness), read from the watches at each scrape.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a review.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    /// The policy's name.
    pub policy: String,
    /// `mutate` or `validate`.
    pub mode: &'static str,
    /// The outcome ([`crate::response::Outcome::label`]).
    pub result: &'static str,
}

/// Labels of a pull of a policy module from an OCI registry.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PullLabels {
    /// The reference, as the policy set names it.
    pub reference: String,
    /// `registry`, `cache`, `stale_tag` or `failed`.
    pub result: &'static str,
}

/// Labels naming a policy.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    /// The policy's name.
    pub policy: String,
}

/// Labels of a policy failure.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// The policy's name.
    pub policy: String,
    /// [`crate::engine::PolicyFailure::kind`].
    pub kind: &'static str,
}

/// Labels of a rejected HTTP request or a connection error.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabels {
    /// Why, such as `malformed_review`, `body_too_large` or `tls_handshake_timeout`.
    pub reason: &'static str,
}

/// Labels of a load or reload attempt.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `success` or `failure`.
    pub result: &'static str,
}

/// Labels naming a cached kind (`services`, `statefulsets.apps`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The kind's resource.
    pub resource: String,
}

/// The context caches' metrics.
#[derive(Default)]
pub struct ContextMetrics {
    /// Objects held per kind.
    pub objects: Family<KindLabels, Gauge>,
    /// 1 once the kind has synced.
    pub synced: Family<KindLabels, Gauge>,
    /// When the kind last finished a (re-)list.
    pub last_sync: Family<KindLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Seconds since the kind's last watch event.
    pub staleness: Family<KindLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Failed lists and watches.
    pub watch_errors: Family<KindLabels, Counter>,
}

impl ContextMetrics {
    /// Sets every metric from the watches' status.
    pub fn observe(&self, statuses: &[crate::context::watch::KindStatus]) {
        for status in statuses {
            let labels = KindLabels {
                resource: status.resource.clone(),
            };
            self.objects
                .get_or_create(&labels)
                .set(i64::try_from(status.objects).unwrap_or(i64::MAX));
            self.synced.get_or_create(&labels).set(i64::from(status.synced));
            if let Some(at) = status.last_sync_unix_seconds {
                self.last_sync.get_or_create(&labels).set(at);
            }
            if let Some(since) = status.seconds_since_last_event {
                self.staleness.get_or_create(&labels).set(since);
            }
            let errors = self.watch_errors.get_or_create(&labels);
            errors.inc_by(status.watch_errors.saturating_sub(errors.get()));
        }
    }
}

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    /// Reviews answered.
    pub reviews: Family<ReviewLabels, Counter>,
    /// Review latency, from the request's arrival to the response.
    pub review_duration: Family<PolicyLabels, Histogram>,
    /// CPU time of a review in its policy, for one review in
    /// [`crate::server::cpu::SAMPLE_EVERY`].
    pub policy_cpu: Family<PolicyLabels, Histogram>,
    /// Failures of policies.
    pub policy_failures: Family<FailureLabels, Counter>,
    /// Evaluations in which the policy grew its memory beyond its initial
    /// size.
    pub policy_memory_growths: Family<PolicyLabels, Counter>,
    /// Reviews being evaluated now.
    pub in_flight: Gauge,
    /// Requests rejected before evaluation.
    pub rejected: Family<RejectionLabels, Counter>,
    /// Admission connections that ended because of the client, by reason.
    pub connection_errors: Family<RejectionLabels, Counter>,
    /// Policy loads that failed (the previous version, if any, kept serving).
    pub policy_load_failures: Family<PolicyLabels, Counter>,
    /// Pulls of policy modules from OCI registries, by where the module came from.
    pub registry_pulls: Family<PullLabels, Counter>,
    /// Policy-set reloads.
    pub config_reloads: Family<ResultLabels, Counter>,
    /// Serving certificate reloads.
    pub certificate_reloads: Family<ResultLabels, Counter>,
    /// Applications of the webhook configurations (`--register`).
    pub registrations: Family<ResultLabels, Counter>,
    /// The context caches.
    pub context: ContextMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wasmhook");
        let reviews = Family::<ReviewLabels, Counter>::default();
        let review_duration = Family::<PolicyLabels, Histogram>::new_with_constructor(|| {
            // 100 µs … ~26 s.
            Histogram::new(exponential_buckets(0.0001, 2.0, 19))
        });
        let policy_cpu = Family::<PolicyLabels, Histogram>::new_with_constructor(|| {
            // 10 µs … ~330 ms.
            Histogram::new(exponential_buckets(0.00001, 2.0, 16))
        });
        let policy_failures = Family::<FailureLabels, Counter>::default();
        let policy_memory_growths = Family::<PolicyLabels, Counter>::default();
        let in_flight = Gauge::default();
        let rejected = Family::<RejectionLabels, Counter>::default();
        let policy_load_failures = Family::<PolicyLabels, Counter>::default();
        let registry_pulls = Family::<PullLabels, Counter>::default();
        let connection_errors = Family::<RejectionLabels, Counter>::default();
        let config_reloads = Family::<ResultLabels, Counter>::default();
        let certificate_reloads = Family::<ResultLabels, Counter>::default();
        let registrations = Family::<ResultLabels, Counter>::default();
        registry.register("reviews", "Admission reviews answered", reviews.clone());
        registry.register(
            "review_duration_seconds",
            "Time to answer an admission review",
            review_duration.clone(),
        );
        registry.register(
            "policy_cpu_seconds",
            "CPU time of a review in its policy: instantiation, evaluation, teardown and the patch \
             (one review in 16 of each policy is measured)",
            policy_cpu.clone(),
        );
        registry.register("policy_failures", "Policy failures by kind", policy_failures.clone());
        registry.register(
            "policy_memory_growths",
            "Evaluations in which the policy grew its memory beyond its initial size: each costs \
             the server mprotect calls and a TLB flush; link the policy with more initial memory \
             (policies/README.md)",
            policy_memory_growths.clone(),
        );
        registry.register(
            "reviews_in_flight",
            "Admission reviews being evaluated",
            in_flight.clone(),
        );
        registry.register(
            "rejected_requests",
            "Requests rejected before evaluation",
            rejected.clone(),
        );
        registry.register(
            "connection_errors",
            "Admission connections closed because of the client: failed or stalled TLS handshakes, \
             header timeouts, requests cut off, malformed HTTP",
            connection_errors.clone(),
        );
        registry.register(
            "policy_load_failures",
            "Policy loads that failed; the previous version kept serving",
            policy_load_failures.clone(),
        );
        registry.register(
            "registry_pulls",
            "Policy modules pulled from OCI registries at (re)load: from the registry, from the cache \
             (a pinned digest), from the cache for a tag the registry could not be asked about \
             (stale_tag: it may have moved), or failed",
            registry_pulls.clone(),
        );
        registry.register("config_reloads", "Policy-set reloads", config_reloads.clone());
        registry.register(
            "certificate_reloads",
            "Serving certificate reloads",
            certificate_reloads.clone(),
        );
        registry.register(
            "registrations",
            "Applications of the webhook configurations (--register)",
            registrations.clone(),
        );
        let context = ContextMetrics::default();
        registry.register(
            "context_objects",
            "Objects held in the context cache of each kind policies declare",
            context.objects.clone(),
        );
        registry.register(
            "context_synced",
            "1 once the kind's context cache has finished its first list",
            context.synced.clone(),
        );
        registry.register(
            "context_last_sync_timestamp_seconds",
            "When the kind's context cache last finished a (re-)list",
            context.last_sync.clone(),
        );
        registry.register(
            "context_staleness_seconds",
            "Seconds since the kind's watch last delivered an event (objects or bookmarks)",
            context.staleness.clone(),
        );
        registry.register(
            "context_watch_errors",
            "Failed lists and watches of the kind's context cache (retried with back-off)",
            context.watch_errors.clone(),
        );
        Self {
            registry,
            reviews,
            review_duration,
            policy_cpu,
            policy_failures,
            policy_memory_growths,
            in_flight,
            rejected,
            policy_load_failures,
            registry_pulls,
            connection_errors,
            config_reloads,
            certificate_reloads,
            registrations,
            context,
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }

    /// Counts a rejected request.
    pub fn reject(&self, reason: &'static str) {
        self.rejected.get_or_create(&RejectionLabels { reason }).inc();
    }

    /// Counts an admission connection closed because of the client.
    pub fn connection_error(&self, reason: &'static str) {
        self.connection_errors.get_or_create(&RejectionLabels { reason }).inc();
    }
}
