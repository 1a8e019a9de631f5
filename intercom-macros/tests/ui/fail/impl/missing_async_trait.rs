// The impl of a plugin trait without `#[intercom::async_trait]`: rustc reports E0195
// ("lifetime parameters or bounds on method `greet` do not match the trait
// declaration"), which the guide's "Common errors" explains.
#[intercom::plugin]
pub trait Greeter: Send + Sync + 'static {
    async fn greet(&self, name: String) -> Result<String, intercom::Status>;
}

struct English;

impl Greeter for English {
    async fn greet(&self, name: String) -> Result<String, intercom::Status> {
        Ok(format!("Hello, {name}!"))
    }
}

fn main() {}
