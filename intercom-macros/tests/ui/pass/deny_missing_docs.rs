// Everything generated is documented.
#![deny(missing_docs)]
//! A documented plugin crate.

use intercom::Status;

/// Documented.
#[intercom::plugin(handshake(version = 2, cookie_key = "K", cookie_value = "V"))]
pub trait Documented: Send + Sync + 'static {
    /// Documented too.
    async fn call(&self, input: Vec<u8>) -> Result<Option<u64>, Status>;
}

/// A documented message.
#[derive(intercom::Message)]
pub struct Doc {
    /// A field.
    pub field: String,
}

/// A documented enum.
#[derive(intercom::Enumeration)]
pub enum Kind {
    /// The default.
    Zero,
}

fn main() {}
