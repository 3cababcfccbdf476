//! A receipt as ESC/POS bytes for thermal printers: the text layout, bold where it is bold, the
//! QR code drawn by the printer's own QR command (`GS ( k`, model 2), a feed and a partial cut,
//! and, when asked, the drawer kick (`ESC p`) first. Text goes out in code page 858 (Latin-1
//! with the euro sign; `ESC t 19`) or, for printers that take it, UTF-8 (`FS ( C`, encoding 2).
//! Pure.

use super::model::Receipt;
use super::text::{Block, layout};

const ESC: u8 = 0x1b;
const GS: u8 = 0x1d;
const FS: u8 = 0x1c;

/// How text reaches the printer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Code page 858; characters outside it print as `?`.
    Cp858,
    Utf8,
}

impl Encoding {
    pub fn parse(name: &str) -> Option<Encoding> {
        match name {
            "cp858" => Some(Encoding::Cp858),
            "utf8" => Some(Encoding::Utf8),
            _ => None,
        }
    }
}

/// Code page 858's characters 0x80 to 0xFF.
const CP858_HIGH: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜø£Ø×ƒáíóúñÑªº¿®¬½¼¡«»░▒▓│┤ÁÂÀ©╣║╗╝¢¥┐└┴┬├─┼ãÃ╚╔╩╦╠═╬¤ðÐÊËÈ€ÍÎÏ┘┌█▄¦Ì▀ÓßÔÒõÕµþÞÚÛÙýÝ¯´\u{ad}±‗¾¶§÷¸°¨·¹³²■\u{a0}";

fn cp858(c: char) -> u8 {
    if c.is_ascii() && !c.is_ascii_control() {
        return c as u8;
    }
    CP858_HIGH
        .chars()
        .position(|h| h == c)
        .and_then(|i| u8::try_from(0x80 + i).ok())
        .unwrap_or(b'?')
}

fn text(out: &mut Vec<u8>, line: &str, encoding: Encoding) {
    match encoding {
        Encoding::Utf8 => out.extend_from_slice(line.as_bytes()),
        // A character the code page lacks prints as `?`, one per column it was laid out in
        // (two for CJK), so the columns stay aligned.
        Encoding::Cp858 => {
            for c in line.chars() {
                let byte = cp858(c);
                let columns = if byte == b'?' && c != '?' {
                    unicode_width::UnicodeWidthChar::width(c).unwrap_or(1)
                } else {
                    1
                };
                out.extend(std::iter::repeat_n(byte, columns));
            }
        }
    }
}

/// `GS ( k` with function `f` and its parameters.
fn qr_function(out: &mut Vec<u8>, f: u8, params: &[u8]) {
    let len = u16::try_from(params.len() + 2).unwrap_or(u16::MAX);
    out.extend_from_slice(&[GS, b'(', b'k']);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[49, f]);
    out.extend_from_slice(params);
}

/// The QR code of `data`, centred, `dots` dots per module.
fn qr(out: &mut Vec<u8>, data: &str, dots: u8) {
    out.extend_from_slice(&[ESC, b'a', 1]);
    qr_function(out, 65, &[50, 0]); // model 2
    qr_function(out, 67, &[dots]); // module size
    qr_function(out, 69, &[49]); // error correction M
    let mut store = vec![48];
    store.extend_from_slice(data.as_bytes());
    qr_function(out, 80, &store); // store the data
    qr_function(out, 81, &[48]); // print it
    out.extend_from_slice(&[b'\n', ESC, b'a', 0]);
}

/// The bytes of `receipt` laid out in `cols` columns; `kick` opens the cash drawer first.
pub fn render(receipt: &Receipt, cols: usize, encoding: Encoding, kick: bool) -> Vec<u8> {
    let mut out = vec![ESC, b'@'];
    match encoding {
        Encoding::Cp858 => out.extend_from_slice(&[ESC, b't', 19]),
        Encoding::Utf8 => out.extend_from_slice(&[FS, b'(', b'C', 2, 0, 48, 2]),
    }
    if kick {
        out.extend_from_slice(&[ESC, b'p', 0, 25, 250]);
    }
    for block in layout(receipt, cols) {
        match block {
            Block::Line(line) => {
                if line.bold {
                    out.extend_from_slice(&[ESC, b'E', 1]);
                }
                text(&mut out, &line.text, encoding);
                if line.bold {
                    out.extend_from_slice(&[ESC, b'E', 0]);
                }
                out.push(b'\n');
            }
            Block::Qr(data) => qr(&mut out, &data, if cols <= 32 { 4 } else { 6 }),
        }
    }
    // Feed past the cutter, then a partial cut.
    out.extend_from_slice(&[GS, b'V', 66, 3]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_page_858_has_128_characters_and_the_euro() {
        assert_eq!(CP858_HIGH.chars().count(), 128);
        assert_eq!(cp858('€'), 0xd5);
        assert_eq!(cp858('é'), 0x82);
        assert_eq!(cp858('ß'), 0xe1);
        assert_eq!(cp858('Ç'), 0x80);
        assert_eq!(cp858('\u{a0}'), 0xff);
        assert_eq!(cp858('漢'), b'?');
        assert_eq!(cp858('A'), b'A');
        let mut out = Vec::new();
        text(&mut out, "漢字 é", Encoding::Cp858);
        assert_eq!(out, b"???? \x82", "two columns each, as laid out");
    }

    #[test]
    fn qr_commands_carry_their_lengths() {
        let mut out = Vec::new();
        qr(&mut out, "PP1|x", 6);
        let store = [GS, b'(', b'k', 8, 0, 49, 80, 48];
        let at = out.windows(store.len()).position(|w| w == store).unwrap();
        assert_eq!(&out[at + store.len()..at + store.len() + 5], b"PP1|x");
    }
}
