//! `plugpos tls self-signed`: a certificate and key for HTTPS on the shop LAN, written where the
//! configuration names them (`[http.tls]`) or in `<data_dir>/tls/`, with the fingerprint the
//! desktop clients pin.

use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::core::config::Config;
use crate::core::data_dir::write_private_file;
use crate::core::http::tls;
use crate::shared::clock::Clock;

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Make a self-signed certificate and key for HTTPS; prints the SHA-256 fingerprint to pin.
    SelfSigned(SelfSignedArgs),
}

#[derive(Debug, Args)]
pub struct SelfSignedArgs {
    /// A host name or IP address the tills reach the server by (repeatable). Default: this
    /// machine's host name, `localhost`, 127.0.0.1 and `http.bind` when it is one address.
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
    /// Days the certificate is valid (1 to 3650).
    #[arg(long, default_value_t = 825, value_parser = clap::value_parser!(i64).range(1..=3650))]
    pub days: i64,
    /// Replace a certificate or key that exists already.
    #[arg(long)]
    pub force: bool,
}

pub fn run(config: &Config, command: TlsCommand) -> anyhow::Result<()> {
    let TlsCommand::SelfSigned(args) = command;
    let root = &config.data_dir;
    let (cert, key) = config.http.tls.files(root).unwrap_or_else(|| {
        (
            root.join("tls").join("cert.pem"),
            root.join("tls").join("key.pem"),
        )
    });
    if !args.force
        && let Some(existing) = [&cert, &key].into_iter().find(|p| p.exists())
    {
        bail!(
            "{} exists already; pass --force to replace it",
            existing.display()
        );
    }
    let names = if args.names.is_empty() {
        default_names(config.http.bind)
    } else {
        args.names
    };
    let (cert_pem, key_pem) = tls::self_signed(&names, Clock::system().now(), args.days)
        .with_context(|| format!("cannot make a certificate for {}", names.join(", ")))?;
    for path in [&cert, &key] {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    write_private_file(&key, key_pem.as_bytes())?;
    write_private_file(&cert, cert_pem.as_bytes())?;
    let fingerprint = tls::Certificates::open(cert.clone(), key.clone())?
        .fingerprint()
        .context("cannot read the certificate back")?;
    say!("certificate {} (valid {} days)", cert.display(), args.days);
    say!("key         {}", key.display());
    say!("names       {}", names.join(", "));
    say!("SHA-256 fingerprint (pin it in the desktop clients):");
    say!("{fingerprint}");
    if config.http.tls.cert.is_none() {
        say!("to serve HTTPS, add to the configuration file and restart:");
        say!("[http.tls]");
        say!("cert = \"{}\"", shown(&cert));
        say!("key = \"{}\"", shown(&key));
    } else {
        say!("the running server picks the new pair up within seconds");
    }
    Ok(())
}

fn shown(path: &Path) -> String {
    path.display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}

/// This machine's names: its host name, `localhost`, the loopback address and `bind` when it is
/// one address (not 0.0.0.0 or ::).
fn default_names(bind: IpAddr) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() && host != "localhost" {
            names.push(host.to_owned());
        }
    }
    names.push("localhost".to_owned());
    names.push("127.0.0.1".to_owned());
    if !bind.is_unspecified() && !bind.is_loopback() {
        names.push(bind.to_string());
    }
    names
}
