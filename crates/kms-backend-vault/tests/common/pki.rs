//! Certificates made here (rcgen) for the TLS tests, and OpenBao listeners that use them.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

use super::free_port;

/// A private CA (and an unrelated one) with a server and a client certificate, as PEM files.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(super::unique("kms-vault-tls"));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = make_ca("kms test CA");
        let other = make_ca("some other CA");
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("other-ca.pem"), other.pem()).unwrap();
        leaf(&dir, "server", &ca, ExtendedKeyUsagePurpose::ServerAuth);
        leaf(&dir, "client", &ca, ExtendedKeyUsagePurpose::ClientAuth);
        Self { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn make_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(dir: &Path, name: &str, ca: &CertifiedIssuer<'static, KeyPair>, usage: ExtendedKeyUsagePurpose) {
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
}

/// Two extra OpenBao listeners: TLS with the private CA's server certificate, and the same
/// requiring a client certificate of that CA. Returns the HCL and both ports.
pub fn tls_listeners(pki: &Pki) -> (String, u16, u16) {
    let (tls_port, mtls_port) = (free_port(), free_port());
    let hcl = format!(
        r#"
listener "tcp" {{
  address = "127.0.0.1:{tls_port}"
  tls_cert_file = "{cert}"
  tls_key_file = "{key}"
}}
listener "tcp" {{
  address = "127.0.0.1:{mtls_port}"
  tls_cert_file = "{cert}"
  tls_key_file = "{key}"
  tls_client_ca_file = "{ca}"
  tls_require_and_verify_client_cert = true
}}
"#,
        cert = pki.path("server.pem").display(),
        key = pki.path("server-key.pem").display(),
        ca = pki.path("ca.pem").display(),
    );
    (hcl, tls_port, mtls_port)
}
