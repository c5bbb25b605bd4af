//! `vexctl rm-embedding`: removes every embedding of a file.

use std::path::PathBuf;

use clap::Args;

use super::{ioctl_error, open_vexfs, Call, Sent};
use crate::ioctl;
use crate::offline::CmdResult;

/// The arguments of `vexctl rm-embedding`.
#[derive(Args, Debug)]
pub struct RmEmbeddingArgs {
    /// A file on a mounted vexfs (opened for writing); a file without embeddings is no error.
    file: PathBuf,
}

/// `vexctl rm-embedding`.
pub fn rm_embedding(a: &RmEmbeddingArgs) -> CmdResult {
    let f = open_vexfs(&a.file, true)?;
    ioctl::remove_embeddings(&f).map_err(|e| ioctl_error(&a.file, Call::Remove, e, Sent::default()))
}
