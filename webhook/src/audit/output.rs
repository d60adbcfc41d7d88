//! How an audit's result is written: a table for people — one section per
//! policy, rows grouped by namespace, only what needs attention listed (the
//! passes are counted) — and JSON or YAML with every result for scripts.
//! The same input always gives the same bytes: rows are ordered, and
//! nothing time-dependent is printed.

use std::io::{self, Write};

use serde::Serialize;

use super::{AuditReport, Finding, PolicyAudit, Verdict};

/// The `apiVersion` of the JSON and YAML output.
pub const API_VERSION: &str = "wasmhook.dev/v1alpha1";
/// Their `kind`.
pub const KIND: &str = "AuditReport";

/// The machine-readable document: the report under a type header.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    api_version: &'static str,
    kind: &'static str,
    #[serde(flatten)]
    report: &'a AuditReport,
}

/// Writes `report` as pretty JSON.
pub fn json(out: &mut dyn Write, report: &AuditReport) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, &document(report))?;
    writeln!(out)
}

/// Writes `report` as YAML.
pub fn yaml(out: &mut dyn Write, report: &AuditReport) -> io::Result<()> {
    let text = serde_saphyr::to_string(&document(report)).map_err(io::Error::other)?;
    out.write_all(text.as_bytes())
}

fn document(report: &AuditReport) -> Document<'_> {
    Document {
        api_version: API_VERSION,
        kind: KIND,
        report,
    }
}

/// Writes `report` as a table: per policy, what is not a pass, grouped by
/// namespace, then the policy's counts; the totals last.
pub fn table(out: &mut dyn Write, report: &AuditReport) -> io::Result<()> {
    for (index, policy) in report.policies.iter().enumerate() {
        if index > 0 {
            writeln!(out)?;
        }
        let findings: Vec<&Finding> = report
            .results
            .iter()
            .filter(|finding| finding.policy == policy.name)
            .collect();
        policy_section(out, policy, &findings)?;
    }
    let summary = &report.summary;
    writeln!(
        out,
        "\n{} {} judged, {} {}: {} pass, {} warn, {} fail, {} error",
        report.objects,
        plural(report.objects, "object", "objects"),
        summary.total(),
        plural(summary.total(), "result", "results"),
        summary.pass,
        summary.warn,
        summary.fail,
        summary.error
    )
}

fn policy_section(out: &mut dyn Write, policy: &PolicyAudit, findings: &[&Finding]) -> io::Result<()> {
    let resources = if policy.resources.is_empty() {
        "not audited".to_owned()
    } else {
        policy.resources.join(", ")
    };
    writeln!(out, "{} ({}): {resources}", policy.name, policy.mode.as_str())?;
    for note in &policy.notes {
        writeln!(out, "  note: {note}")?;
    }
    if policy.conditions_not_evaluated {
        writeln!(
            out,
            "  note: matchConditions not evaluated: each result holds only if the policy's conditions match the object"
        )?;
    }
    if policy.resources.is_empty() {
        return Ok(());
    }
    let rows: Vec<[String; 4]> = findings
        .iter()
        .filter(|finding| finding.result != Verdict::Pass)
        .map(|finding| {
            [
                finding
                    .object
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "(cluster)".to_owned()),
                format!("{}/{}", finding.object.kind, finding.object.name),
                finding.result.as_str().to_owned(),
                finding.message.replace(['\n', '\r'], " "),
            ]
        })
        .collect();
    let summary = &policy.summary;
    if rows.is_empty() {
        let total = summary.total();
        return writeln!(
            out,
            "  {}",
            match total {
                0 => "no objects selected".to_owned(),
                1 => "the one object selected passes".to_owned(),
                _ => format!("all {total} objects pass"),
            }
        );
    }
    let header = ["NAMESPACE", "OBJECT", "RESULT", "MESSAGE"].map(str::to_owned);
    let width = |column: usize| {
        rows.iter()
            .chain(std::iter::once(&header))
            .map(|row| row[column].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2)];
    let mut previous_namespace: Option<&str> = None;
    for row in std::iter::once(&header).chain(&rows) {
        // Grouped: a namespace is named on its first row only.
        let namespace = if row[0] != header[0] && previous_namespace == Some(row[0].as_str()) {
            ""
        } else {
            row[0].as_str()
        };
        if row[0] != header[0] {
            previous_namespace = Some(row[0].as_str());
        }
        writeln!(
            out,
            "  {namespace:<w0$}  {:<w1$}  {:<w2$}  {}",
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )?;
    }
    writeln!(
        out,
        "  {} {}: {} pass, {} warn, {} fail, {} error",
        summary.total(),
        plural(summary.total(), "object", "objects"),
        summary.pass,
        summary.warn,
        summary.fail,
        summary.error
    )
}

fn plural(count: usize, one: &'static str, many: &'static str) -> &'static str {
    if count == 1 { one } else { many }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{ObjectRef, Summary};
    use super::*;
    use crate::policy::Mode;

    fn finding(policy: &str, namespace: Option<&str>, name: &str, result: Verdict, message: &str) -> Finding {
        Finding {
            policy: Arc::from(policy),
            object: ObjectRef {
                namespace: namespace.map(str::to_owned),
                kind: "Service".into(),
                name: name.into(),
                api_version: "v1".into(),
                uid: format!("uid-{name}"),
            },
            result,
            message: message.into(),
            patch: None,
        }
    }

    fn report() -> AuditReport {
        let results = vec![
            finding("headless-service", Some("default"), "api", Verdict::Pass, ""),
            finding(
                "headless-service",
                Some("default"),
                "web-headless",
                Verdict::Fail,
                "would set spec.clusterIP to None: delete and re-create the Service",
            ),
            finding(
                "headless-service",
                Some("default"),
                "db-headless",
                Verdict::Error,
                "the policy failed: timed out\nafter 2s",
            ),
            finding(
                "headless-service",
                Some("shop"),
                "cart-headless",
                Verdict::Warn,
                "selector matches no pods",
            ),
            finding("only-passes", Some("default"), "api", Verdict::Pass, ""),
        ];
        let summary_of = |name: &str| Summary::of(results.iter().filter(|finding| &*finding.policy == name));
        AuditReport {
            objects: 4,
            summary: Summary::of(&results),
            policies: vec![
                PolicyAudit {
                    name: Arc::from("headless-service"),
                    mode: Mode::Mutate,
                    resources: vec!["services".into()],
                    notes: vec![],
                    conditions_not_evaluated: true,
                    summary: summary_of("headless-service"),
                },
                PolicyAudit {
                    name: Arc::from("only-passes"),
                    mode: Mode::Validate,
                    resources: vec!["services".into()],
                    notes: vec![],
                    conditions_not_evaluated: false,
                    summary: summary_of("only-passes"),
                },
                PolicyAudit {
                    name: Arc::from("dependents"),
                    mode: Mode::Validate,
                    resources: vec![],
                    notes: vec!["services not audited: its rules select DELETE only".into()],
                    conditions_not_evaluated: false,
                    summary: Summary::default(),
                },
            ],
            results,
        }
    }

    fn render(write: fn(&mut dyn Write, &AuditReport) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        write(&mut out, &report()).expect("writes");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn the_table_groups_by_policy_and_namespace_and_lists_what_needs_attention() {
        assert_eq!(
            render(table),
            "\
headless-service (mutate): services
  note: matchConditions not evaluated: each result holds only if the policy's conditions match the object
  NAMESPACE  OBJECT                 RESULT  MESSAGE
  default    Service/web-headless   fail    would set spec.clusterIP to None: delete and re-create the Service
             Service/db-headless    error   the policy failed: timed out after 2s
  shop       Service/cart-headless  warn    selector matches no pods
  4 objects: 1 pass, 1 warn, 1 fail, 1 error

only-passes (validate): services
  the one object selected passes

dependents (validate): not audited
  note: services not audited: its rules select DELETE only

4 objects judged, 5 results: 2 pass, 1 warn, 1 fail, 1 error
"
        );
    }

    #[test]
    fn json_and_yaml_carry_every_result_under_a_type_header() {
        let json: serde_json::Value = serde_json::from_str(&render(json)).expect("JSON");
        assert_eq!(json["apiVersion"], API_VERSION);
        assert_eq!(json["kind"], KIND);
        assert_eq!(json["results"].as_array().map(Vec::len), Some(5));
        assert_eq!(
            json["summary"],
            serde_json::json!({"pass": 2, "warn": 1, "fail": 1, "error": 1})
        );
        assert_eq!(json["results"][1]["result"], "fail");
        assert_eq!(json["results"][1]["object"]["namespace"], "default");
        assert!(json["results"][0].get("message").is_none(), "a pass has no message");
        assert_eq!(json["policies"][0]["conditionsNotEvaluated"], true);
        assert_eq!(
            json["policies"][2]["notes"][0],
            "services not audited: its rules select DELETE only"
        );

        let yaml: serde_json::Value = serde_saphyr::from_str(&render(yaml)).expect("YAML");
        assert_eq!(yaml, json, "YAML says the same as JSON");
    }
}
