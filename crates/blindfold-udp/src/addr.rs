//! Conversions between `std::net` addresses and the kernel's `sockaddr_storage`, and the
//! zero-initialised arrays the batches are built from. Owns no socket.

use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ptr;

pub(crate) fn zeroed_mmsghdrs(n: usize) -> Box<[libc::mmsghdr]> {
    // SAFETY: `mmsghdr` is a plain C struct of integers and raw pointers, for which the
    // all-zero bit pattern is valid (null pointers, zero lengths).
    let zero: libc::mmsghdr = unsafe { mem::zeroed() };
    vec![zero; n].into_boxed_slice()
}

pub(crate) fn zeroed_storages(n: usize) -> Box<[libc::sockaddr_storage]> {
    // SAFETY: `sockaddr_storage` is plain bytes; all-zero is a valid (AF_UNSPEC) value.
    let zero: libc::sockaddr_storage = unsafe { mem::zeroed() };
    vec![zero; n].into_boxed_slice()
}

pub(crate) fn empty_iovecs(n: usize) -> Box<[libc::iovec]> {
    let empty = libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    };
    vec![empty; n].into_boxed_slice()
}

/// Reads the address the kernel wrote into `storage`. Returns `None` for a family other
/// than IPv4/IPv6, which a UDP socket of those families never produces.
pub(crate) fn storage_to_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the kernel wrote a `sockaddr_in`; `sockaddr_storage`
            // is at least as large and as aligned as every sockaddr type.
            let sin: libc::sockaddr_in =
                unsafe { ptr::read(ptr::from_ref(storage).cast::<libc::sockaddr_in>()) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for `sockaddr_in6`.
            let sin6: libc::sockaddr_in6 =
                unsafe { ptr::read(ptr::from_ref(storage).cast::<libc::sockaddr_in6>()) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                u32::from_be(sin6.sin6_flowinfo),
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Writes `addr` into `storage` and returns the length to pass as `msg_namelen`.
pub(crate) fn addr_to_storage(
    addr: SocketAddr,
    storage: &mut libc::sockaddr_storage,
) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `sockaddr_storage` is at least as large and as aligned as
            // `sockaddr_in`, and `storage` is a valid exclusive reference.
            unsafe { ptr::write(ptr::from_mut(storage).cast::<libc::sockaddr_in>(), sin) };
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo().to_be(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for `sockaddr_in6`.
            unsafe { ptr::write(ptr::from_mut(storage).cast::<libc::sockaddr_in6>(), sin6) };
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_through_storage() {
        let mut s = zeroed_storages(1);
        for a in [
            "192.0.2.7:4321".parse::<SocketAddr>().unwrap(),
            "[2001:db8::5]:9".parse().unwrap(),
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 7, 0x12345, 3)),
        ] {
            let len = addr_to_storage(a, &mut s[0]);
            let want = if a.is_ipv4() {
                mem::size_of::<libc::sockaddr_in>()
            } else {
                mem::size_of::<libc::sockaddr_in6>()
            };
            assert_eq!(len as usize, want);
            assert_eq!(storage_to_addr(&s[0]), Some(a));
        }
    }

    #[test]
    fn unknown_family_reads_as_none() {
        let s = zeroed_storages(1);
        assert_eq!(storage_to_addr(&s[0]), None);
    }
}
