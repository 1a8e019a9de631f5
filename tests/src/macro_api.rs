//! The `#[intercom::plugin]` interfaces of the `macro-plugin` test binary, shared by the
//! binary (which serves [`EchoImpl`]) and the `macro_*` and e2e tests (which call it).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use intercom::prost::bytes::Bytes;
use intercom::{Status, Streaming};

/// The handshake of the `macro-plugin` binary.
pub const PLUGIN_NAME: &str = "echo";

/// A nested message.
#[derive(intercom::Message, Debug, Clone, PartialEq)]
pub struct Point {
    pub x: i32,
    pub y: i32,
    pub label: Option<String>,
    pub tags: Vec<String>,
}

/// An enum (proto3: the zero value is the default).
#[derive(intercom::Enumeration, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Color {
    Red,
    Green,
    Blue = 7,
}

/// A linked list, to check recursive messages.
#[derive(intercom::Message, Debug, Clone, PartialEq)]
pub struct Node {
    pub value: u32,
    pub next: Option<Box<Node>>,
}

/// One field of every supported shape.
#[derive(intercom::Message, Debug, Clone, PartialEq)]
pub struct Everything {
    pub a: i8,
    pub b: i16,
    pub c: i32,
    pub d: i64,
    pub e: u8,
    pub f: u16,
    pub g: u32,
    pub h: u64,
    pub i: f32,
    pub j: f64,
    pub k: bool,
    pub s: String,
    pub bytes: Vec<u8>,
    pub shared: Bytes,
    pub numbers: Vec<i64>,
    pub floats: Vec<f64>,
    pub strings: Vec<String>,
    pub blobs: Vec<Vec<u8>>,
    pub maybe: Option<u64>,
    pub maybe_text: Option<String>,
    pub map: HashMap<String, i64>,
    pub ordered: BTreeMap<u32, Color>,
    pub points_by_name: HashMap<String, Point>,
    pub point: Point,
    pub maybe_point: Option<Point>,
    pub points: Vec<Point>,
    pub color: Color,
    pub colors: Vec<Color>,
    pub list: Option<Node>,
}

/// The test plugin's interface: echoes, streams, panics, callbacks.
#[intercom::plugin(handshake(
    version = 1,
    cookie_key = "INTERCOM_MACRO_TEST",
    cookie_value = "yes"
))]
pub trait Echo: Send + Sync + 'static {
    /// Returns `value` unchanged (every shape as a struct field).
    async fn echo(&self, value: Everything) -> Result<Everything, Status>;

    /// Packs every argument into an `Everything` (every shape as an argument).
    #[allow(clippy::too_many_arguments)]
    async fn pack(
        &self,
        a: i8,
        b: i16,
        c: i32,
        d: i64,
        e: u8,
        f: u16,
        g: u32,
        h: u64,
        i: f32,
        j: f64,
        k: bool,
        s: String,
        bytes: Vec<u8>,
        shared: Bytes,
        numbers: Vec<i64>,
        strings: Vec<String>,
        maybe: Option<u64>,
        map: HashMap<String, i64>,
        ordered: BTreeMap<u32, Color>,
        point: Point,
        maybe_point: Option<Point>,
        color: Color,
        nothing: (),
    ) -> Result<Everything, Status>;

    /// Results of each shape.
    async fn numbers(&self, value: Vec<i64>) -> Result<Vec<i64>, Status>;
    async fn maybe(&self, value: Option<String>) -> Result<Option<String>, Status>;
    async fn map(&self, value: HashMap<String, Point>) -> Result<HashMap<String, Point>, Status>;
    async fn blob(&self, value: Bytes) -> Result<Vec<u8>, Status>;
    async fn color(&self, value: Color) -> Result<Color, Status>;
    async fn nothing(&self) -> Result<(), Status>;

    /// Sleeps `millis`, then returns `n * n`.
    async fn slow_square(&self, n: u64, millis: u64) -> Result<u64, Status>;

    /// Panics with `message`.
    async fn panic(&self, message: String) -> Result<(), Status>;
    /// Yields 1, then panics.
    async fn panic_in_stream(&self) -> Result<Streaming<u32>, Status>;

    /// Counts from 0 forever (until the caller drops the stream), one value per `send`.
    async fn count(&self) -> Result<Streaming<u64>, Status>;
    /// Pages of `size` bytes forever (until the caller drops the stream).
    async fn pages(&self, size: u32) -> Result<Streaming<Vec<u8>>, Status>;
    /// How many `count` producers are still running.
    async fn producers(&self) -> Result<u32, Status>;
    /// How many values all `count` and `pages` producers have sent so far.
    async fn produced(&self) -> Result<u64, Status>;
    /// The sum of the streamed values.
    async fn sum(&self, values: Streaming<i64>) -> Result<i64, Status>;
    /// Each line upper-cased, as it arrives.
    async fn shout(&self, lines: Streaming<String>) -> Result<Streaming<String>, Status>;

    /// `middle.call(leaf, x) + 1000`, with a leaf served by the plugin (`leaf(x) = x + 1`).
    async fn nest(&self, middle: Arc<dyn Middle>, x: i64) -> Result<i64, Status>;
    /// Keeps `leaf` beyond the call.
    async fn keep(&self, leaf: Arc<dyn Leaf>) -> Result<(), Status>;
    /// Calls the kept leaf.
    async fn call_kept(&self, x: i64) -> Result<i64, Status>;

    /// Fails with the custom error type when `fail` is set.
    async fn fallible(&self, fail: bool) -> Result<u32, EchoError>;

    /// Logs an error line, then ends the plugin process with `code` in the middle of the
    /// call (never returns).
    async fn exit(&self, code: i32) -> Result<(), Status>;
}

/// A callback that receives a callback.
#[intercom::plugin]
pub trait Middle: Send + Sync + 'static {
    /// Combines `leaf(x)` somehow.
    async fn call(&self, leaf: Arc<dyn Leaf>, x: i64) -> Result<i64, Status>;
}

/// The innermost callback.
#[intercom::plugin]
pub trait Leaf: Send + Sync + 'static {
    /// Some function of `x`.
    async fn leaf(&self, x: i64) -> Result<i64, Status>;
}

/// A custom error type: `Into<Status>` for servers, `From<Status>` for clients.
#[derive(Debug, PartialEq)]
pub enum EchoError {
    /// The plugin refused.
    Refused(String),
    /// The call failed for another reason.
    Remote(tonic::Code, String),
}

impl From<EchoError> for Status {
    fn from(error: EchoError) -> Self {
        match error {
            EchoError::Refused(why) => Status::permission_denied(why),
            EchoError::Remote(code, message) => Status::new(code, message),
        }
    }
}

impl From<Status> for EchoError {
    fn from(status: Status) -> Self {
        EchoError::Remote(status.code(), status.message().to_owned())
    }
}

/// The plugin's implementation.
#[derive(Default)]
pub struct EchoImpl {
    producers: Arc<AtomicU32>,
    produced: Arc<std::sync::atomic::AtomicU64>,
    kept: std::sync::Mutex<Option<Arc<dyn Leaf>>>,
}

/// The plugin's leaf: `x + 1`.
pub struct PlusOne;

#[intercom::async_trait]
impl Leaf for PlusOne {
    async fn leaf(&self, x: i64) -> Result<i64, Status> {
        Ok(x + 1)
    }
}

/// Decrements a counter when dropped (a producer task ended, however it ended).
struct Running(Arc<AtomicU32>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[intercom::async_trait]
impl Echo for EchoImpl {
    async fn echo(&self, value: Everything) -> Result<Everything, Status> {
        Ok(value)
    }

    async fn pack(
        &self,
        a: i8,
        b: i16,
        c: i32,
        d: i64,
        e: u8,
        f: u16,
        g: u32,
        h: u64,
        i: f32,
        j: f64,
        k: bool,
        s: String,
        bytes: Vec<u8>,
        shared: Bytes,
        numbers: Vec<i64>,
        strings: Vec<String>,
        maybe: Option<u64>,
        map: HashMap<String, i64>,
        ordered: BTreeMap<u32, Color>,
        point: Point,
        maybe_point: Option<Point>,
        color: Color,
        nothing: (),
    ) -> Result<Everything, Status> {
        let () = nothing;
        Ok(Everything {
            a,
            b,
            c,
            d,
            e,
            f,
            g,
            h,
            i,
            j,
            k,
            s,
            bytes,
            shared,
            numbers,
            strings,
            maybe,
            map,
            ordered,
            point,
            maybe_point,
            color,
            ..Everything::default()
        })
    }

    async fn numbers(&self, value: Vec<i64>) -> Result<Vec<i64>, Status> {
        Ok(value)
    }

    async fn maybe(&self, value: Option<String>) -> Result<Option<String>, Status> {
        Ok(value)
    }

    async fn map(&self, value: HashMap<String, Point>) -> Result<HashMap<String, Point>, Status> {
        Ok(value)
    }

    async fn blob(&self, value: Bytes) -> Result<Vec<u8>, Status> {
        Ok(value.to_vec())
    }

    async fn color(&self, value: Color) -> Result<Color, Status> {
        Ok(value)
    }

    async fn nothing(&self) -> Result<(), Status> {
        Ok(())
    }

    async fn slow_square(&self, n: u64, millis: u64) -> Result<u64, Status> {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Ok(n * n)
    }

    async fn panic(&self, message: String) -> Result<(), Status> {
        panic!("{message}");
    }

    async fn panic_in_stream(&self) -> Result<Streaming<u32>, Status> {
        Ok(Streaming::from_iter([1u32, 2]).map_values(|n| {
            assert!(n < 2, "the stream panicked at {n}");
            n
        }))
    }

    async fn count(&self) -> Result<Streaming<u64>, Status> {
        let (tx, values) = Streaming::channel(2);
        self.producers.fetch_add(1, Ordering::SeqCst);
        let running = Running(Arc::clone(&self.producers));
        let produced = Arc::clone(&self.produced);
        tokio::spawn(async move {
            let _running = running;
            for n in 0u64.. {
                if tx.send(n).await.is_err() {
                    return;
                }
                produced.fetch_add(1, Ordering::SeqCst);
            }
        });
        Ok(values)
    }

    async fn pages(&self, size: u32) -> Result<Streaming<Vec<u8>>, Status> {
        let (tx, pages) = Streaming::channel(2);
        let produced = Arc::clone(&self.produced);
        tokio::spawn(async move {
            for n in 0u64.. {
                let page = vec![(n % 251) as u8; size as usize];
                if tx.send(page).await.is_err() {
                    return;
                }
                produced.fetch_add(1, Ordering::SeqCst);
            }
        });
        Ok(pages)
    }

    async fn producers(&self) -> Result<u32, Status> {
        Ok(self.producers.load(Ordering::SeqCst))
    }

    async fn produced(&self) -> Result<u64, Status> {
        Ok(self.produced.load(Ordering::SeqCst))
    }

    async fn sum(&self, mut values: Streaming<i64>) -> Result<i64, Status> {
        let mut sum = 0i64;
        while let Some(v) = values.message().await? {
            sum += v;
        }
        Ok(sum)
    }

    async fn shout(&self, lines: Streaming<String>) -> Result<Streaming<String>, Status> {
        Ok(lines.map_values(|line| line.to_uppercase()))
    }

    async fn nest(&self, middle: Arc<dyn Middle>, x: i64) -> Result<i64, Status> {
        Ok(middle.call(Arc::new(PlusOne), x).await? + 1000)
    }

    async fn keep(&self, leaf: Arc<dyn Leaf>) -> Result<(), Status> {
        // Works during the call…
        leaf.leaf(0).await?;
        *self.kept.lock().unwrap_or_else(|p| p.into_inner()) = Some(leaf);
        Ok(())
    }

    async fn call_kept(&self, x: i64) -> Result<i64, Status> {
        let leaf = self.kept.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match leaf {
            // …but not after it: the caller stopped serving it.
            Some(leaf) => leaf.leaf(x).await,
            None => Err(Status::failed_precondition("nothing kept")),
        }
    }

    async fn fallible(&self, fail: bool) -> Result<u32, EchoError> {
        if fail {
            Err(EchoError::Refused("asked to fail".into()))
        } else {
            Ok(7)
        }
    }

    async fn exit(&self, code: i32) -> Result<(), Status> {
        tracing::error!(code, "the plugin gives up");
        std::process::exit(code)
    }
}
