//! [`include_plugin!`](crate::include_plugin), the companion of `intercom-build`.

/// Includes the intercom glue `intercom-build` generated for a proto package
/// (`OUT_DIR/<package>.intercom.rs`): the `…Plugin` types, plugin-name constants,
/// `HANDSHAKE` and callback helpers. Put it in the same module as tonic's code for that
/// package, which the glue refers to by relative path:
///
/// ```ignore
/// // `ignore`: needs a build script that ran intercom-build to fill OUT_DIR.
/// pub mod proto {
///     intercom::tonic::include_proto!("proto");
///     intercom::include_plugin!("proto");
/// }
/// ```
#[macro_export]
macro_rules! include_plugin {
    ($package:literal) => {
        include!(concat!(env!("OUT_DIR"), "/", $package, ".intercom.rs"));
    };
}
