//! Connections to a plugin process: dialers, the gRPC channel and broker session over one
//! socket (multiplexed or classic), and the pumps that carry the plugin's stdio and stderr
//! into the host. Every runtime connects through here; nothing here knows how a plugin
//! was started.

use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tonic::transport::Channel;

use crate::broker::{self, GrpcBroker, Mode, MuxSlot, Session, Side};
use crate::handshake::Network;
use crate::mux::{Mux, Role};
use crate::plugin::BoxError;
use crate::stderr_tail::StderrTail;
use crate::sync::lock;
use crate::transport::{self, Io, ListenConfig, TlsPair};

/// Where a plugin's stdout or stderr is copied.
pub(crate) type Writer = Box<dyn AsyncWrite + Send + Sync + Unpin + 'static>;

/// One connection to one plugin process.
pub(crate) struct Conn {
    pub(crate) channel: Channel,
    pub(crate) broker: GrpcBroker,
    /// The broker stream to run, for a single plugin process.
    pub(crate) session: Option<Session>,
    /// Whether to pump GRPCStdio over `channel` (runtimes with several replicas pump
    /// each replica themselves).
    pub(crate) pump_stdio: bool,
    pub(crate) mux: Option<Mux>,
    pub(crate) network: Network,
    pub(crate) address: String,
    pub(crate) tls: bool,
    pub(crate) plugin_cert: Option<Vec<u8>>,
}

impl Conn {
    /// Closes the broker and, when multiplexed, the session: calls in flight fail.
    pub(crate) fn close(&self) {
        self.broker.close();
        if let Some(mux) = &self.mux {
            mux.close();
        }
    }
}

/// Copies the plugin's GRPCStdio stream into the writers until `closed`.
pub(crate) async fn pump_stdio(
    channel: Channel,
    stdout: Writer,
    stderr: Writer,
    plugin: String,
    closed: tokio_util::sync::CancellationToken,
) {
    let stdio = crate::proto::grpc_stdio_client::GrpcStdioClient::new(channel);
    tokio::select! {
        res = crate::stdio::pump(stdio, stdout, stderr, &plugin) => {
            if let Err(status) = res {
                tracing::debug!(plugin = %plugin, code = ?status.code(), "stdio stream ended");
            }
        }
        () = closed.cancelled() => {}
    }
}

/// Opens a new byte stream to the plugin: a socket, or whatever a runtime dials through.
pub(crate) type Dialer =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, std::io::Result<Io>> + Send + Sync>;

/// Dials `address` on `network` each time.
pub(crate) fn address_dialer(network: Network, address: String) -> Dialer {
    Arc::new(move || {
        let address = address.clone();
        Box::pin(async move { transport::dial(network, &address).await })
    })
}

/// Connects to one plugin process: its gRPC channel and broker session.
pub(crate) async fn connect(
    dialer: Dialer,
    network: Network,
    address: String,
    multiplex: bool,
    tls: Option<TlsPair>,
) -> Result<Conn, BoxError> {
    let tls_on = tls.is_some();
    let plugin_cert = tls.as_ref().map(|t| t.peer_der.clone());
    let (session, mux, connector_dial): (Session, Option<Mux>, Dialer) = if multiplex {
        let socket = dialer().await?;
        let (mux, mut inbound) = Mux::start(socket, Role::Client);
        let session = Session::new(
            Side::Host,
            Mode::Mux(MuxSlot::with(mux.clone())),
            tls.clone(),
        );
        {
            // Plugin-initiated streams belong to knocked ids; the host has no default listener.
            let session = session.clone();
            tokio::spawn(async move {
                while let Some(io) = inbound.recv().await {
                    if session.route_inbound(io).is_some() {
                        tracing::debug!("dropping a plugin-initiated stream that was not knocked");
                    }
                }
            });
        }
        let m = mux.clone();
        let open: Dialer = Arc::new(move || {
            let m = m.clone();
            Box::pin(async move { m.open().await })
        });
        (session, Some(mux), open)
    } else {
        let session = Session::new(
            Side::Host,
            Mode::Classic(ListenConfig::Unix {
                dir: None,
                group: None,
            }),
            tls.clone(),
        );
        (session, None, dialer)
    };
    let connector = tower::service_fn(move |_: http::Uri| {
        let dial = connector_dial.clone();
        let tls = tls.clone();
        async move {
            let io = dial().await?;
            transport::secure_client(tls.as_ref(), io)
                .await
                .map(TokioIo::new)
        }
    });
    let channel = broker::endpoint().connect_with_connector(connector).await?;
    Ok(Conn {
        channel,
        broker: GrpcBroker::from(session.clone()),
        session: Some(session),
        pump_stdio: true,
        mux,
        network,
        address,
        tls: tls_on,
        plugin_cert,
    })
}

pub(crate) async fn pump_stderr(
    stderr: crate::runtime::Output,
    name: String,
    tail: Arc<Mutex<StderrTail>>,
    mut copy: Option<Writer>,
    done: tokio_util::sync::CancellationToken,
) {
    let _done = done.drop_guard();
    let mut reader = BufReader::with_capacity(crate::logs::MAX_LOG_LINE, stderr);
    let mut parser = crate::logs::StderrParser::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut reader)
            .take(crate::logs::MAX_LOG_LINE as u64)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if let Some(w) = copy.as_mut() {
            let _ = w.write_all(&buf).await;
            let _ = w.flush().await;
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        lock(&tail).push(line);
        let record = parser.parse(line);
        crate::logs::emit(&name, &record);
    }
}
