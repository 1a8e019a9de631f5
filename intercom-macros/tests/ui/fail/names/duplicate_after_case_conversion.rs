#[intercom::plugin]
pub trait Store: Send + Sync + 'static {
    async fn get_value(&self) -> Result<i64, intercom::Status>;
    #[allow(non_snake_case)]
    async fn getValue(&self) -> Result<i64, intercom::Status>;
}

fn main() {}
