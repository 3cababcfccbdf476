//! `plugpos receipt verify "<QR text>"`: a receipt's signed QR code checked against this
//! instance's key and its records (the check is the receipts module's, offered as a `Verifier`).

use clap::Subcommand;

use crate::core::config::Config;
use crate::core::modules::Registry;

#[derive(Debug, Subcommand)]
pub enum ReceiptCommand {
    /// Check a receipt's QR code (the text it holds, `PP1|...`): whether the signature is this
    /// instance's and whether the record of the document states the same; prints the verdict as
    /// JSON, fails when either does not hold.
    Verify {
        /// The QR code's text.
        code: String,
    },
}

pub async fn run(
    config: &Config,
    registry: &Registry,
    command: ReceiptCommand,
) -> anyhow::Result<()> {
    let ReceiptCommand::Verify { code } = command;
    super::closing::verify_with(config, registry, "receipt", &[code], "receipt").await
}
