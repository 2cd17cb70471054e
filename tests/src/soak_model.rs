//! The SIGKILL soak's model of a file (`tests/soak.rs`): for each 4 KiB block, the value its last
//! committed write left and the values written to it since, each named by the seed of the write
//! that carried it. The writer is our client's `blocklog` command (4 KiB UNSTABLE writes at
//! aligned random blocks, write `i` of a run with seed `s` carrying `pattern_byte(pos, s + i + 1)`,
//! a COMMIT every few writes); [`block_plan`] and [`pattern_byte`] replay it.
//!
//! The contract checked, block by block: a block holds exactly its committed value (zeros if no
//! committed write ever covered it), or exactly one of the values written to it after that —
//! whole, never a mix inside the block. Anything else is a [`Fault`].

use std::fmt;

/// The size of a block: the writer's write size and alignment, and the unit of the check.
pub const BLOCK: u64 = 4096;

/// What a block holds: `None` = zeros (never written), `Some(seed)` = the pattern of that seed.
pub type Value = Option<u64>;

/// Mirrors `pattern_byte` in csrc/nfs_client.c: the byte at file position `pos` for `seed`.
pub fn pattern_byte(pos: u64, seed: u64) -> u8 {
    let mut x = pos.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ seed.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 29;
    (x ^ (x >> 17)) as u8
}

/// Mirrors the client's `blocklog`: the block index of each of writes `0..count` to a file of
/// `size` bytes (a multiple of [`BLOCK`]) for `seed`.
pub fn block_plan(size: u64, seed: u64, count: u64) -> Vec<u64> {
    let blocks = size / BLOCK;
    let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1);
    (0..count)
        .map(|_| {
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            rng.wrapping_mul(0x2545_f491_4f6c_dd1d) % blocks
        })
        .collect()
}

/// How many bytes of `data` (block number `block`) equal `value`.
fn same_bytes(data: &[u8], block: u64, value: Value) -> usize {
    let base = block * BLOCK;
    match value {
        None => data.iter().filter(|&&b| b == 0).count(),
        Some(seed) => data
            .iter()
            .enumerate()
            .filter(|&(i, &b)| b == pattern_byte(base + i as u64, seed))
            .count(),
    }
}

/// True if `data` is exactly `value` for block `block`.
fn holds(data: &[u8], block: u64, value: Value) -> bool {
    let base = block * BLOCK;
    match value {
        None => data.iter().all(|&b| b == 0),
        Some(seed) => data
            .iter()
            .enumerate()
            .all(|(i, &b)| b == pattern_byte(base + i as u64, seed)),
    }
}

/// One block that holds neither its committed value nor a whole uncommitted one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The block's index (its offset is `block * BLOCK`).
    pub block: u64,
    /// The value it must hold unless an uncommitted write reached it.
    pub committed: Value,
    /// Bytes of the block that equal the committed value.
    pub committed_bytes: usize,
    /// The values written after the last commit that covered it.
    pub uncommitted: Vec<u64>,
    /// The most bytes of the block that equal one of those values (0 if none).
    pub best_uncommitted_bytes: usize,
}

/// A value for humans: `zeros` or the seed of the write that carried it.
fn show(v: Value) -> String {
    v.map_or_else(|| "zeros".to_string(), |s| format!("write {s:#x}"))
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.committed_bytes + self.best_uncommitted_bytes >= BLOCK as usize {
            "torn (a mix of values)"
        } else {
            "lost (neither its committed value nor a later one)"
        };
        let later: Vec<String> = self.uncommitted.iter().map(|&s| show(Some(s))).collect();
        write!(
            f,
            "block {} (offset {}): {what}; {} of {BLOCK} bytes match the committed value ({}); \
             uncommitted values [{}], the closest matches {} bytes",
            self.block,
            self.block * BLOCK,
            self.committed_bytes,
            show(self.committed),
            later.join(", "),
            self.best_uncommitted_bytes,
        )
    }
}

/// What one verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    /// Blocks that hold one of their uncommitted values (not their committed one).
    pub uncommitted_blocks: u64,
    /// Blocks whose value differs from what the previous verification read although nothing
    /// was written to them in between (allowed for uncommitted values, but worth a look).
    pub changed_unwritten: u64,
}

/// What a writer reported about one run on a file: its seed, how many of its writes a COMMIT
/// acknowledged, and how many it may have sent (an upper bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    /// The `blocklog` seed.
    pub seed: u64,
    /// Writes `0..committed` are committed (the last `committed=N` line).
    pub committed: u64,
    /// Writes `committed..sent` may have reached the server.
    pub sent: u64,
}

#[derive(Debug, Clone, Default)]
struct BlockState {
    committed: Value,
    uncommitted: Vec<u64>,
    /// What the last verification read, if nothing was written to the block since.
    seen: Option<Value>,
}

/// The expected image of one file of fixed size: per block, its committed value and the values
/// written to it since.
#[derive(Debug, Clone)]
pub struct Expected {
    blocks: Vec<BlockState>,
}

impl Expected {
    /// A new file of `size` bytes (a multiple of [`BLOCK`]) that reads as zeros.
    pub fn zeros(size: u64) -> Expected {
        assert!(
            size > 0 && size.is_multiple_of(BLOCK),
            "size {size} not whole blocks"
        );
        let fresh = BlockState {
            committed: None,
            uncommitted: Vec::new(),
            seen: Some(None),
        };
        Expected {
            blocks: vec![fresh; (size / BLOCK) as usize],
        }
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.blocks.len() as u64 * BLOCK
    }

    /// Checks `data` (the whole file read back) block by block and remembers what each block
    /// holds, for [`Expected::apply`]. Returns every faulty block, or what was seen.
    pub fn verify(&mut self, data: &[u8]) -> Result<Verified, Vec<Fault>> {
        assert_eq!(
            data.len() as u64,
            self.size(),
            "file read back at a wrong size"
        );
        let mut faults = Vec::new();
        let mut found = Vec::with_capacity(self.blocks.len());
        let mut out = Verified::default();
        for (b, (st, chunk)) in self
            .blocks
            .iter()
            .zip(data.chunks(BLOCK as usize))
            .enumerate()
        {
            let b = b as u64;
            let value = if holds(chunk, b, st.committed) {
                Some(st.committed)
            } else {
                st.uncommitted
                    .iter()
                    .rev()
                    .find(|&&s| holds(chunk, b, Some(s)))
                    .map(|&s| Some(s))
            };
            match value {
                Some(v) => {
                    if v != st.committed {
                        out.uncommitted_blocks += 1;
                    }
                    if st.seen.is_some_and(|s| s != v) {
                        out.changed_unwritten += 1;
                    }
                    found.push(v);
                }
                None => {
                    faults.push(Fault {
                        block: b,
                        committed: st.committed,
                        committed_bytes: same_bytes(chunk, b, st.committed),
                        uncommitted: st.uncommitted.clone(),
                        best_uncommitted_bytes: st
                            .uncommitted
                            .iter()
                            .map(|&s| same_bytes(chunk, b, Some(s)))
                            .max()
                            .unwrap_or(0),
                    });
                    found.push(st.committed);
                }
            }
        }
        if !faults.is_empty() {
            return Err(faults);
        }
        for (st, v) in self.blocks.iter_mut().zip(found) {
            st.seen = Some(v);
        }
        Ok(out)
    }

    /// Takes in what a writer reported about a run on this file, which started after the last
    /// [`Expected::verify`]. A COMMIT covers the whole file, so once the run committed anything,
    /// what that verification read is committed too (every block's value is then known), then
    /// writes `0..committed` are; writes `committed..sent` become possible values of their
    /// blocks. A run that committed nothing only adds possible values.
    pub fn apply(&mut self, run: &RunReport) {
        if run.committed > 0 {
            for (b, st) in self.blocks.iter_mut().enumerate() {
                let seen = st.seen.unwrap_or_else(|| {
                    panic!("block {b}: a commit of a file not verified since it was written")
                });
                st.committed = seen;
                st.uncommitted.clear();
            }
        }
        let plan = block_plan(self.size(), run.seed, run.sent.max(run.committed));
        for (i, &b) in plan.iter().enumerate() {
            let st = &mut self.blocks[b as usize];
            let value = run.seed + i as u64 + 1;
            if (i as u64) < run.committed {
                st.committed = Some(value);
                st.uncommitted.clear();
            } else {
                st.uncommitted.push(value);
            }
            st.seen = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: u64 = 64 * BLOCK;

    /// The bytes of a file from `values` per block.
    fn image(values: &[Value]) -> Vec<u8> {
        let mut out = Vec::new();
        for (b, v) in values.iter().enumerate() {
            for i in 0..BLOCK {
                let pos = b as u64 * BLOCK + i;
                out.push(v.map_or(0, |s| pattern_byte(pos, s)));
            }
        }
        out
    }

    /// The values a run leaves when writes `0..upto` landed.
    fn after(base: &[Value], seed: u64, upto: u64) -> Vec<Value> {
        let mut v = base.to_vec();
        for (i, b) in block_plan(SIZE, seed, upto).into_iter().enumerate() {
            v[b as usize] = Some(seed + i as u64 + 1);
        }
        v
    }

    #[test]
    fn a_committed_image_and_any_mix_of_whole_uncommitted_blocks_pass() {
        let mut exp = Expected::zeros(SIZE);
        let zeros = vec![None; (SIZE / BLOCK) as usize];
        assert_eq!(exp.verify(&image(&zeros)), Ok(Verified::default()));
        let run = RunReport {
            seed: 1000,
            committed: 40,
            sent: 48,
        };
        exp.apply(&run);
        // Committed only; all sent; and a mix (every other uncommitted write landed).
        let committed = after(&zeros, 1000, 40);
        let mut e = exp.clone();
        e.verify(&image(&committed)).expect("committed image");
        let mut e = exp.clone();
        e.verify(&image(&after(&zeros, 1000, 48)))
            .expect("all sent writes landed");
        let mut mixed = committed.clone();
        for (i, b) in block_plan(SIZE, 1000, 48).into_iter().enumerate().skip(40) {
            if i % 2 == 0 {
                mixed[b as usize] = Some(1000 + i as u64 + 1);
            }
        }
        exp.verify(&image(&mixed)).expect("a mix of whole blocks");
    }

    #[test]
    fn a_lost_committed_block_fails() {
        let mut exp = Expected::zeros(SIZE);
        let zeros = vec![None; (SIZE / BLOCK) as usize];
        exp.apply(&RunReport {
            seed: 7,
            committed: 30,
            sent: 30,
        });
        let mut lost = after(&zeros, 7, 30);
        // The block of write 29 back to what it had before it (the last commit covered it).
        let plan = block_plan(SIZE, 7, 30);
        let b = plan[29] as usize;
        let before = plan[..29]
            .iter()
            .rposition(|&x| x as usize == b)
            .map(|i| Some(7 + i as u64 + 1));
        lost[b] = before.unwrap_or(None);
        let faults = exp.verify(&image(&lost)).expect_err("a lost block passed");
        assert_eq!(faults.len(), 1, "{faults:?}");
        assert_eq!(faults[0].block, b as u64);
        assert_eq!(faults[0].committed, Some(7 + 30));
    }

    #[test]
    fn a_torn_block_and_a_value_never_sent_fail() {
        let mut exp = Expected::zeros(SIZE);
        let zeros = vec![None; (SIZE / BLOCK) as usize];
        exp.apply(&RunReport {
            seed: 50,
            committed: 10,
            sent: 16,
        });
        let plan = block_plan(SIZE, 50, 17);
        // An uncommitted write's block: first half new, second half as committed.
        let good = after(&zeros, 50, 10);
        let mut bytes = image(&good);
        let i = (10..16)
            .find(|&i| plan[10..16].iter().filter(|&&x| x == plan[i]).count() == 1)
            .expect("a block written once after the commit");
        let b = plan[i];
        let start = (b * BLOCK) as usize;
        for j in 0..(BLOCK / 2) as usize {
            bytes[start + j] = pattern_byte(b * BLOCK + j as u64, 50 + i as u64 + 1);
        }
        let faults = exp.clone().verify(&bytes).expect_err("a torn block passed");
        assert_eq!(faults.len(), 1, "{faults:?}");
        assert!(faults[0].to_string().contains("torn"), "{}", faults[0]);
        // Write 16 was never sent (sent = 16): its value must not appear.
        let mut ahead = good.clone();
        ahead[plan[16] as usize] = Some(50 + 17);
        exp.verify(&image(&ahead))
            .expect_err("a value never sent passed");
    }

    #[test]
    fn a_commit_makes_what_the_last_verification_read_committed() {
        let mut exp = Expected::zeros(SIZE);
        let zeros = vec![None; (SIZE / BLOCK) as usize];
        exp.apply(&RunReport {
            seed: 90,
            committed: 0,
            sent: 8,
        });
        // The crash kept writes 0..8 (uncommitted): allowed, and now read.
        let landed = after(&zeros, 90, 8);
        exp.verify(&image(&landed))
            .expect("uncommitted writes landed");
        // The next run commits: writes 0..8 of the first run are committed now.
        exp.apply(&RunReport {
            seed: 5000,
            committed: 1,
            sent: 1,
        });
        let now = after(&landed, 5000, 1);
        exp.clone().verify(&image(&now)).expect("committed state");
        let b = (0..(SIZE / BLOCK) as usize)
            .find(|&b| now[b].is_some_and(|s| (91..=98).contains(&s)))
            .expect("a block still holding the first run's value");
        let mut rolled_back = now.clone();
        rolled_back[b] = None;
        exp.verify(&image(&rolled_back))
            .expect_err("a block committed by a later COMMIT rolled back and passed");
    }
}
