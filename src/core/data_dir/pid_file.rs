//! `<data_dir>/plugpos.pid`: held locked by the running `plugpos serve`, so a second server on
//! the same data directory is refused and `plugpos db stop` knows not to pull the database away.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};

use anyhow::Context;
use nix::fcntl::{Flock, FlockArg};

use crate::core::data_dir::DataDir;

/// The lock of the running server; released (and the file removed) on drop.
pub struct PidFile {
    lock: Option<Flock<File>>,
    path: std::path::PathBuf,
}

impl PidFile {
    /// Takes the lock and writes our pid, or says which server already holds it.
    pub fn acquire(data_dir: &DataDir) -> anyhow::Result<PidFile> {
        let path = data_dir.pid_file();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, _)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                anyhow::bail!(
                    "another plugpos serve (pid {}) is already running with data directory {}",
                    pid.trim(),
                    data_dir.root().display()
                );
            }
        };
        lock.set_len(0)
            .and_then(|()| lock.rewind())
            .and_then(|()| writeln!(lock, "{}", std::process::id()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(PidFile {
            lock: Some(lock),
            path,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        drop(self.lock.take());
    }
}

/// The pid of the `plugpos serve` running with this data directory, if any.
pub fn running_server(data_dir: &DataDir) -> Option<String> {
    let path = data_dir.pid_file();
    let file = OpenOptions::new().read(true).write(true).open(&path).ok()?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(_free) => None,
        Err((mut file, _)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            Some(pid.trim().to_owned())
        }
    }
}
