//! Lifecycles: the steps a component runs (§2.2), each a script or an object with `Script`,
//! `RequiresPrivilege`, `Skipif`, `Timeout` and `Setenv`, keys in any case (nucleus ≥ 2.10.2).
//! Also the selection filter that turns the recipe's global `Lifecycle` into the lifecycle of
//! one manifest (`PlatformResolver.filterPlatform` in the nucleus).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use super::document::{boolean, join_user, text, user_map, whole_number, Doc, Fields, Report};

/// A lifecycle step, in the order the nucleus runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StepKind {
    Bootstrap,
    Install,
    Startup,
    Run,
    Shutdown,
    Recover,
    /// Runs when the component is removed (nucleus 2.16+).
    Uninstall,
}

impl StepKind {
    pub const ALL: [StepKind; 7] = [
        Self::Bootstrap,
        Self::Install,
        Self::Startup,
        Self::Run,
        Self::Shutdown,
        Self::Recover,
        Self::Uninstall,
    ];

    /// The key as the reference spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bootstrap => "Bootstrap",
            Self::Install => "Install",
            Self::Startup => "Startup",
            Self::Run => "Run",
            Self::Shutdown => "Shutdown",
            Self::Recover => "Recover",
            Self::Uninstall => "Uninstall",
        }
    }

    /// How long the step may run when the recipe gives no `Timeout` (§2.2); `None`: `Run`
    /// has no limit.
    pub fn default_timeout(self) -> Option<Duration> {
        let seconds = match self {
            Self::Bootstrap | Self::Install | Self::Startup | Self::Uninstall => 120,
            Self::Run => return None,
            Self::Shutdown => 15,
            Self::Recover => 60,
        };
        Some(Duration::from_secs(seconds))
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// When a step is skipped (`Skipif`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SkipIf {
    /// `!onpath …`: skip when the check does *not* hold.
    pub negated: bool,
    pub check: SkipCheck,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SkipCheck {
    /// `onpath EXE`: the executable is on `PATH`.
    OnPath(String),
    /// `exists FILE`: the file exists.
    Exists(String),
}

impl SkipIf {
    /// The nucleus's form: optional `!`, then `onpath` or `exists`, spaces, an argument.
    pub fn parse(text: &str) -> Result<Self, String> {
        let expr = text.trim();
        let (negated, expr) = match expr.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, expr),
        };
        let bad = || {
            format!(
                "{text:?} must be \"onpath <command>\" or \"exists <file>\", optionally after \"!\""
            )
        };
        let (op, arg) = expr.split_once(' ').ok_or_else(bad)?;
        let arg = arg.trim();
        if arg.is_empty() {
            return Err(bad());
        }
        let check = match op {
            "onpath" => SkipCheck::OnPath(arg.to_owned()),
            "exists" => SkipCheck::Exists(arg.to_owned()),
            _ => return Err(bad()),
        };
        Ok(Self { negated, check })
    }
}

impl fmt::Display for SkipIf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negated {
            f.write_str("!")?;
        }
        match &self.check {
            SkipCheck::OnPath(exe) => write!(f, "onpath {exe}"),
            SkipCheck::Exists(file) => write!(f, "exists {file}"),
        }
    }
}

/// One step, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Where the step was written, e.g. `Manifests[0].Lifecycle.Run` or `Lifecycle.linux.Run`;
    /// errors about the step (its variables included) name this path.
    pub source: String,
    pub script: String,
    /// Run as root rather than the component's user.
    pub requires_privilege: bool,
    pub skip_if: Option<SkipIf>,
    /// The step's `Timeout`, or its kind's default; `None`: no limit.
    pub timeout: Option<Duration>,
    /// The step's own `Setenv`, laid over the lifecycle's.
    pub setenv: BTreeMap<String, String>,
}

impl Step {
    /// The step's environment: the lifecycle's `Setenv` with the step's over it.
    pub fn environment(&self, lifecycle: &Lifecycle) -> BTreeMap<String, String> {
        let mut env = lifecycle.setenv.clone();
        env.extend(self.setenv.clone());
        env
    }
}

/// A component's lifecycle, as chosen for one manifest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lifecycle {
    /// Where it was written: `Manifests[0].Lifecycle`, or `Lifecycle` (the global one).
    pub source: String,
    /// `Setenv` for every step.
    pub setenv: BTreeMap<String, String>,
    pub steps: BTreeMap<StepKind, Step>,
}

impl Lifecycle {
    pub fn step(&self, kind: StepKind) -> Option<&Step> {
        self.steps.get(&kind)
    }

    /// No step to run.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    fn empty(source: &str) -> Self {
        Self {
            source: source.to_owned(),
            ..Self::default()
        }
    }
}

/// Which branches of a selection map apply to one manifest (§2.1 `Selections`).
#[derive(Debug)]
pub(crate) struct Selection<'s> {
    /// Every selection name of the recipe, plus `all`: a map holding one of these as a key is
    /// a selection map.
    pub(crate) keywords: &'s BTreeSet<String>,
    /// The manifest's selections, highest priority first; `all` applies after them.
    pub(crate) selectors: &'s [String],
}

pub(crate) const ALL_SELECTION: &str = "all";

/// Follows selection maps down from `doc` to the branch that applies. `None`: a selection map
/// with no branch for this manifest, which drops the value (as the nucleus does).
fn resolve<'a>(
    doc: &'a Doc,
    path: String,
    selection: Option<&Selection<'_>>,
    report: &mut Report,
) -> Option<(&'a Doc, String)> {
    let Some(selection) = selection else {
        return Some((doc, path));
    };
    let (mut doc, mut path) = (doc, path);
    loop {
        let Doc::Map(entries) = doc else {
            return Some((doc, path));
        };
        if !entries.iter().any(|(k, _)| selection.keywords.contains(k)) {
            return Some((doc, path));
        }
        for (key, _) in entries {
            if !selection.keywords.contains(key) {
                report.warn(
                    &join_user(&path, key),
                    "not a selection name, ignored beside the selection names at this level",
                );
            }
        }
        let chosen = selection
            .selectors
            .iter()
            .map(String::as_str)
            .chain([ALL_SELECTION])
            .find_map(|s| entries.iter().find(|(k, v)| k == s && !v.is_null()))?;
        path = join_user(&path, &chosen.0);
        doc = &chosen.1;
    }
}

const LIFECYCLE_FIELDS: &[&str] = &[
    "Setenv",
    "Bootstrap",
    "Install",
    "Startup",
    "Run",
    "Shutdown",
    "Recover",
    "Uninstall",
];

const STEP_FIELDS: &[&str] = &["Script", "RequiresPrivilege", "Skipif", "Timeout", "Setenv"];

/// A manifest's own `Lifecycle`: read as written, no selection applies.
pub(crate) fn parse_manifest_lifecycle(doc: &Doc, path: &str, report: &mut Report) -> Lifecycle {
    parse_lifecycle(doc, path, None, report)
}

/// The global `Lifecycle` as it applies to a manifest with the given selections.
pub(crate) fn select_global_lifecycle(
    doc: &Doc,
    selection: &Selection<'_>,
    report: &mut Report,
) -> Lifecycle {
    const PATH: &str = "Lifecycle";
    match resolve(doc, PATH.to_owned(), Some(selection), report) {
        Some((doc @ Doc::Map(_), path)) => parse_lifecycle(doc, &path, Some(selection), report),
        Some((_, path)) => {
            report.warn(&path, "selected value is not a lifecycle object, ignored");
            Lifecycle::empty(PATH)
        }
        None => Lifecycle::empty(PATH),
    }
}

fn parse_lifecycle(
    doc: &Doc,
    path: &str,
    selection: Option<&Selection<'_>>,
    report: &mut Report,
) -> Lifecycle {
    let mut lifecycle = Lifecycle::empty(path);
    let Some(fields) = Fields::read(doc, path, LIFECYCLE_FIELDS, report) else {
        return lifecycle;
    };
    if let Some((env, env_path)) = field(&fields, "Setenv", selection, report) {
        lifecycle.setenv = parse_setenv(env, &env_path, selection, report);
    }
    for kind in StepKind::ALL {
        if let Some((step, step_path)) = field(&fields, kind.name(), selection, report) {
            if let Some(step) = parse_step(kind, step, step_path, selection, report) {
                lifecycle.steps.insert(kind, step);
            }
        }
    }
    if lifecycle.steps.contains_key(&StepKind::Startup)
        && lifecycle.steps.contains_key(&StepKind::Run)
    {
        report.error(
            path,
            "has both Startup and Run; a component has one or the other",
        );
    }
    lifecycle
}

/// A schema field, selection applied.
fn field<'a>(
    fields: &Fields<'a>,
    name: &str,
    selection: Option<&Selection<'_>>,
    report: &mut Report,
) -> Option<(&'a Doc, String)> {
    let doc = fields.get(name)?;
    let (doc, path) = resolve(doc, fields.path(name), selection, report)?;
    (!doc.is_null()).then_some((doc, path))
}

fn parse_step(
    kind: StepKind,
    doc: &Doc,
    path: String,
    selection: Option<&Selection<'_>>,
    report: &mut Report,
) -> Option<Step> {
    let mut step = Step {
        source: path,
        script: String::new(),
        requires_privilege: false,
        skip_if: None,
        timeout: kind.default_timeout(),
        setenv: BTreeMap::new(),
    };
    if !matches!(doc, Doc::Map(_)) {
        step.script = text(doc, &step.source, report)?;
        return Some(step);
    }
    let fields = Fields::read(doc, &step.source, STEP_FIELDS, report)?;
    let mut ok = true;
    match field(&fields, "Script", selection, report) {
        Some((script, script_path)) => match text(script, &script_path, report) {
            Some(script) => step.script = script,
            None => ok = false,
        },
        None => {
            report.error(
                &fields.path("Script"),
                "required in a step written as an object",
            );
            ok = false;
        }
    }
    if let Some((value, value_path)) = field(&fields, "RequiresPrivilege", selection, report) {
        step.requires_privilege = boolean(value, &value_path, report).unwrap_or(false);
    }
    if let Some((value, value_path)) = field(&fields, "Skipif", selection, report) {
        if let Some(expr) = text(value, &value_path, report) {
            match SkipIf::parse(&expr) {
                Ok(skip) => step.skip_if = Some(skip),
                Err(e) => report.error(&value_path, e),
            }
        }
    }
    if let Some((value, value_path)) = field(&fields, "Timeout", selection, report) {
        match whole_number(value, &value_path, report) {
            Some(0) => report.error(&value_path, "must be at least 1 second"),
            Some(seconds) if seconds > u64::from(u32::MAX) => {
                report.error(&value_path, format!("{seconds} seconds is too long"))
            }
            Some(seconds) => step.timeout = Some(Duration::from_secs(seconds)),
            None => {}
        }
    }
    if let Some((env, env_path)) = field(&fields, "Setenv", selection, report) {
        step.setenv = parse_setenv(env, &env_path, selection, report);
    }
    ok.then_some(step)
}

/// `Setenv`: variable names verbatim; values strings, numbers or booleans (as their text).
fn parse_setenv(
    doc: &Doc,
    path: &str,
    selection: Option<&Selection<'_>>,
    report: &mut Report,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for (name, value) in user_map(doc, path, report).unwrap_or_default() {
        let var_path = join_user(path, name);
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            report.error(&var_path, "is not a valid environment variable name");
            continue;
        }
        let Some((value, value_path)) = resolve(value, var_path, selection, report) else {
            continue;
        };
        let value = match value {
            Doc::Null => Some(String::new()),
            Doc::Seq(_) | Doc::Map(_) => {
                report.error(
                    &value_path,
                    format!("must be a string, number or boolean, got {}", value.kind()),
                );
                None
            }
            scalar => scalar.scalar_text(),
        };
        if let Some(value) = value {
            env.insert(name.to_owned(), value);
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Doc {
        Doc::parse_yaml(s).unwrap()
    }

    fn manifest_lifecycle(s: &str) -> (Lifecycle, Report) {
        let mut report = Report::default();
        let l = parse_manifest_lifecycle(&yaml(s), "Manifests[0].Lifecycle", &mut report);
        (l, report)
    }

    #[test]
    fn steps_are_strings_or_objects_in_any_case() {
        let (l, report) = manifest_lifecycle(
            "setenv: {A: 1, B: true, C: x}\n\
             INSTALL: {script: pip install x, REQUIRESPRIVILEGE: 'true', Timeout: 300.0, skipif: onpath pip}\n\
             run: python3 main.py\n\
             Shutdown: {Script: stop, Setenv: {B: 'false'}}\n",
        );
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(l.setenv["A"], "1");
        assert_eq!(l.setenv["B"], "true");
        let install = l.step(StepKind::Install).unwrap();
        assert_eq!(install.script, "pip install x");
        assert!(install.requires_privilege);
        assert_eq!(install.timeout, Some(Duration::from_secs(300)));
        assert_eq!(
            install.skip_if,
            Some(SkipIf {
                negated: false,
                check: SkipCheck::OnPath("pip".into())
            })
        );
        let run = l.step(StepKind::Run).unwrap();
        assert_eq!(run.source, "Manifests[0].Lifecycle.Run");
        assert_eq!(run.timeout, None, "Run has no default limit");
        let shutdown = l.step(StepKind::Shutdown).unwrap();
        assert_eq!(shutdown.timeout, Some(Duration::from_secs(15)));
        assert_eq!(shutdown.environment(&l)["B"], "false");
        assert_eq!(shutdown.environment(&l)["A"], "1");
    }

    #[test]
    fn default_timeouts_follow_the_reference() {
        let secs = |k: StepKind| k.default_timeout().map(|d| d.as_secs());
        assert_eq!(secs(StepKind::Bootstrap), Some(120));
        assert_eq!(secs(StepKind::Install), Some(120));
        assert_eq!(secs(StepKind::Startup), Some(120));
        assert_eq!(secs(StepKind::Run), None);
        assert_eq!(secs(StepKind::Shutdown), Some(15));
        assert_eq!(secs(StepKind::Recover), Some(60));
    }

    #[test]
    fn bad_steps_are_named_by_path() {
        let (_, report) = manifest_lifecycle(
            "Install: {RequiresPrivilege: maybe, Timeout: 0, Skipif: sometimes x}\n\
             Startup: start\nRun: run\nRecover: [a]\n",
        );
        let problems: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
        for expected in [
            "Manifests[0].Lifecycle.Install.Script: required in a step written as an object",
            "Manifests[0].Lifecycle.Install.RequiresPrivilege: \"maybe\" is not true or false",
            "Manifests[0].Lifecycle.Install.Timeout: must be at least 1 second",
            "Manifests[0].Lifecycle.Recover: must be a string, got a list",
            "Manifests[0].Lifecycle: has both Startup and Run; a component has one or the other",
        ] {
            assert!(
                problems.iter().any(|p| p == expected),
                "{expected}\n{problems:#?}"
            );
        }
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("Manifests[0].Lifecycle.Install.Skipif: ")),
            "{problems:#?}"
        );
    }

    #[test]
    fn skipif_forms() {
        let negated = SkipIf::parse("  ! exists  /opt/x y ").unwrap();
        assert!(negated.negated);
        assert_eq!(negated.check, SkipCheck::Exists("/opt/x y".into()));
        assert_eq!(negated.to_string(), "!exists /opt/x y");
        assert!(SkipIf::parse("onpath").is_err());
        assert!(
            SkipIf::parse("ONPATH git").is_err(),
            "the operator is lowercase"
        );
        assert!(SkipIf::parse("which git").is_err());
    }

    fn global(doc: &str, selections: &[&str], all: &[&str]) -> (Lifecycle, Report) {
        let keywords: BTreeSet<String> = all
            .iter()
            .chain(&[ALL_SELECTION])
            .map(|s| s.to_string())
            .collect();
        let selectors: Vec<String> = selections.iter().map(|s| s.to_string()).collect();
        let selection = Selection {
            keywords: &keywords,
            selectors: &selectors,
        };
        let mut report = Report::default();
        let l = select_global_lifecycle(&yaml(doc), &selection, &mut report);
        (l, report)
    }

    #[test]
    fn selections_pick_branches_at_any_level() {
        let doc = "linux:\n  Run: run-linux\nwindows:\n  Run: run-windows\nall:\n  Run: run-any\n";
        let (l, _) = global(doc, &["windows"], &["linux", "windows"]);
        let run = l.step(StepKind::Run).unwrap();
        assert_eq!(run.script, "run-windows");
        assert_eq!(run.source, "Lifecycle.windows.Run");
        let (l, _) = global(doc, &[], &["linux", "windows"]);
        assert_eq!(l.step(StepKind::Run).unwrap().script, "run-any");

        let doc = "Install:\n  linux: apt-get install x\n  all: echo none\n\
                   Run:\n  Script:\n    linux: ./run.sh\nShutdown:\n  windows: stop.cmd\n";
        let (l, report) = global(doc, &["linux"], &["linux", "windows"]);
        assert_eq!(
            l.step(StepKind::Install).unwrap().script,
            "apt-get install x"
        );
        assert_eq!(l.step(StepKind::Run).unwrap().script, "./run.sh");
        assert!(l.step(StepKind::Shutdown).is_none(), "no branch: dropped");
        assert!(report.problems.is_empty(), "{:?}", report.problems);

        // Selectors apply in the manifest's order, first match wins.
        let (l, _) = global(doc, &["windows", "linux"], &["linux", "windows"]);
        assert_eq!(l.step(StepKind::Shutdown).unwrap().script, "stop.cmd");
        assert_eq!(
            l.step(StepKind::Install).unwrap().script,
            "apt-get install x"
        );
    }

    #[test]
    fn no_branch_at_the_top_leaves_an_empty_lifecycle() {
        let (l, report) = global("linux:\n  Run: x\n", &["windows"], &["linux", "windows"]);
        assert!(l.is_empty());
        assert_eq!(l.source, "Lifecycle");
        assert!(report.problems.is_empty());
    }

    #[test]
    fn keys_beside_selection_names_are_ignored_with_a_warning() {
        let (l, report) = global("all:\n  Run: x\nRun: y\n", &[], &[]);
        assert_eq!(l.step(StepKind::Run).unwrap().script, "x");
        assert_eq!(report.warnings[0].path, "Lifecycle.Run");
    }
}
