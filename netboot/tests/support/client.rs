//! DHCP clients in the client namespace: ISC dhclient and busybox udhcpc (real clients we did not
//! write), ISC dhcrelay in the relay namespace, and a raw UDP client for hand-crafted packets.
//!
//! The real clients run a hook script (`-sf` / `-s`) that appends every event with the variables
//! the client passed to `<label>-events.log` as `key=value` lines closed by a `.` line, and
//! configures `cli0` the way the stock scripts would (address only: never resolv.conf).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::dhcp::Message;
use super::site::{BgId, CLIENT_IF, RELAY_DOWN_IF, RELAY_UP_IF, SERVER_IP, Site};
use super::{Outcome, netns, tail, tool, wait_until};

/// One hook invocation: `event` (udhcpc's `$1` or dhclient's `$reason`) and the variables.
pub(crate) type Event = BTreeMap<String, String>;

/// The hook shared by udhcpc and dhclient; `@OUT@` is replaced by the events file (dhclient runs
/// hooks with a scrubbed environment, so the path is baked in).
const HOOK: &str = r#"#!/bin/sh
# DHCP client hook written by the netbootd test harness: records each event, configures the address.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
OUT='@OUT@'
if [ -n "$1" ]; then
  # busybox udhcpc: $1 is the event; mask is a prefix length.
  {
    echo "event=$1"
    for v in interface ip subnet mask router dns hostname domain serverid lease broadcast siaddr sname boot_file message; do
      eval "echo \"$v=\${$v}\""
    done
    echo "."
  } >> "$OUT"
  case "$1" in
    bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/${mask:-24}" dev "$interface" ;;
    deconfig) ip addr flush dev "$interface" ;;
  esac
  exit 0
fi
# ISC dhclient: $reason plus new_* / old_* variables.
{
  echo "event=$reason"
  echo "interface=$interface"
  env | grep -E '^(new|old|requested)_' | sort
  echo "."
} >> "$OUT"
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT) ip addr replace "$new_ip_address/${new_subnet_mask:-255.255.255.0}" dev "$interface" ;;
  RELEASE|EXPIRE|FAIL|STOP) ip addr flush dev "$interface" ;;
esac
exit 0
"#;

/// dhclient's configuration: ask for what the tests check (no host config is read).
const DHCLIENT_CONF: &str = "# written by the netbootd test harness\n\
    request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, host-name;\n\
    timeout 25;\n\
    retry 5;\n";

/// The outcome of one udhcpc run.
#[derive(Debug)]
pub(crate) struct UdhcpcRun {
    /// Exit status and output.
    pub(crate) outcome: Outcome,
    /// Hook events in order.
    pub(crate) events: Vec<Event>,
}

impl UdhcpcRun {
    /// The last `bound` event, if the client got a lease.
    pub(crate) fn bound(&self) -> Option<&Event> {
        self.events
            .iter()
            .rev()
            .find(|e| e.get("event").is_some_and(|v| v == "bound"))
    }

    /// The `bound` event; panics with the run's output if there is none.
    #[track_caller]
    pub(crate) fn expect_bound(&self) -> &Event {
        self.bound().unwrap_or_else(|| {
            panic!(
                "udhcpc got no lease.\n{}\nevents: {:#?}",
                self.outcome, self.events
            )
        })
    }
}

/// A dhclient running in the background after it reached BOUND.
#[derive(Debug)]
pub(crate) struct Dhclient {
    id: BgId,
    label: String,
    events: PathBuf,
    argv_files: [String; 4],
    /// The event that bound the lease (`BOUND`, or `REBOOT` when it reused its lease file).
    pub(crate) bound: Event,
}

impl Site {
    /// Write a hook script for `label`; returns (script, events file).
    fn hook(&self, label: &str) -> (PathBuf, PathBuf) {
        let script = self.dir().join(format!("{label}-hook.sh"));
        let events = self.dir().join(format!("{label}-events.log"));
        std::fs::write(
            &script,
            HOOK.replace("@OUT@", &events.display().to_string()),
        )
        .expect("write hook");
        set_executable(&script);
        std::fs::write(&events, "").expect("create events file");
        (script, events)
    }

    /// Run busybox udhcpc once on `cli0` (`-f -q -n`: foreground, quit once bound, fail if no
    /// lease after `tries` DISCOVERs 2 s apart). Bounded.
    pub(crate) fn udhcpc(&self, label: &str, tries: u32) -> UdhcpcRun {
        let (script, events) = self.hook(label);
        let tries_s = tries.to_string();
        let script_s = script.display().to_string();
        let udhcpc = tool("udhcpc");
        let argv = [
            &udhcpc, "-f", "-q", "-n", "-i", CLIENT_IF, "-s", &script_s, "-t", &tries_s, "-T", "2",
        ];
        let outcome = self.run_in(
            &self.client_ns,
            &argv,
            Duration::from_secs(u64::from(tries) * 2 + 15),
        );
        let events = read_events(&events);
        UdhcpcRun { outcome, events }
    }

    /// Start ISC dhclient on `cli0` in the foreground (`-d -1`) and wait (bounded) until it is
    /// BOUND; it keeps running (renewing) until [`Site::dhclient_release`] or the site's drop.
    pub(crate) fn dhclient_bind(&mut self, label: &str) -> Dhclient {
        let (script, events) = self.hook(label);
        let conf = self.dir().join(format!("{label}.conf"));
        std::fs::write(&conf, DHCLIENT_CONF).expect("write dhclient.conf");
        let leases = self.dir().join(format!("{label}.leases"));
        let pid = self.dir().join(format!("{label}.pid"));
        let files = [conf, script, leases, pid].map(|p| p.display().to_string());
        let ns = self.client_ns.clone();
        let [cf, sf, lf, pf] = &files;
        let dhclient = tool("dhclient");
        let argv = [
            &dhclient, "-4", "-d", "-1", "-v", "-cf", cf, "-sf", sf, "-lf", lf, "-pf", pf,
            CLIENT_IF,
        ];
        let id = self.spawn_background(label, &ns, &argv);
        let started = Instant::now();
        let mut exited = None;
        let bound = wait_until(Duration::from_secs(35), || {
            let found = read_events(&events).into_iter().rev().find(|e| {
                e.get("event")
                    .is_some_and(|v| matches!(v.as_str(), "BOUND" | "REBOOT"))
            });
            if found.is_none() {
                exited = self.wait_background(id, Duration::ZERO);
                if exited.is_some() {
                    // Give it up: it will not bind any more.
                    return Some(None);
                }
            }
            found.map(Some)
        })
        .flatten();
        let Some(bound) = bound else {
            panic!(
                "dhclient did not reach BOUND within {:?} (exit: {exited:?}).\n{}\n--- events\n{}",
                started.elapsed(),
                self.background_log(id),
                tail(&events, 80)
            );
        };
        Dhclient {
            id,
            label: label.to_owned(),
            events,
            argv_files: files,
            bound,
        }
    }

    /// `dhclient -r` with the same files: stops the running dhclient and sends DHCPRELEASE.
    /// Returns the RELEASE event the hook saw.
    pub(crate) fn dhclient_release(&mut self, d: &Dhclient) -> Event {
        let [cf, sf, lf, pf] = &d.argv_files;
        let dhclient = tool("dhclient");
        let argv = [
            &dhclient, "-4", "-r", "-v", "-cf", cf, "-sf", sf, "-lf", lf, "-pf", pf, CLIENT_IF,
        ];
        let out = self.run_in(&self.client_ns, &argv, Duration::from_secs(20));
        assert!(
            out.success(),
            "dhclient -r failed:\n{out}\n{}",
            self.background_log(d.id)
        );
        let status = self.wait_background(d.id, Duration::from_secs(10));
        assert!(
            status.is_some(),
            "the running dhclient ({}) did not exit after `dhclient -r`\n{}",
            d.label,
            self.background_log(d.id)
        );
        let events = read_events(&d.events);
        events
            .into_iter()
            .rev()
            .find(|e| e.get("event").is_some_and(|v| v == "RELEASE"))
            .unwrap_or_else(|| {
                panic!(
                    "dhclient -r ran no RELEASE hook.\n{out}\n--- events\n{}",
                    tail(&d.events, 80)
                )
            })
    }

    /// Start ISC dhcrelay in the relay namespace (clients on `rly1`, server `10.77.0.1` via
    /// `rly0`) and wait (bounded) until it listens.
    pub(crate) fn start_dhcrelay(&mut self) {
        let ns = self
            .relay_ns
            .clone()
            .expect("start_dhcrelay needs Site::new_relayed");
        let pid = self.dir().join("dhcrelay.pid").display().to_string();
        let server = SERVER_IP.to_string();
        let dhcrelay = tool("dhcrelay");
        let argv = [
            &dhcrelay,
            "-4",
            "-d",
            "-pf",
            &pid,
            "-id",
            RELAY_DOWN_IF,
            "-iu",
            RELAY_UP_IF,
            &server,
        ];
        let id = self.spawn_background("dhcrelay", &ns, &argv);
        let log = self.dir().join("dhcrelay.log");
        let ready = wait_until(Duration::from_secs(10), || {
            if self.wait_background(id, Duration::ZERO).is_some() {
                return Some(false);
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            (text.contains("Listening on") && text.contains("Sending on")).then_some(true)
        });
        assert!(
            ready == Some(true),
            "dhcrelay did not start listening within 10 s\n{}",
            self.background_log(id)
        );
    }
}

/// Parse an events file; an unterminated last record (hook still writing) is ignored.
fn read_events(path: &PathBuf) -> Vec<Event> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    let mut cur = Event::new();
    for line in text.lines() {
        if line == "." {
            out.push(std::mem::take(&mut cur));
        } else if let Some((k, v)) = line.split_once('=') {
            cur.insert(k.to_owned(), v.to_owned());
        }
    }
    out
}

/// chmod 755.
fn set_executable(path: &PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod hook");
}

/// A UDP socket on `0.0.0.0:68` in the client namespace, bound to `cli0`, that broadcasts
/// hand-crafted BOOTREQUESTs to port 67 and collects the replies (which must be broadcast: the
/// interface has no address).
#[derive(Debug)]
pub(crate) struct RawClient {
    sock: UdpSocket,
}

impl RawClient {
    /// Open the socket inside the site's client namespace.
    pub(crate) fn open(site: &Site) -> Self {
        let sock = netns::run_in(&site.client_ns, || -> std::io::Result<UdpSocket> {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.set_reuse_address(true)?;
            s.set_broadcast(true)?;
            s.bind_device(Some(CLIENT_IF.as_bytes()))?;
            s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68).into())?;
            Ok(s.into())
        })
        .unwrap_or_else(|e| {
            panic!(
                "cannot open the raw DHCP client socket in {}: {e}",
                site.client_ns
            )
        });
        Self { sock }
    }

    /// Broadcast `payload` to port 67.
    pub(crate) fn send(&self, payload: &[u8]) {
        self.sock
            .send_to(payload, SocketAddrV4::new(Ipv4Addr::BROADCAST, 67))
            .unwrap_or_else(|e| panic!("send {} bytes: {e}", payload.len()));
    }

    /// Send `m` (retransmitting every second) until a BOOTREPLY with the same xid and chaddr
    /// arrives, at most `timeout`.
    ///
    /// # Errors
    /// A description of what arrived instead, when no matching reply came in time.
    pub(crate) fn exchange(&self, m: &Message, timeout: Duration) -> Result<Message, String> {
        let payload = m.encode();
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 4096];
        while Instant::now() < deadline {
            self.send(&payload);
            let resend_at = (Instant::now() + Duration::from_secs(1)).min(deadline);
            while let Some(left) = resend_at
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            {
                self.sock
                    .set_read_timeout(Some(left))
                    .expect("set_read_timeout");
                let (n, from) = match self.sock.recv_from(&mut buf) {
                    Ok(x) => x,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        break;
                    }
                    Err(e) => return Err(format!("recv: {e}")),
                };
                match Message::decode(&buf[..n]) {
                    Ok(r) if r.op == 2 && r.xid == m.xid && r.chaddr == m.chaddr => return Ok(r),
                    Ok(r) => seen.push(format!(
                        "from {from}: other reply xid {:#x} type {:?}",
                        r.xid,
                        r.message_type()
                    )),
                    Err(e) => seen.push(format!("from {from}: undecodable {n} bytes: {e}")),
                }
            }
        }
        Err(format!(
            "no reply to xid {:#x} within {timeout:?}; seen: {seen:?}",
            m.xid
        ))
    }
}
