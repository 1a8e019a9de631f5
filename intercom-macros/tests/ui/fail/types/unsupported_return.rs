#[intercom::plugin]
pub trait Geometry: Send + Sync + 'static {
    async fn origin(&self) -> Result<(i32, i32), intercom::Status>;
}

fn main() {}
