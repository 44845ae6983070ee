//! How much memory embedder calls may use: the configured budget, or a share of what the
//! machine has available.

use crate::embed::batching::max_crops_for;
use crate::output::manifest::EmbedBatching;

/// Estimated memory of one crop inside an SFace call: its 147 KiB input plus activations.
const BYTES_PER_CROP: u64 = 8 << 20;

impl EmbedBatching {
    /// The memory budget from the config, or a quarter of available memory (at most 4 GiB).
    pub fn plan(cfg: &crate::config::Embed) -> Self {
        let budget = match cfg.mem_budget_mb {
            0 => crate::host::meminfo("MemAvailable").map_or(1 << 30, |m| (m / 4).min(4 << 30)),
            mb => mb << 20,
        };
        let max_crops_per_call = max_crops_for(budget, BYTES_PER_CROP);
        EmbedBatching { batch_size: cfg.batch_size.min(max_crops_per_call), max_crops_per_call, mem_budget_mb: budget >> 20 }
    }
}
