// require-labels, in JavaScript: Services and StatefulSets must carry the
// label keys the settings list ({"labels": ["team", ...]}); a request that
// lacks any is denied, naming every missing key.
//
// The contract (policies/wit/policy.wit) is implemented by the two exported
// functions; jco componentize turns this module into a component. WIT names
// become camelCase in JavaScript: `validate-settings` is validateSettings,
// `mutated-object` is mutatedObject (a snake_case field would be silently
// dropped). Throwing a string reports a failure of the policy itself (the
// server applies the failure policy); returning {allowed: false, ...} is a
// denial.

// (API group, kind) of the objects this policy checks.
const KINDS = new Set(["/Service", "apps/StatefulSet"]);

const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_PREFIX = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Why `key` is not a valid label key, or null. */
function labelKeyProblem(key) {
  if (typeof key !== "string" || key === "") return "must be a non-empty string";
  const slash = key.lastIndexOf("/");
  const prefix = slash >= 0 ? key.slice(0, slash) : "";
  const name = key.slice(slash + 1);
  if (slash >= 0 && (prefix.length > 253 || !LABEL_PREFIX.test(prefix))) {
    return "has an invalid prefix (a DNS subdomain of at most 253 characters)";
  }
  if (!LABEL_NAME.test(name)) {
    return "has an invalid name (at most 63 letters, digits, '-', '_' or '.', alphanumeric at both ends)";
  }
  return null;
}

/** The required label keys; throws a string that says what is wrong. */
function requiredLabels(settingsJson) {
  const settings = JSON.parse(settingsJson);
  if (settings === null || typeof settings !== "object" || Array.isArray(settings)) {
    throw 'settings are required: {"labels": ["team", ...]}';
  }
  const unknown = Object.keys(settings).filter((key) => key !== "labels");
  if (unknown.length > 0) throw `unknown setting(s): ${unknown.join(", ")} (known: labels)`;
  const labels = settings.labels;
  if (!Array.isArray(labels) || labels.length === 0) throw "labels must be a non-empty list of label keys";
  labels.forEach((key, index) => {
    const problem = labelKeyProblem(key);
    if (problem) throw `labels[${index}] ${JSON.stringify(key)} ${problem}`;
  });
  return labels;
}

function verdict(allowed, message) {
  return { allowed, message, code: undefined, mutatedObject: undefined, warnings: [], auditAnnotations: [] };
}

export function validateSettings(settings) {
  requiredLabels(settings);
}

export function evaluate(requestJson, settings) {
  const required = requiredLabels(settings);
  const request = JSON.parse(requestJson);
  const kind = request.kind || {};
  if (!KINDS.has(`${kind.group || ""}/${kind.kind}`) || request.operation === "DELETE" || request.subResource) {
    return verdict(true, undefined);
  }
  const object = request.object;
  if (object === null || typeof object !== "object") throw "the request has no object";
  const metadata = object.metadata || {};
  const labels = metadata.labels || {};
  const missing = required.filter((key) => !Object.prototype.hasOwnProperty.call(labels, key));
  if (missing.length === 0) return verdict(true, undefined);
  const name = metadata.name || request.name || metadata.generateName || "";
  const display = request.namespace ? `${kind.kind} ${request.namespace}/${name}` : `${kind.kind} ${name}`;
  return verdict(false, `${display} is missing the required label(s) ${missing.join(", ")}: set them in metadata.labels`);
}
