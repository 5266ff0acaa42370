//! Every decoder in this crate takes arbitrary input without panicking, and what it accepts
//! round-trips.

use lambkin_proto::lambda::function::{FunctionName, Runtime};
use lambkin_proto::lambda::invoke::{FunctionRef, InvocationType, LogType};
use lambkin_proto::lambda::management::{
    CreateFunctionRequest, UpdateFunctionCodeRequest, UpdateFunctionConfigurationRequest,
};
use lambkin_proto::lambda::runtime_api::Route;
use proptest::prelude::*;

proptest! {
    #[test]
    fn function_refs_never_panic_and_keep_valid_names(s in "\\PC{0,200}", q in proptest::option::of("\\PC{0,20}")) {
        if let Ok(r) = FunctionRef::parse(&s, q.as_deref()) {
            prop_assert!(FunctionName::parse(r.name.as_str()).is_ok());
            prop_assert!(s.contains(r.name.as_str()));
        }
    }

    #[test]
    fn arn_forms_resolve_to_the_name(name in "[A-Za-z0-9_-]{1,64}", region in "[a-z]{2}-[a-z]{4,9}-[1-9]", account in "[0-9]{12}") {
        let arn = format!("arn:aws:lambda:{region}:{account}:function:{name}");
        let full = FunctionRef::parse(&arn, None).unwrap();
        prop_assert_eq!(full.name.as_str(), name.as_str());
        let partial = format!("{account}:function:{name}:$LATEST");
        let r = FunctionRef::parse(&partial, None).unwrap();
        prop_assert_eq!(r.name.as_str(), name.as_str());
        prop_assert_eq!(r.qualifier.as_deref(), Some("$LATEST"));
    }

    #[test]
    fn runtime_ids_round_trip(s in "\\PC{0,30}") {
        if let Ok(r) = Runtime::parse(&s) {
            prop_assert_eq!(r.id(), s);
        }
    }

    #[test]
    fn runtime_api_routes_never_panic(method in "(GET|POST|PUT|DELETE)", path in "(/2018-06-01)?(/[a-z0-9%-]{0,12}){0,6}") {
        let route = Route::parse(&method, &path);
        if let Route::Response(id) | Route::Error(id) = &route {
            prop_assert!(!id.is_empty());
            prop_assert!(path.contains(id.as_str()));
        }
    }

    #[test]
    fn header_values_never_panic(s in proptest::option::of("\\PC{0,20}")) {
        let _ = InvocationType::parse(s.as_deref());
        let _ = LogType::parse(s.as_deref());
    }

    #[test]
    fn management_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = serde_json::from_slice::<CreateFunctionRequest>(&bytes);
        let _ = serde_json::from_slice::<UpdateFunctionCodeRequest>(&bytes);
        let _ = serde_json::from_slice::<UpdateFunctionConfigurationRequest>(&bytes);
    }
}
