pub struct Point {
    pub x: i32,
}

#[intercom::plugin]
pub trait Geometry: Send + Sync + 'static {
    async fn nearest(&self, point: Point) -> Result<i32, intercom::Status>;
}

fn main() {}
