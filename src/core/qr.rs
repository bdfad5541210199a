//! QR codes of an otpauth URI (or any text): a PNG `data:` URL for the browser, Unicode blocks for a
//! terminal.

use crate::error::{ErrorType, MfaError, MfaResult};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// The QR code of `text`, with medium error correction (what phone cameras read best at this size).
fn encode_qr(text: &str) -> MfaResult<qrcode::QrCode> {
    qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M).map_err(|_| {
        MfaError::new(
            ErrorType::InvalidArgument,
            "The text is too long for a QR code.",
        )
    })
}

/// Renders `text` as a QR code PNG (black on white, 4-module quiet zone) in a `data:` URL.
pub fn qr_code_data_url(text: &str) -> MfaResult<String> {
    const SCALE: usize = 6;
    const QUIET: usize = 4;
    let code = encode_qr(text)?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color == qrcode::Color::Dark {
            let (mx, my) = (i % modules + QUIET, i / modules + QUIET);
            for y in my * SCALE..(my + 1) * SCALE {
                pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
            }
        }
    }
    let mut png_bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png_bytes, side as u32, side as u32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Best);
        let mut writer = encoder
            .write_header()
            .expect("writing to a Vec cannot fail");
        writer
            .write_image_data(&pixels)
            .expect("the image has the declared size");
    }
    Ok(format!(
        "data:image/png;base64,{}",
        STANDARD.encode(png_bytes)
    ))
}

/// Renders `text` as a QR code of Unicode half blocks, for a terminal.
pub fn qr_code_text(text: &str) -> MfaResult<String> {
    let code = encode_qr(text)?;
    Ok(code
        .render::<qrcode::render::unicode::Dense1x2>()
        .dark_color(qrcode::render::unicode::Dense1x2::Light)
        .light_color(qrcode::render::unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_code_is_a_png_data_url() {
        let url = qr_code_data_url("otpauth://totp/A:b?secret=GEZDGNBV").unwrap();
        let b64 = url.strip_prefix("data:image/png;base64,").unwrap();
        let bytes = STANDARD.decode(b64).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let text = qr_code_text("hello").unwrap();
        assert!(text.lines().count() > 10);
    }
}
