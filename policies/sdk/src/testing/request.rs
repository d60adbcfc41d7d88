//! [`TestRequest`]: an AdmissionRequest built around the object under test,
//! shaped as the API server sends it, for a policy's native unit tests.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::ClusterObjects;
use crate::{Policy, Verdict};

/// The `uid` of every [`TestRequest`].
const UID: &str = "00000000-0000-0000-0000-000000000001";

/// An AdmissionRequest for a policy's unit tests, built from the object(s) it
/// is about with [`create`], [`update`] or [`delete`].
///
/// Everything else is derived as the API server would fill it in:
///
/// - `kind`: group, version and kind from the object's `apiVersion` and `kind`
///   (`apps/v1` → group `apps`, version `v1`; `v1` → the core group `""`).
///   Override with [`TestRequest::kind`].
/// - `resource`: the same group and version, and the lowercase plural of the
///   kind (`Service` → `services`, `Ingress` → `ingresses`, `NetworkPolicy` →
///   `networkpolicies`, `Endpoints` → `endpoints`). Override the plural with
///   [`TestRequest::resource`].
/// - `requestKind` and `requestResource`: the same as `kind` and `resource`.
/// - `name` and `namespace`: from the object's metadata, and left out when
///   the metadata has none (a `generateName` CREATE, a cluster-scoped object).
///   Override the namespace with [`TestRequest::namespace`].
/// - `object` and `oldObject`: `oldObject` is `null` on CREATE, `object` is
///   `null` on DELETE.
/// - fixed values: `uid` `00000000-0000-0000-0000-000000000001`, `userInfo`
///   `{"username": "alice", "groups": ["system:authenticated"]}`, `dryRun`
///   `false`.
///
/// The object is used exactly as given: fields the policy does not know stay
/// in it, so a test can check that a mutation keeps them.
///
/// What the policy reads of the cluster ([`crate::context`]) comes from
/// [`TestRequest::with_cluster`]; without it, every read is `NotDeclared`.
///
/// ```
/// use wasmhook_policy::serde_json::json;
/// use wasmhook_policy::testing;
///
/// let request = testing::create(json!({
///     "apiVersion": "networking.k8s.io/v1",
///     "kind": "Ingress",
///     "metadata": {"name": "web", "namespace": "prod"},
/// }))
/// .to_value();
/// assert_eq!(request["kind"], json!({"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"}));
/// assert_eq!(request["resource"]["resource"], "ingresses");
/// assert_eq!(request["namespace"], "prod");
/// assert_eq!(request["oldObject"], json!(null));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a TestRequest does nothing until it is evaluated"]
pub struct TestRequest {
    operation: &'static str,
    object: Option<Value>,
    old_object: Option<Value>,
    kind: Option<(String, String)>,
    resource: Option<String>,
    sub_resource: Option<String>,
    namespace: Option<String>,
    cluster: Option<ClusterObjects>,
}

/// A CREATE of `object`: any serializable value, typically a `json!` literal
/// or a k8s-openapi type.
///
/// # Panics
///
/// If `object` cannot be serialized to JSON.
#[track_caller]
pub fn create(object: impl Serialize) -> TestRequest {
    TestRequest::new("CREATE", Some(serialize(object)), None)
}

/// An UPDATE from `old` (the stored object, `oldObject`) to `new` (the object
/// as submitted, `object`). Kind, name and namespace come from `new`.
///
/// # Panics
///
/// If an object cannot be serialized to JSON.
#[track_caller]
pub fn update(old: impl Serialize, new: impl Serialize) -> TestRequest {
    TestRequest::new("UPDATE", Some(serialize(new)), Some(serialize(old)))
}

/// A DELETE of `old` (the stored object, `oldObject`); `object` is `null`.
///
/// # Panics
///
/// If `old` cannot be serialized to JSON.
#[track_caller]
pub fn delete(old: impl Serialize) -> TestRequest {
    TestRequest::new("DELETE", None, Some(serialize(old)))
}

impl TestRequest {
    fn new(operation: &'static str, object: Option<Value>, old_object: Option<Value>) -> Self {
        Self {
            operation,
            object,
            old_object,
            kind: None,
            resource: None,
            sub_resource: None,
            namespace: None,
            cluster: None,
        }
    }

    /// Sets the request's kind instead of deriving it from the object, for
    /// example `.kind("serving.knative.dev/v1", "Service")` to check that a
    /// policy ignores a custom resource that shares a built-in kind's name.
    /// The object is not changed. Unless [`TestRequest::resource`] is also
    /// given, the resource is derived from this kind.
    pub fn kind(mut self, api_version: &str, kind: &str) -> Self {
        self.kind = Some((api_version.to_owned(), kind.to_owned()));
        self
    }

    /// Sets the resource name (the plural, such as `services`) instead of
    /// deriving it from the kind, for kinds whose plural is irregular.
    pub fn resource(mut self, resource: &str) -> Self {
        self.resource = Some(resource.to_owned());
        self
    }

    /// Makes the request about a subresource, such as `status` or `scale`.
    pub fn sub_resource(mut self, sub_resource: &str) -> Self {
        self.sub_resource = Some(sub_resource.to_owned());
        self
    }

    /// Sets the request's namespace instead of taking the object's
    /// `metadata.namespace`. The object is not changed.
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_owned());
        self
    }

    /// Evaluates the request in a cluster of these objects: what the policy
    /// reads through [`crate::context`]. Give the objects (an array or `Vec`
    /// of JSON values: every kind may then be read, and reads of a kind
    /// without objects find nothing), or a [`ClusterObjects`] that declares
    /// kinds or makes reads of a kind fail.
    ///
    /// ```
    /// use wasmhook_policy::serde_json::json;
    /// use wasmhook_policy::testing::{ClusterObjects, create};
    ///
    /// let statefulset = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web", "namespace": "shop"}});
    /// let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-headless", "namespace": "shop"}});
    ///
    /// let with_the_service = create(&statefulset).with_cluster([service.clone()]);
    /// let services_only = create(&statefulset).with_cluster(ClusterObjects::new().with_object(&service).declare("v1", "Service"));
    /// let still_listing = create(&statefulset).with_cluster(ClusterObjects::new().not_synced("v1", "Service"));
    /// # let _ = (with_the_service, services_only, still_listing);
    /// ```
    pub fn with_cluster(mut self, cluster: impl Into<ClusterObjects>) -> Self {
        self.cluster = Some(cluster.into());
        self
    }

    /// The request as a JSON value: the `request` member of an
    /// AdmissionReview. Edit it to test a field this builder does not set,
    /// and evaluate it with [`super::evaluate`].
    ///
    /// # Panics
    ///
    /// If the object has no string `apiVersion` and `kind` and none was given
    /// with [`TestRequest::kind`].
    #[track_caller]
    pub fn to_value(&self) -> Value {
        let subject = self.object.as_ref().or(self.old_object.as_ref());
        let metadata = |field: &str| {
            subject
                .and_then(|object| object["metadata"][field].as_str())
                .map(str::to_owned)
        };
        let (api_version, kind) = match &self.kind {
            Some((api_version, kind)) => (api_version.clone(), kind.clone()),
            None => {
                let field = |field: &str| subject.and_then(|object| object[field].as_str());
                match (field("apiVersion"), field("kind")) {
                    (Some(api_version), Some(kind)) => (api_version.to_owned(), kind.to_owned()),
                    _ => panic!(
                        "the object has no string `apiVersion` and `kind`: give the request's kind with \
                         TestRequest::kind(api_version, kind)"
                    ),
                }
            }
        };
        let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
        let resource = self.resource.clone().unwrap_or_else(|| plural(&kind));
        let kind = json!({"group": group, "version": version, "kind": kind});
        let resource = json!({"group": group, "version": version, "resource": resource});

        let mut request = Map::new();
        request.insert("uid".into(), UID.into());
        request.insert("kind".into(), kind.clone());
        request.insert("resource".into(), resource.clone());
        request.insert("requestKind".into(), kind);
        request.insert("requestResource".into(), resource);
        if let Some(sub_resource) = &self.sub_resource {
            request.insert("subResource".into(), sub_resource.as_str().into());
            request.insert("requestSubResource".into(), sub_resource.as_str().into());
        }
        if let Some(name) = metadata("name") {
            request.insert("name".into(), name.into());
        }
        if let Some(namespace) = self.namespace.clone().or_else(|| metadata("namespace")) {
            request.insert("namespace".into(), namespace.into());
        }
        request.insert("operation".into(), self.operation.into());
        request.insert(
            "userInfo".into(),
            json!({"username": "alice", "groups": ["system:authenticated"]}),
        );
        request.insert("object".into(), self.object.clone().unwrap_or(Value::Null));
        request.insert("oldObject".into(), self.old_object.clone().unwrap_or(Value::Null));
        request.insert("dryRun".into(), false.into());
        Value::Object(request)
    }

    /// The request as JSON text, as [`super::evaluate`] takes it.
    ///
    /// # Panics
    ///
    /// As [`TestRequest::to_value`].
    #[track_caller]
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }

    /// Evaluates the request with policy `P` and `settings` (any serializable
    /// value; `Value::Null` for the defaults), through the same glue as the
    /// component export ([`super::evaluate`]).
    ///
    /// The error is the policy's error text, including invalid settings.
    /// The policy reads the cluster given with [`TestRequest::with_cluster`]
    /// (if none was, the one of an enclosing [`ClusterObjects::run`], or
    /// none).
    ///
    /// # Panics
    ///
    /// As [`TestRequest::to_value`], and if `settings` cannot be serialized.
    #[track_caller]
    pub fn evaluate<P: Policy>(&self, settings: impl Serialize) -> Result<Verdict, String> {
        let (request, settings) = (self.to_json(), serialize(settings).to_string());
        match &self.cluster {
            Some(cluster) => cluster.run(|| super::evaluate::<P>(&request, &settings)),
            None => super::evaluate::<P>(&request, &settings),
        }
    }
}

#[track_caller]
fn serialize(value: impl Serialize) -> Value {
    match serde_json::to_value(value) {
        Ok(value) => value,
        Err(error) => panic!("cannot serialize to JSON: {error}"),
    }
}

/// The resource name of `kind`: its lowercase plural, guessed as the API
/// server's REST mapper guesses it (`Endpoints` is its own plural).
fn plural(kind: &str) -> String {
    let singular = kind.to_ascii_lowercase();
    if singular.ends_with("endpoints") {
        singular
    } else if ["s", "x", "z", "ch", "sh"].iter().any(|end| singular.ends_with(end)) {
        format!("{singular}es")
    } else if let Some(stem) = singular.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        format!("{stem}ies")
    } else {
        format!("{singular}s")
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::{Operation, PolicyError, Request};

    fn service() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "prod"},
            "spec": {"futureField": {"keep": true}},
        })
    }

    #[test]
    fn kind_and_resource_come_from_the_object() {
        let request = create(service()).to_value();
        assert_eq!(
            request["kind"],
            json!({"group": "", "version": "v1", "kind": "Service"})
        );
        assert_eq!(
            request["resource"],
            json!({"group": "", "version": "v1", "resource": "services"})
        );
        assert_eq!(request["requestKind"], request["kind"]);
        assert_eq!(request["requestResource"], request["resource"]);

        let statefulset = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"}});
        let request = create(statefulset).to_value();
        assert_eq!(
            request["kind"],
            json!({"group": "apps", "version": "v1", "kind": "StatefulSet"})
        );
        assert_eq!(
            request["resource"],
            json!({"group": "apps", "version": "v1", "resource": "statefulsets"})
        );
    }

    #[test]
    fn resources_are_lowercase_plurals() {
        for (kind, resource) in [
            ("Service", "services"),
            ("StatefulSet", "statefulsets"),
            ("Ingress", "ingresses"),
            ("NetworkPolicy", "networkpolicies"),
            ("Endpoints", "endpoints"),
            ("EndpointSlice", "endpointslices"),
            ("PriorityClass", "priorityclasses"),
            ("Gateway", "gateways"),
            ("Pod", "pods"),
        ] {
            assert_eq!(plural(kind), resource, "{kind}");
        }
    }

    #[test]
    fn kind_and_resource_can_be_overridden() {
        let request = create(service()).kind("serving.knative.dev/v1", "Service").to_value();
        assert_eq!(
            request["kind"],
            json!({"group": "serving.knative.dev", "version": "v1", "kind": "Service"})
        );
        assert_eq!(
            request["resource"],
            json!({"group": "serving.knative.dev", "version": "v1", "resource": "services"})
        );
        assert_eq!(request["object"], service(), "the object is not changed");

        let request = create(service()).kind("v1", "ConfigMap").to_value();
        assert_eq!(request["resource"]["resource"], "configmaps");

        let request = create(service()).resource("svc").to_value();
        assert_eq!(
            request["resource"],
            json!({"group": "", "version": "v1", "resource": "svc"})
        );
        assert_eq!(request["kind"]["kind"], "Service");
    }

    #[test]
    #[should_panic(expected = "the object has no string `apiVersion` and `kind`")]
    fn an_object_without_a_kind_needs_one_given() {
        let _ = create(json!({"apiVersion": "v1", "metadata": {"name": "x"}})).to_value();
    }

    #[test]
    fn name_and_namespace_come_from_the_metadata() {
        let request = create(service()).to_value();
        assert_eq!(request["name"], "web");
        assert_eq!(request["namespace"], "prod");

        let request = create(service()).namespace("dev").to_value();
        assert_eq!(request["namespace"], "dev");
        assert_eq!(
            request["object"]["metadata"]["namespace"], "prod",
            "the object is not changed"
        );

        // A generated name and a cluster-scoped object: the fields are left out.
        let generated = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"generateName": "test-"}});
        let request = create(generated).to_value();
        assert!(request.get("name").is_none(), "{request}");
        assert!(request.get("namespace").is_none(), "{request}");
    }

    #[test]
    fn create_update_and_delete_have_the_api_servers_shape() {
        let request = create(service()).to_value();
        assert_eq!(request["operation"], "CREATE");
        assert_eq!(request["object"], service());
        assert_eq!(request["oldObject"], Value::Null);
        assert_eq!(request["dryRun"], false);
        assert_eq!(request["uid"], UID);
        assert_eq!(request["userInfo"]["username"], "alice");
        assert!(request.get("subResource").is_none());

        let mut new = service();
        new["metadata"]["labels"] = json!({"tier": "web"});
        let request = update(service(), &new).to_value();
        assert_eq!(request["operation"], "UPDATE");
        assert_eq!(request["object"], new);
        assert_eq!(request["oldObject"], service());

        let request = delete(service()).to_value();
        assert_eq!(request["operation"], "DELETE");
        assert_eq!(request["object"], Value::Null);
        assert_eq!(request["oldObject"], service());
        assert_eq!(request["name"], "web");
        assert_eq!(request["namespace"], "prod");
        assert_eq!(request["kind"]["kind"], "Service");

        let request = update(service(), service()).sub_resource("status").to_value();
        assert_eq!(request["subResource"], "status");
        assert_eq!(request["requestSubResource"], "status");
    }

    #[test]
    fn the_sdk_and_kube_core_read_the_request() {
        let json = update(service(), service()).sub_resource("status").to_json();
        let request = Request::parse(&json).unwrap();
        assert_eq!(request.operation(), Operation::Update);
        assert_eq!(request.uid(), UID);
        assert_eq!(request.name(), Some("web"));
        assert_eq!(request.namespace(), Some("prod"));
        assert_eq!(request.sub_resource(), Some("status"));
        assert_eq!(request.resource().resource, "services");
        assert!(!request.dry_run());
        assert!(request.object_json().is_some() && request.old_object_json().is_some());

        let delete = delete(service()).to_json();
        let review = Request::parse(&delete).unwrap().admission_request::<Service>().unwrap();
        assert!(review.object.is_none());
        assert_eq!(review.old_object.unwrap().metadata.name.as_deref(), Some("web"));
    }

    #[test]
    fn typed_objects_are_accepted() {
        let statefulset = StatefulSet {
            metadata: ObjectMeta {
                name: Some("db".into()),
                namespace: Some("prod".into()),
                ..ObjectMeta::default()
            },
            ..StatefulSet::default()
        };
        let request = create(&statefulset).to_value();
        assert_eq!(request["kind"]["kind"], "StatefulSet");
        assert_eq!(request["resource"]["resource"], "statefulsets");
        assert_eq!(request["name"], "db");
    }

    /// Denies with what it read, to show what reaches a policy.
    struct Echo;

    impl Policy for Echo {
        type Settings = Value;

        fn evaluate(request: &Request<'_>, settings: &Value) -> Result<Verdict, PolicyError> {
            Ok(Verdict::deny(format!(
                "{:?} {} {:?} {settings}",
                request.operation(),
                request.kind().kind,
                request.name(),
            )))
        }
    }

    #[test]
    fn evaluate_runs_the_policy_with_the_settings() {
        let verdict = create(service()).evaluate::<Echo>(json!({"a": 1})).unwrap();
        assert_eq!(verdict.message(), Some(r#"Create Service Some("web") {"a":1}"#));

        let verdict = delete(service()).evaluate::<Echo>(Value::Null).unwrap();
        assert_eq!(verdict.message(), Some(r#"Delete Service Some("web") null"#));
    }
}
