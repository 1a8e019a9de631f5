//! intercom-envtest's kubelet stands in for the Kubernetes runtime's pods: the names and
//! the port it gives a container are the ones intercom's `serve` reads.

#[test]
fn envtest_tells_plugins_where_to_listen_in_intercoms_words() {
    assert_eq!(
        intercom_envtest::kubelet::LISTEN_ADDR_ENV,
        intercom::protocol::env::LISTEN_ADDR
    );
    assert_eq!(
        intercom_envtest::kubelet::DEFAULT_LISTEN_PORT,
        intercom::DEFAULT_SERVER_PORT
    );
}
