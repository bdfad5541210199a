//! TLS to PostgreSQL with rustls, honouring libpq's `sslmode` and `sslrootcert` in the connection
//! string: `disable`, `prefer` (TLS when the server offers it), `require` (TLS, certificate not
//! checked, as libpq without a root certificate), `verify-ca` (the chain, against `sslrootcert`
//! or the platform's roots) and `verify-full` (the chain and the host name).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;

/// libpq's `sslmode`, as far as it matters here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// A connection string with its TLS parameters taken out (tokio-postgres knows only disable,
/// prefer and require).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub connection_string: String,
    pub ssl_mode: SslMode,
    pub root_cert: Option<String>,
    /// No TLS will be tried (`disable`, or `prefer` over a Unix-domain socket): connect without a
    /// TLS connector, which would refuse a socket directory as a server name.
    pub plain: bool,
}

fn parse_mode(value: &str) -> Result<SslMode, String> {
    Ok(match value {
        "disable" => SslMode::Disable,
        "allow" | "prefer" => SslMode::Prefer,
        "require" => SslMode::Require,
        "verify-ca" => SslMode::VerifyCa,
        "verify-full" => SslMode::VerifyFull,
        other => return Err(format!("unknown sslmode {other:?}")),
    })
}

/// Splits `sslmode` and `sslrootcert` off a URL (`postgres://…?sslmode=…`) or a key=value
/// connection string. Without `sslmode`, it is `prefer`, as in libpq.
pub fn parse(url: &str) -> Result<Target, String> {
    let mut ssl_mode = None;
    let mut root_cert = None;
    // A host that is a directory is a Unix-domain socket, where libpq never uses TLS.
    let mut unix_socket = url.split_once("://").is_some_and(|(_, rest)| {
        let authority = rest.split('/').next().unwrap_or("");
        let host = authority.rsplit('@').next().unwrap_or("");
        host.to_ascii_uppercase().starts_with("%2F")
    });
    let mut take = |key: &str, value: &str| -> Result<bool, String> {
        match key {
            "sslmode" => ssl_mode = Some(parse_mode(value)?),
            "sslrootcert" => root_cert = Some(value.to_string()),
            "host" => {
                unix_socket |= value.starts_with('/') || value.starts_with("%2F");
                return Ok(false);
            }
            _ => return Ok(false),
        }
        Ok(true)
    };
    let connection_string = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_string(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    if !take(key, value)? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for pair in url.split_whitespace() {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(key, value.trim_matches('\''))? {
                kept.push(pair);
            }
        }
        kept.join(" ")
    };
    let ssl_mode = ssl_mode.unwrap_or(SslMode::Prefer);
    // tokio-postgres gets the mode it understands; the checks are the rustls config's.
    let passed_on = match ssl_mode {
        SslMode::Disable => "disable",
        SslMode::Prefer if unix_socket => "disable",
        SslMode::Prefer => "prefer",
        _ => "require",
    };
    let connection_string = if connection_string.contains("://") {
        let separator = if connection_string.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{connection_string}{separator}sslmode={passed_on}")
    } else {
        format!("{connection_string} sslmode={passed_on}")
    };
    Ok(Target {
        connection_string,
        ssl_mode,
        root_cert,
        plain: passed_on == "disable",
    })
}

/// Accepts any certificate: `prefer` and `require` encrypt without checking who answers (libpq
/// does the same without a root certificate); `verify-ca` and `verify-full` check.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Checks the chain but not the host name (`verify-ca`).
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

fn roots(root_cert: Option<&str>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match root_cert {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("sslrootcert {path}: {e}"))?
            {
                let cert = cert.map_err(|e| format!("sslrootcert {path}: {e}"))?;
                store
                    .add(cert)
                    .map_err(|e| format!("sslrootcert {path}: {e}"))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = store.add(cert);
            }
        }
    }
    if store.is_empty() {
        return Err("no root certificate to verify the server with (set sslrootcert)".into());
    }
    Ok(store)
}

/// The rustls configuration for `target`.
pub fn client_config(target: &Target) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match target.ssl_mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth(),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots(target.root_cert.as_deref())?),
                provider,
            )
            .build()
            .map_err(|e| e.to_string())?;
            if target.ssl_mode == SslMode::VerifyFull {
                builder.with_webpki_verifier(verifier).with_no_client_auth()
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)))
                    .with_no_client_auth()
            }
        }
    };
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_tls_parameters() {
        let t = parse(
            "postgres://w@db/mfa?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(t.ssl_mode, SslMode::VerifyFull);
        assert_eq!(t.root_cert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(
            t.connection_string,
            "postgres://w@db/mfa?application_name=x&sslmode=require"
        );
        let t = parse("postgres://w@db/mfa").unwrap();
        assert_eq!(t.ssl_mode, SslMode::Prefer);
        assert_eq!(t.connection_string, "postgres://w@db/mfa?sslmode=prefer");
    }

    #[test]
    fn a_unix_socket_is_not_offered_tls_unless_asked_for() {
        let t = parse("host=/tmp port=5432 dbname=mfa").unwrap();
        assert_eq!(
            t.connection_string,
            "host=/tmp port=5432 dbname=mfa sslmode=disable"
        );
        let t = parse("postgres://w@%2Ftmp/mfa").unwrap();
        assert_eq!(
            t.connection_string,
            "postgres://w@%2Ftmp/mfa?sslmode=disable"
        );
        let t = parse("postgres://w@db/mfa?host=/var/run/postgresql").unwrap();
        assert!(
            t.connection_string.ends_with("sslmode=disable"),
            "{}",
            t.connection_string
        );
        let t = parse("host=/tmp sslmode=require").unwrap();
        assert_eq!(t.connection_string, "host=/tmp sslmode=require");
        assert!(!t.plain);
    }

    #[test]
    fn key_value_strings_lose_their_tls_parameters() {
        let t = parse("host=db user=w sslmode=require dbname=mfa").unwrap();
        assert_eq!(t.ssl_mode, SslMode::Require);
        assert_eq!(
            t.connection_string,
            "host=db user=w dbname=mfa sslmode=require"
        );
        let t = parse("host=db sslmode=disable").unwrap();
        assert_eq!(t.connection_string, "host=db sslmode=disable");
        assert!(parse("host=db sslmode=sometimes").is_err());
    }

    #[test]
    fn verification_needs_roots() {
        let t = parse("host=db sslmode=verify-full sslrootcert=/nonexistent/ca.pem").unwrap();
        assert!(client_config(&t).is_err());
        assert!(client_config(&parse("host=db sslmode=require").unwrap()).is_ok());
    }
}
