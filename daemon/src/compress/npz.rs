//! The .npz container and its .npy headers, read as hostile input: each
//! entry's header is parsed here with checked arithmetic, and the bytes it
//! declares must equal the bytes the zip entry holds, lie inside the file,
//! and stay under [`MAX_DATA_BYTES`], before anything of that size is
//! allocated. It knows nothing of models or samples (`data.rs` does).

use std::io::{Read, Seek, SeekFrom};

use ndarray::ArrayD;
use ndarray_npy::{ReadNpyExt, ReadableElement};
use zip::{CompressionMethod, ZipArchive};

/// The most array data (bytes, all arrays together) one file may make the
/// daemon hold. Calibration needs hundreds of samples, not millions: 4 GiB
/// is far above any real calibration set and still refuses a file that
/// would exhaust an edge device's memory.
pub const MAX_DATA_BYTES: u64 = 4 << 30;

/// numpy writes headers of a few hundred bytes (and by default refuses to
/// read one above 10,000); 64 KiB, the most a version 1 header can hold, is
/// plenty and keeps a version 2 header from claiming gigabytes.
pub(super) const MAX_HEADER_BYTES: u64 = 1 << 16;

pub(super) const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// An open .npz, and how much more array data it may still make us hold.
pub(super) struct Npz<R> {
    zip: ZipArchive<R>,
    file_len: u64,
    pub(super) budget: u64,
}

impl<R: Read + Seek> Npz<R> {
    pub(super) fn open(mut reader: R) -> Result<Npz<R>, String> {
        let file_len = reader.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
        reader.rewind().map_err(|e| e.to_string())?;
        let zip = ZipArchive::new(reader).map_err(|e| e.to_string())?;
        Ok(Npz {
            zip,
            file_len,
            budget: MAX_DATA_BYTES,
        })
    }

    /// The arrays' names, without numpy's `.npy` suffix.
    pub(super) fn names(&self) -> Vec<String> {
        self.zip
            .file_names()
            .map(|n| n.strip_suffix(".npy").unwrap_or(n).to_owned())
            .collect()
    }

    /// Reads array `name` (numpy's lookup: the name, then `name.npy`),
    /// whose descr must be one of `descrs`; `expected` words the dtype for
    /// the error. Nothing the header declares is allocated before it has
    /// been checked against the entry and the budget.
    pub(super) fn array<A: ReadableElement>(
        &mut self,
        name: &str,
        descrs: &[&str],
        expected: &str,
    ) -> Result<ArrayD<A>, String> {
        let fail = |detail: String| format!("array {name:?}: {detail}");
        let index = self
            .zip
            .index_for_name(name)
            .or_else(|| self.zip.index_for_name(&format!("{name}.npy")))
            .ok_or_else(|| fail("not in the archive".into()))?;
        let header = {
            let mut entry = self.zip.by_index(index).map_err(|e| fail(e.to_string()))?;
            if entry.compression() != CompressionMethod::Stored {
                return Err(fail(format!(
                    "stored with {} compression; only uncompressed .npz (numpy.savez) is read",
                    entry.compression()
                )));
            }
            let size = entry.size();
            if entry.compressed_size() != size {
                return Err(fail(format!(
                    "the zip entry is uncompressed yet declares {} bytes stored for {size} bytes of content",
                    entry.compressed_size()
                )));
            }
            let end = entry.data_start().checked_add(size);
            if end.is_none_or(|end| end > self.file_len) {
                return Err(fail(format!(
                    "the zip entry declares {size} bytes from offset {} but the file is {} bytes long",
                    entry.data_start(),
                    self.file_len
                )));
            }
            let header = NpyHeader::read(&mut entry, size).map_err(&fail)?;
            if !descrs.contains(&header.descr.as_str()) {
                return Err(fail(format!(
                    "its dtype is {} (expected {expected})",
                    excerpt(&header.descr)
                )));
            }
            let data_bytes = header
                .data_bytes(std::mem::size_of::<A>() as u64)
                .ok_or_else(|| fail(format!("shape {:?} overflows its byte count", header.shape)))?;
            let available = size - header.len;
            if data_bytes != available {
                return Err(fail(format!(
                    "the header declares shape {:?} of {} ({data_bytes} bytes) but the entry holds {available} bytes of data",
                    header.shape, header.descr
                )));
            }
            if data_bytes > self.budget {
                return Err(fail(format!(
                    "{data_bytes} bytes of data, more than the {} bytes left of the {MAX_DATA_BYTES} one file may hold",
                    self.budget
                )));
            }
            self.budget -= data_bytes;
            header
        };
        let entry = self.zip.by_index(index).map_err(|e| fail(e.to_string()))?;
        let array = ArrayD::<A>::read_npy(entry).map_err(|e| fail(format!("{e} (expected {expected})")))?;
        // Two parsers read the same header: if they ever disagree, refuse
        // rather than trust either.
        if array.shape().iter().map(|&d| d as u64).ne(header.shape.iter().copied()) {
            return Err(fail(format!(
                "read as shape {:?}, declared {:?}",
                array.shape(),
                header.shape
            )));
        }
        Ok(array)
    }
}

/// What an .npy header declares.
pub(super) struct NpyHeader {
    descr: String,
    shape: Vec<u64>,
    /// Bytes from the magic string to the first element.
    len: u64,
}

impl NpyHeader {
    /// Parses the header at the start of an entry of `entry_size` bytes;
    /// no length it reads is believed beyond what the entry holds.
    pub(super) fn read(reader: &mut impl Read, entry_size: u64) -> Result<NpyHeader, String> {
        let mut prefix = [0u8; 8];
        reader
            .read_exact(&mut prefix)
            .map_err(|e| format!("no .npy header ({entry_size} bytes): {e}"))?;
        if &prefix[..6] != MAGIC {
            return Err("not an .npy array (no \\x93NUMPY magic)".into());
        }
        let (dict_len, prefix_len) = match (prefix[6], prefix[7]) {
            (1, 0) => {
                let mut b = [0u8; 2];
                reader
                    .read_exact(&mut b)
                    .map_err(|e| format!("truncated .npy header: {e}"))?;
                (u64::from(u16::from_le_bytes(b)), 10u64)
            }
            (2 | 3, 0) => {
                let mut b = [0u8; 4];
                reader
                    .read_exact(&mut b)
                    .map_err(|e| format!("truncated .npy header: {e}"))?;
                (u64::from(u32::from_le_bytes(b)), 12u64)
            }
            (major, minor) => return Err(format!(".npy version {major}.{minor} is not 1.0, 2.0 or 3.0")),
        };
        let len = prefix_len + dict_len;
        if dict_len > MAX_HEADER_BYTES || len > entry_size {
            return Err(format!(
                "the .npy header declares {dict_len} bytes; the entry holds {entry_size} bytes in all (header limit {MAX_HEADER_BYTES})"
            ));
        }
        let mut dict = vec![0u8; dict_len as usize];
        reader
            .read_exact(&mut dict)
            .map_err(|e| format!("truncated .npy header ({dict_len} bytes declared): {e}"))?;
        let text = std::str::from_utf8(&dict).map_err(|_| "the .npy header is not text".to_owned())?;
        let text = text
            .strip_suffix('\n')
            .ok_or_else(|| "the .npy header does not end with a newline".to_owned())?;
        // The order matters only to ndarray-npy's read; it is parsed here so
        // a header missing it is refused before anything is allocated.
        let (descr, _fortran_order, shape) =
            parse_dict(text).map_err(|e| format!("bad .npy header {}: {e}", excerpt(text)))?;
        Ok(NpyHeader { descr, shape, len })
    }

    /// The data's size for elements of `item` bytes, if it fits: ndarray
    /// also needs the product of the non-zero axes to fit an isize.
    pub(super) fn data_bytes(&self, item: u64) -> Option<u64> {
        let nonzero = self.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d.max(1)))?;
        if nonzero.checked_mul(item)? > isize::MAX as u64 {
            return None;
        }
        self.shape.iter().try_fold(item, |n, &d| n.checked_mul(d))
    }
}

/// The header's Python dict literal, in the subset numpy writes:
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 64), }`, keys in
/// any order, each exactly once. Anything else (structured dtypes, nested
/// values) is refused here, so ndarray-npy's parser only ever sees this.
pub(super) fn parse_dict(text: &str) -> Result<(String, bool, Vec<u64>), String> {
    let mut p = Parser { rest: text };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    p.expect('{')?;
    while !p.eat('}') {
        let key = p.string()?;
        p.expect(':')?;
        match key.as_str() {
            "descr" if descr.is_none() => descr = Some(p.string()?),
            "fortran_order" if fortran.is_none() => fortran = Some(p.boolean()?),
            "shape" if shape.is_none() => shape = Some(p.tuple()?),
            "descr" | "fortran_order" | "shape" => return Err(format!("{key:?} given twice")),
            other => return Err(format!("unexpected key {}", excerpt(other))),
        }
        if !p.eat(',') {
            p.expect('}')?;
            break;
        }
    }
    p.skip_space();
    if !p.rest.is_empty() {
        return Err(format!("text after the dict: {}", excerpt(p.rest)));
    }
    Ok((
        descr.ok_or("no 'descr'")?,
        fortran.ok_or("no 'fortran_order'")?,
        shape.ok_or("no 'shape'")?,
    ))
}

/// Header text quoted in an error, cut short: a header may be 64 KiB of
/// anything, and the message goes to logs and over the wire.
pub(super) fn excerpt(text: &str) -> String {
    const MAX_CHARS: usize = 60;
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{:?}...", &text[..cut]),
        None => format!("{text:?}"),
    }
}

pub(super) struct Parser<'a> {
    rest: &'a str,
}

impl Parser<'_> {
    pub(super) fn skip_space(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t']);
    }

    pub(super) fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    pub(super) fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected {c:?} at {}", excerpt(self.rest)))
        }
    }

    /// A quoted string without escapes (numpy's keys and simple descrs have none).
    pub(super) fn string(&mut self) -> Result<String, String> {
        self.skip_space();
        let quote = match self.rest.chars().next() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err(format!("expected a string at {}", excerpt(self.rest))),
        };
        let body = &self.rest[1..];
        let end = body.find(quote).ok_or_else(|| "an unterminated string".to_owned())?;
        let s = &body[..end];
        if s.contains('\\') {
            return Err(format!("escapes in {}", excerpt(s)));
        }
        self.rest = &body[end + 1..];
        Ok(s.to_owned())
    }

    pub(super) fn boolean(&mut self) -> Result<bool, String> {
        self.skip_space();
        for (word, value) in [("True", true), ("False", false)] {
            if let Some(rest) = self.rest.strip_prefix(word) {
                self.rest = rest;
                return Ok(value);
            }
        }
        Err(format!("expected True or False at {}", excerpt(self.rest)))
    }

    /// `()`, `(n,)`, `(n, m)`, `(n, m,)`: `(n)` is a parenthesised number
    /// in Python, not a tuple, and numpy never writes it.
    pub(super) fn tuple(&mut self) -> Result<Vec<u64>, String> {
        self.expect('(')?;
        let mut dims = Vec::new();
        if self.eat(')') {
            return Ok(dims);
        }
        loop {
            dims.push(self.dimension()?);
            if self.eat(')') {
                if dims.len() == 1 {
                    return Err("(n) is not a tuple; numpy writes (n,)".into());
                }
                return Ok(dims);
            }
            self.expect(',')?;
            if self.eat(')') {
                return Ok(dims);
            }
        }
    }

    pub(super) fn dimension(&mut self) -> Result<u64, String> {
        self.skip_space();
        let digits = self.rest.len() - self.rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(format!("expected a dimension at {}", excerpt(self.rest)));
        }
        let dim = self.rest[..digits]
            .parse::<u64>()
            .map_err(|_| format!("dimension {} is too large", excerpt(&self.rest[..digits])))?;
        self.rest = &self.rest[digits..];
        // Python 2's numpy wrote longs as 3L.
        self.rest = self.rest.strip_prefix('L').unwrap_or(self.rest);
        Ok(dim)
    }
}
