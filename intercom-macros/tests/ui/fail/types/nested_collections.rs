#[intercom::plugin]
pub trait Matrix: Send + Sync + 'static {
    async fn rows(&self, cells: Vec<Option<i32>>) -> Result<(), intercom::Status>;
}

fn main() {}
