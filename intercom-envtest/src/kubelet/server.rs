//! The kubelet HTTPS API the apiserver proxies to: `containerLogs` and `portForward`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt as _;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::Shared;
use super::logs::{self, LogFile, LogQuery, form_pairs};
use super::portforward;
use super::runtime::{ContainerRuntime, Current};

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(body.into()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Accepts TLS connections until aborted.
pub(crate) async fn serve(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, _peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(error = &error as &dyn std::error::Error, "kubelet accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                // As Go sets on every TCP connection (the real kubelet's behaviour).
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let shared = shared.clone();
                connections.spawn(async move {
                    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(error)) => {
                            tracing::debug!(error = &error as &dyn std::error::Error, "kubelet TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    // The verifier only lets through certificates issued by the cluster CA.
                    let authenticated = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
                    let service = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(route(shared, authenticated, req)) }
                    });
                    if let Err(error) = http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .with_upgrades()
                        .await
                    {
                        tracing::debug!(error = &error as &dyn std::error::Error, "kubelet connection ended with an error");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

fn route(shared: Arc<Shared>, authenticated: bool, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    tracing::debug!(method = %req.method(), uri = %req.uri(), headers = ?req.headers(), "kubelet request");
    match segments.as_slice() {
        ["healthz"] => text(StatusCode::OK, "ok"),
        _ if !authenticated => text(StatusCode::UNAUTHORIZED, "Unauthorized"),
        ["containerLogs", namespace, pod, container] if req.method() == Method::GET => {
            container_logs(
                &shared,
                namespace,
                pod,
                container,
                req.uri().query().unwrap_or_default(),
            )
        }
        ["portForward", namespace, pod] | ["portForward", namespace, pod, _] => {
            let (namespace, pod) = ((*namespace).to_owned(), (*pod).to_owned());
            port_forward(&shared, &namespace, &pod, req)
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

/// The log a request means, or the kubelet's message for why there is none
/// (`validateContainerLogStatus`).
fn select_log(c: &ContainerRuntime, pod: &str, previous: bool) -> Result<Arc<LogFile>, String> {
    let st = c.lock();
    let name = &c.name;
    let id = if previous {
        st.last
            .as_ref()
            .and_then(|t| t.container_id.clone())
            .ok_or_else(|| {
                format!("previous terminated container {name:?} in pod {pod:?} not found")
            })?
    } else {
        match &st.current {
            Current::Running { .. } | Current::Terminated(_) => st.container_id.clone(),
            Current::Waiting { .. } if st.last.is_some() => st.last.as_ref().and_then(|t| t.container_id.clone()),
            Current::Waiting { reason, .. } => {
                return Err(match reason.as_str() {
                    "ErrImagePull" => format!("container {name:?} in pod {pod:?} is waiting to start: image can't be pulled"),
                    "ImagePullBackOff" => {
                        format!("container {name:?} in pod {pod:?} is waiting to start: trying and failing to pull image")
                    }
                    other => format!("container {name:?} in pod {pod:?} is waiting to start: {other}"),
                });
            }
        }
        .ok_or_else(|| format!("container {name:?} in pod {pod:?} is waiting to start - no logs yet"))?
    };
    st.logs
        .iter()
        .rev()
        .find(|(i, _)| *i == id)
        .map(|(_, log)| log.clone())
        .ok_or_else(|| format!("container {name:?} in pod {pod:?}: the log of {id} is gone"))
}

fn container_logs(
    shared: &Shared,
    namespace: &str,
    pod: &str,
    container: &str,
    query: &str,
) -> Response<Body> {
    let query = match LogQuery::parse(query, jiff::Timestamp::now()) {
        Ok(query) => query,
        Err(_) => {
            return text(
                StatusCode::BAD_REQUEST,
                r#"{"message": "Unable to decode query."}"#,
            );
        }
    };
    let Some(rt) = shared.pod(namespace, pod) else {
        return text(StatusCode::NOT_FOUND, format!("pod {pod:?} does not exist"));
    };
    let Some(c) = rt.container(container) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("container {container:?} not found in pod {pod:?}"),
        );
    };
    let log = match select_log(c, pod, query.previous) {
        Ok(log) => log,
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    let body = StreamBody::new(logs::read(log, query).map_ok(Frame::data));
    let mut response = Response::new(BodyExt::boxed_unsync(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn header_str(req: &Request<Incoming>, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn port_forward(
    shared: &Shared,
    namespace: &str,
    pod: &str,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let upgrade = header_str(&req, header::UPGRADE).unwrap_or_default();
    if upgrade.eq_ignore_ascii_case("spdy/3.1") {
        // kubectl ≥ 1.31 tunnels SPDY over WebSocket to the apiserver, which then speaks
        // SPDY to the kubelet; kube-rs sends a plain WebSocket, which is passed through.
        return text(
            StatusCode::BAD_REQUEST,
            "SPDY port forwarding is not supported by the intercom-envtest kubelet; use a WebSocket client (v4.channel.k8s.io)",
        );
    }
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return text(StatusCode::BAD_REQUEST, "Upgrade request required");
    }
    let pairs = form_pairs(req.uri().query().unwrap_or_default());
    let ports = match portforward::parse_ports(&pairs) {
        Ok(ports) => ports,
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    let Some(rt) = shared.pod(namespace, pod) else {
        return text(StatusCode::NOT_FOUND, format!("pod {pod:?} does not exist"));
    };
    let protocol = match portforward::negotiate(header_str(&req, header::SEC_WEBSOCKET_PROTOCOL)) {
        Ok(protocol) => protocol,
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    let Some(key) = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()))
    else {
        return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let ip = rt.ip;
    let shutdown = shared.shutdown.subscribe();
    let cut = shared.cut_port_forwards.subscribe();
    let target = (namespace.to_owned(), pod.to_owned());
    *shared
        .port_forward_sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(target.clone())
        .or_default() += 1;
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                portforward::serve(ws, ip, ports, protocol, shutdown, (cut, target)).await;
            }
            Err(error) => {
                tracing::debug!(
                    error = &error as &dyn std::error::Error,
                    "port-forward upgrade failed"
                );
            }
        }
    });
    let mut response = text(StatusCode::SWITCHING_PROTOCOLS, "");
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_TYPE);
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&key) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(protocol) = protocol {
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(protocol),
        );
    }
    response
}
