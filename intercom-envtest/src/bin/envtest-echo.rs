//! Test workload for the envtest kubelet (not part of the library API).
//!
//! Prints `envtest-echo pid=<pid> listen=<INTERCOM_LISTEN_ADDR> pod_ip=<POD_IP>`, then
//! `ECHO_LINES` lines `line <n>` (default 3) on stdout and one line on stderr, then:
//!
//! * `ECHO_EXIT_CODE=<n>`: exits with `n` (after `ECHO_EXIT_AFTER_MS`, default 0);
//! * `ECHO_GRPC_SERVICE=<name>`: serves gRPC health on `INTERCOM_LISTEN_ADDR`, reporting
//!   `<name>` (and `""`) as SERVING;
//! * otherwise: a TCP echo server on `INTERCOM_LISTEN_ADDR`.
//!
//! `ECHO_PRINT_ENV=A,B` prints `env A=<value>` for each listed variable first.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn main() {
    let listen = var("INTERCOM_LISTEN_ADDR").unwrap_or_else(|| "127.0.0.1:0".into());
    println!(
        "envtest-echo pid={} listen={listen} pod_ip={}",
        std::process::id(),
        var("POD_IP").unwrap_or_default()
    );
    for name in var("ECHO_PRINT_ENV")
        .unwrap_or_default()
        .split(',')
        .filter(|n| !n.is_empty())
    {
        println!("env {name}={}", var(name).unwrap_or_default());
    }
    let lines: u32 = var("ECHO_LINES").and_then(|v| v.parse().ok()).unwrap_or(3);
    for i in 0..lines {
        println!("line {i}");
    }
    eprintln!("envtest-echo stderr");
    if let Some(code) = var("ECHO_EXIT_CODE").and_then(|v| v.parse::<i32>().ok()) {
        let after = var("ECHO_EXIT_AFTER_MS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        std::thread::sleep(Duration::from_millis(after));
        println!("exiting with {code}");
        std::process::exit(code);
    }
    let addr: SocketAddr = match listen.parse() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("bad INTERCOM_LISTEN_ADDR {listen:?}: {e}");
            std::process::exit(2);
        }
    };
    if let Some(service) = var("ECHO_GRPC_SERVICE") {
        grpc_health(addr, service);
        return;
    }
    let listener = match TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("failed to listen on {addr}: {e}");
            std::process::exit(3);
        }
    };
    println!("listening on {addr}");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 || buf.get(..n).is_none_or(|b| stream.write_all(b).is_err()) {
                    break;
                }
            }
        });
    }
}

fn grpc_health(addr: SocketAddr, service: String) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("failed to start a runtime: {e}");
            std::process::exit(4);
        }
    };
    runtime.block_on(async move {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status(&service, tonic_health::ServingStatus::Serving)
            .await;
        println!("serving grpc health for {service:?} on {addr}");
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(health)
            .serve(addr)
            .await
        {
            eprintln!("grpc server failed: {e}");
            std::process::exit(5);
        }
    });
}
