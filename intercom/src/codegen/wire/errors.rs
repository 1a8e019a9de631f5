//! The decode errors generated code reports: invalid values and unknown enum numbers.

use prost::DecodeError;

/// A decode error with a description (prost deprecated the constructor for users, but it
/// is the only way to report a value that is well-formed protobuf yet invalid here).
#[cold]
pub fn decode_error(description: impl Into<std::borrow::Cow<'static, str>>) -> DecodeError {
    #[allow(deprecated)]
    DecodeError::new(description)
}

/// The error for an enum number no variant of `name` has.
#[cold]
pub fn unknown_enum_value(name: &'static str, value: i32) -> DecodeError {
    decode_error(format!("invalid enumeration value {value} for {name}"))
}
