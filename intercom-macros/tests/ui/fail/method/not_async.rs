#[intercom::plugin]
pub trait Greeter: Send + Sync + 'static {
    fn greet(&self, name: String) -> Result<String, intercom::Status>;
}

fn main() {}
