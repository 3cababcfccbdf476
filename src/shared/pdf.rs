//! A plain printed report as a PDF: a title, header lines, then titled tables whose columns are
//! given in millimetres (A4 portrait). Uses the 14 built-in PDF fonts, so nothing is embedded;
//! characters outside Latin-1 are shown as `?`, and a cell is cut to its column (`~`).

use printpdf::{
    BuiltinFont, Mm, Op, PdfDocument, PdfFontHandle, PdfPage, PdfSaveOptions, Point, Pt, TextItem,
};

/// One table: a title, its columns (heading, width in mm, right-aligned) and its rows.
pub struct Table {
    pub title: String,
    pub columns: Vec<(&'static str, f32, bool)>,
    pub rows: Vec<Vec<String>>,
}

/// A report.
pub struct Report {
    pub title: String,
    pub header: Vec<String>,
    pub tables: Vec<Table>,
    /// Printed at the foot of every page.
    pub footer: String,
}

const PAGE_W: f32 = 210.0;
const PAGE_H: f32 = 297.0;
const MARGIN: f32 = 15.0;
const LINE: f32 = 4.6;
const SIZE: f32 = 8.5;
/// Width of one Courier character at SIZE, in mm (Courier advances 0.6 em).
const CHAR_MM: f32 = SIZE * 0.6 * 25.4 / 72.0;

fn latin1(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if (c as u32) < 256 && !c.is_control() {
                c
            } else {
                '?'
            }
        })
        .collect();
    if out.chars().count() > max {
        out = out.chars().take(max.saturating_sub(1)).collect::<String>() + "~";
    }
    out
}

fn fits(width_mm: f32) -> usize {
    // Truncation is the intent: a partial character does not fit.
    (width_mm / CHAR_MM).floor() as usize
}

fn text(ops: &mut Vec<Op>, x: f32, y: f32, font: BuiltinFont, size: f32, content: String) {
    ops.push(Op::StartTextSection);
    ops.push(Op::SetTextCursor {
        pos: Point {
            x: Mm(x).into(),
            y: Mm(y).into(),
        },
    });
    ops.push(Op::SetFont {
        font: PdfFontHandle::Builtin(font),
        size: Pt(size),
    });
    ops.push(Op::ShowText {
        items: vec![TextItem::Text(content)],
    });
    ops.push(Op::EndTextSection);
}

/// Pages being written.
struct Pages {
    done: Vec<PdfPage>,
    ops: Vec<Op>,
    y: f32,
    footer: String,
}

impl Pages {
    /// Room for `lines` more lines, or a new page.
    fn room(&mut self, lines: f32) {
        if self.y - lines * LINE < MARGIN + LINE {
            self.finish_page();
            self.y = PAGE_H - MARGIN;
        }
    }

    fn finish_page(&mut self) {
        let n = self.done.len() + 1;
        let footer = latin1(&format!("{} - page {n}", self.footer), 110);
        text(
            &mut self.ops,
            MARGIN,
            MARGIN - 7.0,
            BuiltinFont::Helvetica,
            7.0,
            footer,
        );
        let ops = std::mem::take(&mut self.ops);
        self.done.push(PdfPage::new(Mm(PAGE_W), Mm(PAGE_H), ops));
    }

    fn row(&mut self, columns: &[(&'static str, f32, bool)], cells: &[String], font: BuiltinFont) {
        let mut x = MARGIN;
        for ((_, width, right), cell) in columns.iter().zip(cells) {
            let shown = latin1(cell, fits(*width));
            let at = match right {
                // Courier: every character is CHAR_MM wide.
                true => x + width - shown.chars().count() as f32 * CHAR_MM,
                false => x,
            };
            text(&mut self.ops, at, self.y, font, SIZE, shown);
            x += width + 2.0;
        }
        self.y -= LINE;
    }
}

/// Renders `report` as a PDF document.
pub fn render(report: &Report) -> Vec<u8> {
    let mut doc = PdfDocument::new(&latin1(&report.title, 200));
    let mut warnings = Vec::new();
    doc.with_pages(layout(report))
        .save(&PdfSaveOptions::default(), &mut warnings)
}

/// The pages of `report`.
fn layout(report: &Report) -> Vec<PdfPage> {
    let mut pages = Pages {
        done: Vec::new(),
        ops: Vec::new(),
        y: PAGE_H - MARGIN,
        footer: report.footer.clone(),
    };
    text(
        &mut pages.ops,
        MARGIN,
        pages.y,
        BuiltinFont::HelveticaBold,
        15.0,
        latin1(&report.title, 70),
    );
    pages.y -= 8.0;
    for line in &report.header {
        pages.room(1.0);
        text(
            &mut pages.ops,
            MARGIN,
            pages.y,
            BuiltinFont::Helvetica,
            9.0,
            latin1(line, 110),
        );
        pages.y -= LINE;
    }
    for table in &report.tables {
        pages.y -= 3.0;
        pages.room(3.0);
        text(
            &mut pages.ops,
            MARGIN,
            pages.y,
            BuiltinFont::HelveticaBold,
            10.5,
            latin1(&table.title, 90),
        );
        pages.y -= LINE + 0.6;
        let headings: Vec<String> = table.columns.iter().map(|c| c.0.to_owned()).collect();
        pages.row(&table.columns, &headings, BuiltinFont::CourierBold);
        if table.rows.is_empty() {
            pages.row(&table.columns, &["(none)".to_owned()], BuiltinFont::Courier);
        }
        for row in &table.rows {
            pages.room(1.0);
            pages.row(&table.columns, row, BuiltinFont::Courier);
        }
    }
    pages.finish_page();
    pages.done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_renders_as_a_pdf_with_long_tables_on_more_pages() {
        let report = Report {
            title: "Z report".into(),
            header: vec!["Business: Café Ünïcode 漢字".into()],
            tables: vec![Table {
                title: "Rows".into(),
                columns: vec![("Name", 60.0, false), ("Amount", 25.0, true)],
                rows: (0..150)
                    .map(|i| vec![format!("row {i}"), format!("{i}.00")])
                    .collect(),
            }],
            footer: "footer".into(),
        };
        assert!(render(&report).starts_with(b"%PDF-"));
        // About 57 rows fit a page.
        assert_eq!(layout(&report).len(), 3);
    }

    #[test]
    fn text_outside_latin1_is_replaced_and_long_cells_are_cut() {
        assert_eq!(latin1("Café 漢", 10), "Café ?");
        assert_eq!(latin1("abcdefgh", 5), "abcd~");
    }
}
