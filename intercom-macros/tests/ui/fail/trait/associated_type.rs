#[intercom::plugin]
pub trait Store: Send + Sync + 'static {
    type Key;
    async fn get(&self, key: String) -> Result<Vec<u8>, intercom::Status>;
}

fn main() {}
