//! Hardware tests (NPU, GPU through OpenVINO) live here. They arrive with the
//! OpenVINO backend; until then this crate holds no tests, so that nothing
//! claims to have checked hardware it never touched.
