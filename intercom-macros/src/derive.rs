//! `#[derive(intercom::Message)]` and `#[derive(intercom::Enumeration)]`: user types as
//! protobuf messages and enums, encoded exactly like method arguments (the field code is
//! `expand::messages`'), with no `prost` dependency and no per-field annotations.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::spanned::Spanned as _;
use syn::{Data, DeriveInput, Expr, Fields, Ident, Lit, Path, UnOp};

use crate::expand::glue::rt;
use crate::expand::messages::{self, MessageField};
use crate::naming;
use crate::parse::unknown_key;
use crate::types::{self, Shape};
use crate::validate::{Ctxt, doc_lines};

/// The container attribute keys.
const KEYS: &[&str] = &["crate"];

/// Reads `#[intercom(crate = "…")]`.
fn krate(input: &DeriveInput) -> syn::Result<Path> {
    let mut krate = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("intercom")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                let path: syn::LitStr = meta.value()?.parse()?;
                krate = Some(path.parse()?);
                Ok(())
            } else {
                let key = meta
                    .path
                    .get_ident()
                    .cloned()
                    .unwrap_or_else(|| Ident::new("_", meta.path.span()));
                Err(unknown_key(&key, KEYS, "intercom attribute"))
            }
        })?;
    }
    Ok(krate.unwrap_or_else(|| syn::parse_quote!(::intercom)))
}

fn no_generics(cx: &mut Ctxt, input: &DeriveInput, what: &str) {
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(
            &input.generics,
            format!("{what} cannot be generic: each field needs one wire type"),
        );
    }
}

/// `#[derive(Message)]`.
pub(crate) fn message(input: TokenStream) -> syn::Result<TokenStream> {
    let input: DeriveInput = syn::parse2(input)?;
    let krate = krate(&input)?;
    let ident = &input.ident;
    let mut cx = Ctxt::new();
    no_generics(&mut cx, &input, "`#[derive(intercom::Message)]` types");
    let fields = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => named.named.iter().collect(),
            Fields::Unit => Vec::new(),
            Fields::Unnamed(unnamed) => {
                cx.error_spanned_by(unnamed, "`#[derive(intercom::Message)]` needs named fields: their names are the protobuf field names");
                Vec::new()
            }
        },
        _ => {
            cx.error_spanned_by(ident, "`#[derive(intercom::Message)]` is for structs; use `#[derive(intercom::Enumeration)]` for C-like enums");
            Vec::new()
        }
    };
    let mut shapes = Vec::new();
    let mut names = Vec::new();
    for field in &fields {
        let Some(field_ident) = &field.ident else {
            continue;
        };
        names.push(field_ident.to_string().trim_start_matches("r#").to_owned());
        match types::field_shape(&field.ty) {
            Ok(Shape::Unit) => {
                cx.error_spanned_by(&field.ty, "a `()` field carries nothing; remove it");
                shapes.push(Shape::Unit);
            }
            Ok(shape) => shapes.push(shape),
            Err(error) => {
                cx.push(error);
                shapes.push(Shape::Unit);
            }
        }
    }
    cx.check()?;

    let message_fields: Vec<MessageField<'_>> = fields
        .iter()
        .zip(&shapes)
        .zip(&names)
        .enumerate()
        .filter_map(|(index, ((field, shape), name))| {
            Some(MessageField {
                ident: field.ident.as_ref()?,
                name,
                number: u32::try_from(index + 1).ok()?,
                ty: &field.ty,
                shape,
                docs: doc_lines(&field.attrs),
            })
        })
        .collect();
    let impls = messages::message_impls(&krate, ident, &message_fields);
    let builder = format_ident!("__message");
    let proto_fields = messages::proto_fields(&krate, &builder, &message_fields);
    let proto_value = rt(&krate, quote!(ProtoValue));
    let proto_file = rt(&krate, quote!(ProtoFile));
    let wire_type = rt(&krate, quote!(WireType));
    let bytes = rt(&krate, quote!(bytes));
    let decode_context = rt(&krate, quote!(DecodeContext));
    let decode_error = rt(&krate, quote!(prost::DecodeError));
    let message_value = rt(&krate, quote!(message_value));
    let name = ident.to_string();
    let docs = doc_lines(&input.attrs);
    Ok(quote! {
        const _: () = {
            #impls

            #[automatically_derived]
            impl #proto_value for #ident {
                const WIRE_TYPE: #wire_type = #wire_type::LengthDelimited;

                fn proto_type(__file: &mut #proto_file) -> ::std::string::String {
                    __file.define_message(#name, &[#(#docs),*], |#builder| { #proto_fields })
                }

                fn is_default(&self) -> ::core::primitive::bool {
                    false
                }

                fn encode_value(&self, __buf: &mut impl #bytes::BufMut) {
                    #message_value::encode(self, __buf)
                }

                fn value_len(&self) -> ::core::primitive::usize {
                    #message_value::len(self)
                }

                fn merge_value(
                    &mut self,
                    __buf: &mut impl #bytes::Buf,
                    __ctx: #decode_context,
                ) -> ::core::result::Result<(), #decode_error> {
                    #message_value::merge(self, __buf, __ctx)
                }
            }
        };
    })
}

/// The value of `= N` / `= -N`.
fn discriminant(expr: &Expr) -> Option<i64> {
    match expr {
        Expr::Lit(lit) => match &lit.lit {
            Lit::Int(int) => int.base10_parse().ok(),
            _ => None,
        },
        Expr::Unary(unary) if matches!(unary.op, UnOp::Neg(_)) => {
            discriminant(&unary.expr).map(|v| -v)
        }
        Expr::Group(group) => discriminant(&group.expr),
        Expr::Paren(paren) => discriminant(&paren.expr),
        _ => None,
    }
}

/// `#[derive(Enumeration)]`.
pub(crate) fn enumeration(input: TokenStream) -> syn::Result<TokenStream> {
    let input: DeriveInput = syn::parse2(input)?;
    let krate = krate(&input)?;
    let ident = &input.ident;
    let mut cx = Ctxt::new();
    no_generics(&mut cx, &input, "`#[derive(intercom::Enumeration)]` enums");
    let Data::Enum(data) = &input.data else {
        cx.error_spanned_by(ident, "`#[derive(intercom::Enumeration)]` is for C-like enums; use `#[derive(intercom::Message)]` for structs");
        cx.check()?;
        return Ok(TokenStream::new());
    };
    let mut variants = Vec::new();
    let mut next = 0i64;
    for variant in &data.variants {
        if !matches!(variant.fields, Fields::Unit) {
            cx.error_spanned_by(&variant.fields, "protobuf enum variants carry no data; use a `#[derive(intercom::Message)]` struct with `Option` fields instead");
        }
        let value = match &variant.discriminant {
            None => next,
            Some((_, expr)) => match discriminant(expr) {
                Some(v) => v,
                None => {
                    cx.error_spanned_by(expr, "the discriminant must be an integer literal");
                    next
                }
            },
        };
        let Ok(number) = i32::try_from(value) else {
            cx.error_spanned_by(
                &variant.ident,
                format!("{value} does not fit a protobuf enum value (i32)"),
            );
            continue;
        };
        next = value + 1;
        variants.push((&variant.ident, number, doc_lines(&variant.attrs)));
    }
    let zero = variants
        .iter()
        .find(|(_, n, _)| *n == 0)
        .map(|(v, _, _)| *v);
    if zero.is_none() && !data.variants.is_empty() {
        cx.error_spanned_by(ident, "a protobuf enum needs a variant with the value 0: it is the default, sent when a field is absent");
    }
    if data.variants.is_empty() {
        cx.error_spanned_by(
            ident,
            "a protobuf enum needs at least one variant (with the value 0)",
        );
    }
    cx.check()?;
    let zero = zero.map_or_else(|| Ident::new("_", Span::call_site()), Clone::clone);

    let name = ident.to_string();
    let docs = doc_lines(&input.attrs);
    let to_i32: Vec<TokenStream> = variants
        .iter()
        .map(|(v, n, _)| quote!(#ident::#v => #n))
        .collect();
    let from_i32 = variants
        .iter()
        .map(|(v, n, _)| quote!(#n => ::core::result::Result::Ok(#ident::#v)));
    let proto_values = variants.iter().map(|(v, n, docs)| {
        let value_name = naming::enum_value_name(&name, &v.to_string());
        quote!((#value_name, #n, &[#(#docs),*]))
    });
    let proto_value = rt(&krate, quote!(ProtoValue));
    let proto_file = rt(&krate, quote!(ProtoFile));
    let wire_type = rt(&krate, quote!(WireType));
    let bytes = rt(&krate, quote!(bytes));
    let decode_context = rt(&krate, quote!(DecodeContext));
    let prost = rt(&krate, quote!(prost));
    let unknown = rt(&krate, quote!(unknown_enum_value));
    Ok(quote! {
        const _: () = {
            #[automatically_derived]
            impl ::core::default::Default for #ident {
                fn default() -> Self {
                    #ident::#zero
                }
            }

            #[automatically_derived]
            impl ::core::convert::From<#ident> for ::core::primitive::i32 {
                fn from(value: #ident) -> Self {
                    match value {
                        #(#to_i32,)*
                    }
                }
            }

            #[automatically_derived]
            impl ::core::convert::TryFrom<::core::primitive::i32> for #ident {
                type Error = #prost::UnknownEnumValue;

                fn try_from(value: ::core::primitive::i32) -> ::core::result::Result<Self, Self::Error> {
                    match value {
                        #(#from_i32,)*
                        _ => ::core::result::Result::Err(#prost::UnknownEnumValue(value)),
                    }
                }
            }

            #[automatically_derived]
            impl #proto_value for #ident {
                const WIRE_TYPE: #wire_type = #wire_type::Varint;

                fn proto_type(__file: &mut #proto_file) -> ::std::string::String {
                    __file.define_enum(#name, &[#(#docs),*], &[#(#proto_values),*])
                }

                fn is_default(&self) -> ::core::primitive::bool {
                    ::core::matches!(self, #ident::#zero)
                }

                fn encode_value(&self, __buf: &mut impl #bytes::BufMut) {
                    let __value: ::core::primitive::i32 = match self {
                        #(#to_i32,)*
                    };
                    #proto_value::encode_value(&__value, __buf)
                }

                fn value_len(&self) -> ::core::primitive::usize {
                    let __value: ::core::primitive::i32 = match self {
                        #(#to_i32,)*
                    };
                    #proto_value::value_len(&__value)
                }

                fn merge_value(
                    &mut self,
                    __buf: &mut impl #bytes::Buf,
                    __ctx: #decode_context,
                ) -> ::core::result::Result<(), #prost::DecodeError> {
                    let mut __value: ::core::primitive::i32 = 0;
                    #proto_value::merge_value(&mut __value, __buf, __ctx)?;
                    *self = ::core::convert::TryFrom::try_from(__value)
                        .map_err(|_| #unknown(#name, __value))?;
                    ::core::result::Result::Ok(())
                }
            }
        };
    })
}

#[cfg(test)]
mod tests {
    use quote::quote;

    fn pretty(tokens: proc_macro2::TokenStream) -> String {
        prettyplease::unparse(&syn::parse2(tokens).expect("the derive output parses"))
    }

    #[test]
    fn message_snapshot() {
        let out = super::message(quote! {
            /// A point.
            pub struct Point {
                /// Horizontal.
                pub x: i32,
                pub label: Option<String>,
                pub tags: Vec<String>,
                pub next: Option<Box<Point>>,
            }
        })
        .unwrap();
        insta::with_settings!({ snapshot_path => "snapshots", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!("derive_message", pretty(out));
        });
    }

    #[test]
    fn enumeration_snapshot() {
        let out = super::enumeration(quote! {
            /// A color.
            pub enum Color {
                Red,
                DarkGreen = 5,
                Blue,
            }
        })
        .unwrap();
        insta::with_settings!({ snapshot_path => "snapshots", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!("derive_enumeration", pretty(out));
        });
    }

    #[test]
    fn errors_are_collected() {
        let err = super::message(quote! {
            struct Bad<T> {
                a: &'static str,
                b: (),
                c: Vec<Option<T>>,
            }
        })
        .unwrap_err();
        let messages: Vec<String> = err.into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages.len(), 4, "{messages:#?}");
        let err = super::enumeration(quote! { enum E { A = 1, B(u8) } }).unwrap_err();
        assert_eq!(err.into_iter().count(), 2);
        let err = super::message(quote! { #[intercom(krate = "x")] struct S; }).unwrap_err();
        assert!(err.to_string().contains("did you mean `crate`?"), "{err}");
    }
}
