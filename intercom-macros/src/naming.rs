//! Every generated identifier and gRPC name, derived in one place.
//!
//! For a trait `AddHelper` with a method `sum`:
//!
//! | item | name |
//! |---|---|
//! | typed client | `AddHelperClient` |
//! | tonic service | `AddHelperServer<T>` |
//! | `GrpcPlugin` for both sides | `AddHelperPlugin` |
//! | messages module (hidden) | `__add_helper_messages` |
//! | request / response message | `SumRequest` / `SumResponse` |
//! | protobuf package | `intercom.add_helper` (`package = "…"`) |
//! | gRPC service | `AddHelper` (`service = "…"`) |
//! | gRPC method | `Sum` (PascalCase of the Rust name) |
//! | path | `/intercom.add_helper.AddHelper/Sum` |

use proc_macro2::Span;
use quote::format_ident;
use syn::Ident;
use syn::ext::IdentExt as _;

/// Method names that would collide with inherent items of the generated client or
/// server (or that tarpc-style users expect to be constructors): rejected.
pub(crate) const RESERVED_METHODS: &[&str] = &[
    "new",
    "connect",
    "serve",
    "into_server",
    "from_arc",
    "with_broker",
];

/// Names of the trait-level generated items.
pub(crate) struct Names {
    pub(crate) client: Ident,
    pub(crate) server: Ident,
    pub(crate) plugin: Ident,
    pub(crate) messages: Ident,
    /// The protobuf package.
    pub(crate) package: String,
    /// The gRPC service name within the package.
    pub(crate) service: String,
}

impl Names {
    pub(crate) fn new(
        trait_ident: &Ident,
        package: Option<String>,
        service: Option<String>,
    ) -> Self {
        let name = trait_ident.unraw().to_string();
        let snake = snake_case(&name);
        Names {
            client: format_ident!("{}Client", name),
            server: format_ident!("{}Server", name),
            plugin: format_ident!("{}Plugin", name),
            messages: Ident::new(&format!("__{snake}_messages"), Span::call_site()),
            package: package.unwrap_or_else(|| format!("intercom.{snake}")),
            service: service.unwrap_or(name),
        }
    }

    /// `package.Service`.
    pub(crate) fn full_service(&self) -> String {
        format!("{}.{}", self.package, self.service)
    }
}

/// Names derived from one method.
pub(crate) struct MethodNames {
    /// The gRPC method name (`Greet`).
    pub(crate) rpc: String,
    /// The HTTP/2 path (`/intercom.greeter.Greeter/Greet`).
    pub(crate) path: String,
    pub(crate) request: Ident,
    pub(crate) response: Ident,
}

impl MethodNames {
    pub(crate) fn new(names: &Names, method: &Ident) -> Self {
        let rpc = pascal_case(&method.unraw().to_string());
        MethodNames {
            path: format!("/{}/{}", names.full_service(), rpc),
            request: Ident::new(&format!("{rpc}Request"), method.span()),
            response: Ident::new(&format!("{rpc}Response"), method.span()),
            rpc,
        }
    }
}

/// `get_value` → `GetValue`, `getValue` → `GetValue`.
pub(crate) fn pascal_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for part in name.split('_').filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

/// `AddHelper` → `add_helper`, `HTTPServer` → `http_server`.
pub(crate) fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).and_then(|p| chars.get(p));
            let next = chars.get(i + 1);
            let boundary = match prev {
                None | Some('_') => false,
                Some(p) if p.is_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_uppercase() => next.is_some_and(|n| n.is_lowercase()),
                Some(_) => false,
            };
            if boundary {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `Color` + `DarkRed` → `COLOR_DARK_RED` (protobuf enum values share the package scope,
/// so they carry the enum's name).
pub(crate) fn enum_value_name(enum_name: &str, variant: &str) -> String {
    format!("{}_{}", snake_case(enum_name), snake_case(variant)).to_uppercase()
}

/// The candidate nearest to `word` if it is plausibly a typo (edit distance ≤ 2 and less
/// than half the word).
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2 && *d * 2 < c.len().max(word.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance with adjacent transpositions counted as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

/// Whether `s` is a protobuf identifier (`[A-Za-z_][A-Za-z0-9_]*`).
pub(crate) fn is_proto_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases() {
        assert_eq!(pascal_case("greet"), "Greet");
        assert_eq!(pascal_case("get_value"), "GetValue");
        assert_eq!(pascal_case("get__value"), "GetValue");
        assert_eq!(pascal_case("getValue"), "GetValue");
        assert_eq!(snake_case("Greeter"), "greeter");
        assert_eq!(snake_case("AddHelper"), "add_helper");
        assert_eq!(snake_case("HTTPServer"), "http_server");
        assert_eq!(snake_case("Kv2Store"), "kv2_store");
        assert_eq!(enum_value_name("Color", "DarkRed"), "COLOR_DARK_RED");
    }

    #[test]
    fn names_and_paths() {
        let names = Names::new(&format_ident!("AddHelper"), None, None);
        assert_eq!(names.client, "AddHelperClient");
        assert_eq!(names.server, "AddHelperServer");
        assert_eq!(names.plugin, "AddHelperPlugin");
        assert_eq!(names.messages, "__add_helper_messages");
        assert_eq!(names.full_service(), "intercom.add_helper.AddHelper");
        let method = MethodNames::new(&names, &format_ident!("sum_all"));
        assert_eq!(method.rpc, "SumAll");
        assert_eq!(method.path, "/intercom.add_helper.AddHelper/SumAll");
        assert_eq!(method.request, "SumAllRequest");
        assert_eq!(method.response, "SumAllResponse");

        let names = Names::new(
            &format_ident!("Counter"),
            Some("proto".into()),
            Some("Count".into()),
        );
        assert_eq!(names.full_service(), "proto.Count");
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            closest("pakage", &["handshake", "package"]),
            Some("package")
        );
        assert_eq!(closest("servcie", &["service"]), Some("service"));
        assert_eq!(closest("cookie", &["cookie_key", "cookie_value"]), None);
        assert_eq!(closest("zzz", &["crate"]), None);
    }
}
