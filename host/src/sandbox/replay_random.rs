//! The randomness an orchestrator sees: an endless stream derived from its
//! instance id and generation, the same in every replay.
//!
//! Invariants:
//! - A stream never repeats within the draws a guest can make: block `n` is
//!   `SHA-256(prefix || instance-in-generation || n)` with a 64-bit `n`.
//!   (wasmtime-wasi's `Deterministic` cycles a fixed buffer, which an
//!   interpreter that reseeds itself exhausts in one call: CPython's
//!   `random.seed()` alone reads 2,496 bytes.)
//! - A stream depends only on its inputs and this file, never on a crate's
//!   choice of algorithm, so that a host upgrade replays old journals with
//!   the same numbers. Earlier hosts cycled the first 4,096 bytes of the
//!   secure stream (and its reverse for the insecure one); both streams
//!   start with exactly those bytes, so journals written then replay here.
//! - The secure and insecure streams differ, and the hash-map seed is the
//!   secure stream's first 16 bytes, as before.

use std::convert::Infallible;

use sha2::{Digest as _, Sha256};

/// Bytes earlier hosts cycled; the streams start with them.
const LEGACY_BYTES: usize = 4096;

/// One deterministic stream of random bytes.
pub(crate) struct ReplayRandom {
    /// Bytes handed out before the blocks (the insecure stream's legacy
    /// start), and how many of them are gone.
    head: Vec<u8>,
    head_used: usize,
    /// Hashed before every block: the stream's label and whose it is.
    prefix: Vec<u8>,
    /// The index of the next block.
    next_block: u64,
    /// The current block and how much of it has been handed out.
    block: [u8; 32],
    used: usize,
}

impl ReplayRandom {
    fn blocks(label: &[u8], instance: &str, generation: u64, first_block: u64) -> Self {
        let id = perdure_records::in_generation(instance, generation);
        let mut prefix = Vec::with_capacity(label.len() + id.len());
        prefix.extend_from_slice(label);
        prefix.extend_from_slice(id.as_bytes());
        Self {
            head: Vec::new(),
            head_used: 0,
            prefix,
            next_block: first_block,
            block: [0; 32],
            used: 32,
        }
    }

    /// What `wasi:random/random` returns to `instance` in `generation`.
    pub(crate) fn secure(instance: &str, generation: u64) -> Self {
        Self::blocks(b"perdure-random:", instance, generation, 0)
    }

    /// What `wasi:random/insecure` returns: the reverse of the secure
    /// stream's first 4,096 bytes, then a stream of its own.
    pub(crate) fn insecure(instance: &str, generation: u64) -> Self {
        let mut head = vec![0; LEGACY_BYTES];
        Self::secure(instance, generation).fill(&mut head);
        head.reverse();
        Self {
            head,
            ..Self::blocks(b"perdure-random-insecure:", instance, generation, 0)
        }
    }

    /// `wasi:random/insecure-seed`: the secure stream's first 16 bytes.
    pub(crate) fn seed(instance: &str, generation: u64) -> u128 {
        let mut bytes = [0u8; 16];
        Self::secure(instance, generation).fill(&mut bytes);
        u128::from_le_bytes(bytes)
    }

    fn refill(&mut self) {
        let mut hash = Sha256::new();
        hash.update(&self.prefix);
        hash.update(self.next_block.to_le_bytes());
        self.block = hash.finalize().into();
        self.next_block = self.next_block.wrapping_add(1);
        self.used = 0;
    }

    pub(crate) fn fill(&mut self, out: &mut [u8]) {
        let mut written = 0;
        if self.head_used < self.head.len() {
            let n = (self.head.len() - self.head_used).min(out.len());
            out[..n].copy_from_slice(&self.head[self.head_used..self.head_used + n]);
            self.head_used += n;
            written = n;
        }
        while written < out.len() {
            if self.used == self.block.len() {
                self.refill();
            }
            let n = (self.block.len() - self.used).min(out.len() - written);
            out[written..written + n].copy_from_slice(&self.block[self.used..self.used + n]);
            self.used += n;
            written += n;
        }
    }
}

impl rand_core::TryRng for ReplayRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0u8; 4];
        self.fill(&mut bytes);
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0u8; 8];
        self.fill(&mut bytes);
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, out: &mut [u8]) -> Result<(), Infallible> {
        self.fill(out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(stream: &mut ReplayRandom, n: usize) -> Vec<u8> {
        let mut out = vec![0; n];
        stream.fill(&mut out);
        out
    }

    /// The 4,096 bytes earlier hosts cycled, computed as they did.
    fn legacy(instance: &str, generation: u64) -> Vec<u8> {
        let id = perdure_records::in_generation(instance, generation);
        (0u64..128)
            .flat_map(|block| {
                let mut hash = Sha256::new();
                hash.update(b"perdure-random:");
                hash.update(id.as_bytes());
                hash.update(block.to_le_bytes());
                hash.finalize().to_vec()
            })
            .collect()
    }

    #[test]
    fn both_streams_start_with_what_earlier_hosts_handed_out() {
        let old = legacy("i-1", 2);
        assert_eq!(draw(&mut ReplayRandom::secure("i-1", 2), LEGACY_BYTES), old);
        let reversed: Vec<u8> = old.iter().rev().copied().collect();
        assert_eq!(
            draw(&mut ReplayRandom::insecure("i-1", 2), LEGACY_BYTES),
            reversed
        );
        let seed = u128::from_le_bytes(old[..16].try_into().expect("16 bytes"));
        assert_eq!(ReplayRandom::seed("i-1", 2), seed);
    }

    #[test]
    fn the_same_inputs_give_the_same_stream_however_it_is_read() {
        for make in [ReplayRandom::secure, ReplayRandom::insecure] {
            let whole = draw(&mut make("i-1", 0), 10_000);
            let mut pieces = make("i-1", 0);
            let mut joined = Vec::new();
            for size in [1, 31, 32, 33, 2_496, 7_407] {
                joined.extend(draw(&mut pieces, size));
            }
            assert_eq!(whole, joined);
        }
    }

    #[test]
    fn the_streams_do_not_repeat_past_four_kibibytes() {
        for make in [ReplayRandom::secure, ReplayRandom::insecure] {
            let bytes = draw(&mut make("i-1", 0), 64 * 1024);
            let blocks: std::collections::HashSet<&[u8]> = bytes.chunks(32).collect();
            assert_eq!(blocks.len(), bytes.len() / 32, "a 32-byte block repeated");
        }
    }

    #[test]
    fn instance_and_generation_each_change_the_stream() {
        let base = draw(&mut ReplayRandom::secure("i-1", 0), 64);
        assert_ne!(base, draw(&mut ReplayRandom::secure("i-2", 0), 64));
        assert_ne!(base, draw(&mut ReplayRandom::secure("i-1", 1), 64));
        let insecure = draw(&mut ReplayRandom::insecure("i-1", 0), 2 * LEGACY_BYTES);
        let secure = draw(&mut ReplayRandom::secure("i-1", 0), 2 * LEGACY_BYTES);
        assert_ne!(insecure[LEGACY_BYTES..], secure[LEGACY_BYTES..]);
    }
}
