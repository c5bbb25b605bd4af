#!/usr/bin/env bash
# Tests the harness itself: a broken guest must never pass. The script's status comes through,
# and a timeout, a kernel error on the console (or a task that nearly ran out of kernel stack), a
# guest that dies without reporting a status and a bad command line each give their own exit
# status.
. "$(dirname "$0")/lib.sh"

# Checks console_errors (the scan run-guest applies to the console) without booting.
check_error_patterns() {
    local line
    local -a bad=(
        "[    1.234567] BUG: kernel NULL pointer dereference, address: 0000000000000008"
        "[    1.234567] kernel BUG at fs/vexfs/inode.c:120!"
        "[    1.234567] Oops: invalid opcode: 0000 [#1] SMP NOPTI"
        "[    1.234567] WARNING: CPU: 1 PID: 42 at kmod/super.c:10 vexfs_fill_super+0x1/0x2 [vexfs]"
        "[    1.234567] Kernel panic - not syncing: Fatal exception"
        "[    1.234567] general protection fault, probably for non-canonical address 0xdead: 0000 [#1]"
        "[    1.234567] Call Trace:"
        "[    1.234567] WARNING: possible circular locking dependency detected"
        "[    1.234567] INFO: task mount:77 blocked for more than 120 seconds."
        "[    1.234567] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:"
        "[    1.234567] UBSAN: array-index-out-of-bounds in fs/vexfs/dir.c:3:4"
        "[    1.234567] BUG: KASAN: slab-out-of-bounds in vexfs_lookup+0x1/0x2"
        "[    1.234567] BUG: KASAN: use-after-free in _RNvNtCs1_5vexfs3txn6commit+0x1/0x2 [vexfs]"
        "[    1.234567] BUG: sleeping function called from invalid context at kernel/locking/mutex.c:585"
        "[    1.234567] BUG: scheduling while atomic: vexctl/81/0x00000002"
        "[    1.234567] WARNING: possible recursive locking detected"
        "[    1.234567] WARNING: inconsistent lock state"
        "[    1.234567] WARNING: bad unlock balance detected!"
        "[    1.234567] [ BUG: Invalid wait context ]"
        "[    1.234567] INFO: lockdep is turned off."
        "[    1.234567] rust_kernel: panicked at kmod/lib.rs:10:5:"
        "thread 'main' panicked at vexctl/src/main.rs:3:9:"
        "[    1.234567] mkfs.vexfs[55]: segfault at 0 ip 0000000000401000 sp 00007ffc error 4"
        "[    1.234567] traps: vexctl[56] trap invalid opcode ip:401000 sp:7ffc error:0"
    )
    local -a good=(
        "[    0.000000] Kernel command line: console=ttyS0 panic=-1 oops=panic printk.devkmsg=on"
        "[    1.234567] vexfs: module loaded"
        "mkfs.vexfs: warning: small device"
        "VEXFS-GUEST-EXIT=0 run=0123456789ab"
        "[    0.000000] Lock dependency validator: Copyright (c) 2006 Red Hat, Inc., Ingo Molnar"
        "[    0.000000] ... MAX_LOCKDEP_SUBCLASSES:  8"
        "[    0.000000] kasan: KernelAddressSanitizer initialized"
        "[    0.000000] rcu: 	RCU lockdep checking is enabled."
    )
    for line in "${bad[@]}"; do
        printf '%s\r\n' "$line" > "$T/line.log"
        console_errors "$T/line.log" > /dev/null || fail "console scan misses: $line"
    done
    for line in "${good[@]}"; do
        printf '%s\r\n' "$line" > "$T/line.log"
        ! console_errors "$T/line.log" > /dev/null || fail "console scan wrongly flags: $line"
    done
    echo "console scan: ${#bad[@]} error lines caught, ${#good[@]} normal lines passed"
}

# Checks stack_left_min (run-guest's floor on the free kernel stack) without booting.
check_stack_scan() {
    printf '%s\r\n' "[    1.2] sh (70) used greatest stack depth: 12904 bytes left" \
        "[    2.3] vexctl (91) used greatest stack depth: 9720 bytes left" "[    2.4] vexfs: mounted" \
        > "$T/stack.log"
    [ "$(stack_left_min "$T/stack.log")" = 9720 ] || fail "stack scan: the least free stack is not 9720"
    printf '%s\r\n' "[    1.2] vexfs: mounted" > "$T/stack.log"
    ! stack_left_min "$T/stack.log" > /dev/null || fail "stack scan finds a report in a log without one"
    echo "stack scan: the least free stack found, none in a log without reports"
}

check_usage_errors() {
    local script
    script=$(guest_script true.guest <<< 'exit 0')
    expect_status 2 "$RUN_GUEST" --disk "$T/no-such-image" "$script" 2> /dev/null
    expect_status 2 "$RUN_GUEST" --timeout abc "$script" 2> /dev/null
    expect_status 2 "$RUN_GUEST" --mem 0 "$script" 2> /dev/null
    expect_status 2 "$RUN_GUEST" "$T/no-such-script" 2> /dev/null
    echo "usage errors: exit 2"
}

# The script's status comes through, its output is streamed, and a fake status line it prints is
# not taken for the real one.
check_script_status() {
    local script left
    script=$(guest_script exit3.guest <<'GUEST'
echo "hello from the guest, seed $1"
echo "VEXFS-GUEST-EXIT=0 run=000000000000"
exit 3
GUEST
)
    local rc=0
    run_guest --timeout 120 "$script" "$SEED" > "$T/exit3.out" || rc=$?
    cat "$T/exit3.out"
    [ "$rc" -eq 3 ] || fail "expected status 3 from a script that exits 3, got $rc"
    grep -q "hello from the guest, seed $SEED" "$T/exit3.out" || fail "guest output was not streamed"
    # The normal boot log must not trip the error scan (else every run would fail with 125).
    ! console_errors "$T/guest-$_LIB_GUEST_RUNS.log" || fail "a normal boot log matches the kernel-error scan"
    # The test kernel reports stack use (CONFIG_DEBUG_STACK_USAGE): else run-guest's floor on it
    # would never fire.
    left=$(stack_left_min "$T/guest-$_LIB_GUEST_RUNS.log") || fail "the boot log has no stack-use report"
    [ "$left" -ge "$VEXFS_MIN_STACK_LEFT" ] || fail "a normal boot left only $left bytes of stack"
    echo "script status: exit 3 came through"
}

check_timeout() {
    local script start elapsed
    script=$(guest_script hang.guest <<< 'echo "sleeping forever"; sleep 100000')
    start=$SECONDS
    # Unscaled, also on the debug kernel (where run-guest multiplies timeouts by 4).
    VEXFS_TIMEOUT_SCALE=1 expect_status "$GUEST_TIMEOUT" run_guest --timeout 20 "$script"
    elapsed=$((SECONDS - start))
    [ "$elapsed" -ge 19 ] && [ "$elapsed" -le 45 ] || fail "timeout of 20 s took ${elapsed}s"
    echo "timeout: exit $GUEST_TIMEOUT after ${elapsed}s"
}

check_kernel_error() {
    local script
    # The script itself succeeds; the kernel log line alone must fail the run.
    script=$(guest_script kmsg.guest <<< 'echo "BUG: fake, written by 002-harness-fails" > /dev/kmsg; exit 0')
    expect_status "$GUEST_KERNEL_ERROR" run_guest --timeout 120 "$script"
    # A Rust panic in a guest tool prints "panicked at" on the console: that fails the run too.
    script=$(guest_script panic.guest <<< "echo \"thread 'main' panicked at src/main.rs:1:1:\"; exit 0")
    expect_status "$GUEST_KERNEL_ERROR" run_guest --timeout 120 "$script"
    # A floor on the free kernel stack that no task meets fails a run that did nothing wrong:
    # the stack check acts on the real reports, not only on the lines above.
    script=$(guest_script ok.guest <<< 'exit 0')
    VEXFS_MIN_STACK_LEFT=1000000 expect_status "$GUEST_KERNEL_ERROR" run_guest --timeout 120 "$script"
    echo "kernel error: exit $GUEST_KERNEL_ERROR"
}

check_no_status() {
    local script
    # The guest stops before init can print the status line, as in a crash.
    script=$(guest_script reboot.guest <<< 'reboot -f; sleep 100')
    expect_status "$GUEST_NO_STATUS" run_guest --timeout 120 "$script"
    echo "no status: exit $GUEST_NO_STATUS"
}

# On the debug kernel (VEXFS_DEBUG_KERNEL=1): real lockdep, sleep-in-atomic, KASAN (from C and
# from Rust) and list-corruption reports, made by the test-only modules of debug-probe/, must each
# fail the run (exit 125) and show on the console as the kernel writes them.
check_debug_reports() {
    local probe="$T/probe" script trigger want log
    mkdir -p "$probe"
    cp "$VEXFS_ROOT"/tests/guest/debug-probe/* "$probe/"
    must make -C "$(kernel_build_dir)/build" M="$probe" LLVM=1 -s modules
    script=$(guest_script probe.guest <<'GUEST'
if [ "$1" = rust ]; then insmod /share/vexfs_probe_rs.ko; else insmod /share/vexfs_probe_c.ko trigger="$1"; fi
echo "probe $1: insmod status $?"
exit 0
GUEST
)
    for trigger in lockdep sleep kasan list rust; do
        case $trigger in
            lockdep) want="WARNING: possible circular locking dependency detected" ;;
            sleep) want="BUG: sleeping function called from invalid context" ;;
            kasan) want="BUG: KASAN: slab-out-of-bounds in .*vexfs_probe_c" ;;
            list) want="list_add corruption" ;;
            rust) want="BUG: KASAN: slab-out-of-bounds in .*vexfs_probe_rs" ;;
        esac
        expect_status "$GUEST_KERNEL_ERROR" run_guest --share "$probe" --timeout 120 "$script" "$trigger" \
            > "$T/probe-$trigger.out" 2>&1
        log="$T/guest-$_LIB_GUEST_RUNS.log"
        tr -d '\r' < "$log" | grep -qE -- "$want" || { cat "$log"; fail "probe $trigger: no '$want' on the console"; }
        echo "debug kernel: probe $trigger reported ($want), run failed with $GUEST_KERNEL_ERROR"
    done
}

check_error_patterns
check_stack_scan
check_usage_errors
check_script_status
check_timeout
check_kernel_error
check_no_status
! debug_kernel || check_debug_reports
echo "002-harness-fails: PASS"
