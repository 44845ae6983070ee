//! Plans embedder calls: packs the crops of consecutive whole frames into calls of at most
//! `batch_size` crops (a frame's crops are never split for that), and splits a frame only when
//! its crops alone exceed `max_per_call`, the memory bound. A small state machine: push each
//! frame's crop count, get back the calls that are ready; `flush` at the end.

/// A run of crops of one frame inside a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    pub frame: u64,
    pub start: usize,
    pub len: usize,
}

/// One embedder call: its parts, in frame order.
pub type Call = Vec<Part>;

pub struct Packer {
    batch_size: usize,
    max_per_call: usize,
    pending: Call,
    pending_crops: usize,
    split_frames: u64,
}

impl Packer {
    /// `batch_size` 1 gives one call per frame; `max_per_call` is the memory bound (≥ 1).
    pub fn new(batch_size: usize, max_per_call: usize) -> Self {
        let max_per_call = max_per_call.max(1);
        Self { batch_size: batch_size.clamp(1, max_per_call), max_per_call, pending: Vec::new(), pending_crops: 0, split_frames: 0 }
    }

    /// Frames whose crops had to be split over several calls to stay within memory.
    pub fn split_frames(&self) -> u64 {
        self.split_frames
    }

    /// Adds frame `frame` with `crops` crops; returns the calls that are complete.
    pub fn push(&mut self, frame: u64, crops: usize) -> Vec<Call> {
        let mut ready = Vec::new();
        if crops == 0 {
            return ready;
        }
        if self.pending_crops + crops > self.batch_size && !self.pending.is_empty() {
            ready.extend(self.flush());
        }
        if crops > self.max_per_call {
            self.split_frames += 1;
            let mut start = 0;
            while start < crops {
                let len = self.max_per_call.min(crops - start);
                ready.push(vec![Part { frame, start, len }]);
                start += len;
            }
            return ready;
        }
        self.pending.push(Part { frame, start: 0, len: crops });
        self.pending_crops += crops;
        if self.pending_crops >= self.batch_size {
            ready.extend(self.flush());
        }
        ready
    }

    /// The call holding whatever is pending, if anything.
    pub fn flush(&mut self) -> Option<Call> {
        self.pending_crops = 0;
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

/// Crops per call that fit in `budget_bytes`, at an estimated `per_crop_bytes` each (input
/// tensor plus the model's activations), at least 1.
pub fn max_crops_for(budget_bytes: u64, per_crop_bytes: u64) -> usize {
    usize::try_from(budget_bytes / per_crop_bytes.max(1)).unwrap_or(usize::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(frame: u64, start: usize, len: usize) -> Part {
        Part { frame, start, len }
    }

    #[test]
    fn batch_size_one_is_one_call_per_frame() {
        let mut p = Packer::new(1, 64);
        assert_eq!(p.push(0, 3), vec![vec![part(0, 0, 3)]]);
        assert_eq!(p.push(1, 0), Vec::<Call>::new());
        assert_eq!(p.push(2, 1), vec![vec![part(2, 0, 1)]]);
        assert_eq!(p.flush(), None);
    }

    #[test]
    fn whole_frames_are_packed_up_to_the_batch_size() {
        let mut p = Packer::new(8, 64);
        assert!(p.push(0, 3).is_empty());
        assert!(p.push(1, 4).is_empty());
        // 3 + 4 + 2 > 8: frames 0 and 1 go, frame 2 waits (never split to fill the call).
        assert_eq!(p.push(2, 2), vec![vec![part(0, 0, 3), part(1, 0, 4)]]);
        assert_eq!(p.push(3, 6), vec![vec![part(2, 0, 2), part(3, 0, 6)]], "exactly full is sent at once");
        assert!(p.push(4, 5).is_empty());
        assert_eq!(p.flush(), Some(vec![part(4, 0, 5)]));
    }

    #[test]
    fn a_frame_over_the_batch_size_goes_alone_and_whole() {
        let mut p = Packer::new(4, 64);
        assert!(p.push(0, 2).is_empty());
        assert_eq!(p.push(1, 10), vec![vec![part(0, 0, 2)], vec![part(1, 0, 10)]]);
        assert_eq!(p.split_frames(), 0);
    }

    #[test]
    fn only_memory_splits_a_frame() {
        let mut p = Packer::new(4, 5);
        assert_eq!(p.push(0, 12), vec![vec![part(0, 0, 5)], vec![part(0, 5, 5)], vec![part(0, 10, 2)]]);
        assert_eq!(p.split_frames(), 1);
    }

    #[test]
    fn memory_bound() {
        assert_eq!(max_crops_for(64 << 20, 8 << 20), 8);
        assert_eq!(max_crops_for(1, 8 << 20), 1);
    }
}
