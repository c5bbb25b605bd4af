//! The passages that `vexctl import --texts` and `mkfs.vexfs --import --texts` write into the
//! files: a `.jsonl` file, one JSON object per line, line `i` belonging to row `i` of the
//! vectors; its `"text"` string is the passage (other fields are ignored). The vectors
//! themselves are read by [`crate::vecfile`].

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

use crate::{Error, Result};

/// The passages of a `.jsonl` file, read line by line (or, with [`Texts::line_starts`], at
/// any line).
pub struct Texts<R> {
    inner: R,
    name: String,
    line: u64,
    buf: String,
}

impl Texts<BufReader<File>> {
    /// Opens a `.jsonl` file. Errors: `Io` (`cannot open PATH: ...`).
    pub fn open(path: &Path) -> Result<Self> {
        let f = File::open(path).map_err(Error::io(format!("cannot open {}", path.display())))?;
        Ok(Self::new(BufReader::new(f), &path.display().to_string()))
    }
}

impl<R: BufRead> Texts<R> {
    /// Reads passages from `inner`, named `name` in messages.
    pub fn new(inner: R, name: &str) -> Self {
        Texts { inner, name: name.to_string(), line: 0, buf: String::new() }
    }

    /// The `"text"` of the next line (line numbers count from 0, as rows do); `None` at the end.
    /// Errors: `Invalid` (`NAME: line N: ...`) for a line that is not a JSON object with a
    /// `"text"` string, or not UTF-8.
    pub fn next_text(&mut self) -> Result<Option<String>> {
        let line = self.line;
        if !self.read_line(line)? {
            return Ok(None);
        }
        self.line += 1;
        self.parse(line).map(Some)
    }

    /// Reads the next line into `buf` without its `\n` or `\r\n`; false at the end.
    fn read_line(&mut self, line: u64) -> Result<bool> {
        self.buf.clear();
        let n = self
            .inner
            .read_line(&mut self.buf)
            .map_err(|e| Error::Invalid(format!("{}: line {line}: {e}", self.name)))?;
        if self.buf.ends_with('\n') {
            self.buf.pop();
            if self.buf.ends_with('\r') {
                self.buf.pop();
            }
        }
        Ok(n > 0)
    }

    /// The `"text"` of the line in `buf`, line `line` of the file.
    fn parse(&self, line: u64) -> Result<String> {
        let bad = |what: String| {
            Error::Invalid(format!(
                "{}: line {line}: {what} (each line must be a JSON object with a \"text\" string)",
                self.name
            ))
        };
        let v: serde_json::Value = serde_json::from_str(&self.buf).map_err(|e| bad(e.to_string()))?;
        match v.get("text") {
            Some(serde_json::Value::String(t)) => Ok(t.clone()),
            Some(other) => Err(bad(format!("\"text\" is not a string but {other}"))),
            None if v.is_object() => Err(bad("no \"text\" field".into())),
            None => Err(bad("not a JSON object".into())),
        }
    }

    /// Reads to the end, checking every line; returns the number of lines. Errors: as
    /// [`Self::next_text`].
    pub fn check_all(&mut self) -> Result<u64> {
        while self.next_text()?.is_some() {}
        Ok(self.line)
    }
}

impl<R: BufRead + Seek> Texts<R> {
    /// The byte offset of each of the first `max` lines from the start of the file (8 bytes a
    /// line; fewer when the file has fewer), for [`Self::text_at`]; reads those lines without
    /// parsing them. After it, [`Self::next_text`] reads from the start again. Errors: `Io`.
    pub fn line_starts(&mut self, max: u64) -> Result<Vec<u64>> {
        let what = format!("cannot read {}", self.name);
        let io = |e| Error::io(what.clone())(e);
        self.inner.seek(SeekFrom::Start(0)).map_err(io)?;
        let (mut starts, mut at, mut line) = (Vec::new(), 0u64, Vec::new());
        while (starts.len() as u64) < max {
            line.clear();
            let n = self.inner.read_until(b'\n', &mut line).map_err(io)?;
            if n == 0 {
                break;
            }
            starts.push(at);
            at += n as u64;
        }
        self.inner.seek(SeekFrom::Start(0)).map_err(io)?;
        self.line = 0;
        Ok(starts)
    }

    /// The `"text"` of line `line`, which begins at byte `start` (from [`Self::line_starts`]).
    /// Errors: those of [`Self::next_text`]; `Invalid` for no line at `start`; `Io`.
    pub fn text_at(&mut self, line: u64, start: u64) -> Result<String> {
        // Messages made only on error: this runs once a row.
        if let Err(e) = self.inner.seek(SeekFrom::Start(start)) {
            return Err(Error::io(format!("cannot read {}", self.name))(e));
        }
        if !self.read_line(line)? {
            return Err(Error::Invalid(format!("{}: no line {line} at byte {start}", self.name)));
        }
        self.line = line + 1;
        self.parse(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn the_repository_sample() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/pydocs-minilm/small");
        let mut t = Texts::open(&dir.join("passages.jsonl")).unwrap();
        assert!(t.next_text().unwrap().unwrap().starts_with("Instances of set are compared"));
        assert_eq!(t.check_all().unwrap(), 2000);
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

    /// `line_starts` and `text_at` read any line, as `next_text` reads them in order (a `\r\n`
    /// ending, an empty last line without `\n`); `next_text` starts again after them.
    #[test]
    fn lines_at_random() {
        let mut t = texts("{\"text\": \"a\"}\r\n{\"text\": \"bb\"}\n\n{\"text\": \"c\"}");
        assert_eq!(t.line_starts(2).unwrap(), vec![0, 15]);
        let starts = t.line_starts(u64::MAX).unwrap();
        assert_eq!(starts, vec![0, 15, 30, 31]);
        assert_eq!(t.text_at(3, starts[3]).unwrap(), "c");
        assert_eq!(t.text_at(0, starts[0]).unwrap(), "a");
        assert_eq!(t.text_at(1, starts[1]).unwrap(), "bb");
        let e = t.text_at(2, starts[2]).unwrap_err().to_string();
        assert!(e.starts_with("p.jsonl: line 2: EOF while parsing"), "{e}");
        assert!(t.text_at(4, 45).unwrap_err().to_string().contains("no line 4 at byte 45"));
        t.line_starts(1).unwrap();
        assert_eq!(t.next_text().unwrap().unwrap(), "a");
        let mut bad = Texts::new(Cursor::new(b"{\"text\":\"a\"}\n{\"text\":\"\xff\"}\n".to_vec()), "p.jsonl");
        let starts = bad.line_starts(5).unwrap();
        assert!(bad.text_at(1, starts[1]).unwrap_err().to_string().starts_with("p.jsonl: line 1: "));
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
            let e = texts(input).check_all().unwrap_err().to_string();
            assert!(e.starts_with(want), "{input:?}: {e}");
            assert!(e.ends_with("(each line must be a JSON object with a \"text\" string)"), "{e}");
        }
        let mut bad_utf8 = Texts::new(Cursor::new(b"{\"text\":\"\xff\"}\n".to_vec()), "p.jsonl");
        assert!(bad_utf8.next_text().unwrap_err().to_string().starts_with("p.jsonl: line 0: "));
    }
}
