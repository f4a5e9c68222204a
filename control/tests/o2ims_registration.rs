//! Outgoing O2ims traffic: O-Cloud registration with a local SMO server (plain HTTP that
//! refuses twice then accepts, and HTTPS trusted through an extra CA), and inventory
//! notifications delivered to a local HTTPS callback with a self-signed certificate.

// Test helpers may unwrap: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum_server::tls_rustls::RustlsConfig;
use ims_control::db::now_ms;
use ims_control::o2ims::registration::{self, Registration};
use ims_control::o2ims::{changes, cloud_settings, delivery};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use support::TestApp;
use uuid::Uuid;

const V1: &str = "/o2ims-infrastructureInventory/v1";

/// A local server recording what it is POSTed (body and `Authorization`), answering 503 to
/// the first `fail_first` requests.
/// A request's JSON body and `Authorization` header.
type Received = (Value, Option<String>);

#[derive(Clone, Default)]
struct Recorder {
    got: Arc<Mutex<Vec<Received>>>,
    requests: Arc<AtomicUsize>,
    fail_first: usize,
}

async fn record(State(r): State<Recorder>, headers: HeaderMap, body: String) -> StatusCode {
    let n = r.requests.fetch_add(1, Ordering::SeqCst);
    if n < r.fail_first {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    r.got.lock().unwrap().push((body, auth));
    StatusCode::ACCEPTED
}

impl Recorder {
    fn router(&self) -> axum::Router {
        axum::Router::new()
            .route("/register", axum::routing::post(record))
            .with_state(self.clone())
    }

    /// Plain HTTP on a loopback port; returns its base URL.
    async fn http(&self) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = self.router();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        (url, task)
    }

    /// HTTPS with a fresh self-signed certificate for 127.0.0.1; returns its base URL and the
    /// certificate (the CA to trust).
    async fn https(&self) -> (String, CertificateDer<'static>, axum_server::Handle) {
        let certified =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".into()])
                .unwrap();
        let cert = certified.cert.der().clone();
        let key =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let handle = axum_server::Handle::new();
        let server =
            axum_server::from_tcp_rustls(listener, RustlsConfig::from_config(Arc::new(config)))
                .handle(handle.clone());
        let router = self.router();
        tokio::spawn(async move {
            let _ = server.serve(router.into_make_service()).await;
        });
        (format!("https://{addr}"), cert, handle)
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

fn registration(smo_url: String, global: Uuid) -> Registration {
    Registration {
        smo_url,
        smo_token: Some("smo-bearer-token".to_owned()),
        smo_ca: Vec::new(),
        global_cloud_id: Some(global),
        ims_endpoint: None,
        fallback_endpoint: "http://127.0.0.1:8000".to_owned(),
        first_backoff: Duration::from_millis(50),
    }
}

async fn registers_after_two_refusals(app: &TestApp) {
    let smo = Recorder {
        fail_first: 2,
        ..Recorder::default()
    };
    let (base, server) = smo.http().await;
    let global = Uuid::new_v4();
    let r = registration(format!("{base}/register"), global);
    let metrics = app.state.metrics.clone();
    let attempts = tokio::time::timeout(
        Duration::from_secs(20),
        registration::run(app.state.db.clone(), r, metrics.clone()),
    )
    .await
    .expect("registered within 20 s");
    assert_eq!(attempts, 3);
    assert_eq!(smo.requests.load(Ordering::SeqCst), 3);
    let got = smo.got();
    assert_eq!(got.len(), 1);
    let (body, auth) = &got[0];
    let cloud = cloud_settings(&app.state.db).await.unwrap();
    assert_eq!(body["globalCloudId"], global.to_string());
    assert_eq!(body["oCloudId"], cloud.ocloud_id.to_string());
    assert_eq!(body["IMS_EP"], "http://127.0.0.1:8000");
    let token_data = &body["smo_token_data"];
    assert_eq!(token_data["iss"], "o2ims");
    assert_eq!(token_data["aud"], "smo");
    assert_eq!(token_data["smo_token_payload"], "smo-bearer-token");
    assert_eq!(token_data["smo_token_type"], "bearer");
    for key in ["smo_token_expiration", "smo_token_algo"] {
        assert!(token_data[key].is_string(), "{key}: {body}");
    }
    assert_eq!(auth.as_deref(), Some("Bearer smo-bearer-token"));
    // Recorded: the setting, the O-Cloud's globalCloudId, the metrics.
    let recorded = registration::recorded(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(recorded["attempts"], 3);
    assert_eq!(recorded["smoUrl"], format!("{base}/register"));
    assert_eq!(cloud.global_cloud_id, global);
    let shown = app.get(V1).await;
    assert_eq!(shown.body["globalCloudId"], global.to_string());
    let text = app.state.metrics.render(&app.state.db).await;
    assert!(text.contains("ims_o2ims_registered 1"), "{text}");
    assert!(
        text.contains("ims_o2ims_registration_attempts_total 3"),
        "{text}"
    );
    server.abort();
}
dual_test!(registers_after_two_refusals);

async fn endpoint_from_the_stored_service_uri(app: &TestApp) {
    let smo = Recorder::default();
    let (base, server) = smo.http().await;
    sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2)")
        .bind(ims_control::o2ims::SERVICE_URI_KEY)
        .bind("https://ims.example:8443")
        .execute(app.state.db.pool())
        .await
        .unwrap();
    let mut r = registration(format!("{base}/register"), Uuid::new_v4());
    r.smo_token = None;
    let body = registration::body(&app.state.db, &r).await.unwrap();
    assert_eq!(body["IMS_EP"], "https://ims.example:8443");
    assert_eq!(body["smo_token_data"]["smo_token_payload"], "");
    r.ims_endpoint = Some("https://given.example".to_owned());
    let body = registration::body(&app.state.db, &r).await.unwrap();
    assert_eq!(body["IMS_EP"], "https://given.example");
    // The global cloud id is stored: later starts may omit it.
    r.global_cloud_id = None;
    let again = registration::body(&app.state.db, &r).await.unwrap();
    assert_eq!(again["globalCloudId"], body["globalCloudId"]);
    server.abort();
}
dual_test!(endpoint_from_the_stored_service_uri);

async fn no_global_cloud_id_no_registration(app: &TestApp) {
    let smo = Recorder::default();
    let (base, server) = smo.http().await;
    let mut r = registration(format!("{base}/register"), Uuid::nil());
    r.global_cloud_id = None;
    let attempts = tokio::time::timeout(
        Duration::from_secs(5),
        registration::run(app.state.db.clone(), r, app.state.metrics.clone()),
    )
    .await
    .expect("gives up at once");
    assert_eq!(attempts, 0);
    assert_eq!(smo.requests.load(Ordering::SeqCst), 0);
    assert!(
        app.state
            .metrics
            .render(&app.state.db)
            .await
            .contains("ims_o2ims_registered 0")
    );
    server.abort();
}
dual_test!(no_global_cloud_id_no_registration);

async fn registers_over_https_with_the_smo_ca(app: &TestApp) {
    let smo = Recorder::default();
    let (base, cert, handle) = smo.https().await;
    let mut r = registration(format!("{base}/register"), Uuid::new_v4());
    let body = registration::body(&app.state.db, &r).await.unwrap();
    // Without the CA the certificate does not verify.
    let err = registration::attempt(&delivery::client_trusting(&[]), &r, &body)
        .await
        .unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    r.smo_ca = vec![cert];
    let attempts = tokio::time::timeout(
        Duration::from_secs(10),
        registration::run(app.state.db.clone(), r, app.state.metrics.clone()),
    )
    .await
    .expect("registered");
    assert_eq!(attempts, 1);
    assert_eq!(smo.got().len(), 1);
    handle.shutdown();
}
dual_test!(registers_over_https_with_the_smo_ca);

async fn notifications_to_an_https_callback(app: &TestApp) {
    let db = &app.state.db;
    changes::detect_changes(db, now_ms()).await.unwrap();
    let callback = Recorder::default();
    let (base, cert, handle) = callback.https().await;
    let r = app
        .post(
            &format!("{V1}/subscriptions"),
            json!({"callback": format!("{base}/register"), "consumerSubscriptionId": "tls"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app.post("/api/sites", json!({"name": "edge-tls"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let t0 = now_ms();
    assert!(!changes::detect_changes(db, t0).await.unwrap().is_empty());
    // Not trusted: not delivered, kept with the TLS error.
    let round = delivery::deliver_due(db, &delivery::client_trusting(&[]), t0)
        .await
        .unwrap();
    assert_eq!((round.delivered, round.failed), (0, 1));
    let (error,): (Option<String>,) = sqlx::query_as("SELECT last_error FROM o2ims_notifications")
        .fetch_one(db.pool())
        .await
        .unwrap();
    let error = error.unwrap_or_default();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert!(callback.got().is_empty());
    // Trusted (the --callback-ca path): delivered on the retry.
    let trusted = delivery::client_trusting(&[cert]);
    let round = delivery::deliver_due(db, &trusted, t0 + 1000)
        .await
        .unwrap();
    assert_eq!((round.delivered, round.failed), (1, 0));
    let got = callback.got();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0["consumerSubscriptionId"], "tls");
    assert_eq!(got[0].0["notificationEventType"], 0);
    assert_eq!(got[0].0["postObjectState"]["name"], "edge-tls");
    handle.shutdown();
}
dual_test!(notifications_to_an_https_callback);

/// `trust_callback_cas` (what `--callback-ca` sets) applies to every later `client()`.
#[tokio::test]
async fn callback_ca_applies_to_new_clients() {
    let callback = Recorder::default();
    let (base, cert, handle) = callback.https().await;
    let r = delivery::post(&delivery::client(), &format!("{base}/register"), "{}").await;
    assert!(r.is_err(), "untrusted before");
    let dir = support::tempdir::TempDir::new("ims-callback-ca");
    let pem = dir.path().join("ca.pem");
    let der = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, cert.as_ref());
    std::fs::write(
        &pem,
        format!("-----BEGIN CERTIFICATE-----\n{der}\n-----END CERTIFICATE-----\n"),
    )
    .unwrap();
    delivery::trust_callback_cas(delivery::load_ca_file(&pem).unwrap());
    delivery::post(&delivery::client(), &format!("{base}/register"), "{}")
        .await
        .unwrap();
    assert_eq!(callback.got().len(), 1);
    assert!(delivery::load_ca_file(&dir.path().join("missing.pem")).is_err());
    std::fs::write(&pem, "not a certificate\n").unwrap();
    assert!(delivery::load_ca_file(&pem).is_err());
    handle.shutdown();
}
