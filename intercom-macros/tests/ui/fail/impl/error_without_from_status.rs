// A method's own error type converts into a Status (to cross the wire) but not from
// one: the generated client must turn a failed call (a transport error, a dead plugin)
// into this type, so it needs `From<Status>` too; the guide's "Common errors" explains.
#[derive(Debug)]
pub struct GreetError(String);

impl From<GreetError> for intercom::Status {
    fn from(e: GreetError) -> Self {
        intercom::Status::invalid_argument(e.0)
    }
}

#[intercom::plugin]
pub trait Greeter: Send + Sync + 'static {
    async fn greet(&self, name: String) -> Result<String, GreetError>;
}

fn main() {}
