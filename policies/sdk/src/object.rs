//! Loss-free, lazy editing of a Kubernetes object.
//!
//! Deserializing an object into k8s-openapi types and serializing it back
//! drops every field the types do not know (newer API fields, CRD extras), and
//! the server's JSON Patch would then delete them from the cluster. An
//! [`Object`] therefore keeps the request's object as the JSON text it arrived
//! as and changes it in place: by JSON pointer, or through a typed view whose
//! *changes* (never its re-serialization) are applied back.
//!
//! It is also lazy. Only the objects and arrays on the path to an edit are
//! split into their members ([`wasmhook_rawjson::members`]); everything else
//! stays a slice of the original text and is written back byte for byte. A
//! policy that sets two fields of a Service pays for reading the path to them,
//! not for parsing and re-serializing the whole object — and the server,
//! comparing raw text first, parses only what changed.

use std::ops::Range;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use wasmhook_rawjson::{Kind, SplitObject};

use crate::{PolicyError, pointer};

/// An object being mutated. Hand it to [`crate::Verdict::mutate`].
#[derive(Debug, Clone)]
pub struct Object {
    /// The original document (valid JSON); `Raw` nodes are ranges of it.
    text: String,
    root: Node,
    changed: bool,
}

/// A part of the document.
#[derive(Debug, Clone)]
enum Node {
    /// Untouched: a range of the original text, written back as it was.
    Raw(Range<usize>),
    /// An object split into its members, in document order.
    Object(Split<Member>),
    /// An array split into its elements.
    Array(Split<Element>),
    /// A value the policy set.
    Value(Value),
}

/// A container split into its parts. The original text around the parts —
/// whitespace, commas, keys — is kept as ranges, so that the container is
/// written back exactly as it was except where it was edited.
#[derive(Debug, Clone)]
struct Split<T> {
    parts: Vec<T>,
    /// The text between the last original part and the closing bracket.
    tail: Option<Range<usize>>,
}

#[derive(Debug, Clone)]
struct Member {
    key: String,
    /// The text from the previous value (or the `{`) up to this value: `,`,
    /// whitespace, the key and the colon. `None` for a member an edit added.
    lead: Option<Range<usize>>,
    node: Node,
}

#[derive(Debug, Clone)]
struct Element {
    /// The text from the previous value (or the `[`) up to this one.
    lead: Option<Range<usize>>,
    node: Node,
}

impl<T> Default for Split<T> {
    fn default() -> Self {
        Self {
            parts: Vec::new(),
            tail: None,
        }
    }
}

impl Split<Member> {
    /// The last member called `key` (a JSON reader keeps the last duplicate).
    fn position(&self, key: &str) -> Option<usize> {
        self.parts.iter().rposition(|member| member.key == key)
    }
}

impl Object {
    /// Reads an object from JSON. The document must be a JSON object.
    pub fn from_json(json: &str) -> Result<Self, PolicyError> {
        let json = wasmhook_rawjson::validate(json).map_err(|source| PolicyError::InvalidObject {
            what: "object".into(),
            target: "a JSON document",
            source,
        })?;
        Self::from_valid_json(json)
    }

    /// The request's object, already split into its members as the request
    /// was read (and valid: the server validated it).
    pub(crate) fn from_split(object: &SplitObject<'_>) -> Result<Self, PolicyError> {
        if Kind::of(object.text) != Kind::Object {
            return Err(not_an_object());
        }
        Ok(Self {
            root: object_node(object.text, 0..object.text.len(), object.members.clone()),
            text: object.text.to_owned(),
            changed: false,
        })
    }

    /// An object from JSON that has been validated already.
    fn from_valid_json(json: &str) -> Result<Self, PolicyError> {
        if Kind::of(json) != Kind::Object {
            return Err(not_an_object());
        }
        Ok(Self {
            root: Node::Raw(0..json.len()),
            text: json.to_owned(),
            changed: false,
        })
    }

    /// Wraps a JSON value. The value must be a JSON object.
    pub fn from_value(document: Value) -> Result<Self, PolicyError> {
        if !document.is_object() {
            return Err(not_an_object());
        }
        Ok(Self {
            text: String::new(),
            root: Node::Value(document),
            changed: false,
        })
    }

    /// The value at a JSON pointer (RFC 6901), such as `/spec/clusterIP`;
    /// `""` is the whole document. Only that value is parsed.
    pub fn get(&self, pointer: &str) -> Option<Value> {
        let tokens = tokens(pointer).ok()?;
        let mut node = &self.root;
        for (depth, token) in tokens.iter().enumerate() {
            node = match node {
                Node::Raw(range) => return raw_get(&self.text[range.clone()], &tokens[depth..]),
                Node::Value(value) => return value_get(value, &tokens[depth..]),
                Node::Object(members) => &members.parts[members.position(token)?].node,
                Node::Array(items) => &items.parts.get(pointer::array_index(token)?)?.node,
            };
        }
        Some(value_of(&self.text, node))
    }

    /// The string at a JSON pointer, if there is one.
    pub fn get_str(&self, pointer: &str) -> Option<String> {
        match self.get(pointer)? {
            Value::String(string) => Some(string),
            _ => None,
        }
    }

    /// Sets the value at a JSON pointer, creating missing parent objects (and
    /// replacing a `null` parent with an object).
    ///
    /// An array index must exist, or be `-` to append. Setting a value equal to
    /// the current one is not a change.
    pub fn set(&mut self, pointer: &str, value: impl Into<Value>) -> Result<&mut Self, PolicyError> {
        self.put(pointer, value.into(), false)?;
        Ok(self)
    }

    /// Removes the value at a JSON pointer. Removing what is not there is not
    /// a change (and not an error).
    pub fn remove(&mut self, pointer: &str) -> Result<&mut Self, PolicyError> {
        let mut tokens = tokens(pointer)?;
        let last = tokens
            .pop()
            .ok_or_else(|| edit_error(pointer, "the whole document cannot be removed"))?;
        let mut node = &mut self.root;
        for token in &tokens {
            split(&self.text, node, pointer)?;
            let child = match node {
                Node::Object(members) => members.position(token).map(|index| &mut members.parts[index].node),
                Node::Array(items) => pointer::array_index(token)
                    .and_then(|index| items.parts.get_mut(index))
                    .map(|element| &mut element.node),
                _ => None,
            };
            match child {
                Some(child) => node = child,
                None => return Ok(self),
            }
        }
        split(&self.text, node, pointer)?;
        let removed = match node {
            Node::Object(members) => {
                let before = members.parts.len();
                members.parts.retain(|member| member.key != last);
                members.parts.len() != before
            }
            Node::Array(items) => {
                let index = array_index(pointer, &last, items.parts.len())?;
                items.parts.remove(index);
                true
            }
            _ => false,
        };
        self.changed |= removed;
        Ok(self)
    }

    /// Reads the object as `T` (for example a k8s-openapi `StatefulSet`),
    /// lets `edit` change it, and applies exactly what `edit` changed to the
    /// document. Fields `T` does not know are kept.
    ///
    /// ```
    /// use k8s_openapi::api::core::v1::Service;
    /// use wasmhook_policy::Object;
    ///
    /// let mut object = Object::from_json(
    ///     r#"{"spec": {"ports": [{"port": 80}], "futureField": {"keep": true}}}"#,
    /// )?;
    /// object.edit_as(|service: &mut Service| {
    ///     service.spec.get_or_insert_with(Default::default).cluster_ip = Some("None".into());
    /// })?;
    /// assert_eq!(object.get_str("/spec/clusterIP").as_deref(), Some("None"));
    /// assert_eq!(object.get("/spec/futureField/keep"), Some(true.into()));
    /// # Ok::<(), wasmhook_policy::PolicyError>(())
    /// ```
    pub fn edit_as<T, F>(&mut self, edit: F) -> Result<&mut Self, PolicyError>
    where
        T: DeserializeOwned + Serialize,
        F: FnOnce(&mut T),
    {
        let mut typed: T = serde_json::from_str(&self.to_json()).map_err(|source| PolicyError::InvalidObject {
            what: "object".into(),
            target: std::any::type_name::<T>(),
            source,
        })?;
        let before = to_value(&typed)?;
        edit(&mut typed);
        let after = to_value(&typed)?;
        for operation in json_patch::diff(&before, &after).0 {
            match operation {
                json_patch::PatchOperation::Add(add) => self.put(add.path.as_str(), add.value, true)?,
                json_patch::PatchOperation::Replace(replace) => {
                    self.put(replace.path.as_str(), replace.value, false)?
                }
                json_patch::PatchOperation::Remove(remove) => {
                    self.remove(remove.path.as_str())?;
                }
                other => unreachable!("json_patch::diff only adds, replaces and removes, not {other:?}"),
            }
        }
        Ok(self)
    }

    /// Whether any edit changed the document.
    pub fn is_changed(&self) -> bool {
        self.changed
    }

    /// The document as JSON: everything no edit touched exactly as it was
    /// written, the rest serialized compactly.
    pub fn to_json(&self) -> String {
        let mut json = Vec::with_capacity(self.text.len() + 64);
        self.write(&self.root, &mut json);
        String::from_utf8(json).expect("JSON text and serde_json's output are UTF-8")
    }

    /// The document, parsed.
    pub fn to_value(&self) -> Value {
        value_of(&self.text, &self.root)
    }

    /// The document, consumed.
    pub fn into_value(self) -> Value {
        match self.root {
            Node::Value(value) => value,
            _ => self.to_value(),
        }
    }

    /// Sets `value` at `pointer`; `append_at_end`: an index one past an
    /// array's end appends (JSON Patch's `add`).
    fn put(&mut self, pointer: &str, value: Value, append_at_end: bool) -> Result<(), PolicyError> {
        let mut tokens = tokens(pointer)?;
        let last = tokens
            .pop()
            .ok_or_else(|| edit_error(pointer, "the whole document cannot be replaced"))?;
        let mut node = &mut self.root;
        for token in tokens {
            split_or_create(&self.text, node, pointer)?;
            node = match node {
                Node::Object(members) => {
                    let index = members.position(&token).unwrap_or_else(|| {
                        members.parts.push(Member {
                            key: token,
                            lead: None,
                            node: Node::Object(Split::default()),
                        });
                        members.parts.len() - 1
                    });
                    &mut members.parts[index].node
                }
                Node::Array(items) => {
                    let index = array_index(pointer, &token, items.parts.len())?;
                    &mut items.parts[index].node
                }
                _ => unreachable!("split_or_create leaves a container"),
            };
        }
        split_or_create(&self.text, node, pointer)?;
        let changed = match node {
            Node::Object(members) => match members.position(&last) {
                Some(index) if value_equals(&self.text, &members.parts[index].node, &value) => false,
                Some(index) => {
                    members.parts[index].node = Node::Value(value);
                    true
                }
                None => {
                    members.parts.push(Member {
                        key: last,
                        lead: None,
                        node: Node::Value(value),
                    });
                    true
                }
            },
            Node::Array(items) if last == "-" || (append_at_end && last.parse() == Ok(items.parts.len())) => {
                items.parts.push(Element {
                    lead: None,
                    node: Node::Value(value),
                });
                true
            }
            Node::Array(items) => {
                let index = array_index(pointer, &last, items.parts.len())?;
                let element = &mut items.parts[index].node;
                if value_equals(&self.text, element, &value) {
                    false
                } else {
                    *element = Node::Value(value);
                    true
                }
            }
            _ => unreachable!("split_or_create leaves a container"),
        };
        self.changed |= changed;
        Ok(())
    }

    fn write(&self, node: &Node, json: &mut Vec<u8>) {
        match node {
            Node::Raw(range) => json.extend_from_slice(self.text[range.clone()].as_bytes()),
            Node::Object(members) => {
                json.push(b'{');
                for (index, member) in members.parts.iter().enumerate() {
                    match &member.lead {
                        Some(lead) => self.write_lead(lead, index == 0, json),
                        None => {
                            if index > 0 {
                                json.push(b',');
                            }
                            serde_json::to_writer(&mut *json, &member.key).expect("writing to memory cannot fail");
                            json.push(b':');
                        }
                    }
                    self.write(&member.node, json);
                }
                self.write_tail(members.tail.as_ref(), json);
                json.push(b'}');
            }
            Node::Array(items) => {
                json.push(b'[');
                for (index, item) in items.parts.iter().enumerate() {
                    match &item.lead {
                        Some(lead) => self.write_lead(lead, index == 0, json),
                        None if index > 0 => json.push(b','),
                        None => {}
                    }
                    self.write(&item.node, json);
                }
                self.write_tail(items.tail.as_ref(), json);
                json.push(b']');
            }
            Node::Value(value) => serde_json::to_writer(&mut *json, value).expect("writing to memory cannot fail"),
        }
    }

    /// The original text before a part. The first part written has no comma
    /// before it: when the parts before it were removed, its own is dropped.
    /// (Added parts only ever follow the original ones.)
    fn write_lead(&self, lead: &Range<usize>, first: bool, json: &mut Vec<u8>) {
        let lead = &self.text[lead.clone()];
        // A separating comma is the first thing in a lead (a key may hold one).
        let separator = lead.trim_start_matches([' ', '\t', '\n', '\r']).strip_prefix(',');
        let lead = match (first, separator) {
            (true, Some(after_comma)) => after_comma,
            _ => lead,
        };
        json.extend_from_slice(lead.as_bytes());
    }

    fn write_tail(&self, tail: Option<&Range<usize>>, json: &mut Vec<u8>) {
        if let Some(tail) = tail {
            json.extend_from_slice(self.text[tail.clone()].as_bytes());
        }
    }
}

/// Equal when their documents are equal, however they were edited.
impl PartialEq for Object {
    fn eq(&self, other: &Self) -> bool {
        self.changed == other.changed && self.to_value() == other.to_value()
    }
}

/// The object at `range` of `text`, from its members (whose values are
/// slices of `text`).
fn object_node(text: &str, range: Range<usize>, members: Vec<wasmhook_rawjson::Member<'_>>) -> Node {
    let mut layout = Layout::new(text, &range);
    let parts = members
        .into_iter()
        .map(|(key, value)| {
            let (lead, node) = layout.place(value);
            Member {
                key: key.into_owned(),
                lead,
                node,
            }
        })
        .collect();
    Node::Object(Split {
        parts,
        tail: layout.tail(&range),
    })
}

/// Ranges of a document's text for the parts of one container: each part's
/// value, and the text between them (separators, whitespace, keys).
struct Layout<'t> {
    text: &'t str,
    previous_end: usize,
}

impl<'t> Layout<'t> {
    /// For the container at `range` (which starts with its bracket).
    fn new(text: &'t str, range: &Range<usize>) -> Self {
        Self {
            text,
            previous_end: range.start + 1,
        }
    }

    /// The next part, whose value is the slice `value` of the text.
    fn place(&mut self, value: &str) -> (Option<Range<usize>>, Node) {
        let span = wasmhook_rawjson::span_in(self.text, value);
        let lead = self.previous_end..span.start;
        self.previous_end = span.end;
        (Some(lead), Node::Raw(span))
    }

    /// The text after the last part, up to the closing bracket.
    fn tail(self, range: &Range<usize>) -> Option<Range<usize>> {
        Some(self.previous_end..range.end - 1)
    }
}

/// Splits a `Raw` (or set) object or array into its members, in place.
/// Scalars are left as they are.
fn split(text: &str, node: &mut Node, pointer: &str) -> Result<(), PolicyError> {
    match node {
        Node::Raw(range) => {
            let range = range.clone();
            let raw = &text[range.clone()];
            let invalid =
                |error: serde_json::Error| edit_error(pointer, &format!("the object is not valid JSON: {error}"));
            match Kind::of(raw) {
                Kind::Object => {
                    let members = wasmhook_rawjson::members(raw).map_err(invalid)?;
                    *node = object_node(text, range, members);
                }
                Kind::Array => {
                    let elements = wasmhook_rawjson::elements(raw).map_err(invalid)?;
                    let mut layout = Layout::new(text, &range);
                    let parts = elements
                        .into_iter()
                        .map(|value| {
                            let (lead, node) = layout.place(value);
                            Element { lead, node }
                        })
                        .collect();
                    *node = Node::Array(Split {
                        parts,
                        tail: layout.tail(&range),
                    });
                }
                Kind::Scalar => {}
            }
        }
        Node::Value(Value::Object(map)) => {
            let parts = std::mem::take(map)
                .into_iter()
                .map(|(key, value)| Member {
                    key,
                    lead: None,
                    node: Node::Value(value),
                })
                .collect();
            *node = Node::Object(Split { parts, tail: None });
        }
        Node::Value(Value::Array(items)) => {
            let parts = std::mem::take(items)
                .into_iter()
                .map(|value| Element {
                    lead: None,
                    node: Node::Value(value),
                })
                .collect();
            *node = Node::Array(Split { parts, tail: None });
        }
        Node::Value(_) | Node::Object(_) | Node::Array(_) => {}
    }
    Ok(())
}

/// [`split`], for a node an edit goes through: `null` becomes an empty
/// object, and any other scalar is an error.
fn split_or_create(text: &str, node: &mut Node, pointer: &str) -> Result<(), PolicyError> {
    split(text, node, pointer)?;
    let is_null = match node {
        Node::Raw(range) => &text[range.clone()] == "null",
        Node::Value(value) => value.is_null(),
        Node::Object(_) | Node::Array(_) => return Ok(()),
    };
    if is_null {
        *node = Node::Object(Split::default());
        Ok(())
    } else {
        Err(edit_error(pointer, "the path goes through a scalar value"))
    }
}

/// The value of a part of the document, parsed.
fn value_of(text: &str, node: &Node) -> Value {
    match node {
        Node::Raw(range) => parse_valid(&text[range.clone()]),
        Node::Object(members) => Value::Object(
            members
                .parts
                .iter()
                .map(|member| (member.key.clone(), value_of(text, &member.node)))
                .collect(),
        ),
        Node::Array(items) => Value::Array(items.parts.iter().map(|item| value_of(text, &item.node)).collect()),
        Node::Value(value) => value.clone(),
    }
}

fn value_equals(text: &str, node: &Node, value: &Value) -> bool {
    match node {
        Node::Value(current) => current == value,
        node => value_of(text, node) == *value,
    }
}

/// The value at `tokens` inside the valid JSON `raw`, parsing only that value.
fn raw_get(raw: &str, tokens: &[String]) -> Option<Value> {
    let part = pointer::find_tokens(raw, tokens).ok()??;
    serde_json::from_str(part).ok()
}

fn value_get(value: &Value, tokens: &[String]) -> Option<Value> {
    let mut current = value;
    for token in tokens {
        current = match current {
            Value::Object(map) => map.get(token)?,
            Value::Array(items) => items.get(pointer::array_index(token)?)?,
            _ => return None,
        };
    }
    Some(current.clone())
}

/// Parses JSON that was validated when the object was made.
fn parse_valid(json: &str) -> Value {
    serde_json::from_str(json).expect("the object's text was validated")
}

fn to_value<T: Serialize>(typed: &T) -> Result<Value, PolicyError> {
    serde_json::to_value(typed)
        .map_err(|error| PolicyError::other(format!("cannot serialize the edited object: {error}")))
}

/// A JSON pointer's unescaped tokens; `""` has none.
fn tokens(pointer: &str) -> Result<Vec<String>, PolicyError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(edit_error(pointer, "a JSON pointer must start with '/'"));
    };
    Ok(rest
        .split('/')
        .map(|token| pointer::unescape(token).into_owned())
        .collect())
}

/// One key as a JSON-pointer token (RFC 6901): `~` becomes `~0` and `/`
/// becomes `~1`, so a label key such as `app.kubernetes.io/name` addresses one
/// member: `format!("/metadata/labels/{}", pointer_token(key))`.
pub fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn array_index(pointer: &str, token: &str, len: usize) -> Result<usize, PolicyError> {
    match pointer::array_index(token) {
        Some(index) if index < len => Ok(index),
        _ => Err(edit_error(
            pointer,
            &format!("{token:?} is not an index of an array of {len} items"),
        )),
    }
}

fn not_an_object() -> PolicyError {
    PolicyError::other("the object to mutate is not a JSON object")
}

fn edit_error(pointer: &str, reason: &str) -> PolicyError {
    PolicyError::Edit {
        pointer: pointer.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use serde_json::json;

    use super::*;

    /// A StatefulSet with a field k8s-openapi does not know and a quantity in
    /// a form that a typed round trip could rewrite.
    fn statefulset() -> Object {
        Object::from_value(json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db", "labels": {"app": "db"}},
            "spec": {
                "serviceName": "",
                "futureScalingPolicy": {"mode": "Burst"},
                "selector": {"matchLabels": {"app": "db"}},
                "template": {
                    "metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{
                        "name": "db",
                        "image": "postgres:17",
                        "experimentalField": 7,
                        "resources": {"limits": {"memory": "1.5Gi"}}
                    }]}
                }
            }
        }))
        .unwrap()
    }

    #[test]
    fn typed_edits_keep_unknown_fields_and_formatting() {
        let mut object = statefulset();
        let original = object.to_value();
        object
            .edit_as(|sts: &mut StatefulSet| {
                sts.spec.as_mut().unwrap().service_name = Some("db-headless".into());
            })
            .unwrap();

        let mut expected = original;
        expected["spec"]["serviceName"] = json!("db-headless");
        assert_eq!(object.to_value(), expected, "only serviceName may change");
        assert!(object.is_changed());
    }

    #[test]
    fn a_typed_edit_that_changes_nothing_is_not_a_change() {
        let mut object = statefulset();
        object.edit_as(|_: &mut StatefulSet| {}).unwrap();
        assert!(!object.is_changed());
    }

    #[test]
    fn set_creates_parents_and_detects_no_ops() {
        let mut object = Object::from_value(json!({"metadata": {"name": "x"}})).unwrap();
        object.set("/metadata/name", "x").unwrap();
        assert!(!object.is_changed(), "setting the same value is not a change");
        object.set("/metadata/labels/a~1b", "c").unwrap();
        assert!(object.is_changed());
        assert_eq!(
            object.to_value(),
            json!({"metadata": {"name": "x", "labels": {"a/b": "c"}}})
        );
    }

    #[test]
    fn arrays_are_addressed_by_index_or_appended() {
        let mut object = Object::from_value(json!({"spec": {"clusterIPs": ["10.0.0.1"]}})).unwrap();
        object.set("/spec/clusterIPs/0", "None").unwrap();
        object.set("/spec/clusterIPs/-", "fd00::1").unwrap();
        assert_eq!(object.get("/spec/clusterIPs"), Some(json!(["None", "fd00::1"])));
        let error = object.set("/spec/clusterIPs/5", "x").unwrap_err().to_string();
        assert!(
            error.contains("/spec/clusterIPs/5") && error.contains("array of 2"),
            "{error}"
        );
    }

    #[test]
    fn remove_of_a_missing_value_is_not_a_change() {
        let mut object = Object::from_value(json!({"spec": {"a": 1}})).unwrap();
        object.remove("/spec/b").unwrap();
        assert!(!object.is_changed());
        object.remove("/spec/a").unwrap();
        assert!(object.is_changed());
        assert_eq!(object.to_value(), json!({"spec": {}}));
    }

    /// A Service as the API server sends it: compact, keys in its order.
    const SERVICE: &str = r#"{"kind":"Service","apiVersion":"v1","metadata":{"name":"db","namespace":"data","uid":"7f1c","labels":{"app":"db"},"managedFields":[{"manager":"kubectl","operation":"Update","fieldsV1":{"f:spec":{"f:ports":{}}}}]},"spec":{"ports":[{"port":5432,"targetPort":5432}],"selector":{"app":"db"},"type":"ClusterIP"},"status":{"loadBalancer":{}}}"#;

    #[test]
    fn untouched_members_are_written_back_byte_for_byte() {
        let mut object = Object::from_json(SERVICE).unwrap();
        assert_eq!(object.to_json(), SERVICE, "no edit, no change of a byte");
        object.set("/spec/clusterIP", "None").unwrap();
        object.set("/spec/ports/0/port", 5433).unwrap();
        object.set("/metadata/labels/tier", "data").unwrap();
        let expected = SERVICE
            .replace(r#""type":"ClusterIP""#, r#""type":"ClusterIP","clusterIP":"None""#)
            .replace(r#""port":5432,"#, r#""port":5433,"#)
            .replace(
                r#"{"app":"db"},"managedFields""#,
                r#"{"app":"db","tier":"data"},"managedFields""#,
            );
        assert_eq!(object.to_json(), expected);
    }

    #[test]
    fn whitespace_survives_outside_the_edited_containers() {
        let original = "{ \"spec\": { \"a\": [1, 2],\n \"b\": { \"c\": true } }, \"status\": { \"x\": 1 } }";
        let mut object = Object::from_json(original).unwrap();
        object.set("/spec/a/1", 3).unwrap();
        assert_eq!(object.to_json(), original.replace("[1, 2]", "[1, 3]"));
    }

    #[test]
    fn removals_and_additions_keep_the_text_valid_json() {
        let original = "{ \"a,b\": 1,\n  \"c\": [ 1, 2 ],\n  \"d\": { },\n  \"e\": [ 3 ]\n}";
        let edits: [(&str, Option<Value>); 6] = [
            ("/a,b", None),
            ("/c/0", None),
            ("/d/x", Some(json!("y"))),
            ("/e/0", None),
            ("/e/-", Some(json!(4))),
            ("/f", Some(json!(null))),
        ];
        let mut object = Object::from_json(original).unwrap();
        let mut expected: Value = serde_json::from_str(original).unwrap();
        for (pointer, value) in edits {
            let (parent, last) = pointer.rsplit_once('/').unwrap();
            let target = expected
                .pointer_mut(if parent.is_empty() { "" } else { parent })
                .unwrap();
            match value {
                Some(value) => {
                    object.set(pointer, value.clone()).unwrap();
                    match target {
                        Value::Array(items) => items.push(value),
                        target => target[last] = value,
                    }
                }
                None => {
                    object.remove(pointer).unwrap();
                    match target {
                        Value::Array(items) => drop(items.remove(last.parse().unwrap())),
                        target => drop(target.as_object_mut().unwrap().remove(last)),
                    }
                }
            }
            let json = object.to_json();
            let reparsed: Value = serde_json::from_str(&json).unwrap_or_else(|error| panic!("{error}: {json}"));
            assert_eq!(reparsed, expected, "after {pointer}: {json}");
        }
        assert_eq!(
            object.to_json(),
            "{\n  \"c\": [ 2 ],\n  \"d\": {\"x\":\"y\" },\n  \"e\": [4 ],\"f\":null\n}"
        );
    }

    #[test]
    fn a_comma_in_the_first_key_is_not_a_separator() {
        let mut object = Object::from_json(r#"{"a,b":1,"c":2}"#).unwrap();
        object.set("/c", 3).unwrap();
        assert_eq!(object.to_json(), r#"{"a,b":1,"c":3}"#);
    }

    #[test]
    fn reads_see_the_edits_and_parse_only_what_they_read() {
        let mut object = Object::from_json(SERVICE).unwrap();
        assert_eq!(object.get_str("/metadata/name").as_deref(), Some("db"));
        assert_eq!(object.get("/spec/ports/0/port"), Some(json!(5432)));
        assert_eq!(object.get("/spec/ports/01/port"), None, "not an RFC 6901 index");
        assert_eq!(object.get("/spec/type/x"), None);
        assert_eq!(object.get("/nothing"), None);
        object.set("/spec/selector", json!({"app": {"nested": [1]}})).unwrap();
        assert_eq!(object.get("/spec/selector/app/nested/0"), Some(json!(1)));
        assert_eq!(object.get("/spec/type"), Some(json!("ClusterIP")));
        assert_eq!(object.get("").unwrap()["metadata"]["labels"], json!({"app": "db"}));
    }

    #[test]
    fn edits_through_set_values_and_nulls() {
        let mut object = Object::from_json(r#"{"metadata":{"labels":null},"spec":{"x":1}}"#).unwrap();
        object.set("/metadata/labels/a", "b").unwrap();
        object.set("/spec/new", json!({"list": [1]})).unwrap();
        object.set("/spec/new/list/-", 2).unwrap();
        object.set("/spec/new/list/0", 0).unwrap();
        object.remove("/spec/x").unwrap();
        assert_eq!(
            object.to_value(),
            json!({"metadata": {"labels": {"a": "b"}}, "spec": {"new": {"list": [0, 2]}}})
        );
        let error = object.set("/metadata/labels/a/b", 1).unwrap_err().to_string();
        assert!(
            error.contains("/metadata/labels/a/b") && error.contains("scalar"),
            "{error}"
        );
    }

    #[test]
    fn setting_an_edited_container_to_its_own_value_is_not_a_change() {
        let mut object = Object::from_json(SERVICE).unwrap();
        object.set("/spec/ports/0/port", 5432).unwrap();
        assert!(!object.is_changed(), "the same port");
        // /spec and /spec/ports are split now; set them to what they hold.
        let spec = object.get("/spec").unwrap();
        object.set("/spec", spec).unwrap();
        assert!(!object.is_changed(), "the same spec");
        assert_eq!(object.to_json(), SERVICE);
    }

    #[test]
    fn the_last_of_duplicate_keys_is_the_one_read_and_edited() {
        let mut object = Object::from_json(r#"{"a":1,"a":2}"#).unwrap();
        assert_eq!(object.get("/a"), Some(json!(2)));
        object.set("/a", 2).unwrap();
        assert!(!object.is_changed());
        object.set("/a", 3).unwrap();
        assert_eq!(object.to_value(), json!({"a": 3}));
        object.remove("/a").unwrap();
        assert_eq!(object.to_value(), json!({}));
    }

    #[test]
    fn typed_edits_change_only_their_members_bytes() {
        let mut object = Object::from_json(SERVICE).unwrap();
        object
            .edit_as(|service: &mut k8s_openapi::api::core::v1::Service| {
                let spec = service.spec.as_mut().unwrap();
                spec.cluster_ip = Some("None".into());
                spec.ports.as_mut().unwrap().push(Default::default());
            })
            .unwrap();
        let json = object.to_json();
        assert!(json.contains(r#""metadata":{"name":"db","namespace":"data","uid":"7f1c","labels":{"app":"db"},"managedFields":[{"manager":"kubectl","operation":"Update","fieldsV1":{"f:spec":{"f:ports":{}}}}]}"#), "{json}");
        let mut expected: Value = serde_json::from_str(SERVICE).unwrap();
        expected["spec"]["clusterIP"] = json!("None");
        expected["spec"]["ports"]
            .as_array_mut()
            .unwrap()
            .push(json!({"port": 0}));
        assert_eq!(object.to_value(), expected);
    }

    #[test]
    fn bad_pointers_and_non_objects_are_errors() {
        let mut object = Object::from_value(json!({"spec": "scalar"})).unwrap();
        assert!(object.set("spec", 1).is_err(), "pointer without leading slash");
        assert!(object.set("/spec/x/y", 1).is_err(), "path through a scalar");
        assert!(Object::from_json("[1, 2]").is_err());
        assert!(Object::from_json("{").is_err());
    }
}
