#[intercom::plugin(handshake(version = 1, cookie_kye = "K", cookie_value = "V"))]
pub trait Greeter: Send + Sync + 'static {
    async fn greet(&self, name: String) -> Result<String, intercom::Status>;
}

fn main() {}
