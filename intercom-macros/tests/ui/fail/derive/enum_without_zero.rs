#[derive(intercom::Enumeration)]
pub enum Level {
    Low = 1,
    High = 2,
}

fn main() {}
