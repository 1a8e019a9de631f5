//! [`low_latency_client`]: a `kube::Client` that sends small writes at once
//! (`TCP_NODELAY`), for calls through the apiserver's port-forward.

/// A `kube::Client` for `config` whose connections to the apiserver send small writes at
/// once (`TCP_NODELAY`), the counterpart of `kube::Client::try_from(config)`.
///
/// kube's own client leaves Nagle's algorithm on (kube-rs issue #2056); in
/// [`ConnectMode::PortForward`](super::ConnectMode::PortForward), where every call crosses the apiserver, that costs a delayed
/// ACK (~40 ms) per call. With this client a warm call through the port-forward takes a few
/// milliseconds. Honours the config's cluster URL, TLS, credentials and extra headers, its
/// connect timeout (per connection) and its read timeout (the longest wait for any
/// response's head; kube's default is 295 s, lower it to fail faster on a silent
/// apiserver). The write timeout and the proxy URL of `config` are not applied.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let config = intercom::kube::Config::infer().await?;
/// let kube = intercom::runtime::kubernetes::low_latency_client(config)?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// The TLS or credential settings of `config` are unusable.
pub fn low_latency_client(config: kube::Config) -> Result<kube::Client, kube::Error> {
    use kube::client::ConfigExt as _;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(config.connect_timeout);
    let https = config.rustls_https_connector_with_connector(http)?;
    let hyper_client: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https);
    // Every request's response head within the read timeout: an apiserver that accepts
    // but never answers is an error, not a hang (bodies — watches, logs — may stream on).
    let service = tower::ServiceBuilder::new()
        .option_layer(config.read_timeout.map(tower::timeout::TimeoutLayer::new))
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(hyper_client);
    Ok(kube::Client::new(service, config.default_namespace))
}
