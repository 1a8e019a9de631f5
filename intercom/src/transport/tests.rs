//! Tests of the listen configuration, the advertised address and the listeners.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tokio::net::TcpListener;

use super::config::advertise_from_lookup;
use super::{ListenConfig, ListenError, Listener, dial, env};
use crate::handshake::Network;
use crate::unix_socket::SocketGroup;

fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn listen_config_from_env() {
    assert_eq!(
        ListenConfig::from_lookup(lookup(&[])).unwrap(),
        ListenConfig::Unix {
            dir: None,
            group: None,
        }
    );
    assert_eq!(
        ListenConfig::from_lookup(lookup(&[(env::UNIX_SOCKET_DIR, "/run/x")])).unwrap(),
        ListenConfig::Unix {
            dir: Some("/run/x".into()),
            group: None,
        }
    );
    assert_eq!(
        ListenConfig::from_lookup(lookup(&[(env::UNIX_SOCKET_GROUP, "plugins")])).unwrap(),
        ListenConfig::Unix {
            dir: None,
            group: Some(SocketGroup::new("plugins")),
        }
    );
    assert_eq!(
        ListenConfig::from_lookup(lookup(&[
            (env::TRANSPORT, "tcp"),
            (env::MIN_PORT, "10000"),
            (env::MAX_PORT, "10010")
        ]))
        .unwrap(),
        ListenConfig::TcpRange {
            min: 10000,
            max: 10010
        }
    );
    assert_eq!(
        ListenConfig::from_lookup(lookup(&[(env::LISTEN_ADDR, "127.0.0.9:50077")])).unwrap(),
        ListenConfig::Tcp("127.0.0.9:50077".parse().unwrap())
    );
    assert!(matches!(
        ListenConfig::from_lookup(lookup(&[(env::LISTEN_ADDR, "nope")])),
        Err(ListenError::BadListenAddr { .. })
    ));
    assert!(matches!(
        ListenConfig::from_lookup(lookup(&[
            (env::TRANSPORT, "tcp"),
            (env::MIN_PORT, "20"),
            (env::MAX_PORT, "10")
        ])),
        Err(ListenError::PortRange { min: 20, max: 10 })
    ));
    assert!(matches!(
        ListenConfig::from_lookup(lookup(&[(env::TRANSPORT, "tcp"), (env::MIN_PORT, "x")])),
        Err(ListenError::BadPort { .. })
    ));
}

#[test]
fn advertise_addr_from_env_must_be_dialable() {
    assert_eq!(advertise_from_lookup(lookup(&[])).unwrap(), None);
    assert_eq!(
        advertise_from_lookup(lookup(&[(env::ADVERTISE_ADDR, "")])).unwrap(),
        None
    );
    assert_eq!(
        advertise_from_lookup(lookup(&[(env::ADVERTISE_ADDR, "10.1.2.3:50077")])).unwrap(),
        Some("10.1.2.3:50077".parse().unwrap())
    );
    for bad in [
        "10.1.2.3",
        "pod:50077",
        "0.0.0.0:50077",
        "[::]:1",
        "10.1.2.3:0",
    ] {
        let err = advertise_from_lookup(lookup(&[(env::ADVERTISE_ADDR, bad)])).unwrap_err();
        assert!(
            matches!(&err, ListenError::BadAdvertiseAddr { .. }),
            "{bad}: {err:?}"
        );
        assert!(err.to_string().contains("INTERCOM_ADVERTISE_ADDR"), "{err}");
    }
}

#[tokio::test]
async fn tcp_range_binds_inside_range_and_unix_socket_is_removed() {
    let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let l = Listener::bind(&ListenConfig::TcpRange {
        min: port,
        max: port,
    })
    .unwrap();
    assert_eq!(l.address().unwrap(), format!("127.0.0.1:{port}"));
    // The only port is taken now.
    let err = Listener::bind(&ListenConfig::TcpRange {
        min: port,
        max: port,
    })
    .unwrap_err();
    assert!(matches!(err, ListenError::NoFreePort { .. }));

    let u = Listener::bind(&ListenConfig::Unix {
        dir: None,
        group: None,
    })
    .unwrap();
    let path = PathBuf::from(u.address().unwrap());
    assert!(path.exists());
    let _c = dial(Network::Unix, &u.address().unwrap()).await.unwrap();
    drop(u);
    assert!(
        !path.exists(),
        "socket file must be removed with the listener"
    );
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn a_unix_socket_and_its_directory_are_private() {
    let base = tempfile::tempdir().unwrap();
    let l = Listener::bind(&ListenConfig::Unix {
        dir: Some(base.path().to_path_buf()),
        group: None,
    })
    .unwrap();
    let socket = PathBuf::from(l.address().unwrap());
    assert_eq!(mode(&socket), 0o600, "socket mode");
    assert_eq!(
        mode(socket.parent().unwrap()),
        0o700,
        "socket directory mode"
    );
}

#[tokio::test]
async fn a_unix_socket_group_owns_the_socket_and_may_connect() {
    use std::os::unix::fs::MetadataExt;
    let base = tempfile::tempdir().unwrap();
    // Our own primary group: one this process may always chown to.
    let gid = nix::unistd::getegid().as_raw();
    let l = Listener::bind(&ListenConfig::Unix {
        dir: Some(base.path().to_path_buf()),
        group: Some(SocketGroup::new(gid.to_string())),
    })
    .unwrap();
    let socket = PathBuf::from(l.address().unwrap());
    let dir = socket.parent().unwrap();
    assert_eq!(mode(&socket), 0o660, "socket mode");
    assert_eq!(mode(dir), 0o710, "socket directory mode");
    assert_eq!(std::fs::metadata(&socket).unwrap().gid(), gid);
    assert_eq!(std::fs::metadata(dir).unwrap().gid(), gid);
    let _c = dial(Network::Unix, &l.address().unwrap()).await.unwrap();
}

#[test]
fn an_unknown_unix_socket_group_fails_the_bind_with_its_name() {
    let base = tempfile::tempdir().unwrap();
    let err = Listener::bind(&ListenConfig::Unix {
        dir: Some(base.path().to_path_buf()),
        group: Some(SocketGroup::new("no-such-group-intercom-test")),
    })
    .unwrap_err();
    assert!(matches!(err, ListenError::SocketDir(_)), "{err:?}");
    assert!(
        err.to_string().contains("no-such-group-intercom-test"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(base.path()).unwrap().count(),
        0,
        "nothing left"
    );
}
