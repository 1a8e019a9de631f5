use std::sync::Arc;

#[intercom::plugin]
pub trait Helper: Send + Sync + 'static {
    async fn help(&self) -> Result<i64, intercom::Status>;
}

#[intercom::plugin]
pub trait Factory: Send + Sync + 'static {
    async fn make(&self) -> Result<Arc<dyn Helper>, intercom::Status>;
}

fn main() {}
