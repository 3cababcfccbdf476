//! A plain printed report as a PDF: a title, header lines, an optional chart, then titled tables
//! whose columns are given in millimetres (A4 portrait). The text is set in the embedded faces of
//! [`super::fonts`] (cut down to what the document prints), so accents, the euro sign, Greek,
//! Cyrillic and CJK print as themselves; a cell is cut to its column (`~`). Charts are vector
//! drawings: columns (a distribution), bars (a ranking, names on the left) or a line (a series).

use printpdf::{
    Color, Line, LinePoint, Mm, Op, PaintMode, PdfDocument, PdfFontHandle, PdfPage, PdfSaveOptions,
    Point, Pt, Rect, Rgb, TextItem, TextRenderingMode, WindingOrder,
};
use unicode_width::UnicodeWidthChar;

use super::fonts::{embed, face_of};

/// One table: a title, its columns (heading, width in mm, right-aligned) and its rows, with an
/// optional totals row printed in bold under a rule.
pub struct Table {
    pub title: String,
    pub columns: Vec<(&'static str, f32, bool)>,
    pub rows: Vec<Vec<String>>,
    pub totals: Option<Vec<String>>,
}

/// How a chart draws its points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartStyle {
    /// Vertical columns, labels under them (hours, weekdays).
    Columns,
    /// Horizontal bars, labels on the left (a ranking; the first [`MAX_BARS`] points).
    Bars,
    /// A line through the points (a time series).
    Line,
}

/// A chart: its title and `(label, value)` points in order.
pub struct Chart {
    pub title: String,
    pub style: ChartStyle,
    pub points: Vec<(String, f64)>,
}

/// A report.
pub struct Report {
    pub title: String,
    pub header: Vec<String>,
    pub chart: Option<Chart>,
    pub tables: Vec<Table>,
    /// Printed at the foot of every page.
    pub footer: String,
    /// A4 landscape (for tables wider than portrait's 180 mm) instead of portrait.
    pub landscape: bool,
}

/// The width tables may take on a page, in mm.
pub fn usable_width(landscape: bool) -> f32 {
    (if landscape { A4_LONG } else { A4_SHORT }) - 2.0 * MARGIN
}

/// The bars a ranking chart shows.
pub const MAX_BARS: usize = 15;

/// A4, in mm.
const A4_SHORT: f32 = 210.0;
const A4_LONG: f32 = 297.0;
const MARGIN: f32 = 15.0;
const LINE: f32 = 4.6;
const SIZE: f32 = 8.5;
/// The monospaced face advances 0.602 em per column.
const ADVANCE: f32 = 0.602;
const CHART_H: f32 = 62.0;

/// One column at `size` points, in mm.
fn column_mm(size: f32) -> f32 {
    size * ADVANCE * 25.4 / 72.0
}

/// Columns `text` takes (CJK characters take two).
pub fn width(text: &str) -> usize {
    text.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// `text` without control characters, cut to `max` columns (`~` marks the cut).
fn fit(text: &str, max: usize) -> String {
    let clean: String = text.chars().filter(|c| !c.is_control()).collect();
    if width(&clean) <= max {
        return clean;
    }
    let mut out = String::new();
    let mut used = 0;
    for c in clean.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > max {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('~');
    out
}

/// How many columns fit `width_mm` at `size`.
fn fits(width_mm: f32, size: f32) -> usize {
    // Truncation is the intent: a partial character does not fit.
    (width_mm / column_mm(size)).floor() as usize
}

fn grey(level: f32) -> Color {
    Color::Rgb(Rgb::new(level, level, level, None))
}

const BAR: (f32, f32, f32) = (0.22, 0.42, 0.68);

fn point(x: f32, y: f32) -> LinePoint {
    LinePoint {
        p: Point {
            x: Mm(x).into(),
            y: Mm(y).into(),
        },
        bezier: false,
    }
}

/// Pages being written.
struct Pages {
    /// The page's size, in mm.
    width: f32,
    height: f32,
    fonts: Vec<Option<PdfFontHandle>>,
    done: Vec<PdfPage>,
    ops: Vec<Op>,
    y: f32,
    footer: String,
}

impl Pages {
    /// Writes `text` at `(x, y)` in mm, `size` points: runs of the first face in one go, other
    /// characters one by one on their columns, so columns stay aligned.
    fn text(&mut self, x: f32, y: f32, size: f32, bold: bool, text: &str) {
        let column = column_mm(size);
        let mut col = 0usize;
        let mut run = String::new();
        let mut run_start = 0usize;
        let mut pieces: Vec<(usize, usize, String)> = Vec::new();
        for c in text.chars() {
            let w = c.width().unwrap_or(0);
            let face = face_of(c);
            if face == 0 && w == 1 {
                if run.is_empty() {
                    run_start = col;
                }
                run.push(c);
            } else {
                if !run.is_empty() {
                    pieces.push((0, run_start, std::mem::take(&mut run)));
                }
                if w > 0 {
                    pieces.push((face, col, c.to_string()));
                }
            }
            col += w;
        }
        if !run.is_empty() {
            pieces.push((0, run_start, run));
        }
        for (face, at, piece) in pieces {
            self.show(x + at as f32 * column, y, size, bold, face, piece);
        }
    }

    fn show(&mut self, x: f32, y: f32, size: f32, bold: bool, face: usize, text: String) {
        let Some(font) = self.fonts.get(face).cloned().flatten() else {
            return;
        };
        self.ops.push(Op::StartTextSection);
        self.ops.push(Op::SetTextCursor {
            pos: Point {
                x: Mm(x).into(),
                y: Mm(y).into(),
            },
        });
        self.ops.push(Op::SetFont {
            font,
            size: Pt(size),
        });
        if bold {
            // One embedded face, drawn thicker.
            self.ops.push(Op::SetTextRenderingMode {
                mode: TextRenderingMode::FillStroke,
            });
            self.ops.push(Op::SetOutlineThickness {
                pt: Pt(size * 0.04),
            });
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

    fn rule(&mut self, x0: f32, x1: f32, y: f32, color: Color, thickness: f32) {
        self.ops.push(Op::SaveGraphicsState);
        self.ops.push(Op::SetOutlineColor { col: color });
        self.ops.push(Op::SetOutlineThickness { pt: Pt(thickness) });
        self.ops.push(Op::DrawLine {
            line: Line {
                points: vec![point(x0, y), point(x1, y)],
                is_closed: false,
            },
        });
        self.ops.push(Op::RestoreGraphicsState);
    }

    fn bar(&mut self, x: f32, y: f32, w: f32, h: f32) {
        self.ops.push(Op::SaveGraphicsState);
        self.ops.push(Op::SetFillColor {
            col: Color::Rgb(Rgb::new(BAR.0, BAR.1, BAR.2, None)),
        });
        self.ops.push(Op::DrawRectangle {
            rectangle: Rect {
                x: Mm(x).into(),
                y: Mm(y).into(),
                width: Mm(w.max(0.2)).into(),
                height: Mm(h.max(0.2)).into(),
                mode: Some(PaintMode::Fill),
                winding_order: Some(WindingOrder::NonZero),
            },
        });
        self.ops.push(Op::RestoreGraphicsState);
    }

    /// Room for `mm` more, or a new page.
    fn room(&mut self, mm: f32) {
        if self.y - mm < MARGIN + LINE {
            self.finish_page();
            self.y = self.height - MARGIN;
        }
    }

    fn finish_page(&mut self) {
        let n = self.done.len() + 1;
        let footer = fit(&format!("{} - page {n}", self.footer), 130);
        self.text(MARGIN, MARGIN - 7.0, 7.0, false, &footer);
        let ops = std::mem::take(&mut self.ops);
        self.done
            .push(PdfPage::new(Mm(self.width), Mm(self.height), ops));
    }

    fn row(&mut self, columns: &[(&'static str, f32, bool)], cells: &[String], bold: bool) {
        let mut x = MARGIN;
        let y = self.y;
        for ((_, width_mm, right), cell) in columns.iter().zip(cells) {
            let shown = fit(cell, fits(*width_mm, SIZE));
            let at = match right {
                true => x + width_mm - width(&shown) as f32 * column_mm(SIZE),
                false => x,
            };
            self.text(at, y, SIZE, bold, &shown);
            x += width_mm + 2.0;
        }
        self.y -= LINE;
    }

    fn chart(&mut self, chart: &Chart) {
        let points: &[(String, f64)] = match chart.style {
            ChartStyle::Bars => &chart.points[..chart.points.len().min(MAX_BARS)],
            _ => &chart.points,
        };
        let height = match chart.style {
            ChartStyle::Bars => points.len() as f32 * 4.2 + 12.0,
            _ => CHART_H,
        };
        self.y -= 2.0;
        self.room(height + 8.0);
        self.text(MARGIN, self.y, 10.5, true, &fit(&chart.title, 80));
        self.y -= 5.0;
        if points.is_empty() {
            self.text(MARGIN, self.y, SIZE, false, "(nothing to draw)");
            self.y -= LINE;
            return;
        }
        let (lo, hi) = points
            .iter()
            .fold((0f64, 0f64), |(lo, hi), (_, v)| (lo.min(*v), hi.max(*v)));
        let hi = if (hi - lo).abs() < f64::EPSILON {
            lo + 1.0
        } else {
            hi
        };
        match chart.style {
            ChartStyle::Bars => self.bars(points, lo, hi),
            style => self.plot(points, lo, hi, style),
        }
    }

    /// Horizontal bars: the label on the left, the bar and its value to the right.
    fn bars(&mut self, points: &[(String, f64)], lo: f64, hi: f64) {
        let small = 7.0;
        let label_w = 52.0;
        let value_w = 22.0;
        let x0 = MARGIN + label_w + 2.0;
        let x1 = self.width - MARGIN - value_w;
        let scale = (x1 - x0) as f64 / (hi - lo);
        let zero = x0 + ((0.0 - lo) * scale) as f32;
        for (label, value) in points {
            let y = self.y;
            self.text(MARGIN, y, small, false, &fit(label, fits(label_w, small)));
            let end = x0 + ((value - lo) * scale) as f32;
            self.bar(zero.min(end), y - 0.6, (end - zero).abs(), 2.8);
            let shown = short(*value);
            let at = self.width - MARGIN - width(&shown) as f32 * column_mm(small);
            self.text(at, y, small, false, &shown);
            self.y -= 4.2;
        }
        self.rule(zero, zero, self.y + 2.0, grey(0.3), 0.5);
        self.y -= 4.0;
    }

    /// Columns or a line over a value axis with five grid lines.
    fn plot(&mut self, points: &[(String, f64)], lo: f64, hi: f64, style: ChartStyle) {
        let small = 6.5;
        let top = self.y;
        let bottom = top - CHART_H + 12.0;
        let x0 = MARGIN + 18.0;
        let x1 = self.width - MARGIN;
        let scale = (top - bottom) as f64 / (hi - lo);
        let y_of = |v: f64| bottom + ((v - lo) * scale) as f32;
        for step in 0..=4 {
            let v = lo + (hi - lo) * f64::from(step) / 4.0;
            let y = y_of(v);
            self.rule(x0, x1, y, grey(0.82), 0.3);
            let label = short(v);
            let at = x0 - 1.5 - width(&label) as f32 * column_mm(small);
            self.text(at, y - 0.8, small, false, &label);
        }
        let n = points.len();
        let slot = (x1 - x0) / n as f32;
        let zero = y_of(0.0);
        match style {
            ChartStyle::Columns => {
                for (i, (_, v)) in points.iter().enumerate() {
                    let x = x0 + slot * i as f32 + slot * 0.15;
                    let y = y_of(*v);
                    self.bar(x, zero.min(y), slot * 0.7, (y - zero).abs());
                }
            }
            _ => {
                let line: Vec<LinePoint> = points
                    .iter()
                    .enumerate()
                    .map(|(i, (_, v))| point(x0 + slot * (i as f32 + 0.5), y_of(*v)))
                    .collect();
                self.ops.push(Op::SaveGraphicsState);
                self.ops.push(Op::SetOutlineColor {
                    col: Color::Rgb(Rgb::new(BAR.0, BAR.1, BAR.2, None)),
                });
                self.ops.push(Op::SetOutlineThickness { pt: Pt(1.2) });
                self.ops.push(Op::DrawLine {
                    line: Line {
                        points: line,
                        is_closed: false,
                    },
                });
                self.ops.push(Op::RestoreGraphicsState);
            }
        }
        self.rule(x0, x1, zero, grey(0.3), 0.5);
        // Labels under the axis: as many as fit side by side, evenly spaced.
        let longest = points
            .iter()
            .map(|(l, _)| width(l))
            .max()
            .unwrap_or(1)
            .max(1);
        let label_mm = longest.min(12) as f32 * column_mm(small) + 2.0;
        let every = ((label_mm / slot).ceil() as usize).max(1);
        for (i, (label, _)) in points.iter().enumerate().step_by(every) {
            let shown = fit(label, 12);
            let center = x0 + slot * (i as f32 + 0.5);
            let at = center - width(&shown) as f32 * column_mm(small) / 2.0;
            self.text(at.max(MARGIN), bottom - 4.0, small, false, &shown);
        }
        self.y = bottom - 9.0;
    }
}

/// A chart value in few characters: `1234.5` as `1,235`, `12.5` as `12.50`.
fn short(v: f64) -> String {
    if v.abs() >= 100.0 {
        let whole = v.round() as i64;
        let digits = whole.unsigned_abs().to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if whole < 0 {
            format!("-{grouped}")
        } else {
            grouped
        }
    } else {
        format!("{v:.2}")
    }
}

/// Every character `report` prints (the faces are cut down to them).
fn characters(report: &Report) -> String {
    let mut all = String::new();
    all.push_str(&report.title);
    all.push_str(&report.footer);
    all.push_str(" - page 0123456789~(nothing todraw),.-");
    for line in &report.header {
        all.push_str(line);
    }
    if let Some(chart) = &report.chart {
        all.push_str(&chart.title);
        for (label, _) in &chart.points {
            all.push_str(label);
        }
    }
    for table in &report.tables {
        all.push_str(&table.title);
        all.push_str("(none)");
        for (heading, _, _) in &table.columns {
            all.push_str(heading);
        }
        for row in table.rows.iter().chain(table.totals.iter()) {
            for cell in row {
                all.push_str(cell);
            }
        }
    }
    all
}

/// Renders `report` as a PDF document.
pub fn render(report: &Report) -> Vec<u8> {
    let mut doc = PdfDocument::new(&fit(&report.title, 200));
    let fonts = embed(&mut doc, characters(report).chars());
    let pages = layout(report, fonts);
    doc.with_pages(pages)
        .save(&PdfSaveOptions::default(), &mut Vec::new())
}

/// The pages of `report`.
fn layout(report: &Report, fonts: Vec<Option<PdfFontHandle>>) -> Vec<PdfPage> {
    let (width, height) = if report.landscape {
        (A4_LONG, A4_SHORT)
    } else {
        (A4_SHORT, A4_LONG)
    };
    let mut pages = Pages {
        width,
        height,
        fonts,
        done: Vec::new(),
        ops: Vec::new(),
        y: height - MARGIN,
        footer: report.footer.clone(),
    };
    pages.text(MARGIN, pages.y, 15.0, true, &fit(&report.title, 48));
    pages.y -= 8.0;
    for line in &report.header {
        pages.room(LINE);
        let y = pages.y;
        pages.text(MARGIN, y, 9.0, false, &fit(line, 95));
        pages.y -= LINE;
    }
    if let Some(chart) = &report.chart {
        pages.chart(chart);
    }
    for table in &report.tables {
        pages.y -= 3.0;
        pages.room(3.0 * LINE);
        let y = pages.y;
        pages.text(MARGIN, y, 10.5, true, &fit(&table.title, 70));
        pages.y -= LINE + 0.6;
        let headings: Vec<String> = table.columns.iter().map(|c| c.0.to_owned()).collect();
        pages.row(&table.columns, &headings, true);
        if table.rows.is_empty() {
            pages.row(&table.columns, &["(none)".to_owned()], false);
        }
        for row in &table.rows {
            pages.room(LINE);
            pages.row(&table.columns, row, false);
        }
        if let Some(totals) = &table.totals {
            pages.room(2.0 * LINE);
            let right = MARGIN + table.columns.iter().map(|c| c.1 + 2.0).sum::<f32>() - 2.0;
            let y = pages.y + LINE - 1.2;
            pages.rule(MARGIN, right, y, grey(0.3), 0.5);
            pages.row(&table.columns, totals, true);
        }
    }
    pages.finish_page();
    pages.done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rows: usize) -> Report {
        Report {
            title: "Z report".into(),
            header: vec!["Business: Café Ünïcode 漢字 Ωμέγα".into()],
            chart: Some(Chart {
                title: "Gross by day".into(),
                style: ChartStyle::Line,
                points: (0..30)
                    .map(|i| (format!("12-{i:02}"), f64::from(i)))
                    .collect(),
            }),
            tables: vec![Table {
                title: "Rows".into(),
                columns: vec![("Name", 60.0, false), ("Amount", 25.0, true)],
                rows: (0..rows)
                    .map(|i| vec![format!("row {i}"), format!("{i}.00")])
                    .collect(),
                totals: Some(vec!["Total".into(), "1.00".into()]),
            }],
            footer: "footer".into(),
            landscape: false,
        }
    }

    #[test]
    fn a_report_renders_as_a_pdf_with_long_tables_on_more_pages() {
        let report = sample(150);
        let pdf = render(&report);
        assert!(pdf.starts_with(b"%PDF-"));
        // The chart takes the first page's upper part; about 57 rows fit a page.
        let fonts = embed(&mut PdfDocument::new("t"), characters(&report).chars());
        assert_eq!(layout(&report, fonts).len(), 4);
        let count = |pdf: &[u8]| pdf.windows(9).filter(|w| *w == b"/FontFile").count();
        assert_eq!(
            count(&pdf),
            2,
            "the CJK face is embedded beside the main one"
        );
    }

    #[test]
    fn cells_are_cut_to_their_columns_by_width() {
        assert_eq!(fit("Café 漢", 10), "Café 漢");
        assert_eq!(fit("abcdefgh", 5), "abcd~");
        assert_eq!(fit("漢字漢字", 5), "漢字~");
        assert_eq!(fit("a\u{7}b", 5), "ab");
    }

    #[test]
    fn chart_values_are_short() {
        assert_eq!(short(1234.5), "1,235");
        assert_eq!(short(-1_234_567.0), "-1,234,567");
        assert_eq!(short(12.5), "12.50");
    }
}
