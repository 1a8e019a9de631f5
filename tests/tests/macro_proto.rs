//! `{Trait}Plugin::proto()` is a real `.proto` file: protox compiles it, it matches the
//! checked-in `fixtures/proto/macro_interop.proto` (from which build.rs generates a
//! tonic/prost server, as a plugin in another language would be generated), and that
//! generated server interoperates with the macro-generated client.
//!
//! After an intended change of the generated text, regenerate the fixture with
//! `INTERCOM_BLESS=1 cargo test -p intercom-tests --test macro_proto`, then read the diff.

use std::collections::HashMap;
use std::path::PathBuf;

use intercom::{Status, Streaming};

/// A message type of the interface.
#[derive(intercom::Message, Debug, Clone, PartialEq)]
pub struct Point {
    /// Horizontal.
    pub x: i32,
    /// Vertical.
    pub y: i32,
    pub label: Option<String>,
}

/// An enum of the interface.
#[derive(intercom::Enumeration, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    Red,
    DarkGreen,
    Blue = 5,
}

/// An interface exercising every shape on the wire.
#[intercom::plugin(package = "interop.v1")]
pub trait Interop: Send + Sync + 'static {
    /// Scalars in, a string out.
    async fn describe(
        &self,
        name: String,
        age: u32,
        height: f64,
        active: bool,
        tags: Vec<String>,
    ) -> Result<String, Status>;
    /// A message and an enum in, an optional message out.
    async fn mirror(&self, point: Point, color: Color) -> Result<Option<Point>, Status>;
    /// A map in, a repeated field out.
    async fn totals(
        &self,
        counts: HashMap<String, i64>,
        scale: Option<i64>,
    ) -> Result<Vec<i64>, Status>;
    /// Nothing in, nothing out.
    async fn ping(&self) -> Result<(), Status>;
    /// A server stream.
    async fn range(&self, from: u64, to: u64) -> Result<Streaming<u64>, Status>;
    /// A client stream.
    async fn concat(&self, parts: Streaming<Vec<u8>>) -> Result<Vec<u8>, Status>;
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/proto/macro_interop.proto")
}

#[test]
fn the_proto_text_matches_the_fixture() {
    let text = InteropPlugin::proto();
    if std::env::var_os("INTERCOM_BLESS").is_some() {
        std::fs::write(fixture(), &text).expect("failed to write the fixture");
    }
    let expected = std::fs::read_to_string(fixture()).expect("the fixture exists");
    assert_eq!(
        text, expected,
        "the generated .proto changed; if intended, rerun with INTERCOM_BLESS=1 and review the diff"
    );
}

#[test]
fn protox_compiles_the_proto_text() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("interop.proto"), InteropPlugin::proto()).unwrap();
    let files = protox::compile(["interop.proto"], [dir.path()])
        .expect("protox compiles the generated text");
    let file = files
        .file
        .iter()
        .find(|f| f.name() == "interop.proto")
        .unwrap();
    assert_eq!(file.package(), "interop.v1");
    let service = &file.service[0];
    assert_eq!(service.name(), "Interop");
    let methods: Vec<_> = service.method.iter().map(|m| m.name()).collect();
    assert_eq!(
        methods,
        ["Describe", "Mirror", "Totals", "Ping", "Range", "Concat"]
    );
    assert!(service.method[4].server_streaming());
    assert!(service.method[5].client_streaming());
    let messages: Vec<_> = file.message_type.iter().map(|m| m.name()).collect();
    assert!(
        messages.contains(&"Point") && messages.contains(&"DescribeRequest"),
        "{messages:?}"
    );
    assert_eq!(file.enum_type[0].value[1].name(), "COLOR_DARK_GREEN");
}

/// The tonic/prost code build.rs generated from the fixture.
mod generated {
    #![allow(missing_docs, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/macro_interop/interop.v1.rs"));
}

/// A server written against the *generated* code, not the macro.
struct Generated;

#[tonic::async_trait]
impl generated::interop_server::Interop for Generated {
    async fn describe(
        &self,
        request: tonic::Request<generated::DescribeRequest>,
    ) -> Result<tonic::Response<generated::DescribeResponse>, Status> {
        let r = request.into_inner();
        Ok(tonic::Response::new(generated::DescribeResponse {
            value: format!(
                "{} ({}, {:.1} m, active={}) [{}]",
                r.name,
                r.age,
                r.height,
                r.active,
                r.tags.join(",")
            ),
        }))
    }

    async fn mirror(
        &self,
        request: tonic::Request<generated::MirrorRequest>,
    ) -> Result<tonic::Response<generated::MirrorResponse>, Status> {
        let r = request.into_inner();
        let point = r.point.unwrap_or_default();
        let color = generated::Color::try_from(r.color)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(tonic::Response::new(generated::MirrorResponse {
            value: (color != generated::Color::Red).then(|| generated::Point {
                x: point.y,
                y: point.x,
                label: point
                    .label
                    .map(|l| format!("{l} ({})", color.as_str_name())),
            }),
        }))
    }

    async fn totals(
        &self,
        request: tonic::Request<generated::TotalsRequest>,
    ) -> Result<tonic::Response<generated::TotalsResponse>, Status> {
        let r = request.into_inner();
        let mut values: Vec<i64> = r
            .counts
            .values()
            .map(|v| v * r.scale.unwrap_or(1))
            .collect();
        values.sort_unstable();
        Ok(tonic::Response::new(generated::TotalsResponse {
            value: values,
        }))
    }

    async fn ping(
        &self,
        _: tonic::Request<generated::PingRequest>,
    ) -> Result<tonic::Response<generated::PingResponse>, Status> {
        Ok(tonic::Response::new(generated::PingResponse {}))
    }

    type RangeStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<generated::RangeResponse, Status>> + Send>,
    >;

    async fn range(
        &self,
        request: tonic::Request<generated::RangeRequest>,
    ) -> Result<tonic::Response<Self::RangeStream>, Status> {
        let r = request.into_inner();
        let values = (r.from..r.to).map(|value| Ok(generated::RangeResponse { value }));
        Ok(tonic::Response::new(Box::pin(futures::stream::iter(
            values,
        ))))
    }

    async fn concat(
        &self,
        request: tonic::Request<tonic::Streaming<generated::ConcatRequest>>,
    ) -> Result<tonic::Response<generated::ConcatResponse>, Status> {
        let mut parts = request.into_inner();
        let mut value = Vec::new();
        while let Some(part) = parts.message().await? {
            value.extend(part.parts);
        }
        Ok(tonic::Response::new(generated::ConcatResponse { value }))
    }
}

#[tokio::test]
async fn the_macro_client_talks_to_a_server_generated_from_the_proto() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(generated::interop_server::InteropServer::new(Generated))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let client = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        InteropClient::connect(format!("http://{addr}")),
    )
    .await
    .expect("connected in time")
    .expect("connected");

    let described = client
        .describe("Ada".into(), 36, 1.7, true, vec!["a".into(), "b".into()])
        .await
        .unwrap();
    assert_eq!(described, "Ada (36, 1.7 m, active=true) [a,b]");

    let point = Point {
        x: 1,
        y: -2,
        label: Some("p".into()),
    };
    assert_eq!(
        client.mirror(point.clone(), Color::Red).await.unwrap(),
        None
    );
    assert_eq!(
        client.mirror(point, Color::DarkGreen).await.unwrap(),
        Some(Point {
            x: -2,
            y: 1,
            label: Some("p (COLOR_DARK_GREEN)".into())
        })
    );

    let counts = HashMap::from([("a".to_owned(), 3), ("b".to_owned(), -1)]);
    assert_eq!(
        client.totals(counts.clone(), None).await.unwrap(),
        vec![-1, 3]
    );
    assert_eq!(
        client.totals(counts, Some(10)).await.unwrap(),
        vec![-10, 30]
    );

    client.ping().await.unwrap();

    let mut range = client.range(3, 7).await.unwrap();
    let mut got = Vec::new();
    while let Some(v) = range.message().await.unwrap() {
        got.push(v);
    }
    assert_eq!(got, [3, 4, 5, 6]);

    let parts = Streaming::from_iter([b"he".to_vec(), Vec::new(), b"llo".to_vec()]);
    assert_eq!(client.concat(parts).await.unwrap(), b"hello");

    server.abort();
}
