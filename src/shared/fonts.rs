//! The faces printed documents embed (their licences are beside them in `fonts/`): DejaVu Sans
//! Mono (Latin, Greek, Cyrillic and more) and, for what it lacks (Chinese, Japanese, Korean),
//! Droid Sans Fallback. A document embeds each face it uses cut down to the characters it prints.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use allsorts::binary::read::ReadScope;
use allsorts::font_data::FontData;
use allsorts::subset::{CmapTarget, SubsetProfile, subset};
use printpdf::{ParsedFont, PdfDocument, PdfFontHandle};

/// In order of preference: the monospaced face, then the fallback for the characters it lacks.
pub const FACES: [&[u8]; 2] = [
    include_bytes!("fonts/DejaVuSansMono.ttf"),
    include_bytes!("fonts/DroidSansFallback.ttf"),
];

/// Face `index`, parsed once.
pub fn face(index: usize) -> Option<&'static ParsedFont> {
    static PARSED: [OnceLock<Option<ParsedFont>>; 2] = [OnceLock::new(), OnceLock::new()];
    PARSED[index]
        .get_or_init(|| ParsedFont::from_bytes(FACES[index], 0, &mut Vec::new()))
        .as_ref()
}

/// The face that draws `c`: the first that has it, else the first (its missing-glyph box).
pub fn face_of(c: char) -> usize {
    (0..FACES.len())
        .find(|&i| face(i).is_some_and(|f| f.lookup_glyph_index(c as u32).is_some_and(|g| g != 0)))
        .unwrap_or(0)
}

/// Face `index` cut down to the glyphs of `chars` (with the missing-glyph one); the whole face
/// should cutting fail.
pub fn subset_of(index: usize, chars: &BTreeSet<char>) -> Option<ParsedFont> {
    let full = face(index)?;
    let mut glyphs: Vec<u16> = chars
        .iter()
        .filter_map(|&c| full.lookup_glyph_index(c as u32))
        .chain([0])
        .collect();
    glyphs.sort_unstable();
    glyphs.dedup();
    let cut = ReadScope::new(FACES[index])
        .read::<FontData<'_>>()
        .ok()
        .and_then(|data| data.table_provider(0).ok())
        .and_then(|provider| {
            subset(&provider, &glyphs, &SubsetProfile::Pdf, CmapTarget::Unicode).ok()
        })
        .and_then(|bytes| ParsedFont::from_bytes(&bytes, 0, &mut Vec::new()));
    cut.or_else(|| Some(full.clone()))
}

/// Adds to `doc` the faces that draw `chars`, each cut down to them: by face index, a handle
/// for each face used (the first face always, for what no face has).
pub fn embed(
    doc: &mut PdfDocument,
    chars: impl IntoIterator<Item = char>,
) -> Vec<Option<PdfFontHandle>> {
    let mut used: Vec<BTreeSet<char>> = vec![BTreeSet::new(); FACES.len()];
    for c in chars {
        used[face_of(c)].insert(c);
    }
    used.iter()
        .enumerate()
        .map(|(index, chars)| match (index, chars.is_empty()) {
            (0, _) | (_, false) => Some(match subset_of(index, chars) {
                Some(parsed) => PdfFontHandle::External(doc.add_font(&parsed)),
                // The bundled faces parse (a unit test says so); should one not, Courier.
                None => PdfFontHandle::Builtin(printpdf::BuiltinFont::Courier),
            }),
            _ => None,
        })
        .collect()
}
