//! What is emitted when the trait or the attribute is wrong: the errors, the trait as
//! written (through `async_trait`, as the real expansion desugars it, so an impl written
//! with `#[intercom::async_trait]` still matches), and empty stand-ins for the generated
//! types, so the user sees the real mistake and not a cascade of "cannot find type
//! `GreeterClient`" or "lifetimes do not match" (thiserror's `fallback.rs`).

use proc_macro2::TokenStream;
use quote::quote;

use crate::naming::Names;
use crate::parse::PluginTrait;

/// The errors plus stand-ins.
pub(crate) fn expand(tr: &PluginTrait, krate: &syn::Path, errors: syn::Error) -> TokenStream {
    let errors = errors.into_compile_error();
    let item = &tr.item;
    let vis = &tr.vis;
    let names = Names::new(&tr.ident, None, None);
    let client = names.client;
    let server = names.server;
    let plugin = names.plugin;
    quote! {
        #errors

        #[#krate::async_trait]
        #[allow(dead_code)]
        #item

        #[allow(dead_code)]
        #vis struct #client {}

        #[allow(dead_code)]
        #vis struct #server<T: ?::core::marker::Sized>(::core::marker::PhantomData<::std::sync::Arc<T>>);

        #[allow(dead_code)]
        #vis struct #plugin {}
    }
}
