//! Broker callbacks in both directions between the Rust host and the Rust plugin, over
//! the one connection (multiplexed) and over classic per-id listeners, with AutoMTLS on
//! and off.

use std::time::Duration;

use intercom::runtime::ProcessLauncher;
use intercom::tonic::transport::Channel;
use intercom::{Client, ClientConfig, Multiplex};
use intercom_tests::{HANDSHAKE, counter, host_plugins, reverse};

async fn both_directions(multiplex: Multiplex, mtls: bool) {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(
        ClientConfig::new(
            HANDSHAKE,
            host_plugins(),
            ProcessLauncher::new(env!("CARGO_BIN_EXE_test-plugin")).current_dir(dir.path()),
        )
        .multiplex(multiplex)
        .auto_mtls(mtls),
    );
    let protocol = client.connect().await.unwrap();
    assert_eq!(
        protocol.broker().is_multiplexed(),
        multiplex != Multiplex::Off
    );

    // Host serves AddHelper, plugin dials it (go-plugin's bidirectional example).
    let mut counter: counter::counter_client::CounterClient<Channel> =
        protocol.dispense("counter").unwrap();
    for _ in 0..2 {
        intercom_tests::put_with_callback(protocol.broker(), &mut counter, "x", 1)
            .await
            .unwrap();
    }
    let value = counter
        .get(counter::GetRequest { key: "x".into() })
        .await
        .unwrap()
        .into_inner()
        .value;
    assert_eq!(value, 2);

    // Plugin serves Adder on a broker id, host dials it.
    let mut spawner: reverse::spawner_client::SpawnerClient<Channel> =
        protocol.dispense("reverse").unwrap();
    let id = spawner
        .spawn(reverse::SpawnRequest {})
        .await
        .unwrap()
        .into_inner()
        .broker_id;
    let channel = protocol.broker().dial(id).await.unwrap();
    let mut adder = reverse::adder_client::AdderClient::new(channel);
    let r = adder
        .add(reverse::AddRequest { a: 2, b: 40 })
        .await
        .unwrap()
        .into_inner()
        .r;
    assert_eq!(r, 42);

    // Dialing an id nobody serves fails within the broker timeout, not forever.
    let err = tokio::time::timeout(Duration::from_secs(8), protocol.broker().dial(999))
        .await
        .expect("dial must give up");
    assert!(err.is_err());

    client.kill().await;
}

#[tokio::test]
async fn multiplexed_with_mtls() {
    both_directions(Multiplex::Required, true).await;
}

#[tokio::test]
async fn multiplexed_plaintext() {
    both_directions(Multiplex::Auto, false).await;
}

#[tokio::test]
async fn classic_with_mtls() {
    both_directions(Multiplex::Off, true).await;
}

#[tokio::test]
async fn classic_plaintext() {
    both_directions(Multiplex::Off, false).await;
}
