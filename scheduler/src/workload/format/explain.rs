//! serde's errors in the file's own words: the line, the model by name and index, and the key
//! ("line 7, model `resnet_0` (models[0]), key `gap`: …"), rather than a path
//! (`models[0].gap`) and serde's vocabulary ("field").

use serde_path_to_error::Segment as PathSegment;

use super::values::FRAMEWORK_FORM;
use crate::workload::spec::GAP_FORM;
use crate::workload::WorkloadError;

pub(super) fn invalid(line: Option<usize>, context: impl Into<String>, problem: impl Into<String>) -> WorkloadError {
    WorkloadError::Invalid {
        line,
        context: context.into(),
        problem: problem.into(),
    }
}

/// "model `resnet_0` (models[0])", or "models[0]" while the name is unknown.
pub(super) fn model_context(name: Option<&str>, index: usize) -> String {
    match name {
        Some(name) => format!("model `{name}` (models[{index}])"),
        None => format!("models[{index}]"),
    }
}

/// Turns serde's error (a path, a message and a position) into one that names the line, the
/// model by name and index, and the key.
pub(super) fn explain(e: serde_path_to_error::Error<yaml_serde::Error>, text: &str) -> WorkloadError {
    // Not YAML at all: say so rather than blame a key. Only read again on this error path.
    let doc = match yaml_serde::from_str::<yaml_serde::Value>(text) {
        Ok(doc) => doc,
        Err(syntax) => return WorkloadError::Yaml(syntax.to_string()),
    };
    let mut path: Vec<PathSegment> = e.path().iter().cloned().collect();
    let full_path = e.path().to_string();
    let err = e.into_inner();
    let message = bare_message(&err, &full_path);
    // serde names an unknown key in its message; the context is the mapping that holds it.
    if message.starts_with("unknown field") && matches!(path.last(), Some(PathSegment::Map { .. })) {
        path.pop();
    }
    invalid(
        err.location().map(|l| l.line()),
        context(&path, &model_names(&doc)),
        reword(&message),
    )
}

/// yaml_serde's message without its own decorations, which [`explain`] says better: the
/// `path: ` prefix (its path stops at the mapping for key errors, a prefix of ours) and the
/// ` at line L column C` suffix.
fn bare_message(err: &yaml_serde::Error, path: &str) -> String {
    let mut message = err.to_string();
    if let Some(l) = err.location() {
        let at = format!(" at line {} column {}", l.line(), l.column());
        if let Some(stripped) = message.strip_suffix(&at) {
            message.truncate(stripped.len());
        }
    }
    match message.split_once(": ") {
        Some((head, rest)) if !head.is_empty() && path.starts_with(head) => rest.to_string(),
        _ => message,
    }
}

/// serde's "field" in the file's own word, "key", with what a missing key should hold.
fn reword(message: &str) -> String {
    if let Some(key) = message
        .strip_prefix("missing field `")
        .and_then(|k| k.strip_suffix('`'))
    {
        let holds = match key {
            "seed" => "an integer",
            "gpus" => "the number of GPUs",
            "models" => "a non-empty list of models",
            "model" => "the name",
            "framework" => FRAMEWORK_FORM,
            "slo" => "the latency SLO in milliseconds",
            "gap" => GAP_FORM,
            "bench" => "a non-empty list of rps numbers or {duration, rps}",
            "duration" => "seconds",
            "rps" => "requests per second",
            _ => return format!("missing required key `{key}`"),
        };
        return format!("missing required key `{key}` ({holds})");
    }
    if let Some(rest) = message.strip_prefix("unknown field ") {
        return format!("unknown key {}", rest.replacen(", expected", "; expected", 1));
    }
    message.to_string()
}

/// "workload", "key `gpus`", "model `resnet_0` (models[0]), key `bench`, item 2", …
fn context(path: &[PathSegment], names: &[Option<String>]) -> String {
    let mut parts = Vec::new();
    let mut rest = path;
    if let [PathSegment::Map { key }, PathSegment::Seq { index }, tail @ ..] = path {
        if key == "models" {
            parts.push(model_context(names.get(*index).and_then(Option::as_deref), *index));
            rest = tail;
        }
    }
    for segment in rest {
        match segment {
            PathSegment::Map { key } => parts.push(format!("key `{key}`")),
            PathSegment::Seq { index } => parts.push(format!("item {index}")),
            PathSegment::Enum { variant } => parts.push(format!("`{variant}`")),
            PathSegment::Unknown => {}
        }
    }
    if parts.is_empty() {
        "workload".to_string()
    } else {
        parts.join(", ")
    }
}

/// The models' names where the document has them, to name the model an error is in.
fn model_names(doc: &yaml_serde::Value) -> Vec<Option<String>> {
    let Some(models) = doc.get("models").and_then(yaml_serde::Value::as_sequence) else {
        return Vec::new();
    };
    (models.iter())
        .map(|m| m.get("model").and_then(yaml_serde::Value::as_str))
        .map(|name| name.filter(|n| !n.trim().is_empty()).map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::workload::testing::{err_of, with_model_lines, GOOD_MODEL};
    use crate::workload::Workload;

    #[test]
    fn bad_inputs_name_the_model_and_key() {
        let bench = "  bench: [{duration: 1, rps: 10}]\n";
        let e = err_of(&with_model_lines(&format!("{bench}  slo_ms: 5\n")));
        assert!(
            e.contains("model `resnet_0` (models[0])") && e.contains("unknown key `slo_ms`"),
            "{e}"
        );

        let e = err_of(&with_model_lines("  bench: [{duration: 1, rps: 10}]\n").replace("gap: exp", "gap: gamma:x"));
        assert!(
            e.contains("model `resnet_0` (models[0]), key `gap`") && e.contains("gamma:<shape>"),
            "{e}"
        );
        let e = err_of(&with_model_lines(bench).replace("gap: exp", "gap: poisson"));
        assert!(e.contains("key `gap`") && e.contains("`poisson`"), "{e}");

        let e = err_of(&with_model_lines(bench).replace("sleep#1082,5204,0,0", "tensorflow#resnet50"));
        assert!(
            e.contains("model `resnet_0` (models[0]), key `framework`") && e.contains("sleep#slope_us"),
            "{e}"
        );

        let e = err_of(&with_model_lines(""));
        assert!(
            e.contains("model `resnet_0` (models[0])") && e.contains("missing required key `bench`"),
            "{e}"
        );

        let e = err_of(&with_model_lines("  bench: [10]\n"));
        assert!(
            e.contains("key `bench`, item 0") && e.contains("segment_duration"),
            "{e}"
        );

        let e = err_of(&with_model_lines("  bench: [{duration: 1, rate: 10}]\n"));
        assert!(
            e.contains("key `bench`, item 0") && e.contains("unknown key `rate`"),
            "{e}"
        );

        let e = err_of(&format!("{}typo: 1\n", with_model_lines(bench)));
        assert!(e.contains("unknown key `typo`"), "{e}");
    }

    #[test]
    fn errors_name_the_line_of_the_bad_value() {
        // Lines: 1 seed, 2 gpus, 3 models, 4-7 the model, 8 bench, 9 the extra line.
        let bench = "  bench: [{duration: 1, rps: 10}]\n";
        let cases = [
            (
                with_model_lines(bench).replace("gap: exp", "gap: poisson"),
                7,
                "key `gap`",
            ),
            (
                with_model_lines(&format!("{bench}  slo_ms: 5\n")),
                9,
                "unknown key `slo_ms`",
            ),
            (with_model_lines("  bench: []\n"), 8, "key `bench`: the list is empty"),
            (
                with_model_lines("  bench:\n  - {duration: 1, rps: 2}\n  - {duration: 0, rps: 2}\n"),
                10,
                "key `bench`, item 1, key `duration`: `0` is not a positive number of seconds",
            ),
            (with_model_lines(bench).replace("slo: 100", "slo: fast"), 6, "key `slo`"),
            (
                with_model_lines(bench).replace("gpus: 2", "gpus: 0"),
                2,
                "key `gpus`: `0`",
            ),
        ];
        for (yaml, line, what) in cases {
            let e = err_of(&yaml);
            assert!(e.starts_with(&format!("line {line}, ")) && e.contains(what), "{e}");
        }
        // Not YAML at all: the parser's own message, with its position.
        let e = err_of("seed: [1\n");
        assert!(e.contains("not valid YAML") && e.contains("line 2 column 1"), "{e}");
    }

    #[test]
    fn every_problem_says_what_is_expected() {
        let bench = "  bench: [{duration: 1, rps: 10}]\n";
        let cases = [
            (
                with_model_lines(bench).replace("seed: 1\n", ""),
                "workload: missing required key `seed` (an integer)",
            ),
            (
                "seed: 1\ngpus: 2\nmodels: []\n".to_string(),
                "key `models`: the list is empty",
            ),
            (
                "42\n".into(),
                "expected a mapping with keys `seed`, `gpus` and `models`",
            ),
            (
                "seed: 1.5\ngpus: 1\nmodels: []\n".into(),
                "key `seed`: invalid type: floating point `1.5`, expected a non-negative integer",
            ),
            (
                with_model_lines(bench).replace("gpus: 2", "gpus: two"),
                "expected a positive integer",
            ),
            (
                with_model_lines(bench).replace("model: resnet_0", "model: ' '"),
                "models[0], key `model`: ` ` is not a non-empty name",
            ),
            (
                with_model_lines(bench).replace("  slo: 100\n", ""),
                "model `resnet_0` (models[0]): missing required key `slo` (the latency SLO in milliseconds)",
            ),
            (
                with_model_lines("  segment_duration: 1\n  bench: [-1]\n"),
                "key `bench`, item 0: `-1` is not a non-negative number of requests per second",
            ),
            (
                with_model_lines("  bench: [[1]]\n"),
                "expected an rps number or a `{duration, rps}` mapping",
            ),
            (
                format!("{}{GOOD_MODEL}{bench}", with_model_lines(bench)),
                "model `resnet_0` (models[1]): the name is already used by models[0]",
            ),
            (
                "seed: 1\nseed: 2\n".into(),
                "not valid YAML: duplicate entry with key \"seed\"",
            ),
        ];
        for (yaml, want) in cases {
            let e = err_of(&yaml);
            assert!(e.contains(want), "{e}\n  wanted: {want}");
        }
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("baton-workload-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.yaml");
        std::fs::write(&path, with_model_lines("  bench: []\n")).unwrap();
        let e = Workload::load(&path).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            e.contains("bad.yaml") && e.contains("key `bench`") && e.contains("empty"),
            "{e}"
        );
    }
}
