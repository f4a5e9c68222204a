//! A small edge written for the tests: a quinn client that enrols (verifying the server by the
//! join token's CA fingerprint, as uplink.md says the edge does) and speaks the uplink session,
//! with a fresh rcgen key and CSR. It tests the control plane's side on its own, without
//! netbootd. Also: starting the control plane's QUIC server in-process on 127.0.0.1:0.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ims_control::state::AppState;
use ims_control::uplink::{Ca, UplinkServer, UplinkSettings};
use ims_proto::{
    CAP_DELTA, ControlMessage, EdgeMessage, EnrollRequest, EnrollResponse, ErrorReply,
    FrameDecoder, Hello, encode_frame,
};
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{ClientConfig, Connection, Endpoint, RecvStream, SendStream};
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

/// The control plane's QUIC server, running in this process.
pub struct Running {
    pub addr: SocketAddr,
    pub ca: Arc<Ca>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Starts the uplink server on 127.0.0.1:0 over `state`'s store.
pub async fn start(state: &AppState, heartbeat_interval: Duration) -> Running {
    let ca = Arc::new(Ca::load_or_create(&state.db).await.unwrap());
    let settings = UplinkSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        names: vec![],
        heartbeat_interval,
    };
    let server = UplinkServer::bind(state.clone(), ca.clone(), settings).unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        ca,
        stop: Some(stop),
        task: Some(task),
    }
}

/// The edge's verifier during enrolment: trust the server chain only if it holds the CA whose
/// SHA-256 is the token's fingerprint, and the leaf verifies against that CA as the only root.
#[derive(Debug)]
pub struct FingerprintVerifier {
    fingerprint: String,
    provider: Arc<CryptoProvider>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ServerCertVerifier for FingerprintVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| hex(&Sha256::digest(c.as_ref())) == self.fingerprint)
            .ok_or_else(|| {
                rustls::Error::General("no CA with the join token's fingerprint".into())
            })?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn quic(mut tls: rustls::ClientConfig, alpn: &[u8]) -> ClientConfig {
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).unwrap();
    let mut config = ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(5)));
    config.transport_config(Arc::new(transport));
    config
}

/// Enrolment client configuration for a token carrying `fingerprint`.
pub fn enroll_config(fingerprint: &str) -> ClientConfig {
    let provider = provider();
    let verifier = FingerprintVerifier {
        fingerprint: fingerprint.to_owned(),
        provider: provider.clone(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    quic(tls, ims_proto::enroll_alpn())
}

/// Uplink client configuration: trust only `ca_der`, present `cert_der` with `key`.
pub fn uplink_config(ca_der: &[u8], cert_der: &[u8], key: &KeyPair) -> ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.to_vec())).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from(cert_der.to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    quic(tls, ims_proto::alpn())
}

/// Uplink client configuration without a client certificate.
pub fn anonymous_uplink_config(ca_der: &[u8]) -> ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.to_vec())).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    quic(tls, ims_proto::alpn())
}

/// A new edge key and a CSR for it.
pub fn edge_key() -> (KeyPair, Vec<u8>) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = CertificateParams::new(vec!["edge".to_owned()])
        .unwrap()
        .serialize_request(&key)
        .unwrap();
    (key, csr.der().to_vec())
}

/// A client connection and the endpoint it lives on.
pub struct Link {
    pub endpoint: Endpoint,
    pub conn: Connection,
}

/// Connects to `addr` as `ims-control`.
pub async fn connect(addr: SocketAddr, config: ClientConfig) -> Result<Link, String> {
    let mut endpoint = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(config);
    let connecting = endpoint
        .connect(addr, "ims-control")
        .map_err(|e| e.to_string())?;
    let conn = tokio::time::timeout(Duration::from_secs(10), connecting)
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    Ok(Link { endpoint, conn })
}

/// One bidirectional stream speaking frames.
pub struct Stream {
    pub endpoint: Endpoint,
    pub conn: Connection,
    pub send: SendStream,
    pub recv: RecvStream,
    decoder: FrameDecoder<ControlMessage>,
}

impl Stream {
    pub async fn open(link: Link) -> Result<Self, String> {
        let (send, recv) = link.conn.open_bi().await.map_err(|e| e.to_string())?;
        Ok(Self {
            endpoint: link.endpoint,
            conn: link.conn,
            send,
            recv,
            decoder: FrameDecoder::new(),
        })
    }

    pub async fn send(&mut self, msg: &EdgeMessage) -> Result<(), String> {
        let frame = encode_frame(msg).unwrap();
        self.send.write_all(&frame).await.map_err(|e| e.to_string())
    }

    /// The next message within `limit`, or why none came.
    pub async fn recv_within(&mut self, limit: Duration) -> Result<ControlMessage, String> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut buf = vec![0u8; 65536];
        loop {
            if let Some(msg) = self.decoder.pop().map_err(|e| e.to_string())? {
                return Ok(msg);
            }
            let read = tokio::time::timeout_at(deadline, self.recv.read(&mut buf))
                .await
                .map_err(|_| format!("no message within {limit:?}"))?;
            let read = read.map_err(|e| match e {
                quinn::ReadError::ConnectionLost(c) => format!("connection lost: {c}"),
                other => format!("stream failed: {other}"),
            });
            match read? {
                Some(n) => self.decoder.push(&buf[..n]),
                None => return Err("stream finished".to_owned()),
            }
        }
    }

    pub async fn recv(&mut self) -> ControlMessage {
        self.recv_within(Duration::from_secs(10)).await.unwrap()
    }
}

/// What an enrolment attempt got.
#[derive(Debug)]
pub enum Enrolled {
    Ok(EnrollResponse),
    Refused(ErrorReply),
}

/// Enrols with `token`, verifying the server by the fingerprint in the token.
pub async fn enroll(
    addr: SocketAddr,
    token: &str,
    hostname: &str,
    csr_der: Vec<u8>,
) -> Result<Enrolled, String> {
    let fingerprint = token.rsplit('.').next().unwrap_or_default().to_owned();
    let conn = connect(addr, enroll_config(&fingerprint)).await?;
    let mut stream = Stream::open(conn).await?;
    stream
        .send(&EdgeMessage::EnrollRequest(EnrollRequest {
            token: token.to_owned(),
            csr_der,
            hostname: hostname.to_owned(),
            software_version: "0.1.0-test".to_owned(),
        }))
        .await?;
    match stream.recv_within(Duration::from_secs(10)).await? {
        ControlMessage::EnrollResponse(r) => Ok(Enrolled::Ok(r)),
        ControlMessage::Error(e) => Ok(Enrolled::Refused(e)),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

/// An enrolled test edge: its key and certificate.
pub struct Edge {
    pub key: KeyPair,
    pub response: EnrollResponse,
}

impl Edge {
    /// Enrols a new edge (panics on refusal).
    pub async fn enroll(addr: SocketAddr, token: &str, hostname: &str) -> Self {
        let (key, csr) = edge_key();
        match enroll(addr, token, hostname, csr).await.unwrap() {
            Enrolled::Ok(response) => Self { key, response },
            Enrolled::Refused(e) => panic!("enrolment refused: {e:?}"),
        }
    }

    pub fn config(&self) -> ClientConfig {
        uplink_config(
            &self.response.ca_der,
            &self.response.certificate_der,
            &self.key,
        )
    }

    /// Connects the uplink and sends Hello (with the delta capability when `delta`).
    pub async fn connect(&self, addr: SocketAddr, delta: bool) -> Result<Stream, String> {
        let conn = connect(addr, self.config()).await?;
        let mut stream = Stream::open(conn).await?;
        stream.send(&hello(&self.response.worker_id, delta)).await?;
        Ok(stream)
    }
}

pub fn hello(worker_id: &str, delta: bool) -> EdgeMessage {
    EdgeMessage::Hello(Hello {
        worker_id: Some(worker_id.to_owned()),
        software_version: "0.1.0-test".to_owned(),
        hostname: "edge-test".to_owned(),
        capabilities: if delta {
            vec![CAP_DELTA.to_owned()]
        } else {
            vec![]
        },
        ..Hello::default()
    })
}
