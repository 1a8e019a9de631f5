#[derive(intercom::Message)]
pub struct Pair(i32, i32);

fn main() {}
