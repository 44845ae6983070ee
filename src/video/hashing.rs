//! The input's BLAKE3, computed from the bytes FFmpeg reads for decoding rather than by a second
//! read of the whole file: FFmpeg reads through [`HashingReader`], which hashes every byte that
//! extends the contiguous prefix already hashed. Demuxers read mostly front to back; whatever
//! they skipped (an index at the end read before the data, a stream they never asked for) is
//! read once more at the end by [`InputHash::finish`], usually a few kilobytes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

struct State {
    hasher: blake3::Hasher,
    /// Bytes `0..hashed` are in the hasher.
    hashed: u64,
}

/// The shared hash state; the reader lives inside FFmpeg, this handle in the decoder.
#[derive(Clone)]
pub struct InputHash(Arc<Mutex<State>>);

impl InputHash {
    /// Completes the hash: reads whatever FFmpeg did not, then returns lower-case hex.
    pub fn finish(&self, path: &Path) -> std::io::Result<String> {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(state.hashed))?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            state.hasher.update(&buf[..n]);
            state.hashed += n as u64;
        }
        Ok(state.hasher.finalize().to_hex().to_string())
    }
}

/// A file reader that feeds the [`InputHash`] as it goes.
pub struct HashingReader {
    file: File,
    pos: u64,
    hash: InputHash,
}

impl HashingReader {
    pub fn open(path: &Path) -> std::io::Result<(Self, InputHash)> {
        let hash = InputHash(Arc::new(Mutex::new(State { hasher: blake3::Hasher::new(), hashed: 0 })));
        Ok((Self { file: File::open(path)?, pos: 0, hash: hash.clone() }, hash))
    }
}

impl Read for HashingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        let (start, end) = (self.pos, self.pos + n as u64);
        let mut state = self.hash.0.lock().unwrap_or_else(PoisonError::into_inner);
        if start <= state.hashed && end > state.hashed {
            let from = (state.hashed - start) as usize;
            state.hasher.update(&buf[from..n]);
            state.hashed = end;
        }
        self.pos = end;
        Ok(n)
    }
}

impl Seek for HashingReader {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = self.file.seek(to)?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_reads_hash_like_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let (mut r, hash) = HashingReader::open(&path).unwrap();
        let mut buf = vec![0u8; 30_000];
        r.read_exact(&mut buf[..1000]).unwrap(); // the head
        r.seek(SeekFrom::End(-5000)).unwrap(); // an index at the end
        r.read_exact(&mut buf[..5000]).unwrap();
        r.seek(SeekFrom::Start(500)).unwrap(); // back, overlapping what is hashed
        r.read_exact(&mut buf[..30_000]).unwrap();
        assert_eq!(hash.finish(&path).unwrap(), blake3::hash(&data).to_hex().to_string());
    }
}
