// SPDX-License-Identifier: GPL-2.0
/*
 * Test-only module for the vexfs debug kernel: `insmod vexfs_probe_c.ko trigger=NAME` does one
 * wrong thing that the debug kernel must report on the console, so tests/guest/002 can check
 * that the harness fails the run on the real report (not only on a line it made up):
 *   lockdep  take two mutexes in both orders       -> WARNING: possible circular locking ...
 *   sleep    GFP_KERNEL allocation under a spinlock -> BUG: sleeping function called from invalid context
 *   kasan    read past a kmalloc'd object          -> BUG: KASAN: slab-out-of-bounds
 *   list     list_add of an entry with bad links   -> list_add corruption (a WARNING)
 * Nothing is left locked or corrupted afterwards; the module loads and can stay loaded.
 */
#include <linux/list.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>

static char *trigger = "";
module_param(trigger, charp, 0444);
MODULE_PARM_DESC(trigger, "lockdep, sleep, kasan or list");

static DEFINE_MUTEX(probe_a);
static DEFINE_MUTEX(probe_b);
static DEFINE_SPINLOCK(probe_spin);

static void probe_lockdep(void)
{
	/* A then B, later B then A: no deadlock here (one thread), but lockdep sees the cycle. */
	mutex_lock(&probe_a);
	mutex_lock(&probe_b);
	mutex_unlock(&probe_b);
	mutex_unlock(&probe_a);
	mutex_lock(&probe_b);
	mutex_lock(&probe_a);
	mutex_unlock(&probe_a);
	mutex_unlock(&probe_b);
}

static void probe_sleep(void)
{
	/* A GFP_KERNEL allocation may sleep: might_sleep() reports it even when this one does not. */
	spin_lock(&probe_spin);
	kfree(kmalloc(16, GFP_KERNEL));
	spin_unlock(&probe_spin);
}

static void probe_kasan(void)
{
	size_t size = 24;
	char *p = kmalloc(size, GFP_KERNEL);

	if (!p)
		return;
	/* Hidden from the compiler, as lib/kasan_test.c does, so it cannot fold or warn. */
	OPTIMIZER_HIDE_VAR(size);
	/* Byte 24 is in the object's kmalloc-32 slot but past its 24 bytes: KASAN reports it. */
	pr_info("vexfs_probe_c: read %d\n", READ_ONCE(p[size]));
	kfree(p);
}

static void probe_list(void)
{
	LIST_HEAD(head);
	struct list_head a, b;

	/* b claims a neighbour that head does not have: DEBUG_LIST refuses the add (no write). */
	b.next = &a;
	b.prev = &a;
	head.next = &b;
	list_add(&a, &head);
}

static int __init probe_init(void)
{
	if (!strcmp(trigger, "lockdep"))
		probe_lockdep();
	else if (!strcmp(trigger, "sleep"))
		probe_sleep();
	else if (!strcmp(trigger, "kasan"))
		probe_kasan();
	else if (!strcmp(trigger, "list"))
		probe_list();
	else
		return -EINVAL;
	pr_info("vexfs_probe_c: %s done\n", trigger);
	return 0;
}

static void __exit probe_exit(void)
{
}

module_init(probe_init);
module_exit(probe_exit);
MODULE_DESCRIPTION("vexfs debug-kernel probe: one reportable bug on demand (tests only)");
MODULE_LICENSE("GPL");
