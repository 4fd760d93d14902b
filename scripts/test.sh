#!/usr/bin/env bash
# scripts/test.sh: runs all of holepunch's tests. This is the one test command, for people and for CI.
#
#   bash scripts/test.sh
#
# What it does, in order:
#   1. setup    As root, installs what the tests need when it is missing: Debian packages (coturn for the
#               interop tests; nftables, conntrack, miniupnpd, tayga, unbound and friends for the netns
#               lab) and the Python ICE agent aioice. Without root it installs nothing and prints what will
#               be skipped and why. Either way it installs cargo-fuzz (into ~/.cargo/bin, needs no root)
#               when a nightly toolchain is there to use it.
#   2. fmt      cargo fmt --all -- --check (the workspace, then the fuzz crate)
#   3. clippy   cargo clippy --workspace --all-targets -- -D warnings
#   3b. doc     RUSTDOCFLAGS=-Dwarnings cargo doc --no-deps --workspace (broken links are errors)
#   4. test     cargo test --workspace --release (release: the simulation has to be fast). Whether a test
#               that needs coturn or root skips or fails is decided by the test itself: outside CI it skips
#               with a printed reason, under CI=true it fails.
#   5. fuzz     each target of `cargo +nightly fuzz list`, run for a bounded time from its checked-in
#               corpus (fuzz/corpus/TARGET, which is read, never written). Under CI it cannot be
#               skipped: a missing nightly toolchain or SKIP_FUZZ fails the run.
# Every step runs even when an earlier one failed, so one run shows every problem; the script exits
# non-zero when any step failed. It ends with a summary, the total time, and the tests' counts. A test
# that cannot run prints a line starting with "skipped:" and returns (outside CI; under CI it fails):
# the summary counts those as skipped, not passed, and names them.
#
# Knobs (environment variables):
#   CI=true          failures to install, or missing tools, are errors instead of skips
#   SKIP_INSTALL=1   install nothing, even as root
#   SKIP_FUZZ=1      skip step 5 (not under CI, where it fails the run)
#   FUZZ_SECONDS=60  time limit per fuzz target (libFuzzer -max_total_time)
#   FUZZ_RUNS=200000 run limit per fuzz target (libFuzzer -runs)
#   TEST_TIMEOUT=45m under CI, the wall-clock limit of `cargo test`, so a hung test fails with a message
#                    instead of running into CI's hard limit
set -euo pipefail

# ---------------------------------------------------------------------------------------------------------
# Settings and shared state
# ---------------------------------------------------------------------------------------------------------

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT_DIR"

FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
FUZZ_RUNS="${FUZZ_RUNS:-200000}"
TEST_TIMEOUT="${TEST_TIMEOUT:-45m}"

# Debian keeps nft, ip, conntrack, miniupnpd and tayga in sbin, which a non-root PATH often lacks.
for dir in /usr/local/sbin /usr/sbin /sbin; do
    case ":$PATH:" in *":$dir:"*) ;; *) PATH="$PATH:$dir" ;; esac
done
export PATH

# Debian packages the tests use, each with one program that proves it is installed.
# coturn: turnserver, turnutils_stunclient and turnutils_natdiscovery for the interop tests. The rest are
# for the netns lab (see tests/): NAT routers, port-mapping gateways, NAT64 and DNS64.
APT_PACKAGES=(
    coturn:turnserver
    nftables:nft
    iptables:iptables
    conntrack:conntrack
    iproute2:ip
    miniupnpd:miniupnpd
    miniupnpd-nftables:miniupnpd
    miniupnpc:upnpc
    natpmpc:natpmpc
    tayga:tayga
    unbound:unbound
    dnsutils:dig
    gir1.2-nice-0.1:python3 python3-gi:python3   # libnice through GObject introspection (lab_libnice)
)

START_TIME=$(date +%s)
WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/holepunch-test.XXXXXX")"
STEP_NAMES=()      # one entry per step run, in order
STEP_RESULTS=()    # "ok", "FAILED" or "skipped", parallel to STEP_NAMES
STEP_SECONDS=()    # parallel to STEP_NAMES
SKIP_LOG="$WORK_DIR/skipped"   # steps run in subshells, so skip reasons are collected in a file
: >"$SKIP_LOG"
ANY_FAILED=0

# ---------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------

is_ci() { [[ "${CI:-}" == "true" || "${CI:-}" == "1" ]]; }
is_root() { [[ "$(id -u)" -eq 0 ]]; }
have() { command -v "$1" >/dev/null 2>&1; }

# A visible banner before each step, so a long log is easy to scan.
header() {
    printf '\n==> [%s] %s\n' "$(date +%H:%M:%S)" "$*"
}

# Records and prints why something is not run. The summary lists these again at the end.
skip() {
    printf 'skipping: %s\n' "$*"
    printf '%s\n' "$*" >>"$SKIP_LOG"
}

# Under CI, bounds a command's wall-clock time: `timeout` kills its whole process group (test binaries,
# servers they started), so a hang fails with a message instead of running into CI's hard limit. Not used
# at a terminal, where it would keep Ctrl-C from reaching the command (timeout makes its own process
# group), nor where coreutils' timeout is missing (macOS).
with_timeout() {
    local limit="$1"
    shift
    if is_ci && have timeout; then
        timeout --kill-after=30s "$limit" "$@"
    else
        "$@"
    fi
}

fmt_seconds() {
    printf '%dm%02ds' "$(($1 / 60))" "$(($1 % 60))"
}

# run_step NAME FUNCTION: runs FUNCTION in a subshell with errexit on, so any failing command in it fails
# the step, and records the outcome without stopping the script. A function may `exit 3` to mean
# "skipped as a whole" (it prints its reason with skip first).
run_step() {
    local name="$1" func="$2" started rc
    header "$name"
    started=$(date +%s)
    set +e
    (
        set -euo pipefail
        "$func"
    )
    rc=$?
    set -e
    local elapsed=$(($(date +%s) - started))
    STEP_NAMES+=("$name")
    STEP_SECONDS+=("$elapsed")
    case "$rc" in
        0) STEP_RESULTS+=("ok") ;;
        3) STEP_RESULTS+=("skipped") ;;
        *)
            STEP_RESULTS+=("FAILED")
            ANY_FAILED=1
            printf '!!! step "%s" failed (exit %d)\n' "$name" "$rc"
            ;;
    esac
}

# Runs at exit, whatever happened: the summary, the total time and the tests' counts (as the last line,
# "tests: N passed, N failed, N skipped", summed over every `test result:` line cargo test printed).
finish() {
    local rc=$?
    set +e
    header "summary"
    local i
    for i in "${!STEP_NAMES[@]}"; do
        printf '  %-8s %-8s %s\n' "${STEP_NAMES[$i]}" "${STEP_RESULTS[$i]}" "$(fmt_seconds "${STEP_SECONDS[$i]}")"
    done
    if [[ -s "$SKIP_LOG" ]]; then
        echo "skipped:"
        sed 's/^/  - /' "$SKIP_LOG"
    fi
    printf 'total time: %s\n' "$(fmt_seconds $(($(date +%s) - START_TIME)))"
    if [[ -f "$WORK_DIR/test.log" ]] && grep -q '^test result:' "$WORK_DIR/test.log"; then
        # "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s"
        local skips skipped_count
        skips=$(runtime_skips "$WORK_DIR/test.log")
        skipped_count=$(printf '%s' "$skips" | grep -c '^  - ' || true)
        if [[ "$skipped_count" -gt 0 ]]; then
            echo "tests that skipped at run time (counted as skipped, not passed):"
            printf '%s\n' "$skips"
        fi
        # "skipped" = ignored + skipped at run time; "passed" excludes the latter.
        grep '^test result:' "$WORK_DIR/test.log" | awk -v rs="$skipped_count" '
            { for (i = 1; i <= NF; i++) {
                  if ($(i + 1) ~ /^passed/)  p += $i
                  if ($(i + 1) ~ /^failed/)  f += $i
                  if ($(i + 1) ~ /^ignored/) s += $i } }
            END { printf "tests: %d passed, %d failed, %d skipped\n", p - rs, f, s + rs }'
    else
        echo "no test results: cargo test did not run to completion"
    fi
    rm -rf "$WORK_DIR"
    if [[ "$rc" -eq 0 && "$ANY_FAILED" -ne 0 ]]; then
        rc=1
    fi
    exit "$rc"
}
trap finish EXIT

# ---------------------------------------------------------------------------------------------------------
# Step 1: setup
# ---------------------------------------------------------------------------------------------------------

# Packages from APT_PACKAGES that are not installed (by dpkg's record when there is one, else by program).
missing_apt_packages() {
    local entry pkg bin
    for entry in "${APT_PACKAGES[@]}"; do
        pkg="${entry%%:*}"
        bin="${entry#*:}"
        if have dpkg-query; then
            [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null)" == "ii"* ]] || echo "$pkg"
        else
            have "$bin" || echo "$pkg"
        fi
    done
}

install_apt_packages() {
    local missing
    missing=$(missing_apt_packages | tr '\n' ' ')
    if [[ -z "${missing// /}" ]]; then
        echo "apt: all ${#APT_PACKAGES[@]} packages already installed"
        return 0
    fi
    if ! have apt-get; then
        skip "installing ${missing}: no apt-get on this system (install them by hand)"
        return 0
    fi
    echo "apt: installing ${missing}"
    export DEBIAN_FRONTEND=noninteractive
    # Debian's maintainer scripts start daemons (coturn, unbound, miniupnpd) on install unless
    # policy-rc.d says no (exit 101). The tests start their own, in their own namespaces. Keep an existing
    # policy-rc.d; remove ours afterwards.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\n# written by holepunch scripts/test.sh: start no daemons during apt-get\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        created_policy=1
    fi
    local log="$WORK_DIR/apt.log" rc=0 try
    # apt-get update once; retried because a mirror can stumble.
    for try in 1 2 3; do
        rc=0
        apt-get update -q >>"$log" 2>&1 || rc=$?
        if [[ "$rc" -eq 0 ]]; then break; fi
        echo "apt-get update failed (exit $rc, try $try of 3)"
        sleep 5
    done
    if [[ "$rc" -eq 0 ]]; then
        # shellcheck disable=SC2086 # $missing is a list of package names
        apt-get install -y -q --no-install-recommends \
            -o DPkg::Lock::Timeout=120 -o Dpkg::Use-Pty=0 \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
            $missing >>"$log" 2>&1 || rc=$?
    fi
    if [[ "$created_policy" -eq 1 ]]; then rm -f "$policy"; fi
    if [[ "$rc" -ne 0 ]]; then
        echo "apt-get failed (exit $rc); the end of its log:"
        tail -n 40 "$log"
        return "$rc"
    fi
    echo "apt: done"
}

install_aioice() {
    if ! have python3; then
        skip "aioice interop tests: no python3 on this system"
        return 0
    fi
    if python3 -c 'import aioice' >/dev/null 2>&1; then
        echo "pip: aioice already installed"
        return 0
    fi
    echo "pip: installing aioice"
    local log="$WORK_DIR/pip.log"
    local args=(install --progress-bar off --root-user-action=ignore aioice)
    if ! python3 -m pip "${args[@]}" >"$log" 2>&1; then
        # A distribution's own python refuses system-wide pip installs (PEP 668); this is a test
        # machine, so install anyway.
        if grep -q externally-managed "$log"; then
            python3 -m pip "${args[@]}" --break-system-packages >"$log" 2>&1 || {
                tail -n 20 "$log"
                return 1
            }
        else
            tail -n 20 "$log"
            return 1
        fi
    fi
    python3 -c 'import aioice' || return 1
    echo "pip: done"
}

have_nightly() { cargo +nightly --version >/dev/null 2>&1; }
have_cargo_fuzz() { cargo +nightly fuzz --version >/dev/null 2>&1; }

install_cargo_fuzz() {
    if [[ ! -f fuzz/Cargo.toml ]]; then
        echo "cargo-fuzz: not needed yet (no fuzz/Cargo.toml)"
        return 0
    fi
    if ! have_nightly; then
        # Step 5 reports this (a skip, or under CI a failure).
        echo "cargo-fuzz: not installed, no nightly toolchain to run it with"
        return 0
    fi
    if have_cargo_fuzz; then
        echo "cargo-fuzz: already installed ($(cargo-fuzz --version 2>/dev/null || echo unknown version))"
        return 0
    fi
    echo "cargo-fuzz: installing (cargo install cargo-fuzz --locked, a few minutes)"
    local log="$WORK_DIR/cargo-fuzz.log"
    if ! cargo install cargo-fuzz --locked >"$log" 2>&1; then
        tail -n 30 "$log"
        return 1
    fi
    echo "cargo-fuzz: done"
}

step_setup() {
    local failed=0
    if [[ -n "${SKIP_INSTALL:-}" ]]; then
        echo "SKIP_INSTALL is set: installing nothing"
    elif is_root; then
        install_apt_packages || failed=1
        install_aioice || failed=1
    else
        echo "not root: installing no system packages (run as root to install them)"
    fi
    if [[ -z "${SKIP_INSTALL:-}" ]]; then
        install_cargo_fuzz || failed=1
    fi

    # What the tests will find, and what they will therefore skip (outside CI) or fail on (under CI).
    local bin
    for bin in turnserver turnutils_stunclient turnutils_natdiscovery; do
        if ! have "$bin"; then
            skip "coturn interop tests: $bin not found (run as root to install coturn)"
            failed=1
        fi
    done
    if have python3 && ! python3 -c 'import aioice' >/dev/null 2>&1; then
        skip "aioice interop tests: python package aioice missing (run as root, or: python3 -m pip install --user aioice)"
        failed=1
    fi
    local missing_lab=()
    for bin in ip nft conntrack miniupnpd upnpc natpmpc tayga unbound dig; do
        have "$bin" || missing_lab+=("$bin")
    done
    if [[ "${#missing_lab[@]}" -gt 0 ]]; then
        skip "netns lab tests that need ${missing_lab[*]}: not found (run as root to install them)"
        failed=1
    fi
    if ! is_root; then
        skip "netns lab tests: creating network namespaces needs root"
    fi
    # Missing tools only fail the build under CI, where every test must run.
    if [[ "$failed" -ne 0 ]] && is_ci; then
        echo "CI=true: everything above must be installed"
        return 1
    fi
    return 0
}

# ---------------------------------------------------------------------------------------------------------
# Steps 2-4: format, lints, tests
# ---------------------------------------------------------------------------------------------------------

step_fmt() {
    # rustfmt colours its diff even into a log file; only colour it for a terminal.
    local color=never
    if [[ -t 1 ]]; then color=auto; fi
    cargo fmt --all -- --check --color "$color"
    # fuzz/ is its own crate outside the workspace, so `--all` does not reach it.
    if [[ -f fuzz/Cargo.toml ]]; then
        cargo fmt --all --manifest-path fuzz/Cargo.toml -- --check --color "$color"
    fi
}

step_clippy() {
    cargo clippy --workspace --all-targets -- -D warnings
}

step_doc() {
    # Doc comments are part of the API: a broken intra-doc link or bad markup fails like a lint.
    RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -Dwarnings" cargo doc --no-deps --workspace
}

step_test() {
    # --no-fail-fast: report every failing test binary, not just the first. --show-output: passing
    # tests' output is printed too, so the "skipped:" lines of tests that could not run reach the log,
    # which is kept for the closing counts.
    with_timeout "$TEST_TIMEOUT" cargo test --workspace --release --no-fail-fast -- --show-output 2>&1 |
        tee "$WORK_DIR/test.log"
}

# Tests that passed only because they skipped: each prints a line starting with "skipped:" (the
# helpers in tests/src and cli/tests do), which libtest shows under "---- NAME stdout ----".
# Prints "NAME: reason", once per test.
runtime_skips() {
    awk '
        /^successes:$/ { passing = 1; name = ""; next }
        /^failures:$|^test result:|^running [0-9]+ tests?$/ { passing = 0; name = ""; next }
        /^---- .* stdout ----$/ { name = $2; next }
        /^skipped: / && passing && name != "" && !(name in seen) {
            seen[name] = 1; sub(/^skipped: /, ""); print "  - " name ": " $0 }
    ' "$1"
}

# ---------------------------------------------------------------------------------------------------------
# Step 5: fuzzing
# ---------------------------------------------------------------------------------------------------------

step_fuzz() {
    if [[ -n "${SKIP_FUZZ:-}" ]]; then
        if is_ci; then
            echo "CI=true: SKIP_FUZZ is set, but CI must fuzz (unset it)"
            return 1
        fi
        skip "fuzzing: SKIP_FUZZ is set"
        exit 3
    fi
    if [[ ! -f fuzz/Cargo.toml ]]; then
        skip "fuzzing: no fuzz/Cargo.toml yet"
        exit 3
    fi
    if ! have_nightly; then
        if is_ci; then
            echo "CI=true: fuzzing needs a nightly toolchain (rustup toolchain install nightly)"
            return 1
        fi
        skip "fuzzing: needs a nightly toolchain (rustup toolchain install nightly)"
        exit 3
    fi
    if ! have_cargo_fuzz; then
        if is_ci; then
            echo "CI=true: cargo-fuzz should have been installed by the setup step"
            return 1
        fi
        skip "fuzzing: cargo-fuzz not installed (cargo install cargo-fuzz --locked)"
        exit 3
    fi

    local targets
    targets=$(cargo +nightly fuzz list --fuzz-dir fuzz)
    if [[ -z "$targets" ]]; then
        skip "fuzzing: fuzz/Cargo.toml lists no targets"
        exit 3
    fi
    echo "targets: $(echo "$targets" | tr '\n' ' ')"
    echo "limits per target: -runs=$FUZZ_RUNS -max_total_time=$FUZZ_SECONDS"

    # One build of every target (release, debug assertions, AddressSanitizer) before any run.
    cargo +nightly fuzz build --fuzz-dir fuzz

    local target corpus seed seeds log failed=()
    for target in $targets; do
        # libFuzzer adds new inputs to the first corpus directory: a scratch one, so the checked-in
        # seeds in fuzz/corpus/TARGET stay as they are.
        corpus="$WORK_DIR/corpus-$target"
        mkdir -p "$corpus"
        seed=()
        seeds=0
        if [[ -d "fuzz/corpus/$target" ]]; then
            seed=("fuzz/corpus/$target")
            seeds=$(find "fuzz/corpus/$target" -type f | wc -l | tr -d ' ')
        fi
        log="$WORK_DIR/fuzz-$target.log"
        # -timeout: any single input taking 10 s is a bug (a hang) and counts as a crash.
        if with_timeout "$((FUZZ_SECONDS + 300))" \
            cargo +nightly fuzz run --fuzz-dir fuzz "$target" "$corpus" ${seed[@]+"${seed[@]}"} -- \
            -runs="$FUZZ_RUNS" -max_total_time="$FUZZ_SECONDS" -timeout=10 -print_final_stats=1 \
            >"$log" 2>&1; then
            # libFuzzer's own closing line, e.g. "Done 200000 runs in 14 second(s)".
            printf '  %-24s ok   %s (seeds: %s)\n' "$target" \
                "$(grep -E '^Done [0-9]+ runs' "$log" | tail -n 1 || true)" "$seeds"
        else
            printf '  %-24s FAILED; the end of its log:\n' "$target"
            tail -n 150 "$log"
            failed+=("$target")
        fi
    done
    if [[ "${#failed[@]}" -gt 0 ]]; then
        echo "fuzz targets that failed: ${failed[*]} (crash inputs are in fuzz/artifacts/)"
        return 1
    fi
}

# ---------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------

header "holepunch tests in $ROOT_DIR (user $(id -un), CI=${CI:-unset})"
run_step setup step_setup
run_step fmt step_fmt
run_step clippy step_clippy
run_step doc step_doc
run_step test step_test
run_step fuzz step_fuzz
# finish() (the EXIT trap) prints the summary and sets the exit status.
