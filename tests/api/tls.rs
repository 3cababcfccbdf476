//! HTTPS: `plugpos tls self-signed` makes a pair and prints its fingerprint; the server presents
//! it (with HSTS), refuses plain HTTP on that port, and picks up a renewed pair without a restart.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::serve::ListenerExt;
use plugpos::core::http::tls;

use crate::helpers::{TestApp, plugpos, run};

/// `plugpos --data-dir DIR tls ARGS...`.
fn tls_command(dir: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut command = plugpos();
    command.arg("--data-dir").arg(dir).arg("tls").args(args);
    command
}

fn client_trusting(cert_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap()])
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_cli_makes_a_pair_and_prints_the_fingerprint_to_pin() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(tls_command(
        dir.path(),
        &[
            "self-signed",
            "--name",
            "till-server.local",
            "--name",
            "192.168.1.20",
        ],
    ))
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    let cert = std::fs::read_to_string(dir.path().join("tls/cert.pem")).unwrap();
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(cert.as_bytes()).unwrap();
    let der: rustls::pki_types::CertificateDer = der;
    assert!(printed.contains(&tls::fingerprint(&der)), "{printed}");
    assert!(printed.contains("[http.tls]"), "{printed}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("tls/key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the key is private: {mode:o}");

    // Not over an existing pair without --force: one line, non-zero.
    let again = run(tls_command(dir.path(), &["self-signed"])).await;
    assert!(!again.status.success());
    let said = String::from_utf8(again.stderr).unwrap();
    assert!(
        said.contains("--force") && said.trim().lines().count() == 1,
        "{said}"
    );
    let bad = run(tls_command(
        dir.path(),
        &["self-signed", "--force", "--name", "not a host!"],
    ))
    .await;
    assert!(!bad.status.success());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("tls/cert.pem")).unwrap(),
        cert,
        "unchanged"
    );

    // The doctor checks the configured pair: it loads and fits, or it is a failure.
    let doctor_tls = |config: &str| {
        let file = dir.path().join("plugpos.toml");
        std::fs::write(&file, config).unwrap();
        let mut command = plugpos();
        command
            .arg("--config")
            .arg(&file)
            .arg("--data-dir")
            .arg(dir.path())
            .args(["doctor", "--json"]);
        command
    };
    let report = |output: std::process::Output| -> serde_json::Value {
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "tls")
            .unwrap()
            .clone()
    };
    let fine = report(
        run(doctor_tls(
            "[http.tls]\ncert = \"tls/cert.pem\"\nkey = \"tls/key.pem\"\n",
        ))
        .await,
    );
    assert_eq!(fine["level"], "ok", "{fine}");
    assert!(
        fine["detail"]
            .as_str()
            .unwrap()
            .contains(&tls::fingerprint(&der)),
        "{fine}"
    );
    let (_, other_key) = tls::self_signed(&["x.local".to_owned()], chrono::Utc::now(), 1).unwrap();
    std::fs::write(dir.path().join("other-key.pem"), other_key).unwrap();
    let broken = report(
        run(doctor_tls(
            "[http.tls]\ncert = \"tls/cert.pem\"\nkey = \"other-key.pem\"\n",
        ))
        .await,
    );
    assert_eq!(broken["level"], "fail", "{broken}");
}

/// `GET /health/live` over TLS with `config`, HTTP/1.1; the answer's text.
async fn raw_get(
    config: std::sync::Arc<rustls::ClientConfig>,
    port: u16,
) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn https_is_served_with_hsts_and_a_renewed_certificate_is_picked_up_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let (cert, key) = tls::self_signed(&names, chrono::Utc::now(), 30).unwrap();
    std::fs::write(&cert_path, &cert).unwrap();
    std::fs::write(&key_path, &key).unwrap();
    let app = TestApp::spawn_with(|c| {
        c.http.tls.cert = Some(cert_path.clone());
        c.http.tls.key = Some(key_path.clone());
    })
    .await;
    let certificates = tls::Certificates::open(cert_path.clone(), key_path.clone()).unwrap();
    tokio::spawn(certificates.clone().watch());
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let listener = tls::TlsListener::new(tcp, certificates)
        .unwrap()
        .tap_io(|_| {});
    let service =
        plugpos::app(app.state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await });
    let url = format!("https://localhost:{port}/health/live");

    let answer = client_trusting(&cert).get(&url).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/health/live"))
            .await
            .is_err(),
        "plain HTTP gets no answer on the TLS port"
    );
    assert!(
        reqwest::Client::new().get(&url).send().await.is_err(),
        "a client that does not trust the certificate is refused"
    );
    // This machine's own commands (the upgrade's checks) pin the configured certificate.
    let pinned = tls::pinned_client(tls::leaf(&cert_path).unwrap());
    assert!(
        raw_get(pinned, port)
            .await
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
    let (other, _) = tls::self_signed(&names, chrono::Utc::now(), 30).unwrap();
    let other_path = dir.path().join("other.pem");
    std::fs::write(&other_path, other).unwrap();
    let wrong = tls::pinned_client(tls::leaf(&other_path).unwrap());
    assert!(
        raw_get(wrong, port).await.is_err(),
        "another certificate is refused"
    );
    // A silent client does not hold up others.
    let _silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    assert_eq!(
        client_trusting(&cert)
            .get(&url)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // The renewed pair: new connections get it within seconds, with no restart.
    let (renewed, renewed_key) = tls::self_signed(&names, chrono::Utc::now(), 30).unwrap();
    std::fs::write(&key_path, &renewed_key).unwrap();
    std::fs::write(&cert_path, &renewed).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(answer) = client_trusting(&renewed).get(&url).send().await {
            assert_eq!(answer.status(), 200);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        client_trusting(&cert).get(&url).send().await.is_err(),
        "the old certificate is no longer presented"
    );
}
