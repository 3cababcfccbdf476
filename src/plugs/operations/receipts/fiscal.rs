//! The fiscal block's QR text (format `PP1`, docs/api.md "Receipts"): what it says, signing it
//! with the instance key and reading it back. Pure.
//!
//! The text is eleven fields separated by `|`:
//! `PP1|tax id|register code|kind|number|time|total|taxes|audit seq|audit hash|signature`.
//! `kind` is `S` (sale), `R` (return) or `V` (void); `time` is UTC, `YYYY-MM-DDTHH:MM:SSZ`;
//! `taxes` is `rate:gross:tax` per rate, rates ascending, joined by `,`; the audit hash is the
//! 64 hex digits of the document's audit record's chain hash; the signature is ed25519 by the
//! instance key over the UTF-8 bytes of everything before it (up to and including the last `|`),
//! in unpadded base64url. In a field, `%` and `|` are written `%25` and `%7C`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

/// The format's name, its first field.
pub const FORMAT: &str = "PP1";

/// What the QR code states, the signature aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    pub tax_id: String,
    pub register: String,
    /// `S`, `R` or `V`.
    pub kind: char,
    pub number: String,
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub time: String,
    pub total: String,
    /// (rate, gross, tax), rates ascending.
    pub taxes: Vec<(String, String, String)>,
    pub audit_seq: i64,
    /// 64 hex digits.
    pub audit_hash: String,
}

/// The names of the fields, in order, for messages naming the ones that differ.
pub const FIELD_NAMES: [&str; 9] = [
    "tax_id",
    "register",
    "kind",
    "number",
    "time",
    "total",
    "taxes",
    "audit_seq",
    "audit_hash",
];

fn escape(field: &str) -> String {
    field.replace('%', "%25").replace('|', "%7C")
}

fn unescape(field: &str) -> String {
    field
        .replace("%7C", "|")
        .replace("%7c", "|")
        .replace("%25", "%")
}

impl Fields {
    /// The signed part: `PP1|...|audit hash|`.
    pub fn signed_text(&self) -> String {
        let taxes: Vec<String> = self
            .taxes
            .iter()
            .map(|(rate, gross, tax)| format!("{rate}:{gross}:{tax}"))
            .collect();
        let fields = [
            FORMAT.to_owned(),
            escape(&self.tax_id),
            escape(&self.register),
            self.kind.to_string(),
            escape(&self.number),
            escape(&self.time),
            escape(&self.total),
            escape(&taxes.join(",")),
            self.audit_seq.to_string(),
            escape(&self.audit_hash),
        ];
        format!("{}|", fields.join("|"))
    }

    /// The QR text, signed by `key`.
    pub fn sign(&self, key: &SigningKey) -> String {
        let signed = self.signed_text();
        let signature = key.sign(signed.as_bytes());
        format!("{signed}{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    /// The names of the fields where `other` differs.
    pub fn differences(&self, other: &Fields) -> Vec<&'static str> {
        let mine = self.parts();
        let theirs = other.parts();
        FIELD_NAMES
            .iter()
            .zip(mine.iter().zip(theirs.iter()))
            .filter(|(_, (a, b))| a != b)
            .map(|(name, _)| *name)
            .collect()
    }

    fn parts(&self) -> Vec<String> {
        let signed = self.signed_text();
        signed
            .trim_end_matches('|')
            .split('|')
            .skip(1)
            .map(str::to_owned)
            .collect()
    }
}

/// A QR text read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    pub fields: Fields,
    /// The bytes the signature is over.
    pub signed_text: String,
    pub signature: Vec<u8>,
}

/// Reads a QR text; the error says what is wrong with it in one line.
pub fn parse(text: &str) -> Result<Scanned, String> {
    let text = text.trim();
    let parts: Vec<&str> = text.split('|').collect();
    if parts.first() != Some(&FORMAT) {
        return Err(format!(
            "not a {FORMAT} receipt code (it must start with \"{FORMAT}|\")"
        ));
    }
    if parts.len() != 11 {
        return Err(format!(
            "a {FORMAT} receipt code has 11 fields separated by |, this one has {}",
            parts.len()
        ));
    }
    let kind = match parts[3] {
        "S" => 'S',
        "R" => 'R',
        "V" => 'V',
        other => return Err(format!("unknown document kind {other:?} (S, R or V)")),
    };
    let audit_seq: i64 = parts[8]
        .parse()
        .map_err(|_| format!("the audit sequence number {:?} is not a number", parts[8]))?;
    let taxes_text = unescape(parts[7]);
    let mut taxes = Vec::new();
    for bucket in taxes_text.split(',').filter(|b| !b.is_empty()) {
        let mut it = bucket.split(':');
        match (it.next(), it.next(), it.next(), it.next()) {
            (Some(rate), Some(gross), Some(tax), None) => {
                taxes.push((rate.to_owned(), gross.to_owned(), tax.to_owned()));
            }
            _ => return Err(format!("the tax field {bucket:?} is not rate:gross:tax")),
        }
    }
    let signature = URL_SAFE_NO_PAD
        .decode(parts[10])
        .ok()
        .filter(|s| s.len() == 64)
        .ok_or("the signature is not 64 bytes of unpadded base64url")?;
    let cut = text.len() - parts[10].len();
    Ok(Scanned {
        fields: Fields {
            tax_id: unescape(parts[1]),
            register: unescape(parts[2]),
            kind,
            number: unescape(parts[4]),
            time: unescape(parts[5]),
            total: unescape(parts[6]),
            taxes,
            audit_seq,
            audit_hash: unescape(parts[9]),
        },
        signed_text: text[..cut].to_owned(),
        signature,
    })
}

impl Scanned {
    /// Does the signature hold under `key` (hex or bytes of the instance's public key)?
    pub fn signed_by(&self, key: &[u8]) -> bool {
        let Ok(key) = <[u8; 32]>::try_from(key) else {
            return false;
        };
        let Ok(key) = VerifyingKey::from_bytes(&key) else {
            return false;
        };
        let Ok(signature) = <[u8; 64]>::try_from(self.signature.as_slice()) else {
            return false;
        };
        key.verify(
            self.signed_text.as_bytes(),
            &Signature::from_bytes(&signature),
        )
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        Fields {
            tax_id: "DE 123|456%".into(),
            register: "R1".into(),
            kind: 'S',
            number: "R1-2026-000001".into(),
            time: "2026-12-06T14:03:22Z".into(),
            total: "12.30".into(),
            taxes: vec![
                ("0.07".into(), "2.14".into(), "0.14".into()),
                ("0.19".into(), "10.16".into(), "1.62".into()),
            ],
            audit_seq: 42,
            audit_hash: "ab".repeat(32),
        }
    }

    #[test]
    fn a_signed_code_reads_back_and_verifies_and_a_changed_field_does_not() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let text = fields().sign(&key);
        assert!(text.starts_with(
            "PP1|DE 123%7C456%25|R1|S|R1-2026-000001|2026-12-06T14:03:22Z|12.30|0.07:2.14:0.14,0.19:10.16:1.62|42|abab"
        ));
        let scanned = parse(&text).unwrap();
        assert_eq!(scanned.fields, fields());
        let public = key.verifying_key().to_bytes();
        assert!(scanned.signed_by(&public));
        let altered = parse(&text.replace("|12.30|", "|12.31|")).unwrap();
        assert!(!altered.signed_by(&public));
        assert_eq!(altered.fields.differences(&fields()), vec!["total"]);
        let other = SigningKey::from_bytes(&[8u8; 32])
            .verifying_key()
            .to_bytes();
        assert!(!scanned.signed_by(&other));
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert!(parse("hello").unwrap_err().contains("PP1"));
        assert!(parse("PP1|a|b").unwrap_err().contains("11 fields"));
        let text = fields().sign(&SigningKey::from_bytes(&[7u8; 32]));
        assert!(
            parse(&text.replace("|S|", "|X|"))
                .unwrap_err()
                .contains("kind")
        );
        let cut = &text[..text.len() - 4];
        assert!(parse(cut).unwrap_err().contains("signature"));
    }
}
