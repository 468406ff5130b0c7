//! Reading the small files a container start reads (procfs and sysfs entries, config.json, the
//! lease file) in two `read` calls: one that takes the whole file and one that sees its end.
//!
//! `std::fs::read_to_string` sizes its buffer from the file's length, which procfs reports as 0,
//! and a `Read::take` reader gives no length at all: the standard library then starts with a
//! 32-byte read and doubles from there, six to eight calls for a file of a few hundred bytes.
//! A container start reads about fifteen such files (#18: each call costs a few microseconds on
//! a VM). Starting with room for [`FIRST_READ`] bytes makes it two.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// The room the first read gets: more than any procfs entry or state file a start reads (a few
/// hundred bytes to a few KiB); the standard library reads at most 8 KiB at first anyway. A
/// larger file (a host's mountinfo with hundreds of mounts) takes more reads, as before.
pub const FIRST_READ: usize = 8 * 1024;

/// At most `limit + 1` bytes of `reader`, so that the caller can tell a file over `limit` from
/// one that fits.
pub fn read_capped(reader: impl Read, limit: u64) -> io::Result<Vec<u8>> {
    let room = usize::try_from(limit.saturating_add(1))
        .unwrap_or(usize::MAX)
        .min(FIRST_READ);
    let mut bytes = Vec::with_capacity(room);
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The whole text file at `path`, as `std::fs::read_to_string` reads it (the same errors), in
/// two reads when it is under [`FIRST_READ`] bytes, whatever length the file reports (and
/// without the `statx` and `lseek` the standard library spends on asking it).
pub fn read_text(path: impl AsRef<Path>) -> io::Result<String> {
    let bytes = read_capped(File::open(path.as_ref())?, u64::MAX)?;
    String::from_utf8(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_text_reads_procfs_whole() {
        // procfs reports length 0; the text is still all there.
        let text = read_text("/proc/self/status").unwrap();
        assert!(text.starts_with("Name:"), "{text}");
        assert!(text.contains("\nPid:"));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn read_text_reads_files_longer_than_the_first_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("long");
        let body: String = (0..3 * FIRST_READ)
            .map(|i| (b'a' + (i % 26) as u8) as char)
            .collect();
        std::fs::write(&p, &body).unwrap();
        assert_eq!(read_text(&p).unwrap(), body);
    }

    #[test]
    fn read_text_errors_as_std_does() {
        let dir = tempfile::tempdir().unwrap();
        let missing = read_text(dir.path().join("missing")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        let p = dir.path().join("bin");
        std::fs::write(&p, [0xff, 0xfe, 0x00]).unwrap();
        assert_eq!(
            read_text(&p).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn read_capped_stops_one_byte_past_the_limit() {
        let data = vec![7u8; 100];
        assert_eq!(read_capped(&data[..], 10).unwrap().len(), 11);
        assert_eq!(read_capped(&data[..], 100).unwrap(), data);
        assert_eq!(read_capped(&data[..], 1000).unwrap(), data);
        assert_eq!(read_capped(&data[..0], 0).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn read_capped_reads_past_the_first_read() {
        let data: Vec<u8> = (0..3 * FIRST_READ).map(|i| i as u8).collect();
        assert_eq!(read_capped(&data[..], u64::MAX).unwrap(), data);
    }
}
