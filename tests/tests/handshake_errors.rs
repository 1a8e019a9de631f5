//! Every way a start can fail gives its own typed error, within the start timeout, and
//! leaves no process behind.

use std::time::{Duration, Instant};

use intercom::runtime::ProcessLauncher;
use intercom::{Client, ClientConfig, ClientError, HandshakeConfig, HandshakeError};
use intercom_tests::{HANDSHAKE, host_plugins, pid_running};

const START_TIMEOUT: Duration = Duration::from_secs(3);

fn client(mode: &str, handshake: HandshakeConfig) -> Client {
    Client::new(
        ClientConfig::new(
            handshake,
            host_plugins(),
            ProcessLauncher::new(env!("CARGO_BIN_EXE_test-plugin")).env("INTERCOM_TEST_MODE", mode),
        )
        .start_timeout(START_TIMEOUT),
    )
}

/// Starts, expecting failure; checks the bound and that the process is gone.
async fn start_err(client: &Client) -> ClientError {
    let started = Instant::now();
    let err = tokio::time::timeout(START_TIMEOUT * 3, client.start())
        .await
        .expect("start must end within its timeout")
        .expect_err("start must fail");
    assert!(
        started.elapsed() < START_TIMEOUT + Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        client.exited(),
        "after a failed start the plugin has been stopped, and exited() says so"
    );
    if let Some(pid) = client.id().and_then(|id| id.parse::<u32>().ok()) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while pid_running(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            !pid_running(pid),
            "plugin pid {pid} left running after a failed start"
        );
    }
    err
}

#[tokio::test]
async fn wrong_cookie_says_the_binary_is_a_plugin() {
    let wrong = HandshakeConfig::new(1, "BASIC_PLUGIN", "not-hello");
    let err = start_err(&client("", wrong)).await;
    match &err {
        ClientError::ExitedBeforeHandshake { status, stderr, .. } => {
            assert_eq!(status.code, Some(1));
            assert!(stderr.contains("This binary is a plugin"), "{stderr}");
        }
        other => panic!("unexpected: {other:?}"),
    }
    assert!(err.to_string().contains("exited before we could connect"));
}

#[tokio::test]
async fn app_version_mismatch_names_both_sides() {
    let err = start_err(&client("version7", HANDSHAKE)).await;
    match &err {
        ClientError::Handshake {
            source: HandshakeError::IncompatibleAppVersion { plugin, host },
            ..
        } => {
            assert_eq!(*plugin, 7);
            assert_eq!(host, &vec![1]);
        }
        other => panic!("unexpected: {other:?}"),
    }
    let text = format!(
        "{err}: {}",
        std::error::Error::source(&err)
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    assert!(text.contains('7') && text.contains('1'), "{text}");
}

#[tokio::test]
async fn garbage_first_line_is_rejected() {
    let err = start_err(&client("garbage", HANDSHAKE)).await;
    assert!(
        matches!(&err, ClientError::Handshake { source: HandshakeError::Unrecognized { line, .. }, .. } if line.contains("not a handshake")),
        "{err:?}"
    );
}

#[tokio::test]
async fn non_utf8_first_line_is_a_bad_handshake_not_a_closed_stdout() {
    let err = start_err(&client("non-utf8", HANDSHAKE)).await;
    assert!(
        matches!(
            &err,
            ClientError::Handshake {
                source: HandshakeError::InvalidUtf8 { .. },
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn exit_before_handshake_carries_status_and_stderr() {
    let err = start_err(&client("exit-early", HANDSHAKE)).await;
    match &err {
        ClientError::ExitedBeforeHandshake { status, stderr, .. } => {
            assert_eq!(status.code, Some(3));
            assert!(stderr.contains("configuration file is missing"), "{stderr}");
        }
        other => panic!("unexpected: {other:?}"),
    }
    assert!(err.to_string().contains("configuration file is missing"));
}

/// A panic with `RUST_BACKTRACE=1` prints its message first and a backtrace far longer
/// than the kept tail after it: the error still shows the message.
#[tokio::test]
async fn a_panic_before_the_handshake_keeps_its_message_above_the_backtrace() {
    let client = Client::new(
        ClientConfig::new(
            HANDSHAKE,
            host_plugins(),
            ProcessLauncher::new(env!("CARGO_BIN_EXE_test-plugin"))
                .env("INTERCOM_TEST_MODE", "panic-early")
                .env("RUST_BACKTRACE", "1"),
        )
        .start_timeout(START_TIMEOUT),
    );
    let err = start_err(&client).await;
    let ClientError::ExitedBeforeHandshake { status, stderr, .. } = &err else {
        panic!("unexpected: {err:?}");
    };
    assert_eq!(status.code, Some(101));
    assert!(
        stderr.contains("[…]"),
        "the backtrace pushed the message out of the tail: {stderr}"
    );
    assert!(
        stderr.contains("panicked at") && stderr.contains("the configuration file is missing"),
        "{stderr}"
    );
    assert!(
        err.to_string()
            .contains("the configuration file is missing"),
        "{err}"
    );
}

#[tokio::test]
async fn silent_plugin_times_out_naming_the_setting() {
    let err = start_err(&client("silent", HANDSHAKE)).await;
    assert!(matches!(err, ClientError::StartTimeout { .. }), "{err:?}");
    assert!(err.to_string().contains("start_timeout"), "{err}");
}

#[tokio::test]
async fn missing_executable_is_a_launch_error() {
    let client = Client::new(ClientConfig::new(
        HANDSHAKE,
        host_plugins(),
        ProcessLauncher::new("/nonexistent/plugin-binary"),
    ));
    let err = start_err(&client).await;
    assert!(matches!(err, ClientError::Launch(_)), "{err:?}");
}

#[tokio::test]
async fn checksum_mismatch_refuses_to_start() {
    let client = Client::new(ClientConfig::new(
        HANDSHAKE,
        host_plugins(),
        ProcessLauncher::new(env!("CARGO_BIN_EXE_test-plugin"))
            .secure(intercom::runtime::SecureConfig::sha256(vec![0u8; 32])),
    ));
    let err = start_err(&client).await;
    assert!(
        matches!(
            err,
            ClientError::Launch(intercom::runtime::LaunchError::ChecksumMismatch { .. })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn versioned_plugins_negotiate_the_highest_common_version() {
    let dir = tempfile::tempdir().unwrap();
    let versioned = |host: &[u32]| {
        let mut config = ClientConfig::new(
            HANDSHAKE,
            intercom::PluginSet::new(),
            ProcessLauncher::new(env!("CARGO_BIN_EXE_test-plugin"))
                .env("INTERCOM_TEST_MODE", "versioned")
                .current_dir(dir.path()),
        )
        .start_timeout(START_TIMEOUT);
        for v in host {
            config = config.versioned(*v, host_plugins());
        }
        Client::new(config)
    };
    // Host 1,2,4 and plugin 2,3: 2 is the only common one.
    let client = versioned(&[1, 2, 4]);
    client.start().await.unwrap();
    assert_eq!(client.negotiated_version().await, Some(2));
    client.kill().await;
    // Host 3,4: plugin picks 3.
    let client = versioned(&[3, 4]);
    client.start().await.unwrap();
    assert_eq!(client.negotiated_version().await, Some(3));
    client.kill().await;
    // Nothing in common: the plugin answers with its lowest (2) and the host says so.
    let err = start_err(&versioned(&[5])).await;
    assert!(
        matches!(&err, ClientError::Handshake { source: HandshakeError::IncompatibleAppVersion { plugin: 2, host }, .. } if host == &vec![5]),
        "{err:?}"
    );
}
