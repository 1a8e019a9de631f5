use intercom::Streaming;

#[intercom::plugin]
pub trait Upload: Send + Sync + 'static {
    async fn upload(&self, name: String, chunks: Streaming<Vec<u8>>) -> Result<u64, intercom::Status>;
}

fn main() {}
