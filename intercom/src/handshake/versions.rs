//! `PLUGIN_PROTOCOL_VERSIONS`: the host's list of app versions, and the plugin's choice
//! among them.

use super::error::snippet;

/// Picks the app protocol version a plugin announces, by go-plugin's rule.
///
/// `env_value` is the host's `PLUGIN_PROTOCOL_VERSIONS` (comma-separated decimals;
/// `None` when unset), `plugin_versions` the versions the plugin implements. The highest
/// plugin version that the host also lists wins; if there is none (or the variable is
/// unset or empty) the plugin's **lowest** version is returned and the host will reject
/// it with a clear error. Returns 0 (which no host offers) if `plugin_versions` is empty.
///
/// The second value lists the host entries that are not decimal numbers (surrounding
/// spaces are tolerated), for a warning; go-plugin prints
/// `server sent invalid plugin version "<s>"` to stderr for each.
///
/// ```
/// use intercom::handshake::negotiate_version;
///
/// assert_eq!(negotiate_version(Some("1,2,3"), &[2, 3, 4]), (3, vec![]));
/// assert_eq!(negotiate_version(None, &[2, 3, 4]), (2, vec![]));
/// assert_eq!(negotiate_version(Some("x,2"), &[1, 2]), (2, vec!["x".to_owned()]));
/// ```
pub fn negotiate_version(env_value: Option<&str>, plugin_versions: &[u32]) -> (u32, Vec<String>) {
    let (host, invalid) = match env_value {
        Some(value) => parse_versions(value),
        None => (Vec::new(), Vec::new()),
    };
    let chosen = plugin_versions
        .iter()
        .copied()
        .filter(|v| host.contains(v))
        .max()
        .or_else(|| plugin_versions.iter().copied().min())
        .unwrap_or(0);
    (chosen, invalid)
}

/// Parses the `PLUGIN_PROTOCOL_VERSIONS` format (`"1,2,3"`) into the valid versions, in
/// order, and the entries that are not decimal numbers (truncated). An empty string is an
/// empty list; surrounding spaces around an entry are tolerated.
pub fn parse_versions(value: &str) -> (Vec<u32>, Vec<String>) {
    let mut versions = Vec::new();
    let mut invalid = Vec::new();
    if value.trim().is_empty() {
        return (versions, invalid);
    }
    for entry in value.split(',') {
        match entry.trim().parse::<u32>() {
            Ok(v) => versions.push(v),
            Err(_) => invalid.push(snippet(entry)),
        }
    }
    (versions, invalid)
}

/// Builds the `PLUGIN_PROTOCOL_VERSIONS` value: decimals joined by `,`, no spaces.
///
/// ```
/// assert_eq!(intercom::handshake::format_versions(&[1, 2, 3]), "1,2,3");
/// ```
pub fn format_versions(versions: &[u32]) -> String {
    versions
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
