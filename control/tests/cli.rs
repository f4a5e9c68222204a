//! The real `ims-control` binary on a temporary SQLite data directory and a free loopback
//! port: first-start admin, login over HTTP with curl, the `user` subcommands, the config
//! file, HTTPS with a self-signed certificate, bad settings, and graceful shutdown.

mod process;
mod support;

use std::path::Path;
use std::process::Command;

use process::{
    Server, curl, get, ims_control, login, printed_admin_password, run, self_signed_cert, serve,
    text,
};
use support::tempdir::TempDir;

fn user(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = ims_control();
    cmd.arg("user").args(args).arg("--data-dir").arg(dir);
    cmd
}

/// A `list` command's output as rows of whitespace-separated cells (the header first).
fn table(listing: &str) -> Vec<Vec<&str>> {
    listing
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect()
}

#[test]
fn first_start_prints_the_admin_password_once() {
    let dir = TempDir::new("ims-cli-first");
    let mut a = Server::start(serve(dir.path()));
    assert!(a.url.starts_with("http://127.0.0.1:"), "{}", a.url);
    let printed = printed_admin_password(&a.stdout());
    assert_eq!(printed.len(), 1, "stdout: {:?}", a.stdout());
    let password = &printed[0];
    assert!(password.len() >= 16);
    let stdout = a.stdout();
    let line = &stdout[0];
    assert!(line.contains("shown once") && line.contains("ims-control user passwd admin"));
    assert!(
        !a.stderr().iter().any(|l| l.contains(password.as_str())),
        "the password is never logged"
    );

    let token = login(&a.url, "admin", password, &[]);
    let me = get(&a.url, "/api/users/me", &token);
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json()["role"], "admin");
    let wrong = curl(
        "POST",
        &format!("{}/api/token", a.url),
        None,
        Some(&serde_json::json!({"username": "admin", "password": "nope-nope"})),
        &[],
    );
    assert_eq!(wrong.status, 401);
    let health = curl("GET", &format!("{}/healthz", a.url), None, None, &[]);
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    let ready = curl("GET", &format!("{}/readyz", a.url), None, None, &[]);
    assert_eq!(ready.status, 200);
    let metrics = curl("GET", &format!("{}/metrics", a.url), None, None, &[]);
    assert!(
        metrics.body.contains(
            r#"ims_control_http_requests_total{method="POST",route="/api/token",status="401"} 1"#
        ),
        "{}",
        metrics.body
    );

    // SIGTERM stops it cleanly.
    let status = a.terminate();
    assert!(status.success(), "{status}");
    assert!(a.stderr().iter().any(|l| l.contains("ims-control stopped")));

    // A second start on the same store creates nobody and keeps the signing key.
    let b = Server::start(serve(dir.path()));
    assert!(
        printed_admin_password(&b.stdout()).is_empty(),
        "{:?}",
        b.stdout()
    );
    assert!(b.stdout().is_empty(), "{:?}", b.stdout());
    let me = get(&b.url, "/api/users/me", &token);
    assert_eq!(
        me.status, 200,
        "a token from the first run still works: {}",
        me.body
    );
    login(&b.url, "admin", password, &[]);
}

#[test]
fn admin_password_from_the_environment() {
    let dir = TempDir::new("ims-cli-envpass");
    let mut cmd = serve(dir.path());
    cmd.env("IMS_ADMIN_PASSWORD", "env-admin-pass-1");
    cmd.args(["--log-format", "json"]);
    let s = Server::start(cmd);
    assert!(s.stdout().is_empty(), "{:?}", s.stdout());
    let stderr = s.stderr().join("\n");
    assert!(stderr.contains("created user admin with the password from IMS_ADMIN_PASSWORD"));
    assert!(!stderr.contains("env-admin-pass-1"));
    // JSON logs: one object per line.
    for line in s.stderr() {
        serde_json::from_str::<serde_json::Value>(&line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    login(&s.url, "admin", "env-admin-pass-1", &[]);

    // A too-short IMS_ADMIN_PASSWORD is refused with the rule.
    let fresh = TempDir::new("ims-cli-envpass-short");
    let mut cmd = serve(fresh.path());
    cmd.env("IMS_ADMIN_PASSWORD", "short");
    let out = run(cmd, None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("IMS_ADMIN_PASSWORD") && err.contains("at least 8"),
        "{err}"
    );
}

#[test]
fn user_subcommands() {
    let dir = TempDir::new("ims-cli-users");
    let d = dir.path();

    let mut cmd = user(d, &["add", "alice", "--role", "admin"]);
    cmd.env("IMS_USER_PASSWORD", "alice-pass-1");
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "created user alice (admin)");

    let out = run(user(d, &["add", "bob"]), None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let bob_pass = stdout
        .trim()
        .strip_prefix("created user bob (viewer) with password: ")
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_owned();
    assert!(bob_pass.len() >= 16);

    let out = run(user(d, &["add", "BOB"]), None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("already exists") && err.contains("user passwd"),
        "{err}"
    );

    let out = run(user(d, &["add", "carl", "--role", "boss"]), None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("admin, viewer"));
    let out = run(user(d, &["add", "carl name"]), None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("letters, digits"));
    let mut cmd = user(d, &["add", "carl"]);
    cmd.env("IMS_USER_PASSWORD", "short");
    let out = run(cmd, None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("at least 8"));

    let out = run(
        user(d, &["passwd", "bob", "--password-stdin"]),
        Some("bob-new-pass\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "password of bob changed");
    let out = run(user(d, &["passwd", "nobody"]), None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("user list"));

    let out = run(user(d, &["list"]), None);
    assert!(out.status.success());
    let listing = text(&out.stdout);
    let rows = table(&listing);
    assert_eq!(rows[0][..3], ["ID", "USERNAME", "ROLE"]);
    assert_eq!(rows[1][1..3], ["alice", "admin"]);
    assert_eq!(rows[2][1..3], ["bob", "viewer"]);
    assert_eq!(rows.len(), 3, "{listing}");

    let out = run(user(d, &["del", "alice"]), None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("last admin") && err.contains("--role admin"),
        "{err}"
    );

    // The server on this store creates no admin (users exist) and knows the CLI's changes.
    let s = Server::start(serve(d));
    assert!(s.stdout().is_empty(), "{:?}", s.stdout());
    login(&s.url, "alice", "alice-pass-1", &[]);
    login(&s.url, "bob", "bob-new-pass", &[]);

    let out = run(user(d, &["del", "bob"]), None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "deleted user bob");
    let out = run(user(d, &["del", "bob"]), None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no user `bob`"));
    let a = curl(
        "POST",
        &format!("{}/api/token", s.url),
        None,
        Some(&serde_json::json!({"username": "bob", "password": "bob-new-pass"})),
        &[],
    );
    assert_eq!(a.status, 401);
}

#[test]
fn config_file_and_flags() {
    let dir = TempDir::new("ims-cli-config");
    let data = dir.path().join("data");
    let file = dir.path().join("ims-control.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:1\"\ndata_dir = \"{}\"\nlog_format = \"json\"\naccess_ttl = \"2m\"\n",
            data.display()
        ),
    )
    .unwrap();
    // The flag overrides the file's `listen`; the rest comes from the file.
    let mut cmd = ims_control();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .env("IMS_ADMIN_PASSWORD", "config-pass-1");
    let s = Server::start(cmd);
    assert!(data.join("ims-control.db").is_file());
    let started = s
        .stderr()
        .into_iter()
        .find(|l| l.contains("listening on"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&started).unwrap();
    assert_eq!(v["fields"]["access_ttl"], "2m");
    login(&s.url, "admin", "config-pass-1", &[]);
    // `user` commands find the store through the same file.
    let mut cmd = ims_control();
    cmd.args(["user", "list", "--config"]).arg(&file);
    let out = run(cmd, None);
    assert!(text(&out.stdout).contains("admin"), "{}", text(&out.stderr));

    // Unknown keys and bad values name the key and where it came from.
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nport = 8000\n").unwrap();
    let mut cmd = ims_control();
    cmd.args(["serve", "--config"]).arg(&file);
    let out = run(cmd, None);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(&file.display().to_string()) && err.contains("port"),
        "{err}"
    );
    let mut cmd = serve(dir.path());
    cmd.env("IMS_ACCESS_TTL", "forever");
    let out = run(cmd, None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--access-ttl (or IMS_ACCESS_TTL)"));
}

#[test]
fn bad_database_urls_fail_clearly() {
    let dir = TempDir::new("ims-cli-baddb");
    let mut cmd = serve(dir.path());
    cmd.args(["--database", "mysql://root:hunter2@127.0.0.1/ims"]);
    let out = run(cmd, None);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("unsupported database URL") && err.contains("--database"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");

    // Nothing listens on port 1.
    let mut cmd = serve(dir.path());
    cmd.env("IMS_DATABASE_URL", "postgres://ims:hunter2@127.0.0.1:1/ims");
    let out = run(cmd, None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("cannot connect to the database"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");

    let out = run(user(dir.path(), &["list", "--database", "nonsense"]), None);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn https_with_a_self_signed_certificate() {
    let dir = TempDir::new("ims-cli-tls");
    let (cert, key) = self_signed_cert(dir.path());

    let mut cmd = serve(&dir.path().join("data"));
    cmd.arg("--tls-cert").arg(&cert).arg("--tls-key").arg(&key);
    cmd.env("IMS_ADMIN_PASSWORD", "tls-admin-pass");
    let s = Server::start(cmd);
    assert!(s.url.starts_with("https://127.0.0.1:"), "{}", s.url);
    let cacert = cert.display().to_string();
    let tls = ["--cacert", cacert.as_str()];
    let a = curl("GET", &format!("{}/healthz", s.url), None, None, &tls);
    assert_eq!((a.status, a.body.as_str()), (200, "ok"));
    let token = login(&s.url, "admin", "tls-admin-pass", &tls);
    let me = curl(
        "GET",
        &format!("{}/api/users/me", s.url),
        Some(&token),
        None,
        &tls,
    );
    assert_eq!(me.status, 200);

    // Without trusting the certificate, curl refuses.
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10"])
        .arg(format!("{}/healthz", s.url));
    assert!(!run(cmd, None).status.success());

    // Only one of the pair, or a missing file, is a configuration error.
    let mut cmd = serve(&dir.path().join("data"));
    cmd.arg("--tls-cert").arg(&cert);
    let out = run(cmd, None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("tls_key"));
    let mut cmd = serve(&dir.path().join("data"));
    cmd.arg("--tls-cert").arg(&key).arg("--tls-key").arg(&key);
    let out = run(cmd, None);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("certificate") && err.contains("key.pem"),
        "{err}"
    );
}

#[test]
fn failed_logins_from_one_address_are_throttled() {
    let dir = TempDir::new("ims-cli-throttle");
    let mut cmd = serve(dir.path());
    cmd.env("IMS_ADMIN_PASSWORD", "throttle-pass");
    let s = Server::start(cmd);
    let attempt = |username: &str, password: &str| {
        curl(
            "POST",
            &format!("{}/api/token", s.url),
            None,
            Some(&serde_json::json!({"username": username, "password": password})),
            &["-i"],
        )
    };
    // Twenty failures from this address, each for another name (below the per-user limit).
    for i in 0..20 {
        let a = attempt(&format!("guess{i}"), "wrong-pass");
        assert_eq!(a.status, 401, "{}", a.body);
    }
    // Now the address is refused, even with the right password for a fresh name.
    let a = attempt("admin", "throttle-pass");
    assert_eq!(a.status, 429, "{}", a.body);
    let retry = a
        .body
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("retry-after")
                .then(|| value.trim().parse::<u64>().ok())?
        })
        .unwrap_or_else(|| panic!("no Retry-After in {}", a.body));
    assert!((1..=300).contains(&retry), "{retry}");
}

fn client(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = ims_control();
    cmd.arg("client").args(args).arg("--data-dir").arg(dir);
    cmd
}

/// `client_id: X` and `client_secret: Y` from `client add`/`client secret` output.
fn printed_credentials(stdout: &str) -> (String, String) {
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
            .trim()
            .to_owned()
    };
    (field("client_id: "), field("client_secret: "))
}

fn client_token(base: &str, id: &str, secret: &str) -> process::Answer {
    curl(
        "POST",
        &format!("{base}/oauth/token"),
        None,
        None,
        &[
            "-u",
            &format!("{id}:{secret}"),
            "-d",
            "grant_type=client_credentials",
        ],
    )
}

#[test]
fn client_subcommands() {
    let dir = TempDir::new("ims-cli-clients");
    let d = dir.path();

    let out = run(
        client(
            d,
            &[
                "add",
                "FOCOM",
                "--scope",
                "o2ims:read",
                "--scope",
                "o2ims:subscribe",
                "--description",
                "the SMO",
            ],
        ),
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let (id, secret) = printed_credentials(&stdout);
    assert_eq!(id, "focom");
    assert_eq!(secret.len(), 64, "32 random bytes as hex: {stdout}");
    assert!(stdout.contains("o2ims:read o2ims:subscribe") && stdout.contains("shown once"));

    let out = run(client(d, &["add", "reader"]), None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (_, reader_secret) = printed_credentials(&text(&out.stdout));
    assert_ne!(reader_secret, secret);

    let out = run(client(d, &["add", "focom"]), None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("client secret focom"));
    let out = run(client(d, &["add", "x", "--scope", "admin"]), None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("o2ims:read"));
    let out = run(client(d, &["add", "bad name"]), None);
    assert_eq!(out.status.code(), Some(2));

    let out = run(client(d, &["list"]), None);
    assert!(out.status.success());
    let listing = text(&out.stdout);
    let rows = table(&listing);
    assert_eq!(rows.len(), 3, "{listing}");
    assert_eq!(rows[0][..3], ["CLIENT_ID", "SCOPES", "CREATED"]);
    assert_eq!(rows[1][..3], ["focom", "o2ims:read", "o2ims:subscribe"]);
    assert!(listing.contains("the SMO"));
    assert_eq!(rows[2][..2], ["reader", "o2ims:read"]);
    assert!(!listing.contains(&secret), "secrets are never listed");

    // The server accepts the secret; a rotated secret replaces it.
    let mut s = Server::start(serve(d));
    let ok = client_token(&s.url, &id, &secret);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["scope"], "o2ims:read o2ims:subscribe");
    let token = ok.json()["access_token"].as_str().unwrap().to_owned();
    let inventory = get(
        &s.url,
        "/o2ims-infrastructureInventory/v1/resourcePools",
        &token,
    );
    assert_eq!(inventory.status, 200, "{}", inventory.body);

    let out = run(client(d, &["secret", "focom"]), None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (_, rotated) = printed_credentials(&text(&out.stdout));
    assert_ne!(rotated, secret);
    assert_eq!(client_token(&s.url, &id, &secret).status, 401);
    assert_eq!(client_token(&s.url, &id, &rotated).status, 200);
    let out = run(client(d, &["secret", "nobody"]), None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("client list"));

    // Deleting the client ends its tokens at once.
    let out = run(client(d, &["del", "focom"]), None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "deleted client focom");
    let gone = get(
        &s.url,
        "/o2ims-infrastructureInventory/v1/resourcePools",
        &token,
    );
    assert_eq!(gone.status, 401, "{}", gone.body);
    assert!(gone.body.contains("no longer exists"), "{}", gone.body);
    let out = run(client(d, &["del", "focom"]), None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !s.stderr()
            .iter()
            .any(|l| l.contains(&secret) || l.contains(&rotated)),
        "secrets are never logged"
    );
    assert!(s.terminate().success());
}

/// A one-thread SMO on a loopback port: answers 503 to the first request and 200 to the next,
/// and hands over each request's body. Stops after two requests.
fn fake_smo() -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/register", listener.local_addr().expect("addr"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().take(2).enumerate() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
            let status = if n == 0 {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (url, rx)
}

#[test]
fn serve_registers_with_the_smo() {
    let dir = TempDir::new("ims-cli-smo");
    let (smo_url, bodies) = fake_smo();
    let global = "8c1c151d-2dbb-4d5e-9ff5-2f1a3b1c2d3e";
    let token_file = dir.path().join("smo-token");
    std::fs::write(&token_file, "smo-secret-token\n").unwrap();
    let mut cmd = serve(dir.path());
    cmd.args(["--smo-url", &smo_url, "--global-cloud-id", global])
        .arg("--smo-token-file")
        .arg(&token_file);
    let mut s = Server::start(cmd);
    let wait = std::time::Duration::from_secs(15);
    let first = bodies.recv_timeout(wait).expect("first registration POST");
    let second = bodies.recv_timeout(wait).expect("retried after the 503");
    assert_eq!(first, second, "the same body every time");
    let body: serde_json::Value = serde_json::from_str(&second).unwrap();
    assert_eq!(body["globalCloudId"], global);
    assert_eq!(body["IMS_EP"], s.url.as_str());
    assert_eq!(
        body["smo_token_data"]["smo_token_payload"],
        "smo-secret-token"
    );
    assert!(body["oCloudId"].as_str().is_some_and(|id| id.len() == 36));
    let mut registered = false;
    for _ in 0..50 {
        let m = curl("GET", &format!("{}/metrics", s.url), None, None, &[]);
        if m.body.contains("ims_o2ims_registered 1") {
            assert!(
                m.body.contains("ims_o2ims_registration_attempts_total 2"),
                "{}",
                m.body
            );
            registered = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(registered, "ims_o2ims_registered never became 1");
    assert!(s.terminate().success());
    let log = s.stderr().join("\n");
    assert!(log.contains("O-Cloud registered with the SMO"), "{log}");
    assert!(
        !log.contains("smo-secret-token"),
        "the SMO token is never logged"
    );
    // A bad setting is a usage error.
    let mut bad = serve(dir.path());
    bad.args(["--smo-url", "smo.example"]);
    let out = run(bad, None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--smo-url"));
}
