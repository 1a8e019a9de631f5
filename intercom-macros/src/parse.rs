//! Syntax only: the attribute's arguments ([`PluginArgs`]) and the trait as data
//! ([`PluginTrait`], [`RpcMethod`]). Nothing here judges meaning; `validate` does.

use proc_macro2::TokenStream;
use syn::ext::IdentExt as _;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{
    Attribute, Block, FnArg, Ident, ItemTrait, LitInt, LitStr, Pat, Signature, Token, TraitItem,
    Type, TypeParamBound, Visibility,
};

/// The keys `#[intercom::plugin(...)]` accepts, in documentation order.
pub(crate) const PLUGIN_KEYS: &[&str] = &["handshake", "package", "service", "crate"];

/// The keys `handshake(...)` accepts.
pub(crate) const HANDSHAKE_KEYS: &[&str] = &["version", "cookie_key", "cookie_value"];

/// `#[intercom::plugin(handshake(...), package = "…", service = "…", crate = "…")]`.
#[derive(Default)]
pub(crate) struct PluginArgs {
    pub(crate) handshake: Option<Handshake>,
    pub(crate) package: Option<LitStr>,
    pub(crate) service: Option<LitStr>,
    pub(crate) krate: Option<syn::Path>,
}

/// `handshake(version = 1, cookie_key = "…", cookie_value = "…")`.
pub(crate) struct Handshake {
    pub(crate) version: LitInt,
    pub(crate) cookie_key: LitStr,
    pub(crate) cookie_value: LitStr,
}

/// A key of the attribute grammar: an identifier or a keyword (`crate`).
fn parse_key(input: ParseStream<'_>) -> syn::Result<Ident> {
    input.call(Ident::parse_any)
}

/// The error for a key not in `allowed`, with the nearest allowed key as a suggestion.
pub(crate) fn unknown_key(key: &Ident, allowed: &[&str], what: &str) -> syn::Error {
    let name = key.to_string();
    let list = allowed
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let message = match crate::naming::closest(&name, allowed) {
        Some(near) => {
            format!("unknown {what} `{name}`; did you mean `{near}`? expected one of: {list}")
        }
        None => format!("unknown {what} `{name}`; expected one of: {list}"),
    };
    syn::Error::new(key.span(), message)
}

fn set_once<T>(slot: &mut Option<T>, key: &Ident, value: T) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new(
            key.span(),
            format!("duplicate argument `{key}`"),
        ));
    }
    *slot = Some(value);
    Ok(())
}

impl Parse for PluginArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = PluginArgs::default();
        while !input.is_empty() {
            let key = parse_key(input)?;
            match key.to_string().as_str() {
                "handshake" => {
                    let content;
                    syn::parenthesized!(content in input);
                    let handshake = Handshake::parse(&content, &key)?;
                    set_once(&mut args.handshake, &key, handshake)?;
                }
                "package" => {
                    input.parse::<Token![=]>()?;
                    set_once(&mut args.package, &key, input.parse()?)?;
                }
                "service" => {
                    input.parse::<Token![=]>()?;
                    set_once(&mut args.service, &key, input.parse()?)?;
                }
                "crate" => {
                    input.parse::<Token![=]>()?;
                    let path: LitStr = input.parse()?;
                    set_once(&mut args.krate, &key, path.parse()?)?;
                }
                _ => return Err(unknown_key(&key, PLUGIN_KEYS, "argument")),
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(args)
    }
}

impl Handshake {
    fn parse(input: ParseStream<'_>, outer: &Ident) -> syn::Result<Self> {
        let mut version = None;
        let mut cookie_key = None;
        let mut cookie_value = None;
        while !input.is_empty() {
            let key = parse_key(input)?;
            input.parse::<Token![=]>()?;
            match key.to_string().as_str() {
                "version" => set_once(&mut version, &key, input.parse()?)?,
                "cookie_key" => set_once(&mut cookie_key, &key, input.parse()?)?,
                "cookie_value" => set_once(&mut cookie_value, &key, input.parse()?)?,
                _ => return Err(unknown_key(&key, HANDSHAKE_KEYS, "handshake argument")),
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        let missing = |what: &str| {
            syn::Error::new(
                outer.span(),
                format!(
                    "`handshake(...)` needs `{what}`: write `handshake(version = 1, cookie_key = \"MY_PLUGIN\", cookie_value = \"hello\")`"
                ),
            )
        };
        Ok(Handshake {
            version: version.ok_or_else(|| missing("version"))?,
            cookie_key: cookie_key.ok_or_else(|| missing("cookie_key"))?,
            cookie_value: cookie_value.ok_or_else(|| missing("cookie_value"))?,
        })
    }
}

/// The annotated trait, as written.
pub(crate) struct PluginTrait {
    /// The trait exactly as written (emitted unchanged on validation failure).
    pub(crate) item: ItemTrait,
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) ident: Ident,
    pub(crate) supertraits: Punctuated<TypeParamBound, Token![+]>,
    pub(crate) methods: Vec<RpcMethod>,
    /// Items that are not methods (rejected by validation).
    pub(crate) other_items: Vec<TraitItem>,
}

/// One method of the trait.
pub(crate) struct RpcMethod {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) sig: Signature,
    pub(crate) ident: Ident,
    pub(crate) args: Vec<RpcArg>,
    pub(crate) default: Option<Block>,
}

/// One argument after the receiver.
pub(crate) struct RpcArg {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) pat: Pat,
    pub(crate) ty: Type,
}

impl RpcArg {
    /// The argument's name when its pattern is a plain (possibly `mut`) identifier.
    pub(crate) fn ident(&self) -> Option<&Ident> {
        match &self.pat {
            Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => Some(&p.ident),
            _ => None,
        }
    }
}

impl PluginTrait {
    /// Reads the item the attribute is on.
    pub(crate) fn parse(item: TokenStream) -> syn::Result<Self> {
        let item: ItemTrait = syn::parse2(item).map_err(|e| {
            syn::Error::new(
                e.span(),
                "#[intercom::plugin] goes on a trait: `pub trait Greeter: Send + Sync + 'static { async fn greet(&self, name: String) -> Result<String, intercom::Status>; }`",
            )
        })?;
        let mut methods = Vec::new();
        let mut other_items = Vec::new();
        for trait_item in &item.items {
            match trait_item {
                TraitItem::Fn(f) => {
                    let args = f
                        .sig
                        .inputs
                        .iter()
                        .filter_map(|input| match input {
                            FnArg::Typed(t) => Some(RpcArg {
                                attrs: t.attrs.clone(),
                                pat: (*t.pat).clone(),
                                ty: (*t.ty).clone(),
                            }),
                            FnArg::Receiver(_) => None,
                        })
                        .collect();
                    methods.push(RpcMethod {
                        attrs: f.attrs.clone(),
                        sig: f.sig.clone(),
                        ident: f.sig.ident.clone(),
                        args,
                        default: f.default.clone(),
                    });
                }
                other => other_items.push(other.clone()),
            }
        }
        Ok(PluginTrait {
            attrs: item.attrs.clone(),
            vis: item.vis.clone(),
            ident: item.ident.clone(),
            supertraits: item.supertraits.clone(),
            methods,
            other_items,
            item,
        })
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    #[test]
    fn parses_all_arguments() {
        let args: PluginArgs = syn::parse2(quote! {
            handshake(version = 2, cookie_key = "K", cookie_value = "V"),
            package = "demo.v1", service = "Greets", crate = "::my_intercom"
        })
        .unwrap();
        let handshake = args.handshake.unwrap();
        assert_eq!(handshake.version.base10_parse::<u32>().unwrap(), 2);
        assert_eq!(handshake.cookie_key.value(), "K");
        assert_eq!(handshake.cookie_value.value(), "V");
        assert_eq!(args.package.unwrap().value(), "demo.v1");
        assert_eq!(args.service.unwrap().value(), "Greets");
        let krate = args.krate.unwrap();
        assert_eq!(quote!(#krate).to_string(), ":: my_intercom");
    }

    #[test]
    fn empty_arguments_are_fine() {
        let args: PluginArgs = syn::parse2(quote! {}).unwrap();
        assert!(args.handshake.is_none() && args.package.is_none());
    }

    #[test]
    fn suggests_the_nearest_key() {
        let err = syn::parse2::<PluginArgs>(quote! { pakage = "x" })
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "unknown argument `pakage`; did you mean `package`? expected one of: `handshake`, `package`, `service`, `crate`"
        );
        let err = syn::parse2::<PluginArgs>(quote! { handshake(versoin = 1) })
            .err()
            .unwrap();
        assert!(err.to_string().contains("did you mean `version`?"), "{err}");
    }

    #[test]
    fn rejects_duplicates_and_missing_handshake_keys() {
        let err = syn::parse2::<PluginArgs>(quote! { package = "a", package = "b" })
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "duplicate argument `package`");
        let err = syn::parse2::<PluginArgs>(quote! { handshake(version = 1) })
            .err()
            .unwrap();
        assert!(err.to_string().contains("needs `cookie_key`"), "{err}");
    }

    #[test]
    fn reads_the_trait_as_data() {
        let tr = PluginTrait::parse(quote! {
            /// Docs.
            pub trait Kv: Send + Sync + 'static {
                async fn get(&self, key: String) -> Result<Vec<u8>, Status>;
                async fn put(&self, mut key: String, value: Vec<u8>) -> Result<(), Status>;
                type Extra;
            }
        })
        .unwrap();
        assert_eq!(tr.ident, "Kv");
        assert_eq!(tr.methods.len(), 2);
        assert_eq!(tr.methods[1].args.len(), 2);
        assert_eq!(tr.methods[1].args[0].ident().unwrap(), "key");
        assert_eq!(tr.other_items.len(), 1);
        assert_eq!(tr.supertraits.len(), 3);
    }

    #[test]
    fn rejects_non_traits() {
        let err = PluginTrait::parse(quote! { struct NotATrait; })
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .starts_with("#[intercom::plugin] goes on a trait")
        );
    }
}
