//! Text folding for search: lower-case, accents removed ("Crème Brûlée" -> "creme brulee").

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// The search form of `text`.
pub fn fold(text: &str) -> String {
    text.nfkd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accents_and_case_fold_away() {
        assert_eq!(fold("Crème Brûlée"), "creme brulee");
        assert_eq!(fold("ÄPFEL-Saft"), "apfel-saft");
        assert_eq!(fold("ﬁne"), "fine", "compatibility forms too");
    }
}
