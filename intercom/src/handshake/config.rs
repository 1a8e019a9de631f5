//! [`HandshakeConfig`]: what host and plugin must agree on before they talk.

use std::borrow::Cow;

/// The settings host and plugin must agree on before they talk; mirrors go-plugin's
/// `HandshakeConfig`.
///
/// The magic cookie is not a security measure: it only tells a plugin binary that it was
/// started by a host (rather than by a user at a shell). The host sets the environment
/// variable `magic_cookie_key` to `magic_cookie_value`; the plugin refuses to run otherwise.
///
/// ```
/// use intercom::handshake::HandshakeConfig;
///
/// pub const HANDSHAKE: HandshakeConfig = HandshakeConfig::new(1, "BASIC_PLUGIN", "hello");
/// assert_eq!(HANDSHAKE.protocol_version, 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HandshakeConfig {
    /// The application protocol version (the handshake's APP field) of an un-versioned
    /// plugin set.
    pub protocol_version: u32,
    /// Name of the environment variable carrying the magic cookie.
    pub magic_cookie_key: Cow<'static, str>,
    /// Value the magic cookie variable must have.
    pub magic_cookie_value: Cow<'static, str>,
}

impl HandshakeConfig {
    /// A config from static strings; `const`, so it can back a `pub const`.
    pub const fn new(protocol_version: u32, key: &'static str, value: &'static str) -> Self {
        Self {
            protocol_version,
            magic_cookie_key: Cow::Borrowed(key),
            magic_cookie_value: Cow::Borrowed(value),
        }
    }
}
