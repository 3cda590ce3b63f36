//! A packetdrill-style script runner: one [`Endpoint`] ("us") on a virtual clock, a scripted
//! peer, and the exact segments we must send, in order and on time.
//!
//! ```text
//! // Passive open with every option, as Linux answers it.
//! +0    app listen
//! +0    < S 0:0(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>
//! +0    > S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,TS val * ecr 100,nop,wscale 3>
//! +.01  < . 1:1(0) ack 1 win 257 <nop,nop,TS val 110 ecr =>
//! +0    app accept
//! ```
//!
//! Each timed line starts with `+SECS` (after the previous line) and is one of:
//! - `< FLAGS SEQ:END(LEN) [ack N] [win N] [port N] [<OPTIONS>]`: the peer sends a segment. Its
//!   sequence numbers count from the peer's ISN, its ack from ours. `ecr =` echoes our last
//!   TSval; `port N` sends it from another port of the peer (another connection).
//! - `> FLAGS SEQ:END(LEN) [ack N] win N|* [<OPTIONS>|<...>]`: we must have sent exactly this
//!   segment, now (within [`TOLERANCE`]): seq from our ISN, ack from the peer's. Options are
//!   compared as a set (`nop` and `eol` are layout); `TS val *` takes any TSval, `<...>` any
//!   options; no `<...>` at all means none.
//! - `< icmp too_big MTU | unreachable [hard] | time_exceeded` then `seq N`: an ICMP error
//!   about our segment with sequence number N.
//! - `app listen [backlog N] | connect | accept | write N | read N | close | abort | orphan`.
//! - `expect state NAME | counter NAME N | cwnd <= N | cwnd >= N | rwnd <=|>=|= N |
//!   readable N | event NAME | memory <= N | connections N | gone`.
//!
//! Untimed lines set things up before the first timed one: `config KEY=VALUE ...` (mss,
//! recv_buffer, send_buffer, syn_retries, max_retries, delayed_ack_ms, sack, timestamps,
//! window_scale, nodelay, keepalive_s, time_wait_s, fin_wait2_s), `limits KEY=VALUE ...`
//! (max_half_open, max_backlog, max_connections, syn_cookies), `peer isn=N`, `family v6`, `memory BYTES`
//! (the buffers' budget).
//!
//! Strict like packetdrill: a segment we send that no `>` line expects, when the next other line
//! runs or the script ends, fails the script. Flags: `S` SYN, `F` FIN, `R` RST, `P` PSH, `.` ACK.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    counters::CounterSet as _,
    stack::tcp::{ConnId, Endpoint, Events, Limits, MemoryBudget, State, connection::Config},
    wire::{
        icmp::Problem,
        seq::Seq,
        tcp::{Flags, TcpHeader, TcpOptions},
    },
};

/// How far a segment's send time may be from its line's time.
pub const TOLERANCE: Duration = Duration::from_millis(4);

/// A segment we sent.
#[derive(Clone, Debug)]
struct Sent {
    at: Instant,
    to: SocketAddr,
    header: TcpHeader,
    len: usize,
}

struct Runner {
    ep: Endpoint,
    budget: Arc<MemoryBudget>,
    start: Instant,
    now: Instant,
    local: SocketAddr,
    remote: SocketAddr,
    peer_isn: u32,
    /// Our ISN per peer port (each port is its own connection).
    our_isn: HashMap<u16, u32>,
    conn: Option<ConnId>,
    out: VecDeque<Sent>,
    events: Vec<Events>,
    last_tsval: u32,
    written: usize,
}

/// Runs `script`; panics with the line that failed and why.
pub fn run(script: &str) {
    let (mut cfg, mut limits) = (Config::default(), Limits::default());
    let (mut peer_isn, mut v6) = (0u32, false);
    let mut budget = Arc::new(MemoryBudget::unlimited());
    let lines: Vec<(usize, &str)> = script
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split("//").next().unwrap_or("").trim()))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    let first_timed = lines
        .iter()
        .position(|(_, l)| l.starts_with('+'))
        .unwrap_or(lines.len());
    for &(n, line) in &lines[..first_timed] {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[0] {
            "config" => words[1..].iter().for_each(|kv| set_config(&mut cfg, kv, n)),
            "limits" => words[1..]
                .iter()
                .for_each(|kv| set_limit(&mut limits, kv, n)),
            "peer" => match words.get(1).and_then(|w| w.strip_prefix("isn=")) {
                Some(v) => {
                    peer_isn = v
                        .parse()
                        .unwrap_or_else(|_| panic!("line {n}: bad isn: {line}"))
                }
                None => panic!("line {n}: expected peer isn=N: {line}"),
            },
            "family" => v6 = words.get(1) == Some(&"v6"),
            "memory" => {
                let limit = words
                    .get(1)
                    .and_then(|w| w.parse().ok())
                    .unwrap_or_else(|| panic!("line {n}: expected memory BYTES: {line}"));
                budget = Arc::new(MemoryBudget::new(limit));
            }
            _ => panic!("line {n}: unknown set-up line: {line}"),
        }
    }
    let start = Instant::now();
    let (local, remote) = if v6 {
        ("[2001:db8::2]:80", "[2001:db8::1]:40000")
    } else {
        ("198.18.0.2:80", "198.18.0.1:40000")
    };
    let mut ep = Endpoint::new(cfg, limits, start);
    ep.set_memory_budget(budget.clone());
    let mut r = Runner {
        ep,
        budget,
        start,
        now: start,
        local: local.parse().unwrap(),
        remote: remote.parse().unwrap(),
        peer_isn,
        our_isn: HashMap::new(),
        conn: None,
        out: VecDeque::new(),
        events: Vec::new(),
        last_tsval: 0,
        written: 0,
    };
    for &(n, line) in &lines[first_timed..] {
        if let Err(why) = r.line(line) {
            panic!(
                "line {n}: {why}\n  {line}\n  at +{:.3}s; still unmatched: {:?}",
                (r.now - r.start).as_secs_f64(),
                r.out.iter().map(|s| r.show(s)).collect::<Vec<_>>()
            );
        }
    }
    if let Some(s) = r.out.front() {
        panic!("end of script: unexpected segment {}", r.show(s));
    }
}

fn set_config(cfg: &mut Config, kv: &str, n: usize) {
    let (k, v) = kv
        .split_once('=')
        .unwrap_or_else(|| panic!("line {n}: expected KEY=VALUE: {kv}"));
    let num = || -> u64 {
        v.parse()
            .unwrap_or_else(|_| panic!("line {n}: bad value {kv}"))
    };
    let on = || v == "on";
    match k {
        "mss" => cfg.mss = num() as u16,
        "recv_buffer" => cfg.recv_buffer = num() as usize,
        "send_buffer" => cfg.send_buffer = num() as usize,
        "syn_retries" => cfg.syn_retries = num() as u32,
        "max_retries" => cfg.max_retries = num() as u32,
        "delayed_ack_ms" => cfg.delayed_ack = Duration::from_millis(num()),
        "sack" => cfg.sack = on(),
        "timestamps" => cfg.timestamps = on(),
        "window_scale" => cfg.window_scale = on(),
        "nodelay" => cfg.nodelay = on(),
        "keepalive_s" => cfg.keepalive = Some(Duration::from_secs(num())),
        "time_wait_s" => cfg.time_wait = Duration::from_secs(num()),
        "fin_wait2_s" => cfg.fin_wait2 = Duration::from_secs(num()),
        _ => panic!("line {n}: unknown config {k}"),
    }
}

fn set_limit(limits: &mut Limits, kv: &str, n: usize) {
    let (k, v) = kv
        .split_once('=')
        .unwrap_or_else(|| panic!("line {n}: expected KEY=VALUE: {kv}"));
    let v: usize = v
        .parse()
        .unwrap_or_else(|_| panic!("line {n}: bad value {kv}"));
    match k {
        "max_half_open" => limits.max_half_open = v,
        "max_backlog" => limits.max_backlog = v,
        "max_connections" => limits.max_connections = v,
        "syn_cookies" => limits.syn_cookies = v != 0,
        _ => panic!("line {n}: unknown limit {k}"),
    }
}

/// Flags from packetdrill's letters.
fn parse_flags(s: &str) -> Result<Flags, String> {
    let mut f = Flags(0);
    for c in s.chars() {
        f |= match c {
            'S' => Flags::SYN,
            'F' => Flags::FIN,
            'R' => Flags::RST,
            'P' => Flags::PSH,
            '.' => Flags::ACK,
            'U' => Flags::URG,
            'E' => Flags::ECE,
            'W' => Flags::CWR,
            _ => return Err(format!("unknown flag {c}")),
        };
    }
    Ok(f)
}

fn show_flags(f: Flags) -> String {
    let mut s = String::new();
    for (flag, c) in [
        (Flags::SYN, 'S'),
        (Flags::FIN, 'F'),
        (Flags::RST, 'R'),
        (Flags::PSH, 'P'),
        (Flags::URG, 'U'),
        (Flags::ECE, 'E'),
        (Flags::CWR, 'W'),
        (Flags::ACK, '.'),
    ] {
        if f.contains(flag) {
            s.push(c);
        }
    }
    s
}

/// A segment line after its direction: flags, sequence range, ack, window and options.
struct SegmentLine {
    flags: Flags,
    seq: u32,
    len: usize,
    ack: Option<u32>,
    /// `None` for `win *`.
    win: Option<u16>,
    /// `None` for `<...>` (any options).
    options: Option<OptionsLine>,
    /// The peer's port when it is not the script's usual one (`port N`).
    port: Option<u16>,
}

/// Options as a line gives them; `None` fields of TS are wildcards or echoes.
#[derive(Default)]
struct OptionsLine {
    mss: Option<u16>,
    wscale: Option<u8>,
    sack_ok: bool,
    /// (val, ecr): `None` for `*` (val) or `=` (ecr: echo ours).
    ts: Option<(Option<u32>, Option<u32>)>,
    sack: Vec<(u32, u32)>,
}

fn num<T: std::str::FromStr>(s: Option<&str>, what: &str) -> Result<T, String> {
    s.ok_or(format!("missing {what}"))?
        .parse()
        .map_err(|_| format!("bad {what}"))
}

fn parse_segment(words: &[&str]) -> Result<SegmentLine, String> {
    let flags = parse_flags(words.first().ok_or("missing flags")?)?;
    let range = words.get(1).ok_or("missing SEQ:END(LEN)")?;
    let (seq, rest) = range.split_once(':').ok_or("expected SEQ:END(LEN)")?;
    let (end, len) = rest.split_once('(').ok_or("expected SEQ:END(LEN)")?;
    let seq: u32 = seq.parse().map_err(|_| "bad seq")?;
    let end: u32 = end.parse().map_err(|_| "bad end")?;
    let len: usize = len.trim_end_matches(')').parse().map_err(|_| "bad len")?;
    if end.wrapping_sub(seq) as usize != len {
        return Err(format!("{range}: end - seq != len"));
    }
    let mut line = SegmentLine {
        flags,
        seq,
        len,
        ack: None,
        win: Some(0),
        options: Some(OptionsLine::default()),
        port: None,
    };
    let mut i = 2;
    while i < words.len() {
        match words[i] {
            "ack" => {
                line.ack = Some(num(words.get(i + 1).copied(), "ack")?);
                i += 2;
            }
            "port" => {
                line.port = Some(num(words.get(i + 1).copied(), "port")?);
                i += 2;
            }
            "win" => {
                line.win = match words.get(i + 1) {
                    Some(&"*") => None,
                    w => Some(num(w.copied(), "win")?),
                };
                i += 2;
            }
            w if w.starts_with('<') => {
                let text = words[i..].join(" ");
                let inner = text
                    .strip_prefix('<')
                    .and_then(|t| t.strip_suffix('>'))
                    .ok_or("options must end the line as <...>")?;
                line.options = if inner == "..." {
                    None
                } else {
                    Some(parse_options(inner)?)
                };
                break;
            }
            w => return Err(format!("unexpected {w}")),
        }
    }
    Ok(line)
}

fn parse_options(inner: &str) -> Result<OptionsLine, String> {
    let mut o = OptionsLine::default();
    for opt in inner.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let w: Vec<&str> = opt.split_whitespace().collect();
        match w[0] {
            "nop" | "eol" => {}
            "mss" => o.mss = Some(num(w.get(1).copied(), "mss")?),
            "wscale" => o.wscale = Some(num(w.get(1).copied(), "wscale")?),
            "sackOK" => o.sack_ok = true,
            "TS" => {
                if w.get(1) != Some(&"val") || w.get(3) != Some(&"ecr") {
                    return Err("expected TS val V ecr E".into());
                }
                let val = match w.get(2) {
                    Some(&"*") => None,
                    v => Some(num(v.copied(), "TS val")?),
                };
                let ecr = match w.get(4) {
                    Some(&"=") => None,
                    v => Some(num(v.copied(), "TS ecr")?),
                };
                o.ts = Some((val, ecr));
            }
            "sack" => {
                for b in &w[1..] {
                    let (l, r) = b.split_once(':').ok_or("sack blocks are L:R")?;
                    o.sack.push((
                        l.parse().map_err(|_| "bad sack")?,
                        r.parse().map_err(|_| "bad sack")?,
                    ));
                }
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

impl Runner {
    fn line(&mut self, line: &str) -> Result<(), String> {
        let (time, rest) = line.split_once(char::is_whitespace).ok_or("empty line")?;
        let delta: f64 = time
            .strip_prefix('+')
            .ok_or("a timed line starts with +SECS")?
            .parse()
            .map_err(|_| "bad time")?;
        let at = self.now + Duration::from_secs_f64(delta);
        let words: Vec<&str> = rest.split_whitespace().collect();
        match words[0] {
            ">" => {
                self.advance(at);
                self.expect_sent(&parse_segment(&words[1..])?)
            }
            w => {
                self.advance(at);
                self.no_unexpected()?;
                match w {
                    "<" if words.get(1) == Some(&"icmp") => self.icmp(&words[2..])?,
                    "<" => self.inject(&parse_segment(&words[1..])?)?,
                    "app" => self.app(&words[1..])?,
                    "expect" => self.expect(&words[1..])?,
                    other => return Err(format!("unknown action {other}")),
                }
                self.collect();
                Ok(())
            }
        }
    }

    /// Runs the clock to `at`, firing every timer on its own time.
    fn advance(&mut self, at: Instant) {
        while let Some(t) = self.ep.poll_timeout() {
            if t > at {
                break;
            }
            self.now = self.now.max(t);
            self.ep.handle_timeouts(self.now);
            self.collect();
        }
        self.now = self.now.max(at);
        self.ep.handle_timeouts(self.now);
        self.collect();
    }

    /// Takes what the endpoint sends now, and its events.
    fn collect(&mut self) {
        let (now, remote) = (self.now, self.remote);
        let mut sent = Vec::new();
        self.ep.poll_transmit(now, |_, to, h, p| {
            sent.push(Sent {
                at: now,
                to,
                header: *h,
                len: p[0].len() + p[1].len(),
            });
            true
        });
        let _ = remote;
        for s in sent {
            if s.header.flags.contains(Flags::SYN) {
                self.our_isn.entry(s.to.port()).or_insert(s.header.seq.0);
            }
            if let Some((val, _)) = s.header.options.timestamps {
                self.last_tsval = val;
            }
            self.out.push_back(s);
        }
        while let Some((_, e)) = self.ep.poll_event() {
            self.events.push(e);
        }
        if self.conn.is_none() {
            self.conn = self.ep.flow(self.local, self.remote);
        }
    }

    fn no_unexpected(&self) -> Result<(), String> {
        match self.out.front() {
            Some(s) => Err(format!("unexpected segment {}", self.show(s))),
            None => Ok(()),
        }
    }

    fn our_isn(&self, port: u16) -> u32 {
        self.our_isn.get(&port).copied().unwrap_or(0)
    }

    fn show(&self, s: &Sent) -> String {
        let h = &s.header;
        let seq = h.seq.0.wrapping_sub(self.our_isn(s.to.port()));
        let mut out = format!(
            "+{:.3} > {} {}:{}({}) ",
            (s.at - self.start).as_secs_f64(),
            show_flags(h.flags),
            seq,
            seq.wrapping_add(s.len as u32),
            s.len
        );
        if h.flags.contains(Flags::ACK) {
            out += &format!("ack {} ", h.ack.0.wrapping_sub(self.peer_isn));
        }
        out += &format!("win {}", h.window);
        if s.to.port() != self.remote.port() {
            out += &format!(" port {}", s.to.port());
        }
        let o = &h.options;
        let mut opts = Vec::new();
        if let Some(m) = o.mss {
            opts.push(format!("mss {m}"));
        }
        if o.sack_permitted {
            opts.push("sackOK".into());
        }
        if let Some((v, e)) = o.timestamps {
            opts.push(format!("TS val {v} ecr {e}"));
        }
        if let Some(w) = o.window_scale {
            opts.push(format!("wscale {w}"));
        }
        if !o.sack.is_empty() {
            let blocks: Vec<String> = o
                .sack
                .as_slice()
                .iter()
                .map(|(l, r)| {
                    let (l, r) = (
                        l.0.wrapping_sub(self.peer_isn),
                        r.0.wrapping_sub(self.peer_isn),
                    );
                    format!("{l}:{r}")
                })
                .collect();
            opts.push(format!("sack {}", blocks.join(" ")));
        }
        if !opts.is_empty() {
            out += &format!(" <{}>", opts.join(","));
        }
        out
    }

    fn inject(&mut self, s: &SegmentLine) -> Result<(), String> {
        let mut options = TcpOptions::default();
        if let Some(o) = &s.options {
            options.mss = o.mss;
            options.window_scale = o.wscale;
            options.sack_permitted = o.sack_ok;
            if let Some((val, ecr)) = o.ts {
                options.timestamps = Some((
                    val.ok_or("an inbound TS val cannot be *")?,
                    ecr.unwrap_or(self.last_tsval),
                ));
            }
            let port = s.port.unwrap_or(self.remote.port());
            for &(l, r) in &o.sack {
                let isn = self.our_isn(port);
                options
                    .sack
                    .push(Seq(l.wrapping_add(isn)), Seq(r.wrapping_add(isn)));
            }
        }
        let remote = SocketAddr::new(self.remote.ip(), s.port.unwrap_or(self.remote.port()));
        let h = TcpHeader {
            src_port: remote.port(),
            dst_port: self.local.port(),
            seq: Seq(s.seq.wrapping_add(self.peer_isn)),
            ack: Seq(s.ack.unwrap_or(0).wrapping_add(self.our_isn(remote.port()))),
            flags: s.flags,
            window: s.win.ok_or("an inbound window cannot be *")?,
            options,
        };
        let payload: Vec<u8> = (0..s.len).map(|i| (s.seq as usize + i) as u8).collect();
        self.ep.input(remote, self.local, &h, &payload, self.now);
        Ok(())
    }

    /// `< icmp too_big MTU seq N | unreachable [hard] seq N | time_exceeded seq N`: an ICMP
    /// error about our segment with sequence number N (from our ISN).
    fn icmp(&mut self, w: &[&str]) -> Result<(), String> {
        let (problem, rest) = match w {
            ["too_big", mtu, rest @ ..] => (
                Problem::PacketTooBig {
                    mtu: num(Some(mtu), "mtu")?,
                },
                rest,
            ),
            ["unreachable", "hard", rest @ ..] => (Problem::Unreachable { hard: true }, rest),
            ["unreachable", rest @ ..] => (Problem::Unreachable { hard: false }, rest),
            ["time_exceeded", rest @ ..] => (Problem::TimeExceeded, rest),
            _ => return Err(format!("bad icmp line: {w:?}")),
        };
        let ["seq", n] = rest else {
            return Err(format!("expected seq N: {rest:?}"));
        };
        let seq: u32 = num(Some(n), "seq")?;
        let isn = self.our_isn(self.remote.port());
        self.ep.icmp_error(
            self.local,
            self.remote,
            problem,
            Seq(seq.wrapping_add(isn)),
            self.now,
        );
        Ok(())
    }

    fn expect_sent(&mut self, want: &SegmentLine) -> Result<(), String> {
        let got = self
            .out
            .pop_front()
            .ok_or("expected a segment; none was sent")?;
        let shown = self.show(&got);
        let h = &got.header;
        let late = got.at + TOLERANCE < self.now;
        if late {
            return Err(format!("sent too early: {shown}"));
        }
        let seq = h.seq.0.wrapping_sub(self.our_isn(got.to.port()));
        let mut diffs = Vec::new();
        if got.to.port() != want.port.unwrap_or(self.remote.port()) {
            diffs.push("peer port");
        }
        if h.flags != want.flags {
            diffs.push("flags");
        }
        if seq != want.seq || got.len != want.len {
            diffs.push("sequence range");
        }
        if h.flags.contains(Flags::ACK) && want.ack != Some(h.ack.0.wrapping_sub(self.peer_isn)) {
            diffs.push("ack");
        }
        if want.win.is_some_and(|w| w != h.window) {
            diffs.push("window");
        }
        if let Some(o) = &want.options {
            let ho = &h.options;
            let ts_ok = match (o.ts, ho.timestamps) {
                (None, None) => true,
                (Some((val, ecr)), Some((v, e))) => {
                    val.is_none_or(|x| x == v) && ecr.is_none_or(|x| x == e)
                }
                _ => false,
            };
            let sack: Vec<(u32, u32)> = ho
                .sack
                .as_slice()
                .iter()
                .map(|(l, r)| {
                    (
                        l.0.wrapping_sub(self.peer_isn),
                        r.0.wrapping_sub(self.peer_isn),
                    )
                })
                .collect();
            if o.mss != ho.mss
                || o.wscale != ho.window_scale
                || o.sack_ok != ho.sack_permitted
                || !ts_ok
                || sack != o.sack
            {
                diffs.push("options");
            }
        }
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(format!("{} differ: sent {shown}", diffs.join(", ")))
        }
    }

    fn conn(&self) -> Result<ConnId, String> {
        self.conn.ok_or_else(|| "no connection yet".to_string())
    }

    fn app(&mut self, w: &[&str]) -> Result<(), String> {
        let now = self.now;
        match w {
            ["listen"] => self.ep.listen(self.local, None).map_err(|e| e.to_string()),
            ["listen", "backlog", n] => {
                let n = num(Some(n), "backlog")?;
                self.ep
                    .listen(self.local, Some(n))
                    .map_err(|e| e.to_string())
            }
            ["connect"] => {
                // Active opens go from our port 80 to the peer's 40000, like the passive ones.
                let id = self
                    .ep
                    .connect(self.local, self.remote, now)
                    .map_err(|e| e.to_string())?;
                self.conn = Some(id);
                Ok(())
            }
            ["accept"] => {
                let id = self.ep.accept(self.local).ok_or("nothing to accept")?;
                self.conn = Some(id);
                Ok(())
            }
            ["write", n] => {
                let n: usize = num(Some(n), "length")?;
                let data: Vec<u8> = (self.written..self.written + n).map(|i| i as u8).collect();
                let id = self.conn()?;
                let took = self.ep.with(id, now, |c, _| c.send(&data)).ok_or("gone")?;
                self.written += took;
                if took != n {
                    return Err(format!("wrote {took} of {n} bytes"));
                }
                Ok(())
            }
            ["read", n] => {
                let n: usize = num(Some(n), "length")?;
                let mut buf = vec![0; n];
                let id = self.conn()?;
                let got = self
                    .ep
                    .with(id, now, |c, _| c.recv(&mut buf))
                    .ok_or("gone")?;
                if got != n {
                    return Err(format!("read {got} of {n} bytes"));
                }
                Ok(())
            }
            ["close"] => {
                let id = self.conn()?;
                self.ep.with(id, now, |c, _| c.close()).ok_or("gone".into())
            }
            ["orphan"] => {
                let id = self.conn()?;
                self.ep
                    .with(id, now, |c, _| c.set_orphaned())
                    .ok_or("gone".into())
            }
            ["abort"] => {
                let id = self.conn()?;
                self.ep.with(id, now, |c, _| c.abort()).ok_or("gone".into())
            }
            _ => Err(format!("unknown app command {w:?}")),
        }
    }

    fn expect(&mut self, w: &[&str]) -> Result<(), String> {
        match w {
            ["state", name] => {
                let state = self.ep.state_of(self.local, self.remote);
                let shown = state.map_or("gone", State::name);
                if shown != *name {
                    return Err(format!("state is {shown}"));
                }
                Ok(())
            }
            ["connections", n] => {
                let want: usize = num(Some(n), "count")?;
                match self.ep.connections() {
                    got if got == want => Ok(()),
                    got => Err(format!("{got} connections")),
                }
            }
            ["gone"] => match self.ep.state_of(self.local, self.remote) {
                None => Ok(()),
                Some(s) => Err(format!("still there, in {}", s.name())),
            },
            ["counter", name, n] => {
                let want: u64 = num(Some(n), "count")?;
                let got = self
                    .ep
                    .counters
                    .each()
                    .find(|(f, _)| f.name == *name)
                    .map(|(_, v)| v)
                    .ok_or(format!("no counter {name}"))?;
                if got != want {
                    return Err(format!("{name} is {got}"));
                }
                Ok(())
            }
            ["cwnd", op, n] => {
                let n: usize = num(Some(n), "bytes")?;
                let id = self.conn()?;
                let cwnd = self.ep.get(id).ok_or("gone")?.congestion_window();
                let ok = match *op {
                    "<=" => cwnd <= n,
                    ">=" => cwnd >= n,
                    _ => return Err("cwnd <= N or cwnd >= N".into()),
                };
                if !ok {
                    return Err(format!("cwnd is {cwnd}"));
                }
                Ok(())
            }
            ["memory", "<=", n] => {
                let n: usize = num(Some(n), "bytes")?;
                match self.budget.used() {
                    used if used <= n => Ok(()),
                    used => Err(format!("{used} bytes of buffers")),
                }
            }
            ["rwnd", op, n] => {
                let n: usize = num(Some(n), "bytes")?;
                let id = self.conn()?;
                let w = self.ep.get(id).ok_or("gone")?.receive_window();
                let ok = match *op {
                    "<=" => w <= n,
                    ">=" => w >= n,
                    "=" => w == n,
                    _ => return Err("rwnd <= N, >= N or = N".into()),
                };
                if !ok {
                    return Err(format!("the receive window is {w}"));
                }
                Ok(())
            }
            ["readable", n] => {
                let n: usize = num(Some(n), "bytes")?;
                let id = self.conn()?;
                let got = self.ep.get(id).ok_or("gone")?.readable();
                if got != n {
                    return Err(format!("{got} bytes readable"));
                }
                Ok(())
            }
            ["event", name] => {
                let want = match *name {
                    "connected" => Events::CONNECTED,
                    "readable" => Events::READABLE,
                    "writable" => Events::WRITABLE,
                    "peer_closed" => Events::PEER_CLOSED,
                    "closed" => Events::CLOSED,
                    "reset" => Events::RESET,
                    "timed_out" => Events::TIMED_OUT,
                    "unreachable" => Events::UNREACHABLE,
                    _ => return Err(format!("unknown event {name}")),
                };
                if !self.events.iter().any(|e| e.contains(want)) {
                    return Err(format!("no {name} event (events: {:?})", self.events));
                }
                Ok(())
            }
            _ => Err(format!("unknown expectation {w:?}")),
        }
    }
}
