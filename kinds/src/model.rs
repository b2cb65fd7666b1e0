//! Model formats, and the one rule that tells them from a file's name.

use crate::spelled;

/// Formats a model upload can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    #[default]
    Onnx,
    /// OpenVINO IR: the .xml, with its .bin uploaded as the weights.
    Ir,
    /// TensorFlow Lite flatbuffer.
    Tflite,
}

spelled!(Format, "model format", "onnx, ir or tflite", {
    Onnx => "onnx",
    Ir => "ir",
    Tflite => "tflite",
});

impl Format {
    /// Only OpenVINO's frontends read IR and TFLite; ONNX Runtime reads ONNX.
    pub fn needs_openvino(self) -> bool {
        self != Format::Onnx
    }

    /// The format a file's extension says (.xml: IR, .tflite: TFLite,
    /// anything else: ONNX, which the daemon then checks by its bytes).
    pub fn from_path(path: &std::path::Path) -> Format {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("xml") => Format::Ir,
            Some("tflite") => Format::Tflite,
            _ => Format::Onnx,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Format;
    use std::path::Path;

    #[test]
    fn the_extension_names_the_format() {
        assert_eq!(Format::from_path(Path::new("m/model.xml")), Format::Ir);
        assert_eq!(Format::from_path(Path::new("a.TFLITE")), Format::Tflite);
        assert_eq!(Format::from_path(Path::new("model.onnx")), Format::Onnx);
        assert_eq!(Format::from_path(Path::new("model")), Format::Onnx);
        assert_eq!("".parse::<Format>().ok(), None);
    }
}
