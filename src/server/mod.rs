//! The HTTP service.

use anyhow::Result;
use std::path::PathBuf;

/// `pointsledger serve` settings.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The data directory.
    #[arg(long, env = "POINTSLEDGER_DATA")]
    pub data: PathBuf,
    /// The address to listen on.
    #[arg(long, env = "POINTSLEDGER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
}

/// Runs the server until SIGTERM or Ctrl-C.
pub fn run(args: ServeArgs) -> Result<()> {
    anyhow::bail!(
        "serve is not available yet ({:?} on {})",
        args.data,
        args.listen
    )
}
