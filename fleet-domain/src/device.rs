//! Device registration rules: names, hardware model, attributes and the
//! static group list.
//!
//! Attributes are what group queries (`attr.region == "eu"`) and policy
//! variables (`${device.attr.region}`) read, so they are bounded like group
//! tags and their keys must be non-empty. Static group ids are a set: the
//! order a client sends them in carries no meaning, so they are returned
//! sorted and without duplicates (whether the groups exist is the store's
//! business).

use std::collections::BTreeMap;

use super::{check_name, indexed, FieldError, MAX_NAME_LEN};

/// Most attributes on one device.
pub const MAX_ATTRIBUTES: usize = 50;
pub const MAX_ATTRIBUTE_KEY_LEN: usize = 128;
pub const MAX_ATTRIBUTE_VALUE_LEN: usize = 256;
/// Most groups a device can be a static member of.
pub const MAX_GROUPS: usize = 100;

/// Validates a device `name` (unique fleet-wide; checked by the store).
pub fn validate_name(name: &str) -> Result<(), FieldError> {
    check_name("name", name, MAX_NAME_LEN)
}

/// Validates the `hardware` model: same character rules as names, since
/// firmware `hardware` lists and policies refer to it.
pub fn validate_hardware(hardware: &str) -> Result<(), FieldError> {
    check_name("hardware", hardware, MAX_NAME_LEN)
}

/// Validates `attributes`, naming a bad entry `attributes["key"]`.
pub fn validate_attributes(attributes: &BTreeMap<String, String>) -> Result<(), FieldError> {
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(FieldError::new(
            "attributes",
            format!(
                "at most {MAX_ATTRIBUTES} attributes are allowed, got {}",
                attributes.len()
            ),
        ));
    }
    for (key, value) in attributes {
        let field = format!("attributes[{key:?}]");
        if key.trim().is_empty() {
            return Err(FieldError::new(field, "attribute keys must not be empty"));
        }
        if key.chars().count() > MAX_ATTRIBUTE_KEY_LEN {
            return Err(FieldError::new(
                field,
                format!("attribute keys must be at most {MAX_ATTRIBUTE_KEY_LEN} characters long"),
            ));
        }
        if value.chars().count() > MAX_ATTRIBUTE_VALUE_LEN {
            return Err(FieldError::new(
                field,
                format!(
                    "attribute values must be at most {MAX_ATTRIBUTE_VALUE_LEN} characters long"
                ),
            ));
        }
    }
    Ok(())
}

/// Validates static `group_ids`. They form a set: duplicates are harmless
/// and the store returns them sorted. Errors use the index in the request
/// (`group_ids[2]`), so existence is checked in request order too.
pub fn validate_group_ids(group_ids: &[String]) -> Result<(), FieldError> {
    if group_ids.len() > MAX_GROUPS {
        return Err(FieldError::new(
            "group_ids",
            format!(
                "a device can be in at most {MAX_GROUPS} groups, got {}",
                group_ids.len()
            ),
        ));
    }
    for (i, id) in group_ids.iter().enumerate() {
        if id.trim().is_empty() {
            return Err(FieldError::new(
                indexed("group_ids", i),
                "must not be empty",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_hardware_follow_the_naming_rule() {
        assert!(validate_name("meter-0001").is_ok());
        assert_eq!(validate_name("a/b").unwrap_err().field, "name");
        assert!(validate_hardware("m1.rev-b").is_ok());
        assert_eq!(validate_hardware("").unwrap_err().field, "hardware");
    }

    #[test]
    fn attributes_are_bounded_and_named_by_key() {
        let mut a = BTreeMap::from([("region".to_string(), "eu".to_string())]);
        assert!(validate_attributes(&a).is_ok());
        a.insert(" ".into(), "x".into());
        assert_eq!(
            validate_attributes(&a).unwrap_err().field,
            r#"attributes[" "]"#
        );
        let a = BTreeMap::from([("k".to_string(), "v".repeat(257))]);
        assert_eq!(
            validate_attributes(&a).unwrap_err().field,
            r#"attributes["k"]"#
        );
        let a: BTreeMap<_, _> = (0..51).map(|i| (format!("k{i}"), String::new())).collect();
        assert_eq!(validate_attributes(&a).unwrap_err().field, "attributes");
    }

    #[test]
    fn group_ids_must_not_be_empty_strings() {
        let ids = ["b", "a", "b"].map(String::from);
        assert!(validate_group_ids(&ids).is_ok());
        let ids = ["a", ""].map(String::from);
        assert_eq!(validate_group_ids(&ids).unwrap_err().field, "group_ids[1]");
        let ids: Vec<String> = (0..101).map(|i| i.to_string()).collect();
        assert_eq!(validate_group_ids(&ids).unwrap_err().field, "group_ids");
    }
}
