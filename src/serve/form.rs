//! What a POST body asks for: the RFC 8058 one-click body (`List-Unsubscribe=One-Click`,
//! form-urlencoded or multipart/form-data) or our own page's button.

/// The meaning of a POST on an unsubscribe link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Intent {
    /// A mailbox provider's RFC 8058 one-click request.
    OneClick,
    /// The confirmation page's button (`action=unsubscribe`).
    Button,
    /// Neither: nothing is changed.
    Unknown,
}

/// Reads the form fields of a body and decides what it asks for.
pub(super) fn intent(content_type: Option<&str>, body: &[u8]) -> Intent {
    let fields = fields(content_type, body);
    let has = |name: &str, value: &str| {
        fields
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case(name) && v.trim().eq_ignore_ascii_case(value))
    };
    if has("List-Unsubscribe", "One-Click") {
        Intent::OneClick
    } else if has("action", "unsubscribe") {
        Intent::Button
    } else {
        Intent::Unknown
    }
}

/// The (name, value) pairs of a form body. Anything that is not multipart is read as
/// form-urlencoded (some senders omit the content type).
pub(super) fn fields(content_type: Option<&str>, body: &[u8]) -> Vec<(String, String)> {
    match content_type.and_then(multipart_boundary) {
        Some(boundary) => multipart_fields(&boundary, body),
        None => form_urlencoded::parse(body)
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect(),
    }
}

fn multipart_boundary(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';');
    let mime = parts.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
            .filter(|b| !b.is_empty() && b.len() <= 200)
    })
}

fn multipart_fields(boundary: &str, body: &[u8]) -> Vec<(String, String)> {
    let delimiter = format!("--{boundary}");
    let text = String::from_utf8_lossy(body);
    let mut out = Vec::new();
    // Everything before the first delimiter is preamble; after `--boundary--`, epilogue.
    for part in text.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part
            .strip_prefix("\r\n")
            .or_else(|| part.strip_prefix('\n'));
        let Some(part) = part else { continue };
        let (head, value) = match part.split_once("\r\n\r\n") {
            Some(split) => split,
            None => match part.split_once("\n\n") {
                Some(split) => split,
                None => continue,
            },
        };
        let Some(name) = head.lines().find_map(disposition_name) else {
            continue;
        };
        let value = value
            .strip_suffix("\r\n")
            .or_else(|| value.strip_suffix('\n'))
            .unwrap_or(value);
        out.push((name, value.to_string()));
    }
    out
}

/// The `name` parameter of a `Content-Disposition: form-data; name="…"` line.
fn disposition_name(line: &str) -> Option<String> {
    let (header, value) = line.split_once(':')?;
    if !header.trim().eq_ignore_ascii_case("content-disposition") {
        return None;
    }
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("name")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn urlencoded_one_click_and_button() {
        let ct = Some("application/x-www-form-urlencoded");
        assert_eq!(intent(ct, b"List-Unsubscribe=One-Click"), Intent::OneClick);
        assert_eq!(
            intent(None, b"List-Unsubscribe=One-Click"),
            Intent::OneClick
        );
        assert_eq!(intent(ct, b"action=unsubscribe"), Intent::Button);
        assert_eq!(intent(ct, b""), Intent::Unknown);
        assert_eq!(intent(ct, b"List-Unsubscribe=No"), Intent::Unknown);
    }

    #[test]
    fn multipart_one_click() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--XyZ--\r\n";
        assert_eq!(
            intent(Some("multipart/form-data; boundary=XyZ"), body.as_bytes()),
            Intent::OneClick
        );
        assert_eq!(
            intent(
                Some("multipart/form-data; boundary=\"XyZ\""),
                body.as_bytes()
            ),
            Intent::OneClick
        );
        assert_eq!(
            intent(Some("multipart/form-data; boundary=other"), body.as_bytes()),
            Intent::Unknown
        );
    }

    proptest! {
        #[test]
        fn junk_never_panics(ct in ".{0,80}", body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = intent(Some(&ct), &body);
            let _ = intent(Some("multipart/form-data; boundary=a"), &body);
        }
    }
}
