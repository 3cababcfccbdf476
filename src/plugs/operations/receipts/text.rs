//! A receipt laid out in monospaced columns: 32 for 58 mm paper, 48 for 80 mm. Widths are
//! display widths (an accented letter takes one column, a CJK character two), long names wrap
//! at spaces, amounts align right. The lines carry their style (bold, centred) so ESC/POS and
//! the A6 PDF render the same layout; `format=text` joins them. Pure.

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::model::Receipt;
use crate::plugs::management::api::customers::InvoiceCustomer;

/// One printed line, padded to the receipt's width when centred.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub text: String,
    pub bold: bool,
}

/// What a receipt is made of, top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    Line(Line),
    /// The QR code of this text.
    Qr(String),
}

/// Columns for a paper width in millimetres (58 or 80).
pub fn columns(width_mm: u32) -> usize {
    if width_mm == 58 { 32 } else { 48 }
}

/// Display width.
pub fn width(text: &str) -> usize {
    UnicodeWidthStr::width(text)
}

/// `text` cut into lines of at most `cols` columns, at spaces where it can; its leading spaces
/// indent every line.
pub fn wrap(text: &str, cols: usize) -> Vec<String> {
    let rest = text.trim_start_matches(' ');
    let indent = text.len() - rest.len();
    if indent > 0 && indent < cols {
        let pad = " ".repeat(indent);
        return wrap(rest, cols - indent)
            .into_iter()
            .map(|l| format!("{pad}{l}"))
            .collect();
    }
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let sep = usize::from(!line.is_empty());
        if width(&line) + sep + width(word) <= cols {
            if sep == 1 {
                line.push(' ');
            }
            line.push_str(word);
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        // A word wider than a line is cut, character by character.
        for c in word.chars() {
            let w = c.width().unwrap_or(0);
            if width(&line) + w > cols {
                lines.push(std::mem::take(&mut line));
            }
            line.push(c);
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// `left` and `right` on one line, `right` ending at column `cols`; when both do not fit,
/// `left` wraps above and `right` stands alone on the last line.
pub fn two(left: &str, right: &str, cols: usize) -> Vec<String> {
    let right_w = width(right);
    let room = cols.saturating_sub(right_w + 1);
    let mut lefts = wrap(left, room.max(1));
    let last = lefts.pop().unwrap_or_default();
    let mut out = lefts;
    let pad = cols.saturating_sub(width(&last) + right_w);
    out.push(format!("{last}{}{right}", " ".repeat(pad)));
    out
}

fn centre(text: &str, cols: usize) -> Vec<String> {
    wrap(text, cols)
        .into_iter()
        .map(|l| {
            let pad = cols.saturating_sub(width(&l)) / 2;
            format!("{}{l}", " ".repeat(pad))
        })
        .collect()
}

struct Lines {
    cols: usize,
    blocks: Vec<Block>,
}

impl Lines {
    /// Adds `lines`; a control character (from a product name, say) becomes `?`, so no text can
    /// send a printer a command or shift the columns.
    fn push(&mut self, lines: Vec<String>, bold: bool) {
        self.blocks.extend(lines.into_iter().map(|text| {
            let text: String = text
                .trim_end()
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect();
            Block::Line(Line { text, bold })
        }));
    }

    fn rule(&mut self) {
        self.push(vec!["-".repeat(self.cols)], false);
    }
}

fn title(kind: &str) -> &'static str {
    match kind {
        "return" => "Return",
        "void" => "Void",
        _ => "Receipt",
    }
}

/// The layout of `receipt` in `cols` columns: header, lines, totals, tax table, footer, fiscal
/// block.
pub fn layout(receipt: &Receipt, cols: usize) -> Vec<Block> {
    let mut out = Lines {
        cols,
        blocks: Vec::new(),
    };
    if let Some(mark) = &receipt.copy_mark {
        out.push(centre(&format!("*** {mark} ***"), cols), true);
    }
    out.header(receipt);
    out.items(receipt);
    out.totals(receipt);
    out.tax_table(receipt);
    if !receipt.footer.is_empty() {
        out.rule();
        for line in &receipt.footer {
            out.push(centre(line, cols), false);
        }
    }
    out.rule();
    out.fiscal(receipt);
    if let Some(mark) = &receipt.copy_mark {
        out.push(centre(&format!("*** {mark} ***"), cols), true);
    }
    out.blocks
}

impl Lines {
    /// The business, then the document: number, what it corrects, register, cashier, time.
    fn header(&mut self, receipt: &Receipt) {
        let cols = self.cols;
        self.push(centre(&receipt.business.name, cols), true);
        for line in &receipt.business.address {
            self.push(centre(line, cols), false);
        }
        if let Some(tax_id) = &receipt.business.tax_id {
            self.push(centre(&format!("Tax ID {tax_id}"), cols), false);
        }
        self.rule();
        let title = format!("{} {}", title(&receipt.kind), receipt.number);
        self.push(wrap(&title, cols), true);
        if let Some(sale) = &receipt.corrects {
            self.push(wrap(&format!("Corrects receipt {sale}"), cols), false);
        }
        if let Some(reason) = &receipt.reason_code {
            self.push(wrap(&format!("Reason {reason}"), cols), false);
        }
        let register = format!(
            "Register {} {}",
            receipt.register.code, receipt.register.name
        );
        self.push(wrap(&register, cols), false);
        self.push(wrap(&format!("Cashier {}", receipt.cashier), cols), false);
        let time = format!("{} {}", receipt.local_time, receipt.timezone);
        self.push(wrap(&time, cols), false);
        self.rule();
    }

    /// Each line: its name (wrapped), quantity x price with the total and tax letter, its
    /// discounts.
    fn items(&mut self, receipt: &Receipt) {
        let cols = self.cols;
        for line in &receipt.lines {
            self.push(wrap(&line.name, cols), false);
            let left = format!("  {} x {}", line.quantity, line.unit_price);
            let right = format!("{} {}", line.total, line.tax_letter);
            self.push(two(&left, &right, cols), false);
            for discount in &line.discounts {
                let left = format!("    {}", discount.label);
                self.push(two(&left, &format!("{}  ", discount.amount), cols), false);
            }
        }
        self.rule();
    }

    /// Discounts, the total (bold), payments or refunds, cash rounding, change.
    fn totals(&mut self, receipt: &Receipt) {
        let cols = self.cols;
        let nonzero = |amount: &str| {
            amount
                .parse::<rust_decimal::Decimal>()
                .is_ok_and(|d| !d.is_zero())
        };
        if nonzero(&receipt.discount_total) {
            let amount = format!("-{}  ", receipt.discount_total);
            self.push(two("Discounts", &amount, cols), false);
        }
        let label = format!("TOTAL {}", receipt.currency);
        let total = format!("{}  ", receipt.totals.total);
        self.push(two(&label, &total, cols), true);
        let refunds = receipt.kind != "sale";
        for payment in &receipt.payments {
            let label = match refunds {
                true => format!("Refund {}", payment.method),
                false => capitalised(&payment.method),
            };
            self.push(two(&label, &format!("{}  ", payment.amount), cols), false);
        }
        if nonzero(&receipt.cash_rounding) {
            let amount = format!("{}  ", receipt.cash_rounding);
            self.push(two("Cash rounding", &amount, cols), false);
        }
        if !refunds {
            self.push(two("Change", &format!("{}  ", receipt.change), cols), false);
        }
        self.rule();
    }

    /// Net, tax and gross per rate (by letter), then all rates together; when an amount is too
    /// wide for the columns (large amounts on 58 mm paper), one line per figure instead.
    fn tax_table(&mut self, receipt: &Receipt) {
        let amount_w = (self.cols - 8) / 3;
        let totals = &receipt.totals;
        let widest = receipt
            .taxes
            .iter()
            .flat_map(|t| [&t.net, &t.tax, &t.gross])
            .chain([&totals.net, &totals.tax, &totals.total])
            .map(|a| width(a))
            .max()
            .unwrap_or(0);
        if widest + 1 > amount_w {
            let cols = self.cols;
            for tax in &receipt.taxes {
                let rate = format!("Tax {} {}", tax.letter, tax.percent);
                self.push(vec![rate], false);
                for (label, amount) in [
                    ("  Net", &tax.net),
                    ("  Tax", &tax.tax),
                    ("  Gross", &tax.gross),
                ] {
                    self.push(two(label, &format!("{amount}  "), cols), false);
                }
            }
            return;
        }
        let row = |a: &str, b: &str, c: &str, d: &str| {
            let cell = |s: &str| format!("{}{s}", " ".repeat(amount_w.saturating_sub(width(s))));
            let pad = " ".repeat(8usize.saturating_sub(width(a)));
            format!("{a}{pad}{}{}{}", cell(b), cell(c), cell(d))
        };
        self.push(vec![row("Tax", "Net", "Tax", "Gross")], false);
        for tax in &receipt.taxes {
            let rate = format!("{} {}", tax.letter, tax.percent);
            self.push(vec![row(&rate, &tax.net, &tax.tax, &tax.gross)], false);
        }
        let totals = &receipt.totals;
        self.push(
            vec![row("", &totals.net, &totals.tax, &totals.total)],
            false,
        );
    }

    /// The number, register, audit place and the QR code.
    fn fiscal(&mut self, receipt: &Receipt) {
        let cols = self.cols;
        let fiscal = &receipt.fiscal;
        let number = format!("{} {}", title(&receipt.kind), fiscal.receipt_number);
        self.push(wrap(&number, cols), false);
        self.push(wrap(&format!("Register {}", fiscal.register), cols), false);
        let audit = format!("Audit #{} {}", fiscal.audit_seq, fiscal.audit_hash_short);
        self.push(wrap(&audit, cols), false);
        self.blocks.push(Block::Qr(fiscal.qr.clone()));
    }
}

/// Cells of `widths` columns (right-aligned where asked), separated by a space; a cell wider
/// than its column is cut.
fn cells(values: &[(&str, usize, bool)]) -> String {
    let mut out = String::new();
    for (i, (value, w, right)) in values.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let mut shown = String::new();
        for c in value.chars() {
            if width(&shown) + c.width().unwrap_or(0) > *w {
                break;
            }
            shown.push(c);
        }
        let pad = " ".repeat(w.saturating_sub(width(&shown)));
        match right {
            true => out.push_str(&format!("{pad}{shown}")),
            false => out.push_str(&format!("{shown}{pad}")),
        }
    }
    out
}

/// The A4 invoice's layout in `cols` columns (at least 80): the business and the document side
/// by side, a table of lines, the totals, the tax table, payments, footer and fiscal block.
pub fn invoice(receipt: &Receipt, customer: Option<&InvoiceCustomer>, cols: usize) -> Vec<Block> {
    let mut out = Lines {
        cols,
        blocks: Vec::new(),
    };
    if let Some(mark) = &receipt.copy_mark {
        out.push(vec![format!("*** {mark} ***")], true);
    }
    out.invoice_head(receipt);
    if let Some(customer) = customer {
        out.invoice_customer(customer);
    }
    out.invoice_lines(receipt);
    out.invoice_totals(receipt);
    let tax_row = |a: &str, b: &str, c: &str, d: &str| {
        cells(&[(a, 12, false), (b, 14, true), (c, 14, true), (d, 14, true)])
    };
    out.push(vec![tax_row("Tax rate", "Net", "Tax", "Gross")], true);
    for tax in &receipt.taxes {
        let rate = format!("{} {}", tax.letter, tax.percent);
        out.push(vec![tax_row(&rate, &tax.net, &tax.tax, &tax.gross)], false);
    }
    if !receipt.footer.is_empty() {
        out.push(vec![String::new()], false);
        for line in &receipt.footer {
            out.push(wrap(line, cols), false);
        }
    }
    out.push(vec![String::new()], false);
    let fiscal = &receipt.fiscal;
    let place = format!(
        "{} Register {} Audit #{} {}",
        fiscal.receipt_number, fiscal.register, fiscal.audit_seq, fiscal.audit_hash_short
    );
    out.push(wrap(&place, cols), false);
    out.blocks.push(Block::Qr(fiscal.qr.clone()));
    out.blocks
}

impl Lines {
    /// The business (left) and the document (right), side by side.
    fn invoice_head(&mut self, receipt: &Receipt) {
        let cols = self.cols;
        let heading = match receipt.kind.as_str() {
            "sale" => "Invoice",
            _ => "Credit note",
        };
        // The business's lines (up to 48 characters) keep their whole width.
        let half = (cols / 2).max(50).min(cols - 30);
        let mut left = vec![receipt.business.name.clone()];
        left.extend(receipt.business.address.iter().cloned());
        if let Some(tax_id) = &receipt.business.tax_id {
            left.push(format!("Tax ID {tax_id}"));
        }
        let mut right = vec![
            format!("{heading} {}", receipt.number),
            format!("Date {} {}", receipt.local_time, receipt.timezone),
            format!(
                "Register {} {}",
                receipt.register.code, receipt.register.name
            ),
            format!("Cashier {}", receipt.cashier),
        ];
        if let Some(sale) = &receipt.corrects {
            right.push(format!("Corrects receipt {sale}"));
        }
        if let Some(reason) = &receipt.reason_code {
            right.push(format!("Reason {reason}"));
        }
        for i in 0..left.len().max(right.len()) {
            let l = left.get(i).map(String::as_str).unwrap_or("");
            let r = right.get(i).map(String::as_str).unwrap_or("");
            let row = cells(&[(l, half - 1, false), (r, cols - half, false)]);
            self.push(vec![row], i == 0);
        }
        self.push(vec![String::new()], false);
    }

    /// Whom the invoice is for (the customer the document names): name, address, tax id.
    fn invoice_customer(&mut self, customer: &InvoiceCustomer) {
        let cols = self.cols;
        self.push(vec!["Bill to".to_owned()], true);
        let mut lines = wrap(&customer.name, cols);
        for part in customer.address.iter().flat_map(|a| a.split([',', '\n'])) {
            let part = part.trim();
            if !part.is_empty() {
                lines.extend(wrap(part, cols));
            }
        }
        if let Some(tax_id) = &customer.tax_id {
            lines.push(format!("Tax ID {tax_id}"));
        }
        self.push(lines, false);
        self.push(vec![String::new()], false);
    }

    /// The table of lines: description (wrapped), quantity, unit price, total, tax letter.
    fn invoice_lines(&mut self, receipt: &Receipt) {
        let desc = self.cols - (9 + 14 + 14 + 3 + 4);
        let row = |d: &str, q: &str, u: &str, t: &str, x: &str| {
            cells(&[
                (d, desc, false),
                (q, 8, true),
                (u, 13, true),
                (t, 13, true),
                (x, 3, false),
            ])
        };
        let heading = row("Description", "Qty", "Unit price", "Total", "Tax");
        self.push(vec![heading], true);
        self.rule();
        for line in &receipt.lines {
            let mut names = wrap(&line.name, desc);
            let first = names.remove(0);
            let cells = row(
                &first,
                &line.quantity,
                &line.unit_price,
                &line.total,
                &line.tax_letter,
            );
            self.push(vec![cells], false);
            self.push(names, false);
            for discount in &line.discounts {
                let label = format!("  {}", discount.label);
                self.push(vec![row(&label, "", "", &discount.amount, "")], false);
            }
        }
        self.rule();
    }

    /// Net, tax, the total (bold), payments or refunds and change, right-hand side.
    fn invoice_totals(&mut self, receipt: &Receipt) {
        let cols = self.cols;
        let total_row = |label: &str, amount: &str| {
            cells(&[
                ("", cols - 38, false),
                (label, 20, false),
                (amount, 16, true),
            ])
        };
        self.push(vec![total_row("Net", &receipt.totals.net)], false);
        self.push(vec![total_row("Tax", &receipt.totals.tax)], false);
        let label = format!("TOTAL {}", receipt.currency);
        self.push(vec![total_row(&label, &receipt.totals.total)], true);
        for payment in &receipt.payments {
            let label = match receipt.kind.as_str() {
                "sale" => capitalised(&payment.method),
                _ => format!("Refund {}", payment.method),
            };
            self.push(vec![total_row(&label, &payment.amount)], false);
        }
        if receipt.kind == "sale" {
            self.push(vec![total_row("Change", &receipt.change)], false);
        }
        self.push(vec![String::new()], false);
    }
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `format=text`: the layout as lines, the QR code's text printed in full (wrapped) where the
/// code would be, so it can be typed into `plugpos receipt verify`.
pub fn render(receipt: &Receipt, cols: usize) -> String {
    let mut text = String::new();
    for block in layout(receipt, cols) {
        match block {
            Block::Line(line) => text.push_str(&line.text),
            Block::Qr(code) => {
                let chars: Vec<char> = code.chars().collect();
                for (i, chunk) in chars.chunks(cols).enumerate() {
                    if i > 0 {
                        text.push('\n');
                    }
                    text.extend(chunk);
                }
            }
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A return with large amounts, a CJK name and a name carrying a printer command.
    fn large() -> Receipt {
        let amount = "-123456.78";
        serde_json::from_value(serde_json::json!({
            "kind": "return", "document_id": uuid::Uuid::nil(), "number": "R1-2026-R000001",
            "copy": 1, "copy_mark": "COPY 1",
            "business": {"name": "Corner Shop", "address": ["x".repeat(48)], "tax_id": "DE1"},
            "register": {"id": uuid::Uuid::nil(), "code": "R1", "name": "Till"},
            "cashier": "carla", "issued_at": "2026-12-06T10:00:00Z", "local_time": "2026-12-06 11:00:00",
            "timezone": "Europe/Berlin", "currency": "EUR", "corrects": "R1-2026-000001",
            "reason_code": "defective",
            "lines": [
                {"name": "抹茶ケーキ 特選 宇治抹茶使用 期間限定", "sku": "M", "quantity": "-2",
                 "unit_price": "61728.39", "discounts": [], "total": amount, "tax_letter": "A"},
                {"name": "Evil\u{1b}p\u{0}\u{19}name", "sku": "E", "quantity": "-1",
                 "unit_price": "1.00", "discounts": [], "total": "-1.00", "tax_letter": "A"}],
            "discount_total": "0.00",
            "totals": {"net": amount, "tax": amount, "total": amount},
            "taxes": [{"letter": "A", "rate": "0.19", "percent": "19%", "net": amount, "tax": amount, "gross": amount}],
            "payments": [{"method": "cash", "amount": amount}],
            "cash_rounding": "0.00", "change": "0.00", "footer": [],
            "fiscal": {"receipt_number": "R1-2026-R000001", "register": "R1", "audit_seq": 1,
                       "audit_hash": "ab".repeat(32), "audit_hash_short": "ab".repeat(8), "qr": "PP1|x"}
        }))
        .unwrap()
    }

    #[test]
    fn no_line_is_wider_than_the_paper_and_no_name_sends_a_command() {
        let receipt = large();
        for cols in [32, 48] {
            for block in layout(&receipt, cols) {
                if let Block::Line(line) = block {
                    assert!(width(&line.text) <= cols, "{cols}: {:?}", line.text);
                    assert!(!line.text.chars().any(char::is_control), "{:?}", line.text);
                }
            }
        }
        let narrow = render(&receipt, 32);
        assert!(narrow.contains("Tax A 19%"), "stacked on 58 mm:\n{narrow}");
        assert!(narrow.contains("Evil?p??name"));
        for block in invoice(&receipt, None, 90) {
            if let Block::Line(line) = block {
                assert!(width(&line.text) <= 90, "{:?}", line.text);
            }
        }
        let lines: Vec<String> = invoice(&receipt, None, 90)
            .into_iter()
            .filter_map(|b| match b {
                Block::Line(l) => Some(l.text),
                Block::Qr(_) => None,
            })
            .collect();
        assert!(
            lines
                .iter()
                .any(|l| l.ends_with("61728.39    -123456.78 A")),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with(&"x".repeat(48))),
            "the address whole"
        );
    }

    #[test]
    fn wrapping_and_alignment_count_display_columns() {
        assert_eq!(width("Crème brûlée"), 12);
        assert_eq!(width("漢字"), 4);
        assert_eq!(
            wrap("Crème brûlée à la vanille de Madagascar", 16),
            vec!["Crème brûlée à", "la vanille de", "Madagascar"]
        );
        assert_eq!(wrap("漢字漢字漢字", 5), vec!["漢字", "漢字", "漢字"]);
        let lines = two("  2 x 2.50", "5.00 A", 20);
        assert_eq!(lines, vec!["  2 x 2.50    5.00 A"]);
        let lines = two("漢字 x", "5.00 A", 12);
        assert_eq!(lines, vec!["漢字", "x     5.00 A"]);
        assert_eq!(width(&lines[1]), 12);
        let lines = two("a very long label indeed", "12.00", 16);
        assert_eq!(lines, vec!["a very", "long label", "indeed     12.00"]);
        assert!(lines.iter().all(|l| width(l) <= 16));
        assert!(lines.last().unwrap().ends_with("12.00"));
        assert_eq!(columns(58), 32);
        assert_eq!(columns(80), 48);
    }
}
