//! Tests of the built objects (valid, Pod Security "restricted", a writable working
//! directory) and of what `inject` adds.

use k8s_openapi::api::core::v1::Probe;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::*;
use crate::runtime::kubernetes::validate::{validate_deployment, validate_service};

fn injection(owner: Option<OwnerReference>) -> Injection {
    Injection {
        plugin_name: "greeter".into(),
        host_id: "host-1".into(),
        instance: "abc123".into(),
        env: vec![
            ("GREETER_PLUGIN".into(), "hello".into()),
            ("PLUGIN_PROTOCOL_VERSIONS".into(), "1".into()),
            ("PLUGIN_MULTIPLEX_GRPC".into(), "true".into()),
        ],
        protocol_versions: "1".into(),
        owner,
    }
}

#[test]
fn built_objects_are_valid() {
    let (d, s) = PluginWorkload::new("greeter:1")
        .replicas(3)
        .port(9000)
        .build("greeter");
    let pc = validate_deployment(&d).unwrap();
    assert_eq!(pc.port, 9000);
    validate_service(&s, &d, &pc).unwrap();
}

#[test]
fn built_pods_pass_pod_security_restricted() {
    let (deployment, _) = PluginWorkload::new("img:1").build("p");
    let spec = deployment.spec.unwrap().template.spec.unwrap();
    let pod = spec.security_context.unwrap();
    assert_eq!(pod.run_as_non_root, Some(true));
    assert_eq!(pod.run_as_user, Some(DEFAULT_RUN_AS_USER));
    assert_eq!(pod.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let container = spec.containers[0].security_context.clone().unwrap();
    assert_eq!(container.allow_privilege_escalation, Some(false));
    assert_eq!(
        container.capabilities.unwrap().drop,
        Some(vec!["ALL".into()])
    );
    assert_eq!(container.read_only_root_filesystem, Some(true));
    let mounts = spec.containers[0].volume_mounts.clone().unwrap();
    assert_eq!(mounts[0].mount_path, "/tmp");
    assert!(spec.volumes.unwrap()[0].empty_dir.is_some());
}

#[test]
fn built_pods_work_in_a_writable_directory_on_a_read_only_root() {
    let (deployment, _) = PluginWorkload::new("img:1").build("p");
    let spec = deployment.spec.unwrap().template.spec.unwrap();
    let container = &spec.containers[0];
    let workdir = container.working_dir.as_deref();
    assert_eq!(
        workdir,
        Some("/tmp"),
        "not the image's (root-owned) workdir"
    );
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| Some(m.mount_path.as_str()) == workdir)
        .expect("a volume mounted at the working directory");
    assert_ne!(mount.read_only, Some(true));
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .expect("the mounted volume");
    assert!(
        volume.empty_dir.is_some(),
        "writable by any uid: {volume:?}"
    );
    let env = container.env.clone().unwrap_or_default();
    let tmpdir: Vec<_> = env.iter().filter(|e| e.name == "TMPDIR").collect();
    assert_eq!(tmpdir.len(), 1);
    assert_eq!(tmpdir[0].value.as_deref(), Some("/tmp"));
    assert_eq!(
        container
            .security_context
            .as_ref()
            .and_then(|c| c.read_only_root_filesystem),
        Some(true)
    );

    let (own, _) = PluginWorkload::new("img:1")
        .env("TMPDIR", "/scratch")
        .build("p");
    let env = own.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let tmpdir: Vec<_> = env.iter().filter(|e| e.name == "TMPDIR").collect();
    assert_eq!(tmpdir.len(), 1, "the user's TMPDIR wins: {env:?}");
    assert_eq!(tmpdir[0].value.as_deref(), Some("/scratch"));
}

#[test]
fn injection_adds_env_labels_probe_and_owner() {
    let (mut d, mut s) = PluginWorkload::new("greeter:1")
        .env("GREETER_PLUGIN", "user-value")
        .env("KEEP", "me")
        .build("greeter");
    let pc = validate_deployment(&d).unwrap();
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: "host".into(),
        uid: "uid-1".into(),
        ..OwnerReference::default()
    };
    inject(&mut d, &mut s, &pc, &injection(Some(owner.clone())));
    for labels in [
        d.metadata.labels.clone().unwrap(),
        s.metadata.labels.clone().unwrap(),
        d.spec
            .clone()
            .unwrap()
            .template
            .metadata
            .unwrap()
            .labels
            .unwrap(),
    ] {
        assert_eq!(
            labels.get(MANAGED_BY_LABEL).map(String::as_str),
            Some("intercom")
        );
        assert_eq!(
            labels.get(PLUGIN_LABEL).map(String::as_str),
            Some("greeter")
        );
        assert_eq!(labels.get(HOST_LABEL).map(String::as_str), Some("host-1"));
    }
    assert_eq!(d.metadata.owner_references, Some(vec![owner]));
    let container = d.spec.unwrap().template.spec.unwrap().containers.remove(0);
    let env = container.env.unwrap();
    let get = |n: &str| env.iter().filter(|e| e.name == n).collect::<Vec<_>>();
    assert_eq!(
        get("GREETER_PLUGIN").len(),
        1,
        "the SDK's cookie replaces the user's"
    );
    assert_eq!(get("GREETER_PLUGIN")[0].value.as_deref(), Some("hello"));
    assert_eq!(get("KEEP")[0].value.as_deref(), Some("me"));
    assert_eq!(
        get("INTERCOM_LISTEN_ADDR")[0].value.as_deref(),
        Some("0.0.0.0:50077"),
        "every address of the pod: a runtime's port-forward dials its loopback"
    );
    assert_eq!(
        get("INTERCOM_ADVERTISE_ADDR")[0].value.as_deref(),
        Some("$(INTERCOM_POD_IP):50077"),
        "the handshake announces the pod IP"
    );
    let position = |n: &str| env.iter().position(|e| e.name == n);
    assert!(
        position(POD_IP_ENV) < position("INTERCOM_ADVERTISE_ADDR"),
        "$(INTERCOM_POD_IP) expands only to a variable defined before it"
    );
    assert_eq!(
        get(POD_IP_ENV)[0]
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str()),
        Some("status.podIP")
    );
    let probe = container.readiness_probe.unwrap().grpc.unwrap();
    assert_eq!(
        (probe.port, probe.service.as_deref()),
        (50077, Some("plugin"))
    );
}

#[test]
fn a_user_probe_is_kept() {
    let (mut d, mut s) = PluginWorkload::new("greeter:1").build("greeter");
    if let Some(c) = d
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .and_then(|p| p.containers.first_mut())
    {
        c.readiness_probe = Some(Probe {
            period_seconds: Some(30),
            ..Probe::default()
        });
    }
    let pc = validate_deployment(&d).unwrap();
    inject(&mut d, &mut s, &pc, &injection(None));
    let c = d.spec.unwrap().template.spec.unwrap().containers.remove(0);
    assert_eq!(c.readiness_probe.unwrap().period_seconds, Some(30));
}
