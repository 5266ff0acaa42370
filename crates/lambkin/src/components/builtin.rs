//! Components Lambkin provides itself, so recipes that depend on them deploy unchanged: the
//! nucleus, its CLI, the Lambda launcher, runtimes and manager, and the token exchange service.
//! Each reports one version that satisfies the `>=2.0.0 <3.0.0` requirements the cloud
//! generates, and is always RUNNING.

use lambkin_proto::recipe::version::Version;

/// The version every built-in component reports.
pub const VERSION: &str = "2.15.0";

pub const NAMES: &[&str] = &[
    "aws.greengrass.Nucleus",
    "aws.greengrass.Cli",
    "aws.greengrass.LambdaLauncher",
    "aws.greengrass.LambdaRuntimes",
    "aws.greengrass.LambdaManager",
    "aws.greengrass.TokenExchangeService",
];

/// The built-in component's version, or `None` if `name` is not built in.
pub fn version(name: &str) -> Option<Version> {
    NAMES
        .contains(&name)
        .then(|| Version::parse(VERSION).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_satisfy_what_lambda_recipes_require() {
        let req =
            lambkin_proto::recipe::version::VersionRequirement::parse(">=2.0.0 <3.0.0").unwrap();
        for name in NAMES {
            assert!(req.satisfies(&version(name).unwrap()), "{name}");
        }
        assert_eq!(version("com.example.Other"), None);
    }
}
