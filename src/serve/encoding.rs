//! `Accept-Encoding` negotiation (RFC 9110 §12.5.3) over the precompressed
//! siblings a file has. Nothing is compressed per request: the bytes were
//! written at build or deploy time, so choosing one costs a header parse.

use crate::site::index::Encoding;

/// Quality in thousandths (0..=1000), so comparisons are exact.
type Quality = u16;

/// Picks the encoding to send, `None` meaning identity.
///
/// An encoding is chosen when the client gives it a non-zero quality at least
/// as high as identity's; ties between encodings go to the server's order
/// (br, zstd, gzip) since they are smaller in that order. Identity is always
/// acceptable unless refused (`identity;q=0` or `*;q=0`) — and even then it is
/// what is sent if nothing else is available, which is the common practice.
pub fn negotiate(
    accept_encoding: Option<&str>,
    available: impl Iterator<Item = Encoding>,
) -> Option<Encoding> {
    let header = accept_encoding?;
    let mut star: Option<Quality> = None;
    let mut identity: Option<Quality> = None;
    let mut explicit: [Option<Quality>; 3] = [None; 3];
    for item in header.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        if coding.is_empty() {
            continue;
        }
        let mut quality = Some(1000);
        for param in parts {
            if let Some((key, value)) = param.split_once('=') {
                if key.trim().eq_ignore_ascii_case("q") {
                    quality = parse_quality(value.trim());
                }
            }
        }
        let Some(quality) = quality else { continue };
        if coding == "*" {
            star = Some(quality);
        } else if coding.eq_ignore_ascii_case("identity") {
            identity = Some(quality);
        } else if let Some(i) = Encoding::ALL
            .iter()
            .position(|e| coding.eq_ignore_ascii_case(e.token()))
        {
            explicit[i] = Some(quality);
        } else if coding.eq_ignore_ascii_case("x-gzip") {
            explicit[2] = Some(quality);
        }
    }
    // Identity not mentioned: acceptable, but below any encoding the client named.
    let identity_quality = identity.or(star).unwrap_or(1);
    let mut best: Option<(Quality, usize)> = None;
    for encoding in available {
        let i = Encoding::ALL
            .iter()
            .position(|e| *e == encoding)
            .unwrap_or(0);
        let quality = explicit[i].or(star).unwrap_or(0);
        if quality == 0 || quality < identity_quality {
            continue;
        }
        let better = match best {
            None => true,
            Some((q, j)) => quality > q || (quality == q && i < j),
        };
        if better {
            best = Some((quality, i));
        }
    }
    best.map(|(_, i)| Encoding::ALL[i])
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`; invalid → `None`.
fn parse_quality(s: &str) -> Option<Quality> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: Quality = 0;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += Quality::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Encoding::*;

    fn pick(header: &str, available: &[Encoding]) -> Option<Encoding> {
        negotiate(Some(header), available.iter().copied())
    }

    #[test]
    fn preference_and_qvalues() {
        let all = [Br, Zstd, Gzip];
        assert_eq!(pick("gzip, deflate, br, zstd", &all), Some(Br));
        assert_eq!(pick("gzip, deflate", &all), Some(Gzip));
        assert_eq!(pick("br;q=0.5, gzip;q=0.8", &all), Some(Gzip));
        assert_eq!(pick("br;q=0, gzip", &all), Some(Gzip));
        assert_eq!(pick("zstd;q=1.0, br;q=0.999", &all), Some(Zstd));
        assert_eq!(pick("*", &all), Some(Br));
        assert_eq!(pick("*;q=0.5, br;q=0", &all), Some(Zstd));
        assert_eq!(pick("GZIP", &all), Some(Gzip));
        assert_eq!(pick("x-gzip", &all), Some(Gzip));
    }

    #[test]
    fn identity_and_absence() {
        assert_eq!(negotiate(None, [Br].into_iter()), None);
        assert_eq!(pick("", &[Br]), None);
        assert_eq!(pick("br", &[]), None);
        assert_eq!(pick("br", &[Gzip]), None);
        assert_eq!(pick("identity", &[Br]), None, "br not listed");
        assert_eq!(pick("gzip;q=0.1, identity;q=1", &[Gzip]), None);
        assert_eq!(pick("gzip;q=0.5, identity;q=0", &[Gzip]), Some(Gzip));
    }

    #[test]
    fn bad_qvalues_are_ignored() {
        assert_eq!(pick("br;q=2", &[Br]), None);
        assert_eq!(pick("br;q=0.1234", &[Br]), None);
        assert_eq!(pick("br;q=-1", &[Br]), None);
        assert_eq!(pick("br;q=", &[Br]), None);
        assert_eq!(pick(";;;,,,", &[Br]), None);
        assert_eq!(parse_quality("0.5"), Some(500));
        assert_eq!(parse_quality("1.000"), Some(1000));
        assert_eq!(parse_quality("1.001"), None);
    }
}
