//! The few socket options std does not expose: `SO_REUSEPORT` before bind, receive-buffer
//! sizing, and a classic BPF program that steers each source to one `SO_REUSEPORT` worker.
//!
//! This is the only `unsafe` in the driver: plain `setsockopt`/`socket`/`bind` calls on a file
//! descriptor this module creates or borrows, with sizes taken from the types passed.
#![allow(unsafe_code)]

use std::io;
use std::net::{SocketAddr, UdpSocket};

#[cfg(target_os = "linux")]
mod imp {
    use super::*;
    use std::os::fd::{AsRawFd, FromRawFd, RawFd};

    fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret)
        }
    }

    fn set_int(
        fd: RawFd,
        level: libc::c_int,
        name: libc::c_int,
        value: libc::c_int,
    ) -> io::Result<()> {
        // SAFETY: `value` outlives the call and its size is passed; `fd` is an open socket.
        check(unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        })
        .map(|_| ())
    }

    fn get_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
        let mut value: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` and `len` are valid for writes of the sizes given.
        check(unsafe {
            libc::getsockopt(
                fd,
                level,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        })?;
        Ok(value)
    }

    /// A UDP socket bound to `addr`, with `SO_REUSEPORT` set before the bind when `reuse_port`.
    ///
    /// Port 0 with `SO_REUSEPORT` is chosen by a plain bind first: the kernel's ephemeral-port
    /// search does not count another `SO_REUSEPORT` group of the same user as a conflict, so a
    /// direct bind could silently join (and split the traffic of) someone else's server.
    pub(crate) fn bind_udp(mut addr: SocketAddr, reuse_port: bool) -> io::Result<UdpSocket> {
        if !reuse_port {
            return UdpSocket::bind(addr);
        }
        if addr.port() == 0 {
            let probe = UdpSocket::bind(addr)?;
            addr.set_port(probe.local_addr()?.port());
        }
        let family = if addr.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        // SAFETY: plain socket(2); the descriptor is owned by the UdpSocket below at once.
        let fd = check(unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
        // SAFETY: `fd` was just created and is owned by nothing else.
        let socket = unsafe { UdpSocket::from_raw_fd(fd) };
        set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        let ret = match addr {
            SocketAddr::V4(a) => {
                let sa = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: `sa` is a valid sockaddr_in and its size is passed.
                unsafe {
                    libc::bind(
                        fd,
                        (&sa as *const libc::sockaddr_in).cast(),
                        size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    )
                }
            }
            SocketAddr::V6(a) => {
                let sa = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: `sa` is a valid sockaddr_in6 and its size is passed.
                unsafe {
                    libc::bind(
                        fd,
                        (&sa as *const libc::sockaddr_in6).cast(),
                        size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                    )
                }
            }
        };
        check(ret)?;
        Ok(socket)
    }

    /// Asks for a receive buffer of `bytes`, past `net.core.rmem_max` when the process may
    /// (CAP_NET_ADMIN); returns the size the kernel granted (it reports twice what it books
    /// for payload, as `SO_RCVBUF` does).
    pub(crate) fn size_recv_buffer(socket: &UdpSocket, bytes: usize) -> io::Result<usize> {
        let fd = socket.as_raw_fd();
        let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, want)?;
        if usize::try_from(get_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF)?).unwrap_or(0) < bytes {
            // Without the capability this fails with EPERM and the capped size stays.
            let _ = set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, want);
        }
        Ok(usize::try_from(get_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF)?).unwrap_or(0))
    }

    /// Makes the kernel deliver each datagram of `socket`'s `SO_REUSEPORT` group to socket
    /// number `word % workers`, where `word` is bytes 12..16 of the IP header: the IPv4 source
    /// address, or bytes 4..8 of the IPv6 source (inside its /64). So one source, on every
    /// address of the server, always meets the same worker and its rate-limit table.
    pub(crate) fn steer_by_source(socket: &UdpSocket, workers: u32) -> io::Result<()> {
        const SKF_NET_OFF: i32 = -0x10_0000;
        let mut program = [
            // ld [net + 12]: A = 32-bit word of the source address.
            libc::sock_filter {
                code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
                jt: 0,
                jf: 0,
                k: (SKF_NET_OFF + 12) as u32,
            },
            // A %= workers
            libc::sock_filter {
                code: (libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K) as u16,
                jt: 0,
                jf: 0,
                k: workers.max(1),
            },
            // ret A: the index of the socket in the group.
            libc::sock_filter {
                code: (libc::BPF_RET | libc::BPF_A) as u16,
                jt: 0,
                jf: 0,
                k: 0,
            },
        ];
        let fprog = libc::sock_fprog {
            len: program.len() as u16,
            filter: program.as_mut_ptr(),
        };
        // SAFETY: `fprog` points at `program`, both alive for the call; the kernel copies them.
        check(unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_REUSEPORT_CBPF,
                (&fprog as *const libc::sock_fprog).cast(),
                size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        })
        .map(|_| ())
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::*;

    /// Without Linux's options: a plain bind (one worker only).
    pub(crate) fn bind_udp(addr: SocketAddr, reuse_port: bool) -> io::Result<UdpSocket> {
        if reuse_port {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "SO_REUSEPORT workers need Linux",
            ));
        }
        UdpSocket::bind(addr)
    }

    /// Not sized: the platform default stays (0 means unknown).
    pub(crate) fn size_recv_buffer(_: &UdpSocket, _: usize) -> io::Result<usize> {
        Ok(0)
    }

    /// Not available.
    pub(crate) fn steer_by_source(_: &UdpSocket, _: u32) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "needs Linux"))
    }
}

pub(crate) use imp::{bind_udp, size_recv_buffer, steer_by_source};
