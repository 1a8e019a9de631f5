//! One replica's connection: read its handshake from the pod log, dial it by the
//! connect mode, join the balancer and the broker group, forward its log.

use tracing::Instrument as _;

use super::*;
use crate::handshake::find;

/// Fails the start early when a running, not-ready container prints an invalid
/// handshake (a plugin built against another protocol version), or none within the
/// handshake timeout (a plugin that never calls serve). Log lines before it are fine.
pub(super) async fn check_first_line(shared: Arc<Shared>, pod: String) {
    let params = LogParams {
        container: Some(shared.container.clone()),
        limit_bytes: Some(find::MAX_BYTES_BEFORE_HANDSHAKE as i64),
        ..LogParams::default()
    };
    let started = tokio::time::Instant::now();
    let mut last_text = String::new();
    loop {
        // Give a starting plugin a moment to print its line.
        tokio::time::sleep(FIRST_LINE_POLL).await;
        if !matches!(&*shared.start.borrow(), Start::Waiting(_))
            || shared.plugin.closed.is_cancelled()
        {
            return;
        }
        if let Ok(Ok(text)) =
            tokio::time::timeout(LOG_READ_TIMEOUT, shared.plugin.pods.logs(&pod, &params)).await
        {
            if let Some(line) = find::handshake_in(&text) {
                if let Err(source) =
                    Handshake::parse(line).and_then(|h| h.validate(&shared.host_versions, true))
                {
                    fail_waiting_start(&shared, KubeError::Handshake { pod, source });
                }
                return;
            }
            last_text = text;
        }
        if started.elapsed() >= shared.handshake_timeout {
            let lines: Vec<&str> = last_text.lines().collect();
            fail_waiting_start(
                &shared,
                KubeError::NoHandshake {
                    pod,
                    waited: started.elapsed(),
                    lines: lines.len(),
                    last: lines.last().map(|l| (*l).to_owned()),
                    ended: false,
                },
            );
            return;
        }
    }
}

/// Fails a start still waiting for its first replica.
pub(super) fn fail_waiting_start(shared: &Shared, err: KubeError) {
    if matches!(&*shared.start.borrow(), Start::Waiting(_)) {
        let _ = shared.start.send(failed(err));
    }
}

/// Reads one pod's handshake, connects, and joins it to the balancer and broker.
pub(super) async fn connect_pod(
    shared: &Arc<Shared>,
    pod: &str,
    address: String,
    key: String,
    image_id: Option<String>,
) -> Result<u32, KubeError> {
    let plugin = &shared.plugin;
    check_digest(shared, pod, image_id)?;
    let (handshake, lines) = read_handshake(shared, pod).await?;
    let tls = pod_tls(shared, pod, &handshake)?;
    // `ServiceDns`: one connection through the Service, whichever replica it reaches; the
    // other replicas only contribute their certificates.
    let mut lines = Some(lines);
    let _dialling = if shared.mode == ConnectMode::ServiceDns {
        // Every replica's log is forwarded, connected or not; once per container.
        if let Some(lines) = lines.take() {
            let mut pinned = lock(&shared.pinned);
            if pinned.get(pod).map(|p| &p.key) != Some(&key) {
                let logs = forward_logs(shared, pod, lines);
                pinned.insert(
                    pod.to_string(),
                    Pinned {
                        key: key.clone(),
                        logs,
                    },
                );
            }
        }
        let guard = shared.dial.lock().await;
        if !lock(&plugin.legs).is_empty() {
            return Ok(handshake.app_version);
        }
        Some(guard)
    } else {
        None
    };
    let port = handshake
        .address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(crate::DEFAULT_SERVER_PORT);
    let (dialer, target) = dialer_for(shared, pod, &address, port);
    let span = tracing::info_span!(
        "plugin_connect",
        plugin = %shared.client_name,
        %pod,
        address = %target
    );
    let conn = connect(dialer, Network::Tcp, target.clone(), true, tls)
        .instrument(span)
        .await
        .map_err(|source| KubeError::Connect {
            pod: pod.into(),
            address: target,
            source,
        })?;
    join(shared, pod, key, conn, lines);
    Ok(handshake.app_version)
}

/// With `require_image_digest`: the pod must run the pinned digest.
fn check_digest(shared: &Shared, pod: &str, image_id: Option<String>) -> Result<(), KubeError> {
    if shared.require_digest
        && let Some(expected) = digest_of(&shared.image)
    {
        let actual = image_id.unwrap_or_default();
        if !actual.ends_with(&expected) {
            return Err(KubeError::ChecksumsDoNotMatch {
                pod: pod.into(),
                image: shared.image.clone(),
                expected,
                actual,
            });
        }
    }
    Ok(())
}

/// The pod's log lines from the start: its handshake (validated), and the rest of the log.
async fn read_handshake(
    shared: &Shared,
    pod: &str,
) -> Result<
    (
        Handshake,
        futures::stream::BoxStream<'static, std::io::Result<String>>,
    ),
    KubeError,
> {
    let params = LogParams {
        follow: true,
        container: Some(shared.container.clone()),
        ..LogParams::default()
    };
    let stream = shared
        .plugin
        .pods
        .log_stream(pod, &params)
        .await
        .map_err(|source| KubeError::Api {
            step: format!("read the log of plugin pod {pod}"),
            source,
        })?;
    let mut lines = crate::runtime::kubernetes::log_lines::bounded_lines(stream);
    let started = tokio::time::Instant::now();
    let mut parser = crate::logs::StderrParser::default();
    let line = handshake_scan::find_handshake(&mut lines, shared.handshake_timeout, |l| {
        // What the plugin printed before its handshake is its log.
        crate::logs::emit_with(&shared.client_name, Some(pod), &parser.parse(l));
    })
    .await
    .map_err(|seen| KubeError::NoHandshake {
        pod: pod.into(),
        waited: started.elapsed(),
        lines: seen.lines,
        last: seen.last,
        ended: seen.ended,
    })?;
    let handshake = Handshake::parse(&line)
        .and_then(|h| h.validate(&shared.host_versions, true).map(|()| h))
        .map_err(|source| KubeError::Handshake {
            pod: pod.into(),
            source,
        })?;
    Ok((handshake, lines))
}

/// AutoMTLS: the pinned certificate(s) to connect with; refused if the pod has none.
fn pod_tls(
    shared: &Shared,
    pod: &str,
    handshake: &Handshake,
) -> Result<Option<TlsPair>, KubeError> {
    match (&shared.identity, &handshake.server_cert) {
        (Some(id), Some(cert)) => {
            let pair = if shared.mode == ConnectMode::ServiceDns {
                // Through the Service name any replica may answer: accept each one's
                // certificate.
                shared
                    .pins
                    .insert(pod, cert)
                    .and_then(|()| TlsPair::with_pins(id, &shared.pins, cert))
            } else {
                TlsPair::new(id, cert)
            };
            pair.map(Some).map_err(|source| KubeError::Tls {
                pod: pod.into(),
                source,
            })
        }
        (Some(_), None) => Err(KubeError::AutoMtlsUnsupported { pod: pod.into() }),
        (None, _) => Ok(None),
    }
}

/// How to reach the pod's `port` in this connect mode, and what to call the target.
fn dialer_for(shared: &Shared, pod: &str, address: &str, port: u16) -> (Dialer, String) {
    let plugin = &shared.plugin;
    match shared.mode {
        ConnectMode::Endpoints => {
            let target = if address.contains(':') {
                format!("[{address}]:{port}")
            } else {
                format!("{address}:{port}")
            };
            (address_dialer(Network::Tcp, target.clone()), target)
        }
        ConnectMode::ServiceDns => {
            let target = format!("{}.{}.svc:{port}", plugin.service, plugin.namespace);
            let t = target.clone();
            let dial: Dialer = Arc::new(move || {
                let t = t.clone();
                Box::pin(async move {
                    let s = tokio::net::TcpStream::connect(t).await?;
                    let _ = s.set_nodelay(true);
                    Ok(Io::Tcp(s))
                })
            });
            (dial, target)
        }
        ConnectMode::PortForward => {
            let pods = plugin.pods.clone();
            let name = pod.to_string();
            let dial: Dialer = Arc::new(move || {
                let pods = pods.clone();
                let name = name.clone();
                Box::pin(async move { port_forward(&pods, &name, port).await })
            });
            (dial, format!("port-forward {pod}:{port}"))
        }
    }
}

/// Joins a connected replica: broker session, stdio, log forwarding, the balancer, and a
/// watch on the connection that looks at the pod again when it ends.
fn join<S>(shared: &Arc<Shared>, pod: &str, key: String, conn: Conn, lines: Option<S>)
where
    S: futures::Stream<Item = std::io::Result<String>> + Send + Unpin + 'static,
{
    let plugin = &shared.plugin;
    let mut tasks = Vec::new();
    if let Some(session) = &conn.session {
        plugin.group.add(pod.to_string(), session.clone());
        tasks.push(
            tokio::spawn(session.clone().run_host(
                crate::proto::grpc_broker_client::GrpcBrokerClient::new(conn.channel.clone()),
            ))
            .abort_handle(),
        );
    }
    // Stdio must be consumed or the plugin's writes block; every replica's goes to the
    // same writers.
    tasks.push(
        tokio::spawn(pump_shared_stdio(
            conn.channel.clone(),
            shared.stdout.clone(),
            shared.stderr.clone(),
            shared.client_name.clone(),
            conn.broker.closed_token(),
        ))
        .abort_handle(),
    );
    // The rest of the log is the plugin's stderr: forward it into tracing.
    if let Some(lines) = lines {
        tasks.push(forward_logs(shared, pod, lines));
    }
    if let Some(session) = conn.session.clone() {
        tasks.push(on_leg_end(
            shared,
            pod,
            &key,
            session,
            conn.broker.closed_token(),
        ));
    }
    plugin
        .balancer
        .insert(pod.to_string(), conn.channel.clone());
    lock(&plugin.legs).insert(pod.to_string(), Leg { key, conn, tasks });
    tracing::debug!(plugin = %shared.client_name, pod, replicas = plugin.balancer.len(), "replica connected");
}

/// When the connection ends (pod gone, port-forward dropped), leave and look at the pod
/// again: if it is still ready, reconnect. Unless another host took the plugin over (a
/// reattach): then stay away rather than fight for it.
fn on_leg_end(
    shared: &Arc<Shared>,
    pod: &str,
    key: &str,
    session: crate::broker::Session,
    closed: CancellationToken,
) -> tokio::task::AbortHandle {
    let shared = shared.clone();
    let pod_name = pod.to_string();
    let leg_key = key.to_string();
    tokio::spawn(async move {
        closed.cancelled().await;
        if shared.plugin.closed.is_cancelled() {
            return;
        }
        if session.was_replaced() {
            lock(&shared.yielded).insert(leg_key);
            tracing::info!(plugin = %shared.client_name, pod = %pod_name, "another host took over this plugin replica; not reconnecting");
        } else {
            tracing::debug!(plugin = %shared.client_name, pod = %pod_name, "connection to replica lost; reconnecting");
            let retry = shared.retry.clone();
            let name = pod_name.clone();
            tokio::spawn(async move {
                tokio::time::sleep(RECONNECT_DELAY).await;
                let _ = retry.send(name);
            });
        }
        shared.plugin.remove_leg(&pod_name);
    })
    .abort_handle()
}

/// Forwards the rest of a pod's log (the plugin's stderr) into `tracing`, until the log
/// ends or the plugin is closed.
pub(super) fn forward_logs<S>(shared: &Shared, pod: &str, mut lines: S) -> tokio::task::AbortHandle
where
    S: futures::Stream<Item = std::io::Result<String>> + Send + Unpin + 'static,
{
    let client_name = shared.client_name.clone();
    let pod_name = pod.to_string();
    let closed = shared.plugin.closed.clone();
    tokio::spawn(async move {
        let mut parser = crate::logs::StderrParser::default();
        let forward = async {
            while let Some(Ok(line)) = lines.next().await {
                let record = parser.parse(&line);
                crate::logs::emit_with(&client_name, Some(&pod_name), &record);
            }
        };
        tokio::select! {
            () = forward => {}
            () = closed.cancelled() => {}
        }
    })
    .abort_handle()
}
