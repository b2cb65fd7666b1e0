use std::io::{Cursor, Write};

use super::super::npz::*;
use super::*;
use crate::backend::{TensorSpec, f32_bytes};
use zip::CompressionMethod;

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

#[test]
fn whole_inputs_stacked_on_a_new_axis_feed_fixed_batch_scalar_and_int64_inputs() {
    // A fixed-batch-1 image, an int64 scalar (a sample rate) and a state
    // whose batch is its second axis.
    let signature = Signature {
        inputs: vec![
            TensorSpec {
                name: "x".into(),
                dtype: DataType::F32,
                shape: vec![1, 8],
            },
            TensorSpec {
                name: "sr".into(),
                dtype: DataType::I64,
                shape: vec![],
            },
            TensorSpec {
                name: "state".into(),
                dtype: DataType::F32,
                shape: vec![2, -1, 4],
            },
        ],
        outputs: vec![],
    };
    let i64_npy = |shape: &str, values: &[i64]| {
        npy(
            &format!("{{'descr': '<i8', 'fortran_order': False, 'shape': {shape}, }}"),
            &values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
        )
    };
    let file = npz(&[
        ("x.npy", f32_npy("(64, 1, 8)", 64 * 8)),
        ("sr.npy", i64_npy("(64,)", &[16000; 64])),
        ("state.npy", f32_npy("(64, 2, 1, 4)", 64 * 8)),
    ]);
    let samples = Samples::from_reader(Cursor::new(file), "t.npz", &signature, usize::MAX).unwrap();
    assert_eq!(samples.len(), 64, "a fixed-batch-1 model calibrates on 64 samples");
    let last = samples.sample(63);
    assert_eq!(last[0].shape, [1, 8]);
    assert_eq!((last[1].dtype, last[1].shape.as_slice()), (DataType::I64, &[][..]));
    assert_eq!(last[1].data[..], 16000i64.to_le_bytes());
    assert_eq!(last[2].shape, [2, 1, 4]);
    // Row 63 of x holds values 63*8 .. 63*8+7 (tenths).
    assert_eq!(&last[0].data[..4], &(504.0f32 / 10.0).to_le_bytes());

    // Rows of a batch of 1 are single samples too.
    let rows = npz(&[
        ("x.npy", f32_npy("(64, 8)", 64 * 8)),
        ("sr.npy", i64_npy("(64,)", &[16000; 64])),
        ("state.npy", f32_npy("(64, 2, 1, 4)", 64 * 8)),
    ]);
    let samples = Samples::from_reader(Cursor::new(rows), "t.npz", &signature, usize::MAX).unwrap();
    assert_eq!(
        (samples.len(), samples.sample(5)[0].shape.as_slice()),
        (64, &[1, 8][..])
    );

    // Neither rows of the input nor stacked inputs: refused, both forms named.
    let bad = npz(&[
        ("x.npy", f32_npy("(64, 9)", 64 * 9)),
        ("sr.npy", i64_npy("(64,)", &[16000; 64])),
        ("state.npy", f32_npy("(64, 2, 1, 4)", 64 * 8)),
    ]);
    let err = Samples::from_reader(Cursor::new(bad), "t.npz", &signature, usize::MAX)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("[N,1,8]") && err.contains("\"x\""), "{err}");
}

#[test]
fn rows_of_a_batch_run_together_and_stacked_inputs_one_by_one() {
    let samples = read(npz(&[("pixels.npy", f32_npy("(10, 64)", 10 * 64))])).unwrap();
    let batch = samples.rows(2, 3).unwrap();
    assert_eq!(batch[0].shape, [3, 64]);
    let one_by_one: Vec<u8> = (2..5).flat_map(|i| samples.sample(i)[0].data.clone()).collect();
    assert_eq!(batch[0].data, one_by_one, "a batch is its samples' rows, in order");
    assert!(samples.rows(8, 3).is_none(), "past the end");

    // Every sample once, in order, in runs of at most 4 (3 from sample 1).
    let runs: Vec<(Vec<i64>, usize)> = samples.runs(1, true, 4).map(|(t, n)| (t[0].shape.clone(), n)).collect();
    assert_eq!(runs, [(vec![4, 64], 4), (vec![4, 64], 4), (vec![1, 64], 1)]);
    // A model that does not take batches gets one sample per run.
    assert_eq!(samples.runs(0, false, 4).count(), 10);
    // ~1 MiB of inputs per run, at most 32 rows.
    assert_eq!(samples.rows_per_run(), 32);

    // Stacked whole inputs cannot be joined: one per run.
    let signature = Signature {
        inputs: vec![TensorSpec {
            name: "x".into(),
            dtype: DataType::F32,
            shape: vec![1, 8],
        }],
        outputs: vec![],
    };
    let file = npz(&[("x.npy", f32_npy("(6, 1, 8)", 6 * 8))]);
    let stacked = Samples::from_reader(Cursor::new(file), "t.npz", &signature, usize::MAX).unwrap();
    assert!(stacked.rows(0, 2).is_none());
    assert!(stacked.runs(0, true, 4).all(|(t, n)| n == 1 && t[0].shape == [1, 8]));
}

#[test]
fn bool_inputs_read_as_one_byte_each() {
    let signature = Signature {
        inputs: vec![TensorSpec {
            name: "mask".into(),
            dtype: DataType::Bool,
            shape: vec![-1, 4],
        }],
        outputs: vec![],
    };
    let bits = [1u8, 0, 0, 1, 0, 1, 1, 0];
    let file = npz(&[(
        "mask.npy",
        npy("{'descr': '|b1', 'fortran_order': False, 'shape': (2, 4), }", &bits),
    )]);
    let samples = Samples::from_reader(Cursor::new(file), "t.npz", &signature, usize::MAX).unwrap();
    let second = samples.sample(1);
    assert_eq!(
        (second[0].dtype, second[0].shape.as_slice()),
        (DataType::Bool, &[1, 4][..])
    );
    assert_eq!(second[0].data, bits[4..]);
    assert_eq!(samples.rows(0, 2).unwrap()[0].data[..], bits);
}

/// A recurrent model: x [1, 4] and state [2, -1, 3] in; y and state_out out.
fn recurrent() -> Signature {
    let spec = |name: &str, dtype, shape: &[i64]| TensorSpec {
        name: name.into(),
        dtype,
        shape: shape.to_vec(),
    };
    Signature {
        inputs: vec![
            spec("x", DataType::F32, &[1, 4]),
            spec("state", DataType::F32, &[2, -1, 3]),
        ],
        outputs: vec![
            spec("y", DataType::F32, &[1, 4]),
            spec("state_out", DataType::F32, &[2, -1, 3]),
            spec("count", DataType::I64, &[1]),
        ],
    }
}

fn link(s: &str) -> StateLink {
    s.parse().unwrap()
}

fn with_state(file: Vec<u8>, links: &[StateLink]) -> Result<Samples, String> {
    Samples::from_reader_with_state(Cursor::new(file), "t.npz", &recurrent(), usize::MAX, links)
        .map_err(|e| e.to_string())
}

#[test]
fn a_state_the_data_leaves_out_starts_at_zeros_and_is_carried() {
    let samples = with_state(
        npz(&[("x.npy", f32_npy("(5, 1, 4)", 5 * 4))]),
        &[link("state=state_out")],
    )
    .unwrap();
    assert!(samples.is_sequential());
    assert_eq!(samples.len(), 5, "the state's zeros do not count as samples");
    assert!(samples.rows(0, 2).is_none(), "a stream is not batched");
    let mut stepper = Stepper::new(&samples);
    let first = stepper.inputs(0);
    assert_eq!(first[1].shape, [2, 1, 3], "the dynamic dimension is 1");
    assert!(first[1].data.iter().all(|b| *b == 0));
    // What the model answered becomes the next call's state, renamed.
    let answered = Tensor {
        name: "state_out".into(),
        dtype: DataType::F32,
        shape: vec![2, 1, 3],
        data: f32_bytes(&[7.0; 6]).into(),
    };
    stepper.keep(std::slice::from_ref(&answered));
    let second = stepper.inputs(1);
    assert_eq!((second[1].name.as_str(), &second[1].data), ("state", &answered.data));
    assert_eq!(second[0].data, samples.sample(1)[0].data, "other inputs are the data's");
}

#[test]
fn sequence_start_restarts_from_the_data_state() {
    let starts = npy(
        "{'descr': '|b1', 'fortran_order': False, 'shape': (4,), }",
        &[1, 0, 1, 0],
    );
    let file = npz(&[
        ("x.npy", f32_npy("(4, 1, 4)", 4 * 4)),
        ("state.npy", f32_npy("(4, 2, 1, 3)", 4 * 6)),
        ("sequence_start.npy", starts),
    ]);
    let samples = with_state(file, &[link("state=state_out")]).unwrap();
    let mut stepper = Stepper::new(&samples);
    let carried = Tensor {
        name: "state_out".into(),
        dtype: DataType::F32,
        shape: vec![2, 1, 3],
        data: f32_bytes(&[9.0; 6]).into(),
    };
    stepper.keep(std::slice::from_ref(&carried));
    assert_eq!(stepper.inputs(1)[1].data, carried.data, "mid-sequence: carried");
    assert_eq!(
        stepper.inputs(2)[1].data,
        samples.sample(2)[1].data,
        "a new sequence: the data's state"
    );
    assert_ne!(stepper.inputs(2)[1].data, carried.data);
}

#[test]
fn state_links_are_checked_against_the_model() {
    let file = || npz(&[("x.npy", f32_npy("(2, 1, 4)", 2 * 4))]);
    let err = with_state(file(), &[link("hidden=state_out")]).err().unwrap();
    assert!(err.contains("no input \"hidden\"") && err.contains("x, state"), "{err}");
    let err = with_state(file(), &[link("state=h_n")]).err().unwrap();
    assert!(
        err.contains("no output \"h_n\"") && err.contains("y, state_out, count"),
        "{err}"
    );
    let err = with_state(file(), &[link("state=count")]).err().unwrap();
    assert!(err.contains("the input is"), "{err}");
    // Without a link, a missing state is a missing input, as before.
    let err = with_state(file(), &[]).err().unwrap();
    assert!(err.contains("no array named \"state\""), "{err}");
    // sequence_start without a link says what is missing.
    let starts = npy("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }", &[1, 0]);
    let err = with_state(
        npz(&[
            ("x.npy", f32_npy("(2, 1, 4)", 2 * 4)),
            ("state.npy", f32_npy("(2, 2, 1, 3)", 2 * 6)),
            ("sequence_start.npy", starts),
        ]),
        &[],
    )
    .err()
    .unwrap();
    assert!(err.contains("no --state"), "{err}");
    for bad in ["state", "=out", "in=", "a=b=c"] {
        assert!(bad.parse::<StateLink>().unwrap_err().contains("INPUT=OUTPUT"), "{bad}");
    }
}

#[test]
fn stream_data_is_checked_like_the_rest() {
    let i64_starts = |values: &[i64], shape: &str| {
        npy(
            &format!("{{'descr': '<i8', 'fortran_order': False, 'shape': {shape}, }}"),
            &values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
        )
    };
    let file = |starts: Vec<u8>| npz(&[("x.npy", f32_npy("(4, 1, 4)", 4 * 4)), ("sequence_start.npy", starts)]);
    let links = [link("state=state_out")];
    // int64 flags work like bools; without the data's state a restart
    // goes back to zeros.
    let samples = with_state(file(i64_starts(&[1, 0, 1, 0], "(4,)")), &links).unwrap();
    let mut stepper = Stepper::new(&samples);
    stepper.keep(&[Tensor {
        name: "state_out".into(),
        dtype: DataType::F32,
        shape: vec![2, 1, 3],
        data: f32_bytes(&[5.0; 6]).into(),
    }]);
    assert!(stepper.inputs(1)[1].data.iter().any(|b| *b != 0), "carried");
    assert!(stepper.inputs(2)[1].data.iter().all(|b| *b == 0), "restarted at zeros");
    // Fewer flags than samples, or a 2-D array: refused.
    let err = with_state(file(i64_starts(&[1, 0], "(2,)")), &links).err().unwrap();
    assert!(err.contains("2 sequence_start values for 4 samples"), "{err}");
    let err = with_state(file(i64_starts(&[1, 0, 1, 0], "(2, 2)")), &links)
        .err()
        .unwrap();
    assert!(err.contains("one flag per sample"), "{err}");
    // One input linked twice.
    let err = with_state(
        file(i64_starts(&[1, 0, 1, 0], "(4,)")),
        &[link("state=state_out"), link("state=y")],
    )
    .err()
    .unwrap();
    assert!(err.contains("linked twice"), "{err}");
}

#[test]
fn a_huge_declared_state_is_refused_before_any_zeros_are_allocated() {
    let mut signature = recurrent();
    signature.inputs[1].shape = vec![2, 1 << 40, 3];
    signature.outputs[1].shape = vec![2, -1, 3];
    let file = npz(&[("x.npy", f32_npy("(2, 1, 4)", 2 * 4))]);
    let err = Samples::from_reader_with_state(
        Cursor::new(file),
        "t.npz",
        &signature,
        usize::MAX,
        &[link("state=state_out")],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("MiB of zeros") && err.contains("give its first state in the data"),
        "{err}"
    );
}
