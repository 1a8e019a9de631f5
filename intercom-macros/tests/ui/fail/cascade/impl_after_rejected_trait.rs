// One real mistake in the trait (`&str` has no owned wire form); the user's impl, written
// as the docs say with `#[intercom::async_trait]`, must not add errors of its own.
#[intercom::plugin]
pub trait Greeter: Send + Sync + 'static {
    async fn greet(&self, name: &str) -> Result<String, intercom::Status>;
    async fn wave(&self) -> Result<(), intercom::Status>;
}

struct Friendly;

#[intercom::async_trait]
impl Greeter for Friendly {
    async fn greet(&self, name: &str) -> Result<String, intercom::Status> {
        Ok(format!("hello {name}"))
    }
    async fn wave(&self) -> Result<(), intercom::Status> {
        Ok(())
    }
}

fn main() {}
