"""require-labels, in Python: Services and StatefulSets must carry the label
keys the settings list; where a setting gives a default value, a missing label
is added instead of denied.

Settings::

    {"labels": ["team", "tier"], "defaults": {"tier": "backend"}}

- ``labels``: the label keys every Service and StatefulSet must have;
- ``defaults`` (optional): values for some of them. A missing label with a
  default is added (the policy mutates); a missing label without one denies the
  request, naming every missing key.

The contract (``policies/wit/policy.wit``) is implemented by the class
``WitWorld`` below; componentize-py turns this file into a component.
An ``evaluate`` that *raises* ``Err(...)`` reports a failure of the policy
itself (the server applies the failure policy); returning a ``Verdict`` with
``allowed=False`` is a denial. Any other exception traps.
"""

import json
import re

from componentize_py_types import Err

import wit_world
from wit_world import Verdict

# (API group, kind) of the objects this policy checks.
KINDS = {("", "Service"), ("apps", "StatefulSet")}

# A label key: an optional DNS-subdomain prefix and a name of at most 63 characters.
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def label_key_problem(key):
    """Why ``key`` is not a valid label key, or None."""
    if not isinstance(key, str) or not key:
        return "must be a non-empty string"
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not LABEL_PREFIX.match(prefix)):
        return "has an invalid prefix (a DNS subdomain of at most 253 characters)"
    if not LABEL_NAME.match(name):
        return "has an invalid name (at most 63 letters, digits, '-', '_' or '.', alphanumeric at both ends)"
    return None


def parse_settings(settings_json):
    """The settings as (required keys, defaults); raises ValueError with the reason."""
    settings = json.loads(settings_json)
    if not isinstance(settings, dict):
        raise ValueError('settings are required: {"labels": ["team", ...], "defaults": {...}}')
    unknown = sorted(set(settings) - {"labels", "defaults"})
    if unknown:
        raise ValueError(f"unknown setting(s): {', '.join(unknown)} (known: labels, defaults)")
    labels = settings.get("labels")
    if not isinstance(labels, list) or not labels:
        raise ValueError("labels must be a non-empty list of label keys")
    for index, key in enumerate(labels):
        problem = label_key_problem(key)
        if problem:
            raise ValueError(f"labels[{index}] {key!r} {problem}")
    defaults = settings.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ValueError("defaults must map label keys to values")
    for key, value in defaults.items():
        if key not in labels:
            raise ValueError(f"defaults[{key!r}] is not one of the required labels")
        if not isinstance(value, str) or len(value) > 63:
            raise ValueError(f"defaults[{key!r}] must be a string of at most 63 characters")
    return labels, defaults


def allow(warnings=()):
    return Verdict(
        allowed=True, message=None, code=None, mutated_object=None, warnings=list(warnings), audit_annotations=[]
    )


class WitWorld(wit_world.WitWorld):
    def validate_settings(self, settings: str) -> None:
        try:
            parse_settings(settings)
        except ValueError as error:
            raise Err(str(error))

    def evaluate(self, request: str, settings: str) -> Verdict:
        try:
            required, defaults = parse_settings(settings)
        except ValueError as error:
            raise Err(str(error))
        request = json.loads(request)
        kind = request.get("kind", {})
        if (kind.get("group", ""), kind.get("kind")) not in KINDS or request.get("operation") == "DELETE":
            return allow()
        if request.get("subResource"):
            return allow()
        obj = request.get("object")
        if not isinstance(obj, dict):
            raise Err("the request has no object")
        metadata = obj.get("metadata") or {}
        labels = metadata.get("labels") or {}
        missing = [key for key in required if key not in labels]
        if not missing:
            return allow()

        namespace = request.get("namespace")
        name = metadata.get("name") or request.get("name") or metadata.get("generateName", "")
        display = f"{kind['kind']} {namespace}/{name}" if namespace else f"{kind['kind']} {name}"
        without_default = [key for key in missing if key not in defaults]
        if without_default:
            return Verdict(
                allowed=False,
                message=(
                    f"{display} is missing the required label(s) {', '.join(without_default)}: "
                    f"set them in metadata.labels"
                ),
                code=None,
                mutated_object=None,
                warnings=[],
                audit_annotations=[],
            )
        # Every missing label has a default: add them, changing nothing else.
        added = {key: defaults[key] for key in missing}
        obj.setdefault("metadata", {}).setdefault("labels", {}).update(added)
        return Verdict(
            allowed=True,
            message=None,
            code=None,
            mutated_object=json.dumps(obj),
            warnings=[f"added default label(s) {', '.join(f'{k}={v}' for k, v in added.items())}"],
            audit_annotations=[],
        )
