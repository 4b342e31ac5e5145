//! The memory-bandwidth probe's inner loops, in a crate of their own so they are compiled
//! optimised even in llmtop's dev and test builds (llmtop itself is built at opt-level 0
//! there, where these loops would measure the compiler, not the memory). See
//! `[profile.dev.package.membw]` in llmtop's Cargo.toml.
//!
//! Both kernels follow STREAM (McCalpin): plain loops over `f64` arrays that the compiler
//! vectorises for the CPU llmtop is built for, no non-temporal stores.

#![no_std]
#![forbid(unsafe_code)]

/// Read every element of `a` once: returns their sum so the loads cannot be elided. Eight
/// independent accumulators keep enough loads in flight to saturate memory, not one add chain.
#[inline(never)]
pub fn read(a: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = a.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    let mut sum: f64 = acc.iter().sum();
    for x in rest {
        sum += x;
    }
    sum
}

/// STREAM's triad: `a[i] = b[i] + s * c[i]`. Two arrays read, one written: STREAM counts
/// 24 bytes per element (the write-allocate read of `a` is not counted).
#[inline(never)]
pub fn triad(a: &mut [f64], b: &[f64], c: &[f64], s: f64) {
    let n = a.len().min(b.len()).min(c.len());
    for ((x, y), z) in a[..n].iter_mut().zip(&b[..n]).zip(&c[..n]) {
        *x = y + s * z;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_compute_what_they_say() {
        let b = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(read(&b), 55.0);
        let c = [2.0; 10];
        let mut a = [0.0; 10];
        triad(&mut a, &b, &c, 3.0);
        assert_eq!(a[0], 7.0);
        assert_eq!(a[9], 16.0);
    }
}
