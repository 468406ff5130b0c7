//! The order ldconfig sorts entries in, which `ld.so`'s binary search needs.

use std::cmp::Ordering;

use super::Entry;

/// glibc's `_dl_cache_libcmp`: byte order (of C's signed `char`, as on x86-64), except that runs
/// of digits compare as numbers (`libfoo.so.10` > `libfoo.so.9`) and a digit sorts after any
/// other byte.
pub fn libcmp(a: &[u8], b: &[u8]) -> Ordering {
    let signed = |c: u8| c as i8;
    let (mut i, mut j) = (0, 0);
    loop {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(j).copied().unwrap_or(0);
        if x == 0 {
            return 0.cmp(&signed(y));
        }
        match (x.is_ascii_digit(), y.is_ascii_digit()) {
            (true, true) => {
                // glibc accumulates each run into an int; compare the runs by value without
                // overflowing: leading zeros stripped, then by length, then digit by digit.
                let run = |s: &[u8], k: usize| {
                    let end = s[k..]
                        .iter()
                        .position(|c| !c.is_ascii_digit())
                        .map_or(s.len(), |p| k + p);
                    let digits = &s[k..end];
                    let zeros = digits.iter().take_while(|c| **c == b'0').count();
                    (digits[zeros..].to_vec(), end)
                };
                let (na, ea) = run(a, i);
                let (nb, eb) = run(b, j);
                let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(&nb));
                if ord != Ordering::Equal {
                    return ord;
                }
                i = ea;
                j = eb;
            }
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            (false, false) if x != y => return signed(x).cmp(&signed(y)),
            (false, false) => {
                i += 1;
                j += 1;
            }
        }
    }
}

/// ldconfig's `compare`: the order entries must have in the file.
pub(super) fn entry_order(e1: &Entry, e2: &Entry) -> Ordering {
    libcmp(&e2.key, &e1.key)
        .then_with(|| e2.flags.cmp(&e1.flags))
        .then_with(|| match (e1.hwcaps_name(), e2.hwcaps_name()) {
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(a), Some(b)) => a.cmp(b),
            (None, None) => Ordering::Equal,
        })
        .then_with(|| {
            e2.hwcap_bits()
                .count_ones()
                .cmp(&e1.hwcap_bits().count_ones())
        })
        .then_with(|| e2.hwcap_bits().cmp(&e1.hwcap_bits()))
        .then_with(|| e2.osversion.cmp(&e1.osversion))
}
