//! Expansion snapshots (`src/snapshots/`, reviewed with `cargo insta review`) and
//! fallback behaviour.

use proc_macro2::TokenStream;
use quote::quote;

fn pretty(tokens: TokenStream) -> String {
    match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(e) => panic!("expansion does not parse: {e}\n{tokens}"),
    }
}

fn snapshot(name: &str, args: TokenStream, item: TokenStream) {
    let expanded = pretty(super::plugin(args, item));
    insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!(name, expanded);
    });
}

#[test]
fn greeter() {
    snapshot(
        "greeter",
        quote!(handshake(
            version = 1,
            cookie_key = "GREETER_PLUGIN",
            cookie_value = "hello"
        )),
        quote! {
            /// Greets people.
            pub trait Greeter: Send + Sync + 'static {
                /// Returns a greeting for `name`.
                async fn greet(&self, name: String) -> Result<String, intercom::Status>;
            }
        },
    );
}

#[test]
fn counter_with_callback() {
    snapshot(
        "counter",
        quote!(package = "proto", service = "Counter"),
        quote! {
            pub trait Counter: Send + Sync + 'static {
                async fn put(&self, add_server: Arc<dyn AddHelper>, key: String, value: i64) -> Result<(), Status>;
                async fn get(&self, key: String) -> Result<i64, Status>;
            }
        },
    );
}

#[test]
fn streams() {
    snapshot(
        "streams",
        quote!(),
        quote! {
            pub(crate) trait Files: Send + Sync + 'static {
                async fn read(&self, path: String, chunk: Option<u32>) -> Result<Streaming<Vec<u8>>, Status>;
                async fn write(&self, chunks: Streaming<Vec<u8>>) -> Result<u64, Status>;
                async fn echo(&self, lines: Streaming<String>) -> Result<Streaming<String>, Status>;
                async fn touch(&self, nothing: ()) -> Result<(), Status>;
            }
        },
    );
}

#[test]
fn expansion_is_deterministic() {
    let item = quote! {
        pub trait Kv: Send + Sync + 'static {
            async fn scan(&self, prefix: String) -> Result<std::collections::BTreeMap<String, Vec<u8>>, Status>;
            async fn put(&self, entries: std::collections::HashMap<String, Vec<u8>>) -> Result<(), Status>;
        }
    };
    let a = super::plugin(quote!(), item.clone()).to_string();
    let b = super::plugin(quote!(), item).to_string();
    assert_eq!(a, b);
}

#[test]
fn invalid_traits_keep_the_trait_and_stub_the_generated_types() {
    let out = pretty(super::plugin(
        quote!(),
        quote! {
            pub trait Bad: Send + Sync + 'static {
                fn sync_method(&self) -> Result<(), Status>;
            }
        },
    ));
    assert!(out.contains("compile_error!"), "{out}");
    assert!(
        out.contains("fn sync_method(&self) -> Result<(), Status>;"),
        "{out}"
    );
    assert!(out.contains("pub struct BadClient {}"), "{out}");
    assert!(out.contains("pub struct BadServer<"), "{out}");
    assert!(out.contains("pub struct BadPlugin {}"), "{out}");
}

#[test]
fn a_bad_attribute_still_checks_the_trait() {
    let out = super::plugin(
        quote!(pakage = "x"),
        quote! {
            pub trait Bad: Send + Sync + 'static {
                fn sync_method(&self) -> Result<(), Status>;
            }
        },
    )
    .to_string();
    assert!(out.contains("did you mean `package`"), "{out}");
    assert!(out.contains("must be `async fn`"), "{out}");
}
