//! Checks for the offer's key line (`a=x-holepunch-key:sha256:HEX`).

/// Parses arbitrary text as key lines and fingerprints: nothing panics, and whatever parses
/// formats and parses back to the same value.
pub fn check_key_line(data: &[u8]) {
    use holepunch_core::ice::key::{Fingerprint, key_line, parse_key_line};
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    for line in text.split('\n').chain(core::iter::once(text)) {
        if let Some(Ok(fp)) = parse_key_line(line) {
            let again = key_line(&fp);
            assert_eq!(
                parse_key_line(&again),
                Some(Ok(fp)),
                "{line:?} -> {again:?}"
            );
        }
        if let Ok(fp) = line.parse::<Fingerprint>() {
            let text = fp.to_string();
            assert_eq!(text.parse::<Fingerprint>(), Ok(fp), "{line:?} -> {text:?}");
            assert_eq!(text.len(), 71);
        }
    }
}
