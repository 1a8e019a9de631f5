//! Container probes: tcpSocket, grpc, httpGet and exec, with the kubelet's defaults.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Where a probe runs: the pod's address, the container's ports, env and directory.
#[derive(Debug, Clone)]
pub(crate) struct ProbeTarget {
    pub(crate) ip: Ipv4Addr,
    pub(crate) ports: Vec<ContainerPort>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) dir: PathBuf,
}

/// The probe's timing with Kubernetes defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    pub(crate) initial_delay: Duration,
    pub(crate) period: Duration,
    pub(crate) timeout: Duration,
    pub(crate) success_threshold: u32,
    pub(crate) failure_threshold: u32,
}

fn secs(v: Option<i32>, default: u64, min: u64) -> Duration {
    Duration::from_secs(
        v.and_then(|v| u64::try_from(v).ok())
            .unwrap_or(default)
            .max(min),
    )
}

impl Timing {
    pub(crate) fn of(probe: &Probe) -> Self {
        let count = |v: Option<i32>, default: u32| {
            v.and_then(|v| u32::try_from(v).ok())
                .unwrap_or(default)
                .max(1)
        };
        Self {
            initial_delay: secs(probe.initial_delay_seconds, 0, 0),
            period: secs(probe.period_seconds, 10, 1),
            timeout: secs(probe.timeout_seconds, 1, 1),
            success_threshold: count(probe.success_threshold, 1),
            failure_threshold: count(probe.failure_threshold, 3),
        }
    }
}

fn resolve_port(port: &IntOrString, target: &ProbeTarget) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => match target
            .ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
        {
            Some(p) => p.container_port,
            None => name
                .parse()
                .map_err(|_| format!("port {name:?} not found in the container's ports"))?,
        },
    };
    u16::try_from(number).map_err(|_| format!("invalid port number {number}"))
}

/// Runs `probe` once; `Err` carries the failure message.
pub(crate) async fn run(probe: &Probe, target: &ProbeTarget) -> Result<(), String> {
    let timeout = Timing::of(probe).timeout;
    let attempt = async {
        if let Some(tcp) = &probe.tcp_socket {
            let port = resolve_port(&tcp.port, target)?;
            let host = tcp.host.clone().unwrap_or_else(|| target.ip.to_string());
            TcpStream::connect((host.as_str(), port))
                .await
                .map(drop)
                .map_err(|e| format!("dial tcp {host}:{port}: {e}"))
        } else if let Some(grpc) = &probe.grpc {
            let port = u16::try_from(grpc.port)
                .map_err(|_| format!("invalid port number {}", grpc.port))?;
            grpc_check(
                target.ip,
                port,
                grpc.service.clone().unwrap_or_default(),
                timeout,
            )
            .await
        } else if let Some(http) = &probe.http_get {
            let port = resolve_port(&http.port, target)?;
            if http
                .scheme
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("https"))
            {
                return Err("HTTPS probes are not supported by the envtest kubelet".into());
            }
            let host = http.host.clone().unwrap_or_else(|| target.ip.to_string());
            let path = http.path.clone().unwrap_or_else(|| "/".into());
            let headers: Vec<(String, String)> = http
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect();
            http_get(&host, port, &path, &headers).await
        } else if let Some(exec) = &probe.exec {
            exec_check(exec.command.as_deref().unwrap_or_default(), target, timeout).await
        } else {
            Err("probe has no handler".into())
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("probe timed out after {timeout:?}")),
    }
}

async fn grpc_check(
    ip: Ipv4Addr,
    port: u16,
    service: String,
    timeout: Duration,
) -> Result<(), String> {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{ip}:{port}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(timeout)
        .timeout(timeout);
    let channel = endpoint.connect().await.map_err(|e| {
        format!("failed to connect service \"{ip}:{port}\" within {timeout:?}: {e}")
    })?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.clone(),
        })
        .await
        .map_err(|status| format!("health rpc failed: {} {}", status.code(), status.message()))?;
    let status = response.into_inner().status;
    if status == ServingStatus::Serving as i32 {
        Ok(())
    } else {
        let name = ServingStatus::try_from(status)
            .map_or_else(|_| status.to_string(), |s| s.as_str_name().to_owned());
        Err(format!("service unhealthy (responded with {name:?})"))
    }
}

async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> Result<(), String> {
    let mut stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("Get \"http://{host}:{port}{path}\": {e}"))?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.35\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    let line = String::from_utf8_lossy(&head);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            format!(
                "malformed HTTP response {:?}",
                line.lines().next().unwrap_or_default()
            )
        })?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

async fn exec_check(
    command: &[String],
    target: &ProbeTarget,
    timeout: Duration,
) -> Result<(), String> {
    let Some((program, args)) = command.split_first() else {
        return Err("exec probe has an empty command".into());
    };
    let output = tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .envs(target.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&target.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(timeout, output)
        .await
        .map_err(|_| format!("command {command:?} timed out"))?
        .map_err(|e| format!("failed to run {program:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "command {command:?} exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::TCPSocketAction;

    fn target() -> ProbeTarget {
        ProbeTarget {
            ip: Ipv4Addr::LOCALHOST,
            ports: vec![ContainerPort {
                container_port: 1,
                name: Some("web".into()),
                ..ContainerPort::default()
            }],
            env: Vec::new(),
            dir: std::env::temp_dir(),
        }
    }

    #[tokio::test]
    async fn tcp_probe_follows_the_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let probe = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(i32::from(port)),
                host: None,
            }),
            ..Probe::default()
        };
        assert_eq!(run(&probe, &target()).await, Ok(()));
        drop(listener);
        assert!(run(&probe, &target()).await.is_err());
    }

    #[test]
    fn named_ports_and_defaults() {
        assert_eq!(
            resolve_port(&IntOrString::String("web".into()), &target()),
            Ok(1)
        );
        assert!(resolve_port(&IntOrString::String("nope".into()), &target()).is_err());
        let t = Timing::of(&Probe::default());
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.failure_threshold, 3);
    }
}
