//! Stream mode (the default): ICE finds the path, then one QUIC connection over it carries one
//! bidirectional stream, reliable, ordered and encrypted.
//!
//! - Keys: each side signals `a=x-holepunch-key:sha256:HEX` before its offer ([`keyed`]).
//!   Once ICE has a path, the peer's key must have come (else: refused, naming `--datagram`),
//!   must match `--peer-key` if given, or `known_peers` with `--trust-first-use`.
//! - QUIC: the controlling ICE agent is the client, the controlled one the server; both present
//!   their certificate and accept only the key from the other's offer, so a signal server that
//!   rewrote a key or a candidate gets a failed handshake, and no byte of application data
//!   flows.
//! - The stream: the client opens it and writes [`HELLO`] so the server sees it at once; then
//!   the job runs ([`Job`]: stdin/stdout like netcat, or a file transfer). At EOF on stdin the
//!   send side is finished. Once a side has read the peer's whole stream and its own was
//!   acknowledged, it says so with an empty unidirectional stream; when both have said it (or
//!   the peer closed with code 0, which it does only then) the connection is closed with code
//!   0 and the command exits. Closing earlier could discard data the peer had not read yet.
//!
//! [`keyed`]: super::keyed

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use holepunch_tokio::Signalling;
use holepunch_tokio::ice::{ConnectError, Connection, ConnectionEvent};
use holepunch_tokio::quic;
use holepunch_tokio::quic_identity::Fingerprint;
use tokio::io::AsyncWriteExt;

use super::keyed::{Keyed, PeerKeySeen, PeerKeySlot};
use super::rerun::OfferWatch;
use super::{
    Common, Ending, OFFER_CHECK_EVERY, Outcome, Phase, STUN_SILENT_AFTER, WAITING_EVERY,
    no_path_within, silent_stun_warning, start,
};
use crate::keys::{self, Trust};
use crate::signal::StopSignals;

/// What the client writes first on the stream (the server checks it).
pub const HELLO: &[u8; 4] = b"HP1\n";
/// The QUIC handshake must finish this long after ICE found the path.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(20);
/// How long a peer's key line may trail the path (lines and checks race on some channels).
const KEY_GRACE: Duration = Duration::from_secs(2);
/// After closing, how long to let the close reach the peer.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// The application error code of a clean close.
const CLOSE_DONE: u32 = 0;
/// The application error code when this side gives up (interrupted, failed check).
const CLOSE_ABORT: u32 = 1;

/// What runs on the stream.
#[derive(Clone, Debug)]
pub enum Job {
    /// `connect`: stdin to the peer, the peer's data to stdout.
    Cat,
    /// `send FILE`.
    Send(PathBuf),
    /// `receive DIR`.
    Receive(PathBuf),
}

/// The stream of a running session, and what the job reports.
pub struct Stream {
    /// Our direction.
    pub send: quinn::SendStream,
    /// The peer's direction.
    pub recv: quinn::RecvStream,
}

/// How a job ended well: bytes sent and received, and why.
pub struct Done {
    /// Bytes we wrote on the stream.
    pub sent: u64,
    /// Bytes we read from it.
    pub received: u64,
    /// Whether to report `stream_closed` (the file jobs report their own event).
    pub report_closed: bool,
}

/// Runs ICE over `signalling`, then QUIC and the job (see the module docs).
pub(super) async fn converse<S: Signalling>(
    signalling: S,
    controlling: bool,
    common: &Common<'_>,
    signals: &mut StopSignals,
    mut offers: Option<&mut OfferWatch>,
) -> Outcome {
    let report = common.report;
    let link = &common.args.link;
    let Some(identity) = common.identity.as_deref() else {
        return Outcome::Done(report.failed("stream mode without an identity"));
    };
    let slot = Arc::new(PeerKeySlot::default());
    let keyed = Keyed::new(signalling, &identity.fingerprint(), Arc::clone(&slot));
    let deadline = report.started + link.timeout;
    let conn = match start(keyed, controlling, common, deadline).await {
        Ok(conn) => conn,
        Err(code) => return Outcome::Done(code),
    };
    let file_mode = offers.is_some();
    let mut phase = Phase {
        connected: false,
        ice_failed: false,
        srflx_seen: false,
        ending: Ending::default(),
        // No datagram pump: the stream carries the data.
        eof_tx: None,
    };
    let mut role = controlling;
    let mut waiting =
        tokio::time::interval_at((Instant::now() + WAITING_EVERY).into(), WAITING_EVERY);
    let stun_silent = tokio::time::sleep(STUN_SILENT_AFTER);
    tokio::pin!(stun_silent);
    let mut stun_checked = common.stun.is_empty();
    let mut offer_check = tokio::time::interval(OFFER_CHECK_EVERY);
    let path = loop {
        let give_up = tokio::time::sleep_until(deadline.into());
        tokio::select! {
            name = signals.recv() => {
                return Outcome::Done(report.failed(&format!("interrupted by {name}")));
            }
            event = conn.next_event(), if !phase.ice_failed => {
                let Some(event) = event else {
                    return Outcome::Done(report.failed("the session ended"));
                };
                tracing::debug!(?event, "connection event");
                match event {
                    ConnectionEvent::Connected(path) => {
                        super::keepalive::after_connecting(&conn, common);
                        break path;
                    }
                    ConnectionEvent::RoleChanged { controlling } => role = controlling,
                    other => {
                        if let Some(outcome) = phase.on_event(other, &conn, common, file_mode) {
                            return outcome;
                        }
                    }
                }
            }
            _ = waiting.tick(), if !common.tally.heard_peer() => report.waiting(&common.peer),
            () = &mut stun_silent, if !stun_checked => {
                stun_checked = true;
                if !phase.srflx_seen {
                    report.warning(&silent_stun_warning(common));
                }
            }
            _ = offer_check.tick(), if file_mode => {
                if offers.as_mut().is_some_and(|w| w.changed()) {
                    return Outcome::Restart;
                }
            }
            () = give_up, if phase.ice_failed => {
                return Outcome::Done(report.failed(&no_path_within(link.timeout)));
            }
        }
    };
    let peer_key = match peer_key(&slot).await {
        Ok(key) => key,
        Err(reason) => {
            report.path(true, &path);
            return Outcome::Done(report.failed(&reason));
        }
    };
    report.path_with_key(true, &path, Some(&peer_key));
    match trust(common, &peer_key) {
        Ok(how) => report.peer_key(&peer_key, how),
        Err(reason) => return Outcome::Done(report.failed(&reason)),
    }
    Outcome::Done(session(&conn, role, identity, peer_key, common, signals).await)
}

/// The peer's key from its offer, waiting [`KEY_GRACE`] for a line that trails the path.
async fn peer_key(slot: &PeerKeySlot) -> Result<Fingerprint, String> {
    let until = Instant::now() + KEY_GRACE;
    loop {
        match slot.get() {
            PeerKeySeen::Key(key) => return Ok(key),
            PeerKeySeen::Malformed(e) => {
                return Err(format!(
                    "the peer's offer carries a malformed key line ({e}); stream mode needs a \
                     valid one (use --datagram for plain, unencrypted datagrams)"
                ));
            }
            PeerKeySeen::None if Instant::now() >= until => {
                return Err(
                    "the peer's offer carries no key (a=x-holepunch-key): it is another \
                            ICE stack or an older holepunch. Stream mode is encrypted and needs \
                            the peer's key; use --datagram on both sides for plain UDP \
                            datagrams"
                        .into(),
                );
            }
            PeerKeySeen::None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// How the peer's key is trusted: `pinned`, `stored`, `known` or `unverified`; an error when
/// it contradicts `--peer-key` or `known_peers`.
fn trust(common: &Common<'_>, key: &Fingerprint) -> Result<&'static str, String> {
    let link = &common.args.link;
    if let Some(pin) = link.peer_key {
        return if pin == *key {
            Ok("pinned")
        } else {
            Err(format!(
                "the peer's key is {key}, not the one given with --peer-key ({pin}); refusing \
                 to connect"
            ))
        };
    }
    if link.trust_first_use {
        return match keys::trust_first_use(&common.peer, key)? {
            Trust::Stored(_) => Ok("stored"),
            Trust::Known => Ok("known"),
        };
    }
    Ok("unverified")
}

/// QUIC over the path, then the job; the exit status.
async fn session(
    conn: &Arc<Connection>,
    client: bool,
    identity: &holepunch_tokio::quic_identity::Identity,
    peer_key: Fingerprint,
    common: &Common<'_>,
    signals: &mut StopSignals,
) -> ExitCode {
    let report = common.report;
    let handshake = async {
        let (endpoint, qconn) = quic::connect(Arc::clone(conn), client, identity, peer_key)
            .await
            .map_err(|e| handshake_failed(&e.to_string(), &peer_key))?;
        match open_stream(&qconn, client).await {
            Ok(stream) => Ok((endpoint, qconn, stream)),
            Err(e) => Err(handshake_failed(&e, &peer_key)),
        }
    };
    tokio::pin!(handshake);
    let limit = tokio::time::sleep(HANDSHAKE_LIMIT);
    tokio::pin!(limit);
    let mut events_open = true;
    let (endpoint, qconn, stream) = loop {
        tokio::select! {
            r = &mut handshake => match r {
                Ok(all) => break all,
                Err(reason) => return report.failed(&reason),
            },
            name = signals.recv() => return report.failed(&format!("interrupted by {name}")),
            event = conn.next_event(), if events_open => {
                if let Some(code) = ice_event(event, &mut events_open, common) {
                    return code;
                }
            }
            () = &mut limit => {
                return report.failed(&format!(
                    "no QUIC handshake within {} s of the path (the peer may not be in stream \
                     mode: use --datagram on both sides, or neither)",
                    HANDSHAKE_LIMIT.as_secs()
                ));
            }
        }
    };
    let job = run_job(stream, common);
    tokio::pin!(job);
    let result = loop {
        tokio::select! {
            r = &mut job => break r,
            name = signals.recv() => {
                qconn.close(CLOSE_ABORT.into(), b"interrupted");
                let _ = tokio::time::timeout(CLOSE_WAIT, endpoint.wait_idle()).await;
                return report.failed(&format!("interrupted by {name}"));
            }
            event = conn.next_event(), if events_open => {
                if let Some(code) = ice_event(event, &mut events_open, common) {
                    return code;
                }
            }
        }
    };
    let code = match result {
        Ok(done) => {
            if let Err(reason) = read_all_handshake(&qconn).await {
                return report.failed(&reason);
            }
            qconn.close(CLOSE_DONE.into(), b"done");
            if done.report_closed {
                report.stream_closed(done.sent, done.received, "both sides done");
            }
            ExitCode::SUCCESS
        }
        Err(reason) => {
            qconn.close(CLOSE_ABORT.into(), b"failed");
            report.failed(&reason)
        }
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, endpoint.wait_idle()).await;
    code
}

/// Tells the peer we read all it sent (an empty unidirectional stream) and waits until it says
/// the same, or closed the connection cleanly (which it does only after reading everything).
/// Closing before then could discard data the peer's application has not read yet.
async fn read_all_handshake(qconn: &quinn::Connection) -> Result<(), String> {
    let lost = |e: &dyn std::fmt::Display| format!("the QUIC connection failed at the end: {e}");
    // Ours must be acknowledged before we close: a CONNECTION_CLOSE is sent once (and again
    // only in answer to the peer's packets), so a lost unacknowledged stream would leave the
    // peer waiting.
    let tell = async {
        let mut uni = match qconn.open_uni().await {
            Ok(uni) => uni,
            Err(e) if closed_cleanly(&e) => return Ok(()),
            Err(e) => return Err(lost(&e)),
        };
        let _ = uni.finish();
        match uni.stopped().await {
            Ok(_) => Ok(()),
            Err(quinn::StoppedError::ConnectionLost(e)) if closed_cleanly(&e) => Ok(()),
            Err(e) => Err(lost(&e)),
        }
    };
    let hear = async {
        match qconn.accept_uni().await {
            Ok(_) => Ok(()),
            Err(e) if closed_cleanly(&e) => Ok(()),
            Err(e) => Err(lost(&e)),
        }
    };
    // Hearing the peer is what we need: it read everything we sent, and we read all it sent.
    // Telling it is owed to the peer, so it gets the close wait once we heard; under heavy
    // loss the peer may have heard us, closed and gone, with its acknowledgement and its
    // CONNECTION_CLOSE lost, and waiting for those would fail a transfer that completed.
    tokio::pin!(tell);
    tokio::pin!(hear);
    let limit = tokio::time::sleep(HANDSHAKE_LIMIT);
    tokio::pin!(limit);
    let mut told = None;
    let heard = loop {
        tokio::select! {
            r = &mut tell, if told.is_none() => told = Some(r),
            r = &mut hear => break r,
            () = &mut limit => {
                return Err("the peer did not confirm the end of the stream".into());
            }
        }
    };
    heard?;
    match told {
        Some(r) => r,
        None => {
            let _ = tokio::time::timeout(CLOSE_WAIT, &mut tell).await;
            Ok(())
        }
    }
}

/// Reports an ICE event during the QUIC phase; `Some` when the session is over.
fn ice_event(
    event: Option<ConnectionEvent>,
    open: &mut bool,
    common: &Common<'_>,
) -> Option<ExitCode> {
    let report = common.report;
    tracing::debug!(?event, "connection event");
    match event {
        None => *open = false,
        Some(ConnectionEvent::PathChanged(p)) => report.path(false, &p),
        Some(ConnectionEvent::ConsentLost(p)) => report.consent_lost(&p),
        Some(ConnectionEvent::BlindPunching { hard, easy }) => report.blind_punching(hard, easy),
        Some(ConnectionEvent::Restarted(reason)) => report.restarted(reason),
        Some(ConnectionEvent::KeepaliveInterval(interval)) => report.keepalive(interval),
        Some(ConnectionEvent::SignallingClosed(e)) => report.signalling_closed(e.as_ref()),
        Some(ConnectionEvent::Failed(ConnectError::TimedOut(_))) => {
            return Some(report.failed(&no_path_within(common.args.link.timeout)));
        }
        Some(ConnectionEvent::Failed(e)) => return Some(report.failed(&e.to_string())),
        Some(_) => {}
    }
    None
}

/// The reason for a failed handshake, for people.
fn handshake_failed(e: &str, expected: &Fingerprint) -> String {
    format!(
        "QUIC handshake failed: {e}. The key presented did not match the one in the offer \
         ({expected} for the peer), or the peer refused ours: the offers may have been \
         changed on the way (a signal server in the middle); no data was exchanged"
    )
}

/// Runs the job on the stream.
async fn run_job(stream: Stream, common: &Common<'_>) -> Result<Done, String> {
    match &common.job {
        Job::Cat => cat(stream).await,
        Job::Send(path) => crate::send::send_file(stream, path, common.report).await,
        Job::Receive(dir) => crate::receive::receive_file(stream, dir, common.report).await,
    }
}

/// Opens (client) or accepts (server) the stream and exchanges [`HELLO`] both ways. In TLS
/// 1.3 the client's certificate is judged after the client considers the handshake done, so
/// only the server's greeting tells the client that the server accepted its key.
async fn open_stream(qconn: &quinn::Connection, client: bool) -> Result<Stream, String> {
    let mut hello = [0u8; HELLO.len()];
    let (mut send, mut recv) = if client {
        let (mut send, recv) = qconn.open_bi().await.map_err(|e| e.to_string())?;
        send.write_all(HELLO).await.map_err(|e| write_reason(&e))?;
        (send, recv)
    } else {
        qconn.accept_bi().await.map_err(|e| e.to_string())?
    };
    recv.read_exact(&mut hello).await.map_err(|e| match e {
        quinn::ReadExactError::ReadError(e) => read_reason(&e),
        quinn::ReadExactError::FinishedEarly(_) => "the peer ended the stream at once".into(),
    })?;
    if &hello != HELLO {
        return Err("the peer's stream does not start with holepunch's greeting".into());
    }
    if !client {
        send.write_all(HELLO).await.map_err(|e| write_reason(&e))?;
    }
    Ok(Stream { send, recv })
}

/// A read error, naming the connection's error when that is what broke it.
pub fn read_reason(e: &quinn::ReadError) -> String {
    match e {
        quinn::ReadError::ConnectionLost(c) => c.to_string(),
        other => other.to_string(),
    }
}

/// A write error, naming the connection's error when that is what broke it.
pub fn write_reason(e: &quinn::WriteError) -> String {
    match e {
        quinn::WriteError::ConnectionLost(c) => c.to_string(),
        other => other.to_string(),
    }
}

/// Finishes our side and waits until the peer has it all; a peer that closed the connection
/// cleanly (code 0, after reading everything) counts as done.
pub async fn finish(send: &mut quinn::SendStream) -> Result<(), String> {
    // Already finished or reset: `stopped` still tells how it ended.
    let _ = send.finish();
    match send.stopped().await {
        Ok(None) => Ok(()),
        Ok(Some(code)) => Err(format!("the peer stopped reading (code {code})")),
        Err(quinn::StoppedError::ConnectionLost(e)) if closed_cleanly(&e) => Ok(()),
        Err(e) => Err(format!(
            "the stream failed before the peer had all our data: {e}"
        )),
    }
}

/// Whether the peer closed the connection with the clean code.
pub fn closed_cleanly(e: &quinn::ConnectionError) -> bool {
    matches!(e, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == CLOSE_DONE.into())
}

/// stdin to the stream, the stream to stdout, until both are done.
async fn cat(stream: Stream) -> Result<Done, String> {
    let Stream { mut send, mut recv } = stream;
    let up = async {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 64 * 1024];
        let mut sent = 0u64;
        loop {
            let n = match tokio::io::AsyncReadExt::read(&mut stdin, &mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => return Err(format!("reading stdin: {e}")),
            };
            send.write_all(&buf[..n])
                .await
                .map_err(|e| format!("the stream failed: {}", write_reason(&e)))?;
            sent += n as u64;
        }
        finish(&mut send).await?;
        Ok(sent)
    };
    let down = async {
        let mut stdout = tokio::io::stdout();
        let mut open = true;
        let mut received = 0u64;
        loop {
            match recv.read_chunk(usize::MAX, true).await {
                Ok(Some(chunk)) => {
                    received += chunk.bytes.len() as u64;
                    // A closed stdout (`| head`) discards the rest.
                    if open && stdout.write_all(&chunk.bytes).await.is_err() {
                        open = false;
                    }
                }
                Ok(None) => break,
                Err(quinn::ReadError::ConnectionLost(e)) if closed_cleanly(&e) => break,
                Err(e) => {
                    return Err(format!(
                        "the stream from the peer failed: {}",
                        read_reason(&e)
                    ));
                }
            }
        }
        if open {
            let _ = stdout.flush().await;
        }
        Ok(received)
    };
    let (sent, received) = tokio::try_join!(up, down)?;
    Ok(Done {
        sent,
        received,
        report_closed: true,
    })
}
