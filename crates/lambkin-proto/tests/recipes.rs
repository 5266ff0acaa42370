//! Recipes end to end: golden fixtures (the seed Lambda recipe, the container recipe, one recipe
//! in JSON and YAML), platform selection, variables, validation messages, version ranges.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use lambkin_proto::recipe::{
    select_manifest, ArtifactPermission, ComponentType, ComponentVariables, DependencyType,
    DigestAlgorithm, PermissionLevel, PlatformInfo, Recipe, RecipeError, RecipeFormat, SkipCheck,
    StepKind, Unarchive, VariableError, Variables, Version, VersionRequirement,
};
use proptest::prelude::*;
use serde_json::json;

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/recipes")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load(name: &str) -> Recipe {
    let text = fixture(name);
    let format = RecipeFormat::for_file(Path::new(name), &text);
    Recipe::parse(&text, format).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn problems(text: &str, format: RecipeFormat) -> Vec<String> {
    match Recipe::parse(text, format) {
        Err(RecipeError::Invalid { problems }) => problems.iter().map(|p| p.to_string()).collect(),
        other => panic!("expected an invalid recipe, got {other:?}"),
    }
}

fn linux_amd64() -> PlatformInfo {
    PlatformInfo::new("linux", "amd64")
}

#[test]
fn seed_lambda_recipe() {
    let recipe = load("seed-lambda-recipe.json");
    assert_eq!(recipe.name.as_str(), "example-lambda-python");
    assert_eq!(recipe.version, Version::new(8, 0, 0));
    assert_eq!(recipe.component_type, ComponentType::Lambda);
    assert_eq!(recipe.description.as_deref(), Some("v8"));
    assert_eq!(recipe.publisher.as_deref(), Some("AWS Lambda"));
    assert_eq!(
        recipe.source.as_deref(),
        Some("arn:aws:lambda:ap-northeast-2:123456789012:function:example-lambda-python:8")
    );
    let config = &recipe.default_configuration;
    assert_eq!(config["containerParams"]["memorySize"], json!(16384));
    assert_eq!(config["pubsubTopics"]["2"]["topic"], json!("#"));
    assert_eq!(config["pinned"], json!(true));

    let deps: Vec<(&str, DependencyType)> = recipe
        .dependencies
        .iter()
        .map(|(name, d)| (name.as_str(), d.dependency_type))
        .collect();
    assert_eq!(
        deps,
        [
            ("aws.greengrass.LambdaLauncher", DependencyType::Hard),
            ("aws.greengrass.LambdaRuntimes", DependencyType::Soft),
            ("aws.greengrass.TokenExchangeService", DependencyType::Hard),
        ]
    );
    let launcher = &recipe.dependencies["aws.greengrass.LambdaLauncher"];
    assert!(launcher
        .version_requirement
        .satisfies(&Version::new(2, 3, 7)));
    assert!(!launcher
        .version_requirement
        .satisfies(&Version::new(3, 0, 0)));

    let selected = select_manifest(&recipe, &linux_amd64()).unwrap();
    assert_eq!(selected.index, 0);
    // The manifest's `"Lifecycle": {}` counts as none: the global lifecycle applies.
    assert!(selected.manifest.lifecycle.is_none());
    let lifecycle = selected.lifecycle;
    assert_eq!(lifecycle.source, "Lifecycle");
    let steps: Vec<StepKind> = lifecycle.steps.keys().copied().collect();
    assert_eq!(steps, [StepKind::Startup, StepKind::Shutdown]);
    let startup = lifecycle.step(StepKind::Startup).unwrap();
    assert!(startup.requires_privilege);
    assert_eq!(startup.timeout, Some(Duration::from_secs(120)));
    assert_eq!(startup.source, "Lifecycle.Startup");
    assert_eq!(lifecycle.setenv.len(), 11);
    assert_eq!(
        lifecycle.setenv["AWS_GREENGRASS_LAMBDA_RUNTIME"],
        "python3.8"
    );

    let [artifact] = selected.artifacts else {
        panic!("one artifact expected");
    };
    assert_eq!(artifact.uri.as_str(), "greengrass:lambda-artifact.zip");
    assert_eq!(artifact.uri.file_name(), Some("lambda-artifact.zip"));
    assert_eq!(artifact.unarchive, Unarchive::Zip);
    assert_eq!(artifact.algorithm, DigestAlgorithm::Sha256);
    assert_eq!(
        artifact.digest.as_deref(),
        Some("zxTD8KBV2eciihYJ2aSzJyDkia74Bp0gu66930kYKoI=")
    );
    assert_eq!(artifact.permission, ArtifactPermission::default());
}

/// Paths as the nucleus lays them out, under `/greengrass/v2`.
fn component_vars<'a>(
    paths: &'a BTreeMap<&'a str, [String; 3]>,
    name: &str,
    configuration: &'a serde_json::Value,
) -> ComponentVariables<'a> {
    let [artifacts, decompressed, work] = &paths[name];
    ComponentVariables {
        artifacts_path: artifacts,
        decompressed_path: decompressed,
        work_path: work,
        configuration,
    }
}

fn layout(components: &[(&'static str, &str)]) -> BTreeMap<&'static str, [String; 3]> {
    components
        .iter()
        .map(|(name, version)| {
            (
                *name,
                [
                    format!("/greengrass/v2/packages/artifacts/{name}/{version}"),
                    format!("/greengrass/v2/packages/artifacts-unarchived/{name}/{version}"),
                    format!("/greengrass/v2/work/{name}"),
                ],
            )
        })
        .collect()
}

#[test]
fn seed_lambda_recipe_interpolates() {
    let recipe = load("seed-lambda-recipe.json");
    let lifecycle = select_manifest(&recipe, &linux_amd64()).unwrap().lifecycle;
    let paths = layout(&[
        ("example-lambda-python", "8.0.0"),
        ("aws.greengrass.LambdaLauncher", "2.0.10"),
        ("aws.greengrass.LambdaRuntimes", "2.0.8"),
        ("aws.greengrass.TokenExchangeService", "2.0.3"),
    ]);
    let empty = json!({});
    let vars = Variables {
        kernel_root_path: "/greengrass/v2",
        thing_name: "MyCore",
        component: component_vars(
            &paths,
            "example-lambda-python",
            &recipe.default_configuration,
        ),
        dependencies: recipe
            .dependencies
            .keys()
            .map(|d| (d.as_str(), component_vars(&paths, d.as_str(), &empty)))
            .collect(),
    };
    let done = vars.interpolate_lifecycle(lifecycle).unwrap();
    assert_eq!(
        done.step(StepKind::Startup).unwrap().script,
        "/greengrass/v2/packages/artifacts/aws.greengrass.LambdaLauncher/2.0.10/lambda-launcher start"
    );
    assert_eq!(
        done.step(StepKind::Shutdown).unwrap().script,
        "/greengrass/v2/packages/artifacts/aws.greengrass.LambdaLauncher/2.0.10/lambda-launcher stop; \
         /greengrass/v2/packages/artifacts/aws.greengrass.LambdaLauncher/2.0.10/lambda-launcher clean"
    );
    let env = &done.setenv;
    assert_eq!(
        env["AWS_GREENGRASS_LAMBDA_CONTAINER_MODE"],
        "GreengrassContainer"
    );
    assert_eq!(
        env["AWS_GREENGRASS_LAMBDA_CONTAINER_PARAMS"],
        r#"{"devices":{},"memorySize":16384,"mountROSysfs":false,"volumes":{}}"#
    );
    assert_eq!(env["AWS_GREENGRASS_LAMBDA_STATUS_TIMEOUT_SECONDS"], "60");
    assert_eq!(
        env["AWS_GREENGRASS_LAMBDA_PARAMS"],
        r#"{"EnvironmentVariables":{}}"#
    );
    assert_eq!(
        env["AWS_GREENGRASS_LAMBDA_ARTIFACT_PATH"],
        "/greengrass/v2/packages/artifacts-unarchived/example-lambda-python/8.0.0/lambda-artifact"
    );
    assert_eq!(
        env["AWS_GREENGRASS_LAMBDA_RUNTIME_PATH"],
        "/greengrass/v2/packages/artifacts-unarchived/aws.greengrass.LambdaRuntimes/2.0.8/runtime/"
    );
    assert_eq!(
        env["AWS_GREENGRASS_LAMBDA_EXEC_ARGS"],
        r#"["python3.8","-u","/runtime/python/lambda_runtime.py","--handler=lambda_function.lambda_handler"]"#
    );
}

#[test]
fn container_recipe() {
    let recipe = load("container-component-recipe.yaml");
    assert_eq!(recipe.name.as_str(), "com.container.subscriber");
    assert_eq!(recipe.component_type, ComponentType::Generic);
    assert!(recipe.dependencies.is_empty());
    assert_eq!(
        recipe.default_configuration["accessControl"]["aws.greengrass.ipc.pubsub"]
            ["com.container.subscriber:pubsub:1"]["resources"],
        json!(["local/inference"])
    );
    let selected = recipe.select_manifest(&linux_amd64()).unwrap();
    let run = selected.lifecycle.step(StepKind::Run).unwrap();
    assert_eq!(run.source, "Manifests[0].Lifecycle.Run");
    assert_eq!(run.timeout, None);
    assert!(run
        .script
        .starts_with("docker run --rm --network=host -v $AWS_GG_NUCLEUS"));

    let paths = layout(&[("com.container.subscriber", "1.0.0")]);
    let vars = Variables {
        kernel_root_path: "/greengrass/v2",
        thing_name: "MyCore",
        component: component_vars(
            &paths,
            "com.container.subscriber",
            &recipe.default_configuration,
        ),
        dependencies: BTreeMap::new(),
    };
    let script = vars.interpolate(&run.script, &run.source).unwrap();
    assert!(script.contains("-e MSG_COUNT_LIMIT=2000 "), "{script}");
    assert!(
        script.contains("-v /greengrass/v2/work/com.container.subscriber:/greengrass/v2/work/com.container.subscriber "),
        "{script}"
    );
    assert!(script.contains("$AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"));

    let err = recipe
        .select_manifest(&PlatformInfo::new("windows", "amd64"))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no manifest of com.container.subscriber matches this device (os=windows, architecture=amd64); \
         the manifests ask for: [0] os=linux"
    );
}

#[test]
fn json_and_yaml_forms_parse_to_the_same_recipe() {
    let json = load("multi-platform.json");
    let yaml = load("multi-platform.yaml");
    assert_eq!(json, yaml);
    assert_eq!(json.version.to_string(), "1.2.0-beta.1+build.7");
    assert_eq!(json.default_configuration["Retries"], json!(3.0));
    assert_eq!(json.default_configuration["Nested"]["A"], json!(null));
    let nucleus = &json.dependencies["aws.greengrass.Nucleus"];
    assert_eq!(nucleus.dependency_type, DependencyType::Soft);
    assert_eq!(nucleus.version_requirement.as_str(), ">=2.5.0 <3.0.0");
    let arm = &json.manifests[0];
    assert_eq!(arm.name.as_deref(), Some("linux-arm"));
    assert_eq!(arm.selections, ["arm", "linux"]);
    assert_eq!(arm.artifacts[0].permission.read, PermissionLevel::All);
    assert_eq!(arm.artifacts[1].permission.execute, PermissionLevel::Owner);
    assert_eq!(arm.artifacts[1].permission.read, PermissionLevel::Owner);
}

#[test]
fn schema_keys_match_in_any_case_and_user_keys_stay_verbatim() {
    let canonical = Recipe::parse(
        r#"{"RecipeFormatVersion":"2020-01-25","ComponentName":"a","ComponentVersion":"1.0.0",
            "ComponentConfiguration":{"DefaultConfiguration":{"MixedCase":{"Key":1}}},
            "Manifests":[{"Lifecycle":{"Run":{"Script":"x","Setenv":{"MyVar":"1"}}}}]}"#,
        RecipeFormat::Json,
    )
    .unwrap();
    for spelled in [
        r#"{"recipeformatversion":"2020-01-25","componentname":"a","componentversion":"1.0.0",
            "componentconfiguration":{"defaultconfiguration":{"MixedCase":{"Key":1}}},
            "manifests":[{"lifecycle":{"run":{"script":"x","setenv":{"MyVar":"1"}}}}]}"#,
        r#"{"RECIPEFORMATVERSION":"2020-01-25","COMPONENTNAME":"a","COMPONENTVERSION":"1.0.0",
            "COMPONENTCONFIGURATION":{"DEFAULTCONFIGURATION":{"MixedCase":{"Key":1}}},
            "MANIFESTS":[{"LIFECYCLE":{"RUN":{"SCRIPT":"x","SETENV":{"MyVar":"1"}}}}]}"#,
    ] {
        assert_eq!(
            Recipe::parse(spelled, RecipeFormat::Json).unwrap(),
            canonical
        );
    }
    assert_eq!(
        canonical.default_configuration,
        json!({"MixedCase": {"Key": 1}})
    );
    let run = canonical.manifests[0]
        .effective_lifecycle
        .step(StepKind::Run)
        .unwrap();
    assert_eq!(run.setenv["MyVar"], "1");
}

#[test]
fn unknown_keys_are_ignored_as_the_nucleus_does_and_reported_as_warnings() {
    let (recipe, warnings) = Recipe::parse_with_warnings(
        "RecipeFormatVersion: '2020-01-25'\nComponentName: a\nComponentVersion: 1.0.0\n\
         ComponentFoo: 1\nManifests:\n  - Platform: {OS: linux}\n    Extra: 2\n    Lifecycle:\n      Rn: typo\n",
        RecipeFormat::Yaml,
    )
    .unwrap();
    assert_eq!(recipe.manifests.len(), 1);
    let warnings: Vec<String> = warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        warnings,
        [
            "ComponentFoo: unknown key, ignored",
            "Manifests[0].Extra: unknown key, ignored",
            "Manifests[0].Platform.OS: attribute names are matched as written; the device's is \"os\"",
            "Manifests[0].Lifecycle.Rn: unknown key, ignored",
        ]
    );
    // `OS` is not the device's `os`: this manifest matches no device, as in the nucleus.
    assert!(recipe.select_manifest(&linux_amd64()).is_err());
}

#[test]
fn validation_names_every_problem_with_its_path() {
    let found = problems(&fixture("invalid.yaml"), RecipeFormat::Yaml);
    let expected_exact = [
        r#"RecipeFormatVersion: "2021-01-01" is not supported; the format is 2020-01-25"#,
        r#"ComponentName: component name "bad name!" must be 1-128 characters of letters, digits, '-', '_' and '.'"#,
        r#"ComponentType: "aws.greengrass.docker" is not one of aws.greengrass.generic, aws.greengrass.lambda, aws.greengrass.plugin, aws.greengrass.nucleus"#,
        r#"ComponentDependencies["com.example.Dep"].DependencyType: "MEDIUM" is not one of HARD, SOFT"#,
        r#"ComponentDependencies["bad/name"]: component name "bad/name" must be 1-128 characters of letters, digits, '-', '_' and '.'"#,
        "Manifests[0].Lifecycle.Install.Timeout: 2.5 is not a whole number",
        r#"Manifests[1].Artifacts[0].Unarchive: "TAR" is not one of NONE, ZIP"#,
        r#"Manifests[1].Artifacts[0].Permission.Read: "EVERYONE" is not one of NONE, OWNER, ALL"#,
        r#"Manifests[1].Artifacts[1].Uri: file name "a.tar" is also that of Manifests[1].Artifacts[0]; file names must be unique in a manifest"#,
        "Manifests[1].Artifacts[2].Uri: required",
        "Manifests[0].Lifecycle.Run: unknown variable {foo:bar}",
        "Manifests[0].Lifecycle.Run: variable {com.example.Other:artifacts:path} names com.example.Other, which is not a direct dependency",
    ];
    let expected_prefix = [
        r#"ComponentVersion: "1.0" is not a semantic version"#,
        r#"ComponentDependencies["com.example.Dep"].VersionRequirement: version requirement ">= >= 1" is not valid"#,
        r#"Manifests[1].Platform.architecture: "/(?!arm)/" is not a regular expression"#,
    ];
    for want in expected_exact {
        assert!(
            found.iter().any(|p| p == want),
            "missing {want}\nin {found:#?}"
        );
    }
    for want in expected_prefix {
        assert!(
            found.iter().any(|p| p.starts_with(want)),
            "missing {want}…\nin {found:#?}"
        );
    }
    assert_eq!(
        found.len(),
        expected_exact.len() + expected_prefix.len(),
        "{found:#?}"
    );
}

#[test]
fn required_keys_and_syntax_errors() {
    let found = problems("{}", RecipeFormat::Json);
    assert_eq!(
        found,
        [
            "RecipeFormatVersion: required",
            "ComponentName: required",
            "ComponentVersion: required",
            "Manifests: required: give at least one manifest (one with no Platform matches every device)",
        ]
    );
    let found = problems(
        r#"{"RecipeFormatVersion":"2020-01-25","ComponentName":"a","ComponentVersion":"1.0.0","Manifests":[]}"#,
        RecipeFormat::Json,
    );
    assert_eq!(
        found,
        ["Manifests: is empty: give at least one manifest (one with no Platform matches every device)"]
    );
    assert_eq!(
        problems("[1]", RecipeFormat::Json),
        ["must be an object, got a list"]
    );
    let err = Recipe::parse("{", RecipeFormat::Json).unwrap_err();
    assert!(
        matches!(
            err,
            RecipeError::Syntax {
                format: RecipeFormat::Json,
                ..
            }
        ),
        "{err}"
    );
    let err = Recipe::parse("a: [", RecipeFormat::Yaml).unwrap_err();
    assert!(
        err.to_string().starts_with("recipe is not valid YAML: "),
        "{err}"
    );
}

#[test]
fn formats_by_extension_or_content() {
    let f = |name: &str, text: &str| RecipeFormat::for_file(Path::new(name), text);
    assert_eq!(f("recipe.JSON", "a: 1"), RecipeFormat::Json);
    assert_eq!(f("recipe.yml", "{}"), RecipeFormat::Yaml);
    assert_eq!(f("recipe", "\u{feff}  {\"a\":1}"), RecipeFormat::Json);
    assert_eq!(f("recipe", "---\na: 1"), RecipeFormat::Yaml);
    let yaml = fixture("container-component-recipe.yaml");
    assert_eq!(
        Recipe::parse_detected(&yaml).unwrap(),
        load("container-component-recipe.yaml")
    );
}

fn select_index(recipe: &Recipe, platform: &PlatformInfo) -> Option<usize> {
    select_manifest(recipe, platform).ok().map(|s| s.index)
}

#[test]
fn platform_selection_takes_the_first_match() {
    let recipe = load("multi-platform.json");
    let cases = [
        (PlatformInfo::new("linux", "aarch64"), Some(0)),
        (PlatformInfo::new("linux", "arm"), Some(0)),
        (PlatformInfo::new("linux", "armv7l"), Some(1)),
        (PlatformInfo::new("linux", "amd64"), Some(1)),
        (PlatformInfo::new("windows", "amd64"), Some(2)),
        (PlatformInfo::new("windows", ""), Some(2)),
        (PlatformInfo::new("darwin", "amd64"), Some(3)),
    ];
    for (platform, want) in cases {
        assert_eq!(select_index(&recipe, &platform), want, "{platform}");
    }
}

#[test]
fn selections_choose_the_global_lifecycle_branches() {
    let recipe = load("multi-platform.json");
    let arm = select_manifest(&recipe, &PlatformInfo::new("linux", "aarch64")).unwrap();
    let install = arm.lifecycle.step(StepKind::Install).unwrap();
    assert_eq!(
        install.script,
        "{artifacts:decompressedPath}/app-arm/install.sh"
    );
    assert!(install.requires_privilege);
    assert_eq!(install.timeout, Some(Duration::from_secs(300)));
    assert_eq!(
        install.skip_if.as_ref().map(|s| &s.check),
        Some(&SkipCheck::Exists("{work:path}/installed".into()))
    );
    assert_eq!(
        arm.lifecycle.step(StepKind::Shutdown).unwrap().source,
        "Lifecycle.Shutdown.linux"
    );

    let x86 = select_manifest(&recipe, &linux_amd64()).unwrap();
    assert_eq!(
        x86.lifecycle.step(StepKind::Install).unwrap().script,
        "{artifacts:decompressedPath}/app/install.sh"
    );
    let run = x86.lifecycle.step(StepKind::Run).unwrap();
    assert_eq!(run.setenv["VERBOSE"], "true");
    assert_eq!(run.setenv["LEVEL"], "2");
    assert_eq!(
        run.environment(x86.lifecycle)["PORT"],
        "{configuration:/Port}"
    );

    // A manifest with its own lifecycle ignores the global one entirely.
    let windows = select_manifest(&recipe, &PlatformInfo::new("windows", "amd64")).unwrap();
    assert_eq!(
        windows.lifecycle.steps.keys().copied().collect::<Vec<_>>(),
        [StepKind::Run]
    );
    assert!(windows.lifecycle.setenv.is_empty());
    assert_eq!(windows.lifecycle.source, "Manifests[2].Lifecycle");
}

fn recipe_with_platforms(platforms: &[&str]) -> Recipe {
    let manifests: Vec<String> = platforms
        .iter()
        .map(|p| format!(r#"{{"Platform":{p},"Lifecycle":{{"Run":"x"}}}}"#))
        .collect();
    let text = format!(
        r#"{{"RecipeFormatVersion":"2020-01-25","ComponentName":"a","ComponentVersion":"1.0.0","Manifests":[{}]}}"#,
        manifests.join(",")
    );
    Recipe::parse(&text, RecipeFormat::Json).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn platform_templates() {
    let arm7 = PlatformInfo::new("linux", "arm").with("architecture.detail", "armv7l");
    let cases: [(&str, &PlatformInfo, bool); 12] = [
        ("{}", &arm7, true),
        ("null", &arm7, true),
        (r#"{"os":"*","flavor":"*"}"#, &arm7, true),
        (r#"{"flavor":null}"#, &arm7, true),
        (r#"{"flavor":"debian"}"#, &arm7, false),
        (r#"{"os":"all","architecture":"any"}"#, &arm7, true),
        (r#"{"os":"linux","architecture":"arm"}"#, &arm7, true),
        (r#"{"os":"linux","architecture":"aarch64"}"#, &arm7, false),
        (r#"{"architecture.detail":"/armv[67]l/"}"#, &arm7, true),
        (
            r#"{"architecture.detail":"/armv[67]l/"}"#,
            &linux_amd64(),
            false,
        ),
        (r#"{"os":"/lin.*/"}"#, &arm7, true),
        (r#"{"os":"/lin/"}"#, &arm7, false),
    ];
    for (platform, device, want) in cases {
        let recipe = recipe_with_platforms(&[platform]);
        assert_eq!(
            select_index(&recipe, device).is_some(),
            want,
            "{platform} on {device}"
        );
    }
    let custom = PlatformInfo::new("linux", "amd64").with("flavor", "debian");
    let recipe = recipe_with_platforms(&[r#"{"flavor":"ubuntu"}"#, r#"{"flavor":"debian"}"#, "{}"]);
    assert_eq!(select_index(&recipe, &custom), Some(1));
    assert_eq!(select_index(&recipe, &linux_amd64()), Some(2));
}

#[test]
fn variables_of_the_multi_platform_recipe_interpolate() {
    let recipe = load("multi-platform.yaml");
    let selected = recipe.select_manifest(&linux_amd64()).unwrap();
    let paths = layout(&[
        ("com.example.MultiPlatform", "1.2.0-beta.1+build.7"),
        ("com.example.Library", "1.4.0"),
        ("aws.greengrass.Nucleus", "2.12.0"),
    ]);
    let empty = json!({});
    let vars = Variables {
        kernel_root_path: "/greengrass/v2",
        thing_name: "MyCore",
        component: component_vars(
            &paths,
            "com.example.MultiPlatform",
            &recipe.default_configuration,
        ),
        dependencies: BTreeMap::from([
            (
                "com.example.Library",
                component_vars(&paths, "com.example.Library", &empty),
            ),
            (
                "aws.greengrass.Nucleus",
                component_vars(&paths, "aws.greengrass.Nucleus", &empty),
            ),
        ]),
    };
    let done = vars.interpolate_lifecycle(selected.lifecycle).unwrap();
    let run = done.step(StepKind::Run).unwrap();
    assert_eq!(
        run.script,
        "/greengrass/v2/packages/artifacts/com.example.MultiPlatform/1.2.0-beta.1+build.7/run.sh \
         --lib /greengrass/v2/packages/artifacts/com.example.Library/1.4.0 \
         --root /greengrass/v2 --thing MyCore"
    );
    assert_eq!(run.setenv["MESSAGE"], "hello");
    assert_eq!(done.setenv["PORT"], "8080");
    let install = done.step(StepKind::Install).unwrap();
    assert_eq!(
        install.skip_if.as_ref().map(|s| &s.check),
        Some(&SkipCheck::Exists(
            "/greengrass/v2/work/com.example.MultiPlatform/installed".into()
        ))
    );

    // Without the dependency in the context, the deployment is refused with the place.
    let mut partial = vars.clone();
    partial.dependencies.remove("com.example.Library");
    let errors = partial
        .interpolate_lifecycle(selected.lifecycle)
        .unwrap_err();
    assert_eq!(
        errors,
        [VariableError::NotDirectDependency {
            at: "Lifecycle.Run".into(),
            variable: "{com.example.Library:artifacts:path}".into(),
            component: "com.example.Library".into(),
        }]
    );
}

#[test]
fn variables_in_the_global_lifecycle_are_checked_where_they_apply() {
    let text = r#"{"RecipeFormatVersion":"2020-01-25","ComponentName":"a","ComponentVersion":"1.0.0",
        "Manifests":[{"Platform":{"os":"linux"},"Selections":["linux"]},{"Platform":{}}],
        "Lifecycle":{"Run":{"linux":"{artifacts:path}/ok","all":"{work:pth}"},
                     "Setenv":{"A":"{kernel:rootPath}","B":"${HOME:-/root}"}}}"#;
    assert_eq!(
        problems(text, RecipeFormat::Json),
        ["Lifecycle.Run.all: unknown variable {work:pth}"]
    );
}

// --- Version ranges against a naive reading of npm's rules ---------------------------------

type Triple = (u64, u64, u64);

#[derive(Debug, Clone)]
enum Range {
    Caret(Triple),
    Tilde(Triple),
    MajorX(u64),
    MinorX(u64, u64),
    Compare(&'static str, Triple),
    LessOrEqualMinor(u64, u64),
    GreaterMinor(u64, u64),
    Hyphen(Triple, Triple),
    Between(Triple, Triple),
    Any,
    Or(Box<Range>, Box<Range>),
}

impl Range {
    fn text(&self) -> String {
        let t = |(a, b, c): &Triple| format!("{a}.{b}.{c}");
        match self {
            Self::Caret(v) => format!("^{}", t(v)),
            Self::Tilde(v) => format!("~{}", t(v)),
            Self::MajorX(m) => format!("{m}.x"),
            Self::MinorX(m, n) => format!("{m}.{n}.x"),
            Self::Compare(op, v) => format!("{op}{}", t(v)),
            Self::LessOrEqualMinor(m, n) => format!("<={m}.{n}"),
            Self::GreaterMinor(m, n) => format!(">{m}.{n}"),
            Self::Hyphen(a, b) => format!("{} - {}", t(a), t(b)),
            Self::Between(a, b) => format!(">={} <{}", t(a), t(b)),
            Self::Any => "*".to_owned(),
            Self::Or(a, b) => format!("{} || {}", a.text(), b.text()),
        }
    }

    /// The rules written out directly on (major, minor, patch).
    fn naive(&self, v: Triple) -> bool {
        let (vm, vn, vp) = v;
        match self {
            Self::Caret((m, n, p)) => match (m, n) {
                (0, 0) => v == (0, 0, *p),
                (0, n) => vm == 0 && vn == *n && vp >= *p,
                (m, _) => vm == *m && (vn, vp) >= (*n, *p),
            },
            Self::Tilde((m, n, p)) => vm == *m && vn == *n && vp >= *p,
            Self::MajorX(m) => vm == *m,
            Self::MinorX(m, n) => vm == *m && vn == *n,
            Self::Compare(op, w) => match *op {
                "<" => v < *w,
                "<=" => v <= *w,
                ">" => v > *w,
                ">=" => v >= *w,
                _ => v == *w,
            },
            Self::LessOrEqualMinor(m, n) => (vm, vn) <= (*m, *n),
            Self::GreaterMinor(m, n) => (vm, vn) > (*m, *n),
            Self::Hyphen(a, b) => *a <= v && v <= *b,
            Self::Between(a, b) => *a <= v && v < *b,
            Self::Any => true,
            Self::Or(a, b) => a.naive(v) || b.naive(v),
        }
    }
}

fn triple() -> impl Strategy<Value = Triple> {
    (0u64..4, 0u64..4, 0u64..4)
}

fn range() -> impl Strategy<Value = Range> {
    let leaf = prop_oneof![
        triple().prop_map(Range::Caret),
        triple().prop_map(Range::Tilde),
        (0u64..4).prop_map(Range::MajorX),
        (0u64..4, 0u64..4).prop_map(|(m, n)| Range::MinorX(m, n)),
        (
            prop::sample::select(vec!["<", "<=", ">", ">=", "=", ""]),
            triple()
        )
            .prop_map(|(op, v)| Range::Compare(op, v)),
        (0u64..4, 0u64..4).prop_map(|(m, n)| Range::LessOrEqualMinor(m, n)),
        (0u64..4, 0u64..4).prop_map(|(m, n)| Range::GreaterMinor(m, n)),
        (triple(), triple()).prop_map(|(a, b)| Range::Hyphen(a, b)),
        (triple(), triple()).prop_map(|(a, b)| Range::Between(a, b)),
        Just(Range::Any),
    ];
    leaf.prop_recursive(2, 4, 2, |inner| {
        (inner.clone(), inner).prop_map(|(a, b)| Range::Or(Box::new(a), Box::new(b)))
    })
}

proptest! {
    #[test]
    fn version_ranges_agree_with_the_naive_rules(r in range(), v in (0u64..5, 0u64..5, 0u64..5)) {
        let req = VersionRequirement::parse(&r.text()).unwrap();
        let version = Version::new(v.0, v.1, v.2);
        prop_assert_eq!(req.satisfies(&version), r.naive(v), "{} on {}", r.text(), version);
    }

    #[test]
    fn ranges_without_prereleases_never_admit_one(
        r in range(),
        v in (0u64..5, 0u64..5, 0u64..5),
        pre in prop::sample::select(vec!["0", "alpha", "rc.1", "beta.2.x"]),
    ) {
        let req = VersionRequirement::parse(&r.text()).unwrap();
        let version = Version::parse(&format!("{}.{}.{}-{pre}", v.0, v.1, v.2)).unwrap();
        prop_assert!(!req.satisfies(&version), "{} on {}", r.text(), version);
    }

    #[test]
    fn recipe_parsing_never_panics(text in "\\PC{0,300}") {
        let _ = Recipe::parse(&text, RecipeFormat::Json);
        let _ = Recipe::parse(&text, RecipeFormat::Yaml);
    }

    #[test]
    fn version_requirement_parsing_never_panics(text in "[0-9xX*^~<>=|. v+-]{0,24}") {
        if let Ok(req) = VersionRequirement::parse(&text) {
            prop_assert_eq!(req.as_str(), text.as_str());
            let _ = req.satisfies(&Version::new(1, 2, 3));
        }
    }

    #[test]
    fn lifecycle_scripts_survive_unchanged_when_they_hold_no_variable(script in "[ -z|~]{0,80}") {
        let text = format!(
            "RecipeFormatVersion: '2020-01-25'\nComponentName: a\nComponentVersion: 1.0.0\n\
             Manifests:\n  - Lifecycle:\n      Run: {}\n",
            serde_json::to_string(&script).unwrap()
        );
        let recipe = Recipe::parse(&text, RecipeFormat::Yaml).unwrap();
        let run = recipe.manifests[0].effective_lifecycle.step(StepKind::Run).unwrap();
        prop_assert_eq!(&run.script, &script);
    }
}
