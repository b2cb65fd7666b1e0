//! The formats only OpenVINO reads: IR (an .xml graph and a .bin of
//! weights) and TensorFlow Lite. An IR is stored as one blob, the two files
//! packed, so that it moves through the journal, restores and rollbacks like
//! any other model.

use std::collections::BTreeSet;

use super::{Format, ModelError, ModelInfo};

const IR_MAGIC: &[u8; 8] = b"DSMILIR1";

/// One blob of an IR: magic, the .xml's length (u64 LE), the .xml, the .bin.
pub fn pack_ir(xml: &[u8], bin: &[u8]) -> Vec<u8> {
    let mut packed = Vec::with_capacity(16 + xml.len() + bin.len());
    packed.extend_from_slice(IR_MAGIC);
    packed.extend_from_slice(&(xml.len() as u64).to_le_bytes());
    packed.extend_from_slice(xml);
    packed.extend_from_slice(bin);
    packed
}

/// The .xml and .bin of a packed IR; None when `bytes` is not one.
pub fn unpack_ir(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = bytes.strip_prefix(IR_MAGIC)?;
    let (len, rest) = rest.split_first_chunk::<8>()?;
    let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
    (len <= rest.len()).then(|| rest.split_at(len))
}

/// A packed IR: the graph must be an OpenVINO `<net>`; its layer types are
/// its operators (domain "openvino"); FakeQuantize layers, or integer
/// constants, make it INT8 already.
pub fn inspect_ir(bytes: &[u8]) -> Result<ModelInfo, ModelError> {
    let (xml, bin) = unpack_ir(bytes).ok_or_else(|| ModelError::NotIr("not a packed .xml + .bin upload".into()))?;
    let xml = std::str::from_utf8(xml).map_err(|e| ModelError::NotIr(format!("the .xml is not UTF-8: {e}")))?;
    if !xml.contains("<net") {
        return Err(ModelError::NotIr("the .xml has no <net> element".into()));
    }
    // The layer types, from `<layer ... type="X" ...>` tags: enough to name
    // the operators and spot quantization, without a full XML parser.
    let mut operators = BTreeSet::new();
    let mut layers = 0;
    for tag in xml.split("<layer ").skip(1) {
        layers += 1;
        let head = tag.split('>').next().unwrap_or_default();
        if let Some(ty) = head.split("type=\"").nth(1).and_then(|t| t.split('"').next()) {
            operators.insert(("openvino".to_owned(), ty.to_owned()));
        }
    }
    let int8 = operators.iter().any(|(_, op)| op == "FakeQuantize")
        || xml.contains("element_type=\"i8\"")
        || xml.contains("element_type=\"u8\"");
    Ok(ModelInfo {
        ir_version: 0,
        opsets: Vec::new(),
        producer: "OpenVINO IR".into(),
        graph_name: String::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        node_count: layers,
        parameter_count: bin.len() as u64 / 4,
        weight_bytes: bin.len() as u64,
        io_bytes: 0,
        operators,
        int8,
        format: Format::Ir,
    })
}

/// Whether `bytes` is a TensorFlow Lite flatbuffer: "TFL3", the schema's
/// file identifier, at offset 4.
pub fn is_tflite(bytes: &[u8]) -> bool {
    bytes.get(4..8) == Some(b"TFL3")
}

/// A TensorFlow Lite flatbuffer. Its precision is not inspected here: the
/// deploy treats it as FP32.
pub fn inspect_tflite(bytes: &[u8]) -> Result<ModelInfo, ModelError> {
    if !is_tflite(bytes) {
        return Err(ModelError::NotTflite("no TFL3 file identifier at byte 4".into()));
    }
    Ok(ModelInfo {
        ir_version: 0,
        opsets: Vec::new(),
        producer: "TensorFlow Lite".into(),
        graph_name: String::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        node_count: 0,
        parameter_count: bytes.len() as u64 / 4,
        weight_bytes: bytes.len() as u64,
        io_bytes: 0,
        operators: BTreeSet::new(),
        int8: false,
        format: Format::Tflite,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ir_packs_and_unpacks_and_names_its_layers() {
        let xml = br#"<?xml version="1.0"?><net name="m" version="11"><layers>
            <layer id="0" name="x" type="Parameter" version="opset1"></layer>
            <layer id="1" name="fq" type="FakeQuantize" version="opset1"></layer>
            </layers></net>"#;
        let packed = pack_ir(xml, b"weights!");
        assert_eq!(unpack_ir(&packed), Some((&xml[..], &b"weights!"[..])));
        let info = inspect_ir(&packed).unwrap();
        assert_eq!(info.node_count, 2);
        assert!(info.is_quantized(), "FakeQuantize: INT8 already");
        assert_eq!(info.weight_bytes, 8);
        assert!(
            unpack_ir(b"DSMILIR1\xff\xff\xff\xff\xff\xff\xff\xff").is_none(),
            "a length past the end"
        );
        assert!(matches!(
            inspect_ir(&pack_ir(b"<html/>", b"")),
            Err(ModelError::NotIr(_))
        ));
        assert!(matches!(
            inspect_tflite(b"not a flatbuffer"),
            Err(ModelError::NotTflite(_))
        ));
    }
}
