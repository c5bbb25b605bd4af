//! vexctl: inspect and control vexfs filesystems.
//!
//! Commands on an unmounted image or device (read-only): `inspect`, `ls`, `cat`. Commands on
//! a mounted filesystem (the ioctls) come later as further subcommands.
//!
//! Exit codes: 0 success, 1 error, 2 usage error.

mod offline;
mod search_image;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Inspect and control vexfs filesystems.
#[derive(Parser, Debug)]
#[command(name = "vexctl", version = concat!(env!("CARGO_PKG_VERSION"), " (format v1)"))]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print the superblock, the region table and the journal state of an image.
    Inspect(offline::InspectArgs),
    /// List a directory (or show a single file) of an unmounted image.
    Ls(offline::LsArgs),
    /// Write a file of an unmounted image to standard output (a symlink: its target).
    Cat(offline::CatArgs),
    /// k-NN search of an unmounted image or device, in userspace (the kernel's code, read-only).
    SearchImage(search_image::SearchImageArgs),
}

/// How vexctl exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// The command failed (message on stderr).
    Error = 1,
    /// Bad command line.
    Usage = 2,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Ok
            }
            .into();
        }
    };
    let result = match &cli.cmd {
        Cmd::Inspect(a) => offline::inspect(a),
        Cmd::Ls(a) => offline::ls(a),
        Cmd::Cat(a) => offline::cat(a),
        Cmd::SearchImage(a) => search_image::search_image(a),
    };
    match result {
        Ok(()) => Exit::Ok.into(),
        Err(msg) => {
            eprintln!("vexctl: {msg}");
            Exit::Error.into()
        }
    }
}
