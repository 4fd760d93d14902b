#!/usr/bin/env python3
"""UDP prober for the holepunch netns lab (stdlib only; after lab.md's u.py).

Every result is one line on stdout: a word, then key=value fields (no spaces in values).

  reflect ADDR...        serve on every ADDR (IP:PORT). Prints READY once bound, GOT for each packet.
                         "MAP [POKE D@ADDR]..." -> "MAPPED <sender ip:port>" from the receiving socket,
                         then for each POKE, D seconds later, "POKE-<n>" from our socket ADDR to the
                         sender. "FILTER" -> "FROM <ip:port>" from every socket to the sender.
                         "KNOCK <ip:port>[-n]" -> "KNOCKED" from the receiving socket to ip:port
                         (a peer knocking first, lab.md P1); prints KNOCKED from= to=.
  map DEST... [--at T,T...] [--lport P] [--wait S] [--tries N]
                         one socket: "MAP" to each DEST in turn (with --at and one DEST: at each time
                         T, seconds from the start), each sent up to N times (2), S seconds (1.0)
                         apart until answered. Prints LOCAL addr=, then per request
                         MAPPED via= addr= or TIMEOUT via=.
  filter DEST [--wait S] fresh socket: "FILTER" to DEST, then collects for S seconds (1.5) which
                         sources got back in: FILTER from=a,b (sorted; "none" when empty).
  open DEST SECS [--poke D@ADDR]... [--echo] [--lport P] [--wait S] [--tries N]
                         "MAP" (with the pokes) to DEST as map does, prints LOCAL and MAPPED/TIMEOUT, then
                         listens until SECS from the start: RECV from= data= for each packet (with
                         --echo, answers "ECHO-<data>" to what is not an echo). Ends with DONE count=.
  send DEST MSG [--count N] [--interval S] [--wait S] [--lport P]
                         sends "<MSG>-<i>" N times (1), S seconds apart (0.1), waits (0.5) for
                         replies: REPLY from= data= (first 5), then SENT count= replies= local=.
"""
import heapq
import select
import socket
import sys
import time


def ep(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


def fmt(a):
    return f"{a[0]}:{a[1]}"


def out(*fields):
    print(" ".join(fields), flush=True)


def opts(args, spec):
    """Splits --flags (spec: name -> has value) from positional arguments."""
    pos, kw = [], {}
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("--") and a[2:] in spec:
            name = a[2:]
            if spec[name]:
                kw.setdefault(name, []).append(args[i + 1])
                i += 2
            else:
                kw[name] = [True]
                i += 1
        else:
            pos.append(a)
            i += 1
    return pos, kw


def udp(lport=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", lport))
    return s


def reflect(addrs):
    socks = {}
    for a in addrs:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(ep(a))
        socks[fmt(s.getsockname())] = s
    out("READY", "on=" + ",".join(socks))
    pending = []  # heap of (due, seq, socket key, destination, payload)
    seq = 0
    while True:
        timeout = None
        if pending:
            timeout = max(0.0, pending[0][0] - time.monotonic())
        ready, _, _ = select.select(list(socks.values()), [], [], timeout)
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            _, _, key, dest, payload = heapq.heappop(pending)
            try:
                socks[key].sendto(payload, dest)
                out("POKED", f"from={key}", f"to={fmt(dest)}", f"data={payload.decode()}")
            except (OSError, KeyError) as e:
                out("ERROR", f"poke={key}", f"reason={type(e).__name__}")
        for s in ready:
            data, src = s.recvfrom(2048)
            me = fmt(s.getsockname())
            words = data.decode(errors="replace").split()
            out("GOT", f"on={me}", f"from={fmt(src)}", f"data={words[0] if words else ''}")
            try:
                if data.startswith(b"MAP"):
                    s.sendto(f"MAPPED {fmt(src)}".encode(), src)
                    pokes = [w for w in words[1:] if "@" in w]
                    for n, p in enumerate(pokes):
                        delay, key = p.split("@", 1)
                        seq += 1
                        heapq.heappush(pending, (now + float(delay), seq, key, src, f"POKE-{n}".encode()))
                elif data.startswith(b"KNOCK") and len(words) > 1:
                    target = ep(words[1].split("-")[0])
                    s.sendto(b"KNOCKED", target)
                    out("KNOCKED", f"from={me}", f"to={fmt(target)}")
                elif data.startswith(b"FILTER"):
                    for key, o in socks.items():
                        o.sendto(f"FROM {key}".encode(), src)
            except OSError as e:
                out("ERROR", f"on={me}", f"reason={type(e).__name__}")


def request(s, dest, payload, tries=2, wait=1.0):
    """Sends payload to dest until a MAPPED reply from dest comes; returns the mapped address."""
    for _ in range(tries):
        s.sendto(payload, ep(dest))
        end = time.monotonic() + wait
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                data, src = s.recvfrom(2048)
            except socket.timeout:
                break
            if fmt(src) == dest and data.startswith(b"MAPPED "):
                return data.decode().split()[1]
    return None


def cmd_map(args):
    pos, kw = opts(args, {"at": True, "lport": True, "wait": True, "tries": True})
    wait = float(kw.get("wait", ["1.0"])[0])
    tries = int(kw.get("tries", ["2"])[0])
    s = udp(int(kw.get("lport", ["0"])[0]))
    out("LOCAL", "addr=" + fmt(s.getsockname()))
    start = time.monotonic()
    if "at" in kw:
        plan = [(float(t), pos[0]) for t in kw["at"][0].split(",")]
    else:
        plan = [(0.0, d) for d in pos]
    for at, dest in plan:
        delay = start + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        mapped = request(s, dest, b"MAP", tries, wait)
        if mapped:
            out("MAPPED", f"via={dest}", f"addr={mapped}", f"t={time.monotonic() - start:.2f}")
        else:
            out("TIMEOUT", f"via={dest}", f"t={time.monotonic() - start:.2f}")


def cmd_filter(args):
    pos, kw = opts(args, {"wait": True})
    wait = float(kw.get("wait", ["1.5"])[0])
    s = udp()
    s.sendto(b"FILTER", ep(pos[0]))
    got = set()
    end = time.monotonic() + wait
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            _, src = s.recvfrom(2048)
            got.add(fmt(src))
        except socket.timeout:
            break
    out("FILTER", "from=" + (",".join(sorted(got)) or "none"))


def cmd_open(args):
    pos, kw = opts(args, {"poke": True, "echo": False, "lport": True, "wait": True, "tries": True})
    wait = float(kw.get("wait", ["1.0"])[0])
    tries = int(kw.get("tries", ["2"])[0])
    dest, secs = pos[0], float(pos[1])
    start = time.monotonic()
    s = udp(int(kw.get("lport", ["0"])[0]))
    out("LOCAL", "addr=" + fmt(s.getsockname()))
    payload = " ".join(["MAP"] + ["POKE " + p for p in kw.get("poke", [])])
    mapped = request(s, dest, payload.encode(), tries, wait)
    out("MAPPED", f"via={dest}", f"addr={mapped}") if mapped else out("TIMEOUT", f"via={dest}")
    n = 0
    while True:
        left = start + secs - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            data, src = s.recvfrom(2048)
        except socket.timeout:
            break
        words = data.decode(errors="replace").split()
        word = words[0] if words else ""
        if fmt(src) == dest and word == "MAPPED":
            continue  # a late answer to a retried MAP
        n += 1
        out("RECV", f"from={fmt(src)}", f"data={word}", f"t={time.monotonic() - start:.2f}")
        if "echo" in kw and not word.startswith("ECHO"):
            s.sendto(f"ECHO-{word}".encode(), src)
    out("DONE", f"count={n}")


def cmd_send(args):
    pos, kw = opts(args, {"count": True, "interval": True, "wait": True, "lport": True})
    dest, msg = ep(pos[0]), pos[1]
    count = int(kw.get("count", ["1"])[0])
    interval = float(kw.get("interval", ["0.1"])[0])
    wait = float(kw.get("wait", ["0.5"])[0])
    s = udp(int(kw.get("lport", ["0"])[0]))
    s.setblocking(False)
    replies = 0

    def drain(until):
        nonlocal replies
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return
            r, _, _ = select.select([s], [], [], left)
            if not r:
                return
            try:
                data, src = s.recvfrom(2048)
            except OSError:
                continue  # an ICMP error queued on the socket
            replies += 1
            if replies <= 5:
                word = data.decode(errors="replace").split()
                out("REPLY", f"from={fmt(src)}", f"data={word[0] if word else ''}")

    for i in range(count):
        try:
            s.sendto(f"{msg}-{i}".encode(), dest)
        except OSError as e:
            out("ERROR", f"reason={type(e).__name__}")
        drain(time.monotonic() + interval)
    drain(time.monotonic() + wait)
    out("SENT", f"count={count}", f"replies={replies}", "local=" + fmt(s.getsockname()))


def main(argv):
    if not argv:
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    {"reflect": reflect, "map": cmd_map, "filter": cmd_filter, "open": cmd_open, "send": cmd_send}[cmd](rest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
