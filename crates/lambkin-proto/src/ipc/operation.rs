//! The operations of the Greengrass IPC service model (`greengrass-ipc.md` §4.7) and their
//! shape ids. Every operation of the model is here, implemented by the host or not: the
//! difference decides the reply to an unknown name (§3.7).

use std::fmt;

use super::error::ErrorShape;

macro_rules! operations {
    ($($variant:ident),* $(,)?) => {
        /// An operation of the `aws.greengrass` IPC service model.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Operation {
            $($variant),*
        }

        impl Operation {
            /// Every operation of the model.
            pub const ALL: &'static [Operation] = &[$(Operation::$variant),*];

            /// The `operation` header value, e.g. `aws.greengrass#PublishToTopic`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => concat!("aws.greengrass#", stringify!($variant))),*
                }
            }

            /// The name without its namespace, e.g. `PublishToTopic`.
            pub fn short_name(self) -> &'static str {
                match self {
                    $(Self::$variant => stringify!($variant)),*
                }
            }

            /// `service-model-type` of the request, e.g. `aws.greengrass#PublishToTopicRequest`.
            pub fn request_shape(self) -> &'static str {
                match self {
                    $(Self::$variant => concat!("aws.greengrass#", stringify!($variant), "Request")),*
                }
            }

            /// `service-model-type` of the response, e.g. `aws.greengrass#PublishToTopicResponse`.
            pub fn response_shape(self) -> &'static str {
                match self {
                    $(Self::$variant => concat!("aws.greengrass#", stringify!($variant), "Response")),*
                }
            }
        }
    };
}

operations! {
    PublishToTopic,
    SubscribeToTopic,
    PublishToIoTCore,
    SubscribeToIoTCore,
    SubscribeToIoTCoreConnectionStatus,
    GetConfiguration,
    UpdateConfiguration,
    SubscribeToConfigurationUpdate,
    SubscribeToValidateConfigurationUpdates,
    SendConfigurationValidityReport,
    UpdateState,
    SubscribeToComponentUpdates,
    DeferComponentUpdate,
    PauseComponent,
    ResumeComponent,
    GetComponentDetails,
    ListComponents,
    RestartComponent,
    StopComponent,
    CreateLocalDeployment,
    CancelLocalDeployment,
    GetLocalDeploymentStatus,
    ListLocalDeployments,
    CreateDebugPassword,
    ValidateAuthorizationToken,
    GetSecretValue,
    GetThingShadow,
    UpdateThingShadow,
    DeleteThingShadow,
    ListNamedShadowsForThing,
    PutComponentMetric,
    VerifyClientDeviceIdentity,
    GetClientDeviceAuthToken,
    AuthorizeClientDeviceAction,
    SubscribeToCertificateUpdates,
}

impl Operation {
    /// The operation an `operation` header names, exactly (the nucleus looks names up
    /// case-sensitively); `None` for names outside the model.
    pub fn from_name(name: &str) -> Option<Self> {
        let short = name.strip_prefix("aws.greengrass#")?;
        Self::ALL
            .iter()
            .copied()
            .find(|op| op.short_name() == short)
    }

    /// The shape of the events a streaming operation sends after its response; `None` for
    /// request/response operations, which end with the response.
    pub fn event_shape(self) -> Option<&'static str> {
        Some(match self {
            Self::SubscribeToTopic => "aws.greengrass#SubscriptionResponseMessage",
            Self::SubscribeToIoTCore => "aws.greengrass#IoTCoreMessage",
            Self::SubscribeToIoTCoreConnectionStatus => {
                "aws.greengrass#IoTCoreConnectionStatusEvent"
            }
            Self::SubscribeToConfigurationUpdate => "aws.greengrass#ConfigurationUpdateEvents",
            Self::SubscribeToValidateConfigurationUpdates => {
                "aws.greengrass#ValidateConfigurationUpdateEvents"
            }
            Self::SubscribeToComponentUpdates => "aws.greengrass#ComponentUpdatePolicyEvents",
            Self::SubscribeToCertificateUpdates => "aws.greengrass#CertificateUpdateEvent",
            Self::PublishToTopic
            | Self::PublishToIoTCore
            | Self::GetConfiguration
            | Self::UpdateConfiguration
            | Self::SendConfigurationValidityReport
            | Self::UpdateState
            | Self::DeferComponentUpdate
            | Self::PauseComponent
            | Self::ResumeComponent
            | Self::GetComponentDetails
            | Self::ListComponents
            | Self::RestartComponent
            | Self::StopComponent
            | Self::CreateLocalDeployment
            | Self::CancelLocalDeployment
            | Self::GetLocalDeploymentStatus
            | Self::ListLocalDeployments
            | Self::CreateDebugPassword
            | Self::ValidateAuthorizationToken
            | Self::GetSecretValue
            | Self::GetThingShadow
            | Self::UpdateThingShadow
            | Self::DeleteThingShadow
            | Self::ListNamedShadowsForThing
            | Self::PutComponentMetric
            | Self::VerifyClientDeviceIdentity
            | Self::GetClientDeviceAuthToken
            | Self::AuthorizeClientDeviceAction => return None,
        })
    }

    /// Whether the stream stays open after the response to carry events (§3.6).
    pub fn is_streaming(self) -> bool {
        self.event_shape().is_some()
    }

    /// The error shapes the Node client accepts for this operation (§4.7); any other shape
    /// reaches a Node caller as a generic `InternalError`. `None` where the spec gives no list.
    pub fn declared_errors(self) -> Option<&'static [ErrorShape]> {
        use ErrorShape::*;
        Some(match self {
            Self::PublishToTopic => &[Service, Unauthorized],
            Self::SubscribeToTopic => &[InvalidArguments, Service, Unauthorized],
            Self::PublishToIoTCore | Self::SubscribeToIoTCore => &[Service, Unauthorized],
            Self::GetConfiguration | Self::SubscribeToConfigurationUpdate | Self::UpdateState => {
                &[Service, ResourceNotFound]
            }
            Self::UpdateConfiguration => &[
                Service,
                Unauthorized,
                Conflict,
                FailedUpdateConditionCheck,
                InvalidArguments,
            ],
            Self::GetComponentDetails => &[Service, ResourceNotFound, InvalidArguments],
            Self::RestartComponent | Self::StopComponent => {
                &[Service, ComponentNotFound, InvalidArguments]
            }
            Self::ListComponents => &[Service],
            Self::ValidateAuthorizationToken => &[InvalidToken, Unauthorized, Service],
            Self::PauseComponent | Self::ResumeComponent => {
                &[Unauthorized, Service, ResourceNotFound]
            }
            Self::SubscribeToComponentUpdates => &[],
            Self::SubscribeToIoTCoreConnectionStatus
            | Self::SubscribeToValidateConfigurationUpdates
            | Self::SendConfigurationValidityReport
            | Self::DeferComponentUpdate
            | Self::CreateLocalDeployment
            | Self::CancelLocalDeployment
            | Self::GetLocalDeploymentStatus
            | Self::ListLocalDeployments
            | Self::CreateDebugPassword
            | Self::GetSecretValue
            | Self::GetThingShadow
            | Self::UpdateThingShadow
            | Self::DeleteThingShadow
            | Self::ListNamedShadowsForThing
            | Self::PutComponentMetric
            | Self::VerifyClientDeviceIdentity
            | Self::GetClientDeviceAuthToken
            | Self::AuthorizeClientDeviceAction
            | Self::SubscribeToCertificateUpdates => return None,
        })
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_exactly() {
        assert_eq!(Operation::ALL.len(), 35);
        for &op in Operation::ALL {
            assert_eq!(Operation::from_name(op.name()), Some(op));
        }
        assert_eq!(
            Operation::from_name("aws.greengrass#PublishToTopic"),
            Some(Operation::PublishToTopic)
        );
        assert_eq!(Operation::from_name("aws.greengrass#publishtotopic"), None);
        assert_eq!(Operation::from_name("PublishToTopic"), None);
        assert_eq!(Operation::from_name("aws.greengrass#NoSuchThing"), None);
    }

    #[test]
    fn shape_ids_follow_the_model() {
        let op = Operation::SubscribeToTopic;
        assert_eq!(op.request_shape(), "aws.greengrass#SubscribeToTopicRequest");
        assert_eq!(
            op.response_shape(),
            "aws.greengrass#SubscribeToTopicResponse"
        );
        assert!(op.is_streaming());
        assert!(!Operation::PublishToTopic.is_streaming());
        let streaming: Vec<_> = Operation::ALL
            .iter()
            .filter(|op| op.is_streaming())
            .map(|op| op.short_name())
            .collect();
        assert!(streaming.iter().all(|n| n.starts_with("SubscribeTo")));
        assert_eq!(streaming.len(), 7);
    }

    #[test]
    fn node_does_not_accept_invalid_arguments_on_publish() {
        let errors = Operation::PublishToTopic.declared_errors().unwrap();
        assert!(!errors.contains(&ErrorShape::InvalidArguments));
    }
}
