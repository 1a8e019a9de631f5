#[intercom::plugin(pakage = "acme.v1")]
pub trait Greeter: Send + Sync + 'static {
    async fn greet(&self, name: String) -> Result<String, intercom::Status>;
}

fn main() {}
