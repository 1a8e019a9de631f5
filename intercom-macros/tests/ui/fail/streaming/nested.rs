use intercom::Streaming;

#[intercom::plugin]
pub trait Download: Send + Sync + 'static {
    async fn download(&self) -> Result<Option<Streaming<Vec<u8>>>, intercom::Status>;
}

fn main() {}
