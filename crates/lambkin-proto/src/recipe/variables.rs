//! Recipe variables (§2.3): `{artifacts:path}`, `{artifacts:decompressedPath}`, `{work:path}`,
//! `{kernel:rootPath}`, `{iot:thingName}`, `{configuration:/json/pointer}`, and the same with a
//! direct dependency's name in front (`{aws.greengrass.LambdaLauncher:artifacts:path}`).
//!
//! A reference is `{namespace:key}` or `{component:namespace:key}`, found the way the nucleus's
//! `KernelConfigResolver` finds them. Unlike the nucleus, which logs and leaves an unknown
//! variable in the script, Lambkin refuses the recipe and names the variable and where it is.
//! One exception keeps shell scripts working: after `$` (as in `${VAR:-default}`), text that
//! is no known variable is shell syntax and stays as written.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::lifecycle::{Lifecycle, SkipCheck, SkipIf, Step};

/// A `{…}` reference as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reference<'t> {
    /// The whole `{…}`.
    text: &'t str,
    start: usize,
    component: Option<&'t str>,
    namespace: &'t str,
    key: &'t str,
    /// Written as `${…}`.
    after_dollar: bool,
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

/// Every reference in `text`, left to right, not overlapping.
fn references(text: &str) -> Vec<Reference<'_>> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(offset) = text[from..].find('{') {
        let start = from + offset;
        match reference_at(text, start) {
            Some(r) => {
                from = start + r.text.len();
                found.push(r);
            }
            None => from = start + 1,
        }
    }
    found
}

fn reference_at(text: &str, start: usize) -> Option<Reference<'_>> {
    let body = &text[start + 1..];
    // A component name may hold '-'; a namespace may not.
    let first_len = body
        .find(|c: char| !(is_word(c) || c == '-'))
        .unwrap_or(body.len());
    let first = &body[..first_len];
    let rest = body[first_len..].strip_prefix(':')?;
    let second_len = rest.find([':', '}'])?;
    let second = &rest[..second_len];
    if second.is_empty() {
        return None;
    }
    let after_dollar = text[..start].ends_with('$');
    if rest[second_len..].starts_with('}') {
        if first.is_empty() || !first.chars().all(is_word) {
            return None;
        }
        let len = 1 + first_len + 1 + second_len + 1;
        return Some(Reference {
            text: &text[start..start + len],
            start,
            component: None,
            namespace: first,
            key: second,
            after_dollar,
        });
    }
    if first.is_empty() || !second.chars().all(is_word) {
        return None;
    }
    let third_rest = &rest[second_len + 1..];
    let third_len = third_rest.find([':', '}'])?;
    if third_len == 0 || !third_rest[third_len..].starts_with('}') {
        return None;
    }
    let len = 1 + first_len + 1 + second_len + 1 + third_len + 1;
    Some(Reference {
        text: &text[start..start + len],
        start,
        component: Some(first),
        namespace: second,
        key: &third_rest[..third_len],
        after_dollar,
    })
}

/// What a reference stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meaning<'t> {
    Configuration(&'t str),
    ArtifactsPath,
    DecompressedPath,
    WorkPath,
    KernelRootPath,
    ThingName,
}

/// A reference that cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariableError {
    #[error("{at}: unknown variable {variable}")]
    Unknown { at: String, variable: String },
    #[error("{at}: variable {variable} names {component}, which is not a direct dependency")]
    NotDirectDependency {
        at: String,
        variable: String,
        component: String,
    },
    #[error("{at}: variable {variable} needs a JSON pointer that starts with '/'")]
    BadPointer { at: String, variable: String },
    #[error("{at}: the value of {variable} has a line that would end the quoted here-document it is written in")]
    Unquotable { at: String, variable: String },
}

impl VariableError {
    /// Where the variable was written.
    pub fn at(&self) -> &str {
        match self {
            Self::Unknown { at, .. }
            | Self::NotDirectDependency { at, .. }
            | Self::BadPointer { at, .. }
            | Self::Unquotable { at, .. } => at,
        }
    }

    /// The path and the message without it, for a [`Problem`](super::Problem).
    pub(crate) fn split(&self) -> (String, String) {
        let at = self.at().to_owned();
        let full = self.to_string();
        let message = full
            .strip_prefix(&format!("{at}: "))
            .unwrap_or(&full)
            .to_owned();
        (at, message)
    }
}

/// Reads a reference; `Ok(None)`: shell syntax after `$`, left as written.
fn meaning<'t>(
    r: &Reference<'t>,
    at: &str,
    is_direct: &dyn Fn(&str) -> bool,
) -> Result<Option<Meaning<'t>>, VariableError> {
    let known = match (r.namespace, r.key) {
        ("configuration", pointer) if pointer.starts_with('/') => {
            Some(Meaning::Configuration(pointer))
        }
        ("configuration", _) if !r.after_dollar => {
            return Err(VariableError::BadPointer {
                at: at.to_owned(),
                variable: r.text.to_owned(),
            })
        }
        ("artifacts", "path") => Some(Meaning::ArtifactsPath),
        ("artifacts", "decompressedPath") => Some(Meaning::DecompressedPath),
        ("work", "path") => Some(Meaning::WorkPath),
        ("kernel", "rootPath") => Some(Meaning::KernelRootPath),
        ("iot", "thingName") => Some(Meaning::ThingName),
        _ => None,
    };
    let Some(known) = known else {
        if r.after_dollar {
            return Ok(None);
        }
        return Err(VariableError::Unknown {
            at: at.to_owned(),
            variable: r.text.to_owned(),
        });
    };
    if let Some(component) = r.component {
        if !is_direct(component) {
            return Err(VariableError::NotDirectDependency {
                at: at.to_owned(),
                variable: r.text.to_owned(),
                component: component.to_owned(),
            });
        }
    }
    Ok(Some(known))
}

/// Checks every reference in `text` without resolving it: what a recipe can be refused for
/// before anything is deployed.
pub(crate) fn check(text: &str, at: &str, is_direct: &dyn Fn(&str) -> bool) -> Vec<VariableError> {
    references(text)
        .iter()
        .filter_map(|r| meaning(r, at, is_direct).err())
        .collect()
}

/// Checks every string of a lifecycle that the nucleus interpolates.
pub(crate) fn check_lifecycle(
    lifecycle: &Lifecycle,
    is_direct: &dyn Fn(&str) -> bool,
) -> Vec<VariableError> {
    let mut errors = Vec::new();
    for_each_text(lifecycle, |text, at| {
        errors.extend(check(text, &at, is_direct))
    });
    errors
}

/// The configuration values a lifecycle's privileged steps read, as `(component, pointer)`:
/// `component` is `None` for the lifecycle's own configuration, else the dependency named in
/// `{COMPONENT:configuration:/pointer}`. The lifecycle's `Setenv` counts (every step gets it).
/// These values reach a command that runs as root, so they must come from deployments only.
pub fn privileged_configuration_reads(lifecycle: &Lifecycle) -> Vec<(Option<String>, String)> {
    let mut reads = Vec::new();
    let mut collect = |text: &str| {
        for r in references(text) {
            if r.namespace == "configuration" && r.key.starts_with('/') {
                reads.push((r.component.map(str::to_owned), r.key.to_owned()));
            }
        }
    };
    let privileged: Vec<_> = lifecycle
        .steps
        .values()
        .filter(|s| s.requires_privilege)
        .collect();
    if privileged.is_empty() {
        return reads;
    }
    for value in lifecycle.setenv.values() {
        collect(value);
    }
    for step in privileged {
        collect(&step.script);
        for value in step.setenv.values() {
            collect(value);
        }
        if let Some(skip) = &step.skip_if {
            collect(&skip.to_string());
        }
    }
    reads.sort();
    reads.dedup();
    reads
}

/// Calls `f` with every interpolated string of a lifecycle and where it is.
fn for_each_text(lifecycle: &Lifecycle, mut f: impl FnMut(&str, String)) {
    let setenv_path = format!("{}.Setenv", lifecycle.source);
    for (name, value) in &lifecycle.setenv {
        f(value, format!("{setenv_path}.{name}"));
    }
    for step in lifecycle.steps.values() {
        f(&step.script, step.source.clone());
        for (name, value) in &step.setenv {
            f(value, format!("{}.Setenv.{name}", step.source));
        }
        if let Some(skip) = &step.skip_if {
            f(&skip.to_string(), format!("{}.Skipif", step.source));
        }
    }
}

/// What the variables of one component stand for on this device.
#[derive(Debug, Clone, Copy)]
pub struct ComponentVariables<'a> {
    /// `{artifacts:path}`: `<root>/packages/artifacts/<name>/<version>`.
    pub artifacts_path: &'a str,
    /// `{artifacts:decompressedPath}`: `<root>/packages/artifacts-unarchived/<name>/<version>`.
    pub decompressed_path: &'a str,
    /// `{work:path}`: `<root>/work/<name>`.
    pub work_path: &'a str,
    /// The component's configuration after the deployment's merge, for
    /// `{configuration:/pointer}`.
    pub configuration: &'a serde_json::Value,
}

/// Everything a component's lifecycle may refer to.
#[derive(Debug, Clone)]
pub struct Variables<'a> {
    /// `{kernel:rootPath}`.
    pub kernel_root_path: &'a str,
    /// `{iot:thingName}`.
    pub thing_name: &'a str,
    pub component: ComponentVariables<'a>,
    /// The component's direct dependencies, by name; `{NAME:…}` may name only these.
    pub dependencies: BTreeMap<&'a str, ComponentVariables<'a>>,
}

impl Variables<'_> {
    /// `text` with every variable replaced. `at` names where the text is, for the error.
    /// A `{configuration:/p}` whose value is missing stays as written (§2.3).
    pub fn interpolate(&self, text: &str, at: &str) -> Result<String, VariableError> {
        self.interpolate_in(text, at, false)
    }

    /// A `sh -c` script with every variable replaced by its value quoted for where it
    /// stands, so that a value is always literal text to the shell (`recipe::shell`).
    pub fn interpolate_script(&self, script: &str, at: &str) -> Result<String, VariableError> {
        self.interpolate_in(script, at, true)
    }

    fn interpolate_in(&self, text: &str, at: &str, script: bool) -> Result<String, VariableError> {
        let is_direct = |name: &str| self.dependencies.contains_key(name);
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        let found = references(text);
        let places = if script {
            // The script read with every reference masked, so a reference's own text (a
            // pointer may hold a quote) never changes where the next one stands.
            let mut masked = text.as_bytes().to_vec();
            for r in &found {
                masked[r.start..r.start + r.text.len()].fill(b'x');
            }
            let masked = String::from_utf8_lossy(&masked).into_owned();
            let offsets: Vec<usize> = found.iter().map(|r| r.start).collect();
            super::shell::places(&masked, &offsets)
        } else {
            Vec::new()
        };
        for (n, r) in found.into_iter().enumerate() {
            let Some(meaning) = meaning(&r, at, &is_direct)? else {
                continue;
            };
            let vars = match r.component.and_then(|c| self.dependencies.get(c)) {
                Some(dependency) => dependency,
                None => &self.component,
            };
            let value = match meaning {
                Meaning::Configuration(pointer) => vars.configuration.pointer(pointer).map(as_text),
                Meaning::ArtifactsPath => Some(vars.artifacts_path.to_owned()),
                Meaning::DecompressedPath => Some(vars.decompressed_path.to_owned()),
                Meaning::WorkPath => Some(vars.work_path.to_owned()),
                Meaning::KernelRootPath => Some(self.kernel_root_path.to_owned()),
                Meaning::ThingName => Some(self.thing_name.to_owned()),
            };
            if let Some(mut value) = value {
                if let Some(place) = places.get(n) {
                    value = super::shell::quote(&value, place).ok_or_else(|| {
                        VariableError::Unquotable {
                            at: at.to_owned(),
                            variable: r.text.to_owned(),
                        }
                    })?;
                }
                out.push_str(&text[copied..r.start]);
                out.push_str(&value);
                copied = r.start + r.text.len();
            }
        }
        out.push_str(&text[copied..]);
        Ok(out)
    }

    /// The lifecycle with every script, `Setenv` value and `Skipif` interpolated; every
    /// unresolvable variable is named at once.
    pub fn interpolate_lifecycle(
        &self,
        lifecycle: &Lifecycle,
    ) -> Result<Lifecycle, Vec<VariableError>> {
        let mut errors = Vec::new();
        let mut run =
            |text: &str, at: String, script: bool| match self.interpolate_in(text, &at, script) {
                Ok(done) => done,
                Err(e) => {
                    errors.push(e);
                    text.to_owned()
                }
            };
        let setenv = lifecycle
            .setenv
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    run(v, format!("{}.Setenv.{k}", lifecycle.source), false),
                )
            })
            .collect();
        let mut steps = BTreeMap::new();
        for (kind, step) in &lifecycle.steps {
            let skip_if = step.skip_if.as_ref().map(|skip| {
                let at = format!("{}.Skipif", step.source);
                let check = match &skip.check {
                    SkipCheck::OnPath(exe) => SkipCheck::OnPath(run(exe, at, false)),
                    SkipCheck::Exists(file) => SkipCheck::Exists(run(file, at, false)),
                };
                SkipIf {
                    negated: skip.negated,
                    check,
                }
            });
            let interpolated = Step {
                source: step.source.clone(),
                script: run(&step.script, step.source.clone(), true),
                requires_privilege: step.requires_privilege,
                skip_if,
                timeout: step.timeout,
                setenv: step
                    .setenv
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            run(v, format!("{}.Setenv.{k}", step.source), false),
                        )
                    })
                    .collect(),
            };
            steps.insert(*kind, interpolated);
        }
        if errors.is_empty() {
            Ok(Lifecycle {
                source: lifecycle.source.clone(),
                setenv,
                steps,
            })
        } else {
            Err(errors)
        }
    }
}

/// A configuration value as the nucleus writes it into a script: a scalar as its text, an
/// object or list as compact JSON with keys sorted.
fn as_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => {
            let mut out = String::new();
            write_sorted(other, &mut out);
            out
        }
    }
}

fn write_sorted(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{}:", Value::String(key.clone()));
                write_sorted(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(item, out);
            }
            out.push(']');
        }
        scalar => {
            let _ = write!(out, "{scalar}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refs(text: &str) -> Vec<(Option<&str>, &str, &str)> {
        references(text)
            .into_iter()
            .map(|r| (r.component, r.namespace, r.key))
            .collect()
    }

    #[test]
    fn finds_references_as_the_nucleus_does() {
        assert_eq!(
            refs("{artifacts:path}/x {configuration:/a/b c} {aws.greengrass.Foo-x:work:path}"),
            [
                (None, "artifacts", "path"),
                (None, "configuration", "/a/b c"),
                (Some("aws.greengrass.Foo-x"), "work", "path"),
            ]
        );
        // Braces that are no reference: shell blocks, JSON, awk.
        for text in [
            "${HOME}",
            "f() { echo x; }",
            r#"echo '{"a": 1}'"#,
            "awk '{print $1}'",
            "{a:b:c:d}",
            "{:x}",
            "{a:}",
        ] {
            assert!(refs(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn check_names_unknown_and_indirect_variables() {
        let direct = |name: &str| name == "dep";
        let errors = check(
            "{foo:bar} {artifacts:nope} {dep:artifacts:path} {other:work:path} {configuration:x}",
            "Manifests[0].Lifecycle.Run",
            &direct,
        );
        let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            messages,
            [
                "Manifests[0].Lifecycle.Run: unknown variable {foo:bar}",
                "Manifests[0].Lifecycle.Run: unknown variable {artifacts:nope}",
                "Manifests[0].Lifecycle.Run: variable {other:work:path} names other, which is not a direct dependency",
                "Manifests[0].Lifecycle.Run: variable {configuration:x} needs a JSON pointer that starts with '/'",
            ]
        );
    }

    #[test]
    fn shell_parameter_expansion_is_left_alone() {
        let none = |_: &str| false;
        for text in ["${VAR:-default}", "${VAR:=x}", "${VAR:0:2}", "${X:?unset}"] {
            assert!(check(text, "Run", &none).is_empty(), "{text}");
        }
        // A real variable after `$` is still a variable.
        assert_eq!(check("${foo:work:path}", "Run", &none).len(), 1);
    }

    fn vars<'a>(config: &'a serde_json::Value, dep_config: &'a serde_json::Value) -> Variables<'a> {
        Variables {
            kernel_root_path: "/gg",
            thing_name: "thing-1",
            component: ComponentVariables {
                artifacts_path: "/gg/packages/artifacts/me/1.0.0",
                decompressed_path: "/gg/packages/artifacts-unarchived/me/1.0.0",
                work_path: "/gg/work/me",
                configuration: config,
            },
            dependencies: BTreeMap::from([(
                "dep",
                ComponentVariables {
                    artifacts_path: "/gg/packages/artifacts/dep/2.0.0",
                    decompressed_path: "/gg/packages/artifacts-unarchived/dep/2.0.0",
                    work_path: "/gg/work/dep",
                    configuration: dep_config,
                },
            )]),
        }
    }

    #[test]
    fn interpolates_every_variable() {
        let config = json!({"mode": "x", "n": 3.0, "on": true, "obj": {"b": 1, "a": [1, "2"]}});
        let dep_config = json!({"port": 8080});
        let v = vars(&config, &dep_config);
        let out = v
            .interpolate(
                "{artifacts:path} {artifacts:decompressedPath} {work:path} {kernel:rootPath} \
                 {iot:thingName} {configuration:/mode} {configuration:/n} {configuration:/on} \
                 {configuration:/obj} {dep:artifacts:path} {dep:configuration:/port} \
                 {configuration:/missing} ${VAR:-d}",
                "Run",
            )
            .unwrap();
        assert_eq!(
            out,
            "/gg/packages/artifacts/me/1.0.0 /gg/packages/artifacts-unarchived/me/1.0.0 \
             /gg/work/me /gg thing-1 x 3.0 true {\"a\":[1,\"2\"],\"b\":1} \
             /gg/packages/artifacts/dep/2.0.0 8080 {configuration:/missing} ${VAR:-d}"
        );
    }

    #[test]
    fn a_script_gets_each_value_quoted_for_where_it_stands() {
        let config = json!({"name": "x; reboot", "port": 8080, "obj": {"a": "it's"}});
        let v = vars(&config, &config);
        let script = v
            .interpolate_script(
                "run {configuration:/name} '{configuration:/name}' \"{configuration:/name}\" \
                 --port {configuration:/port} {configuration:/obj} {artifacts:path}/main.py",
                "Run",
            )
            .unwrap();
        assert_eq!(
            script,
            "run 'x; reboot' 'x; reboot' \"x; reboot\" --port 8080 '{\"a\":\"it'\\''s\"}' \
             /gg/packages/artifacts/me/1.0.0/main.py"
        );
        // Only scripts are shell: Setenv values and plain text keep the value as it is.
        assert_eq!(
            v.interpolate("{configuration:/name}", "Setenv.X").unwrap(),
            "x; reboot"
        );
    }

    #[test]
    fn interpolation_refuses_what_it_cannot_resolve() {
        let config = json!({});
        let v = vars(&config, &config);
        assert_eq!(
            v.interpolate("x {foo:bar}", "Manifests[0].Lifecycle.Run")
                .unwrap_err()
                .to_string(),
            "Manifests[0].Lifecycle.Run: unknown variable {foo:bar}"
        );
        assert!(matches!(
            v.interpolate("{nodep:artifacts:path}", "Run"),
            Err(VariableError::NotDirectDependency { component, .. }) if component == "nodep"
        ));
    }
}
