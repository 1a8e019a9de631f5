//! Request and response messages: one struct per direction per method, in the hidden
//! `__{trait}_messages` module, with hand-written `prost::Message` impls (no prost derive,
//! so users need no `prost` dependency). The field code is shared with
//! `#[derive(intercom::Message)]`.
//!
//! Field numbers: arguments are numbered 1, 2, 3… in declaration order (an argument of
//! type `()` keeps its number, `reserved` in the `.proto`); the response's only field is
//! `value = 1`; a streaming argument or result carries one item per message in field 1.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{Ident, Path, Type};

use super::glue::rt;
use crate::types::Shape;
use crate::validate::{Field, Input, Method, Service};

/// One field as the message code needs it.
pub(crate) struct MessageField<'a> {
    /// The Rust field.
    pub(crate) ident: &'a Ident,
    /// The protobuf field name.
    pub(crate) name: &'a str,
    pub(crate) number: u32,
    /// The type as written (the field's type, except for callbacks, stored as `u32`).
    pub(crate) ty: &'a Type,
    pub(crate) shape: &'a Shape,
    pub(crate) docs: Vec<String>,
}

impl<'a> MessageField<'a> {
    pub(crate) fn from_field(field: &'a Field) -> Self {
        MessageField {
            ident: &field.ident,
            name: &field.name,
            number: field.number,
            ty: &field.ty,
            shape: &field.shape,
            docs: Vec::new(),
        }
    }

    /// The Rust type of the struct field (`None` for `()`, which has no field).
    pub(crate) fn storage(&self) -> Option<TokenStream> {
        match self.shape {
            Shape::Unit => None,
            Shape::Callback(_) => Some(quote!(::core::primitive::u32)),
            _ => {
                let ty = self.ty;
                Some(quote!(#ty))
            }
        }
    }

    /// `<T as ProtoValue>` / `<M as ProtoMap>`: what the runtime field operations are
    /// called on (`T` is the element type), and the suffix naming the operations.
    fn codec(&self, krate: &Path) -> Option<(TokenStream, &'static str)> {
        let value = rt(krate, quote!(ProtoValue));
        let (ty, kind) = match self.shape {
            Shape::Unit => return None,
            Shape::Singular(t) => (quote!(<#t as #value>), "singular"),
            Shape::Callback(_) => (quote!(<::core::primitive::u32 as #value>), "singular"),
            Shape::Optional(t) => (quote!(<#t as #value>), "optional"),
            Shape::Repeated(t) => (quote!(<#t as #value>), "repeated"),
            Shape::Map(t) => {
                let map = rt(krate, quote!(ProtoMap));
                (quote!(<#t as #map>), "map")
            }
        };
        Some((ty, kind))
    }
}

/// The struct fields.
pub(crate) fn struct_fields(fields: &[MessageField<'_>], public: bool) -> TokenStream {
    let fields = fields.iter().filter_map(|f| {
        let ident = f.ident;
        let ty = f.storage()?;
        let docs = f.docs.iter();
        let vis = public.then(|| quote!(pub));
        Some(quote! {
            #(#[doc = #docs])*
            #vis #ident: #ty,
        })
    });
    quote!(#(#fields)*)
}

/// `impl Default` and `impl prost::Message` for `ident` with `fields`.
pub(crate) fn message_impls(
    krate: &Path,
    ident: &Ident,
    fields: &[MessageField<'_>],
) -> TokenStream {
    let message = rt(krate, quote!(Message));
    let bytes = rt(krate, quote!(bytes));
    let wire_type = rt(krate, quote!(WireType));
    let decode_context = rt(krate, quote!(DecodeContext));
    let decode_error = rt(krate, quote!(prost::DecodeError));
    let skip = rt(krate, quote!(skip));

    let mut defaults = Vec::new();
    let mut encodes = Vec::new();
    let mut merges = Vec::new();
    let mut lens = Vec::new();
    for f in fields {
        let Some((codec, kind)) = f.codec(krate) else {
            continue;
        };
        let encode = format_ident!("encode_{}", kind);
        let merge = format_ident!("merge_{}", kind);
        let len = format_ident!("{}_len", kind);
        let ident = f.ident;
        let number = f.number;
        let default = match f.shape {
            Shape::Singular(_) | Shape::Callback(_) => quote!(#codec::field_default()),
            _ => quote!(::core::default::Default::default()),
        };
        defaults.push(quote!(#ident: #default));
        encodes.push(quote!(#codec::#encode(#number, &self.#ident, __buf);));
        merges
            .push(quote!(#number => #codec::#merge(__wire_type, &mut self.#ident, __buf, __ctx),));
        lens.push(quote!(#codec::#len(#number, &self.#ident)));
    }
    let encoded_len = if lens.is_empty() {
        quote!(0)
    } else {
        quote!(#(#lens)+*)
    };
    let default_body = if defaults.is_empty() {
        quote!(#ident {})
    } else {
        quote!(#ident { #(#defaults,)* })
    };
    quote! {
        #[automatically_derived]
        impl ::core::default::Default for #ident {
            fn default() -> Self {
                #default_body
            }
        }

        #[automatically_derived]
        impl #message for #ident {
            fn encode_raw(&self, __buf: &mut impl #bytes::BufMut) {
                #(#encodes)*
            }

            fn merge_field(
                &mut self,
                __tag: ::core::primitive::u32,
                __wire_type: #wire_type,
                __buf: &mut impl #bytes::Buf,
                __ctx: #decode_context,
            ) -> ::core::result::Result<(), #decode_error> {
                match __tag {
                    #(#merges)*
                    _ => #skip(__tag, __wire_type, __buf, __ctx),
                }
            }

            fn encoded_len(&self) -> ::core::primitive::usize {
                #encoded_len
            }

            fn clear(&mut self) {
                *self = ::core::default::Default::default();
            }
        }
    }
}

/// Statements adding `fields` to the `.proto` message builder `builder`.
pub(crate) fn proto_fields(
    krate: &Path,
    builder: &Ident,
    fields: &[MessageField<'_>],
) -> TokenStream {
    let statements = fields.iter().map(|f| {
        let name = f.name;
        let number = f.number;
        let docs = &f.docs;
        match (&f.shape, f.codec(krate)) {
            (Shape::Unit, _) | (_, None) => quote!(#builder.reserved(#name, #number);),
            (Shape::Callback(object), _) => {
                let plugin_trait = rt(krate, quote!(PluginTrait));
                quote! {
                    #builder.callback(#name, #number, &[#(#docs),*], <#object as #plugin_trait>::SERVICE_NAME);
                }
            }
            (_, Some((codec, kind))) => {
                let describe = format_ident!("describe_{}", kind);
                quote!(#codec::#describe(#builder, #name, #number, &[#(#docs),*]);)
            }
        }
    });
    quote!(#(#statements)*)
}

/// The fields of a method's request message (one item for client streaming).
pub(crate) fn request_fields<'a>(method: &'a Method<'_>) -> Vec<MessageField<'a>> {
    match &method.input {
        Input::Unary(fields) => fields.iter().map(MessageField::from_field).collect(),
        Input::Stream(field) => vec![MessageField::from_field(field)],
    }
}

/// The fields of a method's response message (none for `()`: an empty message, like
/// go-plugin's `Empty`).
pub(crate) fn response_fields<'a>(method: &'a Method<'_>) -> Vec<MessageField<'a>> {
    match method.output.field.shape {
        Shape::Unit => Vec::new(),
        _ => vec![MessageField::from_field(&method.output.field)],
    }
}

/// The hidden module with every method's messages.
pub(crate) fn expand(service: &Service<'_>) -> TokenStream {
    let krate = &service.krate;
    let vis = &service.tr.vis;
    let module = &service.names.messages;
    let trait_ident = &service.tr.ident;
    let package = &service.names.package;
    let messages = service.methods.iter().map(|method| {
        let cfgs = &method.cfgs;
        let method_ident = &method.rpc.ident;
        let request = &method.names.request;
        let response = &method.names.response;
        let request_fields = request_fields(method);
        let response_fields = response_fields(method);
        let request_doc = format!(
            " {} of [`{trait_ident}::{method_ident}`](super::{trait_ident}::{method_ident}) (`{package}.{request}`).",
            if method.client_streaming() { "One streamed argument" } else { "The arguments" },
        );
        let response_doc = format!(
            " {} of [`{trait_ident}::{method_ident}`](super::{trait_ident}::{method_ident}) (`{package}.{response}`).",
            if method.output.stream { "One streamed result" } else { "The result" },
        );
        let request_struct = struct_fields(&request_fields, true);
        let response_struct = struct_fields(&response_fields, true);
        let request_impls = message_impls(krate, request, &request_fields);
        let response_impls = message_impls(krate, response, &response_fields);
        quote! {
            #(#cfgs)*
            #[doc = #request_doc]
            pub struct #request {
                #request_struct
            }

            #(#cfgs)*
            #[doc = #response_doc]
            pub struct #response {
                #response_struct
            }

            #(#cfgs)*
            const _: () = {
                #request_impls
                #response_impls
            };
        }
    });
    let doc = format!(
        " Protobuf messages of the [`{trait_ident}`](super::{trait_ident}) plugin (generated by `#[intercom::plugin]`)."
    );
    quote! {
        #[doc = #doc]
        #[doc(hidden)]
        #[allow(unused_imports)]
        #vis mod #module {
            use super::*;

            #(#messages)*
        }
    }
}
