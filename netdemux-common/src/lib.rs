//! Types shared by the netdemux XDP program (`netdemux-ebpf`) and its userspace (`netdemux`).
//!
//! Everything here is `#[repr(C)]`, fixed-size and free of padding, because the kernel compares
//! hash keys byte by byte and both sides must agree on every byte. The size asserts at the bottom
//! fail the build if a field change would break that agreement; bump [`LAYOUT_VERSION`] whenever
//! a type or a map here changes shape, so a daemon never reuses pinned state it cannot read.
#![no_std]

/// IANA protocol number of TCP, as found in the IPv4 `protocol` / IPv6 `next header` field.
pub const PROTO_TCP: u8 = 6;
/// IANA protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// The wire formats' numbers and sizes that both parsers use — the XDP program's
/// (`netdemux-ebpf/src/parse.rs`) and userspace's (`netdemux::wire`) — so the two agree on every
/// frame by construction.
pub mod wire {
    /// Ethernet header: two MAC addresses and the ethertype.
    pub const ETH_HLEN: usize = 14;
    /// Ethertype of IPv4.
    pub const ETH_P_IPV4: u16 = 0x0800;
    /// Ethertype of IPv6.
    pub const ETH_P_IPV6: u16 = 0x86dd;
    /// Ethertype of an 802.1Q VLAN tag.
    pub const ETH_P_8021Q: u16 = 0x8100;
    /// Ethertype of an 802.1ad (QinQ) service tag.
    pub const ETH_P_8021AD: u16 = 0x88a8;
    /// Bytes of one VLAN tag (TCI and the encapsulated ethertype).
    pub const VLAN_TAG_LEN: usize = 4;
    /// VLAN tags the parsers walk through (QinQ).
    pub const MAX_VLAN_TAGS: usize = 2;

    /// IPv4 header without options.
    pub const IPV4_MIN_HLEN: usize = 20;
    /// The MF flag and the fragment offset of the IPv4 header's flags word.
    pub const IPV4_FRAG_MASK: u16 = 0x3fff;
    /// IPv6 fixed header.
    pub const IPV6_HLEN: usize = 40;

    /// IPv6 extension header: hop-by-hop options.
    pub const IPPROTO_HOPOPTS: u8 = 0;
    /// IPv6 extension header: routing.
    pub const IPPROTO_ROUTING: u8 = 43;
    /// IPv6 extension header: fragment.
    pub const IPPROTO_FRAGMENT: u8 = 44;
    /// IPsec authentication header (its length is in 4-octet units, RFC 4302).
    pub const IPPROTO_AH: u8 = 51;
    /// IPv6 extension header: destination options.
    pub const IPPROTO_DSTOPTS: u8 = 60;
    /// IPv6 extension headers the parsers walk through before giving up.
    pub const MAX_IPV6_EXT_HEADERS: usize = 8;

    /// ICMP for IPv4.
    pub const IPPROTO_ICMP: u8 = 1;
    /// ICMPv6.
    pub const IPPROTO_ICMPV6: u8 = 58;
    /// ICMP and ICMPv6 header before an error's quoted packet: type, code, checksum and four
    /// bytes (the next-hop MTU of a "fragmentation needed" or "packet too big").
    pub const ICMP_HLEN: usize = 8;
    /// ICMP destination unreachable (RFC 792).
    pub const ICMP_DEST_UNREACH: u8 = 3;
    /// Code of ICMP destination unreachable: fragmentation needed and DF set (RFC 1191).
    pub const ICMP_FRAG_NEEDED: u8 = 4;
    /// ICMP time exceeded.
    pub const ICMP_TIME_EXCEEDED: u8 = 11;
    /// ICMP parameter problem.
    pub const ICMP_PARAMETER_PROBLEM: u8 = 12;
    /// ICMPv6 destination unreachable (RFC 4443).
    pub const ICMPV6_DEST_UNREACH: u8 = 1;
    /// ICMPv6 packet too big (RFC 8201).
    pub const ICMPV6_PACKET_TOO_BIG: u8 = 2;
    /// ICMPv6 time exceeded.
    pub const ICMPV6_TIME_EXCEEDED: u8 = 3;
    /// ICMPv6 parameter problem.
    pub const ICMPV6_PARAMETER_PROBLEM: u8 = 4;

    /// True for an ICMP (`proto` 1) or ICMPv6 (58) type that reports an error about a packet
    /// it quotes: those reach the socket that sent the packet.
    #[inline(always)]
    pub const fn icmp_error(proto: u8, kind: u8) -> bool {
        match proto {
            IPPROTO_ICMP => matches!(
                kind,
                ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM
            ),
            IPPROTO_ICMPV6 => matches!(
                kind,
                ICMPV6_DEST_UNREACH
                    | ICMPV6_PACKET_TOO_BIG
                    | ICMPV6_TIME_EXCEEDED
                    | ICMPV6_PARAMETER_PROBLEM
            ),
            _ => false,
        }
    }

    /// True when an IPv4 destination is one host: not multicast (224/4), not the limited
    /// broadcast, not 0.0.0.0 (RFC 1122 §3.3.6: such packets are never answered by TCP nor
    /// echoed). A subnet's broadcast address arrives as a link-layer broadcast, which the
    /// Ethernet check catches.
    #[inline(always)]
    pub const fn ipv4_unicast(addr: [u8; 4]) -> bool {
        let all = u32::from_be_bytes(addr);
        addr[0] & 0xf0 != 0xe0 && all != u32::MAX && all != 0
    }

    /// True when an IPv6 destination is one host: not multicast (ff00::/8).
    #[inline(always)]
    pub const fn ipv6_unicast(first_byte: u8) -> bool {
        first_byte != 0xff
    }

    /// True when an Ethernet destination MAC is one station (the group bit is clear).
    #[inline(always)]
    pub const fn mac_unicast(first_byte: u8) -> bool {
        first_byte & 1 == 0
    }

    /// UDP header.
    pub const UDP_HLEN: usize = 8;
    /// TCP header without options.
    pub const TCP_MIN_HLEN: usize = 20;

    /// Bound on the offset of the L4 header in a frame. Real traffic stays far below it (an IPv6
    /// header chain this long would not be forwarded by routers); it keeps offsets provably
    /// small for the verifier, and userspace refuses the same frames.
    pub const MAX_L4_OFFSET: usize = 1024;
}

/// Address family tag of a [`BindKey`] holding an IPv4 address.
pub const FAMILY_V4: u8 = 4;
/// Address family tag of a [`BindKey`] holding an IPv6 address.
pub const FAMILY_V6: u8 = 6;

/// Version of the pinned-state layout (maps, key and value types). Stored in [`StateInfo`].
pub const LAYOUT_VERSION: u32 = 7;
/// Magic number at the start of [`StateInfo`] ("NDMX").
pub const STATE_MAGIC: u32 = 0x4e44_4d58;

/// Default number of socket addresses the binding table holds (`attach --max-bindings`).
pub const DEFAULT_MAX_BINDINGS: u32 = 65_536;
/// Slots in the XSKMAP: the highest RX queue index netdemux can redirect from, plus one.
pub const MAX_QUEUES: u32 = 256;

/// Names of the maps in the eBPF object. The kernel keeps at most 15 characters of a map name.
pub mod map_names {
    /// `HashMap<BindKey, u32>`: binding set 0 — the bound socket addresses and each one's
    /// counter index (in [`STATS`]). There are two sets so a whole set can be
    /// replaced atomically: [`ACTIVE`] says which one the program uses.
    pub const BINDS: &str = "NDX_BINDS";
    /// Binding set 1 (see [`BINDS`]).
    pub const BINDS1: &str = "NDX_BINDS1";
    /// The binding set in use (0 or 1): the program's global data (its only `.bss` variable),
    /// which the kernel keeps as an array map with one 4-byte entry, so userspace reads and
    /// writes it as an `Array<u32>`. The program reads it with a plain load, no lookup.
    pub const ACTIVE: &str = ".bss";
    /// The program's symbol of the variable [`ACTIVE`] holds: a loader that reuses the pinned
    /// `.bss` must set it to the value in use, or loading writes the section's zeros over it.
    pub const ACTIVE_SYMBOL: &str = "NDX_ACTIVE_SET";
    /// `PerCpuArray<Counters>` with one entry: the verdict counters.
    pub const COUNTERS: &str = "NDX_COUNTERS";
    /// `Array<PortEntry>` indexed by [`crate::port_slot`]: how many bindings of set 0 a
    /// (protocol, port, family) has, and the counter indices and addresses of those the
    /// program matches without hashing (see [`crate::PortEntry`]).
    pub const PORTS: &str = "NDX_PORTS";
    /// The port index of binding set 1.
    pub const PORTS1: &str = "NDX_PORTS1";
    /// `XskMap` indexed by RX queue.
    pub const XSKS: &str = "NDX_XSKS";
    /// `PerCpuArray<BindStats>` indexed by counter index: each binding's packets and bytes.
    /// Twice the binding capacity, so a whole set can be replaced while the old one counts.
    pub const STATS: &str = "NDX_STATS";
    /// `Stack<u32>`: counter indices given back (userspace only).
    pub const FREE: &str = "NDX_FREE";
    /// `Array<u32>` with one entry: the lowest counter index never handed out (userspace only).
    pub const NEXT: &str = "NDX_NEXT";
    /// `Array<StateInfo>` with one entry, written by userspace when it attaches.
    pub const INFO: &str = "NDX_INFO";
    /// `Array<GenSettings>` with one entry: how the generator program varies its frames.
    pub const GEN_SETTINGS: &str = "NDX_GEN_CFG";
}

/// Names of the programs in the eBPF object.
pub mod program_names {
    /// The demultiplexer.
    pub const DEMUX: &str = "netdemux";
    /// `return XDP_PASS`: the floor the benchmarks compare the demultiplexer with.
    pub const PASS: &str = "netdemux_pass";
    /// `return XDP_TX`: the traffic generator, run in live-frames mode.
    pub const GEN: &str = "netdemux_gen";
    /// `return XDP_DROP`: the receive ceiling for the benchmarks.
    pub const DROP: &str = "netdemux_drop";
    /// Every frame to its queue's AF_XDP socket: the ceiling of an AF_XDP receiver.
    pub const REDIRECT_ALL: &str = "netdemux_redirect_all";
    /// The demultiplexer's parsing, then every TCP/UDP frame to its queue's AF_XDP socket.
    pub const PARSE_REDIRECT: &str = "netdemux_parse_redirect";
    /// `return TC_ACT_SHOT` at tc ingress: the benchmarks' discard of the answers.
    pub const TC_DROP: &str = "netdemux_tc_drop";
}

/// The destination socket address of a packet: the key of the binding table.
///
/// In memory the key is 16 address bytes in network order (an IPv4 address in the first four,
/// the other twelve zero), then the port in network order, the protocol and the family tag. The
/// address is held as four words and the port as one so the XDP program builds and clears keys
/// with word stores; use [`BindKey::new`], [`BindKey::addr_octets`] and [`BindKey::port`] rather
/// than reading the words. The wildcard address of a family is all zeros with that family's tag:
/// `0.0.0.0` matches IPv4 packets only, `[::]` IPv6 packets only.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BindKey {
    /// Address bytes in network order, four per word (`u32::from_ne_bytes` of each quarter).
    pub addr: [u32; 4],
    /// Port bytes in network order (`u16::from_ne_bytes` of the two bytes on the wire).
    pub port: u16,
    /// [`PROTO_TCP`] or [`PROTO_UDP`].
    pub proto: u8,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
}

impl BindKey {
    /// A key from address bytes (network order), a port in host order, protocol and family.
    pub const fn new(addr: [u8; 16], port: u16, proto: u8, family: u8) -> BindKey {
        const fn w(a: &[u8; 16], i: usize) -> u32 {
            u32::from_ne_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]])
        }
        BindKey {
            addr: [w(&addr, 0), w(&addr, 4), w(&addr, 8), w(&addr, 12)],
            port: u16::from_ne_bytes(port.to_be_bytes()),
            proto,
            family,
        }
    }

    /// The address bytes in network order.
    pub const fn addr_octets(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        let mut i = 0;
        while i < 4 {
            let b = self.addr[i].to_ne_bytes();
            out[i * 4] = b[0];
            out[i * 4 + 1] = b[1];
            out[i * 4 + 2] = b[2];
            out[i * 4 + 3] = b[3];
            i += 1;
        }
        out
    }

    /// The same key with the address replaced by its family's wildcard.
    #[inline(always)]
    pub const fn wildcard(&self) -> BindKey {
        BindKey {
            addr: [0; 4],
            port: self.port,
            proto: self.proto,
            family: self.family,
        }
    }

    /// The port in host byte order.
    #[inline(always)]
    pub const fn port(&self) -> u16 {
        u16::from_be_bytes(self.port.to_ne_bytes())
    }

    /// The key of socket address `addr` for protocol number `proto`; the unspecified address
    /// gives its family's wildcard.
    pub fn from_socket_addr(proto: u8, addr: core::net::SocketAddr) -> BindKey {
        match addr.ip() {
            core::net::IpAddr::V4(ip) => {
                let mut octets = [0u8; 16];
                let v4 = ip.octets();
                octets[0] = v4[0];
                octets[1] = v4[1];
                octets[2] = v4[2];
                octets[3] = v4[3];
                BindKey::new(octets, addr.port(), proto, FAMILY_V4)
            }
            core::net::IpAddr::V6(ip) => BindKey::new(ip.octets(), addr.port(), proto, FAMILY_V6),
        }
    }

    /// The socket address this key stands for; `None` for a key whose family tag is unknown or
    /// whose IPv4 address has bytes beyond the first four (no netdemux build writes those).
    pub fn socket_addr(&self) -> Option<core::net::SocketAddr> {
        let o = self.addr_octets();
        let ip = match self.family {
            FAMILY_V4 if o[4..].iter().all(|&b| b == 0) => {
                core::net::IpAddr::V4(core::net::Ipv4Addr::new(o[0], o[1], o[2], o[3]))
            }
            FAMILY_V6 => core::net::IpAddr::V6(core::net::Ipv6Addr::from(o)),
            _ => return None,
        };
        Some(core::net::SocketAddr::new(ip, self.port()))
    }
}

/// Entries of the port map: one per (protocol, family, port): UDP/IPv4, UDP/IPv6, TCP/IPv4,
/// TCP/IPv6.
pub const PORT_SLOTS: u32 = 4 * 65_536;

/// Index in the port map of `proto` (a protocol number), `family` (a family tag) and `port`
/// (host order); `None` for a protocol or family netdemux does not bind.
#[inline(always)]
pub const fn port_slot(proto: u8, port: u16, family: u8) -> Option<u32> {
    let base = match (proto, family) {
        (PROTO_UDP, FAMILY_V4) => 0,
        (PROTO_UDP, FAMILY_V6) => 65_536,
        (PROTO_TCP, FAMILY_V4) => 2 * 65_536,
        (PROTO_TCP, FAMILY_V6) => 3 * 65_536,
        _ => return None,
    };
    Some(base + port as u32)
}

/// Lanes of a port entry: IPv4 bindings a port entry matches without hashing.
pub const LANES: usize = 4;

/// The address family of a port map slot (see [`port_slot`]): [`FAMILY_V4`] or [`FAMILY_V6`].
pub const fn slot_family(slot: u32) -> u8 {
    if (slot >> 16) & 1 == 0 {
        FAMILY_V4
    } else {
        FAMILY_V6
    }
}

/// An entry of the port map: the bindings of one (protocol, family, port).
///
/// Most frames go to ports nothing is bound on: `count == 0` settles them with one array
/// lookup. The entry holds bindings in lanes, a counter index and an address each, which the
/// program compares with the frame's address without hashing or another lookup: in an IPv4
/// slot up to [`LANES`] bindings, lane `i`'s address in `addr[i]` (four IPv4 addresses fill the
/// room of one IPv6 address); in an IPv6 slot one, lane 0, whose address is the whole `addr`. A
/// binding that finds no free lane is looked up in the binding set's hash map, and `hashed`
/// says the port has one, so a frame no lane takes is looked up there; every binding is in the
/// hash map too, whatever lane it has.
///
/// The program reads the fields one by one while userspace may be rewriting the entry (and the
/// kernel's copy of a map value is not atomic either): a lane's match must never be taken
/// against an address that belongs to no lane's binding. So userspace never changes a lane's
/// address under its index in one write: the lane passes through empty (see
/// [`PortEntry::steps`]). All zeros, as the kernel creates an array's entries, is an empty
/// entry: an empty lane is zero, not a counter index that could be read. A read across a write
/// can still split an index itself, which names only the counter: one frame may be counted on
/// another binding, never delivered to it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortEntry {
    /// Bindings on this (protocol, family, port), in lanes or not.
    pub count: u32,
    /// Non-zero when some of the port's bindings have no lane. It follows from `count` and
    /// the lanes (userspace sets it so, in `settled`); kept so that the program reads one word
    /// instead of counting lanes.
    pub hashed: u32,
    /// Each lane's counter index plus one, or zero for an empty lane (an IPv6 slot uses lane
    /// 0 only).
    pub index: [u32; LANES],
    /// The lanes' addresses, as in [`BindKey::addr`] (zero for a wildcard): an IPv4 slot's
    /// lane `i` is `addr[i]`; an IPv6 slot's lane 0 is all of it. Read only where the lane is
    /// not empty.
    pub addr: [u32; 4],
}

impl PortEntry {
    /// Nothing bound.
    pub const EMPTY: PortEntry = PortEntry {
        count: 0,
        hashed: 0,
        index: [0; LANES],
        addr: [0; 4],
    };

    /// Lanes a slot of `family` has.
    pub const fn lanes(family: u8) -> usize {
        if family == FAMILY_V4 { LANES } else { 1 }
    }

    /// Whether lane `lane` of a `family` slot has a different address in `self` and `other`.
    fn lane_moved(&self, other: &PortEntry, lane: usize, family: u8) -> bool {
        if family == FAMILY_V4 {
            self.addr[lane] != other.addr[lane]
        } else {
            self.addr != other.addr
        }
    }

    /// The counter index of lane `lane`'s binding, if the lane has one.
    pub const fn lane(&self, lane: usize) -> Option<u32> {
        self.index[lane].checked_sub(1)
    }

    /// The lane whose binding's counter index is `index`, if one is.
    pub fn lane_of(&self, index: u32) -> Option<usize> {
        (0..LANES).find(|&l| self.lane(l) == Some(index))
    }

    /// `hashed` as the lanes and count imply: set while some binding has no lane.
    const fn settled(mut self) -> PortEntry {
        let mut in_lanes = 0;
        let mut lane = 0;
        while lane < LANES {
            if self.index[lane] != 0 {
                in_lanes += 1;
            }
            lane += 1;
        }
        self.hashed = (self.count > in_lanes) as u32;
        self
    }

    /// The entry of a `family` slot with one more binding, whose counter index is `index` and
    /// address `addr`: it takes the first free lane, or, with none free, the hash lookup.
    pub fn with(self, index: u32, addr: [u32; 4], family: u8) -> PortEntry {
        let mut e = self;
        e.count += 1;
        if let Some(lane) = (0..Self::lanes(family)).find(|&l| e.index[l] == 0) {
            e.index[lane] = index + 1;
            if family == FAMILY_V4 {
                e.addr[lane] = addr[0];
            } else {
                e.addr = addr;
            }
        }
        e.settled()
    }

    /// The entry with the binding whose counter index is `index` gone: its lane, if it had
    /// one, is emptied (its address stays, unread); a binding without a lane stays without
    /// one (a freed lane is not given to it: finding which bindings have none would take a
    /// walk of the set) until the set is next replaced. The last binding leaves [`EMPTY`].
    ///
    /// [`EMPTY`]: PortEntry::EMPTY
    pub fn without(self, index: u32) -> PortEntry {
        if self.count <= 1 {
            return PortEntry::EMPTY;
        }
        let mut e = self;
        e.count -= 1;
        if let Some(lane) = e.lane_of(index) {
            e.index[lane] = 0;
        }
        e.settled()
    }

    /// The entries to write, in order, to change `self` into `new` in a port map slot of
    /// `family` that the program is reading: `new` last, and before it, wherever a lane's
    /// address changes under an index, an entry with that lane emptied (first with the old
    /// address, then with the new), so that no read takes a lane's match against an address
    /// that is not the lane's binding's on either side.
    pub fn steps(self, new: PortEntry, family: u8) -> impl Iterator<Item = PortEntry> {
        let mut leave = self;
        let mut enter = new;
        let (mut leaves, mut enters) = (false, false);
        for lane in 0..Self::lanes(family) {
            if self.lane_moved(&new, lane, family) {
                leaves |= self.index[lane] != 0;
                enters |= new.index[lane] != 0;
                leave.index[lane] = 0;
                enter.index[lane] = 0;
            }
        }
        let leave = leaves.then_some(leave);
        let enter = enters.then_some(enter);
        leave.into_iter().chain(enter).chain(core::iter::once(new))
    }
}

impl Default for PortEntry {
    fn default() -> Self {
        PortEntry::EMPTY
    }
}

/// Per-CPU counters of one binding: frames that matched it and their length on the wire.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindStats {
    /// Frames whose destination matched this binding.
    pub packets: u64,
    /// Sum of those frames' lengths, Ethernet header included.
    pub bytes: u64,
}

/// Slots of the per-CPU verdict counter array.
///
/// Every frame the program sees increments exactly one slot, where its verdict is decided, so
/// the frames seen are the sum of the slots: `redirected + redirect_failed + passed`, where
/// `passed` is the sum of the `Pass*` slots (no slot counts every frame: that was one more
/// read-modify-write per frame for a sum userspace can take).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Matched a binding and went to the AF_XDP socket of its RX queue.
    Redirected = 0,
    /// Matched a binding, but no AF_XDP socket serves its RX queue: passed to the kernel.
    RedirectFailed = 1,
    /// Passed: not IPv4 or IPv6 (ARP, LLDP, unknown ethertypes).
    PassNotIp = 2,
    /// Passed: IP, but not TCP or UDP (ESP, ICMP other than errors about TCP/UDP, ...).
    PassNotTcpUdp = 3,
    /// Passed: TCP or UDP to a socket address that is not bound (or only by a wildcard, for a
    /// broadcast or multicast destination), or an ICMP error about a packet from one.
    PassNoBinding = 4,
    /// Passed: an IPv4 or IPv6 fragment, first or later.
    PassFragment = 5,
    /// Passed: truncated or malformed headers.
    PassMalformed = 6,
    /// Passed: an IPv6 routing header with segments left, so the packet is not at its final
    /// destination yet (RFC 8200 §4.4): the kernel forwards or refuses it, as it would without
    /// netdemux; no socket here may take it.
    PassInTransit = 7,
}

/// The verdict counters of one CPU: one `u64` per [`Counter`] slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Indexed by [`Counter`].
    pub slots: [u64; Counter::COUNT as usize],
}

impl Counter {
    /// Number of slots in the counter array.
    pub const COUNT: u32 = 8;
    /// The pass reasons, in slot order, with the names the CLI prints.
    pub const PASS_REASONS: [(Counter, &'static str); 6] = [
        (Counter::PassNotIp, "not_ip"),
        (Counter::PassNotTcpUdp, "not_tcp_udp"),
        (Counter::PassNoBinding, "no_binding"),
        (Counter::PassFragment, "fragment"),
        (Counter::PassMalformed, "malformed"),
        (Counter::PassInTransit, "in_transit"),
    ];
}

/// How the generator program (`netdemux_gen`) varies the frames it transmits: the source port
/// of frame `n` (counted per CPU) becomes `base_port + n % flows`, and the L4 checksum is
/// updated to match (RFC 1624).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenSettings {
    /// Number of distinct source ports; 0 or 1 leaves frames as they are.
    pub flows: u32,
    /// First source port.
    pub base_port: u32,
    /// Offset of the source port in the frame.
    pub sport_offset: u32,
    /// Offset of the L4 checksum in the frame.
    pub csum_offset: u32,
}

/// XDP attach mode as recorded in [`StateInfo::mode`].
pub mod attach_mode {
    /// Native (driver) mode.
    pub const NATIVE: u32 = 1;
    /// Generic (skb) mode.
    pub const SKB: u32 = 2;
}

/// What userspace records about an attachment, in the one-entry `NDX_INFO` array map.
///
/// It lets a later command check that pinned state was made by a compatible build for the same
/// interface, and lets `status` describe it without guessing.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateInfo {
    /// [`STATE_MAGIC`] once written.
    pub magic: u32,
    /// [`LAYOUT_VERSION`] of the build that attached.
    pub layout_version: u32,
    /// Interface index the program is attached to.
    pub ifindex: u32,
    /// One of [`attach_mode`].
    pub mode: u32,
    /// Inode of the network namespace of the interface.
    pub netns_inode: u64,
    /// Hash of the eBPF object that was loaded.
    pub object_hash: u64,
    /// Capacity of the binding table.
    pub max_bindings: u32,
    /// Non-zero while a daemon routes the program's log records (aya-log) into its logs:
    /// only then does the program log its slow paths (malformed frames, redirects with no
    /// socket on the queue). Zero otherwise.
    pub log: u32,
}

const _: () = assert!(core::mem::size_of::<BindKey>() == 20);
const _: () = assert!(core::mem::align_of::<BindKey>() == 4);
const _: () = assert!(core::mem::size_of::<BindStats>() == 16);
const _: () = assert!(core::mem::size_of::<PortEntry>() == 40);
const _: () = assert!(core::mem::size_of::<StateInfo>() == 40);
const _: () = assert!(core::mem::size_of::<Counters>() == 8 * Counter::COUNT as usize);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: BindKey is repr(C), its integer fields leave no padding (size 20, align 4).
    unsafe impl aya::Pod for super::BindKey {}
    // SAFETY: BindStats is repr(C) with two u64 fields and no padding.
    unsafe impl aya::Pod for super::BindStats {}
    // SAFETY: PortEntry is repr(C) with ten u32s (two fields and two arrays) and no padding.
    unsafe impl aya::Pod for super::PortEntry {}
    // SAFETY: GenSettings is repr(C), four u32 fields without padding.
    unsafe impl aya::Pod for super::GenSettings {}
    // SAFETY: Counters is repr(C), an array of u64 without padding.
    unsafe impl aya::Pod for super::Counters {}
    // SAFETY: StateInfo is repr(C), its fields are integers laid out without padding (size 40).
    unsafe impl aya::Pod for super::StateInfo {}
}
