//! The `.fvecs` / `.ivecs` files of the ANN benchmarks (Jégou et al., the TEXMEX sets): the one
//! reader of the userspace tools, examples and tests.
//!
//! Each row is a little-endian `i32` dimension `d` followed by `d` little-endian components:
//! `f32` in `.fvecs` (vectors), `i32` in `.ivecs` (ground-truth ids, read here as `u32`). Every
//! row of a file must have the dimension of row 0. A file is checked when it is opened (a
//! plausible first dimension, a length that is a whole number of rows) and each row when it is
//! read (its dimension; in `.fvecs`, finite components, since vexfs refuses NaN and infinity).
//! Errors name the file, the row and, for a bad component, its index.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::marker::PhantomData;
use std::path::Path;

use crate::{Error, Result};

/// Largest dimension accepted in a file (far above any vexfs dimension: a bigger number means
/// the file is not in this format).
pub const MAX_FILE_DIM: u32 = 1 << 20;

/// The component type of a vector file: `f32` (`.fvecs`) or `u32` (`.ivecs`).
pub trait Component: Copy + sealed::Sealed {
    /// The file extension, for messages: `.fvecs`.
    const EXT: &'static str;
    /// The C type of a component, for messages: `float32`.
    const C_TYPE: &'static str;
    /// The component whose little-endian bytes are `b`.
    fn from_le_bytes(b: [u8; 4]) -> Self;
    /// The little-endian bytes of `self`.
    fn to_le_bytes(self) -> [u8; 4];
    /// `Err((index, message))` for the first component vexfs refuses in a row.
    fn check(row: &[Self]) -> std::result::Result<(), (usize, String)>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for u32 {}
}

impl Component for f32 {
    const EXT: &'static str = ".fvecs";
    const C_TYPE: &'static str = "float32";
    fn from_le_bytes(b: [u8; 4]) -> f32 {
        f32::from_le_bytes(b)
    }
    fn to_le_bytes(self) -> [u8; 4] {
        f32::to_le_bytes(self)
    }
    fn check(row: &[f32]) -> std::result::Result<(), (usize, String)> {
        check_finite(row).map_err(|(i, v)| (i, format!("{v}: vexfs refuses NaN and infinite components")))
    }
}

impl Component for u32 {
    const EXT: &'static str = ".ivecs";
    const C_TYPE: &'static str = "int32";
    fn from_le_bytes(b: [u8; 4]) -> u32 {
        u32::from_le_bytes(b)
    }
    fn to_le_bytes(self) -> [u8; 4] {
        u32::to_le_bytes(self)
    }
    fn check(_: &[u32]) -> std::result::Result<(), (usize, String)> {
        Ok(())
    }
}

/// A vector file (or anything readable and seekable holding one), checked on open, read row by
/// row. `T` is the component type; see [`Fvecs`] and [`Ivecs`].
#[derive(Debug)]
pub struct VecFile<R, T> {
    inner: R,
    name: String,
    dim: u32,
    rows: u64,
    /// The bytes of one row's components (reused).
    buf: Vec<u8>,
    _t: PhantomData<T>,
}

/// An `.fvecs` file: rows of `f32`.
pub type Fvecs<R> = VecFile<R, f32>;
/// An `.ivecs` file: rows of ids.
pub type Ivecs<R> = VecFile<R, u32>;

/// Bytes of one row of `dim` components.
fn row_bytes(dim: u32) -> u64 {
    4 + 4 * u64::from(dim)
}

fn read_dim<R: Read>(r: &mut R) -> io::Result<i32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(i32::from_le_bytes(b))
}

impl<T: Component> VecFile<BufReader<File>, T> {
    /// Opens a file. Errors: `Io` (`cannot open PATH: ...`), and those of [`VecFile::new`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let f = File::open(path).map_err(Error::io(format!("cannot open {}", path.display())))?;
        Self::new(BufReader::with_capacity(1 << 16, f), &path.display().to_string())
    }
}

impl<R, T> VecFile<R, T> {
    /// Row count.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Components per row.
    pub fn dim(&self) -> u32 {
        self.dim
    }

    /// The name used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<R: Read + Seek, T: Component> VecFile<R, T> {
    /// Checks the header of `inner`, named `name` in error messages. Errors: `Invalid` for an
    /// empty file, a truncated one, a first dimension of 0 or above [`MAX_FILE_DIM`], or rows
    /// of different dimensions that do not add up to a whole number of rows; `Io`.
    pub fn new(mut inner: R, name: &str) -> Result<Self> {
        let io = |source: io::Error| Error::Io { what: name.to_string(), source };
        let len = inner.seek(SeekFrom::End(0)).map_err(io)?;
        if len == 0 {
            return Err(Error::Invalid(format!("{name} is empty: no vectors")));
        }
        inner.seek(SeekFrom::Start(0)).map_err(io)?;
        let d = match read_dim(&mut inner) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(Error::Invalid(format!(
                    "{name}: truncated: {len} bytes, shorter than the 4-byte dimension of row 0"
                )))
            }
            Err(e) => return Err(io(e)),
        };
        let dim = u32::try_from(d).ok().filter(|&d| (1..=MAX_FILE_DIM).contains(&d)).ok_or_else(|| {
            Error::Invalid(format!(
                "{name}: row 0 has dimension {d}: not an {} file (int32 dim, then dim {}, per row)",
                T::EXT,
                T::C_TYPE
            ))
        })?;
        let mut f = VecFile {
            inner,
            name: name.to_string(),
            dim,
            rows: len / row_bytes(dim),
            buf: Vec::new(),
            _t: PhantomData,
        };
        if len % row_bytes(dim) != 0 {
            // Either the rows have different dimensions (say which), or the last one is cut.
            f.check_dims(len)?;
            return Err(Error::Invalid(format!(
                "{name}: truncated: {len} bytes is not a whole number of rows of {} bytes \
                 (dimension {dim}): row {} is incomplete",
                row_bytes(dim),
                f.rows
            )));
        }
        Ok(f)
    }

    fn io(&self, row: Option<u64>) -> impl FnOnce(io::Error) -> Error {
        match row {
            Some(r) => Error::io(format!("{}: row {r}", self.name)),
            None => Error::io(self.name.clone()),
        }
    }

    /// Walks the row headers of a file of `len` bytes; fails at the first row whose dimension
    /// differs from row 0's.
    fn check_dims(&mut self, len: u64) -> Result<()> {
        let step = row_bytes(self.dim);
        let mut row = 1u64;
        while row.checked_mul(step).and_then(|o| o.checked_add(4)).is_some_and(|end| end <= len) {
            self.inner.seek(SeekFrom::Start(row * step)).map_err(self.io(None))?;
            let d = read_dim(&mut self.inner).map_err(self.io(None))?;
            self.check_row_dim(row, d)?;
            row += 1;
        }
        Ok(())
    }

    fn check_row_dim(&self, row: u64, d: i32) -> Result<()> {
        if i64::from(d) != i64::from(self.dim) {
            return Err(Error::Invalid(format!(
                "{}: row {row} has dimension {d} but row 0 has {}: every row of an {} file \
                 must have the same dimension",
                self.name,
                self.dim,
                T::EXT
            )));
        }
        Ok(())
    }

    /// Reads the row at the current position (row number `row`, for messages) into `out`.
    fn read_here(&mut self, row: u64, out: &mut Vec<T>) -> Result<()> {
        let d = read_dim(&mut self.inner).map_err(self.io(Some(row)))?;
        self.check_row_dim(row, d)?;
        let len = usize::try_from(row_bytes(self.dim) - 4)
            .map_err(|_| Error::Invalid(format!("{}: dimension {} is too large", self.name, self.dim)))?;
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(len, 0);
        let read = self.inner.read_exact(&mut buf).map_err(self.io(Some(row)));
        out.clear();
        out.extend(buf.chunks_exact(4).map(|c| T::from_le_bytes([c[0], c[1], c[2], c[3]])));
        self.buf = buf;
        read?;
        T::check(out).map_err(|(i, what)| Error::Invalid(format!("{}: row {row}, component {i} is {what}", self.name)))
    }

    /// The byte offset of row `row` (which is below [`rows`](Self::rows), so the offset lies
    /// inside the file).
    fn offset(&self, row: u64) -> u64 {
        row.saturating_mul(row_bytes(self.dim))
    }

    /// Row `row` (checked: its dimension and its components). Errors: `Invalid` for a row past
    /// the end or a bad row, `Io`.
    pub fn row(&mut self, row: u64) -> Result<Vec<T>> {
        if row >= self.rows {
            return Err(Error::Invalid(format!(
                "{} has {} rows (0 to {}): there is no row {row}",
                self.name,
                self.rows,
                self.rows.saturating_sub(1)
            )));
        }
        self.inner.seek(SeekFrom::Start(self.offset(row))).map_err(self.io(None))?;
        let mut v = Vec::new();
        self.read_here(row, &mut v)?;
        Ok(v)
    }

    /// Rows `first .. first + n`, concatenated (`n * dim` components). Errors: as [`row`](Self::row).
    pub fn rows_range(&mut self, first: u64, n: u64) -> Result<Vec<T>> {
        let end = first.checked_add(n).filter(|&e| e <= self.rows).ok_or_else(|| {
            Error::Invalid(format!(
                "{} has {} rows: rows {first}..{} are past its end",
                self.name,
                self.rows,
                first.saturating_add(n)
            ))
        })?;
        let mut all = Vec::with_capacity(usize::try_from(n.saturating_mul(u64::from(self.dim))).unwrap_or(0));
        let mut v = Vec::new();
        self.inner.seek(SeekFrom::Start(self.offset(first))).map_err(self.io(None))?;
        for row in first..end {
            self.read_here(row, &mut v)?;
            all.extend_from_slice(&v);
        }
        Ok(all)
    }

    /// Calls `f(row, vector)` for every row in order; stops at the first error (of the file or
    /// of `f`).
    pub fn for_each<E: From<Error>>(
        &mut self,
        mut f: impl FnMut(u64, &[T]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        self.inner.seek(SeekFrom::Start(0)).map_err(self.io(None))?;
        let mut v = Vec::new();
        for row in 0..self.rows {
            self.read_here(row, &mut v)?;
            f(row, &v)?;
        }
        Ok(())
    }

    /// Reads every row, checking each (the whole file is valid if this passes). Errors: as
    /// [`row`](Self::row).
    pub fn check_all(&mut self) -> Result<()> {
        self.for_each(|_, _| Ok::<(), Error>(()))
    }

    /// Every row, each checked. Errors: as [`row`](Self::row).
    pub fn read_all(&mut self) -> Result<Vec<Vec<T>>> {
        let mut out = Vec::with_capacity(usize::try_from(self.rows).unwrap_or(0));
        self.for_each(|_, v| {
            out.push(v.to_vec());
            Ok::<(), Error>(())
        })?;
        Ok(out)
    }
}

/// Reads a whole `.fvecs` file: its rows, all of one dimension and finite. Errors: those of
/// [`VecFile::open`] and [`VecFile::read_all`].
pub fn read_fvecs(path: impl AsRef<Path>) -> Result<Vec<Vec<f32>>> {
    Fvecs::open(path)?.read_all()
}

/// Reads a whole `.ivecs` file: its rows, all of one dimension. Errors: as [`read_fvecs`].
pub fn read_ivecs(path: impl AsRef<Path>) -> Result<Vec<Vec<u32>>> {
    Ivecs::open(path)?.read_all()
}

/// The bytes of a vector file holding `rows` (`.fvecs` for `f32`, `.ivecs` for `u32`).
pub fn vecs_bytes<T: Component>(rows: &[impl AsRef<[T]>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rows {
        let r = r.as_ref();
        out.extend_from_slice(&u32::try_from(r.len()).unwrap_or(u32::MAX).to_le_bytes());
        for &x in r {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out
}

/// The bytes of an `.fvecs` file holding `rows`.
pub fn fvecs_bytes(rows: &[impl AsRef<[f32]>]) -> Vec<u8> {
    vecs_bytes(rows)
}

/// `Err((index, value))` of the first NaN or infinite component.
pub fn check_finite(v: &[f32]) -> std::result::Result<(), (usize, f32)> {
    match v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        Some((i, &x)) => Err((i, x)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn open(b: Vec<u8>) -> std::result::Result<Fvecs<Cursor<Vec<u8>>>, String> {
        Fvecs::new(Cursor::new(b), "v.fvecs").map_err(|e| e.to_string())
    }

    fn err<T>(r: Result<T>) -> String {
        match r {
            Ok(_) => panic!("no error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn reads_rows() {
        let b = fvecs_bytes(&[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [-1.5, 0.0, 1e-3]]);
        let mut f = open(b).unwrap();
        assert_eq!((f.dim(), f.rows()), (3, 3));
        assert_eq!(f.row(1).unwrap(), vec![4.0, 5.0, 6.0]);
        assert_eq!(f.row(0).unwrap(), vec![1.0, 2.0, 3.0]);
        assert_eq!(f.rows_range(1, 2).unwrap(), vec![4.0, 5.0, 6.0, -1.5, 0.0, 1e-3]);
        let mut seen = Vec::new();
        f.for_each(|r, v| {
            seen.push((r, v[0]));
            Ok::<(), Error>(())
        })
        .unwrap();
        assert_eq!(seen, vec![(0, 1.0), (1, 4.0), (2, -1.5)]);
        assert_eq!(f.read_all().unwrap(), vec![vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0], vec![-1.5, 0.0, 1e-3]]);
        assert_eq!(err(f.row(3)), "v.fvecs has 3 rows (0 to 2): there is no row 3");
        let e = err(f.rows_range(2, 2));
        assert!(e.contains("rows 2..4 are past its end"), "{e}");
    }

    #[test]
    fn ivecs_rows() {
        let b = vecs_bytes(&[[7u32, 0, u32::MAX], [1, 2, 3]]);
        let mut f = Ivecs::new(Cursor::new(b), "gt.ivecs").unwrap();
        assert_eq!(f.read_all().unwrap(), vec![vec![7, 0, u32::MAX], vec![1, 2, 3]]);
        let e = err(Ivecs::new(Cursor::new(0i32.to_le_bytes().to_vec()), "gt.ivecs"));
        assert_eq!(e, "gt.ivecs: row 0 has dimension 0: not an .ivecs file (int32 dim, then dim int32, per row)");
    }

    #[test]
    fn the_repository_sample() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/pydocs-minilm/small");
        let mut q = Fvecs::open(dir.join("query.fvecs")).unwrap();
        assert_eq!((q.dim(), q.rows()), (384, 100));
        let v = q.row(99).unwrap();
        let norm: f32 = v.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-3, "L2-normalised: {norm}");
        let base = read_fvecs(dir.join("base.fvecs")).unwrap();
        assert_eq!((base.len(), base[0].len()), (2000, 384));
        let gt = read_ivecs(dir.join("groundtruth.ivecs")).unwrap();
        assert_eq!(gt.len(), 100);
        assert!(gt.iter().flatten().all(|&id| id < 2000));
        let e = err(read_fvecs(dir.join("missing.fvecs")));
        assert!(
            e.starts_with("cannot open ") && e.ends_with("missing.fvecs: No such file or directory (os error 2)"),
            "{e}"
        );
    }

    #[test]
    fn truncated_files() {
        assert_eq!(open(vec![]).unwrap_err(), "v.fvecs is empty: no vectors");
        let e = open(vec![3, 0]).unwrap_err();
        assert!(e.contains("truncated: 2 bytes, shorter than the 4-byte dimension"), "{e}");
        let mut b = fvecs_bytes(&[[1.0, 2.0], [3.0, 4.0]]);
        b.truncate(b.len() - 1);
        let e = open(b).unwrap_err();
        assert_eq!(
            e,
            "v.fvecs: truncated: 23 bytes is not a whole number of rows of 12 bytes \
             (dimension 2): row 1 is incomplete"
        );
        // Only a dimension, no components.
        let e = open(2i32.to_le_bytes().to_vec()).unwrap_err();
        assert!(e.contains("row 0 is incomplete"), "{e}");
    }

    #[test]
    fn bad_and_inconsistent_dimensions() {
        for d in [0i32, -3, 1 << 21] {
            let mut b = d.to_le_bytes().to_vec();
            b.extend_from_slice(&[0; 8]);
            let e = open(b).unwrap_err();
            assert!(e.contains(&format!("row 0 has dimension {d}: not an .fvecs file")), "{e}");
        }
        // Lengths that do not add up: the header walk finds the culprit.
        let b = fvecs_bytes(&[&[1.0, 2.0][..], &[3.0, 4.0], &[5.0]]);
        assert_eq!(
            open(b).unwrap_err(),
            "v.fvecs: row 2 has dimension 1 but row 0 has 2: every row of an .fvecs file must \
             have the same dimension"
        );
        // Lengths that add up by chance (3 rows of 2 = 2 + 1 + 3 components): found when the
        // row is read.
        let b = fvecs_bytes(&[&[1.0, 2.0][..], &[3.0], &[4.0, 5.0, 6.0]]);
        let mut f = open(b).unwrap();
        assert_eq!(f.rows(), 3);
        let e = err(f.row(1));
        assert!(e.contains("row 1 has dimension 1 but row 0 has 2"), "{e}");
        let e = f.for_each(|_, _| Ok::<(), Error>(())).unwrap_err().to_string();
        assert!(e.contains("row 1 has dimension 1"), "{e}");
    }

    #[test]
    fn nan_and_infinity_refused() {
        let b = fvecs_bytes(&[[1.0, 2.0], [3.0, f32::NAN], [f32::NEG_INFINITY, 0.0]]);
        let mut f = open(b).unwrap();
        f.row(0).unwrap();
        assert_eq!(err(f.row(1)), "v.fvecs: row 1, component 1 is NaN: vexfs refuses NaN and infinite components");
        assert_eq!(err(f.row(2)), "v.fvecs: row 2, component 0 is -inf: vexfs refuses NaN and infinite components");
        assert!(err(f.rows_range(0, 3)).contains("row 1, component 1 is NaN"));
        assert_eq!(check_finite(&[0.0, f32::INFINITY]), Err((1, f32::INFINITY)));
        assert_eq!(check_finite(&[0.0, f32::MAX, -f32::MIN_POSITIVE]), Ok(()));
    }
}
