//! The uplink driver and `enroll` over real QUIC on 127.0.0.1, against a small control plane
//! written here (quinn + rustls + rcgen: a CA, a server certificate for "ims-control", mutual
//! TLS on the uplink ALPN, one-time tokens on the enrolment ALPN).
//!
//! Covers: enrolment (a token for another CA is refused as a fingerprint mismatch, a refused
//! token shows the control plane's message, a good one writes the identity); the session (Hello
//! with the identity, Welcome, snapshot stored then served then acknowledged, heartbeats with
//! services and metrics, outbox events delivered and removed once acknowledged, resend and
//! Hello with the stored generation after the control plane drops the connection, a delta);
//! an unreachable control plane times out with a clear error. The end-to-end test against the
//! real `ims-control` lives elsewhere.
// A network test reads the clock and uses real timeouts; a failed setup step panics the test.
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ims_netboot::config::{Config, Endpoint};
use ims_netboot::dhcp::UnixTime;
use ims_netboot::io::uplink::enroll::{EnrollError, enroll};
use ims_netboot::io::uplink::{Uplink, UplinkParts, identity, tls};
use ims_netboot::store::events::EventKind;
use ims_netboot::store::lmdb::LmdbStore;
use ims_netboot::uplink::token::{fingerprint, hex};
use ims_netboot::uplink::{JoinToken, ServiceHealth};
use ims_proto::{
    ControlMessage, Delta, EdgeMessage, EnrollResponse, ErrorCode, ErrorReply, EventsAck,
    FrameDecoder, MacAddr, MachineEntry, ProtocolVersion, Snapshot, Welcome, alpn, encode_frame,
    enroll_alpn,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::watch;

const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "netbootd-uplink-{name}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA and the QUIC server of a minimal control plane.
struct FakeControl {
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

fn ca() -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "ims-control CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (params.self_signed(&key).unwrap(), key)
}

impl FakeControl {
    fn start() -> Self {
        tls::install_crypto_provider();
        let (ca, ca_key) = ca();
        let server_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let server = CertificateParams::new(vec!["ims-control".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &ca, &ca_key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&provider),
        )
        .allow_unauthenticated()
        .build()
        .unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![server.der().clone(), ca.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
            )
            .unwrap();
        config.alpn_protocols = vec![alpn().to_vec(), enroll_alpn().to_vec()];
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(config).unwrap();
        let endpoint = quinn::Endpoint::server(
            quinn::ServerConfig::with_crypto(Arc::new(quic)),
            (Ipv4Addr::LOCALHOST, 0).into(),
        )
        .unwrap();
        let addr = endpoint.local_addr().unwrap();
        Self {
            endpoint,
            addr,
            ca,
            ca_key,
        }
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".to_owned(),
            port: self.addr.port(),
        }
    }

    fn token(&self, secret: &str) -> JoinToken {
        JoinToken::parse(&format!(
            "IMS1.{secret}.{}",
            hex(&fingerprint(self.ca.der()))
        ))
        .unwrap()
    }

    /// The next connection, its ALPN and whether the client presented a certificate.
    async fn accept(&self) -> (quinn::Connection, Vec<u8>, bool) {
        let incoming = tokio::time::timeout(Duration::from_secs(20), self.endpoint.accept())
            .await
            .expect("a connection within 20 s")
            .expect("endpoint open");
        let connection = incoming.await.unwrap();
        let alpn = connection
            .handshake_data()
            .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|d| d.protocol)
            .unwrap_or_default();
        let has_cert = connection
            .peer_identity()
            .and_then(|i| i.downcast::<Vec<CertificateDer<'static>>>().ok())
            .is_some_and(|c| !c.is_empty());
        (connection, alpn, has_cert)
    }

    /// Answer one enrolment: refuse any secret but [`SECRET`], else issue a certificate for
    /// the CSR's key.
    async fn serve_enrolment(&self) {
        let (connection, alpn, has_cert) = self.accept().await;
        assert_eq!(alpn, enroll_alpn());
        assert!(!has_cert);
        let (mut send, mut recv) = connection.accept_bi().await.unwrap();
        let bytes = recv.read_to_end(64 * 1024).await.unwrap();
        let mut dec = FrameDecoder::<EdgeMessage>::new();
        dec.push(&bytes);
        let Some(EdgeMessage::EnrollRequest(req)) = dec.pop().unwrap() else {
            panic!("expected an EnrollRequest");
        };
        let answer = if !req.token.contains(SECRET) {
            ControlMessage::Error(ErrorReply {
                code: ErrorCode::InvalidToken,
                message: "the join token is unknown, expired or already used".into(),
                retry_after_ms: None,
            })
        } else {
            let worker = format!("site-a-{}", req.hostname.to_lowercase());
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, &worker);
            params.subject_alt_names = vec![SanType::URI(
                format!("urn:ims:worker:{worker}").try_into().unwrap(),
            )];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let cert = params
                .signed_by(&CsrKey::from_csr(&req.csr_der), &self.ca, &self.ca_key)
                .unwrap();
            ControlMessage::EnrollResponse(EnrollResponse {
                worker_id: worker,
                site: "site-a".into(),
                certificate_der: cert.der().to_vec(),
                ca_der: self.ca.der().to_vec(),
                control_endpoint: None,
            })
        };
        send.write_all(&encode_frame(&answer).unwrap())
            .await
            .unwrap();
        send.finish().unwrap();
        connection.closed().await;
    }
}

/// The P-256 public key of a CSR (test shortcut: the first uncompressed point in the DER).
struct CsrKey(Vec<u8>);

impl CsrKey {
    fn from_csr(csr: &[u8]) -> Self {
        let at = csr
            .windows(4)
            .position(|w| w == [0x03, 0x42, 0x00, 0x04])
            .expect("a P-256 public key in the CSR");
        Self(csr[at + 3..at + 3 + 65].to_vec())
    }
}

impl rcgen::PublicKeyData for CsrKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &rcgen::SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

/// The control plane's side of one uplink session.
struct Peer {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    decoder: FrameDecoder<EdgeMessage>,
    connection: quinn::Connection,
}

impl Peer {
    async fn accept(control: &FakeControl) -> Self {
        let (connection, alpn_got, has_cert) = control.accept().await;
        assert_eq!(alpn_got, alpn());
        assert!(has_cert, "the uplink presents the enrolled certificate");
        let (send, recv) = connection.accept_bi().await.unwrap();
        Self {
            send,
            recv,
            decoder: FrameDecoder::new(),
            connection,
        }
    }

    async fn next(&mut self) -> EdgeMessage {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(m) = self.decoder.pop().unwrap() {
                return m;
            }
            let mut buf = vec![0u8; 65536];
            let left = deadline.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(left, self.recv.read(&mut buf))
                .await
                .expect("a message within 10 s")
                .unwrap()
                .expect("stream open");
            self.decoder.push(&buf[..n]);
        }
    }

    /// The next message that is not a heartbeat.
    async fn next_not_heartbeat(&mut self) -> EdgeMessage {
        loop {
            match self.next().await {
                EdgeMessage::Heartbeat(_) => continue,
                other => return other,
            }
        }
    }

    async fn send(&mut self, m: impl Into<ControlMessage>) {
        self.send
            .write_all(&encode_frame(&m.into()).unwrap())
            .await
            .unwrap();
    }
}

fn machine(last: u8) -> MachineEntry {
    MachineEntry {
        mac: MacAddr([0x52, 0x54, 0, 0, 0, last]),
        ip: Some(Ipv4Addr::new(10, 77, 0, 10 + last)),
        hostname: format!("node-{last}"),
        boot_profile: None,
        netboot: true,
    }
}

fn welcome() -> Welcome {
    Welcome {
        version: ProtocolVersion::CURRENT,
        worker_id: "site-a-edge".into(),
        site: "site-a".into(),
        heartbeat_interval_ms: 200,
        server_time_ms: 0,
        capabilities: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_refusals_and_success() {
    let control = FakeControl::start();
    let ctl = control.endpoint();
    let dir = TempDir::new("enroll");

    // A token naming another CA: refused before anything is sent.
    let (other_ca, _) = ca();
    let foreign = JoinToken::parse(&format!(
        "IMS1.{SECRET}.{}",
        hex(&fingerprint(other_ca.der()))
    ))
    .unwrap();
    let server = async {
        // The handshake fails on the client side; the server sees a failed incoming.
        if let Some(incoming) = control.endpoint.accept().await {
            let _ = incoming.await;
        }
    };
    let (result, ()) = tokio::join!(
        enroll(
            dir.path(),
            &ctl,
            "ims-control",
            &foreign,
            "edge",
            "t".into()
        ),
        server
    );
    match result {
        Err(e @ EnrollError::FingerprintMismatch { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&hex(&fingerprint(other_ca.der()))), "{text}");
            assert!(
                text.contains(&hex(&fingerprint(control.ca.der()))),
                "{text}"
            );
            assert!(
                text.contains("not the one that issued the join token"),
                "{text}"
            );
        }
        other => panic!("expected a fingerprint mismatch, got {other:?}"),
    }
    assert!(!identity::is_enrolled(dir.path()));

    // A token the control plane refuses: its message is shown.
    let bad = control.token(&"f".repeat(64));
    let (result, ()) = tokio::join!(
        enroll(dir.path(), &ctl, "ims-control", &bad, "edge", "t".into()),
        control.serve_enrolment()
    );
    match result {
        Err(e @ EnrollError::Refused { .. }) => {
            let text = e.to_string();
            assert!(text.contains("InvalidToken"), "{text}");
            assert!(text.contains("already used"), "{text}");
            assert!(text.contains("ims-control join-token"), "{text}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // The good token.
    let good = control.token(SECRET);
    let (result, ()) = tokio::join!(
        enroll(
            dir.path(),
            &ctl,
            "ims-control",
            &good,
            "Edge",
            "2025-01-01T00:00:00Z".into()
        ),
        control.serve_enrolment()
    );
    let enrolled = result.expect("enrolled");
    assert_eq!(enrolled.worker_id, "site-a-edge");
    assert_eq!(enrolled.site, "site-a");
    assert_eq!(enrolled.endpoint, control.endpoint().to_string());
    let id = identity::load(dir.path()).expect("identity");
    assert_eq!(id.info.worker_id, "site-a-edge");
    assert_eq!(id.ca_der, control.ca.der().to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_control_plane_times_out_clearly() {
    let control = FakeControl::start();
    let token = control.token(SECRET);
    let port = control.addr.port();
    drop(control);
    let dir = TempDir::new("unreachable");
    let started = Instant::now();
    let endpoint = Endpoint {
        host: "127.0.0.1".into(),
        port,
    };
    let err = enroll(
        dir.path(),
        &endpoint,
        "ims-control",
        &token,
        "edge",
        "t".into(),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            EnrollError::Timeout { .. } | EnrollError::Unreachable { .. }
        ),
        "{text}"
    );
    assert!(text.contains(&port.to_string()), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "bounded by the 10 s timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_syncs_heartbeats_and_delivers_events_exactly_until_acknowledged() {
    let control = FakeControl::start();
    let ctl = control.endpoint();
    let dir = TempDir::new("session");
    let good = control.token(SECRET);
    let (result, ()) = tokio::join!(
        enroll(dir.path(), &ctl, "ims-control", &good, "edge", "t".into()),
        control.serve_enrolment()
    );
    result.expect("enrolled");

    let config = Config::from_toml_str(&format!(
        r#"
        data_dir = "{}"
        metrics_listen = "off"
        [[subnet]]
        cidr = "10.77.0.0/24"
        [control]
        endpoint = "{}"
        "#,
        dir.path().display(),
        control.endpoint()
    ))
    .unwrap();
    let store = LmdbStore::open(dir.path()).unwrap();
    let events = store.event_log().unwrap();
    let sync = store.sync_store();
    events
        .append(
            UnixTime(1_700_000_000),
            EventKind::PhoneHome {
                mac: machine(1).mac,
                ip: None,
                body: Some("done".into()),
            },
        )
        .unwrap();
    let (updates, mut updates_rx) = watch::channel(Arc::new(config.dhcp.clone()));
    let health = ServiceHealth::new();
    health.set_state(ims_proto::SERVICE_DHCP, ims_proto::ServiceState::Running);
    let uplink = Uplink::new(UplinkParts {
        control: config.control.clone().unwrap(),
        identity: identity::load(dir.path()).unwrap(),
        base: config.dhcp.clone(),
        sync: sync.clone(),
        events: events.clone(),
        dhcp_updates: Some(updates),
        http: None,
        health,
        snapshot: None,
        started: Instant::now(),
    })
    .unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(uplink.run(stop_rx));

    let mut peer = Peer::accept(&control).await;
    let EdgeMessage::Hello(hello) = peer.next().await else {
        panic!("Hello first");
    };
    assert_eq!(hello.worker_id.as_deref(), Some("site-a-edge"));
    assert_eq!(hello.snapshot_generation, None);
    peer.send(welcome()).await;
    let snapshot = Snapshot {
        generation: 1,
        machines: vec![machine(1)],
        ..Snapshot::default()
    };
    peer.send(snapshot.clone()).await;

    // Heartbeats carry services and metrics; the event and the ack arrive in some order.
    let mut heartbeat = None;
    let mut batch = None;
    let mut acked = None;
    while heartbeat.is_none() || batch.is_none() || acked.is_none() {
        match peer.next().await {
            EdgeMessage::Heartbeat(h) => heartbeat = Some(h),
            EdgeMessage::Events(b) => batch = Some(b),
            EdgeMessage::SnapshotAck(a) => acked = Some(a.generation),
            other => panic!("unexpected {other:?}"),
        }
    }
    let heartbeat = heartbeat.unwrap();
    assert_eq!(
        heartbeat.services[ims_proto::SERVICE_DHCP].state,
        ims_proto::ServiceState::Running
    );
    assert!(heartbeat.metrics.memory_bytes > 0);
    assert_eq!(acked, Some(1));
    // Acknowledged only once stored and served.
    assert_eq!(sync.load_snapshot().unwrap(), Some(snapshot.clone()));
    assert!(updates_rx.has_changed().unwrap());
    assert!(
        updates_rx
            .borrow_and_update()
            .machines
            .contains_key(&machine(1).mac)
    );
    let batch = batch.unwrap();
    assert_eq!(batch.batch.len(), 1);
    assert_eq!(batch.batch[0].id, 1);
    assert_eq!(batch.batch[0].kind.kind(), "PhoneHome");

    // The control plane drops the connection before acknowledging: the event comes again.
    peer.connection.close(0u32.into(), b"restart");
    let mut peer = Peer::accept(&control).await;
    let EdgeMessage::Hello(hello) = peer.next().await else {
        panic!("Hello first");
    };
    assert_eq!(hello.snapshot_generation, Some(1), "the stored generation");
    peer.send(welcome()).await;
    let EdgeMessage::Events(again) = peer.next_not_heartbeat().await else {
        panic!("the unacknowledged event again");
    };
    assert_eq!(again.batch[0].id, 1, "same id: idempotent");
    peer.send(EventsAck { up_to: 1 }).await;
    // A delta from the stored generation.
    let next = Snapshot {
        generation: 2,
        machines: vec![machine(1), machine(2)],
        ..Snapshot::default()
    };
    peer.send(Delta::between(&snapshot, &next)).await;
    let EdgeMessage::SnapshotAck(ack) = peer.next_not_heartbeat().await else {
        panic!("SnapshotAck");
    };
    assert_eq!(ack.generation, 2);
    assert_eq!(sync.load_snapshot().unwrap(), Some(next));
    assert_eq!(updates_rx.borrow_and_update().machines.len(), 2);
    // The acknowledged event leaves the outbox.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !events.is_empty().unwrap() {
        assert!(Instant::now() < deadline, "event not removed after its ack");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the uplink stops")
        .unwrap();
}
