//! TLS: the listener's certificate (`tls.cert`, `tls.key`) and the trust for `https://` nodes
//! (`nodes[].ca_file`, else the system's roots). rustls with the `ring` provider throughout.

use std::{
    fs::File,
    io::BufReader,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    crypto::ring::default_provider,
    pki_types::{CertificateDer, PrivateKeyDer},
    ClientConfig, RootCertStore, ServerConfig,
};

use crate::config::{NodeConfig, TlsConfig};

/// Why TLS could not be set up; names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("{}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS or the PEM parser said.
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{}: {what}", .path.display())]
    Empty {
        /// The file.
        path: PathBuf,
        /// What was looked for.
        what: &'static str,
    },
    /// rustls refused the material.
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    /// No root certificate could be loaded for an `https://` node without a `ca_file`.
    #[error("no system root certificates found for https nodes without ca_file: {0}")]
    NoSystemRoots(String),
}

/// The listener's configuration.
pub fn server_config(tls: &TlsConfig) -> Result<ServerConfig, TlsError> {
    let certs = certificates(&tls.cert)?;
    let key = private_key(&tls.key)?;
    Ok(
        ServerConfig::builder_with_provider(Arc::new(default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?,
    )
}

/// The configuration for talking to `node`, if it is an `https://` node.
pub fn node_client_config(node: &NodeConfig) -> Result<Option<Arc<ClientConfig>>, TlsError> {
    if !node.url.starts_with("https://") {
        return Ok(None);
    }
    client_config(std::slice::from_ref(node)).map(Some)
}

/// One configuration trusting what every `https://` node of `nodes` needs, for the clients that
/// talk to any node (reads from the HTTP workers); `None` when no node uses https.
pub fn shared_client_config(nodes: &[NodeConfig]) -> Result<Option<Arc<ClientConfig>>, TlsError> {
    let https: Vec<NodeConfig> = nodes
        .iter()
        .filter(|n| n.url.starts_with("https://"))
        .cloned()
        .collect();
    if https.is_empty() {
        return Ok(None);
    }
    client_config(&https).map(Some)
}

fn client_config(nodes: &[NodeConfig]) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    if nodes.iter().any(|n| n.ca_file.is_none()) {
        let found = rustls_native_certs::load_native_certs();
        if found.certs.is_empty() {
            let why = found
                .errors
                .first()
                .map_or("none installed".to_owned(), |e| e.to_string());
            return Err(TlsError::NoSystemRoots(why));
        }
        roots.add_parsable_certificates(found.certs);
    }
    for path in nodes.iter().filter_map(|n| n.ca_file.as_deref()) {
        for cert in certificates(path)? {
            roots.add(cert)?;
        }
    }
    let config = ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn open(path: &Path) -> Result<BufReader<File>, TlsError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut open(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: path.to_owned(),
            what: "no PEM certificate in it",
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut open(path)?)
        .map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(|| TlsError::Empty {
            path: path.to_owned(),
            what: "no PEM private key in it",
        })
}
