/* Preloaded into componentize-py while it builds a Python app (see
 * xtask/src/python.rs): every getrandom(2) and getentropy(3) it makes
 * through the C library returns the same fixed stream.
 *
 * componentize-py runs CPython once at build time and snapshots its memory.
 * CPython draws its string-hash secret from that run's randomness, so
 * without this two builds of the same source hash strings differently:
 * set iteration order changes, and an orchestration started on one build
 * fails its replay on the other. With it, every build gets the same
 * secret. Nothing secret depends on it: at run time the component gets
 * its randomness from the host (per instance, replayable for
 * orchestrators). */
#define _GNU_SOURCE
#include <stddef.h>
#include <sys/types.h>

static unsigned long long state = 0x9E3779B97F4A7C15ULL;

static unsigned char next_byte(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (unsigned char)(state >> 24);
}

ssize_t getrandom(void *buf, size_t len, unsigned int flags) {
    (void)flags;
    unsigned char *out = buf;
    for (size_t i = 0; i < len; i++) out[i] = next_byte();
    return (ssize_t)len;
}

int getentropy(void *buf, size_t len) {
    getrandom(buf, len, 0);
    return 0;
}
