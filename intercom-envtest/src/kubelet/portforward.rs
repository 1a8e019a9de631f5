//! The kubelet's WebSocket port-forward protocol (`pkg/kubelet/cri/streaming/portforward/
//! websocket.go`): per requested port `i`, channel `2i` carries data and `2i+1` errors; the
//! first frame of each channel is the port as u16 little-endian. Subprotocols
//! `v4.channel.k8s.io` (binary frames `[channel, data…]`), `v4.base64.channel.k8s.io`
//! (text frames `'0'+channel` then base64) and none (binary).

use std::net::Ipv4Addr;

use base64::Engine as _;
use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// Binary channel subprotocol.
pub(crate) const V4_BINARY: &str = "v4.channel.k8s.io";
/// Base64 channel subprotocol.
pub(crate) const V4_BASE64: &str = "v4.base64.channel.k8s.io";

/// Picks the subprotocol like `wsstream.Conn`: the client's first supported one, or none
/// when the client sent none. `Err` when the client offered only unsupported ones.
pub(crate) fn negotiate(header: Option<&str>) -> Result<Option<&'static str>, String> {
    let offered: Vec<&str> = header
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() {
        return Ok(None);
    }
    offered
        .iter()
        .find_map(|p| [V4_BINARY, V4_BASE64].into_iter().find(|s| s == p))
        .map(Some)
        .ok_or_else(|| {
            format!("requested protocol(s) are not supported: {offered:?}; supports [\"\" {V4_BINARY} {V4_BASE64}]")
        })
}

/// Parses the `port` query parameter (`api.PortHeader`; repeated per port, each value may
/// also be comma-separated), as `NewV4Options`. The apiserver sends `?port=80&port=1234`.
pub(crate) fn parse_ports(pairs: &[(String, String)]) -> Result<Vec<u16>, String> {
    let values: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "port")
        .map(|(_, v)| v.as_str())
        .collect();
    if values.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    let mut ports = Vec::new();
    for value in values {
        if value.is_empty() {
            return Err("query parameter \"port\" cannot be empty".into());
        }
        for p in value.split(',') {
            let port: u16 = p
                .parse()
                .map_err(|_| format!("unable to parse {value:?} as a port"))?;
            if port < 1 {
                return Err(format!("port {value:?} must be > 0"));
            }
            ports.push(port);
        }
    }
    Ok(ports)
}

#[derive(Debug, Clone, Copy)]
struct Codec {
    base64: bool,
}

impl Codec {
    fn encode(self, channel: u8, data: &[u8]) -> Message {
        if self.base64 {
            let mut text = String::with_capacity(1 + data.len() * 4 / 3 + 4);
            text.push(char::from(b'0' + channel));
            text.push_str(&base64::engine::general_purpose::STANDARD.encode(data));
            Message::text(text)
        } else {
            let mut frame = Vec::with_capacity(data.len() + 1);
            frame.push(channel);
            frame.extend_from_slice(data);
            Message::binary(frame)
        }
    }

    fn decode(self, message: Message) -> Option<(u8, Bytes)> {
        match message {
            Message::Binary(bytes) if !self.base64 => {
                let (&channel, data) = bytes.split_first()?;
                Some((channel, Bytes::copy_from_slice(data)))
            }
            Message::Text(text) if self.base64 => {
                let (first, rest) = text.as_str().split_at_checked(1)?;
                let channel = first.bytes().next()?.checked_sub(b'0')?;
                let data = base64::engine::general_purpose::STANDARD
                    .decode(rest)
                    .ok()?;
                Some((channel, Bytes::from(data)))
            }
            _ => None,
        }
    }
}

/// Serves one port-forward session until the pod side of every port closed, the client
/// closed the WebSocket, `shutdown` fired or `cut` named this session's pod.
pub(crate) async fn serve<S>(
    ws: WebSocketStream<S>,
    ip: Ipv4Addr,
    ports: Vec<u16>,
    protocol: Option<&'static str>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    (mut cut, pod): (
        tokio::sync::broadcast::Receiver<(String, String)>,
        (String, String),
    ),
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let codec = Codec {
        base64: protocol == Some(V4_BASE64),
    };
    let (mut sink, mut source) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(64);
    let mut to_pod = Vec::with_capacity(ports.len());
    let mut streams = JoinSet::new();
    for (i, &port) in ports.iter().enumerate() {
        let Some(data_channel) = u8::try_from(2 * i).ok().filter(|c| *c < 254) else {
            break;
        };
        let error_channel = data_channel + 1;
        for channel in [data_channel, error_channel] {
            if sink
                .send(codec.encode(channel, &port.to_le_bytes()))
                .await
                .is_err()
            {
                return;
            }
        }
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        to_pod.push(tx);
        streams.spawn(forward_port(
            ip,
            port,
            data_channel,
            rx,
            out_tx.clone(),
            codec,
        ));
    }
    drop(out_tx);
    let mut cut_open = true;
    let mut shutdown_wait = Box::pin(async move {
        let _ = shutdown.wait_for(|s| *s).await;
    });
    loop {
        tokio::select! {
            message = source.next() => match message {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(message)) => {
                    let Some((channel, data)) = codec.decode(message) else { continue };
                    // Data for the pod arrives on even channels; odd (error) ones are write-only.
                    if channel % 2 == 0
                        && let Some(tx) = to_pod.get(usize::from(channel / 2))
                    {
                        let _ = tx.send(data).await;
                    }
                }
            },
            outgoing = out_rx.recv() => match outgoing {
                Some(message) => {
                    if sink.send(message).await.is_err() {
                        break;
                    }
                }
                // Every port's pod side is done.
                None => break,
            },
            () = &mut shutdown_wait => break,
            target = cut.recv(), if cut_open => match target {
                Ok(target) if target == pod => break,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                // The kubelet is going away; `shutdown` ends the session.
                Err(tokio::sync::broadcast::error::RecvError::Closed) => cut_open = false,
            },
        }
    }
    streams.abort_all();
    let _ = sink.send(Message::Close(None)).await;
    let _ = sink.close().await;
}

/// Connects to `ip:port` and copies both ways; connection errors go to the error channel.
async fn forward_port(
    ip: Ipv4Addr,
    port: u16,
    data_channel: u8,
    mut from_client: mpsc::Receiver<Bytes>,
    to_client: mpsc::Sender<Message>,
    codec: Codec,
) {
    let error_channel = data_channel + 1;
    let stream = match TcpStream::connect((ip, port)).await {
        Ok(stream) => {
            // As Go sets on every TCP connection (the real kubelet's behaviour).
            let _ = stream.set_nodelay(true);
            stream
        }
        Err(error) => {
            let message = format!(
                "error forwarding port {port} to pod: failed to connect to {ip}:{port}: {error}"
            );
            let _ = to_client
                .send(codec.encode(error_channel, message.as_bytes()))
                .await;
            return;
        }
    };
    let (mut read, mut write) = stream.into_split();
    let upstream = async move {
        while let Some(data) = from_client.recv().await {
            if write.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = write.shutdown().await;
        futures::future::pending::<()>().await;
    };
    let downstream = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = buf.get(..n).unwrap_or_default();
                    if to_client
                        .send(codec.encode(data_channel, chunk))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    // Like the runtime's port forwarder: the session for this port ends with the pod side.
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_like_wsstream() {
        assert_eq!(negotiate(None), Ok(None));
        assert_eq!(
            negotiate(Some("v5.channel.k8s.io, v4.channel.k8s.io")),
            Ok(Some(V4_BINARY))
        );
        assert_eq!(
            negotiate(Some("v4.base64.channel.k8s.io")),
            Ok(Some(V4_BASE64))
        );
        assert!(negotiate(Some("SPDY/3.1+portforward.k8s.io")).is_err());
    }

    #[test]
    fn parses_ports() {
        let q = |v: &str| vec![("port".to_owned(), v.to_owned())];
        assert_eq!(parse_ports(&q("80,1234")), Ok(vec![80, 1234]));
        let repeated = [
            ("port".to_owned(), "80".to_owned()),
            ("port".to_owned(), "1234".to_owned()),
        ];
        assert_eq!(parse_ports(&repeated), Ok(vec![80, 1234]));
        assert!(parse_ports(&q("0")).is_err());
        assert!(parse_ports(&q("x")).is_err());
        assert!(parse_ports(&[]).is_err());
    }

    #[test]
    fn codecs_round_trip() {
        for base64 in [false, true] {
            let codec = Codec { base64 };
            let (channel, data) = codec.decode(codec.encode(3, b"hello")).unwrap();
            assert_eq!((channel, &data[..]), (3, &b"hello"[..]));
        }
    }
}
