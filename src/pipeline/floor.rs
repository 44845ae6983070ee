//! The model floor of a completed run: the time ONNX Runtime alone needs for exactly that run's
//! model work — its detector on every sampled frame, its embedder on every embedded crop at the
//! best batch size — so `scripts/bench` can say how close a harvest comes to the physical limit.
//! Decoding, letterboxing and alignment happen here too but are not timed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ndarray::Array4;

use super::HarvestError;
use crate::align::align_face;
use crate::config::{FloorConfig, Settings};
use crate::detect;
use crate::embed::sface::{crops_to_tensor, SfaceEmbedder};
use crate::onnx;
use crate::run_dir;
use crate::types::RgbImage;
use crate::video::VideoDecoder;

type Landmarks = [[f32; 2]; 5];

/// Batch sizes tried for the embedder; the floor takes the fastest.
const BATCHES: [usize; 5] = [1, 2, 4, 8, 16];
/// Crops used to choose the batch size (a multiple of every size tried).
const PROBE_CROPS: usize = 48;

/// What the floor measurement found, printed as JSON by `episode-run floor`.
#[derive(Debug, serde::Serialize)]
pub struct Floor {
    pub run_dir: PathBuf,
    pub threads: usize,
    pub frames: u64,
    pub faces: usize,
    pub detect_s: f64,
    pub embed_s: f64,
    /// Embedder milliseconds per face at each batch size tried (on the first crops).
    pub embed_ms_per_face: BTreeMap<usize, f64>,
    pub best_batch: usize,
    pub floor_s: f64,
}

/// Replays `run_dir`'s model work and times ONNX Runtime alone.
pub fn floor(cfg: &FloorConfig) -> Result<Floor, HarvestError> {
    let read_err = |path: &Path, reason: String| HarvestError::RunRead { path: path.to_path_buf(), reason };
    let manifest_path = cfg.run_dir.join(run_dir::MANIFEST);
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| read_err(&manifest_path, e.to_string()))?;
    let manifest: serde_json::Value = serde_json::from_str(&text).map_err(|e| read_err(&manifest_path, e.to_string()))?;
    let settings: Settings = serde_json::from_value(manifest["config"].clone()).map_err(|e| read_err(&manifest_path, format!("config: {e}")))?;
    let path_of = |v: &serde_json::Value| v.as_str().map(PathBuf::from);
    let input = path_of(&manifest["input"]["path"]).ok_or_else(|| read_err(&manifest_path, "no input.path".into()))?;
    let detector_path = path_of(&manifest["models"]["detector"]["path"]).ok_or_else(|| read_err(&manifest_path, "the run used no detector".into()))?;
    let embedder_path = path_of(&manifest["models"]["embedder"]["path"]);
    let threads = cfg.threads.or_else(|| manifest["threads"]["budget"].as_u64().map(|n| n as usize)).unwrap_or(1);

    // The embedded faces of each frame, in embedding-row order.
    let faces_path = cfg.run_dir.join(run_dir::FACES);
    let faces_text = std::fs::read_to_string(&faces_path).map_err(|e| read_err(&faces_path, e.to_string()))?;
    let mut wanted: BTreeMap<u64, Vec<(u64, Landmarks)>> = BTreeMap::new();
    for (n, line) in faces_text.lines().enumerate() {
        let row: serde_json::Value = serde_json::from_str(line).map_err(|e| read_err(&faces_path, format!("line {}: {e}", n + 1)))?;
        let (Some(frame), Some(emb)) = (row["frame_idx"].as_u64(), row["embedding_row"].as_u64()) else { continue };
        let mut lm = [[0f32; 2]; 5];
        for (i, p) in lm.iter_mut().enumerate() {
            *p = [row["landmarks"][i][0].as_f64().unwrap_or(0.0) as f32, row["landmarks"][i][1].as_f64().unwrap_or(0.0) as f32];
        }
        wanted.entry(frame).or_default().push((emb, lm));
    }

    onnx::init_runtime(&cfg.ort_lib)?;
    let mut detector = detect::load(&detector_path, threads, settings.detect.clone(), settings.detect.family)?;
    let plan = detector.input_plan();
    let mut decoder = VideoDecoder::open(&input, threads, settings.sampling.stride)?.with_scaled(Box::new(move |w, h| plan.content_size(w, h)));
    let (mut frames, mut detect_time, mut warm) = (0u64, Duration::ZERO, false);
    let mut crops: Vec<(u64, RgbImage)> = Vec::new();
    while let Some(frame) = decoder.next_frame()? {
        let (Some(image), Some(scaled)) = (frame.image, frame.scaled) else { continue };
        let prepared = plan.prepare_scaled(&scaled, image.width as u32, image.height as u32);
        if !warm {
            detector.detect_prepared(&prepared)?;
            warm = true;
        }
        detect_time += detector.detect_prepared(&prepared)?.1;
        frames += 1;
        for (row, lm) in wanted.remove(&frame.idx).unwrap_or_default() {
            if let Ok(crop) = align_face(&image, &lm) {
                crops.push((row, crop));
            }
        }
    }
    crops.sort_by_key(|c| c.0);
    let crops: Vec<&RgbImage> = crops.iter().map(|c| &c.1).collect();

    let (mut per_face, mut best_batch, mut embed_time) = (BTreeMap::new(), 1, Duration::ZERO);
    if let (Some(path), false) = (embedder_path, crops.is_empty()) {
        let mut embedder = SfaceEmbedder::load(&path, threads)?;
        let probe = &crops[..crops.len().min(PROBE_CROPS)];
        let mut time_all = |batch: usize, crops: &[&RgbImage]| -> Result<Duration, HarvestError> {
            let tensors: Vec<Array4<f32>> = crops.chunks(batch).map(crops_to_tensor).collect();
            let mut total = Duration::ZERO;
            for t in &tensors {
                total += embedder.embed_tensor(t.view())?.1;
            }
            Ok(total)
        };
        time_all(1, &probe[..1])?;
        let mut best = f64::INFINITY;
        for batch in BATCHES {
            let ms = time_all(batch, probe)?.as_secs_f64() * 1e3 / probe.len() as f64;
            per_face.insert(batch, (ms * 1e3).round() / 1e3);
            if ms < best {
                (best, best_batch) = (ms, batch);
            }
        }
        embed_time = time_all(best_batch, &crops)?;
    }
    let round = |d: Duration| (d.as_secs_f64() * 1e3).round() / 1e3;
    Ok(Floor {
        run_dir: cfg.run_dir.clone(),
        threads,
        frames,
        faces: crops.len(),
        detect_s: round(detect_time),
        embed_s: round(embed_time),
        embed_ms_per_face: per_face,
        best_batch,
        floor_s: round(detect_time + embed_time),
    })
}
