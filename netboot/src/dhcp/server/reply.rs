//! Building replies: options (RFC 2132), PXE fields, NAKs and where each reply goes
//! (RFC 2131 §4.1).

use std::net::{Ipv4Addr, SocketAddrV4};

use ims_proto::MacAddr;

use crate::config::Subnet;
use crate::dhcp::boot::{BootDecision, Transport};
use crate::dhcp::wire::{Message, MessageType, Options, code};
use crate::dhcp::{Destination, InterfaceId};

/// PXE vendor options (option 43): discovery control (6) = 8, "use the boot file in this reply,
/// skip boot server discovery" (PXE 2.1 §2.4.4), then END.
const PXE_VENDOR_OPTIONS: [u8; 4] = [6, 1, 8, 255];
/// iPXE encapsulated options (option 175): `no-pxedhcp` (176) = 1.
const IPXE_NO_PXEDHCP: [u8; 3] = [176, 1, 1];
/// Longest boot file name that fits the 128-byte `file` field with its terminating NUL.
const FILE_FIELD_MAX: usize = 127;
/// Longest value put in a string option; anything longer is left out rather than split.
const MAX_STRING_OPTION: usize = 255;

/// Start a reply of type `message_type` to `request` from `server_id`; option 82 is echoed
/// unchanged when the request carried it (RFC 3046 §2.2; the encoder puts it last).
pub(super) fn skeleton(
    request: &Message,
    message_type: MessageType,
    server_id: Ipv4Addr,
) -> Message {
    let mut reply = Message::new_reply(request, message_type);
    reply.options.set_ipv4(code::SERVER_ID, server_id);
    if let Some(info) = request.options.relay_agent_info() {
        reply.options.set(code::RELAY_AGENT_INFO, info.to_vec());
    }
    reply
}

/// Lease time (51) with T1 (58) = half and T2 (59) = seven eighths of it.
pub(super) fn set_lease_time(reply: &mut Options, lease_time: u32) {
    let t1 = u64::from(lease_time) / 2;
    let t2 = u64::from(lease_time) * 7 / 8;
    reply.set_u32(code::LEASE_TIME, lease_time);
    reply.set_u32(code::RENEWAL_TIME, u32::try_from(t1).unwrap_or(u32::MAX));
    reply.set_u32(code::REBINDING_TIME, u32::try_from(t2).unwrap_or(u32::MAX));
}

/// The subnet's configuration options, each only when we have a value and the client asked for
/// it (option 55) or sent no parameter request list; subnet mask and router always.
pub(super) fn set_config_options(
    reply: &mut Options,
    request: &Options,
    subnet: &Subnet,
    hostname: Option<&str>,
) {
    let has_prl = request.contains(code::PARAMETER_REQUEST_LIST);
    let prl = request.parameter_request_list();
    let wanted = |c: u8| !has_prl || prl.contains(&c);

    reply.set_ipv4(code::SUBNET_MASK, subnet.cidr.netmask());
    if let Some(router) = subnet.router {
        reply.set_ipv4(code::ROUTER, router);
    }
    if !subnet.dns.is_empty() && wanted(code::DNS) {
        reply.set_ipv4_list(code::DNS, &subnet.dns);
    }
    if let Some(domain) = subnet.domain.as_deref().filter(|d| fits(d)) {
        if wanted(code::DOMAIN_NAME) {
            reply.set_str(code::DOMAIN_NAME, domain);
        }
    }
    if let Some(name) = hostname.filter(|h| fits(h)) {
        if wanted(code::HOSTNAME) {
            reply.set_str(code::HOSTNAME, name);
        }
    }
    if subnet.cidr.prefix_len() < 31 && wanted(code::BROADCAST_ADDRESS) {
        reply.set_ipv4(code::BROADCAST_ADDRESS, subnet.cidr.broadcast());
    }
}

/// Whether a string option value is worth sending.
fn fits(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_STRING_OPTION
}

/// Apply a boot decision: vendor class (60), PXE (43) and iPXE (175) options, and when a file was
/// chosen: option 67 and `file`, `siaddr` = `next_server`, and for TFTP option 66 and `sname`.
pub(super) fn set_boot(reply: &mut Message, decision: &BootDecision, next_server: Ipv4Addr) {
    let Some((file, transport)) = &decision.boot_file else {
        return;
    };
    if let Some(vendor) = decision.vendor_class {
        reply.options.set_str(code::VENDOR_CLASS, vendor);
    }
    if decision.pxe_discovery_control {
        reply
            .options
            .set(code::VENDOR_SPECIFIC, PXE_VENDOR_OPTIONS.to_vec());
    }
    if decision.ipxe_no_pxedhcp {
        reply
            .options
            .set(code::IPXE_ENCAP, IPXE_NO_PXEDHCP.to_vec());
    }
    reply.options.set_str(code::BOOTFILE_NAME, file);
    if file.len() <= FILE_FIELD_MAX {
        reply.file = file.as_bytes().to_vec();
    }
    reply.siaddr = next_server;
    if *transport == Transport::Tftp {
        let name = next_server.to_string();
        reply.options.set_str(code::TFTP_SERVER_NAME, &name);
        reply.sname = name.into_bytes();
    }
}

/// A DHCPNAK: 53, 54, 56 `text`, 82 echoed; `yiaddr` zero; BROADCAST set when relayed so the
/// relay broadcasts it on the client's link (RFC 2131 §4.3.2).
pub(super) fn nak(request: &Message, server_id: Ipv4Addr, text: &str) -> Message {
    let mut reply = skeleton(request, MessageType::Nak, server_id);
    reply.options.set_str(code::MESSAGE, text);
    if request.giaddr != Ipv4Addr::UNSPECIFIED {
        reply.flags |= Message::BROADCAST_FLAG;
    }
    reply
}

/// Where a reply goes (RFC 2131 §4.1): via the relay when `giaddr` is set; to `ciaddr`:68 by
/// routed unicast for a renewal that came from behind a router; NAKs broadcast;
/// unicast to `ciaddr` when the client has one; broadcast when the client set the BROADCAST
/// flag (or when there is no address to unicast to); else unicast to `yiaddr` at `chaddr`.
/// `None` for a direct reply with no interface to send it on.
pub(super) fn destination(
    request: &Message,
    reply: &Message,
    message_type: MessageType,
    link: Option<InterfaceId>,
) -> Option<Destination> {
    if request.giaddr != Ipv4Addr::UNSPECIFIED {
        return Some(Destination::Relay(SocketAddrV4::new(request.giaddr, 67)));
    }
    let Some(interface) = link else {
        // Not on one of our links and not relayed: a routed unicast renewal, answered (ACK or
        // NAK alike) at its address.
        return (request.ciaddr != Ipv4Addr::UNSPECIFIED)
            .then(|| Destination::Unicast(SocketAddrV4::new(request.ciaddr, 68)));
    };
    let broadcast = Destination::Link {
        interface,
        mac: MacAddr::BROADCAST,
        ip: Ipv4Addr::BROADCAST,
    };
    let mac = request.client_mac()?;
    Some(if message_type == MessageType::Nak {
        broadcast
    } else if request.ciaddr != Ipv4Addr::UNSPECIFIED {
        Destination::Link {
            interface,
            mac,
            ip: request.ciaddr,
        }
    } else if request.is_broadcast() || reply.yiaddr == Ipv4Addr::UNSPECIFIED {
        broadcast
    } else {
        Destination::Link {
            interface,
            mac,
            ip: reply.yiaddr,
        }
    })
}
