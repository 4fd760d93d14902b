//! The netns lab: real network namespaces, veth pairs and nftables NAT routers on this machine,
//! built and torn down by the tests themselves (Linux, root).
//!
//! A [`Lab`] is one isolated world:
//!
//! ```text
//!   <prefix>-inet: bridge br0, the "internet" 203.0.113.0/24 (TEST-NET-3); 203.0.113.1 is
//!                  deliberately unassigned and every internet host routes by default to it, so
//!                  traffic to unroutable addresses silently disappears (lab.md P5)
//!   server_host(ips)        203.0.113.2 – .99, chosen by the test
//!   nat_site(profile, ..)   router wan0 203.0.113.100 + 4k ── br-lan 192.168.(k+1).1/24 ── host(s)
//!                           .2, .3, ... (k = the site's index in the lab)
//! ```
//!
//! Every namespace is named `<prefix>-<role>`, where the prefix is `hp<pid>-<n>`: unique per
//! process and per lab, so parallel tests, parallel test processes and leftovers of a killed run
//! never collide. Interface names never carry the prefix: every interface is created directly
//! inside its namespace (`ip link add X netns A type veth peer name Y netns B`), so the root
//! namespace sees none of them, and the names (`wan0`, `br-lan`, `eth0`, `p3`, `l2`) stay within
//! the 15 characters the kernel allows. Nothing touches the root namespace's interfaces, routes
//! or rules, and no traffic leaves the namespaces a lab created.
//!
//! Dropping the lab tears everything down, also when the test panics: first every process it
//! started (and anything else still running inside its namespaces) is killed, then every
//! namespace is deleted. Each process the lab starts carries two environment variables,
//! [`MARKER_ENV`] (the prefix) and [`OWNER_ENV`] (the test process's pid), so [`orphans`] can find
//! what a killed test process left behind. Every wait is bounded.
//!
//! Start a test with [`require`]: under `CI=true` a machine that cannot create namespaces fails
//! the test, elsewhere the test prints why and skips.
//!
//! NAT profiles are nftables tables in the router namespace, exactly the recipes of the shared
//! `lab.md` §1; see [`Profile`] and [`Lab::nat_site`].

mod json;
mod nat;
mod process;

pub use json::{Json, parse_json};
pub use nat::{Filtering, Mapping, NAT_TABLE, Profile, Site};
pub use process::{LabProcess, RunOutput, Stream};

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use nat::RouterConfig;

/// Environment variable set on every process a lab starts: the lab's prefix.
pub const MARKER_ENV: &str = "HOLEPUNCH_LAB";
/// Environment variable set on every process a lab starts: the pid of the test process that owns
/// the lab.
pub const OWNER_ENV: &str = "HOLEPUNCH_LAB_OWNER";
/// The first characters of every lab namespace's name.
pub const PROJECT_PREFIX: &str = "hp";
/// The UDP prober the lab tests run inside namespaces with `python3` (see [`Lab::probe_script`]).
pub const PROBE_PY: &str = include_str!("probe.py");

/// How long one `ip`, `nft`, `sysctl` or `conntrack` command may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(20);
/// How long teardown waits for killed processes to leave their namespaces.
const TEARDOWN_LIMIT: Duration = Duration::from_secs(5);
/// The internet's prefix length.
const INTERNET_PREFIX: u8 = 24;
/// The unassigned "next hop" every internet host routes to by default (lab.md P5).
pub const BLACK_HOLE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

/// Serializes `ip netns add` and `ip netns del` within this process: the very first
/// `ip netns add` on a machine sets up the /run/netns mount, which is racy.
static NETNS_LOCK: Mutex<()> = Mutex::new(());
/// Makes each lab's prefix unique within this process.
static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding a lock leaves nothing half-done that matters here.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// Prerequisites
// ---------------------------------------------------------------------------------------------

/// Whether this machine can run the lab: Linux, root, `ip`, `nft` and `sysctl` on PATH, and a
/// network namespace can be created (and deleted). The answer is computed once per process.
///
/// # Errors
/// The reason the lab cannot run, for a skip message.
pub fn available() -> Result<(), String> {
    static ANSWER: OnceLock<Result<(), String>> = OnceLock::new();
    ANSWER.get_or_init(check_available).clone()
}

fn check_available() -> Result<(), String> {
    if !cfg!(target_os = "linux") {
        return Err("the netns lab needs Linux".into());
    }
    match effective_uid() {
        Some(0) => {}
        Some(uid) => return Err(format!("the netns lab needs root (running as uid {uid})")),
        None => return Err("cannot read the effective uid from /proc/self/status".into()),
    }
    let missing: Vec<&str> = ["ip", "nft", "sysctl"]
        .into_iter()
        .filter(|p| !on_path(p))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{missing:?} not on PATH (install iproute2, nftables, procps)"
        ));
    }
    // Named like a lab's namespace (counter u32::MAX, which no lab reaches), so a leftover
    // from a crash here is found by `orphans` too.
    let name = format!("{PROJECT_PREFIX}{}-{}-probe", std::process::id(), u32::MAX);
    {
        let _guard = lock(&NETNS_LOCK);
        let _ = run_quiet(ip().args(["netns", "del", &name]));
        run_checked(ip().args(["netns", "add", &name]))
            .map_err(|e| format!("cannot create a network namespace: {e}"))?;
        run_checked(ip().args(["netns", "del", &name]))
            .map_err(|e| format!("cannot delete the network namespace {name}: {e}"))?;
    }
    Ok(())
}

/// [`available`], or the reason to skip: panics under CI (`CI=true`), where every lab test must
/// run; elsewhere prints why and returns `None`. On success returns a fresh [`Lab`].
///
/// # Panics
/// Under CI when the lab is not available.
pub fn require() -> Option<Lab> {
    match available() {
        Ok(()) => Some(Lab::new()),
        Err(reason) => {
            assert!(
                !crate::is_ci(),
                "CI=true: the netns lab cannot run: {reason}"
            );
            println!("skipped: the netns lab cannot run: {reason}");
            None
        }
    }
}

/// Whether every program in `programs` is on PATH; when not, panics under CI and otherwise prints
/// which are missing (for a skip) and returns `false`.
///
/// # Panics
/// Under CI when a program is missing.
pub fn require_programs(programs: &[&str]) -> bool {
    let missing: Vec<&str> = programs.iter().copied().filter(|p| !on_path(p)).collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !crate::is_ci(),
        "CI=true: {missing:?} must be on PATH (scripts/test.sh installs them as root)"
    );
    println!("skipped: {missing:?} not on PATH (scripts/test.sh installs them as root)");
    false
}

/// The Python 3 interpreter itself (`sys.executable` of `python3` on PATH), so version-manager
/// shims such as pyenv's, which cost a few hundred milliseconds per start, are skipped; `python3`
/// when it cannot be asked.
pub fn python3() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", "import sys; print(sys.executable)"]);
        process::run_collect(&mut cmd, COMMAND_LIMIT)
            .ok()
            .filter(RunOutput::success)
            .map(|o| PathBuf::from(o.stdout.trim()))
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| PathBuf::from("python3"))
    })
    .clone()
}

/// Whether `program` is an executable file in a directory of PATH (or the sbin directories,
/// which a non-login root shell may lack).
pub fn on_path(program: &str) -> bool {
    find_program(program).is_some()
}

fn find_program(program: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for extra in ["/usr/local/sbin", "/usr/sbin", "/sbin"] {
        dirs.push(PathBuf::from(extra));
    }
    dirs.into_iter().map(|d| d.join(program)).find(|p| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// The effective uid, from /proc/self/status (no libc needed).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Running the system's tools
// ---------------------------------------------------------------------------------------------

/// `ip`, found on PATH or in the sbin directories.
fn ip() -> Command {
    tool("ip")
}

fn tool(name: &str) -> Command {
    let mut cmd = Command::new(find_program(name).unwrap_or_else(|| PathBuf::from(name)));
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs `cmd` (stdin closed) to completion with its output collected, killing it after `limit`.
///
/// # Errors
/// When it cannot be started or runs out of time.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<RunOutput, String> {
    process::run_collect(cmd, limit)
}

/// Runs a short administrative command, bounded by [`COMMAND_LIMIT`]; its stdout on success.
fn run_checked(cmd: &mut Command) -> Result<String, String> {
    let out = process::run_collect(cmd, COMMAND_LIMIT)?;
    if out.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "{:?} failed ({}): {}{}",
            cmd,
            out.status_text(),
            out.stderr.trim(),
            out.stdout.trim()
        ))
    }
}

/// Like [`run_checked`], for commands whose failure does not matter (cleanup).
fn run_quiet(cmd: &mut Command) -> Option<String> {
    run_checked(cmd).ok()
}

/// `ip -n NS ARGS`, the arguments split at whitespace (none of the lab's contain any); panics
/// when it fails.
fn ip_in(ns: &Ns, args: &str) -> String {
    must(ip().args(["-n", ns.name()]).args(args.split_whitespace()))
}

/// Runs a command the lab cannot do without, panicking with its output when it fails.
fn must(cmd: &mut Command) -> String {
    run_checked(cmd).unwrap_or_else(|e| panic!("lab: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Namespaces and the lab
// ---------------------------------------------------------------------------------------------

/// A network namespace of a lab, by name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ns(String);

impl Ns {
    /// The namespace's name, as `ip netns list` shows it.
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Ns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One isolated lab: its namespaces, processes and scratch directory, all removed on drop.
///
/// `Lab` is `Sync`: several threads of one test may build sites and start processes at once.
pub struct Lab {
    prefix: String,
    dir: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Created namespaces, in creation order.
    namespaces: Vec<String>,
    /// Process-group ids of the processes started with [`Lab::spawn`], with the flag their
    /// [`LabProcess`] sets once it has reaped the leader.
    groups: Vec<(u32, Arc<AtomicBool>)>,
    internet: Option<Ns>,
    /// Next bridge-port number in the internet namespace.
    next_port: u32,
    /// Next site index.
    next_site: u32,
    /// Next host number for [`Lab::server_host`].
    next_host: u32,
    /// Next log-file number.
    next_log: u32,
    /// NAT configuration per router namespace, to re-render after changes.
    routers: HashMap<String, RouterConfig>,
    probe_written: bool,
    torn_down: bool,
}

impl Lab {
    /// A new, empty lab with a fresh prefix and scratch directory. Prefer [`require`], which
    /// checks the prerequisites first.
    ///
    /// # Panics
    /// When the scratch directory cannot be created.
    pub fn new() -> Lab {
        let pid = std::process::id();
        let existing = list_namespaces();
        let prefix = loop {
            let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
            let candidate = format!("{PROJECT_PREFIX}{pid}-{n}");
            let taken = existing
                .iter()
                .any(|ns| ns.starts_with(&format!("{candidate}-")));
            if !taken {
                break candidate;
            }
        };
        let dir = std::env::temp_dir().join(format!("holepunch-lab-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("lab: cannot create {}: {e}", dir.display()));
        Lab {
            prefix,
            dir,
            state: Mutex::new(State::default()),
        }
    }

    /// This lab's prefix, `hp<pid>-<n>`; every namespace name starts with it and a `-`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The lab's scratch directory (logs, configuration files); removed on drop unless the test
    /// is panicking, when it is kept for inspection and its path printed.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates an empty namespace `<prefix>-<role>` with its loopback up.
    ///
    /// # Panics
    /// When the namespace cannot be created (for example, the role is already taken).
    pub fn add_ns(&self, role: &str) -> Ns {
        let name = format!("{}-{role}", self.prefix);
        {
            let _guard = lock(&NETNS_LOCK);
            must(ip().args(["netns", "add", &name]));
        }
        lock(&self.state).namespaces.push(name.clone());
        let ns = Ns(name);
        ip_in(&ns, "link set lo up");
        ns
    }

    /// The internet: a namespace holding bridge `br0`, created on first use. Hosts and routers
    /// are attached to it with veth pairs and get addresses in 203.0.113.0/24.
    pub fn internet(&self) -> Ns {
        let mut state = lock(&self.state);
        if let Some(ns) = &state.internet {
            return ns.clone();
        }
        drop(state);
        let ns = self.add_ns("inet");
        ip_in(&ns, "link add br0 type bridge");
        ip_in(&ns, "link set br0 up");
        state = lock(&self.state);
        state.internet = Some(ns.clone());
        ns
    }

    /// Connects `ns` to the internet bridge with a veth pair whose inside end is `ifname`,
    /// assigns `ips` (/24) to it and routes by default to the unassigned [`BLACK_HOLE`].
    fn attach_to_internet(&self, ns: &Ns, ifname: &str, ips: &[Ipv4Addr]) {
        let inet = self.internet();
        let port = {
            let mut state = lock(&self.state);
            state.next_port += 1;
            format!("p{}", state.next_port)
        };
        veth(ns, ifname, &inet, &port);
        ip_in(&inet, &format!("link set {port} master br0"));
        for a in ips {
            ip_in(ns, &format!("addr add {a}/{INTERNET_PREFIX} dev {ifname}"));
        }
        if !ips.is_empty() {
            add_default_route(ns, ifname);
        }
    }

    /// A host on the internet (a server, a public peer) with the given addresses, which must be
    /// in 203.0.113.2 – 203.0.113.99 (sites use .100 and up). Its interface is `wan0`.
    ///
    /// # Panics
    /// On an address outside that range, or when a command fails.
    pub fn server_host(&self, ips: &[Ipv4Addr]) -> Ns {
        for a in ips {
            let o = a.octets();
            assert!(
                o[..3] == [203, 0, 113] && (2..=99).contains(&o[3]),
                "lab: server addresses must be in 203.0.113.2-99, got {a}"
            );
        }
        let n = {
            let mut state = lock(&self.state);
            state.next_host += 1;
            state.next_host
        };
        let ns = self.add_ns(&format!("h{n}"));
        self.attach_to_internet(&ns, "wan0", ips);
        ns
    }

    /// A site behind `profile` with one LAN host; see [`Lab::nat_site_with_hosts`].
    pub fn nat_site(&self, profile: Profile, hairpin: bool) -> Site {
        self.nat_site_with_hosts(profile, hairpin, 1)
    }

    /// A site: a router on the internet implementing `profile` with nftables (lab.md §1) and
    /// `hosts` LAN hosts behind it (at least one).
    ///
    /// Site `k` (0-based, in creation order) gets router address 203.0.113.(100 + 4k), with
    /// 100 + 4k + 2 kept free for [`Lab::change_public_ip`]; LAN 192.168.(k+1).0/24 with the
    /// router at .1 and the hosts at .2, .3, and so on. `open` and `firewall` route a public
    /// address instead: the host is 203.0.113.(100 + 4k + 1) (one host only), reached through the
    /// router by proxy ARP. `cgnat` puts a home router (100.64.0.2/10, port-restricted NAT) behind
    /// a carrier router (100.64.0.1/10, port-restricted NAT, the site's public address).
    ///
    /// `hairpin` is supported by the single-NAT profiles (full-cone, restricted-cone,
    /// port-restricted-cone, symmetric-random); hairpinned packets show the sender's external
    /// address and skip the filtering check.
    ///
    /// # Panics
    /// When `hairpin` is asked of a profile that cannot do it, `hosts` is 0 (or above 1 for
    /// `open`/`firewall`), the lab has no more room, or a command fails.
    pub fn nat_site_with_hosts(&self, profile: Profile, hairpin: bool, hosts: usize) -> Site {
        assert!(hosts >= 1, "lab: a site needs at least one host");
        assert!(
            Profile::LAB.contains(&profile),
            "lab: {profile} cannot be built with nftables (see Profile::LAB)"
        );
        assert!(
            !hairpin || profile.supports_hairpin(),
            "lab: hairpinning is not implemented for {}",
            profile.name()
        );
        let k = {
            let mut state = lock(&self.state);
            let k = state.next_site;
            state.next_site += 1;
            k
        };
        assert!(k < 38, "lab: at most 38 sites per lab");
        let base = 100 + 4 * k;
        let wan_ip = Ipv4Addr::new(203, 0, 113, base as u8);
        let lan_net = Ipv4Addr::new(192, 168, (k + 1) as u8, 0);
        let lan_gw = Ipv4Addr::new(192, 168, (k + 1) as u8, 1);
        let router = self.add_ns(&format!("s{k}r"));
        self.attach_to_internet(&router, "wan0", &[wan_ip]);
        sysctl(&router, &["net.ipv4.ip_forward=1"]);

        match profile {
            Profile::Open | Profile::Firewall => {
                assert!(hosts == 1, "lab: {} sites have one host", profile.name());
                // The host owns a public /32 on its LAN link; the router routes it there and
                // answers ARP for it on the internet side.
                let public = Ipv4Addr::new(203, 0, 113, (base + 1) as u8);
                let host = self.add_ns(&format!("s{k}h0"));
                veth(&router, "br-lan", &host, "eth0");
                ip_in(&router, &format!("addr add {lan_gw}/24 dev br-lan"));
                ip_in(&router, &format!("route add {public}/32 dev br-lan"));
                sysctl(&router, &["net.ipv4.conf.wan0.proxy_arp=1"]);
                ip_in(&host, &format!("addr add {public}/32 dev eth0"));
                ip_in(&host, &format!("route add {lan_gw} dev eth0 scope link"));
                ip_in(&host, &format!("route add default via {lan_gw}"));
                let config = RouterConfig::routed(profile == Profile::Firewall);
                self.apply_router(&router, config);
                Site {
                    profile,
                    hairpin,
                    router,
                    home_router: None,
                    hosts: vec![host],
                    public_ip: public,
                    router_ip: wan_ip,
                    lan_ips: vec![public],
                }
            }
            Profile::Cgnat => {
                let home = self.add_ns(&format!("s{k}g"));
                veth(&router, "br-lan", &home, "wan0");
                ip_in(&router, "addr add 100.64.0.1/10 dev br-lan");
                ip_in(&home, "addr add 100.64.0.2/10 dev wan0");
                ip_in(&home, "route add default via 100.64.0.1");
                sysctl(&home, &["net.ipv4.ip_forward=1"]);
                let (host_ns, lan_ips) = self.lan(&home, k, lan_gw, hosts);
                let carrier_lan = Ipv4Addr::new(100, 64, 0, 0);
                let carrier =
                    RouterConfig::nat(Profile::PortRestrictedCone, false, wan_ip, carrier_lan, 10);
                self.apply_router(&router, carrier);
                let home_wan = Ipv4Addr::new(100, 64, 0, 2);
                let home_config =
                    RouterConfig::nat(Profile::PortRestrictedCone, false, home_wan, lan_net, 24);
                self.apply_router(&home, home_config);
                Site {
                    profile,
                    hairpin,
                    router,
                    home_router: Some(home),
                    hosts: host_ns,
                    public_ip: wan_ip,
                    router_ip: wan_ip,
                    lan_ips,
                }
            }
            _ => {
                let (host_ns, lan_ips) = self.lan(&router, k, lan_gw, hosts);
                let config = RouterConfig::nat(profile, hairpin, wan_ip, lan_net, 24);
                self.apply_router(&router, config);
                Site {
                    profile,
                    hairpin,
                    router,
                    home_router: None,
                    hosts: host_ns,
                    public_ip: wan_ip,
                    router_ip: wan_ip,
                    lan_ips,
                }
            }
        }
    }

    /// Two homes behind one carrier NAT: a carrier router on the internet (port-restricted NAT
    /// over the shared space 100.64.0.0/10, hairpinning when `carrier_hairpin`) and, on its LAN
    /// bridge, two home routers (port-restricted NAT, 100.64.0.2 and 100.64.0.3) with one host
    /// each. It takes two site numbers `k` and `k + 1` (addresses as [`Lab::nat_site`]
    /// describes): the carrier has 203.0.113.(100 + 4k), the homes' LANs are
    /// 192.168.(k+1).0/24 and 192.168.(k+2).0/24. Both sites name the carrier as `router` and
    /// their own home router as `home_router`; their `public_ip` is the carrier's.
    ///
    /// # Panics
    /// When the lab has no more room or a command fails.
    pub fn carrier_pair(&self, carrier_hairpin: bool) -> (Site, Site) {
        let k = {
            let mut state = lock(&self.state);
            let k = state.next_site;
            state.next_site += 2;
            k
        };
        assert!(k + 1 < 38, "lab: at most 38 sites per lab");
        let wan_ip = Ipv4Addr::new(203, 0, 113, (100 + 4 * k) as u8);
        let carrier = self.add_ns(&format!("s{k}r"));
        self.attach_to_internet(&carrier, "wan0", &[wan_ip]);
        sysctl(&carrier, &["net.ipv4.ip_forward=1"]);
        ip_in(&carrier, "link add br-lan type bridge");
        ip_in(&carrier, "link set br-lan up");
        ip_in(&carrier, "addr add 100.64.0.1/10 dev br-lan");
        let mut sites = Vec::with_capacity(2);
        for (i, kk) in [k, k + 1].into_iter().enumerate() {
            let home = self.add_ns(&format!("s{kk}g"));
            let port = format!("c{i}");
            veth(&carrier, &port, &home, "wan0");
            ip_in(&carrier, &format!("link set {port} master br-lan"));
            let home_wan = Ipv4Addr::new(100, 64, 0, 2 + i as u8);
            ip_in(&home, &format!("addr add {home_wan}/10 dev wan0"));
            ip_in(&home, "route add default via 100.64.0.1");
            sysctl(&home, &["net.ipv4.ip_forward=1"]);
            let lan_net = Ipv4Addr::new(192, 168, (kk + 1) as u8, 0);
            let lan_gw = Ipv4Addr::new(192, 168, (kk + 1) as u8, 1);
            let (hosts, lan_ips) = self.lan(&home, kk, lan_gw, 1);
            let home_config =
                RouterConfig::nat(Profile::PortRestrictedCone, false, home_wan, lan_net, 24);
            self.apply_router(&home, home_config);
            sites.push(Site {
                profile: Profile::Cgnat,
                hairpin: carrier_hairpin,
                router: carrier.clone(),
                home_router: Some(home),
                hosts,
                public_ip: wan_ip,
                router_ip: wan_ip,
                lan_ips,
            });
        }
        let carrier_lan = Ipv4Addr::new(100, 64, 0, 0);
        let config = RouterConfig::nat(
            Profile::PortRestrictedCone,
            carrier_hairpin,
            wan_ip,
            carrier_lan,
            10,
        );
        self.apply_router(&carrier, config);
        let second = sites
            .pop()
            .unwrap_or_else(|| unreachable!("two sites were built"));
        let first = sites
            .pop()
            .unwrap_or_else(|| unreachable!("two sites were built"));
        (first, second)
    }

    /// A LAN behind `router`: bridge `br-lan` with `gw`/24, and `count` hosts (`eth0`, .2 up).
    fn lan(&self, router: &Ns, k: u32, gw: Ipv4Addr, count: usize) -> (Vec<Ns>, Vec<Ipv4Addr>) {
        ip_in(router, "link add br-lan type bridge");
        ip_in(router, "link set br-lan up");
        ip_in(router, &format!("addr add {gw}/24 dev br-lan"));
        let mut hosts = Vec::new();
        let mut ips = Vec::new();
        for i in 0..count {
            let host = self.add_ns(&format!("s{k}h{i}"));
            let port = format!("l{i}");
            veth(router, &port, &host, "eth0");
            ip_in(router, &format!("link set {port} master br-lan"));
            let o = gw.octets();
            let addr = Ipv4Addr::new(o[0], o[1], o[2], 2 + i as u8);
            ip_in(&host, &format!("addr add {addr}/24 dev eth0"));
            ip_in(&host, &format!("route add default via {gw}"));
            hosts.push(host);
            ips.push(addr);
        }
        (hosts, ips)
    }

    /// Renders and loads `config`'s nftables table in `router` (replacing an older one) and
    /// remembers it for later changes.
    fn apply_router(&self, router: &Ns, config: RouterConfig) {
        let rules = config.render();
        let n = {
            let mut state = lock(&self.state);
            state.next_log += 1;
            state.next_log
        };
        let file = self.dir.join(format!("{}.{n}.nft", router.name()));
        std::fs::write(&file, &rules)
            .unwrap_or_else(|e| panic!("lab: cannot write {}: {e}", file.display()));
        let _ = run_quiet(&mut self.exec_tool(router, "nft", ["delete", "table", "ip", NAT_TABLE]));
        must(&mut self.exec_tool(router, "nft", [OsStr::new("-f"), file.as_os_str()]));
        lock(&self.state)
            .routers
            .insert(router.name().to_string(), config);
    }

    /// Drops `pct` percent of the packets entering or leaving `ns` (other than loopback), chosen
    /// at random by nft `numgen random` (lab.md §1h; the kernel has no netem). A packet routed
    /// through a router crosses it once, so 30 % on a router loses 1 - 0.7² ≈ 51 % of the
    /// request/response pairs through it. `0` removes the loss.
    ///
    /// # Panics
    /// When `pct` is above 100 or nft fails.
    pub fn set_loss(&self, ns: &Ns, pct: u8) {
        assert!(pct <= 100, "lab: loss above 100 %");
        let _ = run_quiet(&mut self.exec_tool(ns, "nft", ["delete", "table", "inet", "hp_loss"]));
        if pct == 0 {
            return;
        }
        let rules = format!(
            "table inet hp_loss {{\n\
             \x20 chain pre {{ type filter hook prerouting priority -300; policy accept;\n\
             \x20   iifname != \"lo\" numgen random mod 100 < {pct} counter drop\n  }}\n\
             \x20 chain out {{ type filter hook output priority -300; policy accept;\n\
             \x20   oifname != \"lo\" numgen random mod 100 < {pct} counter drop\n  }}\n}}\n"
        );
        let file = self.dir.join(format!("{}.loss.nft", ns.name()));
        std::fs::write(&file, rules)
            .unwrap_or_else(|e| panic!("lab: cannot write {}: {e}", file.display()));
        must(&mut self.exec_tool(ns, "nft", [OsStr::new("-f"), file.as_os_str()]));
    }

    /// Sets the UDP conntrack timeouts of `ns` (per namespace; the host keeps its own):
    /// `udp` for unreplied flows and `stream` for flows seen both ways. Under full-cone and
    /// restricted-cone the router's learned mappings then expire after `stream` too (the
    /// router's table is reloaded, which forgets the mappings learned so far: call this before
    /// traffic starts).
    ///
    /// # Panics
    /// When sysctl fails or a timeout is below one second.
    pub fn set_conntrack_timeouts(&self, ns: &Ns, udp: Duration, stream: Duration) {
        let secs = |d: Duration| {
            assert!(
                d.as_secs() >= 1,
                "lab: conntrack timeouts are whole seconds"
            );
            d.as_secs()
        };
        sysctl(
            ns,
            &[
                &format!("net.netfilter.nf_conntrack_udp_timeout={}", secs(udp)),
                &format!(
                    "net.netfilter.nf_conntrack_udp_timeout_stream={}",
                    secs(stream)
                ),
            ],
        );
        let config = lock(&self.state).routers.get(ns.name()).cloned();
        if let Some(mut config) = config.filter(RouterConfig::uses_maps) {
            config.map_timeout = stream.max(udp);
            self.apply_router(ns, config);
        }
    }

    /// Lifts a `udp-blocked` site's blockage mid-session, as a network that starts passing UDP
    /// would: the router's rules are reloaded without the UDP drop (a port-restricted cone, the
    /// same masquerade), and conntrack keeps its flows, so TCP connections live on.
    /// `site.profile` follows.
    ///
    /// # Panics
    /// When the site is not `udp-blocked` or nft fails.
    pub fn unblock_udp(&self, site: &mut Site) {
        assert_eq!(
            site.profile,
            Profile::UdpBlocked,
            "lab: only udp-blocked sites unblock"
        );
        let config = lock(&self.state).routers.get(site.router.name()).cloned();
        let config = config.unwrap_or_else(|| panic!("lab: no rules for {}", site.router.name()));
        self.apply_router(&site.router, config.unblocked());
        site.profile = Profile::PortRestrictedCone;
    }

    /// Deletes every conntrack entry of `ns` (`conntrack -F`), as a router reboot or a NAT that
    /// forgets would; masquerade then picks ports afresh for the next packets.
    ///
    /// # Panics
    /// When `conntrack` is missing or fails.
    pub fn flush_conntrack(&self, ns: &Ns) {
        must(&mut self.exec_tool(ns, "conntrack", ["-F"]));
    }

    /// Gives the site's internet-facing router a new public address, as an ISP re-numbering
    /// would (lab.md `rebind_ip.sh`): the old address is removed (masquerade forgets its flows),
    /// the new one added with the default route, and the NAT rules, which contain the address,
    /// reloaded. `site.public_ip` and `site.router_ip` follow. `new_ip` must be free; each site
    /// keeps 203.0.113.(router + 2) free for this, see [`Site::spare_ip`].
    ///
    /// # Panics
    /// For `open` and `firewall` sites (their public address is the host's), or when a command
    /// fails.
    pub fn change_public_ip(&self, site: &mut Site, new_ip: Ipv4Addr) {
        assert!(
            !matches!(site.profile, Profile::Open | Profile::Firewall),
            "lab: {} sites have no NAT address to change",
            site.profile.name()
        );
        let r = site.router.name();
        ip_in(&site.router, "addr flush dev wan0");
        ip_in(
            &site.router,
            &format!("addr add {new_ip}/{INTERNET_PREFIX} dev wan0"),
        );
        add_default_route(&site.router, "wan0");
        let config = lock(&self.state).routers.get(r).cloned();
        if let Some(mut config) = config {
            config.wan_ip = new_ip;
            self.apply_router(&site.router, config);
        }
        site.public_ip = new_ip;
        site.router_ip = new_ip;
    }

    /// A command that runs `program` with `args` inside `ns` (`ip netns exec`), carrying the
    /// lab's marker variables. Prefer [`Lab::spawn`] and [`Lab::run`], which bound and clean up
    /// what they start; anything started otherwise is still killed at teardown if it is inside
    /// one of the lab's namespaces.
    pub fn command<I, S>(&self, ns: &Ns, program: impl AsRef<OsStr>, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = ip();
        cmd.args([
            OsStr::new("netns"),
            OsStr::new("exec"),
            OsStr::new(ns.name()),
        ])
        .arg(program)
        .args(args)
        .env(MARKER_ENV, &self.prefix)
        .env(OWNER_ENV, std::process::id().to_string());
        cmd
    }

    /// A system tool (found on PATH or in sbin) inside `ns`.
    fn exec_tool<I, S>(&self, ns: &Ns, program: &str, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let path = find_program(program).unwrap_or_else(|| PathBuf::from(program));
        self.command(ns, path, args)
    }

    /// Starts `program args` inside `ns` as a [`LabProcess`]: in its own process group, stdin
    /// closed, stdout and stderr written to files `<name>.<n>.stdout|stderr` in [`Lab::dir`].
    /// It is killed and reaped when the `LabProcess` is dropped, and at the latest when the lab
    /// is.
    ///
    /// # Panics
    /// When the process cannot be started.
    pub fn spawn<I, S>(
        &self,
        ns: &Ns,
        name: &str,
        program: impl AsRef<OsStr>,
        args: I,
    ) -> LabProcess
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let n = {
            let mut state = lock(&self.state);
            assert!(!state.torn_down, "lab: spawn after teardown");
            state.next_log += 1;
            state.next_log
        };
        let base = self.dir.join(format!("{name}.{n}"));
        let cmd = self.command(ns, program, args);
        let proc = LabProcess::start(name, ns, cmd, &base);
        lock(&self.state)
            .groups
            .push((proc.pid(), proc.reaped_flag()));
        proc
    }

    /// [`Lab::spawn`] with stdin a pipe: write to it with [`LabProcess::write_stdin`], end it
    /// with [`LabProcess::close_stdin`] (dropping the process closes it too).
    ///
    /// # Panics
    /// When the process cannot be started.
    pub fn spawn_with_stdin<I, S>(
        &self,
        ns: &Ns,
        name: &str,
        program: impl AsRef<OsStr>,
        args: I,
    ) -> LabProcess
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let n = {
            let mut state = lock(&self.state);
            assert!(!state.torn_down, "lab: spawn after teardown");
            state.next_log += 1;
            state.next_log
        };
        let base = self.dir.join(format!("{name}.{n}"));
        let cmd = self.command(ns, program, args);
        let proc = LabProcess::start_piped(name, ns, cmd, &base);
        lock(&self.state)
            .groups
            .push((proc.pid(), proc.reaped_flag()));
        proc
    }

    /// Runs `program args` inside `ns` to completion, killing it after `limit`.
    pub fn run<I, S>(
        &self,
        ns: &Ns,
        name: &str,
        program: impl AsRef<OsStr>,
        args: I,
        limit: Duration,
    ) -> RunOutput
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut proc = self.spawn(ns, name, program, args);
        let status = proc.wait_exit(limit);
        if status.is_none() {
            proc.kill();
        }
        RunOutput {
            status,
            stdout: proc.stdout(),
            stderr: proc.stderr(),
        }
    }

    /// The path of [`PROBE_PY`] written into the lab's directory, for `python3 <path> ...`.
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn probe_script(&self) -> PathBuf {
        let path = self.dir.join("probe.py");
        let mut state = lock(&self.state);
        if !state.probe_written {
            std::fs::write(&path, PROBE_PY)
                .unwrap_or_else(|e| panic!("lab: cannot write {}: {e}", path.display()));
            state.probe_written = true;
        }
        path
    }

    /// Starts the UDP prober (`python3 probe.py ARGS`) inside `ns`; see [`PROBE_PY`] for its
    /// commands and output.
    pub fn probe<I, S>(&self, ns: &Ns, name: &str, args: I) -> LabProcess
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let script = self.probe_script();
        // -S: the prober needs only the standard library, and skipping `site` halves start-up.
        let mut all = vec![
            OsStr::new("-S").to_os_string(),
            OsStr::new("-u").to_os_string(),
            script.into_os_string(),
        ];
        all.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self.spawn(ns, name, python3(), all)
    }

    /// Tears the lab down now: kills every process it started and anything else inside its
    /// namespaces, waits (bounded) until they are gone, then deletes its namespaces. Idempotent;
    /// `Drop` calls it.
    ///
    /// # Errors
    /// What could not be removed.
    pub fn teardown(&self) -> Result<(), String> {
        let (groups, namespaces) = {
            let mut state = lock(&self.state);
            if state.torn_down {
                return Ok(());
            }
            state.torn_down = true;
            (
                std::mem::take(&mut state.groups),
                std::mem::take(&mut state.namespaces),
            )
        };
        let mut problems = Vec::new();
        // 1. The process groups we started whose leader is not reaped yet (a reaped leader's
        //    pid may already belong to someone else), and every process carrying our marker
        //    (what they forked, even if it left their group).
        let mut targets: Vec<String> = groups
            .iter()
            .filter(|(_, reaped)| !reaped.load(Ordering::SeqCst))
            .map(|(g, _)| format!("-{g}"))
            .collect();
        targets.extend(
            marked_processes()
                .into_iter()
                .filter(|p| p.prefix == self.prefix && p.owner == std::process::id())
                .map(|p| p.pid.to_string()),
        );
        if !targets.is_empty() {
            let mut kill = tool("kill");
            kill.args(["-s", "KILL", "--"]).args(&targets);
            let _ = run_quiet(&mut kill);
        }
        // 2. Anything else inside our namespaces, until none is left.
        let deadline = Instant::now() + TEARDOWN_LIMIT;
        loop {
            let pids: Vec<String> = namespaces
                .iter()
                .flat_map(|ns| {
                    run_quiet(ip().args(["netns", "pids", ns]))
                        .unwrap_or_default()
                        .split_whitespace()
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                // Zombies (our own children not reaped yet) hold no namespace.
                .filter(|p| p.parse().is_ok_and(alive))
                .collect();
            if pids.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                problems.push(format!("processes still inside the namespaces: {pids:?}"));
                break;
            }
            let mut kill = tool("kill");
            kill.args(["-s", "KILL", "--"]).args(&pids);
            let _ = run_quiet(&mut kill);
            std::thread::sleep(Duration::from_millis(20));
        }
        // 3. The namespaces, newest first.
        {
            let _guard = lock(&NETNS_LOCK);
            for ns in namespaces.iter().rev() {
                if let Err(e) = run_checked(ip().args(["netns", "del", ns])) {
                    problems.push(e);
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("lab {}: teardown incomplete: {e}", self.prefix);
        }
        if std::thread::panicking() {
            eprintln!(
                "lab {}: test failed; logs kept in {}",
                self.prefix,
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A veth pair from `a`'s `a_if` to `b`'s `b_if`, both ends created directly inside their
/// namespaces, and both up.
fn veth(a: &Ns, a_if: &str, b: &Ns, b_if: &str) {
    let (an, bn) = (a.name(), b.name());
    must(ip().args(
        format!("link add {a_if} netns {an} type veth peer name {b_if} netns {bn}").split(' '),
    ));
    ip_in(a, &format!("link set {a_if} up"));
    ip_in(b, &format!("link set {b_if} up"));
}

/// `default via` [`BLACK_HOLE`] on `ifname` (lab.md P5).
fn add_default_route(ns: &Ns, ifname: &str) {
    ip_in(
        ns,
        &format!("route replace default via {BLACK_HOLE} dev {ifname}"),
    );
}

/// `sysctl -qw SETTINGS` inside `ns` (sysctls under net/ are per namespace).
fn sysctl(ns: &Ns, settings: &[&str]) {
    let mut cmd = ip();
    cmd.args(["netns", "exec", ns.name()])
        .arg(find_program("sysctl").unwrap_or_else(|| PathBuf::from("sysctl")))
        .arg("-qw")
        .args(settings);
    must(&mut cmd);
}

// ---------------------------------------------------------------------------------------------
// Leftovers
// ---------------------------------------------------------------------------------------------

/// Every namespace name `ip netns list` shows.
fn list_namespaces() -> Vec<String> {
    run_quiet(ip().args(["netns", "list"]))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The owner pid in a lab namespace name `hp<pid>-<n>-<role>`, or `None` when the name is not a
/// lab's.
pub fn namespace_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PROJECT_PREFIX)?;
    let (pid, rest) = rest.split_once('-')?;
    let (n, role) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(pid) && digits(n) && !role.is_empty())
        .then(|| pid.parse().ok())
        .flatten()
}

/// Every namespace on this machine with the project's naming (`hp<pid>-<n>-<role>`), whoever
/// owns it: running labs of any test process and leftovers.
pub fn leftovers() -> Vec<String> {
    list_namespaces()
        .into_iter()
        .filter(|n| namespace_owner(n).is_some())
        .collect()
}

/// A process started by a lab (it carries [`OWNER_ENV`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkedProcess {
    /// Its pid.
    pub pid: u32,
    /// The owning test process's pid.
    pub owner: u32,
    /// The lab prefix it was started by.
    pub prefix: String,
    /// Its command line, space-separated.
    pub cmdline: String,
}

/// Every live process started by a lab (of any test process), found by its marker variables in
/// `/proc/<pid>/environ`.
pub fn marked_processes() -> Vec<MarkedProcess> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let mut environ = Vec::new();
        let read = std::fs::File::open(entry.path().join("environ"))
            .and_then(|mut f| f.read_to_end(&mut environ));
        if read.is_err() {
            continue;
        }
        let mut owner = None;
        let mut prefix = None;
        for var in environ.split(|&b| b == 0) {
            let var = String::from_utf8_lossy(var);
            if let Some(v) = var.strip_prefix(&format!("{OWNER_ENV}=")) {
                owner = v.parse::<u32>().ok();
            } else if let Some(v) = var.strip_prefix(&format!("{MARKER_ENV}=")) {
                prefix = Some(v.to_string());
            }
        }
        if let (Some(owner), Some(prefix)) = (owner, prefix) {
            let cmdline = std::fs::read(entry.path().join("cmdline"))
                .map(|c| {
                    c.split(|&b| b == 0)
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            found.push(MarkedProcess {
                pid,
                owner,
                prefix,
                cmdline,
            });
        }
    }
    found
}

/// Whether process `pid` exists (a zombie counts as gone).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // "pid (comm) S ...": the state follows the last ')'.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// What a dead test process left behind: lab namespaces and marked processes whose owner is no
/// longer running.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Orphans {
    /// Namespace names.
    pub namespaces: Vec<String>,
    /// Processes.
    pub processes: Vec<MarkedProcess>,
}

impl Orphans {
    /// Whether nothing was left behind.
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty() && self.processes.is_empty()
    }
}

/// Lab namespaces and processes whose owning test process has exited (killed before its labs
/// could be dropped, or a teardown bug). Labs of running test processes are not included.
pub fn orphans() -> Orphans {
    Orphans {
        namespaces: leftovers()
            .into_iter()
            .filter(|n| namespace_owner(n).is_some_and(|o| !alive(o)))
            .collect(),
        processes: marked_processes()
            .into_iter()
            .filter(|p| !alive(p.owner))
            .collect(),
    }
}

/// Namespaces and marked processes of labs owned by process `owner` (for a test process
/// checking its own teardown: pass `std::process::id()`).
pub fn owned_by(owner: u32) -> Orphans {
    Orphans {
        namespaces: leftovers()
            .into_iter()
            .filter(|n| namespace_owner(n) == Some(owner))
            .collect(),
        processes: marked_processes()
            .into_iter()
            .filter(|p| p.owner == owner)
            .collect(),
    }
}

/// Kills the given processes and deletes the given namespaces (after killing what runs in
/// them); for cleaning up [`orphans`].
pub fn remove(orphans: &Orphans) {
    if !orphans.processes.is_empty() {
        let mut kill = tool("kill");
        kill.args(["-s", "KILL", "--"])
            .args(orphans.processes.iter().map(|p| p.pid.to_string()));
        let _ = run_quiet(&mut kill);
    }
    let _guard = lock(&NETNS_LOCK);
    for ns in &orphans.namespaces {
        let pids = run_quiet(ip().args(["netns", "pids", ns])).unwrap_or_default();
        let pids: Vec<&str> = pids.split_whitespace().collect();
        if !pids.is_empty() {
            let mut kill = tool("kill");
            kill.args(["-s", "KILL", "--"]).args(&pids);
            let _ = run_quiet(&mut kill);
        }
        let _ = run_quiet(ip().args(["netns", "del", ns]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_carry_their_owner() {
        assert_eq!(namespace_owner("hp1234-0-inet"), Some(1234));
        assert_eq!(namespace_owner("hp1234-17-s3h0"), Some(1234));
        assert_eq!(namespace_owner("hp1234-0-"), None);
        assert_eq!(namespace_owner("hp1234-inet"), None);
        assert_eq!(namespace_owner("hpx-0-inet"), None);
        assert_eq!(namespace_owner("rl_inet"), None);
    }

    #[test]
    fn this_process_is_alive() {
        assert!(alive(std::process::id()));
    }
}

// ---------------------------------------------------------------------------------------------
// The prober's output
// ---------------------------------------------------------------------------------------------

/// One line of [`PROBE_PY`]'s output: its first word (`MAPPED`, `RECV`, ...) and its
/// `key=value` fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeLine {
    /// The first word.
    pub word: String,
    /// The `key=value` fields.
    pub fields: HashMap<String, String>,
}

impl ProbeLine {
    /// Splits a line into its word and fields.
    pub fn parse(line: &str) -> ProbeLine {
        let mut words = line.split_whitespace();
        let word = words.next().unwrap_or_default().to_string();
        let fields = words
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ProbeLine { word, fields }
    }

    /// The value of field `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// Field `key` as a socket address.
    ///
    /// # Panics
    /// When it is missing or not an address.
    pub fn addr(&self, key: &str) -> std::net::SocketAddrV4 {
        self.get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("probe line {self:?}: no address in {key:?}"))
    }
}
