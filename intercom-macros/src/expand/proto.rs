//! The body of `{Trait}Plugin::proto()`: the `.proto` text, built at run time by the
//! runtime's `ProtoFile` from the same types the messages encode (user types contribute
//! their own definitions through `ProtoValue::proto_type`).

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::glue::rt;
use super::messages::{self, MessageField};
use crate::validate::{Method, Service, doc_lines};

/// The statements building and returning the text.
pub(crate) fn expand(service: &Service<'_>) -> TokenStream {
    let krate = &service.krate;
    let proto_file = rt(krate, quote!(ProtoFile));
    let rpc = rt(krate, quote!(Rpc));
    let package = &service.names.package;
    let service_name = &service.names.service;
    let service_docs = doc_lines(&service.tr.attrs);
    let builder = format_ident!("__message");

    let rpcs = service.methods.iter().map(|method| {
        let cfgs = &method.cfgs;
        let name = &method.names.rpc;
        let docs = doc_lines(&method.rpc.attrs);
        let request = method.names.request.to_string();
        let response = method.names.response.to_string();
        let client_streaming = method.client_streaming();
        let server_streaming = method.output.stream;
        quote! {
            #(#cfgs)*
            __rpcs.push(#rpc {
                name: #name,
                doc: &[#(#docs),*],
                request: #request,
                client_streaming: #client_streaming,
                response: #response,
                server_streaming: #server_streaming,
            });
        }
    });
    let messages = service.methods.iter().map(|method| {
        let cfgs = &method.cfgs;
        let request = method.names.request.to_string();
        let response = method.names.response.to_string();
        let (request_doc, response_doc) = message_docs(method);
        let request_fields = proto_fields(service, &builder, &messages::request_fields(method));
        let response_fields = proto_fields(service, &builder, &messages::response_fields(method));
        quote! {
            #(#cfgs)*
            __file.message(#request, &[#request_doc], |#builder| { #request_fields });
            #(#cfgs)*
            __file.message(#response, &[#response_doc], |#builder| { #response_fields });
        }
    });
    quote! {
        let mut __file = #proto_file::new(#package);
        let mut __rpcs = ::std::vec::Vec::new();
        #(#rpcs)*
        __file.service(#service_name, &[#(#service_docs),*], &__rpcs);
        #(#messages)*
        __file.finish()
    }
}

fn proto_fields(
    service: &Service<'_>,
    builder: &proc_macro2::Ident,
    fields: &[MessageField<'_>],
) -> TokenStream {
    messages::proto_fields(&service.krate, builder, fields)
}

/// The comments on a method's request and response messages.
fn message_docs(method: &Method<'_>) -> (String, String) {
    let rpc = &method.names.rpc;
    let request = if method.client_streaming() {
        format!(" One streamed argument of {rpc}.")
    } else {
        format!(" The arguments of {rpc}.")
    };
    let response = if method.output.stream {
        format!(" One streamed result of {rpc}.")
    } else {
        format!(" The result of {rpc}.")
    };
    (request, response)
}
