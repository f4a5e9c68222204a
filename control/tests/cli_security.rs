//! The real `ims-control` binary: security headers over plain HTTP (no HSTS) and HTTPS (with
//! HSTS), `/metrics` over HTTPS giving the serving certificate's end of validity, and
//! `rotate-key` against a running server (its tokens keep working; the new key is reported, the
//! old one kept).

mod process;
mod support;

use process::{Server, curl, get, ims_control, login, run, self_signed_cert, serve, text};
use support::tempdir::TempDir;

/// The value of header `name` in curl `-i` output.
fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    response.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("jwt")
        .kid
        .expect("kid")
}

#[test]
fn headers_over_http_and_https() {
    let dir = TempDir::new("ims-cli-headers");
    let (cert, key) = self_signed_cert(dir.path());

    let mut cmd = serve(&dir.path().join("plain"));
    cmd.env("IMS_ADMIN_PASSWORD", "headers-pass");
    let plain = Server::start(cmd);
    for path in ["/", "/healthz", "/api/cluster"] {
        let a = curl("GET", &format!("{}{path}", plain.url), None, None, &["-i"]);
        assert_eq!(
            header(&a.body, "content-security-policy"),
            Some("default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
            "{path}: {}",
            a.body
        );
        assert_eq!(header(&a.body, "x-content-type-options"), Some("nosniff"));
        assert_eq!(header(&a.body, "x-frame-options"), Some("DENY"));
        assert_eq!(header(&a.body, "referrer-policy"), Some("no-referrer"));
        assert_eq!(header(&a.body, "strict-transport-security"), None, "{path}");
    }

    let mut cmd = serve(&dir.path().join("tls"));
    cmd.arg("--tls-cert").arg(&cert).arg("--tls-key").arg(&key);
    cmd.env("IMS_ADMIN_PASSWORD", "headers-pass");
    let tls = Server::start(cmd);
    let cacert = cert.display().to_string();
    for path in ["/", "/api/cluster"] {
        let a = curl(
            "GET",
            &format!("{}{path}", tls.url),
            None,
            None,
            &["-i", "--cacert", cacert.as_str()],
        );
        assert_eq!(
            header(&a.body, "strict-transport-security"),
            Some("max-age=31536000"),
            "{path}: {}",
            a.body
        );
        assert_eq!(header(&a.body, "x-frame-options"), Some("DENY"));
    }
}

/// Unix seconds now.
#[allow(clippy::disallowed_methods)] // the test compares with a certificate made now
fn unix_now() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_secs()).expect("seconds")
}

#[test]
fn https_certificate_expiry_is_exported() {
    let dir = TempDir::new("ims-cli-https-expiry");
    let before = unix_now();
    // Valid two days from now (openssl req -days 2).
    let (cert, key) = self_signed_cert(dir.path());
    let after = unix_now();
    let mut cmd = serve(&dir.path().join("tls"));
    cmd.arg("--tls-cert").arg(&cert).arg("--tls-key").arg(&key);
    cmd.env("IMS_ADMIN_PASSWORD", "expiry-pass");
    let tls = Server::start(cmd);
    let cacert = cert.display().to_string();
    let page = curl(
        "GET",
        &format!("{}/metrics", tls.url),
        None,
        None,
        &["--cacert", cacert.as_str()],
    );
    assert_eq!(page.status, 200, "{}", page.body);
    let value: i64 = page
        .body
        .lines()
        .find_map(|l| l.strip_prefix("ims_control_https_cert_expiry_timestamp_seconds "))
        .unwrap_or_else(|| panic!("no HTTPS expiry gauge in\n{}", page.body))
        .parse()
        .expect("integer gauge");
    let two_days = 2 * 86_400;
    assert!(
        (before + two_days..=after + two_days).contains(&value),
        "expiry {value}, expected {} ..= {}",
        before + two_days,
        after + two_days
    );
}

#[test]
fn rotate_key_keeps_a_running_servers_tokens() {
    let dir = TempDir::new("ims-cli-rotate");
    let mut cmd = serve(dir.path());
    cmd.env("IMS_ADMIN_PASSWORD", "rotate-pass");
    let s = Server::start(cmd);
    let before = login(&s.url, "admin", "rotate-pass", &[]);
    let old_kid = kid(&before);

    let rotate = || {
        let mut cmd = ims_control();
        cmd.arg("rotate-key").arg("--data-dir").arg(dir.path());
        let out = run(cmd, None);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let said = rotate();
    assert!(said.starts_with("new signing key "), "{said}");
    let new_kid = said
        .trim_start_matches("new signing key ")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_ne!(new_kid, old_kid);
    assert!(
        said.contains(&format!("keys verifying: {new_kid}, {old_kid};")),
        "{said}"
    );
    assert!(said.contains("pruned: none"), "{said}");
    // The default lifetimes: a day of refresh tokens plus two minutes.
    assert!(said.contains("1day 2m"), "{said}");

    // The running server still accepts the token it issued before the rotation.
    let me = get(&s.url, "/api/users/me", &before);
    assert_eq!(me.status, 200, "{}", me.body);

    // A second rotation keeps all three keys (none has expired).
    let said = rotate();
    assert!(said.contains(&format!(", {new_kid}, {old_kid};")), "{said}");

    // A bad lifetime is a usage error.
    let mut cmd = ims_control();
    cmd.args(["rotate-key", "--refresh-ttl", "soon", "--data-dir"])
        .arg(dir.path());
    let out = run(cmd, None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
