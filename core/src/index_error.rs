//! Errors of the vector index and the embedding layer ([`crate::vindex`], [`crate::embed`]).
//!
//! Storage errors stay the caller's own type (`E`: the kernel's `Error`, an I/O error in the
//! tools); everything the index itself finds is one of the variants here, each with its errno,
//! so that the kernel and the tools refuse the same requests with the same errno and report the
//! same corruption.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![deny(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]

use crate::error::{FormatError, EINVAL, ENOSPC};
use core::fmt;

/// `E2BIG`: more chunks than a file can carry.
pub const E2BIG: i32 = 7;
/// `ERANGE`: a first chunk past the file's chunk count.
pub const ERANGE: i32 = 34;
/// `EOPNOTSUPP` (Linux x86_64/arm64 numbering, as [`E2BIG`]).
pub const EOPNOTSUPP: i32 = 95;

/// A request the caller must change: each variant is refused with [`Reject::errno`] before
/// anything on disk is changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// A vector or query with `got` components where the filesystem has `want`. `EINVAL`.
    Dimension {
        /// Components (u32 words) the request holds.
        got: usize,
        /// Components per vector of the filesystem (`vec_dim`).
        want: u32,
    },
    /// Component `component` of vector `vector` of the request is NaN or infinite. `EINVAL`.
    NonFinite {
        /// Index of the vector in the request (0 for a query).
        vector: usize,
        /// Index of the component in that vector.
        component: usize,
    },
    /// A SET with no vectors. `EINVAL`.
    NoVectors,
    /// Setting chunk `first` of a file with only `chunks` would leave a gap. `EINVAL`.
    Gap {
        /// The first chunk the request sets.
        first: usize,
        /// Chunks the file has.
        chunks: usize,
    },
    /// Chunks up to `end` (exclusive) are past [`crate::format::vector::MAX_CHUNKS`]. `E2BIG`.
    TooManyChunks {
        /// One past the last chunk the request would leave the file with.
        end: usize,
    },
    /// Reading from chunk `first` of a file with only `chunks`. `ERANGE`.
    PastLastChunk {
        /// The first chunk asked for.
        first: usize,
        /// Chunks the file has.
        chunks: usize,
    },
    /// `k` outside `1..=max` (`max` = `embed::MAX_K`). `EINVAL`.
    K {
        /// The `k` asked for.
        k: usize,
        /// The largest `k` allowed.
        max: usize,
    },
    /// `ef` below `k` or above the largest the index's memory holds (`max`). `EINVAL`.
    Ef {
        /// The `ef` asked for (after 0 became the default).
        ef: usize,
        /// The search's `k`, the smallest `ef` allowed.
        k: usize,
        /// The largest `ef` allowed: `min(MAX_EF, the index's candidate pool)`.
        max: usize,
    },
    /// A search asked for the codes' distances on a filesystem without SQ8 or PQ codes.
    /// `EOPNOTSUPP`.
    NoCodes,
}

impl Reject {
    /// The errno the kernel returns for this refusal (positive).
    pub fn errno(&self) -> i32 {
        match self {
            Reject::TooManyChunks { .. } => E2BIG,
            Reject::PastLastChunk { .. } => ERANGE,
            Reject::NoCodes => EOPNOTSUPP,
            _ => EINVAL,
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Reject::Dimension { got, want } => write!(f, "{got} components where the filesystem has {want}"),
            Reject::NonFinite { vector, component } => {
                write!(f, "vector {vector} component {component} is NaN or infinite")
            }
            Reject::NoVectors => write!(f, "no vectors to set"),
            Reject::Gap { first, chunks } => {
                write!(f, "the file has {chunks} chunks: setting chunk {first} would leave a gap")
            }
            Reject::TooManyChunks { end } => {
                write!(f, "chunks up to {end} are past the limit of {} per file", crate::format::vector::MAX_CHUNKS)
            }
            Reject::PastLastChunk { first, chunks } => write!(f, "chunk {first} is past the file's {chunks} chunks"),
            Reject::K { k, max } => write!(f, "k {k} is outside 1..={max}"),
            Reject::Ef { ef, k, max } => write!(f, "ef {ef} is outside k..={max} (k {k})"),
            Reject::NoCodes => write!(f, "the filesystem has no SQ8 or PQ codes to rank by"),
        }
    }
}

/// What an index or embedding operation fails with. `E` is the storage's own error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexError<E> {
    /// The storage failed (I/O, memory): passed through unchanged.
    Io(E),
    /// Data on disk is inconsistent. `EUCLEAN` (or the decoder's errno, [`FormatError::errno`]).
    Corrupt(FormatError),
    /// A request refused before any change: [`Reject::errno`].
    Rejected(Reject),
    /// No free vector slot (`live` of `capacity` in use). `ENOSPC`.
    NoSpace {
        /// Live vectors in the index.
        live: u64,
        /// Vector slots of the filesystem (`vec_capacity`).
        capacity: u64,
    },
    /// A broken internal invariant (scratch too small, a write past a block): a bug, not bad
    /// data. `EINVAL`.
    Invalid(&'static str),
}

impl<E> IndexError<E> {
    /// The errno of every variant but [`IndexError::Io`] (positive); `None` for `Io`.
    pub fn errno(&self) -> Option<i32> {
        match self {
            IndexError::Io(_) => None,
            IndexError::Corrupt(e) => Some(e.errno()),
            IndexError::Rejected(r) => Some(r.errno()),
            IndexError::NoSpace { .. } => Some(ENOSPC),
            IndexError::Invalid(_) => Some(EINVAL),
        }
    }
}

impl<E> From<FormatError> for IndexError<E> {
    fn from(e: FormatError) -> Self {
        IndexError::Corrupt(e)
    }
}

impl<E> From<Reject> for IndexError<E> {
    fn from(r: Reject) -> Self {
        IndexError::Rejected(r)
    }
}

impl<E: fmt::Display> fmt::Display for IndexError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexError::Io(e) => write!(f, "{e}"),
            IndexError::Corrupt(e) => write!(f, "{e}"),
            IndexError::Rejected(r) => write!(f, "{r}"),
            IndexError::NoSpace { live, capacity } => {
                write!(f, "no free vector slot ({live} of {capacity} slots live)")
            }
            IndexError::Invalid(what) => write!(f, "vector index: {what}"),
        }
    }
}

/// `Result` of index operations over a store whose error is `E`.
pub type IResult<T, E> = core::result::Result<T, IndexError<E>>;
