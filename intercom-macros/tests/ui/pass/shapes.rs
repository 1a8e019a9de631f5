// Callbacks, streams, defaults, cfg and deprecated methods, custom errors, `dyn` use.
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use intercom::prost::bytes::Bytes;
use intercom::{Status, Streaming};

#[derive(intercom::Message, Clone, Debug, PartialEq)]
pub struct Tree {
    pub name: String,
    pub children: Vec<Tree>,
    pub parent: Option<Box<Tree>>,
}

#[derive(intercom::Enumeration, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Low = -1,
    Normal = 0,
    High,
}

#[derive(Debug)]
pub struct MyError(Status);

impl From<MyError> for Status {
    fn from(e: MyError) -> Status {
        e.0
    }
}

impl From<Status> for MyError {
    fn from(s: Status) -> MyError {
        MyError(s)
    }
}

#[intercom::plugin]
pub trait Helper: Send + Sync + 'static {
    async fn help(&self, nested: Arc<dyn Helper>) -> Result<(), Status>;
}

#[intercom::plugin(package = "acme.shapes.v1", service = "Shapes")]
pub trait Shapes: Send + Sync + 'static {
    async fn scalars(&self, a: i8, b: u16, c: f32, d: bool, e: Bytes) -> Result<u64, MyError>;
    async fn collections(
        &self,
        a: Vec<Tree>,
        b: HashMap<u32, Level>,
        c: BTreeMap<String, Vec<u8>>,
        d: Option<Level>,
    ) -> Result<Vec<Vec<u8>>, Status>;
    async fn callback(&self, helper: Arc<dyn Helper>, also: Arc<dyn Helper>) -> Result<(), Status>;
    async fn download(&self) -> Result<Streaming<Tree>, Status>;
    async fn upload(&self, trees: Streaming<Option<Tree>>) -> Result<(), Status>;
    async fn chat(&self, mut lines: Streaming<String>) -> Result<Streaming<String>, Status>;
    /// Has a default body.
    async fn defaulted(&self, mut n: u32) -> Result<u32, Status> {
        n += 1;
        if n > 10 {
            return Err(Status::out_of_range("too big"));
        }
        Ok(n)
    }
    #[deprecated = "use scalars"]
    async fn old(&self) -> Result<(), Status>;
    #[cfg(any())]
    async fn compiled_out(&self, x: ThisTypeDoesNotExist) -> Result<(), Status>;
    async fn r#type(&self, r#match: String) -> Result<(), Status>;
}

fn use_dyn(shapes: Arc<dyn Shapes>, client: ShapesClient) -> Arc<dyn Shapes> {
    let _ = client;
    shapes
}

fn main() {
    let _ = use_dyn;
    let _ = ShapesPlugin::proto;
    let _ = HelperPlugin::client();
}
