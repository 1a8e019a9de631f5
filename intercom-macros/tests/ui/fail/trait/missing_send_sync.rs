#[intercom::plugin]
pub trait Greeter {
    async fn greet(&self, name: String) -> Result<String, intercom::Status>;
}

fn main() {}
