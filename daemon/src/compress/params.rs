//! Quantization parameters: activations per tensor (uint8 asymmetric by
//! default, int8 symmetric by option), weights per output channel (int8
//! symmetric), bias int32 at scale = input scale × weight scale.

use super::calibrate::Range;

pub use dsmil_kinds::ActivationType;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActivationParams {
    pub scale: f32,
    pub zero_point: i32,
}

pub fn activation_params(range: Range, kind: ActivationType) -> ActivationParams {
    // The range must hold 0 exactly, so that zero padding is exact.
    let (lo, hi) = (range.min.min(0.0), range.max.max(0.0));
    match kind {
        ActivationType::U8Asymmetric => {
            let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
            let zero_point = (-lo / scale).round().clamp(0.0, 255.0) as i32;
            ActivationParams { scale, zero_point }
        }
        ActivationType::I8Symmetric => {
            let abs = lo.abs().max(hi.abs());
            ActivationParams {
                scale: if abs > 0.0 { abs / 127.0 } else { 1.0 },
                zero_point: 0,
            }
        }
    }
}

/// Quantizes `values` (row-major, `dims`) per channel along `axis`, int8
/// symmetric: returns the int8 values and one scale per channel.
pub fn quantize_per_channel(values: &[f32], dims: &[usize], axis: usize) -> (Vec<i8>, Vec<f32>) {
    let channels = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    let channel_of = |i: usize| (i / inner) % channels;
    let mut abs_max = vec![0f32; channels];
    for (i, &v) in values.iter().enumerate() {
        let c = channel_of(i);
        abs_max[c] = abs_max[c].max(v.abs());
    }
    let scales: Vec<f32> = abs_max.iter().map(|&m| if m > 0.0 { m / 127.0 } else { 1.0 }).collect();
    let quantized = values
        .iter()
        .enumerate()
        .map(|(i, &v)| (v / scales[channel_of(i)]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (quantized, scales)
}

/// A bias per output channel as int32 at scale input_scale × weight_scale[c].
pub fn quantize_bias(bias: &[f32], input_scale: f32, weight_scales: &[f32]) -> (Vec<i32>, Vec<f32>) {
    let scales: Vec<f32> = weight_scales.iter().map(|w| w * input_scale).collect();
    let quantized = bias
        .iter()
        .zip(&scales)
        .map(|(&b, &s)| {
            (f64::from(b) / f64::from(s))
                .round()
                .clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
        })
        .collect();
    (quantized, scales)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_parameters_by_hand() {
        let p = activation_params(Range { min: -1.0, max: 3.0 }, ActivationType::U8Asymmetric);
        assert!((p.scale - 4.0 / 255.0).abs() < 1e-7);
        assert_eq!(p.zero_point, 64); // round(1.0 / (4/255)) = round(63.75)
        let p = activation_params(Range { min: 0.5, max: 2.0 }, ActivationType::U8Asymmetric);
        assert_eq!(p.zero_point, 0, "the range is widened to hold 0");
        assert!((p.scale - 2.0 / 255.0).abs() < 1e-7);
        let p = activation_params(Range { min: -1.0, max: 3.0 }, ActivationType::I8Symmetric);
        assert_eq!((p.zero_point, p.scale), (0, 3.0 / 127.0));
    }

    #[test]
    fn per_channel_weights_stay_within_half_a_step() {
        // 2 channels along axis 0 of a [2, 3] matrix; then along axis 1.
        let w = [0.5, -1.0, 0.25, 10.0, 2.0, -3.0];
        let (q, s) = quantize_per_channel(&w, &[2, 3], 0);
        assert_eq!(s, vec![1.0 / 127.0, 10.0 / 127.0]);
        for (i, (&qi, &wi)) in q.iter().zip(&w).enumerate() {
            let back = f32::from(qi) * s[i / 3];
            assert!((back - wi).abs() <= s[i / 3] / 2.0 + 1e-6, "{i}: {back} vs {wi}");
        }
        let (q, s) = quantize_per_channel(&w, &[2, 3], 1);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0], 10.0 / 127.0);
        for (i, (&qi, &wi)) in q.iter().zip(&w).enumerate() {
            let back = f32::from(qi) * s[i % 3];
            assert!((back - wi).abs() <= s[i % 3] / 2.0 + 1e-6, "{i}: {back} vs {wi}");
        }
    }

    #[test]
    fn bias_scale_is_input_times_weight_scale() {
        let (q, s) = quantize_bias(&[1.0, -0.5], 0.1, &[0.02, 0.5]);
        assert_eq!(s, vec![0.1 * 0.02, 0.1 * 0.5]);
        assert_eq!(q, vec![500, -10]);
    }
}
