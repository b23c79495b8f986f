/*
 * worker.ini (see docs/worker.md): where the worker listens, its identity
 * and TLS files, the key that verifies routing tokens, the images it
 * serves, store budgets, limits, and its runtime. Relative file names are
 * relative to the directory of the configuration file.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "strv.h"

struct worker_config {
	char *path;              /* the file that was read */
	char *id;
	char *listen;
	char *dir;               /* state: stores, staging */
	char *cert_file, *key_file;
	char *token_key_file;    /* Ed25519 public key (PEM) */
	struct strv images;      /* "sha256:<hex>" the worker serves */
	unsigned max_calls;
	uint64_t max_size;       /* per tenant */
	uint64_t max_blob;       /* one file, uncompressed */
	uint64_t max_message;    /* one gRPC message */
	unsigned exec_timeout;   /* seconds */
	char *runtime;           /* "unsafe-local" or "microvm" */
	bool allow_unsafe_local;
	char *search_path;
	int max_parallel;
	/* [images]: imported toolchain images (hpcc image import) */
	char *images_dir;        /* default <dir>/images */
	uint64_t image_max_size; /* uncompressed bytes of one image */
	uint64_t image_max_entries;
	/* [microvm]: the microVM runtime and its pool (docs/microvm.md) */
	char *vmm;               /* "qemu" (default) or "firecracker" */
	char *vmm_binary;        /* default /usr/bin/qemu-system-x86_64 or /usr/bin/firecracker */
	char *kernel, *initrd;   /* guest kernel (vmlinux) and initramfs (the agent) */
	char *accel;             /* "auto" (default), "kvm" or "tcg" */
	bool allow_tcg;          /* software emulation only when set */
	bool sandbox;            /* QEMU -sandbox on (default true) */
	char *vm_user;           /* the unprivileged user VMMs run as (default "nobody") */
	unsigned vm_uid_base;    /* > 0: VM n runs as uid vm_uid_base + n (n < 2 x max_vms), group of vm_user */
	unsigned vcpus, memory_mib;
	unsigned max_vms, max_vms_per_tenant;
	unsigned vm_idle_timeout; /* seconds before an idle VM is torn down */
	unsigned vm_max_age;      /* seconds: a VM is retired after this (session limit) */
	unsigned boot_timeout;    /* seconds to wait for the agent's hello */
};

int worker_config_load(const char *path, struct worker_config *ret, struct error *err);
void worker_config_free(struct worker_config *c);
bool worker_config_serves(const struct worker_config *c, const char *image);
