//! Meaning checks on the parsed trait. Every check records its error and goes on
//! ([`Ctxt`]), so one compile shows every mistake; the result is the checked model the
//! expanders read ([`Service`], [`Method`], [`Field`]).

use std::collections::BTreeMap;

use quote::ToTokens;
use syn::ext::IdentExt as _;
use syn::{Attribute, Ident, Path, Type, TypeParamBound};

use crate::naming::{self, MethodNames, Names};
use crate::parse::{PluginArgs, PluginTrait, RpcMethod};
use crate::types::Shape;

mod method;

use method::check_method;

/// Collects errors; [`check`](Ctxt::check) returns them combined. Dropping an unchecked
/// context with errors is a bug in this crate, so it panics (serde's `Ctxt`).
pub(crate) struct Ctxt {
    errors: Option<Vec<syn::Error>>,
}

impl Ctxt {
    pub(crate) fn new() -> Self {
        Ctxt {
            errors: Some(Vec::new()),
        }
    }

    /// Records an error spanned on `tokens`.
    pub(crate) fn error_spanned_by(
        &mut self,
        tokens: impl ToTokens,
        message: impl std::fmt::Display,
    ) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// Records an error.
    pub(crate) fn push(&mut self, error: syn::Error) {
        if let Some(errors) = self.errors.as_mut() {
            errors.push(error);
        }
    }

    /// All recorded errors, combined.
    pub(crate) fn check(mut self) -> syn::Result<()> {
        let mut errors = self.errors.take().into_iter().flatten();
        let Some(mut all) = errors.next() else {
            return Ok(());
        };
        for error in errors {
            all.combine(error);
        }
        Err(all)
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        if !std::thread::panicking() && self.errors.as_ref().is_some_and(|e| !e.is_empty()) {
            panic!("intercom-macros bug: errors were recorded but never checked");
        }
    }
}

/// The checked trait.
pub(crate) struct Service<'a> {
    pub(crate) tr: &'a PluginTrait,
    pub(crate) names: Names,
    /// The path of the runtime crate (`::intercom` unless `crate = "…"`).
    pub(crate) krate: Path,
    pub(crate) methods: Vec<Method<'a>>,
    /// `(version, cookie_key, cookie_value)` when `handshake(...)` was given.
    pub(crate) handshake: Option<(u32, String, String)>,
}

/// One checked method.
pub(crate) struct Method<'a> {
    pub(crate) rpc: &'a RpcMethod,
    pub(crate) names: MethodNames,
    pub(crate) input: Input,
    pub(crate) output: Output,
    /// `#[cfg]` attributes, repeated on every generated counterpart.
    pub(crate) cfgs: Vec<Attribute>,
}

/// A message field (an argument, or the `value` of a response).
pub(crate) struct Field {
    /// The Rust field name (the argument's name, `value` for results).
    pub(crate) ident: Ident,
    /// The protobuf field name.
    pub(crate) name: String,
    /// The protobuf field number.
    pub(crate) number: u32,
    /// The type as written.
    pub(crate) ty: Type,
    pub(crate) shape: Shape,
}

/// What the client sends.
pub(crate) enum Input {
    /// One request message with a field per argument.
    Unary(Vec<Field>),
    /// One request message per item of the only argument, a `Streaming<T>`.
    Stream(Box<Field>),
}

/// What the server answers.
pub(crate) struct Output {
    /// The `Ok` type as written (`Streaming<T>` for streams).
    pub(crate) ok: Type,
    /// The `Err` type as written.
    pub(crate) err: Type,
    /// Whether the result is a `Streaming<T>` (one response message per item).
    pub(crate) stream: bool,
    /// The response field (`value = 1`), of the item type for streams.
    pub(crate) field: Field,
}

impl Method<'_> {
    pub(crate) fn client_streaming(&self) -> bool {
        matches!(self.input, Input::Stream(_))
    }
}

/// Doc comment lines of `attrs` (`#[doc = "…"]` values).
pub(crate) fn doc_lines(attrs: &[Attribute]) -> Vec<String> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The `#[cfg]` attributes of `attrs`.
pub(crate) fn cfg_attrs(attrs: &[Attribute]) -> Vec<Attribute> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("cfg"))
        .cloned()
        .collect()
}

/// Checks `tr` with `args`.
pub(crate) fn validate<'a>(args: &'a PluginArgs, tr: &'a PluginTrait) -> syn::Result<Service<'a>> {
    let mut cx = Ctxt::new();

    let package = args.package.as_ref().map(|lit| {
        let value = lit.value();
        if value.is_empty() || !value.split('.').all(naming::is_proto_ident) {
            cx.error_spanned_by(lit, format!("`package = \"{value}\"` is not a protobuf package: dot-separated identifiers such as `acme.greeter.v1`"));
        }
        value
    });
    let service = args.service.as_ref().map(|lit| {
        let value = lit.value();
        if !naming::is_proto_ident(&value) {
            cx.error_spanned_by(lit, format!("`service = \"{value}\"` is not a protobuf identifier (letters, digits and `_`, not starting with a digit)"));
        }
        value
    });
    let handshake = args.handshake.as_ref().and_then(|h| {
        let version = match h.version.base10_parse::<u32>() {
            Ok(v) => Some(v),
            Err(_) => {
                cx.error_spanned_by(&h.version, "the handshake version must be a `u32`");
                None
            }
        };
        if h.cookie_key.value().is_empty() {
            cx.error_spanned_by(
                &h.cookie_key,
                "the magic cookie key is an environment variable name and cannot be empty",
            );
        }
        Some((version?, h.cookie_key.value(), h.cookie_value.value()))
    });

    check_trait(&mut cx, tr);
    let names = Names::new(&tr.ident, package, service);

    let mut methods = Vec::new();
    let mut rpc_names: BTreeMap<String, &Ident> = BTreeMap::new();
    for rpc in &tr.methods {
        let name = rpc.ident.unraw().to_string();
        if naming::RESERVED_METHODS.contains(&name.as_str()) {
            cx.error_spanned_by(
                &rpc.ident,
                format!(
                    "`{name}` is reserved: it would collide with the generated `{client}::{name}`/`{server}::{name}`; reserved names: {}",
                    naming::RESERVED_METHODS.join(", "),
                    client = names.client,
                    server = names.server,
                ),
            );
        }
        let method_names = MethodNames::new(&names, &rpc.ident);
        if let Some(first) = rpc_names.get(&method_names.rpc) {
            cx.error_spanned_by(
                &rpc.ident,
                format!(
                    "`{name}` and `{first}` both become the gRPC method `{}`; rename one",
                    method_names.rpc
                ),
            );
        } else {
            rpc_names.insert(method_names.rpc.clone(), &rpc.ident);
        }
        if let Some(method) = check_method(&mut cx, rpc, method_names) {
            methods.push(method);
        }
    }

    cx.check()?;
    Ok(Service {
        tr,
        names,
        krate: args
            .krate
            .clone()
            .unwrap_or_else(|| syn::parse_quote!(::intercom)),
        methods,
        handshake,
    })
}

fn check_trait(cx: &mut Ctxt, tr: &PluginTrait) {
    let item = &tr.item;
    if let Some(unsafety) = &item.unsafety {
        cx.error_spanned_by(unsafety, "plugin traits cannot be `unsafe`");
    }
    if let Some(auto) = &item.auto_token {
        cx.error_spanned_by(auto, "plugin traits cannot be auto traits");
    }
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        cx.error_spanned_by(
            &item.generics,
            "plugin traits cannot be generic: every method needs one wire type",
        );
    }
    let (mut send, mut sync, mut stat) = (false, false, false);
    for bound in &tr.supertraits {
        match bound {
            TypeParamBound::Trait(t) if t.path.is_ident("Send") || ends_with(&t.path, &["marker", "Send"]) => send = true,
            TypeParamBound::Trait(t) if t.path.is_ident("Sync") || ends_with(&t.path, &["marker", "Sync"]) => sync = true,
            TypeParamBound::Lifetime(l) if l.ident == "static" => stat = true,
            other => cx.error_spanned_by(
                other,
                "plugin traits support only the supertraits `Send + Sync + 'static` (the generated client implements the trait and nothing else)",
            ),
        }
    }
    if !(send && sync && stat) {
        let missing: Vec<&str> = [(send, "Send"), (sync, "Sync"), (stat, "'static")]
            .into_iter()
            .filter(|(present, _)| !present)
            .map(|(_, name)| name)
            .collect();
        let at: &dyn ToTokens = if tr.supertraits.is_empty() {
            &tr.ident
        } else {
            &tr.supertraits
        };
        cx.error_spanned_by(
            at,
            format!(
                "plugin traits must be `Send + Sync + 'static` (missing {}): implementations are shared across tasks and callbacks are `Arc<dyn {}>`; write `trait {}: Send + Sync + 'static`",
                missing.join(", "),
                tr.ident,
                tr.ident
            ),
        );
    }
    for other in &tr.other_items {
        cx.error_spanned_by(
            other,
            "plugin traits can only contain `async fn` methods (associated types, constants and macros have no wire form)",
        );
    }
}

fn ends_with(path: &Path, tail: &[&str]) -> bool {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    segments.len() >= tail.len() && segments[segments.len() - tail.len()..] == *tail
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn errors(args: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> Vec<String> {
        let args: PluginArgs = syn::parse2(args).unwrap();
        let tr = PluginTrait::parse(item).unwrap();
        match validate(&args, &tr) {
            Ok(_) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_good_trait_passes() {
        let errs = errors(
            quote!(),
            quote! {
                pub trait Greeter: Send + Sync + 'static {
                    async fn greet(&self, name: String) -> Result<String, Status>;
                    async fn upload(&self, chunks: Streaming<Vec<u8>>) -> Result<u64, Status>;
                    async fn watch(&self) -> Result<Streaming<String>, Status>;
                    async fn call_me(&self, back: Arc<dyn Other>, n: Option<i32>) -> Result<(), Status>;
                }
            },
        );
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn every_error_is_reported() {
        let errs = errors(
            quote!(),
            quote! {
                pub trait Bad: Send {
                    fn not_async(&self) -> Result<(), Status>;
                    async fn generic<T>(&self, t: T) -> Result<(), Status>;
                    async fn mutable(&mut self) -> Result<(), Status>;
                    async fn owned(self) -> Result<(), Status>;
                    async fn borrowed(&self, s: &str) -> Result<(), Status>;
                    async fn plain(&self) -> String;
                    async fn new(&self) -> Result<(), Status>;
                    async fn get_value(&self) -> Result<(), Status>;
                    async fn get__value(&self) -> Result<(), Status>;
                    async fn two(&self, a: Streaming<u8>, b: u8) -> Result<(), Status>;
                    type Assoc;
                }
            },
        );
        let expect = [
            "must be `Send + Sync + 'static` (missing Sync, 'static)",
            "only contain `async fn` methods",
            "must be `async fn`",
            "cannot be generic",
            "take `&self`, not `& mut self`",
            "take `&self`, not `self`",
            "use `String`",
            "must return `Result<T, E>`",
            "`new` is reserved",
            "`get__value` and `get_value` both become the gRPC method `GetValue`",
            "must be the method's only argument",
        ];
        for e in expect {
            assert!(
                errs.iter().any(|err| err.contains(e)),
                "missing {e:?} in {errs:#?}"
            );
        }
        assert_eq!(errs.len(), expect.len(), "{errs:#?}");
    }

    #[test]
    fn attribute_values_are_checked() {
        let errs = errors(
            quote!(
                package = "not a package",
                service = "1x",
                handshake(version = 99999999999, cookie_key = "", cookie_value = "x")
            ),
            quote!(
                trait T: Send + Sync + 'static {}
            ),
        );
        assert_eq!(errs.len(), 4, "{errs:#?}");
    }
}
