//! Strict `application/x-www-form-urlencoded` query parsing (WHATWG URL
//! §5.1) for the admin API: like `form_urlencoded::parse`, but a value that
//! is not valid UTF-8 once percent-decoded (`%FF%FE`) is an error instead
//! of being silently replaced with U+FFFD, so what a client sent is stored
//! exactly or refused with a 400.

/// The `(name, value)` pairs of `query`, in order; `+` decodes as a space,
/// `%XX` as that byte (a `%` not followed by two hex digits stays as is).
/// `Err` names the parameter whose name or value is not UTF-8.
pub fn parse(query: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for part in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        let name = decode(name)
            .map_err(|_| format!("a query parameter name ({name}) is not UTF-8 once decoded"))?;
        let value = decode(value).map_err(|_| {
            format!("{name}: the value is not UTF-8 once percent-decoded: send UTF-8 text")
        })?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

fn decode(text: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            ) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_form_urlencoded_and_refuses_invalid_utf8() {
        let pairs = parse(Some(
            "message=fix+%26+ship%3A+100%25&label=a%3Db&x&dirty=&%zz=1",
        ))
        .unwrap();
        let expect = [
            ("message", "fix & ship: 100%"),
            ("label", "a=b"),
            ("x", ""),
            ("dirty", ""),
            ("%zz", "1"),
        ];
        assert_eq!(
            pairs,
            expect
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        );
        assert_eq!(parse(Some("m=%C3%A9")).unwrap()[0].1, "é");
        let e = parse(Some("message=%FF%FE")).unwrap_err();
        assert!(e.contains("message") && e.contains("UTF-8"), "{e}");
        assert!(parse(None).unwrap().is_empty());
    }
}
