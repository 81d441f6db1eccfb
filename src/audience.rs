//! The audience: subscriber lists (`subscribers/<list>.csv`), read as a stream.
//!
//! A list has a header row with an `email` column (required), an optional `name`
//! column, and any other columns, which templates see as `subscriber.<column>`. Each
//! row is validated on its own: the address is parsed the way lettre parses it (with an
//! internationalized domain converted to its ASCII A-labels, which is what goes on the
//! wire), and a name with control characters is refused (it would break the `To`
//! header). A bad row is reported as `file:line` and skipped; the rest of the list goes
//! out. Deduplication across lists happens where the audience is frozen (the journal's
//! unique key), so reading never needs the whole list in memory.

use crate::diag::Diagnostic;
use anyhow::{Context, Result};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Where a list's subscribers come from: `subscribers/<name>.csv`, or the state store
/// for a list `[lists.<name>]` declares. Both are read the same way (a managed list is
/// streamed as CSV: `email`, `name`, then its members' extra fields), so dedupe, row
/// checks, suppressions and template fields do not care which it is.
#[derive(Debug, Clone)]
pub enum ListSource {
    File(PathBuf),
    Managed {
        name: String,
        store: crate::store::Location,
    },
}

impl ListSource {
    /// The source of list `list`: managed when `[lists.<list>]` declares it. A list
    /// declared managed that also has a CSV file is an error (which one is meant?).
    pub fn for_list(config: &crate::config::Config, list: &str) -> Result<ListSource> {
        let path = config.list_path(list);
        if config.managed_list(list).is_none() {
            return Ok(ListSource::File(path));
        }
        if path.exists() {
            anyhow::bail!(
                "list `{list}` is declared managed ([lists.{list}] in brief.toml) and also has {}: a list is one or the other (import the file with `brief subscribers import {} --list {list}`, then remove it)",
                path.display(),
                path.display()
            );
        }
        Ok(ListSource::Managed {
            name: list.to_string(),
            store: config.state_location()?,
        })
    }

    /// Opens the list for streaming.
    pub fn open(&self) -> Result<ListReader> {
        match self {
            ListSource::File(path) => ListReader::open(path),
            ListSource::Managed { name, store } => {
                let stream = MemberStream::open(name, store)?;
                ListReader::from_reader(&self.label(), Box::new(stream))
            }
        }
    }

    /// How messages name the list (`[lists.local]` rows are numbered like CSV lines).
    pub fn label(&self) -> PathBuf {
        match self {
            ListSource::File(path) => path.clone(),
            ListSource::Managed { name, .. } => PathBuf::from(format!("[lists.{name}]")),
        }
    }
}

/// A managed list as CSV text, read from the store a page at a time (memory stays
/// flat whatever the list's size). A store that does not exist yet holds no one.
struct MemberStream {
    store: Option<crate::store::Store>,
    list: String,
    columns: Vec<String>,
    after: String,
    buf: Vec<u8>,
    pos: usize,
}

const MEMBER_PAGE: usize = 2000;

impl MemberStream {
    fn open(list: &str, location: &crate::store::Location) -> Result<MemberStream> {
        let store = crate::store::Store::existing(location)?.filter(|s| s.manages_lists());
        let columns = match &store {
            Some(s) => s.member_columns(list)?,
            None => Vec::new(),
        };
        let mut header = csv::Writer::from_writer(Vec::new());
        header.write_record(
            ["email", "name"]
                .into_iter()
                .chain(columns.iter().map(String::as_str)),
        )?;
        Ok(MemberStream {
            store,
            list: list.to_string(),
            columns,
            after: String::new(),
            buf: header.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?,
            pos: 0,
        })
    }

    fn refill(&mut self) -> std::io::Result<()> {
        self.buf.clear();
        self.pos = 0;
        let Some(store) = &self.store else {
            return Ok(());
        };
        let page = store
            .members_after(&self.list, &self.after, MEMBER_PAGE)
            .map_err(std::io::Error::other)?;
        let mut out = csv::Writer::from_writer(std::mem::take(&mut self.buf));
        for (address, name, fields, key) in &page {
            let map: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(fields).unwrap_or_default();
            let values = self.columns.iter().map(|c| match map.get(c) {
                Some(serde_json::Value::String(v)) => v.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            });
            let row: Vec<String> = [address.clone(), name.clone()]
                .into_iter()
                .chain(values)
                .collect();
            out.write_record(&row)?;
            self.after.clone_from(key);
        }
        self.buf = out
            .into_inner()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        if page.len() < MEMBER_PAGE {
            self.store = None;
        }
        Ok(())
    }
}

impl Read for MemberStream {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.store.is_none() {
                return Ok(0);
            }
            self.refill()?;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// One valid subscriber row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    /// The address as it will be sent: the local part as written, the domain in A-labels.
    pub email: String,
    /// The display name (empty when the list has none).
    pub name: String,
    /// The other columns, in the order of [`ListReader::columns`].
    pub fields: Vec<String>,
    /// 1-based line of the row in its file (for messages).
    pub line: u64,
}

/// A subscriber list opened for streaming.
pub struct ListReader {
    path: PathBuf,
    reader: csv::Reader<Box<dyn Read + Send>>,
    email_col: usize,
    name_col: Option<usize>,
    extra_cols: Vec<(usize, String)>,
}

impl ListReader {
    /// Opens `path` and reads its header row.
    pub fn open(path: &Path) -> Result<ListReader> {
        let file = File::open(path)
            .with_context(|| format!("cannot read subscriber list {}", path.display()))?;
        Self::from_reader(path, Box::new(BufReader::with_capacity(1 << 16, file)))
    }

    /// Reads a list from any reader; `path` names it in messages.
    pub fn from_reader(path: &Path, input: Box<dyn Read + Send>) -> Result<ListReader> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .has_headers(true)
            .from_reader(skip_bom(input));
        let headers = reader
            .headers()
            .map_err(|e| csv_diag(path, &e, "cannot read the header row"))?
            .clone();
        let mut email_col = None;
        let mut name_col = None;
        let mut extra_cols = Vec::new();
        for (i, h) in headers.iter().enumerate() {
            let h = h.trim();
            match h.to_ascii_lowercase().as_str() {
                "email" => email_col = Some(i),
                "name" => name_col = Some(i),
                "" => {}
                _ => extra_cols.push((i, h.to_string())),
            }
        }
        let Some(email_col) = email_col else {
            return Err(Diagnostic::error(
                path,
                1,
                1,
                "the header row has no `email` column (the first row names the columns, e.g. `email,name`)",
            )
            .into());
        };
        Ok(ListReader {
            path: path.to_path_buf(),
            reader,
            email_col,
            name_col,
            extra_cols,
        })
    }

    /// The extra column names (everything but `email` and `name`).
    pub fn columns(&self) -> Vec<String> {
        self.extra_cols.iter().map(|(_, n)| n.clone()).collect()
    }

    /// Reads the next row: `Some(Ok)` for a valid subscriber, `Some(Err)` for a bad row
    /// (already located at file:line), `None` at the end. An unreadable file (an I/O
    /// error) ends the stream with an error diagnostic.
    pub fn next_row(&mut self) -> Option<std::result::Result<Subscriber, Diagnostic>> {
        let mut record = csv::ByteRecord::new();
        loop {
            match self.reader.read_byte_record(&mut record) {
                Ok(false) => return None,
                Ok(true) => {}
                Err(e) => {
                    let fatal = matches!(e.kind(), csv::ErrorKind::Io(_));
                    let d = csv_diag(&self.path, &e, "unreadable row");
                    if fatal {
                        // Nothing more can be read.
                        self.reader = csv::Reader::from_reader(Box::new(std::io::empty()));
                    }
                    return Some(Err(d));
                }
            }
            // The record's position is where scanning started, before any blank lines
            // csv skipped; count back from the end of the record instead.
            let start = record.position().map_or(0, |p| p.line());
            let newlines = record.iter().flatten().filter(|&&b| b == b'\n').count() as u64;
            let end = self.reader.position().line();
            let line = start.max(end.saturating_sub(1 + newlines));
            if record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
                continue; // blank line
            }
            return Some(self.validate(&record, line));
        }
    }

    fn validate(
        &self,
        record: &csv::ByteRecord,
        line: u64,
    ) -> std::result::Result<Subscriber, Diagnostic> {
        let err = |msg: String| Diagnostic::error(&self.path, line as usize, 1, msg);
        let field = |i: usize| -> std::result::Result<String, Diagnostic> {
            let raw = record.get(i).unwrap_or(b"");
            std::str::from_utf8(raw)
                .map(|s| s.trim().to_string())
                .map_err(|_| err("the row is not valid UTF-8".into()))
        };
        let email = normalize_address(&field(self.email_col)?).map_err(err)?;
        let name = match self.name_col {
            Some(i) => field(i)?,
            None => String::new(),
        };
        if let Some(c) = name.chars().find(|c| c.is_control()) {
            return Err(err(format!(
                "the name of {email} contains a control character ({:?})",
                c
            )));
        }
        let mut fields = Vec::with_capacity(self.extra_cols.len());
        for (i, _) in &self.extra_cols {
            fields.push(field(*i)?);
        }
        Ok(Subscriber {
            email,
            name,
            fields,
            line,
        })
    }
}

/// Validates an address the way it will be sent: trimmed, the domain converted to
/// A-labels, then parsed by lettre. Returns the address to send to.
pub fn normalize_address(raw: &str) -> std::result::Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("the email column is empty".into());
    }
    let Some((local, domain)) = raw.rsplit_once('@') else {
        return Err(format!(
            "`{}` is not an email address (no @)",
            printable(raw)
        ));
    };
    if !local.is_ascii() {
        return Err(format!(
            "`{}`: a non-ASCII local part needs SMTPUTF8, which brief does not send",
            printable(raw)
        ));
    }
    let ascii_domain = if domain.is_ascii() {
        domain.to_string()
    } else {
        idna::domain_to_ascii(domain).map_err(|_| {
            format!(
                "`{}`: the domain is not a valid internationalized name",
                printable(raw)
            )
        })?
    };
    let address = format!("{local}@{ascii_domain}");
    address
        .parse::<lettre::Address>()
        .map(|_| address.clone())
        .map_err(|e| format!("`{}` is not a valid address: {e}", printable(raw)))
}

/// A value safe to echo in a one-line message.
fn printable(s: &str) -> String {
    s.chars().flat_map(char::escape_debug).take(200).collect()
}

fn csv_diag(path: &Path, e: &csv::Error, what: &str) -> Diagnostic {
    let line = e.position().map_or(1, |p| p.line().max(1)) as usize;
    Diagnostic::error(path, line, 1, format!("{what}: {e}"))
}

/// Strips a UTF-8 byte order mark, if the input starts with one.
fn skip_bom(mut input: Box<dyn Read + Send>) -> Box<dyn Read + Send> {
    let mut head = [0u8; 3];
    let mut n = 0;
    while n < 3 {
        match input.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if n == 3 && head == [0xEF, 0xBB, 0xBF] {
        input
    } else {
        Box::new(std::io::Cursor::new(head[..n].to_vec()).chain(input))
    }
}

/// The extra column names used by `lists` (the union, in first-seen order), for the
/// compile stage's personalization markers.
pub fn columns(lists: &[ListSource]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for list in lists {
        for c in list.open()?.columns() {
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    Ok(out)
}

/// Checks a list for `brief check`: a list that cannot be read is an error; every bad
/// row and every duplicate address is a warning, since sending skips them and the rest
/// of the list still goes out.
pub fn check_list(path: &Path) -> Vec<Diagnostic> {
    let mut reader = match ListReader::open(path) {
        Ok(r) => r,
        Err(e) => {
            return vec![match e.downcast::<Diagnostic>() {
                Ok(d) => d,
                Err(e) => Diagnostic::error(path, 1, 1, format!("{e:#}")),
            }]
        }
    };
    let mut out = Vec::new();
    let mut seen = std::collections::HashMap::new();
    while let Some(row) = reader.next_row() {
        match row {
            Ok(s) => {
                let key = crate::store::address_key(&s.email);
                if let Some(first) = seen.get(&key) {
                    out.push(Diagnostic::warning(
                        path,
                        s.line as usize,
                        1,
                        format!("{} is already on line {first}; it is sent once", s.email),
                    ));
                } else {
                    seen.insert(key, s.line);
                }
            }
            Err(d) => out.push(Diagnostic {
                severity: crate::diag::Severity::Warning,
                message: format!("{} (skipped when sending)", d.message),
                ..d
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &[u8]) -> (Vec<Subscriber>, Vec<Diagnostic>, Vec<String>) {
        let mut r = ListReader::from_reader(
            Path::new("l.csv"),
            Box::new(std::io::Cursor::new(text.to_vec())),
        )
        .unwrap();
        let cols = r.columns();
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        while let Some(row) = r.next_row() {
            match row {
                Ok(s) => ok.push(s),
                Err(d) => bad.push(d),
            }
        }
        (ok, bad, cols)
    }

    #[test]
    fn reads_rows_columns_and_bom() {
        let (ok, bad, cols) =
            read("\u{feff}Email,name,city\nann@example.org,Ann,Ghent\n\nbob@bücher.example,\"Bob, Jr\",\n".as_bytes());
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(cols, vec!["city"]);
        assert_eq!(ok[0].email, "ann@example.org");
        assert_eq!(ok[0].fields, vec!["Ghent"]);
        assert_eq!(ok[1].email, "bob@xn--bcher-kva.example");
        assert_eq!(ok[1].name, "Bob, Jr");
        assert_eq!(ok[1].line, 4);
    }

    #[test]
    fn bad_rows_are_located_and_skipped() {
        let (ok, bad, _) = read(
            b"email,name\nnot-an-address,X\nann@example.org,\"A\rB\"\nok@example.org,Ok\n\xff@x.org,Y\n",
        );
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].email, "ok@example.org");
        let where_: Vec<String> = bad
            .iter()
            .map(|d| format!("{}:{}", d.file.display(), d.line))
            .collect();
        assert_eq!(where_, vec!["l.csv:2", "l.csv:3", "l.csv:5"]);
    }

    #[test]
    fn missing_email_column_is_an_error() {
        let e = ListReader::from_reader(
            Path::new("l.csv"),
            Box::new(std::io::Cursor::new(b"name\nx\n".to_vec())),
        )
        .err()
        .unwrap();
        assert!(e
            .to_string()
            .starts_with("l.csv:1:1: error: the header row has no `email`"));
    }

    #[test]
    fn addresses() {
        assert_eq!(
            normalize_address(" A@Example.ORG ").unwrap(),
            "A@Example.ORG"
        );
        assert!(normalize_address("a@@b").is_err());
        assert!(normalize_address("a b@c.org").is_err());
        assert!(normalize_address("é@c.org").is_err());
        assert!(normalize_address("a@").is_err());
    }
}
