//! Property tests: TURN framing and attributes round-trip, and arbitrary bytes never panic the
//! parsers (the fuzz targets' checks, run here on proptest's inputs too).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use holepunch_core::stun::{Class, Message, MessageBuilder, TransactionId};
use holepunch_core::turn::attr::{self, types};
use holepunch_core::turn::channel::{ChannelData, ChannelNumber, Frame, frame_len};
use holepunch_core::turn::{CHANNEL_BIND, SEND};
use proptest::prelude::*;

#[path = "../../fuzz/src/turn_checks.rs"]
mod turn_checks;

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<u32>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<u128>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

proptest! {
    #[test]
    fn channel_data_round_trips_on_udp_and_streams(
        number in 0x4000u16..=0x7FFF,
        data in proptest::collection::vec(any::<u8>(), 0..1500),
        pad in any::<bool>(),
    ) {
        let channel = ChannelNumber::new(number).expect("in range");
        let msg = ChannelData { channel, data: &data };
        let mut out = vec![0u8; data.len() + 8];
        let len = msg.encode(&mut out, pad).expect("fits");
        prop_assert_eq!(len, if pad { (4 + data.len() + 3) & !3 } else { 4 + data.len() });
        prop_assert_eq!(ChannelData::parse(&out[..len]), Ok(msg));
        // On a stream the frame is always the padded length, whatever the sender did.
        prop_assert_eq!(frame_len(&out[..len]), Ok(Some(Frame::ChannelData((4 + data.len() + 3) & !3))));
    }

    #[test]
    fn turn_attributes_round_trip(
        tid in any::<[u8; 12]>(),
        number in 0x4000u16..=0x4FFF,
        lifetime in any::<u32>(),
        peers in proptest::collection::vec(socket_addr(), 1..4),
        data in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut buf = vec![0u8; 2048];
        let mut b = MessageBuilder::new(&mut buf, Class::Request, CHANNEL_BIND, TransactionId(tid)).expect("fits");
        attr::add_channel_number(&mut b, ChannelNumber::new(number).expect("range")).expect("fits");
        attr::add_lifetime(&mut b, lifetime).expect("fits");
        attr::add_requested_transport(&mut b, 17).expect("fits");
        for p in &peers {
            attr::add_xor_address(&mut b, types::XOR_PEER_ADDRESS, *p).expect("fits");
        }
        attr::add_xor_address(&mut b, types::XOR_RELAYED_ADDRESS, peers[0]).expect("fits");
        attr::add_data(&mut b, &data).expect("fits");
        let len = b.finish();
        let msg = Message::parse(&buf[..len]).expect("parses");
        prop_assert_eq!(attr::channel_number(&msg), Some(Ok(number)));
        prop_assert_eq!(attr::lifetime(&msg), Some(Ok(lifetime)));
        prop_assert_eq!(attr::requested_transport(&msg), Some(Ok(17)));
        let decoded: Vec<SocketAddr> = attr::xor_peer_addresses(&msg).map(|r| r.expect("valid")).collect();
        prop_assert_eq!(&decoded, &peers);
        prop_assert_eq!(attr::xor_address_attr(&msg, types::XOR_RELAYED_ADDRESS), Some(Ok(peers[0])));
        prop_assert_eq!(attr::data(&msg), Some(&data[..]));
    }

    #[test]
    fn send_indications_carry_peer_and_data(peer in socket_addr(), data in proptest::collection::vec(any::<u8>(), 0..1200)) {
        let mut buf = vec![0u8; 1400];
        let mut b = MessageBuilder::new(&mut buf, Class::Indication, SEND, TransactionId([0; 12])).expect("fits");
        attr::add_xor_address(&mut b, types::XOR_PEER_ADDRESS, peer).expect("fits");
        attr::add_data(&mut b, &data).expect("fits");
        let len = b.finish();
        let msg = Message::parse(&buf[..len]).expect("parses");
        prop_assert_eq!(frame_len(&buf[..len]), Ok(Some(Frame::Stun(len))));
        prop_assert_eq!(attr::xor_address_attr(&msg, types::XOR_PEER_ADDRESS), Some(Ok(peer)));
        prop_assert_eq!(attr::data(&msg), Some(&data[..]));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        turn_checks::check_channel(&bytes);
        turn_checks::check_message(&bytes);
        turn_checks::check_server(&bytes);
    }
}
