//! vexctl: inspect and control vexfs filesystems.
//!
//! Commands on an unmounted image or device (read-only): `inspect`, `ls`, `cat`. Commands on
//! a mounted filesystem, through the ioctls of `include/vexfs.h`: `import`, `set`, `get`,
//! `rm-embedding`, `search`, `stats` (read-only unless they write embeddings).
//!
//! Exit codes: 0 success, 1 error, 2 usage error.

mod abi;
mod ioctl;
mod mount;
mod offline;
mod online;
mod search_image;
mod vecfile;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Inspect and control vexfs filesystems.
#[derive(Parser, Debug)]
#[command(
    name = "vexctl",
    version = concat!(env!("CARGO_PKG_VERSION"), " (format v1, ioctl ABI v1)"),
    after_help = "Offline commands (inspect, ls, cat) read an unmounted image or device; the \
                  others work on a mounted vexfs, through its ioctls."
)]
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
    /// Create one file per vector (DIR/0, DIR/1, ...) on a mounted vexfs, with its embedding
    /// and optional text; resumes where an earlier run stopped.
    Import(online::ImportArgs),
    /// Set the embeddings of a file on a mounted vexfs from rows of an .fvecs file.
    Set(online::SetArgs),
    /// Print the embeddings of a file on a mounted vexfs.
    Get(online::GetArgs),
    /// Remove every embedding of a file on a mounted vexfs.
    RmEmbedding(online::RmEmbeddingArgs),
    /// Find the files nearest to query vectors (k-NN search of a mounted vexfs).
    Search(online::SearchArgs),
    /// Print the vector index's statistics and parameters of a mounted vexfs.
    Stats(online::StatsArgs),
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
            return if e.use_stderr() { Exit::Usage } else { Exit::Ok }.into();
        }
    };
    if let Cmd::Search(a) = &cli.cmd {
        if let Err(msg) = a.check() {
            let mut cmd = Cli::command();
            cmd.build();
            if let Some(sub) = cmd.find_subcommand_mut("search") {
                let _ = sub.error(clap::error::ErrorKind::ArgumentConflict, msg).print();
            }
            return Exit::Usage.into();
        }
    }
    let result = match &cli.cmd {
        Cmd::Inspect(a) => offline::inspect(a),
        Cmd::Ls(a) => offline::ls(a),
        Cmd::Cat(a) => offline::cat(a),
        Cmd::SearchImage(a) => search_image::search_image(a),
        Cmd::Import(a) => online::import(a),
        Cmd::Set(a) => online::set(a),
        Cmd::Get(a) => online::get(a),
        Cmd::RmEmbedding(a) => online::rm_embedding(a),
        Cmd::Search(a) => online::search(a),
        Cmd::Stats(a) => online::stats(a),
    };
    match result {
        Ok(()) => Exit::Ok.into(),
        Err(msg) => {
            eprintln!("vexctl: {msg}");
            Exit::Error.into()
        }
    }
}
