#[intercom::plugin]
pub trait Greeter: Send + Sync + 'static {
    async fn greet(&self, name: String) -> String;
}

fn main() {}
