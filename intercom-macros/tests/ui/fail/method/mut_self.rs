#[intercom::plugin]
pub trait Counter: Send + Sync + 'static {
    async fn increment(&mut self) -> Result<u64, intercom::Status>;
}

fn main() {}
