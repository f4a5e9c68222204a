//! Ethernet II / IPv4 / UDP framing for raw-socket DHCP traffic.
//!
//! [`UdpFrame::parse`] accepts an Ethernet II frame (one 802.1Q tag is skipped) carrying an
//! unfragmented IPv4/UDP datagram and checks every length, the IPv4 header checksum and the UDP
//! checksum (when the sender set one). [`UdpFrame::emit`] builds the frame a server sends to a
//! client that has no address yet (RFC 2131 §4.1). Neither panics on any input.

use std::net::Ipv4Addr;

use ims_proto::MacAddr;

/// A parsed UDP-in-IPv4-in-Ethernet frame, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFrame<'a> {
    /// Ethernet source.
    pub src_mac: MacAddr,
    /// Ethernet destination.
    pub dst_mac: MacAddr,
    /// IPv4 source.
    pub src_ip: Ipv4Addr,
    /// IPv4 destination.
    pub dst_ip: Ipv4Addr,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// UDP payload.
    pub payload: &'a [u8],
}

/// Why a frame was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Too short for the headers it claims.
    #[error("truncated frame")]
    Truncated,
    /// Not IPv4/UDP (other EtherType or protocol).
    #[error("not an IPv4/UDP frame")]
    NotUdp,
    /// IPv4 header invalid (version, IHL, total length, checksum) or a fragment.
    #[error("bad IPv4 header")]
    BadIpv4,
    /// UDP length or checksum wrong.
    #[error("bad UDP header")]
    BadUdp,
}

/// EtherType of IPv4.
const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of an IEEE 802.1Q VLAN tag.
const ETHERTYPE_VLAN: u16 = 0x8100;
/// IPv4 protocol number of UDP.
const PROTOCOL_UDP: u8 = 17;
/// Ethernet II header length (no tag).
const ETHERNET_LEN: usize = 14;
/// IPv4 header length without options.
const IPV4_LEN: usize = 20;
/// UDP header length.
const UDP_LEN: usize = 8;
/// IPv4 "more fragments" flag and fragment offset bits.
const FRAGMENT_MASK: u16 = 0x3fff;
/// Time to live of emitted datagrams.
const TTL: u8 = 64;

impl<'a> UdpFrame<'a> {
    /// Largest payload [`UdpFrame::emit`] carries: what fits in an IPv4 total length of 65,535.
    pub const MAX_PAYLOAD: usize = u16::MAX as usize - IPV4_LEN - UDP_LEN;

    /// Decodes an Ethernet II frame carrying IPv4/UDP.
    ///
    /// One 802.1Q tag is skipped; IPv4 options are skipped; trailing bytes after the IPv4 total
    /// length (Ethernet padding) are ignored; the payload is exactly the UDP length minus the
    /// UDP header.
    ///
    /// # Errors
    ///
    /// [`FrameError::Truncated`] when a header is cut short, [`FrameError::NotUdp`] for another
    /// EtherType or IP protocol, [`FrameError::BadIpv4`] for a wrong version, IHL, total length
    /// or header checksum or for any fragment, and [`FrameError::BadUdp`] for a UDP length that
    /// does not fit the datagram or a wrong non-zero checksum.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FrameError> {
        let Some((ethernet, mut rest)) = bytes.split_first_chunk::<ETHERNET_LEN>() else {
            return Err(FrameError::Truncated);
        };
        let mut ethertype = u16::from_be_bytes([ethernet[12], ethernet[13]]);
        if ethertype == ETHERTYPE_VLAN {
            let Some((tag, tail)) = rest.split_first_chunk::<4>() else {
                return Err(FrameError::Truncated);
            };
            ethertype = u16::from_be_bytes([tag[2], tag[3]]);
            rest = tail;
        }
        if ethertype != ETHERTYPE_IPV4 {
            return Err(FrameError::NotUdp);
        }

        let Some(ip) = rest.first_chunk::<IPV4_LEN>() else {
            return Err(FrameError::Truncated);
        };
        if ip[0] >> 4 != 4 {
            return Err(FrameError::BadIpv4);
        }
        let header_len = usize::from(ip[0] & 0x0f) * 4;
        if header_len < IPV4_LEN {
            return Err(FrameError::BadIpv4);
        }
        let Some(ip_header) = rest.get(..header_len) else {
            return Err(FrameError::Truncated);
        };
        let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let Some(ip_payload) = rest.get(header_len..total_len) else {
            // Shorter than its own header, or longer than the frame.
            return Err(FrameError::BadIpv4);
        };
        if checksum(ip_header, 0) != 0 {
            return Err(FrameError::BadIpv4);
        }
        if u16::from_be_bytes([ip[6], ip[7]]) & FRAGMENT_MASK != 0 {
            return Err(FrameError::BadIpv4);
        }
        if ip[9] != PROTOCOL_UDP {
            return Err(FrameError::NotUdp);
        }
        let src_ip = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst_ip = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);

        let Some((udp, _)) = ip_payload.split_first_chunk::<UDP_LEN>() else {
            return Err(FrameError::Truncated);
        };
        let udp_len = u16::from_be_bytes([udp[4], udp[5]]);
        let Some(datagram) = ip_payload.get(..usize::from(udp_len)) else {
            return Err(FrameError::BadUdp);
        };
        let Some(payload) = datagram.get(UDP_LEN..) else {
            return Err(FrameError::BadUdp);
        };
        // RFC 768: a zero checksum means the sender computed none.
        if u16::from_be_bytes([udp[6], udp[7]]) != 0
            && checksum(datagram, pseudo_header_sum(src_ip, dst_ip, udp_len)) != 0
        {
            return Err(FrameError::BadUdp);
        }

        Ok(Self {
            src_mac: mac_at(&ethernet[6..12]),
            dst_mac: mac_at(&ethernet[..6]),
            src_ip,
            dst_ip,
            src_port: u16::from_be_bytes([udp[0], udp[1]]),
            dst_port: u16::from_be_bytes([udp[2], udp[3]]),
            payload,
        })
    }

    /// Appends the complete frame to `out`: an untagged Ethernet II header, an IPv4 header
    /// (TTL 64, identification 0, DF clear, no options) and a UDP header, both with correct
    /// checksums (a computed UDP checksum of 0 is sent as `0xFFFF`, RFC 768), then the payload.
    /// A payload longer than [`UdpFrame::MAX_PAYLOAD`] is truncated to it. No Ethernet padding is
    /// added; the kernel or NIC pads short frames.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let payload = self
            .payload
            .get(..Self::MAX_PAYLOAD)
            .unwrap_or(self.payload);
        // Both fit: `payload` is at most 65,507 bytes.
        let udp_len = u16::try_from(UDP_LEN + payload.len()).unwrap_or(u16::MAX);
        let total_len = u16::try_from(IPV4_LEN + UDP_LEN + payload.len()).unwrap_or(u16::MAX);
        out.reserve(ETHERNET_LEN + usize::from(total_len));

        out.extend_from_slice(&self.dst_mac.octets());
        out.extend_from_slice(&self.src_mac.octets());
        out.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());

        let [total_hi, total_lo] = total_len.to_be_bytes();
        let [s0, s1, s2, s3] = self.src_ip.octets();
        let [d0, d1, d2, d3] = self.dst_ip.octets();
        let mut ip = [
            0x45,
            0,
            total_hi,
            total_lo,
            0,
            0,
            0,
            0,
            TTL,
            PROTOCOL_UDP,
            0,
            0,
            s0,
            s1,
            s2,
            s3,
            d0,
            d1,
            d2,
            d3,
        ];
        let [c_hi, c_lo] = checksum(&ip, 0).to_be_bytes();
        ip[10] = c_hi;
        ip[11] = c_lo;
        out.extend_from_slice(&ip);

        let mut udp = [0u8; UDP_LEN];
        udp[..2].copy_from_slice(&self.src_port.to_be_bytes());
        udp[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
        let sum = ones_complement_sum(&udp, pseudo_header_sum(self.src_ip, self.dst_ip, udp_len));
        let udp_checksum = match !fold(ones_complement_sum(payload, sum)) {
            0 => 0xffff,
            c => c,
        };
        udp[6..].copy_from_slice(&udp_checksum.to_be_bytes());
        out.extend_from_slice(&udp);
        out.extend_from_slice(payload);
    }

    /// The exact number of bytes [`UdpFrame::emit`] appends.
    pub fn buffer_len(&self) -> usize {
        ETHERNET_LEN + IPV4_LEN + UDP_LEN + self.payload.len().min(Self::MAX_PAYLOAD)
    }
}

/// The six bytes at the start of `bytes` as a MAC address (zero-filled if shorter).
fn mac_at(bytes: &[u8]) -> MacAddr {
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(bytes) {
        *dst = *src;
    }
    MacAddr(mac)
}

/// Unfolded sum of the UDP pseudo-header (RFC 768).
fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, udp_len: u16) -> u64 {
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.octets());
    pseudo[9] = PROTOCOL_UDP;
    pseudo[10..].copy_from_slice(&udp_len.to_be_bytes());
    ones_complement_sum(&pseudo, 0)
}

/// Adds `data` as big-endian 16-bit words (an odd last byte padded with zero) to `acc`,
/// without folding (RFC 1071).
fn ones_complement_sum(data: &[u8], acc: u64) -> u64 {
    let mut words = data.chunks_exact(2);
    let mut sum = acc;
    for word in &mut words {
        sum += u64::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Folds carries back into 16 bits (RFC 1071).
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The loop leaves at most 16 bits.
    u16::try_from(sum).unwrap_or(u16::MAX)
}

/// The Internet checksum of `data` on top of `acc`: zero when `data` already carries a correct
/// checksum field.
fn checksum(data: &[u8], acc: u64) -> u16 {
    !fold(ones_complement_sum(data, acc))
}

#[cfg(test)]
mod tests;
