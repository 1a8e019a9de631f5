// Private and crate-visible traits with private message types, in nested modules.
mod inner {
    use intercom::Status;

    #[derive(intercom::Message)]
    struct Secret {
        value: String,
    }

    #[intercom::plugin]
    trait Private: Send + Sync + 'static {
        async fn reveal(&self, secret: Secret) -> Result<Option<Secret>, Status>;
    }

    #[intercom::plugin(package = "inner.v1")]
    pub(crate) trait Shared: Send + Sync + 'static {
        async fn share(&self, secrets: Vec<String>) -> Result<(), Status>;
    }

    pub(crate) fn check() {
        let _ = PrivatePlugin::client();
        let _ = SharedPlugin::proto();
        let _ = Secret { value: String::new() }.value;
    }
}

fn main() {
    inner::check();
    let _ = inner::SharedPlugin::client();
}
