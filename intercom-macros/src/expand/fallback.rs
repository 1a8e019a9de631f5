//! What is emitted when the trait or the attribute is wrong: the errors, the trait
//! exactly as written, and empty stand-ins for the generated types, so the user sees the
//! real mistake and not a cascade of "cannot find type `GreeterClient`" (thiserror's
//! `fallback.rs`).

use proc_macro2::TokenStream;
use quote::quote;

use crate::naming::Names;
use crate::parse::PluginTrait;

/// The errors plus stand-ins.
pub(crate) fn expand(tr: &PluginTrait, errors: syn::Error) -> TokenStream {
    let errors = errors.into_compile_error();
    let item = &tr.item;
    let vis = &tr.vis;
    let names = Names::new(&tr.ident, None, None);
    let client = names.client;
    let server = names.server;
    let plugin = names.plugin;
    quote! {
        #errors

        #[allow(async_fn_in_trait, dead_code)]
        #item

        #[allow(dead_code)]
        #vis struct #client {}

        #[allow(dead_code)]
        #vis struct #server<T: ?::core::marker::Sized>(::core::marker::PhantomData<::std::sync::Arc<T>>);

        #[allow(dead_code)]
        #vis struct #plugin {}
    }
}
