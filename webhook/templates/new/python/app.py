"""{{name}}: a wasmhook policy in Python. Objects must carry the label its
settings name ({"label": "team"{{value_setting_doc}}}).

componentize-py turns this file into a component implementing the contract in
wit/policy.wit: the class WitWorld below. Raising Err("...") reports a failure
of the policy itself (the server applies the failure policy); returning a
Verdict with allowed=False is a denial. Any other exception traps.
"""

import json

from componentize_py_types import Err

import wit_world
from wit_world import Verdict

DEFAULTS = {"label": "team"{{value_default_py}}}


def parse_settings(settings_json):
    """The settings with defaults filled in; raises Err with the reason."""
    settings = json.loads(settings_json)
    if settings is None:
        return dict(DEFAULTS)
    if not isinstance(settings, dict):
        raise Err("settings must be a mapping")
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise Err(f"unknown setting(s): {', '.join(unknown)} (known: {', '.join(DEFAULTS)})")
    merged = {**DEFAULTS, **settings}
    if not isinstance(merged["label"], str) or not merged["label"]:
        raise Err("label must be a non-empty string")
    return merged


def verdict(allowed, message=None, mutated_object=None, warnings=()):
    return Verdict(
        allowed=allowed,
        message=message,
        code=None,
        mutated_object=mutated_object,
        warnings=list(warnings),
        audit_annotations=[],
    )


class WitWorld(wit_world.WitWorld):
    def validate_settings(self, settings: str) -> None:
        parse_settings(settings)

    def evaluate(self, request: str, settings: str) -> Verdict:
        settings = parse_settings(settings)
        request = json.loads(request)
        if request.get("operation") == "DELETE":
            return verdict(True)
        obj = request.get("object")
        if not isinstance(obj, dict):
            raise Err("the request has no object")
        labels = (obj.get("metadata") or {}).get("labels") or {}
        label = settings["label"]
        if label in labels:
            return verdict(True)
{{python_missing}}
