//! Input files of the online commands: `.fvecs` vectors and `.jsonl` passages.
//!
//! `.fvecs` (the TEXMEX/ANN-benchmarks format): each row is a little-endian `i32` dimension `d`
//! followed by `d` little-endian `f32`. Every row of a file must have the same dimension, and
//! vexctl refuses NaN and infinite components here, before any ioctl, naming the row and the
//! component (the kernel would only say EINVAL).
//!
//! `.jsonl`: one JSON object per line, line `i` belonging to row `i`; its `"text"` string is the
//! passage (other fields are ignored).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// Largest dimension accepted in a file (far above any vexfs dimension: a bigger number means
/// the file is not `.fvecs`).
const MAX_FILE_DIM: u32 = 1 << 20;

/// An `.fvecs` file (or anything readable and seekable holding one), checked on open: a valid
/// first dimension, and a length that is a whole number of rows.
#[derive(Debug)]
pub struct Fvecs<R> {
    inner: R,
    name: String,
    dim: u32,
    rows: u64,
}

/// Bytes of one row of `dim` components.
fn row_bytes(dim: u32) -> u64 {
    4 + 4 * u64::from(dim)
}

fn read_dim<R: Read>(r: &mut R) -> io::Result<i32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(i32::from_le_bytes(b))
}

impl Fvecs<BufReader<File>> {
    /// Opens an `.fvecs` file.
    pub fn open(path: &Path) -> Result<Self, String> {
        let f = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Self::new(BufReader::with_capacity(1 << 16, f), &path.display().to_string())
    }
}

impl<R> Fvecs<R> {
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

impl<R: Read + Seek> Fvecs<R> {
    /// Checks the header of `inner`, named `name` in error messages.
    pub fn new(mut inner: R, name: &str) -> Result<Self, String> {
        let io = |e: io::Error| format!("{name}: {e}");
        let len = inner.seek(SeekFrom::End(0)).map_err(io)?;
        if len == 0 {
            return Err(format!("{name} is empty: no vectors"));
        }
        inner.seek(SeekFrom::Start(0)).map_err(io)?;
        let d = match read_dim(&mut inner) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(format!("{name}: truncated: {len} bytes, shorter than the 4-byte dimension of row 0"))
            }
            Err(e) => return Err(io(e)),
        };
        let dim = u32::try_from(d).ok().filter(|&d| (1..=MAX_FILE_DIM).contains(&d)).ok_or_else(|| {
            format!("{name}: row 0 has dimension {d}: not an .fvecs file (int32 dim, then dim float32, per row)")
        })?;
        let mut f = Fvecs { inner, name: name.to_string(), dim, rows: len / row_bytes(dim) };
        if len % row_bytes(dim) != 0 {
            // Either the rows have different dimensions (say which), or the last one is cut.
            f.check_dims(len)?;
            return Err(format!(
                "{name}: truncated: {len} bytes is not a whole number of rows of {} bytes \
                 (dimension {dim}): row {} is incomplete",
                row_bytes(dim),
                f.rows
            ));
        }
        Ok(f)
    }

    /// Walks the row headers of a file of `len` bytes; fails at the first row whose dimension
    /// differs from row 0's.
    fn check_dims(&mut self, len: u64) -> Result<(), String> {
        let step = row_bytes(self.dim);
        let mut row = 1u64;
        while row * step + 4 <= len {
            self.inner.seek(SeekFrom::Start(row * step)).map_err(|e| format!("{}: {e}", self.name))?;
            let d = read_dim(&mut self.inner).map_err(|e| format!("{}: {e}", self.name))?;
            self.check_row_dim(row, d)?;
            row += 1;
        }
        Ok(())
    }

    fn check_row_dim(&self, row: u64, d: i32) -> Result<(), String> {
        if i64::from(d) != i64::from(self.dim) {
            return Err(format!(
                "{}: row {row} has dimension {d} but row 0 has {}: every row of an .fvecs file \
                 must have the same dimension",
                self.name, self.dim
            ));
        }
        Ok(())
    }

    /// Reads the row at the current position (row number `row`, for messages) into `out`.
    fn read_here(&mut self, row: u64, out: &mut Vec<f32>) -> Result<(), String> {
        let name = &self.name;
        let d = read_dim(&mut self.inner).map_err(|e| format!("{name}: row {row}: {e}"))?;
        self.check_row_dim(row, d)?;
        let mut bytes = vec![0u8; 4 * self.dim as usize];
        self.inner.read_exact(&mut bytes).map_err(|e| format!("{}: row {row}: {e}", self.name))?;
        out.clear();
        out.extend(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
        check_finite(out).map_err(|(i, v)| {
            format!("{}: row {row}, component {i} is {v}: vexfs refuses NaN and infinite components", self.name)
        })
    }

    /// Row `row` (checked: its dimension, and finite components).
    pub fn row(&mut self, row: u64) -> Result<Vec<f32>, String> {
        if row >= self.rows {
            return Err(format!(
                "{} has {} rows (0 to {}): there is no row {row}",
                self.name,
                self.rows,
                self.rows.saturating_sub(1)
            ));
        }
        self.inner.seek(SeekFrom::Start(row * row_bytes(self.dim))).map_err(|e| format!("{}: {e}", self.name))?;
        let mut v = Vec::new();
        self.read_here(row, &mut v)?;
        Ok(v)
    }

    /// Rows `first .. first + n`, concatenated.
    pub fn rows_range(&mut self, first: u64, n: u64) -> Result<Vec<f32>, String> {
        let end = first.checked_add(n).filter(|&e| e <= self.rows).ok_or_else(|| {
            format!("{} has {} rows: rows {first}..{} are past its end", self.name, self.rows, first.saturating_add(n))
        })?;
        let mut all = Vec::new();
        let mut v = Vec::new();
        self.inner.seek(SeekFrom::Start(first * row_bytes(self.dim))).map_err(|e| format!("{}: {e}", self.name))?;
        for row in first..end {
            self.read_here(row, &mut v)?;
            all.extend_from_slice(&v);
        }
        Ok(all)
    }

    /// Calls `f(row, vector)` for every row in order; stops at the first error (of the file or
    /// of `f`).
    pub fn for_each(&mut self, mut f: impl FnMut(u64, &[f32]) -> Result<(), String>) -> Result<(), String> {
        self.inner.seek(SeekFrom::Start(0)).map_err(|e| format!("{}: {e}", self.name))?;
        let mut v = Vec::new();
        for row in 0..self.rows {
            self.read_here(row, &mut v)?;
            f(row, &v)?;
        }
        Ok(())
    }
}

/// `Err((index, value))` of the first NaN or infinite component.
pub fn check_finite(v: &[f32]) -> Result<(), (usize, f32)> {
    match v.iter().position(|x| !x.is_finite()) {
        Some(i) => Err((i, v[i])),
        None => Ok(()),
    }
}

/// The passages of a `.jsonl` file, read line by line.
pub struct Texts<R> {
    lines: io::Lines<R>,
    name: String,
    line: u64,
}

impl Texts<BufReader<File>> {
    /// Opens a `.jsonl` file.
    pub fn open(path: &Path) -> Result<Self, String> {
        let f = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Ok(Self::new(BufReader::new(f), &path.display().to_string()))
    }
}

impl<R: BufRead> Texts<R> {
    /// Reads passages from `inner`, named `name` in messages.
    pub fn new(inner: R, name: &str) -> Self {
        Texts { lines: inner.lines(), name: name.to_string(), line: 0 }
    }

    /// The `"text"` of the next line (line numbers count from 0, as rows do); `None` at the end.
    pub fn next_text(&mut self) -> Result<Option<String>, String> {
        let line = self.line;
        let Some(l) = self.lines.next() else {
            return Ok(None);
        };
        self.line += 1;
        let l = l.map_err(|e| format!("{}: line {line}: {e}", self.name))?;
        let bad = |what: String| {
            format!("{}: line {line}: {what} (each line must be a JSON object with a \"text\" string)", self.name)
        };
        let v: serde_json::Value = serde_json::from_str(&l).map_err(|e| bad(e.to_string()))?;
        match v.get("text") {
            Some(serde_json::Value::String(t)) => Ok(Some(t.clone())),
            Some(other) => Err(bad(format!("\"text\" is not a string but {other}"))),
            None if v.is_object() => Err(bad("no \"text\" field".into())),
            None => Err(bad("not a JSON object".into())),
        }
    }

    /// Reads to the end, checking every line; returns the number of lines.
    pub fn check_all(&mut self) -> Result<u64, String> {
        while self.next_text()?.is_some() {}
        Ok(self.line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn fvecs_bytes(rows: &[&[f32]]) -> Vec<u8> {
        let mut b = Vec::new();
        for r in rows {
            b.extend_from_slice(&(r.len() as i32).to_le_bytes());
            for x in *r {
                b.extend_from_slice(&x.to_le_bytes());
            }
        }
        b
    }

    fn open(b: Vec<u8>) -> Result<Fvecs<Cursor<Vec<u8>>>, String> {
        Fvecs::new(Cursor::new(b), "v.fvecs")
    }

    #[test]
    fn reads_rows() {
        let b = fvecs_bytes(&[&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0], &[-1.5, 0.0, 1e-3]]);
        let mut f = open(b).unwrap();
        assert_eq!((f.dim(), f.rows()), (3, 3));
        assert_eq!(f.row(1).unwrap(), vec![4.0, 5.0, 6.0]);
        assert_eq!(f.row(0).unwrap(), vec![1.0, 2.0, 3.0]);
        assert_eq!(f.rows_range(1, 2).unwrap(), vec![4.0, 5.0, 6.0, -1.5, 0.0, 1e-3]);
        let mut seen = Vec::new();
        f.for_each(|r, v| {
            seen.push((r, v[0]));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![(0, 1.0), (1, 4.0), (2, -1.5)]);
        let e = f.row(3).unwrap_err();
        assert_eq!(e, "v.fvecs has 3 rows (0 to 2): there is no row 3");
        let e = f.rows_range(2, 2).unwrap_err();
        assert!(e.contains("rows 2..4 are past its end"), "{e}");
    }

    #[test]
    fn the_repository_sample() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/pydocs-minilm/small");
        let mut q = Fvecs::open(&dir.join("query.fvecs")).unwrap();
        assert_eq!((q.dim(), q.rows()), (384, 100));
        let v = q.row(99).unwrap();
        let norm: f32 = v.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-3, "L2-normalised: {norm}");
        let mut t = Texts::open(&dir.join("passages.jsonl")).unwrap();
        assert!(t.next_text().unwrap().unwrap().starts_with("Instances of set are compared"));
        assert_eq!(t.check_all().unwrap(), 2000);
    }

    #[test]
    fn truncated_files() {
        assert_eq!(open(vec![]).unwrap_err(), "v.fvecs is empty: no vectors");
        let e = open(vec![3, 0]).unwrap_err();
        assert!(e.contains("truncated: 2 bytes, shorter than the 4-byte dimension"), "{e}");
        let mut b = fvecs_bytes(&[&[1.0, 2.0], &[3.0, 4.0]]);
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
        let b = fvecs_bytes(&[&[1.0, 2.0], &[3.0, 4.0], &[5.0]]);
        assert_eq!(
            open(b).unwrap_err(),
            "v.fvecs: row 2 has dimension 1 but row 0 has 2: every row of an .fvecs file must \
             have the same dimension"
        );
        // Lengths that add up by chance (3 rows of 2 = 2 + 1 + 3 components): found when the
        // row is read.
        let b = fvecs_bytes(&[&[1.0, 2.0], &[3.0], &[4.0, 5.0, 6.0]]);
        let mut f = open(b).unwrap();
        assert_eq!(f.rows(), 3);
        let e = f.row(1).unwrap_err();
        assert!(e.contains("row 1 has dimension 1 but row 0 has 2"), "{e}");
        let e = f.for_each(|_, _| Ok(())).unwrap_err();
        assert!(e.contains("row 1 has dimension 1"), "{e}");
    }

    #[test]
    fn nan_and_infinity_refused() {
        let b = fvecs_bytes(&[&[1.0, 2.0], &[3.0, f32::NAN], &[f32::NEG_INFINITY, 0.0]]);
        let mut f = open(b).unwrap();
        f.row(0).unwrap();
        assert_eq!(
            f.row(1).unwrap_err(),
            "v.fvecs: row 1, component 1 is NaN: vexfs refuses NaN and infinite components"
        );
        assert_eq!(
            f.row(2).unwrap_err(),
            "v.fvecs: row 2, component 0 is -inf: vexfs refuses NaN and infinite components"
        );
        assert!(f.rows_range(0, 3).unwrap_err().contains("row 1, component 1 is NaN"));
        assert_eq!(check_finite(&[0.0, f32::INFINITY]), Err((1, f32::INFINITY)));
        assert_eq!(check_finite(&[0.0, f32::MAX, -f32::MIN_POSITIVE]), Ok(()));
    }

    fn texts(s: &str) -> Texts<Cursor<Vec<u8>>> {
        Texts::new(Cursor::new(s.as_bytes().to_vec()), "p.jsonl")
    }

    #[test]
    fn jsonl_texts() {
        let mut t =
            texts("{\"id\": 0, \"text\": \"first\\nsecond line\"}\n{\"text\": \"\", \"other\": [1]}\n{\"text\":\"é\"}");
        assert_eq!(t.next_text().unwrap().unwrap(), "first\nsecond line");
        assert_eq!(t.next_text().unwrap().unwrap(), "");
        assert_eq!(t.next_text().unwrap().unwrap(), "é");
        assert_eq!(t.next_text().unwrap(), None);
        assert_eq!(texts("{\"text\":\"a\"}\n{\"text\":\"b\"}\n").check_all().unwrap(), 2);
    }

    #[test]
    fn jsonl_errors_name_the_line() {
        for (input, want) in [
            ("{\"text\":\"a\"}\n{\"id\": 1}\n", "p.jsonl: line 1: no \"text\" field"),
            ("{\"text\":\"a\"}\n\n", "p.jsonl: line 1: EOF while parsing"),
            ("{\"text\": 5}\n", "p.jsonl: line 0: \"text\" is not a string but 5"),
            ("{\"text\":\"a\"\n", "p.jsonl: line 0: EOF while parsing an object"),
            ("[\"a\"]\n", "p.jsonl: line 0: not a JSON object"),
            ("\"text\"\n", "p.jsonl: line 0: not a JSON object"),
        ] {
            let e = texts(input).check_all().unwrap_err();
            assert!(e.starts_with(want), "{input:?}: {e}");
            assert!(e.ends_with("(each line must be a JSON object with a \"text\" string)"), "{e}");
        }
        let mut bad_utf8 = Texts::new(Cursor::new(b"{\"text\":\"\xff\"}\n".to_vec()), "p.jsonl");
        assert!(bad_utf8.next_text().unwrap_err().starts_with("p.jsonl: line 0: "));
    }
}
