//! AutoMTLS: only the host that launched the plugin can talk to it.

use hyper_util::rt::TokioIo;
use intercom::__testing::{Identity, client_config, server_name};
use intercom::handshake::Network;
use intercom::runtime::ProcessLauncher;
use intercom::{Client, ClientConfig, Multiplex};
use intercom_tests::{HANDSHAKE, host_plugins};

#[tokio::test]
async fn a_connection_without_the_right_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(
        ClientConfig::new(
            HANDSHAKE,
            host_plugins(),
            ProcessLauncher::new(env!("CARGO_BIN_EXE_test-plugin")).current_dir(dir.path()),
        )
        // Classic, so the plugin's listener keeps accepting connections to try.
        .multiplex(Multiplex::Off),
    );
    let protocol = client.connect().await.unwrap();
    protocol.ping().await.unwrap();
    let (network, address) = protocol.address();
    assert_eq!(network, Network::Unix);
    let address = address.to_string();
    let plugin_cert = protocol
        .plugin_certificate()
        .expect("AutoMTLS is on by default")
        .to_vec();

    // 1. Plaintext gRPC to the plugin's socket reaches only the health service (what a
    //    kubelet readiness probe needs); the plugin's own services and the controller are
    //    refused.
    let addr = address.clone();
    let plaintext = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let addr = addr.clone();
            async move {
                tokio::net::UnixStream::connect(addr)
                    .await
                    .map(TokioIo::new)
            }
        }))
        .await;
    let channel = plaintext.expect("plaintext connections are accepted for probes");
    tonic_health_check(channel.clone())
        .await
        .expect("plaintext health check (probe) answers");
    let mut kv = intercom_tests::kv::kv_client::KvClient::new(channel.clone());
    let status = kv
        .get(intercom_tests::kv::GetRequest { key: "a".into() })
        .await
        .expect_err("plaintext must not reach the plugin's services");
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    let mut ctl = intercom::proto::grpc_controller_client::GrpcControllerClient::new(channel);
    let status = ctl
        .shutdown(intercom::proto::Empty {})
        .await
        .expect_err("plaintext must not reach the controller");
    assert_eq!(status.code(), tonic::Code::Unimplemented);

    // 2. TLS with a certificate the plugin was not given: refused, even though the rogue
    //    client trusts the plugin's real certificate.
    let rogue = Identity::generate().unwrap();
    let config = client_config(&rogue, &plugin_cert).unwrap();
    let addr = address.clone();
    let rogue_conn = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let addr = addr.clone();
            let config = config.clone();
            async move {
                let io = tokio::net::UnixStream::connect(addr).await?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(server_name(), io)
                    .await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await;
    if let Ok(channel) = rogue_conn {
        let res = tonic_health_check(channel).await;
        assert!(
            res.is_err(),
            "a client with an unrelated certificate must be refused"
        );
    }

    // 3. The host that launched it still works.
    protocol.ping().await.unwrap();
    client.kill().await;
}

async fn tonic_health_check(
    channel: intercom::tonic::transport::Channel,
) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Check");
    let req = tonic::Request::new(HealthCheckRequest {
        service: "plugin".into(),
    });
    grpc.unary::<_, HealthCheckResponse, _>(req, path, tonic_prost::ProstCodec::default())
        .await
        .map(drop)
}

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}
