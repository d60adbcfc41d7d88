// {{name}}: a wasmhook policy in JavaScript. Objects must carry the label its
// settings name ({"label": "team"{{value_setting_doc}}}).
//
// jco componentize turns this module into a component implementing the
// contract in wit/policy.wit: the two exported functions. WIT names become
// camelCase (validate-settings is validateSettings, mutated-object is
// mutatedObject). Throwing a string reports a failure of the policy itself
// (the server applies the failure policy); returning {allowed: false} denies.

const DEFAULTS = { label: "team"{{value_default_js}} };

/** The settings with defaults filled in; throws a string with the reason. */
function parseSettings(settingsJson) {
  const settings = JSON.parse(settingsJson);
  if (settings === null) return { ...DEFAULTS };
  if (typeof settings !== "object" || Array.isArray(settings)) throw "settings must be a mapping";
  const unknown = Object.keys(settings).filter((key) => !(key in DEFAULTS));
  if (unknown.length > 0) throw `unknown setting(s): ${unknown.join(", ")} (known: ${Object.keys(DEFAULTS).join(", ")})`;
  const merged = { ...DEFAULTS, ...settings };
  if (typeof merged.label !== "string" || merged.label === "") throw "label must be a non-empty string";
  return merged;
}

function verdict(allowed, message, mutatedObject, warnings = []) {
  return { allowed, message, code: undefined, mutatedObject, warnings, auditAnnotations: [] };
}

export function validateSettings(settings) {
  parseSettings(settings);
}

export function evaluate(requestJson, settingsJson) {
  const settings = parseSettings(settingsJson);
  const request = JSON.parse(requestJson);
  if (request.operation === "DELETE") return verdict(true);
  const object = request.object;
  if (object === null || typeof object !== "object") throw "the request has no object";
  const labels = (object.metadata && object.metadata.labels) || {};
  if (Object.prototype.hasOwnProperty.call(labels, settings.label)) return verdict(true);
{{js_missing}}
}
