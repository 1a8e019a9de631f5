#[intercom::plugin]
pub trait Counter: Send + Sync + 'static {
    async fn finish(self) -> Result<u64, intercom::Status>;
}

fn main() {}
