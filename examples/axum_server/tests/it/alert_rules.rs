//! The alerting rules shipped in `deploy/prometheus/`: valid for Prometheus, each alert
//! firing and staying quiet as its unit tests say (Debian's promtool), each naming a
//! runbook section that exists, each reading metrics the service writes.

use std::path::PathBuf;
use std::process::Command;

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs promtool with `args` in `deploy/prometheus`; its output, or a panic with it.
fn promtool(args: &[&str]) -> String {
    let promtool = std::env::var("PROMTOOL")
        .ok()
        .filter(|path| !path.is_empty())
        .unwrap_or_else(|| "promtool".into());
    let output = Command::new(&promtool)
        .args(args)
        .current_dir(repository().join("deploy/prometheus"))
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "{promtool}: {error}; install it with `scripts/services.sh install` (Debian's \
                 prometheus package), or run the suite with scripts/test.sh"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn the_rules_are_valid_and_pass_their_unit_tests() {
    let checked = promtool(&["check", "rules", "firstcome-rules.yml"]);
    assert!(checked.contains("SUCCESS: 9 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "firstcome-rules.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn every_runbook_is_a_section_and_every_metric_is_one_the_service_writes() {
    let rules = std::fs::read_to_string(repository().join("deploy/prometheus/firstcome-rules.yml"))
        .expect("the rules");
    let operations =
        std::fs::read_to_string(repository().join("docs/operations.md")).expect("the runbooks");
    let anchors: Vec<String> = operations
        .lines()
        .filter_map(|line| {
            line.strip_prefix("## ")
                .or_else(|| line.strip_prefix("### "))
        })
        .map(anchor)
        .collect();
    let runbooks: Vec<&str> = rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("runbook: docs/operations.md#"))
        .collect();
    assert_eq!(runbooks.len(), 9, "one runbook per alert");
    for runbook in runbooks {
        assert!(
            anchors.iter().any(|anchor| anchor == runbook),
            "no section of docs/operations.md has the anchor {runbook}"
        );
    }
    let written = include_str!("../../src/metrics.rs");
    let mut read = 0;
    for (at, _) in rules.match_indices("firstcome_") {
        let name: String = rules[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if name == "firstcome_" || name.ends_with("_rules") {
            continue;
        }
        read += 1;
        assert!(
            written.contains(&format!("# TYPE {name} ")),
            "the rules read {name}, which src/metrics.rs does not write"
        );
    }
    assert!(read >= 8, "{read} metric names read");
}

/// The anchor a Markdown renderer gives a heading: lower case, spaces to hyphens,
/// punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}
