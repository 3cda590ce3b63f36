//! Bad input on the command line: every refusal is one line that names the cause and the fix, a
//! non-zero exit, and no change to the state. Requires root (the refusals are checked against a
//! real attachment in a test namespace).

mod support;

use std::process::Output;

use support::netns::*;

/// Asserts `out` is a refusal: exit 1, one line on stderr that contains `want`.
fn assert_refused(out: &Output, want: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit code for {want:?}: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("netdemux: error: "), "{stderr}");
    assert!(stderr.contains(want), "{want:?} not in {stderr:?}");
    assert!(out.stdout.is_empty(), "nothing on stdout: {:?}", out.stdout);
}

#[test]
fn refusals_are_one_line_and_change_nothing() {
    let tb = Testbed::new(1);
    let v = tb.veth_b.as_str();
    tb.netdemux_ok(&["attach", "--iface", v, "--max-bindings", "2"]);
    tb.netdemux_ok(&["bind", "--iface", v, "udp", "198.18.0.2:7000"]);
    let list = || tb.netdemux_ok(&["list", "--iface", v, "--json"]);
    let before = list();

    let cases: &[(&[&str], &str)] = &[
        (&["bind", "--iface", v, "udp", "198.18.0.2"], "has no port"),
        (&["bind", "--iface", v, "udp", "198.18.0.2:0"], "port 0"),
        (
            &["bind", "--iface", v, "udp", "198.18.0.300:53"],
            "not a socket address",
        ),
        (
            &["bind", "--iface", v, "udp", "2001:db8::2:53"],
            "[ADDR]:PORT",
        ),
        (
            &["bind", "--iface", v, "sctp", "198.18.0.2:53"],
            "unknown protocol",
        ),
        (
            &["bind", "--iface", v, "udp", "198.18.0.2:7000"],
            "already bound",
        ),
        (
            &["unbind", "--iface", v, "udp", "198.18.0.2:7001"],
            "not bound",
        ),
        (
            &["unbind", "--iface", v, "tcp", "198.18.0.2:7000"],
            "not bound",
        ),
        (&["attach", "--iface", v], "already attached"),
        (
            &["attach", "--iface", "ndnosuch0"],
            "no interface named 'ndnosuch0'",
        ),
        (
            &["bind", "--iface", "ndnosuch0", "udp", "198.18.0.2:1"],
            "no interface named",
        ),
        (&["list", "--iface", "lo"], "not attached to lo"),
        (&["detach", "--iface", "lo"], "nothing to detach"),
        (&["attach", "--iface", "a/b"], "not a valid interface name"),
        (
            &["stats", "--iface", v, "--watch", "0"],
            "--watch needs a positive",
        ),
        (
            &["attach", "--iface", v, "--max-bindings", "0"],
            "at least 1",
        ),
    ];
    for (args, want) in cases {
        assert_refused(&tb.netdemux(args), want);
        assert_eq!(list(), before, "{args:?} changed the bindings");
    }

    // Table full (capacity 2): the third binding is refused, the first two stay.
    tb.netdemux_ok(&["bind", "--iface", v, "tcp", "[2001:db8::2]:443"]);
    let full = list();
    assert_refused(
        &tb.netdemux(&["bind", "--iface", v, "udp", "198.18.0.2:7002"]),
        "binding table is full (2 entries)",
    );
    assert_eq!(list(), full);

    // An unknown namespace is refused before anything runs.
    assert_refused(
        &run(netdemux_bin(), &["--netns", "ndnosuchns", "status"]),
        "no network namespace named 'ndnosuchns'",
    );
}

#[test]
fn a_native_attach_refused_leaves_no_state() {
    // Native XDP on a device whose driver has none (a dummy-less namespace's loopback has no
    // ndo_bpf): the refusal names the fix and nothing is pinned.
    let tb = Testbed::new(1);
    let out = tb.netdemux(&["attach", "--iface", "lo", "--mode", "native"]);
    assert_refused(&out, "--mode skb");
    assert_eq!(
        tb.status_entry(),
        None,
        "nothing pinned after a refused attach"
    );
    assert!(!std::path::Path::new(&tb.pin_dir()).exists());
    // --mode auto falls back to skb and says so.
    let out = tb.netdemux_ok(&["attach", "--iface", "lo", "--mode", "auto"]);
    assert!(out.contains("skb mode"), "{out}");
    assert!(out.contains("native mode refused"), "{out}");
    tb.netdemux_ok(&["detach", "--iface", "lo"]);
}

#[test]
fn without_privileges_commands_refuse_cleanly() {
    // nobody, with every capability dropped.
    let out = run(
        "setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            netdemux_bin(),
            "status",
        ],
    );
    assert_refused(&out, "needs root (CAP_BPF and CAP_NET_ADMIN)");
}

#[test]
fn usage_errors_exit_2_and_help_explains() {
    let out = run(netdemux_bin(), &["bind", "udp", "198.18.0.2:53"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "missing --iface is a usage error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--iface"));

    let help = String::from_utf8_lossy(&run(netdemux_bin(), &["--help"]).stdout).into_owned();
    for cmd in [
        "attach", "detach", "bind", "unbind", "list", "stats", "status", "--netns",
    ] {
        assert!(help.contains(cmd), "--help mentions {cmd}");
    }
    let bind_help =
        String::from_utf8_lossy(&run(netdemux_bin(), &["bind", "--help"]).stdout).into_owned();
    assert!(
        bind_help.contains("[2001:db8::2]:7000") && bind_help.contains("0.0.0.0"),
        "{bind_help}"
    );
}

#[test]
fn state_of_another_layout_is_refused_never_reused() {
    let tb = Testbed::new(1);
    let v = tb.veth_b.as_str();
    tb.netdemux_ok(&["attach", "--iface", v]);
    tb.netdemux_ok(&["bind", "--iface", v, "udp", "198.18.0.2:7000"]);
    tb.rewrite_info(|i| i.layout_version += 1);
    for args in [
        vec!["list", "--iface", v],
        vec!["bind", "--iface", v, "udp", "198.18.0.2:7001"],
        vec!["attach", "--iface", v, "--upgrade"],
        vec!["run", "--iface", v, "--udp-sink", "198.18.0.2:7000"],
    ] {
        assert_refused(&tb.netdemux(&args), "state layout");
    }
    // detach still clears it.
    assert!(tb.netdemux_ok(&["detach", "--iface", v]).contains("stale"));
    assert!(!tb.pin_dir().exists());
}

#[test]
fn completions_and_the_man_page_need_no_privileges() {
    let as_nobody = |args: &[&str]| {
        let mut full = vec![
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            netdemux_bin(),
        ];
        full.extend_from_slice(args);
        run("setpriv", &full)
    };
    let bash = as_nobody(&["completions", "bash"]);
    assert!(
        bash.status.success(),
        "{}",
        String::from_utf8_lossy(&bash.stderr)
    );
    let script = String::from_utf8_lossy(&bash.stdout);
    for word in [
        "_netdemux()",
        "attach",
        "bind",
        "unbind",
        "--iface",
        "--udp-echo",
    ] {
        assert!(script.contains(word), "bash completion mentions {word}");
    }
    let man = as_nobody(&["man"]);
    assert!(man.status.success());
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(
        page.contains(".TH netdemux 1") && page.contains("attach") && page.contains("status"),
        "{page}"
    );
    let bad = run(netdemux_bin(), &["completions", "tcsh"]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn a_bad_binding_file_is_refused_with_its_line_and_changes_nothing() {
    let tb = Testbed::new(1);
    let v = tb.veth_b.as_str();
    tb.netdemux_ok(&["attach", "--iface", v]);
    tb.netdemux_ok(&["bind", "--iface", v, "udp", "198.18.0.2:7000"]);
    let dir = std::env::temp_dir().join(format!("netdemux-badsets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (text, want) in [
        ("udp 198.18.0.2:1\n# fine\nudp 198.18.0.2\n", ":3:"),
        ("udp 198.18.0.2:1\nicmp 198.18.0.2:1\n", ":2:"),
        ("udp 198.18.0.2:1 extra\n", "expected `udp|tcp ADDR:PORT`"),
        ("\n\nudp [::ffff:198.18.0.2]:53\n", ":3:"),
    ] {
        let file = dir.join("set");
        std::fs::write(&file, text).unwrap();
        let out = tb.netdemux(&["bind", "--iface", v, "--from", file.to_str().unwrap()]);
        assert_refused(&out, want);
        assert_eq!(
            tb.netdemux_ok(&["list", "--iface", v]),
            "udp 198.18.0.2:7000\n",
            "{text:?} changed the set"
        );
    }
    assert_refused(
        &tb.netdemux(&["bind", "--iface", v, "--from", "/nonexistent/set"]),
        "cannot read",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
