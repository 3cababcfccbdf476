//! A receipt as a PDF: the A6 receipt (the 48-column layout) or the A4 invoice (a wider layout
//! of the same receipt), the QR code drawn as filled squares. The fonts are embedded, cut down
//! to the characters the document prints: DejaVu Sans Mono (Latin, Greek, Cyrillic and more)
//! and, for what it lacks (Chinese, Japanese, Korean), Droid Sans Fallback.

use printpdf::{
    Mm, Op, PaintMode, PdfDocument, PdfFontHandle, PdfPage, PdfSaveOptions, Point, Pt, Rect,
    TextItem, TextRenderingMode, WindingOrder,
};
use unicode_width::UnicodeWidthChar;

use super::text::{Block, Line};
use crate::shared::fonts::{embed, face_of};

/// A page size and the text on it.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub width_mm: f32,
    pub height_mm: f32,
    pub margin_mm: f32,
    /// Font size in points.
    pub size: f32,
    /// One QR module, in mm.
    pub module_mm: f32,
}

/// A6: room for the 80 mm layout's 48 columns.
pub const A6: Page = Page {
    width_mm: 105.0,
    height_mm: 148.0,
    margin_mm: 6.0,
    size: 8.8,
    module_mm: 0.55,
};

/// A4: room for 90 columns.
pub const A4: Page = Page {
    width_mm: 210.0,
    height_mm: 297.0,
    margin_mm: 18.0,
    size: 9.0,
    module_mm: 0.6,
};

impl Page {
    /// One column (the font advances 0.6 em).
    fn column_mm(self) -> f32 {
        self.size * 0.6 * 25.4 / 72.0
    }

    fn line_mm(self) -> f32 {
        self.size * 1.25 * 25.4 / 72.0
    }

    /// How many columns fit across.
    pub fn columns(self) -> usize {
        // Truncation is the intent: a partial column does not fit.
        ((self.width_mm - 2.0 * self.margin_mm) / self.column_mm()).floor() as usize
    }
}

struct Writer {
    page: Page,
    /// By face; a face the document does not use has none.
    fonts: Vec<Option<PdfFontHandle>>,
    done: Vec<PdfPage>,
    ops: Vec<Op>,
    y: f32,
}

impl Writer {
    fn room(&mut self, mm: f32) {
        if self.y - mm < self.page.margin_mm {
            self.finish();
            self.y = self.page.height_mm - self.page.margin_mm;
        }
    }

    fn finish(&mut self) {
        let ops = std::mem::take(&mut self.ops);
        self.done.push(PdfPage::new(
            Mm(self.page.width_mm),
            Mm(self.page.height_mm),
            ops,
        ));
    }

    fn show(&mut self, x: f32, text: String, bold: bool, face: usize) {
        let Some(font) = self.fonts.get(face).cloned().flatten() else {
            return;
        };
        self.ops.push(Op::StartTextSection);
        self.ops.push(Op::SetTextCursor {
            pos: Point {
                x: Mm(x).into(),
                y: Mm(self.y).into(),
            },
        });
        self.ops.push(Op::SetFont {
            font,
            size: Pt(self.page.size),
        });
        if bold {
            // The one embedded face, drawn thicker.
            self.ops.push(Op::SetTextRenderingMode {
                mode: TextRenderingMode::FillStroke,
            });
            self.ops.push(Op::SetOutlineThickness { pt: Pt(0.35) });
        }
        self.ops.push(Op::ShowText {
            items: vec![TextItem::Text(text)],
        });
        if bold {
            self.ops.push(Op::SetTextRenderingMode {
                mode: TextRenderingMode::Fill,
            });
        }
        self.ops.push(Op::EndTextSection);
    }

    fn line(&mut self, line: &Line) {
        let step = self.page.line_mm();
        self.room(step);
        self.y -= step;
        let column = self.page.column_mm();
        let x0 = self.page.margin_mm;
        if line
            .text
            .chars()
            .all(|c| c.width() == Some(1) && face_of(c) == 0)
        {
            self.show(x0, line.text.clone(), line.bold, 0);
            return;
        }
        // Characters wider than a column (CJK) or from the fallback face are placed one by one,
        // so columns stay aligned.
        let mut col = 0usize;
        for c in line.text.chars() {
            let w = c.width().unwrap_or(0);
            if w > 0 && c != ' ' {
                self.show(
                    x0 + col as f32 * column,
                    c.to_string(),
                    line.bold,
                    face_of(c),
                );
            }
            col += w;
        }
    }

    fn qr(&mut self, data: &str) {
        let Ok(code) = qrcode::QrCode::with_error_correction_level(data, qrcode::EcLevel::M) else {
            return;
        };
        let n = code.width();
        let module = self.page.module_mm;
        let size = n as f32 * module;
        self.room(size + 4.0 * module);
        self.y -= 2.0 * module;
        let left = (self.page.width_mm - size) / 2.0;
        let top = self.y;
        let dark = code.to_colors();
        for row in 0..n {
            let mut col = 0;
            while col < n {
                if dark[row * n + col] != qrcode::Color::Dark {
                    col += 1;
                    continue;
                }
                let start = col;
                while col < n && dark[row * n + col] == qrcode::Color::Dark {
                    col += 1;
                }
                self.ops.push(Op::DrawRectangle {
                    rectangle: Rect {
                        x: Mm(left + start as f32 * module).into(),
                        y: Mm(top - (row + 1) as f32 * module).into(),
                        width: Mm((col - start) as f32 * module).into(),
                        height: Mm(module).into(),
                        mode: Some(PaintMode::Fill),
                        winding_order: Some(WindingOrder::NonZero),
                    },
                });
            }
        }
        self.y = top - size - 2.0 * module;
    }
}

/// `blocks` on pages of `page`, titled `title`.
pub fn render(blocks: &[Block], page: Page, title: &str) -> Vec<u8> {
    let mut doc = PdfDocument::new(title);
    let fonts = embed(
        &mut doc,
        blocks.iter().flat_map(|block| match block {
            Block::Line(line) => line.text.chars().collect::<Vec<_>>(),
            Block::Qr(_) => Vec::new(),
        }),
    );
    let mut writer = Writer {
        page,
        fonts,
        done: Vec::new(),
        ops: Vec::new(),
        y: page.height_mm - page.margin_mm,
    };
    for block in blocks {
        match block {
            Block::Line(line) => writer.line(line),
            Block::Qr(data) => writer.qr(data),
        }
    }
    writer.finish();
    doc.with_pages(writer.done)
        .save(&PdfSaveOptions::default(), &mut Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_faces_parse_and_cover_accents_the_euro_and_cjk() {
        for c in ['é', 'ü', '€', 'ß', 'Ж'] {
            assert_eq!(face_of(c), 0, "{c}");
        }
        for c in ['漢', '字', 'か', '한'] {
            assert_eq!(face_of(c), 1, "{c}");
        }
    }

    #[test]
    fn embedded_faces_are_cut_down_to_what_the_document_prints() {
        let line = |text: &str| {
            Block::Line(Line {
                text: text.into(),
                bold: false,
            })
        };
        let latin = render(&[line("Crème brûlée 4.50")], A6, "t");
        let both = render(
            &[line("Crème brûlée 4.50"), line("抹茶 ケーキ 漢字")],
            A6,
            "t",
        );
        let count = |pdf: &[u8]| pdf.windows(9).filter(|w| *w == b"/FontFile").count();
        assert_eq!(count(&latin), 1);
        assert_eq!(count(&both), 2, "the fallback face is embedded when used");
        // The whole faces are 340 KB and 3.4 MB.
        assert!(latin.len() < 100_000, "{}", latin.len());
        assert!(both.len() < 200_000, "{}", both.len());
    }

    #[test]
    fn pages_fit_their_columns() {
        assert!(A6.columns() >= 48, "{}", A6.columns());
        assert!(A4.columns() >= 90, "{}", A4.columns());
        let blocks = vec![
            Block::Line(Line {
                text: "Crème brûlée 漢字".into(),
                bold: true,
            }),
            Block::Qr("PP1|test".into()),
        ];
        assert!(render(&blocks, A6, "t").starts_with(b"%PDF-"));
    }
}
