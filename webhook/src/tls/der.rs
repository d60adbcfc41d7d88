//! Just enough X.509 DER reading to sign with a CA certificate read from disk.
//!
//! rcgen can only rebuild an issuer from an existing certificate with its
//! `x509-parser` feature, which this build does not enable (one more parser in
//! the graph for a few fields). Signing needs three things from the CA
//! certificate: its subject name (copied into every issued certificate's
//! issuer field, byte for byte, or clients cannot chain), its public key (to
//! check the CA key belongs to it) and its subject key identifier (for the
//! authority key identifier of issued certificates). This module walks the
//! DER to those fields and no further; `GeneratedCa::from_pem` re-encodes the
//! subject with rcgen and refuses any name that does not come out identical.

use rcgen::string::{BmpString, Ia5String, PrintableString, TeletexString, UniversalString};
use rcgen::{DistinguishedName, DnType, DnValue};

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const EXPLICIT_VERSION: u8 = 0xa0;
const EXPLICIT_EXTENSIONS: u8 = 0xa3;
/// 2.5.29.14, id-ce-subjectKeyIdentifier, as encoded content octets.
const SUBJECT_KEY_IDENTIFIER: &[u8] = &[0x55, 0x1d, 0x0e];
/// 2.5.29.19, id-ce-basicConstraints.
const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];

/// The fields of a certificate needed to sign with it.
#[derive(Debug)]
pub(crate) struct CertFields<'a> {
    /// The whole subject `Name` element (tag and length included).
    pub subject: &'a [u8],
    /// The whole `SubjectPublicKeyInfo` element.
    pub spki: &'a [u8],
    /// The key identifier from the subject key identifier extension.
    pub subject_key_id: Option<&'a [u8]>,
    /// Whether basic constraints say `cA: TRUE`.
    pub is_ca: bool,
    /// The end of the validity period, in seconds since the Unix epoch.
    pub not_after: i64,
}

/// One DER element: its tag, its contents, and the whole encoding.
struct Element<'a> {
    tag: u8,
    contents: &'a [u8],
    whole: &'a [u8],
}

/// Reads the element at the start of `input`, returning it and what follows.
fn next(input: &[u8]) -> Result<(Element<'_>, &[u8]), String> {
    let (&tag, rest) = input.split_first().ok_or("truncated DER: expected an element")?;
    if tag & 0x1f == 0x1f {
        return Err(format!("unsupported multi-byte DER tag {tag:#04x}"));
    }
    let (&first, mut rest) = rest.split_first().ok_or("truncated DER: missing length")?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return Err("invalid DER length".into());
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes.iter().fold(0usize, |len, &byte| (len << 8) | usize::from(byte))
    };
    if rest.len() < len {
        return Err("truncated DER: element longer than its input".into());
    }
    let header = input.len() - rest.len();
    let (contents, rest) = rest.split_at(len);
    let element = Element {
        tag,
        contents,
        whole: &input[..header + len],
    };
    Ok((element, rest))
}

/// Reads an element that must carry `tag`.
fn expect<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<(Element<'a>, &'a [u8]), String> {
    let (element, rest) = next(input)?;
    if element.tag != tag {
        return Err(format!(
            "expected {what} (tag {tag:#04x}), found tag {:#04x}",
            element.tag
        ));
    }
    Ok((element, rest))
}

/// Walks `Certificate → TBSCertificate` to the subject, key and extensions.
pub(crate) fn cert_fields(der: &[u8]) -> Result<CertFields<'_>, String> {
    let (certificate, _) = expect(der, SEQUENCE, "Certificate")?;
    let (tbs, _) = expect(certificate.contents, SEQUENCE, "TBSCertificate")?;
    let mut rest = tbs.contents;
    if rest.first() == Some(&EXPLICIT_VERSION) {
        rest = next(rest)?.1;
    }
    rest = next(rest)?.1; // serialNumber
    rest = expect(rest, SEQUENCE, "signature algorithm")?.1;
    rest = expect(rest, SEQUENCE, "issuer")?.1;
    let (validity, rest) = expect(rest, SEQUENCE, "validity")?;
    let (_not_before, not_after) = next(validity.contents)?;
    let not_after = time(&next(not_after)?.0)?;
    let (subject, after) = expect(rest, SEQUENCE, "subject")?;
    let (spki, mut rest) = expect(after, SEQUENCE, "subjectPublicKeyInfo")?;
    let mut fields = CertFields {
        subject: subject.whole,
        spki: spki.whole,
        subject_key_id: None,
        is_ca: false,
        not_after,
    };
    while !rest.is_empty() {
        let (element, after) = next(rest)?;
        rest = after;
        if element.tag != EXPLICIT_EXTENSIONS {
            continue; // issuerUniqueID, subjectUniqueID
        }
        let (extensions, _) = expect(element.contents, SEQUENCE, "extensions")?;
        let mut list = extensions.contents;
        while !list.is_empty() {
            let (extension, after) = expect(list, SEQUENCE, "extension")?;
            list = after;
            let (oid, mut value) = expect(extension.contents, OID, "extension id")?;
            if value.first() == Some(&BOOLEAN) {
                value = next(value)?.1; // critical
            }
            let (value, _) = expect(value, OCTET_STRING, "extension value")?;
            if oid.contents == SUBJECT_KEY_IDENTIFIER {
                fields.subject_key_id = Some(expect(value.contents, OCTET_STRING, "key identifier")?.0.contents);
            } else if oid.contents == BASIC_CONSTRAINTS {
                let (constraints, _) = expect(value.contents, SEQUENCE, "basic constraints")?;
                fields.is_ca = match constraints.contents.first() {
                    Some(&BOOLEAN) => next(constraints.contents)?.0.contents.iter().any(|&byte| byte != 0),
                    _ => false,
                };
            }
        }
    }
    Ok(fields)
}

/// Decodes a UTCTime or GeneralizedTime (whole seconds, UTC, as RFC 5280
/// requires) into seconds since the Unix epoch.
fn time(element: &Element<'_>) -> Result<i64, String> {
    let text = std::str::from_utf8(element.contents).map_err(|_| "invalid certificate time")?;
    let digits = text
        .strip_suffix('Z')
        .filter(|digits| digits.bytes().all(|byte| byte.is_ascii_digit()));
    let (year, rest) = match (element.tag, digits) {
        (UTC_TIME, Some(digits)) if digits.len() == 12 => {
            let year: i64 = digits[..2].parse().map_err(|_| "invalid certificate time")?;
            (if year >= 50 { 1900 + year } else { 2000 + year }, &digits[2..])
        }
        (GENERALIZED_TIME, Some(digits)) if digits.len() == 14 => (
            digits[..4].parse().map_err(|_| "invalid certificate time")?,
            &digits[4..],
        ),
        _ => return Err(format!("unsupported certificate time {text:?}")),
    };
    let field = |index: usize| -> i64 { rest[index * 2..index * 2 + 2].parse().unwrap_or(0) };
    let (month, day) = (field(0), field(1));
    // Days from the civil date (Howard Hinnant's algorithm).
    let shifted = if month <= 2 { year - 1 } else { year };
    let era = shifted.div_euclid(400);
    let year_of_era = shifted - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Ok(days * 86_400 + field(2) * 3_600 + field(3) * 60 + field(4))
}

/// Decodes a `Name` element into rcgen's form, one attribute per RDN.
pub(crate) fn distinguished_name(name: &[u8]) -> Result<DistinguishedName, String> {
    let (name, _) = expect(name, SEQUENCE, "Name")?;
    let mut dn = DistinguishedName::new();
    let mut rdns = name.contents;
    while !rdns.is_empty() {
        let (rdn, after) = expect(rdns, SET, "RelativeDistinguishedName")?;
        rdns = after;
        let (attribute, others) = expect(rdn.contents, SEQUENCE, "AttributeTypeAndValue")?;
        if !others.is_empty() {
            return Err("multi-valued name attributes are not supported".into());
        }
        let (oid, value) = expect(attribute.contents, OID, "attribute type")?;
        let (value, _) = next(value)?;
        dn.push(DnType::from_oid(&oid_arcs(oid.contents)?), dn_value(&value)?);
    }
    Ok(dn)
}

fn dn_value(value: &Element<'_>) -> Result<DnValue, String> {
    let text = || std::str::from_utf8(value.contents).map_err(|_| "a name attribute is not valid text".to_owned());
    let invalid = |error: rcgen::Error| format!("a name attribute cannot be re-encoded: {error}");
    Ok(match value.tag {
        0x0c => DnValue::Utf8String(text()?.to_owned()),
        0x13 => DnValue::PrintableString(PrintableString::try_from(text()?).map_err(invalid)?),
        0x16 => DnValue::Ia5String(Ia5String::try_from(text()?).map_err(invalid)?),
        0x14 => DnValue::TeletexString(TeletexString::try_from(text()?).map_err(invalid)?),
        0x1e => DnValue::BmpString(BmpString::from_utf16be(value.contents.to_vec()).map_err(invalid)?),
        0x1c => DnValue::UniversalString(UniversalString::from_utf32be(value.contents.to_vec()).map_err(invalid)?),
        tag => return Err(format!("unsupported name attribute string type (tag {tag:#04x})")),
    })
}

/// Decodes the contents of an OBJECT IDENTIFIER into its arcs.
fn oid_arcs(contents: &[u8]) -> Result<Vec<u64>, String> {
    let mut values = Vec::new();
    let mut value: u64 = 0;
    for (index, &byte) in contents.iter().enumerate() {
        if value > u64::MAX >> 7 {
            return Err("object identifier arc too large".into());
        }
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            values.push(value);
            value = 0;
        } else if index + 1 == contents.len() {
            return Err("truncated object identifier".into());
        }
    }
    let (&first, rest) = values.split_first().ok_or("empty object identifier")?;
    let top = (first / 40).min(2);
    let mut arcs = vec![top, first - 40 * top];
    arcs.extend_from_slice(rest);
    Ok(arcs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_identifiers_decode_to_arcs() {
        assert_eq!(oid_arcs(&[0x55, 0x04, 0x03]).unwrap(), [2, 5, 4, 3]);
        assert_eq!(
            oid_arcs(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]).unwrap(),
            [1, 2, 840, 113549]
        );
        assert!(oid_arcs(&[0x2a, 0x86]).is_err());
        assert!(oid_arcs(&[]).is_err());
    }

    #[test]
    fn certificate_times_decode_to_unix_seconds() {
        let utc = |text: &str| {
            time(&Element {
                tag: UTC_TIME,
                contents: text.as_bytes(),
                whole: &[],
            })
        };
        let generalized = |text: &str| {
            time(&Element {
                tag: GENERALIZED_TIME,
                contents: text.as_bytes(),
                whole: &[],
            })
        };
        assert_eq!(utc("700101000000Z").unwrap(), 0);
        assert_eq!(utc("260301123456Z").unwrap(), 1_772_368_496);
        assert_eq!(utc("491231235959Z").unwrap(), 2_524_607_999);
        assert_eq!(generalized("20500101000000Z").unwrap(), 2_524_608_000);
        assert!(utc("2601011200Z").is_err());
        assert!(generalized("20500101000000+0100").is_err());
    }

    #[test]
    fn lengths_are_checked() {
        assert!(next(&[0x30, 0x05, 0x01]).is_err());
        assert!(next(&[0x30, 0x80]).is_err());
        let (element, rest) = next(&[0x04, 0x81, 0x01, 0xaa, 0xbb]).unwrap();
        assert_eq!((element.tag, element.contents, rest), (0x04, &[0xaa][..], &[0xbb][..]));
        assert_eq!(element.whole, &[0x04, 0x81, 0x01, 0xaa]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(cert_fields(b"").is_err());
        assert!(cert_fields(b"\x30\x03\x02\x01\x01").is_err());
        assert!(distinguished_name(b"\x30\x02\x31\x00").is_err());
    }
}
