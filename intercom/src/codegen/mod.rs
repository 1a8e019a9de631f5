//! Runtime support for the code `#[intercom::plugin]` and the `Message`/`Enumeration`
//! derives generate; reached only through [`crate::__private`].

pub(crate) mod client_core;
pub(crate) mod proto_text;
pub(crate) mod rpc;
pub(crate) mod wire;
