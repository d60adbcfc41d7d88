//! A read-only, lazily parsed view of an AdmissionRequest.
//!
//! The request a policy receives can be megabytes (an UPDATE carries the object
//! twice) while most policies look at a handful of fields. [`Request`] parses
//! the small header fields eagerly and keeps `object` and `oldObject` as raw
//! JSON, deserialized only when and as the policy asks: into a k8s-openapi
//! type, into kube-core's `AdmissionRequest`, or into an editable [`Object`].
//!
//! The server validates every review once, as it arrives, so inside a policy
//! the request's text is known to be valid JSON: the header and the typed
//! views are read with [`wasmhook_rawjson::from_valid_str`], which delimits the
//! members a type ignores instead of validating them again. [`Request::parse`]
//! — what tests and other callers use — validates the whole request first.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::authentication::v1::UserInfo;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use wasmhook_rawjson::{RawText, SplitObject};

use crate::{Object, PolicyError, pointer};

/// The operation an admission request is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    /// The object is being created.
    Create,
    /// The object is being updated (`oldObject` holds the current state).
    Update,
    /// The object is being deleted (`object` is absent).
    Delete,
    /// A connect request (exec, attach, port-forward…).
    Connect,
}

/// Group, version and kind (or resource) of a request, as the API server sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct GroupVersionKind {
    /// API group; empty for the core group.
    pub group: String,
    /// API version, such as `v1`.
    pub version: String,
    /// Kind, such as `Service`.
    pub kind: String,
}

/// Group, version and resource of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct GroupVersionResource {
    /// API group; empty for the core group.
    pub group: String,
    /// API version, such as `v1`.
    pub version: String,
    /// Resource, such as `services`.
    pub resource: String,
}

/// The wire shape: strings borrowed from the text when they have no escapes,
/// objects borrowed as raw JSON.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header<'a> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
    kind: GroupVersionKind,
    resource: GroupVersionResource,
    #[serde(default, borrow)]
    sub_resource: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    namespace: Option<Cow<'a, str>>,
    operation: Operation,
    #[serde(default)]
    user_info: UserInfo,
    /// Split as it is read: typed views and edits start from its members.
    #[serde(default, borrow)]
    object: Option<SplitObject<'a>>,
    #[serde(default, borrow)]
    old_object: Option<RawText<'a>>,
    #[serde(default)]
    dry_run: Option<bool>,
}

/// One admission request (the `request` member of an AdmissionReview).
#[derive(Debug)]
pub struct Request<'a> {
    raw: &'a str,
    uid: Cow<'a, str>,
    kind: GroupVersionKind,
    resource: GroupVersionResource,
    sub_resource: Option<Cow<'a, str>>,
    name: Option<Cow<'a, str>>,
    namespace: Option<Cow<'a, str>>,
    operation: Operation,
    user_info: UserInfo,
    object: Option<SplitObject<'a>>,
    old_object: Option<&'a str>,
    dry_run: bool,
}

impl<'a> Request<'a> {
    /// Parses the request JSON, validating all of it. Objects stay raw until
    /// asked for.
    pub fn parse(raw: &'a str) -> Result<Self, PolicyError> {
        let header: Header<'a> = serde_json::from_str(raw).map_err(PolicyError::InvalidRequest)?;
        Ok(Self::from_header(raw, header))
    }

    /// Reads a request the server has validated (what a policy is called
    /// with): only the header is read; the objects are only delimited.
    pub(crate) fn from_server(raw: &'a str) -> Result<Self, PolicyError> {
        let header: Header<'a> = wasmhook_rawjson::from_valid_str(raw).map_err(PolicyError::InvalidRequest)?;
        Ok(Self::from_header(raw, header))
    }

    fn from_header(raw: &'a str, header: Header<'a>) -> Self {
        let present = |text: Option<RawText<'a>>| text.map(|RawText(text)| text).filter(|text| *text != "null");
        Self {
            raw,
            uid: header.uid,
            kind: header.kind,
            resource: header.resource,
            sub_resource: header.sub_resource.filter(|s| !s.is_empty()),
            name: header.name.filter(|s| !s.is_empty()),
            namespace: header.namespace.filter(|s| !s.is_empty()),
            operation: header.operation,
            user_info: header.user_info,
            object: header.object.filter(|object| object.text != "null"),
            old_object: present(header.old_object),
            dry_run: header.dry_run.unwrap_or(false),
        }
    }

    /// The request's unique id.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// The operation: create, update, delete or connect.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// The kind of the object, such as `apps/v1 StatefulSet`.
    pub fn kind(&self) -> &GroupVersionKind {
        &self.kind
    }

    /// The resource being requested, such as `services`.
    pub fn resource(&self) -> &GroupVersionResource {
        &self.resource
    }

    /// The subresource (`status`, `scale`…), if any.
    pub fn sub_resource(&self) -> Option<&str> {
        self.sub_resource.as_deref()
    }

    /// The object's name. Absent on a CREATE whose name the server generates.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The object's name as a policy should read it: the request's `name`,
    /// which the API server takes from the object, or — for a request
    /// without one — the object's `metadata.name`; empty while the API
    /// server has still to generate it (`metadata.generateName`).
    ///
    /// Free when the request has a name: the object's metadata, managed
    /// fields and all, is often the largest part of it, and is read only
    /// otherwise.
    pub fn object_name(&self) -> Result<Cow<'a, str>, PolicyError> {
        match &self.name {
            Some(name) => Ok(name.clone()),
            None => Ok(self
                .object_at::<String>("/metadata/name")?
                .map_or(Cow::Borrowed(""), Cow::Owned)),
        }
    }

    /// The object's namespace; absent for cluster-scoped objects.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// Who made the request.
    pub fn user_info(&self) -> &UserInfo {
        &self.user_info
    }

    /// Whether the request is a dry run (nothing is persisted).
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// The object as raw JSON; `None` on DELETE.
    pub fn object_json(&self) -> Option<&'a str> {
        self.object.as_ref().map(|object| object.text)
    }

    /// The old object as raw JSON; present on UPDATE (and DELETE).
    pub fn old_object_json(&self) -> Option<&'a str> {
        self.old_object
    }

    /// The object, deserialized as `T` (for example `k8s_openapi::api::core::v1::Service`).
    ///
    /// Read-only: to change the object use [`Request::mutable_object`], which
    /// keeps every field, including those `T` does not know.
    pub fn object<T: DeserializeOwned>(&self) -> Result<Option<T>, PolicyError> {
        let Some(object) = &self.object else {
            return Ok(None);
        };
        wasmhook_rawjson::from_split(object)
            .map(Some)
            .map_err(|source| invalid_part::<T>("object", "", source))
    }

    /// The old object, deserialized as `T`.
    pub fn old_object<T: DeserializeOwned>(&self) -> Result<Option<T>, PolicyError> {
        deserialize_part("oldObject", self.old_object)
    }

    /// The part of the object at `pointer` (RFC 6901: `/spec`,
    /// `/metadata/labels`, `/spec/ports/0`), deserialized as `T`; `None` when
    /// the object, or that part of it, is absent or `null`.
    ///
    /// Only that part is deserialized; the containers on the way to it are
    /// only delimited. Each call walks the object again, so to read several
    /// fields deserialize one narrow struct of just those fields with
    /// [`Request::object`] instead (see [`Metadata`](crate::Metadata)): the
    /// members it does not name are skipped just as cheaply.
    pub fn object_at<T: DeserializeOwned>(&self, pointer: &str) -> Result<Option<T>, PolicyError> {
        let part = self
            .object
            .as_ref()
            .map(|object| pointer::find_in_split(object, pointer))
            .transpose();
        read_part("object", pointer, part.map(Option::flatten))
    }

    /// [`Request::object_at`] for the old object.
    pub fn old_object_at<T: DeserializeOwned>(&self, pointer: &str) -> Result<Option<T>, PolicyError> {
        deserialize_at("oldObject", self.old_object, pointer)
    }

    /// The object's labels, read without deserializing the rest of it.
    /// (To read labels and other fields, use one narrow view instead.)
    pub fn object_labels(&self) -> Result<BTreeMap<String, String>, PolicyError> {
        Ok(self.object_at("/metadata/labels")?.unwrap_or_default())
    }

    /// The object as an editable JSON document, for a mutating verdict.
    ///
    /// Fails on DELETE (there is nothing to mutate) and when the object is not
    /// a JSON object.
    pub fn mutable_object(&self) -> Result<Object, PolicyError> {
        let object = self
            .object
            .as_ref()
            .ok_or_else(|| PolicyError::other("the request has no object to mutate"))?;
        Object::from_split(object)
    }

    /// The whole request as kube-core's typed `AdmissionRequest<T>`.
    ///
    /// This parses everything, objects included; prefer the accessors above
    /// on hot paths.
    pub fn admission_request<T>(&self) -> Result<kube_core::admission::AdmissionRequest<T>, PolicyError>
    where
        T: kube_core::Resource + DeserializeOwned,
    {
        serde_json::from_str(self.raw).map_err(PolicyError::InvalidRequest)
    }

    /// The request exactly as received.
    pub fn raw(&self) -> &'a str {
        self.raw
    }
}

fn deserialize_part<T: DeserializeOwned>(what: &'static str, raw: Option<&str>) -> Result<Option<T>, PolicyError> {
    deserialize_at(what, raw, "")
}

fn deserialize_at<T: DeserializeOwned>(
    what: &'static str,
    raw: Option<&str>,
    pointer: &str,
) -> Result<Option<T>, PolicyError> {
    let part = raw.map(|raw| pointer::find(raw, pointer)).transpose();
    read_part(what, pointer, part.map(Option::flatten))
}

/// The part a pointer walk found (`Ok(None)`: absent), read as `T`.
fn read_part<T: DeserializeOwned>(
    what: &'static str,
    pointer: &str,
    part: Result<Option<&str>, serde_json::Error>,
) -> Result<Option<T>, PolicyError> {
    let invalid = |source| invalid_part::<T>(what, pointer, source);
    match part.map_err(invalid)? {
        None | Some("null") => Ok(None),
        Some(part) => wasmhook_rawjson::from_valid_str(part).map(Some).map_err(invalid),
    }
}

fn invalid_part<T>(what: &str, pointer: &str, source: serde_json::Error) -> PolicyError {
    PolicyError::InvalidObject {
        what: if pointer.is_empty() {
            what.to_owned()
        } else {
            format!("{what} at {pointer}")
        },
        target: std::any::type_name::<T>(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Service;

    use super::*;

    const CREATE: &str = r#"{
        "uid": "u-1",
        "kind": {"group": "", "version": "v1", "kind": "Service"},
        "resource": {"group": "", "version": "v1", "resource": "services"},
        "name": "web", "namespace": "prod", "operation": "CREATE",
        "userInfo": {"username": "alice", "groups": ["dev"]},
        "object": {"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "web", "labels": {"app": "web"}},
                   "spec": {"ports": [{"port": 80}]}},
        "oldObject": null,
        "dryRun": true
    }"#;

    #[test]
    fn header_fields_are_parsed() {
        let request = Request::parse(CREATE).unwrap();
        assert_eq!(request.uid(), "u-1");
        assert_eq!(request.operation(), Operation::Create);
        assert_eq!(request.kind().kind, "Service");
        assert_eq!(request.resource().resource, "services");
        assert_eq!(request.name(), Some("web"));
        assert_eq!(request.namespace(), Some("prod"));
        assert_eq!(request.user_info().username.as_deref(), Some("alice"));
        assert!(request.dry_run());
        assert!(request.old_object_json().is_none(), "null oldObject is absent");
    }

    #[test]
    fn the_object_name_is_the_request_s_or_else_the_object_s() {
        let request = Request::parse(CREATE).unwrap();
        assert_eq!(request.object_name().unwrap(), "web");
        let unnamed = CREATE.replace(r#""name": "web", "namespace""#, r#""namespace""#);
        let request = Request::parse(&unnamed).unwrap();
        assert_eq!(request.name(), None);
        assert_eq!(request.object_name().unwrap(), "web");
        let generated = unnamed.replace(
            r#""metadata": {"name": "web","#,
            r#""metadata": {"generateName": "web-","#,
        );
        assert_eq!(Request::parse(&generated).unwrap().object_name().unwrap(), "");
    }

    #[test]
    fn a_request_from_the_server_reads_the_same_without_revalidating() {
        let checked = Request::parse(CREATE).unwrap();
        let read = Request::from_server(CREATE).unwrap();
        assert_eq!(format!("{checked:?}"), format!("{read:?}"));
        assert_eq!(read.object_json(), checked.object_json());
        assert!(read.object_json().unwrap().starts_with(r#"{"apiVersion": "v1""#));
        // `parse` validates what `from_server` leaves to the server.
        let invalid = CREATE.replace(r#""ports": [{"port": 80}]"#, r#""ports": [{"port": 8O}]"#);
        assert!(Request::parse(&invalid).is_err());
        assert!(Request::from_server(&invalid).is_ok());
    }

    #[test]
    fn the_mutable_object_starts_from_the_split_made_while_reading() {
        for request in [Request::parse(CREATE).unwrap(), Request::from_server(CREATE).unwrap()] {
            let mut object = request.mutable_object().unwrap();
            assert!(
                object.to_json() == request.object_json().unwrap(),
                "untouched: byte for byte"
            );
            object.set("/spec/clusterIP", "None").unwrap();
            object.remove("/metadata/labels").unwrap();
            assert_eq!(
                object.to_json(),
                r#"{"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "web"},
                   "spec": {"ports": [{"port": 80}],"clusterIP":"None"}}"#
            );
            assert_eq!(
                request.object_at::<String>("/metadata/name").unwrap().as_deref(),
                Some("web")
            );
            assert_eq!(request.object_at::<u16>("/spec/ports/0/port").unwrap(), Some(80));
            assert_eq!(request.object_at::<u16>("/nothing/here").unwrap(), None);
        }
    }

    #[test]
    fn an_indexed_request_reads_and_edits_as_an_unindexed_one() {
        let review: serde_json::Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/admission-reviews/mutating-create-statefulset-mysql.json"
        ))
        .unwrap();
        let request_json = wasmhook_rawjson::compact(&review["request"].to_string()).into_owned();
        let read = || {
            let request = Request::from_server(&request_json).unwrap();
            let spec: serde_json::Value = request.object_at("/spec").unwrap().unwrap();
            let name = request.object_name().unwrap().into_owned();
            let mut object = request.mutable_object().unwrap();
            object.set("/spec/serviceName", "mysql-headless").unwrap();
            object.remove("/spec/template/metadata/labels").unwrap();
            (spec, name, object.to_json())
        };
        let scanned = read();
        let index = wasmhook_rawjson::ContainerIndex::of(&request_json).unwrap();
        assert!(index.len() > 10, "the recorded StatefulSet has many long containers");
        assert_eq!(wasmhook_rawjson::with_index(&request_json, index, read), scanned);
        assert!(scanned.2.contains(r#""serviceName":"mysql-headless""#));
    }

    #[test]
    fn objects_are_typed_on_demand() {
        let request = Request::parse(CREATE).unwrap();
        let service: Service = request.object().unwrap().unwrap();
        assert_eq!(service.spec.unwrap().ports.unwrap()[0].port, 80);
        assert_eq!(request.object_labels().unwrap()["app"], "web");
        assert!(request.old_object::<Service>().unwrap().is_none());
    }

    #[test]
    fn parts_of_objects_are_read_by_pointer() {
        use k8s_openapi::api::core::v1::ServiceSpec;
        let request = Request::parse(CREATE).unwrap();
        let spec: ServiceSpec = request.object_at("/spec").unwrap().unwrap();
        assert_eq!(spec.ports.unwrap()[0].port, 80);
        assert_eq!(request.object_at::<i32>("/spec/ports/0/port").unwrap(), Some(80));
        assert_eq!(request.object_at::<String>("/status/loadBalancer").unwrap(), None);
        assert_eq!(request.old_object_at::<ServiceSpec>("/spec").unwrap(), None);
        let error = request.object_at::<bool>("/spec/ports").unwrap_err().to_string();
        assert!(
            error.starts_with("cannot read object at /spec/ports as bool:"),
            "{error}"
        );
    }

    #[test]
    fn kube_core_admission_request_is_available() {
        let request = Request::parse(CREATE).unwrap();
        let typed = request.admission_request::<Service>().unwrap();
        assert_eq!(typed.uid, "u-1");
        assert_eq!(typed.object.unwrap().metadata.name.as_deref(), Some("web"));
    }

    #[test]
    fn a_malformed_request_says_where() {
        let error = Request::parse(r#"{"uid": "x", "kind": 3}"#).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("cannot read the admission request"), "{message}");
        assert!(message.contains("column"), "{message}");
    }

    #[test]
    fn an_object_of_the_wrong_shape_names_the_part_and_type() {
        let raw = CREATE.replace(r#""ports": [{"port": 80}]"#, r#""ports": "eighty""#);
        let request = Request::parse(&raw).unwrap();
        let error = request.object::<Service>().unwrap_err().to_string();
        assert!(error.starts_with("cannot read object as k8s_openapi::"), "{error}");
    }
}
