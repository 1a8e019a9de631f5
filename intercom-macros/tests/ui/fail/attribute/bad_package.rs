#[intercom::plugin(package = "acme greeter")]
pub trait Greeter: Send + Sync + 'static {
    async fn greet(&self, name: String) -> Result<String, intercom::Status>;
}

fn main() {}
