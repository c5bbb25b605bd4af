//! The error type of image operations.

use std::fmt;
use std::io;

use vexfs_core::error::FormatError;

/// What went wrong, with the object it concerns (`"inode 12"`, `"block 4711"`, a path).
#[derive(Debug)]
pub enum Error {
    /// Reading or writing the device (or a file) failed.
    Io {
        /// What was being read or written.
        what: String,
        /// The system's error.
        source: io::Error,
    },
    /// A structure on the device is invalid; the [`FormatError`] says how.
    Format {
        /// The structure.
        what: String,
        /// How it is invalid.
        err: FormatError,
    },
    /// A path component does not exist.
    NotFound(String),
    /// A path component that must be a directory is not one.
    NotADirectory(String),
    /// The request cannot be carried out (no space left, name exists, bad argument).
    Invalid(String),
}

/// Result of an image operation.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A closure turning an I/O error into [`Error::Io`] about `what`.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }

    /// A closure turning a [`FormatError`] into [`Error::Format`] about `what`.
    pub(crate) fn format(what: impl Into<String>) -> impl FnOnce(FormatError) -> Error {
        let what = what.into();
        move |err| Error::Format { what, err }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { what, source } => write!(f, "{what}: {source}"),
            Error::Format { what, err } => write!(f, "{what}: {err}"),
            Error::NotFound(p) => write!(f, "{p}: no such file or directory"),
            Error::NotADirectory(p) => write!(f, "{p}: not a directory"),
            Error::Invalid(m) => f.write_str(m),
        }
    }
}

/// The message, for callers that report errors as text (the tools' commands return
/// `Result<(), String>`, so `?` works on image operations there).
impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
