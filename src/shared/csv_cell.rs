//! CSV cells a spreadsheet will not run: OWASP's rule against formula injection. A cell that
//! starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, which
//! spreadsheets show as text; so does a cell that starts with `'` itself, so that a reader gets
//! every stored value back by removing one leading `'` where there is one. Every CSV the product
//! writes passes its cells through [`safe`].

use std::borrow::Cow;

/// `cell`, with a leading `'` when a spreadsheet would read it as a formula.
pub fn safe(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r', '\'']) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_starts_are_quoted_and_the_rest_kept() {
        for formula in ["=1+1", "+1", "-1", "@sum(A1)", "\tx", "\rx", "'=1"] {
            assert_eq!(safe(formula), format!("'{formula}"));
        }
        for plain in ["kim", "{\"a\":1}", "2026-12-06T10:00:00Z", "12", ""] {
            assert_eq!(safe(plain), plain);
        }
    }
}
