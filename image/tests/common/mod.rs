//! What the image crate's integration tests share (`mod common;` in each: cargo makes no test
//! of its own from a file in a subdirectory): the pydocs sample.

// Each test uses only part of this module.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use vexfs_image::vecfile::{read_fvecs, read_ivecs};

/// The pydocs-minilm sample carried in the repository (`data/pydocs-minilm/small`).
pub struct Data {
    /// The base vectors: 2000 × 384, L2-normalised.
    pub base: Vec<Vec<f32>>,
    /// The queries: 100 × 384.
    pub queries: Vec<Vec<f32>>,
    /// Per query, the rows of its 100 nearest base vectors by L2, nearest first.
    pub gt: Vec<Vec<u32>>,
}

/// The sample, read once per test binary.
pub fn pydocs() -> &'static Data {
    static DATA: OnceLock<Data> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/pydocs-minilm/small");
        let d = Data {
            base: read_fvecs(dir.join("base.fvecs")).unwrap(),
            queries: read_fvecs(dir.join("query.fvecs")).unwrap(),
            gt: read_ivecs(dir.join("groundtruth.ivecs")).unwrap(),
        };
        assert_eq!((d.base.len(), d.base[0].len(), d.queries.len()), (2000, 384, 100));
        d
    })
}
