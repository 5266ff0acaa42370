//! Lambda component recipes for the benchmarks, shaped as the cloud generates them for an
//! imported function: the configuration, dependencies, artifact and launcher steps every
//! one of them carries, with what differs passed in.

use serde_json::{json, Value};

/// What one Lambda component recipe says of its function.
pub struct LambdaRecipe<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub description: String,
    /// `DefaultConfiguration`: Greengrass's Lambda settings.
    pub configuration: Value,
    /// `AWS_GREENGRASS_LAMBDA_FUNCTION_HANDLER`.
    pub handler: &'a str,
    /// `AWS_GREENGRASS_LAMBDA_RUNTIME`.
    pub runtime: &'a str,
    /// Further `setenv` entries (the runtime's command, for a shipped runtime).
    pub setenv: Value,
}

impl LambdaRecipe<'_> {
    pub fn to_json(&self) -> Value {
        let name = self.name;
        let arn = format!("arn:aws:lambda:us-east-1:000000000000:function:{name}:1");
        let launcher = "{aws.greengrass.LambdaLauncher:artifacts:path}/lambda-launcher";
        let mut setenv = json!({
            "AWS_GREENGRASS_LAMBDA_CONTAINER_MODE": "{configuration:/containerMode}",
            "AWS_GREENGRASS_LAMBDA_ARN": arn,
            "AWS_GREENGRASS_LAMBDA_FUNCTION_HANDLER": self.handler,
            "AWS_GREENGRASS_LAMBDA_ARTIFACT_PATH": "{artifacts:decompressedPath}/lambda-artifact",
            "AWS_GREENGRASS_LAMBDA_CONTAINER_PARAMS": "{configuration:/containerParams}",
            "AWS_GREENGRASS_LAMBDA_STATUS_TIMEOUT_SECONDS": "{configuration:/statusTimeoutInSeconds}",
            "AWS_GREENGRASS_LAMBDA_ENCODING_TYPE": "{configuration:/inputPayloadEncodingType}",
            "AWS_GREENGRASS_LAMBDA_PARAMS": "{configuration:/lambdaExecutionParameters}",
            "AWS_GREENGRASS_LAMBDA_RUNTIME": self.runtime,
        });
        if let (Some(all), Some(extra)) = (setenv.as_object_mut(), self.setenv.as_object()) {
            all.extend(extra.clone());
        }
        let dependency =
            |kind: &str| json!({"VersionRequirement": ">=2.0.0 <3.0.0", "DependencyType": kind});
        json!({
            "RecipeFormatVersion": "2020-01-25",
            "ComponentName": name,
            "ComponentVersion": self.version,
            "ComponentType": "aws.greengrass.lambda",
            "ComponentDescription": self.description,
            "ComponentPublisher": "AWS Lambda",
            "ComponentSource": arn,
            "ComponentConfiguration": {"DefaultConfiguration": self.configuration},
            "ComponentDependencies": {
                "aws.greengrass.LambdaLauncher": dependency("HARD"),
                "aws.greengrass.TokenExchangeService": dependency("HARD"),
                "aws.greengrass.LambdaRuntimes": dependency("SOFT"),
            },
            "Manifests": [{
                "Platform": {},
                "Lifecycle": {},
                "Artifacts": [{
                    "Uri": "greengrass:lambda-artifact.zip",
                    "Unarchive": "ZIP",
                    "Permission": {"Read": "OWNER", "Execute": "NONE"},
                }],
            }],
            "Lifecycle": {
                "startup": {"requiresPrivilege": true, "script": format!("{launcher} start")},
                "setenv": setenv,
                "shutdown": {
                    "requiresPrivilege": true,
                    "script": format!("{launcher} stop; {launcher} clean"),
                },
            },
        })
    }
}

/// Deploys `recipe` on the host at `root` with `lambkin deploy`, its artifact a zip holding
/// `handler.py` (`handler_py`); the recipe and artifact directories are made under `work`,
/// named by `tag`.
pub async fn deploy_python(
    lambkin: &std::path::Path,
    root: &std::path::Path,
    work: &std::path::Path,
    tag: &str,
    recipe: &LambdaRecipe<'_>,
    handler_py: &str,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::io::Write as _;
    let recipes = work.join(format!("recipes-{tag}"));
    let artifacts = work.join(format!("artifacts-{tag}"));
    let dir = artifacts.join(recipe.name).join(recipe.version);
    std::fs::create_dir_all(&recipes)?;
    std::fs::create_dir_all(&dir)?;
    let mut zip = zip::ZipWriter::new(std::fs::File::create(dir.join("lambda-artifact.zip"))?);
    zip.start_file("handler.py", zip::write::SimpleFileOptions::default())?;
    zip.write_all(handler_py.as_bytes())?;
    zip.finish()?;
    std::fs::write(
        recipes.join(format!("{}-{}.json", recipe.name, recipe.version)),
        serde_json::to_vec_pretty(&recipe.to_json())?,
    )?;
    let out = tokio::process::Command::new(lambkin)
        .arg("deploy")
        .arg("--root")
        .arg(root)
        .arg("-r")
        .arg(&recipes)
        .arg("-a")
        .arg(&artifacts)
        .args(["-m", &format!("{}={}", recipe.name, recipe.version)])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("cannot run lambkin deploy")?;
    if !out.status.success() {
        anyhow::bail!(
            "lambkin deploy failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
