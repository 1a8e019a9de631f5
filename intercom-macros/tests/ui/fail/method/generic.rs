#[intercom::plugin]
pub trait Greeter: Send + Sync + 'static {
    async fn greet<T>(&self, name: T) -> Result<String, intercom::Status>;
}

fn main() {}
