//! The user's trait, re-emitted with every `async fn` in `async_trait`'s desugared form
//! (`fn m<'life0, 'async_trait>(&'life0 self, …) -> Pin<Box<dyn Future<Output = R> +
//! Send + 'async_trait>>`), so the trait stays usable as `Arc<dyn Trait>` (callbacks) and
//! implementations written with `#[intercom::async_trait]` match it. Emitting the form
//! here, with absolute paths, rather than through the `async_trait` attribute keeps the
//! output hygienic (`async_trait` spells `Box` unqualified).

use proc_macro2::TokenStream;
use quote::quote;

use crate::parse::RpcMethod;
use crate::validate::Service;

/// Lints the desugared signatures trip.
pub(crate) fn method_allows() -> TokenStream {
    quote! {
        #[allow(
            clippy::type_complexity,
            clippy::type_repetition_in_bounds,
            clippy::needless_lifetimes
        )]
    }
}

/// `fn name<'life0, 'async_trait>(&'life0 self, a: A, …) -> Pin<Box<dyn Future<…>>> where …`
pub(crate) fn signature(rpc: &RpcMethod) -> TokenStream {
    let ident = &rpc.ident;
    let args = rpc.args.iter().filter_map(|arg| {
        let name = arg.ident()?;
        let ty = &arg.ty;
        Some(quote!(#name: #ty))
    });
    let output = match &rpc.sig.output {
        syn::ReturnType::Default => quote!(()),
        syn::ReturnType::Type(_, ty) => quote!(#ty),
    };
    let allows = method_allows();
    quote! {
        #allows
        fn #ident<'life0, 'async_trait>(
            &'life0 self,
            #(#args),*
        ) -> ::core::pin::Pin<
            ::std::boxed::Box<
                dyn ::core::future::Future<Output = #output> + ::core::marker::Send + 'async_trait,
            >,
        >
        where
            'life0: 'async_trait,
            Self: 'async_trait
    }
}

/// The trait itself.
pub(crate) fn expand(service: &Service<'_>) -> TokenStream {
    let tr = service.tr;
    let attrs = &tr.attrs;
    let vis = &tr.vis;
    let ident = &tr.ident;
    let supertraits = &tr.supertraits;
    let methods = tr.methods.iter().map(|rpc| {
        let attrs = &rpc.attrs;
        let signature = signature(rpc);
        let body = match &rpc.default {
            None => quote!(;),
            Some(block) => {
                let output = match &rpc.sig.output {
                    syn::ReturnType::Default => quote!(()),
                    syn::ReturnType::Type(_, ty) => quote!(#ty),
                };
                // Re-bind arguments with their written patterns (`mut name`).
                let rebind = rpc.args.iter().filter_map(|arg| {
                    let name = arg.ident()?;
                    let pat = &arg.pat;
                    Some(quote!(let #pat = #name;))
                });
                quote! {
                    {
                        ::std::boxed::Box::pin(async move {
                            #(#rebind)*
                            let __ret: #output = #block;
                            #[allow(unreachable_code)]
                            __ret
                        })
                    }
                }
            }
        };
        quote! {
            #(#attrs)*
            #signature
            #body
        }
    });
    quote! {
        #(#attrs)*
        #vis trait #ident: #supertraits {
            #(#methods)*
        }
    }
}
