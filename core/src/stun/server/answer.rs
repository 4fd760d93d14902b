//! Writing one answer: the success, RFC 3489 and error forms, each sized to the amplification
//! bound in force (see the module docs of `server`), and the socket it is sent from.

use core::net::SocketAddr;

use super::{Pending, Reply, Server, addr_len};
use crate::io::Transmit;
use crate::stun::attr::{self, Attribute, ErrorCode};
use crate::stun::message::{EncodeError, MessageBuilder};
use crate::stun::{Class, HEADER_LEN, Method};

impl Server {
    /// The answer to `p` in `form`, or `None` when even its floor does not fit the bound.
    pub(super) fn build(
        &self,
        p: &Pending,
        form: Form,
        out: &mut [u8],
    ) -> Result<Option<Transmit>, EncodeError> {
        let budget = Budget {
            request_len: p.request_len,
            out_len: out.len(),
            fingerprint: if p.fingerprint { 8 } else { 0 },
            form,
        };
        match p.reply {
            Reply::Binding {
                change,
                response_port,
                padding,
            } => self.success(p, budget, (change, response_port, padding), out),
            Reply::Error {
                code,
                unknown,
                n_unknown,
            } => {
                let list = (n_unknown > 0).then(|| {
                    // ERROR-CODE without reason + one type, and FINGERPRINT if mirrored: the
                    // first type always, more as the size budget allows.
                    let fixed = 8 + 4 + attr::padded(2) + budget.fingerprint;
                    let fit = 1 + budget.extra(fixed) / 2;
                    &unknown[..n_unknown.min(fit)]
                });
                self.error(p, out, budget, code, list)
            }
            Reply::Classic { cookie, change } => self.classic(p, budget, cookie, change, out),
        }
    }

    fn success(
        &self,
        p: &Pending,
        budget: Budget,
        (change, response_port, padding): ((bool, bool), Option<u16>, usize),
        out: &mut [u8],
    ) -> Result<Option<Transmit>, EncodeError> {
        let source = self.source(p.local, change);
        let to = match response_port {
            Some(port) => SocketAddr::new(p.from.ip(), port),
            None => p.from,
        };
        let minimal = addr_len(p.from) + budget.fingerprint;
        if !budget.allows_floor(minimal) {
            return Ok(None);
        }
        let mut b = MessageBuilder::new(out, Class::SuccessResponse, Method::BINDING, p.tid)?;
        b.add(&Attribute::XorMappedAddress(p.from))?;
        let mut spare = budget.extra(minimal);
        if let Some(alt) = self.config.alternate {
            // OTHER-ADDRESS and RESPONSE-ORIGIN travel together: a client needs both to run the
            // RFC 5780 tests, so send neither rather than one.
            let both = 2 * addr_len(alt);
            if spare >= both {
                // §7.4: where a change-IP-and-port answer to *this* socket would come from.
                b.add(&Attribute::OtherAddress(self.source(p.local, (true, true))))?;
                b.add(&Attribute::ResponseOrigin(source))?;
                spare -= both;
            }
        }
        if let Some(s) = self.config.software {
            let need = 4 + attr::padded(s.len());
            if spare >= need {
                b.add(&Attribute::Software(s))?;
                spare -= need;
            }
        }
        // RFC 5780 §7.6: mirror PADDING (sized to stay within the request even for a full
        // answer, so it never amplifies, and only when the answer goes back to the sender,
        // never redirected by RESPONSE-PORT).
        let request_room = p
            .request_len
            .saturating_sub(b.len() + 4 + budget.fingerprint);
        let spare = spare.min(request_room + 4);
        if padding > 0 && response_port.is_none() && spare >= 4 {
            let len = padding.min(spare - 4) & !3;
            b.add_padding(len)?;
        }
        if budget.fingerprint > 0 {
            b.add_fingerprint()?;
        }
        let len = b.finish();
        Ok(Some(Transmit {
            from: Some(source),
            to,
            len,
        }))
    }

    /// RFC 8489 §12: MAPPED-ADDRESS for an RFC 3489 client, its 128-bit transaction ID echoed,
    /// and in RFC 5780 mode SOURCE-ADDRESS and CHANGED-ADDRESS (RFC 3489 §11.1).
    fn classic(
        &self,
        p: &Pending,
        budget: Budget,
        cookie: [u8; 4],
        change: (bool, bool),
        out: &mut [u8],
    ) -> Result<Option<Transmit>, EncodeError> {
        let source = self.source(p.local, change);
        let minimal = addr_len(p.from);
        if !budget.allows_floor(minimal) {
            return Ok(None);
        }
        let mut b = MessageBuilder::new(out, Class::SuccessResponse, Method::BINDING, p.tid)?;
        b.add(&Attribute::MappedAddress(p.from))?;
        let mut spare = budget.extra(minimal);
        if let Some(alt) = self.config.alternate {
            let both = 2 * addr_len(alt);
            if spare >= both {
                b.add(&Attribute::SourceAddress(source))?;
                b.add(&Attribute::ChangedAddress(
                    self.source(p.local, (true, true)),
                ))?;
                spare -= both;
            }
        }
        // RFC 3489's SERVER attribute has SOFTWARE's number.
        if let Some(s) = self.config.software {
            if spare >= 4 + attr::padded(s.len()) {
                b.add(&Attribute::Software(s))?;
            }
        }
        let len = b.finish();
        // No XOR-ed attribute and no FINGERPRINT depend on the cookie, so the RFC 3489 ID's
        // first word can take its place after the fact.
        out[4..8].copy_from_slice(&cookie);
        Ok(Some(Transmit {
            from: Some(source),
            to: p.from,
            len,
        }))
    }

    /// The socket that answers: the one the request came in on, moved to the alternate IP
    /// and/or port as CHANGE-REQUEST asks.
    fn source(&self, local: SocketAddr, (change_ip, change_port): (bool, bool)) -> SocketAddr {
        let Some(alt) = self.config.alternate else {
            return local;
        };
        let p = self.config.primary;
        let flip_ip = |ip| if ip == p.ip() { alt.ip() } else { p.ip() };
        let flip_port = |port| {
            if port == p.port() {
                alt.port()
            } else {
                p.port()
            }
        };
        let ip = if change_ip {
            flip_ip(local.ip())
        } else {
            local.ip()
        };
        let port = if change_port {
            flip_port(local.port())
        } else {
            local.port()
        };
        SocketAddr::new(ip, port)
    }

    fn error(
        &self,
        p: &Pending,
        out: &mut [u8],
        budget: Budget,
        code: ErrorCode<'static>,
        unknown: Option<&[u16]>,
    ) -> Result<Option<Transmit>, EncodeError> {
        let list_len = unknown.map_or(0, |l| 4 + attr::padded(l.len() * 2));
        let minimal = 8 + list_len + budget.fingerprint;
        if !budget.allows_floor(minimal) {
            return Ok(None);
        }
        // The reason phrase is optional decoration: keep it only if it fits.
        let reason = if budget.extra(minimal) >= attr::padded(code.reason.len()) {
            code.reason
        } else {
            ""
        };
        let mut b = MessageBuilder::new(out, Class::ErrorResponse, p.method, p.tid)?;
        b.add(&Attribute::ErrorCode(ErrorCode {
            code: code.code,
            reason,
        }))?;
        if let Some(list) = unknown {
            b.add_unknown_attributes(list)?;
        }
        if budget.fingerprint > 0 {
            b.add_fingerprint()?;
        }
        let len = b.finish();
        Ok(Some(Transmit {
            from: Some(p.local),
            to: p.from,
            len,
        }))
    }
}

/// How one answer is sized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Form {
    /// Optional attributes within the request's size, the floor always.
    Bounded,
    /// Never larger than the request.
    Strict,
    /// Everything that fits the output buffer.
    Full,
}

/// The size budget for one response (see the module docs).
#[derive(Clone, Copy, Debug)]
struct Budget {
    request_len: usize,
    /// The caller's output buffer: optional attributes shrink to fit it too.
    out_len: usize,
    /// 8 when the response must carry FINGERPRINT (the request did), else 0.
    fingerprint: usize,
    form: Form,
}

impl Budget {
    /// Whether a response whose mandatory attributes take `floor` bytes may be sent at all.
    fn allows_floor(&self, floor: usize) -> bool {
        self.form != Form::Strict || HEADER_LEN + floor <= self.request_len
    }

    /// Bytes available for optional attributes beyond `floor` bytes of mandatory ones: within
    /// the request's size and the output buffer.
    fn extra(&self, floor: usize) -> usize {
        let limit = match self.form {
            Form::Full => self.out_len,
            _ => self.request_len.min(self.out_len),
        };
        limit.saturating_sub(HEADER_LEN + floor)
    }
}
