//! Orchestration: parse → validate → emit each generated part (one file per part).

mod client;
mod fallback;
pub(crate) mod glue;
pub(crate) mod messages;
mod proto;
mod server;
mod trait_def;

use proc_macro2::TokenStream;
use quote::quote;

use crate::parse::{PluginArgs, PluginTrait};
use crate::validate::{self, Service};

/// `#[intercom::plugin(args)] item`, as tokens (callable from tests).
pub(crate) fn plugin(args: TokenStream, item: TokenStream) -> TokenStream {
    let tr = match PluginTrait::parse(item.clone()) {
        Ok(tr) => tr,
        Err(error) => {
            let error = error.into_compile_error();
            return quote!(#error #item);
        }
    };
    let (args, args_error) = match syn::parse2::<PluginArgs>(args) {
        Ok(args) => (args, None),
        Err(error) => (PluginArgs::default(), Some(error)),
    };
    let krate: syn::Path = args
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::intercom));
    match (validate::validate(&args, &tr), args_error) {
        (Ok(service), None) => expand(&service),
        (Ok(_), Some(error)) => fallback::expand(&tr, &krate, error),
        (Err(error), None) => fallback::expand(&tr, &krate, error),
        (Err(error), Some(mut all)) => {
            all.combine(error);
            fallback::expand(&tr, &krate, all)
        }
    }
}

/// Every generated item for a valid trait.
fn expand(service: &Service<'_>) -> TokenStream {
    let trait_def = trait_def::expand(service);
    let messages = messages::expand(service);
    let server = server::expand(service);
    let client = client::expand(service);
    let glue = glue::expand(service);
    quote! {
        #trait_def
        #messages
        #server
        #client
        #glue
    }
}

#[cfg(test)]
mod tests;
