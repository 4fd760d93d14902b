//! The requests: Allocate, Refresh, CreatePermission, ChannelBind (and Binding), with their
//! checks (quota, capacity, peer policy) and answers.

use super::*;

/// A reply to send: the error code, or success.
enum Outcome {
    Error(u16),
    Done,
}

impl Server {
    pub(super) fn handle_request(
        &mut self,
        now: Instant,
        client: (Transport, SocketAddr),
        msg: &Message<'_>,
    ) {
        let method = msg.method();
        let tid = msg.transaction_id();
        let fp = msg.has_fingerprint();
        let limit = msg.as_bytes().len();
        if method == Method::BINDING {
            // Unauthenticated, so only answered when the answer is no larger.
            let mapped = client.1;
            self.respond(
                client,
                method,
                tid,
                Class::SuccessResponse,
                None,
                fp,
                Some(limit),
                |b| b.add(&Attribute::XorMappedAddress(mapped)),
            );
            return;
        }
        if ![ALLOCATE, REFRESH, CREATE_PERMISSION, CHANNEL_BIND].contains(&method) {
            self.respond_limited_error(client, method, tid, 400, fp, limit);
            return;
        }
        // A retransmitted Allocate for an existing allocation gets the same answer again.
        if method == ALLOCATE {
            if let Some(&slot) = self.by_client.get(&client) {
                let same = matches!(&self.slots[slot as usize], Some(a) if a.allocate_tid == tid);
                if !same {
                    let key = self.slots[slot as usize].as_ref().map(|a| a.key.clone());
                    self.respond_error(
                        client,
                        method,
                        tid,
                        codes::ALLOCATION_MISMATCH,
                        key.as_ref(),
                        fp,
                    );
                } else if matches!(&self.slots[slot as usize], Some(a) if a.relayed.is_some()) {
                    self.send_allocate_success(slot);
                }
                return;
            }
        }
        let Some(key) = self.authenticate(now, client, msg) else {
            return;
        };
        if let Some(unknown) = msg.unknown_comprehension_required(attr::is_known).next() {
            self.respond(
                client,
                method,
                tid,
                Class::ErrorResponse,
                Some(&key),
                fp,
                None,
                |b| {
                    b.add(&Attribute::ErrorCode(ErrorCode::UNKNOWN_ATTRIBUTE))?;
                    b.add_unknown_attributes(&[unknown])
                },
            );
            return;
        }
        let outcome = match method {
            ALLOCATE => self.allocate(now, client, msg, &key),
            REFRESH => self.refresh(now, client, msg),
            CREATE_PERMISSION => self.create_permission(now, client, msg),
            _ => self.channel_bind(now, client, msg),
        };
        match outcome {
            Some(Outcome::Error(code)) => {
                self.respond_error(client, method, tid, code, Some(&key), fp)
            }
            Some(Outcome::Done) => {
                let lifetime = match method {
                    REFRESH => Some(
                        self.by_client
                            .get(&client)
                            .and_then(|&s| self.slots[s as usize].as_ref())
                            .map_or(0, |a| a.lifetime),
                    ),
                    _ => None,
                };
                self.respond(
                    client,
                    method,
                    tid,
                    Class::SuccessResponse,
                    Some(&key),
                    fp,
                    None,
                    |b| {
                        if let Some(l) = lifetime {
                            attr::add_lifetime(b, l)?;
                        }
                        Ok(())
                    },
                );
            }
            // Allocate answers once the relayed socket is bound.
            None => {}
        }
    }

    fn allocate(
        &mut self,
        now: Instant,
        client: (Transport, SocketAddr),
        msg: &Message<'_>,
        key: &IntegrityKey,
    ) -> Option<Outcome> {
        match attr::requested_transport(msg) {
            None | Some(Err(_)) => return Some(Outcome::Error(400)),
            Some(Ok(p)) if p != PROTOCOL_UDP => {
                return Some(Outcome::Error(codes::UNSUPPORTED_TRANSPORT));
            }
            Some(Ok(_)) => {}
        }
        let ipv6 = match attr::requested_address_family(msg) {
            None => false,
            Some(Ok(0x01)) => false,
            Some(Ok(0x02)) => true,
            Some(_) => return Some(Outcome::Error(codes::ADDRESS_FAMILY_NOT_SUPPORTED)),
        };
        if msg.find(turn_types::RESERVATION_TOKEN).is_some() {
            // Port reservations (RFC 8656 §14.9) are not offered.
            return Some(Outcome::Error(codes::INSUFFICIENT_CAPACITY));
        }
        // EVEN-PORT's R bit asks for a reservation of the next port too: not offered either.
        let even_port = match msg.find(turn_types::EVEN_PORT) {
            None => false,
            Some(a) if a.value.first().is_some_and(|b| b & 0x80 != 0) => {
                return Some(Outcome::Error(codes::INSUFFICIENT_CAPACITY));
            }
            Some(_) => true,
        };
        let username = msg
            .text(types::USERNAME)
            .and_then(Result::ok)
            .unwrap_or_default();
        let used = self.per_user.get(username).copied().unwrap_or(0);
        if used >= self.config.max_allocations_per_user {
            return Some(Outcome::Error(codes::ALLOCATION_QUOTA_REACHED));
        }
        let Some(slot) = self.free.pop() else {
            return Some(Outcome::Error(codes::INSUFFICIENT_CAPACITY));
        };
        let lifetime = self.granted_lifetime(msg);
        self.generation = self.generation.wrapping_add(1);
        let peers = self.config.max_peers_per_allocation;
        self.slots[slot as usize] = Some(Allocation {
            generation: self.generation,
            client,
            relayed: None,
            username: username.into(),
            key: key.clone(),
            allocate_tid: msg.transaction_id(),
            fingerprint: msg.has_fingerprint(),
            lifetime,
            expires: Instant::FAR_FUTURE,
            permissions: Vec::with_capacity(peers),
            channels: Vec::with_capacity(peers),
            tokens: self.bucket_size(),
            refilled: now,
        });
        self.by_client.insert(client, slot);
        *self.per_user.entry(username.into()).or_insert(0) += 1;
        self.actions.push_back(ServerAction::BindRelay {
            id: AllocationId {
                slot,
                generation: self.generation,
            },
            ipv6,
            even_port,
        });
        None
    }

    fn refresh(
        &mut self,
        now: Instant,
        client: (Transport, SocketAddr),
        msg: &Message<'_>,
    ) -> Option<Outcome> {
        let Some(&slot) = self.by_client.get(&client) else {
            return Some(Outcome::Error(codes::ALLOCATION_MISMATCH));
        };
        if matches!(attr::lifetime(msg), Some(Ok(0))) {
            self.remove(slot);
            return Some(Outcome::Done);
        }
        let lifetime = self.granted_lifetime(msg);
        let Some(Some(a)) = self.slots.get_mut(slot as usize) else {
            return Some(Outcome::Error(437));
        };
        a.lifetime = lifetime;
        a.expires = now + secs(lifetime);
        Some(Outcome::Done)
    }

    fn create_permission(
        &mut self,
        now: Instant,
        client: (Transport, SocketAddr),
        msg: &Message<'_>,
    ) -> Option<Outcome> {
        let Some(&slot) = self.by_client.get(&client) else {
            return Some(Outcome::Error(codes::ALLOCATION_MISMATCH));
        };
        // All or nothing: check every peer before installing any (RFC 8656 §10.2).
        let mut count = 0;
        for peer in attr::xor_peer_addresses(msg) {
            let Ok(peer) = peer else {
                return Some(Outcome::Error(400));
            };
            if !self.config.policy.permits(peer.ip()) {
                self.stats.forbidden_peers += 1;
                return Some(Outcome::Error(codes::FORBIDDEN));
            }
            count += 1;
        }
        if count == 0 {
            return Some(Outcome::Error(400));
        }
        let max = self.config.max_peers_per_allocation;
        let Some(Some(a)) = self.slots.get_mut(slot as usize) else {
            return Some(Outcome::Error(437));
        };
        for peer in attr::xor_peer_addresses(msg).flatten() {
            if !install_permission(a, peer.ip(), now, max) {
                return Some(Outcome::Error(codes::INSUFFICIENT_CAPACITY));
            }
        }
        Some(Outcome::Done)
    }

    fn channel_bind(
        &mut self,
        now: Instant,
        client: (Transport, SocketAddr),
        msg: &Message<'_>,
    ) -> Option<Outcome> {
        let Some(&slot) = self.by_client.get(&client) else {
            return Some(Outcome::Error(codes::ALLOCATION_MISMATCH));
        };
        let channel = attr::channel_number(msg)
            .and_then(Result::ok)
            .and_then(ChannelNumber::new);
        let peer = attr::xor_address_attr(msg, turn_types::XOR_PEER_ADDRESS).and_then(Result::ok);
        let (Some(channel), Some(peer)) = (channel, peer) else {
            return Some(Outcome::Error(400));
        };
        if !self.config.policy.permits(peer.ip()) {
            self.stats.forbidden_peers += 1;
            return Some(Outcome::Error(codes::FORBIDDEN));
        }
        let max = self.config.max_peers_per_allocation;
        let Some(Some(a)) = self.slots.get_mut(slot as usize) else {
            return Some(Outcome::Error(437));
        };
        let expires = now + secs(CHANNEL_LIFETIME_SECS);
        // A channel is bound to one peer and a peer to one channel, for the binding's life.
        let existing = a
            .channels
            .iter()
            .position(|(c, p, exp)| (*c == channel || *p == peer) && *exp > now);
        match existing {
            Some(i) if a.channels[i].0 == channel && a.channels[i].1 == peer => {
                a.channels[i].2 = expires
            }
            Some(_) => return Some(Outcome::Error(400)),
            None => {
                a.channels.retain(|(_, _, exp)| *exp > now);
                if a.channels.len() >= max {
                    return Some(Outcome::Error(codes::INSUFFICIENT_CAPACITY));
                }
                a.channels.push((channel, peer, expires));
            }
        }
        if !install_permission(a, peer.ip(), now, max) {
            return Some(Outcome::Error(codes::INSUFFICIENT_CAPACITY));
        }
        Some(Outcome::Done)
    }

    /// RFC 8656 §7.2: min(requested, maximum), but never below the default.
    fn granted_lifetime(&self, msg: &Message<'_>) -> u32 {
        let requested = attr::lifetime(msg)
            .and_then(Result::ok)
            .unwrap_or(self.config.default_lifetime_secs);
        requested
            .min(self.config.max_lifetime_secs)
            .max(self.config.default_lifetime_secs)
    }

    pub(super) fn send_allocate_success(&mut self, slot: u32) {
        let Some(Some(a)) = self.slots.get(slot as usize) else {
            return;
        };
        let (client, tid, key, fp, lifetime) = (
            a.client,
            a.allocate_tid,
            a.key.clone(),
            a.fingerprint,
            a.lifetime,
        );
        let Some(relayed) = a.relayed else { return };
        self.respond(
            client,
            ALLOCATE,
            tid,
            Class::SuccessResponse,
            Some(&key),
            fp,
            None,
            |b| {
                attr::add_xor_address(b, turn_types::XOR_RELAYED_ADDRESS, relayed)?;
                attr::add_lifetime(b, lifetime)?;
                b.add(&Attribute::XorMappedAddress(client.1))
            },
        );
    }
}
