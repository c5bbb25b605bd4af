//! vexctl: inspect and control vexfs filesystems.
//!
//! Commands on an unmounted image or device, read-only: `inspect`, `ls`, `cat` ([`offline`]) and
//! `search-image` ([`search_image`]: k-NN search in userspace with the kernel's code). Commands
//! on a mounted filesystem, through the ioctls of `include/vexfs.h` ([`online`], one module per
//! command): `import`, `set`, `get`, `rm-embedding`, `search`, `stats`, `wait-indexed`
//! (read-only unless they write embeddings); `log` ([`mounted_log`]) reads the journal of a mounted vexfs from its
//! block device.
//!
//! Exit codes ([`vexfs_image::exit::VEXCTL`]): 0 success, 1 the command failed, 2 bad command
//! line.

#![warn(clippy::unwrap_used, clippy::expect_used)]

mod mount;
mod mounted_log;
mod offline;
mod online;
mod results;
mod search_image;

// The ABI and the ioctl calls live in the library (src/lib.rs), shared with testkit's tools.
use vexctl::{abi, ioctl};

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use nix::sys::signal;
use vexfs_image::exit::VEXCTL;

/// Inspect and control vexfs filesystems.
#[derive(Parser, Debug)]
#[command(
    name = "vexctl",
    version = concat!(env!("CARGO_PKG_VERSION"), " (format v2, ioctl ABI v1)"),
    after_help = "Offline commands (inspect, ls, cat, search-image) read an unmounted image or \
                  device; the others work on a mounted vexfs, through its ioctls (log reads its \
                  block device).\n\n\
                  Exit status: 0 success, 1 the command failed (the message says why and what to \
                  do next), 2 bad command line."
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
    Import(online::import::ImportArgs),
    /// Set the embeddings of a file on a mounted vexfs from rows of an .fvecs file.
    Set(online::set::SetArgs),
    /// Print the embeddings of a file on a mounted vexfs.
    Get(online::get::GetArgs),
    /// Remove every embedding of a file on a mounted vexfs.
    RmEmbedding(online::rm_embedding::RmEmbeddingArgs),
    /// Find the files nearest to query vectors (k-NN search of a mounted vexfs).
    Search(online::search::SearchArgs),
    /// Print the vector index's statistics and parameters of a mounted vexfs.
    Stats(online::stats::StatsArgs),
    /// Wait until the index worker has linked every pending vector of a mounted vexfs into the
    /// graph (polls VEXFS_IOC_STATS); print how long it took and how many were pending at the
    /// start. Exit status 1 on --timeout.
    WaitIndexed(online::wait_indexed::WaitIndexedArgs),
    /// Print the journal of a mounted vexfs (state, committed transactions, torn tail, free log
    /// blocks) and its vector write-ahead log (pending vectors), read from its block device
    /// through the page cache: what the kernel last wrote or holds in its buffer cache, not the
    /// running transaction (--sync commits it first).
    Log(mounted_log::LogArgs),
    /// k-NN search of an unmounted image or device, in userspace (the kernel's code, read-only).
    SearchImage(search_image::SearchImageArgs),
}

fn main() -> ExitCode {
    // A closed pipe ends vexctl as it ends cat (`vexctl inspect IMG | head`): Rust ignores
    // SIGPIPE, so without this the first print after the reader left panics with EPIPE.
    // SAFETY: no other thread exists yet, and SIG_DFL installs no handler code.
    unsafe {
        let _ = signal::signal(signal::Signal::SIGPIPE, signal::SigHandler::SigDfl);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(VEXCTL.after_parse(e.use_stderr()));
        }
    };
    // Argument conflicts clap cannot express are usage errors too, reported as clap's.
    let conflict = match &cli.cmd {
        Cmd::Search(a) => a.check().err().map(|m| ("search", m)),
        Cmd::SearchImage(a) => a.check().err().map(|m| ("search-image", m)),
        _ => None,
    };
    if let Some((name, msg)) = conflict {
        let mut cmd = Cli::command();
        cmd.build();
        if let Some(sub) = cmd.find_subcommand_mut(name) {
            let _ = sub.error(clap::error::ErrorKind::ArgumentConflict, msg).print();
        }
        return ExitCode::from(VEXCTL.usage);
    }
    let result = match &cli.cmd {
        Cmd::Inspect(a) => offline::inspect(a),
        Cmd::Ls(a) => offline::ls(a),
        Cmd::Cat(a) => offline::cat(a),
        Cmd::SearchImage(a) => search_image::search_image(a),
        Cmd::Import(a) => online::import::import(a),
        Cmd::Set(a) => online::set::set(a),
        Cmd::Get(a) => online::get::get(a),
        Cmd::RmEmbedding(a) => online::rm_embedding::rm_embedding(a),
        Cmd::Search(a) => online::search::search(a),
        Cmd::Stats(a) => online::stats::stats(a),
        Cmd::WaitIndexed(a) => online::wait_indexed::wait_indexed(a),
        Cmd::Log(a) => mounted_log::log(a),
    };
    match result {
        Ok(()) => ExitCode::from(VEXCTL.ok),
        Err(msg) => {
            eprintln!("vexctl: {msg}");
            ExitCode::from(VEXCTL.failed)
        }
    }
}
