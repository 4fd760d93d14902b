//! The data path: ChannelData and Send indications from clients, datagrams from peers, each
//! checked against the allocation's permissions and bandwidth, relayed without allocating.

use super::*;

impl Server {
    pub(super) fn handle_channel_data(
        &mut self,
        now: Instant,
        transport: Transport,
        from: SocketAddr,
        data: &[u8],
    ) {
        let Ok(cd) = ChannelData::parse(data) else {
            self.stats.dropped += 1;
            return;
        };
        let Some(&slot) = self.by_client.get(&(transport, from)) else {
            self.stats.dropped += 1;
            return;
        };
        let Some(Some(a)) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let peer = a
            .channels
            .iter()
            .find(|(c, _, exp)| *c == cd.channel && *exp > now)
            .map(|(_, p, _)| *p);
        let (Some(peer), Some(relayed)) = (peer, a.relayed) else {
            self.stats.dropped += 1;
            return;
        };
        if !has_permission(a, peer.ip(), now) || !take_tokens(a, &self.config, now, cd.data.len()) {
            self.stats.dropped += 1;
            return;
        }
        self.stats.relayed += 1;
        self.push_raw(Via::Relay(relayed), peer, cd.data);
    }

    pub(super) fn handle_send(
        &mut self,
        now: Instant,
        client: (Transport, SocketAddr),
        msg: &Message<'_>,
    ) {
        let Some(&slot) = self.by_client.get(&client) else {
            self.stats.dropped += 1;
            return;
        };
        let peer = attr::xor_address_attr(msg, turn_types::XOR_PEER_ADDRESS).and_then(Result::ok);
        let (Some(peer), Some(payload)) = (peer, attr::data(msg)) else {
            self.stats.dropped += 1;
            return;
        };
        let Some(Some(a)) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let Some(relayed) = a.relayed else { return };
        if !has_permission(a, peer.ip(), now) || !take_tokens(a, &self.config, now, payload.len()) {
            self.stats.dropped += 1;
            return;
        }
        self.stats.relayed += 1;
        self.push_raw(Via::Relay(relayed), peer, payload);
    }

    pub(super) fn handle_peer(
        &mut self,
        now: Instant,
        relayed: SocketAddr,
        from: SocketAddr,
        data: &[u8],
    ) {
        let Some(&slot) = self.by_relay.get(&relayed) else {
            self.stats.dropped += 1;
            return;
        };
        let Some(Some(a)) = self.slots.get_mut(slot as usize) else {
            return;
        };
        // A permission is the only thing that lets a peer in (RFC 8656 §9); the policy was
        // checked when it was installed.
        if !has_permission(a, from.ip(), now) || !take_tokens(a, &self.config, now, data.len()) {
            self.stats.dropped += 1;
            return;
        }
        let (transport, client) = a.client;
        let channel = a
            .channels
            .iter()
            .find(|(_, p, exp)| *p == from && *exp > now)
            .map(|(c, _, _)| *c);
        let Some(slot_index) = self.claim_out_slot() else {
            return;
        };
        let start = slot_index * OUT_SLOT_LEN;
        let buf = &mut self.out[start..start + OUT_SLOT_LEN];
        let len = match channel {
            Some(channel) => ChannelData { channel, data }
                .encode(buf, transport.is_stream())
                .ok(),
            None => data_indication(buf, from, data).ok(),
        };
        match len {
            Some(len) => {
                self.stats.relayed += 1;
                self.out_queue
                    .push_back((Via::Client(transport), client, slot_index, len));
            }
            None => self.stats.dropped += 1,
        }
    }
}

fn data_indication(buf: &mut [u8], peer: SocketAddr, data: &[u8]) -> Result<usize, EncodeError> {
    // Indications need no random id: clients ignore it.
    let mut b = MessageBuilder::new(buf, Class::Indication, DATA, TransactionId([0; 12]))?;
    attr::add_xor_address(&mut b, turn_types::XOR_PEER_ADDRESS, peer)?;
    attr::add_data(&mut b, data)?;
    Ok(b.finish())
}
