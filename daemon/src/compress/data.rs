//! Calibration and validation data: an .npz whose keys are the model's input
//! names (plus, for validation, an optional `labels`), each array holding
//! samples along its first axis. Checked against the model's signature before
//! anything runs: a missing name, a wrong dtype or shape, NaN or Inf is a
//! clear error, never a half-calibrated model.
//!
//! The file comes from whoever can deploy, so it is hostile until proven
//! otherwise: a 500-byte .npz can declare a (10^12, 64) array, and a reader
//! that trusts the header allocates that before noticing the bytes are not
//! there (an abort, not an error). So each entry's .npy header is parsed
//! here first, with checked arithmetic, and the bytes it declares must equal
//! the bytes the zip entry holds, which must lie inside the file, and stay
//! under [`MAX_DATA_BYTES`], before ndarray-npy reads a single element.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use ndarray::{ArrayD, Axis};
use ndarray_npy::{ReadNpyExt, ReadableElement};
use zip::{CompressionMethod, ZipArchive};

use super::CompressError;
use crate::backend::{DataType, Signature, Tensor};

/// The most array data (bytes, all arrays together) one file may make the
/// daemon hold. Calibration needs hundreds of samples, not millions: 4 GiB
/// is far above any real calibration set and still refuses a file that
/// would exhaust an edge device's memory.
pub const MAX_DATA_BYTES: u64 = 4 << 30;

/// numpy writes headers of a few hundred bytes (and by default refuses to
/// read one above 10,000); 64 KiB, the most a version 1 header can hold, is
/// plenty and keeps a version 2 header from claiming gigabytes.
const MAX_HEADER_BYTES: u64 = 1 << 16;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Samples, one batch of inputs each (rows of the arrays), plus labels.
pub struct Samples {
    /// Per input, in signature order: the whole array.
    inputs: Vec<(String, ArrayD<f32>)>,
    labels: Option<Vec<i64>>,
    count: usize,
}

impl Samples {
    /// Reads `path`, keeping at most `limit` samples.
    pub fn read(path: &Path, signature: &Signature, limit: usize) -> Result<Samples, CompressError> {
        let file = std::fs::File::open(path).map_err(|e| CompressError::Data {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        Samples::from_reader(file, &path.display().to_string(), signature, limit)
    }

    /// Reads an .npz from `reader`; `source` names it in errors (a path, or
    /// whatever the bytes came from).
    pub fn from_reader<R: Read + Seek>(
        reader: R,
        source: &str,
        signature: &Signature,
        limit: usize,
    ) -> Result<Samples, CompressError> {
        let err = |detail: String| CompressError::Data {
            path: source.to_owned(),
            detail,
        };
        let mut npz = Npz::open(reader).map_err(|e| err(format!("not an .npz file: {e}")))?;
        let names = npz.names();
        let mut inputs = Vec::new();
        let mut count = usize::MAX;
        for spec in &signature.inputs {
            if !names.contains(&spec.name) {
                return Err(err(format!(
                    "no array named {:?} (the model's input); it has {}",
                    spec.name,
                    names.join(", ")
                )));
            }
            if spec.dtype != DataType::F32 {
                return Err(err(format!(
                    "input {}: only FP32 inputs can be calibrated (it is {})",
                    spec.name, spec.dtype
                )));
            }
            let array: ArrayD<f32> = npz.array(&spec.name, &["<f4", ">f4"], "float32").map_err(err)?;
            let shape: Vec<i64> = array.shape().iter().map(|&d| d as i64).collect();
            if !spec.accepts_shape(&shape) {
                return Err(err(format!(
                    "array {:?} has shape {:?}; the input is {} (samples along the first axis)",
                    spec.name,
                    shape,
                    crate::backend::format_shape(&spec.shape)
                )));
            }
            if let Some(bad) = array.iter().position(|v| !v.is_finite()) {
                return Err(err(format!("array {:?} holds NaN or Inf (element {bad})", spec.name)));
            }
            count = count.min(array.shape().first().copied().unwrap_or(0));
            inputs.push((spec.name.clone(), array));
        }
        let labels = if names.iter().any(|n| n == "labels") {
            let labels: ArrayD<i64> = npz.array("labels", &["<i8", ">i8"], "int64 class ids").map_err(err)?;
            Some(labels.iter().copied().collect::<Vec<_>>())
        } else {
            None
        };
        if count == 0 || count == usize::MAX {
            return Err(err("no samples".into()));
        }
        if let Some(l) = &labels
            && l.len() < count
        {
            return Err(err(format!("{} labels for {count} samples", l.len())));
        }
        Ok(Samples {
            inputs,
            labels,
            count: count.min(limit),
        })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn labels(&self) -> Option<&[i64]> {
        self.labels.as_deref().map(|l| &l[..self.count])
    }

    /// Sample `i` as one-row input tensors, in signature order.
    pub fn sample(&self, i: usize) -> Vec<Tensor> {
        self.inputs
            .iter()
            .map(|(name, array)| {
                let row = array.index_axis(Axis(0), i).insert_axis(Axis(0));
                Tensor {
                    name: name.clone(),
                    dtype: DataType::F32,
                    shape: row.shape().iter().map(|&d| d as i64).collect(),
                    data: row.iter().flat_map(|v| v.to_le_bytes()).collect(),
                }
            })
            .collect()
    }
}

/// An open .npz, and how much more array data it may still make us hold.
struct Npz<R> {
    zip: ZipArchive<R>,
    file_len: u64,
    budget: u64,
}

impl<R: Read + Seek> Npz<R> {
    fn open(mut reader: R) -> Result<Npz<R>, String> {
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
    fn names(&self) -> Vec<String> {
        self.zip
            .file_names()
            .map(|n| n.strip_suffix(".npy").unwrap_or(n).to_owned())
            .collect()
    }

    /// Reads array `name` (numpy's lookup: the name, then `name.npy`),
    /// whose descr must be one of `descrs`; `expected` words the dtype for
    /// the error. Nothing the header declares is allocated before it has
    /// been checked against the entry and the budget.
    fn array<A: ReadableElement>(&mut self, name: &str, descrs: &[&str], expected: &str) -> Result<ArrayD<A>, String> {
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
struct NpyHeader {
    descr: String,
    shape: Vec<u64>,
    /// Bytes from the magic string to the first element.
    len: u64,
}

impl NpyHeader {
    /// Parses the header at the start of an entry of `entry_size` bytes;
    /// no length it reads is believed beyond what the entry holds.
    fn read(reader: &mut impl Read, entry_size: u64) -> Result<NpyHeader, String> {
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
    fn data_bytes(&self, item: u64) -> Option<u64> {
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
fn parse_dict(text: &str) -> Result<(String, bool, Vec<u64>), String> {
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
fn excerpt(text: &str) -> String {
    const MAX_CHARS: usize = 60;
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{:?}...", &text[..cut]),
        None => format!("{text:?}"),
    }
}

struct Parser<'a> {
    rest: &'a str,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t']);
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected {c:?} at {}", excerpt(self.rest)))
        }
    }

    /// A quoted string without escapes (numpy's keys and simple descrs have none).
    fn string(&mut self) -> Result<String, String> {
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

    fn boolean(&mut self) -> Result<bool, String> {
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
    fn tuple(&mut self) -> Result<Vec<u64>, String> {
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

    fn dimension(&mut self) -> Result<u64, String> {
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

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};

    use super::*;
    use crate::backend::TensorSpec;

    fn signature() -> Signature {
        Signature {
            inputs: vec![TensorSpec {
                name: "pixels".into(),
                dtype: DataType::F32,
                shape: vec![-1, 64],
            }],
            outputs: vec![],
        }
    }

    /// An .npy: magic, version 1.0, the dict padded to 64 bytes, then `data`.
    fn npy(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut header = dict.to_owned();
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend([1, 0]);
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    fn f32_npy(shape: &str, values: usize) -> Vec<u8> {
        let data: Vec<u8> = (0..values).flat_map(|i| (i as f32 / 10.0).to_le_bytes()).collect();
        npy(
            &format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}"),
            &data,
        )
    }

    /// An uncompressed zip of (name, bytes), as numpy.savez writes it.
    fn npz(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
        for (name, bytes) in entries {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    fn read(bytes: Vec<u8>) -> Result<Samples, String> {
        Samples::from_reader(Cursor::new(bytes), "test.npz", &signature(), usize::MAX).map_err(|e| e.to_string())
    }

    #[test]
    fn a_well_formed_file_reads() {
        let samples = read(npz(&[
            ("pixels.npy", f32_npy("(3, 64)", 3 * 64)),
            (
                "labels.npy",
                npy(
                    "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }",
                    &[1i64, 2, 3].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>(),
                ),
            ),
        ]))
        .unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(samples.labels(), Some(&[1, 2, 3][..]));
        assert_eq!(samples.sample(2)[0].shape, vec![1, 64]);
    }

    #[test]
    fn a_small_file_declaring_a_huge_array_is_an_error_not_an_allocation() {
        for shape in ["(1000000000000, 64)", "(100000000, 64)"] {
            let file = npz(&[("pixels.npy", f32_npy(shape, 64))]);
            assert!(file.len() < 600, "{} bytes", file.len());
            let err = read(file).err().unwrap();
            assert!(
                err.contains("array \"pixels\"")
                    && err.contains(&shape.replace(['(', ')'], ""))
                    && err.contains("256 bytes"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_shape_that_overflows_is_an_error() {
        let err = read(npz(&[("pixels.npy", f32_npy("(18446744073709551615, 64)", 1))]))
            .err()
            .unwrap();
        assert!(err.contains("array \"pixels\"") && err.contains("overflows"), "{err}");
        let err = read(npz(&[("pixels.npy", f32_npy("(99999999999999999999999, 64)", 1))]))
            .err()
            .unwrap();
        assert!(err.contains("array \"pixels\"") && err.contains("too large"), "{err}");
        // However long the header, the message quotes only an excerpt.
        let digits = "9".repeat(5000);
        let err = read(npz(&[("pixels.npy", f32_npy(&format!("({digits}, 64)"), 1))]))
            .err()
            .unwrap();
        assert!(
            err.contains("too large") && err.len() < 400,
            "{} bytes: {err}",
            err.len()
        );
    }

    #[test]
    fn a_shape_that_disagrees_with_the_entry_size_is_an_error() {
        // Fewer bytes than declared, and more.
        let err = read(npz(&[("pixels.npy", f32_npy("(4, 64)", 3 * 64))])).err().unwrap();
        assert!(
            err.contains("array \"pixels\"") && err.contains("(1024 bytes)") && err.contains("holds 768 bytes"),
            "{err}"
        );
        let err = read(npz(&[("pixels.npy", f32_npy("(2, 64)", 3 * 64))])).err().unwrap();
        assert!(err.contains("(512 bytes)") && err.contains("holds 768 bytes"), "{err}");
    }

    #[test]
    fn a_truncated_entry_is_an_error() {
        // The .npy cut inside its data, and inside its header, each in an
        // otherwise well-formed zip.
        let whole = f32_npy("(3, 64)", 3 * 64);
        let err = read(npz(&[("pixels.npy", whole[..500].to_vec())])).err().unwrap();
        assert!(
            err.contains("array \"pixels\"") && err.contains("(768 bytes)") && err.contains("holds 372 bytes"),
            "{err}"
        );
        let err = read(npz(&[("pixels.npy", whole[..40].to_vec())])).err().unwrap();
        assert!(
            err.contains("array \"pixels\"") && err.contains("declares 118 bytes") && err.contains("holds 40 bytes"),
            "{err}"
        );
        let err = read(npz(&[("pixels.npy", MAGIC[..4].to_vec())])).err().unwrap();
        assert!(
            err.contains("array \"pixels\"") && err.contains("no .npy header"),
            "{err}"
        );
        // A version 2 header claiming 4 GiB of dict in a 12-byte entry.
        let mut header_only = MAGIC.to_vec();
        header_only.extend([2, 0]);
        header_only.extend(u32::MAX.to_le_bytes());
        let err = read(npz(&[("pixels.npy", header_only)])).err().unwrap();
        assert!(
            err.contains("array \"pixels\"") && err.contains("4294967295 bytes") && err.contains("holds 12 bytes"),
            "{err}"
        );
        // The file itself cut short: the zip's directory is gone.
        let file = npz(&[("pixels.npy", whole)]);
        let err = read(file[..file.len() / 2].to_vec()).err().unwrap();
        assert!(err.contains("not an .npz file"), "{err}");
    }

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    #[test]
    fn an_entry_whose_zip_sizes_lie_is_an_error() {
        let mut file = npz(&[("pixels.npy", f32_npy("(3, 64)", 3 * 64))]);
        // Raise the entry's sizes (both the local and central headers') to
        // 1 GiB: the data would run past the end of the file.
        let big = (1u32 << 30).to_le_bytes();
        for (signature, offset) in [(&b"PK\x03\x04"[..], 18), (&b"PK\x01\x02"[..], 20)] {
            let at = find(&file, signature).unwrap() + offset;
            file[at..at + 4].copy_from_slice(&big);
            file[at + 4..at + 8].copy_from_slice(&big);
        }
        let err = read(file).err().unwrap();
        assert!(
            err.contains("array \"pixels\"")
                && err.contains("declares 1073741824 bytes from offset 40")
                && err.contains("file is 1014 bytes long"),
            "{err}"
        );
    }

    #[test]
    fn a_file_that_is_not_a_zip_is_an_error() {
        let err = read(b"\x93NUMPY not a zip at all".to_vec()).err().unwrap();
        assert!(err.starts_with("test.npz: not an .npz file"), "{err}");
        let err = read(Vec::new()).err().unwrap();
        assert!(err.contains("not an .npz file"), "{err}");
    }

    #[test]
    fn malformed_headers_are_errors_naming_the_array() {
        for (dict, needle) in [
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 64), }",
                "\"<f8\" (expected float32)",
            ),
            (
                "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3, 64), }",
                "expected a string",
            ),
            ("{'descr': '<f4', 'fortran_order': False, }", "no 'shape'"),
            ("{'descr': '<f4', 'shape': (3, 64), 'shape': (3, 64), }", "given twice"),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (-3, 64), }",
                "expected a dimension",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (192), }",
                "not a tuple",
            ),
            (
                "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (3, 64), }",
                "True or False",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': ((((3, 64), }",
                "expected a dimension",
            ),
        ] {
            let err = read(npz(&[("pixels.npy", npy(dict, &[0; 768]))])).err().unwrap();
            assert!(
                err.contains("array \"pixels\"") && err.contains(needle),
                "{dict}: {err}"
            );
        }
        let mut v9 = f32_npy("(3, 64)", 192);
        v9[6] = 9;
        let err = read(npz(&[("pixels.npy", v9)])).err().unwrap();
        assert!(err.contains("array \"pixels\"") && err.contains("version 9.0"), "{err}");
    }

    #[test]
    fn headers_parse_as_numpy_writes_them() {
        let parsed = |dict: &str| parse_dict(dict);
        assert_eq!(
            parsed("{'descr': '<f4', 'fortran_order': False, 'shape': (360, 64), }"),
            Ok(("<f4".into(), false, vec![360, 64]))
        );
        assert_eq!(
            parsed("{\"shape\": (5L,), \"fortran_order\": True, \"descr\": \">f4\"}   "),
            Ok((">f4".into(), true, vec![5]))
        );
        assert_eq!(
            parsed("{'descr': '<f4', 'fortran_order': False, 'shape': ()}"),
            Ok(("<f4".into(), false, vec![]))
        );
    }

    #[test]
    fn fortran_order_arrays_read_in_their_order() {
        let data: Vec<u8> = (0..128).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let samples = read(npz(&[(
            "pixels.npy",
            npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 64), }", &data),
        )]))
        .unwrap();
        // Column-major: row 1 holds the odd elements.
        let row = &samples.sample(1)[0].data;
        assert_eq!(&row[..8], &[1f32.to_le_bytes(), 3f32.to_le_bytes()].concat()[..]);
    }

    #[test]
    fn the_budget_covers_all_arrays_of_a_file() {
        let file = npz(&[("a.npy", f32_npy("(2, 64)", 128)), ("b.npy", f32_npy("(2, 64)", 128))]);
        let mut npz = Npz::open(Cursor::new(file)).unwrap();
        npz.budget = 800;
        npz.array::<f32>("a", &["<f4"], "float32").unwrap();
        let err = npz.array::<f32>("b", &["<f4"], "float32").err().unwrap();
        assert!(
            err.contains("array \"b\"") && err.contains("512 bytes of data, more than the 288 bytes left"),
            "{err}"
        );
    }
}
