//! The output slots: answers built in place and relayed payloads copied in, queued for
//! `poll_transmit`; the oldest waiting output is dropped when every slot is taken.

use super::*;

impl Server {
    pub(super) fn respond_limited_error(
        &mut self,
        client: (Transport, SocketAddr),
        method: Method,
        tid: TransactionId,
        code: u16,
        fp: bool,
        limit: usize,
    ) {
        self.respond(
            client,
            method,
            tid,
            Class::ErrorResponse,
            None,
            fp,
            Some(limit),
            |b| b.add(&Attribute::ErrorCode(ErrorCode { code, reason: "" })),
        );
    }

    pub(super) fn respond_error(
        &mut self,
        client: (Transport, SocketAddr),
        method: Method,
        tid: TransactionId,
        code: u16,
        key: Option<&IntegrityKey>,
        fp: bool,
    ) {
        self.respond(
            client,
            method,
            tid,
            Class::ErrorResponse,
            key,
            fp,
            None,
            |b| {
                b.add(&Attribute::ErrorCode(ErrorCode {
                    code,
                    reason: reason(code),
                }))
            },
        );
    }

    /// Builds a response into an output slot and queues it; with `limit`, drops it instead if
    /// it would be larger than that (the unauthenticated request's size).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn respond(
        &mut self,
        client: (Transport, SocketAddr),
        method: Method,
        tid: TransactionId,
        class: Class,
        key: Option<&IntegrityKey>,
        fingerprint: bool,
        limit: Option<usize>,
        body: impl Fn(&mut MessageBuilder<'_>) -> Result<(), EncodeError>,
    ) {
        let Some(slot) = self.claim_out_slot() else {
            return;
        };
        let start = slot * OUT_SLOT_LEN;
        let software = if key.is_some() {
            self.config.software
        } else {
            None
        };
        let buf = &mut self.out[start..start + OUT_SLOT_LEN];
        let mut build = |fingerprint: bool| {
            let mut b = MessageBuilder::new(&mut *buf, class, method, tid)?;
            body(&mut b)?;
            if let Some(s) = software {
                b.add(&Attribute::Software(s))?;
            }
            if let Some(key) = key {
                b.add_message_integrity(key)?;
            }
            if fingerprint {
                b.add_fingerprint()?;
            }
            Ok::<usize, EncodeError>(b.finish())
        };
        let mut built = build(fingerprint);
        // FINGERPRINT is optional in answers: drop it before dropping the answer.
        if let (Ok(len), Some(l)) = (built, limit) {
            if len > l && fingerprint {
                built = build(false);
            }
        }
        match built {
            Ok(len) if limit.is_none_or(|l| len <= l) => {
                self.out_queue
                    .push_back((Via::Client(client.0), client.1, slot, len));
            }
            _ => self.stats.dropped += 1,
        }
    }

    /// Queues `payload` as is (relayed data to a peer).
    pub(super) fn push_raw(&mut self, via: Via, to: SocketAddr, payload: &[u8]) {
        let Some(slot) = self.claim_out_slot() else {
            return;
        };
        let start = slot * OUT_SLOT_LEN;
        self.out[start..start + payload.len()].copy_from_slice(payload);
        self.out_queue.push_back((via, to, slot, payload.len()));
    }

    /// The next free output slot; when all are waiting (the driver did not poll), the oldest
    /// output is dropped, as a full socket buffer would.
    pub(super) fn claim_out_slot(&mut self) -> Option<usize> {
        let slot = self.out_next;
        self.out_next = (self.out_next + 1) % OUT_SLOTS;
        if let Some(pos) = self.out_queue.iter().position(|e| e.2 == slot) {
            self.out_queue.remove(pos);
            self.stats.dropped += 1;
        }
        Some(slot)
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        420 => "Unknown Attribute",
        437 => "Allocation Mismatch",
        438 => "Stale Nonce",
        440 => "Address Family not Supported",
        441 => "Wrong Credentials",
        442 => "Unsupported Transport Protocol",
        486 => "Allocation Quota Reached",
        508 => "Insufficient Capacity",
        _ => "",
    }
}
