//! Kubernetes API calls are bounded: an apiserver that accepts connections but never
//! answers gives a typed error within the config's read timeout (× the create retries),
//! not a hang. No apiserver is involved: the peer is a silent socket.

use std::time::{Duration, Instant};

use intercom::runtime::kubernetes::{
    ConnectMode, KubeError, KubernetesConfig, PluginWorkload, low_latency_client,
};
use intercom::{Client, ClientConfig, ClientError};
use intercom_tests::{HANDSHAKE, host_plugins};

#[tokio::test]
async fn a_silent_apiserver_fails_the_start_within_the_read_timeout() {
    // Accepts (the kernel does, into the backlog) and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let mut config = intercom::kube::Config::new(url.parse().unwrap());
    config.read_timeout = Some(Duration::from_secs(1));
    let kube = low_latency_client(config).unwrap();
    let client = Client::new(
        ClientConfig::new(
            HANDSHAKE,
            host_plugins(),
            KubernetesConfig::new(kube, "default")
                .workload("silent", &PluginWorkload::new("intercom.test/x:1"))
                .connect(ConnectMode::Endpoints),
        )
        .start_timeout(Duration::from_secs(120)),
    );
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(60), client.start())
        .await
        .expect("the start must not hang on a silent apiserver");
    match result {
        Err(ClientError::Kubernetes(KubeError::Api { step, .. })) => {
            assert!(step.contains("Deployment"), "{step}");
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    // 5 attempts of 1 s each, plus the retry pauses: well under the 120 s start timeout.
    eprintln!("failed after {:?}", started.elapsed());
    drop(silent);
}
