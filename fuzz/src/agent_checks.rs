//! Invariants of the composed agent (`holepunch_core::Agent`) and the offer reader on untrusted input, shared by the
//! `ice_agent` and `offer_lines` fuzz targets and the corpus replay test
//! (`core/tests/fuzz_corpus.rs`, which includes this file with `#[path]`).
//!
//! The agent target plays the peer and the network: the input is a bounded script of offer
//! lines, raw datagrams, clock steps, and checks or answers the harness signs itself (so the
//! fuzzer reaches connected states it could never forge). The invariants are that nothing
//! panics, that output stops (no endless transmits or events), and that the selected path
//! changes only after a datagram carrying valid MESSAGE-INTEGRITY arrived: a forged or unsigned
//! datagram must never select a path. With bit 2 of the role byte set, the agent also allocates
//! on a TURN server at the address of remote selector 2, so the script's datagrams from there
//! reach the relay demultiplexer (ChannelData, TURN answers) instead of the ICE session.

use std::net::SocketAddr;

use holepunch_core::ice::agent::{Action, AgentConfig, IceEvent, IoResult};
use holepunch_core::ice::credentials::IceCredentials;
use holepunch_core::ice::offer::{self, OfferLine};
use holepunch_core::stun::attr::types;
use holepunch_core::stun::{
    Attribute, Class, IntegrityKey, Message, MessageBuilder, Method, TransactionId,
};
use holepunch_core::turn::{ClientConfig, Transport};
use holepunch_core::{Agent, Datagram, Duration, Event, Instant};

/// Most script steps one input runs (keeps every input fast).
const MAX_STEPS: usize = 256;
/// The agent's one host socket.
const LOCAL: &str = "192.0.2.1:5000";
/// Where the scripted peer's datagrams come from, by the step's selector byte.
const REMOTES: [&str; 4] = [
    "198.51.100.7:6000",
    "198.51.100.7:6001",
    "203.0.113.9:7000",
    "[2001:db8::7]:6000",
];
/// The peer's credentials until the script's offer lines replace them.
const PEER_UFRAG: &str = "peer";
const PEER_PWD: &str = "peerpassword0123456789ab";

/// One agent under test and what the harness knows about it.
struct Harness {
    agent: Agent,
    now: Instant,
    /// The peer's password, as the last valid `ice-ufrag`/`ice-pwd` pair set it.
    peer: IceCredentials,
    pending_ufrag: Option<String>,
    /// The agent's last Binding request: (to, from, transaction id).
    last_request: Option<(SocketAddr, SocketAddr, TransactionId)>,
    /// Whether any datagram with valid integrity was delivered so far.
    authenticated: bool,
    /// Whether the agent selected a path.
    selected: bool,
    buf: Vec<u8>,
}

/// Input of the `ice_agent` target: a script. Byte 0 picks the role; then each step is an
/// opcode byte and its operands (a length byte, then that many bytes, where it takes data).
pub fn check_agent(data: &[u8]) {
    run_agent(data);
}

/// Runs [`check_agent`]'s script and says whether the agent selected a path (so the corpus
/// replay can show the seeds reach the connected states the invariant is about).
pub fn run_agent(data: &[u8]) -> bool {
    let Some((&role, mut script)) = data.split_first() else {
        return false;
    };
    let controlling = role & 1 == 1;
    let mut h = Harness::new(controlling, role & 4 != 0);
    for _ in 0..MAX_STEPS {
        let Some((&op, rest)) = script.split_first() else {
            break;
        };
        script = rest;
        match op % 7 {
            0 => {
                let (line, rest) = take(script);
                script = rest;
                h.offer_line(&String::from_utf8_lossy(line));
            }
            1 => {
                let (selector, rest) = take_byte(script);
                let (payload, rest) = take(rest);
                script = rest;
                h.deliver(remote(selector), payload);
            }
            2 => {
                let (step, rest) = take_byte(script);
                script = rest;
                h.advance(Duration::from_millis(u64::from(step) * 50));
            }
            3 => h.answer_last_request(true),
            4 => h.answer_last_request(false),
            5 => {
                let (selector, rest) = take_byte(script);
                script = rest;
                h.peer_checks(remote(selector), selector & 0x80 != 0, true);
            }
            _ => {
                let (selector, rest) = take_byte(script);
                script = rest;
                h.peer_checks(remote(selector), selector & 0x80 != 0, false);
            }
        }
        h.drain();
    }
    h.selected
}

/// Input of the `offer_lines` target: an offer file, read line by line as `connect` reads one.
/// Every line the reader accepts must write back (with the writers the agents use) to a line
/// that reads back equal.
pub fn check_offer(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for line in text.lines().take(1_000) {
        let Ok(parsed) = OfferLine::parse(line) else {
            continue;
        };
        let mut written = String::new();
        let wrote = match parsed {
            OfferLine::Ufrag(u) => offer::write_ufrag(&mut written, u),
            OfferLine::Pwd(p) => offer::write_pwd(&mut written, p),
            OfferLine::Candidate(c) => offer::write_candidate(&mut written, &c),
            OfferLine::EndOfCandidates => offer::write_end(&mut written),
            _ => continue,
        };
        wrote.expect("writing to a String cannot fail");
        assert!(written.ends_with('\n'), "writers end lines: {written:?}");
        let again = OfferLine::parse(&written)
            .unwrap_or_else(|e| panic!("{written:?} (from {line:?}) does not read back: {e}"));
        assert_eq!(again, parsed, "{line:?} -> {written:?}");
    }
}

fn take(script: &[u8]) -> (&[u8], &[u8]) {
    let (len, rest) = take_byte(script);
    rest.split_at(usize::from(len).min(rest.len()))
}

fn take_byte(script: &[u8]) -> (u8, &[u8]) {
    script.split_first().map_or((0, script), |(b, r)| (*b, r))
}

fn remote(selector: u8) -> SocketAddr {
    REMOTES[usize::from(selector) % REMOTES.len()]
        .parse()
        .expect("constant")
}

impl Harness {
    fn new(controlling: bool, turn: bool) -> Harness {
        let mut config = AgentConfig::aggressive(controlling);
        config.stun_servers = vec!["203.0.113.1:3478".parse().expect("constant")];
        let mut agent = Agent::new(config, 0x5eed);
        let now = Instant::from_millis(1_000);
        agent
            .add_host_candidate(now, LOCAL.parse().expect("constant"))
            .expect("one host candidate fits");
        if turn {
            let server = remote(2);
            let config = ClientConfig::new(server, Transport::Udp, "user", "pass");
            agent
                .add_turn_server(now, LOCAL.parse().expect("constant"), config)
                .expect("one relay fits");
        }
        agent.gather(now);
        let peer = IceCredentials::new(PEER_UFRAG, PEER_PWD).expect("valid credentials");
        agent.set_remote_credentials(&peer);
        Harness {
            agent,
            now,
            peer,
            pending_ufrag: None,
            last_request: None,
            authenticated: false,
            selected: false,
            buf: vec![0; 1_500],
        }
    }

    fn offer_line(&mut self, line: &str) {
        match OfferLine::parse(line) {
            Ok(OfferLine::Ufrag(u)) => self.pending_ufrag = Some(u.to_owned()),
            Ok(OfferLine::Pwd(p)) => {
                let ufrag = self.pending_ufrag.take();
                if let Some(creds) = ufrag.and_then(|u| IceCredentials::new(&u, p).ok()) {
                    self.agent.set_remote_credentials(&creds);
                    self.peer = creds;
                }
            }
            Ok(OfferLine::Candidate(c)) => {
                let _ = self.agent.add_remote_candidate(self.now, c);
            }
            Ok(OfferLine::EndOfCandidates) => self.agent.end_of_remote_candidates(),
            Ok(_) | Err(_) => {}
        }
    }

    /// Feeds `payload` from `from`, noting whether it carried valid integrity under either
    /// password (a response signed with the peer's, a request with ours).
    fn deliver(&mut self, from: SocketAddr, payload: &[u8]) {
        if let Ok(msg) = Message::parse(payload) {
            let keys = [
                IntegrityKey::short_term(self.peer.pwd().as_bytes()),
                IntegrityKey::short_term(self.agent.local_credentials().pwd().as_bytes()),
            ];
            if keys.iter().any(|k| msg.verify_integrity(k).is_ok()) {
                self.authenticated = true;
            }
        }
        let local = LOCAL.parse().expect("constant");
        let _ = self
            .agent
            .handle_datagram(self.now, Datagram::new(local, from, payload));
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.agent.handle_timeout(self.now);
    }

    /// Answers the agent's last Binding request as the peer would (signed with the peer's
    /// password), or with a forged signature.
    fn answer_last_request(&mut self, signed: bool) {
        let Some((to, from, tid)) = self.last_request.take() else {
            return;
        };
        let key = if signed {
            IntegrityKey::short_term(self.peer.pwd().as_bytes())
        } else {
            IntegrityKey::short_term(b"forged-password-forged-password")
        };
        let mut buf = [0u8; 256];
        let len = {
            let Ok(mut m) =
                MessageBuilder::new(&mut buf, Class::SuccessResponse, Method::BINDING, tid)
            else {
                return;
            };
            if m.add(&Attribute::XorMappedAddress(from)).is_err()
                || m.add_message_integrity(&key).is_err()
                || m.add_fingerprint().is_err()
            {
                return;
            }
            m.finish()
        };
        self.deliver(to, &buf[..len]);
    }

    /// Sends the agent a connectivity check from `from`, signed with the agent's password (as
    /// the real peer would) or with a wrong one.
    fn peer_checks(&mut self, from: SocketAddr, nominate: bool, signed: bool) {
        let username = format!(
            "{}:{}",
            self.agent.local_credentials().ufrag(),
            self.peer.ufrag()
        );
        let key = if signed {
            IntegrityKey::short_term(self.agent.local_credentials().pwd().as_bytes())
        } else {
            IntegrityKey::short_term(b"forged-password-forged-password")
        };
        let mut buf = [0u8; 512];
        let len = {
            let Ok(mut m) = MessageBuilder::new(
                &mut buf,
                Class::Request,
                Method::BINDING,
                TransactionId([0x42; 12]),
            ) else {
                return;
            };
            let role = if self.agent.is_controlling() {
                Attribute::IceControlled(1)
            } else {
                Attribute::IceControlling(1)
            };
            let ok = m.add(&Attribute::Username(&username)).is_ok()
                && m.add(&Attribute::Priority(0x6e00_01ff)).is_ok()
                && m.add(&role).is_ok()
                && (!nominate || m.add(&Attribute::UseCandidate).is_ok())
                && m.add_message_integrity(&key).is_ok()
                && m.add_fingerprint().is_ok();
            if !ok {
                return;
            }
            m.finish()
        };
        self.deliver(from, &buf[..len]);
    }

    /// Drains every output, checking the invariants.
    fn drain(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            while let Some(action) = self.agent.poll_action() {
                moved = true;
                if let Action::BindSockets { token, count, ip } = action {
                    let sockets: Vec<SocketAddr> = (0..count.min(8))
                        .map(|k| SocketAddr::new(ip, 40_000 + k))
                        .collect();
                    self.agent
                        .handle_io(self.now, token, IoResult::SocketsBound(&sockets));
                }
            }
            while let Some(t) = self.agent.poll_transmit(self.now, &mut self.buf) {
                moved = true;
                assert!(t.len <= self.buf.len(), "a transmit longer than its buffer");
                // Connectivity checks carry USERNAME; requests to STUN servers do not.
                if let Ok(msg) = Message::parse(&self.buf[..t.len]) {
                    if msg.class() == Class::Request && msg.find(types::USERNAME).is_some() {
                        let from = t.from.unwrap_or_else(|| LOCAL.parse().expect("constant"));
                        self.last_request = Some((t.to, from, msg.transaction_id()));
                    }
                }
            }
            while let Some(event) = self.agent.poll_event() {
                moved = true;
                if let Event::Ice(IceEvent::Connected(_) | IceEvent::PathChanged(_)) = event {
                    assert!(
                        self.authenticated,
                        "a path was selected before any authenticated datagram: {event:?}"
                    );
                    self.selected = true;
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the agent never stopped producing output");
    }
}
