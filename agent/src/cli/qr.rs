//! The invite as a QR code in the terminal, for pairing a phone by pointing its camera.
//!
//! Two module rows per text line with half blocks, drawn black on white with explicit colours:
//! scanners need dark modules on a light ground, and a dark-themed terminal would invert it.

use qrcode::{Color, EcLevel, QrCode};

/// Light modules around the code; readers want some quiet zone (the spec's 4 wastes lines).
const QUIET_MODULES: usize = 2;
/// Black foreground on a white background (256-colour palette), and back to normal.
const BLACK_ON_WHITE: &str = "\x1b[38;5;16;48;5;231m";
const RESET: &str = "\x1b[0m";

/// Lines to print, or `None` when the text does not fit in a QR code.
pub fn render(text: &str) -> Option<Vec<String>> {
    // Low error correction: a screen is not a scratched label, and it keeps the code small.
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L).ok()?;
    let width = code.width();
    let colors = code.to_colors();
    let size = width + 2 * QUIET_MODULES;
    let dark = |x: usize, y: usize| -> bool {
        let inside = |v: usize| (QUIET_MODULES..QUIET_MODULES + width).contains(&v);
        inside(x) && inside(y) && colors[(y - QUIET_MODULES) * width + (x - QUIET_MODULES)] == Color::Dark
    };
    let lines = (0..size)
        .step_by(2)
        .map(|y| {
            let row: String = (0..size)
                .map(|x| match (dark(x, y), y + 1 < size && dark(x, y + 1)) {
                    (true, true) => '█',
                    (true, false) => '▀',
                    (false, true) => '▄',
                    (false, false) => ' ',
                })
                .collect();
            format!("{BLACK_ON_WHITE}{row}{RESET}")
        })
        .collect();
    Some(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invite_makes_a_square_code_with_a_quiet_zone() {
        let invite = "https://relay.example.com/#MF6O6QXSB2B3MA4E7XYH3KDMLE.XDEGYFANCBRTGG6C57FWXSO33G5DV5UT";
        let lines = render(invite).expect("fits");
        let plain: Vec<String> = lines.iter().map(|l| l.replace(BLACK_ON_WHITE, "").replace(RESET, "")).collect();
        let size = plain[0].chars().count();
        assert_eq!(plain.len(), size.div_ceil(2), "two module rows per line");
        assert!(plain.iter().all(|l| l.chars().count() == size));
        // The quiet zone is light, and the finder pattern's corner right inside it is dark.
        assert!(plain[0].chars().all(|c| c == ' '));
        assert_eq!(plain[1].chars().nth(QUIET_MODULES), Some('█'));
    }
}
