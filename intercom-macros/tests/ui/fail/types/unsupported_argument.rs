#[intercom::plugin]
pub trait Greeter: Send + Sync + 'static {
    async fn greet(&self, name: &str) -> Result<String, intercom::Status>;
}

fn main() {}
