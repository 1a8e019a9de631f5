use std::sync::Arc;

pub trait Helper: Send + Sync + 'static {
    fn help(&self) -> i64;
}

#[intercom::plugin]
pub trait Counter: Send + Sync + 'static {
    async fn put(&self, helper: Arc<dyn Helper>) -> Result<(), intercom::Status>;
}

fn main() {}
