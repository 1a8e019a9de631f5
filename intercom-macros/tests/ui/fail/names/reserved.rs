#[intercom::plugin]
pub trait Factory: Send + Sync + 'static {
    async fn new(&self) -> Result<(), intercom::Status>;
    async fn connect(&self, to: String) -> Result<(), intercom::Status>;
}

fn main() {}
