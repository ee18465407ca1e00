//! TLS end to end: a certificate authority made by the test signs one certificate, which both a
//! real influxd (serving HTTPS) and the gateway's listener use; the gateway trusts that node only
//! through `nodes[].ca_file`, and the client only through the same CA.

mod common;

use std::{fs, path::Path};

use common::{Gateway, Influxd};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};

/// Writes `ca.pem`, `cert.pem` and `key.pem` for 127.0.0.1 and localhost into `dir`.
fn make_certificates(dir: &Path) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "influx-gateway test CA");
    let ca_key = KeyPair::generate().expect("CA key");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");

    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().expect("an IP")));
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("certificate");

    fs::write(dir.join("ca.pem"), ca.pem()).expect("write ca.pem");
    fs::write(dir.join("cert.pem"), cert.pem()).expect("write cert.pem");
    fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write key.pem");
}

#[test]
fn https_from_the_client_to_the_gateway_to_the_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    make_certificates(dir.path());
    let (ca, cert, key) = (
        dir.path().join("ca.pem"),
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
    );
    let node = Influxd::start_https("secure", &cert, &key);
    assert!(node.url().starts_with("https://"));
    let extra = format!(
        "tls:\n  cert: \"{}\"\n  key: \"{}\"\n",
        cert.display(),
        key.display()
    );
    let gateway = Gateway::start_node_yaml(
        &format!(
            "  - name: secure\n    url: \"{}\"\n    ca_file: \"{}\"\n",
            node.url(),
            ca.display()
        ),
        &extra,
    );
    let gw = gateway.url();
    assert!(gw.starts_with("https://"));

    let reply = common::post_tls(&format!("{gw}/query?q=CREATE+DATABASE+tls"), b"", &ca);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = common::post_tls(&format!("{gw}/write?db=tls"), b"secure v=1 1", &ca);
    assert_eq!(reply.status, 204, "{}", reply.body);
    let reply = common::get_tls(&format!("{gw}/query?db=tls&q=SELECT+v+FROM+secure"), &ca);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        common::series_values(&reply.json()),
        vec![serde_json::json!(["1970-01-01T00:00:00.000000001Z", 1])]
    );
    // Straight from the node, over its own HTTPS.
    let direct = common::get_tls(
        &format!("{}/query?db=tls&q=SELECT+count(v)+FROM+secure", node.url()),
        &ca,
    );
    assert_eq!(
        common::series_values(&direct.json()),
        vec![serde_json::json!(["1970-01-01T00:00:00Z", 1])]
    );
    let health = common::get_tls(&format!("{gw}/health"), &ca).json();
    assert_eq!(health["nodes"][0]["state"], "up", "{health}");
}
