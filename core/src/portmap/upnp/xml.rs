//! A bounded walk over an XML document with `quick-xml`, reporting leaf elements' text.
//!
//! Limits, because the document comes from the network: no DOCTYPE (so no entity can be
//! declared, let alone expanded: XML bombs are impossible), only the five predefined entities and
//! character references, nesting at most [`MAX_DEPTH`], at most [`MAX_EVENTS`] events, and text
//! values at most [`MAX_TEXT_LEN`] bytes.

use alloc::string::String;

use quick_xml::Reader;
use quick_xml::events::Event;

use super::{MAX_TEXT_LEN, UpnpError};

/// Deepest element nesting accepted.
const MAX_DEPTH: usize = 16;
/// Most parser events accepted in one document.
const MAX_EVENTS: usize = 20_000;

/// What the walk reports.
pub(super) enum Visit<'a> {
    /// An element with only text inside closed: its local name, its parent's, and its text.
    Leaf {
        name: &'a str,
        parent: &'a str,
        text: &'a str,
    },
    /// An element with child elements closed.
    Close { name: &'a str },
}

/// Walks `doc`, calling `visit` for every closed element.
pub(super) fn walk(doc: &str, mut visit: impl FnMut(Visit<'_>)) -> Result<(), UpnpError> {
    let mut reader = Reader::from_str(doc);
    reader.config_mut().expand_empty_elements = true;
    // Local names of the open elements, and whether each has child elements.
    let mut stack: [(String, bool); MAX_DEPTH] = Default::default();
    let mut depth = 0usize;
    let mut text = String::new();
    for _ in 0..MAX_EVENTS {
        match reader.read_event().map_err(|_| UpnpError::Xml)? {
            Event::Start(e) => {
                if depth == MAX_DEPTH {
                    return Err(UpnpError::Xml);
                }
                if depth > 0 {
                    stack[depth - 1].1 = true;
                }
                let name = core::str::from_utf8(e.local_name().into_inner())
                    .map_err(|_| UpnpError::Encoding)?;
                stack[depth].0.clear();
                stack[depth].0.push_str(name);
                stack[depth].1 = false;
                depth += 1;
                text.clear();
            }
            Event::End(_) => {
                let Some(d) = depth.checked_sub(1) else {
                    return Err(UpnpError::Xml);
                };
                depth = d;
                let (name, has_children) = &stack[d];
                if *has_children {
                    visit(Visit::Close { name });
                } else {
                    let parent = if d > 0 { stack[d - 1].0.as_str() } else { "" };
                    visit(Visit::Leaf {
                        name,
                        parent,
                        text: text.trim(),
                    });
                }
                text.clear();
            }
            Event::Text(t) => push_text(&mut text, &t.decode().map_err(|_| UpnpError::Encoding)?)?,
            Event::CData(c) => push_text(&mut text, &c.decode().map_err(|_| UpnpError::Encoding)?)?,
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref().map_err(|_| UpnpError::Xml)? {
                    Some(c) => c,
                    None => {
                        let name = r.decode().map_err(|_| UpnpError::Encoding)?;
                        let s =
                            quick_xml::escape::resolve_xml_entity(&name).ok_or(UpnpError::Xml)?;
                        push_text(&mut text, s)?;
                        continue;
                    }
                };
                let mut buf = [0u8; 4];
                push_text(&mut text, c.encode_utf8(&mut buf))?;
            }
            Event::DocType(_) => return Err(UpnpError::Xml),
            Event::Eof => {
                return if depth == 0 {
                    Ok(())
                } else {
                    Err(UpnpError::Xml)
                };
            }
            Event::Empty(_) | Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
        }
    }
    Err(UpnpError::Xml)
}

fn push_text(text: &mut String, s: &str) -> Result<(), UpnpError> {
    if text.len() + s.len() > MAX_TEXT_LEN {
        return Err(UpnpError::TooLarge {
            len: text.len() + s.len(),
            max: MAX_TEXT_LEN,
        });
    }
    text.push_str(s);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec::Vec;

    fn leaves(doc: &str) -> Result<Vec<(String, String, String)>, UpnpError> {
        let mut out = Vec::new();
        walk(doc, |v| {
            if let Visit::Leaf { name, parent, text } = v {
                out.push((name.into(), parent.into(), text.into()));
            }
        })?;
        Ok(out)
    }

    #[test]
    fn leaves_with_namespaces_entities_and_cdata() {
        let got = leaves(
            "<?xml version=\"1.0\"?><s:a xmlns:s=\"x\"><s:b> 1 &amp; &#50; </s:b>\
             <c><![CDATA[<raw>]]></c><e/></s:a>",
        )
        .expect("walks");
        let want = [("b", "a", "1 & 2"), ("c", "a", "<raw>"), ("e", "a", "")];
        assert_eq!(got.len(), 3);
        for ((n, p, t), (wn, wp, wt)) in got.iter().zip(want) {
            assert_eq!((n.as_str(), p.as_str(), t.as_str()), (wn, wp, wt));
        }
    }

    #[test]
    fn bombs_deep_nesting_and_broken_documents_are_refused() {
        let bomb = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">\
            <!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">]><a>&lol2;</a>";
        assert_eq!(leaves(bomb), Err(UpnpError::Xml));
        assert_eq!(leaves("<a>&custom;</a>"), Err(UpnpError::Xml));
        let deep = format!("{}{}", "<a>".repeat(17), "</a>".repeat(17));
        assert_eq!(leaves(&deep), Err(UpnpError::Xml));
        assert_eq!(leaves("<a><b></a>"), Err(UpnpError::Xml));
        assert_eq!(leaves("<a>"), Err(UpnpError::Xml));
        let long = format!("<a>{}</a>", "x".repeat(MAX_TEXT_LEN + 1));
        assert!(matches!(leaves(&long), Err(UpnpError::TooLarge { .. })));
    }
}
