//! The control plane's certificates and keys: one CA, the serving and client certificates of
//! each component, and the service-account signing key pair.

use std::fmt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use super::ControlPlaneError;

/// The issuer of the service-account tokens (`--service-account-issuer`).
pub(super) const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The cluster's certificate authority and the files derived from it.
///
/// Every certificate of the control plane is signed by this one CA: the apiserver's serving
/// certificate, the client certificates of the admin, the controller-manager and the
/// apiserver's kubelet client. The apiserver trusts it for client certificates
/// (`--client-ca-file`) and for kubelet serving certificates (`--kubelet-certificate-authority`),
/// so a kubelet serves with a certificate from [`Pki::issue_serving_cert`] and checks the
/// apiserver's kubelet client certificate against [`Pki::ca_cert_pem`].
///
/// All paths are inside the control plane's temporary directory and vanish with it.
#[non_exhaustive]
pub struct Pki {
    /// The CA certificate, PEM.
    pub ca_cert_pem: String,
    /// The CA private key (PKCS#8 PEM). Test material: never reuse it outside the test.
    pub ca_key_pem: String,
    /// The directory holding every file below.
    pub dir: PathBuf,
    /// The CA certificate file (`ca.crt`).
    pub ca_cert_path: PathBuf,
    /// The CA private key file (`ca.key`).
    pub ca_key_path: PathBuf,
    /// The client certificate the apiserver presents to kubelets
    /// (`--kubelet-client-certificate`; CN `kube-apiserver-kubelet-client`, O `system:masters`).
    pub apiserver_kubelet_client_cert_path: PathBuf,
    /// The key of [`Pki::apiserver_kubelet_client_cert_path`] (`--kubelet-client-key`).
    pub apiserver_kubelet_client_key_path: PathBuf,
    ca_params: CertificateParams,
    ca_key: KeyPair,
}

impl fmt::Debug for Pki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys stay out of logs.
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .field("ca_cert_path", &self.ca_cert_path)
            .finish_non_exhaustive()
    }
}

/// A certificate and its private key, both PEM, signed by the cluster CA.
#[derive(Clone)]
#[non_exhaustive]
pub struct IssuedCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert").finish_non_exhaustive()
    }
}

/// The files the component command lines name, besides those in [`Pki`].
#[derive(Debug)]
pub(super) struct Material {
    pub(super) apiserver_cert_path: PathBuf,
    pub(super) apiserver_key_path: PathBuf,
    /// Private half of the service-account signing pair (PKCS#8 PEM).
    pub(super) service_account_key_path: PathBuf,
    /// Public half of the service-account signing pair (SPKI PEM).
    pub(super) service_account_pub_path: PathBuf,
    pub(super) admin: IssuedCert,
    pub(super) controller_manager: IssuedCert,
}

impl Pki {
    /// Creates the CA and every certificate the control plane needs, and writes them to `dir`.
    /// `apiserver_ips` are the addresses the apiserver's serving certificate must name
    /// besides 127.0.0.1: the ClusterIP of the `kubernetes` Service (the first address of
    /// `--service-cluster-ip-range`) and the advertised address, if any.
    pub(super) fn generate(
        dir: &Path,
        apiserver_ips: &[&str],
    ) -> Result<(Pki, Material), ControlPlaneError> {
        create_dir(dir)?;

        let ca_subject = "intercom-envtest-ca";
        let cert_err = |source| ControlPlaneError::Certificates {
            subject: ca_subject.to_owned(),
            source,
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
        ca_params.distinguished_name = distinguished_name(ca_subject, &[]);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().map_err(cert_err)?;
        let ca_cert = ca_params.self_signed(&ca_key).map_err(cert_err)?;

        let pki = Pki {
            ca_cert_pem: ca_cert.pem(),
            ca_key_pem: ca_key.serialize_pem(),
            dir: dir.to_owned(),
            ca_cert_path: dir.join("ca.crt"),
            ca_key_path: dir.join("ca.key"),
            apiserver_kubelet_client_cert_path: dir.join("apiserver-kubelet-client.crt"),
            apiserver_kubelet_client_key_path: dir.join("apiserver-kubelet-client.key"),
            ca_params,
            ca_key,
        };
        write(&pki.ca_cert_path, &pki.ca_cert_pem)?;
        write(&pki.ca_key_path, &pki.ca_key_pem)?;

        let sans: Vec<&str> = [
            "127.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        .into_iter()
        .chain(apiserver_ips.iter().copied())
        .collect();
        let serving = pki.issue_serving_cert("kube-apiserver", &sans)?;
        let kubelet_client =
            pki.issue_client_cert("kube-apiserver-kubelet-client", &["system:masters"])?;
        let admin = pki.issue_client_cert("admin", &["system:masters"])?;
        let controller_manager = pki.issue_client_cert("system:kube-controller-manager", &[])?;

        let sa_key = KeyPair::generate().map_err(|source| ControlPlaneError::Certificates {
            subject: "service-account signing key".to_owned(),
            source,
        })?;

        let material = Material {
            apiserver_cert_path: dir.join("apiserver.crt"),
            apiserver_key_path: dir.join("apiserver.key"),
            service_account_key_path: dir.join("sa.key"),
            service_account_pub_path: dir.join("sa.pub"),
            admin,
            controller_manager,
        };
        write(&material.apiserver_cert_path, &serving.cert_pem)?;
        write(&material.apiserver_key_path, &serving.key_pem)?;
        write(
            &pki.apiserver_kubelet_client_cert_path,
            &kubelet_client.cert_pem,
        )?;
        write(
            &pki.apiserver_kubelet_client_key_path,
            &kubelet_client.key_pem,
        )?;
        write(&material.service_account_key_path, &sa_key.serialize_pem())?;
        write(&material.service_account_pub_path, &sa_key.public_key_pem())?;
        Ok((pki, material))
    }

    /// Issues a TLS serving certificate signed by the cluster CA.
    ///
    /// `sans` are the subject alternative names; entries that parse as IP addresses become IP
    /// SANs, the others DNS names. A kubelet needs its node's `InternalIP` among them, because
    /// the apiserver verifies kubelet serving certificates against this CA.
    ///
    /// # Errors
    ///
    /// [`ControlPlaneError::Certificates`] if a name is not a valid DNS name or signing fails.
    pub fn issue_serving_cert(
        &self,
        common_name: &str,
        sans: &[&str],
    ) -> Result<IssuedCert, ControlPlaneError> {
        self.issue(common_name, &[], sans, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// Issues a TLS client certificate signed by the cluster CA: the apiserver authenticates
    /// it as user `common_name` in the groups `organizations`.
    ///
    /// # Errors
    ///
    /// [`ControlPlaneError::Certificates`] if signing fails.
    pub fn issue_client_cert(
        &self,
        common_name: &str,
        organizations: &[&str],
    ) -> Result<IssuedCert, ControlPlaneError> {
        self.issue(
            common_name,
            organizations,
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    fn issue(
        &self,
        common_name: &str,
        organizations: &[&str],
        sans: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<IssuedCert, ControlPlaneError> {
        let err = |source| ControlPlaneError::Certificates {
            subject: common_name.to_owned(),
            source,
        };
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).map_err(err)?;
        params.distinguished_name = distinguished_name(common_name, organizations);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(err)?;
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).map_err(err)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn distinguished_name(common_name: &str, organizations: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for org in organizations {
        dn.push(DnType::OrganizationName, *org);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn create_dir(dir: &Path) -> Result<(), ControlPlaneError> {
    std::fs::create_dir_all(dir).map_err(|source| ControlPlaneError::WriteFile {
        path: dir.to_owned(),
        source,
    })
}

pub(super) fn write(path: &Path, contents: &str) -> Result<(), ControlPlaneError> {
    std::fs::write(path, contents).map_err(|source| ControlPlaneError::WriteFile {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_writes_every_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (pki, material) = Pki::generate(dir.path(), &["10.0.0.1"]).expect("generate");
        for path in [
            &pki.ca_cert_path,
            &pki.ca_key_path,
            &pki.apiserver_kubelet_client_cert_path,
            &pki.apiserver_kubelet_client_key_path,
            &material.apiserver_cert_path,
            &material.apiserver_key_path,
            &material.service_account_key_path,
            &material.service_account_pub_path,
        ] {
            let text = std::fs::read_to_string(path).expect("read");
            assert!(text.starts_with("-----BEGIN "), "{path:?} is not PEM");
        }
        assert!(pki.ca_cert_pem.contains("BEGIN CERTIFICATE"));
        assert!(material.admin.key_pem.contains("BEGIN PRIVATE KEY"));
        // Debug must not print keys.
        assert!(!format!("{pki:?}").contains("PRIVATE"));
        assert!(!format!("{:?}", material.admin).contains("PRIVATE"));
    }

    #[test]
    fn issue_rejects_invalid_dns_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (pki, _) = Pki::generate(dir.path(), &["10.0.0.1"]).expect("generate");
        let err = pki
            .issue_serving_cert("node", &["caf\u{e9}.example"])
            .expect_err("invalid SAN");
        assert!(err.to_string().contains("`node`"), "{err}");
    }
}
