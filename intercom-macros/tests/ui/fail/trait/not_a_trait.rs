#[intercom::plugin]
pub struct Greeter;

fn main() {}
