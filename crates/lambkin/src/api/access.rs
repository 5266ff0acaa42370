//! Components as callers of the Lambda API.
//!
//! A component may call the host's Lambda API only as its `accessControl` grants, under the
//! destination `lambkin.lambda` (IAM's action names as operations, function names or `*` as
//! resources):
//!
//! ```json
//! {"accessControl": {"lambkin.lambda": {"invoke-resize": {
//!     "operations": ["lambda:InvokeFunction"], "resources": ["resize"]}}}}
//! ```
//!
//! A component with such a policy gets a key of its own when it starts (a fresh one at every
//! start, forgotten when it stops or leaves), written as the profile `lambkin` of an AWS config
//! file only its user can read, with the API's address as that profile's Lambda endpoint:
//! `AWS_CONFIG_FILE` names it, so an unmodified SDK signs with
//! `boto3.Session(profile_name="lambkin").client("lambda")`. The file has no `default`
//! profile, so the SDK's default chain still ends at the token exchange service's cloud
//! credentials, and clients made without the profile still go to the cloud.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use lambkin_proto::ipc::authorization::LAMBDA_API;
use lambkin_proto::ipc::{AccessControl, Matching};
use lambkin_proto::lambda::error::ApiError;
use lambkin_proto::lambda::invoke::FunctionRef;

use super::auth::{Keys, Principal};
use super::{ApiState, Operation};
use crate::keys::{self, AccessKey};

/// The profile a component's key is filed under in its config file.
pub const PROFILE: &str = "lambkin";
/// The config file's name in the component's work directory.
pub const CONFIG_FILE: &str = ".lambkin-aws-config";

/// Decides whether `principal` may run `operation`.
pub fn authorize(
    principal: &Principal,
    operation: &Operation,
    state: &ApiState,
) -> Result<(), ApiError> {
    authorize_action(principal, operation.action(), operation.function(), state)
}

/// Decides whether `principal` may perform `action` on `function` (a name or an ARN; `None`:
/// on no one function).
pub fn authorize_action(
    principal: &Principal,
    action: &str,
    function: Option<&str>,
    state: &ApiState,
) -> Result<(), ApiError> {
    match principal {
        Principal::Host => Ok(()),
        Principal::Component(component) => {
            let policy = state.engine.access_control(component);
            let function = function.map(|f| {
                FunctionRef::parse(f, None).map_or_else(|_| f.to_owned(), |r| r.name.to_string())
            });
            if grants(&policy, action, function.as_deref()) {
                Ok(())
            } else {
                let resource = function
                    .as_deref()
                    .map_or_else(|| "*".to_owned(), |f| state.registry.arn(f));
                Err(ApiError::AccessDenied(format!(
                    "User: {component} is not authorized to perform: {action} on resource: {resource}"
                )))
            }
        }
    }
}

/// Whether `policy` grants `action` on `function` (`None`: an operation on no one function,
/// which needs a grant on `*`).
pub fn grants(policy: &AccessControl, action: &str, function: Option<&str>) -> bool {
    let resource = function.unwrap_or("*");
    [action, "lambda:*"].iter().any(|op| {
        policy.allows(LAMBDA_API, op, Some(resource), Matching::Standard)
            && (function.is_some() || policy.allows(LAMBDA_API, op, Some("*"), Matching::Standard))
    })
}

/// Whether a component's configuration has any `lambkin.lambda` policy.
pub fn wants_lambda_api(policy: &AccessControl) -> bool {
    policy
        .policies()
        .iter()
        .any(|p| p.destination.eq_ignore_ascii_case(LAMBDA_API))
}

/// Hands components their keys (see the module's documentation).
#[derive(Debug, Clone)]
pub struct ComponentKeys {
    keys: Arc<Keys>,
    /// `http://ADDR` of the API.
    endpoint: String,
    region: String,
}

impl ComponentKeys {
    pub fn new(keys: Arc<Keys>, endpoint: String, region: String) -> Self {
        Self {
            keys,
            endpoint,
            region,
        }
    }

    /// Makes `component` a fresh key (its previous one, if any, stops working), writes its
    /// config file into `work_dir` for `owner` (uid, gid), and returns the variables that point
    /// the SDK at it.
    pub fn issue(
        &self,
        component: &str,
        work_dir: &Path,
        owner: (u32, u32),
    ) -> Result<BTreeMap<String, String>, keys::KeyError> {
        let principal = Principal::Component(component.to_owned());
        self.keys.revoke(&principal);
        let key = AccessKey::generate();
        let file = work_dir.join(CONFIG_FILE);
        let text = format!(
            "[profile {PROFILE}]\naws_access_key_id = {}\naws_secret_access_key = {}\n\
             region = {}\nservices = {PROFILE}-local\n\n[services {PROFILE}-local]\nlambda =\n  endpoint_url = {}\n",
            key.access_key_id, key.secret, self.region, self.endpoint
        );
        keys::write_private_owned(&file, text.as_bytes(), Some(owner))?;
        self.keys.insert(key.access_key_id, key.secret, principal);
        Ok(BTreeMap::from([(
            "AWS_CONFIG_FILE".to_owned(),
            file.display().to_string(),
        )]))
    }

    /// Forgets `component`'s key: its signatures are refused from now on.
    pub fn revoke(&self, component: &str) {
        self.keys
            .revoke(&Principal::Component(component.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn policy(json: serde_json::Value) -> AccessControl {
        let (policy, problems) = AccessControl::parse(&json);
        assert!(problems.is_empty(), "{problems:?}");
        policy
    }

    #[test]
    fn grants_are_per_action_and_function() {
        let p = policy(serde_json::json!({"lambkin.lambda": {
            "a": {"operations": ["lambda:InvokeFunction"], "resources": ["resize"]},
            "b": {"operations": ["lambda:GetFunction"], "resources": ["img-*"]},
        }}));
        assert!(grants(&p, "lambda:InvokeFunction", Some("resize")));
        assert!(!grants(&p, "lambda:InvokeFunction", Some("other")));
        assert!(!grants(&p, "lambda:UpdateFunctionCode", Some("resize")));
        assert!(grants(&p, "lambda:GetFunction", Some("img-small")));
        assert!(!grants(&p, "lambda:ListFunctions", None));
        assert!(!grants(&p, "lambda:CreateFunction", None));
        assert!(wants_lambda_api(&p));
        assert!(!wants_lambda_api(&AccessControl::default()));
    }

    #[test]
    fn a_wildcard_grant_covers_management_and_lists() {
        let p = policy(serde_json::json!({"lambkin.lambda": {
            "all": {"operations": ["lambda:*"], "resources": ["*"]},
        }}));
        assert!(grants(&p, "lambda:CreateFunction", None));
        assert!(grants(&p, "lambda:DeleteFunction", Some("x")));
        // A grant on one function does not cover operations on no one function.
        let p = policy(serde_json::json!({"lambkin.lambda": {
            "one": {"operations": ["lambda:*"], "resources": ["x"]},
        }}));
        assert!(!grants(&p, "lambda:ListFunctions", None));
    }

    #[test]
    fn unknown_actions_make_the_policy_invalid() {
        let (p, problems) = AccessControl::parse(&serde_json::json!({"lambkin.lambda": {
            "bad": {"operations": ["lambda:InvokeEverything"], "resources": ["*"]},
        }}));
        assert_eq!(problems.len(), 1);
        assert!(!wants_lambda_api(&p));
    }
}
