//! The sans-IO DHCPv4 server.
//!
//! CONTRACT (filled in by the core task):
//!
//! ```text
//! Server::new(config: DhcpConfig, leases: Vec<Lease>, now: UnixTime) -> Server
//! handle_frame(&mut self, now, interface: InterfaceId, frame: &[u8])      // raw Ethernet frame
//! handle_datagram(&mut self, now, local: Ipv4Addr, peer: SocketAddrV4, payload: &[u8]) // relay socket
//! handle_timeout(&mut self, now)                                          // offer/lease expiry
//! poll_command(&mut self) -> Option<Command>
//! poll_timeout(&self) -> Option<UnixTime>
//! stats(&self) -> &Stats
//! active_leases(&self, now) -> usize
//! pool_usage(&self, now) -> Vec<PoolUsage>
//! ```
