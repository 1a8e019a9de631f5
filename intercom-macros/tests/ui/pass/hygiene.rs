// Generated code spells every path absolutely: it compiles without the prelude and with
// intercom renamed (`crate = "…"`).
#![no_implicit_prelude]

extern crate intercom as some_random_other_name;
extern crate std;

pub mod api {
    #[::some_random_other_name::plugin(crate = "::some_random_other_name", package = "hygiene")]
    pub trait Hygienic: ::std::marker::Send + ::std::marker::Sync + 'static {
        async fn everything(
            &self,
            text: ::std::string::String,
            list: ::std::vec::Vec<i64>,
            maybe: ::std::option::Option<Point>,
            map: ::std::collections::HashMap<::std::string::String, Kind>,
            back: ::std::sync::Arc<dyn Callback>,
        ) -> ::std::result::Result<(), ::some_random_other_name::Status>;

        async fn stream(
            &self,
            items: ::some_random_other_name::Streaming<u32>,
        ) -> ::std::result::Result<::some_random_other_name::Streaming<Point>, ::some_random_other_name::Status>;
    }

    #[::some_random_other_name::plugin(crate = "::some_random_other_name")]
    pub trait Callback: ::std::marker::Send + ::std::marker::Sync + 'static {
        async fn back(&self) -> ::std::result::Result<(), ::some_random_other_name::Status>;
    }

    #[derive(::some_random_other_name::Message)]
    #[intercom(crate = "::some_random_other_name")]
    pub struct Point {
        pub x: i32,
    }

    #[derive(::some_random_other_name::Enumeration)]
    #[intercom(crate = "::some_random_other_name")]
    pub enum Kind {
        A,
        B,
    }
}

fn main() {
    let _ = api::HygienicPlugin::client();
}
