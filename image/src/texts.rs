//! The passages that `vexctl import --texts` and `mkfs.vexfs --import --texts` write into the
//! files: a `.jsonl` file, one JSON object per line, line `i` belonging to row `i` of the
//! vectors; its `"text"` string is the passage (other fields are ignored). The vectors
//! themselves are read by [`crate::vecfile`].

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use crate::{Error, Result};

/// The passages of a `.jsonl` file, read line by line.
pub struct Texts<R> {
    lines: io::Lines<R>,
    name: String,
    line: u64,
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
        Texts { lines: inner.lines(), name: name.to_string(), line: 0 }
    }

    /// The `"text"` of the next line (line numbers count from 0, as rows do); `None` at the end.
    /// Errors: `Invalid` (`NAME: line N: ...`) for a line that is not a JSON object with a
    /// `"text"` string, or not UTF-8.
    pub fn next_text(&mut self) -> Result<Option<String>> {
        let line = self.line;
        let Some(l) = self.lines.next() else {
            return Ok(None);
        };
        self.line += 1;
        let l = l.map_err(|e| Error::Invalid(format!("{}: line {line}: {e}", self.name)))?;
        let bad = |what: String| {
            Error::Invalid(format!(
                "{}: line {line}: {what} (each line must be a JSON object with a \"text\" string)",
                self.name
            ))
        };
        let v: serde_json::Value = serde_json::from_str(&l).map_err(|e| bad(e.to_string()))?;
        match v.get("text") {
            Some(serde_json::Value::String(t)) => Ok(Some(t.clone())),
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
