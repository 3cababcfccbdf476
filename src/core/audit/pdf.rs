//! The audit log as a readable PDF report: a header (business, period, filters, chain head,
//! verification result) and one row per record. Uses the 14 built-in PDF fonts, so nothing has to
//! be embedded; characters outside Latin-1 are shown as `?`.

use printpdf::{
    BuiltinFont, Mm, Op, PdfDocument, PdfFontHandle, PdfPage, PdfSaveOptions, Point, Pt, TextItem,
};

/// What the report's header says.
pub struct ReportHeader {
    pub business: String,
    pub period: String,
    pub filters: String,
    pub head: String,
    pub verification: String,
    pub generated: String,
}

/// One table row.
pub struct ReportRow {
    pub seq: String,
    pub at: String,
    pub user: String,
    pub action: String,
    pub entity: String,
    pub details: String,
}

const PAGE_W: f32 = 297.0;
const PAGE_H: f32 = 210.0;
const MARGIN: f32 = 12.0;
const LINE: f32 = 4.2;
const FONT_SIZE: f32 = 7.5;
/// Width of one Courier character at FONT_SIZE, in mm (Courier advances 0.6 em).
const CHAR_MM: f32 = FONT_SIZE * 0.6 * 25.4 / 72.0;
/// Column x positions and widths (mm); cells are cut to what fits.
const COLUMNS: [(f32, f32); 6] = [
    (MARGIN, 11.0),
    (MARGIN + 12.0, 44.0),
    (MARGIN + 57.0, 25.0),
    (MARGIN + 83.0, 38.0),
    (MARGIN + 122.0, 52.0),
    (MARGIN + 175.0, PAGE_W - 2.0 * MARGIN - 175.0),
];

fn fits(width_mm: f32) -> usize {
    // Truncation is the intent: a partial character does not fit.
    (width_mm / CHAR_MM).floor() as usize
}

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

fn table_header(ops: &mut Vec<Op>, y: f32) {
    for ((x, width), title) in
        COLUMNS
            .iter()
            .zip(["Seq", "Time (UTC)", "User", "Action", "Entity", "Details"])
    {
        text(
            ops,
            *x,
            y,
            BuiltinFont::HelveticaBold,
            FONT_SIZE,
            latin1(title, fits(*width)),
        );
    }
}

/// Renders the report.
pub fn render(header: &ReportHeader, rows: &[ReportRow]) -> Vec<u8> {
    let mut doc = PdfDocument::new("Audit log");
    let mut pages = Vec::new();
    let mut ops = Vec::new();
    let mut y = PAGE_H - MARGIN;
    text(
        &mut ops,
        MARGIN,
        y,
        BuiltinFont::HelveticaBold,
        14.0,
        latin1(&format!("Audit log - {}", header.business), 90),
    );
    y -= 7.0;
    for line in [
        format!("Period: {}", header.period),
        format!("Filters: {}", header.filters),
        format!("Chain head: {}", header.head),
        format!("Verification: {}", header.verification),
        format!("Generated: {}", header.generated),
        format!("Records: {}", rows.len()),
    ] {
        text(
            &mut ops,
            MARGIN,
            y,
            BuiltinFont::Helvetica,
            9.0,
            latin1(&line, 160),
        );
        y -= 4.8;
    }
    y -= 2.0;
    table_header(&mut ops, y);
    y -= LINE;
    let mut page_no = 1;
    for row in rows {
        if y < MARGIN + LINE {
            text(
                &mut ops,
                PAGE_W - MARGIN - 20.0,
                MARGIN - 6.0,
                BuiltinFont::Helvetica,
                7.0,
                format!("Page {page_no}"),
            );
            pages.push(PdfPage::new(
                Mm(PAGE_W),
                Mm(PAGE_H),
                std::mem::take(&mut ops),
            ));
            page_no += 1;
            y = PAGE_H - MARGIN;
            table_header(&mut ops, y);
            y -= LINE;
        }
        let cells = [
            &row.seq,
            &row.at,
            &row.user,
            &row.action,
            &row.entity,
            &row.details,
        ];
        for ((x, width), cell) in COLUMNS.iter().zip(cells) {
            text(
                &mut ops,
                *x,
                y,
                BuiltinFont::Courier,
                FONT_SIZE,
                latin1(cell, fits(*width)),
            );
        }
        y -= LINE;
    }
    text(
        &mut ops,
        PAGE_W - MARGIN - 20.0,
        MARGIN - 6.0,
        BuiltinFont::Helvetica,
        7.0,
        format!("Page {page_no}"),
    );
    pages.push(PdfPage::new(Mm(PAGE_W), Mm(PAGE_H), ops));
    let mut warnings = Vec::new();
    doc.with_pages(pages)
        .save(&PdfSaveOptions::default(), &mut warnings)
}
