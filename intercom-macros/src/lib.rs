//! Procedural macros of [intercom](https://docs.rs/intercom): `#[intercom::plugin]`,
//! `#[derive(intercom::Message)]` and `#[derive(intercom::Enumeration)]`.
//!
//! Use them through `intercom`, which re-exports them and the runtime the generated code
//! calls (`intercom::__private`, not a public API); this crate's version is pinned with `=`.
//!
//! Layout: `parse` reads the attribute and the trait, `validate` checks them and builds
//! the model (collecting every error), `expand` emits one file per generated part,
//! `derive` holds the two derives; `naming` derives every name and `types` maps Rust types
//! to wire shapes.
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

mod derive;
mod expand;
mod naming;
mod parse;
mod types;
mod validate;

use proc_macro::TokenStream;

/// Turns a trait into a complete gRPC plugin interface: wire messages, a tonic server,
/// a typed client that implements the trait, the `GrpcPlugin` glue, callbacks over the
/// broker, streaming, and the `.proto` text.
///
/// ```no_run
/// use intercom::{Client, ClientConfig, PluginSet, ServeConfig, Status};
///
/// #[intercom::plugin(handshake(version = 1, cookie_key = "GREETER_PLUGIN", cookie_value = "hello"))]
/// pub trait Greeter: Send + Sync + 'static {
///     /// Returns a greeting for `name`.
///     async fn greet(&self, name: String) -> Result<String, Status>;
/// }
///
/// // The plugin: implement the trait (through `intercom::async_trait`) and serve it.
/// struct English;
///
/// #[intercom::async_trait]
/// impl Greeter for English {
///     async fn greet(&self, name: String) -> Result<String, Status> {
///         Ok(format!("Hello, {name}!"))
///     }
/// }
///
/// # async fn plugin() -> Result<(), intercom::ServeError> {
/// intercom::serve(
///     ServeConfig::new(GreeterPlugin::HANDSHAKE).plugin("greeter", GreeterPlugin::server(English)),
/// )
/// .await
/// # }
/// # async fn host() -> Result<(), Box<dyn std::error::Error>> {
/// // The host: dispense a `GreeterClient` and call it like a local `impl Greeter`.
/// let client = Client::new(
///     ClientConfig::new(
///         GreeterPlugin::HANDSHAKE,
///         PluginSet::new().with("greeter", GreeterPlugin::client()),
///         intercom::runtime::ProcessLauncher::new("./greeter-plugin"),
///     ),
/// );
/// let greeter: GreeterClient = client.connect().await?.dispense("greeter")?;
/// println!("{}", greeter.greet("world".into()).await?);
/// client.kill().await;
/// # Ok(()) }
/// ```
///
/// # The trait
///
/// - `Send + Sync + 'static` supertraits (and no others), no generics, no associated items.
/// - Every method is `async fn name(&self, arg: T, …) -> Result<R, E>`, not generic.
///   `E` is `intercom::Status` or any type with `E: Into<Status>` (server side) and
///   `E: From<Status>` (client side, for transport failures).
/// - The trait is re-emitted in `async_trait`'s form (each method returns
///   `Pin<Box<dyn Future<Output = …> + Send + 'async_trait>>`), so `Arc<dyn Trait>` works;
///   implement it with `#[intercom::async_trait] impl Trait for MyType { async fn … }`.
///   Default method bodies are allowed.
///
/// # Types
///
/// | Rust | protobuf |
/// |---|---|
/// | `i8`, `i16`, `i32` / `i64` | `int32` / `int64` (narrow types range-checked on decode) |
/// | `u8`, `u16`, `u32` / `u64` | `uint32` / `uint64` |
/// | `f32` / `f64` / `bool` / `String` | `float` / `double` / `bool` / `string` |
/// | `Vec<u8>`, `bytes::Bytes` | `bytes` |
/// | `Vec<T>` | `repeated T` (numbers packed) |
/// | `Option<T>` | `optional T` |
/// | `HashMap<K, V>`, `BTreeMap<K, V>` (`K`: integer, `bool`, `String`) | `map<K, V>` |
/// | `()` | nothing (`reserved` argument number, empty response) |
/// | `#[derive(intercom::Message)]` struct / `#[derive(intercom::Enumeration)]` enum | message / enum |
/// | `Arc<dyn Other>` argument, `Other` an `#[intercom::plugin]` trait | `uint32` broker id (a callback) |
/// | `intercom::Streaming<T>` as the only argument / as `R` | `stream` request / response |
///
/// Anything else is a compile error that names the type and lists these. Protobuf cannot
/// nest `Option`, `Vec` and maps (`Vec<Option<T>>`): wrap the inner value in a struct.
///
/// # Wire names (stable)
///
/// For `trait Greeter` with `async fn greet(&self, name: String, times: u32) -> Result<String, _>`:
/// - package `intercom.greeter` (snake case of the trait; `package = "…"` overrides), service
///   `Greeter` (`service = "…"` overrides), method `Greet` (PascalCase): the path is
///   `/intercom.greeter.Greeter/Greet`;
/// - request `GreetRequest { string name = 1; uint32 times = 2; }`: one field per
///   argument, numbered from 1 in declaration order;
/// - response `GreetResponse { string value = 1; }` (no field for `()`);
/// - streams carry one item per message, in field 1 (named after the argument, or `value`).
///
/// Renaming an argument changes only the `.proto` text; reordering arguments or changing a
/// type changes the wire.
///
/// # Generated items
///
/// For `trait Greeter` (all with the trait's visibility):
/// - `Greeter` itself, rewritten as above;
/// - `GreeterClient`: implements `Greeter` by calling the plugin; `new(channel)`,
///   `with_broker(channel, broker)`, `connect(uri)`; `Clone`;
/// - `GreeterServer<T: Greeter + ?Sized>`: the tonic service (`new`, `from_arc`,
///   `with_broker`), usable with any tonic server;
/// - `GreeterPlugin`: the `GrpcPlugin` for both sides: `server(implementation)`,
///   `from_arc(Arc<dyn Greeter>)`, `client()`, `SERVICE_NAME`, `proto()` (the `.proto` text)
///   and, with `handshake(...)`, the associated const `HANDSHAKE` (associated with the
///   plugin type, not the trait: a const on the trait would make `dyn Greeter` impossible);
/// - `#[doc(hidden)] mod __greeter_messages`: the request and response messages;
/// - an impl making `Arc<dyn Greeter>` a callback argument type for other plugin traits.
///
/// Method names that would collide with the generated inherent methods are rejected:
/// `new`, `connect`, `serve`, `into_server`, `from_arc`, `with_broker`.
///
/// # Callbacks
///
/// An argument `helper: Arc<dyn AddHelper>` (with `AddHelper` an `#[intercom::plugin]`
/// trait) is served by the caller on a fresh broker id for **the duration of the call**; the
/// callee dials it and gets an `Arc<dyn AddHelper>` backed by `AddHelperClient`. When the
/// call returns, the callback server shuts down gracefully (calls in flight finish, the
/// connection closes): a callee that keeps the `Arc` gets errors (`unavailable`) afterwards. Callbacks nest (a callback may receive callbacks) and work in both
/// directions, because the broker rides the plugin connection.
///
/// # Streaming
///
/// `intercom::Streaming<T>` as the `Ok` type streams results; as the only argument it
/// streams arguments; both make a bidirectional call. Streams are flow-controlled
/// (HTTP/2 windows; `Streaming::channel` adds a bounded buffer), and dropping a received stream cancels the call, which drops the producer's
/// stream on the other side.
///
/// # Errors and panics
///
/// `Err(e)` crosses as the `Status` `e.into()`; a panic in an implementation (or in a
/// stream it returned) becomes `internal` and the plugin keeps serving.
///
/// # Attribute arguments
///
/// `handshake(version = N, cookie_key = "…", cookie_value = "…")`, `package = "a.b"`,
/// `service = "Name"`, `crate = "::path::to::intercom"` (when `intercom` is renamed).
#[proc_macro_attribute]
pub fn plugin(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::plugin(args.into(), item.into()).into()
}

// The link to `plugin` is a relative URL, not an intra-doc link: rustdoc would resolve
// that to `intercom_macros::plugin`, which is broken on the page `intercom` re-exports.
/// Makes a struct with named fields a protobuf message usable in plugin interfaces.
///
/// Fields are numbered 1, 2, 3… in declaration order and encoded like method arguments
/// (see [`#[plugin]`](attr.plugin.html) for the types). Like prost's derive, it implements
/// `Default` (all fields default: don't derive it) and `intercom::prost::Message`; it needs
/// no `prost` dependency and no field attributes. `#[intercom(crate = "…")]` renames the
/// runtime.
///
/// ```
/// #[derive(intercom::Message, Debug, Clone, PartialEq)]
/// pub struct Point {
///     pub x: i32,
///     pub y: i32,
///     pub label: Option<String>,
/// }
/// ```
#[proc_macro_derive(Message, attributes(intercom))]
pub fn derive_message(input: TokenStream) -> TokenStream {
    derive::message(input.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Makes a C-like enum a protobuf enum usable in plugin interfaces.
///
/// Values are the discriminants (implicit ones count up as in Rust); one must be 0, the
/// default. Implements `Default`, `From<Enum> for i32` and `TryFrom<i32>`. An unknown
/// value on the wire is a decode error. In the `.proto` text values are prefixed with the
/// enum's name (`Color::DarkRed` → `COLOR_DARK_RED`).
///
/// ```
/// #[derive(intercom::Enumeration, Debug, Clone, Copy, PartialEq, Eq)]
/// pub enum Color {
///     Red,
///     Green,
///     Blue = 10,
/// }
/// ```
#[proc_macro_derive(Enumeration, attributes(intercom))]
pub fn derive_enumeration(input: TokenStream) -> TokenStream {
    derive::enumeration(input.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
