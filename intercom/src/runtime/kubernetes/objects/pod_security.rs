//! What makes a built pod pass Pod Security "restricted": its security contexts, its
//! non-root user, and the writable scratch volume on its read-only root filesystem.

use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, SeccompProfile, SecurityContext,
};

/// The writable scratch volume of a built pod (an `emptyDir`: the root filesystem is
/// read-only), mounted at [`TMP_MOUNT`].
pub(super) const TMP_VOLUME: &str = "tmp";

/// Where [`TMP_VOLUME`] is mounted: the container's working directory and `TMPDIR`.
pub(super) const TMP_MOUNT: &str = "/tmp";

/// The non-root user built pods run as when the image names none (distroless' `nonroot`).
pub const DEFAULT_RUN_AS_USER: i64 = 65532;

/// Pod Security "restricted" at the pod level: non-root (uid and gid
/// [`DEFAULT_RUN_AS_USER`]), the runtime's default seccomp profile.
pub(super) fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(DEFAULT_RUN_AS_USER),
        run_as_group: Some(DEFAULT_RUN_AS_USER),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// Pod Security "restricted" for the container: no privilege escalation, every
/// capability dropped, and a read-only root filesystem.
pub(super) fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        ..SecurityContext::default()
    }
}
