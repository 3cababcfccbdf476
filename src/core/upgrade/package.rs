//! The update package (`plugpos-<version>-<arch>.plugpkg`): a zstd-compressed tar holding, in
//! this order, `manifest.json`, `manifest.sig` (hex ed25519 signature over the manifest's exact
//! bytes) and the files the manifest lists (today one: `plugpos`, the binary). The manifest
//! gives each file's size, sha256 and mode, so the signature covers the whole package.
//!
//! Reading checks the signature before any file is written, and every file's hash as it is
//! written into a staging directory: a package that fails a check leaves nothing usable behind.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest's `format`.
pub const FORMAT: &str = "plugpkg-1";
/// The name of the binary inside a package.
pub const BINARY: &str = "plugpos";
const MANIFEST: &str = "manifest.json";
const SIGNATURE: &str = "manifest.sig";
/// A manifest is a few hundred bytes; anything larger is not one.
const MANIFEST_LIMIT: u64 = 64 << 10;

/// The release key's public half (hex), compiled in: packages the project publishes are signed
/// with its private half, which never enters this repository. Self-built packages are trusted
/// through `upgrade.trusted_keys` in the config file.
pub const RELEASE_KEY: &str = include_str!("../../../packaging/release-key.pub");

/// What a package says it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub product: String,
    /// The release inside.
    pub version: String,
    /// The oldest release it upgrades (older ones go through an intermediate release).
    pub min_from_version: String,
    /// The CPU architecture of the binary (`x86_64`, `aarch64`).
    pub arch: String,
    /// The newest migration the binary embeds.
    pub schema_version: i64,
    pub built_at: DateTime<Utc>,
    pub files: Vec<FileEntry>,
}

/// One file of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// Unix mode bits (0o755 for the binary).
    pub mode: u32,
}

/// Why a package was refused: a stable code and one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PackageError {
    pub code: &'static str,
    pub message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> PackageError {
    PackageError {
        code,
        message: message.into(),
    }
}

/// A package whose signature and hashes checked out, its files in the staging directory.
#[derive(Debug, Clone)]
pub struct Verified {
    pub manifest: Manifest,
    /// The staged binary.
    pub binary: PathBuf,
    /// The trusted key that signed it (hex).
    pub signed_by: String,
    /// sha256 of the package file, for the version history.
    pub sha256: String,
}

/// Parses a hex ed25519 public key.
pub fn public_key(hex_text: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = hex::decode(hex_text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("`{}` is not a hex ed25519 public key", hex_text.trim()))?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| format!("`{}` is not a valid ed25519 public key", hex_text.trim()))
}

/// The keys a package may be signed with: the release key, then the config's.
pub fn trusted_keys(configured: &[String]) -> Result<Vec<VerifyingKey>, String> {
    let mut keys = vec![public_key(RELEASE_KEY)?];
    for key in configured {
        keys.push(public_key(key)?);
    }
    Ok(keys)
}

/// Reads a signing key file (64 hex digits; lines starting with `#` are comments).
pub fn read_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    use anyhow::Context;
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_default();
    let bytes: [u8; 32] = hex::decode(line)
        .ok()
        .and_then(|b| b.try_into().ok())
        .with_context(|| format!("{} is not a signing key (64 hex digits)", path.display()))?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// Writes a new signing key to `path` (0600) and returns its public half (hex).
pub fn generate_key(path: &Path) -> anyhow::Result<String> {
    let key = SigningKey::from_bytes(&rand::random());
    let public = hex::encode(key.verifying_key().to_bytes());
    let text = format!(
        "# plugpos package signing key: keep it secret, off the shop's machines.\n\
         # public key: {public}\n{}\n",
        hex::encode(key.to_bytes())
    );
    crate::core::data_dir::write_private_file(path, text.as_bytes())?;
    Ok(public)
}

/// Builds and signs a package of `binary` (whose version and schema it reports itself) into
/// `out_dir`; returns the package's path.
pub fn build(
    binary: &Path,
    facts: &BinaryFacts,
    min_from_version: &str,
    key: &SigningKey,
    out_dir: &Path,
    now: DateTime<Utc>,
) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    semver::Version::parse(min_from_version)
        .with_context(|| format!("--min-from {min_from_version} is not a version"))?;
    let (size, sha256) =
        hash_file(binary).with_context(|| format!("cannot read {}", binary.display()))?;
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        product: "plugpos".to_owned(),
        version: facts.version.clone(),
        min_from_version: min_from_version.to_owned(),
        arch: facts.arch.clone(),
        schema_version: facts.schema_version,
        built_at: now,
        files: vec![FileEntry {
            name: BINARY.to_owned(),
            size,
            sha256,
            mode: 0o755,
        }],
    };
    let manifest_bytes = serde_json::to_vec_pretty(&manifest)?;
    let signature = hex::encode(key.sign(&manifest_bytes).to_bytes());
    fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let path = out_dir.join(format!(
        "plugpos-{}-{}.plugpkg",
        manifest.version, manifest.arch
    ));
    let partial = path.with_extension("plugpkg.partial");
    let write = || -> io::Result<()> {
        let file = File::create(&partial)?;
        let mut tar = tar::Builder::new(zstd::Encoder::new(file, 19)?);
        append(&mut tar, MANIFEST, &manifest_bytes, 0o644, now)?;
        append(&mut tar, SIGNATURE, signature.as_bytes(), 0o644, now)?;
        let mut header = header(size, 0o755, now);
        tar.append_data(&mut header, BINARY, File::open(binary)?)?;
        let file = tar.into_inner()?.finish()?;
        file.sync_all()
    };
    write().with_context(|| format!("cannot write {}", partial.display()))?;
    fs::rename(&partial, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn header(size: u64, mode: u32, now: DateTime<Utc>) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(u64::try_from(now.timestamp()).unwrap_or(0));
    header.set_entry_type(tar::EntryType::Regular);
    header
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    bytes: &[u8],
    mode: u32,
    now: DateTime<Utc>,
) -> io::Result<()> {
    let mut header = header(bytes.len() as u64, mode, now);
    tar.append_data(&mut header, name, bytes)
}

/// What a plugpos binary says of itself (`plugpos version --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryFacts {
    pub version: String,
    pub schema_version: i64,
    pub arch: String,
    pub build: String,
}

impl BinaryFacts {
    /// This binary.
    pub fn current() -> BinaryFacts {
        BinaryFacts {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            schema_version: crate::core::db::migrations::embedded_schema_version(),
            arch: std::env::consts::ARCH.to_owned(),
            build: option_env!("PLUGPOS_BUILD_ID").unwrap_or("dev").to_owned(),
        }
    }

    /// Asks `binary` (`version --json`): proves it runs on this machine, and what it is.
    pub fn of(binary: &Path) -> Result<BinaryFacts, String> {
        let output = std::process::Command::new(binary)
            .args(["version", "--json"])
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        if !output.status.success() {
            return Err(format!(
                "{} does not run here ({}): {}",
                binary.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        serde_json::from_slice(&output.stdout)
            .map_err(|e| format!("{} did not say what version it is: {e}", binary.display()))
    }
}

fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

fn unreadable(package: &Path) -> impl Fn(io::Error) -> PackageError + '_ {
    move |e| {
        refuse(
            "package.unreadable",
            format!(
                "{} is not a readable update package: {e}",
                package.display()
            ),
        )
    }
}

/// Opens `package`, checks its signature against `trusted` before anything else, then writes its
/// files into `staging` (created, 0700) checking each one's size and hash against the manifest.
pub fn open(
    package: &Path,
    trusted: &[VerifyingKey],
    staging: &Path,
) -> Result<Verified, PackageError> {
    let (_, package_sha) = hash_file(package).map_err(unreadable(package))?;
    let file = File::open(package).map_err(unreadable(package))?;
    let decoder = zstd::Decoder::new(file).map_err(unreadable(package))?;
    let mut archive = tar::Archive::new(decoder);
    let mut entries = archive.entries().map_err(unreadable(package))?;
    let (manifest, signed_by) = signed_manifest(&mut entries, trusted, package)?;
    fs::create_dir_all(staging)
        .and_then(|()| {
            fs::set_permissions(staging, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        })
        .map_err(|e| {
            refuse(
                "package.unreadable",
                format!("cannot create {}: {e}", staging.display()),
            )
        })?;
    extract(entries, &manifest, staging, package)?;
    Ok(Verified {
        binary: staging.join(BINARY),
        manifest,
        signed_by: hex::encode(signed_by.to_bytes()),
        sha256: package_sha,
    })
}

/// The first two entries: the manifest and its signature, checked against the trusted keys.
fn signed_manifest<R: Read>(
    entries: &mut tar::Entries<'_, R>,
    trusted: &[VerifyingKey],
    package: &Path,
) -> Result<(Manifest, VerifyingKey), PackageError> {
    let mut next = |wanted: &str| -> Result<Vec<u8>, PackageError> {
        let mut entry = entries
            .next()
            .ok_or_else(|| {
                refuse(
                    "package.unsigned",
                    format!("the package has no {wanted}: it is not a signed update package"),
                )
            })?
            .map_err(unreadable(package))?;
        let name = entry
            .path()
            .map_err(unreadable(package))?
            .to_string_lossy()
            .into_owned();
        if name != wanted || entry.header().size().map_err(unreadable(package))? > MANIFEST_LIMIT {
            return Err(refuse(
                "package.unsigned",
                format!(
                    "the package has {name} where {wanted} belongs: it is not a signed update package"
                ),
            ));
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(unreadable(package))?;
        Ok(bytes)
    };
    let manifest_bytes = next(MANIFEST)?;
    let signature_text = next(SIGNATURE)?;
    let signature = hex::decode(String::from_utf8_lossy(&signature_text).trim())
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b))
        .ok_or_else(|| {
            refuse(
                "package.unsigned",
                "the package's signature is not an ed25519 signature",
            )
        })?;
    let signed_by = trusted
        .iter()
        .find(|key| key.verify_strict(&manifest_bytes, &signature).is_ok())
        .ok_or_else(|| {
            refuse(
                "package.bad_signature",
                "the package is not signed by a trusted key (the release key or one in upgrade.trusted_keys), or its manifest was altered",
            )
        })?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| {
        refuse(
            "package.unreadable",
            format!("the package's manifest is not understood: {e}"),
        )
    })?;
    if manifest.format != FORMAT || manifest.product != "plugpos" {
        return Err(refuse(
            "package.unreadable",
            format!(
                "the package is {} {}, not a {FORMAT} package of plugpos",
                manifest.product, manifest.format
            ),
        ));
    }
    if let Some(odd) = manifest
        .files
        .iter()
        .find(|f| f.name.is_empty() || f.name.contains('/') || f.name.starts_with('.'))
    {
        return Err(refuse(
            "package.unreadable",
            format!("the package's manifest names a file `{}`", odd.name),
        ));
    }
    if !manifest.files.iter().any(|f| f.name == BINARY) {
        return Err(refuse(
            "package.unreadable",
            "the package's manifest lists no binary",
        ));
    }
    Ok((manifest, *signed_by))
}

/// The files after the signature: each one listed, plain, and matching its size and hash.
fn extract<R: Read>(
    entries: tar::Entries<'_, R>,
    manifest: &Manifest,
    staging: &Path,
    package: &Path,
) -> Result<(), PackageError> {
    let mut seen = Vec::new();
    for entry in entries {
        let mut entry = entry.map_err(unreadable(package))?;
        let name = entry
            .path()
            .map_err(unreadable(package))?
            .to_string_lossy()
            .into_owned();
        let listed = manifest
            .files
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| {
                refuse(
                    "package.tampered",
                    format!("the package holds {name}, which its manifest does not list"),
                )
            })?;
        if entry.header().entry_type() != tar::EntryType::Regular || seen.contains(&name) {
            return Err(refuse(
                "package.tampered",
                format!("{name} in the package is not one plain file"),
            ));
        }
        let declared = entry.header().size().map_err(unreadable(package))?;
        if declared != listed.size {
            return Err(refuse(
                "package.tampered",
                format!(
                    "{name} in the package does not match its manifest ({declared} bytes, the signed manifest says {}): the package was altered",
                    listed.size
                ),
            ));
        }
        let target = staging.join(&listed.name);
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o700)
            .open(&target)
            .map_err(|e| {
                refuse(
                    "package.unreadable",
                    format!("cannot write {}: {e}", target.display()),
                )
            })?;
        let mut hasher = HashingWriter {
            out: &mut out,
            hasher: Sha256::new(),
            size: 0,
        };
        // Never more than the signed size (plus one byte, to see a longer file): a tampered
        // package cannot fill the disk before it is refused.
        io::copy(&mut (&mut entry).take(listed.size + 1), &mut hasher)
            .map_err(unreadable(package))?;
        let (size, sha) = (hasher.size, hex::encode(hasher.hasher.finalize()));
        out.sync_all().map_err(unreadable(package))?;
        if size != listed.size || sha != listed.sha256 {
            return Err(refuse(
                "package.tampered",
                format!(
                    "{name} in the package does not match its manifest (sha256 {sha}, the signed manifest says {}): the package was altered",
                    listed.sha256
                ),
            ));
        }
        fs::set_permissions(
            &target,
            std::os::unix::fs::PermissionsExt::from_mode(listed.mode & 0o755),
        )
        .map_err(|e| {
            refuse(
                "package.unreadable",
                format!("cannot set the mode of {}: {e}", target.display()),
            )
        })?;
        seen.push(name);
    }
    if let Some(missing) = manifest.files.iter().find(|f| !seen.contains(&f.name)) {
        return Err(refuse(
            "package.tampered",
            format!(
                "the package lacks {}, which its manifest lists",
                missing.name
            ),
        ));
    }
    Ok(())
}

struct HashingWriter<'a> {
    out: &'a mut File,
    hasher: Sha256,
    size: u64,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Refuses a package this instance must not install: another architecture, a downgrade, the
/// same version (unless `reinstall`), or a release that does not upgrade from `current`.
pub fn check_applicable(
    manifest: &Manifest,
    current: &str,
    reinstall: bool,
) -> Result<(), PackageError> {
    if manifest.arch != std::env::consts::ARCH {
        return Err(refuse(
            "package.wrong_arch",
            format!(
                "the package is for {}, this machine is {}",
                manifest.arch,
                std::env::consts::ARCH
            ),
        ));
    }
    let parse = |text: &str, what: &str| {
        semver::Version::parse(text).map_err(|_| {
            refuse(
                "package.unreadable",
                format!("{what} `{text}` is not a version"),
            )
        })
    };
    let new = parse(&manifest.version, "the package's version")?;
    let now = parse(current, "this version")?;
    let min_from = parse(&manifest.min_from_version, "the package's minimum version")?;
    if new < now {
        return Err(refuse(
            "package.downgrade",
            format!(
                "the package holds {new}, older than the installed {now}: downgrades are refused"
            ),
        ));
    }
    if new == now && !reinstall {
        return Err(refuse(
            "package.same_version",
            format!("{now} is already installed (--reinstall installs it again)"),
        ));
    }
    if now < min_from {
        return Err(refuse(
            "package.too_old",
            format!(
                "{new} upgrades from {min_from} or later; {now} is installed: upgrade to an intermediate release first"
            ),
        ));
    }
    Ok(())
}
